//! The bulk scenario's peak resident memory stays within the packet pool's configured size
//! plus 16 MiB (issue 7): loopstack holds a transfer in its pool and socket buffers, not in
//! memory that grows with the data moved. Each run is a process of its own
//! (`sidebyside-peak`), so the figure is that scenario's alone.

use std::process::Command;

use loopstack_buf::PoolConfig;

/// What the scenarios' stacks are built with: the default pool.
fn limit_kib() -> u64 {
    (PoolConfig::default().total_bytes() as u64 + 16 * 1024 * 1024) / 1024
}

fn peak_kib(imp: &str, scenario: &str, family: &str, iterations: &str) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_sidebyside-peak"))
        .args([imp, scenario, family, iterations])
        .output()
        .expect("run sidebyside-peak");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{imp} {scenario} {family}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim()
        .strip_prefix("peak_kib=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output {text:?}"))
}

#[test]
fn bulk_peak_memory_stays_within_the_pool_plus_16_mib() {
    for imp in ["loopstack-poll", "loopstack-blocking"] {
        for family in ["v4", "v6"] {
            // 100 transfers of 1 MiB: 100 MiB moved, far more than the bound.
            let kib = peak_kib(imp, "tcp_bulk", family, "100");
            assert!(
                kib <= limit_kib(),
                "{imp} {family}: peak {kib} KiB, limit {} KiB",
                limit_kib()
            );
        }
    }
}

#[test]
fn the_peak_tool_refuses_bad_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_sidebyside-peak"))
        .args(["nonsense", "tcp_bulk", "v4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
