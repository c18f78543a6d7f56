//! `loopstack tun`: the stack behind a Linux TUN device, where the kernel's own `ping`,
//! `curl` and `nc` reach it.
//!
//! ```text
//!   the kernel (ping, curl, nc, python3 -m http.server)     loopstack (this process)
//!   192.0.2.1/24, 2001:db8::1/64 on NAME                     192.0.2.2/24, 2001:db8::2/64
//!         │  IP packets, no link header                            ▲
//!         └──────────── /dev/net/tun (read/write) ─────── Tracer → faults → capture → Tun
//! ```
//!
//! The steps, in order, each of which can fail with a clear line and status 2:
//! 1. build the stack with its `lo` (faults apply there too, the capture does not);
//! 2. open the TUN device NAME, creating it if it does not exist: its MTU is set and it is
//!    brought up (needs root or `CAP_NET_ADMIN`);
//! 3. add it to the stack with the `--addr` addresses (the internet layer refuses loopback
//!    addresses on it: RFC 1122 3.2.1.3(g));
//! 4. give the kernel's side the `--host-addr` addresses with iproute2 (`ip addr replace`,
//!    IPv6 ones `nodad`: the other end of this link is us, nobody else can hold them);
//! 5. start the services, then either `--get` one URL and exit, or run until SIGINT or
//!    SIGTERM and print the counters.
//!
//! The stack runs in blocking mode: a [`Net`] whose TUN has a thread of its own, woken by
//! the kernel writing to the device (see `Net::add_device`).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use loopstack::http::{self, HttpUrl};
use loopstack::internet::iface::InterfaceId;
use loopstack::internet::Cidr;
use loopstack::link::{Device, Tun, TunConfig};
use loopstack::socket::{Net, TcpListener, TcpStream, UdpSocket};

use crate::setup::{wrap, End, LinkOptions, Lo, Side};
use crate::values::Service;

/// `loopstack tun`'s options.
#[derive(Debug, Clone)]
pub struct TunOptions {
    /// The TUN device's name.
    pub dev: String,
    /// The stack's addresses on it.
    pub addrs: Vec<Cidr>,
    /// The kernel's addresses on it.
    pub host_addrs: Vec<Cidr>,
    /// Its MTU.
    pub mtu: usize,
    /// Services to run on the stack.
    pub serve: Vec<Service>,
    /// A URL to fetch through the stack, and the file for its body.
    pub get: Option<(HttpUrl, PathBuf)>,
}

/// How long a download waits for the server before it gives up (per read, not in all).
const IDLE: Duration = Duration::from_secs(60);

/// One line on stderr and the status: 2 for bad input or set-up, 1 for a failed run.
fn fail(status: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("loopstack: {message}");
    ExitCode::from(status)
}

