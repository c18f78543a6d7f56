//! `sidebyside-paired [--quick] [--pair=A:B ...] [SCENARIO...]`: times loopstack's poll mode against smoltcp
//! in alternating slices of a few milliseconds ([`paired`]), and prints the quartiles of
//! the per-round time ratios.
//!
//! Only the single-threaded pair is timed this way. The two-thread scenarios (loopstack's
//! blocking mode and the kernel's `lo`) stop busy-polling and go to sleep while the other
//! side has its slice, and a slice then starts with thread wake-ups that cost a scheduler
//! round trip each (up to hundreds of microseconds on this VM): measured in slices, a
//! 1-byte TCP round trip in blocking mode came out at 10-18 times the kernel's, against
//! 0.1 times in steady running. Tried again in the nineteenth session, after items 27 and
//! 28 (docs/benchmarks.md), the slices' medians ranged from 0.02 to 15 times the kernel's
//! within one full run: each slice measures a start from idle. Their ratio stays
//! criterion's.
//!
//! Every scenario of [`SCENARIOS`] runs (or those named), over IPv4 and IPv6. Each output
//! line is one pair, tab-separated:
//!
//! ```text
//! scenario  family  a  b  iterations-per-slice  rounds  q1  median  q3
//! ```
//!
//! where the last three are quartiles of `a`'s time over `b`'s for the same iterations
//! (below 1: `a` is faster). `cargo xtask bench` runs it and puts the medians in the table.
//! `--quick` uses 1 ms slices and 12 rounds instead of 5 ms and 40. `--pair=A:B` (repeatable)
//! times other pairs instead, by the names `Run::build` knows, `floor` included: with no
//! scenario named, the scenarios both sides have (`--pair=floor:smoltcp` times the two UDP
//! scenarios, docs/benchmarks.md item 25).

use std::process::ExitCode;
use std::time::Duration;

use loopstack_benches::sidebyside::paired::{calibrate, paired, quartiles, Run, IMPLS, SCENARIOS};
use loopstack_benches::sidebyside::Family;

/// Large buffers on page boundaries, so that no implementation's bulk copies land in the
/// 4 KiB-aliasing slow case by where malloc put them (`PageAlignedLarge`).
#[global_allocator]
static GLOBAL: loopstack_testkit::PageAlignedLarge = loopstack_testkit::PageAlignedLarge;

/// The pairs: loopstack's implementation first, its peer second.
const PAIRS: [(&str, &str); 1] = [("loopstack-poll", "smoltcp")];

/// Whether `imp` names an implementation `Run::build` knows.
fn known(imp: &str) -> bool {
    IMPLS.contains(&imp) || imp == "floor"
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: sidebyside-paired [--quick] [--pair=A:B ...] [SCENARIO...], SCENARIO one of {}; \
         A and B one of {} or floor (default pair: loopstack-poll:smoltcp)",
        SCENARIOS.join(", "),
        IMPLS.join(", ")
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut quick = false;
    let mut only = Vec::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            s if SCENARIOS.contains(&s) => only.push(s.to_owned()),
            s if s.starts_with("--pair=") => match s["--pair=".len()..].split_once(':') {
                Some((a, b)) if known(a) && known(b) => {
                    pairs.push((a.to_owned(), b.to_owned()));
                }
                _ => return usage(),
            },
            _ => return usage(),
        }
    }
    let pairs_given = !pairs.is_empty();
    if pairs.is_empty() {
        pairs = PAIRS.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec();
    }
    let (slice, rounds) = if quick {
        (Duration::from_millis(1), 12)
    } else {
        (Duration::from_millis(5), 40)
    };
    for scenario in SCENARIOS {
        if !only.is_empty() && !only.iter().any(|s| s == scenario) {
            continue;
        }
        for family in Family::ALL {
            for (a, b) in &pairs {
                let (Some(mut ra), Some(mut rb)) = (
                    Run::build(a, scenario, family),
                    Run::build(b, scenario, family),
                ) else {
                    if only.is_empty() && pairs_given {
                        // `--pair` with no scenario named: only the scenarios both
                        // sides have (the floor has only the UDP ones).
                        continue;
                    }
                    eprintln!("sidebyside-paired: cannot build {a} or {b} for {scenario}");
                    return ExitCode::FAILURE;
                };
                // The slice length is set by loopstack's side; the peer runs the same
                // number of iterations.
                let n = calibrate(&mut ra, slice);
                let ratios = paired(&mut ra, &mut rb, n, rounds);
                let Some((q1, median, q3)) = quartiles(&ratios) else {
                    eprintln!("sidebyside-paired: no ratios for {scenario} {a} {b}");
                    return ExitCode::FAILURE;
                };
                println!(
                    "{scenario}\t{}\t{a}\t{b}\t{n}\t{rounds}\t{q1:.4}\t{median:.4}\t{q3:.4}",
                    family.name()
                );
            }
        }
    }
    ExitCode::SUCCESS
}
