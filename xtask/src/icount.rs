//! `cargo xtask icount`: instructions per operation of loopstack (poll mode) and smoltcp in
//! each side-by-side scenario, and of the floor in the UDP ones, counted by callgrind,
//! split by layer, written into docs/benchmarks.md between `<!-- icount:begin -->` and
//! `<!-- icount:end -->`.
//!
//! Timings say how long; they cannot say whether a stack is slow because it executes more
//! instructions or because its instructions wait (cache misses, store-forwarding stalls,
//! mispredicted branches). An instruction count can, and it is exact and the same on every
//! run and every machine with the same build. Put next to the criterion table it gives
//! the instructions per cycle of each stack, which is where the two differ most.
//!
//! How it counts: `sidebyside-peak` (the runner `cargo xtask bench` already uses for peak
//! memory) runs one scenario N times after its warm-up, under `valgrind --tool=callgrind`,
//! once with N and once with 2N iterations. The difference of the two counts is N
//! iterations of steady state with the setup and warm-up subtracted out; divided by N and
//! by the operations per iteration it is the count per operation. `callgrind_annotate`
//! attributes each instruction to the source file of its line, inlined code included, so
//! the split by crate survives link-time optimisation.
//!
//! Callgrind counts each step of a `rep movsb` as one instruction, so the `libc copies`
//! row (memcpy, memmove, memset) is about one "instruction" per byte: read it as the bytes
//! copied, not as work comparable with the other rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode};

use crate::bench::{
    build_runner, command_output, machine, smoltcp_version, workspace_root, write_section,
};

const BEGIN: &str = "<!-- icount:begin -->";
const END: &str = "<!-- icount:end -->";

/// The two single-threaded implementations: callgrind serialises threads, so the blocking
/// ones would count their waiting, not their work.
const IMPLS: [&str; 2] = ["loopstack-poll", "smoltcp"];
/// The UDP scenarios have a third column: the floor (benches/sidebyside/floor.rs), the
/// same datagrams moved by loopstack's primitives alone, whose own code (headers, checks)
/// counts in the scenario row.
const UDP_IMPLS: [&str; 3] = ["loopstack-poll", "smoltcp", "floor"];

/// The implementations counted in `scenario`.
fn impls(scenario: &str) -> &'static [&'static str] {
    if scenario.starts_with("udp_") {
        &UDP_IMPLS
    } else {
        &IMPLS
    }
}

/// Scenario, what one operation is, iterations for the first run (the second runs twice
/// as many), and operations per iteration of `sidebyside-peak`.
pub const SCENARIOS: [(&str, &str, usize, f64); 5] = [
    ("tcp_bulk", "64 KiB chunk", 8, 16.0),
    ("tcp_rtt_1B", "round trip", 2000, 1.0),
    ("tcp_rtt_64B", "round trip", 2000, 1.0),
    ("udp_rtt_64B", "round trip", 2000, 1.0),
    ("udp_oneway_64B", "datagram", 200, 32.0),
];

/// The rows of the split, in order.
const GROUPS: [&str; 11] = [
    "scenario (the application)",
    "loopstack-socket (Stack)",
    "loopstack-transport (UDP, TCP)",
    "loopstack-internet (IP, ICMP)",
    "loopstack-link (lo)",
    "loopstack-buf (pool)",
    "smoltcp",
    "core and std, inlined",
    "heap (malloc, free)",
    "libc copies (memcpy, memset)",
    "other",
];

/// Which row an entry of `callgrind_annotate` belongs to, from `file:function`.
fn group(entry: &str) -> &'static str {
    let (file, function) = entry.split_once(':').unwrap_or(("", entry));
    let has = |s: &str| file.contains(s);
    if function.contains("memcpy") || function.contains("memmove") || function.contains("memset") {
        GROUPS[9]
    } else if ["malloc", "free", "calloc", "realloc", "malloc_consolidate"]
        .iter()
        .any(|f| function.trim_start_matches('_').trim_start_matches("int_") == *f)
    {
        GROUPS[8]
    } else if has("crates/loopstack-socket/") {
        GROUPS[1]
    } else if has("crates/loopstack-transport/") {
        GROUPS[2]
    } else if has("crates/loopstack-internet/") {
        GROUPS[3]
    } else if has("crates/loopstack-link/") {
        GROUPS[4]
    } else if has("crates/loopstack-buf/") {
        GROUPS[5]
    } else if has("/smoltcp-") {
        GROUPS[6]
    } else if has("benches/") {
        GROUPS[0]
    } else if file.starts_with("/rustc/") {
        GROUPS[7]
    } else {
        GROUPS[10]
    }
}

