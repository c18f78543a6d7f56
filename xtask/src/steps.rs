//! `cargo xtask icount --steps SCENARIO [v4|v6]`: loopstack's instructions per operation in
//! one side-by-side scenario, by step: each instruction charged to the innermost loopstack
//! function it was inlined into, the standard library's inlined code included.
//!
//! `cargo xtask icount` splits by crate, and `callgrind_annotate` by source line; neither
//! says what a step costs once link-time optimisation has inlined everything into a few
//! functions, because a bounds check or an `Option` match inlined from `core` counts under
//! `core`'s line, not under the loopstack function that asked for it. This asks callgrind
//! for the count of every instruction address (`--dump-instr=yes`) and
//! `llvm-symbolizer --inlining` for each address's chain of inlined frames, and charges
//! the address to the first frame whose source lies in this workspace (docs/benchmarks.md,
//! item 37). As in `icount`, the scenario runs N and 2N iterations, and the difference is
//! divided by N and by the operations per iteration, so set-up and warm-up drop out.
//!
//! Before the steps it prints the same instructions by *stage* of the packet's way (the
//! application's write, TCP or UDP sending, IP sending, `lo`, IP receiving, TCP or UDP
//! receiving, the application's read, timers, the poll loop, the scenario itself): each
//! address goes to the innermost frame of its chain that names a stage ([`stage_of`]).
//! That is the view in which a round trip's cost reads as a path (docs/benchmarks.md,
//! item 40).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use crate::bench::{build_runner, command_output, workspace_root};

/// Instruction counts by address, for the object whose path ends with `object`, from a
/// callgrind output file written with `--dump-instr=yes`. Lines after `calls=` carry the
/// inclusive cost of a call, which the callee's own lines count again: skipped.
pub fn costs_by_address(text: &str, object: &str) -> BTreeMap<u64, u64> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut costs = BTreeMap::new();
    let (mut ours, mut addr, mut after_call) = (false, 0u64, false);
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("ob=")
            .or_else(|| line.strip_prefix("cob="))
        {
            // `(id) name` the first time an object appears, `(id)` after that.
            let (id, name) = rest.split_once(' ').unwrap_or((rest, ""));
            if !name.is_empty() {
                names.insert(id.to_string(), name.to_string());
            }
            if line.starts_with("ob=") {
                ours = names.get(id).is_some_and(|n| n.ends_with(object));
            }
            continue;
        }
        if line.starts_with("calls=") {
            after_call = true;
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(position), Some(_line), Some(count)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        // Positions are absolute (`0x...`), relative (`+n`, `-n`) or the same (`*`).
        if let Some(hex) = position.strip_prefix("0x") {
            match u64::from_str_radix(hex, 16) {
                Ok(a) => addr = a,
                Err(_) => continue,
            }
        } else if let Some(n) = position.strip_prefix('+') {
            addr = addr.wrapping_add(n.parse().unwrap_or(0));
        } else if let Some(n) = position.strip_prefix('-') {
            addr = addr.wrapping_sub(n.parse().unwrap_or(0));
        } else if position != "*" {
            continue;
        }
        if std::mem::take(&mut after_call) {
            continue;
        }
        if ours {
            *costs.entry(addr).or_insert(0) += count;
        }
    }
    costs
}

/// The step an address belongs to, from `llvm-symbolizer --inlining`'s answer for it
/// (function and `file:line:column` lines, innermost frame first): the first frame whose
/// file lies under `root`, as `function (file)`, the hash suffix dropped; `None` if no
/// frame is ours.
pub fn step_of(frames: &str, root: &str) -> Option<String> {
    let lines: Vec<&str> = frames.lines().collect();
    lines.chunks(2).find_map(|pair| {
        let [function, location] = pair else {
            return None;
        };
        let relative = location.strip_prefix(root)?.trim_start_matches('/');
        let file = relative.split(':').next().unwrap_or(relative);
        Some(format!("{} ({file})", readable(function)))
    })
}

/// A function's name as `llvm-symbolizer` gives it, written as source would: the legacy
/// mangling's hash suffix (`::h` and 16 hex digits) dropped, its escapes undone ([`tidy`]).
fn readable(function: &str) -> String {
    match function.rsplit_once("::h") {
        Some((name, hash)) if hash.len() == 16 => tidy(name),
        _ => tidy(function),
    }
}

