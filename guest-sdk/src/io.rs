//! Raw job I/O: the input arrives on stdin, the result leaves on stdout.

use std::io::{self, Read, Write};

/// Reads the whole job input from stdin.
///
/// # Errors
///
/// Returns the I/O error if stdin cannot be read.
///
/// ```no_run
/// let input = vauban_guest::input()?;
/// println!("{} bytes", input.len());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn input() -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io::stdin().lock().read_to_end(&mut buf)?;
    Ok(buf)
}

/// Writes `bytes` as the job result to stdout and flushes it.
///
/// # Errors
///
/// Returns the I/O error if stdout cannot be written or flushed (for instance when the host
/// caps the output size).
///
/// ```no_run
/// vauban_guest::output(b"done\n")?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn output(bytes: &[u8]) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}
