//! The `loopstack` command-line tool.
//!
//! Exit status, for every command: 0 on success; 1 when the command ran and failed (no
//! ping reply, a byte echoed wrong, an HTTP status other than 200); 2 for bad input (an
//! unknown option, a value out of range, an address that is not the stack's, a capture
//! file that cannot be created), always reported as one line on stderr.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use loopstack::internet::iface::InterfaceId;
use loopstack::internet::route::{render_decision, render_route};
use loopstack::ping::{self, PingOptions, RealClock};
use loopstack::tour::{self, TourOptions};

mod cli_net;
#[cfg(target_os = "linux")]
mod cli_tun;
mod setup;
mod values;

use cli_net::{EchoOptions, HttpOptions};
use setup::{LinkOptions, Lo};

/// A from-scratch, layered TCP/IP stack built around the loopback interface.
#[derive(Debug, Parser)]
// Without a command, clap's derive prints the whole help as an error; with this off it
// reports the missing command in a line, like any other usage error.
#[command(name = "loopstack", version, about, long_about = None, arg_required_else_help = false)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct Global {
    /// Write a pcap capture of every packet that crosses `lo` to this file (Wireshark and
    /// `tshark -r` open it); with `tun`, of every packet that crosses the TUN device, both
    /// ways. Default for the tour: loopstack-tour.pcap in the system's temporary directory.
    #[arg(long, global = true, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Do not print the per-packet trace (the tour prints it by default).
    #[arg(long, global = true)]
    no_trace: bool,
    /// Print each packet on stderr as it goes down to `lo` (tx) and comes back up (rx).
    /// Commands other than the tour are quiet by default.
    #[arg(long, global = true, conflicts_with = "no_trace")]
    trace: bool,
    /// Seed for every random choice (faults, ports, sequence numbers): the same seed makes
    /// the same decisions.
    #[arg(long, global = true, default_value_t = 1, value_name = "N")]
    seed: u64,
    #[command(flatten)]
    faults: FaultArgs,
}

/// Fault injection on `lo`: each packet the stack sends meets these once. With `tun`, the
/// TUN device gets them too, in both directions.
#[derive(Debug, Args)]
struct FaultArgs {
    /// Drop PCT percent of packets (0 to 100, fractions allowed).
    #[arg(long, global = true, value_name = "PCT", value_parser = values::probability, default_value = "0", allow_negative_numbers = true)]
    drop: f64,
    /// Send PCT percent of packets twice.
    #[arg(long, global = true, value_name = "PCT", value_parser = values::probability, default_value = "0", allow_negative_numbers = true)]
    dup: f64,
    /// Hold PCT percent of packets back behind the next one (at most 1 ms).
    #[arg(long, global = true, value_name = "PCT", value_parser = values::probability, default_value = "0", allow_negative_numbers = true)]
    reorder: f64,
    /// Flip one bit in PCT percent of packets (checksums catch it; checksum offload is off).
    #[arg(long, global = true, value_name = "PCT", value_parser = values::probability, default_value = "0", allow_negative_numbers = true)]
    corrupt: f64,
    /// Hold every packet for MS milliseconds of stack time (fractions allowed, at most
    /// 60000). Order is kept: every packet waits the same time.
    #[arg(long, global = true, value_name = "MS", value_parser = values::delay, default_value = "0", allow_negative_numbers = true)]
    delay: Duration,
}

