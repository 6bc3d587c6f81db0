//! meshlb's BGP peer actor against real routers: bird2, FRR and gobgpd on
//! the lab's router, the actor on node1 (inside its namespace, on an actix
//! system of its own). The session establishes; the router's RIB holds the
//! routes with node1's address as next hop, node1's AS as the path and the
//! communities given; a new route set withdraws what left it; a stop takes
//! the session down and the routes with it. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use actix::{Actor, Addr, System};
use meshlb_actors::bgp::listener::{BGP_PORT, ListenPeer, ListenSockets, ListenerActor, SetListenPeers};
use meshlb_actors::bgp::peer::{Hops, PeerActor, PeerConfig, SetRoutes, StopPeer, families_for};
use meshlb_actors::bgp::rib_out::{RouteAttributes, RoutePrefix, Routes};
use meshlb_actors::bgp::session::{PeerAs, SessionConfig};
use meshlb_chaos::netns::in_netns;
use meshlb_chaos::probe::Prober;
use meshlb_chaos::router::{BfdTimers, NODE_ASN, ROUTER_ASN, Router, RouterKind, RouterOptions};
use meshlb_chaos::{Lab, LabSpec, ROUTER_LINK};
use meshlb_wire::bgp::{Community, LargeCommunity, Prefix4};

/// A peer actor started on `netns`'s own thread, with a listener on port
/// 179 handing it the peer's connections; the system to stop.
fn start_peer(netns: &str, config: PeerConfig) -> (Addr<PeerActor>, System, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let netns = netns.to_owned();
    let thread = std::thread::spawn(move || {
        in_netns(&netns, move || {
            let system = System::new();
            let addr = system.block_on(async {
                let addr = PeerActor::new(config.clone()).start();
                let peer = ListenPeer {
                    actor: addr.clone().recipient(),
                    md5: config.md5.clone(),
                };
                let listener = ListenerActor::new(ListenSockets::bind(BGP_PORT).unwrap()).start();
                listener.do_send(SetListenPeers([(config.address.ip(), peer)].into()));
                addr
            });
            tx.send((addr, System::current())).unwrap();
            system.run().unwrap();
        })
        .unwrap();
    });
    let (addr, system) = rx.recv().unwrap();
    (addr, system, thread)
}

/// A directly connected eBGP peer at `address` (the lab's router), from
/// the node whose BGP identifier is `router_id`.
fn direct_ebgp(name: String, address: SocketAddr, router_id: std::net::Ipv4Addr) -> PeerConfig {
    PeerConfig {
        name,
        address,
        source: None,
        md5: None,
        hops: Hops::Direct,
        session: SessionConfig {
            local_as: NODE_ASN,
            peer_as: PeerAs::Exact(ROUTER_ASN),
            router_id,
            hold_time: 9,
            keepalive_time: None,
            connect_retry: Duration::from_secs(2),
            passive: false,
            families: families_for(address.ip(), false),
            route_refresh: true,
            extended_next_hop: false,
            graceful_restart: None,
        },
    }
}

fn routes(prefixes: &[&str], attributes: &RouteAttributes) -> Routes {
    let attributes = std::sync::Arc::new(attributes.clone());
    prefixes
        .iter()
        .map(|p| {
            let (addr, len) = p.split_once('/').unwrap();
            let prefix = Prefix4::new(addr.parse().unwrap(), len.parse().unwrap()).unwrap();
            (RoutePrefix::V4(prefix), std::sync::Arc::clone(&attributes))
        })
        .collect()
}

fn service_prefixes(rib: &[meshlb_chaos::router::RibPath]) -> Vec<String> {
    let mut prefixes: Vec<String> = rib
        .iter()
        .filter(|p| p.prefix.starts_with("203.0.113."))
        .map(|p| p.prefix.clone())
        .collect();
    prefixes.sort();
    prefixes
}

/// Each router and the actor connect to each other (the collision
/// resolved on both sides keeps one session); then, with the router's port
/// out of the actor's reach (it connects to 1179, where nothing listens),
/// the router's own connection to the node's listener carries the
/// session.
#[test]
fn the_peer_actor_announces_to_bird2_frr_and_gobgpd() {
    let cases = [RouterKind::Bird, RouterKind::Frr, RouterKind::Gobgp]
        .into_iter()
        .flat_map(|kind| [(kind, BGP_PORT), (kind, 1179)]);
    for (kind, peer_port) in cases {
        let lab = Lab::build(&LabSpec {
            router: true,
            ..LabSpec::segment(1, 0, false)
        })
        .unwrap();
        let router = Router::start(&lab, kind).unwrap();
        let node = lab.host("node1").unwrap().clone();
        let router_address = IpAddr::V4(lab.host("router").unwrap().ipv4);
        let config = direct_ebgp(format!("{kind}"), SocketAddr::new(router_address, peer_port), node.ipv4);
        let (peer, system, thread) = start_peer(&node.netns, config);
        let attributes = RouteAttributes {
            local_pref: None,
            communities: [Community((64513 << 16) | 100)].into(),
            large_communities: [LargeCommunity {
                global_admin: 64513,
                local_data_1: 1,
                local_data_2: 2,
            }]
            .into(),
        };
        peer.do_send(SetRoutes(routes(&["203.0.113.10/32", "203.0.113.11/32"], &attributes)));
        router.wait_established(&lab, 1, Duration::from_secs(30)).unwrap();
        let rib = router
            .wait_rib(&lab, Duration::from_secs(30), |rib| service_prefixes(rib).len() == 2)
            .unwrap();
        assert_eq!(service_prefixes(&rib), ["203.0.113.10/32", "203.0.113.11/32"], "{kind}");
        for path in rib.iter().filter(|p| p.prefix.starts_with("203.0.113.")) {
            assert_eq!(path.next_hop, IpAddr::V4(node.ipv4), "{kind}: {path:?}");
            assert_eq!(path.as_path, [NODE_ASN], "{kind}: {path:?}");
            assert!(
                path.communities.contains(&Community((64513 << 16) | 100)),
                "{kind}: {path:?}"
            );
            assert_eq!(
                path.large_communities,
                attributes.large_communities.iter().copied().collect::<Vec<_>>(),
                "{kind}: {path:?}"
            );
        }

        // A new set: .10 withdrawn, .12 added, .11 untouched.
        peer.do_send(SetRoutes(routes(&["203.0.113.11/32", "203.0.113.12/32"], &attributes)));
        router
            .wait_rib(&lab, Duration::from_secs(30), |rib| {
                service_prefixes(rib) == ["203.0.113.11/32", "203.0.113.12/32"]
            })
            .unwrap();

        // A stop: Cease, the session down, the routes gone.
        peer.do_send(StopPeer { for_restart: false });
        router
            .wait_rib(&lab, Duration::from_secs(30), |rib| service_prefixes(rib).is_empty())
            .unwrap();
        assert!(router.established_peers(&lab).unwrap().is_empty(), "{kind}");
        system.stop();
        thread.join().unwrap();
    }
}