/// A Rust symbol as the legacy mangling's escapes leave it after demangling
/// (`_$LT$a..B$u20$as$u20$c..D$GT$::f`), written as source would (`<a::B as c::D>::f`).
fn tidy(name: &str) -> String {
    let name = match name.strip_prefix('_') {
        Some(rest) if rest.starts_with("$LT$") => rest,
        _ => name,
    };
    [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$u20$", " "),
        ("$RF$", "&"),
        ("$C$", ","),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("..", "::"),
    ]
    .iter()
    .fold(name.to_string(), |s, (from, to)| s.replace(from, to))
}

/// Functions that name a stage of the packet's way, matched against an address's frames
/// from the innermost outwards: the first frame that is one of these (or a closure in one)
/// decides. Code they call and inline (the pool, a `PacketBuf` accessor, a deadline heap)
/// belongs to their stage.
const STAGES: &[(&str, &str)] = &[
    ("Stack::udp_send_to", "UDP, sending"),
    ("Udp::send_to", "UDP, sending"),
    ("Udp::receive", "UDP, receiving"),
    ("Udp::recv_from", "application read"),
    ("Tcp::send", "application write"),
    ("Tcp::recv", "application read"),
    ("Tcp::dispatch", "TCP, sending"),
    ("Tcp::transmit", "TCP, sending"),
    ("Tcp::receive", "TCP, receiving"),
    ("Tcp::poll", "timers"),
    ("Tcp::rearm", "timers"),
    ("Internet::send_prepared", "IP, sending"),
    ("Internet::send_rerouted", "IP, sending"),
    ("Internet::transmit_prepared", "IP, sending"),
    ("Internet::finish", "IP, sending"),
    ("Internet::receive_offloaded", "IP, receiving"),
    ("Internet::deliver", "IP, receiving"),
    ("Internet::poll", "timers"),
    (
        "Loopback as loopstack_link::device::Device>::transmit",
        "lo",
    ),
    ("Loopback as loopstack_link::device::Device>::receive", "lo"),
    ("Stack::poll", "the poll loop"),
];

/// Functions the optimiser keeps out of line, whose own frames then name no caller: the
/// stage they serve, matched from the outermost frame inwards, and only when no frame of
/// the chain is in [`STAGES`].
const OUT_OF_LINE: &[(&str, &str)] = &[
    ("Connection::ack_arrived", "TCP, receiving"),
    ("Connection::take_text", "TCP, receiving"),
    ("Connection::note_sent", "TCP, sending"),
    ("SendBuffer::write", "application write"),
    ("PacketBuf::copy_out", "application read"),
    ("ingress::check_v4_len", "IP, receiving"),
    ("ingress::check_v6_len", "IP, receiving"),
];

/// Whether a function name (as [`tidy`] writes it) is `pattern` or a closure inside it.
fn names(function: &str, pattern: &str) -> bool {
    function.ends_with(pattern)
        || function
            .find(pattern)
            .is_some_and(|i| function[i + pattern.len()..].starts_with("::{{closure}}"))
}

/// The stage of the packet's way an address belongs to, from `llvm-symbolizer
/// --inlining`'s frames for it (see [`STAGES`] and [`OUT_OF_LINE`]); the scenario's own
/// code is "the scenario", anything else "other": helpers kept out of line that more than
/// one stage calls (the pool's `filled`, `VecDeque::push_back_mut`), whose frames cannot
/// say which stage called them.
pub fn stage_of(frames: &str) -> &'static str {
    let functions: Vec<String> = frames.lines().step_by(2).map(readable).collect();
    let find = |f: &String, table: &[(&str, &'static str)]| {
        table
            .iter()
            .find(|(pattern, _)| names(f, pattern))
            .map(|&(_, stage)| stage)
    };
    functions
        .iter()
        .find_map(|f| find(f, STAGES))
        .or_else(|| functions.iter().rev().find_map(|f| find(f, OUT_OF_LINE)))
        .or_else(|| {
            functions
                .iter()
                .any(|f| f.contains("loopstack_benches::"))
                .then_some("the scenario")
        })
        .unwrap_or("other (shared helpers out of line)")
}

/// Runs the scenario under callgrind with instruction-level counts, and reads the output.
fn callgrind(
    runner: &Path,
    out: &Path,
    scenario: &str,
    family: &str,
    n: usize,
) -> Result<String, String> {
    let what = ("loopstack-poll", scenario, family, n);
    crate::icount::run_callgrind(runner, out, &["--dump-instr=yes"], what)?;
    std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))
}

/// `cargo xtask icount --steps SCENARIO [FAMILY]`.
pub fn run(scenario: &str, family: &str) -> ExitCode {
    match steps(scenario, family) {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("==> {e}");
            ExitCode::FAILURE
        }
    }
}

