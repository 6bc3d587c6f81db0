//! The Kubernetes configuration source against a real kube-apiserver with
//! etcd (meshlb_chaos::kube_env): a consistent first snapshot, updates as
//! objects change, rejections naming the object, and an API-server
//! restart that relists without anything announced going missing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use futures_util::StreamExt;

use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use meshlb_chaos::kube_env::KubeEnv;
use meshlb_config::kinds::{IpAddressPool, L2Advertisement};
use meshlb_config::service::ServiceKey;
use meshlb_gossip::record::ServiceId;
use meshlb_node_agent::sources::kubernetes::KubernetesSource;
use meshlb_node_agent::sources::{Snapshot, SourceUpdate};
use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn install_crds(client: &kube::Client) {
    meshlb_chaos::kube_env::install_crds(client).await.unwrap();
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"team": "a"}}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
}

/// The metallb-system objects of a kind meshlb's CRDs define, untyped (the
/// tests write them as JSON, as users write YAML).
fn custom<K: kube::CustomResourceExt>(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), "metallb-system", &K::api_resource())
}

async fn apply(api: &Api<DynamicObject>, object: serde_json::Value) {
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    let patch = PatchParams::apply("meshlb-test").force();
    api.patch(&name, &patch, &Patch::Apply(object)).await.unwrap();
}

fn pool(name: &str, addresses: &[&str]) -> serde_json::Value {
    json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
           "metadata": {"name": name, "namespace": "metallb-system"}, "spec": {"addresses": addresses}})
}

fn load_balancer(name: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }))
    .unwrap()
}

/// The next update within a generous bound.
async fn next(updates: &mut tokio::sync::mpsc::Receiver<SourceUpdate>) -> SourceUpdate {
    tokio::time::timeout(Duration::from_secs(30), updates.recv())
        .await
        .expect("an update within 30 s")
        .expect("the source runs")
}

/// Updates until one satisfies `done`, checking `always` on every snapshot.
async fn until(
    updates: &mut tokio::sync::mpsc::Receiver<SourceUpdate>,
    always: impl Fn(&Snapshot),
    done: impl Fn(&SourceUpdate) -> bool,
) -> SourceUpdate {
    loop {
        let update = next(updates).await;
        if let SourceUpdate::Snapshot(snapshot) = &update {
            always(snapshot);
        }
        if done(&update) {
            return update;
        }
    }
}

fn web() -> ServiceKey {
    ServiceKey::new("shop", "web")
}

#[test]
fn snapshots_follow_the_api_server_through_changes_rejections_and_a_restart() {
    let mut env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(async {
        install_crds(&client).await;
        create_namespace(&client, "metallb-system").await;
        create_namespace(&client, "shop").await;
        apply(&custom::<IpAddressPool>(&client), pool("lan", &["192.0.2.0/28"])).await;
        apply(
            &custom::<L2Advertisement>(&client),
            json!({"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
                   "metadata": {"name": "lan", "namespace": "metallb-system"},
                   "spec": {"ipAddressPools": ["lan", "later"]}}),
        )
        .await;
        let services: Api<Service> = Api::namespaced(client.clone(), "shop");
        services
            .create(&PostParams::default(), &load_balancer("web"))
            .await
            .unwrap();
        let mut cluster_ip = load_balancer("internal");
        cluster_ip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        services.create(&PostParams::default(), &cluster_ip).await.unwrap();
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"node.kubernetes.io/exclude-from-external-load-balancers": ""}},
        }))
        .unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
    });

    let source = KubernetesSource::new(client.clone(), "metallb-system");
    rt.block_on(async {
        let mut stream = source.clone().spawn();
        // One consistent first snapshot with everything listed.
        let SourceUpdate::Snapshot(first) = next(&mut stream.updates).await else {
            panic!("the first update is a snapshot")
        };
        let inventory = &first.inventory;
        assert_eq!(inventory.config.pools.len(), 1);
        assert!(inventory.config.l2_advertisements.contains_key("lan"));
        assert_eq!(inventory.config.warnings.len(), 1, "the pool named before it exists");
        assert_eq!(
            inventory.services.keys().collect::<Vec<_>>(),
            [&web()],
            "only LoadBalancers"
        );
        assert!(!inventory.nodes["n1"].may_announce());
        assert_eq!(inventory.namespaces["shop"]["team"], "a");
        let web_uid = inventory.services[&web()].metadata.uid.clone();
        assert!(web_uid.is_some());

        // A second pool: one more snapshot.
        apply(&custom::<IpAddressPool>(&client), pool("later", &["192.0.2.16/28"])).await;
        let update = until(
            &mut stream.updates,
            |_| {},
            |u| matches!(u, SourceUpdate::Snapshot(s) if s.inventory.config.pools.contains_key("later")),
        )
        .await;
        let SourceUpdate::Snapshot(second) = update else {
            unreachable!()
        };
        assert!(second.inventory.config.warnings.is_empty());

        // A BGPPeer's password Secret: read (its password only), and a
        // changed Secret is a changed configuration. Secrets of other
        // types are never listed: one named by the peer reads as missing.
        let peer_key = |s: &Snapshot| {
            s.inventory
                .config
                .bgp_peers
                .get("tor")
                .and_then(|p| p.password.as_ref())
                .and_then(meshlb_config::config::PeerPassword::key)
                .map(|k| k.as_bytes().to_vec())
        };
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "metallb-system");
        for (type_, name, password) in [
            ("Opaque", "unrelated", "x"),
            ("kubernetes.io/basic-auth", "bgp-auth", "first"),
        ] {
            let secret = serde_json::from_value(json!({"metadata": {"name": name}, "type": type_,
                                                      "stringData": {"password": password, "username": "u"}}))
            .unwrap();
            secrets.create(&PostParams::default(), &secret).await.unwrap();
        }
        let peer = |secret: &str| {
            json!({"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
                   "metadata": {"name": "tor", "namespace": "metallb-system"},
                   "spec": {"myASN": 64512, "peerASN": 64513, "peerAddress": "192.0.2.254",
                            "passwordSecret": {"name": secret}}})
        };
        let peers = custom::<meshlb_config::kinds::BgpPeer>(&client);
        apply(&peers, peer("unrelated")).await;
        let waits_for_secret = |s: &Snapshot| {
            s.inventory.config.bgp_peers.contains_key("tor")
                && s.inventory
                    .config
                    .warnings
                    .iter()
                    .any(|w| w.to_string().contains("none exists yet"))
        };
        until(
            &mut stream.updates,
            |_| {},
            |u| matches!(u, SourceUpdate::Snapshot(s) if waits_for_secret(s)),
        )
        .await;
        apply(&peers, peer("bgp-auth")).await;
        until(
            &mut stream.updates,
            |_| {},
            |u| matches!(u, SourceUpdate::Snapshot(s) if peer_key(s).as_deref() == Some(&b"first"[..])),
        )
        .await;
        secrets
            .patch(
                "bgp-auth",
                &PatchParams::default(),
                &Patch::Merge(json!({"stringData": {"password": "second"}})),
            )
            .await
            .unwrap();
        until(
            &mut stream.updates,
            |_| {},
            |u| matches!(u, SourceUpdate::Snapshot(s) if peer_key(s).as_deref() == Some(&b"second"[..])),
        )
        .await;
        peers.delete("tor", &DeleteParams::default()).await.unwrap();

        // Pools the schema admits but that overlap: rejected, naming both.
        apply(&custom::<IpAddressPool>(&client), pool("overlap", &["192.0.2.8/29"])).await;
        let update = until(
            &mut stream.updates,
            |_| {},
            |u| matches!(u, SourceUpdate::Rejected { .. }),
        )
        .await;
        let SourceUpdate::Rejected { rejected, cluster } = update else {
            unreachable!()
        };
        let text = rejected.to_string();
        assert!(text.contains("IPAddressPool overlap") && text.contains("lan"), "{text}");
        // The cluster's objects come with it, to be served meanwhile.
        let cluster = cluster.expect("the cluster objects of the refused reading");
        assert!(cluster.inventory.services.contains_key(&web()));
        assert!(cluster.inventory.config.pools.is_empty(), "no configuration of its own");
        custom::<IpAddressPool>(&client)
            .delete("overlap", &DeleteParams::default())
            .await
            .unwrap();
        until(
            &mut stream.updates,
            |_| {},
            |u| matches!(u, SourceUpdate::Snapshot(s) if !s.inventory.config.pools.contains_key("overlap")),
        )
        .await;
        drop(stream);
    });

    // An API-server restart: the source relists, and no snapshot meanwhile
    // lacks what exists.
    let mut stream = rt.block_on(async { source.spawn() });
    rt.block_on(async { next(&mut stream.updates).await });
    env.restart().unwrap();
    rt.block_on(async {
        let client = env.client().await.unwrap();
        let services: Api<Service> = Api::namespaced(client.clone(), "shop");
        services.create(&PostParams::default(), &load_balancer("after")).await.unwrap();
        let has_both_pools_and_web = |s: &Snapshot| {
            assert!(s.inventory.services.contains_key(&web()), "web went missing");
            assert_eq!(s.inventory.config.pools.len(), 2, "a pool went missing");
        };
        until(&mut stream.updates, has_both_pools_and_web, |u| {
            matches!(u, SourceUpdate::Snapshot(s) if s.inventory.services.contains_key(&ServiceKey::new("shop", "after")))
        })
        .await;
    });
}

