//! The stack: devices, the internet layer and the transport layer, and the loop that moves
//! packets between them.
//!
//! ```text
//!   poll(now):
//!     timers: Internet::poll (reassembly), Transport::poll (TCP retransmissions, ...)
//!     repeat until quiet:
//!       for each device: packet ──▶ Internet::receive ──▶ Transport::deliver ──▶ sockets
//!       Transport::dispatch: segments the input caused ──▶ Internet ──▶ device
//! ```
//!
//! On `lo` a segment sent in one round is received in the next, so one `poll` carries a
//! whole exchange (data, ACK, window update) to the point where nothing more can happen
//! until the application or a timer acts.

use std::net::{IpAddr, SocketAddr};

use loopstack_buf::{ConfigError, PacketBuf, PacketPool, PoolConfig};
use loopstack_internet::iface::{check_addr, IfaceError, InterfaceId, InterfaceKind};
use loopstack_internet::layer::EchoReply;
use loopstack_internet::{Cidr, Internet, InternetConfig, Links};
use loopstack_link::{
    Device, DeviceCapabilities, Instant, Loopback, LoopbackConfig, LoopbackConfigError, TxError,
};
use loopstack_transport::tcp::{Tcp, TcpHandle};
use loopstack_transport::udp::{Udp, UdpHandle};
use loopstack_transport::{Error, Transport, TransportConfig};
use thiserror::Error as ThisError;

/// Everything a stack is built from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StackConfig {
    /// The packet buffer pool.
    pub pool: PoolConfig,
    /// The `lo` device.
    pub loopback: LoopbackConfig,
    /// The internet layer.
    pub internet: InternetConfig,
    /// UDP and TCP.
    pub transport: TransportConfig,
    /// The seed of every random choice (ephemeral ports, initial sequence numbers).
    pub seed: u64,
}

/// Why a stack could not be built or changed.
#[derive(Debug, ThisError)]
pub enum StackError {
    /// The pool configuration is invalid.
    #[error(transparent)]
    Pool(#[from] ConfigError),
    /// The loopback configuration is invalid.
    #[error(transparent)]
    Loopback(#[from] LoopbackConfigError),
    /// An interface or address could not be added.
    #[error(transparent)]
    Interface(#[from] IfaceError),
}

/// A device the stack owns. `Send`, so a whole stack can move to (or be shared by) other
/// threads: the blocking sockets keep theirs behind a mutex.
pub type BoxedDevice = Box<dyn Device + Send>;

/// A device as a stack holds it. The plain `lo` of [`Stack::new`] is held by value, so
/// that the calls every packet makes into it (`transmit`, `receive`, `capabilities`) are
/// static rather than made through a vtable, and the compiler can inline them (it does
/// `receive` and `capabilities`): 14 instructions of a one-way datagram's 1,236, 52 of a
/// UDP round trip's 2,803 (docs/benchmarks.md, item 34). Any other device, `lo` wrapped in
/// middleware included, is boxed.
enum Held {
    Lo(Loopback),
    Boxed(BoxedDevice),
}

impl Held {
    #[inline(always)]
    fn get(&self) -> &(dyn Device + Send + 'static) {
        match self {
            Held::Lo(d) => d,
            Held::Boxed(d) => d.as_ref(),
        }
    }

    #[inline(always)]
    fn get_mut(&mut self) -> &mut (dyn Device + Send + 'static) {
        match self {
            Held::Lo(d) => d,
            Held::Boxed(d) => d.as_mut(),
        }
    }

    // The per-packet calls match on the variant themselves: going through `get` would
    // make every call dynamic again.
    #[inline(always)]
    fn capabilities(&self) -> DeviceCapabilities {
        match self {
            Held::Lo(d) => d.capabilities(),
            Held::Boxed(d) => d.capabilities(),
        }
    }

    #[inline(always)]
    fn transmit(&mut self, now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        match self {
            Held::Lo(d) => d.transmit(now, packet),
            Held::Boxed(d) => d.transmit(now, packet),
        }
    }

    #[inline(always)]
    fn receive(&mut self, now: Instant) -> Option<PacketBuf> {
        match self {
            Held::Lo(d) => d.receive(now),
            Held::Boxed(d) => d.receive(now),
        }
    }
}

/// The devices of a stack, by interface index: what the internet layer sends through.
pub struct Devices {
    list: Vec<(InterfaceId, Held)>,
    /// Packets handed to any device so far: `Stack::poll` compares it before and after a
    /// pass over the devices to know whether the stack itself gave them anything new.
    transmitted: u64,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.list
                    .iter()
                    .map(|(id, d)| (id, d.get().name().to_string())),
            )
            .finish()
    }
}

impl Devices {
    fn get_mut(&mut self, iface: InterfaceId) -> Option<&mut Held> {
        self.list
            .iter_mut()
            .find(|(id, _)| *id == iface)
            .map(|(_, d)| d)
    }
}

impl Links for Devices {
    fn capabilities(&self, iface: InterfaceId) -> Option<DeviceCapabilities> {
        self.list
            .iter()
            .find(|(id, _)| *id == iface)
            .map(|(_, d)| d.capabilities())
    }

