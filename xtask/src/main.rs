//! Project automation, in Rust so it runs wherever cargo does (the `xtask` convention).
//!
//! `cargo xtask ci` runs exactly what CI runs, in the same order:
//!
//! 1. `cargo fmt --all --check`
//! 2. `cargo clippy --workspace --all-targets --all-features -- -D warnings`
//! 3. `cargo test --workspace` (unit, integration and doc tests)
//! 4. `cargo test -p loopstack --features interop --test interop`: the interop tests below
//! 5. `cargo test -p loopstack-benches --benches`: every criterion benchmark once, in test
//!    mode, so none of them rots (no timing is judged)
//! 6. `cargo doc --workspace --no-deps` with `RUSTDOCFLAGS=-D warnings`
//! 7. `cargo run -p loopstack -- tour`: the README's main command must keep working
//! 8. `cargo run -p loopstack --example echo_server` and
//! 9. `cargo run -p loopstack --example http_hello`: the blocking-socket examples, each a
//!    server and a client in one process that exits non-zero unless the answer is right
//!
//! `cargo xtask interop` runs the tests against the Linux kernel's own tools
//! (`crates/loopstack/tests/interop.rs`): the kernel's `ping`, `curl`, `nc` and
//! `python3 -m http.server` talk to `loopstack tun`, each test in a network namespace of its
//! own. It needs root and `/dev/net/tun`; where they are missing the tests say so in one
//! line and pass, unless `LOOPSTACK_REQUIRE_INTEROP=1` is set, as `.ci/run` sets it.
//!
//! `cargo xtask bench [--quick]` runs the side-by-side benchmarks (loopstack in poll and
//! blocking mode, smoltcp, the kernel's `lo`) and writes their table, with each scenario's
//! peak memory, into docs/benchmarks.md (see `bench.rs`).
//!
//! `cargo xtask layers [--quick]` runs the per-layer micro-benchmarks (pool, link, internet,
//! checksum, transport) and writes a table of their medians into docs/benchmarks.md (see
//! `layers.rs`).
//!
//! `cargo xtask icount` counts the instructions per operation of loopstack (poll mode) and
//! smoltcp in each side-by-side scenario, and of the floor in the UDP ones, under
//! callgrind, split by layer, and writes that table into docs/benchmarks.md (see
//! `icount.rs`). It needs valgrind. `cargo xtask icount --steps SCENARIO [v4|v6]` prints
//! loopstack's instructions in one scenario by step instead: each charged to the innermost
//! loopstack function it was inlined into (see `steps.rs`; also needs `llvm-symbolizer`).
//!
//! `cargo xtask soak` runs the TCP loss suite (`crates/loopstack-socket/tests/tcp_loss.rs`)
//! with many more seeds than CI does, optimised: 2000 seeds per sweep, 8000 transfers of
//! 1 MiB each way with up to 10% drop, duplication, reordering and corruption, plus 2000
//! at 30% drop.

use std::process::{Command, ExitCode};

mod bench;
mod icount;
mod layers;
mod steps;
use std::time::Instant;

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask <command>\n\ncommands:\n  ci       run every check CI runs\n  \
         interop  the kernel's ping, curl and nc against `loopstack tun` (root)\n  \
         bench    loopstack, smoltcp and the kernel side by side; writes docs/benchmarks.md\n  \
         \x20        (--quick: a rough table in under two minutes)\n  \
         layers   the per-layer micro-benchmarks; writes their table into\n  \
         \x20        docs/benchmarks.md (--quick: a rough table)\n  \
         icount   instructions per operation by layer, loopstack and smoltcp, under\n  \
         \x20        callgrind; writes docs/benchmarks.md (needs valgrind)\n  \
         \x20        (--steps SCENARIO [v4|v6]: one scenario's instructions by step,\n  \
         \x20        printed; needs llvm-symbolizer too)\n  \
         soak     the TCP loss suite with thousands of seeds (release build)"
    );
    ExitCode::from(2)
}

/// One step of a pipeline: a cargo invocation and extra environment.
struct Step {
    title: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

const CI: &[Step] = &[
    Step {
        title: "format",
        args: &["fmt", "--all", "--check"],
        env: &[],
    },
    Step {
        title: "clippy",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            // The interop tests build only with their feature: lint them too.
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        env: &[],
    },
    Step {
        title: "tests",
        args: &["test", "--workspace"],
        env: &[],
    },
    Step {
        title: "interop with the Linux kernel (TUN, network namespaces)",
        args: INTEROP_ARGS,
        env: &[],
    },
    Step {
        title: "benchmarks in test mode",
        args: &["test", "-p", "loopstack-benches", "--benches"],
        env: &[],
    },
    Step {
        title: "docs",
        args: &["doc", "--workspace", "--no-deps"],
        env: &[("RUSTDOCFLAGS", "-D warnings")],
    },
    Step {
        title: "tour (the README's main command)",
        args: &["run", "--quiet", "-p", "loopstack", "--", "tour"],
        env: &[],
    },
    Step {
        title: "example: echo server",
        args: &[
            "run",
            "--quiet",
            "-p",
            "loopstack",
            "--example",
            "echo_server",
        ],
        env: &[],
    },
    Step {
        title: "example: HTTP hello",
        args: &[
            "run",
            "--quiet",
            "-p",
            "loopstack",
            "--example",
            "http_hello",
        ],
        env: &[],
    },
];

fn run(steps: &[Step]) -> ExitCode {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let total = Instant::now();
    for (i, step) in steps.iter().enumerate() {
        eprintln!(
            "\n==> [{}/{}] {}: cargo {}",
            i + 1,
            steps.len(),
            step.title,
            step.args.join(" ")
        );
        let started = Instant::now();
        let status = Command::new(&cargo)
            .args(step.args)
            .envs(step.env.iter().copied())
            .status();
        match status {
            Ok(s) if s.success() => {
                eprintln!("==> {} passed in {:.1?}", step.title, started.elapsed());
            }
            Ok(s) => {
                eprintln!("==> {} FAILED ({s})", step.title);
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("==> could not run cargo: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!(
        "\n==> all {} steps passed in {:.1?}",
        steps.len(),
        total.elapsed()
    );
    ExitCode::SUCCESS
}

const SOAK: &[Step] = &[Step {
    title: "TCP loss soak",
    args: &[
        "test",
        "--release",
        "-p",
        "loopstack-socket",
        "--test",
        "tcp_loss",
    ],
    env: &[("LOOPSTACK_SOAK_SEEDS", "2000")],
}];

/// The interop tests: a step of `ci`, and `interop` on its own.
const INTEROP_ARGS: &[&str] = &[
    "test",
    "-p",
    "loopstack",
    "--features",
    "interop",
    "--test",
    "interop",
];

const INTEROP: &[Step] = &[Step {
    title: "interop with the Linux kernel (TUN, network namespaces)",
    args: INTEROP_ARGS,
    env: &[],
}];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") if args.len() == 1 => run(CI),
        Some("soak") if args.len() == 1 => run(SOAK),
        Some("interop") if args.len() == 1 => run(INTEROP),
        Some("bench") if args.len() == 1 => bench::run(false),
        Some("bench") if args.len() == 2 && args[1] == "--quick" => bench::run(true),
        Some("layers") if args.len() == 1 => layers::run(false),
        Some("layers") if args.len() == 2 && args[1] == "--quick" => layers::run(true),
        Some("icount") if args.len() == 1 => icount::run(),
        Some("icount") if (3..=4).contains(&args.len()) && args[1] == "--steps" => {
            steps::run(&args[2], args.get(3).map_or("v4", String::as_str))
        }
        _ => usage(),
    }
}
