//! Vauban's wire protocol: the `vauban.v1` protobuf services and their generated tonic code.
//!
//! `proto/vauban/v1/*.proto` are compiled at build time with protox (no system `protoc`).
//! Protobuf types stop at the gRPC edge: [`convert`] turns them into `vauban-core` domain types
//! with `TryFrom`, destructuring every field so that a field added to a message cannot be
//! ignored silently, and naming the field when a value is invalid.

#![forbid(unsafe_code)]

pub mod convert;

/// Generated messages and services of package `vauban.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("vauban.v1");
}

/// The encoded descriptors of every `vauban.v1` file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/vauban_descriptor.bin"));
