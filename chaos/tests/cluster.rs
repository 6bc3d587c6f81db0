//! meshlb on a real cluster in the lab ([`meshlb_chaos::cluster`]):
//! containerd, a kubelet and kube-proxy on every node, the scheduler and
//! the controller manager beside the API server. meshlb is installed as a
//! user installs it (`helm install` of the chart, its image on the
//! nodes), and a client outside the cluster reaches real pods through a
//! LoadBalancer Service's address: ARP to the node meshlb chose, then
//! kube-proxy to the pod. Needs root, containerd and runc
//! (scripts/install-deps) and the nodes' binaries (scripts/kube-testenv
//! --node builds them).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use meshlb_chaos::cluster::{Announcer, Cluster, ClusterFault, settled_arp_owner};
use meshlb_chaos::kube_demo::{echo_address, reported_owner};
use meshlb_chaos::probe::{Prober, RESPONDER_PORT, arp_answerers};
use meshlb_chaos::splitbrain::SplitBrainDetector;
use meshlb_chaos::wait::wait_for;
use meshlb_chaos::{Lab, LabSpec};

/// Probes `address` from the client for `duration` once a probe is
/// answered by a pod on `node`; the pods (`pod@node`) that answered, and
/// how many probes went unanswered after the first answer.
fn answers_from(lab: &Lab, address: IpAddr, node: &str, duration: Duration) -> (BTreeSet<String>, usize) {
    let target = SocketAddr::new(address, RESPONDER_PORT);
    let prober = Prober::start(lab, "client1", target, Duration::from_millis(10)).unwrap();
    let suffix = format!("@{node}");
    prober
        .wait_for_answer(Instant::now(), Duration::from_secs(60), |answer| {
            answer.ends_with(&suffix)
        })
        .unwrap();
    let since = Instant::now();
    std::thread::sleep(duration);
    let log = prober.stop();
    let after: Vec<_> = log.probes.iter().filter(|p| p.sent >= since).collect();
    let pods = after
        .iter()
        .filter_map(|p| p.answered_by())
        .map(str::to_owned)
        .collect();
    let lost = after.iter().filter(|p| p.answers.is_empty()).count();
    (pods, lost)
}

/// The node whose MAC answers the client's ARP requests for `address`.
fn arp_owner(lab: &Lab, address: IpAddr) -> String {
    let IpAddr::V4(v4) = address else {
        panic!("an IPv4 address");
    };
    let macs = arp_answerers(lab, "client1", v4);
    assert_eq!(macs.len(), 1, "one node answers ARP for {address}: {macs:?}");
    lab.hosts()
        .iter()
        .find(|h| macs.contains(&h.mac))
        .map(|h| h.name.clone())
        .unwrap()
}

/// A lab as `spec` says, with a control-plane host: a cluster of real
/// nodes with meshlb installed from its chart under image tag `lab` (the
/// image imported under `tags` too, for an upgrade), and the examples'
/// Layer 2 pool applied when `layer2`. The cluster first: it is dropped
/// before the lab.
fn meshlb_on_real_nodes(spec: LabSpec, tags: &[&str], layer2: bool) -> (Cluster, Lab) {
    let lab = Lab::build(&LabSpec {
        control_plane: true,
        ..spec
    })
    .unwrap();
    let cluster = Cluster::start(&lab).unwrap();
    let mut all = vec!["lab"];
    all.extend_from_slice(tags);
    cluster.import_meshlb_image(&all).unwrap();
    cluster.install_meshlb("lab", &[]).unwrap();
    if layer2 {
        cluster
            .env()
            .apply("pools.yaml", include_str!("../../examples/layer2/pools.yaml"))
            .unwrap();
    }
    (cluster, lab)
}

