//! `ro-write`: tries to create/truncate every path given as an argument and write `pwned`
//! into it, typically inside a directory granted read-only.
//!
//! For each `PATH` it prints `WROTE {PATH}` on success or `BLOCKED {PATH}: {error}` on
//! failure, then exits 0.
//!
//! What a host test expects: every path in a read-only (or ungranted) directory prints
//! `BLOCKED` and the host file is unchanged; a path in a writable directory prints `WROTE`
//! (the control case).

fn main() {
    for path in std::env::args().skip(1) {
        match std::fs::write(&path, "pwned") {
            Ok(()) => println!("WROTE {path}"),
            Err(err) => println!("BLOCKED {path}: {err}"),
        }
    }
}
