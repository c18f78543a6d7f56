//! A small HTTP/1.1 server and client over an in-process loopstack stack.
//!
//! The server listens on 127.0.0.1:8080 and answers `GET /` with `Hello, Loopback!`, any
//! other path with 404, and a malformed request line with 400. The client fetches `/` and
//! prints the exchange the way `curl -v http://127.0.0.1:8080/` does, then checks the two
//! error answers. It exits non-zero unless every answer is the expected one.
//!
//! ```sh
//! cargo run -p loopstack --example http_hello
//! ```
//!
//! HTTP/1.1 is text over TCP (RFC 9112): a request line, header lines, an empty line, and a
//! body. Every line ends in CRLF. With `Connection: close`, the server closes the connection
//! after its answer, so the client reads until end of file.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use loopstack::socket::{Net, TcpListener, TcpStream};

const ADDR: &str = "127.0.0.1:8080";
const HELLO: &str = "Hello, Loopback!";
/// The most a request's head (request line and headers) may take.
const MAX_HEAD: u64 = 8 * 1024;
const BAD_REQUEST: (u16, &str, &str) = (400, "Bad Request", "Bad Request\n");

fn main() -> io::Result<ExitCode> {
    let net = Net::new()?;

    // The server: one thread, one connection at a time, forever (until the process exits).
    let listener = TcpListener::bind(&net, ADDR)?;
    thread::spawn(move || {
        for stream in listener.incoming() {
            if let Err(e) = stream.and_then(serve) {
                eprintln!("server: {e}");
            }
        }
    });

    // The client, as `curl -v`.
    let (status, body) = curl_verbose(&net)?;
    let mut ok = status == 200 && body == HELLO.as_bytes();
    if !ok {
        eprintln!(
            "GET /: expected 200 and {HELLO:?}, got {status} and {:?}",
            String::from_utf8_lossy(&body)
        );
    }

    // Two more requests, printed one line each: a path that does not exist, and a request
    // line that is not HTTP.
    for (request, expected) in [
        ("GET /missing HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", 404),
        ("HELLO\r\n\r\n", 400),
    ] {
        let request_line = request.lines().next().unwrap_or_default();
        let response = fetch(&net, request)?;
        let status_line = response.split(|&b| b == b'\r').next().unwrap_or_default();
        println!("{request_line:?} -> {}", status_line.escape_ascii());
        if status_of(status_line) != Some(expected) {
            eprintln!("{request_line:?}: expected {expected}");
            ok = false;
        }
    }

    if !ok {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------- the server

/// Reads one request's head, and answers it.
fn serve(stream: TcpStream) -> io::Result<()> {
    // Read line by line, but never more than MAX_HEAD bytes: a peer that never sends the
    // empty line cannot make the server buffer without end.
    let mut reader = BufReader::new((&stream).take(MAX_HEAD));
    let mut request_line = Vec::new();
    reader.read_until(b'\n', &mut request_line)?;
    // The headers, up to the empty line: this server needs none, but reads them all before
    // it answers. Closing a connection with received data left unread would reset it
    // (RFC 1122 4.2.2.13), and the client could lose the answer.
    let mut header = Vec::new();
    let complete = loop {
        header.clear();
        match reader.read_until(b'\n', &mut header)? {
            0 => break false, // end of file, or MAX_HEAD reached
            _ if header == b"\r\n" => break true,
            _ => {}
        }
    };

    let (status, reason, body) = if complete {
        route(&request_line)
    } else {
        BAD_REQUEST
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\
         \r\n\
         {body}",
        body.len()
    );
    // One write for head and body. Written apart, a stack that delays its ACKs (Linux does)
    // would hold the small body back behind Nagle's algorithm (RFC 1122 4.2.3.4) until the
    // head is acknowledged.
    (&stream).write_all(response.as_bytes())?;
    Ok(())
} // `stream` is dropped: the connection closes with a FIN after the response.

/// The status line's code and reason, and the body, for a request line
/// (`method SP request-target SP HTTP-version CRLF`, RFC 9112 3).
fn route(request_line: &[u8]) -> (u16, &'static str, &'static str) {
    let Some(line) = request_line.strip_suffix(b"\r\n") else {
        return BAD_REQUEST;
    };
    let line = String::from_utf8_lossy(line);
    let parts: Vec<&str> = line.split(' ').collect();
    match parts[..] {
        [method, target, "HTTP/1.1" | "HTTP/1.0"] if target.starts_with('/') => match method {
            "GET" if target == "/" => (200, "OK", HELLO),
            "GET" => (404, "Not Found", "Not Found\n"),
            _ => (405, "Method Not Allowed", "Method Not Allowed\n"),
        },
        _ => BAD_REQUEST,
    }
}

// ---------------------------------------------------------------------- the client

/// `GET /`, printed as `curl -v` prints it; returns the status code and the body.
fn curl_verbose(net: &Net) -> io::Result<(u16, Vec<u8>)> {
    println!("*   Trying {ADDR}...");
    let stream = TcpStream::connect(net, ADDR)?;
    let peer = stream.peer_addr()?;
    println!(
        "* Connected to {} ({}) port {}",
        peer.ip(),
        peer.ip(),
        peer.port()
    );

    let request = format!(
        "GET / HTTP/1.1\r\n\
         Host: {ADDR}\r\n\
         User-Agent: loopstack-http-hello/{}\r\n\
         Accept: */*\r\n\
         \r\n",
        env!("CARGO_PKG_VERSION")
    );
    show('>', &request);
    let response = exchange(&stream, &request)?;

    // The head ends at the first empty line; the body is everything after it.
    let split = response.windows(4).position(|w| w == b"\r\n\r\n");
    let Some(split) = split else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no end of head"));
    };
    let head = String::from_utf8_lossy(&response[..split + 4]);
    let body = response[split + 4..].to_vec();
    show('<', &head);
    println!("{}", body.escape_ascii());
    println!("* Closing connection");
    let status = status_of(head.lines().next().unwrap_or_default().as_bytes());
    Ok((status.unwrap_or(0), body))
}

/// Sends `request` on a new connection and returns the whole response.
fn fetch(net: &Net, request: &str) -> io::Result<Vec<u8>> {
    exchange(&TcpStream::connect(net, ADDR)?, request)
}

/// Sends `request` and reads until the server closes the connection (`Connection: close`).
fn exchange(mut stream: &TcpStream, request: &str) -> io::Result<Vec<u8>> {
    // A server that never answers fails the example instead of hanging it.
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

/// Prints each line of an HTTP head after `>` (sent) or `<` (received), as `curl -v` does.
fn show(direction: char, head: &str) {
    for line in head.lines() {
        println!("{}", format!("{direction} {line}").trim_end());
    }
}

/// The code in a status line such as `HTTP/1.1 200 OK`.
fn status_of(status_line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(status_line).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}