// ---------------------------------------------------------------------
// The allocator, in meshlb-agent processes against the real API server.

/// A `meshlb-agent run --kubernetes` process, killed when dropped.
struct Agent {
    child: std::process::Child,
    log: std::path::PathBuf,
    _state: tempfile::TempDir,
}

impl Agent {
    /// An agent with the chart's identity and permissions (the chart
    /// installed by [`cluster`]).
    fn start(env: &KubeEnv, name: &str, lease: &str) -> Agent {
        Agent::start_as(&env.chart_kubeconfig().unwrap(), name, lease)
    }

    fn start_as(kubeconfig: &std::path::Path, name: &str, lease: &str) -> Agent {
        Agent::start_with(kubeconfig, name, lease, &[])
    }

    fn start_with(kubeconfig: &std::path::Path, name: &str, lease: &str, extra: &[&str]) -> Agent {
        let state = tempfile::tempdir().unwrap();
        let log = state.path().join("agent.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_meshlb-agent"))
            .args(["run", "--kubernetes", "--kubeconfig"])
            .arg(kubeconfig)
            .arg("--state-dir")
            .arg(state.path())
            .args(["--node-name", name, "--allocator-lease", lease])
            .args(extra)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                "info,meshlb_node_agent::sources::kubernetes::allocator=debug",
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent {
            child,
            log,
            _state: state,
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets up a cluster with meshlb's CRDs, `metallb-system` with one pool,
/// the Helm chart (the agents' ServiceAccount and RBAC) and the namespace
/// `ns`.
async fn cluster(env: &KubeEnv, client: &kube::Client, ns: &str, addresses: &[&str]) {
    install_crds(client).await;
    create_namespace(client, "metallb-system").await;
    create_namespace(client, ns).await;
    apply(&custom::<IpAddressPool>(client), pool("pool", addresses)).await;
    env.install_chart(&[]).unwrap();
}

fn ingress(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| list.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

fn named_load_balancer(ns: &str, name: &str, annotations: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }))
    .unwrap()
}