fn steps(scenario: &str, family: &str) -> Result<String, String> {
    let Some(&(_, what, n, ops)) = crate::icount::SCENARIOS
        .iter()
        .find(|(name, ..)| *name == scenario)
    else {
        let names: Vec<&str> = crate::icount::SCENARIOS.iter().map(|s| s.0).collect();
        return Err(format!(
            "no scenario {scenario}; one of {}",
            names.join(", ")
        ));
    };
    if !matches!(family, "v4" | "v6") {
        return Err(format!("family {family}: v4 or v6"));
    }
    for tool in ["valgrind", "llvm-symbolizer"] {
        if command_output(tool, &["--version"]).is_empty() {
            return Err(format!(
                "--steps needs {tool} (apt-get install valgrind llvm)"
            ));
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let runner = build_runner(&cargo)?;
    let root = workspace_root();
    let dir = root.join("target/icount");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let object = runner
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or("the runner has no file name")?
        .to_string();
    let mut counts = Vec::new();
    for iterations in [n, 2 * n] {
        eprintln!("==> callgrind: {scenario} {family} loopstack-poll, {iterations} iterations");
        let out = dir.join(format!("steps.{scenario}.{family}.{iterations}.out"));
        let text = callgrind(&runner, &out, scenario, family, iterations)?;
        counts.push(costs_by_address(&text, &object));
    }
    let (once, twice) = (&counts[0], &counts[1]);
    let per_op = n as f64 * ops;
    let mut by_address: BTreeMap<u64, f64> = BTreeMap::new();
    for (&a, &c) in twice {
        let d = c as f64 - once.get(&a).copied().unwrap_or(0) as f64;
        if d != 0.0 {
            by_address.insert(a, d / per_op);
        }
    }
    let input: String = by_address.keys().map(|a| format!("{a:#x}\n")).collect();
    let mut child = Command::new("llvm-symbolizer")
        .args(["--inlining", "--functions=linkage", "--demangle"])
        .arg(format!("--obj={}", runner.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("llvm-symbolizer: {e}"))?;
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().ok_or("llvm-symbolizer: no stdin")?;
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("llvm-symbolizer: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("llvm-symbolizer: {e}"))?;
    let answers = String::from_utf8_lossy(&output.stdout);
    // One block per address, in the order asked, separated by a blank line.
    let blocks: Vec<&str> = answers
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .collect();
    if blocks.len() != by_address.len() {
        return Err(format!(
            "llvm-symbolizer answered {} addresses of {}",
            blocks.len(),
            by_address.len()
        ));
    }
    let root_text = root.display().to_string();
    let mut steps: BTreeMap<String, f64> = BTreeMap::new();
    let mut stages: BTreeMap<&str, f64> = BTreeMap::new();
    for ((_, cost), block) in by_address.iter().zip(blocks) {
        let step = step_of(block, &root_text).unwrap_or_else(|| "(outside the workspace)".into());
        *steps.entry(step).or_insert(0.0) += cost;
        *stages.entry(stage_of(block)).or_insert(0.0) += cost;
    }
    let total: f64 = steps.values().sum();
    let mut stage_rows: Vec<(&str, f64)> = stages.into_iter().collect();
    stage_rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut rows: Vec<(String, f64)> = steps.into_iter().collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut table = format!(
        "loopstack-poll, {scenario}, {family}: {total:.0} instructions per {what} in the binary \
         (libc's copies and other libraries not included)\n\n| per {what} | stage |\n| ---: | --- |\n"
    );
    for (stage, cost) in stage_rows.iter().filter(|r| r.1.abs() >= 0.5) {
        table.push_str(&format!("| {cost:.1} | {stage} |\n"));
    }
    table.push_str(&format!(
        "\n| per {what} | step (innermost loopstack function, file) |\n| ---: | --- |\n"
    ));
    for (step, cost) in rows.iter().filter(|r| r.1.abs() >= 0.5) {
        table.push_str(&format!("| {cost:.1} | `{step}` |\n"));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_read_per_address_for_one_object_and_calls_are_skipped() {
        let text = "\
ob=(1) /x/libc.so
fn=(1) memcpy
0x100 1 5
ob=(2) /t/sidebyside-peak
fn=(2) poll
0x5f9f0 348 3
+2 * 4
calls=2 0x7000 12
+3 349 900
+1 * 2
-6 350 1
ob=(1)
fn=(1)
0x100 1 5
";
        let costs = costs_by_address(text, "sidebyside-peak");
        // 0x5f9f0: 3, 0x5f9f2: 4, the call's inclusive 900 at 0x5f9f5 skipped, 0x5f9f6: 2,
        // back to 0x5f9f0: 1 more. libc's lines are not ours.
        let expect: BTreeMap<u64, u64> = [(0x5f9f0, 4), (0x5f9f2, 4), (0x5f9f6, 2)].into();
        assert_eq!(costs, expect);
    }

    #[test]
    fn an_address_goes_to_its_innermost_workspace_frame() {
        let frames = "\
core::option::Option<T>::map::h0123456789abcdef
/rustc/abc/library/core/src/option.rs:1165:24
loopstack_transport::udp::lookup::hfedcba9876543210
/w/repo/crates/loopstack-transport/src/udp.rs:365:10
loopstack_socket::stack::Stack::poll::h0000000000000000
/w/repo/crates/loopstack-socket/src/stack.rs:369:21";
        assert_eq!(
            step_of(frames, "/w/repo").as_deref(),
            Some("loopstack_transport::udp::lookup (crates/loopstack-transport/src/udp.rs)")
        );
        assert_eq!(step_of(frames, "/elsewhere"), None);
        // No frame of this chain between `lookup` and the loop names a stage.
        assert_eq!(stage_of(frames), "the poll loop");
        let escaped = "_$LT$loopstack_benches..poll..UdpOneWay$u20$as$u20$loopstack_benches..OneWay$GT$::burst::h3423008f22d6eb06\n/w/repo/benches/sidebyside/poll.rs:574:9";
        assert_eq!(
            step_of(escaped, "/w/repo").as_deref(),
            Some("<loopstack_benches::poll::UdpOneWay as loopstack_benches::OneWay>::burst (benches/sidebyside/poll.rs)")
        );
    }

    #[test]
    fn an_address_goes_to_the_innermost_frame_that_names_a_stage() {
        let chain = |fs: &[&str]| -> String {
            fs.iter()
                .map(|f| format!("{f}::h0123456789abcdef\n/w/repo/x.rs:1:1"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        // The pool's code inlined into the UDP send, itself inlined into the scenario.
        let alloc = chain(&[
            "loopstack_buf::cache::PoolCache::alloc",
            "loopstack_transport::udp::Udp::send_to",
            "loopstack_socket::stack::Stack::udp_send_to",
            "loopstack_benches::sidebyside::poll::burst",
        ]);
        assert_eq!(stage_of(&alloc), "UDP, sending");
        // The deadline heap inlined into `rearm`, inlined into `dispatch`: timers, the
        // innermost stage, not TCP's sending.
        let heap = chain(&[
            "loopstack_transport::tcp::deadlines::Deadlines::refile",
            "loopstack_transport::tcp::socket::Tcp::rearm",
            "loopstack_transport::tcp::socket::Tcp::dispatch",
        ]);
        assert_eq!(stage_of(&heap), "timers");
        // `Tcp::recv` is the application's read; `Tcp::receive` is TCP's input.
        let read = chain(&["loopstack_transport::tcp::socket::Tcp::recv"]);
        let input = chain(&["loopstack_transport::tcp::socket::Tcp::receive"]);
        assert_eq!(
            (stage_of(&read), stage_of(&input)),
            ("application read", "TCP, receiving")
        );
        let closure = chain(&["loopstack_internet::layer::Internet::deliver::{{closure}}"]);
        assert_eq!(stage_of(&closure), "IP, receiving");
        // An out-of-line function's own code: the outermost frame that names a stage, so
        // a `copy_out` inlined into the out-of-line `take_text` is TCP's input, and the
        // out-of-line `copy_out` itself the application's read.
        let coalesce = chain(&[
            "loopstack_buf::buf::PacketBuf::copy_out",
            "loopstack_transport::tcp::recvbuf::RecvQueue::push",
            "loopstack_transport::tcp::conn::Connection::take_text",
        ]);
        assert_eq!(stage_of(&coalesce), "TCP, receiving");
        let copy = chain(&["loopstack_buf::buf::PacketBuf::copy_out"]);
        assert_eq!(stage_of(&copy), "application read");
        let scenario = chain(&["loopstack_benches::sidebyside::poll::tcp_exchange"]);
        assert_eq!(stage_of(&scenario), "the scenario");
        assert_eq!(
            stage_of(&chain(&["core::ptr::drop_in_place"])),
            "other (shared helpers out of line)"
        );
    }
}
