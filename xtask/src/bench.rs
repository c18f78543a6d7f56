//! `cargo xtask bench [--quick]`: runs the side-by-side benchmarks (benches/side_by_side.rs),
//! measures each scenario's peak memory in a process of its own, times loopstack's poll mode
//! against smoltcp in alternating slices (`sidebyside-paired`), and writes the tables into
//! docs/benchmarks.md between the markers `<!-- sidebyside:begin -->` and
//! `<!-- sidebyside:end -->`.
//!
//! The medians come from criterion's own files (`target/criterion/**/new/estimates.json`), so
//! the table is exactly what criterion measured. `--quick` runs each benchmark for about a
//! second instead of eight: a rough table in under two minutes once the benches are built.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use serde_json::Value;

const BEGIN: &str = "<!-- sidebyside:begin -->";
const END: &str = "<!-- sidebyside:end -->";

/// The implementations, in column order, as the benchmark names them.
const IMPLS: [&str; 4] = ["loopstack-poll", "smoltcp", "kernel", "loopstack-blocking"];

/// The scenarios, in row order: criterion group prefix, what the row says, and whether the
/// figure is a rate (higher is better) or a time (lower is better).
const SCENARIOS: [(&str, &str, Kind); 5] = [
    ("tcp_bulk", "TCP bulk, 64 KiB writes and reads", Kind::Bytes),
    ("tcp_rtt_1B", "TCP ping-pong, 1 byte", Kind::Time),
    ("tcp_rtt_64B", "TCP ping-pong, 64 bytes", Kind::Time),
    ("udp_rtt_64B", "UDP ping-pong, 64 bytes", Kind::Time),
    (
        "udp_oneway_64B",
        "UDP one way, 64-byte datagrams",
        Kind::Elements,
    ),
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// GB/s.
    Bytes,
    /// µs per round trip.
    Time,
    /// Million datagrams per second.
    Elements,
}

/// One benchmark's result: the median time per iteration, and the throughput per iteration.
#[derive(Debug, Clone, Copy)]
struct Measured {
    median_ns: f64,
    per_iter: f64,
}

impl Measured {
    /// The figure the table shows for `kind`.
    fn figure(self, kind: Kind) -> f64 {
        match kind {
            Kind::Bytes => self.per_iter / self.median_ns, // bytes per ns = GB/s
            Kind::Time => self.median_ns / 1000.0,         // µs
            Kind::Elements => self.per_iter / self.median_ns * 1000.0, // M per s
        }
    }
}