/// Polls `probe` every 200 ms until it gives a value; fails the test with
/// its last reason after a generous two minutes.
async fn eventually<T, F: std::future::Future<Output = Result<T, String>>>(mut probe: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(why) => assert!(tokio::time::Instant::now() < deadline, "not within 120 s: {why}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `check` of every Service of `ns` holds.
async fn wait_services(
    client: &kube::Client,
    ns: &str,
    what: &str,
    check: impl Fn(&[Service]) -> bool,
) -> Vec<Service> {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    eventually(|| async {
        let list = services.list(&Default::default()).await.unwrap().items;
        if check(&list) { Ok(list) } else { Err(what.to_owned()) }
    })
    .await
}

fn allocated(list: &[Service]) -> usize {
    list.iter().filter(|s| !ingress(s).is_empty()).count()
}

/// Every address in some status, asserting none is held twice.
fn no_duplicates(list: &[Service]) -> std::collections::BTreeMap<String, String> {
    let mut holders = std::collections::BTreeMap::new();
    for service in list {
        let name = service.metadata.name.clone().unwrap();
        for ip in ingress(service) {
            if let Some(other) = holders.insert(ip.clone(), name.clone()) {
                panic!("{ip} given to both {other} and {name}");
            }
        }
    }
    holders
}

async fn claims(client: &kube::Client) -> Vec<meshlb_config::crd::AddressClaim> {
    let api: Api<meshlb_config::crd::AddressClaim> = Api::namespaced(client.clone(), "metallb-system");
    api.list(&Default::default()).await.unwrap().items
}

/// The reasons and notes of the Events about Service `ns/name`.
async fn events(client: &kube::Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[test]
fn two_allocators_at_once_never_give_one_address_twice() {
    let env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(cluster(&env, &client, "burst", &["198.51.100.0/24"]));
    // Two Leases: both agents allocate at the same time, and only the
    // claims keep them apart. The chart grants one Lease, so these two
    // run as admin.
    let a = Agent::start_as(&env.kubeconfig(), "node-a", "lease-a");
    let b = Agent::start_as(&env.kubeconfig(), "node-b", "lease-b");
    const SERVICES: usize = 300;
    const ADDRESSES: usize = 256;
    rt.block_on(async {
        let services: Api<Service> = Api::namespaced(client.clone(), "burst");
        futures_util::stream::iter(0..SERVICES)
            .for_each_concurrent(32, |i| {
                let services = services.clone();
                async move {
                    let service = named_load_balancer("burst", &format!("s{i:03}"), json!({}));
                    services.create(&PostParams::default(), &service).await.unwrap();
                }
            })
            .await;
        let list = wait_services(&client, "burst", "every address given", |list| {
            list.len() == SERVICES && allocated(list) == ADDRESSES
        })
        .await;
        let holders = no_duplicates(&list);
        assert_eq!(holders.len(), ADDRESSES);
        // Both allocated (else this tested one allocator).
        let (log_a, log_b) = (a.log(), b.log());
        assert!(
            log_a.contains("leader=true") && log_b.contains("leader=true"),
            "{log_a}\n{log_b}"
        );
        let collisions = |log: &str| log.matches("changed meanwhile").count();
        println!(
            "writes refused because the other allocator got there first: node-a {}, node-b {}",
            collisions(&log_a),
            collisions(&log_b)
        );
        // Every address has one claim naming the Service that holds it,
        // once the losers' leftover claims are let go.
        eventually(|| async {
            let claims = claims(&client).await;
            let settled = claims.len() == ADDRESSES
                && claims.iter().all(|c| {
                    c.spec.holders.len() == 1 && holders.get(&c.spec.address) == Some(&c.spec.holders[0].name)
                });
            if settled {
                Ok(())
            } else {
                Err(format!("claims did not settle: {} claims", claims.len()))
            }
        })
        .await;
        // The Services left without an address were told why.
        let pending: Vec<String> = list
            .iter()
            .filter(|s| ingress(s).is_empty())
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(pending.len(), SERVICES - ADDRESSES);
        let told = events(&client, "burst", &pending[0]).await;
        assert!(
            told.iter()
                .any(|(reason, note)| reason == "AllocationFailed" && note.contains("no addresses")),
            "{told:?}"
        );
        // Addresses freed go to the Services waiting: none stays pending
        // while an address is free.
        for service in list.iter().filter(|s| !ingress(s).is_empty()).take(10) {
            services
                .delete(service.metadata.name.as_deref().unwrap(), &DeleteParams::default())
                .await
                .unwrap();
        }
        let list = wait_services(&client, "burst", "freed addresses given again", |list| {
            list.len() == SERVICES - 10 && allocated(list) == ADDRESSES
        })
        .await;
        no_duplicates(&list);
        // Each allocated Service names its pool, as MetalLB's do.
        for service in list.iter().filter(|s| !ingress(s).is_empty()) {
            let pool = service
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("metallb.io/ip-allocated-from-pool"));
            assert_eq!(pool.map(String::as_str), Some("pool"), "{:?}", service.metadata.name);
        }
    });
}

#[test]
fn addresses_metallb_wrote_are_kept_and_the_allocator_fails_over() {
    let env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(cluster(&env, &client, "moved", &["203.0.113.0/26"]));
    // Services as MetalLB's controller left them: addresses out of
    // first-free order, with its annotation.
    let written_by_metallb: Vec<(String, String)> = (0..20)
        .map(|i| (format!("m{i:02}"), format!("203.0.113.{}", 40 - i)))
        .collect();
    rt.block_on(async {
        let services: Api<Service> = Api::namespaced(client.clone(), "moved");
        for (name, ip) in &written_by_metallb {
            let service = named_load_balancer("moved", name, json!({"metallb.io/ip-allocated-from-pool": "pool"}));
            services.create(&PostParams::default(), &service).await.unwrap();
            let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}});
            services
                .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
                .await
                .unwrap();
        }
    });
    let first = Agent::start(&env, "node-a", "meshlb-allocator");
    let second = Agent::start(&env, "node-b", "meshlb-allocator");
    rt.block_on(async {
        let services: Api<Service> = Api::namespaced(client.clone(), "moved");
        services
            .create(&PostParams::default(), &named_load_balancer("moved", "new", json!({})))
            .await
            .unwrap();
        let list = wait_services(&client, "moved", "the new Service allocated", |list| {
            list.iter()
                .any(|s| s.metadata.name.as_deref() == Some("new") && !ingress(s).is_empty())
        })
        .await;
        let holders = no_duplicates(&list);
        for (name, ip) in &written_by_metallb {
            assert_eq!(holders.get(ip), Some(name), "{name} lost {ip}");
        }
        let new = list.iter().find(|s| s.metadata.name.as_deref() == Some("new")).unwrap();
        assert_eq!(ingress(new), ["203.0.113.0"], "the first free address");
        // Claimed, every one, including MetalLB's.
        eventually(|| async {
            let claimed = claims(&client).await.len();
            if claimed == written_by_metallb.len() + 1 {
                Ok(())
            } else {
                Err(format!("{claimed} claims"))
            }
        })
        .await;

        // The allocating agent dies (SIGKILL: it cannot give the Lease
        // up); the other takes over once the Lease expires.
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "metallb-system");
        let holder = leases
            .get("meshlb-allocator")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .unwrap();
        let (leader, follower) = if holder == "node-a" {
            (&first, &second)
        } else {
            (&second, &first)
        };
        leader.signal("-KILL");
        let killed = std::time::Instant::now();
        services
            .create(
                &PostParams::default(),
                &named_load_balancer("moved", "after-failover", json!({})),
            )
            .await
            .unwrap();
        wait_services(&client, "moved", "allocated after the failover", |list| {
            list.iter()
                .any(|s| s.metadata.name.as_deref() == Some("after-failover") && !ingress(s).is_empty())
        })
        .await;
        let took = killed.elapsed();
        println!("allocator failover after SIGKILL: {:.2} s", took.as_secs_f64());
        assert!(took < Duration::from_secs(30), "failover took {took:?}");
        assert!(follower.log().contains("leader=true"), "{}", follower.log());
    });
}

