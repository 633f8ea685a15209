//! Bounded capture of a guest's stdout and stderr.
//!
//! wasmtime-wasi's `MemoryOutputPipe` closes when full, and the guest then traps. A flood of
//! output must cost the guest nothing but the dropped bytes, so this writer keeps the first
//! `limit` bytes, counts the rest, and always reports success.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use vauban_core::outcome::CapturedOutput;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much the guest may write in one `check-write` permit. Small enough that one write never
/// allocates much, large enough that floods are cheap to drop.
const WRITE_PERMIT: usize = 64 * 1024;

/// A bounded in-memory stream. Clones share the same buffer.
#[derive(Clone, Debug)]
pub(crate) struct BoundedOutput {
    shared: Arc<Mutex<Captured>>,
}

#[derive(Debug)]
struct Captured {
    /// Invariant: `bytes.len() <= limit`.
    bytes: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl BoundedOutput {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            shared: Arc::new(Mutex::new(Captured {
                bytes: Vec::new(),
                limit,
                dropped: 0,
            })),
        }
    }

    fn append(&self, data: &[u8]) {
        // A poisoned lock only means another writer panicked mid-append; the buffer is still a
        // valid prefix, so keep using it.
        let mut c = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let room = c.limit - c.bytes.len();
        let kept = room.min(data.len());
        c.bytes.extend_from_slice(&data[..kept]);
        c.dropped += (data.len() - kept) as u64;
    }

    /// What was captured so far.
    pub(crate) fn snapshot(&self) -> CapturedOutput {
        let c = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        CapturedOutput {
            bytes: c.bytes.clone(),
            dropped: c.dropped,
        }
    }
}

impl IsTerminal for BoundedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for BoundedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for BoundedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let out = BoundedOutput::new(5);
        out.append(b"abc");
        out.append(b"defgh");
        out.append(b"ij");
        let got = out.snapshot();
        assert_eq!(got.bytes, b"abcde");
        assert_eq!(got.dropped, 5);
        assert!(got.truncated());
    }
}
