//! The TCP state machine as scripts of segments in and segments out.
//!
//! Each test plays the peer by hand against one [`Connection`](loopstack_transport::tcp::conn::Connection)
//! and checks, segment by segment, what it answers: one test per transition of RFC 9293's
//! state diagram and per rule of the RFCs around it (RFC 5961's blind-attack defences,
//! RFC 1122's Nagle and silly-window rules, RFC 6298's timer, RFC 5681 and 6582's fast
//! retransmit and recovery, RFC 7323's window scaling). The little language they are written
//! in lives in `script/mod.rs`; its conventions, in short:
//!
//! * `t.recv(seg()...)` is a segment from the peer; `t.expect(seg()...)` takes the next one
//!   we send and checks the fields named (control bits always; no payload unless named);
//!   `t.expect_nothing()` says we have nothing to send.
//! * Our ISS is [`ISS`], the peer's is [`IRS`]; after a handshake our next byte is `ISS + 1`
//!   and the peer's `IRS + 1`.
//! * Time only moves when a script says so: `t.advance(d)` or `t.fire()` (jump to the next
//!   timer and run it).
//!
//! Every test runs twice, over IPv4 and over IPv6 (127.0.0.1 and ::1, whose MSS differ), as
//! `<rule>::ipv4` and `<rule>::ipv6`.

mod script;

use std::time::Duration;

use loopstack_internet::icmp::RateLimiter;
use loopstack_link::Instant;
use loopstack_transport::tcp::isn::IsnGenerator;
use loopstack_transport::tcp::{State, TcpConfig};
use loopstack_transport::Error;
use script::{pattern, seg, Family, Script, Seg, IRS, ISS, OUR_WSCALE, PEER_WSCALE};

/// Defines a rule's script, `fn name(f: Family)`, and two tests running it over IPv4 and
/// IPv6.
macro_rules! rule {
    ($(#[$doc:meta])* fn $name:ident($f:ident) $body:block) => {
        $(#[$doc])*
        fn $name($f: Family) $body

        mod $name {
            #[test]
            fn ipv4() {
                super::$name(super::Family::v4())
            }
            #[test]
            fn ipv6() {
                super::$name(super::Family::v6())
            }
        }
    };
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The default configuration with a small receive buffer (no window scaling: 1000 bytes
/// need no shift), so windows close after a few segments.
fn small_buffer(bytes: usize) -> TcpConfig {
    TcpConfig {
        recv_buffer: bytes,
        ..TcpConfig::default()
    }
}

// ====================================================================== opening

rule! {
    /// Active open, RFC 9293 3.5 figure 6: SYN-SENT, then the SYN,ACK moves us to
    /// ESTABLISHED and we acknowledge it. Our SYN carries our MSS (RFC 9293 3.7.1) and a
    /// window scale offer (RFC 7323 2.2); its window is never scaled.
    fn active_open(f) {
        let mut t = Script::client(f);
        assert_eq!(t.state(), State::SynSent);
        let syn = t.expect(
            seg()
                .syn()
                .seq(ISS)
                .window(65535)
                .mss(f.our_mss_option())
                .wscale(OUR_WSCALE)
                .sack_permitted(false),
        );
        let ts = syn.header.options.timestamps;
        assert_eq!(ts.map(|(_, ecr)| ecr), Some(0), "timestamps offered (RFC 7323 3.2)");
        t.expect_nothing();
        t.advance(ms(10));
        t.recv(
            seg()
                .syn()
                .ack()
                .seq(IRS)
                .ack_n(ISS + 1)
                .window(65535)
                .mss(f.peer_mss)
                .wscale(PEER_WSCALE),
        );
        assert_eq!(t.state(), State::Established);
        // 1 MiB of receive buffer, scaled by 2^5. The peer did not answer our timestamps
        // offer, so the ACK carries none (RFC 7323 3.2).
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1).window(32768).no_options());
        t.expect_nothing();
        let info = t.info();
        assert_eq!(info.snd_mss, f.mss(), "we send at most the peer's MSS");
        assert_eq!(info.wscale, Some((OUR_WSCALE, PEER_WSCALE)));
        assert_eq!(info.srtt, Some(ms(10)), "the SYN was timed");
        assert_eq!((t.stats.active_opens, t.stats.curr_estab), (1, 1));
    }
}

rule! {
    /// Passive open, RFC 9293 3.5 figure 6 from the other side: a listener's SYN gives
    /// SYN-RECEIVED and a SYN,ACK; the ACK of our SYN gives ESTABLISHED.
    fn passive_open(f) {
        let mut t = Script::server(f);
        assert_eq!(t.state(), State::SynReceived);
        t.expect(
            seg()
                .syn()
                .ack()
                .seq(ISS)
                .ack_n(IRS + 1)
                .window(65535)
                .mss(f.our_mss_option())
                .wscale(OUR_WSCALE),
        );
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).window(512));
        assert_eq!(t.state(), State::Established);
        t.expect_nothing();
        assert_eq!(t.info().snd_wnd, 512 << PEER_WSCALE);
        assert_eq!((t.stats.passive_opens, t.stats.curr_estab), (1, 1));
    }
}

rule! {
    /// Simultaneous open, RFC 9293 3.5 figure 8: our SYN crosses the peer's. Its SYN moves
    /// us from SYN-SENT to SYN-RECEIVED and we answer SYN,ACK; its SYN,ACK (line 6 of the
    /// figure) acknowledges our SYN and moves us to ESTABLISHED, with nothing more to send.
    fn simultaneous_open(f) {
        let mut t = Script::client(f);
        t.expect(seg().syn().seq(ISS).wscale(OUR_WSCALE));
        t.recv(Script::peer_syn(f));
        assert_eq!(t.state(), State::SynReceived);
        t.expect(
            seg()
                .syn()
                .ack()
                .seq(ISS)
                .ack_n(IRS + 1)
                .mss(f.our_mss_option())
                .wscale(OUR_WSCALE),
        );
        t.expect_nothing();
        t.recv(
            seg()
                .syn()
                .ack()
                .seq(IRS)
                .ack_n(ISS + 1)
                .window(65535)
                .mss(f.peer_mss)
                .wscale(PEER_WSCALE),
        );
        assert_eq!(t.state(), State::Established);
        t.expect_nothing();
        assert_eq!(t.info().snd_wnd, 65535, "a SYN,ACK's window is never scaled");
        // The connection works: data flows both ways.
        t.write(b"hi");
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1).data(b"hi"));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 3).data(b"yo"));
        t.expect(seg().ack().seq(ISS + 3).ack_n(IRS + 3));
        assert_eq!(t.read_all(), b"yo");

        // The same crossing, but the peer's SYN,ACK arrives before ours has left: the
        // handshake still completes, and the peer, which never got our SYN,ACK, is sent the
        // ACK of its SYN instead.
        let mut t = Script::client(f);
        t.expect(seg().syn().seq(ISS));
        t.recv(Script::peer_syn(f));
        t.recv(Script::peer_syn_ack(f).wscale(PEER_WSCALE));
        assert_eq!(t.state(), State::Established);
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1));
        t.expect_nothing();
    }
}

rule! {
    /// RFC 9293 3.10.7.3, SYN-SENT, first check: a SYN,ACK whose ACK does not acknowledge
    /// our SYN (SEG.ACK =< ISS or SEG.ACK > SND.NXT) draws <SEQ=SEG.ACK><CTL=RST> and is
    /// otherwise ignored.
    fn syn_ack_with_bad_ack_gets_reset(f) {
        let mut t = Script::client(f);
        t.expect(seg().syn().seq(ISS));
        t.recv(seg().syn().ack().seq(IRS).ack_n(ISS + 100));
        t.expect(seg().rst().seq(ISS + 100));
        t.expect_nothing();
        assert_eq!(t.state(), State::SynSent);
        t.recv(seg().syn().ack().seq(IRS).ack_n(ISS));
        t.expect(seg().rst().seq(ISS));
        assert_eq!(t.state(), State::SynSent);
        // A RST with a bad ACK is ignored, not answered.
        t.recv(seg().rst().ack().seq(0).ack_n(ISS + 100));
        t.expect_nothing();
        assert_eq!(t.state(), State::SynSent);
        // The right SYN,ACK still completes the handshake.
        t.recv(Script::peer_syn_ack(f));
        assert_eq!(t.state(), State::Established);
    }
}