/// The whole path a user's install takes, on two real nodes: the chart's
/// DaemonSet runs a Ready agent on each node under exactly the chart's
/// securityContext; a Deployment's pod behind a LoadBalancer Service gets
/// an address from the pool, announced by one node; with
/// externalTrafficPolicy Cluster the client reaches the pod wherever it
/// runs (on the other node: kube-proxy forwards across); with Local the
/// address moves to the node that has the pod, and follows the pod when
/// it moves, the client probing across (losing at most a few seconds'
/// worth; the figure is printed).
#[test]
fn meshlb_installed_with_helm_serves_pods_through_kube_proxy() {
    let (cluster, lab) = meshlb_on_real_nodes(LabSpec::segment(2, 1, false), &[], true);
    let env = cluster.env();

    // One agent per node, Ready, never restarted, with the chart's
    // securityContext as the runtime got it.
    let agents = cluster
        .agent_pods(
            Announcer::Meshlb,
            None,
            "{.spec.nodeName} {.status.containerStatuses[0].ready} \
             {.status.containerStatuses[0].restartCount} {.spec.containers[0].securityContext}{\"\\n\"}",
        )
        .unwrap();
    let nodes: BTreeSet<&str> = agents.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(nodes, BTreeSet::from(["node1", "node2"]), "{agents}");
    for line in agents.lines() {
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(fields[1..3], ["true", "0"], "ready, no restart: {line}");
        let context: serde_json::Value = serde_json::from_str(fields[3]).unwrap();
        assert_eq!(context["readOnlyRootFilesystem"], true, "{line}");
        assert_eq!(context["allowPrivilegeEscalation"], false, "{line}");
        assert_eq!(context["capabilities"]["drop"], serde_json::json!(["ALL"]), "{line}");
        assert_eq!(
            context["capabilities"]["add"],
            serde_json::json!(["NET_RAW", "NET_BIND_SERVICE"]),
            "{line}"
        );
    }

    cluster.deploy_echo("shop", "echo", 1, "Cluster").unwrap();
    let address = IpAddr::V4(echo_address(env).unwrap());
    // The pod's network namespace is mounted in its node's state, which
    // the cluster's teardown removes, not in /run/netns.
    let state_dirs: Vec<std::path::PathBuf> = cluster.nodes().iter().map(|n| n.state_dir().to_owned()).collect();
    let pod_namespaces = |dirs: &[std::path::PathBuf]| -> usize {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|point| point.contains("/netns/") && dirs.iter().any(|d| point.starts_with(&*d.to_string_lossy())))
            .count()
    };
    assert!(
        pod_namespaces(&state_dirs) >= 1,
        "the echo pod's network namespace in its node's state"
    );
    let mut owner = String::new();
    wait_for(Duration::from_secs(60), "a ServiceL2Status naming one node", || {
        owner = reported_owner(env).unwrap_or_default();
        owner == "node1" || owner == "node2"
    })
    .unwrap();
    assert_eq!(arp_owner(&lab, address), owner, "the node the status names answers ARP");

    // Cluster: the pod on the node that does not own the address.
    let other = if owner == "node1" { "node2" } else { "node1" };
    let pods = cluster.pin_deployment("shop", "echo", other).unwrap();
    let (answered, _) = answers_from(&lab, address, other, Duration::from_secs(1));
    let expected: BTreeSet<String> = pods.iter().map(|p| format!("{p}@{other}")).collect();
    assert_eq!(answered, expected, "the pod on {other}, through {owner}'s kube-proxy");
    assert_eq!(
        arp_owner(&lab, address),
        owner,
        "Cluster keeps the address where it was"
    );

    // Local: only a node with a ready endpoint may announce, so the
    // address goes to the pod's node; and follows the pod.
    env.run_kubectl(&[
        "patch",
        "service",
        "echo",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"spec":{"externalTrafficPolicy":"Local"}}"#,
    ])
    .unwrap();
    let target = SocketAddr::new(address, RESPONDER_PORT);
    for node in [other, owner.as_str()] {
        // The client probes across the pod's move.
        let prober = Prober::start(&lab, "client1", target, Duration::from_millis(10)).unwrap();
        prober
            .wait_for_answer(Instant::now(), Duration::from_secs(60), |_| true)
            .unwrap();
        let pods = cluster.pin_deployment("shop", "echo", node).unwrap();
        wait_for(Duration::from_secs(60), "the status to name the pod's node", || {
            reported_owner(env).unwrap_or_default() == node
        })
        .unwrap();
        let suffix = format!("@{node}");
        prober
            .wait_for_answer(Instant::now(), Duration::from_secs(60), |a| a.ends_with(&suffix))
            .unwrap();
        let log = prober.stop();
        let mut longest = 0;
        let mut run = 0;
        for probe in log.probes.iter().skip_while(|p| p.answers.is_empty()) {
            run = if probe.answers.is_empty() { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        eprintln!("Local: the pod moved to {node}; longest gap {longest} probes");
        assert!(
            longest < 500,
            "Local: {longest} probes in a row lost moving the pod to {node}"
        );
        let (answered, _) = answers_from(&lab, address, node, Duration::from_secs(1));
        let expected: BTreeSet<String> = pods.iter().map(|p| format!("{p}@{node}")).collect();
        assert_eq!(answered, expected, "Local: the pod on {node}");
        assert_eq!(arp_owner(&lab, address), node, "Local: {node} answers ARP");
    }
    // What the killed tasks would leave outside the nodes' state: the
    // shims' sockets and the CNI results cached under the sandboxes' ids.
    let mut outside = Vec::new();
    for dir in &state_dirs {
        let tasks = dir.join("containerd-state/io.containerd.runtime.v2.task/k8s.io");
        for task in std::fs::read_dir(tasks).unwrap().flatten() {
            let id = task.file_name().to_string_lossy().into_owned();
            let address = std::fs::read_to_string(task.path().join("address")).unwrap();
            outside.push(std::path::PathBuf::from(address.trim().trim_start_matches("unix://")));
            for result in std::fs::read_dir("/var/lib/cni/results").unwrap().flatten() {
                if result.file_name().to_string_lossy().contains(&id) {
                    outside.push(result.path());
                }
            }
        }
    }
    assert!(outside.iter().any(|p| p.starts_with("/var/lib/cni")), "{outside:?}");
    drop(cluster);
    assert_eq!(pod_namespaces(&state_dirs), 0, "the pods' network namespaces are gone");
    let left: Vec<_> = outside.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "the nodes left {left:?}");
}