impl Global {
    fn link(&self) -> LinkOptions {
        LinkOptions {
            pcap: self.pcap.clone(),
            trace: self.trace,
            seed: self.seed,
            drop: self.faults.drop,
            dup: self.faults.dup,
            reorder: self.faults.reorder,
            corrupt: self.faults.corrupt,
            delay: self.faults.delay,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Walk packets down and up the stack over `lo`, with a trace, counters and a capture.
    Tour,
    /// Send ICMP echo requests over the in-process stack, printed as iputils ping prints them.
    Ping(PingArgs),
    /// Show the stack's interfaces and routes, as iproute2's `ip` shows them.
    #[command(arg_required_else_help = false)]
    Ip {
        /// Show the interface counters too (`ip -s`).
        #[arg(short = 's', long = "stats")]
        stats: bool,
        #[command(subcommand)]
        object: IpObject,
    },
    /// Echo bytes between a server and a checking client on one stack, over TCP or UDP.
    ///
    /// The client sends --bytes bytes, checks every byte that comes back, and prints one
    /// line: what was echoed, where, how fast. Exits 1 if any byte is lost or changed.
    Echo(EchoArgs),
    /// Serve "Hello, Loopback!" over HTTP/1.1 and GET it, `curl -v` style.
    ///
    /// The exchange goes to stderr, the body to stdout. Exits 0 on status 200, 1 on any
    /// other: every --path but / is 404 Not Found, whose body is still printed (unlike
    /// `curl --fail`, which exits 22 and hides it).
    Http(HttpArgs),
    /// Put the stack behind a Linux TUN device, where the kernel's ping, curl and nc reach
    /// it.
    ///
    /// Creates (or opens) the TUN device --dev in the current network namespace, brings it
    /// up, gives the kernel's side the --host-addr addresses and the stack the --addr ones.
    /// Then either fetches --get URL into --out FILE and exits (0 on a complete 200
    /// response), or runs the --serve services until SIGINT or SIGTERM and prints the
    /// counters. Needs root (or CAP_NET_ADMIN) and /dev/net/tun.
    Tun(TunArgs),
}

/// `tun` options.
#[derive(Debug, Args)]
struct TunArgs {
    /// The TUN device: created if it does not exist, opened if it is a persistent one.
    #[arg(long, value_name = "NAME")]
    dev: String,
    /// An address of the stack on the device, with its prefix length (192.0.2.2/24,
    /// 2001:db8::2/64). Repeat for more.
    #[arg(long = "addr", value_name = "CIDR", required = true, value_parser = values::cidr)]
    addrs: Vec<loopstack::internet::Cidr>,
    /// An address of the kernel's side of the device (192.0.2.1/24, 2001:db8::1/64).
    /// Repeat for more.
    #[arg(long = "host-addr", value_name = "CIDR", required = true, value_parser = values::cidr)]
    host_addrs: Vec<loopstack::internet::Cidr>,
    /// The device's MTU, on both sides.
    #[arg(long, value_name = "N", default_value = "1500", value_parser = values::mtu)]
    mtu: usize,
    /// A service to run on the stack: echo:PORT (TCP and UDP echo) or http:PORT
    /// ("Hello, Loopback!"). Repeat for more.
    #[arg(long, value_name = "SERVICE", value_parser = values::service)]
    serve: Vec<values::Service>,
    /// Fetch this http:// URL (an IP address for a host) through the stack's TCP, write
    /// the body to --out, and exit.
    #[arg(long, value_name = "URL", value_parser = values::url, requires = "out")]
    get: Option<loopstack::http::HttpUrl>,
    /// Where --get writes the body.
    #[arg(long, value_name = "FILE", requires = "get")]
    out: Option<PathBuf>,
}

/// `echo` options.
#[derive(Debug, Args)]
struct EchoArgs {
    /// The server's address: an IPv4 or IPv6 literal, or localhost (127.0.0.1). It must
    /// be one of lo's: 127.0.0.0/8 or ::1.
    #[arg(long, value_name = "ADDR", value_parser = values::address, default_value = "127.0.0.1")]
    addr: IpAddr,
    /// The server's port (0: any free port).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 65432,
        allow_negative_numbers = true
    )]
    port: u16,
    /// Bytes to send: a number, or with a binary suffix (64K, 1M, 1MiB).
    #[arg(long, value_name = "N", value_parser = values::bytes, default_value = "1048576", allow_negative_numbers = true)]
    bytes: u64,
    /// Echo over UDP (16 KiB datagrams, each resent until its echo comes back) instead of
    /// TCP.
    #[arg(long)]
    udp: bool,
}

/// `http` options.
#[derive(Debug, Args)]
struct HttpArgs {
    /// The server's address: an IPv4 or IPv6 literal, or localhost (127.0.0.1). It must
    /// be one of lo's: 127.0.0.0/8 or ::1.
    #[arg(long, value_name = "ADDR", value_parser = values::address, default_value = "127.0.0.1")]
    addr: IpAddr,
    /// The server's port (0: any free port).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 8080,
        allow_negative_numbers = true
    )]
    port: u16,
    /// The path to GET: / is "Hello, Loopback!", anything else is 404 Not Found.
    #[arg(long, value_name = "PATH", value_parser = values::http_path, default_value = "/")]
    path: String,
}

/// `ping` options, named as iputils names them.
#[derive(Debug, Args)]
struct PingArgs {
    /// Stop after sending COUNT requests.
    #[arg(short = 'c', default_value_t = 4, value_name = "COUNT")]
    count: u32,
    /// Data bytes per request.
    #[arg(short = 's', default_value_t = 56, value_name = "SIZE")]
    size: usize,
    /// Seconds between requests.
    #[arg(short = 'i', default_value_t = 1.0, value_name = "INTERVAL")]
    interval: f64,
    /// Seconds to wait for a reply after the last request.
    #[arg(short = 'W', default_value_t = 1.0, value_name = "TIMEOUT")]
    timeout: f64,
    /// Use IPv6.
    #[arg(short = '6')]
    ipv6: bool,
    /// The address to ping: an IP literal, or localhost.
    addr: String,
}

