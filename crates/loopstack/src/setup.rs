//! The `lo` every command but the tour runs on: a [`Loopback`] wrapped in the middleware the
//! global options ask for, and a [`Stack`] built on it.
//!
//! ```text
//!   stack ─▶ Tracer (--trace, stderr)
//!              ─▶ FaultInjector (--drop, --dup, --reorder, --corrupt)
//!                   ─▶ FaultInjector (--delay: every packet, the same time)
//!                        ─▶ capture (--pcap) ─▶ Loopback
//! ```
//!
//! The tracer is outermost, so it shows every packet the stack sends (`tx`), the ones the
//! faults then drop included, and every packet the stack gets back (`rx`). The capture is
//! innermost, so it records what actually crossed the wire: no dropped packets, both copies
//! of a duplicate, corrupted bytes as corrupted, delayed packets when they were released.
//!
//! The delay has its own injector because one injector delays a packet *instead of*
//! reordering it: with every packet delayed, `--reorder` would never act.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use loopstack::buf::PacketBuf;
use loopstack::link::{
    Device, DeviceCapabilities, FaultConfig, FaultConfigError, FaultDirection, FaultInjector,
    FaultStats, Instant, LinkStats, Loopback, PcapMode, PcapWriter, Tracer, TxError,
};
use loopstack::socket::{BoxedDevice, Stack, StackConfig};

/// What the global options ask of `lo`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkOptions {
    /// Capture every packet to this file.
    pub pcap: Option<PathBuf>,
    /// Trace every packet on stderr.
    pub trace: bool,
    /// Seed of the stack's and the faults' random choices.
    pub seed: u64,
    /// Probability of dropping a packet (0 to 1).
    pub drop: f64,
    /// Probability of duplicating a packet.
    pub dup: f64,
    /// Probability of holding a packet back behind the next one.
    pub reorder: f64,
    /// Probability of flipping one bit of a packet.
    pub corrupt: f64,
    /// How long every packet is held (zero: not at all).
    pub delay: Duration,
}

impl LinkOptions {
    /// The random faults (everything but the delay), applied once to each packet as the
    /// stack transmits it: on `lo` that is every packet exactly once.
    fn random_faults(&self) -> FaultConfig {
        FaultConfig {
            drop: self.drop,
            duplicate: self.dup,
            reorder: self.reorder,
            corrupt: self.corrupt,
            direction: FaultDirection::Tx,
            ..FaultConfig::default()
        }
    }

    /// The delay line: every packet held for the same time. Held packets leave in the order
    /// they came (the injector releases equal delays first in, first out), but only while
    /// it has room to hold them: past `max_held` a packet goes through undelayed and
    /// overtakes the others. Every held packet owns a buffer of the stack's pool, so room
    /// for the whole pool means that never happens.
    fn delay_line(&self, pool_buffers: usize) -> FaultConfig {
        FaultConfig {
            delay: 1.0,
            delay_time: self.delay,
            direction: FaultDirection::Tx,
            max_held: pool_buffers.max(1),
            ..FaultConfig::default()
        }
    }

    /// All the faults in one configuration, for the tour, which builds its own `lo` with a
    /// single injector (there a delayed packet is not also reordered).
    pub fn fault_config(&self) -> FaultConfig {
        let mut c = self.random_faults();
        if !self.delay.is_zero() {
            c.delay = 1.0;
            c.delay_time = self.delay;
        }
        c
    }
}

/// Why `lo` could not be set up. Always the user's input: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The capture file could not be created or its header written.
    #[error("cannot create capture file {}: {source}", path.display())]
    Capture {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The stack could not be built (only with an invalid built-in configuration).
    #[error("cannot build the stack: {0}")]
    Stack(String),
}

/// The random-fault injector, shared with the command so it can report what it did.
pub type SharedFaults = Shared<FaultInjector<BoxedDevice>>;

/// A stack on `lo` as the options ask, with handles on its capture and its faults.
pub struct Lo {
    /// The stack.
    pub stack: Stack,
    /// The capture, if `--pcap` was given.
    pub capture: Option<Capture>,
    /// The random faults, if any were asked for.
    pub faults: Option<SharedFaults>,
    /// How long every packet is held (zero: not at all).
    pub delay: Duration,
}

impl Lo {
    /// Builds the device chain and the stack on it.
    pub fn new(options: &LinkOptions) -> Result<Lo, SetupError> {
        let config = StackConfig {
            seed: options.seed,
            ..StackConfig::default()
        };
        let (dev, capture, faults) = chain(options, &config)?;
        let stack =
            Stack::with_loopback(config, dev).map_err(|e| SetupError::Stack(e.to_string()))?;
        Ok(Lo {
            stack,
            capture,
            faults,
            delay: options.delay,
        })
    }
}

