//! The Layer 2 answering path against real clients: `meshlb-agent
//! announce` in a lab node answers the client's ARP (arping) and NDP
//! (ndisc6) for its addresses with its own MAC and nothing else, stops
//! answering when stopped, and a newcomer's gratuitous ARP and unsolicited
//! Neighbor Advertisement move the client's existing neighbour entries
//! without the client asking. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use meshlb_chaos::agent::agent_binary;
use meshlb_chaos::wait::wait_for;
use meshlb_chaos::{Lab, LabProcess, LabSpec};

const SERVICE_V4: &str = "203.0.113.10";
const SERVICE_V6: &str = "2001:db8:100::10";

fn announce(lab: &Lab, node: &str, addresses: &[&str]) -> LabProcess {
    let binary = agent_binary().unwrap();
    let mut args = vec!["announce", "--interface", "eth0"];
    for a in addresses {
        args.extend(["--address", a]);
    }
    lab.spawn(node, "announce", &binary.to_string_lossy(), &args).unwrap()
}

/// The MAC of the one node that answered ARP for `ip`, if exactly one did.
fn arping(lab: &Lab, ip: &str) -> Option<String> {
    let macs = arp_answerers(lab, ip);
    if macs.len() == 1 { macs.into_iter().next() } else { None }
}

/// The MAC ndisc6 got in a Neighbor Advertisement for `ip`, if any.
fn ndisc6(lab: &Lab, ip: &str) -> Option<String> {
    meshlb_chaos::probe::ndp_answerer(lab, "client1", ip.parse().unwrap()).map(|m| m.to_string().to_lowercase())
}

/// Every MAC that answered ARP for `ip` (two broadcast requests).
fn arp_answerers(lab: &Lab, ip: &str) -> std::collections::BTreeSet<String> {
    meshlb_chaos::probe::arp_answerers(lab, "client1", ip.parse().unwrap())
        .into_iter()
        .map(|m| m.to_string().to_lowercase())
        .collect()
}

/// The client's kernel neighbour entry for `ip`: its MAC, if it has one.
fn neighbour(lab: &Lab, ip: &str) -> Option<String> {
    let out = lab.exec("client1", "ip", &["neigh", "show", ip]).ok()?;
    let mut words = out.split_whitespace();
    words.find(|w| *w == "lladdr")?;
    words.next().map(str::to_lowercase)
}

fn mac_of(lab: &Lab, node: &str) -> String {
    lab.host(node).unwrap().mac.to_string().to_lowercase()
}

fn wait(what: &str, done: impl FnMut() -> bool) {
    wait_for(Duration::from_secs(10), what, done).unwrap();
}

#[test]
fn clients_resolve_announced_addresses_and_follow_a_new_announcer() {
    let lab = Lab::build(&LabSpec::segment(2, 1, true)).unwrap();
    let node1_mac = mac_of(&lab, "node1");
    let node2_mac = mac_of(&lab, "node2");
    // Nobody answers before an announcer runs.
    assert_eq!(arping(&lab, SERVICE_V4), None);
    assert_eq!(ndisc6(&lab, SERVICE_V6), None);

    let node1 = announce(&lab, "node1", &[SERVICE_V4, SERVICE_V6]);
    wait("node1 to answer ARP", || {
        arping(&lab, SERVICE_V4).as_deref() == Some(&node1_mac)
    });
    wait("node1 to answer NDP", || {
        ndisc6(&lab, SERVICE_V6).as_deref() == Some(&node1_mac)
    });
    // Only the announced addresses.
    assert_eq!(arping(&lab, "203.0.113.11"), None);
    assert_eq!(ndisc6(&lab, "2001:db8:100::11"), None);

    // The client's kernel resolves through node1 when it sends traffic.
    lab.exec("client1", "bash", &["-c", &format!("echo x > /dev/udp/{SERVICE_V4}/9")])
        .unwrap();
    lab.exec("client1", "bash", &["-c", &format!("echo x > /dev/udp/{SERVICE_V6}/9")])
        .unwrap();
    wait("the client's entries to point at node1", || {
        neighbour(&lab, SERVICE_V4).as_deref() == Some(&node1_mac)
            && neighbour(&lab, SERVICE_V6).as_deref() == Some(&node1_mac)
    });

    // node1 stops: it answers no more.
    node1.terminate().unwrap();
    let status = node1.wait_exit(Duration::from_secs(5)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "clean exit, got {status:?}");
    assert_eq!(arping(&lab, SERVICE_V4), None);

    // node2 takes over (after the kernel's 1 s lock time on neighbour
    // updates): its announcements move the client's entries unasked.
    std::thread::sleep(Duration::from_millis(1200));
    let _node2 = announce(&lab, "node2", &[SERVICE_V4, SERVICE_V6]);
    wait("the client's entries to move to node2", || {
        neighbour(&lab, SERVICE_V4).as_deref() == Some(&node2_mac)
            && neighbour(&lab, SERVICE_V6).as_deref() == Some(&node2_mac)
    });
    assert_eq!(arping(&lab, SERVICE_V4).as_deref(), Some(node2_mac.as_str()));
    assert_eq!(ndisc6(&lab, SERVICE_V6).as_deref(), Some(node2_mac.as_str()));
}

