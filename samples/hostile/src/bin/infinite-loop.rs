//! `infinite-loop`: prints `spinning` to stdout, then burns CPU forever.
//!
//! The counter goes through `std::hint::black_box` so the loop cannot be optimised away.
//!
//! What a host test expects: the job never finishes on its own; the host's fuel or
//! epoch-deadline limit interrupts it and reports a timeout/trap, with `spinning` already
//! captured on stdout.

use std::hint::black_box;
use std::io::Write;

fn main() {
    println!("spinning");
    let _ = std::io::stdout().flush();
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}
