//! The lab's routers (bird2, FRR, gobgpd) peer with speakers on the nodes;
//! the RIB readers see every path with its attributes, the kernel FIB of
//! bird2 and FRR holds the ECMP route, and a router restart recovers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshlb_chaos::router::{NODE_ASN, ROUTER_ASN, RibPath, Router, RouterKind, kernel_routes};
use meshlb_chaos::speaker::{Announcement, GobgpSpeaker};
use meshlb_chaos::{Lab, LabSpec, Role};
use meshlb_wire::bgp::{Community, LargeCommunity};
use std::net::IpAddr;
use std::time::{Duration, Instant};

const ECMP_PREFIX: &str = "203.0.113.10/32";
const IBGP_PREFIX: &str = "203.0.113.20/32";

fn paths<'a>(rib: &'a [RibPath], prefix: &str) -> Vec<&'a RibPath> {
    rib.iter().filter(|p| p.prefix == prefix).collect()
}

fn wait_fib(lab: &Lab, prefix: &str, want: &[IpAddr]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fib = kernel_routes(lab, "router").unwrap();
        let hops = fib
            .iter()
            .find(|r| r.prefix == prefix)
            .map(|r| r.next_hops.clone())
            .unwrap_or_default();
        if hops == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "FIB next hops for {prefix}: {hops:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn router_round_trip(kind: RouterKind) {
    let lab = Lab::build(&LabSpec {
        nodes: 4,
        clients: 0,
        router: true,
        ipv6: false,
        ..LabSpec::default()
    })
    .unwrap();
    let router_ip = lab.host("router").unwrap().ipv4;
    let nodes: Vec<_> = lab.hosts_with(Role::Node).cloned().collect();
    // node1..3 speak eBGP; node4 speaks iBGP (same AS as the router).
    let mut peers: Vec<(IpAddr, u32)> = nodes[..3].iter().map(|n| (n.ipv4.into(), NODE_ASN)).collect();
    peers.push((nodes[3].ipv4.into(), ROUTER_ASN));
    let mut router = Router::start_with_peers(&lab, kind, peers).unwrap();
    let speakers: Vec<GobgpSpeaker> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            GobgpSpeaker::start(
                &lab,
                &n.name,
                if i < 3 { NODE_ASN } else { ROUTER_ASN },
                router_ip.into(),
                ROUTER_ASN,
            )
            .unwrap()
        })
        .collect();
    router.wait_established(&lab, 4, Duration::from_secs(60)).unwrap();

    let ecmp = Announcement {
        communities: vec![Community::new(64512, 100), Community::NO_EXPORT],
        large_communities: vec![LargeCommunity {
            global_admin: NODE_ASN,
            local_data_1: 1,
            local_data_2: 2,
        }],
        med: Some(7),
        local_pref: None,
    };
    for s in &speakers[..3] {
        s.announce(&lab, ECMP_PREFIX, &ecmp).unwrap();
    }
    speakers[3]
        .announce(
            &lab,
            IBGP_PREFIX,
            &Announcement {
                local_pref: Some(300),
                ..Announcement::default()
            },
        )
        .unwrap();

    let rib = router
        .wait_rib(&lab, Duration::from_secs(20), |rib| {
            paths(rib, ECMP_PREFIX).len() == 3 && paths(rib, IBGP_PREFIX).len() == 1
        })
        .unwrap();
    let ecmp_paths = paths(&rib, ECMP_PREFIX);
    let mut peers_seen: Vec<IpAddr> = ecmp_paths.iter().map(|p| p.peer).collect();
    peers_seen.sort();
    let mut node_ips: Vec<IpAddr> = nodes[..3].iter().map(|n| n.ipv4.into()).collect();
    node_ips.sort();
    assert_eq!(peers_seen, node_ips, "{kind}: one path per eBGP speaker");
    assert_eq!(ecmp_paths.iter().filter(|p| p.best).count(), 1, "{kind}: one best path");
    for p in &ecmp_paths {
        assert_eq!(p.next_hop, p.peer, "{kind}: next hop self");
        assert_eq!(p.as_path, vec![NODE_ASN], "{kind}");
        assert_eq!(p.med, Some(7), "{kind}");
        assert_eq!(p.communities, ecmp.communities, "{kind}");
        assert_eq!(p.large_communities, ecmp.large_communities, "{kind}");
    }
    let ibgp = paths(&rib, IBGP_PREFIX)[0];
    assert_eq!(ibgp.local_pref, Some(300), "{kind}: LOCAL_PREF over iBGP");
    assert!(ibgp.as_path.is_empty(), "{kind}: iBGP origination has an empty AS_PATH");

    let fib_kind = kind != RouterKind::Gobgp;
    if fib_kind {
        wait_fib(&lab, ECMP_PREFIX, &node_ips);
    }

    // Withdraw from node1: two paths left, and two ECMP next hops.
    speakers[0].withdraw(&lab, ECMP_PREFIX).unwrap();
    router
        .wait_rib(&lab, Duration::from_secs(20), |rib| paths(rib, ECMP_PREFIX).len() == 2)
        .unwrap();
    if fib_kind {
        wait_fib(&lab, ECMP_PREFIX, &node_ips[1..]);
    }

    // Router restart: sessions come back and the routes are relearned.
    router.restart(&lab).unwrap();
    router.wait_established(&lab, 4, Duration::from_secs(60)).unwrap();
    router
        .wait_rib(&lab, Duration::from_secs(30), |rib| {
            paths(rib, ECMP_PREFIX).len() == 2 && paths(rib, IBGP_PREFIX).len() == 1
        })
        .unwrap();
}