rule! {
    /// RFC 9293 3.10.7.3, SYN-SENT, second check: a RST with an acceptable ACK means the
    /// peer refused us: "connection reset", CLOSED (`ECONNREFUSED`).
    fn rst_with_acceptable_ack_in_syn_sent_refuses(f) {
        let mut t = Script::client(f);
        t.expect(seg().syn().seq(ISS));
        t.recv(seg().rst().ack().seq(0).ack_n(ISS + 1));
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.conn.take_error(), Some(Error::ConnectionRefused));
        t.expect_nothing();
        assert_eq!(t.stats.attempt_fails, 1);
    }
}

rule! {
    /// RFC 9293 3.10.7.3, SYN-SENT: "If the RST bit is set ... [and] no ACK, drop the
    /// segment": it cannot be tied to our SYN, so it could be anyone's.
    fn rst_without_ack_in_syn_sent_is_ignored(f) {
        let mut t = Script::client(f);
        t.expect(seg().syn().seq(ISS));
        t.recv(seg().rst().seq(IRS));
        t.expect_nothing();
        assert_eq!(t.state(), State::SynSent);
        assert_eq!(t.conn.take_error(), None);
        t.recv(Script::peer_syn_ack(f));
        assert_eq!(t.state(), State::Established);
    }
}

rule! {
    /// A repeat of the SYN that opened a half-open connection means our SYN,ACK was lost:
    /// send the SYN,ACK again (RFC 9293 3.10.7.4's "not acceptable: send an ACK", done the
    /// way every stack does it, with the SYN,ACK itself).
    fn retransmitted_syn_in_syn_received_gets_syn_ack_again(f) {
        let mut t = Script::server(f);
        t.expect(seg().syn().ack().seq(ISS).ack_n(IRS + 1));
        t.recv(Script::peer_syn(f));
        t.expect(
            seg()
                .syn()
                .ack()
                .seq(ISS)
                .ack_n(IRS + 1)
                .mss(f.our_mss_option())
                .wscale(OUR_WSCALE),
        );
        t.expect_nothing();
        assert_eq!(t.state(), State::SynReceived);
        assert_eq!(t.conn.stats().retrans_segs, 1);
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1));
        assert_eq!(t.state(), State::Established);
    }
}

rule! {
    /// RFC 9293 3.10.7.4, SYN-RECEIVED, second check: a RST on a connection a listener
    /// opened returns it to LISTEN: for a connection object that means closing quietly,
    /// with no error for an application that never saw it.
    fn rst_in_passive_syn_received_returns_to_listen(f) {
        let mut t = Script::server(f);
        t.expect(seg().syn().ack().seq(ISS));
        t.recv(seg().rst().seq(IRS + 1));
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.conn.take_error(), None);
        t.expect_nothing();
    }
}

// ====================================================================== receiving data

rule! {
    /// RFC 9293 3.10.7.4, seventh check: in-order text is queued for the application and
    /// acknowledged (here at once: `ack_delay` is zero, RFC 9293 3.8.6.3 allows any delay
    /// up to 0.5 s).
    fn data_in_order_is_delivered_and_acknowledged(f) {
        let mut t = Script::established(f);
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).data(b"hello"));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 6));
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 6).ack_n(ISS + 1).data(b", world"));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 13));
        assert_eq!(t.read_all(), b"hello, world");
        assert_eq!(t.conn.stats().bytes_received, 12);
    }
}

/// The default configuration with a delayed ACK of `delay`.
fn delayed_ack(delay: Duration) -> TcpConfig {
    TcpConfig {
        ack_delay: delay,
        ..TcpConfig::default()
    }
}

rule! {
    /// RFC 9293 3.8.6.3 and RFC 1122 4.2.3.2: with `ack_delay` set, in-order text that is
    /// less than two full-sized segments waits for the delayed-ACK timer, and one ACK then
    /// covers everything that arrived meanwhile.
    fn delayed_ack_waits_for_its_timer(f) {
        let mut t = Script::established_with(f, delayed_ack(ms(40)), Script::peer_syn_ack(f));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(100));
        t.expect_nothing();
        assert_eq!(t.timer_in(), Some(ms(40)));
        t.advance(ms(10));
        t.recv(seg().ack().seq(IRS + 101).ack_n(ISS + 1).len(100));
        t.expect_nothing();
        assert_eq!(t.timer_in(), Some(ms(30)), "the second segment does not restart it");
        assert_eq!(t.fire(), ms(30));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 201));
        t.expect_nothing();
        assert_eq!(t.timer_in(), None);
    }
}

rule! {
    /// RFC 5681 4.2 (RFC 1122 4.2.3.2): however long the delay, an ACK goes out for at
    /// least every second full-sized segment, without waiting for the timer. Full-sized is
    /// the largest segment the peer has sent.
    fn delayed_ack_goes_for_every_second_full_sized_segment(f) {
        let mss = f.mss() as usize;
        let full = f.mss();
        let mut t = Script::established_with(f, delayed_ack(ms(200)), Script::peer_syn_ack(f));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(mss));
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 1 + full).ack_n(ISS + 1).len(mss));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1 + 2 * full));
        t.expect_nothing();
        assert_eq!(t.timer_in(), None, "nothing left to acknowledge");
        t.recv(seg().ack().seq(IRS + 1 + 2 * full).ack_n(ISS + 1).len(mss));
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 1 + 3 * full).ack_n(ISS + 1).len(mss));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1 + 4 * full));
        t.expect_nothing();
        assert_eq!(t.read_all().len(), 4 * mss);
    }
}

rule! {
    /// The ACK for a second full-sized segment waits when that segment closed the receive
    /// window (Linux's `__tcp_ack_snd_check` waits whenever the window would shrink): an
    /// ACK then would only say "zero window". The window update of the application's read
    /// carries it; without a read, the delayed-ACK timer sends it, zero window and all.
    fn a_segment_that_closes_the_window_leaves_its_ack_to_the_read(f) {
        let mss = f.mss() as usize;
        let full = f.mss();
        let config = TcpConfig {
            ack_delay: ms(200),
            recv_buffer: 2 * mss,
            ..TcpConfig::default()
        };
        let mut t = Script::established_with(f, config, Script::peer_syn_ack(f));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(mss));
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 1 + full).ack_n(ISS + 1).len(mss));
        t.expect_nothing();
        assert_eq!(t.timer_in(), Some(ms(200)), "the delayed ACK still runs");
        assert_eq!(t.read_all().len(), 2 * mss);
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1 + 2 * full));
        t.expect_nothing();
        assert_eq!(t.timer_in(), None, "the window update acknowledged everything");

        // Again, and the application does not read: the timer acknowledges.
        t.recv(seg().ack().seq(IRS + 1 + 2 * full).ack_n(ISS + 1).len(mss));
        t.recv(seg().ack().seq(IRS + 1 + 3 * full).ack_n(ISS + 1).len(mss));
        t.expect_nothing();
        assert_eq!(t.fire(), ms(200));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1 + 4 * full).window(0));
        t.expect_nothing();
    }
}

rule! {
    /// RFC 5681 4.2 and RFC 9293 3.10.7.4: a segment beyond RCV.NXT is kept and answered at
    /// once with a duplicate ACK (what drives the sender's fast retransmit); nothing reaches
    /// the application yet.
    fn out_of_order_segment_is_held_and_draws_duplicate_ack(f) {
        let mut t = Script::established(f);
        t.recv(seg().ack().seq(IRS + 101).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1));
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 201).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1));
        t.expect_nothing();
        assert_eq!(t.conn.recv_queue(), 0);
        assert_eq!(t.stats.ofo_queued, 2);
    }
}

rule! {
    /// RFC 5681 4.2: the segment that fills a gap is acknowledged at once, up to the end of
    /// what was held, and the held bytes follow it to the application in order.
    fn gap_fill_acknowledges_everything(f) {
        let mut t = Script::established(f);
        t.recv(seg().ack().seq(IRS + 201).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().ack_n(IRS + 1));
        t.recv(seg().ack().seq(IRS + 101).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().ack_n(IRS + 1));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 301));
        t.expect_nothing();
        assert_eq!(t.read_all(), pattern(IRS + 1, 300));
    }
}

rule! {
    /// RFC 9293 3.10.7.4, first check: a segment wholly before RCV.NXT is a duplicate: it
    /// is not acceptable, draws an ACK (so the sender learns where we are), and its bytes are
    /// not delivered twice. One that overlaps the front is trimmed to its new bytes.
    fn duplicate_segment_is_acknowledged_not_delivered_twice(f) {
        let mut t = Script::established(f);
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().ack_n(IRS + 101));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 101));
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 51).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().ack_n(IRS + 151));
        assert_eq!(t.read_all(), pattern(IRS + 1, 150));
    }
}

