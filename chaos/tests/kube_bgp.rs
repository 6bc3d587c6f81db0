//! BGP mode on real nodes ([`meshlb_chaos::cluster`]): the lab's
//! control-plane host runs the API server, scheduler and controller
//! manager, every node a kubelet, containerd and kube-proxy, meshlb is
//! installed with its chart, and FRR peers with every node. Every node
//! announcing a Service writes a ServiceBGPStatus naming the BGPPeers its
//! established sessions carry it to, as MetalLB 0.15's speakers do; the
//! object of a node whose agent is down (killed while its kubelet is dead,
//! so nothing restarts it) is removed by the others, also when the agent
//! went down while the API server was cut off, and comes back with the
//! agent when the kubelet restarts it, also across an API-server crash
//! and restart. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use meshlb_chaos::cluster::{Announcer, Cluster};
use meshlb_chaos::kube_env::KubeEnv;
use meshlb_chaos::router::{Router, RouterKind, RouterOptions};
use meshlb_chaos::wait::wait_for;
use meshlb_chaos::{Lab, LabSpec, Role};
use nix::sys::signal::Signal;

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
    let mut cluster = Cluster::start(&lab).unwrap();
    cluster.import_meshlb_image(&["lab"]).unwrap();
    cluster.install_meshlb("lab", &[]).unwrap();
    let peers = lab
        .hosts_with(Role::Node)
        .map(|h| (std::net::IpAddr::V4(h.ipv4), meshlb_chaos::router::NODE_ASN))
        .collect();
    let router = Router::start_with_options(&lab, RouterKind::Frr, peers, RouterOptions::default()).unwrap();
    let router_address = std::net::IpAddr::V4(lab.host("router").unwrap().ipv4);
    // Service web has no selector: its endpoints are the user's, one
    // ready on every node.
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
    cluster.env().apply("bgp.yaml", &config).unwrap();

    let both = vec![
        "node1 default/web [\"router\"]".to_owned(),
        "node2 default/web [\"router\"]".to_owned(),
    ];
    let mut seen = Vec::new();
    let named = wait_for(
        Duration::from_secs(60),
        "a ServiceBGPStatus per announcing node",
        || {
            seen = bgp_statuses(cluster.env());
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

    // node1's agent is killed with its kubelet dead (nothing restarts
    // it): node2 removes node1's object (the mesh lost it).
    cluster.stop_kubelet("node1").unwrap();
    cluster
        .signal_agent(Announcer::Meshlb, "node1", Signal::SIGKILL)
        .unwrap();
    let named = wait_for(Duration::from_secs(60), "node2's object alone", || {
        seen = bgp_statuses(cluster.env());
        seen == both[1..]
    });
    assert!(named.is_ok(), "{seen:?}");
    // The kubelet is back and restarts the agent: so is its object.
    cluster.start_kubelet(&lab, "node1").unwrap();
    let named = wait_for(Duration::from_secs(90), "node1's object again", || {
        seen = bgp_statuses(cluster.env());
        seen == both
    });
    assert!(named.is_ok(), "{seen:?}");
    for (pod, log) in cluster.agent_logs(Announcer::Meshlb).unwrap() {
        assert!(!log.contains("forbidden"), "{pod}: {log}");
    }

    // node2's agent goes down while the API server is cut off: once it is
    // back, node1 removes node2's object within seconds.
    cluster.stop_kubelet("node2").unwrap();
    lab.isolate("control").unwrap();
    cluster
        .signal_agent(Announcer::Meshlb, "node2", Signal::SIGKILL)
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    lab.rejoin("control").unwrap();
    let named = wait_for(Duration::from_secs(30), "node1's object alone after the outage", || {
        seen = bgp_statuses(cluster.env());
        seen == both[..1]
    });
    assert!(named.is_ok(), "{seen:?}");
    // The API server crashes and starts again; node2's kubelet comes back
    // and restarts its agent: both objects, within seconds.
    cluster.crash_and_restart_api_server(&lab).unwrap();
    cluster.start_kubelet(&lab, "node2").unwrap();
    let named = wait_for(Duration::from_secs(90), "both objects after the restarts", || {
        seen = bgp_statuses(cluster.env());
        seen == both
    });
    assert!(named.is_ok(), "{seen:?}");
}
