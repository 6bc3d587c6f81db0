//! # meshlb-config: what meshlb is asked to do, checked, and the addresses it hands out
//!
//! Place in the architecture: pure logic between the configuration sources
//! and the actors. The agent's sources (standalone YAML files and the
//! Kubernetes API, in `meshlb-node-agent`) produce [`Object`]s; this
//! crate validates them into a [`Config`], decides which services get which
//! addresses ([`Allocator`]) and which nodes can serve them (endpoint slices
//! and local [`health`] checks). The actors read the results. Nothing here
//! opens a file or a socket or reads a clock, so every rule is unit- and
//! property-tested.
//!
//! | module | what |
//! |---|---|
//! | [`object`] | Kubernetes-style YAML (apiVersion, kind, metadata, spec) into typed objects |
//! | [`kinds`] | MetalLB's `metallb.io` kinds, meshlb's `meshlb.io` L2Policy and Deckhouse's MetalLoadBalancerClass, as written |
//! | `crd` | (feature `kubernetes`) the CustomResourceDefinitions generated from [`kinds`] |
//! | [`config`] | the validated configuration, cross-object checks, last-good [`ConfigStore`] |
//! | [`service`] | Services, annotations, class filter, endpoint readiness |
//! | [`secret`] | the Secrets BGPPeer `passwordSecret` names, and TCP MD5 keys |
//! | [`health`] | standalone health checks and rise/fall tracking |
//! | [`allocator`] | IP address management |
//! | [`reconcile`] | one reading of a source ([`Inventory`]) applied to the allocator |
//! | [`addresses`], [`meta`], [`duration`] | ranges, label selectors, Go durations |
//!
//! Compatibility: a MetalLB manifest loads unchanged, and so do Deckhouse's
//! MetalLoadBalancerClasses and the Services that use them. Everything
//! MetalLB rejects is rejected here too, each error naming the object, the
//! field, the value and what is allowed.

pub mod addresses;
pub mod allocator;
pub mod config;
#[cfg(feature = "kubernetes")]
pub mod crd;
pub mod duration;
mod error;
pub mod health;
pub mod kinds;
pub mod meta;
pub mod object;
pub mod reconcile;
pub mod secret;
pub mod service;

pub use allocator::{AllocationError, Allocator, Assignment, allocate_all};
pub use config::{Config, ConfigStore, Offer};
pub use error::{Error, Invalid, Rejected, SourceLocation};
pub use object::{Located, Object, Parsed, Skipped, parse_documents};
pub use reconcile::{AddressSource, Inventory, Reconciler, ServiceOutcome};
