//! Congestion control: Reno (RFC 5681) with NewReno's fast recovery (RFC 6582).
//!
//! ```text
//!   cwnd ▲                 3 dup ACKs: ssthresh = flight/2,
//!        │        ╱╲       retransmit, cwnd = ssthresh + 3*MSS
//!        │      ╱   ╲___╱╲        ╱
//!        │    ╱  congestion   ╲ ╱   RTO: cwnd = 1*MSS, slow start again
//!        │  ╱ avoidance        │
//!        │╱ slow start         │╱
//!        └──────────────────────────────▶ time
//! ```
//!
//! The window counts bytes. Growth uses appropriate byte counting (RFC 3465): in slow start
//! each ACK grows the window by the bytes it acknowledges, up to one MSS (L = 1); in
//! congestion avoidance the window grows by one MSS per window of bytes acknowledged.

use super::seq::SeqNum;

/// The congestion state of one connection.
#[derive(Debug, Clone)]
pub struct Reno {
    mss: u32,
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acknowledged towards the next congestion-avoidance increase.
    acked_in_ca: u32,
    /// Duplicate ACKs in a row (RFC 5681 2's definition).
    dup_acks: u32,
    /// While in fast recovery, the highest sequence number sent when it began ("recover",
    /// RFC 6582 3.2).
    recover: Option<SeqNum>,
    /// After a timeout, recovery does not start again until ACKs pass this point
    /// (RFC 6582 3.2 step 1's check, and 4.1).
    recover_floor: Option<SeqNum>,
}

/// What the sender must do after an acknowledgment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAction {
    /// Nothing special: send what the window allows.
    None,
    /// Retransmit the first unacknowledged segment now (fast retransmit, or NewReno's
    /// partial-ACK retransmission, RFC 6582 3.2 step 5).
    RetransmitFirst,
}

impl Reno {
    /// A new connection's state: the initial window is `initial_segments` MSS (RFC 6928's
    /// ten, as Linux uses), the threshold unbounded (RFC 5681 3.1).
    pub fn new(mss: u32, initial_segments: u32) -> Self {
        let mss = mss.max(1);
        Reno {
            mss,
            cwnd: mss.saturating_mul(initial_segments.max(1)),
            ssthresh: u32::MAX,
            acked_in_ca: 0,
            dup_acks: 0,
            recover: None,
            recover_floor: None,
        }
    }

    /// Sets the segment size once the handshake has agreed it.
    pub fn set_mss(&mut self, mss: u32, initial_segments: u32) {
        self.mss = mss.max(1);
        self.cwnd = self.mss.saturating_mul(initial_segments.max(1));
    }

    /// The congestion window, in bytes.
    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// The slow-start threshold, in bytes (`u32::MAX` until the first loss).
    pub fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    /// Whether fast recovery is under way.
    pub fn in_recovery(&self) -> bool {
        self.recover.is_some()
    }

    /// Duplicate ACKs counted in a row.
    pub fn dup_acks(&self) -> u32 {
        self.dup_acks
    }