pub fn run(quick: bool) -> ExitCode {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = workspace_root();
    let criterion_dir = root.join("target/criterion");
    // Old results of groups that no longer run must not leak into the table.
    for (prefix, _, _) in SCENARIOS {
        for entry in std::fs::read_dir(&criterion_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix) || name == "memcpy" || name == "handoff" {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let command = if quick {
        "cargo xtask bench --quick"
    } else {
        "cargo xtask bench"
    };
    eprintln!("==> {command}: the side-by-side benchmarks");
    if !run_benches(&cargo, &["sidebyside"], quick, &[]) {
        return ExitCode::FAILURE;
    }
    let results = match read_criterion(&criterion_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("==> cannot read criterion's results: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("==> peak memory, one process per scenario");
    let peaks = match peak_memory(&cargo) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("==> peak memory: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("==> paired ratios: loopstack poll and smoltcp in alternating slices");
    let paired = match paired_ratios(&cargo, quick) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("==> paired ratios: {e}");
            return ExitCode::FAILURE;
        }
    };
    let smoltcp = smoltcp_version(&root);
    let section = render(
        &results,
        &peaks,
        &paired,
        smoltcp.as_deref(),
        quick,
        command,
    );
    write_section(&root.join("docs/benchmarks.md"), BEGIN, END, &section)
}

/// Replaces the part of `doc` from `begin` to `end` (markers included; `section` carries
/// them) with `section`, or appends `section` if the markers are missing; prints it.
pub fn write_section(doc: &Path, begin: &str, end: &str, section: &str) -> ExitCode {
    let text = std::fs::read_to_string(doc).unwrap_or_default();
    let updated = match (text.find(begin), text.find(end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{section}{}", &text[..b], &text[e + end.len()..])
        }
        _ => format!("{text}\n{section}\n"),
    };
    if let Err(e) = std::fs::write(doc, updated) {
        eprintln!("==> cannot write {}: {e}", doc.display());
        return ExitCode::FAILURE;
    }
    println!("{section}");
    eprintln!("==> wrote {}", doc.display());
    ExitCode::SUCCESS
}

pub fn workspace_root() -> PathBuf {
    // xtask's manifest is <root>/xtask/Cargo.toml.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Every `new/benchmark.json` under `dir`, by full id (`tcp_bulk/v4/smoltcp`).
fn read_criterion(dir: &Path) -> Result<BTreeMap<String, Measured>, String> {
    let mut out = BTreeMap::new();
    for path in benchmark_files(dir)? {
        let bench = read_json(&path)?;
        let median_ns = median_ns(&path)?;
        let id = bench["full_id"].as_str().unwrap_or_default().to_owned();
        let throughput = &bench["throughput"];
        let per_iter = throughput["Bytes"]
            .as_f64()
            .or_else(|| throughput["Elements"].as_f64())
            .unwrap_or(1.0);
        out.insert(
            id,
            Measured {
                median_ns,
                per_iter,
            },
        );
    }
    Ok(out)
}

/// The median time per iteration, in ns, of the benchmark whose `benchmark.json` is at
/// `benchmark_json`: from the `estimates.json` beside it.
pub fn median_ns(benchmark_json: &Path) -> Result<f64, String> {
    let new = benchmark_json.parent().unwrap_or(benchmark_json);
    read_json(&new.join("estimates.json"))?["median"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no median in estimates.json", new.display()))
}

/// Every `new/benchmark.json` under `dir`: one per benchmark criterion has run.
pub fn benchmark_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.ends_with("new/benchmark.json") {
                out.push(path);
            }
        }
    }
    Ok(out)
}

pub fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Peak resident memory in KiB by `scenario/family/impl`, each run alone by the
/// `sidebyside-peak` binary.
fn peak_memory(cargo: &str) -> Result<BTreeMap<String, u64>, String> {
    let bin = build_runner(cargo)?;
    let mut out = BTreeMap::new();
    for (scenario, _, _) in SCENARIOS {
        for family in ["v4", "v6"] {
            for imp in IMPLS {
                let o = Command::new(&bin)
                    .args([imp, scenario, family])
                    .output()
                    .map_err(|e| format!("{}: {e}", bin.display()))?;
                let text = String::from_utf8_lossy(&o.stdout);
                let kib = text
                    .trim()
                    .strip_prefix("peak_kib=")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| {
                        format!(
                            "{imp} {scenario} {family}: {}",
                            String::from_utf8_lossy(&o.stderr)
                        )
                    })?;
                out.insert(format!("{scenario}/{family}/{imp}"), kib);
            }
        }
    }
    Ok(out)
}

/// Builds `sidebyside-peak`, which runs one scenario a given number of times in a process
/// of its own, with the bench profile, and returns its path.
pub fn build_runner(cargo: &str) -> Result<PathBuf, String> {
    build_bench_bin(cargo, "sidebyside-peak")
}

/// Builds the benches crate's binary `name` with the bench profile and returns its path.
fn build_bench_bin(cargo: &str, name: &str) -> Result<PathBuf, String> {
    let built = Command::new(cargo)
        .args([
            "build",
            "--profile",
            "bench",
            "-p",
            "loopstack-benches",
            "--bin",
            name,
        ])
        .status()
        .map_err(|e| e.to_string())?;
    if !built.success() {
        return Err(format!("cannot build {name}"));
    }
    Ok(workspace_root().join("target/release").join(name))
}

/// Quartiles of the per-round time ratio loopstack poll / smoltcp, by `scenario/family`,
/// from `sidebyside-paired` (benches/paired.rs), which times the two in alternating slices.
fn paired_ratios(cargo: &str, quick: bool) -> Result<BTreeMap<String, Quartiles>, String> {
    let bin = build_bench_bin(cargo, "sidebyside-paired")?;
    let mut run = Command::new(&bin);
    if quick {
        run.arg("--quick");
    }
    let o = run
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    if !o.status.success() {
        return Err(format!(
            "sidebyside-paired failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    parse_paired(&String::from_utf8_lossy(&o.stdout))
}

/// Reads `sidebyside-paired`'s lines: scenario, family, a, b, iterations, rounds, q1,
/// median, q3, tab-separated.
fn parse_paired(text: &str) -> Result<BTreeMap<String, Quartiles>, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let num = |i: usize| -> Result<f64, String> {
            f.get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("sidebyside-paired: bad line {line:?}"))
        };
        if f.len() != 9 {
            return Err(format!("sidebyside-paired: bad line {line:?}"));
        }
        let q = Quartiles {
            q1: num(6)?,
            median: num(7)?,
            q3: num(8)?,
        };
        out.insert(format!("{}/{}", f[0], f[1]), q);
    }
    Ok(out)
}

/// Quartiles of a time ratio over the rounds of a paired measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quartiles {
    q1: f64,
    median: f64,
    q3: f64,
}

