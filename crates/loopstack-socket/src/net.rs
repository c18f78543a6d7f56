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
//! *Busy-polling before sleeping.* A wake-up through the condition variable costs a futex
//! call and a context switch: 40-50 µs on the reference VM, fifty times what loopstack
//! needs for the whole round trip. So a call that must wait first spins for a while
//! ([`Net::set_busy_poll`], 50 µs by default, as Linux's `busy_read`) without the lock,
//! watching a counter that every change bumps, and sleeps only if nothing came. The
//! round trip between two threads fell from about 80 µs to about 3-5 µs
//! (docs/benchmarks.md). At most one thread fewer than there are CPUs spins at a time, and
//! a spinner offers its CPU to any other runnable thread between checks (`sched_yield`):
//! the thread it waits for may be queued on that very CPU. A waiter that finds no place
//! free yields once before it sleeps, for the same reason.
//!
//! *Timers without a busy loop.* Retransmissions, TIME-WAIT, reassembly time-outs and
//! delayed packets in fault injection need the stack polled at a time nobody's call will
//! provide. One timer thread per stack sleeps until [`Stack::poll_at`], and is woken early
//! only when a call makes that time earlier. With no timer pending it sleeps on a condition
//! variable with no deadline: an idle stack uses no CPU at all.
//!
//! *Devices fed from outside.* A packet on `lo` was put there by a call that polls the
//! stack anyway; a packet the kernel writes to a TUN was not, and nobody may call into the
//! stack for a long time. [`Net::add_device`] gives such a device a thread of its own that
//! sleeps in its [`RxSignal`] until the device has a packet, then polls the stack as a
//! socket call would:
//!
//! ```text
//!   kernel ─▶ tun0                       loopstack-rx-tun0        thread B: sock.recv_from()
//!                                          signal.wait() ◀─ readable
//!                                          lock the stack             (waiting on `changed`)
//!                                          Stack::poll(now): tun0 ─▶ IP ─▶ UDP ─▶ B's queue
//!                                            (and any answer: ICMP, an ACK ─▶ tun0)
//!                                          notify `changed` ────────▶ wakes, locks, "hi"
//!                                          unlock, signal.wait()
//! ```
//!
//! It is woken by the device only, never by time, so an idle device costs no CPU either.
//!
//! *Time.* The stack's clock is the wall clock since the [`Net`] was made, so captures and
//! traces start at zero as in poll mode. Blocking mode is not deterministic (threads are
//! not); use a [`Stack`] in poll mode for that.
//!
//! *Shutting down.* The timer and rx threads hold only the `Core` (the stack and its
//! condition variables), never a [`Net`]: the application's handles alone keep the stack
//! running. When the last one goes, `Shared`'s `Drop` tells the threads to stop, joins them,
//! and only then lets the stack, with its devices and their file descriptors, be dropped.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use loopstack_internet::iface::InterfaceId;
use loopstack_internet::layer::EchoReply;
use loopstack_internet::Cidr;
use loopstack_link::{Instant, RxSignal};
use loopstack_transport::Error;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::stack::{BoxedDevice, Stack, StackConfig, StackError};

/// Echo replies kept per ICMP socket. Past that, replies that arrive are dropped (and
/// counted in [`NetStats::echo_dropped`]) until the socket reads, as a full receive buffer
/// drops new packets on Linux; the queued ones are kept. (This said "the oldest is
/// dropped", which `settle` never did.)
const ECHO_QUEUE: usize = 64;

/// A stack shared by blocking sockets: clone it freely (it is a reference), and pass it to
/// [`TcpListener::bind`](crate::TcpListener::bind), [`TcpStream::connect`](crate::TcpStream::connect),
/// [`UdpSocket::bind`](crate::UdpSocket::bind) and [`IcmpSocket::bind`](crate::IcmpSocket::bind).
///
/// The stack lives as long as any clone or any socket on it; its timer thread, and the rx
/// thread of each device added with [`add_device`](Net::add_device), stop when the last one
/// goes, and the devices are dropped then (a pcap capture is flushed, a TUN is closed).
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
/// goes, its `Drop` stops the timer thread and the rx threads, which hold only the [`Core`].
struct Shared {
    core: Arc<Core>,
    timer: Option<JoinHandle<()>>,
    /// One per device added with [`Net::add_device`]. Behind a lock because `add_device`
    /// takes `&self` on a `Shared` every clone shares; `Drop` has `&mut` and needs no lock.
    rx: Mutex<Vec<RxThread>>,
}