/// Runs `loopstack tun`.
pub fn run(link: &LinkOptions, options: &TunOptions) -> ExitCode {
    if let Some(clash) = options
        .host_addrs
        .iter()
        .find(|h| options.addrs.iter().any(|a| a.addr() == h.addr()))
    {
        return fail(
            2,
            format!(
                "{} is both the stack's and the kernel's: the two ends need different addresses",
                clash.addr()
            ),
        );
    }
    // The out file is created before anything touches the network, so that a path that
    // cannot be written is bad input, not a download that failed.
    let out = match &options.get {
        Some((url, path)) => match File::create(path) {
            Ok(f) => Some((url, path, BufWriter::with_capacity(256 * 1024, f))),
            Err(e) => return fail(2, format!("cannot create {}: {e}", path.display())),
        },
        None => None,
    };
    // Registered first: a SIGTERM during set-up then waits for the counters instead of
    // killing the process half-way.
    let signals = if out.is_none() {
        match signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ]) {
            Ok(s) => Some(s),
            Err(e) => return fail(2, format!("cannot catch SIGINT and SIGTERM: {e}")),
        }
    } else {
        None
    };

    // 1. The stack and its lo. The capture goes on the TUN, where the conversation is.
    let lo_options = LinkOptions {
        pcap: None,
        ..link.clone()
    };
    let lo = match Lo::new(&lo_options) {
        Ok(lo) => lo,
        Err(e) => return fail(2, e),
    };
    let Lo {
        stack,
        faults: lo_faults,
        delay,
        ..
    } = lo;
    let pool = stack.pool().clone();
    let buffers = pool.stats().classes.iter().map(|c| c.count).sum();

    // 2. The TUN device, with buffers from the stack's pool.
    let tun = match Tun::open(
        &TunConfig {
            name: options.dev.clone(),
            mtu: options.mtu,
        },
        pool,
    ) {
        Ok(t) => t,
        Err(e) => return fail(2, e),
    };
    let name = tun.name().to_owned();
    let signal = tun.signal();
    let (device, capture, tun_faults) = match wrap(link, Box::new(tun), buffers, Side::Peer) {
        Ok(chain) => chain,
        Err(e) => return fail(2, e),
    };
    let end = End {
        links: vec![("lo".to_owned(), lo_faults), (name.clone(), tun_faults)],
        capture,
        delay,
    };

    // 3. The stack's side of the link.
    let net = match Net::from_stack(stack) {
        Ok(n) => n,
        Err(e) => return end.fail(2, format!("cannot start the stack: {e}")),
    };
    let iface = match net.add_device(device, &options.addrs, Box::new(signal)) {
        Ok(id) => id,
        Err(e) => return end.fail(2, format!("cannot add {name} to the stack: {e}")),
    };

    // 4. The kernel's side.
    for cidr in &options.host_addrs {
        if let Err(e) = ip_addr_replace(&name, *cidr) {
            return end.fail(2, e);
        }
    }
    wait_for_local_routes(&options.host_addrs);

    // 5. Services, then the download or the wait.
    for service in &options.serve {
        if let Err(e) = start_service(&net, *service) {
            return end.fail(2, e);
        }
    }
    let mut stdout = io::stdout().lock();
    let _ = writeln!(
        stdout,
        "loopstack: {name} is up, mtu {}: the stack has {}, the kernel's side {}",
        options.mtu,
        list(&options.addrs),
        list(&options.host_addrs)
    );
    if !options.serve.is_empty() {
        let services: Vec<String> = options
            .serve
            .iter()
            .map(|s| match s {
                Service::Echo(p) => format!("echo on TCP and UDP port {p}"),
                Service::Http(p) => format!("HTTP on TCP port {p}"),
            })
            .collect();
        let _ = writeln!(stdout, "loopstack: serving {}", services.join(", "));
    }
    drop(stdout);

    if let Some((url, path, mut file)) = out {
        return get(&net, &end, url, path, &mut file);
    }
    let _ = writeln!(io::stdout(), "loopstack: running until SIGINT or SIGTERM");
    if let Some(mut signals) = signals {
        if let Some(sig) = signals.forever().next() {
            let what = if sig == signal_hook::consts::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            let _ = writeln!(io::stdout(), "loopstack: {what}: stopping");
        }
    }
    let mut stdout = io::stdout().lock();
    let _ = write!(stdout, "{}", counters(&net, iface));
    if end.report(&mut stdout) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `192.0.2.2/24, 2001:db8::2/64`.
fn list(cidrs: &[Cidr]) -> String {
    let v: Vec<String> = cidrs.iter().map(Cidr::to_string).collect();
    v.join(", ")
}

/// Gives the kernel's side of the TUN an address, as `ip addr replace` does: idempotent,
/// so a persistent device that already has it is fine.
fn ip_addr_replace(dev: &str, cidr: Cidr) -> Result<(), String> {
    let cidr_text = cidr.to_string();
    let mut args = vec!["addr", "replace", &cidr_text, "dev", dev];
    if cidr.is_ipv6() {
        // Duplicate address detection would hold the address "tentative" for a second or
        // more, during which the kernel will not use it; on a point-to-point link to
        // ourselves there is nobody to collide with (RFC 4862 5.4 lets it be skipped).
        args.push("nodad");
    }
    let output = Command::new("ip")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2) to configure {dev}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let why = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            why.trim().lines().next().unwrap_or("no reason given")
        ))
    }
}

/// Waits, for two seconds at most, until the kernel has a local route for each of its
/// addresses. `ip addr` returns before the kernel installs the local route of an IPv6
/// address (it does so from a work queue), and until then the kernel drops packets to that
/// address: the first ping or SYN after "running" would be lost.
fn wait_for_local_routes(cidrs: &[Cidr]) {
    let deadline = Instant::now() + Duration::from_secs(2);
    for cidr in cidrs {
        let family = if cidr.is_ipv6() { "-6" } else { "-4" };
        let wanted = format!("local {} ", cidr.addr());
        while Instant::now() < deadline {
            let routes = Command::new("ip")
                .args([family, "-o", "route", "show", "table", "local"])
                .output();
            match routes {
                Ok(o) if String::from_utf8_lossy(&o.stdout).contains(&wanted) => break,
                Ok(_) => thread::sleep(Duration::from_millis(10)),
                Err(_) => return,
            }
        }
    }
}