/// iBGP: bird2, FRR and gobgpd in the node's own AS get the routes with
/// an empty AS_PATH and the LOCAL_PREF set, next hop unchanged.
#[test]
fn the_peer_actor_speaks_ibgp_to_bird2_frr_and_gobgpd() {
    for kind in [RouterKind::Bird, RouterKind::Frr, RouterKind::Gobgp] {
        let lab = Lab::build(&LabSpec {
            router: true,
            ..LabSpec::segment(1, 0, false)
        })
        .unwrap();
        let node = lab.host("node1").unwrap().clone();
        let router = Router::start_with_peers(&lab, kind, vec![(IpAddr::V4(node.ipv4), ROUTER_ASN)]).unwrap();
        let router_address = IpAddr::V4(lab.host("router").unwrap().ipv4);
        let mut config = direct_ebgp(format!("{kind}"), SocketAddr::new(router_address, BGP_PORT), node.ipv4);
        config.session.local_as = ROUTER_ASN;
        config.session.peer_as = PeerAs::Internal;
        config.hops = Hops::Default;
        let (peer, system, thread) = start_peer(&node.netns, config);
        let attributes = RouteAttributes {
            local_pref: Some(300),
            ..RouteAttributes::default()
        };
        peer.do_send(SetRoutes(routes(&["203.0.113.10/32"], &attributes)));
        let rib = router
            .wait_rib(&lab, Duration::from_secs(30), |rib| service_prefixes(rib).len() == 1)
            .unwrap();
        let path = rib.iter().find(|p| p.prefix == "203.0.113.10/32").unwrap();
        assert_eq!(path.next_hop, IpAddr::V4(node.ipv4), "{kind}: {path:?}");
        assert!(path.as_path.is_empty(), "{kind}: {path:?}");
        assert_eq!(path.local_pref, Some(300), "{kind}: {path:?}");
        system.stop();
        thread.join().unwrap();
    }
}

/// eBGP multihop: FRR and gobgpd on the remote host, two hops from node1
/// (through the router, which forwards), with `ebgp-multihop`; the actor
/// with `Hops::Multihop` (TTL 255) establishes through the router and the
/// remote RIB holds the routes with node1's address as next hop.
#[test]
fn the_peer_actor_reaches_a_multihop_peer_through_the_router() {
    for kind in [RouterKind::Frr, RouterKind::Gobgp] {
        let lab = Lab::build(&LabSpec {
            router: true,
            remote_client: true,
            ..LabSpec::segment(1, 0, false)
        })
        .unwrap();
        let node = lab.host("node1").unwrap().clone();
        let router_side = lab.host("router").unwrap().ipv4;
        let remote = lab.host("remote").unwrap().ipv4;
        // The remote host's way back to the nodes' segment, via the router.
        let via = std::net::Ipv4Addr::from(u32::from(remote) - 1);
        lab.exec(
            "remote",
            "ip",
            &["route", "add", "198.51.100.0/24", "via", &via.to_string()],
        )
        .unwrap();
        assert_ne!(via, router_side);
        let options = RouterOptions {
            multihop: true,
            ..RouterOptions::default()
        };
        let peer_router =
            Router::start_on(&lab, "remote", kind, vec![(IpAddr::V4(node.ipv4), NODE_ASN)], options).unwrap();
        let mut config = direct_ebgp(
            format!("{kind}"),
            SocketAddr::new(IpAddr::V4(remote), BGP_PORT),
            node.ipv4,
        );
        config.hops = Hops::Multihop;
        let (peer, system, thread) = start_peer(&node.netns, config);
        peer.do_send(SetRoutes(routes(&["203.0.113.10/32"], &RouteAttributes::default())));
        peer_router.wait_established(&lab, 1, Duration::from_secs(30)).unwrap();
        let rib = peer_router
            .wait_rib(&lab, Duration::from_secs(30), |rib| service_prefixes(rib).len() == 1)
            .unwrap();
        let path = rib.iter().find(|p| p.prefix == "203.0.113.10/32").unwrap();
        assert_eq!(path.next_hop, IpAddr::V4(node.ipv4), "{kind}: {path:?}");
        assert_eq!(path.as_path, [NODE_ASN], "{kind}: {path:?}");
        system.stop();
        thread.join().unwrap();
    }
}

/// FRR's bfdd at 300 ms x 3, as the BFD tests run it.
const FRR_BFD: BfdTimers = BfdTimers {
    interval_ms: 300,
    multiplier: 3,
};

/// BFDProfile `fast` at 300 ms x 3, with `extra` spec fields (`, echoMode:
/// true`), as a document before the agents' configuration.
fn fast_bfd_profile(extra: &str) -> String {
    bfd_profile(300, extra)
}

/// BFDProfile `fast` at `interval_ms` x 3, with `extra` spec fields.
fn bfd_profile(interval_ms: u32, extra: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {{name: fast, namespace: metallb-system}}\n\
         spec: {{receiveInterval: {interval_ms}, transmitInterval: {interval_ms}, detectMultiplier: 3{extra}}}\n---\n"
    )
}

/// A lab of one node and the router (with the remote host behind it, the
/// router then forwarding, for `remote_client`), FRR on the router peering
/// with node1 and running bfdd at [`FRR_BFD`].
fn frr_with_bfd_lab(remote_client: bool) -> (Lab, meshlb_chaos::Host, Router) {
    let lab = Lab::build(&LabSpec {
        router: true,
        remote_client,
        ..LabSpec::segment(1, 0, false)
    })
    .unwrap();
    let node = lab.host("node1").unwrap().clone();
    let options = RouterOptions {
        bfd: Some(FRR_BFD),
        ..RouterOptions::default()
    };
    let router =
        Router::start_with_options(&lab, RouterKind::Frr, vec![(IpAddr::V4(node.ipv4), NODE_ASN)], options).unwrap();
    (lab, node, router)
}

/// `meshlbctl args` against `node`'s agent; its output.
fn node_ctl(lab: &Lab, node: &str, args: &[&str]) -> String {
    let binary = meshlb_chaos::agent::ctl_binary().unwrap();
    lab.exec(node, &binary.to_string_lossy(), args).unwrap()
}

