//! The "Hello, Loopback!" HTTP/1.1 server and a GET client that narrates the exchange as
//! `curl -v` does: what `loopstack http` and the tour run.
//!
//! Just enough HTTP (RFC 9112) for one request per connection: the server reads the request
//! head, answers, and closes; the client reads until the server closes and checks the body
//! against `Content-Length`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
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
    let mut conn = request(
        net,
        addr,
        &host,
        &format!("{host}:{}", addr.port()),
        path,
        "",
        verbose,
    )?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let response = parse(&raw)?;
    narrate_head(
        verbose,
        response.status,
        &response.reason,
        &response.headers,
    )?;
    writeln!(verbose, "* Closing connection")?;
    Ok(response)
}

/// Connects to `addr` and sends `GET target`, narrating as `curl -v` does: `host` names
/// the server in the narration, `authority` goes in the `Host` header, and `extra` holds
/// further header lines, each ending in CRLF.
fn request(
    net: &Net,
    addr: SocketAddr,
    host: &str,
    authority: &str,
    target: &str,
    extra: &str,
    verbose: &mut dyn Write,
) -> Result<TcpStream, HttpError> {
    writeln!(verbose, "*   Trying {addr}...")?;
    let mut conn = TcpStream::connect(net, addr)?;
    writeln!(
        verbose,
        "* Connected to {host} ({}) port {}",
        addr.ip(),
        addr.port()
    )?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: loopstack/{}\r\nAccept: */*\r\n{extra}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    for line in request.split("\r\n").take_while(|l| !l.is_empty()) {
        writeln!(verbose, "> {line}")?;
    }
    writeln!(verbose, ">")?;
    conn.write_all(request.as_bytes())?;
    Ok(conn)
}

/// The response head as `curl -v` shows it.
fn narrate_head(
    verbose: &mut dyn Write,
    status: u16,
    reason: &str,
    headers: &[(String, String)],
) -> io::Result<()> {
    writeln!(verbose, "< HTTP/1.1 {status} {reason}")?;
    for (name, value) in headers {
        writeln!(verbose, "< {name}: {value}")?;
    }
    writeln!(verbose, "<")
}

/// Parses a whole response (the server closed after it).
fn parse(raw: &[u8]) -> Result<Response, HttpError> {
    let bad = |what: &str| HttpError::Malformed(what.to_owned());
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of head"))?;
    let Head {
        status,
        reason,
        headers,
    } = parse_head(&raw[..end])?;
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

// ---------------------------------------------------------------------- downloads

/// An `http://` URL whose host is an IP literal: what `loopstack tun --get` fetches. The
/// stack has no name service, so a host name is refused rather than looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Where to connect: the literal and the port (80 unless given).
    pub addr: SocketAddr,
    /// The `Host` header: the authority as written (`192.0.2.1:8000`, `[2001:db8::1]`).
    pub authority: String,
    /// The request target: the path and query, `/` if the URL has none. The fragment is
    /// not sent (RFC 9110 4.2.4).
    pub target: String,
}

/// Why a URL was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("bad URL {url:?}: {why}")]
pub struct UrlError {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl std::str::FromStr for HttpUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<HttpUrl, UrlError> {
        let bad = |why| UrlError {
            url: url.to_owned(),
            why,
        };
        let rest = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .map(|_| &url[7..])
            .ok_or_else(|| bad("only http:// URLs are supported"))?;
        let (authority, target) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("user information is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            };
            (host, port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let ip: IpAddr = host
            .parse()
            .map_err(|_| bad("the host must be an IP address (nothing is looked up)"))?;
        if authority.starts_with('[') != ip.is_ipv6() {
            return Err(bad("an IPv6 host goes in brackets, an IPv4 one does not"));
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad("the port must be 1 to 65535"))?,
        };
        let target = target.split('#').next().unwrap_or_default();
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("spaces and control characters must be percent-encoded"));
        }
        let target = if target.starts_with('/') {
            target.to_owned()
        } else {
            format!("/{target}")
        };
        Ok(HttpUrl {
            addr: SocketAddr::new(ip, port),
            authority: authority.to_owned(),
            target,
        })
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.target)
    }
}

/// What a download got: the response head and how many body bytes were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes written out (after undoing chunked transfer coding).
    pub bytes: u64,
}

/// The most a response head may take before the download gives up on it.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Fetches `url` with `GET` and streams the body into `out`, so a large file never sits in
/// memory. Narrates to `verbose` as [`get`] does.
///
/// The body ends where RFC 9112 6.3 says: after `Content-Length` bytes, after the last
/// chunk of a chunked body, or, with neither, when the server closes. A body cut short is
/// an error ([`HttpError::Malformed`]), never a silently short file. `idle` bounds each
/// wait for the server (a read timeout, not a deadline for the whole transfer).
pub fn download(
    net: &Net,
    url: &HttpUrl,
    out: &mut dyn Write,
    idle: Duration,
    verbose: &mut dyn Write,
) -> Result<Download, HttpError> {
    // `Connection: close`: one request, and the server may end a body of unknown length
    // by closing (RFC 9112 9.6).
    let conn = request(
        net,
        url.addr,
        &url.authority,
        &url.authority,
        &url.target,
        "Connection: close\r\n",
        verbose,
    )?;
    conn.set_read_timeout(Some(idle))?;
    let mut reader = BodyReader::new(conn);
    let head = reader.head()?;
    let Head {
        status,
        reason,
        headers,
    } = parse_head(&head)?;
    narrate_head(verbose, status, &reason, &headers)?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| {
        v.rsplit(',')
            .next()
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
    });
    // Responses that never have a body, whatever their headers say (RFC 9112 6.3).
    let bodiless = status < 200 || status == 204 || status == 304;
    let bytes = if bodiless {
        0
    } else if chunked {
        reader.chunked(out)?
    } else if let Some(len) = header("content-length") {
        let len = len
            .parse::<u64>()
            .map_err(|_| HttpError::Malformed("bad Content-Length".to_owned()))?;
        reader.exactly(len, out)?
    } else {
        reader.until_close(out)?
    };
    out.flush()?;
    writeln!(verbose, "* Closing connection")?;
    Ok(Download {
        status,
        reason,
        headers,
        bytes,
    })
}

/// The status line and header fields of a response head (without the blank line).
fn parse_head(head: &[u8]) -> Result<Head, HttpError> {
    let bad = |what: &str| HttpError::Malformed(what.to_owned());
    let head = std::str::from_utf8(head).map_err(|_| bad("head is not text"))?;
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
    Ok(Head {
        status,
        reason,
        headers,
    })
}

/// A response's status line and header fields.
struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

/// A connection read through a buffer, in the pieces an HTTP response comes in.
struct BodyReader {
    conn: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    pos: usize,
}

impl BodyReader {
    fn new(conn: TcpStream) -> Self {
        BodyReader {
            conn,
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
        }
    }

    /// Reads more from the connection; false at its end.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + 64 * 1024, 0);
        let n = self.conn.read(&mut self.buf[start..]);
        self.buf.truncate(start + *n.as_ref().unwrap_or(&0));
        Ok(n? > 0)
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The head, up to and without the blank line.
    fn head(&mut self) -> Result<Vec<u8>, HttpError> {
        loop {
            if let Some(end) = find(self.pending(), b"\r\n\r\n") {
                let head = self.pending()[..end].to_vec();
                self.pos += end + 4;
                return Ok(head);
            }
            if self.pending().len() > MAX_RESPONSE_HEAD {
                return Err(HttpError::Malformed("response head too large".to_owned()));
            }
            if !self.fill()? {
                return Err(HttpError::Malformed(
                    "the server closed before the end of the head".to_owned(),
                ));
            }
        }
    }

    /// One line (a chunk size, a trailer field), without its CRLF.
    fn line(&mut self) -> Result<Vec<u8>, HttpError> {
        loop {
            if let Some(end) = find(self.pending(), b"\r\n") {
                let line = self.pending()[..end].to_vec();
                self.pos += end + 2;
                return Ok(line);
            }
            if self.pending().len() > 8 * 1024 {
                return Err(HttpError::Malformed("chunk line too long".to_owned()));
            }
            if !self.fill()? {
                return Err(HttpError::Malformed(
                    "the server closed in the middle of a chunked body".to_owned(),
                ));
            }
        }
    }

    /// Copies exactly `len` body bytes to `out`.
    fn exactly(&mut self, len: u64, out: &mut dyn Write) -> Result<u64, HttpError> {
        let mut left = len;
        while left > 0 {
            if self.pending().is_empty() && !self.fill()? {
                return Err(HttpError::Malformed(format!(
                    "body is {} bytes, Content-Length says {len}",
                    len - left
                )));
            }
            let take = self
                .pending()
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            out.write_all(&self.pending()[..take])?;
            self.pos += take;
            left -= take as u64;
        }
        Ok(len)
    }

    /// Copies everything until the server closes.
    fn until_close(&mut self, out: &mut dyn Write) -> Result<u64, HttpError> {
        let mut total = 0;
        loop {
            out.write_all(self.pending())?;
            total += self.pending().len() as u64;
            self.pos = self.buf.len();
            if !self.fill()? {
                return Ok(total);
            }
        }
    }

    /// Decodes a chunked body (RFC 9112 7.1): size lines in hex, each chunk followed by
    /// CRLF, a zero-size last chunk, then trailer fields up to a blank line.
    fn chunked(&mut self, out: &mut dyn Write) -> Result<u64, HttpError> {
        let bad = |what: &str| HttpError::Malformed(what.to_owned());
        let mut total = 0u64;
        loop {
            let line = self.line()?;
            let size = std::str::from_utf8(&line)
                .ok()
                .map(|l| l.split(';').next().unwrap_or_default().trim())
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .ok_or_else(|| bad("bad chunk size"))?;
            if size == 0 {
                // Trailer fields, ignored, up to the blank line.
                while !self.line()?.is_empty() {}
                return Ok(total);
            }
            total += self.exactly(size, out)?;
            if !self.line()?.is_empty() {
                return Err(bad("no CRLF after a chunk"));
            }
        }
    }
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

    #[test]
    fn urls_take_ip_literals_only() {
        let u: HttpUrl = "http://192.0.2.1:8000/big.bin".parse().unwrap();
        assert_eq!(u.addr, "192.0.2.1:8000".parse().unwrap());
        assert_eq!(
            (u.authority.as_str(), u.target.as_str()),
            ("192.0.2.1:8000", "/big.bin")
        );
        let u: HttpUrl = "HTTP://[2001:db8::1]/a?b=c#frag".parse().unwrap();
        assert_eq!(u.addr, "[2001:db8::1]:80".parse().unwrap());
        assert_eq!(u.target, "/a?b=c");
        assert_eq!(u.to_string(), "http://[2001:db8::1]/a?b=c");
        let u: HttpUrl = "http://127.0.0.1".parse().unwrap();
        assert_eq!(u.target, "/");
        for bad in [
            "https://192.0.2.1/",
            "http://example.com/",
            "http://192.0.2.1:0/",
            "http://192.0.2.1:99999/",
            "http://[2001:db8::1/",
            "http://2001:db8::1/",
            "http://[192.0.2.1]/",
            "http://u@192.0.2.1/",
            "http://192.0.2.1/a b",
            "ftp://x",
            "",
        ] {
            assert!(bad.parse::<HttpUrl>().is_err(), "{bad}");
        }
    }

    /// Serves one raw response on `lo` and downloads it.
    fn download_raw(response: &'static [u8]) -> (Result<Download, HttpError>, Vec<u8>) {
        let net = Net::new().unwrap();
        let listener = TcpListener::bind(&net, "127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while find(&head, b"\r\n\r\n").is_none() {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0);
                head.extend_from_slice(&buf[..n]);
            }
            conn.write_all(response).unwrap();
            String::from_utf8(head).unwrap()
        });
        let url: HttpUrl = format!("http://{addr}/file").parse().unwrap();
        let mut body = Vec::new();
        let r = download(
            &net,
            &url,
            &mut body,
            Duration::from_secs(5),
            &mut io::sink(),
        );
        let head = server.join().unwrap();
        assert!(head.starts_with("GET /file HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("\r\nHost: {addr}\r\n")), "{head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        (r, body)
    }

    #[test]
    fn downloads_end_by_length_by_chunks_or_by_close() {
        let (r, body) = download_raw(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!((r.unwrap().bytes, body.as_slice()), (5, &b"hello"[..]));
        let (r, body) = download_raw(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nT: v\r\n\r\n",
        );
        assert_eq!((r.unwrap().bytes, body.as_slice()), (6, &b"hello!"[..]));
        let (r, body) = download_raw(b"HTTP/1.0 404 Not Found\r\n\r\nnope");
        let r = r.unwrap();
        assert_eq!((r.status, r.bytes, body.as_slice()), (404, 4, &b"nope"[..]));
    }

    #[test]
    fn a_download_cut_short_is_an_error() {
        let (r, body) = download_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
        assert!(matches!(r, Err(HttpError::Malformed(m)) if m.contains("5 bytes")));
        assert_eq!(body, b"hello");
        let (r, _) = download_raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
        assert!(matches!(r, Err(HttpError::Malformed(_))));
        let (r, _) = download_raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert!(matches!(r, Err(HttpError::Malformed(m)) if m.contains("chunk size")));
        let (r, _) = download_raw(b"HTTP/1.1 200 OK\r\nContent-Le");
        assert!(matches!(r, Err(HttpError::Malformed(_))));
    }
}