rule! {
    /// RFC 9293 3.10.7.4: "Segments with higher beginning sequence numbers may be held for
    /// later processing" but text beyond the window is trimmed off: with a 1000-byte
    /// window, 1000 bytes of a 1500-byte segment are taken, and the window closes.
    fn segment_beyond_window_is_trimmed(f) {
        let mut t = Script::established_with(f, small_buffer(1000), Script::peer_syn_ack(f));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(1500));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1001).window(0));
        t.expect_nothing();
        assert_eq!(t.read_all(), pattern(IRS + 1, 1000));
    }
}

rule! {
    /// RFC 9293 3.8.6: the window is the free receive buffer; when the application does not
    /// read, it closes to zero, and reading it empty opens it again with a window update.
    fn full_receive_buffer_advertises_zero_window(f) {
        let mut t = Script::established_with(f, small_buffer(1000), Script::peer_syn_ack(f));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(600));
        t.expect(seg().ack().ack_n(IRS + 601).window(400));
        t.recv(seg().ack().seq(IRS + 601).ack_n(ISS + 1).len(400));
        t.expect(seg().ack().ack_n(IRS + 1001).window(0));
        t.expect_nothing();
        assert_eq!(t.info().rcv_wnd, 0);
        assert_eq!(t.read_all(), pattern(IRS + 1, 1000));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1001).window(1000));
        t.expect_nothing();
    }
}

rule! {
    /// After the peer's FIN nothing more will come, so reading the buffer empty sends no
    /// window update: from TIME-WAIT one would reach a peer that has closed and draw a RST,
    /// which ends TIME-WAIT early (RFC 9293 3.10.7.4).
    fn no_window_update_after_the_peers_fin(f) {
        let mut t = Script::established_with(f, small_buffer(1000), Script::peer_syn_ack(f));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(600));
        t.expect(seg().ack().ack_n(IRS + 601).window(400));
        t.recv(seg().ack().fin().seq(IRS + 601).ack_n(ISS + 1));
        // The FIN takes a sequence number, so the window is one less: the right edge stays.
        t.expect(seg().ack().ack_n(IRS + 602).window(399));
        assert_eq!(t.state(), State::CloseWait);
        // Reading opens the window by 600 bytes, more than the update step (half the
        // buffer): before the FIN that was worth an update, now it is not.
        assert_eq!(t.read_all(), pattern(IRS + 1, 600));
        t.expect_nothing();
    }
}

rule! {
    /// Receiver silly window avoidance, RFC 9293 3.8.6.2.2 (RFC 1122 4.2.3.3, a MUST):
    /// after the window closed, the right edge moves only once it can move by
    /// min(buffer / 2, MSS): reading 100 bytes of a 1000-byte buffer must not advertise a
    /// 100-byte window, or the sender would send 100-byte segments for ever.
    fn receiver_avoids_silly_window(f) {
        let mut t = Script::established_with(f, small_buffer(1000), Script::peer_syn_ack(f));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(1000));
        t.expect(seg().ack().ack_n(IRS + 1001).window(0));
        assert_eq!(t.read(100).len(), 100);
        t.expect_nothing();
        assert_eq!(t.read(300).len(), 300);
        t.expect_nothing();
        assert_eq!(t.read(100).len(), 100);
        // 500 bytes free: half the buffer.
        t.expect(seg().ack().ack_n(IRS + 1001).window(500));
        t.expect_nothing();
        // A zero-window probe now learns the 500-byte window too.
        t.recv(seg().ack().seq(IRS + 1000).ack_n(ISS + 1));
        t.expect(seg().ack().ack_n(IRS + 1001).window(500));
    }
}

rule! {
    /// RFC 9293 3.10.7.4's acceptability test, zero-length segment and zero window: only
    /// SEG.SEQ = RCV.NXT is acceptable (its ACK is processed); anything else draws an ACK.
    fn acceptability_empty_segment_zero_window(f) {
        let mut t = Script::established_with(f, small_buffer(1000), Script::peer_syn_ack(f));
        t.write(&[7; 100]);
        t.expect(seg().ack().seq(ISS + 1).len(100));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(1000));
        t.expect(seg().ack().ack_n(IRS + 1001).window(0));
        // Not acceptable: the ACK of our data in it is not looked at.
        t.recv(seg().ack().seq(IRS + 1002).ack_n(ISS + 101));
        t.expect(seg().ack().seq(ISS + 101).ack_n(IRS + 1001).window(0));
        assert_eq!(t.info().unacked, 100);
        // Acceptable.
        t.recv(seg().ack().seq(IRS + 1001).ack_n(ISS + 101));
        t.expect_nothing();
        assert_eq!(t.info().unacked, 0);
    }
}

rule! {
    /// RFC 9293 3.10.7.4's acceptability test, zero-length segment, open window:
    /// RCV.NXT =< SEG.SEQ < RCV.NXT + RCV.WND.
    fn acceptability_empty_segment_open_window(f) {
        let mut t = Script::established_with(f, small_buffer(1000), Script::peer_syn_ack(f));
        t.write(&[7; 100]);
        t.expect(seg().ack().seq(ISS + 1).len(100));
        // Below RCV.NXT.
        t.recv(seg().ack().seq(IRS).ack_n(ISS + 101));
        t.expect(seg().ack().seq(ISS + 101).ack_n(IRS + 1).window(1000));
        assert_eq!(t.info().unacked, 100);
        // At RCV.NXT + RCV.WND: just past the window.
        t.recv(seg().ack().seq(IRS + 1001).ack_n(ISS + 101));
        t.expect(seg().ack().ack_n(IRS + 1));
        assert_eq!(t.info().unacked, 100);
        // The window's last sequence number: acceptable.
        t.recv(seg().ack().seq(IRS + 1000).ack_n(ISS + 101));
        t.expect_nothing();
        assert_eq!(t.info().unacked, 0);
    }
}

rule! {
    /// RFC 9293 3.10.7.4's acceptability test, segment with text, zero window: never
    /// acceptable; it draws an ACK and its text is dropped.
    fn acceptability_data_zero_window(f) {
        let mut t = Script::established_with(f, small_buffer(1000), Script::peer_syn_ack(f));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(1000));
        t.expect(seg().ack().ack_n(IRS + 1001).window(0));
        t.recv(seg().ack().seq(IRS + 1001).ack_n(ISS + 1).len(10));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1001).window(0));
        t.expect_nothing();
        assert_eq!(t.conn.recv_queue(), 1000);
        assert_eq!(t.read_all(), pattern(IRS + 1, 1000));
    }
}

rule! {
    /// RFC 9293 3.10.7.4's acceptability test, segment with text, open window: acceptable
    /// when its first or its last byte is in the window; then trimmed to the window.
    fn acceptability_data_open_window(f) {
        let mut t = Script::established_with(f, small_buffer(1000), Script::peer_syn_ack(f));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().ack_n(IRS + 101).window(900));
        assert_eq!(t.read_all().len(), 100);
        // Reading 100 bytes does not move the right edge (silly window avoidance), so the
        // window is IRS + 101 ..= IRS + 1000.
        t.expect_nothing();
        // Last byte just before the window: not acceptable.
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().ack_n(IRS + 101));
        assert_eq!(t.conn.recv_queue(), 0);
        // First byte before, last byte inside: acceptable, the new half is taken.
        t.recv(seg().ack().seq(IRS + 51).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().ack_n(IRS + 151));
        assert_eq!(t.read_all(), pattern(IRS + 101, 50));
        // First byte at the window's end, last beyond: acceptable, held out of order.
        t.recv(seg().ack().seq(IRS + 1000).ack_n(ISS + 1).len(10));
        t.expect(seg().ack().ack_n(IRS + 151));
        assert_eq!(t.stats.ofo_queued, 1);
        // First byte beyond the window: not acceptable.
        t.recv(seg().ack().seq(IRS + 1001).ack_n(ISS + 1).len(10));
        t.expect(seg().ack().ack_n(IRS + 151));
        assert_eq!(t.stats.ofo_queued, 1);
    }
}

