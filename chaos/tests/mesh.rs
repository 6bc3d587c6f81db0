//! meshlb agents as real processes in the lab: membership converges after
//! a partition, a kill, a freeze and a graceful stop, and the minority side
//! of a partition loses its quorum. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use meshlb_chaos::agent::{MeshAgent, detect, start_cluster};
use meshlb_chaos::serf::now_secs;
use meshlb_chaos::wait::wait_for;
use meshlb_chaos::{Lab, LabSpec};

/// Generous: the fast profile detects in about a second; a loaded CI
/// machine gets ten.
const DETECTION_LIMIT: Duration = Duration::from_secs(10);

fn wait_until(what: &str, limit: Duration, done: impl FnMut() -> bool) {
    wait_for(limit, what, done).unwrap();
}

fn sees_all(agents: &[MeshAgent], count: usize) -> bool {
    agents.iter().all(|a| a.state.members().is_ok_and(|m| m.len() == count))
}

#[test]
fn membership_follows_partition_kill_freeze_and_graceful_stop() {
    let lab = Lab::build(&LabSpec::segment(4, 0, false)).unwrap();
    let nodes: Vec<String> = (1..=4).map(|i| format!("node{i}")).collect();
    let mut agents = start_cluster(&lab, &nodes, "fast").unwrap();

    // Partition node4 away: three of four keep quorum, node4 loses it.
    // (A killed member stays in the quorum reference for `forget_after`, so
    // this runs while all four live.)
    let node4 = agents.iter().find(|a| a.node == "node4").unwrap();
    lab.partition(&[&["node1", "node2", "node3"], &["node4"]]).unwrap();
    wait_until("the partition to be seen", DETECTION_LIMIT, || {
        agents
            .iter()
            .filter(|a| a.node != "node4")
            .all(|a| a.state.members().is_ok_and(|m| m.len() == 3))
            && node4.state.members().is_ok_and(|m| m.len() == 1)
    });
    wait_until("node4 to be fenced", DETECTION_LIMIT, || {
        !node4.state.has_quorum().unwrap_or(true)
    });
    assert!(
        agents
            .iter()
            .filter(|a| a.node != "node4")
            .all(|a| a.state.has_quorum().unwrap())
    );
    lab.heal().unwrap();
    wait_until("membership to converge after healing", Duration::from_secs(30), || {
        sees_all(&agents, 4)
    });
    wait_until("node4 to regain quorum", DETECTION_LIMIT, || {
        node4.state.has_quorum().unwrap_or(false)
    });

    // Kill: every survivor reports it down.
    let killed = detect(&agents, "node4", DETECTION_LIMIT, |a| a.process.kill()).unwrap();
    assert_eq!(killed.per_node.len(), 3);
    agents.retain(|a| a.node != "node4");
    wait_until("three members everywhere", DETECTION_LIMIT, || sees_all(&agents, 3));

    // Freeze: reported down; thawed, it rejoins with a renewed identity.
    let node1 = agents.iter().find(|a| a.node == "node1").unwrap();
    let before_freeze = node1.state.identity_of("node3").unwrap().expect("node1 knows node3");
    let frozen = detect(&agents, "node3", DETECTION_LIMIT, |a| a.process.freeze()).unwrap();
    assert_eq!(frozen.per_node.len(), 2);
    let thawed_at = now_secs();
    agents
        .iter()
        .find(|a| a.node == "node3")
        .unwrap()
        .process
        .thaw()
        .unwrap();
    wait_until("node3 back after thawing", Duration::from_secs(20), || {
        sees_all(&agents, 3)
    });
    for a in agents.iter().filter(|a| a.node != "node3") {
        let now = a.state.identity_of("node3").unwrap().expect("node3 is back");
        assert!(
            now > before_freeze,
            "{} readmitted node3 without renewing its identity: {before_freeze:?} then {now:?}",
            a.node
        );
    }
    // Its own report of the rejoin is written by another task than the
    // members it sees, and the others can write theirs first: wait for it.
    let node3 = agents.iter().find(|a| a.node == "node3").unwrap();
    wait_until("the thawed agent to report its rejoin", DETECTION_LIMIT, || {
        node3.state.event_at("rejoined", "node3", thawed_at).is_some()
    });

    // Graceful stop: the others see it leave, and it exits cleanly.
    let left = detect(&agents, "node1", DETECTION_LIMIT, |a| a.process.terminate()).unwrap();
    assert_eq!(left.per_node.len(), 2);
    let status = node1.process.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: clean exit, got {status:?}"
    );
}

/// Cluster keys rotate in running agents without a member going down:
/// add the new key as a secondary everywhere, make it primary node by node
/// (a mixed cluster), drop the old key. Afterwards an agent holding only the
/// old key is shut out, and let in once it gets the new one; a key file that
/// does not parse leaves the running keys in place.
#[test]
fn cluster_keys_rotate_without_downtime() {
    use meshlb_chaos::agent::{random_key, start_agent};
    let lab = Lab::build(&LabSpec::segment(4, 0, false)).unwrap();
    // node4 joins later.
    let three: Vec<String> = lab.node_names().into_iter().take(3).collect();
    let agents = start_cluster(&lab, &three, "fast").unwrap();
    let old = std::fs::read_to_string(&agents[0].key_file).unwrap();
    let old = old.trim();
    let new = random_key(2).unwrap();
    // An agent re-reads its key file every 2 s: each step waits out two polls.
    let settle = || std::thread::sleep(Duration::from_secs(5));
    let rotation_from = now_secs();

    for a in &agents {
        a.set_keys(&format!("{old}\n{new}\n")).unwrap();
    }
    settle();
    for a in &agents {
        a.set_keys(&format!("{new}\n{old}\n")).unwrap();
        settle();
    }
    for a in &agents {
        a.set_keys(&format!("{new}\n")).unwrap();
    }
    settle();
    // A broken key file on node1 changes nothing.
    agents[0].set_keys("2:not-hex\n").unwrap();
    settle();
    let rotation_until = now_secs();
    assert!(sees_all(&agents, 3), "every member stayed through the rotation");
    for a in &agents {
        for m in &three {
            assert_eq!(
                a.state.events_between("member-down", m, rotation_from, rotation_until),
                0,
                "{} saw {m} go down during the rotation",
                a.node
            );
        }
    }

    // node4 with only the retired key: its packets are refused, it sees
    // no one and no one sees it.
    let node4 = start_agent(&lab, "node4", &three, &format!("{old}\n"), "fast").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert!(sees_all(&agents, 3), "an agent with the retired key was let in");
    assert_eq!(node4.state.members().unwrap(), vec!["node4".to_owned()]);
    // Given the new key while running, it joins.
    node4.set_keys(&format!("{new}\n")).unwrap();
    wait_until("node4 to join with the new key", Duration::from_secs(20), || {
        sees_all(&agents, 4) && node4.state.members().is_ok_and(|m| m.len() == 4)
    });
}