/// `node`'s agent's metrics, as Prometheus would scrape them.
fn node_metrics(lab: &Lab, node: &str) -> String {
    use std::io::{Read, Write};
    let netns = lab.host(node).unwrap().netns.clone();
    in_netns(&netns, || {
        let mut stream = std::net::TcpStream::connect("127.0.0.1:7472").unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    })
    .unwrap()
}

/// Whether the router's kernel has a route to `prefix`.
fn router_routes(lab: &Lab, prefix: &str) -> bool {
    meshlb_chaos::router::kernel_routes(lab, "router")
        .unwrap_or_default()
        .iter()
        .any(|r| r.prefix == prefix)
}

/// Waits until the router's RIB holds `count` paths to `prefix`; their
/// next hops, sorted, and the RIB.
fn next_hops_of(
    router: &Router,
    lab: &Lab,
    prefix: &str,
    count: usize,
) -> (Vec<IpAddr>, Vec<meshlb_chaos::router::RibPath>) {
    let rib = router
        .wait_rib(lab, Duration::from_secs(30), |rib| {
            rib.iter().filter(|p| p.prefix == prefix).count() == count
        })
        .unwrap();
    let mut next_hops: Vec<IpAddr> = rib.iter().filter(|p| p.prefix == prefix).map(|p| p.next_hop).collect();
    next_hops.sort();
    (next_hops, rib)
}

/// The agents' configuration: one BGPPeer, the lab's router, with
/// `peer_extra` added to its spec, announcing 203.0.113.20 for one Service;
/// `documents` come before it.
/// The arguments of a lab's one agent: a single-node cluster
/// (`--cluster-size 1`), with `--bgp-drain-seconds` when given.
fn lone_agent_args(drain_seconds: Option<u32>) -> Vec<String> {
    let mut args = vec!["--cluster-size".to_owned(), "1".to_owned()];
    args.extend(
        drain_seconds
            .map(|s| ["--bgp-drain-seconds".to_owned(), s.to_string()])
            .into_iter()
            .flatten(),
    );
    args
}

/// Starts the agent of the lab's one node with `config` and `args`.
fn start_lone_agent(lab: &Lab, config: &str, args: &[String]) -> Vec<meshlb_chaos::agent::MeshAgent> {
    let names = lab.node_names();
    meshlb_chaos::agent::start_cluster_with_args(lab, &names, "fast", config, |_| args.to_vec()).unwrap()
}

/// A lab of node1 and the router (IPv6 too with `ipv6`), `kind` on the
/// router peering with node1's IPv4 address under `options`.
fn router_lab(kind: RouterKind, ipv6: bool, options: RouterOptions) -> (Lab, Router) {
    let lab = Lab::build(&LabSpec {
        router: true,
        ..LabSpec::segment(1, 0, ipv6)
    })
    .unwrap();
    let node = IpAddr::V4(lab.host("node1").unwrap().ipv4);
    let router = Router::start_with_options(&lab, kind, vec![(node, NODE_ASN)], options).unwrap();
    (lab, router)
}

fn single_peer_config(lab: &Lab, peer_extra: &str, documents: &str) -> String {
    let router = IpAddr::V4(lab.host("router").unwrap().ipv4);
    meshlb_chaos::agent::bgp_config(router, "203.0.113.20/32", peer_extra, "", documents)
}

/// The agents in BGP mode: three nodes peer with bird2 on the router from
/// a BGPPeer and a BGPAdvertisement; the Service's address reaches the
/// router's RIB from every node and its kernel as one ECMP route over all
/// three; every node accepts the address's traffic (by a local route), so
/// a client behind the router is answered; the answering node's agent
/// stopped gracefully takes its next hop out of the route and the local
/// route away, and another node answers.
#[test]
fn agents_announce_a_service_over_every_node_and_a_stop_removes_one() {
    let lab = Lab::build(&LabSpec {
        router: true,
        remote_client: true,
        ..LabSpec::segment(3, 0, false)
    })
    .unwrap();
    let router = Router::start(&lab, RouterKind::Bird).unwrap();
    let config = single_peer_config(&lab, ", holdTime: 9s", "");
    let names = lab.node_names();
    let agents = meshlb_chaos::agent::start_cluster_with(&lab, &names, "fast", &config).unwrap();
    router.wait_established(&lab, 3, Duration::from_secs(30)).unwrap();
    let (next_hops, _) = next_hops_of(&router, &lab, "203.0.113.20/32", 3);
    let nodes: Vec<IpAddr> = lab
        .hosts_with(meshlb_chaos::Role::Node)
        .map(|h| IpAddr::V4(h.ipv4))
        .collect();
    assert_eq!(next_hops, nodes);
    let ecmp = |count: usize| {
        meshlb_chaos::wait::wait_for(
            Duration::from_secs(30),
            &format!("an ECMP route over {count} nodes"),
            || {
                meshlb_chaos::router::kernel_routes(&lab, "router")
                    .unwrap_or_default()
                    .iter()
                    .any(|r| r.prefix == "203.0.113.20/32" && r.next_hops.len() == count)
            },
        )
    };
    ecmp(3).unwrap();
    let delivered_here = |node: &str| {
        lab.exec(node, "ip", &["-4", "route", "show", "table", "local", "proto", "77"])
            .unwrap()
            .contains("local 203.0.113.20 dev lo")
    };
    for node in &names {
        meshlb_chaos::wait::wait_for(Duration::from_secs(10), "the address's local route", || {
            delivered_here(node)
        })
        .unwrap();
    }

    // A client behind the router reaches the Service through one node.
    let lab_binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_meshlb-lab"));
    let _responders = meshlb_chaos::scenario::start_responders(&lab, &lab_binary).unwrap();
    let target = SocketAddr::new("203.0.113.20".parse().unwrap(), meshlb_chaos::probe::RESPONDER_PORT);
    let prober = Prober::start(&lab, "remote", target, Duration::from_millis(10)).unwrap();
    let answering = prober
        .wait_for_answer(Instant::now(), Duration::from_secs(10), |_| true)
        .unwrap();

    let stopped = agents.iter().find(|a| a.node == answering).unwrap();
    stopped.process.terminate().unwrap();
    ecmp(2).unwrap();
    let routes = meshlb_chaos::router::kernel_routes(&lab, "router").unwrap();
    let route = routes.iter().find(|r| r.prefix == "203.0.113.20/32").unwrap();
    assert!(
        !route
            .next_hops
            .contains(&IpAddr::V4(lab.host(&answering).unwrap().ipv4)),
        "{route:?}"
    );
    let next = prober
        .wait_for_answer(Instant::now(), Duration::from_secs(10), |node| node != answering)
        .unwrap();
    assert_ne!(next, answering);
    assert!(stopped.process.wait_exit(Duration::from_secs(20)).unwrap().is_some());
    assert!(!delivered_here(&answering), "a stopped agent leaves no address behind");
    assert!(
        stopped
            .process
            .log()
            .contains("BGP drain: other nodes announce every address; withdrawing"),
        "the drain waited for the mesh"
    );
    std::thread::sleep(Duration::from_millis(500));
    // The drain lost nothing: from the first probe answered on, every
    // probe was answered, by the stopped node until its withdrawal and
    // by another after.
    let log = prober.stop();
    let lost = log
        .probes
        .iter()
        .skip_while(|p| p.answers.is_empty())
        .filter(|p| p.answers.is_empty())
        .count();
    assert_eq!(lost, 0, "probes lost across the drain");
}

