//! Layer 2 in a cluster, end to end: the lab's control-plane host runs the
//! real API server, each node a `meshlb-agent run --kubernetes` as a
//! DaemonSet pod with hostNetwork would, and the objects come from the
//! examples by `kubectl apply`. The Service gets its address from the
//! allocator, the client resolves it to the one owner's MAC, the owner
//! reports itself in a ServiceL2Status, and what is announced follows the
//! EndpointSlice (nothing without a ready endpoint; with
//! externalTrafficPolicy Local, the node that has one), the Node labels an
//! advertisement selects by, and the owner's crash, freeze and graceful
//! stop, also with the API server cut off. The agents find each other
//! through the Node objects, with no `--join`, and take their cluster keys
//! from a Secret, which rotates them. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use meshlb_chaos::agent::{cluster_key_secret, random_key};
use meshlb_chaos::kube_env::KubeEnv;
use meshlb_chaos::probe::{Prober, RESPONDER_PORT};
use meshlb_chaos::scenario::play_kube_proxy;
use meshlb_chaos::scenario::start_responders;
use meshlb_chaos::wait::wait_for;
use meshlb_chaos::{Lab, LabSpec};

fn kubectl(env: &KubeEnv, args: &[&str]) -> String {
    env.run_kubectl(args).unwrap()
}

fn apply(env: &KubeEnv, yaml: &str) {
    env.apply("test.yaml", yaml).unwrap();
}

fn example(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(path)).unwrap()
}

/// The MACs that answer ARP for `ip` at the client.
fn answerers(lab: &Lab, ip: &str) -> Vec<String> {
    meshlb_chaos::probe::arp_answerers(lab, "client1", ip.parse().unwrap())
        .into_iter()
        .map(|m| m.to_string().to_lowercase())
        .collect()
}

fn node_with_mac(lab: &Lab, mac: &str) -> Option<String> {
    lab.hosts()
        .iter()
        .find(|h| h.mac.to_string().to_lowercase() == mac)
        .map(|h| h.name.clone())
}

/// The one node answering ARP for `ip`, once exactly one does.
fn owner(lab: &Lab, ip: &str, what: &str) -> String {
    let mut found = None;
    wait_for(Duration::from_secs(60), what, || {
        found = owner_now(lab, ip);
        found.is_some()
    })
    .unwrap();
    found.unwrap()
}

/// The one node answering ARP for `ip`, once exactly one does and it is
/// not `not`.
fn new_owner(lab: &Lab, ip: &str, not: &str, what: &str) -> String {
    let mut found = String::new();
    wait_for(Duration::from_secs(30), what, || {
        found = owner_now(lab, ip).unwrap_or_default();
        !found.is_empty() && found != not
    })
    .unwrap();
    found
}

/// The nodes named by the ServiceL2Status objects of shop/echo.
fn reported(env: &KubeEnv) -> String {
    meshlb_chaos::kube_demo::reported_owner(env).unwrap()
}

/// A lab cluster: the API server on the control-plane host, the examples'
/// pool and advertisement, an agent on each of 3 nodes, and the echo
/// Service with its EndpointSlice allocated and answered by one node that
/// reports itself. Fields drop in order: the agents, the server, the lab;
/// destructured, bind `lab` first (bindings drop in reverse).
struct KubeLab {
    agents: Vec<meshlb_chaos::agent::MeshAgent>,
    env: KubeEnv,
    lab: Lab,
    /// The echo Service's address.
    address: String,
    /// The node answering for it.
    owner: String,
}

/// A lab of 3 nodes and a client with the API server on its control-plane
/// host: the Nodes registered, the CRDs, the namespaces and the cluster
/// key Secret; no pool yet, no agent.
fn kube_cluster() -> (Lab, KubeEnv) {
    let lab = Lab::build(&LabSpec {
        control_plane: true,
        ..LabSpec::segment(3, 1, false)
    })
    .unwrap();
    let env = KubeEnv::start_in_lab(&lab).unwrap();
    env.register_lab_nodes(&lab).unwrap();
    env.apply_crds().unwrap();
    for namespace in ["metallb-system", "shop"] {
        kubectl(&env, &["create", "namespace", namespace]);
    }
    set_cluster_keys(&env, &format!("{}\n", random_key(1).unwrap()));
    // The chart's ServiceAccount and RBAC, which the agents run with.
    env.install_chart(&[&format!(
        "clusterKeys.existingSecret={}",
        meshlb_chaos::agent::CLUSTER_KEY_SECRET
    )])
    .unwrap();
    (lab, env)
}

/// The agents as the chart's DaemonSet runs them: its arguments, its
/// ServiceAccount.
fn start_agents(lab: &Lab, env: &KubeEnv) -> Vec<meshlb_chaos::agent::MeshAgent> {
    meshlb_chaos::agent::start_chart_cluster(lab, env).unwrap()
}

