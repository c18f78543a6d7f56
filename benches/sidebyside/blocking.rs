//! The side-by-side scenarios on loopstack in blocking mode: its `std::net`-shaped sockets
//! ([`TcpListener`], [`TcpStream`], [`UdpSocket`]) on a [`Net`] with `lo`, with two
//! blocking threads: the benchmark's thread is the client, a server thread per scenario
//! answers.
//!
//! The scenarios themselves are shared with [`kernel`](super::kernel) (`std::net` on the
//! kernel's `lo`), in `threads.rs`: this module only maps their socket calls onto
//! loopstack's, so the two do the same calls in the same order with the same buffers. The
//! differences that remain (socket buffer sizes, a stack per scenario, how threads wait)
//! are listed in [`kernel`](super::kernel)'s documentation.
//!
//! Each scenario gets a stack of its own, `Net::with_config` with TCP send and receive
//! buffers of [`SOCKET_BUFFER`] (64 KiB) instead of the default 1 MiB: the same size the
//! poll-mode implementations use. The kernel's cannot be set through `std::net` and stay
//! autotuned. UDP keeps the default receive queue, which is Linux's default size.
//!
//! Waiting calls busy-poll for up to 50 µs before they sleep (`Net::set_busy_poll`, the
//! default, left as it is): that is how loopstack's blocking sockets behave out of the box.
//! The kernel's loopback has no such setting for `lo` (`SO_BUSY_POLL` applies to NIC
//! queues), so its threads sleep and are woken for every message.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use loopstack_socket::{Net, StackConfig, TcpListener, TcpStream, UdpSocket};

use super::threads::{self, Sockets, MAX_ROUND, QUEUE_BUDGET};
use super::{Bulk, Family, OneWay, PingPong, SOCKET_BUFFER};

pub use super::threads::Probe;

/// loopstack's blocking sockets, on this stack.
struct Loopstack(Net);

/// A stack with `lo`, and TCP buffers of [`SOCKET_BUFFER`] each way.
fn net() -> Loopstack {
    let mut config = StackConfig::default();
    config.transport.tcp.send_buffer = SOCKET_BUFFER;
    config.transport.tcp.recv_buffer = SOCKET_BUFFER;
    // The one-way scenario counts on the receive queue holding a round of datagrams.
    let udp = &config.transport.udp;
    assert!(udp.recv_queue_datagrams >= MAX_ROUND && udp.recv_queue_bytes >= QUEUE_BUDGET);
    Loopstack(Net::with_config(config).expect("a stack with lo"))
}

impl Sockets for Loopstack {
    const NAME: &'static str = "loopstack-blocking";
    type Listener = TcpListener;
    type Stream = TcpStream;
    type Udp = UdpSocket;

    fn tcp_listen(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(&self.0, addr)
    }
    fn tcp_listener_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }
    fn tcp_accept(listener: &TcpListener) -> io::Result<TcpStream> {
        listener.accept().map(|(s, _)| s)
    }
    fn tcp_connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect(&self.0, addr)
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
        UdpSocket::bind(&self.0, addr)
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

/// TCP bulk transfer over loopstack's `lo` in blocking mode, warmed up.
pub fn tcp_bulk(family: Family) -> impl Bulk {
    threads::tcp_bulk(&net(), family, None)
}

/// [`tcp_bulk`], with `probe` called on the server thread around a window of transfers.
pub fn tcp_bulk_probed(family: Family, probe: Probe) -> impl Bulk {
    threads::tcp_bulk(&net(), family, Some(probe))
}

/// TCP ping-pong of `size`-byte messages in blocking mode, Nagle off, warmed up.
pub fn tcp_ping_pong(family: Family, size: usize) -> impl PingPong {
    threads::tcp_ping_pong(&net(), family, size, None)
}

/// [`tcp_ping_pong`], with `probe` called on the server thread around a window of echoes.
pub fn tcp_ping_pong_probed(family: Family, size: usize, probe: Probe) -> impl PingPong {
    threads::tcp_ping_pong(&net(), family, size, Some(probe))
}

/// UDP ping-pong of `size`-byte datagrams in blocking mode, warmed up.
pub fn udp_ping_pong(family: Family, size: usize) -> impl PingPong {
    threads::udp_ping_pong(&net(), family, size, None)
}

/// [`udp_ping_pong`], with `probe` called on the server thread around a window of echoes.
pub fn udp_ping_pong_probed(family: Family, size: usize, probe: Probe) -> impl PingPong {
    threads::udp_ping_pong(&net(), family, size, Some(probe))
}

/// Bursts of `size`-byte datagrams in blocking mode, sent then received on the calling
/// thread, warmed up.
pub fn udp_one_way(family: Family, size: usize) -> impl OneWay {
    threads::udp_one_way(&net(), family, size)
}
