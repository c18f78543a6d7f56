//! `IcmpSocket`: the ICMP echo ("ping") socket, like Linux's unprivileged
//! `socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`.
//!
//! The socket's "port" is the echo identifier (RFC 792 "Echo or Echo Reply Message",
//! RFC 4443 4.1): requests go out with it, and only replies carrying it come back to this
//! socket, so two pings on one stack never see each other's replies.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

pub use loopstack_internet::layer::EchoReply;
use loopstack_transport::Error;

use crate::net::Net;
use crate::socket::{each_addr, Close, Socket};

/// An ICMP or ICMPv6 echo socket.
///
/// ```
/// use loopstack_socket::{IcmpSocket, Net};
///
/// let net = Net::new()?;
/// let ping = IcmpSocket::bind(&net, "127.0.0.1:0")?;
/// ping.send_to("127.0.0.2".parse().unwrap(), 1, 56)?;
/// let reply = ping.recv()?;
/// assert_eq!((reply.from, reply.seq, reply.len), ("127.0.0.2".parse().unwrap(), 1, 64));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct IcmpSocket {
    inner: Arc<Inner>,
}

/// The bound address; its port is the echo identifier the socket owns.
#[derive(Debug, Clone, Copy)]
struct Binding(SocketAddr);

type Inner = Socket<Binding>;

impl Close for Binding {
    fn close(self, net: &Net) {
        net.core().release_echo_id(self.0.port());
    }
}

impl IcmpSocket {
    /// An echo socket on `net`. The address gives the family (IPv4 sends ICMP, IPv6
    /// ICMPv6) and must be unspecified or one of the stack's; the port is the echo
    /// identifier, 0 for the next free one. An identifier in use is
    /// [`io::ErrorKind::AddrInUse`].
    pub fn bind<A: ToSocketAddrs>(net: &Net, addr: A) -> io::Result<IcmpSocket> {
        each_addr(addr, |a| {
            let ip = a.ip();
            let local = net.with(|s| ip.is_unspecified() || s.ip().interfaces().is_local(ip));
            if !local {
                return Err(Error::AddrNotAvailable.into());
            }
            let id = net.core().claim_echo_id(a.port())?;
            Ok(IcmpSocket {
                inner: Socket::new(net, Binding(SocketAddr::new(ip, id))),
            })
        })
    }

    /// The bound address; its port is the echo identifier.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.inner.handle.0)
    }

    /// The echo identifier every request carries.
    pub fn id(&self) -> u16 {
        self.inner.handle.0.port()
    }

    /// Sends an echo request with sequence number `seq` and `size` bytes of data (the
    /// first 8 the send time, so the reply reports its round trip). `dst` must be of the
    /// socket's family ([`io::ErrorKind::InvalidInput`]).
    pub fn send_to(&self, dst: IpAddr, seq: u16, size: usize) -> io::Result<()> {
        if dst.is_ipv6() != self.inner.handle.0.is_ipv6() {
            return Err(Error::InvalidInput("destination family differs from the socket's").into());
        }
        self.inner
            .write_wait(|s, now, b| s.send_echo_request(now, dst, b.0.port(), seq, size))
    }

    /// Waits for the next echo reply to this socket's identifier.
    pub fn recv(&self) -> io::Result<EchoReply> {
        Ok(self
            .inner
            .net
            .core()
            .wait_echo(self.id(), self.inner.options.read_deadline())?)
    }

    blocking_options!();
}
