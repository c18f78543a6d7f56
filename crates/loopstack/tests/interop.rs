//! Real peers: the Linux kernel's own `ping`, `curl`, `nc` and `python3 -m http.server`
//! against `loopstack tun`.
//!
//! Each test makes a network namespace of its own (`ip netns add`), runs `loopstack tun`
//! inside it, talks to it from the kernel's side of the TUN device with 192.0.2.0/24 and
//! 2001:db8::/64 only, and deletes the namespace however the test ends. Nothing leaves the
//! namespace.
//!
//! Run with `cargo xtask interop` (root, `/dev/net/tun`, iproute2, iputils-ping, curl,
//! netcat-openbsd and python3; `.ci/run` installs them). Where the machine does not allow
//! TUN devices or namespaces, every test says so in one line and passes, unless
//! `LOOPSTACK_REQUIRE_INTEROP=1` is set (CI sets it), which makes that a failure.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_loopstack");

/// The addresses every test uses: the stack's and the kernel's ends of the TUN.
const STACK_V4: &str = "192.0.2.2";
const HOST_V4: &str = "192.0.2.1";
const STACK_V6: &str = "2001:db8::2";
const HOST_V6: &str = "2001:db8::1";

/// 20 MB: what the issue asks every bulk transfer to carry at least.
const BULK: usize = 20 * 1000 * 1000;

// ---------------------------------------------------------------------- can we run?

/// Whether this machine lets the tests run: root, `/dev/net/tun`, namespaces and the tools.
/// Checked once; the reason is printed once per test that skips.
fn ready() -> bool {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let check = CHECK.get_or_init(|| {
        let uid = output(Command::new("id").arg("-u"))?;
        if uid.trim() != "0" {
            return Err("not root (TUN devices and namespaces need CAP_NET_ADMIN)".into());
        }
        if !Path::new("/dev/net/tun").exists() {
            return Err("no /dev/net/tun on this machine".into());
        }
        for tool in [
            "ip",
            "ping",
            "curl",
            "nc",
            "python3",
            "sha256sum",
            "setpriv",
        ] {
            if Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map_or(true, |o| !o.status.success())
            {
                return Err(format!("{tool} is not installed"));
            }
        }
        let probe = format!("lsi-probe-{}", std::process::id());
        output(Command::new("ip").args(["netns", "add", &probe]))
            .map_err(|e| format!("cannot create a network namespace: {e}"))?;
        let tun = output(Command::new("ip").args([
            "netns", "exec", &probe, "ip", "tuntap", "add", "dev", "probe0", "mode", "tun",
        ]));
        let _ = Command::new("ip").args(["netns", "del", &probe]).output();
        tun.map_err(|e| format!("cannot create a TUN device in a namespace: {e}"))?;
        Ok(())
    });
    match check {
        Ok(()) => true,
        Err(why) if std::env::var("LOOPSTACK_REQUIRE_INTEROP").as_deref() == Ok("1") => {
            panic!("interop tests cannot run here, and LOOPSTACK_REQUIRE_INTEROP=1: {why}")
        }
        Err(why) => {
            eprintln!("interop: skipped: {why}");
            false
        }
    }
}

/// Runs a command to completion; its stdout, or why it failed.
fn output(cmd: &mut Command) -> Result<String, String> {
    let o = cmd.output().map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_owned())
    }
}

// ---------------------------------------------------------------------- namespaces

