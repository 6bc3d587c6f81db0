//! Who a mesh member is: node name, gossip address and a generation.
//!
//! foca keys members by [`Identity::addr`]: here the gossip socket address,
//! so a seed known only by its address is addressed with a placeholder
//! ([`NodeId::seed`]) that the real identity replaces on first contact.
//! `boot` is the process's start time (ms since the Unix epoch), so a
//! restarted agent wins over its old self; `rejoin` is bumped by
//! [`Identity::renew`] when the cluster declared this node down, so it
//! rejoins at once instead of waiting for the down entry to be forgotten.
//! Records are keyed by `boot` alone: a rejoin keeps the node's record.

use std::net::SocketAddr;

use foca::Identity;

/// Longest node name carried on the wire (Kubernetes node names are DNS
/// subdomains: at most 253 characters).
pub const MAX_NAME_LEN: usize = 253;

/// A mesh member's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Node name (the Kubernetes node name, or the standalone `--node-name`).
    pub name: String,
    /// Where its gossip socket listens.
    pub addr: SocketAddr,
    /// Process start time in ms; higher wins.
    pub boot: u64,
    /// Rejoins since the start; higher wins within one boot.
    pub rejoin: u32,
}

impl NodeId {
    /// An identity for a running agent.
    pub fn new(name: impl Into<String>, addr: SocketAddr, boot: u64) -> NodeId {
        NodeId {
            name: name.into(),
            addr,
            boot,
            rejoin: 0,
        }
    }

    /// A placeholder for a seed known only by address: empty name,
    /// boot 0, so the real member at that address always replaces it.
    pub fn seed(addr: SocketAddr) -> NodeId {
        NodeId {
            name: String::new(),
            addr,
            boot: 0,
            rejoin: 0,
        }
    }

    /// Whether this is a seed placeholder rather than a member that spoke.
    pub fn is_seed(&self) -> bool {
        self.name.is_empty() && self.boot == 0
    }
}

impl Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<NodeId> {
        Some(NodeId {
            rejoin: self.rejoin.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &NodeId) -> bool {
        (self.boot, self.rejoin, &self.name) > (adversary.boot, adversary.rejoin, &adversary.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewed_and_restarted_identities_win() {
        let addr: SocketAddr = "192.0.2.1:7947".parse().unwrap();
        let old = NodeId::new("n1", addr, 100);
        let renewed = old.renew().unwrap();
        assert!(renewed.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&renewed));
        assert!(
            old.win_addr_conflict(&NodeId::seed(addr)),
            "a real member replaces its seed placeholder"
        );
        assert!(NodeId::seed(addr).is_seed() && !old.is_seed());
    }
}
