//! `UdpSocket`, shaped like `std::net`'s, on a shared [`Net`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use loopstack_transport::udp::{Udp, UdpHandle};
use loopstack_transport::Error;

use crate::net::{each_addr, Net, Options};

/// A UDP socket (`std::net::UdpSocket`).
///
/// Receives wait for a datagram, or until the read timeout passes
/// ([`io::ErrorKind::WouldBlock`], as std's do on Linux). A send that finds no buffer free
/// waits for one the same way. On a connected socket, an ICMP Port Unreachable for an
/// earlier datagram makes the next call fail with [`io::ErrorKind::ConnectionRefused`].
///
/// ```
/// use loopstack_socket::{Net, UdpSocket};
///
/// let net = Net::new()?;
/// let a = UdpSocket::bind(&net, "[::1]:0")?;
/// let b = UdpSocket::bind(&net, "[::1]:0")?;
/// a.send_to(b"hello", b.local_addr()?)?;
/// let mut buf = [0; 16];
/// let (n, from) = b.recv_from(&mut buf)?;
/// assert_eq!((&buf[..n], from), (&b"hello"[..], a.local_addr()?));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UdpSocket {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    net: Net,
    handle: UdpHandle,
    options: Options,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let h = self.handle;
        self.net.core().run(|s, _| {
            let _ = s.udp().close(h);
        });
    }
}

impl UdpSocket {
    /// A socket bound to `addr` on `net` (port 0 for an ephemeral port).
    pub fn bind<A: ToSocketAddrs>(net: &Net, addr: A) -> io::Result<UdpSocket> {
        each_addr(addr, |a| {
            let handle = net.core().run(|s, _| s.udp_bind(a))?;
            Ok(UdpSocket {
                inner: Arc::new(Inner {
                    net: net.clone(),
                    handle,
                    options: Options::default(),
                }),
            })
        })
    }

    fn call<R>(&self, f: impl FnOnce(&mut Udp, UdpHandle) -> Result<R, Error>) -> io::Result<R> {
        let h = self.inner.handle;
        self.inner
            .net
            .core()
            .run(|s, _| f(s.udp(), h))
            .map_err(io::Error::from)
    }

    /// Sets the socket's peer: `send` and `recv` then talk to it only.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let h = self.inner.handle;
        each_addr(addr, |a| {
            Ok(self.inner.net.core().run(|s, _| s.udp_connect(h, a))?)
        })
    }

    /// Sends one datagram to `addr`; returns the bytes sent.
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        // std sends to the first address only: a datagram cannot be retried elsewhere.
        let Some(dst) = addr.to_socket_addrs()?.next() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no addresses to send data to",
            ));
        };
        let h = self.inner.handle;
        Ok(self
            .inner
            .net
            .core()
            .wait(self.inner.options.write_deadline(), |s, now| {
                s.udp_send_to(now, h, buf, dst)
            })?)
    }

    /// Sends one datagram to the connected peer ([`io::ErrorKind::NotConnected`] without one).
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let h = self.inner.handle;
        Ok(self
            .inner
            .net
            .core()
            .wait(self.inner.options.write_deadline(), |s, now| {
                s.udp_send(now, h, buf)
            })?)
    }

    /// Receives one datagram: copies as much as fits in `buf` (the rest is discarded) and
    /// returns that count and the sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let h = self.inner.handle;
        Ok(self
            .inner
            .net
            .core()
            .wait(self.inner.options.read_deadline(), |s, _| {
                s.udp().recv_from(h, buf)
            })?)
    }

    /// Receives one datagram, without the sender.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    /// Like [`recv_from`](Self::recv_from), but leaves the datagram queued.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let h = self.inner.handle;
        Ok(self
            .inner
            .net
            .core()
            .wait(self.inner.options.read_deadline(), |s, _| {
                s.udp().peek_from(h, buf)
            })?)
    }

    /// Like [`recv`](Self::recv), but leaves the datagram queued.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.peek_from(buf).map(|(n, _)| n)
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.call(|u, h| u.local_addr(h))
    }

    /// The connected peer ([`io::ErrorKind::NotConnected`] without one).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.call(|u, h| u.peer_addr(h))
    }

    /// How long a receive may wait (`None`: for ever; zero is
    /// [`io::ErrorKind::InvalidInput`], as in std).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.options.set_read_timeout(timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.options.read_timeout())
    }

    /// How long a send may wait for a free buffer.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.options.set_write_timeout(timeout)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.options.write_timeout())
    }

    /// Non-blocking mode: calls that would wait fail with [`io::ErrorKind::WouldBlock`].
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.options.set_nonblocking(nonblocking);
        Ok(())
    }

    /// Another handle on the same socket, sharing its options; it closes with the last.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            inner: Arc::clone(&self.inner),
        })
    }

    /// The socket's pending error (`SO_ERROR`), taken.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.call(|u, h| u.take_error(h))
            .map(|e| e.map(io::Error::from))
    }
}