/// Instructions by row, from one callgrind output file.
fn count(file: &Path) -> Result<BTreeMap<&'static str, u64>, String> {
    let out = Command::new("callgrind_annotate")
        .args(["--auto=no", "--threshold=100"])
        .arg(file)
        .output()
        .map_err(|e| format!("callgrind_annotate: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "callgrind_annotate {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut groups = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "  1,234 (12.3%)  file:function [object]"
        let line = line.trim();
        let Some((n, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.replace(',', "").parse::<u64>() else {
            continue;
        };
        let Some((_, entry)) = rest.split_once(")  ") else {
            continue;
        };
        if entry.starts_with("PROGRAM TOTALS") {
            continue;
        }
        let entry = entry.split(" [").next().unwrap_or(entry);
        *groups.entry(group(entry)).or_insert(0) += n;
    }
    if groups.is_empty() {
        return Err(format!("{}: no functions counted", file.display()));
    }
    Ok(groups)
}

/// Runs `runner IMPL SCENARIO FAMILY N` under callgrind, its output into `file`, with
/// `extra` options (`--dump-instr=yes` for counts by address, `cargo xtask icount
/// --steps`).
pub fn run_callgrind(
    runner: &Path,
    file: &Path,
    extra: &[&str],
    (imp, scenario, family, n): (&str, &str, &str, usize),
) -> Result<(), String> {
    let status = Command::new("valgrind")
        .args(["--tool=callgrind", "--quiet"])
        .args(extra)
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(runner)
        .args([imp, scenario, family, &n.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("valgrind: {e}"))?;
    if !status.success() {
        return Err(format!("valgrind {imp} {scenario} {family} {n}: {status}"));
    }
    Ok(())
}

/// Runs `runner IMPL SCENARIO v4 N` under callgrind and counts it by row.
fn callgrind(
    runner: &Path,
    dir: &Path,
    imp: &str,
    scenario: &str,
    n: usize,
) -> Result<BTreeMap<&'static str, u64>, String> {
    let file = dir.join(format!("{scenario}.{imp}.{n}.out"));
    run_callgrind(runner, &file, &[], (imp, scenario, "v4", n))?;
    count(&file)
}

/// Instructions per operation by row: `(rows, total)`.
type PerOp = (BTreeMap<&'static str, f64>, f64);

fn per_op(
    runner: &Path,
    dir: &Path,
    imp: &str,
    scenario: &str,
    n: usize,
    ops: f64,
) -> Result<PerOp, String> {
    let once = callgrind(runner, dir, imp, scenario, n)?;
    let twice = callgrind(runner, dir, imp, scenario, 2 * n)?;
    let mut rows = BTreeMap::new();
    for g in GROUPS {
        let a = once.get(g).copied().unwrap_or(0) as f64;
        let b = twice.get(g).copied().unwrap_or(0) as f64;
        rows.insert(g, ((b - a) / (n as f64 * ops)).max(0.0));
    }
    let total = rows.values().sum();
    Ok((rows, total))
}

/// `cargo xtask icount`.
pub fn run() -> ExitCode {
    if command_output("valgrind", &["--version"]).is_empty() {
        eprintln!(
            "==> icount needs valgrind (and its callgrind_annotate): apt-get install valgrind"
        );
        return ExitCode::FAILURE;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let runner = match build_runner(&cargo) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("==> {e}");
            return ExitCode::FAILURE;
        }
    };
    let root = workspace_root();
    let dir = root.join("target/icount");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("==> {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let mut results = BTreeMap::new();
    for (scenario, _, n, ops) in SCENARIOS {
        for &imp in impls(scenario) {
            eprintln!("==> callgrind: {scenario} {imp}");
            match per_op(&runner, &dir, imp, scenario, n, ops) {
                Ok(r) => {
                    results.insert((scenario, imp), r);
                }
                Err(e) => {
                    eprintln!("==> {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let smoltcp =
        smoltcp_version(&root).unwrap_or_else(|| "(version not found in Cargo.lock)".to_string());
    let section = render(&results, &smoltcp);
    write_section(&root.join("docs/benchmarks.md"), BEGIN, END, &section)
}

fn render(results: &BTreeMap<(&str, &str), PerOp>, smoltcp: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(
        s,
        "Instructions per operation, IPv4, counted by callgrind (`cargo xtask icount`). \
         Machine: {}. Toolchain: {}. {}. Peer: smoltcp {smoltcp}.\n",
        machine(),
        command_output("rustc", &["--version"]),
        command_output("valgrind", &["--version"]),
    );
    let _ = write!(s, "| layer |");
    for (scenario, op, _, _) in SCENARIOS {
        for imp in impls(scenario) {
            let _ = write!(s, " {scenario} {imp} (per {op}) |");
        }
    }
    let _ = writeln!(s);
    let _ = write!(s, "| --- |");
    for (scenario, _, _, _) in SCENARIOS {
        for _ in impls(scenario) {
            let _ = write!(s, " ---: |");
        }
    }
    let _ = writeln!(s);
    let cell = |v: f64| {
        if v < 0.5 {
            String::new()
        } else {
            format!("{v:.0}")
        }
    };
    for g in GROUPS {
        let _ = write!(s, "| {g} |");
        for (scenario, _, _, _) in SCENARIOS {
            for &imp in impls(scenario) {
                let v = results
                    .get(&(scenario, imp))
                    .and_then(|(rows, _)| rows.get(g).copied())
                    .unwrap_or(0.0);
                let _ = write!(s, " {} |", cell(v));
            }
        }
        let _ = writeln!(s);
    }
    let _ = write!(s, "| **total** |");
    for (scenario, _, _, _) in SCENARIOS {
        for &imp in impls(scenario) {
            let v = results.get(&(scenario, imp)).map_or(0.0, |(_, t)| *t);
            let _ = write!(s, " **{v:.0}** |");
        }
    }
    let _ = writeln!(s);
    let _ = write!(s, "{END}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_udp_scenarios_have_a_floor() {
        for (scenario, _, _, _) in SCENARIOS {
            let has_floor = impls(scenario).contains(&"floor");
            assert_eq!(has_floor, scenario.starts_with("udp_"), "{scenario}");
            assert_eq!(
                &impls(scenario)[..2],
                &IMPLS,
                "{scenario}: the peers come first"
            );
        }
    }

    #[test]
    fn entries_fall_in_their_layer() {
        let cases = [
            (
                "/w/crates/loopstack-transport/src/udp.rs:loopstack_socket::stack::Stack::poll",
                GROUPS[2],
            ),
            ("/w/crates/loopstack-buf/src/pool.rs:x", GROUPS[5]),
            (
                "./string/../sysdeps/x86_64/multiarch/memmove-vec-unaligned-erms.S:__memcpy_avx_unaligned_erms",
                GROUPS[9],
            ),
            ("./malloc/./malloc/malloc.c:_int_free", GROUPS[8]),
            ("./malloc/./malloc/malloc.c:calloc", GROUPS[8]),
            (
                "/r/index.crates.io-x/smoltcp-0.14.0/src/socket/udp.rs:smoltcp::socket::udp::Socket::recv_slice",
                GROUPS[6],
            ),
            (
                "/rustc/abc/library/core/src/option.rs:loopstack_socket::stack::Stack::poll",
                GROUPS[7],
            ),
            ("/w/benches/sidebyside/poll.rs:burst", GROUPS[0]),
            ("???:something", GROUPS[10]),
        ];
        for (entry, want) in cases {
            assert_eq!(group(entry), want, "{entry}");
        }
    }
}