/// A drain with no other node to take over: the route gets the
/// GRACEFUL_SHUTDOWN community at the router for the drain time, is then
/// withdrawn while the agent still runs, and the agent exits.
#[test]
fn a_lone_node_drains_with_graceful_shutdown_then_withdraws() {
    let lab = Lab::build(&LabSpec {
        router: true,
        ..LabSpec::segment(1, 0, false)
    })
    .unwrap();
    let router = Router::start(&lab, RouterKind::Bird).unwrap();
    let config = single_peer_config(&lab, ", holdTime: 9s", "");
    let extra = lone_agent_args(Some(3));
    let agents = start_lone_agent(&lab, &config, &extra);
    let path = |rib: &[meshlb_chaos::router::RibPath]| rib.iter().find(|p| p.prefix == "203.0.113.20/32").cloned();
    router
        .wait_rib(&lab, Duration::from_secs(30), |rib| path(rib).is_some())
        .unwrap();
    agents[0].process.terminate().unwrap();
    let rib = router
        .wait_rib(&lab, Duration::from_secs(10), |rib| {
            path(rib).is_some_and(|p| p.communities.contains(&Community::GRACEFUL_SHUTDOWN))
        })
        .unwrap();
    assert!(path(&rib).is_some());
    router
        .wait_rib(&lab, Duration::from_secs(10), |rib| path(rib).is_none())
        .unwrap();
    assert!(
        agents[0]
            .process
            .log()
            .contains("not every address is announced elsewhere")
    );
    assert!(agents[0].process.wait_exit(Duration::from_secs(10)).unwrap().is_some());
}

/// An agent restarted with `enableGracefulRestart` on its BGPPeer: bird2
/// (a helper by default) keeps the route while the agent is down, the node
/// keeps delivering the address, and a client behind the router loses
/// no probe; the restarted agent's End-of-RIB ends the restart with the
/// route in place. Without graceful restart, the same restart takes the
/// route away (the Cease) and the client loses probes until the agent is
/// back.
#[test]
fn a_graceful_restart_keeps_the_route_and_the_traffic() {
    for graceful in [true, false] {
        let lab = Lab::build(&LabSpec {
            router: true,
            remote_client: true,
            ..LabSpec::segment(1, 0, false)
        })
        .unwrap();
        let router = Router::start(&lab, RouterKind::Bird).unwrap();
        let config = single_peer_config(&lab, &format!(", holdTime: 9s, enableGracefulRestart: {graceful}"), "");
        let names = lab.node_names();
        // No drain wait: this is about the restart alone.
        let single = lone_agent_args(Some(0));
        let mut agents = start_lone_agent(&lab, &config, &single);
        let routed = || router_routes(&lab, "203.0.113.20/32");
        meshlb_chaos::wait::wait_for(Duration::from_secs(30), "the route in the router's kernel", routed).unwrap();
        let lab_binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_meshlb-lab"));
        let _responders = meshlb_chaos::scenario::start_responders(&lab, &lab_binary).unwrap();
        let target = SocketAddr::new("203.0.113.20".parse().unwrap(), meshlb_chaos::probe::RESPONDER_PORT);
        let prober = Prober::start(&lab, "remote", target, Duration::from_millis(10)).unwrap();
        prober
            .wait_for_answer(Instant::now(), Duration::from_secs(10), |_| true)
            .unwrap();

        let agent = agents.remove(0);
        let keys = std::fs::read_to_string(&agent.key_file).unwrap();
        agent.process.terminate().unwrap();
        assert!(agent.process.wait_exit(Duration::from_secs(20)).unwrap().is_some());
        // The agent is down for a second.
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            routed(),
            graceful,
            "graceful {graceful}: the route while the agent is down"
        );
        let restarted = meshlb_chaos::agent::start_agent_with(&lab, "node1", &names, &keys, "fast", &single).unwrap();
        router.wait_established(&lab, 1, Duration::from_secs(30)).unwrap();
        meshlb_chaos::wait::wait_for(Duration::from_secs(30), "the route back", routed).unwrap();
        std::thread::sleep(Duration::from_secs(1));
        let log = prober.stop();
        // From the first probe answered (the first may meet the router's
        // neighbour resolution) to the end.
        let probes: Vec<_> = log.probes.iter().skip_while(|p| p.answers.is_empty()).collect();
        let lost = probes.iter().filter(|p| p.answers.is_empty()).count();
        if graceful {
            assert_eq!(lost, 0, "no probe lost across a graceful restart");
            assert!(
                restarted.process.log().contains("a BGP graceful restart"),
                "the successor knew it restarted"
            );
        } else {
            assert!(lost >= 50, "lost {lost}: the route was gone for a second");
        }
        drop(restarted);
    }
}