#[test]
fn bird2_router() {
    router_round_trip(RouterKind::Bird);
}

#[test]
fn frr_router() {
    router_round_trip(RouterKind::Frr);
}

#[test]
fn gobgpd_router() {
    router_round_trip(RouterKind::Gobgp);
}

/// IPv6 sessions carry IPv6 host routes; bird2 and FRR install them as ECMP.
fn ipv6_round_trip(kind: RouterKind) {
    let lab = Lab::build(&LabSpec {
        nodes: 2,
        clients: 0,
        router: true,
        ipv6: true,
        ..LabSpec::default()
    })
    .unwrap();
    let router_v6: IpAddr = lab.host("router").unwrap().ipv6.unwrap().into();
    let nodes: Vec<_> = lab.hosts_with(Role::Node).cloned().collect();
    let peers: Vec<(IpAddr, u32)> = nodes.iter().map(|n| (n.ipv6.unwrap().into(), NODE_ASN)).collect();
    let router = Router::start_with_peers(&lab, kind, peers).unwrap();
    let speakers: Vec<GobgpSpeaker> = nodes
        .iter()
        .map(|n| GobgpSpeaker::start(&lab, &n.name, NODE_ASN, router_v6, ROUTER_ASN).unwrap())
        .collect();
    router.wait_established(&lab, 2, Duration::from_secs(60)).unwrap();
    let prefix = "2001:db8:100::10/128";
    for s in &speakers {
        s.announce(&lab, prefix, &Announcement::default()).unwrap();
    }
    let rib = router
        .wait_rib(&lab, Duration::from_secs(20), |rib| paths(rib, prefix).len() == 2)
        .unwrap();
    let mut peers_seen: Vec<IpAddr> = paths(&rib, prefix).iter().map(|p| p.peer).collect();
    peers_seen.sort();
    let mut node_v6: Vec<IpAddr> = nodes.iter().map(|n| n.ipv6.unwrap().into()).collect();
    node_v6.sort();
    assert_eq!(peers_seen, node_v6, "{kind}");
    if kind != RouterKind::Gobgp {
        // On a shared link the kernel route may use the nodes' link-local
        // addresses instead of their global ones.
        let node_of = |hop: &IpAddr| {
            nodes.iter().position(|n| {
                *hop == IpAddr::from(n.ipv6.unwrap())
                    || *hop == IpAddr::from(meshlb_wire::ipv6::link_local_from_mac(n.mac))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let fib = kernel_routes(&lab, "router").unwrap();
            let hops = fib
                .iter()
                .find(|r| r.prefix == prefix)
                .map(|r| r.next_hops.clone())
                .unwrap_or_default();
            let mut via: Vec<Option<usize>> = hops.iter().map(node_of).collect();
            via.sort();
            if via == [Some(0), Some(1)] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{kind}: FIB next hops for {prefix}: {hops:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn bird2_router_ipv6() {
    ipv6_round_trip(RouterKind::Bird);
}

#[test]
fn frr_router_ipv6() {
    ipv6_round_trip(RouterKind::Frr);
}

#[test]
fn gobgpd_router_ipv6() {
    ipv6_round_trip(RouterKind::Gobgp);
}

#[test]
fn gobgpd_loads_an_mrt_dump_into_bird2_and_the_kernel() {
    let runs = meshlb_chaos::scenario::gobgp_route_scale(300, 1).unwrap();
    let run = runs[0].timing;
    assert!(run.rib <= run.fib, "{run:?}");
    assert!(run.withdraw_rib <= run.withdraw_fib, "{run:?}");
    assert!(
        run.fib < Duration::from_secs(60) && run.withdraw_fib < Duration::from_secs(60),
        "{run:?}"
    );
}
