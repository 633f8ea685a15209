//! The `vauban` binary end to end: one test binary, one module per area.

mod audit;
mod cluster;
mod guide;
mod local;
mod scheduling;
mod support;
mod third_party;
mod trust;