rule! {
    /// RFC 9293 3.10.7.4: "If the RCV.WND is zero, no segments will be acceptable, but
    /// special allowance should be made to accept valid ACKs": a data segment at RCV.NXT
    /// that we have no room for still acknowledges our data.
    fn zero_window_still_takes_acks_from_data_segments(f) {
        let mut t = Script::established_with(f, small_buffer(1000), Script::peer_syn_ack(f));
        t.write(&[7; 100]);
        t.expect(seg().ack().seq(ISS + 1).len(100));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(1000));
        t.expect(seg().ack().ack_n(IRS + 1001).window(0));
        t.recv(seg().ack().seq(IRS + 1001).ack_n(ISS + 101).len(10));
        t.expect(seg().ack().seq(ISS + 101).ack_n(IRS + 1001).window(0));
        assert_eq!(t.info().unacked, 0, "the ACK field was processed");
        assert_eq!(t.conn.recv_queue(), 1000, "the text was not");
    }
}

rule! {
    /// Sequence numbers are modular (RFC 9293 3.4): a peer whose ISS is just below 2^32
    /// sends bytes that wrap past zero; they are delivered in order and acknowledged with
    /// the wrapped number.
    fn data_across_sequence_wrap(f) {
        let irs = u32::MAX - 49;
        let mut t = Script::server_from(f, TcpConfig::default(), Script::peer_syn(f).seq(irs));
        t.expect(seg().syn().ack().seq(ISS).ack_n(irs.wrapping_add(1)));
        t.recv(seg().ack().seq(irs.wrapping_add(1)).ack_n(ISS + 1));
        // 100 bytes from 2^32 - 49 to 51: out of order first, then the start.
        t.recv(seg().ack().seq(irs.wrapping_add(61)).ack_n(ISS + 1).len(40));
        t.expect(seg().ack().ack_n(irs.wrapping_add(1)));
        t.recv(seg().ack().seq(irs.wrapping_add(1)).ack_n(ISS + 1).len(60));
        t.expect(seg().ack().ack_n(irs.wrapping_add(101)));
        assert_eq!(t.read_all(), pattern(irs.wrapping_add(1), 100));
    }
}

// ====================================================================== lent blocks

rule! {
    /// A large write in two steps (a blocking socket's, which copies without the stack's
    /// lock): the send-buffer block is lent, filled, handed back, and its bytes go out as
    /// any written bytes do. While it is out, the connection takes no other write.
    fn a_lent_block_filled_and_committed_is_sent(f) {
        let mut t = Script::established(f);
        let data = pattern(0, 1000);
        let mut lent = t.conn.send_lend(1000).unwrap().expect("an empty buffer lends");
        assert_eq!(lent.len(), 1000);
        assert_eq!(t.conn.send(b"x"), Err(Error::WouldBlock), "nothing else while lent");
        assert_eq!(t.conn.send_lend(10).unwrap_err(), Error::WouldBlock);
        t.expect_nothing();
        assert_eq!(lent.fill(&data), 1000);
        assert_eq!(t.conn.send_commit(lent), Ok(1000));
        let sent = t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1).len(1000));
        assert_eq!(sent.payload, data);
        assert_eq!(t.conn.send(b"y"), Ok(1), "and writes go on after it");
    }
}

rule! {
    /// A lent block handed back after the connection was reset meanwhile: the write fails
    /// with the reset, nothing is queued or sent, and the block goes back to the buffer.
    fn a_block_lent_across_a_reset_comes_back_unused(f) {
        let mut t = Script::established(f);
        let mut lent = t.conn.send_lend(4096).unwrap().expect("an empty buffer lends");
        lent.fill(&[7; 4096]);
        t.recv(seg().rst().seq(IRS + 1));
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.conn.send_commit(lent), Err(Error::ConnectionReset));
        assert_eq!(t.conn.send_queue(), 0);
        t.expect_nothing();
        assert_eq!(t.conn.send(b"x"), Err(Error::BrokenPipe), "the error was reported once");
    }
}

// ====================================================================== RFC 5961

rule! {
    /// RFC 5961 3.2: a RST whose sequence number is exactly RCV.NXT resets the connection
    /// (`ECONNRESET`), with nothing sent back.
    fn rst_with_exact_sequence_resets(f) {
        let mut t = Script::established(f);
        t.recv(seg().rst().seq(IRS + 1));
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.conn.take_error(), Some(Error::ConnectionReset));
        t.expect_nothing();
        assert_eq!((t.stats.estab_resets, t.stats.curr_estab), (1, 0));
    }
}

rule! {
    /// RFC 5961 3.2: a RST inside the window but not at RCV.NXT may be a blind attacker's
    /// guess: answer with a challenge ACK and keep the connection. A genuine peer answers
    /// the ACK with a RST at the exact number.
    fn rst_in_window_not_exact_draws_challenge_ack(f) {
        let mut t = Script::established(f);
        t.recv(seg().rst().seq(IRS + 1 + 1000));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1));
        t.expect_nothing();
        assert_eq!(t.state(), State::Established);
        assert_eq!(t.stats.challenge_acks, 1);
        t.recv(seg().rst().seq(IRS + 1));
        assert_eq!(t.state(), State::Closed);
    }
}

rule! {
    /// RFC 5961 3.2 (and RFC 9293 3.10.7.4): a RST outside the window is dropped without a
    /// word, not even an ACK.
    fn rst_out_of_window_is_ignored(f) {
        let mut t = Script::established(f);
        t.recv(seg().rst().seq(IRS));
        t.recv(seg().rst().seq(IRS + 1 + 65535));
        t.recv(seg().rst().ack().seq(IRS + 1_000_000).ack_n(ISS + 1));
        t.expect_nothing();
        assert_eq!(t.state(), State::Established);
        assert_eq!(t.stats.challenge_acks, 0);
    }
}

rule! {
    /// RFC 5961 4.2: a SYN in a synchronized state, whatever its sequence number, draws a
    /// challenge ACK and is dropped; the connection carries on.
    fn syn_in_established_draws_challenge_ack(f) {
        let mut t = Script::established(f);
        t.recv(seg().syn().seq(IRS + 500).mss(f.peer_mss));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1));
        t.expect_nothing();
        t.recv(seg().syn().seq(IRS + 3_000_000).mss(f.peer_mss));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1));
        assert_eq!(t.state(), State::Established);
        assert_eq!((t.stats.syn_challenges, t.stats.challenge_acks), (2, 2));
    }
}

rule! {
    /// RFC 5961 7: challenge ACKs are rate-limited stack-wide, so an attacker cannot turn
    /// us into an ACK cannon (nor read the limiter's state through them, CVE-2016-5696
    /// aside). With a budget of one a second, the second challenge is suppressed and
    /// counted; a second later one is allowed again.
    fn challenge_acks_are_rate_limited(f) {
        let mut t = Script::established(f);
        t.challenge = RateLimiter::new(1, 1);
        t.recv(seg().rst().seq(IRS + 100));
        t.expect(seg().ack().ack_n(IRS + 1));
        t.recv(seg().rst().seq(IRS + 200));
        t.expect_nothing();
        t.recv(seg().syn().seq(IRS + 300));
        t.expect_nothing();
        assert_eq!(t.stats.challenge_acks, 1);
        assert_eq!(t.stats.challenge_acks_suppressed, 2);
        t.advance(Duration::from_secs(1));
        t.recv(seg().rst().seq(IRS + 100));
        t.expect(seg().ack().ack_n(IRS + 1));
        assert_eq!(t.state(), State::Established);
    }
}

rule! {
    /// RFC 5961 5.2: an ACK below SND.UNA - MAX.SND.WND cannot come from the peer's recent
    /// past: the segment is dropped (its text too) with a challenge ACK. At exactly
    /// SND.UNA - MAX.SND.WND it is still acceptable.
    fn ack_too_old_draws_challenge_ack_and_is_dropped(f) {
        let syn_ack = Script::peer_syn_ack(f).window(1000);
        let mut t = Script::established_with(f, TcpConfig::default(), syn_ack);
        // Three rounds of 1000 bytes move SND.UNA 3000 past the ISS; MAX.SND.WND is 1000.
        t.write(&[1; 3000]);
        for round in 0..3 {
            t.expect(seg().ack().seq(ISS + 1 + 1000 * round).len(1000));
            t.expect_nothing();
            t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1001 + 1000 * round).window(1000));
        }
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).window(1000).data(b"old"));
        t.expect(seg().ack().seq(ISS + 3001).ack_n(IRS + 1));
        t.expect_nothing();
        assert_eq!(t.conn.recv_queue(), 0, "the segment was dropped");
        assert_eq!(t.stats.challenge_acks, 1);
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 2001).window(1000).data(b"old"));
        t.expect(seg().ack().seq(ISS + 3001).ack_n(IRS + 4));
        assert_eq!(t.read_all(), b"old");
    }
}