/// BFD against FRR's bfdd (300 ms x 3; the BGP hold time 90 s): the
/// sessions come up; the agent frozen, FRR's BFD takes the BGP session
/// and the route down within seconds, long before the hold time; thawed,
/// both come back. bfdd frozen, the agent's BFD takes its BGP session down
/// (Cease, BFD Down) without waiting for the hold time either.
#[test]
fn bfd_takes_the_bgp_session_down_long_before_the_hold_time() {
    let (lab, node, router) = frr_with_bfd_lab(false);
    let profile = fast_bfd_profile("");
    let config = single_peer_config(&lab, ", holdTime: 90s, bfdProfile: fast", &profile);
    let single = lone_agent_args(None);
    let agents = start_lone_agent(&lab, &config, &single);
    let agent = &agents[0];
    let routed = || router_routes(&lab, "203.0.113.20/32");
    let bfd_up = || router.bfd_up_peers(&lab).unwrap_or_default() == [IpAddr::V4(node.ipv4)];
    let wait = |what: &str, f: &dyn Fn() -> bool| meshlb_chaos::wait::wait_for(Duration::from_secs(30), what, f);
    wait("the route in the router's kernel", &routed).unwrap();
    wait("FRR's BFD session up", &bfd_up).unwrap();

    agent.process.freeze().unwrap();
    let frozen = Instant::now();
    meshlb_chaos::wait::wait_for(Duration::from_secs(10), "the route gone", || !routed()).unwrap();
    let gone = frozen.elapsed();
    assert!(gone < Duration::from_secs(10), "{gone:?}: BFD, not the 90 s hold time");
    agent.process.thaw().unwrap();
    wait("the route back", &routed).unwrap();
    wait("FRR's BFD session up again", &bfd_up).unwrap();

    let bfdd = router.daemon("bfdd").unwrap();
    bfdd.freeze().unwrap();
    meshlb_chaos::wait::wait_for(Duration::from_secs(10), "the agent's BFD and BGP session down", || {
        let log = agent.process.log();
        log.contains("BFD session down") && log.contains("BFD: the path to the peer is down")
    })
    .unwrap();
    bfdd.thaw().unwrap();
}

