//! `cargo xtask layers [--quick]`: runs the per-layer micro-benchmarks (benches/pool.rs,
//! link.rs, internet.rs, checksum.rs, transport.rs) and writes a table of their medians into
//! docs/benchmarks.md between the markers `<!-- layers:begin -->` and `<!-- layers:end -->`.
//!
//! These are the benchmarks that locate a regression: when a side-by-side scenario gets
//! slower, the layer whose row moved is where to look. Hand-copied figures went stale as the
//! code changed under them; a table this command writes is always of one run of one build.
//!
//! The medians come from criterion's own files, as in `bench.rs`. The default run gives each
//! benchmark one second of warm-up and three of measurement (about five minutes in all once
//! built); `--quick` a third of a second and 0.7 s, a rough table in about 75 seconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::bench::{
    benchmark_files, median_ns, provenance, read_json, run_benches, workspace_root, write_section,
};

const BEGIN: &str = "<!-- layers:begin -->";
const END: &str = "<!-- layers:end -->";

/// The bench targets, bottom layer first.
const TARGETS: [&str; 5] = ["pool", "link", "internet", "checksum", "transport"];

/// Criterion groups in table order, each with the bench target that defines it. A group not
/// listed here (the side-by-side scenarios) is not this table's business.
const GROUPS: [(&str, &str); 11] = [
    ("pool", "pool"),
    ("loopback ring", "link"),
    ("middleware round trip (92-byte UDP packet)", "link"),
    ("internet ingress", "internet"),
    ("internet egress", "internet"),
    ("route lookup", "internet"),
    ("ping", "internet"),
    ("checksum", "checksum"),
    ("checksum verify", "checksum"),
    ("udp", "transport"),
    ("tcp", "transport"),
];

/// One benchmark's median and what one iteration carries.
struct Row {
    /// The benchmark's name within its group (criterion's function id, and its parameter).
    name: String,
    median_ns: f64,
    throughput: Throughput,
}

enum Throughput {
    Bytes(f64),
    Elements(f64),
    None,
}

pub fn run(quick: bool) -> ExitCode {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = workspace_root();
    let criterion_dir = root.join("target/criterion");
    // Results of benchmarks since renamed or removed must not stay in the table.
    if let Err(e) = remove_old_results(&criterion_dir) {
        eprintln!("==> cannot clear old results: {e}");
        return ExitCode::FAILURE;
    }
    let command = if quick {
        "cargo xtask layers --quick"
    } else {
        "cargo xtask layers"
    };
    eprintln!("==> {command}: the per-layer micro-benchmarks");
    let full = ["--warm-up-time", "1", "--measurement-time", "3"];
    if !run_benches(&cargo, &TARGETS, quick, &full) {
        return ExitCode::FAILURE;
    }
    let rows = match read_rows(&criterion_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("==> cannot read criterion's results: {e}");
            return ExitCode::FAILURE;
        }
    };
    let missing: Vec<&str> = GROUPS
        .iter()
        .map(|(g, _)| *g)
        .filter(|g| !rows.contains_key(*g))
        .collect();
    if !missing.is_empty() {
        eprintln!("==> no results for the groups {missing:?}: renamed in benches/?");
        return ExitCode::FAILURE;
    }
    let section = render(&rows, quick, command);
    write_section(&root.join("docs/benchmarks.md"), BEGIN, END, &section)
}

