//! Compiles `proto/huren/v1/*.proto` with protox (pure Rust, no system protoc).

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/huren/v1/huren.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("huren_descriptor.bin"), fds.encode_to_vec())?;
    // Clients and servers only with the `grpc` feature: the messages alone need just prost.
    tonic_prost_build::configure()
        .client_mod_attribute("huren.v1", "#[cfg(feature = \"grpc\")]")
        .server_mod_attribute("huren.v1", "#[cfg(feature = \"grpc\")]")
        .compile_fds(fds)?;
    Ok(())
}
