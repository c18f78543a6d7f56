//! Settings for TCP, each default with its reason.

use std::time::Duration;

use super::rtt::RttConfig;
use crate::ports::PortRange;

/// TCP settings shared by every connection of one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConfig {
    /// Bytes a connection buffers for sending (unacknowledged plus unsent). 1 MiB: on
    /// loopback the bandwidth-delay product is tiny, but the sender must keep a full receive
    /// window in flight while the receiver reads, so this matches `recv_buffer`.
    pub send_buffer: usize,
    /// Bytes a connection buffers for the application to read; it bounds the advertised
    /// window. 1 MiB, so window scaling (RFC 7323) is exercised and 64 KiB is not the limit.
    pub recv_buffer: usize,
    /// The retransmission timer's bounds (RFC 6298).
    pub rtt: RttConfig,
    /// How long TIME-WAIT lasts: 2*MSL (RFC 9293 3.4.2). 60 s, Linux's `TCP_TIMEWAIT_LEN`;
    /// simulations usually shorten it.
    pub time_wait: Duration,
    /// How long an orphaned connection (closed by the application) waits in FIN-WAIT-2 for
    /// the peer's FIN: Linux's `tcp_fin_timeout`, 60 s.
    pub fin_timeout: Duration,
    /// Retransmissions of a SYN before `connect` fails with "timed out": Linux's
    /// `tcp_syn_retries`, 6.
    pub syn_retries: u32,
    /// Retransmissions of data before the connection is aborted with "timed out" (RFC 1122
    /// 4.2.3.5's R2): Linux's `tcp_retries2`, 15.
    pub max_retransmissions: u32,
    /// Delay before acknowledging in-order data. Zero (the default) means "at the end of the
    /// current batch of input": every segment that arrived in one poll is acknowledged by one
    /// ACK, and no timer ever holds an ACK back. On loopback a timer-delayed ACK only
    /// throttles the sender (a 10 ms delayed ACK once capped a loopback user of another
    /// stack at 26 Mbit/s), while batching already saves the ACKs that delay would. With a
    /// delay set, an ACK still goes at once for every second full-sized segment (RFC 5681
    /// 4.2) unless that segment closed the window (then the window update of the next read
    /// carries it, or the timer), when a gap fills, and for out-of-order segments.
    pub ack_delay: Duration,
    /// Disable Nagle's algorithm on new connections (`TCP_NODELAY`). Default false: Nagle
    /// on (RFC 1122 4.2.3.4), as in every stack; per connection it can be switched off.
    pub nodelay: bool,
    /// Offer TCP timestamps (RFC 7323 3) on our SYN, and accept them on a peer's: Linux's
    /// `net.ipv4.tcp_timestamps`. Default true, as on Linux: every segment then carries
    /// 12 bytes of option, every ACK of new data is a round-trip sample (RFC 7323 4) and
    /// old duplicates are refused by PAWS (RFC 7323 5). Off, a connection measures one
    /// round trip per window (RFC 6298 3, Karn's rule), as with a peer that does not offer
    /// them, and sends 12 bytes less per segment; the poll-mode side-by-side benchmarks
    /// turn them off to put the same segments on the wire as smoltcp, which does not send
    /// them by default (docs/benchmarks.md, item 36).
    pub timestamps: bool,
    /// Initial congestion window in segments: ten (RFC 6928, Linux's default).
    pub initial_window: u32,
    /// Out-of-order segments a connection keeps (RFC 9293 3.10.7.4). Beyond this they are
    /// dropped and counted; the sender repeats them.
    pub max_out_of_order: usize,
    /// Challenge ACKs (RFC 5961 7) sent per second, for the whole stack: 1000.
    pub challenge_acks_per_sec: u32,
    /// Connections a listener holds half-open (SYN received, `tcp_max_syn_backlog`): 256.
    pub max_syn_backlog: usize,
    /// The most a listener's accept queue can be asked to hold (`net.core.somaxconn`): 4096.
    pub max_accept_backlog: usize,
    /// Ports for connections and listeners that do not name one.
    pub ephemeral_ports: PortRange,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            rtt: RttConfig::default(),
            time_wait: Duration::from_secs(60),
            fin_timeout: Duration::from_secs(60),
            syn_retries: 6,
            max_retransmissions: 15,
            ack_delay: Duration::ZERO,
            nodelay: false,
            timestamps: true,
            initial_window: 10,
            max_out_of_order: 64,
            challenge_acks_per_sec: 1000,
            max_syn_backlog: 256,
            max_accept_backlog: 4096,
            ephemeral_ports: PortRange::default(),
        }
    }
}
