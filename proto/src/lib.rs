//! # meshlb-proto: the introspection API's wire types
//!
//! Place in the architecture: the gRPC service every `meshlb-agent` serves
//! for introspection (`meshlbctl`, `grpcurl`, the lab) is defined here as
//! protobuf (`proto/meshlb/v1/introspection.proto`), and the generated
//! prost messages and tonic stubs live here, so that the agent's server
//! (`node-agent/src/introspection.rs`) and every client share one
//! definition. [`FILE_DESCRIPTOR_SET`] feeds server reflection, so grpcurl
//! needs no copy of the .proto file.

/// Version 1 of the API: package `meshlb.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("meshlb.v1");
}

/// The encoded `FileDescriptorSet` of every message and service here.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("meshlb_descriptor");
