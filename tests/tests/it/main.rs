//! End-to-end tests of the host runtime on real signed samples built for the wasm targets.
//!
//! One test binary for the crate (link time); one module per area.

mod c_sample;
mod capabilities;
mod hostile;
mod job_world;
mod loading;
mod policy;
mod sdk;
mod third_party;
mod tidy;
mod workloads;