/// A dual-stack service announced on eth0 by every node.
const L2_CONFIG: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lab, namespace: metallb-system}
spec: {addresses: [203.0.113.10-203.0.113.20, '2001:db8:100::10-2001:db8:100::20']}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lab, namespace: metallb-system}
spec: {ipAddressPools: [lab], interfaces: [eth0]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  ports: [{port: 80}]
";

/// A lab of 3 nodes and a client with responders on the nodes and meshlb
/// agents serving [`L2_CONFIG`], once one node answers ARP for
/// [`SERVICE_V4`] and the client's 10 ms prober reaches it.
/// Destructure it binding every field: a field left to `..` is dropped at
/// once, and its processes killed with it.
/// Fields drop in this order: the prober and the processes before the lab
/// that holds their namespaces.
struct L2Lab {
    prober: meshlb_chaos::probe::Prober,
    agents: Vec<meshlb_chaos::agent::MeshAgent>,
    _responders: Vec<LabProcess>,
    owner: String,
    lab: Lab,
}

fn l2_lab() -> L2Lab {
    l2_lab_on(&LabSpec::segment(3, 1, true))
}

fn l2_lab_on(spec: &LabSpec) -> L2Lab {
    use meshlb_chaos::probe::{Prober, RESPONDER_PORT};
    let lab = Lab::build(spec).unwrap();
    let lab_binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_meshlb-lab"));
    let responders = meshlb_chaos::scenario::start_responders(&lab, &lab_binary).unwrap();
    let nodes = lab.node_names();
    let agents = meshlb_chaos::agent::start_cluster_with(&lab, &nodes, "fast", L2_CONFIG).unwrap();
    wait("one owner", || arp_answerers(&lab, SERVICE_V4).len() == 1);
    let owner = node_with_mac(&lab, &arp_answerers(&lab, SERVICE_V4).into_iter().next().unwrap());
    let target = std::net::SocketAddr::new(SERVICE_V4.parse().unwrap(), RESPONDER_PORT);
    let prober = Prober::start(&lab, "client1", target, Duration::from_millis(10)).unwrap();
    prober
        .wait_for_answer(std::time::Instant::now(), Duration::from_secs(5), |n| n == owner)
        .unwrap();
    L2Lab {
        lab,
        agents,
        _responders: responders,
        owner,
        prober,
    }
}

fn node_with_mac(lab: &Lab, mac: &str) -> String {
    lab.hosts()
        .iter()
        .find(|h| h.mac.to_string().to_lowercase() == mac)
        .map(|h| h.name.clone())
        .unwrap_or_else(|| panic!("no host has MAC {mac}"))
}

#[test]
fn agents_announce_one_owner_and_fail_over_on_kill_and_graceful_stop() {
    use std::time::Instant;

    // Exactly one node answers for each address, and the client reaches
    // the service through it.
    let L2Lab {
        lab,
        mut agents,
        owner,
        prober,
        _responders,
    } = l2_lab();
    wait("an owner of the IPv6 address", || ndisc6(&lab, SERVICE_V6).is_some());
    let v6_owner = node_with_mac(&lab, &ndisc6(&lab, SERVICE_V6).unwrap());
    assert_eq!(v6_owner, owner, "a dual-stack service's addresses share an owner");

    // The status files say the same: the owner counts the answers it gave
    // on its interface, and every agent names the owner as the announcer.
    let owner_agent = agents.iter().find(|a| a.node == owner).unwrap();
    wait("the owner's answers counted", || {
        owner_agent.state.interfaces().values().any(|fields| {
            let count = |key: &str| fields.get(key).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            count("arp-replies") > 0
                && count("na-replies") > 0
                && fields
                    .get("answering")
                    .is_some_and(|a| a.split(',').any(|ip| ip == SERVICE_V4))
        })
    });
    for agent in &agents {
        wait("the ownership file to name the owner", || {
            agent.state.ownership_of(SERVICE_V4) == Some((vec![owner.clone()], agent.node == owner))
        });
    }

    // Kill the owner's agent: another node takes over and the client
    // follows without asking (gratuitous ARP).
    let victim = agents.iter().find(|a| a.node == owner).unwrap();
    victim.process.kill().unwrap();
    let killed_at = Instant::now();
    let successor = prober
        .wait_for_answer(killed_at, Duration::from_secs(10), |n| n != owner)
        .unwrap();
    assert_ne!(successor, owner);
    let successor_mac = mac_of(&lab, &successor);
    wait("the IPv6 address to move with it", || {
        ndisc6(&lab, SERVICE_V6).as_deref() == Some(successor_mac.as_str())
    });
    assert_eq!(arp_answerers(&lab, SERVICE_V4), [successor_mac.clone()].into());
    agents.retain(|a| a.node != owner);

    // Graceful stop of the new owner: handed over, and the agent exits
    // cleanly having stopped answering.
    let stopping = agents.iter().find(|a| a.node == successor).unwrap();
    stopping.process.terminate().unwrap();
    let stopped_at = Instant::now();
    let third = prober
        .wait_for_answer(stopped_at, Duration::from_secs(10), |n| n != successor && n != owner)
        .unwrap();
    let status = stopping.process.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: clean exit, got {status:?}"
    );
    assert_eq!(arp_answerers(&lab, SERVICE_V4), [mac_of(&lab, &third)].into());
    let log = prober.stop();
    let graceful = log.outage_after(stopped_at).unwrap();
    // Generous: the benchmark measures; this only catches a broken handover.
    assert!(
        graceful.window < Duration::from_secs(3),
        "graceful stop cost {:?}",
        graceful.window
    );
}

