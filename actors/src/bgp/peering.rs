//! Each planned peer's session, as the BGP plan ([`crate::bgp::plan`])
//! yields it: the peer actor's whole configuration ([`PeerConfig`]) from a
//! BGPPeer and what this node knows of itself ([`NodeFacts`]), with its
//! BFD session from the BGPPeer's bfdProfile, or why it cannot run
//! ([`NotRunning`]). Pure: the glue gathers the facts (the node's
//! address, a graceful restart, the neighbours Router Discovery found,
//! IP forwarding) and plans again when they change.
//!
//! MetalLB's rules: a BGPPeer without `routerID` takes the node's IPv4
//! address; `localASN` is presented instead of `myASN`; the session is
//! iBGP when the peer's AS is ours (or `peerASN: internal`), and an eBGP
//! session is single-hop unless `ebgpMultiHop`; a password Secret not
//! there yet keeps the session down, never running unsigned; VRFs are not
//! supported. An unnumbered peer (`interface`) is reached at the
//! link-local address Router Discovery found, carrying both families with
//! extended next hops (RFC 8950).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use meshlb_config::config::{BfdProfile, BgpPeer, PeerAsn, PeerEndpoint};
use meshlb_wire::bgp::{GracefulRestart, GracefulRestartFamily};

use crate::bfd::session::BfdConfig;
use crate::bgp::peer::{Hops, PeerConfig, families_for};
use crate::bgp::session::{PeerAs, SessionConfig};

/// The connect retry time when a BGPPeer sets no `connectTime`.
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(10);

/// How long a peer helping with a graceful restart holds this node's
/// routes (the capability's Restart Time; FRR's default, which MetalLB's
/// FRR mode uses).
pub const RESTART_TIME: Duration = Duration::from_secs(120);

/// What this node knows of itself that its sessions are configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// This node's IPv4 address if it has one: the BGP identifier of the
    /// peers that set none.
    pub router_id: Option<Ipv4Addr>,
    /// Whether this start is a graceful restart (a predecessor stopped
    /// within [`RESTART_TIME`], its peers holding the routes): the OPENs
    /// say so (R bit) and that forwarding was preserved (F bit).
    pub restarted: bool,
    /// The peer Router Discovery found on each interface unnumbered peers
    /// name.
    pub neighbors: BTreeMap<String, SocketAddrV6>,
    /// Whether this node forwards IP packets, by family.
    pub forwarding: Forwarding,
}

/// Whether this node forwards IPv4 and IPv6 packets: what loops a peer's
/// BFD Echo packets back to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// IPv4 forwarding.
    pub ipv4: bool,
    /// IPv6 forwarding.
    pub ipv6: bool,
}

impl Forwarding {
    /// Whether this node forwards, as its sysctls say now.
    pub fn read() -> Forwarding {
        let on = |sysctl: &str| std::fs::read_to_string(sysctl).is_ok_and(|v| v.trim() == "1");
        Forwarding {
            ipv4: on("/proc/sys/net/ipv4/ip_forward"),
            ipv6: on("/proc/sys/net/ipv6/conf/all/forwarding"),
        }
    }

    /// Whether packets of `address`'s family are forwarded.
    pub fn of(self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(_) => self.ipv4,
            IpAddr::V6(_) => self.ipv6,
        }
    }
}

/// Why a planned peer's session cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRunning {
    /// Unnumbered, and Router Discovery has not found the peer yet.
    #[error("no router advertisement heard on {0} yet")]
    NoNeighbor(String),
    /// The BGPPeer names a VRF.
    #[error("VRFs are not supported")]
    Vrf,
    /// No `routerID`, and none to derive.
    #[error("no routerID, and this node has no IPv4 address to take it from")]
    NoRouterId,
    /// The password Secret does not exist (yet).
    #[error("its password Secret does not exist yet")]
    NoPassword,
}