/// No agent was refused anything by the API server: the chart grants
/// all they do.
fn nothing_forbidden(agents: &[meshlb_chaos::agent::MeshAgent]) {
    for agent in agents {
        let log = agent.process.log();
        let refused: Vec<&str> = log.lines().filter(|l| l.contains("forbidden")).take(5).collect();
        assert!(refused.is_empty(), "{} was refused: {refused:#?}", agent.node);
    }
}

fn kube_lab() -> KubeLab {
    let (lab, env) = kube_cluster();
    apply(&env, &example("layer2/pools.yaml"));
    let agents = start_agents(&lab, &env);

    // The Service and its selector-less EndpointSlice (endpoints on every
    // node): the allocator gives it an address, one node answers for it
    // and says so.
    apply(&env, &example("layer2/selectorless.yaml"));
    let address = meshlb_chaos::kube_demo::echo_address(&env).unwrap().to_string();
    assert!(address.starts_with("198.51.100.2"), "{address} from the pool");
    let first = owner(&lab, &address, "one node to answer ARP for the Service");
    // kube-proxy delivers a cluster's Service traffic: the agent leaves the
    // node's routes alone (standalone, it adds local routes). With
    // the lab playing kube-proxy, the client's datagrams reach the owner.
    let local = lab
        .exec(&first, "ip", &["-o", "route", "show", "table", "local"])
        .unwrap();
    assert!(
        !local.contains(&address),
        "{address} delivered on {first} by a local route: {local}"
    );
    let lab_binary = Path::new(env!("CARGO_BIN_EXE_meshlb-lab"));
    let responders = start_responders(&lab, lab_binary).unwrap();
    play_kube_proxy(&lab, address.parse().unwrap()).unwrap();
    let prober = Prober::start(
        &lab,
        "client1",
        SocketAddr::new(address.parse().unwrap(), RESPONDER_PORT),
        Duration::from_millis(10),
    )
    .unwrap();
    prober
        .wait_for_answer(Instant::now(), Duration::from_secs(10), |n| n == first)
        .unwrap();
    drop(prober.stop());
    drop(responders);
    wait_for(Duration::from_secs(30), "a ServiceL2Status naming the owner", || {
        reported(&env) == first
    })
    .unwrap();
    KubeLab {
        agents,
        env,
        lab,
        address,
        owner: first,
    }
}

#[test]
fn agents_in_a_cluster_announce_what_status_says_and_report_it() {
    let KubeLab {
        lab,
        env,
        agents,
        address,
        owner: _,
    } = kube_lab();
    // No ready endpoint: nothing is announced, and nothing reported.
    apply(
        &env,
        &example("layer2/selectorless.yaml").replace("conditions: {ready: true}", "conditions: {ready: false}"),
    );
    wait_for(Duration::from_secs(30), "no answer without a ready endpoint", || {
        answerers(&lab, &address).is_empty()
    })
    .unwrap();
    wait_for(Duration::from_secs(30), "no ServiceL2Status", || {
        reported(&env).is_empty()
    })
    .unwrap();

    // externalTrafficPolicy Local with the one ready endpoint on node3:
    // node3 answers.
    let local = example("layer2/selectorless.yaml")
        .replace(
            "type: LoadBalancer",
            "type: LoadBalancer\n  externalTrafficPolicy: Local",
        )
        .lines()
        .filter(|line| !(line.contains("nodeName: node1") || line.contains("nodeName: node2")))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(local.contains("Local") && local.contains("node3") && !local.contains("node1"));
    apply(&env, &local);
    assert_eq!(
        owner(&lab, &address, "node3 to answer, it alone having an endpoint"),
        "node3"
    );
    wait_for(Duration::from_secs(30), "the ServiceL2Status to name node3", || {
        reported(&env) == "node3"
    })
    .unwrap();

    // Back to Cluster with endpoints everywhere, the advertisement limited
    // to nodes labelled l2=yes (all of them): taking the label off the
    // owner's Node moves the address.
    apply(&env, &example("layer2/selectorless.yaml"));
    for node in lab.node_names() {
        kubectl(&env, &["label", "node", &node, "l2=yes"]);
    }
    apply(
        &env,
        &example("layer2/pools.yaml").replace(
            "  interfaces: [eth0]",
            "  interfaces: [eth0]\n  nodeSelectors: [{matchLabels: {l2: 'yes'}}]",
        ),
    );
    let labelled = owner(&lab, &address, "one owner among the labelled nodes");
    // Every record carries its Node's labels, as every agent sees it.
    wait_for(Duration::from_secs(30), "the Nodes' labels in every record", || {
        agents.iter().all(|a| {
            agents.iter().all(|m| {
                a.labels_of(&m.node)
                    .is_ok_and(|l| l.get("l2").map(String::as_str) == Some("yes"))
            })
        })
    })
    .unwrap();
    kubectl(&env, &["label", "node", &labelled, "l2-"]);
    let moved = new_owner(&lab, &address, &labelled, "the address to leave the unlabelled node");

    // The owner's agent is killed: another node answers, and reports it.
    let before = moved;
    let victim = agents.iter().find(|a| a.node == before).unwrap();
    victim.process.kill().unwrap();
    let after = new_owner(&lab, &address, &before, "another node to answer after the kill");
    wait_for(Duration::from_secs(30), "the successor's ServiceL2Status", || {
        reported(&env).split_whitespace().any(|n| n == after)
    })
    .unwrap();
    nothing_forbidden(&agents);
}

