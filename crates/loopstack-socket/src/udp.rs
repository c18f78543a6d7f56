//! `UdpSocket`, shaped like `std::net`'s, on a shared [`Net`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use loopstack_transport::udp::UdpHandle;

use crate::net::Net;
use crate::socket::{each_addr, Close, Socket};

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

type Inner = Socket<UdpHandle>;

impl Close for UdpHandle {
    fn close(self, net: &Net) {
        net.core().run(|s, _| {
            let _ = s.udp().close(self);
        });
    }
}

impl UdpSocket {
    /// A socket bound to `addr` on `net` (port 0 for an ephemeral port).
    pub fn bind<A: ToSocketAddrs>(net: &Net, addr: A) -> io::Result<UdpSocket> {
        each_addr(addr, |a| {
            let handle = net.core().run(|s, _| s.udp_bind(a))?;
            Ok(UdpSocket {
                inner: Socket::new(net, handle),
            })
        })
    }

    /// Sets the socket's peer: `send` and `recv` then talk to it only.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_addr(addr, |a| self.inner.call(|s, h| s.udp_connect(h, a)))
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
        self.inner
            .write_wait(|s, now, h| s.udp_send_to(now, h, buf, dst))
    }

    /// Sends one datagram to the connected peer ([`io::ErrorKind::NotConnected`] without one).
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_wait(|s, now, h| s.udp_send(now, h, buf))
    }

    /// Receives one datagram: copies as much as fits in `buf` (the rest is discarded) and
    /// returns that count and the sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.read_wait(|s, _, h| s.udp().recv_from(h, buf))
    }

    /// Receives one datagram, without the sender.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    /// Like [`recv_from`](Self::recv_from), but leaves the datagram queued.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.read_wait(|s, _, h| s.udp().peek_from(h, buf))
    }

    /// Like [`recv`](Self::recv), but leaves the datagram queued.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.peek_from(buf).map(|(n, _)| n)
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.call(|s, h| s.udp().local_addr(h))
    }

    /// The connected peer ([`io::ErrorKind::NotConnected`] without one).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.call(|s, h| s.udp().peer_addr(h))
    }

    blocking_options!();

    /// The socket's pending error (`SO_ERROR`), taken.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner
            .call(|s, h| s.udp().take_error(h))
            .map(|e| e.map(io::Error::from))
    }
}
