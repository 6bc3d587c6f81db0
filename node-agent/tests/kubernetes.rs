//! The Kubernetes configuration source against a real kube-apiserver with
//! etcd (meshlb_chaos::kube_env): a consistent first snapshot, updates as
//! objects change, rejections naming the object, and an API-server
//! restart that relists without anything announced going missing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use meshlb_chaos::kube_env::KubeEnv;
use meshlb_config::service::ServiceKey;
use meshlb_node_agent::sources::kubernetes::KubernetesSource;
use meshlb_node_agent::sources::{Snapshot, SourceUpdate};
use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Installs meshlb's CRDs and waits until the API server serves them.
pub async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in meshlb_config::crd::definitions() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    for crd in meshlb_config::crd::definitions() {
        let name = crd.metadata.name.unwrap();
        let established = kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .unwrap()
            .unwrap();
    }
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"team": "a"}}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
}

fn custom(client: &kube::Client, kind: &str) -> Api<DynamicObject> {
    let version = if kind == "BGPPeer" { "v1beta2" } else { "v1beta1" };
    let gvk = GroupVersionKind::gvk("metallb.io", version, kind);
    let resource = kube::core::ApiResource::from_gvk(&gvk);
    Api::namespaced_with(client.clone(), "metallb-system", &resource)
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
        apply(&custom(&client, "IPAddressPool"), pool("lan", &["192.0.2.0/28"])).await;
        apply(
            &custom(&client, "L2Advertisement"),
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
        apply(&custom(&client, "IPAddressPool"), pool("later", &["192.0.2.16/28"])).await;
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

        // Pools the schema admits but that overlap: rejected, naming both.
        apply(&custom(&client, "IPAddressPool"), pool("overlap", &["192.0.2.8/29"])).await;
        let update = until(&mut stream.updates, |_| {}, |u| matches!(u, SourceUpdate::Rejected(_))).await;
        let SourceUpdate::Rejected(rejected) = update else {
            unreachable!()
        };
        let text = rejected.to_string();
        assert!(text.contains("IPAddressPool overlap") && text.contains("lan"), "{text}");
        custom(&client, "IPAddressPool")
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
