//! End-to-end tests of the host runtime on real signed samples built for the wasm targets.
//!
//! One test binary for the crate (link time); one module per area.

mod capabilities;
mod hostile;
mod loading;
mod tidy;
mod workloads;