/// `lo` and its middleware, outermost first: tracer, random faults, delay line, capture.
fn chain(
    options: &LinkOptions,
    config: &StackConfig,
) -> Result<(BoxedDevice, Option<Capture>, Option<SharedFaults>), SetupError> {
    let lo = Loopback::with_config(config.loopback.clone())
        .map_err(|e| SetupError::Stack(e.to_string()))?;
    let buffers = config.pool.classes.iter().map(|c| c.count).sum();
    wrap(options, Box::new(lo), buffers, Side::Loopback)
}

/// Which kind of link a chain wraps: it decides which way the faults act and what the
/// capture records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `lo`: every packet crosses once, as the stack sends it. Faults act on transmit and
    /// the capture records transmitted packets (as `tcpdump -i lo` shows each packet once).
    Loopback,
    /// A link with a real peer (a TUN): faults act both ways, each with its own random
    /// sequence, and the capture records both directions, as `tcpdump -i tun0` would.
    Peer,
}

/// A device and its middleware, outermost first: tracer, random faults, delay line,
/// capture. `buffers` is the stack pool's size, which bounds what the delay line holds.
pub fn wrap(
    options: &LinkOptions,
    inner: BoxedDevice,
    buffers: usize,
    side: Side,
) -> Result<(BoxedDevice, Option<Capture>, Option<SharedFaults>), SetupError> {
    let (direction, mode, seed) = match side {
        Side::Loopback => (FaultDirection::Tx, PcapMode::TxOnly, options.seed),
        // Another seed than lo's, so the two links do not drop in lockstep.
        Side::Peer => (FaultDirection::Both, PcapMode::Both, options.seed ^ 0x7e4e),
    };
    let mut dev = inner;
    let mut capture = None;
    if let Some(path) = &options.pcap {
        let (device, handle) = Capture::create(path, dev, mode)?;
        dev = Box::new(device);
        capture = Some(handle);
    }
    // Both injectors have valid configurations by construction (the percentages were
    // checked when parsed), so an error here is a bug worth reporting, not a panic.
    let invalid = |e: FaultConfigError| SetupError::Stack(e.to_string());
    if !options.delay.is_zero() {
        // Every packet is held the same time, so the seed decides nothing here; it gets
        // one of its own all the same.
        let line = FaultConfig {
            direction,
            ..options.delay_line(buffers)
        };
        dev = Box::new(FaultInjector::new(dev, line, seed ^ 0xde1a).map_err(invalid)?);
    }
    let mut faults = None;
    if options.random_faults() != FaultConfig::default() {
        let random = FaultConfig {
            direction,
            ..options.random_faults()
        };
        let shared = Shared::new(FaultInjector::new(dev, random, seed).map_err(invalid)?);
        dev = Box::new(shared.clone());
        faults = Some(shared);
    }
    if options.trace {
        dev = Box::new(Tracer::new(dev, io::stderr()));
    }
    Ok((dev, capture, faults))
}

/// One line about what the faults on `link` did, if any were on:
/// `faults on lo: 812 packets, 40 dropped, ...; every packet delayed 5 ms`.
pub fn describe_faults(link: &str, random: Option<&FaultStats>, delay: Duration) -> Option<String> {
    let random = random.map(|s| {
        format!(
            "{} packets, {} dropped, {} duplicated, {} reordered, {} corrupted",
            s.seen, s.dropped, s.duplicated, s.reordered, s.corrupted
        )
    });
    let delay = (!delay.is_zero())
        .then(|| format!("every packet delayed {} ms", delay.as_secs_f64() * 1e3));
    match (random, delay) {
        (Some(r), Some(d)) => Some(format!("faults on {link}: {r}; {d}")),
        (Some(x), None) | (None, Some(x)) => Some(format!("faults on {link}: {x}")),
        (None, None) => None,
    }
}

// ---------------------------------------------------------------------- the closing lines

/// What a command reports about its links when it ends: what the faults on each link did,
/// and where the capture went.
pub struct End {
    /// Each link's name and its random faults, if any were on.
    pub links: Vec<(String, Option<SharedFaults>)>,
    /// The capture, if `--pcap` was given.
    pub capture: Option<Capture>,
    /// How long every packet was held (zero: not at all).
    pub delay: Duration,
}

