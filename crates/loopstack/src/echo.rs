//! The echo service and its checking client, over TCP and UDP: what `loopstack echo` and the
//! tour run.
//!
//! The server is the classic loopback echo server (read up to 1024 bytes, write them all
//! back). The client sends a pattern that differs at every offset, so a byte lost,
//! duplicated, reordered or damaged on its way is found, and reports where.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loopstack_socket::{Net, TcpListener, TcpStream, UdpSocket};
use thiserror::Error;

/// The byte the client sends at `offset`: a hash of the offset, so that no shift of the
/// stream, by any amount, matches the pattern.
pub fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ offset as u8
}

fn fill(buf: &mut [u8], offset: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern(offset + i as u64);
    }
}

/// What one client run moved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoReport {
    /// Bytes sent and received back intact.
    pub bytes: u64,
    /// From connect to the last byte back.
    pub elapsed: Duration,
    /// Datagrams sent again after a timeout (UDP only).
    pub resent: u64,
}

impl EchoReport {
    /// Bytes per second, each way.
    pub fn throughput(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why the client failed.
#[derive(Debug, Error)]
pub enum EchoError {
    /// A socket call failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A byte came back different from the one sent.
    #[error("byte {offset} came back as {got:#04x}, sent {sent:#04x}")]
    Mismatch {
        /// Offset in the stream.
        offset: u64,
        /// What was sent.
        sent: u8,
        /// What came back.
        got: u8,
    },
    /// The server closed before everything came back.
    #[error("the echo ended after {got} of {sent} bytes")]
    Short {
        /// Bytes that came back.
        got: u64,
        /// Bytes sent.
        sent: u64,
    },
}

// ---------------------------------------------------------------------- TCP

/// Echoes one connection until the peer closes (the Python server's inner loop).
/// Returns the bytes echoed.
pub fn serve_tcp_conn(mut conn: TcpStream) -> io::Result<u64> {
    let mut buf = [0u8; 1024];
    let mut total = 0u64;
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        conn.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Accepts `connections` connections one after another and echoes each.
pub fn serve_tcp(listener: &TcpListener, connections: usize) -> io::Result<u64> {
    let mut total = 0;
    for _ in 0..connections {
        let (conn, _) = listener.accept()?;
        total += serve_tcp_conn(conn)?;
    }
    Ok(total)
}

/// Connects to `addr`, sends `bytes` bytes of the pattern from a second thread while this
/// one reads the echo back and checks every byte, then closes.
pub fn tcp_client(net: &Net, addr: SocketAddr, bytes: u64) -> Result<EchoReport, EchoError> {
    let start = Instant::now();
    let stream = TcpStream::connect(net, addr)?;
    let writer = stream.try_clone()?;
    let sender = std::thread::spawn(move || -> io::Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut at = 0u64;
        while at < bytes {
            let n = chunk.len().min((bytes - at) as usize);
            fill(&mut chunk[..n], at);
            (&writer).write_all(&chunk[..n])?;
            at += n as u64;
        }
        // FIN: the server's read returns 0, it ends the echo, and so does ours.
        writer.shutdown(std::net::Shutdown::Write)
    });
    let checked = read_and_check(&stream, bytes);
    if checked.is_err() {
        // The sender may be blocked on a full window that the server will never open again
        // (it is blocked writing echoes nobody reads now): shutting the stream down makes
        // its write fail, so the join below returns.
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    let sent = sender
        .join()
        .map_err(|_| io::Error::other("the sending thread panicked"))?;
    let got = checked?;
    sent?;
    if got < bytes {
        return Err(EchoError::Short { got, sent: bytes });
    }
    Ok(EchoReport {
        bytes,
        elapsed: start.elapsed(),
        resent: 0,
    })
}

fn read_and_check(mut stream: &TcpStream, bytes: u64) -> Result<u64, EchoError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(at);
        }
        check(&buf[..n], at)?;
        at += n as u64;
        if at > bytes {
            return Err(EchoError::Short {
                got: at,
                sent: bytes,
            });
        }
    }
}

