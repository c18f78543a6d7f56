//! The side-by-side scenarios on the kernel's `lo`, through `std::net`, with two blocking
//! threads: the benchmark's thread is the client, a server thread per scenario answers.
//!
//! The scenarios themselves are shared with [`blocking`](super::blocking) (loopstack's
//! blocking sockets), in `threads.rs`: this module only maps their socket calls onto
//! `std::net`, so the two do the same calls in the same order with the same buffers.
//!
//! What differs between the two, and cannot be made the same:
//!
//! - **Socket buffers.** `std::net` cannot set `SO_SNDBUF` or `SO_RCVBUF` (that takes
//!   `setsockopt`, so `unsafe` code or a crate such as `socket2` or `nix`, none of which the
//!   benches use), so the kernel keeps its defaults: TCP buffers that start at
//!   `net.ipv4.tcp_wmem`/`tcp_rmem`'s middle values (16 KiB / 128 KiB) and are autotuned up
//!   to their maxima (4 MiB / 6 MiB or more), and UDP's `net.core.rmem_default` (212,992
//!   bytes, counted in `truesize`: 256 datagrams of 64 bytes). loopstack's TCP buffers
//!   are fixed at [`SOCKET_BUFFER`](super::SOCKET_BUFFER) (64 KiB) each way; its UDP
//!   receive queue keeps Linux's default size (212,992 payload bytes, 1024 datagrams).
//! - **The stack.** Every loopstack scenario builds a stack of its own (a `Net`, with its
//!   timer thread); the kernel's `lo` is one for the whole machine, shared with whatever
//!   else runs, and its ports come from `ip_local_port_range` rather than 49152-65535.
//! - **Where the work runs.** Both run a packet to completion on the thread that sends it
//!   (the kernel in the sender's softirq on `lo`, loopstack in its `Stack::poll` under its
//!   lock), but the kernel's sockets wait in the scheduler with one socket lock each, and
//!   loopstack's on one condition variable of the whole stack.
//! - **Errors.** A read that times out is an errno for std, and a boxed `io::Error` (two
//!   allocations) for loopstack. Only a server thread idle for a second sees one, never an
//!   iteration.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use super::threads::{self, Sockets};
use super::{Bulk, Family, OneWay, PingPong};

pub use super::threads::Probe;

/// `std::net`: the kernel's stack needs no handle.
struct Kernel;

impl Sockets for Kernel {
    const NAME: &'static str = "kernel";
    type Listener = TcpListener;
    type Stream = TcpStream;
    type Udp = UdpSocket;

    fn tcp_listen(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr)
    }
    fn tcp_listener_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }
    fn tcp_accept(listener: &TcpListener) -> io::Result<TcpStream> {
        listener.accept().map(|(s, _)| s)
    }
    fn tcp_connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect(addr)
    }
    fn tcp_set_nodelay(stream: &TcpStream, nodelay: bool) -> io::Result<()> {
        stream.set_nodelay(nodelay)
    }
    fn tcp_set_timeouts(stream: &TcpStream, read: Duration, write: Duration) -> io::Result<()> {
        stream.set_read_timeout(Some(read))?;
        stream.set_write_timeout(Some(write))
    }
    fn tcp_shutdown_write(stream: &TcpStream) -> io::Result<()> {
        stream.shutdown(Shutdown::Write)
    }

    fn udp_bind(&self, addr: SocketAddr) -> io::Result<UdpSocket> {
        UdpSocket::bind(addr)
    }
    fn udp_local_addr(socket: &UdpSocket) -> io::Result<SocketAddr> {
        socket.local_addr()
    }
    fn udp_connect(socket: &UdpSocket, addr: SocketAddr) -> io::Result<()> {
        socket.connect(addr)
    }
    fn udp_set_timeouts(socket: &UdpSocket, read: Duration, write: Duration) -> io::Result<()> {
        socket.set_read_timeout(Some(read))?;
        socket.set_write_timeout(Some(write))
    }
    fn udp_send(socket: &UdpSocket, buf: &[u8]) -> io::Result<usize> {
        socket.send(buf)
    }
    fn udp_recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<usize> {
        socket.recv(buf)
    }
    fn udp_send_to(socket: &UdpSocket, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        socket.send_to(buf, addr)
    }
    fn udp_recv_from(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        socket.recv_from(buf)
    }
}

/// TCP bulk transfer over the kernel's `lo`, warmed up.
pub fn tcp_bulk(family: Family) -> impl Bulk {
    threads::tcp_bulk(&Kernel, family, None)
}

/// [`tcp_bulk`], with `probe` called on the server thread around a window of transfers.
pub fn tcp_bulk_probed(family: Family, probe: Probe) -> impl Bulk {
    threads::tcp_bulk(&Kernel, family, Some(probe))
}

/// TCP ping-pong of `size`-byte messages over the kernel's `lo`, Nagle off, warmed up.
pub fn tcp_ping_pong(family: Family, size: usize) -> impl PingPong {
    threads::tcp_ping_pong(&Kernel, family, size, None)
}

/// [`tcp_ping_pong`], with `probe` called on the server thread around a window of echoes.
pub fn tcp_ping_pong_probed(family: Family, size: usize, probe: Probe) -> impl PingPong {
    threads::tcp_ping_pong(&Kernel, family, size, Some(probe))
}

/// UDP ping-pong of `size`-byte datagrams over the kernel's `lo`, warmed up.
pub fn udp_ping_pong(family: Family, size: usize) -> impl PingPong {
    threads::udp_ping_pong(&Kernel, family, size, None)
}

/// [`udp_ping_pong`], with `probe` called on the server thread around a window of echoes.
pub fn udp_ping_pong_probed(family: Family, size: usize, probe: Probe) -> impl PingPong {
    threads::udp_ping_pong(&Kernel, family, size, Some(probe))
}

/// Bursts of `size`-byte datagrams over the kernel's `lo`, sent then received on the
/// calling thread, warmed up.
pub fn udp_one_way(family: Family, size: usize) -> impl OneWay {
    threads::udp_one_way(&Kernel, family, size)
}