/// Removes every result directory under `dir` that belongs to one of [`GROUPS`].
fn remove_old_results(dir: &Path) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // nothing run yet
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && group_of(&path)?.is_some_and(|g| GROUPS.iter().any(|(n, _)| *n == g)) {
            std::fs::remove_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The criterion group whose results a top-level directory holds: the `group_id` of the
/// first `new/benchmark.json` found under it.
fn group_of(dir: &Path) -> Result<Option<String>, String> {
    match benchmark_files(dir)?.first() {
        Some(path) => Ok(read_json(path)?["group_id"].as_str().map(str::to_owned)),
        None => Ok(None),
    }
}

/// Every result of [`GROUPS`] under `dir`, by group, in name order.
fn read_rows(dir: &Path) -> Result<BTreeMap<String, Vec<Row>>, String> {
    let mut out: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for path in benchmark_files(dir)? {
        let bench = read_json(&path)?;
        let group = bench["group_id"].as_str().unwrap_or_default();
        if !GROUPS.iter().any(|(g, _)| *g == group) {
            continue;
        }
        let median_ns = median_ns(&path)?;
        let mut name = bench["function_id"].as_str().unwrap_or_default().to_owned();
        if let Some(value) = bench["value_str"].as_str() {
            let _ = write!(name, "/{value}");
        }
        let t = &bench["throughput"];
        let throughput = if let Some(b) = t["Bytes"].as_f64() {
            Throughput::Bytes(b)
        } else if let Some(e) = t["Elements"].as_f64() {
            Throughput::Elements(e)
        } else {
            Throughput::None
        };
        out.entry(group.to_owned()).or_default().push(Row {
            name,
            median_ns,
            throughput,
        });
    }
    for rows in out.values_mut() {
        rows.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(out)
}

fn render(rows: &BTreeMap<String, Vec<Row>>, quick: bool, command: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(
        s,
        "Written by `{command}`{}: criterion's median per iteration of each per-layer \
         benchmark, all from one run of one build.\n",
        if quick {
            " (quick: under a second per benchmark, so rough)"
        } else {
            ""
        }
    );
    provenance(&mut s, command);
    // One small table per group, its name once above it: markdown has no row spans, and a
    // single table repeated the group's name on every row.
    for (group, target) in GROUPS {
        let Some(group_rows) = rows.get(group).filter(|r| !r.is_empty()) else {
            continue;
        };
        let _ = writeln!(s, "\n**{group}** (benches/{target}.rs)\n");
        let _ = writeln!(s, "| benchmark | median | rate |");
        let _ = writeln!(s, "| --- | ---: | ---: |");
        for row in group_rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                row.name.replace('|', "\\|"),
                time(row.median_ns),
                rate(row),
            );
        }
    }
    let _ = writeln!(s, "{END}");
    s
}

/// A time in the unit that keeps three significant figures readable.
fn time(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.1} ns")
    }
}

/// What one second carries at the median: GB/s, or millions of elements.
fn rate(row: &Row) -> String {
    match row.throughput {
        Throughput::Bytes(b) => format!("{:.2} GB/s", b / row.median_ns),
        Throughput::Elements(e) => format!("{:.2} M/s", e / row.median_ns * 1000.0),
        Throughput::None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_rates_render_in_readable_units() {
        assert_eq!(time(33.46), "33.5 ns");
        assert_eq!(time(1_840.0), "1.84 µs");
        assert_eq!(time(2_500_000.0), "2.50 ms");
        let row = |throughput| Row {
            name: String::new(),
            median_ns: 2_000.0,
            throughput,
        };
        assert_eq!(rate(&row(Throughput::Bytes(65_536.0))), "32.77 GB/s");
        assert_eq!(rate(&row(Throughput::Elements(1.0))), "0.50 M/s");
        assert_eq!(rate(&row(Throughput::None)), "");
    }

    #[test]
    fn each_group_is_its_own_table_named_once() {
        let row = |name: &str, median_ns| Row {
            name: name.to_string(),
            median_ns,
            throughput: Throughput::None,
        };
        let mut rows = BTreeMap::new();
        // Out of table order on purpose: GROUPS decides the order, not the map.
        rows.insert("tcp".to_string(), vec![row("one_segment", 900.0)]);
        rows.insert(
            "pool".to_string(),
            vec![row("alloc+free small", 18.2), row("a|b", 21.6)],
        );
        let out = render(&rows, false, "cargo xtask layers");
        assert!(
            out.starts_with(BEGIN) && out.trim_end().ends_with(END),
            "{out}"
        );
        assert_eq!(
            out.matches("**pool** (benches/pool.rs)").count(),
            1,
            "{out}"
        );
        assert_eq!(out.matches("**tcp** (benches/transport.rs)").count(), 1);
        assert!(
            !out.contains("**udp**"),
            "a group without results gets no table"
        );
        assert_eq!(out.matches("| benchmark | median | rate |").count(), 2);
        let pool = out.find("**pool**").unwrap();
        let tcp = out.find("**tcp**").unwrap();
        assert!(pool < tcp, "groups in GROUPS order");
        assert!(out.contains("| alloc+free small | 18.2 ns |  |"), "{out}");
        assert!(
            out.contains("| a\\|b | 21.6 ns |  |"),
            "a bar in a name is escaped"
        );
        assert!(out[tcp..].contains("| one_segment | 900.0 ns |  |"));
    }

    #[test]
    fn every_group_names_a_bench_target() {
        for (group, target) in GROUPS {
            assert!(TARGETS.contains(&target), "{group}: {target}");
        }
    }
}
