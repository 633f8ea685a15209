//! The scheduler over the network: `serve` on a loopback port, driven by tonic clients and a
//! fake host speaking `HostLink`. One integration-test binary for the crate.

mod grpc;
