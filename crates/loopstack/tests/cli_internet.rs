//! `loopstack ping` and `loopstack ip`, run as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

fn loopstack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loopstack"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ping_127_0_0_2_and_colon_colon_1_succeed() {
    for (args, banner, reply) in [
        (
            vec!["ping", "-c", "2", "-i", "0.01", "127.0.0.2"],
            "PING 127.0.0.2 (127.0.0.2) 56(84) bytes of data.",
            "64 bytes from 127.0.0.2: icmp_seq=2 ttl=64 time=",
        ),
        (
            vec!["ping", "-c", "2", "-i", "0.01", "-6", "::1"],
            "PING ::1 (::1) 56 data bytes",
            "64 bytes from ::1: icmp_seq=2 ttl=64 time=",
        ),
        (
            vec!["ping", "-c", "1", "-s", "1000", "localhost"],
            "PING localhost (127.0.0.1) 1000(1028) bytes of data.",
            "1008 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=",
        ),
    ] {
        let out = loopstack(&args);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {stdout}{}",
            text(&out.stderr)
        );
        assert_eq!(stdout.lines().next(), Some(banner));
        assert!(stdout.contains(reply), "{stdout}");
        assert!(stdout.contains("0% packet loss"), "{stdout}");
        assert!(stdout.contains("rtt min/avg/max/mdev = "), "{stdout}");
    }
}

#[test]
fn ping_8_8_8_8_fails_clearly() {
    let out = loopstack(&["ping", "-c", "1", "8.8.8.8"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "ping: connect: Network is unreachable"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn ping_with_total_loss_exits_1() {
    let out = loopstack(&[
        "ping",
        "-c",
        "2",
        "-i",
        "0.01",
        "-W",
        "0.05",
        "--drop",
        "100",
        "127.0.0.1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("2 packets transmitted, 0 received, 100% packet loss"));
}

#[test]
fn ip_addr_show_lo() {
    let out = loopstack(&["ip", "addr", "show", "lo"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536"));
    assert!(lines.contains(&"    inet 127.0.0.1/8 scope host lo"));
    assert!(lines.contains(&"    inet6 ::1/128 scope host "));
    assert!(!stdout.contains("RX:"), "counters only with -s");

    let out = loopstack(&["ip", "-s", "addr", "show"]);
    assert!(text(&out.stdout).contains("RX:  bytes packets errors dropped"));

    let out = loopstack(&["ip", "addr", "show", "eth0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).trim(), "Device \"eth0\" does not exist.");
}

#[test]
fn ip_route_show_and_get() {
    let out = loopstack(&["ip", "route", "show"]);
    assert_eq!(
        text(&out.stdout),
        "local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1\n\
         local ::1 dev lo proto kernel scope host src ::1\n"
    );
    for (dst, want) in [
        ("127.0.0.2", "local 127.0.0.2 dev lo src 127.0.0.1"),
        (
            "127.255.255.254",
            "local 127.255.255.254 dev lo src 127.0.0.1",
        ),
        ("::1", "local ::1 dev lo src ::1"),
    ] {
        let out = loopstack(&["ip", "route", "get", dst]);
        assert_eq!(out.status.code(), Some(0), "{dst}");
        assert_eq!(text(&out.stdout).trim(), want);
    }
    let out = loopstack(&["ip", "route", "get", "8.8.8.8"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr).trim(),
        "RTNETLINK answers: Network is unreachable"
    );
}

#[test]
fn a_ping_can_be_captured() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ping.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_loopstack"))
        .args(["ping", "-c", "2", "-i", "0.01", "--pcap"])
        .arg(&path)
        .arg("127.0.0.1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let file = std::fs::read(&path).unwrap();
    // Header, then two requests and two replies of 84 bytes each.
    assert_eq!(file.len(), 24 + 4 * (16 + 84));
    if let Ok(t) = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(["-o", "ip.check_checksum:TRUE", "-Y", "icmp"])
        .output()
    {
        if t.status.success() {
            let listing = text(&t.stdout);
            assert_eq!(listing.lines().count(), 4, "{listing}");
            assert_eq!(listing.matches("Echo (ping) reply").count(), 2, "{listing}");
            assert!(!listing.contains("Bad"), "{listing}");
        }
    }
}
