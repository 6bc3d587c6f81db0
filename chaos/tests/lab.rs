//! Lab tests: real namespaces, real processes, real faults. They need root
//! and the packages scripts/install-deps installs (keepalived, tcpdump,
//! tshark, nftables).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use meshlb_chaos::keepalived::VrrpSpec;
use meshlb_chaos::netns::{SweepScope, lab_namespaces, sweep};
use meshlb_chaos::probe::{ProbeLog, Prober, RESPONDER_PORT};
use meshlb_chaos::scenario::{NodeFault, keepalived_failover, start_responders};
use meshlb_chaos::splitbrain::SplitBrainDetector;
use meshlb_chaos::{Lab, LabSpec};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

const LAB_BINARY: &str = env!("CARGO_BIN_EXE_meshlb-lab");

fn spec(nodes: usize) -> LabSpec {
    LabSpec::segment(nodes, 1, true)
}

fn namespaces_of(lab_name: &str) -> Vec<String> {
    lab_namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{lab_name}-")))
        .collect()
}

fn target(lab: &Lab, host: &str, v6: bool) -> SocketAddr {
    let h = lab.host(host).unwrap();
    let ip: IpAddr = if v6 { h.ipv6.unwrap().into() } else { h.ipv4.into() };
    SocketAddr::new(ip, RESPONDER_PORT)
}

/// Probes `to` from `from` for `time`, returning the log.
fn probe_for(lab: &Lab, from: &str, to: SocketAddr, time: Duration) -> ProbeLog {
    let prober = Prober::start(lab, from, to, Duration::from_millis(10)).unwrap();
    std::thread::sleep(time);
    prober.stop()
}

fn answered_fraction(log: &ProbeLog) -> f64 {
    1.0 - log.lost() as f64 / log.probes.len().max(1) as f64
}

#[test]
fn hosts_reach_each_other_over_both_families_and_teardown_leaves_nothing() {
    let lab = Lab::build(&spec(2)).unwrap();
    let name = lab.name().to_owned();
    assert_eq!(namespaces_of(&name).len(), 4, "switch, two nodes, one client");
    let responders = start_responders(&lab, Path::new(LAB_BINARY)).unwrap();
    for v6 in [false, true] {
        let prober = Prober::start(&lab, "client1", target(&lab, "node2", v6), Duration::from_millis(10)).unwrap();
        let who = prober
            .wait_for_answer(Instant::now(), Duration::from_secs(5), |_| true)
            .unwrap();
        assert_eq!(who, "node2");
        prober.stop();
    }
    drop(lab);
    assert!(
        namespaces_of(&name).is_empty(),
        "namespaces left: {:?}",
        namespaces_of(&name)
    );
    for r in &responders {
        assert!(
            !r.is_running(),
            "responder {} (pid {}) survived teardown",
            r.host,
            r.pid()
        );
    }
}

#[test]
fn a_panicking_test_still_tears_its_lab_down_and_keeps_the_logs() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let lab = Lab::build(&spec(1)).unwrap();
        let _responders = start_responders(&lab, Path::new(LAB_BINARY)).unwrap();
        tx.send((lab.name().to_owned(), lab.log_dir().to_path_buf())).unwrap();
        panic!("a test failing with its lab up");
    });
    assert!(result.is_err());
    let (name, logs) = rx.recv().unwrap();
    assert!(namespaces_of(&name).is_empty());
    assert!(
        logs.join("node1-responder.log").exists(),
        "logs of a failed test are kept"
    );
    std::fs::remove_dir_all(logs).unwrap();
}

#[test]
fn sweep_removes_a_lab_that_was_never_torn_down() {
    let lab = Lab::build(&spec(1)).unwrap();
    let name = lab.name().to_owned();
    let logs = lab.log_dir().to_path_buf();
    let _ = start_responders(&lab, Path::new(LAB_BINARY)).map(std::mem::forget);
    std::mem::forget(lab); // as if the process had been killed
    assert_eq!(namespaces_of(&name).len(), 3);
    let removed = sweep(&SweepScope::Lab(name.clone())).unwrap();
    assert_eq!(removed.len(), 3);
    assert!(namespaces_of(&name).is_empty());
    std::fs::remove_dir_all(logs).unwrap();
}

