//! The Kubernetes test environment against kube-rs, kubectl and helm: a
//! real kube-apiserver with etcd (built by scripts/kube-testenv), each test
//! its own cluster. What meshlb's Kubernetes code will rely on is checked
//! here first: create, list, watch with bookmarks, server-side apply, the
//! status subresource, CRDs with OpenAPI and CEL validation, RBAC, tokens
//! from the TokenRequest API, client certificates, and a watch that lives
//! through an API-server restart.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::{DynamicObject, GroupVersionKind};
use meshlb_chaos::kube_env::KubeEnv;
use serde_json::json;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"value": value}})).unwrap()
}

/// The status code and message of an API error.
fn refusal(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.message),
        other => panic!("not an API refusal: {other}"),
    }
}

/// The first load-balancer ingress address in a Service's status.
fn ingress_ip(service: Service) -> Option<String> {
    service.status?.load_balancer?.ingress?.into_iter().next()?.ip
}

#[test]
fn create_list_watch_apply_and_the_status_subresource() {
    let env = KubeEnv::start().unwrap();
    runtime().block_on(async {
        let client = env.client().await.unwrap();
        namespace(&client, "basics").await;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "basics");

        // A watch that streams the current state first, ending it with a
        // bookmark, then every change.
        let mut watch = maps.watch(&WatchParams::streaming_lists(), "0").await.unwrap().boxed();
        maps.create(&PostParams::default(), &config_map("first", "1"))
            .await
            .unwrap();
        let mut saw_bookmark = false;
        let mut saw_added = false;
        while !(saw_bookmark && saw_added) {
            let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
                .await
                .expect("no watch event within 30 s")
                .unwrap()
                .unwrap();
            match event {
                WatchEvent::Bookmark(_) => saw_bookmark = true,
                WatchEvent::Added(map) if map.metadata.name.as_deref() == Some("first") => saw_added = true,
                WatchEvent::Error(e) => panic!("watch error: {e:?}"),
                _ => {}
            }
        }

        let listed = maps.list(&ListParams::default()).await.unwrap();
        assert_eq!(listed.items.len(), 1);
        // Kubernetes itself adds a ConfigMap per namespace only with a
        // controller manager; none runs here.
        assert_eq!(listed.items[0].metadata.name.as_deref(), Some("first"));

        // Server-side apply: the field manager owns what it applied.
        let apply_owner = |manager: &'static str, owner: &'static str| {
            let maps = maps.clone();
            async move {
                let object = json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "applied"},
                    "data": {"owner": owner}
                });
                maps.patch("applied", &PatchParams::apply(manager), &Patch::Apply(object))
                    .await
            }
        };
        let applied = apply_owner("meshlb-test", "meshlb").await.unwrap();
        let managers: Vec<String> = applied
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.manager)
            .collect();
        assert_eq!(managers, ["meshlb-test"]);
        // Another manager applying the same field conflicts.
        let conflict = apply_owner("someone-else", "them").await.unwrap_err();
        assert_eq!(refusal(conflict).0, 409);

        // The status subresource: a Service's load-balancer ingress, as
        // meshlb will write it; the main resource cannot change it.
        let services: Api<Service> = Api::namespaced(client.clone(), "basics");
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}
        }))
        .unwrap();
        services.create(&PostParams::default(), &service).await.unwrap();
        let status = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10", "ipMode": "VIP"}]}}
        });
        let written = services
            .patch_status(
                "web",
                &PatchParams::apply("meshlb-test").force(),
                &Patch::Apply(&status),
            )
            .await
            .unwrap();
        assert_eq!(ingress_ip(written).as_deref(), Some("203.0.113.10"));
        let through_main = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.99"}]}}
        });
        let after = services
            .patch(
                "web",
                &PatchParams::apply("other").force(),
                &Patch::Apply(&through_main),
            )
            .await
            .unwrap();
        assert_eq!(
            ingress_ip(after).as_deref(),
            Some("203.0.113.10"),
            "status changes only through /status"
        );
    });
}

const CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1",
  "kind": "CustomResourceDefinition",
  "metadata": {"name": "peers.test.meshlb.io"},
  "spec": {
    "group": "test.meshlb.io",
    "names": {"kind": "Peer", "plural": "peers", "singular": "peer"},
    "scope": "Namespaced",
    "versions": [{
      "name": "v1", "served": true, "storage": true,
      "subresources": {"status": {}},
      "schema": {"openAPIV3Schema": {
        "type": "object",
        "properties": {
          "spec": {
            "type": "object",
            "properties": {
              "peerAddress": {"type": "string", "format": "ipv4"},
              "holdTime": {"type": "integer", "minimum": 3},
              "peerASN": {"type": "integer"},
              "dynamicASN": {"type": "string", "enum": ["internal", "external"]}
            },
            "x-kubernetes-validations": [{
              "rule": "!(has(self.peerASN) && has(self.dynamicASN))",
              "message": "peerASN and dynamicASN are exclusive"
            }]
          },
          "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }
      }}
    }]
  }
}"#;

#[test]
fn a_crd_is_served_and_its_schema_and_cel_rules_refuse_bad_objects() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let env = KubeEnv::start().unwrap();
    runtime().block_on(async {
        let client = env.client().await.unwrap();
        namespace(&client, "crds").await;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let crd: CustomResourceDefinition = serde_json::from_str(CRD).unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
        let established = kube::runtime::wait::await_condition(
            crds.clone(),
            "peers.test.meshlb.io",
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(60), established)
            .await
            .expect("the CRD was not established within 60 s")
            .unwrap();

        let gvk = GroupVersionKind::gvk("test.meshlb.io", "v1", "Peer");
        let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, "peers");
        let peers: Api<DynamicObject> = Api::namespaced_with(client.clone(), "crds", &resource);
        let peer = |name: &str, spec: serde_json::Value| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "test.meshlb.io/v1", "kind": "Peer",
                "metadata": {"name": name}, "spec": spec
            }))
            .unwrap()
        };
        peers
            .create(
                &PostParams::default(),
                &peer(
                    "good",
                    json!({"peerAddress": "192.0.2.1", "holdTime": 90, "peerASN": 64512}),
                ),
            )
            .await
            .unwrap();

        // The OpenAPI schema: a hold time below 3 s, an address that is not one.
        let (code, message) = refusal(
            peers
                .create(&PostParams::default(), &peer("short", json!({"holdTime": 2})))
                .await
                .unwrap_err(),
        );
        assert_eq!(code, 422, "{message}");
        assert!(
            message.contains("spec.holdTime") && message.contains("greater than or equal to 3"),
            "{message}"
        );
        let (code, message) = refusal(
            peers
                .create(
                    &PostParams::default(),
                    &peer("bad-ip", json!({"peerAddress": "192.0.2.300"})),
                )
                .await
                .unwrap_err(),
        );
        assert_eq!(code, 422, "{message}");
        assert!(message.contains("spec.peerAddress"), "{message}");

        // The CEL rule.
        let (code, message) = refusal(
            peers
                .create(
                    &PostParams::default(),
                    &peer("both", json!({"peerASN": 64512, "dynamicASN": "external"})),
                )
                .await
                .unwrap_err(),
        );
        assert_eq!(code, 422, "{message}");
        assert!(message.contains("peerASN and dynamicASN are exclusive"), "{message}");
        let listed = peers.list(&ListParams::default()).await.unwrap();
        assert_eq!(listed.items.len(), 1, "only the good object was stored");
    });
}

#[test]
fn rbac_refuses_what_a_role_lacks_and_allows_what_it_grants() {
    let env = KubeEnv::start().unwrap();
    runtime().block_on(async {
        let admin = env.client().await.unwrap();
        namespace(&admin, "rbac").await;
        let agent = env.service_account_client("rbac", "agent").await.unwrap();
        let maps: Api<ConfigMap> = Api::namespaced(agent.clone(), "rbac");
        let (code, message) = refusal(maps.list(&ListParams::default()).await.unwrap_err());
        assert_eq!(code, 403, "{message}");
        assert!(message.contains("system:serviceaccount:rbac:agent"), "{message}");

        let role: Role = serde_json::from_value(json!({
            "metadata": {"name": "read-config-maps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]
        }))
        .unwrap();
        Api::<Role>::namespaced(admin.clone(), "rbac")
            .create(&PostParams::default(), &role)
            .await
            .unwrap();
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "agent-reads"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-config-maps"},
            "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": "rbac"}]
        }))
        .unwrap();
        Api::<RoleBinding>::namespaced(admin.clone(), "rbac")
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
        // RBAC takes effect as the authorizer's cache catches up.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while maps.list(&ListParams::default()).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the granted list stayed refused"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (code, _) = refusal(
            maps.create(&PostParams::default(), &config_map("nope", "x"))
                .await
                .unwrap_err(),
        );
        assert_eq!(code, 403, "create was never granted");
        // In another namespace the role grants nothing.
        namespace(&admin, "elsewhere").await;
        let other: Api<ConfigMap> = Api::namespaced(agent, "elsewhere");
        assert_eq!(refusal(other.list(&ListParams::default()).await.unwrap_err()).0, 403);
    });
}

