//! The `loopstack` command-line tool.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use loopstack::buf::{PacketPool, PoolConfig};
use loopstack::host::Host;
use loopstack::internet::iface::InterfaceId;
use loopstack::internet::route::{render_decision, render_route};
use loopstack::link::{
    Device, FaultConfig, FaultDirection, FaultInjector, Loopback, PcapMode, PcapWriter, Tracer,
};
use loopstack::ping::{self, PingOptions, RealClock};
use loopstack::tour::{self, TourOptions};

/// A from-scratch, layered TCP/IP stack built around the loopback interface.
#[derive(Debug, Parser)]
#[command(name = "loopstack", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct Global {
    /// Write a pcap capture of every packet on `lo` to this file (Wireshark and `tshark -r`
    /// open it). Default for the tour: loopstack-tour.pcap in the system's temporary directory.
    #[arg(long, global = true, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Do not print the per-packet trace (the tour prints it by default).
    #[arg(long, global = true)]
    no_trace: bool,
    /// Print the per-packet trace on stderr (other commands are quiet by default).
    #[arg(long, global = true, conflicts_with = "no_trace")]
    trace: bool,
    /// Seed for every random choice: the same seed gives the same run, byte for byte.
    #[arg(long, global = true, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    faults: FaultArgs,
}

/// Fault injection on `lo`: each is a probability between 0 and 1.
#[derive(Debug, Args)]
struct FaultArgs {
    /// Probability of dropping a packet.
    #[arg(long, global = true, default_value_t = 0.0, value_name = "P")]
    drop: f64,
    /// Probability of duplicating a packet.
    #[arg(long, global = true, default_value_t = 0.0, value_name = "P")]
    duplicate: f64,
    /// Probability of holding a packet back behind the next one.
    #[arg(long, global = true, default_value_t = 0.0, value_name = "P")]
    reorder: f64,
    /// Probability of delaying a packet by --delay-ms.
    #[arg(long, global = true, default_value_t = 0.0, value_name = "P")]
    delay: f64,
    /// How long a delayed packet is held, in milliseconds of stack time.
    #[arg(long, global = true, default_value_t = 10, value_name = "MS")]
    delay_ms: u64,
    /// Probability of flipping one bit of a packet.
    #[arg(long, global = true, default_value_t = 0.0, value_name = "P")]
    corrupt: f64,
}

impl FaultArgs {
    fn config(&self) -> FaultConfig {
        FaultConfig {
            drop: self.drop,
            duplicate: self.duplicate,
            reorder: self.reorder,
            delay: self.delay,
            corrupt: self.corrupt,
            delay_time: Duration::from_millis(self.delay_ms),
            direction: FaultDirection::Tx,
            ..FaultConfig::default()
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
    Ip {
        /// Show the interface counters too (`ip -s`).
        #[arg(short = 's', long = "stats")]
        stats: bool,
        #[command(subcommand)]
        object: IpObject,
    },
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
    let cli = Cli::parse();
    match &cli.command {
        Command::Tour => run_tour(&cli.global),
        Command::Ping(args) => run_ping(&cli.global, args),
        Command::Ip { stats, object } => run_ip(&cli.global, *stats, object),
    }
}

/// `lo`, wrapped in the middleware the global options ask for: faults first (nearest the
/// stack), then the capture right on the device, with the tracer outermost.
fn lo_device(global: &Global) -> Result<Box<dyn Device>, String> {
    let mut dev: Box<dyn Device> = Box::new(Loopback::new());
    if let Some(path) = &global.pcap {
        let file = File::create(path)
            .map_err(|e| format!("cannot create capture file {}: {e}", path.display()))?;
        let pcap = PcapWriter::new(dev, BufWriter::new(file), PcapMode::TxOnly)
            .map_err(|e| format!("cannot write capture file {}: {e}", path.display()))?;
        dev = Box::new(pcap);
    }
    let faults = global.faults.config();
    if faults != FaultConfig::default() {
        dev = Box::new(
            FaultInjector::new(dev, faults, global.seed)
                .map_err(|e| format!("invalid fault options: {e}"))?,
        );
    }
    if global.trace {
        dev = Box::new(Tracer::new(dev, io::stderr()));
    }
    Ok(dev)
}

fn new_host(global: &Global) -> Result<Host, ExitCode> {
    let pool = PacketPool::new(PoolConfig::default()).expect("the default pool config is valid");
    match lo_device(global) {
        Ok(dev) => Ok(Host::new(pool, dev)),
        Err(msg) => {
            eprintln!("loopstack: {msg}");
            Err(ExitCode::from(2))
        }
    }
}

fn seconds(what: &str, s: f64) -> Result<Duration, ExitCode> {
    if s.is_finite() && s >= 0.0 {
        Ok(Duration::from_secs_f64(s))
    } else {
        eprintln!("ping: bad {what}: {s}");
        Err(ExitCode::from(2))
    }
}

fn run_ping(global: &Global, args: &PingArgs) -> ExitCode {
    let mut host = match new_host(global) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let (interval, timeout) = match (
        seconds("interval", args.interval),
        seconds("timeout", args.timeout),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(code), _) | (_, Err(code)) => return code,
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
        &mut host,
        &mut clock,
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    );
    match result {
        Ok(summary) => ExitCode::from(summary.status),
        Err(e) => {
            eprintln!("ping: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_ip(global: &Global, with_stats: bool, object: &IpObject) -> ExitCode {
    let host = match new_host(global) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let ifaces = host.ip.interfaces();
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
            let lo_stats = host.links.lo.stats();
            let stats =
                |id: InterfaceId| (with_stats && id == InterfaceId::LOOPBACK).then_some(lo_stats);
            match ifaces.render_ip_addr(dev, &stats) {
                Ok(text) => {
                    print!("{text}");
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
            for route in host.ip.routes().routes() {
                println!("{}", render_route(route, &names));
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
            match host.ip.route(dst) {
                Ok(decision) => {
                    println!("{}", render_decision(dst, &decision, &names));
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
        faults: global.faults.config(),
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
    let trace: Box<dyn Write> = if global.no_trace {
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
