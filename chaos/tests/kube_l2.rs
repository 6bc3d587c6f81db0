//! Layer 2 on real nodes ([`meshlb_chaos::cluster`]): the lab's
//! control-plane host runs the API server, scheduler and controller
//! manager, every node a kubelet, containerd and kube-proxy, and meshlb is
//! installed with its chart. The echo Service has no selector: its
//! EndpointSlice is the test's, so it says which nodes have a ready
//! endpoint. The allocator gives the Service its address, one node answers
//! ARP for it and reports itself in a ServiceL2Status, and what is
//! announced follows the EndpointSlice (nothing without a ready endpoint;
//! with externalTrafficPolicy Local, the node that has one), the Node
//! labels an advertisement selects by, and the owner's agent frozen,
//! stopped gracefully or killed, also with the API server cut off and
//! across its crash. The agents find each other through the Node objects,
//! also while their first configuration is refused, and follow the
//! cluster keys in the Secret the chart made as a user rotates them. What
//! an agent reports in its state directory is read from its pod's volume
//! on the node's disk. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use meshlb_chaos::agent::{AgentState, random_key};
use meshlb_chaos::cluster::{Announcer, Cluster, arp_owners, settled_arp_owner};
use meshlb_chaos::kube_demo::{echo_address, reported_owner};
use meshlb_chaos::kube_env::{KubeEnv, cluster_key_secret};
use meshlb_chaos::wait::wait_for;
use meshlb_chaos::{Lab, LabSpec};
use nix::sys::signal::Signal;

const POOLS: &str = include_str!("../../examples/layer2/pools.yaml");
const SELECTORLESS: &str = include_str!("../../examples/layer2/selectorless.yaml");

fn kubectl(env: &KubeEnv, args: &[&str]) -> String {
    env.run_kubectl(args).unwrap()
}

fn apply(env: &KubeEnv, yaml: &str) {
    env.apply("test.yaml", yaml).unwrap();
}

/// The one node answering ARP for `address` now, if exactly one does.
fn owner_now(lab: &Lab, address: Ipv4Addr) -> Option<String> {
    let owners = arp_owners(lab, address);
    if owners.len() == 1 {
        owners.into_iter().next()
    } else {
        None
    }
}

/// The one node answering ARP for `address`, once exactly one does and it
/// is not `not`.
fn new_owner(lab: &Lab, address: Ipv4Addr, not: &str, what: &str) -> String {
    let mut found = String::new();
    wait_for(Duration::from_secs(30), what, || {
        found = owner_now(lab, address).unwrap_or_default();
        !found.is_empty() && found != not
    })
    .unwrap();
    found
}

/// The nodes named by the ServiceL2Status objects of shop/echo.
fn reported(env: &KubeEnv) -> String {
    reported_owner(env).unwrap()
}

/// Waits until the status names `node` alone.
fn wait_reported(env: &KubeEnv, node: &str, what: &str) {
    let mut last = String::new();
    let named = wait_for(Duration::from_secs(60), what, || {
        last = reported(env);
        last == node
    });
    assert!(named.is_ok(), "{what}: the status names {last:?}, not {node}");
}

/// Every node's agent state, as its pod's volume holds it.
fn agent_states(cluster: &Cluster, lab: &Lab) -> Vec<(String, AgentState)> {
    lab.node_names()
        .into_iter()
        .map(|node| {
            let state = cluster.agent_state(&node).unwrap();
            (node, state)
        })
        .collect()
}

/// No agent was refused anything by the API server: the chart grants all
/// they do.
fn nothing_forbidden(cluster: &Cluster) {
    for (pod, log) in cluster.agent_logs(Announcer::Meshlb).unwrap() {
        let refused: Vec<&str> = log.lines().filter(|l| l.contains("forbidden")).take(5).collect();
        assert!(refused.is_empty(), "{pod} was refused: {refused:#?}");
    }
}

/// A lab of 3 real nodes and a client; the examples' pool and
/// advertisement (and `more`, applied with them) and the echo Service
/// with every node's endpoint ready are applied before meshlb's chart is
/// installed, as a MetalLB user's objects are there before meshlb. The
/// cluster first: it is dropped before the lab.
fn configured_cluster(more: &str) -> (Cluster, Lab) {
    let lab = Lab::build(&LabSpec {
        control_plane: true,
        ..LabSpec::segment(3, 1, false)
    })
    .unwrap();
    let cluster = Cluster::start(&lab).unwrap();
    let env = cluster.env();
    env.apply_crds().unwrap();
    for namespace in ["metallb-system", "shop"] {
        kubectl(env, &["create", "namespace", namespace]);
    }
    apply(env, &format!("{POOLS}\n---\n{more}"));
    apply(env, SELECTORLESS);
    cluster.import_meshlb_image(&["lab"]).unwrap();
    cluster.install_meshlb("lab", &[]).unwrap();
    (cluster, lab)
}