    fn transmit(
        &mut self,
        now: Instant,
        iface: InterfaceId,
        packet: PacketBuf,
    ) -> Result<(), TxError> {
        self.transmitted += 1;
        match self.get_mut(iface) {
            Some(d) => d.transmit(now, packet),
            None => Err(TxError::Io(std::io::ErrorKind::NotFound)),
        }
    }
}

/// One host: a pool, devices, the internet layer and the transport layer.
#[derive(Debug)]
pub struct Stack {
    pool: PacketPool,
    ip: Internet,
    transport: Transport,
    devices: Devices,
}

impl Stack {
    /// A stack with a plain `lo` (127.0.0.1/8 and ::1/128).
    pub fn new(config: StackConfig) -> Result<Self, StackError> {
        let lo = Loopback::with_config(config.loopback.clone())?;
        Stack::with_held(config, Held::Lo(lo))
    }

    /// A stack whose `lo` is `lo`: a [`Loopback`] wrapped in middleware (capture, fault
    /// injection, tracing), or any device that loops packets back.
    pub fn with_loopback(config: StackConfig, lo: BoxedDevice) -> Result<Self, StackError> {
        Stack::with_held(config, Held::Boxed(lo))
    }

    fn with_held(config: StackConfig, lo: Held) -> Result<Self, StackError> {
        let pool = PacketPool::new(config.pool.clone())?;
        let mut ip = Internet::new(pool.clone(), config.internet.clone());
        // The interface's MTU is the device's: a test may shrink `lo` to see segmentation.
        ip.set_mtu(InterfaceId::LOOPBACK, lo.capabilities().mtu)?;
        let transport = Transport::new(pool.clone(), config.transport.clone(), config.seed);
        Ok(Stack {
            pool,
            ip,
            transport,
            devices: Devices {
                list: vec![(InterfaceId::LOOPBACK, lo)],
                transmitted: 0,
            },
        })
    }

    /// Adds a point-to-point device (a TUN, or a simulated wire to another stack) with its
    /// addresses. Its MTU is the device's.
    pub fn add_device(
        &mut self,
        device: BoxedDevice,
        addrs: &[Cidr],
    ) -> Result<InterfaceId, StackError> {
        let mtu = device.capabilities().mtu;
        let name = device.name().to_string();
        // Every address is checked before the interface is made, so a refusal leaves no
        // interface without its device behind (and no routes through it).
        for (i, &a) in addrs.iter().enumerate() {
            check_addr(InterfaceKind::PointToPoint, mtu, a)?;
            if addrs[..i].contains(&a) {
                return Err(IfaceError::AddressExists(a).into());
            }
        }
        let id = self
            .ip
            .add_interface(&name, InterfaceKind::PointToPoint, mtu)?;
        for &a in addrs {
            self.ip.add_address(id, a)?;
        }
        self.devices.list.push((id, Held::Boxed(device)));
        Ok(id)
    }

    /// The buffer pool every layer draws from.
    pub fn pool(&self) -> &PacketPool {
        &self.pool
    }

    /// The internet layer.
    pub fn ip(&self) -> &Internet {
        &self.ip
    }

    /// The internet layer, to change addresses and routes.
    pub fn ip_mut(&mut self) -> &mut Internet {
        &mut self.ip
    }

    /// UDP and TCP.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The TCP sockets.
    pub fn tcp(&mut self) -> &mut Tcp {
        &mut self.transport.tcp
    }

    /// The UDP sockets.
    pub fn udp(&mut self) -> &mut Udp {
        &mut self.transport.udp
    }

