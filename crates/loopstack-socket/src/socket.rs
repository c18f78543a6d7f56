//! What every blocking socket is made of: the shared stack, a handle into one of its
//! protocol tables, and the options std sockets have (non-blocking mode, timeouts). The
//! socket types (`TcpStream`, `UdpSocket`, ...) hold one of these in an `Arc`, shared by
//! their `try_clone`s, and the last clone to go closes the handle.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use loopstack_link::Instant;
use loopstack_transport::Error;

use crate::net::{Deadline, Net};
use crate::stack::Stack;

/// How a handle gives its socket back when the last clone goes.
pub(crate) trait Close: Copy + std::fmt::Debug {
    /// Closes the socket as dropping a std socket does.
    fn close(self, net: &Net);
}

/// One open socket: its stack, its handle and its options.
#[derive(Debug)]
pub(crate) struct Socket<H: Close> {
    pub(crate) net: Net,
    pub(crate) handle: H,
    pub(crate) options: Options,
}

impl<H: Close> Drop for Socket<H> {
    fn drop(&mut self) {
        self.handle.close(&self.net);
    }
}

impl<H: Close> Socket<H> {
    pub(crate) fn new(net: &Net, handle: H) -> Arc<Self> {
        Arc::new(Socket {
            net: net.clone(),
            handle,
            options: Options::default(),
        })
    }

    /// A call that never waits (an address, an option).
    pub(crate) fn call<R>(
        &self,
        f: impl FnOnce(&mut Stack, H) -> Result<R, Error>,
    ) -> io::Result<R> {
        let h = self.handle;
        Ok(self.net.core().run(|s, _| f(s, h))?)
    }

    /// A receive: waits, within the read timeout, while `f` says [`Error::WouldBlock`].
    pub(crate) fn read_wait<R>(
        &self,
        mut f: impl FnMut(&mut Stack, Instant, H) -> Result<R, Error>,
    ) -> io::Result<R> {
        let h = self.handle;
        let deadline = self.options.read_deadline();
        Ok(self.net.core().wait(deadline, |s, now| f(s, now, h))?)
    }

    /// A send: waits, within the write timeout, while `f` says [`Error::WouldBlock`].
    pub(crate) fn write_wait<R>(
        &self,
        mut f: impl FnMut(&mut Stack, Instant, H) -> Result<R, Error>,
    ) -> io::Result<R> {
        let h = self.handle;
        let deadline = self.options.write_deadline();
        Ok(self.net.core().wait(deadline, |s, now| f(s, now, h))?)
    }
}

/// The methods every blocking socket has for its options, as std's sockets have them. A
/// macro rather than a trait so they are inherent methods, called as on std's types without
/// importing anything.
macro_rules! blocking_options {
    () => {
        /// How long a receive may wait (`None`: for ever). A zero duration is
        /// [`io::ErrorKind::InvalidInput`], as in std; a receive that times out fails with
        /// [`io::ErrorKind::WouldBlock`], as std's do on Linux.
        pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
            self.inner.options.set_read_timeout(timeout)
        }

        /// The read timeout.
        pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
            Ok(self.inner.options.read_timeout())
        }

        /// How long a send may wait for room (`None`: for ever; zero is
        /// [`io::ErrorKind::InvalidInput`]).
        pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
            self.inner.options.set_write_timeout(timeout)
        }

        /// The write timeout.
        pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
            Ok(self.inner.options.write_timeout())
        }

        /// Non-blocking mode: calls that would wait fail with
        /// [`io::ErrorKind::WouldBlock`] instead. Shared with every clone.
        pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
            self.inner.options.set_nonblocking(nonblocking);
            Ok(())
        }

        /// Another handle on the same socket, for another thread: options are shared, and
        /// the socket closes when the last handle goes.
        pub fn try_clone(&self) -> io::Result<Self> {
            Ok(Self {
                inner: std::sync::Arc::clone(&self.inner),
            })
        }
    };
}

/// Options every blocking socket has, shared by its clones (as one file description's
/// flags and socket options are shared by `dup`ed descriptors).
#[derive(Debug, Default)]
pub(crate) struct Options {
    nonblocking: AtomicBool,
    /// Nanoseconds; 0 is none.
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
}

fn timeout_nanos(t: Option<Duration>) -> io::Result<u64> {
    match t {
        None => Ok(0),
        // std refuses a zero timeout the same way (it would mean "none" to the kernel).
        Some(d) if d.is_zero() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        )),
        Some(d) => Ok(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    }
}

fn nanos_timeout(n: u64) -> Option<Duration> {
    (n != 0).then(|| Duration::from_nanos(n))
}

impl Options {
    pub(crate) fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Relaxed);
    }

    pub(crate) fn nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Relaxed)
    }

    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.read_timeout
            .store(timeout_nanos(t)?, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        nanos_timeout(self.read_timeout.load(Ordering::Relaxed))
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.write_timeout
            .store(timeout_nanos(t)?, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        nanos_timeout(self.write_timeout.load(Ordering::Relaxed))
    }

    /// How long a read may wait.
    pub(crate) fn read_deadline(&self) -> Deadline {
        if self.nonblocking() {
            Deadline::Now
        } else {
            Deadline::after(self.read_timeout())
        }
    }

    /// How long a write may wait.
    pub(crate) fn write_deadline(&self) -> Deadline {
        if self.nonblocking() {
            Deadline::Now
        } else {
            Deadline::after(self.write_timeout())
        }
    }
}

// ---------------------------------------------------------------------- addresses

/// Tries `f` on each address `addr` resolves to, as std's constructors do: the first
/// success wins, else the last error.
pub(crate) fn each_addr<A: ToSocketAddrs, T>(
    addr: A,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match f(a) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}
