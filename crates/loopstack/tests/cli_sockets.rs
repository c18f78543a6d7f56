//! `loopstack echo` and `loopstack http`, and the global options (capture, trace, faults,
//! bad input), run as a user runs them: as a process. Each process has its own in-process
//! stack, so tests that run at once never share ports.

use std::path::{Path, PathBuf};
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

/// A file in the test scratch directory, named for this test process so that two runs of
/// the suite at once do not write over each other's captures.
fn tmp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{name}", std::process::id()))
}

/// Runs `args` and insists on exit status 0. Returns (stdout, stderr).
fn ok(args: &[&str]) -> (String, String) {
    let out = loopstack(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    (stdout, stderr)
}

/// Checks an echo summary line, `echoed N bytes over PROTO ADDR in T ms (R MB/s)[, K
/// datagrams resent]`, and returns the resent count (0 for TCP).
fn check_summary(line: &str, bytes: u64, proto: &str, addr: &str) -> u64 {
    let head = format!("echoed {bytes} bytes over {proto} {addr} in ");
    let rest = line
        .strip_prefix(&head)
        .unwrap_or_else(|| panic!("{line:?} does not start with {head:?}"));
    let (ms, rest) = rest.split_once(" ms (").expect(line);
    assert!(ms.parse::<f64>().unwrap() >= 0.0, "{line}");
    let (rate, rest) = rest.split_once(" MB/s)").expect(line);
    assert!(rate.parse::<f64>().unwrap() >= 0.0, "{line}");
    if proto == "UDP" {
        let resent = rest
            .strip_prefix(", ")
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("no resent count in {line:?}"));
        assert!(rest.ends_with(" resent"), "{line}");
        resent.parse().unwrap()
    } else {
        assert_eq!(rest, "", "{line}");
        0
    }
}

// ---------------------------------------------------------------------- echo

