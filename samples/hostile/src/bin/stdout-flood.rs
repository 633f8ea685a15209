//! `stdout-flood`: writes 64 MiB of `A` to stdout in 64 KiB writes, then prints
//! `flood done` to stderr.
//!
//! Failed writes are counted, never panicked on: the guest exits 0 if every write
//! succeeded and 3 if any failed (after also printing `write failures: {N}` to stderr;
//! on wasm32-wasip2 the host sees 3 as 1).
//!
//! What a host test expects: the host caps captured stdout, so it keeps at most its limit
//! of `A`s and marks the output as truncated; the host must not buffer 64 MiB. Depending
//! on how the host enforces the cap, the guest sees its writes succeed (exit 0) or fail
//! (exit 3), or is stopped (trap); it must never take the host down.

use std::io::Write;
use std::process::ExitCode;

/// Bytes per write.
const CHUNK: usize = 64 * 1024;
/// Total bytes to write.
const TOTAL: usize = 64 * 1024 * 1024;

fn main() -> ExitCode {
    let chunk = vec![b'A'; CHUNK];
    let mut stdout = std::io::stdout().lock();
    let mut failures = 0u32;
    for _ in 0..TOTAL / CHUNK {
        if stdout.write_all(&chunk).is_err() {
            failures += 1;
        }
    }
    if stdout.flush().is_err() {
        failures += 1;
    }

    let mut stderr = std::io::stderr();
    let _ = writeln!(stderr, "flood done");
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(stderr, "write failures: {failures}");
        ExitCode::from(3)
    }
}