/// A frozen owner is replaced; once thawed it answers none of the questions
/// asked while it was frozen (they would pull the client back to it) and
/// takes nothing back until it has re-learned the mesh; afterwards exactly
/// one node answers.
#[test]
fn a_thawed_owner_answers_no_stale_question() {
    use std::time::Instant;

    let L2Lab {
        lab,
        agents,
        owner,
        prober,
        _responders,
    } = l2_lab();

    let frozen = agents.iter().find(|a| a.node == owner).unwrap();
    frozen.process.freeze().unwrap();
    let successor = prober
        .wait_for_answer(Instant::now(), Duration::from_secs(10), |n| n != owner)
        .unwrap();
    // Broadcast questions the frozen agent will find queued when it thaws.
    let asked = arp_answerers(&lab, SERVICE_V4);
    assert_eq!(asked, [mac_of(&lab, &successor)].into(), "only the successor answers");

    let thawed_at = Instant::now();
    frozen.process.thaw().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let log = prober.stop();
    // Re-learning the mesh takes the settle period (1 s with the fast
    // profile); anything from the old owner sooner came from a stale answer.
    let too_soon = thawed_at + Duration::from_millis(700);
    let early: Vec<_> = log
        .probes
        .iter()
        .flat_map(|p| p.answers.iter())
        .filter(|(at, node)| *node == owner && *at > thawed_at && *at < too_soon)
        .collect();
    assert!(
        early.is_empty(),
        "the thawed owner was reached {} times within 0.7 s",
        early.len()
    );
    // It noticed the stall and threw away the questions queued meanwhile.
    let agent_log = frozen.process.log();
    let stall_line = agent_log
        .lines()
        .find(|l| l.contains("stale questions dropped"))
        .expect("the thawed agent noticed its stall");
    let dropped: usize = stall_line
        .split("dropped=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        dropped >= 1,
        "the arping questions were queued and dropped: {stall_line}"
    );
    // Once settled it takes nothing back (one address, one holder: the
    // loads are as even as they get), and every agent's view of the
    // records agrees: nobody settling, the successor the one claimant.
    wait(
        "every agent to see the thawed node settled and the successor the only claimant",
        || {
            agents.iter().all(|a| {
                a.state.settling_members().is_ok_and(|s| s.is_empty())
                    && a.state.claimants_of(SERVICE_V4).is_ok_and(|c| c == [successor.clone()])
            })
        },
    );
    assert_eq!(
        arp_answerers(&lab, SERVICE_V4),
        [mac_of(&lab, &successor)].into(),
        "the successor alone answers"
    );
}

