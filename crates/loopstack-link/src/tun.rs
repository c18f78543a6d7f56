//! `Tun`: a Linux TUN device, the link between a loopstack stack and the kernel's own IP stack.
//!
//! To the kernel a TUN interface is an ordinary interface (`ip addr add ... dev tun0`, routes,
//! sockets bound to its addresses), except that its wire is a file descriptor: every IP packet
//! the kernel routes out of the interface is read from the descriptor, and every packet written
//! to the descriptor is received by the kernel as if it had arrived on the interface. A stack
//! on a TUN therefore talks to ordinary programs on the same machine (ping, curl, nc).
//!
//! The ioctls that create and configure the interface (`TUNSETIFF`, `SIOCSIFMTU`,
//! `SIOCSIFFLAGS`) are the `tun` crate's, and the readiness wait is nix's epoll and eventfd, so
//! this file needs no `unsafe`.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ::tun::AbstractDevice;
use loopstack_buf::{PacketBuf, PacketPool};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollOp, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use thiserror::Error;

use crate::device::{
    ChecksumOffload, Device, DeviceCapabilities, LinkStats, Medium, RxSignal, TxError,
};
use crate::time::Instant;

/// The longest interface name: Linux's `IFNAMSIZ` (16) less the terminating NUL.
const MAX_NAME_LEN: usize = 15;
/// The smallest MTU: every IPv4 link must carry 68-byte datagrams whole (RFC 791), and the
/// TUN driver refuses less (`ETH_MIN_MTU`).
const MIN_MTU: usize = 68;
/// The largest MTU the TUN driver accepts (`MAX_MTU` in drivers/net/tun.c).
const MAX_MTU: usize = 65535;
/// At most this many packets are read and dropped in one [`Device::receive`] call when the
/// pool has no buffer, so that a flood cannot keep `receive` (and the stack that called it)
/// from returning. It is twice the driver's default queue of 500 packets, so an exhausted pool
/// still empties a full queue in one call.
const DRAIN_LIMIT: usize = 1000;

/// How a [`Tun`] is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name, e.g. `tun0`: 1 to 15 printable ASCII characters without `/`, `:` or
    /// white space, and neither `.` nor `..` (Linux's rules). One `%d` lets the kernel pick a
    /// number (`tun%d` becomes `tun0`, `tun1`, ...); [`Device::name`] reports the result.
    pub name: String,
    /// Largest IP packet carried, in bytes: 68 to 65535. Set on the kernel's interface too.
    pub mtu: usize,
}

impl TunConfig {
    /// Ethernet's MTU, which the TUN driver also starts with.
    pub const DEFAULT_MTU: usize = 1500;

    /// A TUN named `name` with the [default MTU](Self::DEFAULT_MTU).
    pub fn new(name: impl Into<String>) -> TunConfig {
        TunConfig {
            name: name.into(),
            mtu: Self::DEFAULT_MTU,
        }
    }
}

/// Why [`Tun::open`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TunError {
    /// The name breaks Linux's rules for interface names (see [`TunConfig::name`]).
    #[error(
        "invalid interface name {0:?}: use 1 to 15 printable ASCII characters without '/', ':' \
         or white space, not \".\" or \"..\", and at most one '%d'"
    )]
    BadName(String),
    /// The MTU is outside 68..=65535 (the IPv4 minimum and the TUN driver's maximum).
    #[error("invalid MTU {0}: a TUN interface carries 68 to 65535 bytes")]
    BadMtu(usize),
    /// There is no TUN driver: `/dev/net/tun` does not exist, or nothing answers behind it.
    #[error(
        "no TUN driver: /dev/net/tun is missing (load the tun kernel module, or give the \
         container the device)"
    )]
    NoTunDriver,
    /// The kernel refused: creating or configuring an interface needs root or
    /// `CAP_NET_ADMIN`. The message says which device and what the kernel answered.
    #[error("{0}")]
    NotPermitted(String),
    /// The name is taken: another process has that TUN device open, or an interface of that
    /// name exists and is not a TUN device (`lo`, say).
    #[error(
        "interface name {0:?} is in use: another process has that TUN device open, or an \
         interface of that name exists and is not a TUN device"
    )]
    NameInUse(String),
    /// Anything else; the message says what was being done.
    #[error("{0}")]
    Io(io::Error),
}

impl TunError {
    /// Whether the failure says "this machine or this process cannot have a TUN device"
    /// ([`NoTunDriver`](Self::NoTunDriver), [`NotPermitted`](Self::NotPermitted)) rather than
    /// "this request is wrong": tests skip on these.
    pub fn is_not_permitted(&self) -> bool {
        matches!(self, TunError::NoTunDriver | TunError::NotPermitted(_))
    }

