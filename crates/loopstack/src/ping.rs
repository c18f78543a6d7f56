//! `loopstack ping`: echo requests over the in-process stack, printed as iputils `ping`
//! prints them.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use loopstack_internet::layer::EchoReply;
use loopstack_internet::route::RouteError;
use loopstack_link::Instant;
use loopstack_socket::Stack;
use loopstack_transport::Error;

/// What to ping, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct PingOptions {
    /// The address (an IP literal, or `localhost`).
    pub target: String,
    /// Echo requests to send.
    pub count: u32,
    /// Data bytes per request (iputils `-s`), 56 by default.
    pub size: usize,
    /// Time between requests (`-i`).
    pub interval: Duration,
    /// How long to wait for a reply after the last request (`-W`).
    pub timeout: Duration,
    /// Use IPv6 (`-6`).
    pub ipv6: bool,
    /// Echo identifier (iputils uses its process id).
    pub id: u16,
}

impl Default for PingOptions {
    fn default() -> Self {
        PingOptions {
            target: "127.0.0.1".to_owned(),
            count: 4,
            size: 56,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            ipv6: false,
            id: 1,
        }
    }
}

/// The clock `ping` runs on: the real one on the command line, a simulated one in tests.
pub trait Clock {
    /// The current time on the stack's clock.
    fn now(&mut self) -> Instant;
    /// Waits until `t` (returns at once if it has passed).
    fn sleep_until(&mut self, t: Instant);
}

/// The wall clock, as stack time since the moment it was made.
#[derive(Debug)]
pub struct RealClock(std::time::Instant);

impl RealClock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        RealClock(std::time::Instant::now())
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn now(&mut self) -> Instant {
        Instant::from_nanos(u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
    fn sleep_until(&mut self, t: Instant) {
        let now = self.now();
        if t > now {
            std::thread::sleep(t - now);
        }
    }
}

/// A clock that jumps: sleeping takes no time. Deterministic.
#[derive(Debug, Default)]
pub struct SimClock(pub Instant);

impl Clock for SimClock {
    fn now(&mut self) -> Instant {
        self.0
    }
    fn sleep_until(&mut self, t: Instant) {
        self.0 = self.0.max(t);
    }
}

/// How a ping run ended: iputils' exit status (0 some replies, 1 none, 2 error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingSummary {
    /// Requests sent.
    pub transmitted: u32,
    /// Distinct replies received.
    pub received: u32,
    /// Duplicate replies.
    pub duplicates: u32,
    /// Exit status.
    pub status: u8,
}

/// Resolves the target as iputils would with no name service: IP literals and `localhost`.
fn resolve(target: &str, ipv6: bool) -> Result<IpAddr, String> {
    if target == "localhost" {
        return Ok(if ipv6 {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        });
    }
    match target.parse::<IpAddr>() {
        Ok(a) if a.is_ipv6() != ipv6 && ipv6 => Err(format!(
            "ping: {target}: Address family for hostname not supported"
        )),
        Ok(a) => Ok(a),
        Err(_) => Err(format!("ping: {target}: Name or service not known")),
    }
}

/// iputils prints round-trip times with three significant digits below 100 ms.
fn fmt_ms(d: Duration) -> String {
    let us = d.as_micros();
    match us {
        u if u >= 100_000 => format!("{}", u / 1000),
        u if u >= 10_000 => format!("{}.{:01}", u / 1000, (u % 1000) / 100),
        u if u >= 1_000 => format!("{}.{:02}", u / 1000, (u % 1000) / 10),
        u => format!("{}.{:03}", u / 1000, u % 1000),
    }
}