/// A freeze past the owner watch's deadline but short of the mesh's own
/// stall (400 ms): the owner is replaced while frozen, and once thawed it
/// answers no broadcast question asked meanwhile (the answer would reach
/// the client after the successor's and pull it back), whichever of the
/// agent's tasks runs first; only the successor's MAC ever answers.
#[test]
fn an_owner_frozen_past_the_watch_deadline_answers_no_stale_question() {
    use std::time::Instant;

    let L2Lab {
        lab,
        agents,
        owner,
        prober,
        _responders,
    } = l2_lab();
    let frozen = agents.iter().find(|a| a.node == owner).unwrap();
    let frozen_at = Instant::now();
    frozen.process.freeze().unwrap();
    let answerers = std::thread::scope(|scope| {
        // Two broadcast questions a second apart: the first reaches the
        // frozen owner's socket, the second is asked after the thaw.
        let asking = scope.spawn(|| arp_answerers(&lab, SERVICE_V4));
        std::thread::sleep(Duration::from_millis(400).saturating_sub(frozen_at.elapsed()));
        frozen.process.thaw().unwrap();
        asking.join().unwrap()
    });
    let successor = prober
        .wait_for_answer(frozen_at, Duration::from_secs(10), |n| n != owner)
        .unwrap();
    drop(prober);
    assert_eq!(
        answerers,
        [mac_of(&lab, &successor)].into(),
        "only the successor answers questions asked across the freeze"
    );
    let agent_log = frozen.process.log();
    assert!(
        agent_log.lines().any(|l| l.contains("stale questions dropped")),
        "the thawed agent noticed its stall"
    );
    wait("one answering MAC after the thaw", || {
        arp_answerers(&lab, SERVICE_V4).len() == 1
    });
}

/// With the mesh on its own segment, the owner's client-facing link goes
/// down while its agent stays a member: its record says the link is down,
/// so another node takes the address over without anyone being declared
/// down; when the link comes back the address stays where it is (moving
/// it back would even no loads), with exactly one node answering.
#[test]
fn a_client_link_failure_moves_the_address_while_the_mesh_stays_whole() {
    use meshlb_chaos::serf::now_secs;
    use std::time::Instant;

    let l2 = l2_lab_on(&LabSpec {
        mesh_link: true,
        ..LabSpec::segment(3, 1, true)
    });
    let (lab, owner) = (&l2.lab, l2.owner.as_str());
    let since = now_secs();
    lab.set_interface(owner, "eth0", false).unwrap();
    let successor = l2
        .prober
        .wait_for_answer(Instant::now(), Duration::from_secs(10), |n| n != owner)
        .unwrap();
    assert_eq!(arp_answerers(lab, SERVICE_V4), [mac_of(lab, &successor)].into());
    for agent in &l2.agents {
        assert!(
            agent.state.members().unwrap().iter().any(|m| m == owner),
            "{} still counts {owner} a member",
            agent.node
        );
        assert_eq!(
            agent.state.events_between("member-down", owner, since, now_secs()),
            0,
            "{} declared {owner} down: the mesh link never failed",
            agent.node
        );
    }
    lab.set_interface(owner, "eth0", true).unwrap();
    let successor_mac = mac_of(lab, &successor);
    // Three seconds: the old owner's record says its link is up within
    // one gossip round; nothing moves, nothing answers twice.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            arp_answerers(lab, SERVICE_V4),
            [successor_mac.clone()].into(),
            "the successor alone answers once the link is back"
        );
    }
}