// ---------------------------------------------------------------------- services

/// Binds `service` on both families' unspecified addresses (there are no dual-stack
/// sockets, so IPv4 and IPv6 each get their own) and serves it on threads of its own.
fn start_service(net: &Net, service: Service) -> Result<(), String> {
    let (port, http) = match service {
        Service::Echo(p) => (p, false),
        Service::Http(p) => (p, true),
    };
    for ip in [
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    ] {
        let addr = SocketAddr::new(ip, port);
        let listener =
            TcpListener::bind(net, addr).map_err(|e| format!("cannot bind TCP {addr}: {e}"))?;
        let name = if http { "http" } else { "echo-tcp" };
        spawn(name, move || accept_loop(&listener, http))?;
        if !http {
            let socket =
                UdpSocket::bind(net, addr).map_err(|e| format!("cannot bind UDP {addr}: {e}"))?;
            spawn("echo-udp", move || udp_echo(&socket))?;
        }
    }
    Ok(())
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| format!("cannot start a thread: {e}"))
}

/// Accepts connections for ever, each served on a thread of its own, so one slow client
/// does not hold up the next.
fn accept_loop(listener: &TcpListener, http: bool) {
    loop {
        match listener.accept() {
            Ok((conn, peer)) => {
                let served = spawn("conn", move || {
                    let result = if http {
                        http::handle(conn).map(|_| ())
                    } else {
                        tcp_echo(conn)
                    };
                    if let Err(e) = result {
                        eprintln!("loopstack: connection from {peer}: {e}");
                    }
                });
                if let Err(e) = served {
                    eprintln!("loopstack: {e}");
                }
            }
            Err(e) => {
                // accept fails only when the stack is going away; nothing to retry.
                eprintln!("loopstack: accept: {e}");
                return;
            }
        }
    }
}

/// Echoes one TCP connection until the peer closes, then closes. Reads up to 64 KiB at
/// a time: large reads keep a bulk transfer (20 MB from `nc`) from paying a lock
/// round per kilobyte.
fn tcp_echo(mut conn: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        conn.write_all(&buf[..n])?;
    }
}

/// Sends every datagram back where it came from (RFC 862), for ever.
fn udp_echo(socket: &UdpSocket) {
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Err(e) = socket.send_to(&buf[..n], from) {
                    eprintln!("loopstack: UDP echo to {from}: {e}");
                }
            }
            // An ICMP error about an earlier echo (the sender closed its socket) is
            // reported on the next call: it is the sender's problem, not ours.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => {
                eprintln!("loopstack: UDP echo: {e}");
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------- --get

/// Downloads `url` into `file` through the stack: status 0 on a complete 200 response.
fn get(
    net: &Net,
    end: &End,
    url: &HttpUrl,
    path: &std::path::Path,
    file: &mut dyn Write,
) -> ExitCode {
    let started = Instant::now();
    let result = http::download(net, url, file, IDLE, &mut io::stderr());
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(d) if d.status == 200 => {
            eprintln!(
                "loopstack: {} bytes from {url} into {} in {:.2} s ({:.1} MB/s)",
                d.bytes,
                path.display(),
                secs,
                d.bytes as f64 / secs.max(1e-9) / 1e6
            );
            if end.report(&mut io::stderr()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(d) => end.fail(
            1,
            format!("{url}: the server answered {} {}", d.status, d.reason),
        ),
        Err(e) => end.fail(1, format!("GET {url} failed: {e}")),
    }
}

/// The counters when the servers stop: `ip -s addr` for both interfaces, then the MIB
/// counters `netstat -s` reads, as the tour prints them.
fn counters(net: &Net, tun: InterfaceId) -> String {
    net.with(|s| {
        let mut out = String::from("\n$ ip -s addr\n");
        let link = |id: InterfaceId| s.device(id).map(|d| d.stats());
        for id in [InterfaceId::LOOPBACK, tun] {
            let name = s.ip().interfaces().get(id).map(|i| i.name().to_owned());
            if let Some(text) = name.and_then(|n| {
                s.ip()
                    .interfaces()
                    .render_ip_addr(Some(&n), &link)
                    .ok()
            }) {
                out.push_str(&text);
            }
        }
        out.push_str("\n$ netstat -s, as the raw counters it reads (/proc/net/snmp, and the non-zero lines of /proc/net/snmp6)\n");
        let mib = loopstack::netstat::mib(s);
        out.push_str(&mib.snmp);
        out.push_str(&mib.snmp6);
        out.push('\n');
        out
    })
}