/// A DaemonSet rolling update by `helm upgrade` with a new image tag, as
/// a user upgrades: the kubelets stop each node's agent (SIGTERM: its
/// graceful leave hands its addresses over) and start the new one, node
/// by node, while a client probes a Service every 10 ms. Not one probe
/// may be lost across the whole roll, and no two nodes may claim the
/// address at once.
#[test]
fn a_rolling_upgrade_of_the_agents_loses_no_probe() {
    let (cluster, lab) = meshlb_on_real_nodes(LabSpec::segment(3, 1, false), &["lab-next"], true);
    let env = cluster.env();
    cluster.deploy_echo("shop", "echo", 3, "Cluster").unwrap();
    let address = echo_address(env).unwrap();
    let owner = meshlb_chaos::cluster::settled_arp_owner(&lab, address).unwrap();

    let detector = SplitBrainDetector::start(&lab).unwrap();
    let target = SocketAddr::new(address.into(), RESPONDER_PORT);
    let prober = Prober::start(&lab, "client1", target, Duration::from_millis(10)).unwrap();
    prober
        .wait_for_answer(Instant::now(), Duration::from_secs(30), |_| true)
        .unwrap();
    let started = Instant::now();
    cluster.install_meshlb("lab-next", &[]).unwrap();
    let rolled = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let log = prober.stop();
    let claims = detector.stop().unwrap();

    let images = cluster
        .agent_pods(Announcer::Meshlb, None, "{.spec.containers[0].image} ")
        .unwrap();
    let images: Vec<&str> = images.split_whitespace().collect();
    assert_eq!(images, ["localhost/meshlb-agent:lab-next"; 3], "every agent rolled");
    let probes: Vec<_> = log.probes.iter().skip_while(|p| p.answers.is_empty()).collect();
    let lost: Vec<u64> = probes.iter().filter(|p| p.answers.is_empty()).map(|p| p.seq).collect();
    let claimants: Vec<String> = claims
        .claims
        .iter()
        .filter(|c| c.ip == IpAddr::V4(address))
        .map(|c| format!("{:.3} {}", c.at, c.mac))
        .collect();
    eprintln!(
        "roll of {:.1} s from owner {owner}: {} probes, {} lost; claims:\n{}",
        rolled.as_secs_f64(),
        probes.len(),
        lost.len(),
        claimants.join("\n")
    );
    assert!(probes.len() > 500, "the client probed across the roll");
    assert!(lost.is_empty(), "probes lost across the roll: {lost:?}");
    assert!(
        claims.max_claimants(IpAddr::V4(address), Duration::from_millis(100)) <= 1,
        "two nodes claimed {address} at once:\n{}",
        claimants.join("\n")
    );
}