/// The owner's link goes down: another node takes over, and when the link
/// comes back exactly one node answers. Then the service moves to another
/// pool: the old address goes silent and the new one is answered.
#[test]
fn link_down_fails_over_and_a_pool_change_moves_the_address() {
    use meshlb_chaos::agent::write_config;
    use std::time::Instant;

    let L2Lab {
        lab,
        agents: _agents,
        owner,
        prober,
        _responders,
    } = l2_lab();

    lab.link_down(&owner).unwrap();
    let successor = prober
        .wait_for_answer(Instant::now(), Duration::from_secs(10), |n| n != owner)
        .unwrap();
    assert_eq!(arp_answerers(&lab, SERVICE_V4), [mac_of(&lab, &successor)].into());
    lab.link_up(&owner).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    wait("exactly one owner with the link back", || {
        arp_answerers(&lab, SERVICE_V4).len() == 1
    });
    drop(prober);

    // Move the service to another pool.
    let moved = L2_CONFIG.replace(
        "metadata: {name: web, namespace: default}",
        "metadata: {name: web, namespace: default, annotations: {metallb.io/address-pool: other}}",
    ) + "---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: other, namespace: metallb-system}
spec: {addresses: [203.0.113.30-203.0.113.40, '2001:db8:100::30-2001:db8:100::40'], autoAssign: false}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: other, namespace: metallb-system}
spec: {ipAddressPools: [other]}
";
    write_config(&lab, &moved).unwrap();
    wait("the new IPv4 address to be answered by one node", || {
        arp_answerers(&lab, "203.0.113.30").len() == 1
    });
    wait("the new IPv6 address to be answered", || {
        ndisc6(&lab, "2001:db8:100::30").is_some()
    });
    assert!(
        arp_answerers(&lab, SERVICE_V4).is_empty(),
        "the old address was withdrawn"
    );
    assert_eq!(ndisc6(&lab, SERVICE_V6), None, "the old IPv6 address was withdrawn");
}

/// The owner is partitioned from the other two nodes while the client still
/// reaches both sides: the owner loses quorum and goes quiet, the majority
/// takes over, and the two MACs never answer together for longer than the
/// documented bound (detection on either side, about a second; asserted
/// generously at 3 s). After healing, one node answers.
#[test]
fn a_partitioned_owner_goes_quiet_and_the_majority_takes_over() {
    use meshlb_chaos::agent::start_cluster_with;
    use meshlb_chaos::splitbrain::SplitBrainDetector;
    use std::net::IpAddr;

    let lab = Lab::build(&LabSpec::segment(3, 1, false)).unwrap();
    let nodes = lab.node_names();
    let _agents = start_cluster_with(&lab, &nodes, "fast", L2_CONFIG).unwrap();
    wait("one owner", || arp_answerers(&lab, SERVICE_V4).len() == 1);
    let owner_mac = arp_answerers(&lab, SERVICE_V4).into_iter().next().unwrap();
    let owner = node_with_mac(&lab, &owner_mac);
    let others: Vec<&str> = nodes.iter().map(String::as_str).filter(|n| *n != owner).collect();

    let detector = SplitBrainDetector::start(&lab).unwrap();
    lab.partition(&[&[owner.as_str()], &others]).unwrap();
    // The client keeps asking, so both sides are heard if both answer.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut answerers = Vec::new();
    while std::time::Instant::now() < deadline {
        answerers.push(arp_answerers(&lab, SERVICE_V4));
    }
    let claims = detector.stop().unwrap();
    let service: IpAddr = SERVICE_V4.parse().unwrap();
    let last = answerers.last().unwrap();
    assert_eq!(last.len(), 1, "one answerer at the end: {last:?}");
    assert_ne!(last.iter().next().unwrap(), &owner_mac, "the majority side took over");
    // How long both MACs claimed the address: from the new owner's first
    // claim to the old owner's last.
    let at = |mac_is_owner: bool| {
        claims
            .claims
            .iter()
            .filter(|c| c.ip == service && (c.mac.to_string().to_lowercase() == owner_mac) == mac_is_owner)
            .map(|c| c.at)
            .collect::<Vec<f64>>()
    };
    let new_first = at(false).into_iter().fold(f64::INFINITY, f64::min);
    let old_last = at(true).into_iter().fold(f64::NEG_INFINITY, f64::max);
    let overlap = claims.overlap(service);
    assert!(new_first.is_finite(), "the majority side claimed the address");
    eprintln!("partition: majority claimed at {new_first:.3} s, old owner last at {old_last:.3} s");
    assert!(overlap < 3.0, "both sides answered for {overlap:.3} s");

    lab.heal().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    wait("one owner after healing", || arp_answerers(&lab, SERVICE_V4).len() == 1);
}

