//! The transport layer as one value: UDP and TCP side by side, fed by the internet layer.
//!
//! [`Transport`] is the internet layer's [`Upper`]: [`Internet::receive_with`] hands it each
//! message, which it passes to the protocol the message names ([`Transport::deliver`] does
//! the same with a [`Delivery`] that [`Internet::receive`] returned). [`Transport::poll`]
//! runs TCP's timers and sends what is ready. A stack's poll loop is then: take packets off
//! the devices, `Internet::receive_with(.., &mut transport)`; when the devices are quiet,
//! `poll`.

use loopstack_buf::{PacketBuf, PacketPool};
use loopstack_internet::icmp::{IcmpError, QuotedPacket};
use loopstack_internet::ingress::proto;
use loopstack_internet::{Delivery, Internet, IpMeta, Links, Upper};
use loopstack_link::{Instant, Rng};

use crate::tcp::{Tcp, TcpConfig};
use crate::udp::{Udp, UdpConfig};

/// Settings for both protocols.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransportConfig {
    /// UDP settings.
    pub udp: UdpConfig,
    /// TCP settings.
    pub tcp: TcpConfig,
}

/// UDP and TCP of one stack.
#[derive(Debug)]
pub struct Transport {
    /// The UDP sockets.
    pub udp: Udp,
    /// The TCP sockets.
    pub tcp: Tcp,
    /// Randomness for UDP's ephemeral ports (TCP keeps its own, forked from the same seed).
    pub rng: Rng,
}

impl Transport {
    /// Both protocols, with every random choice drawn from `seed`.
    pub fn new(pool: PacketPool, config: TransportConfig, seed: u64) -> Self {
        let root = Rng::new(seed);
        let tcp_seed = root.fork(6).next_u64();
        Transport {
            udp: Udp::new(pool.clone(), config.udp),
            tcp: Tcp::new(pool, config.tcp, tcp_seed),
            rng: root.fork(17),
        }
    }

    /// Hands one delivery from the internet layer to its protocol. TCP's answers wait for
    /// [`dispatch`](Self::dispatch), so one batch of input gets one batch of ACKs.
    pub fn deliver<L: Links>(
        &mut self,
        now: Instant,
        delivery: Delivery,
        ip: &mut Internet,
        links: &mut L,
    ) {
        match delivery {
            Delivery::Transport { meta, packet } => self.transport(now, meta, packet, ip, links),
            Delivery::IcmpError {
                meta,
                error,
                quoted,
            } => Upper::icmp_error(self, now, meta, error, quoted, ip, links),
        }
    }

    /// Sends what TCP connections have ready.
    pub fn dispatch<L: Links>(&mut self, now: Instant, ip: &mut Internet, links: &mut L) {
        self.tcp.dispatch(now, ip, links);
    }

    /// Whether [`dispatch`](Self::dispatch) has anything to send.
    pub fn has_output(&self) -> bool {
        self.tcp.has_output()
    }

    /// Runs timers due at `now` and sends what is ready.
    pub fn poll<L: Links>(&mut self, now: Instant, ip: &mut Internet, links: &mut L) {
        self.tcp.poll(now, ip, links);
    }

    /// When [`poll`](Self::poll) next has timer work.
    pub fn poll_at(&self) -> Option<Instant> {
        self.tcp.poll_at()
    }
}

impl Upper for Transport {
    /// Passes the message to the protocol it names. TCP's answers wait for
    /// [`dispatch`](Transport::dispatch), so one batch of input gets one batch of ACKs.
    // Inlined into the caller's receive loop, so that `meta` is handed over in registers
    // rather than through memory (see `Upper`).
    #[inline(always)]
    fn transport<L: Links>(
        &mut self,
        now: Instant,
        meta: IpMeta,
        packet: PacketBuf,
        ip: &mut Internet,
        links: &mut L,
    ) {
        match meta.protocol {
            proto::TCP => self.tcp.receive(now, meta, packet, ip, links),
            proto::UDP => self.udp.receive(now, meta, packet, ip, links),
            _ => {}
        }
    }

    /// Reports the error to the socket whose packet the quoted header names.
    fn icmp_error<L: Links>(
        &mut self,
        _: Instant,
        _: IpMeta,
        error: IcmpError,
        quoted: QuotedPacket,
        _: &mut Internet,
        _: &mut L,
    ) {
        match quoted.protocol {
            proto::TCP => self.tcp.icmp_error(error, &quoted),
            proto::UDP => self.udp.icmp_error(error, &quoted),
            _ => {}
        }
    }
}