/// A device's rx thread, as its owner needs it to stop it.
struct RxThread {
    /// Makes the thread's current or next `RxSignal::wait` return. Taken from the signal
    /// before it moved into the thread: the signal itself is the thread's from then on.
    interrupt: Box<dyn Fn() + Send + Sync>,
    thread: JoinHandle<()>,
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
    /// Counts the changes `settle` announced (bumped under the lock, before `changed` is
    /// notified). A waiter that busy-polls watches it without taking the lock.
    generation: AtomicU64,
    /// How long a waiting call busy-polls before it sleeps, in nanoseconds
    /// ([`Net::set_busy_poll`]).
    busy_poll: AtomicU64,
    /// Waiters spinning now. At most [`Core::max_spinners`] spin at once: with more
    /// threads waiting than CPUs, extra spinners would only take CPU time from the threads
    /// they wait for.
    spinners: AtomicUsize,
    /// One fewer than the CPUs: one is left for the thread that brings the change.
    max_spinners: usize,
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
    /// Times an rx thread (one per device added with [`Net::add_device`]) returned from
    /// [`RxSignal::wait`] and polled the stack: once per burst of packets, plus any
    /// spurious return of the signal. Zero while no packet arrives.
    pub rx_wakeups: u64,
    /// Of those polls, the ones that changed something (moved a packet, ran a due timer),
    /// and so woke the waiting sockets. A wake-up that changed nothing is a spurious one.
    pub rx_polls_changed: u64,
    /// Times [`RxSignal::wait`] failed. The rx thread stops then: the device stays in the
    /// stack, but is read only when something else polls it (a socket call, the timer
    /// thread), so packets that arrive while the stack is idle wait until then.
    pub rx_wait_errors: u64,
    /// Times a waiting call saw the stack change while it busy-polled
    /// ([`Net::set_busy_poll`]), or while it yielded its CPU for want of a spinner place,
    /// and so went on without sleeping.
    pub busy_poll_hits: u64,
    /// Times a waiting call went to sleep on the condition variable (its busy-poll, if
    /// any, ran out first). Each costs a thread wake-up when the change comes.
    pub sleeps: u64,
    /// Times a call found the stack's lock held by another thread and busy-polled for it
    /// ([`Net::set_busy_poll`]) before queueing on it.
    pub lock_spins: u64,
    /// Of those, the times the lock came free during the busy-poll, so the call took it
    /// without sleeping.
    pub lock_spin_hits: u64,
}