    /// An ACK that acknowledged `acked` new bytes, up to `ack`. `flight` is the data that
    /// was outstanding before it.
    pub fn on_new_ack(&mut self, acked: u32, ack: SeqNum, flight: u32) -> AckAction {
        self.dup_acks = 0;
        if let Some(recover) = self.recover {
            if ack.ge(recover) {
                // RFC 6582 3.2 step 6, full acknowledgment: deflate the window to
                // min(ssthresh, max(FlightSize, SMSS) + SMSS) and leave recovery.
                let remaining = flight.saturating_sub(acked);
                self.cwnd = self
                    .ssthresh
                    .min(remaining.max(self.mss).saturating_add(self.mss));
                self.recover = None;
                return AckAction::None;
            }
            // Step 5, partial acknowledgment: retransmit the next hole, deflate the window
            // by the bytes acknowledged, and add back one MSS if at least that much was.
            self.cwnd = self.cwnd.saturating_sub(acked);
            if acked >= self.mss {
                self.cwnd = self.cwnd.saturating_add(self.mss);
            }
            return AckAction::RetransmitFirst;
        }
        if self.cwnd < self.ssthresh {
            // Slow start (RFC 5681 3.1, RFC 3465 2.2 with L = 1 MSS).
            self.cwnd = self.cwnd.saturating_add(acked.min(self.mss));
        } else {
            // Congestion avoidance: one MSS per cwnd of bytes acknowledged (RFC 3465 2.1).
            self.acked_in_ca = self.acked_in_ca.saturating_add(acked);
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(self.mss);
            }
        }
        AckAction::None
    }

    /// A duplicate ACK. `flight` is the data outstanding, `snd_max` the highest sequence
    /// number sent, `snd_una` the ACK's value.
    pub fn on_dup_ack(&mut self, flight: u32, snd_una: SeqNum, snd_max: SeqNum) -> AckAction {
        self.dup_acks = self.dup_acks.saturating_add(1);
        if self.recover.is_some() {
            // RFC 5681 3.2 step 4 (and RFC 6582 3.2 step 4): each further duplicate means a
            // segment has left the network; inflate the window by one MSS.
            self.cwnd = self.cwnd.saturating_add(self.mss);
            return AckAction::None;
        }
        if self.dup_acks != 3 {
            return AckAction::None;
        }
        // RFC 6582 3.2 step 2: enter recovery only if this loss is newer than the last
        // recovery or timeout, so one window's losses do not halve the window twice. An ACK
        // exactly at the old "recover" point counts as newer: everything sent before it is
        // acknowledged, so these duplicates are about new data (the RFC's "more than" would
        // leave that loss to the retransmission timer).
        if self.recover_floor.is_some_and(|floor| snd_una.lt(floor)) {
            return AckAction::None;
        }
        // Step 3 (RFC 5681 3.2 steps 2-3): halve, retransmit, inflate by the three segments
        // that the duplicates say have left the network.
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh.saturating_add(3 * self.mss);
        self.recover = Some(snd_max);
        self.recover_floor = Some(snd_max);
        AckAction::RetransmitFirst
    }

    /// The retransmission timer expired (RFC 5681 3.1 equation 4 and the loss window).
    pub fn on_timeout(&mut self, flight: u32, snd_max: SeqNum) {
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.mss;
        self.acked_in_ca = 0;
        self.dup_acks = 0;
        self.recover = None;
        self.recover_floor = Some(snd_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    #[test]
    fn slow_start_then_avoidance() {
        let mut r = Reno::new(MSS, 10);
        assert_eq!(r.cwnd(), 10 * MSS);
        r.on_new_ack(MSS, SeqNum(1000), 10 * MSS);
        assert_eq!(r.cwnd(), 11 * MSS, "slow start: one MSS per ACK");
        r.on_new_ack(5 * MSS, SeqNum(6000), 10 * MSS);
        assert_eq!(
            r.cwnd(),
            12 * MSS,
            "ABC with L = 1: at most one MSS per ACK"
        );
        r.on_timeout(12 * MSS, SeqNum(20000));
        assert_eq!((r.cwnd(), r.ssthresh()), (MSS, 6 * MSS));
        for _ in 0..5 {
            r.on_new_ack(MSS, SeqNum(21000), MSS);
        }
        assert_eq!(r.cwnd(), 6 * MSS, "slow start up to ssthresh");
        for _ in 0..5 {
            r.on_new_ack(MSS, SeqNum(22000), 6 * MSS);
        }
        assert_eq!(
            r.cwnd(),
            6 * MSS,
            "avoidance: no growth before a window is acked"
        );
        r.on_new_ack(MSS, SeqNum(23000), 6 * MSS);
        assert_eq!(r.cwnd(), 7 * MSS);
    }

    #[test]
    fn new_reno_recovery() {
        let mut r = Reno::new(MSS, 10);
        let una = SeqNum(0);
        let max = SeqNum(10 * MSS);
        assert_eq!(r.on_dup_ack(10 * MSS, una, max), AckAction::None);
        assert_eq!(r.on_dup_ack(10 * MSS, una, max), AckAction::None);
        assert_eq!(
            r.on_dup_ack(10 * MSS, una, max),
            AckAction::RetransmitFirst,
            "third duplicate: fast retransmit"
        );
        assert!(r.in_recovery());
        assert_eq!(r.ssthresh(), 5 * MSS);
        assert_eq!(r.cwnd(), 8 * MSS);
        r.on_dup_ack(10 * MSS, una, max);
        assert_eq!(r.cwnd(), 9 * MSS, "inflation");
        // A partial ACK: two segments acknowledged, the hole after them is retransmitted.
        assert_eq!(
            r.on_new_ack(2 * MSS, SeqNum(2 * MSS), 10 * MSS),
            AckAction::RetransmitFirst
        );
        assert_eq!(r.cwnd(), 8 * MSS);
        assert!(r.in_recovery());
        // The full ACK ends recovery with the window deflated to ssthresh.
        assert_eq!(r.on_new_ack(8 * MSS, max, 8 * MSS), AckAction::None);
        assert!(!r.in_recovery());
        assert_eq!(r.cwnd(), 2 * MSS, "min(ssthresh, max(flight, mss) + mss)");
    }

    #[test]
    fn no_second_recovery_for_the_same_window_after_timeout() {
        let mut r = Reno::new(MSS, 10);
        r.on_timeout(10 * MSS, SeqNum(10 * MSS));
        for _ in 0..3 {
            assert_eq!(
                r.on_dup_ack(MSS, SeqNum(MSS), SeqNum(10 * MSS)),
                AckAction::None
            );
        }
        assert!(!r.in_recovery());
    }
}