#[test]
fn malformed_requests_get_an_event_and_no_address() {
    let env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(cluster(&env, &client, "bad", &["192.0.2.0/28"]));
    let agent = Agent::start(&env, "node-a", "meshlb-allocator");
    rt.block_on(async {
        let services: Api<Service> = Api::namespaced(client.clone(), "bad");
        services
            .create(&PostParams::default(), &named_load_balancer("bad", "good", json!({})))
            .await
            .unwrap();
        let list = wait_services(&client, "bad", "the good Service allocated", |list| {
            allocated(list) == 1
        })
        .await;
        let good = ingress(&list[0]);
        let cases = [
            (
                "not-an-address",
                json!({"metallb.io/loadBalancerIPs": "192.0.2.5,banana"}),
                "banana",
            ),
            (
                "outside",
                json!({"metallb.io/loadBalancerIPs": "198.51.100.99"}),
                "in no IPAddressPool",
            ),
            ("in-use", json!({"metallb.io/loadBalancerIPs": good[0]}), "in use"),
        ];
        for (name, annotations, _) in &cases {
            services
                .create(
                    &PostParams::default(),
                    &named_load_balancer("bad", name, annotations.clone()),
                )
                .await
                .unwrap();
        }
        let mut both: Service = named_load_balancer("bad", "both", json!({"metallb.io/loadBalancerIPs": "192.0.2.6"}));
        both.spec.as_mut().unwrap().load_balancer_ip = Some("192.0.2.7".into());
        services.create(&PostParams::default(), &both).await.unwrap();
        let expected = cases
            .iter()
            .map(|(name, _, reason)| (*name, *reason))
            .chain([("both", "loadBalancerIPs annotation")]);
        for (name, reason) in expected {
            eventually(|| async {
                let told = events(&client, "bad", name).await;
                if told
                    .iter()
                    .any(|(r, note)| r == "AllocationFailed" && note.contains(reason))
                {
                    Ok(())
                } else {
                    Err(format!(
                        "{name}: no AllocationFailed with {reason:?}: {told:?}\n{}",
                        agent.log()
                    ))
                }
            })
            .await;
        }
        // A new reason is a new Event: `kubectl describe` shows why now.
        let elsewhere = json!({"metadata": {"annotations": {"metallb.io/loadBalancerIPs": "198.51.100.98"}}});
        services
            .patch("outside", &PatchParams::default(), &Patch::Merge(elsewhere))
            .await
            .unwrap();
        eventually(|| async {
            let told = events(&client, "bad", "outside").await;
            if told
                .iter()
                .any(|(r, note)| r == "AllocationFailed" && note.contains("198.51.100.98"))
            {
                Ok(())
            } else {
                Err(format!("no AllocationFailed with the new reason: {told:?}"))
            }
        })
        .await;
        let list = services.list(&Default::default()).await.unwrap().items;
        for service in &list {
            let name = service.metadata.name.as_deref().unwrap();
            let expected: &[String] = if name == "good" { &good } else { &[] };
            assert_eq!(ingress(service), expected, "{name}");
        }
        // No longer a LoadBalancer: the address is released, and the
        // Service that asked for it gets it.
        let cluster_ip = json!({"spec": {"type": "ClusterIP"}});
        services
            .patch("good", &PatchParams::default(), &Patch::Merge(cluster_ip))
            .await
            .unwrap();
        let list = wait_services(&client, "bad", "the released address given to in-use", |list| {
            list.iter()
                .any(|s| s.metadata.name.as_deref() == Some("in-use") && ingress(s) == good)
        })
        .await;
        no_duplicates(&list);
    });
}

/// The addresses of every Service of `ns`, by name.
async fn addresses_of(client: &kube::Client, ns: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    services
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| (s.metadata.name.clone().unwrap(), ingress(s)))
        .collect()
}

