//! The tour's capture read back by Wireshark's own dissectors (`tshark`, when installed:
//! `.ci/run` installs it), and the `loopstack tour` command end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

use loopstack::link::FaultConfig;
use loopstack::tour::{self, TourOptions, TourReport};
use loopstack_testkit::SharedBuf;

/// A file in the test directory, named per process so concurrent runs never share one.
fn tmp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{name}", std::process::id()))
}

/// Runs the tour and writes its capture to `name` in the test directory.
fn tour_to_file(options: &TourOptions, name: &str) -> (TourReport, PathBuf) {
    let pcap = SharedBuf::default();
    let report = tour::run(options, &mut std::io::sink(), std::io::sink(), pcap.clone()).unwrap();
    let path = tmp(name);
    std::fs::write(&path, pcap.bytes()).unwrap();
    (report, path)
}

/// Records in a classic little-endian pcap file.
fn pcap_records(file: &[u8]) -> usize {
    let word = |i: usize| u32::from_le_bytes(file[i..i + 4].try_into().unwrap());
    assert_eq!(word(0), 0xa1b2_c3d4, "microsecond pcap magic");
    assert_eq!(word(20), 101, "LINKTYPE_RAW");
    let (mut i, mut n) = (24, 0);
    while i < file.len() {
        i += 16 + word(i + 8) as usize;
        n += 1;
    }
    assert_eq!(i, file.len());
    n
}

fn tshark() -> Option<PathBuf> {
    let found = Command::new("tshark").arg("--version").output().ok()?;
    found.status.success().then(|| PathBuf::from("tshark"))
}

/// Frames matching `filter` in the capture at `path`, every checksum check on. The echo's
/// test pattern looks like Thrift to a heuristic dissector, which then complains that the
/// message is cut short: that dissector is off.
fn tshark_count(tshark: &Path, path: &Path, filter: &str) -> usize {
    let out = Command::new(tshark)
        .arg("-r")
        .arg(path)
        .args(["--disable-protocol", "thrift"])
        .args(["-o", "ip.check_checksum:TRUE"])
        .args(["-o", "tcp.check_checksum:TRUE"])
        .args(["-o", "udp.check_checksum:TRUE"])
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

const BAD_CHECKSUM: &str = "ip.checksum.status == \"Bad\" || tcp.checksum.status == \"Bad\" \
     || udp.checksum.status == \"Bad\" || icmp.checksum.status == \"Bad\" \
     || icmpv6.checksum.status == \"Bad\"";

#[test]
fn wireshark_reads_every_packet_with_good_checksums() {
    let Some(tshark) = tshark() else {
        eprintln!("tshark is not installed: the capture was checked by the built-in parser only");
        return;
    };
    let (report, path) = tour_to_file(&TourOptions::default(), "tour-clean.pcap");
    let frames = tshark_count(&tshark, &path, "frame");
    assert_eq!(frames as u64, report.captured);
    assert_eq!(tshark_count(&tshark, &path, BAD_CHECKSUM), 0);
    assert_eq!(tshark_count(&tshark, &path, "_ws.malformed"), 0);
    // Every protocol the tour speaks is there, as Wireshark names it.
    for (filter, at_least) in [
        ("icmp.type == 8", 3),
        ("icmpv6.type == 128", 3),
        ("tcp.port == 65432 && tcp.len > 0", 32),
        ("udp.port == 7", 16),
        ("icmpv6.type == 1 && icmpv6.code == 4", 1),
        ("http.response.code == 200", 1),
    ] {
        let n = tshark_count(&tshark, &path, filter);
        assert!(n >= at_least, "{filter}: {n} frames");
    }
}

#[test]
fn wireshark_sees_the_corrupted_packets() {
    let Some(tshark) = tshark() else {
        return;
    };
    // The capture sits after the fault injector: corrupted packets are recorded corrupted,
    // and the same check that passes a clean capture flags them.
    let options = TourOptions {
        seed: 3,
        faults: FaultConfig {
            corrupt: 0.1,
            ..FaultConfig::default()
        },
    };
    let (report, path) = tour_to_file(&options, "tour-corrupt.pcap");
    assert!(report.faults.corrupted > 0);
    assert_eq!(
        tshark_count(&tshark, &path, "frame") as u64,
        report.captured
    );
    assert!(tshark_count(&tshark, &path, BAD_CHECKSUM) > 0);
}

#[test]
fn the_command_runs_the_tour_and_reports_the_capture() {
    let path = tmp("tour-cli.pcap");
    let _ = std::fs::remove_file(&path);
    let out = Command::new(env!("CARGO_BIN_EXE_loopstack"))
        .args(["tour", "--seed", "3", "--pcap"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    for section in [
        "$ ip addr show lo",
        "PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.",
        "PING ::1 (::1) 56 data bytes",
        "echoed 1048576 bytes intact",
        "Hello, Loopback!",
        "$ ip -s addr show lo",
        "$ ss -tuan",
        "trace | ",
    ] {
        assert!(
            stdout.contains(section),
            "missing {section:?} in:\n{stdout}"
        );
    }
    let records = pcap_records(&std::fs::read(&path).unwrap());
    assert!(
        stdout.contains(&format!("capture: {records} packets in {}", path.display())),
        "{stdout}"
    );
}