#[test]
fn an_admin_client_certificate_is_accepted() {
    let env = KubeEnv::start().unwrap();
    runtime().block_on(async {
        let dir = env.credentials_dir();
        let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": {
                "server": env.server(),
                "certificate-authority": dir.join("ca.crt"),
            }}],
            "users": [{"name": "u", "user": {
                "client-certificate": dir.join("admin.crt"),
                "client-key": dir.join("admin.key"),
            }}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x"
        }))
        .unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let namespaces: Api<Namespace> = Api::all(client);
        let listed = namespaces.list(&ListParams::default()).await.unwrap();
        assert!(
            listed
                .items
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some("default"))
        );
    });
}

/// Waits (up to 90 s) until the watcher yields the ConfigMap `name`;
/// connection errors while the server is down are retried by its backoff.
async fn wait_for_named(
    seen: &mut (impl futures_util::Stream<Item = Result<ConfigMap, kube::runtime::watcher::Error>> + Unpin),
    name: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let item = tokio::time::timeout_at(deadline, seen.next())
            .await
            .unwrap_or_else(|_| panic!("{name} not seen within 90 s"));
        match item {
            Some(Ok(map)) if map.metadata.name.as_deref() == Some(name) => return,
            Some(_) => {}
            None => panic!("the watch ended"),
        }
    }
}