/// The echo Service's address once one node answers for it and the
/// status names that node alone; and the node. kube-proxy delivers a
/// cluster's Service traffic: the agent leaves the node's routes alone
/// (standalone, it adds local routes).
fn announced(cluster: &Cluster, lab: &Lab) -> (Ipv4Addr, String) {
    let address = echo_address(cluster.env()).unwrap();
    assert!(
        address.to_string().starts_with("198.51.100.2"),
        "{address} from the pool"
    );
    let owner = settled_arp_owner(lab, address).unwrap();
    let local = lab
        .exec(&owner, "ip", &["-o", "route", "show", "table", "local"])
        .unwrap();
    assert!(
        !local.contains(&address.to_string()),
        "{address} delivered on {owner} by a local route: {local}"
    );
    wait_reported(cluster.env(), &owner, "a ServiceL2Status naming the owner");
    (address, owner)
}

/// The mesh forms while the agents' first configuration is refused (two
/// pools overlap), and announces the Service once the overlap is gone;
/// the cluster keys rotate through the chart's Secret in three steps (the
/// new key added second, moved first, the old one dropped), each reaching
/// every agent, with no member going down, and a Secret that does not
/// parse changes nothing; what is announced follows the EndpointSlice and
/// the Nodes' labels; the owner's agent killed (its kubelet dead, so
/// nothing restarts it) leaves its address to another node, which
/// reports itself.
#[test]
fn what_is_announced_follows_the_endpoints_the_labels_and_the_mesh() {
    let overlap = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: overlap, namespace: metallb-system}\n\
                   spec: {addresses: [198.51.100.200/29]}\n";
    let (mut cluster, lab) = configured_cluster(overlap);
    let env = cluster.env();
    let states = agent_states(&cluster, &lab);
    // The seeds came from the Nodes, though no configuration runs.
    wait_for(Duration::from_secs(60), "every agent to see every member", || {
        states.iter().all(|(_, s)| s.members().is_ok_and(|m| m.len() == 3))
    })
    .unwrap();
    wait_for(Duration::from_secs(30), "every agent to report the refusal", || {
        let summaries = kubectl(
            env,
            &[
                "get",
                "configurationstates",
                "-n",
                "metallb-system",
                "-o",
                "jsonpath={.items[*].status.errorSummary}",
            ],
        );
        summaries.matches("overlap").count() >= 3
    })
    .unwrap();
    assert!(arp_owners(&lab, "198.51.100.200".parse().unwrap()).is_empty());
    kubectl(env, &["delete", "ipaddresspool", "-n", "metallb-system", "overlap"]);
    let (address, _) = announced(&cluster, &lab);

    // The cluster keys, as the chart generated them, rotate.
    let old = states[0].1.secret_keys().unwrap().trim().to_owned();
    assert!(old.starts_with("1:"), "the chart's key: {old}");
    let new = random_key(2).unwrap();
    let from = meshlb_chaos::serf::now_secs();
    for step in [format!("{old}\n{new}\n"), format!("{new}\n{old}\n"), format!("{new}\n")] {
        apply(env, &cluster_key_secret(&step));
        wait_for(
            Duration::from_secs(60),
            "every agent's cluster keys to follow the Secret",
            || states.iter().all(|(_, s)| s.secret_keys().is_ok_and(|k| k == step)),
        )
        .unwrap();
        // The mesh re-reads its key file every 2 s.
        std::thread::sleep(Duration::from_secs(3));
    }
    apply(env, &cluster_key_secret("2:not-hex\n"));
    std::thread::sleep(Duration::from_secs(3));
    let until = meshlb_chaos::serf::now_secs();
    for (node, state) in &states {
        assert_eq!(
            state.secret_keys().unwrap(),
            format!("{new}\n"),
            "a bad Secret changes nothing"
        );
        assert_eq!(state.members().unwrap().len(), 3, "{node} sees every member");
        for (member, _) in &states {
            assert_eq!(
                state.events_between("member-down", member, from, until),
                0,
                "{node} saw {member} go down during the rotation"
            );
        }
    }

    // No ready endpoint: nothing is announced, and nothing reported.
    apply(
        env,
        &SELECTORLESS.replace("conditions: {ready: true}", "conditions: {ready: false}"),
    );
    wait_for(Duration::from_secs(30), "no answer without a ready endpoint", || {
        arp_owners(&lab, address).is_empty()
    })
    .unwrap();
    wait_reported(env, "", "no ServiceL2Status without a ready endpoint");

    // externalTrafficPolicy Local with the one ready endpoint on node3:
    // node3 answers.
    let local = SELECTORLESS
        .replace(
            "type: LoadBalancer",
            "type: LoadBalancer\n  externalTrafficPolicy: Local",
        )
        .lines()
        .filter(|line| !(line.contains("nodeName: node1") || line.contains("nodeName: node2")))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(local.contains("Local") && local.contains("node3") && !local.contains("node1"));
    apply(env, &local);
    assert_eq!(
        settled_arp_owner(&lab, address).unwrap(),
        "node3",
        "it alone has an endpoint"
    );
    wait_reported(env, "node3", "the ServiceL2Status to name node3");

    // Back to Cluster with endpoints everywhere, the advertisement limited
    // to nodes labelled l2=yes (all of them): taking the label off the
    // owner's Node moves the address.
    apply(env, SELECTORLESS);
    for node in lab.node_names() {
        kubectl(env, &["label", "node", &node, "l2=yes"]);
    }
    apply(
        env,
        &POOLS.replace(
            "  interfaces: [eth0]",
            "  interfaces: [eth0]\n  nodeSelectors: [{matchLabels: {l2: 'yes'}}]",
        ),
    );
    let labelled = settled_arp_owner(&lab, address).unwrap();
    // Every record carries its Node's labels, as every agent sees it.
    wait_for(Duration::from_secs(30), "the Nodes' labels in every record", || {
        states.iter().all(|(_, state)| {
            states.iter().all(|(member, _)| {
                state
                    .labels_of(member)
                    .is_ok_and(|l| l.get("l2").map(String::as_str) == Some("yes"))
            })
        })
    })
    .unwrap();
    kubectl(env, &["label", "node", &labelled, "l2-"]);
    let moved = new_owner(&lab, address, &labelled, "the address to leave the unlabelled node");
    wait_reported(env, &moved, "the ServiceL2Status to follow the label");

    // The owner's agent is killed with its kubelet dead: another node
    // answers, and reports it.
    cluster.stop_kubelet(&moved).unwrap();
    cluster
        .signal_agent(Announcer::Meshlb, &moved, Signal::SIGKILL)
        .unwrap();
    let after = new_owner(&lab, address, &moved, "another node to answer after the kill");
    wait_reported(cluster.env(), &after, "the successor's ServiceL2Status");
    cluster.start_kubelet(&lab, &moved).unwrap();
    cluster.wait_agent_restarted(Announcer::Meshlb, &moved).unwrap();
    nothing_forbidden(&cluster);
}