/// The mesh outlives the API server: with the control-plane host cut off,
/// the owner's crash still moves the address; when the API server is back,
/// nothing moves, and the status catches up (the successor reports itself,
/// and the crashed owner's object is removed by the node that took over).
/// The first configuration the agents read is refused (two pools
/// overlap): they find each other through the Nodes all the same, and
/// announce the Service once the overlap is gone.
#[test]
fn the_mesh_forms_while_the_first_configuration_is_refused() {
    let (lab, env) = kube_cluster();
    let overlap = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: overlap, namespace: metallb-system}\n\
                   spec: {addresses: [198.51.100.200/29]}\n";
    apply(&env, &format!("{}\n---\n{overlap}", example("layer2/pools.yaml")));
    apply(&env, &example("layer2/selectorless.yaml"));
    // Returns once every agent's mesh holds every node: the seeds came
    // from the Nodes, though no configuration runs.
    let agents = start_agents(&lab, &env);
    wait_for(Duration::from_secs(30), "every agent to report the refusal", || {
        let summaries = kubectl(
            &env,
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
    kubectl(&env, &["delete", "ipaddresspool", "-n", "metallb-system", "overlap"]);
    let address = meshlb_chaos::kube_demo::echo_address(&env).unwrap().to_string();
    owner(&lab, &address, "one node to answer ARP for the Service");
    drop(agents);
}

#[test]
fn the_mesh_fails_over_while_the_api_server_is_away() {
    let KubeLab {
        lab,
        env,
        agents,
        address,
        owner,
    } = kube_lab();
    lab.isolate("control").unwrap();
    let victim = agents.iter().find(|a| a.node == owner).unwrap();
    victim.process.kill().unwrap();
    let successor = new_owner(
        &lab,
        &address,
        &owner,
        "another node to answer with the API server away",
    );
    lab.heal().unwrap();
    wait_for(
        Duration::from_secs(60),
        "the status to name the successor alone",
        || reported(&env) == successor,
    )
    .unwrap();
    // Nothing moved meanwhile, nor after.
    for _ in 0..3 {
        assert_eq!(owner_now(&lab, &address), Some(successor.clone()));
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// ServiceL2Status names exactly the node answering within seconds of the
/// API server's return: after an outage during which the owner crashed
/// and its agent came back (two objects named two nodes for 30 s before:
/// the old owner's object is removed by whoever answers, or by that node
/// itself), and after the API server crashes and starts again (a Service
/// created as it comes back is addressed and reported within seconds).
#[test]
fn the_status_names_the_answering_node_within_seconds_of_the_api_servers_return() {
    let KubeLab {
        lab,
        mut env,
        mut agents,
        address,
        owner,
    } = kube_lab();
    lab.isolate("control").unwrap();
    let crashed = agents.iter().position(|a| a.node == owner).unwrap();
    agents[crashed].process.kill().unwrap();
    new_owner(
        &lab,
        &address,
        &owner,
        "another node to answer with the API server away",
    );
    // The crashed node's pod starts again, the API server still away (it
    // finds the others, and its cluster keys, through the API server:
    // it joins once that is back).
    agents[crashed] = meshlb_chaos::agent::start_chart_agent(&lab, &env, &owner).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    lab.heal().unwrap();
    let back = Instant::now();
    let (mut answering, mut last) = (String::new(), String::new());
    wait_for(
        Duration::from_secs(60),
        "every node in the mesh again, and the status naming the answering node alone",
        || {
            answering = owner_now(&lab, &address).unwrap_or_default();
            last = reported(&env);
            !answering.is_empty()
                && last == answering
                && agents.iter().all(|a| a.members().unwrap_or_default().len() == 3)
        },
    )
    .unwrap();
    let took = back.elapsed();
    eprintln!("API server back: the restarted node rejoined and the status named {answering} alone after {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}: {last}");

    nothing_forbidden(&agents);

    // The API server crashes and starts again; a Service created as soon
    // as it is ready is addressed and reported within seconds. (Right
    // after its start it refuses some requests for a moment, until its
    // authorizer has read the RBAC objects: the agents retry.)
    env.crash_and_restart_in_lab(&lab).unwrap();
    let ready = Instant::now();
    apply(
        &env,
        &example("layer2/selectorless.yaml")
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
    wait_for(Duration::from_secs(60), "the new Service answered and reported", || {
        let named = kubectl(
            &env,
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
        owner_now(&lab, &second).is_some_and(|o| o == named)
    })
    .unwrap();
    let reported_after = ready.elapsed();
    eprintln!(
        "API server restarted: a new Service addressed after {addressed:?}, answered and reported after {reported_after:?}"
    );
    assert!(addressed < Duration::from_secs(5), "{addressed:?}");
    assert_eq!(reported(&env), owner_now(&lab, &address).unwrap_or_default());
    wait_for(Duration::from_secs(30), "every agent's configuration Valid", || {
        kubectl(
            &env,
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

/// A frozen owner's address moves, and one node answers once it runs
/// again; a gracefully stopped owner hands over, and the status names the
/// new owner alone (the stopped one's object removed by the successor,
/// once the mesh has let it go).
#[test]
fn freeze_and_graceful_stop_move_the_address_and_the_status() {
    let KubeLab {
        lab,
        env,
        agents,
        address,
        owner,
    } = kube_lab();
    let frozen = agents.iter().find(|a| a.node == owner).unwrap();
    frozen.process.freeze().unwrap();
    new_owner(&lab, &address, &owner, "another node to answer for the frozen owner");
    frozen.process.thaw().unwrap();
    // The thawed node may take its address back (failback is revertive):
    // wait until one node answers and the status names it alone.
    let mut settled = String::new();
    wait_for(
        Duration::from_secs(60),
        "one owner after the thaw, named alone by the status",
        || {
            settled = owner_now(&lab, &address).unwrap_or_default();
            !settled.is_empty() && reported(&env) == settled
        },
    )
    .unwrap();

    let stopping = agents.iter().find(|a| a.node == settled).unwrap();
    stopping.process.terminate().unwrap();
    let exited = stopping.process.wait_exit(Duration::from_secs(15)).unwrap();
    assert!(exited.is_some_and(|s| s.success()), "a clean exit, got {exited:?}");
    let next = new_owner(&lab, &address, &settled, "a node to take over after the graceful stop");
    let mut last = String::new();
    let named = wait_for(
        Duration::from_secs(60),
        "the status to name the new owner alone",
        || {
            last = reported(&env);
            last == next
        },
    );
    assert!(named.is_ok(), "status names {last:?}, the owner is {next}");
}

/// Writes the cluster keys Secret the agents follow.
fn set_cluster_keys(env: &KubeEnv, keys: &str) {
    apply(env, &cluster_key_secret(keys));
}

/// The cluster keys rotate through their Secret in three steps (the new
/// key added second, moved first, the old one dropped), each reaching every
/// agent's key file, with no member going down; a Secret that does not
/// parse changes nothing.
#[test]
fn cluster_keys_rotate_through_their_secret() {
    let KubeLab {
        lab: _lab,
        env,
        agents,
        address: _,
        owner: _,
    } = kube_lab();
    let old = std::fs::read_to_string(&agents[0].key_file).unwrap();
    let old = old.trim().to_owned();
    let new = random_key(2).unwrap();
    let from = meshlb_chaos::serf::now_secs();
    for step in [format!("{old}\n{new}\n"), format!("{new}\n{old}\n"), format!("{new}\n")] {
        set_cluster_keys(&env, &step);
        wait_for(
            Duration::from_secs(30),
            "every agent's key file to follow the Secret",
            || {
                agents
                    .iter()
                    .all(|a| std::fs::read_to_string(&a.key_file).is_ok_and(|k| k == step))
            },
        )
        .unwrap();
        // The mesh re-reads its key file every 2 s.
        std::thread::sleep(Duration::from_secs(3));
    }
    set_cluster_keys(&env, "2:not-hex\n");
    std::thread::sleep(Duration::from_secs(3));
    let until = meshlb_chaos::serf::now_secs();
    for a in &agents {
        assert_eq!(
            std::fs::read_to_string(&a.key_file).unwrap(),
            format!("{new}\n"),
            "a bad Secret changes nothing"
        );
        assert_eq!(a.members().unwrap().len(), 3, "{} sees every member", a.node);
        for m in &agents {
            assert_eq!(
                a.events_between("member-down", &m.node, from, until),
                0,
                "{} saw {} go down during the rotation",
                a.node,
                m.node
            );
        }
    }
}

/// The one node answering ARP for `ip` now, if exactly one does.
fn owner_now(lab: &Lab, ip: &str) -> Option<String> {
    let macs = answerers(lab, ip);
    if macs.len() == 1 {
        node_with_mac(lab, &macs[0])
    } else {
        None
    }
}