impl Quartiles {
    /// The table's cell for `kind`: the ratio of loopstack's figure to smoltcp's, which for
    /// a rate is the inverse of the time ratio (so the quartiles swap).
    fn cell(self, kind: Kind) -> String {
        let (lo, mid, hi) = match kind {
            Kind::Time => (self.q1, self.median, self.q3),
            Kind::Bytes | Kind::Elements => (1.0 / self.q3, 1.0 / self.median, 1.0 / self.q1),
        };
        format!("{mid:.2} ({lo:.2}-{hi:.2})")
    }
}

pub fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The machine, as one line: CPU model, cores, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |k| k / 1024.0 / 1024.0);
    format!(
        "{model}, {cores} cores, {mem_gib:.0} GiB, {}",
        command_output("uname", &["-sr"])
    )
}

/// Runs `cargo bench -p loopstack-benches` on the bench `targets`: with criterion's
/// timings shortened to about a second per benchmark if `quick`, else with `full` (empty:
/// criterion's defaults). False if a benchmark failed.
pub fn run_benches(cargo: &str, targets: &[&str], quick: bool, full: &[&str]) -> bool {
    let mut bench = Command::new(cargo);
    bench.args(["bench", "-p", "loopstack-benches"]);
    for target in targets {
        bench.args(["--bench", target]);
    }
    bench.arg("--");
    if quick {
        bench.args([
            "--warm-up-time",
            "0.3",
            "--measurement-time",
            "0.7",
            "--sample-size",
            "10",
        ]);
    } else {
        bench.args(full);
    }
    let ok = bench.status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("==> the benchmarks failed");
    }
    ok
}

/// The lines every generated table starts with: where, with what, how and when it ran.
pub fn provenance(s: &mut String, command: &str) {
    let _ = writeln!(s, "- **Machine:** {}", machine());
    let _ = writeln!(
        s,
        "- **Toolchain:** {}",
        command_output("rustc", &["--version"])
    );
    let _ = writeln!(s, "- **Command:** `{command}`");
    let _ = writeln!(
        s,
        "- **Date:** {}",
        command_output("date", &["-u", "+%Y-%m-%d"])
    );
}

/// Which smoltcp the tables measured: the version the workspace's Cargo.lock pins, not
/// the requirement in Cargo.toml.
pub fn smoltcp_version(root: &Path) -> Option<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).ok()?;
    locked_version(&lock, "smoltcp")
}