#[derive(Debug, Subcommand)]
enum IpObject {
    /// Interfaces and their addresses.
    #[command(alias = "a")]
    Addr {
        #[command(subcommand)]
        action: Option<AddrAction>,
    },
    /// The routing table.
    #[command(alias = "r")]
    Route {
        #[command(subcommand)]
        action: Option<RouteAction>,
    },
}

#[derive(Debug, Subcommand)]
enum AddrAction {
    /// Show every interface, or DEV only.
    Show {
        /// An interface name, e.g. lo.
        dev: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum RouteAction {
    /// Show every route (local and main tables, like `ip route show table all`).
    Show,
    /// Show the route, interface and source address a packet to ADDR would take.
    Get {
        /// The destination address.
        addr: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    match &cli.command {
        Command::Tour => run_tour(&cli.global),
        Command::Ping(args) => run_ping(&cli.global, args),
        Command::Ip { stats, object } => run_ip(&cli.global, *stats, object),
        Command::Echo(args) => match new_lo(&cli.global) {
            Ok(lo) => cli_net::echo(
                lo,
                &EchoOptions {
                    addr: args.addr,
                    port: args.port,
                    bytes: args.bytes,
                    udp: args.udp,
                },
            ),
            Err(code) => code,
        },
        Command::Http(args) => match new_lo(&cli.global) {
            Ok(lo) => cli_net::http(
                lo,
                &HttpOptions {
                    addr: args.addr,
                    port: args.port,
                    path: args.path.clone(),
                },
            ),
            Err(code) => code,
        },
        Command::Tun(args) => run_tun(&cli.global, args),
    }
}

#[cfg(target_os = "linux")]
fn run_tun(global: &Global, args: &TunArgs) -> ExitCode {
    cli_tun::run(
        &global.link(),
        &cli_tun::TunOptions {
            dev: args.dev.clone(),
            addrs: args.addrs.clone(),
            host_addrs: args.host_addrs.clone(),
            mtu: args.mtu,
            serve: args.serve.clone(),
            get: args.get.clone().zip(args.out.clone()),
        },
    )
}

#[cfg(not(target_os = "linux"))]
fn run_tun(_global: &Global, _args: &TunArgs) -> ExitCode {
    eprintln!("loopstack: tun: TUN devices are supported on Linux only");
    ExitCode::from(2)
}

/// Help and version go to stdout with status 0, as clap prints them. Anything else is bad
/// input: one line on stderr and status 2, never clap's usage dump, so that a script (or a
/// person) sees just what was wrong.
fn usage_error(e: &clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    eprintln!("loopstack: {}", one_line(&e.to_string()));
    ExitCode::from(2)
}

/// The gist of a clap message: its first paragraph on one line, without the `error: `
/// prefix. Its detail lines stay ("the following required arguments were not provided:
/// <ADDR>"); the tips, the usage and the pointer to --help after the blank line go.
fn one_line(message: &str) -> String {
    let gist: Vec<&str> = message
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let gist = gist.join(" ");
    gist.strip_prefix("error: ").unwrap_or(&gist).to_owned()
}

/// A stack on `lo` as the global options ask, or the one-line reason why not (status 2).
fn new_lo(global: &Global) -> Result<Lo, ExitCode> {
    Lo::new(&global.link()).map_err(|e| {
        eprintln!("loopstack: {e}");
        ExitCode::from(2)
    })
}

fn seconds(what: &str, s: f64) -> Result<Duration, ExitCode> {
    // `try_from` also refuses what is too large for a `Duration`, where `from_secs_f64`
    // would panic.
    match Duration::try_from_secs_f64(s) {
        Ok(d) => Ok(d),
        Err(_) => {
            eprintln!("ping: bad {what}: {s}");
            Err(ExitCode::from(2))
        }
    }
}

fn run_ping(global: &Global, args: &PingArgs) -> ExitCode {
    let (interval, timeout) = match (
        seconds("interval", args.interval),
        seconds("timeout", args.timeout),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let mut lo = match new_lo(global) {
        Ok(lo) => lo,
        Err(code) => return code,
    };
    let options = PingOptions {
        target: args.addr.clone(),
        count: args.count,
        size: args.size,
        interval,
        timeout,
        ipv6: args.ipv6,
        id: (std::process::id() & 0xffff) as u16,
    };
    let mut clock = RealClock::new();
    let result = ping::run(
        &options,
        &mut lo.stack,
        &mut clock,
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    );
    // ping's output is iputils', so the capture is closed without a word about it (its
    // path is the one the user gave); only a failure to write it is reported.
    let captured = lo.capture.as_ref().is_none_or(|c| match c.finish() {
        Ok(_) => true,
        Err(e) => {
            eprintln!(
                "loopstack: cannot write capture file {}: {e}",
                c.path().display()
            );
            false
        }
    });
    match result {
        Ok(summary) if summary.status == 0 && !captured => ExitCode::FAILURE,
        Ok(summary) => ExitCode::from(summary.status),
        Err(e) => {
            eprintln!("ping: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_ip(global: &Global, with_stats: bool, object: &IpObject) -> ExitCode {
    let lo = match new_lo(global) {
        Ok(lo) => lo,
        Err(code) => return code,
    };
    if let Some(c) = &lo.capture {
        // Nothing is sent: the capture is the header alone.
        let _ = c.finish();
    }
    let stack = &lo.stack;
    // Written with errors ignored: `print!` would panic on a closed pipe (`| head -1`).
    let mut stdout = io::stdout().lock();
    let ifaces = stack.ip().interfaces();
    let names = |id: InterfaceId| {
        ifaces
            .get(id)
            .map_or_else(|| format!("if{id}"), |i| i.name().to_owned())
    };
    match object {
        IpObject::Addr { action } => {
            let dev = match action {
                Some(AddrAction::Show { dev }) => dev.as_deref(),
                None => None,
            };
            let lo_stats = stack.device(InterfaceId::LOOPBACK).map(|d| d.stats());
            let stats = |id: InterfaceId| {
                if with_stats && id == InterfaceId::LOOPBACK {
                    lo_stats
                } else {
                    None
                }
            };
            match ifaces.render_ip_addr(dev, &stats) {
                Ok(text) => {
                    let _ = write!(stdout, "{text}");
                    ExitCode::SUCCESS
                }
                Err(_) => {
                    eprintln!("Device \"{}\" does not exist.", dev.unwrap_or_default());
                    ExitCode::from(1)
                }
            }
        }
        IpObject::Route {
            action: None | Some(RouteAction::Show),
        } => {
            for route in stack.ip().routes().routes() {
                let _ = writeln!(stdout, "{}", render_route(route, &names));
            }
            ExitCode::SUCCESS
        }
        IpObject::Route {
            action: Some(RouteAction::Get { addr }),
        } => {
            let Ok(dst) = addr.parse() else {
                eprintln!("Error: any valid prefix is expected rather than \"{addr}\".");
                return ExitCode::from(1);
            };
            match stack.ip().route(dst) {
                Ok(decision) => {
                    let _ = writeln!(stdout, "{}", render_decision(dst, &decision, &names));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    let why = match e {
                        loopstack::internet::route::RouteError::Unreachable(_) => {
                            "No route to host"
                        }
                        _ => "Network is unreachable",
                    };
                    eprintln!("RTNETLINK answers: {why}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn run_tour(global: &Global) -> ExitCode {
    let options = TourOptions {
        seed: global.seed,
        faults: global.link().fault_config(),
    };
    let path = global
        .pcap
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("loopstack-tour.pcap"));
    let pcap = match File::create(&path) {
        Ok(f) => BufWriter::new(f),
        Err(e) => {
            eprintln!(
                "loopstack: cannot create capture file {}: {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    // `Send`, so the tour may hand the trace to the thread that runs its stack.
    let trace: Box<dyn Write + Send> = if global.no_trace {
        Box::new(io::sink())
    } else {
        Box::new(LinePrefix::new(io::stdout(), "  trace | "))
    };
    match tour::run(&options, &mut out, trace, pcap) {
        Ok(report) => {
            let _ = writeln!(
                out,
                "capture: {} packets in {} (open it with Wireshark, or `tshark -r` it)",
                report.captured,
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e @ tour::TourError::Faults(_)) => {
            eprintln!("loopstack: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("loopstack: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Indents every line written through it, so trace lines stand out in the narration.
struct LinePrefix<W: Write> {
    inner: W,
    prefix: &'static str,
    at_line_start: bool,
}

impl<W: Write> LinePrefix<W> {
    fn new(inner: W, prefix: &'static str) -> Self {
        LinePrefix {
            inner,
            prefix,
            at_line_start: true,
        }
    }
}

impl<W: Write> Write for LinePrefix<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for line in buf.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start {
                self.inner.write_all(self.prefix.as_bytes())?;
            }
            self.inner.write_all(line)?;
            self.at_line_start = line.ends_with(b"\n");
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