    /// Maps a failure of `tun::create`, which opens `/dev/net/tun`, issues `TUNSETIFF`, sets the
    /// MTU and brings the interface up, all under one error type.
    fn from_tun(name: &str, err: ::tun::Error) -> TunError {
        match err {
            ::tun::Error::Io(err) => TunError::from_os(name, err),
            // The name is checked before the call, so these are not expected; keep the text.
            other => TunError::Io(io::Error::other(format!(
                "cannot create TUN device {name}: {other}"
            ))),
        }
    }

    /// Maps the errno of a failed `open`, `TUNSETIFF` or configuration ioctl. The `tun` crate
    /// does not say which step failed, but the codes do not overlap in practice: ENOENT,
    /// ENODEV and ENXIO only come from opening `/dev/net/tun`; EBUSY (the TUN is attached to
    /// another descriptor) and EINVAL (the name belongs to an interface that is not a TUN)
    /// only from `TUNSETIFF`, since the name and MTU were checked beforehand.
    fn from_os(name: &str, err: io::Error) -> TunError {
        match err.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ENOENT | Errno::ENODEV | Errno::ENXIO) => TunError::NoTunDriver,
            Some(Errno::EPERM | Errno::EACCES) => TunError::NotPermitted(format!(
                "not permitted to create TUN device {name} ({err}): need root or CAP_NET_ADMIN"
            )),
            Some(Errno::EBUSY | Errno::EINVAL) => TunError::NameInUse(name.to_owned()),
            _ => TunError::Io(io::Error::new(
                err.kind(),
                format!("cannot create TUN device {name}: {err}"),
            )),
        }
    }
}

/// Linux's `dev_valid_name`, narrowed to printable ASCII, plus the rule of `dev_alloc_name`
/// for `%`: the kernel answers EINVAL to anything else, which would otherwise read as
/// [`TunError::NameInUse`].
fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let percent_ok = match bytes.iter().position(|&b| b == b'%') {
        None => true,
        Some(at) => bytes.get(at + 1) == Some(&b'd') && !bytes[at + 2..].contains(&b'%'),
    };
    (1..=MAX_NAME_LEN).contains(&bytes.len())
        && name != "."
        && name != ".."
        && bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'/' && b != b':')
        && percent_ok
}

/// A Linux TUN device: IP packets to and from the kernel's own stack.
///
/// [`open`](Tun::open) creates the interface (or attaches to a persistent one), sets its MTU
/// and brings it up; what remains to be configured on the kernel side (addresses, routes) is
/// the business of `ip`. The descriptor is non-blocking: [`receive`](Device::receive) returns
/// `None` when the kernel has nothing, and a thread that wants to sleep until it has uses a
/// [`TunSignal`] from [`signal`](Tun::signal).
///
/// Dropping the `Tun` closes the descriptor, and the kernel then deletes a non-persistent
/// interface with its addresses and routes.
pub struct Tun {
    dev: ::tun::Device,
    name: String,
    mtu: usize,
    pool: PacketPool,
    /// Where a packet goes when the pool has no buffer for it: read and dropped, because a
    /// packet left in the descriptor would keep every readiness wait returning at once.
    /// Allocated once, here, so the drop path allocates nothing either.
    scratch: Box<[u8]>,
    stats: LinkStats,
    /// Set when the `Tun` is dropped, so that a [`TunSignal`] outliving it fails its next wait
    /// instead of sleeping on a descriptor that no longer exists.
    closed: Arc<AtomicBool>,
}

