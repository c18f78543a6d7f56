//! The tour's capture, read back two ways: by an independent parser written from the pcap
//! format description, and by Wireshark's own dissectors (`tshark`) when it is installed
//! (`.ci/run` installs it). Also checks the `loopstack` binary end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use loopstack::link::FaultConfig;
use loopstack::tour::{self, TourOptions};

fn tmp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn tour_capture(options: &TourOptions) -> Vec<u8> {
    let mut pcap = Vec::new();
    tour::run(options, &mut std::io::sink(), std::io::sink(), &mut pcap).unwrap();
    pcap
}

/// Records of a classic little-endian pcap file: (seconds, microseconds, bytes).
fn parse_pcap(file: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
    let word = |i: usize| u32::from_le_bytes(file[i..i + 4].try_into().unwrap());
    assert_eq!(word(0), 0xa1b2_c3d4, "microsecond pcap magic");
    assert_eq!(&file[4..8], &[2, 0, 4, 0], "version 2.4");
    assert!(word(16) >= 65536, "snaplen keeps whole loopback packets");
    assert_eq!(word(20), 101, "LINKTYPE_RAW");
    let mut records = Vec::new();
    let mut i = 24;
    while i < file.len() {
        let (sec, usec, incl, orig) = (word(i), word(i + 4), word(i + 8), word(i + 12));
        assert_eq!(incl, orig, "no packet is truncated");
        assert!(usec < 1_000_000);
        records.push((sec, usec, file[i + 16..i + 16 + incl as usize].to_vec()));
        i += 16 + incl as usize;
    }
    assert_eq!(i, file.len());
    records
}

#[test]
fn the_capture_parses_back_packet_by_packet() {
    let file = tour_capture(&TourOptions::default());
    let records = parse_pcap(&file);
    assert_eq!(records.len(), 6);
    // Timestamps come from the tour's simulated clock: 100 us per packet sent.
    let times: Vec<(u32, u32)> = records.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(
        times,
        vec![(0, 100), (0, 200), (0, 300), (0, 400), (0, 500), (0, 600)]
    );
    let mut kinds = Vec::new();
    for (_, _, bytes) in &records {
        let p = SlicedPacket::from_ip(bytes).expect("every captured packet parses");
        let v6 = matches!(p.net, Some(NetSlice::Ipv6(_)));
        kinds.push(match p.transport {
            Some(TransportSlice::Icmpv4(_)) => "icmp",
            Some(TransportSlice::Icmpv6(_)) => "icmp6",
            Some(TransportSlice::Udp(_)) if v6 => "udp6",
            Some(TransportSlice::Udp(_)) => "udp",
            Some(TransportSlice::Tcp(ref t)) if t.syn() => "syn",
            _ => "other",
        });
    }
    assert_eq!(kinds, ["icmp", "icmp6", "udp", "udp6", "syn", "udp"]);
    assert_eq!(records[5].2.len(), 65535, "the largest IPv4 datagram");
}

fn tshark() -> Option<PathBuf> {
    let found = Command::new("tshark").arg("--version").output().ok()?;
    found.status.success().then(|| PathBuf::from("tshark"))
}

/// Runs tshark on `path` with every checksum check on, and returns (frames, problems), where
/// problems are the expert messages of severity warning or worse.
fn tshark_check(tshark: &Path, path: &Path) -> (usize, Vec<String>) {
    let checks = [
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
    ];
    let frames = Command::new(tshark)
        .arg("-r")
        .arg(path)
        .args(checks)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    assert!(
        frames.status.success(),
        "tshark could not read the file: {}",
        String::from_utf8_lossy(&frames.stderr)
    );
    let problems = Command::new(tshark)
        .arg("-r")
        .arg(path)
        .args(checks)
        .args(["-Y", "_ws.expert.severity >= warning || _ws.malformed"])
        .args([
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
        ])
        .output()
        .unwrap();
    assert!(problems.status.success());
    (
        String::from_utf8_lossy(&frames.stdout).lines().count(),
        String::from_utf8_lossy(&problems.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn wireshark_opens_the_capture_with_no_errors() {
    let Some(tshark) = tshark() else {
        eprintln!("tshark is not installed: the capture was checked by the built-in parser only");
        return;
    };
    let path = tmp("clean.pcap");
    std::fs::write(&path, tour_capture(&TourOptions::default())).unwrap();
    let (frames, problems) = tshark_check(&tshark, &path);
    assert_eq!(frames, 6);
    assert!(problems.is_empty(), "tshark found problems: {problems:?}");

    // The same check does catch damage: a capture of corrupted packets is flagged.
    let corrupt = TourOptions {
        faults: FaultConfig {
            corrupt: 1.0,
            ..FaultConfig::default()
        },
        ..TourOptions::default()
    };
    let path = tmp("corrupt.pcap");
    std::fs::write(&path, tour_capture(&corrupt)).unwrap();
    let (frames, problems) = tshark_check(&tshark, &path);
    assert_eq!(frames, 6);
    assert!(
        problems.len() >= 4,
        "corruption went unnoticed: {problems:?}"
    );
}

#[test]
fn the_binary_runs_the_tour_and_writes_the_capture() {
    let path = tmp("cli.pcap");
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
    assert!(
        stdout.contains("received: 6 ok, 0 bad checksum, 0 malformed"),
        "{stdout}"
    );
    assert!(stdout.contains("trace | 0.000100s lo tx IP 127.0.0.1 > 127.0.0.1: ICMP echo request"));
    assert!(stdout.contains(&format!("capture: 6 packets in {}", path.display())));
    assert_eq!(parse_pcap(&std::fs::read(&path).unwrap()).len(), 6);
}

#[test]
fn the_binary_rejects_bad_options_with_status_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_loopstack"))
        .args(["tour", "--drop", "1.5", "--no-trace"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("drop probability must be between 0 and 1, got 1.5"),
        "{stderr}"
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
