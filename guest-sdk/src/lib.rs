//! Guest SDK for Vauban jobs: write a job as one Rust function, build it for `wasm32-wasip1` or
//! `wasm32-wasip2`, and it behaves the same through Vauban either way.
//!
//! # A job is a function
//!
//! ```no_run
//! # // The JSON form needs the `json` feature, on by default.
//! # #[cfg(feature = "json")] mod job {
//! use serde::{Deserialize, Serialize};
//! use vauban_guest::Error;
//!
//! #[derive(Deserialize)]
//! struct Input {
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Output {
//!     greeting: String,
//! }
//!
//! fn greet(input: Input) -> Result<Output, Error> {
//!     if input.name.is_empty() {
//!         return Err(Error::bad_input("name is empty"));
//!     }
//!     vauban_guest::info!("greeting", name = input.name);
//!     Ok(Output {
//!         greeting: format!("hello, {}!", input.name),
//!     })
//! }
//!
//! vauban_guest::job!(greet); // JSON in, JSON out
//! # }
//! ```
//!
//! The crate is a binary (`src/main.rs`) that depends on `vauban-guest` and `serde` (with its
//! `derive` feature). [`job!`] writes its `main`, and on `wasm32-wasip2` the component export
//! too; `job!(bytes: f)` takes a `fn(Vec<u8>) -> Result<Vec<u8>, Error>` instead. Given
//! `{"name":"Ada"}` on its input, the job above outputs `{"greeting":"hello, Ada!"}` and a
//! newline, and logs one line.
//!
//! # Targets
//!
//! | target | what the build is | how Vauban runs it |
//! |---|---|---|
//! | `wasm32-wasip1` | a command module: `main` | input on stdin, output on stdout, error logged and exit code |
//! | `wasm32-wasip2` | a component of the `vauban:job` world (`wit/job.wit`), and a `wasi:cli/run` command | calls the export `run(input)`: the returned bytes are the output; an error's code is the exit code and the host logs its message |
//! | the host (`cargo test`) | a native program | not at all: this is where a guest's unit tests call its function |
//!
//! The same function gives the same stdout, the same stderr and the same exit code on both wasm
//! targets for the same input. A `wasm32-wasip2` build also still runs as a plain command (its
//! `main`, through `wasi:cli/run`), but then WASI only lets it exit with 0 or 1; the code is
//! still in the `exit_code` field of its `error` line. Its component imports `vauban:job/log`
//! and `vauban:job/config` besides WASI, so a host must provide them to instantiate it.
//!
//! # JSON
//!
//! With `job!(f)` (feature `json`, on by default) the input is one JSON document, parsed with
//! serde into `f`'s argument, and the output is `f`'s result as compact JSON
//! (`serde_json::to_vec`) followed by exactly one `\n`, on every target: [`call_json`] is that
//! conversion, shared by the command and the component, and a unit test can call it to see the
//! exact output. Input that does not parse is an [`Error::bad_input`] whose message starts with
//! `invalid input: `. [`input_json`] and [`output_json`] do the two halves by hand.
//!
//! # Errors and exit codes
//!
//! An [`Error`] carries an exit code and a message. [`Error::bad_input`] is
//! [`exit_code::BAD_INPUT`] (2: retrying is pointless), [`Error::failed`] is
//! [`exit_code::FAILURE`] (1), [`Error::new`] any other non-zero code. When the job fails, its
//! stderr ends with one line `{"level":"error","msg":"<message>","fields":{"exit_code":"<code>"}}`
//! and the job exits with the code. Success is exit code 0 ([`exit_code::SUCCESS`]).
//!
//! # Logging
//!
//! [`trace!`], [`debug!`], [`info!`], [`warn!`] and [`error!`] (and the function [`log()`]) add
//! one JSON line to the job's stderr: `{"level":"info","msg":"fused","fields":{"tracks":"3"}}`,
//! field values rendered with `Display`. In a command the SDK writes the line; inside the
//! `vauban:job` world it calls the world's `log` import and the host writes the same line.
//!
//! # Configuration
//!
//! [`config()`] and [`config_all`] read the values the job was granted (`--config KEY=VALUE`):
//! through the world's `config` import in a component, from the environment variables
//! `VAUBAN_CONFIG_<KEY>` ([`CONFIG_ENV_PREFIX`]) that the host sets for a command.
//!
//! # Lower level
//!
//! [`run`] and [`run_json`] are the `main` of a job without the component export; [`input`] and
//! [`output`] read the whole input and write the result. They only make commands.
//!
//! # Unsafe code
//!
//! The crate forbids it on every target. On `wasm32-wasip2` the bindings that `wit-bindgen`
//! generates (and the export [`job!`] expands in the guest's crate) contain the component ABI's
//! unsafe glue; rustc's `unsafe_code` lint does not look into another crate's macros, so a guest
//! may forbid unsafe code too.
#![forbid(unsafe_code)]
// The crate docs link the `json` items, which do not exist when the feature is off.
#![cfg_attr(not(feature = "json"), allow(rustdoc::broken_intra_doc_links))]

mod config;
mod error;
pub mod exit_code;
mod io;
mod job;
#[cfg(feature = "json")]
mod json;
mod log;
mod run;
#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod world;

pub use crate::config::{CONFIG_ENV_PREFIX, config, config_all};
pub use crate::error::Error;
pub use crate::io::{input, output};
#[cfg(feature = "json")]
pub use crate::json::{call_json, input_json, output_json};
pub use crate::log::{Level, log};
pub use crate::run::run;
#[cfg(feature = "json")]
pub use crate::run::run_json;
#[cfg(all(target_os = "wasi", target_env = "p2"))]
pub use crate::world::bindings;
#[cfg(all(target_os = "wasi", target_env = "p2"))]
#[doc(hidden)]
pub use crate::world::run_export as __run_export;
