//! `socket-connect`: tries to open a TCP connection to the `ADDR:PORT` given as its only
//! argument and send `hello`.
//!
//! Prints `CONNECTED {ADDR:PORT}` (after writing `hello` to the socket) or
//! `BLOCKED {ADDR:PORT}: {error}`, and exits 0 either way; a missing argument exits 2.
//! On wasm32-wasip1 the standard library has no sockets, so it always prints `BLOCKED`; on
//! wasm32-wasip2 it goes through `wasi:sockets`.
//!
//! What a host test expects: with no network capability granted, `BLOCKED` even when a
//! listener is up on the address, and the listener sees no connection.

use std::io::Write;
use std::net::TcpStream;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("error: usage: socket-connect ADDR:PORT");
        return ExitCode::from(2);
    };
    match TcpStream::connect(&addr).and_then(|mut stream| stream.write_all(b"hello")) {
        Ok(()) => println!("CONNECTED {addr}"),
        Err(err) => println!("BLOCKED {addr}: {err}"),
    }
    ExitCode::SUCCESS
}