/// An agent restarted under BFD at 100 ms x 3 (FRR's bfdd, graceful
/// restart on and off): once its BFD session is back, nothing flaps. FRR's
/// bfdd comes back in its slow start (a packet a second) and leaves it
/// with a Poll; an agent that kept the second it had scheduled went silent
/// for a second, FRR declared BFD down at 300 ms and reset the BGP session
/// (with graceful restart, every restart withdrew the node's routes for
/// about 0.9 s). Three restarts each; after each, five seconds with no BFD
/// down, the BGP session never reset and the route always there.
#[test]
fn an_agent_restart_under_fast_bfd_flaps_nothing() {
    for graceful in [true, false] {
        let lab = Lab::build(&LabSpec {
            router: true,
            ..LabSpec::segment(1, 0, false)
        })
        .unwrap();
        let node = lab.host("node1").unwrap().clone();
        let options = RouterOptions {
            bfd: Some(BfdTimers {
                interval_ms: 100,
                multiplier: 3,
            }),
            ..RouterOptions::default()
        };
        let router =
            Router::start_with_options(&lab, RouterKind::Frr, vec![(IpAddr::V4(node.ipv4), NODE_ASN)], options)
                .unwrap();
        let config = single_peer_config(
            &lab,
            &format!(", holdTime: 9s, bfdProfile: fast, enableGracefulRestart: {graceful}"),
            &bfd_profile(100, ""),
        );
        let names = lab.node_names();
        let single = lone_agent_args(Some(0));
        let mut agents = start_lone_agent(&lab, &config, &single);
        let routed = || router_routes(&lab, "203.0.113.20/32");
        let bfd_up = || router.bfd_up_peers(&lab).unwrap_or_default() == [IpAddr::V4(node.ipv4)];
        let wait = |what: &str, f: &dyn Fn() -> bool| meshlb_chaos::wait::wait_for(Duration::from_secs(30), what, f);
        wait("the route in the router's kernel", &routed).unwrap();
        wait("FRR's BFD session up", &bfd_up).unwrap();
        for restart in 0..3 {
            let agent = agents.remove(0);
            let keys = std::fs::read_to_string(&agent.key_file).unwrap();
            agent.process.terminate().unwrap();
            assert!(agent.process.wait_exit(Duration::from_secs(20)).unwrap().is_some());
            let restarted =
                meshlb_chaos::agent::start_agent_with(&lab, "node1", &names, &keys, "fast", &single).unwrap();
            wait("FRR's BFD session up again", &bfd_up).unwrap();
            wait("the route back", &routed).unwrap();
            let downs = router.bfd_down_events(&lab).unwrap();
            let established = router.established_peers(&lab).unwrap();
            let watch_until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < watch_until {
                if !routed() {
                    std::thread::sleep(Duration::from_secs(2));
                    panic!(
                        "graceful {graceful}, restart {restart}: the route went away after BFD came back \
                         (BFD downs {downs} then {:?}, established {established:?} then {:?})\n{}",
                        router.bfd_down_events(&lab),
                        router.established_peers(&lab),
                        restarted.process.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(
                router.bfd_down_events(&lab).unwrap(),
                downs,
                "graceful {graceful}, restart {restart}: BFD went down after it came back\n{}",
                restarted.process.log()
            );
            assert_eq!(router.established_peers(&lab).unwrap(), established);
            assert!(
                !restarted.process.log().contains("BGP session down"),
                "{}",
                restarted.process.log()
            );
            agents.push(restarted);
        }
    }
}

/// Thousands of addresses, cold: the router installs no route before the
/// node delivers its address (each destination pinged from the router the
/// moment its route is installed answers), and on withdrawal the node
/// keeps each address until the router has removed its route.
#[test]
fn routes_reach_the_router_only_once_their_addresses_are_delivered() {
    let count = 4000;
    let run = meshlb_chaos::scenario::delivery_order(count).unwrap();
    eprintln!(
        "{count} addresses: all on the node after {:?}, all routes in the router's FIB after {:?}",
        run.addresses_in, run.routes_in
    );
    assert_eq!(run.routes_installed, count);
    let none = |what: &str, addresses: &[IpAddr]| {
        assert!(
            addresses.is_empty(),
            "{} {what}, among them {:?}",
            addresses.len(),
            &addresses[..addresses.len().min(5)]
        );
    };
    none(
        "routes installed before their address was on the node",
        &run.announced_early,
    );
    none("pings to just-installed routes unanswered", &run.unanswered);
    assert_eq!(run.addresses_removed, count);
    none(
        "addresses removed while the router still routed them",
        &run.removed_early,
    );
    // Generous: the speed is the benchmark's (`meshlb-lab bench bgp-routes`).
    assert!(run.routes_in < Duration::from_secs(60), "{:?}", run.routes_in);
}

/// ROUTE-REFRESH (RFC 2918, RFC 7313): the router starts with an import
/// policy rejecting the agent's route; the policy changes without
/// re-evaluating anything, and the route stays out until the router asks
/// for the routes again (bird2's `reload in`, FRR's `clear bgp soft in`);
/// then the agent sends them and the route is in. Rejected and accepted
/// again the same way, so every refresh is answered.
#[test]
fn route_refresh_requests_are_answered_with_the_routes() {
    for kind in [RouterKind::Bird, RouterKind::Frr] {
        let options = RouterOptions {
            reject_imports: true,
            ..RouterOptions::default()
        };
        let (lab, mut router) = router_lab(kind, false, options);
        let config = single_peer_config(&lab, ", holdTime: 9s", "");
        let single = lone_agent_args(None);
        let _agents = start_lone_agent(&lab, &config, &single);
        router.wait_established(&lab, 1, Duration::from_secs(30)).unwrap();
        let has_route = |router: &Router| {
            router
                .rib(&lab)
                .unwrap_or_default()
                .iter()
                .any(|p| p.prefix == "203.0.113.20/32")
        };
        // The agent has sent the route by now; the policy keeps it out.
        std::thread::sleep(Duration::from_secs(2));
        assert!(!has_route(&router), "{kind}: rejected by the import policy");
        // Accepted, rejected, accepted again: each by a refresh alone.
        for accept in [true, false, true] {
            router.set_import_policy(&lab, accept).unwrap();
            std::thread::sleep(Duration::from_secs(1));
            assert_eq!(
                has_route(&router),
                !accept,
                "{kind}: no re-evaluation without a refresh (accept {accept})"
            );
            router.refresh_imports(&lab).unwrap();
            meshlb_chaos::wait::wait_for(Duration::from_secs(10), "the routes re-evaluated", || {
                has_route(&router) == accept
            })
            .unwrap_or_else(|e| panic!("{kind}, accept {accept}: {e}"));
        }
        assert_eq!(router.established_peers(&lab).unwrap().len(), 1, "{kind}: no reset");
    }
}

/// TCP MD5 (RFC 2385) from the BGPPeer's password: bird2, FRR and gobgpd
/// with the same password establish and get the route; FRR with another
/// never establishes, and the agent says why it may be.
#[test]
fn md5_passwords_admit_only_the_right_router() {
    let cases = [
        (RouterKind::Frr, "s3cret"),
        (RouterKind::Bird, "s3cret"),
        (RouterKind::Gobgp, "s3cret"),
        (RouterKind::Frr, "wrong"),
    ];
    for (kind, agent_password) in cases {
        let options = RouterOptions {
            password: Some("s3cret".into()),
            ..RouterOptions::default()
        };
        let (lab, router) = router_lab(kind, false, options);
        let config = single_peer_config(
            &lab,
            &format!(", holdTime: 9s, password: {agent_password}, connectTime: 2s"),
            "",
        );
        let single = lone_agent_args(None);
        let agents = start_lone_agent(&lab, &config, &single);
        if agent_password == "s3cret" {
            router.wait_established(&lab, 1, Duration::from_secs(30)).unwrap();
            router
                .wait_rib(&lab, Duration::from_secs(30), |rib| {
                    rib.iter().any(|p| p.prefix == "203.0.113.20/32")
                })
                .unwrap();
        } else {
            meshlb_chaos::wait::wait_for(Duration::from_secs(30), "the agent's hint", || {
                agents[0]
                    .process
                    .log()
                    .contains("a wrong password on either side looks like this")
            })
            .unwrap();
            assert!(router.established_peers(&lab).unwrap().is_empty(), "{kind}: no session");
            assert!(agents[0].process.is_running(), "no crash");
        }
    }
}

/// IPv6 sessions (RFC 2545): with each router over its IPv6 address, the
/// actor announces an IPv6 service address; the router's RIB holds it with
/// node1's global IPv6 address as next hop (the link-local one rides
/// along, as on-link peers expect).
#[test]
fn ipv6_sessions_announce_ipv6_routes_to_bird2_frr_and_gobgpd() {
    for kind in [RouterKind::Bird, RouterKind::Frr, RouterKind::Gobgp] {
        let lab = Lab::build(&LabSpec {
            router: true,
            ..LabSpec::segment(1, 0, true)
        })
        .unwrap();
        let node = lab.host("node1").unwrap().clone();
        let node_v6 = IpAddr::V6(node.ipv6.unwrap());
        let router = Router::start_with_peers(&lab, kind, vec![(node_v6, NODE_ASN)]).unwrap();
        let router_v6 = IpAddr::V6(lab.host("router").unwrap().ipv6.unwrap());
        let config = direct_ebgp(format!("{kind}-v6"), SocketAddr::new(router_v6, BGP_PORT), node.ipv4);
        let (peer, system, thread) = start_peer(&node.netns, config);
        let prefix = meshlb_wire::bgp::Prefix6::new("2001:db8:100::20".parse().unwrap(), 128).unwrap();
        let routes = BTreeMap::from([(RoutePrefix::V6(prefix), Default::default())]);
        peer.do_send(SetRoutes(routes));
        router.wait_established(&lab, 1, Duration::from_secs(30)).unwrap();
        let rib = router
            .wait_rib(&lab, Duration::from_secs(30), |rib| {
                rib.iter().any(|p| p.prefix == "2001:db8:100::20/128")
            })
            .unwrap();
        let path = rib.iter().find(|p| p.prefix == "2001:db8:100::20/128").unwrap();
        assert_eq!(path.next_hop, node_v6, "{kind}: {path:?}");
        assert_eq!(path.as_path, [NODE_ASN], "{kind}: {path:?}");
        peer.do_send(StopPeer { for_restart: false });
        system.stop();
        thread.join().unwrap();
    }
}

/// examples/bgp as is, on three nodes, with FRR as its `tor-a` (the lab's
/// router: BFD at the example's 100 ms x 3, the password from the
/// example's Secret): every node's session and BFD session come up, and
/// FRR holds the `blog` Service's IPv4 address from all three nodes with
/// the example's communities (an alias, a large one, no-export).
#[test]
fn the_bgp_example_runs_in_the_lab() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bgp");
    let read = |file: &str| std::fs::read_to_string(example.join(file)).unwrap();
    let lab = Lab::build(&LabSpec {
        router: true,
        ..LabSpec::segment(3, 0, false)
    })
    .unwrap();
    let nodes: Vec<(IpAddr, u32)> = lab
        .hosts_with(meshlb_chaos::Role::Node)
        .map(|h| (IpAddr::V4(h.ipv4), NODE_ASN))
        .collect();
    let options = RouterOptions {
        bfd: Some(BfdTimers {
            interval_ms: 100,
            multiplier: 3,
        }),
        password: Some("example-md5-password".into()),
        ..RouterOptions::default()
    };
    let router = Router::start_with_options(&lab, RouterKind::Frr, nodes.clone(), options).unwrap();
    meshlb_chaos::agent::write_config_file(&lab, "secret.yaml", &read("secret.yaml")).unwrap();
    let names = lab.node_names();
    let _agents = meshlb_chaos::agent::start_cluster_with(&lab, &names, "fast", &read("config.yaml")).unwrap();
    router.wait_established(&lab, 3, Duration::from_secs(30)).unwrap();
    meshlb_chaos::wait::wait_for(Duration::from_secs(30), "three BFD sessions up", || {
        router.bfd_up_peers(&lab).unwrap_or_default().len() == 3
    })
    .unwrap();
    let blog = |p: &meshlb_chaos::router::RibPath| {
        p.prefix.starts_with("203.0.113.") && p.prefix.ends_with("/32") && {
            let last: u8 = p.prefix["203.0.113.".len()..p.prefix.len() - 3].parse().unwrap_or(0);
            (64..128).contains(&last)
        }
    };
    let rib = router
        .wait_rib(&lab, Duration::from_secs(30), |rib| {
            rib.iter().filter(|p| blog(p)).count() == 3
        })
        .unwrap();
    let mut next_hops: Vec<IpAddr> = rib.iter().filter(|p| blog(p)).map(|p| p.next_hop).collect();
    next_hops.sort();
    assert_eq!(next_hops, nodes.iter().map(|(a, _)| *a).collect::<Vec<_>>());
    for path in rib.iter().filter(|p| blog(p)) {
        assert!(path.communities.contains(&Community((64512 << 16) | 100)), "{path:?}");
        assert!(path.communities.contains(&Community::NO_EXPORT), "{path:?}");
        assert_eq!(
            path.large_communities,
            [LargeCommunity {
                global_admin: 64512,
                local_data_1: 1,
                local_data_2: 1
            }],
            "{path:?}"
        );
    }
}

/// `dualStackAddressFamily`: over the IPv4 session with FRR, a dual-stack
/// Service's IPv6 address goes too, its next hop node1's global IPv6
/// address on the same interface; the IPv4 address keeps node1's IPv4.
#[test]
fn a_dual_stack_peer_carries_ipv6_routes_over_an_ipv4_session() {
    let options = RouterOptions {
        dual_stack: true,
        ..RouterOptions::default()
    };
    let (lab, router) = router_lab(RouterKind::Frr, true, options);
    let node = lab.host("node1").unwrap().clone();
    let router_address = lab.host("router").unwrap().ipv4;
    let config = meshlb_chaos::agent::bgp_config(
        IpAddr::V4(router_address),
        "203.0.113.20/32, '2001:db8:100::20/128'",
        ", holdTime: 9s, dualStackAddressFamily: true",
        ", ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]",
        "",
    );
    let single = lone_agent_args(None);
    let _agents = start_lone_agent(&lab, &config, &single);
    let rib = router
        .wait_rib(&lab, Duration::from_secs(30), |rib| {
            rib.iter().any(|p| p.prefix == "2001:db8:100::20/128") && rib.iter().any(|p| p.prefix == "203.0.113.20/32")
        })
        .unwrap();
    let v6 = rib.iter().find(|p| p.prefix == "2001:db8:100::20/128").unwrap();
    assert_eq!(v6.next_hop, IpAddr::V6(node.ipv6.unwrap()), "{v6:?}");
    let v4 = rib.iter().find(|p| p.prefix == "203.0.113.20/32").unwrap();
    assert_eq!(v4.next_hop, IpAddr::V4(node.ipv4), "{v4:?}");
}

/// `node`'s link-local address on its link to the router.
fn router_link_address(lab: &Lab, node: &str) -> IpAddr {
    let text = lab
        .exec(
            node,
            "ip",
            &["-6", "-j", "addr", "show", "dev", ROUTER_LINK, "scope", "link"],
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[0]["addr_info"][0]["local"].as_str().unwrap().parse().unwrap()
}

/// Unnumbered peering (a BGPPeer's `interface`): two nodes, each on a
/// link of its own to FRR (`neighbor IFACE interface`) with link-local
/// addresses only. Router Discovery finds the ends, the sessions
/// establish between link-local addresses, and the IPv4 Service address
/// reaches FRR's RIB from both nodes with their link-local next hops
/// (RFC 8950); the router forwards a client's traffic to it over those
/// links, its only route to the service range. BFD runs over the same
/// addresses: a frozen node's next hop leaves within seconds.
#[test]
fn unnumbered_peers_announce_ipv4_over_link_local_sessions() {
    let lab = Lab::build(&LabSpec {
        router: true,
        remote_client: true,
        ..LabSpec::segment(2, 0, false)
    })
    .unwrap();
    let names = lab.node_names();
    let interfaces: Vec<(String, u32)> = names
        .iter()
        .map(|node| (lab.add_router_link(node).unwrap(), NODE_ASN))
        .collect();
    let options = RouterOptions {
        interfaces,
        bfd: Some(FRR_BFD),
        ..RouterOptions::default()
    };
    let router = Router::start_with_options(&lab, RouterKind::Frr, vec![], options).unwrap();
    let profile = fast_bfd_profile("");
    let config = meshlb_chaos::agent::bgp_config_at(
        &format!("interface: {ROUTER_LINK}"),
        "203.0.113.20/32",
        ", holdTime: 90s, bfdProfile: fast",
        "",
        &profile,
    );
    let agents = meshlb_chaos::agent::start_cluster_with(&lab, &names, "fast", &config).unwrap();
    meshlb_chaos::wait::wait_for(Duration::from_secs(30), "two unnumbered sessions", || {
        router.established_interfaces(&lab).is_ok_and(|up| up.len() == 2)
    })
    .unwrap();
    let (next_hops, rib) = next_hops_of(&router, &lab, "203.0.113.20/32", 2);
    let mut link_locals: Vec<IpAddr> = names.iter().map(|node| router_link_address(&lab, node)).collect();
    link_locals.sort();
    assert_eq!(next_hops, link_locals, "{rib:?}");
    // The router's kernel: one ECMP route over both links.
    meshlb_chaos::wait::wait_for(Duration::from_secs(30), "an ECMP route over both links", || {
        meshlb_chaos::router::kernel_routes(&lab, "router")
            .unwrap_or_default()
            .iter()
            .any(|r| r.prefix == "203.0.113.20/32" && r.next_hops == link_locals)
    })
    .unwrap();
    // The API shows the session: over the link-local address, with the
    // extended next hop capability.
    let peers: serde_json::Value = serde_json::from_str(&node_ctl(&lab, "node1", &["bgp", "-o", "json"])).unwrap();
    assert_eq!(peers[0]["established"], true, "{peers}");
    assert!(peers[0]["address"].as_str().unwrap().starts_with("[fe80::"), "{peers}");
    let capabilities = peers[0]["capabilities"].as_array().unwrap();
    assert!(capabilities.contains(&"extended-next-hop".into()), "{peers}");
    assert_eq!(
        peers[0]["families"],
        serde_json::json!(["ipv4-unicast", "ipv6-unicast"]),
        "{peers}"
    );
    assert_eq!(peers[0]["hold_time"], 90, "{peers}");
    for agent in &agents {
        assert!(
            agent
                .process
                .log()
                .contains("unnumbered BGP: the peer's link-local address"),
            "{}",
            agent.process.log()
        );
    }

    let lab_binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_meshlb-lab"));
    let _responders = meshlb_chaos::scenario::start_responders(&lab, &lab_binary).unwrap();
    let target = SocketAddr::new("203.0.113.20".parse().unwrap(), meshlb_chaos::probe::RESPONDER_PORT);
    let prober = Prober::start(&lab, "remote", target, Duration::from_millis(10)).unwrap();
    let answering = prober
        .wait_for_answer(Instant::now(), Duration::from_secs(15), |_| true)
        .unwrap();
    assert!(names.contains(&answering));
    prober.stop();

    // BFD runs over the link-local addresses too: a frozen agent's link
    // leaves the route within seconds, not at the 90 s hold time.
    meshlb_chaos::wait::wait_for(Duration::from_secs(30), "FRR's BFD sessions up", || {
        let mut up = router.bfd_up_peers(&lab).unwrap_or_default();
        up.sort();
        up == link_locals
    })
    .unwrap();
    let frozen = &agents[0];
    let frozen_hop = router_link_address(&lab, &frozen.node);
    frozen.process.freeze().unwrap();
    let left = || {
        meshlb_chaos::router::kernel_routes(&lab, "router")
            .unwrap_or_default()
            .iter()
            .any(|r| r.prefix == "203.0.113.20/32" && r.next_hops.len() == 1 && !r.next_hops.contains(&frozen_hop))
    };
    meshlb_chaos::wait::wait_for(Duration::from_secs(10), "the frozen node's next hop gone", left).unwrap();
    frozen.process.thaw().unwrap();
}

/// `nft` in the router's namespace.
fn router_nft(lab: &Lab, args: &[&str]) -> String {
    lab.exec("router", "nft", args).unwrap()
}

/// The BFD Echo function (a BFDProfile's `echoMode`) against FRR: the
/// agent's Echo packets, addressed to node1 itself, go to the router and
/// its forwarding sends them back (the router's nftables counter sees
/// them pass). When the router stops forwarding them while its bfdd still
/// answers control packets, the agent's BFD goes down with Echo Function
/// Failed and takes the BGP session (90 s hold time) and the route with
/// it; once forwarding is back, so are they.
#[test]
fn bfd_echo_packets_find_a_forwarding_failure_the_control_packets_miss() {
    let (lab, node, router) = frr_with_bfd_lab(true);
    let profile = fast_bfd_profile(", echoMode: true, echoInterval: 100");
    let config = single_peer_config(&lab, ", holdTime: 90s, bfdProfile: fast", &profile);
    router_nft(&lab, &["add", "table", "inet", "echo"]);
    router_nft(
        &lab,
        &[
            "add",
            "chain",
            "inet",
            "echo",
            "forward",
            "{ type filter hook forward priority 0; }",
        ],
    );
    router_nft(
        &lab,
        &[
            "add", "rule", "inet", "echo", "forward", "udp", "dport", "3785", "counter",
        ],
    );
    let forwarded = || -> u64 {
        let listing = router_nft(&lab, &["list", "chain", "inet", "echo", "forward"]);
        listing
            .split("counter packets ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let single = lone_agent_args(None);
    let agents = start_lone_agent(&lab, &config, &single);
    let agent = &agents[0];
    let routed = || router_routes(&lab, "203.0.113.20/32");
    let wait = |what: &str, f: &dyn Fn() -> bool| meshlb_chaos::wait::wait_for(Duration::from_secs(30), what, f);
    wait("the route in the router's kernel", &routed).unwrap();
    wait("the agent's Echo packets", &|| {
        agent.process.log().contains("BFD Echo packets start")
    })
    .unwrap();
    wait("Echo packets forwarded by the router", &|| forwarded() > 10).unwrap();
    // They come back: a second of them (over three detection times of
    // 3 x 100 ms) fails nothing.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !agent.process.log().contains("EchoFunctionFailed"),
        "{}",
        agent.process.log()
    );
    assert!(routed());
    assert_eq!(router.bfd_up_peers(&lab).unwrap(), [IpAddr::V4(node.ipv4)]);
    // The agent says so too: its API and its metrics.
    let sessions: serde_json::Value = serde_json::from_str(&node_ctl(&lab, "node1", &["bfd", "-o", "json"])).unwrap();
    assert_eq!(sessions[0]["peer"], "198.51.100.1", "{sessions}");
    assert_eq!(
        (&sessions[0]["state"], &sessions[0]["echo"]),
        (&"up".into(), &true.into()),
        "{sessions}"
    );
    let metrics = node_metrics(&lab, "node1");
    assert!(
        metrics.contains("metallb_bfd_session_up{peer=\"198.51.100.1\",vrf=\"default\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("metallb_bgp_session_up{peer=\"198.51.100.1:179\",vrf=\"default\"} 1"),
        "{metrics}"
    );
    // Echo packets out and back, counted as FRR's bfdd counts them.
    let counted = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{peer=\"198.51.100.1\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    for name in ["metallb_bfd_echo_packet_output", "metallb_bfd_echo_packet_input"] {
        assert!(counted(name) > 0.0, "{name}: {metrics}");
    }

    // The router's forwarding drops them; its control plane is fine.
    router_nft(
        &lab,
        &[
            "insert", "rule", "inet", "echo", "forward", "udp", "dport", "3785", "drop",
        ],
    );
    let cut = Instant::now();
    meshlb_chaos::wait::wait_for(Duration::from_secs(10), "Echo Function Failed", || {
        agent.process.log().contains("EchoFunctionFailed")
    })
    .unwrap();
    meshlb_chaos::wait::wait_for(Duration::from_secs(10), "the route gone", || !routed()).unwrap();
    assert!(
        cut.elapsed() < Duration::from_secs(10),
        "BFD Echo, not the 90 s hold time"
    );
    assert!(
        agent
            .process
            .log()
            .contains("BFD: the path to the peer is down (EchoFunctionFailed)")
    );

    router_nft(&lab, &["flush", "chain", "inet", "echo", "forward"]);
    wait("the route back", &routed).unwrap();
}