    /// The device behind `iface`.
    pub fn device(&self, iface: InterfaceId) -> Option<&(dyn Device + Send + 'static)> {
        self.devices
            .list
            .iter()
            .find(|(id, _)| *id == iface)
            .map(|(_, d)| d.get())
    }

    /// The device behind `iface`, to hand it packets from outside or take them away.
    pub fn device_mut(&mut self, iface: InterfaceId) -> Option<&mut (dyn Device + Send + 'static)> {
        self.devices.get_mut(iface).map(|d| d.get_mut())
    }

    // ------------------------------------------------------------------ sockets

    /// A TCP listener on `local` (`TcpListener::bind`).
    pub fn tcp_listen(&mut self, local: SocketAddr, backlog: usize) -> Result<TcpHandle, Error> {
        self.transport.tcp.listen(&self.ip, local, backlog)
    }

    /// Starts a TCP connection to `remote`; [`poll`](Self::poll) carries the handshake.
    pub fn tcp_connect(&mut self, now: Instant, remote: SocketAddr) -> Result<TcpHandle, Error> {
        self.transport.tcp.connect(now, &self.ip, remote, None)
    }

    /// A UDP socket bound to `local` (`UdpSocket::bind`).
    pub fn udp_bind(&mut self, local: SocketAddr) -> Result<UdpHandle, Error> {
        self.transport
            .udp
            .bind(&self.ip, local, &mut self.transport.rng)
    }

    /// Connects a UDP socket to `remote`.
    pub fn udp_connect(&mut self, h: UdpHandle, remote: SocketAddr) -> Result<(), Error> {
        self.transport.udp.connect(h, &self.ip, remote)
    }

    /// Sends a datagram (it goes down to the device at once; `poll` delivers it).
    pub fn udp_send_to(
        &mut self,
        now: Instant,
        h: UdpHandle,
        data: &[u8],
        dst: SocketAddr,
    ) -> Result<usize, Error> {
        self.transport
            .udp
            .send_to(now, h, data, dst, &mut self.ip, &mut self.devices)
    }

    /// Sends a datagram on a connected UDP socket.
    pub fn udp_send(&mut self, now: Instant, h: UdpHandle, data: &[u8]) -> Result<usize, Error> {
        self.transport
            .udp
            .send(now, h, data, &mut self.ip, &mut self.devices)
    }

    /// Sends an ICMP (or ICMPv6) echo request to `dst`, as `ping` does: `size` data bytes,
    /// the first 8 of them the send time so the reply carries its round-trip time back.
    pub fn send_echo_request(
        &mut self,
        now: Instant,
        dst: IpAddr,
        id: u16,
        seq: u16,
        size: usize,
    ) -> Result<(), Error> {
        self.ip
            .send_echo_request(now, dst, id, seq, size, &mut self.devices)
            .map_err(Error::from_send)
    }

    /// Takes the oldest echo reply that came back and was not taken yet.
    pub fn take_echo_reply(&mut self) -> Option<EchoReply> {
        self.ip.take_echo_reply()
    }

    // ------------------------------------------------------------------ the loop

    /// Does everything due at `now`: timers, then packets until the devices hold nothing
    /// that was there or that the stack gave them during this poll, and nothing is left to
    /// send. Returns whether anything happened.
    pub fn poll(&mut self, now: Instant) -> bool {
        self.ip.poll(now, &mut self.devices);
        self.transport.poll(now, &mut self.ip, &mut self.devices);
        let mut worked = false;
        loop {
            let mut progress = false;
            let transmitted = self.devices.transmitted;
            for i in 0..self.devices.list.len() {
                // Asked once per pass over a device, at its first packet, not once per
                // packet: nothing done with a packet reconfigures a device (middleware
                // changes only through `device_mut`, between polls).
                let mut offload_rx = None;
                loop {
                    let (iface, dev) = &mut self.devices.list[i];
                    let iface = *iface;
                    let Some(packet) = dev.receive(now) else {
                        break;
                    };
                    let offload =
                        *offload_rx.get_or_insert_with(|| dev.capabilities().checksum_offload.rx);
                    progress = true;
                    self.ip.receive_offloaded(
                        now,
                        iface,
                        offload,
                        packet,
                        &mut self.devices,
                        &mut self.transport,
                    );
                }
            }
            if self.transport.has_output() {
                self.transport
                    .dispatch(now, &mut self.ip, &mut self.devices);
                progress = true;
            }
            if !progress {
                return worked;
            }
            worked = true;
            if self.devices.transmitted == transmitted {
                // Nothing was sent during this pass (no answer, no segment, no ICMP
                // message), so the devices can hold nothing new from this stack: another
                // pass would only ask each one for a packet and get none. What arrives
                // from outside meanwhile (a TUN) waits for the next poll, as it would
                // have had it arrived a moment later.
                return true;
            }
        }
    }

