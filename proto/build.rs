//! Compiles `vauban/v1/*.proto` with protox (pure Rust: no system `protoc` needed) and generates
//! the tonic clients and servers, plus the encoded descriptor set served by gRPC reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "common",
        "jobs",
        "modules",
        "namespaces",
        "nodes",
        "host",
        "trust",
    ]
    .map(|name| format!("vauban/v1/{name}.proto"));
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(&files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("vauban_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