/// A frozen owner's address moves, and one node answers once it runs
/// again; a gracefully stopped owner (SIGTERM, its kubelet dead so that
/// nothing restarts it at once) hands over and exits cleanly, and the
/// status names the new owner alone (the stopped one's object removed by
/// the successor). With the API server cut off, the owner's agent
/// crashes and its kubelet restarts it; once the API server is back, the
/// restarted agent is in the mesh again and the status names the
/// answering node alone within seconds. The API server crashes and starts
/// again: a Service created as soon as it is ready is addressed and
/// reported within seconds.
#[test]
fn the_status_follows_freezes_stops_and_api_server_outages() {
    let (mut cluster, lab) = configured_cluster("");
    let (address, owner) = announced(&cluster, &lab);
    let states = agent_states(&cluster, &lab);

    cluster
        .signal_agent(Announcer::Meshlb, &owner, Signal::SIGSTOP)
        .unwrap();
    new_owner(&lab, address, &owner, "another node to answer for the frozen owner");
    cluster
        .signal_agent(Announcer::Meshlb, &owner, Signal::SIGCONT)
        .unwrap();
    // The thawed node takes nothing back (one address: the loads are as
    // even as they get): wait until one node answers and the status names
    // it alone.
    let mut settled = String::new();
    wait_for(
        Duration::from_secs(60),
        "one owner after the thaw, named alone by the status",
        || {
            settled = owner_now(&lab, address).unwrap_or_default();
            !settled.is_empty() && reported(cluster.env()) == settled
        },
    )
    .unwrap();

    cluster.stop_kubelet(&settled).unwrap();
    cluster
        .signal_agent(Announcer::Meshlb, &settled, Signal::SIGTERM)
        .unwrap();
    wait_for(Duration::from_secs(15), "the stopped agent to exit", || {
        cluster.running("meshlb-agent").is_ok_and(|n| n == 2)
    })
    .unwrap();
    let next = new_owner(&lab, address, &settled, "a node to take over after the graceful stop");
    wait_reported(cluster.env(), &next, "the status to name the new owner alone");
    // The kubelet, back, finds the container exited cleanly, and starts it
    // again.
    cluster.start_kubelet(&lab, &settled).unwrap();
    cluster.wait_agent_restarted(Announcer::Meshlb, &settled).unwrap();
    let exit = cluster
        .agent_pods(
            Announcer::Meshlb,
            Some(&settled),
            "{.status.containerStatuses[0].lastState.terminated.exitCode}",
        )
        .unwrap();
    assert_eq!(exit, "0", "a clean exit on SIGTERM");

    // The owner's agent crashes with the API server away; its kubelet
    // restarts it (it finds the others, and its cluster keys, through the
    // API server: it joins once that is back).
    let owner = settled_arp_owner(&lab, address).unwrap();
    lab.isolate("control").unwrap();
    cluster
        .signal_agent(Announcer::Meshlb, &owner, Signal::SIGKILL)
        .unwrap();
    new_owner(&lab, address, &owner, "another node to answer with the API server away");
    wait_for(Duration::from_secs(60), "the kubelet to restart the agent", || {
        cluster.running("meshlb-agent").is_ok_and(|n| n == 3)
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    lab.heal().unwrap();
    let back = Instant::now();
    let (mut answering, mut last) = (String::new(), String::new());
    wait_for(
        Duration::from_secs(60),
        "every node in the mesh again, and the status naming the answering node alone",
        || {
            answering = owner_now(&lab, address).unwrap_or_default();
            last = reported(cluster.env());
            !answering.is_empty()
                && last == answering
                && states.iter().all(|(_, s)| s.members().is_ok_and(|m| m.len() == 3))
        },
    )
    .unwrap();
    let took = back.elapsed();
    eprintln!("API server back: the restarted agent rejoined and the status named {answering} alone after {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}: {last}");
    nothing_forbidden(&cluster);

    // The API server crashes and starts again; a Service created as soon
    // as it is ready is addressed and reported within seconds. (Right
    // after its start it refuses some requests for a moment, until its
    // authorizer has read the RBAC objects: the agents retry.)
    cluster.crash_and_restart_api_server(&lab).unwrap();
    let env = cluster.env();
    let ready = Instant::now();
    apply(
        env,
        &SELECTORLESS
            .replace("name: echo\n", "name: again\n")
            .replace("name: echo-1", "name: again-1")
            .replace("kubernetes.io/service-name: echo", "kubernetes.io/service-name: again"),
    );
    let mut second = String::new();
    wait_for(Duration::from_secs(60), "the new Service addressed", || {
        second = env
            .run_kubectl(&[
                "get",
                "service",
                "-n",
                "shop",
                "again",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ])
            .unwrap_or_default();
        !second.is_empty()
    })
    .unwrap();
    let addressed = ready.elapsed();
    let second: Ipv4Addr = second.parse().unwrap();
    wait_for(Duration::from_secs(60), "the new Service answered and reported", || {
        let named = kubectl(
            env,
            &[
                "get",
                "servicel2statuses",
                "-n",
                "metallb-system",
                "-l",
                "metallb.io/service-name=again",
                "-o",
                "jsonpath={.items[*].status.node}",
            ],
        );
        owner_now(&lab, second).is_some_and(|o| o == named)
    })
    .unwrap();
    let reported_after = ready.elapsed();
    eprintln!(
        "API server restarted: a new Service addressed after {addressed:?}, answered and reported after {reported_after:?}"
    );
    assert!(addressed < Duration::from_secs(5), "{addressed:?}");
    assert_eq!(reported(env), owner_now(&lab, address).unwrap_or_default());
    wait_for(Duration::from_secs(30), "every agent's configuration Valid", || {
        kubectl(
            env,
            &[
                "get",
                "configurationstates",
                "-n",
                "metallb-system",
                "-o",
                "jsonpath={.items[*].status.result}",
            ],
        ) == "Valid Valid Valid"
    })
    .unwrap();
}
