//! `loopstack echo` and `loopstack http`: a server and its client on one in-process stack,
//! in blocking mode (a [`Net`] with std::net-shaped sockets), the server on a thread of its
//! own and the client on the main thread.
//!
//! Exit status: 0 when the exchange succeeded; 1 when it ran and failed (a byte came back
//! wrong, a connection broke, the HTTP status was not 200); 2 when the input was bad (an
//! address that is not the stack's, a capture file that cannot be created).

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use loopstack::echo::{self, EchoReport};
use loopstack::http;
use loopstack::socket::{Net, TcpListener, UdpSocket};

use crate::setup::{End, Lo};

/// `loopstack echo`'s options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoOptions {
    /// Where the server listens.
    pub addr: IpAddr,
    /// Its port (0: any free one).
    pub port: u16,
    /// Bytes the client sends and checks.
    pub bytes: u64,
    /// UDP instead of TCP.
    pub udp: bool,
}

/// `loopstack http`'s options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Where the server listens.
    pub addr: IpAddr,
    /// Its port (0: any free one).
    pub port: u16,
    /// What the client asks for.
    pub path: String,
}

/// How a command failed.
#[derive(Debug)]
enum Failure {
    /// Bad input or setup: status 2.
    Usage(String),
    /// The exchange ran and went wrong: status 1.
    Failed(String),
}

impl Failure {
    /// Reports the failure (see [`End::fail`]) and returns the exit status.
    fn exit(self, end: &End) -> ExitCode {
        match self {
            Failure::Usage(msg) => end.fail(2, msg),
            Failure::Failed(msg) => end.fail(1, msg),
        }
    }
}

/// Shares the stack for blocking sockets, which starts its timer thread.
fn start(stack: loopstack::socket::Stack) -> Result<Net, Failure> {
    Net::from_stack(stack).map_err(|e| Failure::Usage(format!("cannot start the stack: {e}")))
}

/// A bind failure: the user's address is not one of the stack's (or the port is taken),
/// which is bad input, so status 2. Nothing has been sent at this point.
fn bind_failed(addr: SocketAddr, e: &io::Error) -> Failure {
    let hint = if e.kind() == io::ErrorKind::AddrNotAvailable {
        " (lo has 127.0.0.0/8 and ::1)"
    } else {
        ""
    };
    Failure::Usage(format!("cannot bind {addr}: {e}{hint}"))
}

/// Where the client connects: the server's address, or, for a server on the unspecified
/// address, the loopback address of the same family (what Linux does for a `connect` to
/// 0.0.0.0).
fn connect_addr(server: SocketAddr) -> SocketAddr {
    match server.ip() {
        IpAddr::V4(a) if a.is_unspecified() => (Ipv4Addr::LOCALHOST, server.port()).into(),
        IpAddr::V6(a) if a.is_unspecified() => (Ipv6Addr::LOCALHOST, server.port()).into(),
        _ => server,
    }
}

// ---------------------------------------------------------------------- echo

/// Runs `loopstack echo`: the summary on stdout, errors on stderr.
pub fn echo(lo: Lo, options: &EchoOptions) -> ExitCode {
    let (stack, end) = End::split(lo);
    let result = start(stack).and_then(|net| {
        let bind = SocketAddr::new(options.addr, options.port);
        if options.udp {
            echo_udp(&net, bind, options.bytes)
        } else {
            echo_tcp(&net, bind, options.bytes)
        }
    });
    let mut stdout = io::stdout().lock();
    match result {
        Ok((report, addr)) => {
            let proto = if options.udp { "UDP" } else { "TCP" };
            let secs = report.elapsed.as_secs_f64();
            let _ = write!(
                stdout,
                "echoed {} bytes over {proto} {addr} in {:.1} ms ({:.1} MB/s)",
                report.bytes,
                secs * 1000.0,
                report.throughput() / 1e6
            );
            if options.udp {
                let s = if report.resent == 1 { "" } else { "s" };
                let _ = write!(stdout, ", {} datagram{s} resent", report.resent);
            }
            let _ = writeln!(stdout);
            if end.report(&mut stdout) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(failure) => {
            drop(stdout);
            failure.exit(&end)
        }
    }
}

/// Binds a TCP listener on `bind` and serves it on a thread of its own: the address a
/// client connects to, and the server's thread.
fn spawn_server<R: Send + 'static>(
    net: &Net,
    bind: SocketAddr,
    name: &str,
    serve: impl FnOnce(&TcpListener) -> R + Send + 'static,
) -> Result<(SocketAddr, thread::JoinHandle<R>), Failure> {
    let listener = TcpListener::bind(net, bind).map_err(|e| bind_failed(bind, &e))?;
    let addr = connect_addr(
        listener
            .local_addr()
            .map_err(|e| Failure::Failed(e.to_string()))?,
    );
    let server = thread::Builder::new()
        .name(name.into())
        .spawn(move || serve(&listener))
        .map_err(|e| Failure::Failed(format!("cannot start the server: {e}")))?;
    Ok((addr, server))
}