/// What the client saw while `replace` replaced the Service's only pod.
#[derive(Debug)]
struct PodReplaced {
    /// The pod that answered before (`pod@node`), and the one after.
    before: String,
    after: String,
    /// Probes lost once the first was answered.
    lost: usize,
    /// Of those, the ones lost while the old pod still answered or once
    /// the new one did, not in the gap between the two.
    lost_outside_gap: usize,
}

/// Probes `address` while `replace` replaces the Service's only pod (it
/// returns once the replacement runs, or at once), until another pod
/// answers. The address must stay with `owner` all along: no other MAC
/// claims it on the segment, and `owner` answers ARP for it after.
fn only_pod_replaced(lab: &Lab, address: IpAddr, owner: &str, replace: impl FnOnce(&str)) -> PodReplaced {
    let prober = Prober::start(
        lab,
        "client1",
        SocketAddr::new(address, RESPONDER_PORT),
        Duration::from_millis(10),
    )
    .unwrap();
    let before = prober
        .wait_for_answer(Instant::now(), Duration::from_secs(30), |_| true)
        .unwrap();
    let detector = SplitBrainDetector::start(lab).unwrap();
    replace(&before);
    let after = prober
        .wait_for_answer(Instant::now(), Duration::from_secs(90), |pod| pod != before)
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let log = prober.stop();
    let claims = detector.stop().unwrap();
    let owner_mac = lab.host(owner).unwrap().mac;
    let claimants = claims.claimants(address);
    assert!(
        claimants.iter().all(|mac| *mac == owner_mac),
        "only {owner} may claim {address} while the pod is replaced: {:?}; answers: {:?}",
        claims.claims,
        log.answer_runs()
    );
    assert_eq!(arp_owner(lab, address), owner);
    let probes: Vec<_> = log.probes.iter().skip_while(|p| p.answers.is_empty()).collect();
    let last_before = probes
        .iter()
        .rposition(|p| p.answered_by() == Some(before.as_str()))
        .unwrap();
    let first_after = probes
        .iter()
        .position(|p| p.answered_by() == Some(after.as_str()))
        .unwrap();
    let lost: Vec<usize> = (0..probes.len()).filter(|&i| probes[i].answers.is_empty()).collect();
    PodReplaced {
        lost_outside_gap: lost.iter().filter(|&&i| i < last_before || i > first_after).count(),
        lost: lost.len(),
        before,
        after,
    }
}