rule! {
    /// RFC 9293 3.10.7.4, fifth check (and RFC 5961 5.2): an ACK of something not yet sent
    /// (SEG.ACK > SND.NXT) draws an ACK and the segment is dropped.
    fn ack_of_unsent_data_is_answered_and_dropped(f) {
        let mut t = Script::established(f);
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 501).data(b"abc"));
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1));
        t.expect_nothing();
        assert_eq!(t.conn.recv_queue(), 0);
        assert_eq!(t.state(), State::Established);
    }
}

// ====================================================================== closing

rule! {
    /// Active close, RFC 9293 3.6 figure 12 (left side): FIN-WAIT-1, the ACK of our FIN
    /// gives FIN-WAIT-2, the peer's FIN gives TIME-WAIT and our ACK, and 2*MSL later
    /// (`time_wait`) CLOSED.
    fn active_close(f) {
        let mut t = Script::established(f);
        t.close();
        assert_eq!(t.state(), State::FinWait1);
        t.expect(seg().fin().ack().seq(ISS + 1).ack_n(IRS + 1));
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 2));
        assert_eq!(t.state(), State::FinWait2);
        t.expect_nothing();
        t.recv(seg().fin().ack().seq(IRS + 1).ack_n(ISS + 2));
        assert_eq!(t.state(), State::TimeWait);
        t.expect(seg().ack().seq(ISS + 2).ack_n(IRS + 2));
        t.expect_nothing();
        assert_eq!(t.timer_in(), Some(t.config.time_wait));
        t.advance(t.config.time_wait - ms(1));
        assert_eq!(t.state(), State::TimeWait);
        t.advance(ms(1));
        assert_eq!(t.state(), State::Closed);
        assert!(t.conn.is_closed());
        t.expect_nothing();
    }
}

rule! {
    /// Passive close, RFC 9293 3.6 figure 12 (right side): the peer's FIN gives CLOSE-WAIT
    /// and end of file; our close sends FIN (LAST-ACK); its ACK gives CLOSED.
    fn passive_close(f) {
        let mut t = Script::established(f);
        t.recv(seg().fin().ack().seq(IRS + 1).ack_n(ISS + 1));
        assert_eq!(t.state(), State::CloseWait);
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 2));
        assert_eq!(t.conn.recv(&mut [0; 10]), Ok(0), "end of file");
        assert_eq!(t.stats.curr_estab, 1, "CLOSE-WAIT counts as established");
        t.close();
        assert_eq!(t.state(), State::LastAck);
        t.expect(seg().fin().ack().seq(ISS + 1).ack_n(IRS + 2));
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 2).ack_n(ISS + 2));
        assert_eq!(t.state(), State::Closed);
        t.expect_nothing();
        assert_eq!(t.stats.curr_estab, 0);
    }
}

rule! {
    /// Simultaneous close, RFC 9293 3.6 figure 13: our FIN crosses the peer's. Its FIN in
    /// FIN-WAIT-1 (ours not yet acknowledged) gives CLOSING and an ACK; the ACK of our FIN
    /// gives TIME-WAIT.
    fn simultaneous_close(f) {
        let mut t = Script::established(f);
        t.shutdown_write();
        t.expect(seg().fin().ack().seq(ISS + 1).ack_n(IRS + 1));
        t.recv(seg().fin().ack().seq(IRS + 1).ack_n(ISS + 1));
        assert_eq!(t.state(), State::Closing);
        t.expect(seg().ack().seq(ISS + 2).ack_n(IRS + 2));
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 2).ack_n(ISS + 2));
        assert_eq!(t.state(), State::TimeWait);
        t.expect_nothing();
        assert_eq!(t.timer_in(), Some(t.config.time_wait));
    }
}

rule! {
    /// RFC 9293 3.10.7.4, eighth check, FIN-WAIT-1: "If our FIN has been ACKed (perhaps in
    /// this segment), then enter TIME-WAIT": a FIN that also acknowledges ours skips
    /// FIN-WAIT-2 and CLOSING.
    fn fin_with_ack_of_our_fin_goes_straight_to_time_wait(f) {
        let mut t = Script::established(f);
        t.shutdown_write();
        t.expect(seg().fin().ack().seq(ISS + 1));
        t.recv(seg().fin().ack().seq(IRS + 1).ack_n(ISS + 2));
        assert_eq!(t.state(), State::TimeWait);
        t.expect(seg().ack().seq(ISS + 2).ack_n(IRS + 2));
        t.expect_nothing();
    }
}

rule! {
    /// Half-close, RFC 9293 3.6: after our FIN the peer may go on sending; FIN-WAIT-1 and
    /// FIN-WAIT-2 still take text (3.10.7.4, seventh check). Writing is over for us.
    fn half_close_still_receives(f) {
        let mut t = Script::established(f);
        t.shutdown_write();
        t.expect(seg().fin().ack().seq(ISS + 1));
        assert_eq!(t.conn.send(b"late"), Err(Error::BrokenPipe));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(100));
        assert_eq!(t.state(), State::FinWait1);
        t.expect(seg().ack().seq(ISS + 2).ack_n(IRS + 101));
        t.recv(seg().ack().seq(IRS + 101).ack_n(ISS + 2).len(100));
        assert_eq!(t.state(), State::FinWait2);
        t.expect(seg().ack().seq(ISS + 2).ack_n(IRS + 201));
        assert_eq!(t.read_all(), pattern(IRS + 1, 200));
        t.recv(seg().fin().ack().seq(IRS + 201).ack_n(ISS + 2));
        t.expect(seg().ack().ack_n(IRS + 202));
        assert_eq!(t.state(), State::TimeWait);
    }
}

rule! {
    /// RFC 9293 3.10.7.4, eighth check, TIME-WAIT: "The only thing that can arrive in this
    /// state is a retransmission of the remote FIN. Acknowledge it, and restart the 2 MSL
    /// timeout."
    fn repeated_fin_in_time_wait_is_acked_and_restarts_timer(f) {
        let mut t = Script::established(f);
        t.shutdown_write();
        t.expect(seg().fin().ack().seq(ISS + 1));
        t.recv(seg().fin().ack().seq(IRS + 1).ack_n(ISS + 2));
        t.expect(seg().ack().seq(ISS + 2).ack_n(IRS + 2));
        assert_eq!(t.state(), State::TimeWait);
        t.advance(t.config.time_wait / 2);
        // Our ACK was lost: the peer sends its FIN again.
        t.recv(seg().fin().ack().seq(IRS + 1).ack_n(ISS + 2));
        t.expect(seg().ack().seq(ISS + 2).ack_n(IRS + 2));
        t.expect_nothing();
        assert_eq!(t.timer_in(), Some(t.config.time_wait), "2*MSL from now");
        t.advance(t.config.time_wait - ms(1));
        assert_eq!(t.state(), State::TimeWait);
        t.advance(ms(1));
        assert_eq!(t.state(), State::Closed);
    }
}

rule! {
    /// Closing with received data unread resets the connection instead of sending FIN,
    /// so the peer learns its data was never read (RFC 9293 3.10.4 allows it; RFC 2525 2.17
    /// explains why; Linux's `TCPAbortOnClose`). The RST is <SEQ=SND.NXT>.
    fn close_with_unread_data_resets(f) {
        let mut t = Script::established(f);
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).len(100));
        t.expect(seg().ack().ack_n(IRS + 101));
        t.close();
        t.expect(seg().rst().ack().seq(ISS + 1).ack_n(IRS + 101));
        t.expect_nothing();
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.stats.abort_on_close, 1);
    }
}

rule! {
    /// Data arriving after the application closed its handle cannot be delivered: reset
    /// (RFC 2525 2.17, Linux's `TCPAbortOnData`), <SEQ=SND.NXT>.
    fn data_after_close_resets(f) {
        let mut t = Script::established(f);
        t.close();
        t.expect(seg().fin().ack().seq(ISS + 1).ack_n(IRS + 1));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 2).len(10));
        t.expect(seg().rst().ack().seq(ISS + 2).ack_n(IRS + 1));
        t.expect_nothing();
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.stats.abort_on_data, 1);
    }
}

rule! {
    /// RFC 9293 3.10.5, ABORT in a synchronized state: "Send a reset segment:
    /// <SEQ=SND.NXT><CTL=RST>", then CLOSED. SND.NXT, not SND.UNA: data in flight counts.
    fn abort_sends_rst_at_snd_nxt(f) {
        let mut t = Script::established(f);
        t.write(&[5; 100]);
        t.expect(seg().ack().seq(ISS + 1).len(100));
        t.abort();
        t.expect(seg().rst().ack().seq(ISS + 101).ack_n(IRS + 1));
        t.expect_nothing();
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.conn.send(b"x"), Err(Error::BrokenPipe));
    }
}