impl End {
    /// The stack to run on `lo`, and what to report about `lo` once it has run.
    pub fn split(lo: Lo) -> (Stack, End) {
        let Lo {
            stack,
            capture,
            faults,
            delay,
        } = lo;
        let end = End {
            links: vec![("lo".to_owned(), faults)],
            capture,
            delay,
        };
        (stack, end)
    }

    /// Writes what the faults did on each link and where the capture went. False if the
    /// capture could not be written.
    pub fn report(&self, out: &mut dyn Write) -> bool {
        for (link, faults) in &self.links {
            let stats = faults.as_ref().map(|f| f.lock().fault_stats());
            if let Some(line) = describe_faults(link, stats.as_ref(), self.delay) {
                let _ = writeln!(out, "{line}");
            }
        }
        self.capture.as_ref().is_none_or(|c| c.report(out))
    }

    /// Reports a failure on stderr and returns `status`. Bad input (status 2) stays one
    /// line, the capture flushed without a word; any other failure is followed by what the
    /// faults did and where the capture went (what was captured up to it is worth keeping).
    pub fn fail(&self, status: u8, message: impl std::fmt::Display) -> ExitCode {
        eprintln!("loopstack: {message}");
        if status != 2 {
            self.report(&mut io::stderr());
        } else if let Some(c) = &self.capture {
            let _ = c.finish();
        }
        ExitCode::from(status)
    }
}

// ---------------------------------------------------------------------- sharing a device

/// A device the stack owns and the command can still look at: the stack's copy and the
/// command's copy share one device behind a mutex. The mutex is only ever contended at the
/// very end, when the command reads the device's counters or closes the capture.
pub struct Shared<D> {
    device: Arc<Mutex<D>>,
    /// A copy of the device's name: `Device::name` returns a borrow, which cannot outlive
    /// the lock.
    name: Arc<str>,
}

impl<D: Device> Shared<D> {
    /// Shares `device`.
    pub fn new(device: D) -> Self {
        Shared {
            name: device.name().into(),
            device: Arc::new(Mutex::new(device)),
        }
    }
}

impl<D> Shared<D> {
    /// The device, locked. A panic while it was locked does not hide it: the counters are
    /// still worth reading.
    pub fn lock(&self) -> MutexGuard<'_, D> {
        self.device.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<D> Clone for Shared<D> {
    fn clone(&self) -> Self {
        Shared {
            device: Arc::clone(&self.device),
            name: Arc::clone(&self.name),
        }
    }
}

impl<D: Device> Device for Shared<D> {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> DeviceCapabilities {
        self.lock().capabilities()
    }
    fn transmit(&mut self, now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        self.lock().transmit(now, packet)
    }
    fn receive(&mut self, now: Instant) -> Option<PacketBuf> {
        self.lock().receive(now)
    }
    fn stats(&self) -> LinkStats {
        self.lock().stats()
    }
    fn poll_at(&self) -> Option<Instant> {
        self.lock().poll_at()
    }
}

// ---------------------------------------------------------------------- the capture

/// A pcap capture right on the link (`lo` or a TUN), which can be closed while the stack still runs.
///
/// Closing matters because a command reports how many packets the file holds while its
/// stack may still send a few (a retransmitted FIN, say): after [`Capture::finish`] packets
/// go past the capture unrecorded, so the file holds exactly the count reported.
pub struct CaptureDevice {
    pcap: PcapWriter<BoxedDevice, BufWriter<File>>,
    open: bool,
}

impl Device for CaptureDevice {
    fn name(&self) -> &str {
        self.pcap.name()
    }
    fn capabilities(&self) -> DeviceCapabilities {
        // Always the capture's (no checksum offload), even once closed: the stack must not
        // see its device change under it.
        self.pcap.capabilities()
    }
    fn transmit(&mut self, now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        if self.open {
            self.pcap.transmit(now, packet)
        } else {
            self.pcap.inner_mut().transmit(now, packet)
        }
    }
    fn receive(&mut self, now: Instant) -> Option<PacketBuf> {
        // Around `lo` the mode is `TxOnly`, so each packet is recorded once, when sent, as
        // `tcpdump -i lo` shows; around a TUN it is `Both`.
        if self.open {
            self.pcap.receive(now)
        } else {
            self.pcap.inner_mut().receive(now)
        }
    }
    fn stats(&self) -> LinkStats {
        self.pcap.stats()
    }
    fn poll_at(&self) -> Option<Instant> {
        self.pcap.poll_at()
    }
}

/// The command's handle on the capture.
pub struct Capture {
    path: PathBuf,
    device: Shared<CaptureDevice>,
}

impl Capture {
    /// Creates the file at `path` and a capture of `inner` into it.
    fn create(
        path: &Path,
        inner: BoxedDevice,
        mode: PcapMode,
    ) -> Result<(Shared<CaptureDevice>, Capture), SetupError> {
        let failed = |source| SetupError::Capture {
            path: path.to_owned(),
            source,
        };
        let file = File::create(path).map_err(failed)?;
        let mut pcap = PcapWriter::new(inner, BufWriter::new(file), mode).map_err(failed)?;
        // The stack's clock starts at zero when it is built, which is now: with the wall
        // clock's offset the capture shows real dates, as a kernel capture would.
        if let Ok(since_epoch) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            pcap.set_clock_offset(since_epoch);
        }
        let device = Shared::new(CaptureDevice { pcap, open: true });
        Ok((
            device.clone(),
            Capture {
                path: path.to_owned(),
                device,
            },
        ))
    }