/// A planned peer's session: what its actor runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPlan {
    /// The peer actor's configuration.
    pub config: PeerConfig,
    /// Its BFD session, when the BGPPeer has a bfdProfile.
    pub bfd: Option<BfdPlan>,
}

/// A peer's BFD session (from its BGPPeer's bfdProfile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdPlan {
    /// Timers and role.
    pub config: BfdConfig,
    /// Multihop (`ebgpMultiHop`), with the profile's minimum TTL; `None`:
    /// single hop.
    pub multihop_min_ttl: Option<u8>,
}

/// The session `peer` runs with, given `profiles` (by name) and `facts`,
/// or why it cannot run.
pub fn session(
    peer: &BgpPeer,
    profiles: &BTreeMap<String, BfdProfile>,
    facts: &NodeFacts,
) -> Result<SessionPlan, NotRunning> {
    let config = peer_config(peer, facts)?;
    let bfd = peer
        .bfd_profile
        .as_ref()
        .and_then(|name| profiles.get(name))
        .map(|profile| BfdPlan {
            config: bfd_config(profile, facts.forwarding.of(config.address.ip())),
            multihop_min_ttl: peer.ebgp_multi_hop.then_some(profile.minimum_ttl),
        });
    Ok(SessionPlan { config, bfd })
}

/// The peer actor's configuration for `peer`.
fn peer_config(peer: &BgpPeer, facts: &NodeFacts) -> Result<PeerConfig, NotRunning> {
    let (address, unnumbered) = match &peer.endpoint {
        PeerEndpoint::Address(address) => (SocketAddr::new(*address, peer.port), false),
        PeerEndpoint::Interface(interface) => {
            let found = facts
                .neighbors
                .get(interface)
                .ok_or_else(|| NotRunning::NoNeighbor(interface.clone()))?;
            (
                SocketAddr::V6(SocketAddrV6::new(*found.ip(), peer.port, 0, found.scope_id())),
                true,
            )
        }
    };
    if peer.vrf.is_some() {
        return Err(NotRunning::Vrf);
    }
    let router_id = peer.router_id.or(facts.router_id).ok_or(NotRunning::NoRouterId)?;
    let md5 = match &peer.password {
        None => None,
        Some(password) => Some(password.key().cloned().ok_or(NotRunning::NoPassword)?),
    };
    // Unnumbered: both families over the one session.
    let families = families_for(address.ip(), peer.dual_stack_address_family || unnumbered);
    Ok(PeerConfig {
        name: peer.name.clone(),
        address,
        source: peer.source_address,
        md5,
        hops: match (peer.is_internal(), peer.ebgp_multi_hop) {
            (true, _) => Hops::Default,
            (false, true) => Hops::Multihop,
            (false, false) => Hops::Direct,
        },
        session: SessionConfig {
            local_as: peer.local_asn.unwrap_or(peer.my_asn),
            peer_as: match peer.peer_asn {
                PeerAsn::Fixed(asn) => PeerAs::Exact(asn),
                PeerAsn::Internal => PeerAs::Internal,
                PeerAsn::External => PeerAs::External,
            },
            router_id,
            hold_time: u16::try_from(peer.hold_time.as_secs()).unwrap_or(u16::MAX),
            keepalive_time: u16::try_from(peer.keepalive_time.as_secs()).ok(),
            connect_retry: peer.connect_time.unwrap_or(DEFAULT_CONNECT_RETRY),
            passive: false,
            families: families.clone(),
            route_refresh: true,
            extended_next_hop: unnumbered,
            graceful_restart: peer.graceful_restart.then(|| GracefulRestart {
                restart_state: facts.restarted,
                notification: false,
                restart_time: u16::try_from(RESTART_TIME.as_secs()).unwrap_or(u16::MAX),
                families: families
                    .iter()
                    .map(|&family| GracefulRestartFamily {
                        family,
                        forwarding_preserved: facts.restarted,
                    })
                    .collect(),
            }),
        },
    })
}

