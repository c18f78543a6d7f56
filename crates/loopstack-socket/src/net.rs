//! Blocking mode: one [`Stack`] shared by std::net-shaped sockets on any number of threads.
//!
//! ```text
//!   thread A: stream.write(b"hi")          thread B: stream.read(&mut buf)
//!     lock the stack                          lock the stack
//!     Tcp::send (copy into the send buffer)   Tcp::recv: nothing yet ── WouldBlock
//!     Stack::poll(now): segment ─▶ lo ─▶      wait on `changed` (the lock is released)
//!       IP ─▶ TCP ─▶ B's receive queue
//!     notify `changed` ──────────────────────▶ wakes, locks, Tcp::recv: "hi"
//!     unlock
//! ```
//!
//! *Run to completion.* The thread that sends carries its packet all the way: down the
//! layers, through `lo`, up the layers into the receiving socket, and through any reply that
//! causes (an ACK, a window update), before it returns. There is no hand-off to a network
//! thread on the data path, so a round trip costs two lock hand-overs and two wake-ups.
//!
//! *Timers without a busy loop.* Retransmissions, TIME-WAIT, reassembly time-outs and
//! delayed packets in fault injection need the stack polled at a time nobody's call will
//! provide. One timer thread per stack sleeps until [`Stack::poll_at`], and is woken early
//! only when a call makes that time earlier. With no timer pending it sleeps on a condition
//! variable with no deadline: an idle stack uses no CPU at all.
//!
//! *Time.* The stack's clock is the wall clock since the [`Net`] was made, so captures and
//! traces start at zero as in poll mode. Blocking mode is not deterministic (threads are
//! not); use a [`Stack`] in poll mode for that.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use loopstack_internet::layer::EchoReply;
use loopstack_link::Instant;
use loopstack_transport::Error;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::stack::{Stack, StackConfig, StackError};

/// Echo replies kept per ICMP socket. Past that, replies that arrive are dropped (and
/// counted in [`NetStats::echo_dropped`]) until the socket reads, as a full receive buffer
/// drops new packets on Linux; the queued ones are kept. (This said "the oldest is
/// dropped", which `settle` never did.)
const ECHO_QUEUE: usize = 64;

/// A stack shared by blocking sockets: clone it freely (it is a reference), and pass it to
/// [`TcpListener::bind`](crate::TcpListener::bind), [`TcpStream::connect`](crate::TcpStream::connect),
/// [`UdpSocket::bind`](crate::UdpSocket::bind) and [`IcmpSocket::bind`](crate::IcmpSocket::bind).
///
/// The stack lives as long as any clone or any socket on it; its timer thread stops when
/// the last one goes, and the devices are dropped then (a pcap capture is flushed).
#[derive(Clone)]
pub struct Net {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").finish_non_exhaustive()
    }
}

/// Owned by the application's side only (every `Net` clone and every socket): when the last
/// goes, its `Drop` stops the timer thread, which holds only the [`Core`].
struct Shared {
    core: Arc<Core>,
    timer: Option<JoinHandle<()>>,
}

/// The stack behind its lock, and the two condition variables around it.
pub(crate) struct Core {
    state: Mutex<State>,
    /// Sockets waiting for the stack to change (data, a connection, room to write).
    changed: Condvar,
    /// The timer thread waits here for its deadline, or for an earlier one.
    timer_cv: Condvar,
    /// Stack time zero.
    epoch: std::time::Instant,
}

struct State {
    stack: Stack,
    /// What the timer thread sleeps until (`None`: no timer, it sleeps until woken).
    timer_deadline: Option<Instant>,
    shutdown: bool,
    /// Echo replies by identifier, for the ICMP sockets that own those identifiers.
    echo: BTreeMap<u16, VecDeque<EchoReply>>,
    next_echo_id: u16,
    stats: NetStats,
}

/// Counters of the blocking layer itself (the protocols count in their own layers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Times the timer thread woke up: for a deadline, or because a call moved it earlier.
    pub timer_wakeups: u64,
    /// Times the timer thread found a timer due and polled the stack.
    pub timer_polls: u64,
    /// Echo replies whose identifier no ICMP socket owns, or that found its queue full.
    pub echo_dropped: u64,
}

/// How long a call may wait for the stack.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Deadline {
    /// Non-blocking: try once.
    Now,
    /// Until the call can complete.
    Never,
    /// Until this moment.
    At(std::time::Instant),
}

impl Deadline {
    /// The deadline for a call that may wait `timeout` (`None`: forever).
    pub(crate) fn after(timeout: Option<Duration>) -> Deadline {
        match timeout {
            None => Deadline::Never,
            Some(t) => std::time::Instant::now()
                .checked_add(t)
                .map_or(Deadline::Never, Deadline::At),
        }
    }
}