/// A pool deleted while its Services use it (by mistake, or with its CRD)
/// takes no address away: every Service keeps its address, told why
/// (AddressHeld), and when the pool is applied again every one has the
/// address it had; one asking for another address meanwhile gets it at
/// once. With a short hold the addresses go once it ends.
#[test]
fn addresses_outlive_their_pool_and_come_back_with_it() {
    let env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(cluster(&env, &client, "sticky", &["192.0.2.0/27"]));
    let agent = Agent::start_with(
        &env.chart_kubeconfig().unwrap(),
        "node-a",
        "meshlb-allocator",
        &["--hold-orphaned-addresses", "10m"],
    );
    rt.block_on(async {
        let services: Api<Service> = Api::namespaced(client.clone(), "sticky");
        for i in 0..20 {
            services
                .create(
                    &PostParams::default(),
                    &named_load_balancer("sticky", &format!("s{i:02}"), json!({})),
                )
                .await
                .unwrap();
        }
        wait_services(&client, "sticky", "all 20 allocated", |list| allocated(list) == 20).await;
        let before = addresses_of(&client, "sticky").await;
        let pools = custom::<IpAddressPool>(&client);
        pools.delete("pool", &DeleteParams::default()).await.unwrap();
        eventually(|| async {
            let told = events(&client, "sticky", "s07").await;
            if told
                .iter()
                .any(|(r, note)| r == "AddressHeld" && note.contains("in no IPAddressPool"))
            {
                Ok(())
            } else {
                Err(format!("no AddressHeld on s07: {told:?}\n{}", agent.log()))
            }
        })
        .await;
        // A while without the pool: nothing changes.
        for _ in 0..10 {
            assert_eq!(addresses_of(&client, "sticky").await, before, "{}", agent.log());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // One asks for an address of its own meanwhile (in no pool: it
        // fails, and lets its old one go at once).
        let asks = json!({"metadata": {"annotations": {"metallb.io/loadBalancerIPs": "192.0.2.200"}}});
        services
            .patch("s19", &PatchParams::default(), &Patch::Merge(asks))
            .await
            .unwrap();
        wait_services(&client, "sticky", "s19 let its address go", |list| {
            list.iter()
                .any(|s| s.metadata.name.as_deref() == Some("s19") && ingress(s).is_empty())
        })
        .await;
        apply(&pools, pool("pool", &["192.0.2.0/27"])).await;
        // A new Service gets a free address, never one held.
        services
            .create(&PostParams::default(), &named_load_balancer("sticky", "new", json!({})))
            .await
            .unwrap();
        let list = wait_services(&client, "sticky", "the new Service allocated", |list| {
            list.iter()
                .any(|s| s.metadata.name.as_deref() == Some("new") && !ingress(s).is_empty())
        })
        .await;
        no_duplicates(&list);
        let after = addresses_of(&client, "sticky").await;
        for (name, addresses) in &before {
            if name != "s19" {
                assert_eq!(&after[name], addresses, "{name} kept its address");
            }
        }
    });
    drop(agent);
    // A short hold: the addresses go when it ends.
    let agent = Agent::start_with(
        &env.chart_kubeconfig().unwrap(),
        "node-a",
        "meshlb-allocator",
        &["--hold-orphaned-addresses", "3s"],
    );
    rt.block_on(async {
        wait_services(&client, "sticky", "the agent serving", |list| allocated(list) == 20).await;
        let pools = custom::<IpAddressPool>(&client);
        pools.delete("pool", &DeleteParams::default()).await.unwrap();
        wait_services(&client, "sticky", "every address let go after the hold", |list| {
            allocated(list) == 0
        })
        .await;
        let log = agent.log();
        assert!(!log.contains("forbidden"), "{log}");
    });
}

/// After an API-server restart every watch comes back within seconds of
/// the server being ready: a Service created then is addressed at once,
/// not after a backoff grown while the server was away.
#[test]
fn watches_recover_within_seconds_of_an_api_server_restart() {
    let mut env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(cluster(&env, &client, "back", &["192.0.2.0/28"]));
    let agent = Agent::start(&env, "node-a", "meshlb-allocator");
    rt.block_on(async {
        let services: Api<Service> = Api::namespaced(client.clone(), "back");
        services
            .create(
                &PostParams::default(),
                &named_load_balancer("back", "before", json!({})),
            )
            .await
            .unwrap();
        wait_services(&client, "back", "the first Service allocated", |list| {
            allocated(list) == 1
        })
        .await;
    });
    for (round, away) in [Duration::from_secs(2), Duration::from_secs(12)]
        .into_iter()
        .enumerate()
    {
        env.stop().unwrap();
        // Away long enough for an unbounded backoff to grow.
        std::thread::sleep(away);
        env.restart().unwrap();
        let ready = std::time::Instant::now();
        let client = rt.block_on(env.client()).unwrap();
        rt.block_on(async {
            let services: Api<Service> = Api::namespaced(client.clone(), "back");
            let name = format!("after-{round}");
            services
                .create(&PostParams::default(), &named_load_balancer("back", &name, json!({})))
                .await
                .unwrap();
            wait_services(&client, "back", "the new Service allocated", |list| {
                list.iter()
                    .any(|s| s.metadata.name.as_deref() == Some(name.as_str()) && !ingress(s).is_empty())
            })
            .await;
        });
        let took = ready.elapsed();
        eprintln!("away {away:?}: a Service created as the server came back was addressed after {took:?}");
        assert!(
            took < Duration::from_secs(6),
            "away {away:?}: addressed {took:?} after the server was ready\n{}",
            agent.log()
        );
    }
}

/// The agent's ConfigurationState, once `check` holds of its status.
async fn configuration_state(
    client: &kube::Client,
    node: &str,
    what: &str,
    check: impl Fn(&meshlb_config::crd::ConfigurationStateStatus) -> bool,
) -> meshlb_config::crd::ConfigurationStateStatus {
    let states: Api<meshlb_config::crd::ConfigurationState> = Api::namespaced(client.clone(), "metallb-system");
    let name = format!("agent-{node}");
    eventually(|| async {
        let state = states.get_opt(&name).await.unwrap().and_then(|s| s.status);
        match state {
            Some(status) if check(&status) => Ok(status),
            other => Err(format!("{what}: {other:?}")),
        }
    })
    .await
}

/// A kind that cannot be read (its CRD missing, the agent not allowed to
/// list it, its stored objects unconvertible) is reported, in the
/// ConfigurationState and an Event and the log, with what to do, and the
/// agent goes on serving everything else; once it can be read again the
/// state is Valid.
#[test]
fn a_kind_that_cannot_be_read_is_reported_and_the_rest_is_served() {
    let env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(cluster(&env, &client, "isolated", &["192.0.2.0/28"]));
    let role = meshlb_chaos::kube_env::CHART_RELEASE;
    let kubectl = |args: &[&str]| env.run_kubectl(args).unwrap();
    // No L2Policy CRD (a cluster with MetalLB's CRDs only), and a Role
    // without BGPPeers.
    kubectl(&["delete", "crd", "l2policies.meshlb.io"]);
    let rules = kubectl(&[
        "get",
        "role",
        "-n",
        "metallb-system",
        role,
        "-o",
        "jsonpath={.rules[0].resources}",
    ]);
    assert!(rules.contains("bgppeers"), "{rules}");
    kubectl(&[
        "patch",
        "role",
        "-n",
        "metallb-system",
        role,
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/rules/0/resources", "value": ["ipaddresspools", "l2advertisements", "bgpadvertisements", "bfdprofiles", "communities"]}]"#,
    ]);
    let agent = Agent::start(&env, "node-a", "meshlb-allocator");
    rt.block_on(async {
        let services: Api<Service> = Api::namespaced(client.clone(), "isolated");
        services
            .create(
                &PostParams::default(),
                &named_load_balancer("isolated", "one", json!({})),
            )
            .await
            .unwrap();
        let served = tokio::time::timeout(
            Duration::from_secs(60),
            wait_services(&client, "isolated", "served without L2Policy and BGPPeer", |list| {
                allocated(list) == 1
            }),
        )
        .await;
        assert!(served.is_ok(), "not served:\n{}", agent.log());
        let state = configuration_state(&client, "node-a", "both kinds reported", |s| {
            s.error_summary.contains("L2Policy cannot be read: not found")
                && s.error_summary.contains("BGPPeer cannot be read: forbidden")
        })
        .await;
        assert_eq!(state.result, Some(meshlb_config::crd::ConfigurationResult::Invalid));
        assert!(
            state.error_summary.contains("meshlb-agent crds"),
            "{}",
            state.error_summary
        );
        let told = events(&client, "metallb-system", "agent-node-a").await;
        assert!(
            told.iter()
                .any(|(r, note)| r == "KindUnreadable" && note.contains("BGPPeer")),
            "{told:?}"
        );
    });
    let log = agent.log();
    assert!(
        log.contains(
            "forbidden: this agent may not list and watch /apis/metallb.io/v1beta2/namespaces/metallb-system/bgppeers"
        ),
        "{log}"
    );
    // Said at start, with every other permission it lacks.
    assert!(
        log.contains(
            "the agent may not: list metallb.io/bgppeers in namespace metallb-system, \
             watch metallb.io/bgppeers in namespace metallb-system;"
        ),
        "{log}"
    );
    // Both can be read again: Valid.
    let granted = format!(r#"[{{"op": "replace", "path": "/rules/0/resources", "value": {rules}}}]"#);
    kubectl(&[
        "patch",
        "role",
        "-n",
        "metallb-system",
        role,
        "--type=json",
        "-p",
        &granted,
    ]);
    env.apply_crds().unwrap();
    rt.block_on(async {
        let state = configuration_state(&client, "node-a", "Valid again", |s| {
            s.result == Some(meshlb_config::crd::ConfigurationResult::Valid)
        })
        .await;
        assert_eq!(state.error_summary, "");
    });
    // A BGPPeer stored as v1beta1, and a conversion webhook that is gone
    // (MetalLB's, after `helm uninstall metallb`): BGPPeers cannot be
    // listed; an agent starting then serves the rest.
    drop(agent);
    kubectl(&[
        "patch",
        "crd",
        "bgppeers.metallb.io",
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/spec/versions/0/storage", "value": true}, {"op": "replace", "path": "/spec/versions/1/storage", "value": false}]"#,
    ]);
    env.apply(
        "old-peer.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: old, namespace: metallb-system}\n\
         spec: {myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.1}\n",
    )
    .unwrap();
    kubectl(&[
        "patch",
        "crd",
        "bgppeers.metallb.io",
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/spec/versions/0/storage", "value": false}, {"op": "replace", "path": "/spec/versions/1/storage", "value": true}, {"op": "replace", "path": "/spec/conversion", "value": {"strategy": "Webhook", "webhook": {"clientConfig": {"service": {"name": "metallb-webhook-service", "namespace": "metallb-system", "path": "/convert"}}, "conversionReviewVersions": ["v1beta1", "v1beta2"]}}}]"#,
    ]);
    // The API server takes a moment to drop the cache it read them into.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while env.run_kubectl(&["get", "bgppeers", "-n", "metallb-system"]).is_ok() {
        assert!(std::time::Instant::now() < deadline, "the stored BGPPeer still reads");
        std::thread::sleep(Duration::from_millis(500));
    }
    let _agent = Agent::start(&env, "node-a", "meshlb-allocator");
    rt.block_on(async {
        let state = configuration_state(&client, "node-a", "BGPPeer's storage reported", |s| {
            s.error_summary
                .contains("BGPPeer cannot be read: the API server cannot read the stored objects")
        })
        .await;
        assert!(
            state.error_summary.contains("migrate --from-metallb"),
            "{}",
            state.error_summary
        );
        let services: Api<Service> = Api::namespaced(client.clone(), "isolated");
        services
            .create(
                &PostParams::default(),
                &named_load_balancer("isolated", "two", json!({})),
            )
            .await
            .unwrap();
        wait_services(&client, "isolated", "a new Service served meanwhile", |list| {
            allocated(list) == 2
        })
        .await;
    });
}

/// The chart grants everything the agent does (each asked of the API
/// server as the chart's ServiceAccount), and an identity without it is
/// told every one.
#[test]
fn the_chart_grants_everything_the_agent_does() {
    use meshlb_node_agent::sources::kubernetes::permissions::{missing, needed};
    let env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(cluster(&env, &client, "rbac", &["192.0.2.0/28"]));
    let lease = meshlb_node_agent::sources::kubernetes::allocator::LEASE_NAME;
    rt.block_on(async {
        let agent = env
            .service_account_client(
                meshlb_chaos::kube_env::CHART_NAMESPACE,
                meshlb_chaos::kube_env::CHART_RELEASE,
            )
            .await
            .unwrap();
        let lacking = missing(&agent, "metallb-system", &needed(lease)).await.unwrap();
        assert!(lacking.is_empty(), "the chart does not grant {lacking:?}");
        let stranger = env.service_account_client("metallb-system", "stranger").await.unwrap();
        let lacking = missing(&stranger, "metallb-system", &needed(lease)).await.unwrap();
        assert_eq!(lacking.len(), needed(lease).len(), "{lacking:?}");
    });
}

#[test]
fn services_sharing_an_address_hold_one_claim() {
    let env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(cluster(&env, &client, "shared", &["192.0.2.0/29"]));
    let _agent = Agent::start(&env, "node-a", "meshlb-allocator");
    rt.block_on(async {
        let services: Api<Service> = Api::namespaced(client.clone(), "shared");
        // The keys differ by spaces around them: one key all the same.
        for (name, protocol, port, key) in [("dns-tcp", "TCP", 53, "dns"), ("dns-udp", "UDP", 53, " dns ")] {
            let service: Service = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "shared", "annotations": {"metallb.io/allow-shared-ip": key}},
                "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": protocol}]},
            }))
            .unwrap();
            services.create(&PostParams::default(), &service).await.unwrap();
        }
        let list = wait_services(&client, "shared", "both allocated", |list| allocated(list) == 2).await;
        assert_eq!(ingress(&list[0]), ingress(&list[1]), "one address for both");
        let shared = eventually(|| async {
            let claims = claims(&client).await;
            match claims.as_slice() {
                [one] if one.spec.holders.len() == 2 => Ok(one.clone()),
                _ => Err(format!("{claims:?}")),
            }
        })
        .await;
        assert_eq!(shared.spec.sharing_key.as_deref(), Some("dns"));
        // One leaves: the other keeps the address, and the claim.
        services.delete("dns-tcp", &DeleteParams::default()).await.unwrap();
        let kept = eventually(|| async {
            let claims = claims(&client).await;
            match claims.as_slice() {
                [one] if one.spec.holders.len() == 1 => Ok(one.clone()),
                _ => Err(format!("{claims:?}")),
            }
        })
        .await;
        assert_eq!(kept.spec.holders[0].name, "dns-udp");
        let udp = services.get("dns-udp").await.unwrap();
        assert_eq!(ingress(&udp), ingress(&list[1]));
    });
}