    /// When [`poll`](Self::poll) next has work if nothing else happens: the earliest timer
    /// of any layer, or a device's (a delayed packet in fault injection).
    pub fn poll_at(&self) -> Option<Instant> {
        let mut next = Instant::earliest(self.ip.poll_at(), self.transport.poll_at());
        for (_, d) in &self.devices.list {
            next = Instant::earliest(next, d.get().poll_at());
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopstack_transport::tcp::State;

    /// A poll takes in everything the stack itself sent during it, however many passes
    /// over the devices that takes, and stops as soon as a pass sent nothing: the answers
    /// to what it receives (an echo reply, a SYN-ACK, an ACK) are never left for the next
    /// poll, and a poll with nothing to do says so.
    #[test]
    fn one_poll_finishes_every_exchange_it_starts() {
        let mut stack = Stack::new(StackConfig::default()).unwrap();
        let t = Instant::ZERO;
        assert!(!stack.poll(t), "a fresh stack has nothing to do");

        // Request in, reply out and back in: two passes, one poll.
        stack
            .send_echo_request(t, "127.0.0.1".parse().unwrap(), 7, 1, 56)
            .unwrap();
        assert!(stack.poll(t));
        let reply = stack
            .take_echo_reply()
            .expect("the reply came back in the same poll");
        assert_eq!((reply.id, reply.seq), (7, 1));
        assert!(!stack.poll(t), "nothing left after the echo");

        // A datagram: one pass, and nothing sent in it.
        let (a, b) = ("127.0.0.1:7001", "127.0.0.1:7002");
        let ua = stack.udp_bind(a.parse().unwrap()).unwrap();
        let ub = stack.udp_bind(b.parse().unwrap()).unwrap();
        stack
            .udp_send_to(t, ua, b"hello", b.parse().unwrap())
            .unwrap();
        assert!(stack.poll(t));
        let mut buf = [0u8; 16];
        let (n, from) = stack.udp().recv_from(ub, &mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"hello"[..], a.parse().unwrap()));
        assert!(!stack.poll(t));

        // A TCP handshake: SYN, SYN-ACK and ACK, each sent while the previous one is
        // taken in, all in one poll.
        let server: SocketAddr = "127.0.0.1:7003".parse().unwrap();
        let listener = stack.tcp_listen(server, 1).unwrap();
        let client = stack.tcp_connect(t, server).unwrap();
        assert!(stack.poll(t));
        let (accepted, _) = stack
            .tcp()
            .accept(listener)
            .expect("handshake done in one poll");
        assert_eq!(stack.tcp().state(client), Ok(State::Established));
        assert_eq!(stack.tcp().state(accepted), Ok(State::Established));
        assert!(!stack.poll(t));
    }

    #[test]
    fn a_refused_address_leaves_no_interface_behind() {
        let mut stack = Stack::new(StackConfig::default()).unwrap();
        let wire = || -> BoxedDevice {
            let config = LoopbackConfig {
                name: "wire0".into(),
                ..LoopbackConfig::default()
            };
            Box::new(Loopback::with_config(config).unwrap())
        };
        let good: Cidr = "192.0.2.2/24".parse().unwrap();
        for bad in [vec![good, "127.0.0.2/8".parse().unwrap()], vec![good, good]] {
            assert!(stack.add_device(wire(), &bad).is_err(), "{bad:?}");
            assert_eq!(stack.ip().interfaces().iter().count(), 1, "only lo");
            assert!(stack.ip().route("192.0.2.9".parse().unwrap()).is_err());
        }
        let id = stack.add_device(wire(), &[good]).unwrap();
        assert!(stack.device(id).is_some());
        assert_eq!(
            stack
                .ip()
                .route("192.0.2.9".parse().unwrap())
                .unwrap()
                .iface,
            id
        );
    }
}
