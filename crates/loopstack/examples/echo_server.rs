//! The classic Python loopback echo server and its client, ported line by line to loopstack.
//!
//! The Python original talks through the kernel's loopback interface; this port talks
//! through an in-process loopstack stack, with sockets shaped like `std::net`'s. Above each
//! Rust line is the Python line it replaces. The server runs on a thread and the client on
//! the main thread, so one process shows both ends:
//!
//! ```sh
//! cargo run -p loopstack --example echo_server
//! ```

use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::thread;

use loopstack::socket::{Net, TcpListener, TcpStream};

// HOST = "127.0.0.1"  # Standard loopback interface address (localhost)
const HOST: &str = "127.0.0.1";
// PORT = 65432  # Port to listen on (non-privileged ports are > 1023)
const PORT: u16 = 65432;

fn main() -> io::Result<ExitCode> {
    // Not in the Python, whose sockets live in the kernel's stack: loopstack's stack is a
    // value. This one has `lo` with 127.0.0.1/8 and ::1, and a thread for its timers.
    let net = Net::new()?;

    // ------------------------------------------------------------------ the server

    // with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    //     s.bind((HOST, PORT))
    //     s.listen()
    let s = TcpListener::bind(&net, (HOST, PORT))?;
    let server = thread::spawn(move || -> io::Result<()> {
        // conn, addr = s.accept()
        let (mut conn, addr) = s.accept()?;
        // with conn:  (`conn` is closed when it is dropped, at the end of this closure)
        //     print(f"Connected by {addr}")
        println!("Connected by {addr}");
        let mut data = [0; 1024];
        // while True:
        loop {
            // data = conn.recv(1024)
            let n = conn.read(&mut data)?;
            // if not data:
            //     break
            if n == 0 {
                break;
            }
            // conn.sendall(data)
            conn.write_all(&data[..n])?;
        }
        Ok(())
    });

    // ------------------------------------------------------------------ the client

    let mut data = [0; 1024];
    let n = {
        // with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        //     s.connect((HOST, PORT))
        let mut s = TcpStream::connect(&net, (HOST, PORT))?;
        //     s.sendall(b"Hello, world")
        s.write_all(b"Hello, world")?;
        //     data = s.recv(1024)
        s.read(&mut data)?
    }; // `s` is dropped here: a FIN, and the server's recv() returns b"" (`n == 0`)
    let data = &data[..n];
    // print(f"Received {data!r}")
    println!("Received b\"{}\"", data.escape_ascii());

    // Not in the Python: wait for the server, and fail unless the echo came back intact.
    // TCP is a byte stream, so one recv() may return part of what was sent; on loopback
    // the 12 bytes travel in one segment, and both versions get them in one call.
    server.join().expect("the server thread panicked")?;
    if data != b"Hello, world" {
        eprintln!("the echo differs from what was sent");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