fn echo_tcp(net: &Net, bind: SocketAddr, bytes: u64) -> Result<(EchoReport, SocketAddr), Failure> {
    let (addr, server) = spawn_server(net, bind, "echo-server", |l| echo::serve_tcp(l, 1))?;
    let report = echo::tcp_client(net, addr, bytes)
        .map_err(|e| Failure::Failed(format!("TCP echo from {addr} failed: {e}")))?;
    // The client has seen the server's FIN, so the server is done or about to be.
    match server.join() {
        Ok(Ok(n)) if n == bytes => Ok((report, addr)),
        Ok(Ok(n)) => Err(Failure::Failed(format!(
            "the server echoed {n} bytes, the client sent {bytes}"
        ))),
        Ok(Err(e)) => Err(Failure::Failed(format!("the echo server failed: {e}"))),
        Err(_) => Err(Failure::Failed("the echo server panicked".to_owned())),
    }
}

fn echo_udp(net: &Net, bind: SocketAddr, bytes: u64) -> Result<(EchoReport, SocketAddr), Failure> {
    let socket = UdpSocket::bind(net, bind).map_err(|e| bind_failed(bind, &e))?;
    let addr = connect_addr(
        socket
            .local_addr()
            .map_err(|e| Failure::Failed(e.to_string()))?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || echo::serve_udp(&socket, &stop))
            .map_err(|e| Failure::Failed(format!("cannot start the server: {e}")))?
    };
    let report = echo::udp_client(net, addr, bytes);
    // UDP has no end of stream: the server stops when told (within 20 ms).
    stop.store(true, Ordering::Relaxed);
    let served = server.join();
    let report =
        report.map_err(|e| Failure::Failed(format!("UDP echo from {addr} failed: {e}")))?;
    match served {
        Ok(Ok(_)) => Ok((report, addr)),
        Ok(Err(e)) => Err(Failure::Failed(format!("the echo server failed: {e}"))),
        Err(_) => Err(Failure::Failed("the echo server panicked".to_owned())),
    }
}

// ---------------------------------------------------------------------- http

/// Runs `loopstack http`: the exchange, `curl -v` style, on stderr; the body on stdout.
pub fn http(lo: Lo, options: &HttpOptions) -> ExitCode {
    let (stack, end) = End::split(lo);
    let response = match start(stack).and_then(|net| get(&net, options)) {
        Ok(r) => r,
        Err(failure) => return failure.exit(&end),
    };
    // The body goes to stdout alone, as curl sends it, so it can be piped or redirected;
    // everything else is for the person watching, on stderr.
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout
        .write_all(&response.body)
        .and_then(|()| stdout.flush())
    {
        return Failure::Failed(format!("cannot write the body: {e}")).exit(&end);
    }
    if response.status != 200 {
        // `curl --fail` exits 22 and hides the body; here the body is shown (it says why)
        // and the status is 1, as for any failed exchange.
        return Failure::Failed(format!(
            "the server answered {} {}",
            response.status, response.reason
        ))
        .exit(&end);
    }
    if end.report(&mut io::stderr()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn get(net: &Net, options: &HttpOptions) -> Result<http::Response, Failure> {
    let bind = SocketAddr::new(options.addr, options.port);
    let (addr, server) = spawn_server(net, bind, "http-server", |l| http::serve(l, 1))?;
    let response = http::get(net, addr, &options.path, &mut io::stderr())
        .map_err(|e| Failure::Failed(format!("GET http://{addr}{} failed: {e}", options.path)))?;
    // The server waits for our FIN before it returns (at most 2 s, if every FIN is lost);
    // joining it means the capture holds the whole conversation.
    match server.join() {
        Ok(Ok(_)) => Ok(response),
        Ok(Err(e)) => Err(Failure::Failed(format!("the HTTP server failed: {e}"))),
        Err(_) => Err(Failure::Failed("the HTTP server panicked".to_owned())),
    }
}