/// Faults on real nodes, one cluster for all (each starts from a settled
/// owner). First the Service's only pod is moved under the client's
/// prober, by a rollout (the new pod Ready before the old one stops) and
/// by deleting it (nothing serves until its replacement is Ready): what
/// the client loses is the workload's own gap, not meshlb's: the owner
/// keeps the address all along, and no probe is lost while either pod
/// answers. meshlb's agent SIGKILLed on the owner: the kubelet restarts its
/// container, and meanwhile the node's kube-proxy goes on forwarding what
/// reaches it, so the client loses little or nothing whether another node
/// takes the address or the restarted agent is back first; one node
/// answers at the end. Then, with the control-plane host cut off (the API
/// server, scheduler and controller manager away), the owner's node
/// crashes with the Service's pod elsewhere (every process and pod on it,
/// its link cut): another node takes the address within generous bounds,
/// the mesh deciding alone; once the API server is reachable again, the
/// Service's ServiceL2Status names the successor alone. No probe is ever
/// answered twice.
#[test]
fn the_agent_killed_and_the_node_crashed_move_the_address() {
    let (cluster, lab) = meshlb_on_real_nodes(LabSpec::segment(3, 1, false), &[], true);
    let env = cluster.env();
    cluster.deploy_echo("shop", "echo", 1, "Cluster").unwrap();
    let address = echo_address(env).unwrap();

    let owner = settled_arp_owner(&lab, address).unwrap();
    let rolled = only_pod_replaced(&lab, address.into(), &owner, |pod| {
        let elsewhere = ["node1", "node2", "node3"]
            .into_iter()
            .find(|n| !pod.ends_with(&format!("@{n}")))
            .unwrap();
        cluster.pin_deployment("shop", "echo", elsewhere).unwrap();
    });
    let deleted = only_pod_replaced(&lab, address.into(), &owner, |pod| {
        let name = pod.split('@').next().unwrap();
        env.run_kubectl(&["delete", "pod", "-n", "shop", name, "--wait=false"])
            .unwrap();
    });
    for (how, replaced) in [("rolled to another node", &rolled), ("deleted", &deleted)] {
        eprintln!(
            "the only pod {how}: {} then {} answered, {} probes lost in between",
            replaced.before, replaced.after, replaced.lost
        );
        assert_eq!(replaced.lost_outside_gap, 0, "{replaced:?}");
    }

    let killed = cluster
        .fail_owner(&lab, address, Announcer::Meshlb, ClusterFault::AgentKilled)
        .unwrap();
    eprintln!("agent killed: {killed:?}");
    assert_eq!(killed.vip_holders_after.len(), 1, "one owner after: {killed:?}");
    assert!(killed.outage.window < Duration::from_secs(10), "{killed:?}");
    assert_eq!(killed.duplicate_answers, 0, "{killed:?}");

    // The pod away from the owner, so the crash takes only meshlb's part.
    let owner = meshlb_chaos::cluster::settled_arp_owner(&lab, address).unwrap();
    let away = ["node1", "node2", "node3"].into_iter().find(|n| *n != owner).unwrap();
    cluster.pin_deployment("shop", "echo", away).unwrap();
    lab.isolate("control").unwrap();
    let crashed = cluster.fail_owner(&lab, address, Announcer::Meshlb, ClusterFault::NodeCrash);
    lab.rejoin("control").unwrap();
    let crashed = crashed.unwrap();
    eprintln!("node crashed, the API server away: {crashed:?}");
    assert_eq!(crashed.old_owner, owner);
    assert!(
        crashed.new_owner.is_some(),
        "another node took the address: {crashed:?}"
    );
    assert!(crashed.outage.window < Duration::from_secs(10), "{crashed:?}");
    assert!(
        crashed.outage.lost > 0,
        "a crash costs probes until the next owner claims: {crashed:?}"
    );
    assert_eq!(crashed.duplicate_answers, 0, "{crashed:?}");
    let successor = crashed.vip_holders_after[0].clone();
    let mut named = String::new();
    wait_for(
        Duration::from_secs(60),
        "the status to name the successor alone, the API server back",
        || {
            named = reported_owner(env).unwrap_or_default();
            named == successor
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {named:?}"));
}

/// The BGP mode's rolling upgrade: bird2 peers with the three nodes and
/// installs the Service's address with a path through each (ECMP); a
/// client behind the router probes it every 10 ms while `helm upgrade`
/// rolls the agents. Each stopping agent drains its sessions (RFC 8326
/// graceful shutdown, then the withdrawal), the router moves the flow to
/// another node, whose kube-proxy takes it to a pod; not one probe may be
/// lost, and every node's path must be back at the end.
#[test]
fn a_rolling_upgrade_in_bgp_mode_loses_no_probe() {
    use meshlb_chaos::router::{NODE_ASN, ROUTER_ASN, Router, RouterKind, kernel_routes};
    let spec = LabSpec {
        router: true,
        remote_client: true,
        ..LabSpec::segment(3, 0, false)
    };
    let (cluster, lab) = meshlb_on_real_nodes(spec, &["lab-next"], false);
    let env = cluster.env();
    let _router = Router::start(&lab, RouterKind::Bird).unwrap();
    let router_address = lab.host("router").unwrap().ipv4;
    let config = format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: routed, namespace: metallb-system}}\n\
         spec: {{addresses: [203.0.113.20/32]}}\n---\n\
         apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: router, namespace: metallb-system}}\n\
         spec: {{myASN: {NODE_ASN}, peerASN: {ROUTER_ASN}, peerAddress: '{router_address}', holdTime: 9s}}\n---\n\
         apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: routed, namespace: metallb-system}}\n\
         spec: {{ipAddressPools: [routed]}}\n"
    );
    env.apply("bgp.yaml", &config).unwrap();
    cluster.deploy_echo("shop", "echo", 3, "Cluster").unwrap();
    let address = echo_address(env).unwrap();
    let prefix = format!("{address}/32");
    let paths = || {
        kernel_routes(&lab, "router")
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.prefix == prefix)
            .map_or(0, |r| r.next_hops.len())
    };
    wait_for(Duration::from_secs(60), "a path through every node", || paths() == 3).unwrap();

    let target = SocketAddr::new(address.into(), RESPONDER_PORT);
    let prober = Prober::start(&lab, "remote", target, Duration::from_millis(10)).unwrap();
    prober
        .wait_for_answer(Instant::now(), Duration::from_secs(30), |_| true)
        .unwrap();
    let started = Instant::now();
    // The fewest paths the router had while the agents rolled: each
    // stopping agent withdraws its node's.
    let rolling = std::sync::atomic::AtomicBool::new(true);
    let fewest = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut fewest = usize::MAX;
            while rolling.load(std::sync::atomic::Ordering::Relaxed) {
                fewest = fewest.min(paths());
                std::thread::sleep(Duration::from_millis(100));
            }
            fewest
        });
        cluster.install_meshlb("lab-next", &[]).unwrap();
        rolling.store(false, std::sync::atomic::Ordering::Relaxed);
        sampler.join().unwrap()
    });
    let rolled = started.elapsed();
    assert_eq!(fewest, 2, "one node at a time withdrew its path");
    wait_for(Duration::from_secs(60), "every node's path back", || paths() == 3).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let log = prober.stop();
    let probes: Vec<_> = log.probes.iter().skip_while(|p| p.answers.is_empty()).collect();
    let lost: Vec<u64> = probes.iter().filter(|p| p.answers.is_empty()).map(|p| p.seq).collect();
    eprintln!(
        "BGP roll of {:.1} s: {} probes, {} lost",
        rolled.as_secs_f64(),
        probes.len(),
        lost.len()
    );
    assert!(probes.len() > 500, "the client probed across the roll");
    assert!(lost.is_empty(), "probes lost across the roll: {lost:?}");
}

