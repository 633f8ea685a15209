//! `path-escape`: tries to read every path given as an argument, typically ones outside
//! the preopened directories (`/etc/passwd`, `../../secret`, `/data/../../etc/hostname`,
//! a symlink pointing out of a preopen).
//!
//! For each `PATH` it prints `READ {PATH}: {content, trimmed}` on success or
//! `BLOCKED {PATH}: {error}` on failure, then exits 0.
//!
//! What a host test expects: every path outside the granted directories prints `BLOCKED`
//! and no host file content appears on stdout; a path inside a granted directory prints
//! `READ` (the control case).

fn main() {
    for path in std::env::args().skip(1) {
        match std::fs::read_to_string(&path) {
            Ok(content) => println!("READ {path}: {}", content.trim()),
            Err(err) => println!("BLOCKED {path}: {err}"),
        }
    }
}