/// A network namespace of this test's own, deleted on drop (declare it first, so the
/// processes inside, declared after it, are stopped before it goes).
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "lsi-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        output(Command::new("ip").args(["netns", "add", &name]))
            .unwrap_or_else(|e| panic!("ip netns add {name}: {e}"));
        let ns = Netns { name };
        ns.run_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `program` run inside the namespace.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `argv` inside the namespace and asserts it succeeded; its stdout.
    fn run_ok(&self, argv: &[&str]) -> String {
        let o = run(self.cmd(argv[0]).args(&argv[1..]), Duration::from_secs(60));
        assert!(o.status.success(), "{argv:?} failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A shell command inside the namespace, with a time limit.
    fn sh(&self, script: &str, limit: Duration) -> Output {
        run(self.cmd("sh").args(["-c", script]), limit)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// stdout and stderr, for assertion messages.
fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd`, killing it if it is still running after `limit`.
fn run(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_for(&mut child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{cmd:?} still running after {limit:?}; stderr so far: {}",
            String::from_utf8_lossy(&err.lock().unwrap())
        )
    });
    let stdout = std::mem::take(&mut *out.lock().unwrap());
    let stderr = std::mem::take(&mut *err.lock().unwrap());
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Reads a pipe to its end on a thread of its own, so a full pipe never stalls the child.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut pipe) = pipe {
        let b = Arc::clone(&buf);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
    }
    buf
}

/// Waits for `child` for at most `limit`; `None` if it is still running. The pipes are
/// read to their end too, which follows the exit by a moment.
fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            // The reader threads see the end of the pipes right after the exit.
            thread::sleep(Duration::from_millis(50));
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------- loopstack tun

/// `loopstack tun` running inside a namespace; SIGKILLed on drop if still running.
struct Stack {
    child: Child,
    lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// The `tun` arguments every test starts from: both families on both ends.
fn tun_args(dev: &str) -> Vec<String> {
    [
        "tun",
        "--dev",
        dev,
        "--addr",
        "192.0.2.2/24",
        "--addr",
        "2001:db8::2/64",
        "--host-addr",
        "192.0.2.1/24",
        "--host-addr",
        "2001:db8::1/64",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Stack {
    /// Starts `loopstack tun --dev tun0 ... extra` and waits until it serves.
    fn start(ns: &Netns, extra: &[&str]) -> Stack {
        let mut child = ns
            .cmd(BIN)
            .args(tun_args("tun0"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn loopstack");
        let stderr = drain(child.stderr.take());
        let stdout = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let pipe = child.stdout.take().expect("stdout");
        let all = Arc::clone(&stdout);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                all.lock().unwrap().push_str(&line);
                all.lock().unwrap().push('\n');
                let _ = tx.send(line);
            }
        });
        let mut stack = Stack {
            child,
            lines,
            stdout,
            stderr,
        };
        stack.wait_line("running until SIGINT or SIGTERM");
        stack
    }

    /// Waits for a stdout line containing `what`.
    fn wait_line(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(what) => return,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(50));
        panic!(
            "loopstack tun never said {what:?}\nstdout: {}\nstderr: {}",
            self.stdout.lock().unwrap(),
            String::from_utf8_lossy(&self.stderr.lock().unwrap())
        );
    }

    /// SIGTERMs it, asserts it exits 0 after printing its counters, and returns its stdout.
    fn stop(self) -> String {
        self.stop_with("TERM")
    }

    /// Sends it SIG`signal` (INT or TERM), asserts it exits 0 after printing its counters,
    /// and returns its stdout.
    fn stop_with(mut self, signal: &str) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        let status = wait_for(&mut self.child, Duration::from_secs(20));
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        assert_eq!(
            status.map(|s| s.code()),
            Some(Some(0)),
            "loopstack tun did not exit 0 on SIG{signal}\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(
            stdout.contains(&format!("SIG{signal}: stopping")),
            "{stdout}"
        );
        // The counters: both interfaces with their link counters, and the MIB.
        assert!(stdout.contains("$ ip -s addr"), "{stdout}");
        assert!(stdout.contains("tun0:"), "{stdout}");
        assert!(stdout.contains("RX:  bytes packets"), "{stdout}");
        assert!(stdout.contains("Tcp: ActiveOpens"), "{stdout}");
        stdout
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------- files

/// A file in the test directory, named per process so concurrent runs never share one.
fn tmp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("interop-{}-{name}", std::process::id()))
}

/// `len` bytes that neither repeat nor compress (xorshift), so a misplaced segment shows.
fn random_file(name: &str, len: usize, seed: u64) -> PathBuf {
    let path = tmp(name);
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    fs::write(&path, data).unwrap();
    path
}

/// The SHA-256 of a file, by coreutils.
fn sha256(path: &Path) -> String {
    let out = output(Command::new("sha256sum").arg(path)).unwrap();
    out.split_whitespace().next().unwrap_or_default().to_owned()
}

/// Asserts two files have the same length and hash.
fn assert_same(sent: &Path, got: &Path) {
    let (a, b) = (
        fs::metadata(sent).unwrap().len(),
        fs::metadata(got).map_or(0, |m| m.len()),
    );
    assert_eq!(
        b,
        a,
        "{} is {b} bytes, {} is {a}",
        got.display(),
        sent.display()
    );
    assert_eq!(sha256(got), sha256(sent), "the bytes differ");
}

// ---------------------------------------------------------------------- ping

#[test]
fn kernel_ping_and_ping6_get_replies() {
    if !ready() {
        return;
    }
    let ns = Netns::new();
    let stack = Stack::start(&ns, &[]);
    for (flag, addr) in [("-4", STACK_V4), ("-6", STACK_V6)] {
        // 56 bytes (the default), one just under the MTU, and one that the kernel must
        // fragment and loopstack reassemble, and whose reply comes back fragmented.
        for size in ["56", "1400", "4000"] {
            let o = ns.sh(
                &format!("ping {flag} -c 3 -i 0.2 -W 2 -s {size} {addr}"),
                Duration::from_secs(30),
            );
            let out = text(&o);
            assert!(o.status.success(), "ping {flag} -s {size} {addr}: {out}");
            assert!(out.contains("3 packets transmitted, 3 received"), "{out}");
        }
    }
    // A martian: an echo request from 127.0.0.1 written onto the TUN with a raw socket.
    // Loopback addresses never arrive on a wire (RFC 1122 3.2.1.3(g)): the stack drops it
    // and counts it, and answers the same request from a proper source.
    let script = tmp("martian.py");
    fs::write(&script, MARTIAN_PY).unwrap();
    for src in ["127.0.0.1", HOST_V4] {
        ns.run_ok(&["python3", script.to_str().unwrap(), src, STACK_V4]);
    }
    let counters = stack.stop();
    let ip = mib_row(&counters, "Ip");
    assert_eq!(ip.get("InMartians"), Some(&1), "{counters}");
    // Every echo request was answered but the martian's: 3 sizes x 3 pings, plus one.
    let icmp = mib_row(&counters, "Icmp");
    assert_eq!(icmp.get("InEchos"), Some(&10), "{counters}");
    assert_eq!(icmp.get("OutEchoReps"), Some(&10), "{counters}");
}

/// Writes one IPv4 ICMP echo request from argv[1] to argv[2] onto tun0, with a raw socket
/// (`IPPROTO_RAW`: we write the IP header, so the source can be anything).
const MARTIAN_PY: &str = r#"
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
icmp = struct.pack('!BBHHH', 8, 0, 0, 0x4242, 1) + b'martian'
icmp = icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:]
src, dst = socket.inet_aton(sys.argv[1]), socket.inet_aton(sys.argv[2])
hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, src, dst)
hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'tun0')
s.sendto(hdr + icmp, (sys.argv[2], 0))
"#;

/// One group of the `/proc/net/snmp`-style counters in `out`: name to value.
fn mib_row(out: &str, group: &str) -> std::collections::BTreeMap<String, u64> {
    let prefix = format!("{group}: ");
    let mut rows = out.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        panic!("no {group} counters in {out}");
    };
    names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .map(|(n, v)| (n.to_owned(), v.parse().unwrap()))
        .collect()
}

// ---------------------------------------------------------------------- curl, and a capture

#[test]
fn curl_gets_hello_over_ipv4_and_ipv6_and_the_capture_is_clean() {
    if !ready() {
        return;
    }
    let ns = Netns::new();
    let pcap = tmp("curl.pcap");
    let pcap_arg = pcap.to_str().unwrap();
    let stack = Stack::start(&ns, &["--serve", "http:8080", "--pcap", pcap_arg]);
    for url in [
        format!("http://{STACK_V4}:8080/"),
        format!("http://[{STACK_V6}]:8080/"),
    ] {
        let o = ns.sh(
            &format!("curl -sS --max-time 20 {url}"),
            Duration::from_secs(30),
        );
        assert!(o.status.success(), "curl {url}: {}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "Hello, Loopback!",
            "{url}"
        );
        // Any other path is a 404, still a well-formed response.
        let o = ns.sh(
            &format!("curl -s -o /dev/null -w '%{{http_code}}' --max-time 20 {url}missing"),
            Duration::from_secs(30),
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "404", "{}", text(&o));
    }
    // Pings too, so the capture holds ICMP and ICMPv6 as well.
    ns.run_ok(&["ping", "-c", "1", "-W", "2", STACK_V4]);
    ns.run_ok(&["ping", "-6", "-c", "1", "-W", "2", STACK_V6]);
    // Ctrl-C stops it as SIGTERM does.
    let stdout = stack.stop_with("INT");
    assert!(stdout.contains("capture: "), "{stdout}");
    check_capture(&pcap);
}

/// The capture opens in Wireshark's dissectors with no malformed packet and no bad
/// checksum (every check turned on), and holds the conversations the test had.
fn check_capture(pcap: &Path) {
    let Ok(found) = Command::new("tshark").arg("--version").output() else {
        panic!("tshark is not installed (.ci/run installs it)");
    };
    assert!(found.status.success());
    let count = |filter: &str| {
        let o = Command::new("tshark")
            .arg("-r")
            .arg(pcap)
            .args(["-o", "ip.check_checksum:TRUE"])
            .args(["-o", "tcp.check_checksum:TRUE"])
            .args(["-o", "udp.check_checksum:TRUE"])
            .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
            .output()
            .unwrap();
        assert!(o.status.success(), "tshark: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).lines().count()
    };
    assert_eq!(
        count("_ws.malformed"),
        0,
        "malformed packets in {}",
        pcap.display()
    );
    let bad = "ip.checksum.status == \"Bad\" || tcp.checksum.status == \"Bad\" \
               || udp.checksum.status == \"Bad\" || icmp.checksum.status == \"Bad\" \
               || icmpv6.checksum.status == \"Bad\"";
    assert_eq!(count(bad), 0, "bad checksums in {}", pcap.display());
    assert!(
        count("http.request && ip.dst == 192.0.2.2") >= 2,
        "HTTP over IPv4"
    );
    assert!(
        count("http.request && ipv6.dst == 2001:db8::2") >= 2,
        "HTTP over IPv6"
    );
    assert!(count("http.response.code == 200") >= 2);
    assert!(count("icmp.type == 0") >= 1, "an echo reply");
    assert!(count("icmpv6.type == 129") >= 1, "an ICMPv6 echo reply");
    // Both directions are in the capture, as tcpdump on the kernel's side shows them.
    assert!(count("ip.src == 192.0.2.1") > 0 && count("ip.src == 192.0.2.2") > 0);
}

// ---------------------------------------------------------------------- nc through echo

/// Sends a 20 MB file through `nc` to the stack's echo service and checks what came back.
fn nc_echo(addr: &str, extra: &[&str], seed: u64) {
    if !ready() {
        return;
    }
    let ns = Netns::new();
    let mut args = vec!["--serve", "echo:7"];
    args.extend_from_slice(extra);
    let stack = Stack::start(&ns, &args);
    let sent = random_file(&format!("nc-{seed}.in"), BULK, seed);
    let got = tmp(&format!("nc-{seed}.out"));
    // -N: shut the connection's sending side down at the end of the input, so the echo
    // server sees the end, closes, and nc exits once the last byte is back.
    let o = ns.sh(
        &format!("nc -N {addr} 7 < {} > {}", sent.display(), got.display()),
        Duration::from_secs(300),
    );
    assert!(o.status.success(), "nc: {}", text(&o));
    assert_same(&sent, &got);
    let stdout = stack.stop();
    if !extra.is_empty() {
        // The loss was real: the injector says it dropped packets on the TUN.
        assert!(stdout.contains("faults on tun0: "), "{stdout}");
        assert!(!stdout.contains("faults on tun0: 0 packets"), "{stdout}");
    }
    let _ = fs::remove_file(sent);
    let _ = fs::remove_file(got);
}

#[test]
fn nc_echoes_20_mb_over_ipv4() {
    nc_echo(STACK_V4, &[], 1);
}

#[test]
fn nc_echoes_20_mb_over_ipv6() {
    nc_echo(STACK_V6, &[], 2);
}

#[test]
fn nc_echoes_20_mb_with_loss_on_the_tun() {
    nc_echo(STACK_V4, &["--drop", "1", "--seed", "7"], 3);
}

// ---------------------------------------------------------------------- UDP

#[test]
fn udp_datagrams_come_back_unchanged() {
    if !ready() {
        return;
    }
    let ns = Netns::new();
    let stack = Stack::start(&ns, &["--serve", "echo:7"]);
    // One byte, a line, just under the MTU, and one the kernel must fragment.
    for (i, len) in [1usize, 100, 1400, 3000].into_iter().enumerate() {
        for addr in [STACK_V4, STACK_V6] {
            let sent = random_file(&format!("udp-{i}-{len}.in"), len, 100 + i as u64);
            let got = tmp(&format!("udp-{i}-{len}.out"));
            // One read of the file is one datagram; -W 1: exit after the first reply.
            let o = ns.sh(
                &format!(
                    "nc -u -W 1 -w 5 {addr} 7 < {} > {}",
                    sent.display(),
                    got.display()
                ),
                Duration::from_secs(30),
            );
            assert!(
                o.status.success(),
                "nc -u {addr} ({len} bytes): {}",
                text(&o)
            );
            assert_same(&sent, &got);
        }
    }
    let stdout = stack.stop();
    assert!(stdout.contains("Udp: "), "{stdout}");
}

// ---------------------------------------------------------------------- the stack as a client

/// Serves a 20 MB file with `python3 -m http.server` on the kernel's side and has
/// `loopstack tun --get` download it through the stack.
fn get_from_python(bind: &str, url_host: &str, extra: &[&str], persistent: bool, seed: u64) {
    if !ready() {
        return;
    }
    let ns = Netns::new();
    let dir = tmp(&format!("www-{seed}"));
    fs::create_dir_all(&dir).unwrap();
    let served = random_file(&format!("www-{seed}/big.bin"), BULK, seed);
    // The file is written under the directory the name says.
    let served_in_dir = dir.join("big.bin");
    fs::rename(&served, &served_in_dir).unwrap();
    if persistent {
        // A TUN made beforehand, with the kernel's address already on it: loopstack opens
        // it rather than creating it, and the server can bind that address first.
        ns.run_ok(&["ip", "tuntap", "add", "dev", "tun0", "mode", "tun"]);
        ns.run_ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "tun0"]);
    }
    let mut server = http_server(&ns, 8000, bind, &dir);
    let guard = KillOnDrop(&mut server);
    let out = tmp(&format!("get-{seed}.out"));
    let url = format!("http://{url_host}:8000/big.bin");
    let o = run(
        ns.cmd(BIN)
            .args(tun_args("tun0"))
            .args(["--get", &url, "--out", out.to_str().unwrap()])
            .args(extra),
        Duration::from_secs(300),
    );
    drop(guard);
    assert!(
        o.status.success(),
        "loopstack tun --get {url}: {}",
        text(&o)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("< HTTP/1.1 200 OK"), "{stderr}");
    assert_same(&served_in_dir, &out);
    if !extra.is_empty() {
        assert!(stderr.contains("faults on tun0: "), "{stderr}");
    }
    // A 404 is a complete response, but not the file: status 1.
    let missing = format!("http://{url_host}:8001/missing");
    let mut server = http_server(&ns, 8001, bind, &dir);
    let guard = KillOnDrop(&mut server);
    let o = run(
        ns.cmd(BIN)
            .args(tun_args("tun0"))
            .args(["--get", &missing, "--out"])
            .arg(tmp(&format!("get-{seed}.404"))),
        Duration::from_secs(60),
    );
    drop(guard);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("404"),
        "{}",
        text(&o)
    );
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_file(out);
}

/// `python3 -m http.server PORT` serving `dir` inside `ns`, once it listens.
fn http_server(ns: &Netns, port: u16, bind: &str, dir: &Path) -> Child {
    let mut server = ns
        .cmd("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            bind,
            "--directory",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ns.run_ok(&["ss", "-ltnH"]).contains(&format!(":{port} ")) {
        if Instant::now() >= deadline {
            let _ = server.kill();
            let _ = server.wait();
            panic!("python3 -m http.server {port} never listened");
        }
        thread::sleep(Duration::from_millis(50));
    }
    server
}

/// Kills a child process on drop.
struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn get_downloads_20_mb_from_python_over_ipv4_through_a_persistent_tun() {
    get_from_python(HOST_V4, HOST_V4, &[], true, 11);
}

#[test]
fn get_downloads_20_mb_from_python_over_ipv6_with_loss_on_the_tun() {
    get_from_python(
        "::",
        &format!("[{HOST_V6}]"),
        &["--drop", "1", "--seed", "3"],
        false,
        12,
    );
}

// ---------------------------------------------------------------------- errors

/// `loopstack tun ...` inside `ns`: its status and stderr.
fn tun_status(ns: &Netns, prefix: &[&str], args: &[String]) -> (Option<i32>, String) {
    let mut cmd = ns.cmd(prefix.first().copied().unwrap_or(BIN));
    if !prefix.is_empty() {
        cmd.args(&prefix[1..]).arg(BIN);
    }
    let o = run(cmd.args(args), Duration::from_secs(30));
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn bad_input_and_missing_permissions_exit_2_with_one_line() {
    if !ready() {
        return;
    }
    let ns = Netns::new();
    let one_line = |(code, stderr): (Option<i32>, String), expect: &str| {
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expect), "expected {expect:?} in {stderr:?}");
    };
    // Not permitted: the same command as an unprivileged user.
    one_line(
        tun_status(
            &ns,
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ],
            &tun_args("tun9"),
        ),
        "not permitted",
    );
    // No TUN driver: /dev/net hidden behind an empty mount, in a mount namespace of its own.
    let (code, stderr) = tun_status(
        &ns,
        &[
            "unshare",
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs none /dev/net && exec \"$0\" \"$@\"",
        ],
        &tun_args("tun9"),
    );
    one_line((code, stderr), "/dev/net/tun");
    // A name in use: by another interface (lo), and by another loopstack.
    one_line(tun_status(&ns, &[], &tun_args("lo")), "in use");
    let first = Stack::start(&ns, &[]);
    one_line(tun_status(&ns, &[], &tun_args("tun0")), "in use");
    first.stop();
    // Addresses that do not parse, or that do not belong on a TUN.
    let mut args = tun_args("tun1");
    args[4] = "192.0.2.300/24".into();
    one_line(tun_status(&ns, &[], &args), "--addr");
    let mut args = tun_args("tun1");
    args[4] = "192.0.2.2".into();
    one_line(tun_status(&ns, &[], &args), "ADDRESS/LENGTH");
    let mut args = tun_args("tun1");
    args[4] = "127.0.0.2/8".into();
    one_line(tun_status(&ns, &[], &args), "loopback");
    let mut args = tun_args("tun1");
    args[10] = "2001:db8::2/64".into();
    one_line(
        tun_status(&ns, &[], &args),
        "both the stack's and the kernel's",
    );
    // Names the kernel would refuse, and services that do not parse.
    one_line(
        tun_status(&ns, &[], &tun_args("much-too-long-name")),
        "name",
    );
    let mut args = tun_args("tun1");
    args.extend(["--serve".into(), "ftp:21".into()]);
    one_line(tun_status(&ns, &[], &args), "--serve");
    let mut args = tun_args("tun1");
    args.extend([
        "--get".into(),
        "http://example.com/".into(),
        "--out".into(),
        "/dev/null".into(),
    ]);
    one_line(tun_status(&ns, &[], &args), "--get");
    // Nothing was left behind: no tun1 (refused before or right after it was made).
    let links = ns.run_ok(&["ip", "-o", "link"]);
    assert!(!links.contains("tun1"), "{links}");
    let _ = std::io::stderr().flush();
}
