//! BGP mode in a cluster: the lab's control-plane host runs the real API
//! server, FRR peers with every node, and each node runs
//! `meshlb-agent run --kubernetes` as the chart's DaemonSet would. Every
//! node announcing a Service writes a ServiceBGPStatus naming the BGPPeers
//! its established sessions carry it to, as MetalLB 0.15's speakers do; a
//! crashed node's object is removed by the others (also when it crashed
//! while the API server was cut off), and comes back with the node, also
//! across an API-server crash and restart. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use meshlb_chaos::kube_env::KubeEnv;
use meshlb_chaos::router::{Router, RouterKind, RouterOptions};
use meshlb_chaos::wait::wait_for;
use meshlb_chaos::{Lab, LabSpec, Role};

/// Each ServiceBGPStatus: `node service peers`, sorted.
fn bgp_statuses(env: &KubeEnv) -> Vec<String> {
    let text = env
        .run_kubectl(&[
            "get",
            "servicebgpstatuses",
            "-n",
            "metallb-system",
            "-o",
            "jsonpath={range .items[*]}{.metadata.labels.metallb\\.io/node} {.status.serviceNamespace}/{.status.serviceName} {.status.peers}{\"\\n\"}{end}",
        ])
        .unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn service_bgp_statuses_name_the_nodes_announcing_and_their_peers() {
    let lab = Lab::build(&LabSpec {
        router: true,
        control_plane: true,
        ..LabSpec::segment(2, 0, false)
    })
    .unwrap();
    let mut env = KubeEnv::start_in_lab(&lab).unwrap();
    env.register_lab_nodes(&lab).unwrap();
    env.apply_crds().unwrap();
    env.run_kubectl(&["create", "namespace", "metallb-system"]).unwrap();
    let keys = meshlb_chaos::agent::cluster_key_secret(&format!("{}\n", meshlb_chaos::agent::random_key(1).unwrap()));
    env.apply("keys.yaml", &keys).unwrap();
    env.install_chart(&[&format!(
        "clusterKeys.existingSecret={}",
        meshlb_chaos::agent::CLUSTER_KEY_SECRET
    )])
    .unwrap();
    let peers = lab
        .hosts_with(Role::Node)
        .map(|h| (std::net::IpAddr::V4(h.ipv4), meshlb_chaos::router::NODE_ASN))
        .collect();
    let router = Router::start_with_options(&lab, RouterKind::Frr, peers, RouterOptions::default()).unwrap();
    let router_address = std::net::IpAddr::V4(lab.host("router").unwrap().ipv4);
    let endpoints: String = lab
        .hosts_with(Role::Node)
        .map(|h| {
            format!(
                "  - {{addresses: [\"{}\"], nodeName: {}, conditions: {{ready: true}}}}\n",
                h.ipv4, h.name
            )
        })
        .collect();
    let config = format!(
        "{}---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: default\n  \
         labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints:\n{endpoints}\
         ports: [{{port: 80, protocol: TCP}}]\n",
        meshlb_chaos::agent::bgp_config(router_address, "203.0.113.20/32", ", holdTime: 9s", "", "")
    );
    env.apply("bgp.yaml", &config).unwrap();
    let mut agents = meshlb_chaos::agent::start_chart_cluster(&lab, &env).unwrap();

    let both = vec![
        "node1 default/web [\"router\"]".to_owned(),
        "node2 default/web [\"router\"]".to_owned(),
    ];
    let mut seen = Vec::new();
    let named = wait_for(
        Duration::from_secs(60),
        "a ServiceBGPStatus per announcing node",
        || {
            seen = bgp_statuses(&env);
            seen == both
        },
    );
    assert!(named.is_ok(), "{seen:?}");
    wait_for(Duration::from_secs(30), "FRR's route over both nodes", || {
        router
            .rib(&lab)
            .unwrap_or_default()
            .iter()
            .filter(|p| p.prefix == "203.0.113.20/32")
            .count()
            == 2
    })
    .unwrap();

    // node1 crashes: node2 removes node1's object (the mesh lost it).
    let crashed = agents.iter().position(|a| a.node == "node1").unwrap();
    agents[crashed].process.kill().unwrap();
    let named = wait_for(Duration::from_secs(60), "node2's object alone", || {
        seen = bgp_statuses(&env);
        seen == both[1..]
    });
    assert!(named.is_ok(), "{seen:?}");
    // It comes back: so does its object.
    agents[crashed] = meshlb_chaos::agent::start_chart_agent(&lab, &env, "node1").unwrap();
    let named = wait_for(Duration::from_secs(60), "node1's object again", || {
        seen = bgp_statuses(&env);
        seen == both
    });
    assert!(named.is_ok(), "{seen:?}");
    for agent in &agents {
        let log = agent.process.log();
        assert!(!log.contains("forbidden"), "{}: {log}", agent.node);
    }

    // node2 crashes while the API server is cut off: once it is back,
    // node1 removes node2's object within seconds.
    lab.isolate("control").unwrap();
    let second = agents.iter().position(|a| a.node == "node2").unwrap();
    agents[second].process.kill().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    lab.heal().unwrap();
    let named = wait_for(Duration::from_secs(30), "node1's object alone after the outage", || {
        seen = bgp_statuses(&env);
        seen == both[..1]
    });
    assert!(named.is_ok(), "{seen:?}");
    // The API server crashes and starts again; node2's pod too: both
    // objects, within seconds.
    env.crash_and_restart_in_lab(&lab).unwrap();
    agents[second] = meshlb_chaos::agent::start_chart_agent(&lab, &env, "node2").unwrap();
    let named = wait_for(Duration::from_secs(30), "both objects after the restarts", || {
        seen = bgp_statuses(&env);
        seen == both
    });
    assert!(named.is_ok(), "{seen:?}");
}
