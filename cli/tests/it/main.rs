//! The `vauban` binary end to end: one test binary, one module per area.

mod admission;
mod audit;
mod bad_inputs;
mod cluster;
mod guide;
mod local;
mod revocation;
mod scheduling;
mod support;
mod third_party;
mod tls;
mod trust;