    /// Where the capture goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops recording, flushes the file, and returns how many packets it holds. A record
    /// that could not be written is an error: the file would not hold what was reported.
    pub fn finish(&self) -> io::Result<u64> {
        let mut dev = self.device.lock();
        dev.open = false;
        dev.pcap.flush()?;
        match dev.pcap.write_errors() {
            0 => Ok(dev.pcap.packets_written()),
            n => Err(io::Error::other(format!(
                "{n} packets could not be written"
            ))),
        }
    }

    /// [`finish`](Self::finish)es, and writes the line that says where the capture went to
    /// `out`: `capture: 42 packets in /tmp/x.pcap (...)`. Returns false on failure, which it
    /// reports to stderr.
    pub fn report(&self, out: &mut dyn Write) -> bool {
        match self.finish() {
            Ok(n) => {
                let _ = writeln!(
                    out,
                    "capture: {n} packets in {} (open it with Wireshark, or `tshark -r` it)",
                    self.path.display()
                );
                true
            }
            Err(e) => {
                eprintln!(
                    "loopstack: cannot write capture file {}: {e}",
                    self.path.display()
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopstack::buf::{PacketPool, PoolConfig};

    fn options() -> LinkOptions {
        LinkOptions {
            pcap: None,
            trace: false,
            seed: 1,
            drop: 0.0,
            dup: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            delay: Duration::ZERO,
        }
    }

    /// Sends `n` numbered packets 2 us apart through the chain, taking whatever `lo` has
    /// for the stack at each step as a stack would (so `lo`'s ring of 1000 never fills),
    /// until 2 ms after the last is due (a reordered packet may wait 1 ms more). Returns
    /// their numbers in arrival order.
    fn through(options: &LinkOptions, n: u32) -> Vec<u32> {
        let config = StackConfig::default();
        let (mut dev, _, _) = chain(options, &config).unwrap();
        let pool = PacketPool::new(PoolConfig::default()).unwrap();
        let steps = options.delay.as_micros() as u64 / 2 + u64::from(n) + 1000;
        let mut got = Vec::new();
        for step in 0..steps {
            let now = Instant::from_micros(step * 2);
            if let Ok(i) = u32::try_from(step) {
                if i < n {
                    let p = pool.alloc_from_slice(&i.to_be_bytes()).unwrap();
                    dev.transmit(now, p).unwrap();
                }
            }
            while let Some(p) = dev.receive(now) {
                got.push(u32::from_be_bytes(p[..4].try_into().unwrap()));
            }
        }
        got
    }

    #[test]
    fn a_delay_for_every_packet_keeps_their_order() {
        let delayed = LinkOptions {
            delay: Duration::from_millis(5),
            ..options()
        };
        // More packets than an injector holds by default (1024): none may slip past.
        let got = through(&delayed, 2000);
        assert_eq!(got, (0..2000).collect::<Vec<_>>());
    }

    #[test]
    fn reordering_still_acts_when_every_packet_is_delayed() {
        let both = LinkOptions {
            delay: Duration::from_millis(5),
            reorder: 0.5,
            ..options()
        };
        let got = through(&both, 200);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..200).collect::<Vec<_>>(), "nothing lost");
        assert_ne!(got, sorted, "some packets were reordered");
    }

    #[test]
    fn the_tour_gets_every_fault_in_one_configuration() {
        let o = LinkOptions {
            drop: 0.05,
            delay: Duration::from_millis(3),
            ..options()
        };
        let c = o.fault_config();
        assert_eq!((c.drop, c.delay), (0.05, 1.0));
        assert_eq!(c.delay_time, Duration::from_millis(3));
        assert_eq!(options().fault_config(), FaultConfig::default());
    }
}
