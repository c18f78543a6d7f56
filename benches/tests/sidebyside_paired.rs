//! The paired measurement (`benches/sidebyside/paired.rs`, the `sidebyside-paired` binary):
//! it runs both implementations for the rounds asked and reports ratios that are real
//! numbers. Nothing here judges a timing.

use std::process::Command;
use std::time::Duration;

use loopstack_benches::sidebyside::paired::{calibrate, paired, quartiles, Run};
use loopstack_benches::sidebyside::Family;

#[test]
fn paired_rounds_give_one_positive_ratio_each() {
    let mut a = Run::build("loopstack-poll", "udp_rtt_64B", Family::V6).expect("known names");
    let mut b = Run::build("smoltcp", "udp_rtt_64B", Family::V6).expect("known names");
    let n = calibrate(&mut a, Duration::from_micros(200));
    assert!((1..=1 << 20).contains(&n), "{n}");
    let ratios = paired(&mut a, &mut b, n, 5);
    assert_eq!(ratios.len(), 5);
    assert!(
        ratios.iter().all(|r| r.is_finite() && *r > 0.0),
        "{ratios:?}"
    );
    let (q1, median, q3) = quartiles(&ratios).expect("five ratios");
    assert!(q1 <= median && median <= q3, "{q1} {median} {q3}");
}

#[test]
fn the_binary_prints_one_line_per_family() {
    let out = Command::new(env!("CARGO_BIN_EXE_sidebyside-paired"))
        .args(["--quick", "udp_oneway_64B"])
        .output()
        .expect("run sidebyside-paired");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, family) in lines.iter().zip(["v4", "v6"]) {
        assert_eq!(line.len(), 9, "{line:?}");
        assert_eq!(
            line[..4],
            ["udp_oneway_64B", family, "loopstack-poll", "smoltcp"]
        );
        let q: Vec<f64> = line[6..].iter().map(|v| v.parse().unwrap()).collect();
        assert!(q[0] > 0.0 && q[0] <= q[1] && q[1] <= q[2], "{line:?}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_sidebyside-paired"))
        .arg("sctp")
        .output()
        .expect("run sidebyside-paired");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "an unknown scenario is a usage error"
    );
}

#[test]
fn pairs_can_be_chosen_and_the_floor_has_the_udp_scenarios_only() {
    let out = Command::new(env!("CARGO_BIN_EXE_sidebyside-paired"))
        .args(["--quick", "--pair=floor:smoltcp"])
        .output()
        .expect("run sidebyside-paired");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let heads: Vec<&[&str]> = lines.iter().map(|l| &l[..4]).collect();
    assert_eq!(
        heads,
        [
            ["udp_rtt_64B", "v4", "floor", "smoltcp"],
            ["udp_rtt_64B", "v6", "floor", "smoltcp"],
            ["udp_oneway_64B", "v4", "floor", "smoltcp"],
            ["udp_oneway_64B", "v6", "floor", "smoltcp"],
        ],
        "{text}"
    );
    for bad in [
        "--pair=floor",
        "--pair=:smoltcp",
        "--pair=floor:",
        "--pair=lwip:smoltcp",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sidebyside-paired"))
            .arg(bad)
            .output()
            .expect("run sidebyside-paired");
        assert_eq!(out.status.code(), Some(2), "{bad} is a usage error");
    }
    // A named scenario that one side lacks is an error, not a silent skip.
    let out = Command::new(env!("CARGO_BIN_EXE_sidebyside-paired"))
        .args(["--quick", "--pair=floor:smoltcp", "tcp_bulk"])
        .output()
        .expect("run sidebyside-paired");
    assert!(!out.status.success(), "the floor has no TCP bulk");
}