#[test]
fn each_agent_reports_its_configuration_state_and_events_on_bad_objects() {
    let env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(cluster(&env, &client, "cfg", &["192.0.2.0/28"]));
    let agent = Agent::start(&env, "node-a", "meshlb-allocator");
    rt.block_on(async {
        let states: Api<meshlb_config::crd::ConfigurationState> = Api::namespaced(client.clone(), "metallb-system");
        let result = |state: &meshlb_config::crd::ConfigurationState| state.status.as_ref().and_then(|s| s.result);
        let wait_for = |want: meshlb_config::crd::ConfigurationResult| {
            let states = states.clone();
            eventually(move || {
                let states = states.clone();
                async move {
                    match states.get_opt("agent-node-a").await.unwrap() {
                        Some(state) if result(&state) == Some(want) => Ok(state),
                        other => Err(format!("ConfigurationState not {want:?}: {other:?}")),
                    }
                }
            })
        };
        let valid = wait_for(meshlb_config::crd::ConfigurationResult::Valid).await;
        assert_eq!(valid.metadata.labels.unwrap()["metallb.io/node-name"], "node-a");
        apply(&custom::<IpAddressPool>(&client), pool("overlap", &["192.0.2.8/29"])).await;
        let invalid = wait_for(meshlb_config::crd::ConfigurationResult::Invalid).await;
        let summary = invalid.status.unwrap().error_summary;
        assert!(
            summary.contains("IPAddressPool overlap") && summary.contains("overlaps"),
            "{summary}"
        );
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "metallb-system");
        eventually(|| async {
            let events = api.list(&Default::default()).await.unwrap().items;
            let on_pool = events.iter().any(|e| {
                e.reason.as_deref() == Some("InvalidConfiguration")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("overlap")
                    && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("IPAddressPool")
            });
            if on_pool {
                Ok(())
            } else {
                Err(format!("no InvalidConfiguration event on the pool: {}", agent.log()))
            }
        })
        .await;
        // Meanwhile a new Service is served with the last good
        // configuration (as MetalLB does), and the state stays Invalid.
        let services: Api<Service> = Api::namespaced(client.clone(), "cfg");
        services
            .create(&PostParams::default(), &named_load_balancer("cfg", "new", json!({})))
            .await
            .unwrap();
        let listed = wait_services(&client, "cfg", "the new Service allocated", |list| allocated(list) == 1).await;
        let address: std::net::Ipv4Addr = ingress(&listed[0])[0].parse().unwrap();
        assert!(address.octets()[3] < 16, "{address} is from the running pool");
        let state = states.get("agent-node-a").await.unwrap();
        assert_eq!(result(&state), Some(meshlb_config::crd::ConfigurationResult::Invalid));
        custom::<IpAddressPool>(&client)
            .delete("overlap", &DeleteParams::default())
            .await
            .unwrap();
        let healed = wait_for(meshlb_config::crd::ConfigurationResult::Valid).await;
        let healed = healed.status.unwrap();
        assert_eq!(healed.error_summary, "", "Valid carries no errors");
        assert!(healed.conditions.iter().all(|c| c.message.is_empty()), "{healed:?}");
        // The pool's status counts what the Services hold, as MetalLB's
        // controller writes it.
        let pools = custom::<IpAddressPool>(&client);
        eventually(|| async {
            let pool = pools.get("pool").await.unwrap();
            let status = pool.data.get("status").cloned().unwrap_or_default();
            let counts = (
                status["assignedIPv4"].as_i64(),
                status["availableIPv4"].as_i64(),
                status["assignedIPv6"].as_i64(),
            );
            if counts == (Some(1), Some(15), Some(0)) {
                Ok(())
            } else {
                Err(format!("pool status {status}"))
            }
        })
        .await;
    });
    // The chart's RBAC granted every write above.
    let log = agent.log();
    assert!(!log.contains("forbidden"), "{log}");
}

