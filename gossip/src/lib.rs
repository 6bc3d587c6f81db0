//! # meshlb-gossip: the agents' mesh
//!
//! Place in the architecture: every `meshlb-agent` joins a SWIM mesh (driven by
//! `foca`) over authenticated, encrypted UDP. From the live membership and each
//! node's disseminated state, every node computes the same owner for each
//! service IP, without the Kubernetes API server.
//!
//! Everything here is sans-IO: the agent owns the socket and the clock and
//! feeds bytes and times in.
//!
//! | module | what |
//! |---|---|
//! | [`identity`] | who a member is: name, gossip address, generation |
//! | [`codec`] | foca's messages on the wire |
//! | [`record`] | each node's versioned state record, its fragments, the record book |
//! | [`profile`] | timing profiles and what each knob does |
//! | [`mesh`] | the sans-IO core: foca, ordered timers, anti-entropy, fence, ownership view |
//! | [`secure`] | the datagram envelope: XChaCha20-Poly1305, keyring, replay window |
//! | [`ownership`] | candidates, MetalLB's rank (weights, rendezvous hash), address groups, when a new owner may start, quorum fence |
//! | [`placement`] | where each address group is announced: balanced across services, minimal-move, weights and failback |
//! | [`watch`] | the owner watch: heartbeats from each owner to one watcher, probes through helpers, a death declared in a quarter second |
//! | [`sim`] | a deterministic virtual network to run many meshes on virtual time |
//! | [`driver`] | the mesh on a real UDP socket under tokio |

pub mod codec;
pub mod driver;
pub mod identity;
pub mod mesh;
pub mod ownership;
pub mod placement;
pub mod profile;
pub mod record;
pub mod secure;
pub mod sim;
pub mod watch;

/// Now, on tokio's clock: the one the agent's timers follow (and that a
/// test's paused clock moves), given to the sans-IO cores as their time.
pub fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
