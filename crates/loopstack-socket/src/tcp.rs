//! `TcpListener` and `TcpStream`, shaped like `std::net`'s, on a shared [`Net`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use loopstack_buf::PacketBuf;
use loopstack_transport::tcp::{self, Received, State, TcpHandle, TcpInfo};
use loopstack_transport::Error;

use crate::net::{Deadline, Net};
use crate::socket::{each_addr, Close, Socket};

/// The accept queue a listener gets: std asks Linux for 128.
const BACKLOG: usize = 128;

/// A TCP socket server, listening for connections (`std::net::TcpListener`).
///
/// ```
/// use std::io::{Read, Write};
/// use loopstack_socket::{Net, TcpListener, TcpStream};
///
/// let net = Net::new()?;
/// let listener = TcpListener::bind(&net, "127.0.0.1:0")?;
/// let mut client = TcpStream::connect(&net, listener.local_addr()?)?;
/// let (mut server, _) = listener.accept()?;
/// client.write_all(b"ping")?;
/// let mut buf = [0; 4];
/// server.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"ping");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TcpListener {
    inner: Arc<Inner>,
}

/// A TCP connection between a local and a remote socket (`std::net::TcpStream`).
///
/// Reads and writes block until they can complete, or until the timeout set with
/// [`set_read_timeout`](Self::set_read_timeout) / [`set_write_timeout`](Self::set_write_timeout)
/// passes (then they fail with [`io::ErrorKind::WouldBlock`], as std's do on Linux).
/// Dropping the last clone closes the connection: FIN after the queued data, or RST if
/// received data was left unread.
#[derive(Debug)]
pub struct TcpStream {
    inner: Arc<Inner>,
}

type Inner = Socket<TcpHandle>;

impl Close for TcpHandle {
    fn close(self, net: &Net) {
        net.core().run(|s, _| {
            let _ = s.tcp().close(self);
        });
    }
}

fn take_error(inner: &Inner) -> io::Result<Option<io::Error>> {
    inner
        .call(|s, h| s.tcp().take_error(h))
        .map(|e| e.map(io::Error::from))
}

// ---------------------------------------------------------------------- the listener

impl TcpListener {
    /// Binds a listener to `addr` on `net` (port 0 for an ephemeral port). The address
    /// must be unspecified or one of the stack's ([`io::ErrorKind::AddrNotAvailable`]);
    /// a port in use is [`io::ErrorKind::AddrInUse`].
    pub fn bind<A: ToSocketAddrs>(net: &Net, addr: A) -> io::Result<TcpListener> {
        each_addr(addr, |a| {
            let h = net.core().run(|s, _| s.tcp_listen(a, BACKLOG))?;
            Ok(TcpListener {
                inner: Socket::new(net, h),
            })
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.call(|s, h| s.tcp().local_addr(h))
    }

    /// Waits for a connection and takes it off the accept queue, with the peer's address.
    /// The new stream is in blocking mode whatever the listener's mode, as on Linux.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let lh = self.inner.handle;
        let deadline = if self.inner.options.nonblocking() {
            Deadline::Now
        } else {
            Deadline::Never
        };
        let (h, peer) = self
            .inner
            .net
            .core()
            .wait(deadline, |s, _| s.tcp().accept(lh))?;
        Ok((
            TcpStream {
                inner: Socket::new(&self.inner.net, h),
            },
            peer,
        ))
    }

    /// An endless iterator of [`accept`](Self::accept)ed streams (`std`'s `incoming`).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// Another handle on the same listener; the socket closes when the last goes.
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            inner: Arc::clone(&self.inner),
        })
    }

    /// Non-blocking mode: [`accept`](Self::accept) fails with
    /// [`io::ErrorKind::WouldBlock`] instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.options.set_nonblocking(nonblocking);
        Ok(())
    }

    /// The socket's pending error (`SO_ERROR`); listeners have none.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        take_error(&self.inner)
    }
}

/// The iterator [`TcpListener::incoming`] returns: it never ends.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

// ---------------------------------------------------------------------- the stream

impl TcpStream {
    /// Opens a connection to `addr` on `net`, trying each address it resolves to in turn,
    /// and waits for the handshake. A RST in answer is
    /// [`io::ErrorKind::ConnectionRefused`]; SYN retransmissions running out (about two
    /// minutes, Linux's `tcp_syn_retries`) is [`io::ErrorKind::TimedOut`].
    pub fn connect<A: ToSocketAddrs>(net: &Net, addr: A) -> io::Result<TcpStream> {
        each_addr(addr, |a| TcpStream::connect_one(net, a, Deadline::Never))
    }

    /// Like [`connect`](Self::connect) to one address, but gives up after `timeout`
    /// with [`io::ErrorKind::TimedOut`]. A zero timeout is [`io::ErrorKind::InvalidInput`],
    /// as in std.
    pub fn connect_timeout(
        net: &Net,
        addr: &SocketAddr,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_one(net, *addr, Deadline::after(Some(timeout)))
    }

