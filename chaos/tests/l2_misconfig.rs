//! Layer 2 under misconfiguration and bad input, against real clients and
//! the split-brain detector: an agent that hears no one of its cluster (a
//! wrong cluster key, a firewalled gossip port) never answers for the
//! cluster's addresses; a cluster started node by node, and services added
//! and re-added while it runs, never have two answering MACs; a truncated
//! configuration file withdraws nothing. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use meshlb_chaos::agent::{random_key, start_agent_with, start_cluster_with, write_config};
use meshlb_chaos::splitbrain::SplitBrainDetector;
use meshlb_chaos::wait::wait_for;
use meshlb_chaos::{Lab, LabSpec};

const POOL: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lab, namespace: metallb-system}
spec: {addresses: [203.0.113.10-203.0.113.30]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lab, namespace: metallb-system}
spec: {ipAddressPools: [lab], interfaces: [eth0]}
";

/// [`POOL`] and services `svc-0` … `svc-{count - 1}`, each asking for
/// 203.0.113.(10 + i).
fn config(count: usize) -> String {
    let mut text = POOL.to_owned();
    for i in 0..count {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: default}}\n\
             spec: {{type: LoadBalancer, loadBalancerIP: 203.0.113.{}, ports: [{{port: 80}}]}}\n",
            10 + i
        ));
    }
    text
}

fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, 10 + i as u8)
}

fn arp_answerers(lab: &Lab, ip: Ipv4Addr) -> BTreeSet<String> {
    meshlb_chaos::probe::arp_answerers(lab, "client1", ip)
        .into_iter()
        .map(|m| m.to_string().to_lowercase())
        .collect()
}

fn mac_of(lab: &Lab, node: &str) -> String {
    lab.host(node).unwrap().mac.to_string().to_lowercase()
}

fn wait(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    wait_for(limit, what, done).unwrap();
}

/// Asks for `ip` over and over for `time`, failing if `stranger`'s MAC
/// ever answers; returns every MAC that did.
fn watch_answers(lab: &Lab, ip: Ipv4Addr, time: Duration, stranger: &str) -> BTreeSet<String> {
    let stranger_mac = mac_of(lab, stranger);
    let mut seen = BTreeSet::new();
    let until = Instant::now() + time;
    while Instant::now() < until {
        let answered = arp_answerers(lab, ip);
        assert!(
            !answered.contains(&stranger_mac),
            "{stranger}, which hears no one of its cluster, answered for {ip}"
        );
        seen.extend(answered);
    }
    seen
}

/// node4 is told the cluster is node1 to node4, but hears none of them:
/// first with the wrong cluster key (its datagrams are refused as forged,
/// which the others count and report), then with the right key and its
/// gossip port firewalled (the others hear it, it hears no one). Either way
/// it considers itself no quorum, says so, and never answers ARP for the
/// addresses the three others serve, while they keep exactly one owner.
#[test]
fn an_agent_that_hears_no_one_of_its_cluster_never_answers() {
    let lab = Lab::build(&LabSpec::segment(4, 1, false)).unwrap();
    let nodes = lab.node_names();
    let three = &nodes[..3];
    let agents = start_cluster_with(&lab, three, "fast", &config(3)).unwrap();
    wait("one owner per address", Duration::from_secs(10), || {
        (0..3).all(|i| arp_answerers(&lab, address(i)).len() == 1)
    });
    let detector = SplitBrainDetector::start(&lab).unwrap();

    let wrong_key = random_key(1).unwrap();
    let stranger = start_agent_with(&lab, "node4", &nodes, &format!("{wrong_key}\n"), "fast", &[]).unwrap();
    // The defect this guards against claimed after about 4 s.
    for i in 0..3 {
        let seen = watch_answers(&lab, address(i), Duration::from_secs(3), "node4");
        assert_eq!(seen.len(), 1, "{}: answered by {seen:?}", address(i));
    }
    let line = stranger.state.fence().unwrap_or_default();
    assert!(
        line.starts_with("quorum false") && line.contains("expected=4") && line.contains("heard-majority=false"),
        "node4's fence: {line:?}"
    );
    assert!(
        stranger.process.log().contains("not yet heard from a majority"),
        "node4 says in its log why it claims nothing"
    );
    wait(
        "the others to report node4's forged datagrams",
        Duration::from_secs(15),
        || {
            agents
                .iter()
                .all(|a| a.state.drops().is_ok_and(|d| d.get("forged").copied().unwrap_or(0) > 0))
        },
    );
    for agent in &agents {
        assert!(
            agent
                .process
                .log()
                .lines()
                .any(|l| l.contains("gossip datagrams dropped in the last") && l.contains("forged=")),
            "{} sums up the drops in its log",
            agent.node
        );
    }
    stranger.process.kill().unwrap();

    // The right key, but nothing reaches its gossip port.
    let firewall = "table inet meshlb_test {\n  chain input {\n    type filter hook input priority 0;\n    udp dport 7947 drop\n  }\n}\n";
    std::fs::write(lab.log_dir().join("firewall.nft"), firewall).unwrap();
    lab.exec(
        "node4",
        "nft",
        &["-f", &lab.log_dir().join("firewall.nft").to_string_lossy()],
    )
    .unwrap();
    let keys = std::fs::read_to_string(&agents[0].key_file).unwrap();
    let firewalled = start_agent_with(&lab, "node4", &nodes, &keys, "fast", &[]).unwrap();
    for i in 0..3 {
        let seen = watch_answers(&lab, address(i), Duration::from_secs(3), "node4");
        assert_eq!(seen.len(), 1, "{}: answered by {seen:?}", address(i));
    }
    let line = firewalled.state.fence().unwrap_or_default();
    assert!(line.starts_with("quorum false"), "firewalled node4's fence: {line:?}");
    let claims = detector.stop().unwrap();
    let node4_mac = lab.host("node4").unwrap().mac;
    for i in 0..3 {
        assert!(
            !claims.claimants(address(i).into()).contains(&node4_mac),
            "node4 announced {}",
            address(i)
        );
        assert_eq!(
            claims.claimants(address(i).into()).len(),
            1,
            "{}: one owner throughout",
            address(i)
        );
    }
}