/// The version of package `name` in a Cargo.lock's text, if it holds exactly one.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let want = format!("name = \"{name}\"");
    let mut found = lock
        .split("[[package]]")
        .filter(|entry| entry.lines().any(|l| l.trim() == want))
        .filter_map(|entry| {
            entry.lines().find_map(|l| {
                let v = l.trim().strip_prefix("version = \"")?.strip_suffix('"')?;
                Some(v.to_string())
            })
        });
    let version = found.next()?;
    found.next().is_none().then_some(version)
}

fn render(
    results: &BTreeMap<String, Measured>,
    peaks: &BTreeMap<String, u64>,
    paired: &BTreeMap<String, Quartiles>,
    smoltcp: Option<&str>,
    quick: bool,
    command: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(
        s,
        "## Side by side: loopstack, smoltcp and the kernel's `lo`\n"
    );
    let _ = writeln!(
        s,
        "Written by `{command}`{}. Medians of criterion's estimates; every implementation ran \
         the same scenario in the same run (benches/side_by_side.rs, scenarios in \
         benches/sidebyside/).\n",
        if quick {
            " (quick: about a second per benchmark, so rough)"
        } else {
            ""
        }
    );
    provenance(&mut s, command);
    if let Some(version) = smoltcp {
        let _ = writeln!(s, "- **Peer:** smoltcp {version} (as Cargo.lock pins it)");
    }
    let memcpy = results.get("memcpy/64KiB").map(|m| m.figure(Kind::Bytes));
    if let Some(gbs) = memcpy {
        let _ = writeln!(
            s,
            "- **Physical limit:** memcpy of 64 KiB blocks in cache: {gbs:.1} GB/s (a stack \
             that copies each byte in and out can reach at most half)"
        );
    }
    let handoff = results.get("handoff/64KiB").map(|m| m.figure(Kind::Bytes));
    if let Some(gbs) = handoff {
        let _ = writeln!(
            s,
            "- **Two-thread limit:** two threads handing 64 KiB chunks over, one copying \
             each in and the other out, no stack (`handoff/64KiB`, measured right after the \
             bulk rows): {gbs:.1} GB/s. On a VM this moves between runs with where the host \
             runs the two vCPUs, and the blocking bulk column with it (item 35)"
        );
    }
    let _ = writeln!(
        s,
        "\nGB/s for bulk, µs per round trip for ping-pong, million datagrams per second one \
         way. Ratios are loopstack's figure over the peer's: above 1 is better for rates, \
         below 1 is better for times. *Paired* is the median and quartiles of the same ratio \
         measured in alternating slices of a few milliseconds (`sidebyside-paired`, \
         benches/paired.rs), which a machine whose speed drifts between criterion's \
         benchmarks does not skew.\n"
    );
    let _ = writeln!(
        s,
        "| scenario | family | loopstack poll | smoltcp | kernel `lo` | loopstack blocking | poll / smoltcp | poll / smoltcp, paired | blocking / kernel |"
    );
    let _ = writeln!(
        s,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (prefix, label, kind) in SCENARIOS {
        for family in ["v4", "v6"] {
            let get = |imp: &str| {
                results
                    .get(&format!("{prefix}/{family}/{imp}"))
                    .map(|m| m.figure(kind))
            };
            let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), fmt3);
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".to_owned(),
            };
            let v: Vec<Option<f64>> = IMPLS.iter().map(|i| get(i)).collect();
            let pair = paired
                .get(&format!("{prefix}/{family}"))
                .map_or_else(|| "-".to_owned(), |q| q.cell(kind));
            let _ = writeln!(
                s,
                "| {label} | {family} | {} | {} | {} | {} | {} | {pair} | {} |",
                cell(v[0]),
                cell(v[1]),
                cell(v[2]),
                cell(v[3]),
                ratio(v[0], v[1]),
                ratio(v[3], v[2]),
            );
        }
    }
    let _ = writeln!(
        s,
        "\nPeak resident memory of each scenario, in MiB, each run alone in a process of its \
         own (`sidebyside-peak`, 200 iterations after warm-up; binary and libraries \
         included):\n"
    );
    let _ = writeln!(
        s,
        "| scenario | family | loopstack poll | smoltcp | kernel `lo` | loopstack blocking |"
    );
    let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: | ---: |");
    for (prefix, label, _) in SCENARIOS {
        for family in ["v4", "v6"] {
            let cells: Vec<String> = IMPLS
                .iter()
                .map(|i| {
                    peaks
                        .get(&format!("{prefix}/{family}/{i}"))
                        .map_or_else(|| "-".to_owned(), |k| format!("{:.1}", *k as f64 / 1024.0))
                })
                .collect();
            let _ = writeln!(s, "| {label} | {family} | {} |", cells.join(" | "));
        }
    }
    let _ = write!(s, "{END}");
    s
}

