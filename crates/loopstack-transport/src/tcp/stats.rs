//! Counters: the stack-wide ones named as in `/proc/net/snmp` and `/proc/net/netstat`
//! (what `netstat -s` prints), and per connection what `ss -ti` shows.

use std::fmt::Write;

/// Stack-wide TCP counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// `ActiveOpens`: connections that went from CLOSED to SYN-SENT.
    pub active_opens: u64,
    /// `PassiveOpens`: connections that went from LISTEN to SYN-RECEIVED.
    pub passive_opens: u64,
    /// `AttemptFails`: SYN-SENT or SYN-RECEIVED straight to CLOSED (refused, reset, timed
    /// out).
    pub attempt_fails: u64,
    /// `EstabResets`: ESTABLISHED or CLOSE-WAIT straight to CLOSED by a reset.
    pub estab_resets: u64,
    /// `CurrEstab`: connections now in ESTABLISHED or CLOSE-WAIT.
    pub curr_estab: u64,
    /// `InSegs`: segments received, including erroneous ones.
    pub in_segs: u64,
    /// `OutSegs`: segments sent, excluding retransmissions.
    pub out_segs: u64,
    /// `RetransSegs`: segments retransmitted.
    pub retrans_segs: u64,
    /// `InErrs`: segments received with errors (bad header, bad checksum).
    pub in_errs: u64,
    /// `OutRsts`: segments sent with RST.
    pub out_rsts: u64,
    /// `InCsumErrors`: segments with a bad checksum.
    pub in_csum_errors: u64,
    /// `ListenOverflows`: SYNs or handshake ACKs dropped because an accept queue was full.
    pub listen_overflows: u64,
    /// `ListenDrops`: all SYNs and handshake ACKs a listener dropped.
    pub listen_drops: u64,
    /// `TCPChallengeACK`: challenge ACKs sent (RFC 5961).
    pub challenge_acks: u64,
    /// `TCPSYNChallenge`: challenge ACKs sent in answer to a SYN (RFC 5961 4).
    pub syn_challenges: u64,
    /// Challenge ACKs the rate limit suppressed (Linux counts them as `TCPChallengeACK`
    /// not sent).
    pub challenge_acks_suppressed: u64,
    /// `TCPTimeouts`: retransmission timer expiries.
    pub timeouts: u64,
    /// `TCPFastRetrans`: fast retransmissions (RFC 5681 3.2).
    pub fast_retransmits: u64,
    /// `TCPOFOQueue`: segments queued out of order.
    pub ofo_queued: u64,
    /// `TCPOFODrop`: out-of-order segments dropped because the queue was full.
    pub ofo_dropped: u64,
    /// `TCPAbortOnData`: connections reset because data arrived after the application
    /// closed them.
    pub abort_on_data: u64,
    /// `TCPAbortOnClose`: connections reset because the application closed them with
    /// unread data.
    pub abort_on_close: u64,
    /// `TCPAbortOnTimeout`: connections aborted after too many retransmissions.
    pub abort_on_timeout: u64,
    /// Segments dropped because no buffer could be had for them (back-pressure).
    pub out_no_buffer: u64,
    /// Writes whose bytes were copied into a lent send-buffer block ([`Tcp::send_lend`]):
    /// a blocking socket's large writes, copied without the stack's lock. No Linux
    /// counter; not in [`render_snmp`](Self::render_snmp).
    ///
    /// [`Tcp::send_lend`]: super::Tcp::send_lend
    pub lent_writes: u64,
    /// Reads that took whole received buffers to copy out of ([`Tcp::recv_or_take`]): a
    /// blocking socket's large reads, copied without the stack's lock. Not in
    /// [`render_snmp`](Self::render_snmp) either.
    ///
    /// [`Tcp::recv_or_take`]: super::Tcp::recv_or_take
    pub taken_reads: u64,
}

impl TcpStats {
    /// The `Tcp:` lines of `/proc/net/snmp` and the `TcpExt:` lines of `/proc/net/netstat`
    /// this stack keeps, header line then value line, as `netstat -s` reads them.
    pub fn render_snmp(&self) -> String {
        let tcp: [(&str, u64); 11] = [
            ("ActiveOpens", self.active_opens),
            ("PassiveOpens", self.passive_opens),
            ("AttemptFails", self.attempt_fails),
            ("EstabResets", self.estab_resets),
            ("CurrEstab", self.curr_estab),
            ("InSegs", self.in_segs),
            ("OutSegs", self.out_segs),
            ("RetransSegs", self.retrans_segs),
            ("InErrs", self.in_errs),
            ("OutRsts", self.out_rsts),
            ("InCsumErrors", self.in_csum_errors),
        ];
        let ext: [(&str, u64); 12] = [
            ("ListenOverflows", self.listen_overflows),
            ("ListenDrops", self.listen_drops),
            ("TCPChallengeACK", self.challenge_acks),
            ("TCPSYNChallenge", self.syn_challenges),
            ("TCPTimeouts", self.timeouts),
            ("TCPFastRetrans", self.fast_retransmits),
            ("TCPOFOQueue", self.ofo_queued),
            ("TCPOFODrop", self.ofo_dropped),
            ("TCPAbortOnData", self.abort_on_data),
            ("TCPAbortOnClose", self.abort_on_close),
            ("TCPAbortOnTimeout", self.abort_on_timeout),
            ("TCPNoBuffer", self.out_no_buffer),
        ];
        let mut out = String::new();
        for (prefix, rows) in [("Tcp:", &tcp[..]), ("TcpExt:", &ext[..])] {
            out.push_str(prefix);
            for (name, _) in rows {
                let _ = write!(out, " {name}");
            }
            out.push('\n');
            out.push_str(prefix);
            for (_, v) in rows {
                let _ = write!(out, " {v}");
            }
            out.push('\n');
        }
        out
    }
}

/// One connection's counters, as `ss -ti` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Segments received.
    pub segs_in: u64,
    /// Segments sent, retransmissions included.
    pub segs_out: u64,
    /// Payload bytes sent, retransmissions included.
    pub bytes_sent: u64,
    /// Payload bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// Segments retransmitted (`retrans` total).
    pub retrans_segs: u64,
    /// Retransmission timer expiries.
    pub timeouts: u64,
    /// Fast retransmissions.
    pub fast_retransmits: u64,
    /// Duplicate ACKs received.
    pub dup_acks_in: u64,
    /// Segments that arrived out of order.
    pub ofo_in: u64,
    /// Zero-window probes sent.
    pub window_probes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_header_and_values() {
        let s = TcpStats {
            active_opens: 3,
            listen_drops: 2,
            ..TcpStats::default()
        };
        let text = s.render_snmp();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("Tcp: ActiveOpens PassiveOpens"));
        assert!(lines[1].starts_with("Tcp: 3 0"));
        assert!(lines[2].starts_with("TcpExt: ListenOverflows ListenDrops"));
        assert!(lines[3].starts_with("TcpExt: 0 2"));
    }
}
