//! Vauban's host runtime: runs signed WebAssembly jobs in capability-scoped sandboxes.
//!
//! One [`Runtime`] per host process owns one wasmtime engine (pooling allocator, epoch
//! interruption, optional fuel), a cache of compiled artifacts keyed by module digest and engine
//! fingerprint, and the operator's allowed directory roots. [`Runtime::load`] verifies a module's
//! publisher signature before anything compiles it; [`Runtime::run`] builds a fresh sandbox from
//! the run's [`vauban_core::Capabilities`] alone and returns a [`vauban_core::RunReport`]. A
//! component exporting the `vauban:job` world's `run` (`wit/job.wit`) is called through it
//! ([`Entry::Job`]); everything else runs as a WASI command ([`Entry::Command`]).
//!
//! The host agent, [`run_agent`], is the part of a host that faces the scheduler: it dials out,
//! registers, runs what it is assigned on a [`Runtime`] and reports back, streaming output as
//! [`OutputEvent`]s become available. Modules it fetches are kept in a local store by digest.

// Not `forbid`: loading a cached compiled artifact is `unsafe` in wasmtime. That one function,
// `cache::deserialize`, allows it and says why it is sound; everything else is denied.
#![deny(unsafe_code)]

mod agent;
mod cache;
mod engine;
mod files;
mod job;
mod limiter;
mod modules;
mod output;
mod roots;
mod runtime;
mod sandbox;
mod trust;

pub use agent::{AgentConfig, ClientTls, run_agent};
pub use output::{OutputEvent, OutputSink, OutputStream};
pub use runtime::{
    Entry, LoadError, LoadedModule, RunRequest, Runtime, RuntimeConfig, RuntimeStats, StartError,
};
pub use trust::{PolicyHolder, keep_policy, policy_at_start};