/// Three significant figures, as a table wants them.
fn fmt3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_locked_version_of_a_package_is_found() {
        let lock = "version = 4\n\n[[package]]\nname = \"smoltcp-extra\"\nversion = \"9.9.9\"\n\n\
                    [[package]]\nname = \"smoltcp\"\nversion = \"0.14.0\"\nsource = \"registry\"\n";
        assert_eq!(locked_version(lock, "smoltcp").as_deref(), Some("0.14.0"));
        assert_eq!(locked_version(lock, "criterion"), None);
        // Two versions of one package in the lock: which one the table measured is not
        // known, so none is claimed.
        let two = format!("{lock}\n[[package]]\nname = \"smoltcp\"\nversion = \"0.12.0\"\n");
        assert_eq!(locked_version(&two, "smoltcp"), None);
    }

    #[test]
    fn paired_lines_parse_and_bad_ones_are_refused() {
        let text = "tcp_bulk\tv4\tloopstack-poll\tsmoltcp\t64\t40\t0.5\t0.55\t0.6\n\
                    udp_rtt_64B\tv6\tloopstack-poll\tsmoltcp\t8192\t40\t1.4\t1.5\t1.6\n";
        let p = parse_paired(text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p["udp_rtt_64B/v6"],
            Quartiles {
                q1: 1.4,
                median: 1.5,
                q3: 1.6
            }
        );
        for bad in [
            "tcp_bulk\tv4\tloopstack-poll\tsmoltcp\t64\t40\t0.5\t0.55",
            "tcp_bulk\tv4\tloopstack-poll\tsmoltcp\t64\t40\t0.5\tNaN\t0.6",
            "tcp_bulk\tv4\tloopstack-poll\tsmoltcp\t64\t40\t0.5\t0\t0.6",
        ] {
            assert!(parse_paired(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn both_limits_are_reported_when_measured() {
        let mib = Measured {
            median_ns: 100_000.0,
            per_iter: 1_048_576.0,
        };
        let mut results = BTreeMap::new();
        results.insert("memcpy/64KiB".to_owned(), mib);
        let none = BTreeMap::new();
        let without = render(&results, &none, &BTreeMap::new(), None, false, "x");
        assert!(without.contains("memcpy of 64 KiB blocks in cache: 10.5 GB/s"));
        assert!(!without.contains("Two-thread limit"));
        results.insert("handoff/64KiB".to_owned(), mib);
        let with = render(&results, &none, &BTreeMap::new(), None, false, "x");
        assert!(
            with.contains("(`handoff/64KiB`, measured right after the bulk rows): 10.5 GB/s"),
            "{with}"
        );
    }

    #[test]
    fn a_rate_cell_inverts_the_time_ratio_and_swaps_its_quartiles() {
        let q = Quartiles {
            q1: 0.4,
            median: 0.5,
            q3: 0.8,
        };
        assert_eq!(q.cell(Kind::Time), "0.50 (0.40-0.80)");
        assert_eq!(q.cell(Kind::Bytes), "2.00 (1.25-2.50)");
        assert_eq!(q.cell(Kind::Elements), "2.00 (1.25-2.50)");
    }
}
