//! # meshlb-proto: the introspection API's wire types
//!
//! Place in the architecture: the gRPC service that `meshlb-agent` serves for
//! introspection (`grpcurl`, dashboards, the lab) is defined here as protobuf,
//! and the generated `prost`/`tonic` code lives here so that the agent, the lab
//! and any client share one definition.
//!
//! Status: empty. The protobuf definitions arrive with the agent's gRPC server;
//! until then this crate only reserves its place in the workspace.