rule! {
    /// An orphan (closed by the application) in FIN-WAIT-2 does not wait for the peer's
    /// FIN for ever: after `fin_timeout` it is gone (Linux's `tcp_fin_timeout`; RFC 9293
    /// leaves FIN-WAIT-2 unbounded, which lets a silent peer pin the connection).
    fn orphan_in_fin_wait_2_times_out(f) {
        let mut t = Script::established(f);
        t.close();
        t.expect(seg().fin().ack().seq(ISS + 1));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 2));
        assert_eq!(t.state(), State::FinWait2);
        assert_eq!(t.timer_in(), Some(t.config.fin_timeout));
        t.fire();
        assert_eq!(t.state(), State::Closed);
        t.expect_nothing();
    }
}

// ====================================================================== sending

rule! {
    /// Nagle's algorithm, RFC 1122 4.2.3.4 (RFC 9293 3.7.4): while data is unacknowledged
    /// a short segment waits; the ACK releases it.
    fn nagle_holds_small_segment_while_data_unacked(f) {
        let mut t = Script::established(f);
        t.write(&[1; 100]);
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1).len(100));
        t.write(&[2; 100]);
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 101));
        t.expect(seg().ack().seq(ISS + 101).data(&[2; 100]));
        t.expect_nothing();
    }
}

rule! {
    /// TCP_NODELAY turns Nagle off (RFC 1122 4.2.3.4: "a TCP MUST allow a client
    /// application to disable" it): the second small segment goes at once.
    fn nodelay_sends_small_segments_at_once(f) {
        let mut t = Script::established(f);
        t.conn.set_nodelay(true);
        t.write(&[1; 100]);
        t.expect(seg().ack().seq(ISS + 1).len(100));
        t.write(&[2; 100]);
        t.expect(seg().ack().seq(ISS + 101).data(&[2; 100]));
        t.expect_nothing();
    }
}

rule! {
    /// RFC 9293 3.7.1: segments carry at most the peer's MSS (here smaller than ours). A
    /// write of 3 MSS + 10 bytes gives three full segments; the 10-byte tail then waits for
    /// the ACK, per Nagle.
    fn writes_are_cut_at_the_peers_mss(f) {
        let mut t = Script::established(f);
        let mss = f.mss();
        let data = pattern(0, 3 * mss as usize + 10);
        t.write(&data);
        for i in 0..3 {
            let s = t.expect(seg().ack().seq(ISS + 1 + i * mss).len(mss as usize));
            let at = (i * mss) as usize;
            assert_eq!(s.payload, data[at..at + mss as usize]);
        }
        t.expect_nothing();
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1 + 3 * mss));
        t.expect(seg().ack().seq(ISS + 1 + 3 * mss).data(&data[3 * mss as usize..]));
        t.expect_nothing();
    }
}

rule! {
    /// RFC 9293 3.8.6: no more than the peer's window is in flight; and by sender silly
    /// window avoidance (3.8.6.2.1) the sliver left over (less than an MSS, less than half
    /// the largest window) waits. An ACK moving the right edge lets another segment out.
    fn peer_window_limits_what_is_sent(f) {
        let syn_ack = Script::peer_syn_ack(f).window(3000);
        let mut t = Script::established_with(f, TcpConfig::default(), syn_ack);
        let mss = f.mss();
        t.write(&[9; 10_000]);
        t.expect(seg().ack().seq(ISS + 1).len(mss as usize));
        t.expect(seg().ack().seq(ISS + 1 + mss).len(mss as usize));
        t.expect_nothing();
        assert_eq!(t.info().snd_wnd, 3000);
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1 + mss).window(3000));
        t.expect(seg().ack().seq(ISS + 1 + 2 * mss).len(mss as usize));
        t.expect_nothing();
    }
}

rule! {
    /// Window scaling, RFC 7323 2: both SYNs carry the option; the window field of a SYN
    /// is never scaled (2.2); afterwards windows we send are shifted right by our shift and
    /// windows we receive shifted left by the peer's (2.3).
    fn window_scaling(f) {
        // Active open.
        let mut t = Script::client(f);
        t.expect(seg().syn().seq(ISS).window(65535).wscale(OUR_WSCALE));
        t.recv(Script::peer_syn_ack(f).window(65535).wscale(PEER_WSCALE));
        assert_eq!(t.info().snd_wnd, 65535, "the SYN,ACK's window is not scaled");
        t.expect(seg().ack().ack_n(IRS + 1).window((1 << 20 >> OUR_WSCALE) as u16));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).window(100).len(100));
        assert_eq!(t.info().snd_wnd, 100 << PEER_WSCALE);
        t.expect(
            seg()
                .ack()
                .ack_n(IRS + 101)
                .window((((1 << 20) - 100) as u32).div_ceil(1 << OUR_WSCALE) as u16),
        );
        assert_eq!(t.info().wscale, Some((OUR_WSCALE, PEER_WSCALE)));

        // Passive open.
        let mut t = Script::server(f);
        assert_eq!(t.info().snd_wnd, 65535, "the SYN's window is not scaled");
        t.expect(seg().syn().ack().window(65535).wscale(OUR_WSCALE));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).window(512));
        assert_eq!(t.info().snd_wnd, 512 << PEER_WSCALE);
    }
}

rule! {
    /// RFC 9293 3.8.6 with RFC 7323 2.3: the window is the free buffer, in units of
    /// 2^shift once scaled. A peer filling it with segments that are not multiples of the
    /// unit (here 1000 bytes, unit 32) while the application reads nothing must see the
    /// window close after at most the buffer plus one unit less a byte: the scaled window
    /// must not creep right with each segment (RFC 7323 appendix F's dilemma between
    /// shrinking and overcommitting; Linux commit b650d953 "enforce receive buffer memory
    /// limits by allowing the tcp window to shrink").
    fn scaled_window_closes_when_application_does_not_read(f) {
        let syn_ack = Script::peer_syn_ack(f).wscale(PEER_WSCALE);
        let mut t = Script::established_with(f, TcpConfig::default(), syn_ack);
        let buffer = t.config.recv_buffer as u32;
        let mut received = 0u32;
        let mut window = 32768u32 << OUR_WSCALE;
        for _ in 0..2000 {
            if window == 0 {
                break;
            }
            let len = window.min(1000) as usize;
            t.recv(seg().ack().seq(IRS + 1 + received).ack_n(ISS + 1).len(len));
            received += len as u32;
            let ack = t.expect(seg().ack().ack_n(IRS + 1 + received));
            window = u32::from(ack.header.window) << OUR_WSCALE;
        }
        assert_eq!(window, 0, "the window closed");
        assert!(
            received < buffer + (1 << OUR_WSCALE),
            "{received} bytes taken into a {buffer}-byte buffer"
        );
        assert_eq!(t.read_all().len() as u32, received);
    }
}

rule! {
    /// RFC 7323 2.2: scaling needs the option in both SYNs. A peer that does not send it
    /// gets no option in our SYN,ACK, and windows are unscaled both ways (ours capped at
    /// 65535). (Likewise for timestamps, 3.2: a SYN without them gets a SYN,ACK without.)
    fn no_window_scaling_without_the_peers_option(f) {
        // Active open: we offered, the peer did not.
        let mut t = Script::client(f);
        t.expect(seg().syn().wscale(OUR_WSCALE));
        t.recv(Script::peer_syn_ack(f).window(65535));
        t.expect(seg().ack().ack_n(IRS + 1).window(65535));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).window(100));
        assert_eq!(t.info().snd_wnd, 100);
        assert_eq!(t.info().wscale, None);

        // Passive open: the peer's SYN has no option, so neither has our SYN,ACK.
        let mut t = Script::server_from(
            f,
            TcpConfig::default(),
            seg().syn().seq(IRS).window(65535).mss(f.peer_mss),
        );
        t.expect(
            seg()
                .syn()
                .ack()
                .seq(ISS)
                .window(65535)
                .mss(f.our_mss_option())
                .no_wscale()
                .timestamps(None),
        );
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).window(100));
        assert_eq!(t.info().snd_wnd, 100);
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1).window(100).len(10));
        t.expect(seg().ack().ack_n(IRS + 11).window(65535));
    }
}