#[test]
fn process_faults_take_effect() {
    let lab = Lab::build(&spec(2)).unwrap();
    let responders = start_responders(&lab, Path::new(LAB_BINARY)).unwrap();
    let to_node1 = target(&lab, "node1", false);
    assert!(answered_fraction(&probe_for(&lab, "client1", to_node1, Duration::from_millis(300))) > 0.9);

    responders[0].freeze().unwrap();
    let frozen = probe_for(&lab, "client1", to_node1, Duration::from_millis(300));
    assert_eq!(answered_fraction(&frozen), 0.0, "a frozen responder answers nothing");
    responders[0].thaw().unwrap();
    let thawed = probe_for(&lab, "client1", to_node1, Duration::from_millis(300));
    assert!(answered_fraction(&thawed) > 0.5, "answers resume after thaw");

    responders[0].terminate().unwrap();
    let status = responders[0]
        .wait_exit(Duration::from_secs(5))
        .unwrap()
        .expect("exits on SIGTERM");
    assert!(!status.success());
    responders[1].kill().unwrap();
    let status = responders[1]
        .wait_exit(Duration::from_secs(5))
        .unwrap()
        .expect("exits on SIGKILL");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn link_isolation_partition_and_loss_faults_take_effect() {
    let lab = Lab::build(&spec(2)).unwrap();
    let _responders = start_responders(&lab, Path::new(LAB_BINARY)).unwrap();
    let to_node1 = target(&lab, "node1", false);
    let to_node2 = target(&lab, "node2", false);
    let window = Duration::from_millis(400);
    assert!(answered_fraction(&probe_for(&lab, "client1", to_node1, window)) > 0.9);

    lab.link_down("node1").unwrap();
    assert_eq!(
        answered_fraction(&probe_for(&lab, "client1", to_node1, window)),
        0.0,
        "link down"
    );
    lab.link_up("node1").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        answered_fraction(&probe_for(&lab, "client1", to_node1, window)) > 0.5,
        "link up again"
    );

    lab.isolate("node1").unwrap();
    assert_eq!(
        answered_fraction(&probe_for(&lab, "client1", to_node1, window)),
        0.0,
        "isolated"
    );
    assert!(
        answered_fraction(&probe_for(&lab, "client1", to_node2, window)) > 0.9,
        "others unaffected"
    );
    lab.rejoin("node1").unwrap();
    assert!(
        answered_fraction(&probe_for(&lab, "client1", to_node1, window)) > 0.9,
        "rejoined"
    );

    lab.partition(&[&["node1"], &["node2"]]).unwrap();
    assert_eq!(
        answered_fraction(&probe_for(&lab, "node1", to_node2, window)),
        0.0,
        "across the partition"
    );
    assert!(
        answered_fraction(&probe_for(&lab, "client1", to_node1, window)) > 0.9,
        "client sees side 1"
    );
    assert!(
        answered_fraction(&probe_for(&lab, "client1", to_node2, window)) > 0.9,
        "client sees side 2"
    );
    lab.heal().unwrap();
    // node1's ARP entry for node2 went INCOMPLETE during the partition and
    // is retried once a second, so answers resume within a few seconds.
    let healed = Prober::start(&lab, "node1", to_node2, Duration::from_millis(10)).unwrap();
    assert_eq!(
        healed
            .wait_for_answer(Instant::now(), Duration::from_secs(5), |_| true)
            .unwrap(),
        "node2"
    );
    healed.stop();

    // 50% loss each way leaves about a quarter of the round trips.
    lab.set_loss("node1", 50.0).unwrap();
    let lossy = answered_fraction(&probe_for(&lab, "client1", to_node1, Duration::from_secs(2)));
    assert!(
        (0.05..0.6).contains(&lossy),
        "answered fraction under 50% loss: {lossy}"
    );
    lab.set_loss("node1", 0.0).unwrap();
    assert!(
        answered_fraction(&probe_for(&lab, "client1", to_node1, window)) > 0.9,
        "loss cleared"
    );
}

#[test]
fn the_prober_measures_a_keepalived_failover() {
    let vip = "203.0.113.10".parse().unwrap();
    let run = keepalived_failover(Path::new(LAB_BINARY), 3, &VrrpSpec::fast_timers(vip), NodeFault::Crash).unwrap();
    assert!(
        run.new_owner.is_some() && run.new_owner.as_deref() != Some(run.old_owner.as_str()),
        "{run:?}"
    );
    assert_eq!(
        run.vip_holders_after.len(),
        1,
        "one live master after the crash: {run:?}"
    );
    assert!(run.outage.lost > 0, "a crash loses probes: {run:?}");
    // Generous bounds: VRRPv3 at 100 ms detects in about 0.4 s.
    assert!(
        run.outage.window > Duration::from_millis(50) && run.outage.window < Duration::from_secs(10),
        "{run:?}"
    );
}

