//! The tour's options checked before anything runs: a bad fault percentage, a capture file
//! that cannot be created, or a seed that is not a number each end the `loopstack` binary with
//! one line on stderr and status 2. (The capture itself is checked in `tests/tour.rs`.)

use std::process::Command;

#[test]
fn the_binary_rejects_bad_options_with_status_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_loopstack"))
        .args(["tour", "--drop", "150", "--no-trace"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "loopstack: invalid value '150' for '--drop <PCT>': expected a percentage from 0 to 100\n"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_loopstack"))
        .args(["tour", "--pcap", "/nonexistent-dir/x.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot create capture file"));

    let out = Command::new(env!("CARGO_BIN_EXE_loopstack"))
        .args(["tour", "--seed", "not-a-number"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