/// The default busy-poll time: 50 µs, the value Linux's documentation suggests for
/// `net.core.busy_read`, and about what waking a sleeping thread costs on a virtual
/// machine (40-50 µs measured on the reference VM).
const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(50);

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
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let core = Arc::new(Core::new(stack, cpus - 1));
        let timer_core = Arc::clone(&core);
        let timer = std::thread::Builder::new()
            .name("loopstack-timers".into())
            .spawn(move || timer_loop(&timer_core))?;
        Ok(Net {
            shared: Arc::new(Shared {
                core,
                timer: Some(timer),
                rx: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Adds a device whose packets arrive from outside the process (a TUN), with its
    /// addresses as [`Stack::add_device`] adds them, and starts its rx thread,
    /// `loopstack-rx-<device name>`.
    ///
    /// The thread loops: [`signal.wait()`](RxSignal::wait), then lock the stack, poll it,
    /// wake the sockets waiting on it if that changed anything, and re-arm the timer thread.
    /// So a packet that arrives is received, answered (an ACK, an ICMP error) and handed to
    /// a blocked socket with no call from the application, and an idle device costs nothing:
    /// the thread sleeps in `wait` until the device has something. [`NetStats`] counts its
    /// wake-ups (`rx_wakeups`, `rx_polls_changed`); if `wait` fails, the thread counts it in
    /// `rx_wait_errors` and stops.
    ///
    /// When the last handle on the stack goes, the thread is interrupted (through
    /// [`RxSignal::interrupter`]) and joined before the device is dropped. The device and
    /// the signal must not hold a [`Net`] or a socket of this stack themselves: the stack
    /// would then keep itself alive.
    ///
    /// The signal must report a device that can no longer be read (a TUN whose descriptor
    /// reports an error or hang-up) as an error, not as readiness: `wait` returning at once
    /// with nothing to receive, again and again, would make this thread spin.
    ///
    /// A device that only this stack's own calls feed (`lo`, with any middleware) needs no
    /// thread: build it into the [`Stack`] given to [`Net::from_stack`].
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] if the device or an address cannot be added (a name
    /// in use, an invalid name, an address already assigned): no thread is left running, and
    /// the device and the signal are dropped. (As with [`Stack::add_device`], an address
    /// that fails leaves the interface, and the addresses before it, in the internet layer
    /// without a device.) Any error spawning the thread, with the device not added.
    pub fn add_device(
        &self,
        device: BoxedDevice,
        addrs: &[Cidr],
        mut signal: Box<dyn RxSignal>,
    ) -> io::Result<InterfaceId> {
        // A NUL in the name would make `spawn` panic; a device name never has one in
        // practice (the interface layer refuses it), but the thread starts before that check.
        let name = format!("loopstack-rx-{}", device.name()).replace('\0', "?");
        let interrupt = signal.interrupter();
        // The thread starts first and waits for a go: so a device is never in the stack
        // without its thread (spawning can fail, and the stack cannot remove a device), and
        // a thread never outlives a device that could not be added.
        let (go, start) = mpsc::channel::<bool>();
        let core = Arc::clone(&self.shared.core);
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            if start.recv() == Ok(true) {
                rx_loop(&core, &mut *signal);
            }
            // The signal and this reference to the `Core` are dropped here, before the
            // thread ends: once it is joined, they are gone.
        })?;
        // `run` also polls once: packets already waiting on the device are received now.
        match self.core().run(|stack, _| stack.add_device(device, addrs)) {
            Ok(id) => {
                // The thread is alive and owns `start` until it gets this: the send cannot
                // fail. If it did, the thread would just end, as for an error.
                let _ = go.send(true);
                self.shared.rx.lock().push(RxThread { interrupt, thread });
                Ok(id)
            }
            Err(e) => {
                let _ = go.send(false);
                let _ = thread.join();
                Err(e.into())
            }
        }
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

    /// Sets how long a blocking call that must wait (a `read` with no data, a `write` with
    /// a full buffer, an `accept`, a `recv_from`) first busy-polls: spins without the lock,
    /// watching for another thread's call to change the stack, before it sleeps on the
    /// condition variable. Like Linux's `SO_BUSY_POLL` and `net.core.busy_read`.
    ///
    /// Waking a sleeping thread costs the kernel's scheduler a futex wake-up and a context
    /// switch, 5-50 µs depending on the machine, where a spinning thread sees the change
    /// within a fraction of a microsecond: a round trip between two threads pays two of
    /// them. Spinning costs a CPU for up to this long per wait, so it pays only when the
    /// peer thread runs on another CPU: so at most one thread fewer than the machine has
    /// CPUs spins at a time (none on one CPU), and the others yield their CPU once and then
    /// sleep (item 28 in docs/benchmarks.md says why the yield). Zero turns it
    /// off; the default is 50 µs. [`NetStats::busy_poll_hits`] and [`NetStats::sleeps`]
    /// count how waits ended.
    ///
    /// Between checks a spinner yields its CPU to any other thread waiting for it
    /// (`sched_yield`), which returns at once when there is none. When the machine is busier
    /// than its CPUs (another process, the hypervisor taking a vCPU), the thread the
    /// spinner waits for can be queued behind it on the same CPU, and Linux lets a thread
    /// run out its time slice before one it just woke: a spin that did not yield then
    /// only delayed that thread by the whole spin.
    pub fn set_busy_poll(&self, spin: Duration) {
        self.core().busy_poll.store(nanos(spin), Ordering::Relaxed);
    }

    /// The busy-poll time ([`set_busy_poll`](Self::set_busy_poll)).
    pub fn busy_poll(&self) -> Duration {
        Duration::from_nanos(self.core().busy_poll.load(Ordering::Relaxed))
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
        // Interrupt outside the stack's lock: an interrupter may take a lock of the device
        // (its queue, say) that a device method takes under the stack's lock.
        let rx = std::mem::take(self.rx.get_mut());
        for r in &rx {
            (r.interrupt)();
        }
        // The timer and rx threads hold no `Shared`, so these never wait for themselves; a
        // thread that already stopped (a failed wait) is joined at once. A thread that
        // panicked (a device method did) has nothing more to stop.
        if let Some(t) = self.timer.take() {
            let _ = t.join();
        }
        for r in rx {
            let _ = r.thread.join();
        }
        // Only now can `core` be the last reference to the stack: it is dropped with `self`,
        // devices included, after every thread that could still touch them has ended.
    }
}

impl From<StackError> for io::Error {
    fn from(e: StackError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

impl Core {
    /// The stack behind its lock, with no thread started yet, letting at most
    /// `max_spinners` waiters busy-poll at once.
    fn new(stack: Stack, max_spinners: usize) -> Core {
        Core {
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
            generation: AtomicU64::new(0),
            busy_poll: AtomicU64::new(nanos(DEFAULT_BUSY_POLL)),
            spinners: AtomicUsize::new(0),
            max_spinners,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    fn wall(&self, t: Instant) -> std::time::Instant {
        self.epoch
            .checked_add(Duration::from_nanos(t.as_nanos()))
            .unwrap_or(self.epoch)
    }

    /// The stack's lock, for a socket call. If another thread holds it, this thread
    /// busy-polls for it first, as a waiting call busy-polls for a change
    /// ([`Net::set_busy_poll`]), and only then queues on the lock, which sleeps.
    ///
    /// A thread holds the lock for as long as a call takes, and a call that moves 64 KiB
    /// (a write into the send buffer, a read out of the receive queue) takes several
    /// microseconds: longer than `parking_lot` spins before it parks the thread on a
    /// futex. A parked thread costs a wake-up (tens of microseconds on a virtual machine)
    /// when the lock comes free. Between two threads moving bulk data that was one wait
    /// in two, and a transfer ran at a third of its speed, in about half the runs on the
    /// VM of docs/benchmarks.md (item 29).
    fn lock_state(&self) -> MutexGuard<'_, State> {
        if let Some(st) = self.state.try_lock() {
            return st;
        }
        let spun = self.spin_while_locked();
        let mut st = self.state.lock();
        if let Some(freed) = spun {
            st.stats.lock_spins += 1;
            st.stats.lock_spin_hits += u64::from(freed);
        }
        st
    }

    /// Spins, without taking it, while the stack's lock is held, for at most the busy-poll
    /// time, yielding between batches of checks ([`spin_until`]: the holder may be queued
    /// on this CPU). Returns whether the lock came free, or `None` if busy-polling is off.
    fn spin_while_locked(&self) -> Option<bool> {
        let spin = Duration::from_nanos(self.busy_poll.load(Ordering::Relaxed));
        if spin.is_zero() {
            return None;
        }
        let now = std::time::Instant::now();
        let end = now.checked_add(spin).unwrap_or(now);
        Some(spin_until(end, || !self.state.is_locked()))
    }

    /// Runs `f` at the current time, then the stack to completion.
    pub(crate) fn run<R>(&self, f: impl FnOnce(&mut Stack, Instant) -> R) -> R {
        let mut st = self.lock_state();
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
        let mut st = self.lock_state();
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
            if !self.sleep(&mut st, deadline) {
                return r;
            }
        }
    }

    /// Waits until another call changes the stack (its `settle` says so), or `deadline`
    /// passes: busy-polls first ([`Net::set_busy_poll`]), without the lock, then sleeps on
    /// `changed`. Returns false, at once, if the deadline has passed (or is `Now`).
    ///
    /// No change is missed: `generation` only moves under the lock, and it is read under
    /// the lock before the spin and again before sleeping, which releases the lock only
    /// once this thread is queued on the condition variable.
    fn sleep(&self, st: &mut MutexGuard<'_, State>, deadline: Deadline) -> bool {
        let until = match deadline {
            Deadline::Now => return false,
            Deadline::Never => None,
            Deadline::At(t) => {
                if std::time::Instant::now() >= t {
                    return false;
                }
                Some(t)
            }
        };
        let seen = self.generation.load(Ordering::Relaxed);
        let spin = Duration::from_nanos(self.busy_poll.load(Ordering::Relaxed));
        if !spin.is_zero() {
            MutexGuard::unlocked(st, || {
                if !self.claim_spinner() {
                    // Every place is taken, perhaps by a spinner queued on this very CPU
                    // and waiting for the change this thread just made: two threads that
                    // have slept tend to be woken onto one CPU and to stay there. Yielding
                    // lets it run, see the change and give its place back. Without this,
                    // each of the two found the place taken on every wait and slept, and
                    // a round trip after an idle spell cost two wake-ups for as long as
                    // the pair stayed on one CPU (docs/benchmarks.md, item 28).
                    std::thread::yield_now();
                    if self.generation.load(Ordering::Relaxed) != seen || !self.claim_spinner() {
                        return;
                    }
                }
                self.spin(seen, spin, until);
                // The place goes back before the lock is taken again: the thread that made
                // the change usually still holds it, and a waiter queued on the lock is not
                // spinning. Given back only after the lock, the place stayed taken while
                // that thread, finding it taken, had to sleep on `changed` for its own next
                // wait: every other wait of a bulk transfer between two threads slept, at
                // a futex wake-up each (docs/benchmarks.md, item 15).
                self.spinners.fetch_sub(1, Ordering::Relaxed);
                // The lock is taken again on the way out: wait for it as a socket call
                // does (`lock_state`), not parked at once behind a thread that holds it.
                let _ = self.spin_while_locked();
            });
            // Checked whether or not this thread got to spin: the lock was let go.
            if self.generation.load(Ordering::Relaxed) != seen {
                st.stats.busy_poll_hits += 1;
                return true;
            }
        }
        st.stats.sleeps += 1;
        match until {
            None => self.changed.wait(st),
            Some(t) => {
                let _ = self.changed.wait_until(st, t);
            }
        }
        true
    }

    /// Takes one of the [`max_spinners`](Core::max_spinners) places, if one is free.
    fn claim_spinner(&self) -> bool {
        self.spinners
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_spinners).then_some(n + 1)
            })
            .is_ok()
    }

    /// Spins, without the lock, until `generation` moves from `seen`, for at most `spin`
    /// (and not past `until`), yielding between batches of checks ([`spin_until`]).
    fn spin(&self, seen: u64, spin: Duration, until: Option<std::time::Instant>) {
        let start = std::time::Instant::now();
        let mut end = start.checked_add(spin).unwrap_or(start);
        if let Some(t) = until {
            end = end.min(t);
        }
        spin_until(end, || self.generation.load(Ordering::Relaxed) != seen);
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
            self.generation.fetch_add(1, Ordering::Relaxed);
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
            if !self.sleep(&mut st, deadline) {
                return Err(Error::WouldBlock);
            }
        }
    }
}