#[test]
fn the_split_brain_detector_fires_on_two_claimants_and_stays_quiet_with_one() {
    let lab = Lab::build(&spec(2)).unwrap();
    let _responders = start_responders(&lab, Path::new(LAB_BINARY)).unwrap();
    let v4: IpAddr = "203.0.113.20".parse().unwrap();
    let v6: IpAddr = "2001:db8:100::20".parse().unwrap();
    let claim = |node: &str| {
        lab.exec(node, "ip", &["addr", "add", "203.0.113.20/32", "dev", "eth0"])
            .unwrap();
        lab.exec(
            node,
            "ip",
            &["-6", "addr", "add", "2001:db8:100::20/128", "dev", "eth0", "nodad"],
        )
        .unwrap();
    };
    let resolve = |lab: &Lab| {
        lab.exec("client1", "ip", &["neigh", "flush", "dev", "eth0"]).unwrap();
        for ip in [v4, v6] {
            probe_for(
                lab,
                "client1",
                SocketAddr::new(ip, RESPONDER_PORT),
                Duration::from_millis(300),
            );
        }
    };
    let window = Duration::from_secs(1);

    claim("node1");
    let detector = SplitBrainDetector::start(&lab).unwrap();
    resolve(&lab);
    let one = detector.stop().unwrap();
    for ip in [v4, v6] {
        assert_eq!(one.max_claimants(ip, window), 1, "{ip}: {one:?}");
        assert_eq!(
            one.claimants(ip).into_iter().collect::<Vec<_>>(),
            vec![lab.host("node1").unwrap().mac]
        );
    }

    claim("node2");
    let detector = SplitBrainDetector::start(&lab).unwrap();
    resolve(&lab);
    let two = detector.stop().unwrap();
    for ip in [v4, v6] {
        assert_eq!(two.max_claimants(ip, window), 2, "{ip}: {two:?}");
    }
}

#[test]
fn serf_agents_detect_a_killed_member() {
    let lab = Lab::build(&LabSpec {
        nodes: 3,
        clients: 0,
        ipv6: false,
        ..LabSpec::default()
    })
    .unwrap();
    let nodes: Vec<String> = (1..=3).map(|i| format!("node{i}")).collect();
    let agents = meshlb_chaos::serf::start_cluster(&lab, &nodes).unwrap();
    let detection = meshlb_chaos::serf::kill_and_detect(&agents, "node3", Duration::from_secs(60)).unwrap();
    assert_eq!(detection.per_node.keys().collect::<Vec<_>>(), vec!["node1", "node2"]);
    let (first, all) = (detection.first().unwrap(), detection.all_agree().unwrap());
    // memberlist's LAN profile takes seconds; generous bounds only.
    assert!(
        first > Duration::from_millis(100) && all < Duration::from_secs(60),
        "{detection:?}"
    );
    assert!(first <= all);
}

fn median_rtt(log: &ProbeLog) -> Duration {
    let mut rtts: Vec<Duration> = log
        .probes
        .iter()
        .filter_map(|p| p.answers.first().map(|(at, _)| at.saturating_duration_since(p.sent)))
        .collect();
    assert!(!rtts.is_empty(), "no probe was answered");
    rtts.sort();
    rtts[rtts.len() / 2]
}

/// Answers that arrived before the answer to an earlier probe.
fn reordered_answers(log: &ProbeLog) -> usize {
    let mut arrivals: Vec<(Instant, u64)> = log
        .probes
        .iter()
        .filter_map(|p| p.answers.first().map(|(at, _)| (*at, p.seq)))
        .collect();
    arrivals.sort();
    arrivals.windows(2).filter(|w| w[1].1 < w[0].1).count()
}

#[test]
fn delay_and_reordering_take_effect() {
    use meshlb_chaos::delay::{Delay, Impairment};
    let lab = Lab::build(&LabSpec {
        nodes: 1,
        clients: 1,
        ipv6: true,
        ..LabSpec::default()
    })
    .unwrap();
    let _responders = start_responders(&lab, Path::new(LAB_BINARY)).unwrap();
    let to_node1 = target(&lab, "node1", false);
    let to_node1_v6 = target(&lab, "node1", true);
    let clean = median_rtt(&probe_for(&lab, "client1", to_node1, Duration::from_millis(300)));
    assert!(clean < Duration::from_millis(20), "clean RTT {clean:?}");

    let sixty = Impairment {
        delay: Duration::from_millis(60),
        jitter: Duration::ZERO,
        reorder_percent: 0.0,
    };
    let delay = Delay::start(&lab, "node1", &sixty, Path::new(LAB_BINARY)).unwrap();
    for to in [to_node1, to_node1_v6] {
        let log = probe_for(&lab, "client1", to, Duration::from_secs(1));
        let rtt = median_rtt(&log);
        assert!(
            rtt >= Duration::from_millis(55) && rtt < Duration::from_millis(300),
            "{to}: RTT {rtt:?}"
        );
        assert_eq!(reordered_answers(&log), 0, "a fixed delay keeps order");
    }
    delay.stop().unwrap();

    let shuffle = Impairment {
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(10),
        reorder_percent: 50.0,
    };
    let delay = Delay::start(&lab, "node1", &shuffle, Path::new(LAB_BINARY)).unwrap();
    let log = probe_for(&lab, "client1", to_node1, Duration::from_millis(1500));
    assert!(
        reordered_answers(&log) > 5,
        "reordering: {} inversions",
        reordered_answers(&log)
    );
    delay.stop().unwrap();
    let after = median_rtt(&probe_for(&lab, "client1", to_node1, Duration::from_millis(300)));
    assert!(
        after < Duration::from_millis(20),
        "RTT after removing the delay {after:?}"
    );
}