/// Runs `ping` on `stack` in poll mode, writing what iputils writes to `out` (errors
/// included, as iputils writes them to stderr: the caller decides where `err` goes).
pub fn run(
    options: &PingOptions,
    stack: &mut Stack,
    clock: &mut dyn Clock,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<PingSummary> {
    let failed = |err: &mut dyn Write, msg: &str| -> io::Result<PingSummary> {
        writeln!(err, "{msg}")?;
        Ok(PingSummary {
            transmitted: 0,
            received: 0,
            duplicates: 0,
            status: 2,
        })
    };
    let dst = match resolve(&options.target, options.ipv6) {
        Ok(a) => a,
        Err(msg) => return failed(err, &msg),
    };
    if options.count == 0 {
        return failed(err, "ping: bad number of packets to transmit.");
    }
    let max = if dst.is_ipv6() {
        65535 - 8
    } else {
        65535 - 20 - 8
    };
    if options.size > max {
        return failed(
            err,
            &format!(
                "ping: invalid argument: '{}': out of range: 0 <= value <= {max}",
                options.size
            ),
        );
    }
    // iputils connects its socket first, so an unroutable target fails before the banner.
    match stack.ip().route(dst) {
        Err(RouteError::Unreachable(_)) => return failed(err, "ping: connect: No route to host"),
        Err(_) => return failed(err, "ping: connect: Network is unreachable"),
        Ok(_) => {}
    }
    if dst.is_ipv6() {
        writeln!(
            out,
            "PING {} ({dst}) {} data bytes",
            options.target, options.size
        )?;
    } else {
        writeln!(
            out,
            "PING {} ({dst}) {}({}) bytes of data.",
            options.target,
            options.size,
            options.size + 28
        )?;
    }

    let start = clock.now();
    let mut seen = vec![false; options.count as usize + 1];
    let mut summary = PingSummary {
        transmitted: 0,
        received: 0,
        duplicates: 0,
        status: 1,
    };
    let mut rtts: Vec<Duration> = Vec::new();
    let mut show =
        |reply: EchoReply, out: &mut dyn Write, summary: &mut PingSummary| -> io::Result<()> {
            if reply.id != options.id || usize::from(reply.seq) >= seen.len() {
                return Ok(());
            }
            let dup = std::mem::replace(&mut seen[usize::from(reply.seq)], true);
            if dup {
                summary.duplicates += 1;
            } else {
                summary.received += 1;
            }
            write!(
                out,
                "{} bytes from {}: icmp_seq={} ttl={}",
                reply.len, reply.from, reply.seq, reply.ttl
            )?;
            if let Some(rtt) = reply.rtt.filter(|_| options.size >= 8) {
                write!(out, " time={} ms", fmt_ms(rtt))?;
                if !dup {
                    rtts.push(rtt);
                }
            }
            writeln!(out, "{}", if dup { " (DUP!)" } else { "" })
        };

    // Runs the stack until `until`, waking for anything it has scheduled before then, and
    // prints the replies that come in. After the last request it returns as soon as every
    // reply is in, as iputils does, rather than wait out the timeout.
    let mut wait = |stack: &mut Stack,
                    clock: &mut dyn Clock,
                    until: Instant,
                    last: bool,
                    out: &mut dyn Write,
                    summary: &mut PingSummary|
     -> io::Result<()> {
        loop {
            let now = clock.now();
            stack.poll(now);
            while let Some(r) = stack.take_echo_reply() {
                show(r, out, summary)?;
            }
            if last && summary.received >= summary.transmitted {
                return Ok(());
            }
            match stack.poll_at() {
                Some(t) if t < until => clock.sleep_until(t.max(now)),
                _ => break,
            }
            if clock.now() >= until {
                break;
            }
        }
        clock.sleep_until(until);
        Ok(())
    };

    for seq in 1..=options.count {
        let now = clock.now();
        let sent = stack.send_echo_request(now, dst, options.id, seq as u16, options.size);
        match sent {
            Ok(()) => summary.transmitted += 1,
            Err(Error::NetworkUnreachable) => {
                return failed(err, "ping: connect: Network is unreachable")
            }
            Err(Error::HostUnreachable) => return failed(err, "ping: connect: No route to host"),
            Err(e) => {
                // A drop on the way out (full ring) is a lost request, as in iputils.
                summary.transmitted += 1;
                writeln!(err, "ping: sendmsg: {e}")?;
            }
        }
        let until = if seq < options.count {
            now + options.interval
        } else {
            now + options.timeout
        };
        wait(stack, clock, until, seq == options.count, out, &mut summary)?;
    }

    let elapsed = clock.now() - start;
    write_statistics(
        out,
        &options.target,
        (
            u64::from(summary.transmitted),
            u64::from(summary.received),
            u64::from(summary.duplicates),
        ),
        elapsed,
        &rtts,
    )?;
    summary.status = if summary.received > 0 { 0 } else { 1 };
    Ok(summary)
}

/// The closing lines of a ping run, as iputils prints them: the counts, the loss, the
/// time taken, and the round-trip statistics. `counts` is (transmitted, received,
/// duplicates).
pub fn write_statistics(
    out: &mut dyn Write,
    target: &str,
    (transmitted, received, duplicates): (u64, u64, u64),
    elapsed: Duration,
    rtts: &[Duration],
) -> io::Result<()> {
    writeln!(out, "\n--- {target} ping statistics ---")?;
    let lost = transmitted - received.min(transmitted);
    let loss = (100 * lost).checked_div(transmitted).unwrap_or(0);
    let dups = if duplicates > 0 {
        format!(", +{duplicates} duplicates")
    } else {
        String::new()
    };
    writeln!(
        out,
        "{transmitted} packets transmitted, {received} received{dups}, {loss}% packet loss, time {}ms",
        elapsed.as_millis()
    )?;
    if !rtts.is_empty() {
        // As iputils: whole microseconds, printed as milliseconds with three decimals.
        let us: Vec<u128> = rtts.iter().map(Duration::as_micros).collect();
        let n = us.len() as u128;
        let min = us.iter().copied().min().unwrap_or(0);
        let max = us.iter().copied().max().unwrap_or(0);
        let avg = us.iter().sum::<u128>() / n;
        let mean_sq = us.iter().map(|x| x * x).sum::<u128>() / n;
        let mdev = (mean_sq.saturating_sub(avg * avg) as f64).sqrt() as u128;
        let ms = |v: u128| format!("{}.{:03}", v / 1000, v % 1000);
        writeln!(
            out,
            "rtt min/avg/max/mdev = {}/{}/{}/{} ms",
            ms(min),
            ms(avg),
            ms(max),
            ms(mdev)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopstack_link::{FaultConfig, FaultInjector, Loopback};
    use loopstack_socket::StackConfig;

    fn stack_with(faults: FaultConfig) -> Stack {
        let lo = FaultInjector::new(Loopback::new(), faults, 1).unwrap();
        Stack::with_loopback(StackConfig::default(), Box::new(lo)).unwrap()
    }

    fn ping(options: PingOptions, faults: FaultConfig) -> (PingSummary, String, String) {
        let mut stack = stack_with(faults);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut clock = SimClock::default();
        let s = run(&options, &mut stack, &mut clock, &mut out, &mut err).unwrap();
        (
            s,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn ping_127_0_0_2_prints_like_iputils() {
        let (s, out, err) = ping(
            PingOptions {
                target: "127.0.0.2".into(),
                count: 3,
                ..Default::default()
            },
            FaultConfig::default(),
        );
        assert_eq!(s.status, 0, "{err}");
        assert_eq!((s.transmitted, s.received), (3, 3));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "PING 127.0.0.2 (127.0.0.2) 56(84) bytes of data.");
        assert_eq!(
            lines[1],
            "64 bytes from 127.0.0.2: icmp_seq=1 ttl=64 time=0.000 ms"
        );
        assert_eq!(
            lines[3],
            "64 bytes from 127.0.0.2: icmp_seq=3 ttl=64 time=0.000 ms"
        );
        assert_eq!(lines[5], "--- 127.0.0.2 ping statistics ---");
        assert_eq!(
            lines[6],
            "3 packets transmitted, 3 received, 0% packet loss, time 2000ms"
        );
        assert_eq!(
            lines[7],
            "rtt min/avg/max/mdev = 0.000/0.000/0.000/0.000 ms"
        );
    }

    #[test]
    fn ping_ipv6_loopback() {
        let (s, out, _) = ping(
            PingOptions {
                target: "::1".into(),
                count: 2,
                size: 100,
                ..Default::default()
            },
            FaultConfig::default(),
        );
        assert_eq!(s.status, 0);
        assert!(out.starts_with("PING ::1 (::1) 100 data bytes\n"), "{out}");
        assert!(
            out.contains("108 bytes from ::1: icmp_seq=2 ttl=64"),
            "{out}"
        );
    }

    #[test]
    fn delayed_replies_show_their_round_trip_time() {
        let (s, out, _) = ping(
            PingOptions {
                count: 2,
                ..Default::default()
            },
            FaultConfig {
                delay: 1.0,
                delay_time: Duration::from_micros(1500),
                ..Default::default()
            },
        );
        assert_eq!(s.received, 2);
        // Request and reply are each delayed 1.5 ms on `lo`.
        assert!(out.contains("icmp_seq=1 ttl=64 time=3.00 ms"), "{out}");
    }

    #[test]
    fn total_loss_exits_1() {
        let (s, out, _) = ping(
            PingOptions {
                count: 3,
                ..Default::default()
            },
            FaultConfig {
                drop: 1.0,
                ..Default::default()
            },
        );
        assert_eq!((s.status, s.transmitted, s.received), (1, 3, 0));
        assert!(
            out.contains("3 packets transmitted, 0 received, 100% packet loss"),
            "{out}"
        );
        assert!(!out.contains("rtt min"));
    }

    #[test]
    fn duplicates_are_marked() {
        let (s, out, _) = ping(
            PingOptions {
                count: 2,
                ..Default::default()
            },
            FaultConfig {
                duplicate: 1.0,
                ..Default::default()
            },
        );
        assert_eq!(s.status, 0);
        assert!(out.contains("(DUP!)"), "{out}");
        assert!(out.contains(", +"), "{out}");
    }

    #[test]
    fn errors_exit_2_with_iputils_messages() {
        for (target, ipv6, msg) in [
            ("8.8.8.8", false, "ping: connect: Network is unreachable"),
            (
                "2001:db8::1",
                false,
                "ping: connect: Network is unreachable",
            ),
            (
                "no.such.host",
                false,
                "ping: no.such.host: Name or service not known",
            ),
            (
                "127.0.0.1",
                true,
                "ping: 127.0.0.1: Address family for hostname not supported",
            ),
        ] {
            let (s, _, err) = ping(
                PingOptions {
                    target: target.into(),
                    ipv6,
                    ..Default::default()
                },
                FaultConfig::default(),
            );
            assert_eq!(s.status, 2, "{target}");
            assert_eq!(err.trim(), msg);
        }
    }

    #[test]
    fn small_payloads_have_no_time() {
        let (s, out, _) = ping(
            PingOptions {
                count: 1,
                size: 4,
                ..Default::default()
            },
            FaultConfig::default(),
        );
        assert_eq!(s.status, 0);
        assert!(
            out.contains("12 bytes from 127.0.0.1: icmp_seq=1 ttl=64\n"),
            "{out}"
        );
        assert!(!out.contains("rtt"));
    }

    #[test]
    fn round_trip_times_are_formatted_like_iputils() {
        assert_eq!(fmt_ms(Duration::from_micros(45)), "0.045");
        assert_eq!(fmt_ms(Duration::from_micros(1234)), "1.23");
        assert_eq!(fmt_ms(Duration::from_micros(12345)), "12.3");
        assert_eq!(fmt_ms(Duration::from_micros(123456)), "123");
    }
}
