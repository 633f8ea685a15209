//! Exit codes a Vauban guest reports to the host.
//!
//! The host reads the guest's exit status to classify a finished job: `SUCCESS` means the
//! output on stdout is the result, `BAD_INPUT` means the job rejected its input (retrying it
//! is pointless) and `FAILURE` covers every other error.
//!
//! A component built with [`job!`](crate::job) returns its error's code through the
//! `vauban:job` world's `run`, and Vauban exits with that code, as for a `wasm32-wasip1`
//! command. A `wasm32-wasip2` program run as a plain command exits through
//! `wasi:cli/exit.exit`, which only carries success or failure: every non-zero code reaches
//! the host as 1. So that the code is never lost, [`run`](crate::run) also records it in the
//! `exit_code` field of the `error` line it logs before exiting.

/// The job succeeded; stdout holds its result.
pub const SUCCESS: u8 = 0;

/// The job failed for a reason other than its input.
pub const FAILURE: u8 = 1;

/// The job rejected its input as malformed or invalid.
pub const BAD_INPUT: u8 = 2;
