//! Bounded capture of a guest's stdout and stderr, optionally forwarded live.
//!
//! wasmtime-wasi's `MemoryOutputPipe` closes when full, and the guest then traps. A flood of
//! output must cost the guest nothing but the dropped bytes, so this writer keeps the first
//! `limit` bytes, counts the rest, and always reports success.
//!
//! A run may also name an [`OutputSink`]: every byte kept is sent there as it is written, and
//! nothing else. Forwarding only what is kept bounds what one run can queue in the sink by its
//! output limit, however fast the guest writes and however slowly the sink is drained.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use vauban_core::outcome::CapturedOutput;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream as WasiOutputStream, Pollable, StreamResult};

/// Which of a guest's output streams bytes were written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Bytes a guest wrote, as it wrote them (only bytes within the run's output limit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputEvent {
    /// The stream written to.
    pub stream: OutputStream,
    /// The bytes, in order after the previous event of the same stream.
    pub data: Bytes,
}

/// Where a run's output goes live. Unbounded so that a guest never waits on the reader; what
/// one run can send is bounded by its output limit (twice: stdout and stderr).
pub type OutputSink = tokio::sync::mpsc::UnboundedSender<OutputEvent>;

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
    /// Where kept bytes are also sent; `None` when not asked for or once the reader is gone.
    sink: Option<(OutputStream, OutputSink)>,
}

impl BoundedOutput {
    /// A capture keeping at most `limit` bytes, sending each kept byte to `sink` when given.
    pub(crate) fn new(limit: usize, sink: Option<(OutputStream, OutputSink)>) -> Self {
        Self {
            shared: Arc::new(Mutex::new(Captured {
                bytes: Vec::new(),
                limit,
                dropped: 0,
                sink,
            })),
        }
    }

    /// Keeps what fits of `data`, counts the rest, and sends what was kept to the sink.
    pub(crate) fn append(&self, data: &[u8]) {
        // A poisoned lock only means another writer panicked mid-append; the buffer is still a
        // valid prefix, so keep using it.
        let mut c = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let room = c.limit - c.bytes.len();
        let kept = room.min(data.len());
        c.bytes.extend_from_slice(&data[..kept]);
        c.dropped += (data.len() - kept) as u64;
        // Sent under the lock, so events leave in the order the bytes were kept.
        if kept > 0
            && let Some((stream, sink)) = &c.sink
        {
            let event = OutputEvent {
                stream: *stream,
                data: Bytes::copy_from_slice(&data[..kept]),
            };
            if sink.send(event).is_err() {
                // Nobody reads any more; the capture itself goes on.
                c.sink = None;
            }
        }
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
    fn p2_stream(&self) -> Box<dyn WasiOutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl WasiOutputStream for BoundedOutput {
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
        let out = BoundedOutput::new(5, None);
        out.append(b"abc");
        out.append(b"defgh");
        out.append(b"ij");
        let got = out.snapshot();
        assert_eq!(got.bytes, b"abcde");
        assert_eq!(got.dropped, 5);
        assert!(got.truncated());
    }

    #[test]
    fn forwards_exactly_the_kept_bytes_in_order() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let out = BoundedOutput::new(5, Some((OutputStream::Stderr, tx)));
        out.append(b"abc");
        out.append(b"");
        out.append(b"defgh");
        out.append(b"ij");
        let mut sent = Vec::new();
        while let Ok(event) = rx.try_recv() {
            assert_eq!(event.stream, OutputStream::Stderr);
            sent.push(event.data);
        }
        // Nothing is sent for an empty write or for bytes past the limit.
        assert_eq!(sent, [&b"abc"[..], &b"de"[..]]);
        assert_eq!(out.snapshot().bytes, b"abcde");
    }

    #[test]
    fn a_gone_reader_does_not_disturb_the_capture() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        drop(rx);
        let out = BoundedOutput::new(4, Some((OutputStream::Stdout, tx)));
        out.append(b"abcdef");
        let got = out.snapshot();
        assert_eq!((got.bytes.as_slice(), got.dropped), (&b"abcd"[..], 2));
    }
}
