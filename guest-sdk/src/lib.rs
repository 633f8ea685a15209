//! Guest SDK for Vauban jobs: the small amount of glue a WebAssembly guest needs to talk to
//! the Vauban host when compiled for `wasm32-wasip1` or `wasm32-wasip2`.
//!
//! A Vauban job is a WASI command. The host hands it its input on stdin, takes its result
//! from stdout, reads structured log lines from stderr and interprets the exit code:
//! [`exit_code::SUCCESS`], [`exit_code::FAILURE`] or [`exit_code::BAD_INPUT`].
//!
//! - [`input`] / [`output`] read the job input and write the job result;
//!   with the `json` feature (on by default) [`input_json`] / [`output_json`] do the same
//!   with serde types.
//! - [`run`] (and [`run_json`]) wrap a whole job: read the input, call a closure, write the
//!   result or log the [`Error`] and exit with its code.
//! - [`log()`] and the [`info!`], [`warn!`], [`error!`] and [`debug!`] macros write one JSON
//!   object per line to stderr.
//!
//! The crate is plain `std`: it also builds and runs natively, which is how guests are unit
//! tested.
//!
//! ```no_run
//! use vauban_guest::Error;
//!
//! vauban_guest::run(|input| {
//!     if input.is_empty() {
//!         return Err(Error::bad_input("empty input"));
//!     }
//!     vauban_guest::info!("reversing", bytes = input.len());
//!     Ok(input.into_iter().rev().collect())
//! })
//! ```
#![forbid(unsafe_code)]
// The crate docs link the `json` items, which do not exist when the feature is off.
#![cfg_attr(not(feature = "json"), allow(rustdoc::broken_intra_doc_links))]

mod error;
pub mod exit_code;
mod io;
#[cfg(feature = "json")]
mod json;
mod log;
mod run;

pub use crate::error::Error;
pub use crate::io::{input, output};
#[cfg(feature = "json")]
pub use crate::json::{input_json, output_json};
pub use crate::log::{Level, log};
pub use crate::run::run;
#[cfg(feature = "json")]
pub use crate::run::run_json;