impl Tun {
    /// Creates the TUN device `config.name` in the calling thread's network namespace, or
    /// attaches to an existing persistent one of that name; IP packets without the
    /// packet-information header (`IFF_TUN | IFF_NO_PI`); sets the kernel interface's MTU to
    /// `config.mtu`, brings it up (`IFF_UP`), and makes the file descriptor non-blocking.
    /// Every received packet is read into a buffer from `pool`.
    ///
    /// # Errors
    /// [`TunError::BadName`] and [`TunError::BadMtu`] before anything is asked of the kernel;
    /// [`TunError::Io`] if `pool` has no buffer class holding `config.mtu` bytes; otherwise
    /// what the kernel answered, mapped as [`TunError`] describes.
    pub fn open(config: &TunConfig, pool: PacketPool) -> Result<Tun, TunError> {
        if !valid_name(&config.name) {
            return Err(TunError::BadName(config.name.clone()));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&config.mtu) {
            return Err(TunError::BadMtu(config.mtu));
        }
        let mtu = u16::try_from(config.mtu).map_err(|_| TunError::BadMtu(config.mtu))?;
        // Without this every packet would be dropped for want of a buffer, silently but for
        // `rx_dropped`; better to say so now.
        if pool.max_packet() < config.mtu {
            return Err(TunError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TUN device {}: the packet pool's largest buffer holds {} bytes, less than \
                     the MTU of {}",
                    config.name,
                    pool.max_packet(),
                    config.mtu
                ),
            )));
        }

        let mut settings = ::tun::Configuration::default();
        settings
            .tun_name(&config.name)
            .layer(::tun::Layer::L3)
            .mtu(mtu)
            .up();
        let dev = ::tun::create(&settings).map_err(|e| TunError::from_tun(&config.name, e))?;
        dev.set_nonblock().map_err(|e| {
            TunError::Io(io::Error::new(
                e.kind(),
                format!(
                    "TUN device {}: cannot make the descriptor non-blocking: {e}",
                    config.name
                ),
            ))
        })?;
        // The kernel's name, which differs from the requested one when that had a `%d`.
        let name = dev
            .tun_name()
            .map_err(|e| TunError::from_tun(&config.name, e))?;

        Ok(Tun {
            dev,
            name,
            mtu: config.mtu,
            pool,
            scratch: vec![0; config.mtu].into_boxed_slice(),
            stats: LinkStats::default(),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// An [`RxSignal`] for this device: its [`wait`](RxSignal::wait) sleeps until the kernel
    /// has a packet for [`receive`](Device::receive) or the signal's interrupter is called.
    ///
    /// Each signal has its own interrupter, so stopping one waiting thread leaves the others
    /// alone. Creating a signal takes two file descriptors (an epoll instance and an eventfd);
    /// should that fail, every `wait` of the signal returns the error.
    pub fn signal(&self) -> TunSignal {
        TunSignal {
            name: self.name.clone(),
            fds: SignalFds::new(self.dev.as_raw_fd()).map(Arc::new),
            closed: Arc::clone(&self.closed),
        }
    }

    /// Reads one packet into `room`. `Ok(None)` means the kernel has nothing (EAGAIN).
    /// Retries on EINTR, which a signal handler installed without `SA_RESTART` causes.
    ///
    /// `Read::read` rather than the crate's `recv`: without the packet-information header both
    /// are one read(2), but `recv` first zeroes a 1504-byte stack buffer that it then ignores.
    fn read_into(dev: &mut ::tun::Device, room: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match dev.read(room) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl fmt::Debug for Tun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .field("fd", &self.dev.as_raw_fd())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Drop for Tun {
    fn drop(&mut self) {
        // Before the descriptor closes (the fields drop after this body), so that no signal
        // can see the device open after it is gone.
        self.closed.store(true, Ordering::Release);
    }
}

impl Device for Tun {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities {
            mtu: self.mtu,
            medium: Medium::Ip,
            // The kernel verifies every checksum in a packet written to a TUN (it arrives
            // as if from a wire, CHECKSUM_NONE) and hands out only finished ones: the stack
            // must compute and may not skip verifying.
            checksum_offload: ChecksumOffload::NONE,
            // One write(2) of one contiguous packet.
            scatter_gather: false,
        }
    }

    fn transmit(&mut self, _now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        if packet.len() > self.mtu {
            self.stats.tx_errors += 1;
            return Err(TxError::TooLarge {
                len: packet.len(),
                mtu: self.mtu,
            });
        }
        // One write is one packet: the driver takes the whole buffer as one IP packet.
        loop {
            match self.dev.write(packet.as_slice()) {
                Ok(n) if n == packet.len() => {
                    self.stats.tx_packets += 1;
                    self.stats.tx_bytes += n as u64;
                    return Ok(());
                }
                // The driver never takes part of a packet; should it ever say so, the packet
                // is lost all the same.
                Ok(_) => {
                    self.stats.tx_errors += 1;
                    return Err(TxError::Io(io::ErrorKind::Other));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The driver's send buffer is full. It is counted in bytes, not packets, so
                // there is no packet capacity to report.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.tx_dropped += 1;
                    return Err(TxError::QueueFull { capacity: 0 });
                }
                // EINVAL: not an IPv4 or IPv6 packet; EIO: the interface is down; EBADFD: it
                // was deleted under us.
                Err(e) => {
                    self.stats.tx_errors += 1;
                    return Err(TxError::Io(e.kind()));
                }
            }
        }
    }

    fn receive(&mut self, _now: Instant) -> Option<PacketBuf> {
        let mut dropped = 0;
        while dropped < DRAIN_LIMIT {
            let Ok(mut buf) = self.pool.alloc(self.mtu) else {
                // No buffer: read the packet anyway and drop it, so the descriptor drains
                // and the caller's level-triggered wait does not return at once forever.
                match Self::read_into(&mut self.dev, &mut self.scratch) {
                    Ok(None) => return None,
                    Ok(Some(0)) | Err(_) => {
                        self.stats.rx_errors += 1;
                        return None;
                    }
                    Ok(Some(_)) => {
                        self.stats.rx_dropped += 1;
                        dropped += 1;
                        continue;
                    }
                }
            };
            // Straight into the buffer, behind the pool's headroom: the packet is never
            // copied again on its way up.
            let room = buf.tailroom_mut();
            let room_len = room.len();
            match Self::read_into(&mut self.dev, room) {
                Ok(None) => return None,
                Ok(Some(0)) | Err(_) => {
                    self.stats.rx_errors += 1;
                    return None;
                }
                // A full buffer may hold the front of a longer packet (the interface's MTU
                // was raised behind our back): the driver copies what fits, drops the rest
                // and returns the length copied, with no sign of the cut. The packet's IP
                // header still says how long it was. Drop it; it has left the descriptor.
                Ok(Some(n)) if n == room_len && claimed_len(&buf.tailroom_mut()[..n]) > n => {
                    self.stats.rx_errors += 1;
                    dropped += 1;
                    continue;
                }
                Ok(Some(n)) => {
                    buf.commit_tailroom(n)
                        .expect("the read length was checked against the tailroom");
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += n as u64;
                    return Some(buf);
                }
            }
        }
        None
    }

    fn stats(&self) -> LinkStats {
        self.stats
    }

    fn poll_at(&self) -> Option<Instant> {
        // Packets arrive from the kernel, not on a schedule: readiness comes from a
        // TunSignal, never from a time.
        None
    }
}

/// The length an IP packet's header gives for the whole packet: IPv4's Total Length, or
/// IPv6's fixed 40 bytes plus its Payload Length. 0 when the bytes do not say (too short, not
/// IP, an IPv6 jumbogram), which never exceeds the length read.
fn claimed_len(packet: &[u8]) -> usize {
    let field = |at: usize| match packet.get(at..at + 2) {
        Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
        _ => 0,
    };
    match packet.first().map(|b| b >> 4) {
        Some(4) => field(2),
        Some(6) if field(4) > 0 => 40 + field(4),
        _ => 0,
    }
}

/// The epoll token of the TUN descriptor.
const TUN_TOKEN: u64 = 0;
/// The epoll token of the interrupting eventfd.
const WAKE_TOKEN: u64 = 1;

/// The descriptors one [`TunSignal`] waits on.
#[derive(Debug)]
struct SignalFds {
    /// Level-triggered interest in the TUN descriptor and in `wake`, both for reading.
    epoll: Epoll,
    /// Written by the interrupter and never read, so a wait after an interruption returns
    /// at once: the interruption is sticky, as a stop request should be.
    wake: EventFd,
}

impl SignalFds {
    fn new(tun_fd: RawFd) -> Result<SignalFds, Errno> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        // Non-blocking, so an interrupter can never block, even with the counter at its
        // maximum (it is already non-zero then, which is all a wait needs).
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        epoll.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN))?;
        // `Epoll::add` wants a `BorrowedFd`, which the `tun` crate does not give out (it has
        // `AsRawFd` only) and which cannot be made from a raw descriptor without `unsafe`.
        // The raw-descriptor form is safe: the kernel checks the descriptor, and it is open
        // here because the caller borrows the `Tun`. epoll keeps the interest on the open
        // file, so it ends by itself when the `Tun` closes the descriptor.
        #[allow(deprecated)]
        nix::sys::epoll::epoll_ctl(
            epoll.0.as_raw_fd(),
            EpollOp::EpollCtlAdd,
            tun_fd,
            &mut EpollEvent::new(EpollFlags::EPOLLIN, TUN_TOKEN),
        )?;
        Ok(SignalFds { epoll, wake })
    }
}