rule! {
    /// `TcpConfig::timestamps` off (Linux's `net.ipv4.tcp_timestamps = 0`): our SYN does
    /// not offer the option, a SYN,ACK that carries it anyway is read without it (RFC 7323
    /// 3.2 allows the option after the SYN only when the SYN had it), a peer's SYN that
    /// offers it gets a SYN,ACK without it, and no later segment carries it, so no
    /// segment gives up 12 bytes of payload to it.
    fn timestamps_off_neither_offers_nor_takes_them(f) {
        let config = TcpConfig {
            timestamps: false,
            ..TcpConfig::default()
        };
        let with_ts = |s: Seg, tsval: u32, ecr: u32| s.timestamps(Some((tsval, ecr)));

        // Active open.
        let mut t = Script::client_with(f, config.clone());
        t.expect(seg().syn().seq(ISS).wscale(OUR_WSCALE).timestamps(None));
        t.advance(ms(10));
        t.recv(with_ts(Script::peer_syn_ack(f).wscale(PEER_WSCALE), 5000, 1));
        assert_eq!(t.state(), State::Established);
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1).timestamps(None));
        assert_eq!(t.info().snd_mss, f.mss(), "no payload given up to the option");
        assert!(!t.info().timestamps);
        t.write(&pattern(0, 100));
        t.expect(seg().ack().seq(ISS + 1).len(100).timestamps(None));
        // The peer goes on sending the option: its data is taken all the same.
        t.recv(with_ts(seg().ack().seq(IRS + 1).ack_n(ISS + 101), 5001, 7).len(10));
        t.expect(seg().ack().seq(ISS + 101).ack_n(IRS + 11).timestamps(None));
        assert_eq!(t.read_all().len(), 10);

        // Passive open: the peer's SYN offers timestamps, our SYN,ACK does not take them.
        let syn = with_ts(Script::peer_syn(f), 12345, 0);
        let mut t = Script::server_from(f, config, syn);
        t.expect(seg().syn().ack().seq(ISS).ack_n(IRS + 1).timestamps(None));
        assert_eq!(t.info().snd_mss, f.mss());
        t.recv(with_ts(seg().ack().seq(IRS + 1).ack_n(ISS + 1), 12346, 0).len(10));
        assert_eq!(t.state(), State::Established);
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 11).timestamps(None));
    }
}

/// A SYN as Linux sends it, plus an option this TCP does not know: MSS, SACK permitted,
/// timestamps, NOP, window scale 7, and experimental kind 253 (RFC 4727) with two bytes.
fn syn_with_many_options(f: &Family) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&f.remote.port().to_be_bytes());
    b.extend_from_slice(&f.local.port().to_be_bytes());
    b.extend_from_slice(&IRS.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&[11 << 4, 0x02]); // 44 bytes of header, SYN
    b.extend_from_slice(&65535u16.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]); // checksum (not checked here), urgent pointer
    b.extend_from_slice(&[2, 4]);
    b.extend_from_slice(&f.peer_mss.to_be_bytes());
    b.extend_from_slice(&[4, 2]); // SACK permitted
    b.extend_from_slice(&[8, 10, 0, 0, 0x30, 0x39, 0, 0, 0, 0]); // TSval 12345, TSecr 0
    b.extend_from_slice(&[1, 3, 3, PEER_WSCALE]); // NOP, window scale
    b.extend_from_slice(&[253, 4, 0xab, 0xcd]); // unknown
    assert_eq!(b.len(), 44);
    b
}

rule! {
    /// RFC 9293 3.1 and 3.7: a TCP must accept options it does not implement and skip
    /// unknown ones by their length. SACK-permitted (RFC 2018) is read and not echoed:
    /// without it in our SYN,ACK the peer sends no SACK blocks (RFC 2018 2). MSS, window
    /// scale and timestamps, which we do implement, take effect: the SYN,ACK echoes the
    /// peer's TSval (RFC 7323 3.2), and every later segment carries the option, its 12 bytes
    /// taken from the payload of each segment (RFC 6691).
    fn unsupported_syn_options_are_accepted_not_echoed(f) {
        let raw = syn_with_many_options(&f);
        let (syn, _) = loopstack_transport::tcp::wire::Header::parse(&raw).unwrap();
        assert!(syn.options.sack_permitted && syn.options.timestamps.is_some());
        let mut t = Script::server_from_header(f, TcpConfig::default(), syn);
        let syn_ack = t.expect(
            seg()
                .syn()
                .ack()
                .seq(ISS)
                .ack_n(IRS + 1)
                .mss(f.our_mss_option())
                .wscale(OUR_WSCALE)
                .sack_permitted(false),
        );
        let ecr = |s: &script::Sent| s.header.options.timestamps.map(|(_, ecr)| ecr);
        assert_eq!(ecr(&syn_ack), Some(12345), "TSecr = the SYN's TSval");
        let our_tsval = syn_ack.header.options.timestamps.unwrap().0;
        assert_eq!(t.info().snd_mss, f.mss() - 12);
        assert!(t.info().timestamps);
        assert_eq!(t.info().wscale, Some((OUR_WSCALE, PEER_WSCALE)));
        // The raw path works for the rest of the handshake too.
        let mut ack = raw.clone();
        ack[8..12].copy_from_slice(&(ISS + 1).to_be_bytes());
        ack[4..8].copy_from_slice(&(IRS + 1).to_be_bytes());
        ack[13] = 0x10; // ACK
        t.recv_raw(&ack);
        assert_eq!(t.state(), State::Established);
        t.recv(
            seg()
                .ack()
                .seq(IRS + 1)
                .ack_n(ISS + 1)
                .timestamps(Some((12346, our_tsval)))
                .len(10),
        );
        let ack = t.expect(seg().ack().ack_n(IRS + 11).sack_permitted(false).no_mss());
        assert_eq!(ecr(&ack), Some(12346));
    }
}

// ====================================================================== zero-window probing

rule! {
    /// RFC 9293 3.8.6.1 (RFC 1122 4.2.2.17): with data waiting and the peer's window zero,
    /// the persist timer sends probes - here, like Linux, an empty segment at SND.UNA - 1,
    /// which the peer must answer with its window - backing off exponentially; when the
    /// window opens, the data flows.
    fn zero_window_probes_back_off_until_window_opens(f) {
        let syn_ack = Script::peer_syn_ack(f).window(1000);
        let mut t = Script::established_with(f, TcpConfig::default(), syn_ack);
        t.write(&pattern(0, 1500));
        t.expect(seg().ack().seq(ISS + 1).len(1000));
        t.advance(ms(10));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1001).window(0));
        t.expect_nothing();
        let rto = t.info().rto;
        assert_eq!(t.timer_in(), Some(rto), "the first probe waits one RTO");
        for i in 0..3 {
            assert_eq!(t.fire(), rto * (1 << i), "probe {i}");
            t.expect(seg().ack().seq(ISS + 1000).ack_n(IRS + 1));
            t.expect_nothing();
            // The peer answers each probe: still no room.
            t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1001).window(0));
            t.expect_nothing();
        }
        assert_eq!(t.conn.stats().window_probes, 3);
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1001).window(1000));
        t.expect(seg().ack().seq(ISS + 1001).data(&pattern(1000, 500)));
        t.expect_nothing();
    }
}

// ====================================================================== retransmission

rule! {
    /// RFC 6298 5.4-5.6 and RFC 5681 3.1: when the retransmission timer fires, the first
    /// unacknowledged segment is sent again, the RTO doubles, and the congestion window
    /// drops to one segment (ssthresh to half the flight, at least 2 MSS), so only that
    /// segment goes. Its ACK lets the rest follow in slow start.
    fn rto_resends_first_segment_doubles_rto_and_collapses_cwnd(f) {
        let mut t = Script::established(f);
        let mss = f.mss();
        t.write(&pattern(0, 3 * mss as usize));
        for i in 0..3 {
            t.expect(seg().ack().seq(ISS + 1 + i * mss).len(mss as usize));
        }
        let rto = t.info().rto;
        assert_eq!(rto, ms(200), "SRTT 10 ms gives the 200 ms floor");
        assert_eq!(t.fire(), rto);
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1).data(&pattern(0, mss as usize)));
        t.expect_nothing();
        let info = t.info();
        assert_eq!(info.rto, 2 * rto);
        assert_eq!(info.cwnd, mss);
        assert_eq!(info.ssthresh, 2 * mss);
        assert_eq!((t.stats.timeouts, t.conn.stats().retrans_segs), (1, 1));
        assert_eq!(t.timer_in(), Some(2 * rto), "the timer restarts with the new RTO");
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1 + mss));
        assert_eq!(t.info().cwnd, 2 * mss, "slow start");
        t.expect(seg().ack().seq(ISS + 1 + mss).len(mss as usize));
        t.expect(seg().ack().seq(ISS + 1 + 2 * mss).len(mss as usize));
        t.expect_nothing();
    }
}