impl Net {
    /// A stack with the default configuration: `lo` with 127.0.0.1/8 and ::1/128.
    pub fn new() -> io::Result<Net> {
        Net::with_config(StackConfig::default())
    }

    /// A stack built from `config`.
    pub fn with_config(config: StackConfig) -> io::Result<Net> {
        Net::from_stack(Stack::new(config)?)
    }

    /// Shares a stack that was built by hand: with middleware on `lo` (capture, faults,
    /// tracing), or more devices. Starts its timer thread.
    pub fn from_stack(stack: Stack) -> io::Result<Net> {
        let core = Arc::new(Core {
            state: Mutex::new(State {
                stack,
                timer_deadline: None,
                shutdown: false,
                echo: BTreeMap::new(),
                next_echo_id: 1,
                stats: NetStats::default(),
            }),
            changed: Condvar::new(),
            timer_cv: Condvar::new(),
            epoch: std::time::Instant::now(),
        });
        let timer_core = Arc::clone(&core);
        let timer = std::thread::Builder::new()
            .name("loopstack-timers".into())
            .spawn(move || timer_loop(&timer_core))?;
        Ok(Net {
            shared: Arc::new(Shared {
                core,
                timer: Some(timer),
            }),
        })
    }

    /// Runs `f` on the stack under its lock (to read counters, list sockets, change routes),
    /// then lets the stack carry out whatever that caused.
    ///
    /// The lock is not re-entrant: `f` must not call a socket of this stack (nor drop one,
    /// which closes it), or it waits for itself.
    pub fn with<R>(&self, f: impl FnOnce(&mut Stack) -> R) -> R {
        self.core().run(|stack, _| f(stack))
    }

    /// The stack's clock now: the time since this `Net` was made.
    pub fn now(&self) -> Instant {
        self.core().now()
    }

    /// The blocking layer's own counters.
    pub fn stats(&self) -> NetStats {
        self.core().state.lock().stats
    }

    pub(crate) fn core(&self) -> &Core {
        &self.shared.core
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        {
            let mut st = self.core.state.lock();
            st.shutdown = true;
            self.core.timer_cv.notify_all();
        }
        if let Some(t) = self.timer.take() {
            // The timer thread holds no `Shared`, so this never waits for itself.
            let _ = t.join();
        }
    }
}

