//! `sidebyside-peak IMPL SCENARIO FAMILY [ITERATIONS]`: runs one side-by-side scenario in a
//! process of its own and prints its peak resident memory (`VmHWM` of /proc/self/status) in
//! KiB, so that each scenario's memory is measured alone.
//!
//! IMPL is `loopstack-poll`, `smoltcp`, `kernel` or `loopstack-blocking`; SCENARIO is
//! `tcp_bulk`, `tcp_rtt_1B`, `tcp_rtt_64B`, `udp_rtt_64B` or `udp_oneway_64B`; FAMILY is
//! `v4` or `v6`. The output is one line: `peak_kib=N`.

use std::process::ExitCode;

use loopstack_benches::sidebyside::paired::Run;
use loopstack_benches::sidebyside::Family;

// No `PageAlignedLarge` here, unlike the timing binaries: this one measures memory, and
// over-aligned zeroed blocks are zeroed by hand (a `calloc` of fresh pages is not), which
// would put every page of the pool in the resident set (24.4 MiB instead of 19.1 for
// bulk). `cargo xtask icount` runs this binary too, and counts with the system allocator.

/// `VmHWM`, the peak resident set, in KiB.
fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        eprintln!("usage: sidebyside-peak IMPL SCENARIO v4|v6 [ITERATIONS]");
        ExitCode::from(2)
    };
    if args.len() < 3 || args.len() > 4 {
        return usage();
    }
    let family = match args[2].as_str() {
        "v4" => Family::V4,
        "v6" => Family::V6,
        _ => return usage(),
    };
    let n = match args.get(3).map(|s| s.parse::<usize>()) {
        None => 200,
        Some(Ok(n)) => n,
        Some(Err(_)) => return usage(),
    };
    let Some(mut run) = Run::build(&args[0], &args[1], family) else {
        return usage();
    };
    run.go(n);
    match peak_kib() {
        Some(kib) => {
            println!("peak_kib={kib}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("sidebyside-peak: no VmHWM in /proc/self/status");
            ExitCode::FAILURE
        }
    }
}