#[test]
fn echo_defaults_to_1_mib_over_tcp_on_127_0_0_1_65432() {
    let (stdout, stderr) = ok(&["echo"]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    check_summary(lines[0], 1_048_576, "TCP", "127.0.0.1:65432");
    assert_eq!(stderr, "");
}

#[test]
fn echo_over_tcp_on_ipv6_with_a_custom_port_and_size() {
    let (stdout, _) = ok(&[
        "echo", "--addr", "::1", "--port", "7007", "--bytes", "300001",
    ]);
    check_summary(stdout.lines().next().unwrap(), 300_001, "TCP", "[::1]:7007");
}

#[test]
fn echo_over_udp_on_ipv4_and_ipv6() {
    let (stdout, _) = ok(&["echo", "--udp", "--port", "9000", "--bytes", "200K"]);
    // Nothing is lost on a perfect link, but a datagram may still be resent: the client's
    // timeout follows the round trip closely, and a busy machine can stretch one past it.
    check_summary(
        stdout.lines().next().unwrap(),
        204_800,
        "UDP",
        "127.0.0.1:9000",
    );

    let (stdout, _) = ok(&["echo", "--udp", "--addr", "::1", "--bytes", "1M"]);
    check_summary(
        stdout.lines().next().unwrap(),
        1_048_576,
        "UDP",
        "[::1]:65432",
    );
}

#[test]
fn echo_accepts_localhost_other_127_addresses_and_any() {
    let (stdout, _) = ok(&["echo", "--addr", "localhost", "--bytes", "64K"]);
    check_summary(
        stdout.lines().next().unwrap(),
        65_536,
        "TCP",
        "127.0.0.1:65432",
    );
    let (stdout, _) = ok(&["echo", "--addr", "127.1.2.3", "--bytes", "1000", "--udp"]);
    check_summary(
        stdout.lines().next().unwrap(),
        1000,
        "UDP",
        "127.1.2.3:65432",
    );
    // A server on the unspecified address is reached over loopback, as on Linux.
    let (stdout, _) = ok(&["echo", "--addr", "0.0.0.0", "--bytes", "1K"]);
    check_summary(
        stdout.lines().next().unwrap(),
        1024,
        "TCP",
        "127.0.0.1:65432",
    );
    let (stdout, _) = ok(&["echo", "--addr", "[::]", "--bytes", "1K", "--udp"]);
    check_summary(stdout.lines().next().unwrap(), 1024, "UDP", "[::1]:65432");
    // Port 0: whichever port the stack picks, shown in the summary.
    let (stdout, _) = ok(&["echo", "--port", "0", "--bytes", "0"]);
    assert!(
        stdout.starts_with("echoed 0 bytes over TCP 127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        !stdout.starts_with("echoed 0 bytes over TCP 127.0.0.1:0 "),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------- http

#[test]
fn http_get_root_says_hello() {
    let (stdout, stderr) = ok(&["http"]);
    assert_eq!(stdout, "Hello, Loopback!");
    for line in [
        "*   Trying 127.0.0.1:8080...",
        "* Connected to 127.0.0.1 (127.0.0.1) port 8080",
        "> GET / HTTP/1.1",
        "> Host: 127.0.0.1:8080",
        "< HTTP/1.1 200 OK",
        "< Content-Length: 16",
        "* Closing connection",
    ] {
        assert!(
            stderr.lines().any(|l| l == line),
            "no {line:?} in\n{stderr}"
        );
    }
}

#[test]
fn http_over_ipv6() {
    let (stdout, stderr) = ok(&["http", "--addr", "::1", "--port", "8081"]);
    assert_eq!(stdout, "Hello, Loopback!");
    assert!(stderr.contains("*   Trying [::1]:8081...\n"), "{stderr}");
    assert!(stderr.contains("> Host: [::1]:8081\n"), "{stderr}");
}

#[test]
fn http_any_other_path_is_a_404_and_exit_status_1() {
    let out = loopstack(&["http", "--path", "/missing", "--port", "8082"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "not found\n");
    assert!(stderr.contains("> GET /missing HTTP/1.1\n"), "{stderr}");
    assert!(stderr.contains("< HTTP/1.1 404 Not Found\n"), "{stderr}");
    assert_eq!(
        stderr.lines().last(),
        Some("loopstack: the server answered 404 Not Found")
    );
    assert!(!stderr.contains("panicked"));
}

// ---------------------------------------------------------------------- faults

/// The counters in a `faults on lo: N packets, D dropped, U duplicated, R reordered, C
/// corrupted` line, if there is one.
fn fault_counts(output: &str) -> Option<[u64; 4]> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("faults on lo: "))?;
    let number_before = |word: &str| -> u64 {
        let at = line.find(word).unwrap_or_else(|| panic!("{line}"));
        line[..at]
            .trim_end()
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    Some([
        number_before(" dropped"),
        number_before(" duplicated"),
        number_before(" reordered"),
        number_before(" corrupted"),
    ])
}

const FAULTS: [&str; 8] = [
    "--drop",
    "5",
    "--dup",
    "2",
    "--reorder",
    "5",
    "--corrupt",
    "2",
];

#[test]
fn echo_and_http_deliver_every_byte_through_faults() {
    let mut total = [0u64; 4];
    for seed in ["1", "2", "3"] {
        for udp in [false, true] {
            let mut args = vec!["echo", "--bytes", "256K", "--seed", seed];
            args.extend(FAULTS);
            if udp {
                args.push("--udp");
            }
            let (stdout, _) = ok(&args);
            let proto = if udp { "UDP" } else { "TCP" };
            check_summary(
                stdout.lines().next().unwrap(),
                262_144,
                proto,
                "127.0.0.1:65432",
            );
            let counts = fault_counts(&stdout).expect(&stdout);
            for (t, c) in total.iter_mut().zip(counts) {
                *t += c;
            }
        }
        let mut args = vec!["http", "--addr", "::1", "--seed", seed];
        args.extend(FAULTS);
        let (stdout, stderr) = ok(&args);
        assert_eq!(stdout, "Hello, Loopback!");
        let counts = fault_counts(&stderr).expect(&stderr);
        for (t, c) in total.iter_mut().zip(counts) {
            *t += c;
        }
    }
    // The faults did happen: every kind at least once over these runs.
    assert!(total.iter().all(|&n| n > 0), "{total:?}");
}

#[test]
fn echo_and_http_deliver_every_byte_with_every_packet_delayed() {
    for udp in [false, true] {
        let mut args = vec!["echo", "--bytes", "256K", "--delay", "5"];
        if udp {
            args.push("--udp");
        }
        let (stdout, _) = ok(&args);
        let proto = if udp { "UDP" } else { "TCP" };
        check_summary(
            stdout.lines().next().unwrap(),
            262_144,
            proto,
            "127.0.0.1:65432",
        );
        assert!(
            stdout.contains("faults on lo: every packet delayed 5 ms\n"),
            "{stdout}"
        );
    }
    let (stdout, _) = ok(&["http", "--delay", "5"]);
    assert_eq!(stdout, "Hello, Loopback!");
    // Delay and random faults together: reordering still happens behind the delay.
    let mut args = vec!["echo", "--bytes", "256K", "--delay", "2", "--seed", "2"];
    args.extend(FAULTS);
    let (stdout, _) = ok(&args);
    check_summary(
        stdout.lines().next().unwrap(),
        262_144,
        "TCP",
        "127.0.0.1:65432",
    );
    assert!(stdout.contains("; every packet delayed 2 ms\n"), "{stdout}");
}

// ---------------------------------------------------------------------- capture

/// Checks a classic pcap file (microsecond magic, LINKTYPE_RAW) and returns its records.
fn pcap_records(path: &Path) -> Vec<Vec<u8>> {
    let file = std::fs::read(path).unwrap();
    let word = |i: usize| u32::from_le_bytes(file[i..i + 4].try_into().unwrap());
    assert!(file.len() >= 24, "no pcap header");
    assert_eq!(word(0), 0xa1b2_c3d4, "pcap magic");
    assert_eq!(word(20), 101, "LINKTYPE_RAW");
    let mut records = Vec::new();
    let mut i = 24;
    while i < file.len() {
        let len = word(i + 8) as usize;
        assert_eq!(word(i + 12) as usize, len, "no packet is cut");
        records.push(file[i + 16..i + 16 + len].to_vec());
        i += 16 + len;
    }
    assert_eq!(i, file.len(), "no partial record");
    records
}

/// Wireshark's view of a capture, when `tshark` is installed: checks that it reads
/// `frames` frames, and returns how many of them have a wrong IP, TCP or UDP checksum.
fn tshark_bad_checksums(path: &Path, frames: usize) -> Option<usize> {
    let found = Command::new("tshark").arg("--version").output().ok()?;
    if !found.status.success() {
        return None;
    }
    let checks = [
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
    ];
    // One line per frame: its IP, TCP and UDP checksum statuses, where 0 is "Bad" (1
    // "Good", 2 "Unverified"; empty when the frame has no such header).
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(checks)
        .args(["-T", "fields", "-E", "separator=,"])
        .args(["-e", "ip.checksum.status", "-e", "tcp.checksum.status"])
        .args(["-e", "udp.checksum.status"])
        .output()
        .unwrap();
    assert!(out.status.success(), "tshark: {}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert_eq!(listing.lines().count(), frames, "tshark reads every record");
    Some(
        listing
            .lines()
            .filter(|l| l.split(',').any(|status| status == "0"))
            .count(),
    )
}

/// The count in `capture: N packets in PATH (...)`, checking the path.
fn captured(output: &str, path: &Path) -> usize {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("capture: "))
        .unwrap_or_else(|| panic!("no capture line in\n{output}"));
    let (n, rest) = line.split_once(" packets in ").unwrap();
    assert!(rest.starts_with(&path.display().to_string()), "{line}");
    n.parse().unwrap()
}

#[test]
fn echo_and_http_capture_every_packet_to_pcap() {
    for (name, args) in [
        ("echo-tcp.pcap", vec!["echo", "--bytes", "100K"]),
        (
            "echo-udp6.pcap",
            vec!["echo", "--bytes", "100K", "--udp", "--addr", "::1"],
        ),
        ("echo-faults.pcap", {
            let mut a = vec!["echo", "--bytes", "256K", "--seed", "2"];
            a.extend(FAULTS);
            a
        }),
        ("http.pcap", vec!["http"]),
    ] {
        let path = tmp(name);
        let _ = std::fs::remove_file(&path);
        let mut args = args.clone();
        let path_arg = path.to_str().unwrap();
        args.extend(["--pcap", path_arg]);
        let (stdout, stderr) = ok(&args);
        // echo reports on stdout; http keeps stdout for the body.
        let report = if name.starts_with("http") {
            assert_eq!(stdout, "Hello, Loopback!");
            &stderr
        } else {
            &stdout
        };
        let n = captured(report, &path);
        let records = pcap_records(&path);
        assert!(n > 0, "{name}: {report}");
        assert_eq!(records.len(), n, "{name}: the file holds what was printed");
        let v6 = name.contains('6');
        for r in &records {
            assert_eq!(r[0] >> 4, if v6 { 6 } else { 4 }, "{name}: IP version");
        }
        if let Some(bad) = tshark_bad_checksums(&path, n) {
            // A corrupted packet is captured as it went, so its checksum is wrong; a
            // clean run has none wrong.
            let corrupted = fault_counts(report).map_or(0, |c| c[3]);
            assert!(bad <= corrupted as usize, "{name}: {bad} bad, {report}");
        }
        if name == "echo-tcp.pcap" {
            // SYN, SYN-ACK: the capture starts at the handshake.
            assert_eq!(records[0][33] & 0x12, 0x02, "SYN first");
            assert_eq!(records[1][33] & 0x12, 0x12, "SYN-ACK second");
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn a_foreign_address_fails_at_bind_before_anything_is_sent() {
    let path = tmp("foreign.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_loopstack"))
        .args(["echo", "--addr", "192.0.2.1", "--pcap"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "loopstack: cannot bind 192.0.2.1:65432: cannot assign requested address \
         (lo has 127.0.0.0/8 and ::1)\n"
    );
    assert!(pcap_records(&path).is_empty(), "not one packet");
    let _ = std::fs::remove_file(&path);
}

// ---------------------------------------------------------------------- trace

#[test]
fn trace_narrates_each_packet_on_stderr() {
    let (stdout, stderr) = ok(&["echo", "--bytes", "4K", "--trace", "--port", "4000"]);
    check_summary(
        stdout.lines().next().unwrap(),
        4096,
        "TCP",
        "127.0.0.1:4000",
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.iter().any(
            |l| l.contains(" lo tx IP 127.0.0.1.") && l.contains("> 127.0.0.1.4000: Flags [S]")
        ),
        "{stderr}"
    );
    assert!(lines.iter().any(|l| l.contains(" lo rx IP ")), "{stderr}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains(" lo tx ") || l.contains(" lo rx ")),
        "only trace lines: {stderr}"
    );

    let (stdout, stderr) = ok(&["http", "--trace", "--addr", "::1"]);
    assert_eq!(stdout, "Hello, Loopback!");
    assert!(stderr.contains(" lo tx IP6 ::1."), "{stderr}");
    assert!(stderr.contains("< HTTP/1.1 200 OK"), "{stderr}");

    // Quiet without --trace.
    let (_, stderr) = ok(&["echo", "--bytes", "4K", "--udp"]);
    assert_eq!(stderr, "");
}

// ---------------------------------------------------------------------- bad input

#[test]
fn bad_input_is_one_line_on_stderr_and_exit_status_2() {
    for (args, want) in [
        (
            &["echo", "--addr", "foo"][..],
            "invalid value 'foo' for '--addr <ADDR>': expected an IPv4 or IPv6 address, or localhost",
        ),
        (
            &["echo", "--addr", "unix:/tmp/x"],
            "invalid value 'unix:/tmp/x' for '--addr <ADDR>'",
        ),
        (&["http", "--addr", "1.2.3.4.5"], "invalid value '1.2.3.4.5'"),
        (
            &["echo", "--addr", "fe80::1%lo"],
            "scoped IPv6 addresses are not supported",
        ),
        (
            &["echo", "--port", "65536"],
            "invalid value '65536' for '--port <P>': 65536 is not in 0..=65535",
        ),
        (&["http", "--port", "-1"], "invalid value '-1' for '--port <P>'"),
        (
            &["echo", "--addr", "192.0.2.1"],
            "cannot bind 192.0.2.1:65432: cannot assign requested address",
        ),
        (
            &["echo", "--udp", "--addr", "192.0.2.1", "--port", "7"],
            "cannot bind 192.0.2.1:7: cannot assign requested address",
        ),
        (
            &["http", "--addr", "2001:db8::1"],
            "cannot bind [2001:db8::1]:8080: cannot assign requested address",
        ),
        (
            &["echo", "--pcap", "/nonexistent/dir/x.pcap"],
            "cannot create capture file /nonexistent/dir/x.pcap: ",
        ),
        (
            &["http", "--pcap", "/nonexistent/dir/x.pcap"],
            "cannot create capture file /nonexistent/dir/x.pcap: ",
        ),
        (
            &["ping", "-c", "1", "--pcap", "/nonexistent/dir/x.pcap", "127.0.0.1"],
            "cannot create capture file /nonexistent/dir/x.pcap: ",
        ),
        (
            &["echo", "--drop", "150"],
            "invalid value '150' for '--drop <PCT>': expected a percentage from 0 to 100",
        ),
        (&["echo", "--dup", "-1"], "invalid value '-1' for '--dup <PCT>'"),
        (&["http", "--reorder", "lots"], "invalid value 'lots' for '--reorder <PCT>'"),
        (&["echo", "--corrupt", "100.5"], "invalid value '100.5' for '--corrupt <PCT>'"),
        (&["echo", "--delay", "-5"], "invalid value '-5' for '--delay <MS>'"),
        (&["echo", "--delay", "1e300"], "invalid value '1e300' for '--delay <MS>'"),
        (&["echo", "--bytes", "lots"], "invalid value 'lots' for '--bytes <N>'"),
        (&["http", "--path", "index.html"], "expected a path starting with /"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (&["echo", "--frobnicate"], "unexpected argument '--frobnicate' found"),
        // The options this command line used to have.
        (&["echo", "--duplicate", "0.1"], "unexpected argument '--duplicate' found"),
        (&["tour", "--delay-ms", "5"], "unexpected argument '--delay-ms' found"),
        (&[], "'loopstack' requires a subcommand but one was not provided"),
        (&["ip"], "'loopstack ip' requires a subcommand but one was not provided"),
        (&["ping"], "the following required arguments were not provided: <ADDR>"),
        (&["--seed", "x", "echo"], "invalid value 'x' for '--seed <N>'"),
        (&["ping", "-i", "1e300", "127.0.0.1"], "ping: bad interval: "),
    ] {
        let out = loopstack(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line, got\n{stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr:?} lacks {want:?}");
        assert!(
            stderr.starts_with("loopstack: ") || stderr.starts_with("ping: "),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("Usage"), "{stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
}

#[test]
fn help_and_version_print_normally_and_exit_0() {
    let (stdout, _) = ok(&["--help"]);
    assert!(stdout.contains("Usage: loopstack"), "{stdout}");
    for command in ["tour", "ping", "ip", "echo", "http"] {
        assert!(stdout.contains(command), "{stdout}");
    }
    let (stdout, _) = ok(&["echo", "--help"]);
    for option in [
        "--addr", "--port", "--bytes", "--udp", "--pcap", "--drop", "--delay",
    ] {
        assert!(stdout.contains(option), "{option}: {stdout}");
    }
    let (stdout, _) = ok(&["--version"]);
    assert!(stdout.starts_with("loopstack "), "{stdout}");
}