/// A cluster started node by node: nobody answers before two of the
/// three hear each other (the first waits alone longer than it needs to
/// settle), addresses move to the
/// third node when it has settled without two MACs answering at once,
/// and every address ends with one owner.
#[test]
fn a_cold_start_node_by_node_converges_without_two_answering_macs() {
    let lab = Lab::build(&LabSpec::segment(3, 1, false)).unwrap();
    let nodes = lab.node_names();
    write_config(&lab, &config(6)).unwrap();
    let keys = format!("{}\n", random_key(1).unwrap());
    let detector = SplitBrainDetector::start(&lab).unwrap();
    let mut agents = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        agents.push(start_agent_with(&lab, node, &nodes, &keys, "fast", &[]).unwrap());
        if n == 0 {
            // Longer than a lone node's settle period (4 s).
            let seen = watch_answers(&lab, address(0), Duration::from_secs(5), node);
            assert!(seen.is_empty(), "a lone node of three answers: {seen:?}");
        } else {
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    wait("one owner per address", Duration::from_secs(15), || {
        (0..6).all(|i| arp_answerers(&lab, address(i)).len() == 1)
    });
    std::thread::sleep(Duration::from_secs(2));
    let claims = detector.stop().unwrap();
    for i in 0..6 {
        let both = claims.overlap(address(i).into());
        assert!(both <= 0.0, "{}: two MACs claimed it for {both:.3} s", address(i));
        assert_eq!(arp_answerers(&lab, address(i)).len(), 1);
    }
}

/// Services added, removed and added again while three agents run, all
/// reading the same file: every address is only ever claimed by one MAC.
#[test]
fn added_and_readded_services_are_claimed_by_one_node() {
    let lab = Lab::build(&LabSpec::segment(3, 1, false)).unwrap();
    let nodes = lab.node_names();
    let _agents = start_cluster_with(&lab, &nodes, "fast", &config(1)).unwrap();
    wait("an owner of the first service", Duration::from_secs(10), || {
        arp_answerers(&lab, address(0)).len() == 1
    });
    let detector = SplitBrainDetector::start(&lab).unwrap();
    for round in 0..2 {
        write_config(&lab, &config(6)).unwrap();
        wait(
            &format!("round {round}: owners of the new services"),
            Duration::from_secs(10),
            || (1..6).all(|i| arp_answerers(&lab, address(i)).len() == 1),
        );
        write_config(&lab, &config(1)).unwrap();
        wait(
            &format!("round {round}: the services withdrawn"),
            Duration::from_secs(10),
            || (1..6).all(|i| arp_answerers(&lab, address(i)).is_empty()),
        );
    }
    let claims = detector.stop().unwrap();
    for i in 1..6 {
        let claimants = claims.claimants(address(i).into());
        assert_eq!(claimants.len(), 1, "{} was claimed by {claimants:?}", address(i));
    }
}

/// The configuration file is truncated in place, as an editor or a `>`
/// redirection does before writing it anew: the agents hold the empty
/// reading and the client's traffic to the service goes on without a lost
/// probe; the file written back cancels the hold. Truncated and left so,
/// it is applied once the grace period (5 s by default) is over.
#[test]
fn a_truncated_configuration_file_withdraws_nothing() {
    use meshlb_chaos::probe::{Prober, RESPONDER_PORT};
    let lab = Lab::build(&LabSpec::segment(3, 1, false)).unwrap();
    let lab_binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_meshlb-lab"));
    let _responders = meshlb_chaos::scenario::start_responders(&lab, &lab_binary).unwrap();
    let nodes = lab.node_names();
    let agents = start_cluster_with(&lab, &nodes, "fast", &config(3)).unwrap();
    wait("an owner", Duration::from_secs(10), || {
        arp_answerers(&lab, address(0)).len() == 1
    });
    let target = std::net::SocketAddr::new(address(0).into(), RESPONDER_PORT);
    let prober = Prober::start(&lab, "client1", target, Duration::from_millis(10)).unwrap();
    prober
        .wait_for_answer(Instant::now(), Duration::from_secs(5), |_| true)
        .unwrap();
    let file = lab.log_dir().join("meshlb/config/config.yaml");
    let truncated_at = Instant::now();
    std::fs::write(&file, "").unwrap();
    // Longer than the agents take to notice (200 ms), shorter than the hold.
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&file, config(3)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let restored_at = Instant::now();
    let log = prober.stop();
    let lost = log
        .probes
        .iter()
        .filter(|p| p.sent >= truncated_at && p.sent < restored_at && p.answers.is_empty())
        .count();
    assert_eq!(lost, 0, "probes lost while the file was empty");
    for agent in &agents {
        assert!(
            agent.process.log().contains("configuration held"),
            "{} says it held the empty reading",
            agent.node
        );
    }

    // Left empty: applied after the grace period, and the address goes.
    std::fs::write(&file, "").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        arp_answerers(&lab, address(0)).len(),
        1,
        "withdrawn before the grace period"
    );
    wait("the address to be withdrawn", Duration::from_secs(10), || {
        arp_answerers(&lab, address(0)).is_empty()
    });
}