impl From<StackError> for io::Error {
    fn from(e: StackError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

impl Core {
    fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn wall(&self, t: Instant) -> std::time::Instant {
        self.epoch
            .checked_add(Duration::from_nanos(t.as_nanos()))
            .unwrap_or(self.epoch)
    }

    /// Runs `f` at the current time, then the stack to completion.
    pub(crate) fn run<R>(&self, f: impl FnOnce(&mut Stack, Instant) -> R) -> R {
        let mut st = self.state.lock();
        let now = self.now();
        let r = f(&mut st.stack, now);
        st.stack.poll(now);
        // A call made through `run` changes something (binds, closes, sends) by nature.
        self.settle(&mut st, true);
        r
    }

    /// Calls `f` until it returns something other than [`Error::WouldBlock`], waiting for
    /// the stack to change between tries, until `deadline`. Returns `WouldBlock` when the
    /// deadline passes (what Linux's `SO_RCVTIMEO` and a non-blocking socket report).
    pub(crate) fn wait<R>(
        &self,
        deadline: Deadline,
        mut f: impl FnMut(&mut Stack, Instant) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut st = self.state.lock();
        loop {
            let now = self.now();
            let r = f(&mut st.stack, now);
            let changed = poll_stack(&mut st.stack, now);
            let blocked = matches!(r, Err(Error::WouldBlock));
            // Wake the others only when something changed: a failed try that woke them
            // would have them wake it back, for ever.
            self.settle(&mut st, changed || !blocked);
            if !blocked {
                return r;
            }
            if changed {
                // This poll ran timers or moved packets after `f` looked (a connection
                // that gave up, data a delayed packet brought): that may be what `f`
                // waits for, and the wake-up it sent reaches the others only. Try again
                // before sleeping, or sleep through it.
                continue;
            }
            match deadline {
                Deadline::Now => return r,
                Deadline::Never => self.changed.wait(&mut st),
                Deadline::At(t) => {
                    if std::time::Instant::now() >= t {
                        return r;
                    }
                    let _ = self.changed.wait_until(&mut st, t);
                }
            }
        }
    }

    /// After the stack ran: hand echo replies to their sockets, wake waiting sockets if
    /// anything changed, and wake the timer thread if the next timer is now earlier than
    /// the one it sleeps for.
    fn settle(&self, st: &mut MutexGuard<'_, State>, changed: bool) {
        let st = &mut **st;
        while let Some(reply) = st.stack.take_echo_reply() {
            match st.echo.get_mut(&reply.id) {
                Some(q) if q.len() < ECHO_QUEUE => q.push_back(reply),
                _ => st.stats.echo_dropped += 1,
            }
        }
        if changed {
            self.changed.notify_all();
        }
        if let Some(next) = st.stack.poll_at() {
            if st.timer_deadline.is_none_or(|d| next < d) {
                st.timer_deadline = Some(next);
                self.timer_cv.notify_one();
            }
        }
    }

    /// Claims an echo identifier for an ICMP socket: `id`, or the next free one for 0.
    pub(crate) fn claim_echo_id(&self, id: u16) -> Result<u16, Error> {
        let mut st = self.state.lock();
        let id = if id == 0 {
            let mut candidate = st.next_echo_id;
            let mut tries = 0u32;
            while candidate == 0 || st.echo.contains_key(&candidate) {
                candidate = candidate.wrapping_add(1);
                tries += 1;
                if tries > u32::from(u16::MAX) {
                    return Err(Error::AddrNotAvailable);
                }
            }
            st.next_echo_id = candidate.wrapping_add(1);
            candidate
        } else if st.echo.contains_key(&id) {
            return Err(Error::AddrInUse);
        } else {
            id
        };
        st.echo.insert(id, VecDeque::new());
        Ok(id)
    }

    /// Gives an echo identifier back, with the replies nobody read.
    pub(crate) fn release_echo_id(&self, id: u16) {
        self.state.lock().echo.remove(&id);
    }

    /// Waits for an echo reply to identifier `id`.
    pub(crate) fn wait_echo(&self, id: u16, deadline: Deadline) -> Result<EchoReply, Error> {
        let mut st = self.state.lock();
        loop {
            let now = self.now();
            let changed = poll_stack(&mut st.stack, now);
            self.settle(&mut st, changed);
            if let Some(reply) = st.echo.get_mut(&id).and_then(VecDeque::pop_front) {
                return Ok(reply);
            }
            match deadline {
                Deadline::Now => return Err(Error::WouldBlock),
                Deadline::Never => self.changed.wait(&mut st),
                Deadline::At(t) => {
                    if std::time::Instant::now() >= t {
                        return Err(Error::WouldBlock);
                    }
                    let _ = self.changed.wait_until(&mut st, t);
                }
            }
        }
    }
}

/// Polls the stack at `now`; returns whether that changed anything a waiting socket may
/// be waiting for: packets moved, or due timers ran.
///
/// [`Stack::poll`] reports packets moved only, but a timer can change a socket without
/// moving one: a connection whose last retransmission (SYN or data) was lost gives up
/// and fails with `TimedOut`, TIME-WAIT ends. Counting only packets left a `connect` or
/// `read` blocked for ever on such a connection. A due timer counts once it has run,
/// that is once the stack's next deadline moved; one that stays put is a layer asking
/// again for a past time without doing anything, and must not wake every waiter.
fn poll_stack(stack: &mut Stack, now: Instant) -> bool {
    let due = stack.poll_at().filter(|&t| t <= now);
    let worked = stack.poll(now);
    worked || due.is_some_and(|d| stack.poll_at() != Some(d))
}

/// The timer thread: sleeps until the stack's next timer, polls it, and sleeps again.
fn timer_loop(core: &Core) {
    let mut st = core.state.lock();
    loop {
        if st.shutdown {
            return;
        }
        let now = core.now();
        match st.stack.poll_at() {
            Some(t) if t <= now => {
                st.stats.timer_polls += 1;
                let changed = poll_stack(&mut st.stack, now);
                st.timer_deadline = None;
                core.settle(&mut st, changed);
                if st.stack.poll_at().is_some_and(|t| t <= now) {
                    // A layer asks again for a time that has passed, and polling did not
                    // change that: sleep a millisecond rather than spin on it.
                    let retry = now + Duration::from_millis(1);
                    st.timer_deadline = Some(retry);
                    let _ = core.timer_cv.wait_until(&mut st, core.wall(retry));
                    st.stats.timer_wakeups += 1;
                }
            }
            Some(t) => {
                st.timer_deadline = Some(t);
                let _ = core.timer_cv.wait_until(&mut st, core.wall(t));
                st.stats.timer_wakeups += 1;
            }
            None => {
                st.timer_deadline = None;
                core.timer_cv.wait(&mut st);
                st.stats.timer_wakeups += 1;
            }
        }
    }
}
