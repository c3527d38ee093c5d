//! Huren's gRPC contracts.
//!
//! `proto/huren/v1/huren.proto` is the single source of truth; `build.rs`
//! compiles it with protox (no system `protoc`) into the [`pb`] module. The
//! encoded file descriptor set is exported for gRPC reflection.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Generated `huren.v1` types, and (feature `grpc`, on by default) clients and servers.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub,
    elided_lifetimes_in_paths,
    unused_qualifications,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls
)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/huren.v1.rs"));
}

/// Encoded `FileDescriptorSet` of `huren.v1`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/huren_descriptor.bin"));