#[test]
fn a_watch_lives_through_an_api_server_restart() {
    use kube::runtime::{WatchStreamExt, watcher};
    let mut env = KubeEnv::start().unwrap();
    let rt = runtime();
    let client = rt.block_on(env.client()).unwrap();
    rt.block_on(namespace(&client, "restart"));
    let maps: Api<ConfigMap> = Api::namespaced(client, "restart");
    rt.block_on(maps.create(&PostParams::default(), &config_map("before", "1")))
        .unwrap();
    let mut seen = Box::pin(
        watcher(maps.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects(),
    );
    rt.block_on(wait_for_named(&mut seen, "before"));
    env.restart().unwrap();
    rt.block_on(maps.create(&PostParams::default(), &config_map("after", "2")))
        .unwrap();
    rt.block_on(wait_for_named(&mut seen, "after"));
    rt.block_on(maps.delete("after", &DeleteParams::default())).unwrap();
}

#[test]
fn kubectl_applies_a_manifest_and_helm_installs_a_chart() {
    let env = KubeEnv::start().unwrap();
    let scratch = std::env::temp_dir().join(format!("meshlb-kube-chart-{}", std::process::id()));
    let _cleanup = Cleanup(scratch.clone());
    std::fs::create_dir_all(scratch.join("chart/templates")).unwrap();

    // kubectl reports the version it was built as, client and server.
    let version = env.kubectl().args(["version", "-o", "json"]).output().unwrap();
    assert!(version.status.success(), "{}", String::from_utf8_lossy(&version.stderr));
    let version: serde_json::Value = serde_json::from_slice(&version.stdout).unwrap();
    let client_version = version["clientVersion"]["gitVersion"].as_str().unwrap_or_default();
    let server_version = version["serverVersion"]["gitVersion"].as_str().unwrap_or_default();
    assert!(
        client_version.starts_with("v1.") && client_version != "v0.0.0-master",
        "{version}"
    );
    assert_eq!(client_version, server_version);

    let manifest = scratch.join("manifest.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: applied}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: applied}\ndata: {mode: layer2}\n",
    )
    .unwrap();
    let applied = env.kubectl().arg("apply").arg("-f").arg(&manifest).output().unwrap();
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let got = env
        .kubectl()
        .args([
            "get",
            "configmap",
            "settings",
            "-n",
            "applied",
            "-o",
            "jsonpath={.data.mode}",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), "layer2");

    std::fs::write(
        scratch.join("chart/Chart.yaml"),
        "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(scratch.join("chart/values.yaml"), "mode: layer2\n").unwrap();
    std::fs::write(
        scratch.join("chart/templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  mode: {{ .Values.mode | quote }}\n",
    )
    .unwrap();
    let rendered = env
        .helm()
        .args(["template", "demo"])
        .arg(scratch.join("chart"))
        .args(["--set", "mode=bgp"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(
        text.contains("name: demo-settings") && text.contains("mode: \"bgp\""),
        "{text}"
    );

    let installed = env
        .helm()
        .args(["install", "demo"])
        .arg(scratch.join("chart"))
        .args(["--namespace", "applied", "--wait", "--timeout", "60s"])
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let got = env
        .kubectl()
        .args([
            "get",
            "configmap",
            "demo-settings",
            "-n",
            "applied",
            "-o",
            "jsonpath={.data.mode}",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), "layer2");
    let listed = env
        .helm()
        .args(["list", "-n", "applied", "-o", "json"])
        .output()
        .unwrap();
    let releases: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(releases[0]["name"], "demo");
    assert_eq!(releases[0]["status"], "deployed");
}

/// Removes a scratch directory when dropped (also on a failing test).
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// In a lab, the API server runs on the control-plane host at its lab
/// address; a node's namespace reaches it there, as a DaemonSet pod would,
/// with kubectl and with a kube client.
#[test]
fn a_lab_control_plane_is_reached_from_the_nodes_at_its_lab_address() {
    use meshlb_chaos::lab::{Lab, LabSpec};
    let lab = Lab::build(&LabSpec {
        control_plane: true,
        ..LabSpec::segment(2, 0, false)
    })
    .unwrap();
    let env = KubeEnv::start_in_lab(&lab).unwrap();
    assert_eq!(env.server(), "https://198.51.100.2:6443");
    let kubectl = env.binary("kubectl");
    let kubeconfig = env.kubeconfig();
    let from_node = lab
        .exec(
            "node1",
            &kubectl.to_string_lossy(),
            &["--kubeconfig", &kubeconfig.to_string_lossy(), "get", "--raw", "/readyz"],
        )
        .unwrap();
    assert_eq!(from_node.trim(), "ok");

    // kubectl, run in the control-plane host's namespace by the fixture.
    env.apply("lab.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: lab}\n")
        .unwrap();

    // A kube client inside the lab: made and used in a node's namespace.
    let netns = lab.host("node2").unwrap().netns.clone();
    let names = meshlb_chaos::netns::in_netns(&netns, || {
        runtime().block_on(async {
            let client = env.client().await.unwrap();
            let namespaces: Api<Namespace> = Api::all(client);
            let listed = namespaces.list(&ListParams::default()).await.unwrap();
            listed
                .items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .collect::<Vec<_>>()
        })
    })
    .unwrap();
    assert!(names.iter().any(|n| n == "lab"), "{names:?}");
}

/// A test that fails leaves no server and no files behind: the fixture's
/// drop stops the server and removes its directory while the panic
/// unwinds.
#[test]
fn a_failing_test_leaves_no_server_or_files_behind() {
    let (dir, kubeconfig) = std::thread::spawn(|| {
        let env = KubeEnv::start().unwrap();
        let found = (env.credentials_dir().to_path_buf(), env.kubeconfig());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _env = env;
            panic!("a test failing while its API server runs");
        }));
        assert!(outcome.is_err());
        found
    })
    .join()
    .unwrap();
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(!kubeconfig.exists());
    let running = std::process::Command::new("pgrep")
        .args(["-f", &format!("kube-testenv --dir {}", dir.display())])
        .output()
        .unwrap();
    assert!(
        !running.status.success(),
        "the server still runs: {}",
        String::from_utf8_lossy(&running.stdout)
    );
}
