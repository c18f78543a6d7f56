//! The "Hello, Loopback!" HTTP/1.1 server and a GET client that narrates the exchange as
//! `curl -v` does: what `loopstack http` and the tour run.
//!
//! Just enough HTTP (RFC 9112) for one request per connection: the server reads the request
//! head, answers, and closes; the client reads until the server closes and checks the body
//! against `Content-Length`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use loopstack_socket::{Net, TcpListener, TcpStream};
use thiserror::Error;

/// The body `GET /` returns.
pub const HELLO: &str = "Hello, Loopback!";

/// The longest request head the server reads (a longer one gets 431).
const MAX_HEAD: usize = 8 * 1024;

/// A response, as the client read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a GET failed.
#[derive(Debug, Error)]
pub enum HttpError {
    /// A socket call failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server's answer is not HTTP/1.1 as we read it.
    #[error("malformed response: {0}")]
    Malformed(String),
}

// ---------------------------------------------------------------------- the server

/// Answers `requests` connections, one after another. Returns the status codes sent.
pub fn serve(listener: &TcpListener, requests: usize) -> io::Result<Vec<u16>> {
    (0..requests)
        .map(|_| listener.accept().and_then(|(conn, _)| handle(conn)))
        .collect()
}

/// Reads one request from `conn`, answers it, and closes. Returns the status sent.
pub fn handle(mut conn: TcpStream) -> io::Result<u16> {
    // A client that never finishes its request must not hold the server for ever.
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let complete = loop {
        if let Some(end) = find(&head, b"\r\n\r\n") {
            head.truncate(end);
            break true;
        }
        if head.len() > MAX_HEAD {
            break false;
        }
        match conn.read(&mut buf)? {
            0 => break false,
            n => head.extend_from_slice(&buf[..n]),
        }
    };
    let (status, reason, body): (u16, &str, &str) = if !complete {
        if head.len() > MAX_HEAD {
            (
                431,
                "Request Header Fields Too Large",
                "request head too large\n",
            )
        } else {
            (400, "Bad Request", "incomplete request\n")
        }
    } else {
        route(&head)
    };
    let head_only = head.starts_with(b"HEAD ");
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(body);
    }
    conn.write_all(response.as_bytes())?;
    // Close our side first, then wait for the client's FIN: closing with unread bytes
    // would reset the connection and could destroy the response in flight (RFC 1122
    // 4.2.2.13).
    conn.shutdown(Shutdown::Write)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
    Ok(status)
}

/// The status, reason and body for a request head.
fn route(head: &[u8]) -> (u16, &'static str, &'static str) {
    let Ok(head) = std::str::from_utf8(head) else {
        return (400, "Bad Request", "request is not text\n");
    };
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (400, "Bad Request", "malformed request line\n");
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return (400, "Bad Request", "malformed request line\n");
    }
    match (method, target) {
        ("GET" | "HEAD", "/") => (200, "OK", HELLO),
        ("GET" | "HEAD", _) => (404, "Not Found", "not found\n"),
        _ => (405, "Method Not Allowed", "only GET and HEAD\n"),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------- the client

/// Fetches `path` from `addr` with `GET`, narrating to `verbose` as `curl -v` does (`*`
/// for what the client does, `>` for what it sends, `<` for what it receives).
pub fn get(
    net: &Net,
    addr: SocketAddr,
    path: &str,
    verbose: &mut dyn Write,
) -> Result<Response, HttpError> {
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    writeln!(verbose, "*   Trying {addr}...")?;
    let mut conn = TcpStream::connect(net, addr)?;
    writeln!(
        verbose,
        "* Connected to {host} ({}) port {}",
        addr.ip(),
        addr.port()
    )?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: loopstack/{}\r\nAccept: */*\r\n\r\n",
        addr.port(),
        env!("CARGO_PKG_VERSION")
    );
    for line in request.split("\r\n").take_while(|l| !l.is_empty()) {
        writeln!(verbose, "> {line}")?;
    }
    writeln!(verbose, ">")?;
    conn.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let response = parse(&raw)?;
    writeln!(
        verbose,
        "< HTTP/1.1 {} {}",
        response.status, response.reason
    )?;
    for (name, value) in &response.headers {
        writeln!(verbose, "< {name}: {value}")?;
    }
    writeln!(verbose, "<")?;
    writeln!(verbose, "* Closing connection")?;
    Ok(response)
}

/// Parses a whole response (the server closed after it).
fn parse(raw: &[u8]) -> Result<Response, HttpError> {
    let bad = |what: &str| HttpError::Malformed(what.to_owned());
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("head is not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(bad("no status line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not HTTP/1.x"));
    }
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..1000).contains(c))
        .ok_or_else(|| bad("bad status code"))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| bad("bad header line"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let body = raw[end + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().map_err(|_| bad("bad Content-Length")))
        .transpose()?;
    if let Some(len) = length {
        if body.len() != len {
            return Err(HttpError::Malformed(format!(
                "body is {} bytes, Content-Length says {len}",
                body.len()
            )));
        }
    }
    Ok(Response {
        status,
        reason,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(addr: &str, path: &str) -> (Response, String) {
        let net = Net::new().unwrap();
        let listener = TcpListener::bind(&net, addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || serve(&listener, 1));
        let mut verbose = Vec::new();
        let response = get(&net, addr, path, &mut verbose).unwrap();
        server.join().unwrap().unwrap();
        (response, String::from_utf8(verbose).unwrap())
    }

    #[test]
    fn get_root_says_hello_over_ipv4_and_ipv6() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let (response, verbose) = exchange(addr, "/");
            assert_eq!(response.status, 200);
            assert_eq!(response.body, HELLO.as_bytes());
            assert!(verbose.contains("> GET / HTTP/1.1\n"), "{verbose}");
            assert!(verbose.contains("< HTTP/1.1 200 OK\n"), "{verbose}");
            assert!(verbose.contains("< Content-Length: 16\n"), "{verbose}");
        }
    }

    #[test]
    fn other_paths_are_not_found() {
        let (response, _) = exchange("127.0.0.1:0", "/missing");
        assert_eq!(response.status, 404);
    }

    #[test]
    fn requests_are_routed_by_method_and_target() {
        assert_eq!(route(b"GET / HTTP/1.1").0, 200);
        assert_eq!(route(b"HEAD / HTTP/1.0").0, 200);
        assert_eq!(route(b"POST / HTTP/1.1").0, 405);
        assert_eq!(route(b"GET /x HTTP/1.1").0, 404);
        assert_eq!(route(b"GET / SPDY/3").0, 400);
        assert_eq!(route(b"GET  / HTTP/1.1").0, 400);
        assert_eq!(route(b"nonsense").0, 400);
        assert_eq!(route(&[0xff, 0xfe]).0, 400);
    }

    #[test]
    fn a_response_shorter_than_its_length_is_malformed() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc";
        assert!(matches!(parse(raw), Err(HttpError::Malformed(_))));
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(parse(raw).unwrap().body, b"abc");
        assert!(parse(b"garbage").is_err());
    }
}