/// node-a's ServiceL2Status objects: `namespace/service@node` and the
/// interfaces of each, sorted.
async fn statuses_of_node_a(api: &Api<meshlb_config::crd::ServiceL2Status>) -> Vec<(String, Vec<String>)> {
    let listed = api
        .list(&kube::api::ListParams::default().labels("metallb.io/node=node-a"))
        .await
        .unwrap()
        .items;
    let mut got: Vec<(String, Vec<String>)> = listed
        .iter()
        .map(|o| {
            let s = o.status.clone().unwrap_or_default();
            (
                format!("{}/{}@{}", s.service_namespace, s.service_name, s.node),
                s.interfaces.into_iter().map(|i| i.name).collect(),
            )
        })
        .collect();
    got.sort();
    got
}

/// The ServiceL2Status writer follows what Layer 2 says this node
/// announces: an object per Service with its interfaces, updated, removed
/// when it stops (leftovers from before a restart included), a
/// nodeAssigned Event on the gain; the objects of the Service it took
/// over that nodes not announcing it left behind removed, and every object
/// of a node the mesh lost (a live node's object of another Service kept).
#[test]
fn service_l2_statuses_follow_what_the_node_announces() {
    use meshlb_node_agent::sources::kubernetes::service_status;
    use meshlb_node_agent::status::{Layer2Service, Layer2Status};
    use std::collections::BTreeMap;

    let env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(cluster(&env, &client, "l2", &["192.0.2.0/28"]));
    let layer2 = |announcing: &[&str], interfaces: &[&str]| {
        let service = |name: &str, address: &str| Layer2Service {
            key: ServiceKey::new("l2", name),
            addresses: vec![address.parse().unwrap()],
            serveable: true,
            interfaces: interfaces.iter().map(|i| (*i).to_owned()).collect(),
            blocked: None,
            preferences: Vec::new(),
        };
        std::sync::Arc::new(Layer2Status {
            services: BTreeMap::from([
                (ServiceId(1), service("web", "192.0.2.1")),
                (ServiceId(2), service("db", "192.0.2.2")),
            ]),
            announcing: announcing.iter().map(|a| a.parse().unwrap()).collect(),
        })
    };
    let entry = |svc: &str, interfaces: &[&str]| {
        (
            format!("l2/{svc}@node-a"),
            interfaces.iter().map(|i| (*i).to_owned()).collect::<Vec<_>>(),
        )
    };
    rt.block_on(async {
        let api: Api<meshlb_config::crd::ServiceL2Status> = Api::namespaced(client.clone(), "metallb-system");
        let expect = |want: Vec<(String, Vec<String>)>| {
            let api = api.clone();
            eventually(move || {
                let (api, want) = (api.clone(), want.clone());
                async move {
                    let got = statuses_of_node_a(&api).await;
                    if got == want {
                        Ok(())
                    } else {
                        Err(format!("node-a's ServiceL2Status: {got:?}"))
                    }
                }
            })
        };
        // A leftover of this node from before a restart; web's object of
        // node-b, which the mesh has but which announces nothing, and of
        // node-c, which crashed (the mesh no longer has it); another of
        // node-c's; and one of node-b's of a Service node-a does not
        // announce.
        for (name, node, service) in [
            ("l2-leftover", "node-a", "web"),
            ("l2-quiet", "node-b", "web"),
            ("l2-crashed", "node-c", "web"),
            ("l2-other", "node-c", "db"),
            ("l2-busy", "node-b", "db"),
        ] {
            let mut object = meshlb_config::crd::ServiceL2Status::new(name, Default::default());
            object.metadata.labels = Some(BTreeMap::from([
                ("metallb.io/node".to_owned(), node.to_owned()),
                ("metallb.io/service-name".to_owned(), service.to_owned()),
                ("metallb.io/service-namespace".to_owned(), "l2".to_owned()),
            ]));
            api.create(&PostParams::default(), &object).await.unwrap();
        }
        let member = |name: &str| meshlb_gossip::mesh::MemberView {
            id: meshlb_gossip::identity::NodeId::new(name, "192.0.2.100:7946".parse().unwrap(), 1),
            record: None,
        };
        let mut mesh = meshlb_gossip::driver::MeshStatus {
            members: vec![member("node-a"), member("node-b")],
            ..Default::default()
        };
        mesh.fence.quorum = true;
        let (_mesh_tx, mesh_rx) = tokio::sync::watch::channel(std::sync::Arc::new(mesh));
        let (tx, rx) = tokio::sync::watch::channel(layer2(&["192.0.2.1"], &["eth0"]));
        // With the chart's identity, as the agent writes them.
        let agent_client = env
            .service_account_client(
                meshlb_chaos::kube_env::CHART_NAMESPACE,
                meshlb_chaos::kube_env::CHART_RELEASE,
            )
            .await
            .unwrap();
        let writer = tokio::spawn(service_status::run_layer2(
            agent_client,
            "metallb-system".into(),
            "node-a".into(),
            rx,
            mesh_rx,
        ));
        expect(vec![entry("web", &["eth0"])]).await;
        for gone in ["l2-quiet", "l2-crashed", "l2-other"] {
            eventually(|| async {
                match api.get_opt(gone).await.unwrap() {
                    None => Ok(()),
                    Some(_) => Err(format!("{gone} is still there")),
                }
            })
            .await;
        }
        assert!(
            api.get_opt("l2-busy").await.unwrap().is_some(),
            "a live node's object of a Service node-a does not announce is not its business"
        );
        let told = events(&client, "l2", "web").await;
        assert!(
            told.iter()
                .any(|(reason, note)| reason == "nodeAssigned" && note.contains("node-a")),
            "{told:?}"
        );
        tx.send_replace(layer2(&["192.0.2.1", "192.0.2.2"], &["eth0", "eth1"]));
        expect(vec![entry("db", &["eth0", "eth1"]), entry("web", &["eth0", "eth1"])]).await;
        // It stops announcing web (the mesh moved it): web's object goes.
        tx.send_replace(layer2(&["192.0.2.2"], &["eth0"]));
        expect(vec![entry("db", &["eth0"])]).await;
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .unwrap()
            .unwrap();
    });
}