/// The [`RxSignal`] of a [`Tun`]: waits until the TUN descriptor is readable or the signal's
/// interrupter was called.
///
/// The wait is epoll on the TUN descriptor and an eventfd, both level-triggered for reading,
/// with no timeout (the same readiness `poll(2)` gives; epoll because it accepts the `tun`
/// crate's raw descriptor without `unsafe`). Once the [`Tun`] is dropped, the next
/// [`wait`](RxSignal::wait) fails; a wait already in progress then returns only when
/// interrupted.
#[derive(Debug)]
pub struct TunSignal {
    name: String,
    fds: Result<Arc<SignalFds>, Errno>,
    closed: Arc<AtomicBool>,
}

impl TunSignal {
    fn closed_error(&self, why: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotConnected,
            format!("TUN device {}: {why}", self.name),
        )
    }
}

impl RxSignal for TunSignal {
    fn wait(&mut self) -> io::Result<()> {
        let fds = match &self.fds {
            Ok(fds) => fds,
            Err(errno) => return Err(io::Error::from(*errno)),
        };
        let mut events = [EpollEvent::empty(); 2];
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(self.closed_error("the device was closed"));
            }
            match fds.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => {
                    // The driver reports an error condition, for ever, once the interface
                    // is deleted (`ip link del`) while we hold it: returning Ok would make
                    // the caller spin.
                    let gone = events[..n].iter().any(|e| {
                        e.data() == TUN_TOKEN
                            && e.events()
                                .intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP)
                    });
                    if gone {
                        return Err(self.closed_error("the interface was deleted"));
                    }
                    return Ok(());
                }
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(io::Error::from(errno)),
            }
        }
    }

    fn interrupter(&self) -> Box<dyn Fn() + Send + Sync> {
        match &self.fds {
            Ok(fds) => {
                let fds = Arc::clone(fds);
                Box::new(move || {
                    // Can only fail with the counter at its maximum, when it is non-zero and
                    // the wait returns anyway.
                    let _ = fds.wake.write(1);
                })
            }
            // The wait fails at once anyway.
            Err(_) => Box::new(|| {}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_linux_rules() {
        for good in [
            "tun0",
            "a",
            "lstun-with-15ch",
            "tun%d",
            "x.y",
            "%d",
            "tap_0",
        ] {
            assert!(valid_name(good), "{good:?} should be valid");
        }
        for bad in [
            "",
            "sixteen-chars-xx",
            "a/b",
            "a b",
            "a\tb",
            "a:b",
            ".",
            "..",
            "tün",
            "a%",
            "a%s",
            "a%d%d",
            "\u{7f}",
        ] {
            assert!(!valid_name(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn errno_maps_to_the_documented_variants() {
        let map =
            |errno: Errno| TunError::from_os("t0", io::Error::from_raw_os_error(errno as i32));
        for errno in [Errno::ENOENT, Errno::ENODEV, Errno::ENXIO] {
            assert!(matches!(map(errno), TunError::NoTunDriver), "{errno}");
        }
        for errno in [Errno::EPERM, Errno::EACCES] {
            let err = map(errno);
            assert!(matches!(err, TunError::NotPermitted(_)), "{errno}");
            assert!(err.is_not_permitted());
            let text = err.to_string();
            assert!(text.contains("need root or CAP_NET_ADMIN"), "{text}");
            assert!(text.contains("t0"), "{text}");
        }
        for errno in [Errno::EBUSY, Errno::EINVAL] {
            assert!(
                matches!(map(errno), TunError::NameInUse(ref n) if n == "t0"),
                "{errno}"
            );
        }
        let err = map(Errno::EMFILE);
        assert!(!err.is_not_permitted());
        let TunError::Io(io) = &err else {
            panic!("EMFILE should be Io, got {err:?}")
        };
        assert_eq!(io.kind(), io::Error::from(Errno::EMFILE).kind());
        assert!(
            err.to_string().contains("cannot create TUN device t0"),
            "{err}"
        );
        assert!(TunError::NoTunDriver.is_not_permitted());
        assert!(!TunError::NameInUse("t0".into()).is_not_permitted());
    }

    #[test]
    fn claimed_length_comes_from_the_ip_header() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[2..4].copy_from_slice(&2028u16.to_be_bytes());
        assert_eq!(claimed_len(&v4), 2028);
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[4..6].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(claimed_len(&v6), 1040);
        v6[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(claimed_len(&v6), 0, "a jumbogram's length is elsewhere");
        assert_eq!(claimed_len(&[0x45, 0]), 0);
        assert_eq!(claimed_len(&[]), 0);
        assert_eq!(claimed_len(&[0x00; 20]), 0);
    }

    #[test]
    fn non_io_tun_errors_keep_their_text() {
        let err = TunError::from_tun("t0", ::tun::Error::NameTooLong);
        assert!(matches!(err, TunError::Io(_)));
        assert!(err.to_string().contains("name too long"), "{err}");
    }

    #[test]
    fn tun_and_signal_move_between_threads() {
        fn send<T: Send + 'static>() {}
        send::<Tun>();
        send::<TunSignal>();
        send::<TunError>();
    }
}
