//! The `loopstack` command-line tool.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use loopstack::link::{FaultConfig, FaultDirection};
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
    /// Do not print the per-packet trace.
    #[arg(long, global = true)]
    no_trace: bool,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Tour => run_tour(&cli.global),
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
