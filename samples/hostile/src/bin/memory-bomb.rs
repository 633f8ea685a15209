//! `memory-bomb`: prints `allocating` to stdout, then allocates 16 MiB chunks forever,
//! filling each with non-zero bytes (so every page is touched) and keeping them all alive.
//! After each chunk it prints `allocated {N} MiB` to stderr.
//!
//! What a host test expects: the host's memory limit stops it. Growing linear memory past
//! the limit either traps or makes the allocator fail, and Rust then aborts with
//! `memory allocation of 16777216 bytes failed` (also a trap); either way the job ends as a
//! failure well before the host itself runs short of memory. Even without a limit, wasm32
//! cannot address more than 4 GiB.

use std::hint::black_box;
use std::io::Write;

/// Size of each allocation.
const CHUNK: usize = 16 * 1024 * 1024;

fn main() {
    println!("allocating");
    let _ = std::io::stdout().flush();
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xA5; CHUNK]);
        // Keep the allocations observable so the optimiser cannot drop them.
        black_box(&hoard);
        let _ = writeln!(
            std::io::stderr(),
            "allocated {} MiB",
            hoard.len() * (CHUNK >> 20)
        );
    }
}