/// An L2Policy gives the service two addresses on distinct nodes, prefers
/// rack r1 and does not fail back: node1 (rack r1) owns one address; when
/// its agent dies the address moves, and when it comes back it takes
/// nothing back.
#[test]
fn two_addresses_on_distinct_nodes_with_preference_and_no_failback() {
    use meshlb_chaos::agent::{start_agent_with, start_cluster_with_args};

    const SPREAD: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lab, namespace: metallb-system}
spec: {addresses: [203.0.113.10-203.0.113.20]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lab, namespace: metallb-system}
spec: {ipAddressPools: [lab], interfaces: [eth0]}
---
apiVersion: meshlb.io/v1alpha1
kind: L2Policy
metadata: {name: spread}
spec:
  serviceSelectors: [{matchLabels: {spread: 'yes'}}]
  addressesPerService: 2
  nodePreferences: [{weight: 50, preference: {matchLabels: {rack: r1}}}]
  failback: NonRevertive
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, labels: {spread: 'yes'}}
spec: {type: LoadBalancer, ports: [{port: 80}]}
";
    let lab = Lab::build(&LabSpec::segment(3, 1, false)).unwrap();
    let nodes = lab.node_names();
    let rack = |node: &str| {
        let rack = if node == "node1" { "r1" } else { "r2" };
        vec!["--node-label".to_owned(), format!("rack={rack}")]
    };
    let agents = start_cluster_with_args(&lab, &nodes, "fast", SPREAD, rack).unwrap();
    let owners = || -> Vec<Option<String>> {
        ["203.0.113.10", "203.0.113.11"]
            .iter()
            .map(|ip| arping(&lab, ip).map(|mac| node_with_mac(&lab, &mac)))
            .collect()
    };
    wait("both addresses owned", || owners().iter().all(Option::is_some));
    let before = owners();
    assert_ne!(before[0], before[1], "distinct nodes: {before:?}");
    assert!(
        before.contains(&Some("node1".to_owned())),
        "rack r1 preferred: {before:?}"
    );

    let node1 = agents.iter().find(|a| a.node == "node1").unwrap();
    node1.process.kill().unwrap();
    wait("node1's address to move", || {
        let now = owners();
        now.iter().all(|o| o.as_deref().is_some_and(|n| n != "node1"))
    });
    let moved = owners();
    assert_ne!(moved[0], moved[1], "still on distinct nodes: {moved:?}");

    // node1 comes back with the same key and labels: non-revertive, so
    // nothing moves back.
    let keys = std::fs::read_to_string(&node1.key_file).unwrap();
    let _back = start_agent_with(&lab, "node1", &nodes, &keys, "fast", &rack("node1")).unwrap();
    wait("node1 to rejoin", || {
        agents
            .iter()
            .filter(|a| a.node != "node1")
            .all(|a| a.state.members().is_ok_and(|m| m.len() == 3))
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(owners(), moved, "a returning preferred node takes nothing back");
}

/// Deckhouse's Layer 2 class, as a Deckhouse user writes it: a
/// MetalLoadBalancerClass and a Service asking for three addresses. Each
/// address is answered by a distinct node; a crash of the node holding one
/// moves that address alone, to the node holding none of the others, and
/// the other two lose no probe.
#[test]
fn a_deckhouse_class_spreads_three_addresses_and_a_crash_moves_only_one() {
    use meshlb_chaos::probe::{Prober, RESPONDER_PORT};
    use std::time::Instant;

    const CLASS: &str = "
apiVersion: network.deckhouse.io/v1alpha1
kind: MetalLoadBalancerClass
metadata: {name: ingress}
spec:
  addressPool: [203.0.113.30-203.0.113.40]
  isDefault: false
  nodeSelector: {}
  l2: {interfaces: [eth0]}
  type: L2
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  annotations: {network.deckhouse.io/l2-load-balancer-external-ips-count: '3'}
spec:
  type: LoadBalancer
  loadBalancerClass: ingress
  ports: [{port: 80}]
";
    const ADDRESSES: [&str; 3] = ["203.0.113.30", "203.0.113.31", "203.0.113.32"];
    let lab = Lab::build(&LabSpec::segment(4, 1, false)).unwrap();
    let lab_binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_meshlb-lab"));
    let _responders = meshlb_chaos::scenario::start_responders(&lab, &lab_binary).unwrap();
    let nodes = lab.node_names();
    let _agents = meshlb_chaos::agent::start_cluster_with(&lab, &nodes, "fast", CLASS).unwrap();
    let owners = || -> Vec<Option<String>> {
        ADDRESSES
            .iter()
            .map(|ip| {
                let answerers = arp_answerers(&lab, ip);
                (answerers.len() == 1).then(|| node_with_mac(&lab, answerers.iter().next().unwrap()))
            })
            .collect()
    };
    wait("each address answered by one node", || {
        owners().iter().all(Option::is_some)
    });
    let before: Vec<String> = owners().into_iter().flatten().collect();
    let distinct: std::collections::BTreeSet<&String> = before.iter().collect();
    assert_eq!(distinct.len(), 3, "three addresses, three nodes: {before:?}");

    let probers: Vec<Prober> = ADDRESSES
        .iter()
        .map(|ip| {
            let target = std::net::SocketAddr::new(ip.parse().unwrap(), RESPONDER_PORT);
            Prober::start(&lab, "client1", target, Duration::from_millis(10)).unwrap()
        })
        .collect();
    for (prober, owner) in probers.iter().zip(&before) {
        prober
            .wait_for_answer(Instant::now(), Duration::from_secs(5), |n| n == owner)
            .unwrap();
    }
    let victim = before[1].clone();
    lab.crash(&victim).unwrap();
    let crashed_at = Instant::now();
    let successor = probers[1]
        .wait_for_answer(crashed_at, Duration::from_secs(10), |n| n != victim)
        .unwrap();
    assert!(
        !before.contains(&successor),
        "the address went to {successor}, which already held one of the others ({before:?})"
    );
    std::thread::sleep(Duration::from_secs(1));
    let settled = Instant::now();
    for (i, prober) in probers.into_iter().enumerate() {
        let log = prober.stop();
        let owner = if i == 1 { &successor } else { &before[i] };
        let after: Vec<&meshlb_chaos::probe::Probe> = log
            .probes
            .iter()
            .filter(|p| p.sent >= crashed_at && p.sent + Duration::from_millis(200) < settled)
            .collect();
        if i != 1 {
            let lost = after.iter().filter(|p| p.answers.is_empty()).count();
            assert_eq!(
                lost, 0,
                "{} lost {lost} probes when another address moved",
                ADDRESSES[i]
            );
            assert!(
                after.iter().all(|p| p.answered_by() == Some(owner.as_str())),
                "{} stayed with {owner}",
                ADDRESSES[i]
            );
        }
        assert!(log.duplicates().is_empty(), "{}: answered twice", ADDRESSES[i]);
    }
    let now: Vec<Option<String>> = owners();
    assert_eq!(
        now,
        [
            Some(before[0].clone()),
            Some(successor.clone()),
            Some(before[2].clone())
        ],
        "only the crashed node's address moved"
    );
}