    fn connect_one(net: &Net, addr: SocketAddr, deadline: Deadline) -> io::Result<TcpStream> {
        let h = net.core().run(|s, now| s.tcp_connect(now, addr))?;
        // From here the stream owns the handle: an early return closes it.
        let stream = TcpStream {
            inner: Socket::new(net, h),
        };
        let outcome = net.core().wait(deadline, |s, _| match s.tcp().state(h)? {
            State::SynSent | State::SynReceived => Err(Error::WouldBlock),
            State::Closed => Err(s.tcp().take_error(h)?.unwrap_or(Error::ConnectionRefused)),
            _ => Ok(()),
        });
        match outcome {
            Ok(()) => Ok(stream),
            Err(Error::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection timed out",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The remote end's address; [`io::ErrorKind::NotConnected`] once the connection is gone.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.call(|s, h| s.tcp().peer_addr(h))
    }

    /// The local end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.call(|s, h| s.tcp().local_addr(h))
    }

    /// Shuts down reading, writing or both. Writing sends FIN after the queued data; after
    /// reading is shut, reads return end of file.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => tcp::Shutdown::Read,
            Shutdown::Write => tcp::Shutdown::Write,
            Shutdown::Both => tcp::Shutdown::Both,
        };
        self.inner.call(|s, h| s.tcp().shutdown(h, how))
    }

    /// `TCP_NODELAY`: turns Nagle's algorithm off (on) or back on (off).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.call(|s, h| s.tcp().set_nodelay(h, nodelay))
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.call(|s, h| s.tcp().nodelay(h))
    }

    blocking_options!();

    /// Reads without consuming (`MSG_PEEK`): waits as [`read`](Read::read) does.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_wait(|s, _, h| {
            let t = s.tcp();
            if !t.can_recv(h)? {
                return Err(Error::WouldBlock);
            }
            match t.peek(h, buf)? {
                // Nothing queued, yet `can_recv`: end of file, or an error (a reset).
                // A zero-length `recv` tells which, as `read` would, and takes the
                // error as Linux's MSG_PEEK does; peeking alone made a reset
                // connection look like a clean end of file.
                0 if !buf.is_empty() => t.recv(h, &mut []),
                n => Ok(n),
            }
        })
    }

    /// The socket's pending error (`SO_ERROR`), taken.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        take_error(&self.inner)
    }

    /// `ss -ti` for this connection: state, window, RTT, congestion window, counters.
    pub fn info(&self) -> io::Result<TcpInfo> {
        self.inner.call(|s, h| s.tcp().info(h))
    }

    /// The connection's state (RFC 9293 3.3.2).
    pub fn state(&self) -> io::Result<State> {
        self.inner.call(|s, h| s.tcp().state(h))
    }
}

/// Reads and writes of at least this many bytes copy without the stack's lock held: a read
/// out of the received buffers it takes
/// ([`Tcp::recv_or_take`](loopstack_transport::tcp::Tcp::recv_or_take)), a write into the
/// send-buffer block it is lent ([`Tcp::send_lend`](loopstack_transport::tcp::Tcp::send_lend)).
/// Smaller ones copy under it: a short copy costs less than the second visit to the stack,
/// and than giving the buffers back to the shared pool instead of TCP's own stock.
const COPY_OUTSIDE_MIN: usize = 16 * 1024;

/// The most received buffers one read takes to copy out of without the lock: a 64 KiB read
/// of `lo`'s segments needs two.
const TAKE_MAX: usize = 4;

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if buf.len() < COPY_OUTSIDE_MIN {
            return self.inner.read_wait(|s, _, h| s.tcp().recv(h, buf));
        }
        // The buffers are taken under the lock and copied out of after it is released: the
        // stack is free meanwhile for the writer's copy into its send buffer, which used to
        // wait here for this one (docs/benchmarks.md, item 33). Taken bytes count as read,
        // so the window opens at once; they are the reader's from here.
        let mut taken: [Option<PacketBuf>; TAKE_MAX] = Default::default();
        let got = self
            .inner
            .read_wait(|s, _, h| s.tcp().recv_or_take(h, buf, &mut taken))?;
        let (buffers, bytes) = match got {
            Received::Copied(n) => return Ok(n),
            Received::Taken { buffers, bytes } => (buffers, bytes),
        };
        let mut at = 0;
        for packet in taken[..buffers].iter_mut().filter_map(Option::take) {
            // Each buffer's own bytes and, for a segment whose payload the sender shared,
            // its fragment. Dropped here, the buffer goes back to its pool.
            at += packet.copy_out(0, &mut buf[at..]);
        }
        debug_assert_eq!(at, bytes, "the buffers taken fit in `buf`");
        Ok(at)
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if buf.len() >= COPY_OUTSIDE_MIN {
            // The send-buffer block the bytes go into is lent out under the lock and filled
            // after it is released, then handed back: the stack is free meanwhile for the
            // reader's copy out (docs/benchmarks.md, item 33). A write that cannot have a
            // whole block (the stream does not end at a block boundary) copies under the
            // lock, as every write did.
            let lent = self
                .inner
                .write_wait(|s, _, h| s.tcp().send_lend(h, buf.len()))?;
            if let Some(mut lent) = lent {
                lent.fill(buf);
                return self.inner.call(|s, h| s.tcp().send_commit(h, lent));
            }
        }
        self.inner.write_wait(|s, _, h| s.tcp().send(h, buf))
    }

    /// Nothing to do: every write has already been handed to the stack.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}
