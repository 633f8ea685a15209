//! Vauban's wire protocol: the `vauban.v1` protobuf services and their generated tonic code.
//!
//! Empty for now. It will own `proto/vauban/v1/*.proto` (jobs, modules, nodes, and the
//! host-facing `Connect` stream), compiled at build time without a system `protoc`. Protobuf
//! types stop here and at the gRPC edge; everything else works on `vauban-core` domain types.

#![forbid(unsafe_code)]