/// A BFD session's timers and role from `profile`; `forwarding`: whether
/// this node forwards the peer's family, so its Echo packets come back.
fn bfd_config(profile: &BfdProfile, forwarding: bool) -> BfdConfig {
    let echo_interval = Duration::from_millis(profile.echo_interval_ms.into());
    BfdConfig {
        desired_min_tx: Duration::from_millis(profile.transmit_interval_ms.into()),
        required_min_rx: Duration::from_millis(profile.receive_interval_ms.into()),
        detect_multiplier: profile.detect_multiplier,
        passive: profile.passive_mode,
        echo_interval: profile.echo_mode.then_some(echo_interval),
        // The peer's Echo packets come back only through this node's
        // forwarding.
        echo_receive: if profile.echo_mode && forwarding {
            echo_interval
        } else {
            Duration::ZERO
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eligibility::fixture::state;
    use meshlb_wire::bgp::Family;

    const PEERS: &str = "
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: ebgp, namespace: metallb-system}
spec: {myASN: 64600, peerASN: 64512, peerAddress: 198.51.100.1, holdTime: 9s, keepaliveTime: 3s}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: ibgp, namespace: metallb-system}
spec:
  myASN: 64600
  peerASN: 64601
  localASN: 64601
  peerAddress: '2001:db8::1'
  routerID: 192.0.2.7
  connectTime: 2s
  enableGracefulRestart: true
  bfdProfile: fast
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: far, namespace: metallb-system}
spec: {myASN: 64600, peerASN: 64512, peerAddress: 192.0.2.9, ebgpMultiHop: true, bfdProfile: multihop}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: near, namespace: metallb-system}
spec: {myASN: 64600, peerASN: 64512, peerAddress: 198.51.100.6, bfdProfile: fast}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: unnumbered, namespace: metallb-system}
spec: {myASN: 64600, dynamicASN: external, interface: eth1}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: vrf, namespace: metallb-system}
spec: {myASN: 64600, peerASN: 64512, peerAddress: 198.51.100.3, vrf: red}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: signed, namespace: metallb-system}
spec: {myASN: 64600, peerASN: 64512, peerAddress: 198.51.100.4, password: secret}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: waiting, namespace: metallb-system}
spec: {myASN: 64600, peerASN: 64512, peerAddress: 198.51.100.5, passwordSecret: {name: not-there}}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: fast, namespace: metallb-system}
spec: {receiveInterval: 50, transmitInterval: 60, detectMultiplier: 4, echoMode: true, echoInterval: 70}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: multihop, namespace: metallb-system}
spec: {passiveMode: true, minimumTtl: 250}
";

    fn facts() -> NodeFacts {
        NodeFacts {
            router_id: Some(Ipv4Addr::new(198, 51, 100, 10)),
            ..NodeFacts::default()
        }
    }

    fn session_of(name: &str, facts: &NodeFacts) -> Result<SessionPlan, NotRunning> {
        let state = state(PEERS);
        let config = &state.inventory.config;
        session(&config.bgp_peers[name], &config.bfd_profiles, facts)
    }

    #[test]
    fn an_ebgp_peer_takes_the_nodes_address_as_router_id_and_one_hop() {
        let planned = session_of("ebgp", &facts()).unwrap();
        let config = &planned.config;
        assert_eq!(config.address, "198.51.100.1:179".parse().unwrap());
        assert_eq!(config.hops, Hops::Direct);
        assert_eq!(config.md5, None);
        assert_eq!(config.session.router_id, Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(config.session.local_as, 64600);
        assert_eq!(config.session.peer_as, PeerAs::Exact(64512));
        assert_eq!(config.session.hold_time, 9);
        assert_eq!(config.session.keepalive_time, Some(3));
        assert_eq!(config.session.connect_retry, DEFAULT_CONNECT_RETRY);
        assert_eq!(config.session.families, [Family::IPV4_UNICAST]);
        assert!(!config.session.extended_next_hop);
        assert_eq!(config.session.graceful_restart, None);
        assert_eq!(planned.bfd, None);

        let no_address = NodeFacts::default();
        assert_eq!(session_of("ebgp", &no_address), Err(NotRunning::NoRouterId));
        assert_eq!(session_of("vrf", &facts()), Err(NotRunning::Vrf));
        let signed = session_of("signed", &facts()).unwrap().config;
        assert!(signed.md5.is_some(), "an inline password signs the session");
        assert_eq!(
            session_of("waiting", &facts()),
            Err(NotRunning::NoPassword),
            "never unsigned while the Secret is missing"
        );
    }

    /// localASN equal to the peer's AS makes it iBGP; the router ID set
    /// wins; a graceful restart says so in the capability.
    #[test]
    fn an_ibgp_peer_with_graceful_restart_and_bfd() {
        let planned = session_of("ibgp", &facts()).unwrap();
        let config = &planned.config;
        assert_eq!(config.hops, Hops::Default);
        assert_eq!(config.session.local_as, 64601);
        assert_eq!(config.session.router_id, Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(config.session.connect_retry, Duration::from_secs(2));
        assert_eq!(config.session.families, [Family::IPV6_UNICAST]);
        let gr = config.session.graceful_restart.as_ref().unwrap();
        assert_eq!(gr.restart_time, 120);
        assert!(!gr.restart_state);
        assert!(gr.families.iter().all(|f| !f.forwarding_preserved));
        let restarted = NodeFacts {
            restarted: true,
            ..facts()
        };
        let gr = session_of("ibgp", &restarted)
            .unwrap()
            .config
            .session
            .graceful_restart
            .unwrap();
        assert!(gr.restart_state);
        assert!(gr.families.iter().all(|f| f.forwarding_preserved));

        let bfd = planned.bfd.unwrap();
        assert_eq!(bfd.multihop_min_ttl, None);
        assert_eq!(bfd.config.required_min_rx, Duration::from_millis(50));
        assert_eq!(bfd.config.desired_min_tx, Duration::from_millis(60));
        assert_eq!(bfd.config.detect_multiplier, 4);
        assert_eq!(bfd.config.echo_interval, Some(Duration::from_millis(70)));
        assert_eq!(
            bfd.config.echo_receive,
            Duration::ZERO,
            "echoes come back only through forwarding"
        );
        let forwarding_v4 = NodeFacts {
            forwarding: Forwarding {
                ipv4: true,
                ipv6: false,
            },
            ..facts()
        };
        let bfd = session_of("ibgp", &forwarding_v4).unwrap().bfd.unwrap();
        assert_eq!(bfd.config.echo_receive, Duration::ZERO, "an IPv6 peer: IPv6 forwarding");
        let near = session_of("near", &forwarding_v4).unwrap().bfd.unwrap();
        assert_eq!(near.config.echo_receive, Duration::from_millis(70));
        assert_eq!(near.multihop_min_ttl, None);
        let far = session_of("far", &forwarding_v4).unwrap();
        assert_eq!(far.config.hops, Hops::Multihop);
        let bfd = far.bfd.unwrap();
        assert_eq!(bfd.multihop_min_ttl, Some(250));
        assert!(bfd.config.passive);
        assert_eq!(bfd.config.echo_interval, None);
    }

    /// An unnumbered peer waits for Router Discovery, then runs at the
    /// link-local address found, both families with extended next hops.
    #[test]
    fn an_unnumbered_peer_runs_where_router_discovery_found_it() {
        assert_eq!(
            session_of("unnumbered", &facts()),
            Err(NotRunning::NoNeighbor("eth1".into()))
        );
        let found = NodeFacts {
            neighbors: [("eth1".to_owned(), "[fe80::1%7]:0".parse().unwrap())].into(),
            ..facts()
        };
        let config = session_of("unnumbered", &found).unwrap().config;
        assert_eq!(config.address, "[fe80::1%7]:179".parse().unwrap());
        assert_eq!(config.session.peer_as, PeerAs::External);
        assert_eq!(config.session.families, [Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        assert!(config.session.extended_next_hop);
    }
}