fn check(data: &[u8], offset: u64) -> Result<(), EchoError> {
    for (i, &got) in data.iter().enumerate() {
        let sent = pattern(offset + i as u64);
        if got != sent {
            return Err(EchoError::Mismatch {
                offset: offset + i as u64,
                sent,
                got,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------- UDP

/// Payload bytes per datagram: the 8-byte offset header plus this stays far below `lo`'s
/// MTU, and 1 MiB takes 64 round trips.
pub const UDP_CHUNK: usize = 16 * 1024;

/// Echoes datagrams back to their senders until `stop` is set (checked at least every
/// 20 ms). Returns the datagrams echoed.
pub fn serve_udp(socket: &UdpSocket, stop: &AtomicBool) -> io::Result<u64> {
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut buf = vec![0u8; 65536];
    let mut echoed = 0;
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                socket.send_to(&buf[..n], from)?;
                echoed += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // An ICMP error about an earlier reply is the client's business, not ours.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
    }
    Ok(echoed)
}

/// Sends `bytes` bytes of the pattern to the echo service at `addr` in datagrams of
/// [`UDP_CHUNK`] bytes, each headed by its offset, and checks each echo. UDP promises
/// nothing, so the client does what an application on UDP must: it waits for each echo
/// with a timeout that follows the measured round trip, sends again when it passes, and
/// ignores stale and duplicate echoes.
pub fn udp_client(net: &Net, addr: SocketAddr, bytes: u64) -> Result<EchoReport, EchoError> {
    let start = Instant::now();
    let local = if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let socket = UdpSocket::bind(net, local)?;
    socket.connect(addr)?;
    let mut out = vec![0u8; 8 + UDP_CHUNK];
    let mut back = vec![0u8; 8 + UDP_CHUNK + 1];
    let mut srtt: Option<Duration> = None;
    let mut resent = 0;
    let mut at = 0u64;
    while at < bytes {
        let n = UDP_CHUNK.min((bytes - at) as usize);
        out[..8].copy_from_slice(&at.to_be_bytes());
        fill(&mut out[8..8 + n], at);
        let mut rto = srtt.map_or(Duration::from_millis(200), |s| {
            (s * 4).max(Duration::from_millis(10))
        });
        let mut tries = 0;
        'send: loop {
            let sent_at = Instant::now();
            socket.send(&out[..8 + n])?;
            let deadline = sent_at + rto;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                socket.set_read_timeout(Some(left))?;
                let len = match socket.recv(&mut back) {
                    Ok(len) => len,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                };
                if len < 8 || back[..8] != out[..8] {
                    // A duplicate or a late echo of an earlier datagram.
                    continue;
                }
                if len != 8 + n {
                    return Err(EchoError::Short {
                        got: at + len.saturating_sub(8) as u64,
                        sent: bytes,
                    });
                }
                check(&back[8..len], at)?;
                if tries == 0 {
                    // Karn's rule (RFC 6298 3): no round-trip sample from a resent datagram.
                    let rtt = sent_at.elapsed();
                    srtt = Some(srtt.map_or(rtt, |s| (s * 7 + rtt) / 8));
                }
                break 'send;
            }
            tries += 1;
            resent += 1;
            if tries > 30 {
                return Err(
                    io::Error::new(io::ErrorKind::TimedOut, "no echo after 30 tries").into(),
                );
            }
            rto = (rto * 2).min(Duration::from_secs(2));
        }
        at += n as u64;
    }
    Ok(EchoReport {
        bytes,
        elapsed: start.elapsed(),
        resent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_pattern_has_no_short_period() {
        let a: Vec<u8> = (0..4096).map(pattern).collect();
        for shift in 1..1024 {
            assert!(
                (0..1024).any(|i| a[i] != a[i + shift]),
                "the pattern repeats with period {shift}"
            );
        }
    }

    #[test]
    fn tcp_echo_round_trips_every_byte() {
        let net = Net::new().unwrap();
        let listener = TcpListener::bind(&net, "127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || serve_tcp(&listener, 1));
        let report = tcp_client(&net, addr, 300_001).unwrap();
        assert_eq!(report.bytes, 300_001);
        assert_eq!(server.join().unwrap().unwrap(), 300_001);
    }

    #[test]
    fn a_bad_echo_fails_the_client_without_hanging_it() {
        let net = Net::new().unwrap();
        let listener = TcpListener::bind(&net, "127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // An echo server that damages byte 100 000 and carries on echoing.
        let server = std::thread::spawn(move || -> io::Result<()> {
            let (mut conn, _) = listener.accept()?;
            let mut buf = [0u8; 1024];
            let mut at = 0usize;
            loop {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                if (at..at + n).contains(&100_000) {
                    buf[100_000 - at] ^= 0x80;
                }
                conn.write_all(&buf[..n])?;
                at += n;
            }
        });
        // More than the four 1 MiB buffers between the two ends hold, so the sender blocks.
        match tcp_client(&net, addr, 16 << 20) {
            Err(EchoError::Mismatch { offset, .. }) => assert_eq!(offset, 100_000),
            other => panic!("expected a mismatch, got {other:?}"),
        }
        // The client's stream is gone, so the server's next write or read fails.
        let _ = server.join().unwrap();
    }

    #[test]
    fn a_changed_byte_is_reported_with_its_offset() {
        let mut data: Vec<u8> = (100..200).map(pattern).collect();
        data[17] ^= 1;
        match check(&data, 100) {
            Err(EchoError::Mismatch { offset, .. }) => assert_eq!(offset, 117),
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }

    #[test]
    fn udp_echo_round_trips_every_byte() {
        let net = Net::new().unwrap();
        let socket = UdpSocket::bind(&net, "[::1]:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || serve_udp(&socket, &stop))
        };
        let report = udp_client(&net, addr, 100_000).unwrap();
        stop.store(true, Ordering::Relaxed);
        assert_eq!(report.bytes, 100_000);
        // 100,000 bytes are 7 datagrams; on a busy machine a slow echo may be sent again
        // (nothing is lost on a clean `lo`), and the server may echo that copy too.
        let echoed = server.join().unwrap().unwrap();
        assert!((7..=7 + report.resent).contains(&echoed), "{echoed} echoed");
    }
}