rule! {
    /// Karn's algorithm, RFC 6298 3: the ACK of a retransmitted segment gives no RTT sample
    /// (it may answer either copy), so SRTT does not move and the backed-off RTO stays until
    /// a segment sent once is acknowledged - that sample collapses it again (RFC 6298 5.7's
    /// note).
    fn karn_no_rtt_sample_from_retransmitted_segment(f) {
        let mut t = Script::established(f);
        assert_eq!(t.info().srtt, Some(ms(10)));
        t.write(&[1; 100]);
        t.expect(seg().ack().seq(ISS + 1).len(100));
        t.fire(); // at 210 ms
        t.expect(seg().ack().seq(ISS + 1).len(100));
        t.advance(ms(90)); // 300 ms: 290 ms after the first copy, 90 after the second
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 101));
        assert_eq!(t.info().srtt, Some(ms(10)), "no sample");
        assert_eq!(t.info().rto, ms(400), "still backed off");
        t.write(&[2; 100]);
        t.expect(seg().ack().seq(ISS + 101).len(100));
        t.advance(ms(20));
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 201));
        // SRTT = 7/8 * 10 + 1/8 * 20 ms (RFC 6298 2.3).
        assert_eq!(t.info().srtt, Some(Duration::from_micros(11_250)));
        assert_eq!(t.info().rto, ms(200), "collapsed back to the floor");
    }
}

rule! {
    /// RFC 9293 3.8.3 (R2, RFC 1122 4.2.3.5): after `max_retransmissions` retransmissions
    /// the next timeout gives up: "connection timed out", a RST to the peer at SND.NXT,
    /// CLOSED.
    fn too_many_retransmissions_time_out_with_rst(f) {
        let config = TcpConfig {
            max_retransmissions: 3,
            ..TcpConfig::default()
        };
        let mut t = Script::established_with(f, config, Script::peer_syn_ack(f));
        t.write(&[1; 100]);
        t.expect(seg().ack().seq(ISS + 1).len(100));
        for i in 0..3 {
            assert_eq!(t.fire(), ms(200) * (1 << i));
            t.expect(seg().ack().seq(ISS + 1).len(100));
            assert_eq!(t.state(), State::Established);
        }
        t.fire();
        t.expect(seg().rst().ack().seq(ISS + 101).ack_n(IRS + 1));
        t.expect_nothing();
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.conn.take_error(), Some(Error::TimedOut));
        assert_eq!(t.stats.abort_on_timeout, 1);
    }
}

rule! {
    /// RFC 6298 5.5 and RFC 1122 4.2.3.5 (R2 for SYNs): the SYN is retransmitted with the
    /// RTO doubling from 1 s, and after `syn_retries` retransmissions the open fails with
    /// "timed out" - with no RST, as there is no peer state to clear.
    fn syn_retries_exhausted_time_out(f) {
        let config = TcpConfig {
            syn_retries: 2,
            ..TcpConfig::default()
        };
        let mut t = Script::client_with(f, config);
        t.expect(seg().syn().seq(ISS));
        assert_eq!(t.fire(), Duration::from_secs(1));
        t.expect(seg().syn().seq(ISS).mss(f.our_mss_option()).wscale(OUR_WSCALE));
        assert_eq!(t.fire(), Duration::from_secs(2));
        t.expect(seg().syn().seq(ISS));
        assert_eq!(t.state(), State::SynSent);
        assert_eq!(t.fire(), Duration::from_secs(4));
        t.expect_nothing();
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.conn.take_error(), Some(Error::TimedOut));
        assert_eq!(t.stats.attempt_fails, 1);
    }
}

// ====================================================================== fast retransmit

rule! {
    /// Fast retransmit, RFC 5681 3.2: the third duplicate ACK resends the segment at
    /// SND.UNA at once, long before the RTO; ssthresh = max(FlightSize / 2, 2 MSS) and
    /// cwnd = ssthresh + 3 MSS.
    fn three_duplicate_acks_trigger_fast_retransmit(f) {
        let mut t = Script::established(f);
        let mss = f.mss();
        t.write(&pattern(0, 5 * mss as usize));
        for i in 0..5 {
            t.expect(seg().ack().seq(ISS + 1 + i * mss).len(mss as usize));
        }
        let rto_in = t.timer_in();
        for _ in 0..2 {
            t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1));
            t.expect_nothing();
        }
        t.recv(seg().ack().seq(IRS + 1).ack_n(ISS + 1));
        t.expect(seg().ack().seq(ISS + 1).data(&pattern(0, mss as usize)));
        t.expect_nothing();
        assert_eq!(t.timer_in(), rto_in, "no time passed: not the timer's doing");
        assert_eq!(t.stats.fast_retransmits, 1);
        assert_eq!(t.conn.stats().fast_retransmits, 1);
        assert_eq!(t.conn.stats().dup_acks_in, 3);
        let ssthresh = (5 * mss / 2).max(2 * mss);
        assert_eq!(t.info().ssthresh, ssthresh);
        assert_eq!(t.info().cwnd, ssthresh + 3 * mss);
    }
}

rule! {
    /// NewReno, RFC 6582 3.2: during fast recovery a partial ACK (one below "recover")
    /// means the next hole is lost too: it is retransmitted at once (step 5), and the window
    /// deflated by what was acknowledged plus one MSS back. The full ACK ends recovery with
    /// cwnd = min(ssthresh, max(FlightSize, MSS) + MSS) (step 6, option 1).
    fn new_reno_partial_ack_retransmits_next_hole(f) {
        let mut t = Script::established(f);
        let mss = f.mss();
        let seg_at = |i: u32| ISS + 1 + i * mss;
        t.write(&pattern(0, 6 * mss as usize));
        for i in 0..6 {
            t.expect(seg().ack().seq(seg_at(i)).len(mss as usize));
        }
        // Segments 0 and 2 are lost; 1, 3, 4 and 5 each draw a duplicate ACK.
        for _ in 0..3 {
            t.recv(seg().ack().seq(IRS + 1).ack_n(seg_at(0)));
        }
        t.expect(seg().ack().seq(seg_at(0)).len(mss as usize));
        let ssthresh = 3 * mss;
        assert_eq!((t.info().ssthresh, t.info().cwnd), (ssthresh, ssthresh + 3 * mss));
        t.recv(seg().ack().seq(IRS + 1).ack_n(seg_at(0)));
        assert_eq!(t.info().cwnd, ssthresh + 4 * mss, "inflated by the fourth");
        t.expect_nothing();
        // The retransmission fills the first hole: the ACK stops at the second.
        t.recv(seg().ack().seq(IRS + 1).ack_n(seg_at(2)));
        t.expect(seg().ack().seq(seg_at(2)).len(mss as usize));
        t.expect_nothing();
        assert_eq!(t.info().cwnd, ssthresh + 4 * mss - 2 * mss + mss);
        // Both holes filled: everything is acknowledged and recovery ends.
        t.recv(seg().ack().seq(IRS + 1).ack_n(seg_at(6)));
        t.expect_nothing();
        assert_eq!(t.info().unacked, 0);
        let flight = 0;
        assert_eq!(t.info().cwnd, ssthresh.min(mss.max(flight) + mss));
        assert_eq!(t.stats.fast_retransmits, 1, "one recovery, not two");
        assert_eq!(t.stats.timeouts, 0);
    }
}

// ====================================================================== initial sequence numbers

rule! {
    /// RFC 6528: ISN = M + F(4-tuple, key), M a 4 us clock. Different 4-tuples get
    /// unrelated ISNs; one 4-tuple's ISN advances with time (250000 per second), so a new
    /// incarnation starts above the old one's numbers.
    fn isn_differs_per_tuple_and_advances_with_time(f) {
        let isn = IsnGenerator::new([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);
        let t0 = Instant::from_millis(5_000);
        let a = isn.isn(t0, f.local, f.remote);
        let mut other = f.remote;
        other.set_port(f.remote.port() + 1);
        let b = isn.isn(t0, f.local, other);
        assert_ne!(a, b);
        assert_ne!(a, isn.isn(t0, f.remote, f.local), "direction matters");
        let later = isn.isn(t0 + Duration::from_secs(1), f.local, f.remote);
        assert_eq!(later - a, 250_000);
        let rekeyed = IsnGenerator::new([1, 2]);
        assert_ne!(rekeyed.isn(t0, f.local, f.remote), a, "the key matters");
    }
}