/// Node states MetalLB users ask about (MetalLB #3116, #621, #2677), on one
/// cluster, a client probing all along; the Service's pod runs on a fourth
/// node that never announces (it is labelled out of external load
/// balancers), so only meshlb's part changes. The owner's kubelet dies
/// until its Node is NotReady and tainted unreachable: its network,
/// kube-proxy and agent are fine, so the address stays and nothing is
/// lost (readiness is not consulted, as in MetalLB). `kubectl drain` of
/// the owner (cordon, then evict all but DaemonSets' pods) moves nothing
/// either: meshlb's agent is a DaemonSet's pod and stays. The owner
/// labelled out of external load balancers (what to do before
/// `kubectl drain`, README): the address moves, hitless. The next owner tainted out of service (a node
/// declared shut down): it moves again, hitless. Not one probe is lost
/// across the three.
#[test]
fn node_states_decide_who_announces() {
    let (mut cluster, lab) = meshlb_on_real_nodes(LabSpec::segment(4, 1, false), &[], true);
    let env = cluster.env();
    let exclude = "node.kubernetes.io/exclude-from-external-load-balancers=";
    env.run_kubectl(&["label", "node", "node4", exclude]).unwrap();
    cluster.deploy_echo("shop", "echo", 1, "Cluster").unwrap();
    cluster.pin_deployment("shop", "echo", "node4").unwrap();
    let address = echo_address(env).unwrap();
    let owner = settled_arp_owner(&lab, address).unwrap();

    let target = SocketAddr::new(address.into(), RESPONDER_PORT);
    let prober = Prober::start(&lab, "client1", target, Duration::from_millis(10)).unwrap();
    prober
        .wait_for_answer(Instant::now(), Duration::from_secs(30), |_| true)
        .unwrap();

    cluster.stop_kubelet(&owner).unwrap();
    wait_for(
        Duration::from_secs(180),
        "the owner NotReady and tainted unreachable",
        || {
            cluster.node_state(&owner).is_ok_and(|(ready, taints)| {
                ready != "True" && taints.iter().any(|t| t == "node.kubernetes.io/unreachable")
            })
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        settled_arp_owner(&lab, address).unwrap(),
        owner,
        "NotReady moves nothing"
    );
    cluster.start_kubelet(&lab, &owner).unwrap();
    wait_for(Duration::from_secs(120), "the owner Ready again", || {
        cluster.node_state(&owner).is_ok_and(|(ready, _)| ready == "True")
    })
    .unwrap();
    let env = cluster.env();

    env.run_kubectl(&[
        "drain",
        &owner,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=60s",
    ])
    .unwrap();
    assert!(
        cluster
            .node_state(&owner)
            .unwrap()
            .1
            .iter()
            .any(|t| t == "node.kubernetes.io/unschedulable"),
        "drained means cordoned"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        settled_arp_owner(&lab, address).unwrap(),
        owner,
        "a drain moves nothing"
    );

    env.run_kubectl(&["label", "node", &owner, exclude]).unwrap();
    let mut next = String::new();
    wait_for(Duration::from_secs(60), "another node to take the address", || {
        next = settled_arp_owner(&lab, address).unwrap_or_default();
        !next.is_empty() && next != owner
    })
    .unwrap();
    let last = ["node1", "node2", "node3"]
        .into_iter()
        .find(|n| *n != owner && *n != next)
        .unwrap();
    env.run_kubectl(&[
        "taint",
        "node",
        &next,
        "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute",
    ])
    .unwrap();
    wait_for(Duration::from_secs(60), "the last node to take the address", || {
        settled_arp_owner(&lab, address).is_ok_and(|n| n == last)
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let log = prober.stop();
    let probes: Vec<_> = log.probes.iter().skip_while(|p| p.answers.is_empty()).collect();
    let lost: Vec<u64> = probes.iter().filter(|p| p.answers.is_empty()).map(|p| p.seq).collect();
    eprintln!(
        "{owner} NotReady, drained, labelled out; {next} out of service; {last} serves: {} probes, {} lost",
        probes.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "probes lost: {lost:?}");
}

/// MetalLB as its users install it, on real nodes: its native manifest
/// from its module applied unchanged, its images (packed from the
/// binaries built from the module) under its own names on the nodes. Its
/// controller and a speaker on every node run Ready under the manifest's
/// securityContext; its webhooks admit the examples' pool; its controller
/// gives the echo Service an address; one speaker answers ARP and the
/// client reaches the pod through kube-proxy; the owner's node crashes
/// (the pod elsewhere) and another speaker takes the address (the
/// figure is printed; `bench l2-failover --real-nodes` measures it).
#[test]
fn metallb_from_its_own_manifest_runs_as_real_pods() {
    let lab = Lab::build(&LabSpec {
        control_plane: true,
        ..LabSpec::segment(3, 1, false)
    })
    .unwrap();
    let cluster = Cluster::start(&lab).unwrap();
    let env = cluster.env();
    cluster.install_metallb().unwrap();

    let speakers = cluster
        .agent_pods(
            Announcer::Metallb,
            None,
            "{.spec.nodeName} {.status.containerStatuses[0].ready} {.spec.containers[0].image} \
             {.spec.containers[0].securityContext.capabilities.add}{\"\\n\"}",
        )
        .unwrap();
    let nodes: BTreeSet<&str> = speakers.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(nodes, BTreeSet::from(["node1", "node2", "node3"]), "{speakers}");
    for line in speakers.lines() {
        assert!(
            line.ends_with(&format!(
                " true quay.io/metallb/speaker:{} [\"NET_RAW\"]",
                meshlb_chaos::metallb::VERSION
            )),
            "a Ready speaker, MetalLB's image, NET_RAW only: {line}"
        );
    }

    meshlb_chaos::metallb::apply_when_admitted(env, "pools.yaml", include_str!("../../examples/layer2/pools.yaml"))
        .unwrap();
    cluster.deploy_echo("shop", "echo", 1, "Cluster").unwrap();
    let address = echo_address(env).unwrap();
    let owner = settled_arp_owner(&lab, address).unwrap();
    let away = ["node1", "node2", "node3"].into_iter().find(|n| *n != owner).unwrap();
    cluster.pin_deployment("shop", "echo", away).unwrap();
    let (pods, lost) = answers_from(&lab, IpAddr::V4(address), away, Duration::from_secs(1));
    assert_eq!(pods.len(), 1, "the one pod answers: {pods:?}");
    assert_eq!(lost, 0);

    let crashed = cluster
        .fail_owner(&lab, address, Announcer::Metallb, ClusterFault::NodeCrash)
        .unwrap();
    eprintln!("MetalLB, node crashed: {crashed:?}");
    assert_eq!(crashed.old_owner, owner);
    assert!(
        crashed.new_owner.is_some(),
        "another speaker took the address: {crashed:?}"
    );
    assert!(crashed.outage.lost > 0, "{crashed:?}");
    assert_eq!(crashed.duplicate_answers, 0, "{crashed:?}");
}