/// A duration in nanoseconds, saturating (584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
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

/// A device's rx thread: sleeps until the device may have a packet, polls the stack, and
/// sleeps again, until shutdown or until the wait fails.
///
/// The signal is level-triggered: `wait` returns at once while the device holds packets,
/// and the poll drains them (`Stack::poll` reads every device until it is quiet), so each
/// burst costs one wake-up. The stack's lock is never held across `wait`.
fn rx_loop(core: &Core, signal: &mut dyn RxSignal) {
    loop {
        let waited = signal.wait();
        let mut st = core.state.lock();
        // Checked after every wake-up, under the lock `Drop` sets it under: an interrupt
        // returns here, and a wake-up that raced with it must not poll a stack that is going.
        if st.shutdown {
            return;
        }
        if waited.is_err() {
            // Nothing says a failed wait will not fail again at once: retrying could spin.
            // The error itself has nobody to go to; the counter says it happened.
            st.stats.rx_wait_errors += 1;
            return;
        }
        st.stats.rx_wakeups += 1;
        let now = core.now();
        let changed = poll_stack(&mut st.stack, now);
        if changed {
            st.stats.rx_polls_changed += 1;
        }
        // As after a socket call: wake the sockets if a packet reached them, and move the
        // timer thread's deadline if the packet armed an earlier timer (an ACK to delay, a
        // retransmission of the answer).
        core.settle(&mut st, changed);
    }
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

/// Checks `done` until it holds or `end` passes, and returns whether it held. The clock is
/// read once per 64 checks: it costs more than a check.
///
/// After each 64 checks (a microsecond or two) the spinner yields its CPU: if the thread
/// it waits for is runnable on this CPU, it runs now, instead of after this thread's time
/// slice (Linux's scheduler does not preempt a running thread for one it woke until the
/// slice is over). With nothing else to run, the yield returns at once. Measured on the
/// 2-vCPU reference VM with a CPU-bound process beside two threads (docs/benchmarks.md,
/// item 27): a MiB over TCP took 1.1 ms with the spin that did not yield and 0.2 ms with
/// this one, a TCP round trip 132 µs and 28 µs; alone, both spins measure the same.
fn spin_until(end: std::time::Instant, done: impl Fn() -> bool) -> bool {
    loop {
        for _ in 0..64 {
            if done() {
                return true;
            }
            std::hint::spin_loop();
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A stack's core with one spinner place and `busy_poll` of busy-polling.
    fn test_core(busy_poll: Duration) -> Arc<Core> {
        let core = Arc::new(Core::new(Stack::new(StackConfig::default()).unwrap(), 1));
        core.busy_poll.store(nanos(busy_poll), Ordering::Relaxed);
        core
    }

    /// Waits, for at most 10 s, until `done` holds; panics with `what` otherwise.
    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < end, "{what}");
            std::thread::yield_now();
        }
    }

    /// A call that finds the stack's lock held busy-polls for it, and takes it when it
    /// comes free, instead of queueing on it at once (and sleeping, for as long as the
    /// holder takes over `parking_lot`'s few microseconds of spinning). With busy-polling
    /// off it queues at once.
    #[test]
    fn a_call_busy_polls_for_a_held_lock_before_it_sleeps() {
        for busy_poll in [Duration::from_secs(600), Duration::ZERO] {
            let core = test_core(busy_poll);
            let holding = Arc::new(AtomicBool::new(false));
            let holder = {
                let (core, holding) = (Arc::clone(&core), Arc::clone(&holding));
                std::thread::spawn(move || {
                    let _st = core.state.lock();
                    holding.store(true, Ordering::Release);
                    // Far longer than parking_lot spins before it parks a waiter, and
                    // long enough that the call below finds the lock held even on a
                    // loaded machine.
                    std::thread::sleep(Duration::from_millis(200));
                })
            };
            wait_for("the holder takes the lock", || {
                holding.load(Ordering::Acquire)
            });
            let stats = core.lock_state().stats;
            holder.join().unwrap();
            if busy_poll.is_zero() {
                assert_eq!((stats.lock_spins, stats.lock_spin_hits), (0, 0));
            } else {
                assert_eq!((stats.lock_spins, stats.lock_spin_hits), (1, 1));
            }
        }
    }

    /// A waiter whose spin saw the change gives its spinner place back before it waits for
    /// the lock, which the thread that made the change still holds. That thread can then
    /// spin for its own next wait instead of sleeping.
    #[test]
    fn a_spinner_gives_its_place_back_before_it_takes_the_lock() {
        let core = test_core(Duration::from_secs(600));
        let waiter = {
            let core = Arc::clone(&core);
            std::thread::spawn(move || {
                let mut st = core.state.lock();
                core.sleep(&mut st, Deadline::Never)
            })
        };
        wait_for("the waiter never started to spin", || {
            core.spinners.load(Ordering::Relaxed) == 1
        });
        // Change the stack, as a socket call does, and keep its lock.
        let mut st = core.state.lock();
        core.settle(&mut st, true);
        wait_for(
            "the waiter kept its spinner place while it waited for the lock",
            || core.spinners.load(Ordering::Relaxed) == 0,
        );
        // So this thread may spin for its next wait.
        assert!(core.claim_spinner());
        core.spinners.fetch_sub(1, Ordering::Relaxed);
        drop(st);
        assert!(waiter.join().unwrap(), "the waiter saw the change");
        let stats = core.state.lock().stats;
        assert_eq!((stats.busy_poll_hits, stats.sleeps), (1, 0), "{stats:?}");
    }

    /// Set in the environment of the child process that a test runs itself in, pinned to
    /// one CPU ([`on_one_cpu`]).
    const ONE_CPU: &str = "LOOPSTACK_TEST_ONE_CPU";

    /// For a test that must run with all its threads on one CPU: in the test process,
    /// runs the test `name` (under `net::tests::`) again in a child process pinned to one
    /// CPU with `taskset` (util-linux), checks that it passed, and returns false; in that
    /// child, returns true, and the test runs its body. The CPU is the first this process
    /// may use (`Cpus_allowed_list`), which a container need not number from 0.
    fn on_one_cpu(name: &str) -> bool {
        if std::env::var_os(ONE_CPU).is_some() {
            return true;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let cpu: String = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|list| {
                list.trim()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect()
            })
            .filter(|c: &String| !c.is_empty())
            .unwrap_or_else(|| "0".to_owned());
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("taskset")
            .args(["-c", &cpu])
            .arg(&exe)
            .args([
                "--exact",
                &format!("net::tests::{name}"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ONE_CPU, "1")
            .output()
            .expect("taskset (util-linux) runs this test on one CPU");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the test on one CPU failed:\n{text}");
        assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
        false
    }

    /// A stack that lets one thread spin, for 300 µs (far below a time slice, 0.75 ms at
    /// least; far above a few yields), and a thread waiting on it (`Core::sleep` until a
    /// change, then `then`), which has started to spin, or slept, when this returns. On
    /// one CPU this thread gets the CPU back only when the waiter yields it or sleeps.
    fn spinning_waiter(
        then: fn(&Core, &mut MutexGuard<'_, State>),
    ) -> (Arc<Core>, std::thread::JoinHandle<bool>) {
        let core = test_core(Duration::from_micros(300));
        let waiter = {
            let core = Arc::clone(&core);
            std::thread::spawn(move || {
                let mut st = core.state.lock();
                let woke = core.sleep(&mut st, Deadline::Never);
                then(&core, &mut st);
                woke
            })
        };
        wait_for("the waiter neither spun nor slept", || {
            core.spinners.load(Ordering::Relaxed) == 1 || core.state.lock().stats.sleeps > 0
        });
        (core, waiter)
    }

    /// Two threads on one CPU, where the stack believes it may spin (as when another
    /// process or the hypervisor has taken the second CPU): the thread that brings the
    /// change gets to run while the waiter spins, because the spinner yields between
    /// checks, so the wait ends in a hit (in one of five tries at least: other processes
    /// may run on that CPU too). A spinner that did not yield kept the CPU for its whole
    /// spin (well within a time slice, which Linux lets run out before switching) and then
    /// slept, in every try.
    #[test]
    fn a_spinner_lets_a_thread_on_its_own_cpu_bring_the_change() {
        if !on_one_cpu("a_spinner_lets_a_thread_on_its_own_cpu_bring_the_change") {
            return;
        }
        // Other processes may take this CPU too: the first wait that ended in a hit will
        // do, out of five. Without the yield each one ends in a sleep.
        let mut seen = Vec::new();
        for _ in 0..5 {
            let (core, waiter) = spinning_waiter(|_, _| {});
            let mut st = core.state.lock();
            core.settle(&mut st, true);
            drop(st);
            assert!(waiter.join().unwrap());
            let stats = core.state.lock().stats;
            if (stats.busy_poll_hits, stats.sleeps) == (1, 0) {
                return;
            }
            seen.push(stats);
        }
        panic!("every wait slept, none saw the change while spinning: {seen:?}");
    }

    /// Two threads on one CPU, the one spinner place taken by a waiter that the other
    /// thread's change will satisfy (as after an idle spell, when the scheduler has put
    /// both threads of a connection on one CPU): the other thread makes the change and
    /// then waits itself. It finds the place taken, yields, and the spinner runs, sees the
    /// change and gives the place back, so its own wait ends without sleeping, here by
    /// seeing the change the first thread makes next. A waiter that slept at once when the
    /// place was taken slept in every try (checked).
    #[test]
    fn a_waiter_that_finds_the_spinner_place_taken_yields_before_it_sleeps() {
        if !on_one_cpu("a_waiter_that_finds_the_spinner_place_taken_yields_before_it_sleeps") {
            return;
        }
        let mut seen = Vec::new();
        for _ in 0..5 {
            // Waits for this thread's change, then answers it with one of its own.
            let (core, first) = spinning_waiter(|core, st| core.settle(st, true));
            let mut st = core.state.lock();
            core.settle(&mut st, true);
            let before = st.stats;
            let deadline = Deadline::At(std::time::Instant::now() + Duration::from_secs(5));
            assert!(core.sleep(&mut st, deadline));
            let after = st.stats;
            drop(st);
            assert!(first.join().unwrap());
            // No sleep: this wait ended as a hit (and so did the first thread's).
            if after.sleeps == before.sleeps {
                assert!(after.busy_poll_hits > before.busy_poll_hits, "{after:?}");
                return;
            }
            seen.push((before, after));
        }
        panic!("the second waiter slept in every try: {seen:?}");
    }
}
