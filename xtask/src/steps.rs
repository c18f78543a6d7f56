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
        let function = match function.rsplit_once("::h") {
            Some((name, hash)) if hash.len() == 16 => name,
            _ => function,
        };
        Some(format!("{} ({file})", tidy(function)))
    })
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
    for ((_, cost), block) in by_address.iter().zip(blocks) {
        let step = step_of(block, &root_text).unwrap_or_else(|| "(outside the workspace)".into());
        *steps.entry(step).or_insert(0.0) += cost;
    }
    let total: f64 = steps.values().sum();
    let mut rows: Vec<(String, f64)> = steps.into_iter().collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut table = format!(
        "loopstack-poll, {scenario}, {family}: {total:.0} instructions per {what} in the binary \
         (libc's copies and other libraries not included)\n\n| per {what} | step (innermost loopstack function, file) |\n| ---: | --- |\n"
    );
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
        let escaped = "_$LT$loopstack_benches..poll..UdpOneWay$u20$as$u20$loopstack_benches..OneWay$GT$::burst::h3423008f22d6eb06\n/w/repo/benches/sidebyside/poll.rs:574:9";
        assert_eq!(
            step_of(escaped, "/w/repo").as_deref(),
            Some("<loopstack_benches::poll::UdpOneWay as loopstack_benches::OneWay>::burst (benches/sidebyside/poll.rs)")
        );
    }
}