/// The condition `type_` of a Service: (status, reason, message, when).
fn condition(service: &Service, type_: &str) -> Option<(String, String, String, String)> {
    let found = service
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        found.status.clone(),
        found.reason.clone(),
        found.message.clone(),
        found.last_transition_time.0.to_string(),
    ))
}

/// Deckhouse's documented MetalLoadBalancerClass and Service, applied
/// unchanged with kubectl against meshlb's CRDs: the Service gets three
/// addresses of its class, `kubectl get svc` lists them, and its two
/// conditions read as Deckhouse writes them. Services Deckhouse had
/// already served keep their addresses: one pinned by `load-balancer-ips`
/// (as Deckhouse's own migration pins them) with its conditions written
/// keeps everything, conditions' times included; one with its addresses in
/// its status alone keeps them too, and gets its conditions. (The
/// example's 192.168.2.0/24 addresses are only written into statuses
/// here; nothing is announced.)
#[test]
fn deckhouse_objects_apply_unchanged_and_read_as_deckhouse_writes_them() {
    let env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(cluster(&env, &client, "deckhouse", &["203.0.113.0/26"]));
    let documented = include_str!("../../config/tests/fixtures/deckhouse-example.yaml");
    env.apply("deckhouse-example.yaml", documented).unwrap();
    let adopted_conditions = json!([
        {"type": "AllPublicIPsAssigned", "status": "True", "reason": "AllIPsAssigned",
         "message": "2 of 2 public IPs were assigned", "lastTransitionTime": "2026-01-02T03:04:05Z"},
        {"type": "network.deckhouse.io/load-balancer-class", "status": "True", "reason": "LoadBalancerClassBound",
         "message": "ingress", "lastTransitionTime": "2026-01-02T03:04:05Z"},
    ]);
    rt.block_on(async {
        let services: Api<Service> = Api::namespaced(client.clone(), "deckhouse");
        let adopted = named_load_balancer(
            "deckhouse",
            "adopted",
            json!({
                "network.deckhouse.io/l2-load-balancer-external-ips-count": "2",
                "network.deckhouse.io/load-balancer-ips": "192.168.2.121,192.168.2.120",
                "network.deckhouse.io/metal-load-balancer-class": "ingress",
            }),
        );
        services.create(&PostParams::default(), &adopted).await.unwrap();
        let status = json!({"status": {
            "loadBalancer": {"ingress": [{"ip": "192.168.2.121", "ipMode": "VIP"}, {"ip": "192.168.2.120", "ipMode": "VIP"}]},
            "conditions": adopted_conditions,
        }});
        services
            .patch_status("adopted", &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
        // Served by Deckhouse too, but its addresses not pinned: they are
        // in its status, which is enough.
        let unpinned = named_load_balancer(
            "deckhouse",
            "unpinned",
            json!({"network.deckhouse.io/metal-load-balancer-class": "ingress"}),
        );
        services.create(&PostParams::default(), &unpinned).await.unwrap();
        let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.168.2.140", "ipMode": "VIP"}]}}});
        services
            .patch_status("unpinned", &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    });
    let _agent = Agent::start(&env, "node-a", "meshlb-allocator");
    rt.block_on(async {
        let services: Api<Service> = Api::namespaced(client.clone(), "default");
        let example = eventually(|| async {
            let service = services.get("nginx-deployment").await.unwrap();
            if ingress(&service).len() == 3 && condition(&service, "AllPublicIPsAssigned").is_some() {
                Ok(service)
            } else {
                Err(format!("{:?}", service.status))
            }
        })
        .await;
        assert_eq!(ingress(&example), ["192.168.2.100", "192.168.2.101", "192.168.2.102"]);
        let (status, reason, message, _) = condition(&example, "AllPublicIPsAssigned").unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str(), message.as_str()),
            ("True", "AllIPsAssigned", "3 of 3 public IPs were assigned")
        );
        let (status, reason, message, _) = condition(&example, "network.deckhouse.io/load-balancer-class").unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str(), message.as_str()),
            ("True", "LoadBalancerClassBound", "ingress")
        );
        let listed = env
            .run_kubectl(&["get", "svc", "nginx-deployment", "--no-headers", "-o", "wide"])
            .unwrap();
        assert!(
            listed.contains("192.168.2.100,192.168.2.101,192.168.2.102"),
            "kubectl get svc: {listed}"
        );
        let moved: Api<Service> = Api::namespaced(client.clone(), "deckhouse");
        let unpinned = eventually(|| async {
            let service = moved.get("unpinned").await.unwrap();
            match condition(&service, "network.deckhouse.io/load-balancer-class") {
                Some(_) => Ok(service),
                None => Err(format!("{:?}", service.status)),
            }
        })
        .await;
        assert_eq!(ingress(&unpinned), ["192.168.2.140"], "no address changed");
        let adopted = moved.get("adopted").await.unwrap();
        assert_eq!(
            ingress(&adopted),
            ["192.168.2.121", "192.168.2.120"],
            "no address changed"
        );
        assert_eq!(
            condition(&adopted, "AllPublicIPsAssigned").map(|c| c.3),
            Some("2026-01-02T03:04:05Z".to_owned()),
            "conditions already true are left as they are"
        );
    });
}
