//! Vauban's host runtime: runs signed WebAssembly jobs in capability-scoped sandboxes.
//!
//! One [`Runtime`] per host process owns one wasmtime engine (pooling allocator, epoch
//! interruption, optional fuel), a cache of compiled artifacts keyed by module digest and engine
//! fingerprint, and the operator's allowed directory roots. [`Runtime::load`] verifies a module's
//! publisher signature before anything compiles it; [`Runtime::run`] builds a fresh sandbox from
//! the run's [`vauban_core::Capabilities`] alone and returns a [`vauban_core::RunReport`].
//!
//! Later this crate also owns the host agent that connects to the scheduler.

// Not `forbid`: loading a cached compiled artifact is `unsafe` in wasmtime. That one function,
// `cache::deserialize`, allows it and says why it is sound; everything else is denied.
#![deny(unsafe_code)]

mod cache;
mod engine;
mod limiter;
mod output;
mod roots;
mod runtime;
mod sandbox;

pub use runtime::{
    LoadError, LoadedModule, RunRequest, Runtime, RuntimeConfig, RuntimeStats, StartError,
};
