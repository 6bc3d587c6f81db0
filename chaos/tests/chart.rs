//! The Helm chart (charts/meshlb) and the static manifests rendered from it
//! (config/manifests), against the real helm, kubectl and kube-apiserver
//! of scripts/kube-testenv: `helm lint` and `helm template` with every
//! option (the ServiceMonitor, PodMonitor and PrometheusRule decoded
//! strictly into the Prometheus Operator's Go types, scripts/monitoring-check),
//! the manifests as the chart renders them, `helm install`,
//! `upgrade` (the cluster key kept) and `uninstall` (nothing left but the
//! CRDs), `kubectl apply --server-side --dry-run=server` of the manifests,
//! and the chart's ServiceAccount refused what the chart does not grant.
//! (The agents run with that identity on real nodes in chaos/tests/cluster.rs,
//! kube_l2.rs and kube_bgp.rs, and alone in node-agent/tests/kubernetes.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, ListParams, PostParams};
use meshlb_chaos::kube_env::{CHART_CLUSTER_KEY_SECRET, CHART_NAMESPACE, CHART_RELEASE, KubeEnv, chart_dir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `command`: its standard output, or the test fails with its errors.
fn run(command: Command) -> String {
    let what = format!("{command:?}");
    meshlb_chaos::netns::run_command(command, &what).unwrap()
}

/// The kinds and names of a multi-document rendering.
fn objects(yaml: &str) -> Vec<(String, String)> {
    yaml.split("\n---")
        .filter_map(|document| {
            let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(document).unwrap();
            let kind = value["kind"].as_str()?.to_owned();
            Some((kind, value["metadata"]["name"].as_str().unwrap_or_default().to_owned()))
        })
        .collect()
}

#[test]
fn the_chart_lints_renders_every_option_and_matches_the_manifests() {
    let env = KubeEnv::start().unwrap();
    let mut lint = env.helm();
    lint.args(["lint", "--strict"]).arg(chart_dir());
    run(lint);

    let mut template = env.helm();
    template
        .args(["template", CHART_RELEASE])
        .arg(chart_dir())
        .args(["--namespace", CHART_NAMESPACE, "--include-crds"])
        .args(["--set", "prometheus.serviceMonitor.enabled=true"])
        .args(["--set", "prometheus.podMonitor.enabled=true"])
        .args(["--set", "prometheus.prometheusRule.enabled=true"])
        .args(["--set", "grafana.dashboards.enabled=true"])
        .args(["--set", "loadBalancerClass=example.com/lb"]);
    let rendered = run(template);
    let kinds = objects(&rendered);
    let count = |kind: &str| kinds.iter().filter(|(k, _)| k == kind).count();
    let definitions = meshlb_config::crd::definitions().len();
    assert_eq!(count("CustomResourceDefinition"), definitions, "{kinds:?}");
    for kind in [
        "DaemonSet",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    ] {
        assert_eq!(count(kind), 1, "{kind}: {kinds:?}");
    }
    let dashboards = std::fs::read_dir(chart_dir().join("monitoring/dashboards"))
        .unwrap()
        .count();
    assert_eq!(count("ConfigMap"), dashboards, "one ConfigMap per dashboard: {kinds:?}");
    assert!(rendered.contains("- --lb-class=example.com/lb"), "{rendered}");

    // The monitoring objects in the Prometheus Operator's own types; a
    // misspelt field fails.
    let checker = run(Command::new(repo().join("scripts/monitoring-check")));
    let checked = monitoring_check(checker.trim(), &rendered).unwrap();
    let mut checked: Vec<&str> = checked.lines().collect();
    checked.sort();
    assert_eq!(
        checked,
        ["PodMonitor/meshlb", "PrometheusRule/meshlb", "ServiceMonitor/meshlb"]
    );
    let misspelt = rendered.replace("podMetricsEndpoints:", "podMetricEndpoints:");
    let refused = monitoring_check(checker.trim(), &misspelt).unwrap_err();
    assert!(refused.contains("podMetricEndpoints"), "{refused}");

    let mut check = Command::new(repo().join("scripts/manifests"));
    check.arg("--check");
    run(check);
}

/// Runs monitoring-check (`binary`) on `yaml`: what it checked, or why not.
fn monitoring_check(binary: &str, yaml: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new(binary)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The `keys` entry of the chart's cluster key Secret.
async fn cluster_keys(client: &kube::Client) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), CHART_NAMESPACE);
    let secret = secrets.get(CHART_CLUSTER_KEY_SECRET).await.unwrap();
    String::from_utf8(secret.data.unwrap()["keys"].0.clone()).unwrap()
}

/// Every object of the release still in the API server, as `kind/name`.
fn release_objects(env: &KubeEnv) -> Vec<String> {
    let kinds =
        "daemonsets,serviceaccounts,secrets,services,configmaps,roles,rolebindings,clusterroles,clusterrolebindings";
    let selector = format!("app.kubernetes.io/instance={CHART_RELEASE}");
    let listed = env
        .run_kubectl(&["get", kinds, "-A", "-l", &selector, "-o", "name"])
        .unwrap();
    listed.lines().map(str::to_owned).collect()
}

#[test]
fn the_chart_installs_upgrades_and_uninstalls_cleanly() {
    let env = KubeEnv::start().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(env.client()).unwrap();
    env.install_chart(&[]).unwrap();
    let installed = release_objects(&env);
    for object in [
        "daemonset.apps/meshlb",
        "serviceaccount/meshlb",
        "secret/meshlb-cluster-keys",
        "role.rbac.authorization.k8s.io/meshlb",
        "clusterrole.rbac.authorization.k8s.io/meshlb",
    ] {
        assert!(installed.iter().any(|o| o == object), "{object}: {installed:?}");
    }
    let keys = rt.block_on(cluster_keys(&client));
    // `ID:HEX`, 32 bytes: the form the agents take.
    let (id, hex) = keys.trim().split_once(':').unwrap();
    assert!(
        id == "1" && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "a generated key: {keys:?}"
    );
    let crds = env.run_kubectl(&["get", "crd", "-o", "name"]).unwrap();
    assert_eq!(crds.lines().count(), meshlb_config::crd::definitions().len(), "{crds}");

    // An upgrade with a changed value changes the DaemonSet and keeps the
    // cluster key.
    env.install_chart(&["speaker.logLevel=debug"]).unwrap();
    let log_level = env
        .run_kubectl(&[
            "get",
            "daemonset",
            "meshlb",
            "-n",
            CHART_NAMESPACE,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[?(@.name=='RUST_LOG')].value}",
        ])
        .unwrap();
    assert_eq!(log_level, "debug");
    assert_eq!(rt.block_on(cluster_keys(&client)), keys, "the upgrade kept the key");

    let mut uninstall = env.helm();
    uninstall.args(["uninstall", CHART_RELEASE, "--namespace", CHART_NAMESPACE, "--wait"]);
    run(uninstall);
    assert_eq!(release_objects(&env), Vec::<String>::new(), "orphans after uninstall");
    let crds = env.run_kubectl(&["get", "crd", "-o", "name"]).unwrap();
    assert_eq!(
        crds.lines().count(),
        meshlb_config::crd::definitions().len(),
        "Helm keeps the CRDs: {crds}"
    );
}

#[test]
fn the_static_manifests_apply_server_side() {
    let env = KubeEnv::start().unwrap();
    let manifest = repo().join("config/manifests/meshlb.yaml");
    let manifest = manifest.to_string_lossy();
    // A dry run creates nothing, so the namespace the objects go in must
    // exist; the manifest's Namespace then applies over it.
    env.run_kubectl(&["create", "namespace", CHART_NAMESPACE]).unwrap();
    let out = env
        .run_kubectl(&["apply", "--server-side", "--dry-run=server", "-f", &manifest])
        .unwrap();
    for object in [
        "namespace/metallb-system",
        "customresourcedefinition.apiextensions.k8s.io/ipaddresspools.metallb.io",
        "daemonset.apps/meshlb",
        "clusterrole.rbac.authorization.k8s.io/meshlb",
    ] {
        assert!(out.contains(object), "{object}: {out}");
    }
    assert!(!out.contains("secret/"), "the manifests create no key: {out}");
}

/// The chart's ServiceAccount may read Services everywhere and write its
/// own objects, and nothing else: no Secret outside its namespace, no
/// ConfigMap, no Service deleted, no Lease but its own.
#[test]
fn the_charts_identity_is_refused_what_the_chart_does_not_grant() {
    let env = KubeEnv::start().unwrap();
    env.install_chart(&[]).unwrap();
    env.run_kubectl(&["create", "namespace", "shop"]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let agent = env
            .service_account_client(CHART_NAMESPACE, CHART_RELEASE)
            .await
            .unwrap();
        let forbidden = |result: Result<(), kube::Error>, what: &str| match result {
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            other => panic!("{what}: {other:?}"),
        };
        // Granted.
        Api::<Service>::all(agent.clone())
            .list(&ListParams::default())
            .await
            .unwrap();
        Api::<Secret>::namespaced(agent.clone(), CHART_NAMESPACE)
            .list(&ListParams::default())
            .await
            .unwrap();
        // Not granted.
        forbidden(
            Api::<Secret>::namespaced(agent.clone(), "shop")
                .list(&ListParams::default())
                .await
                .map(drop),
            "Secrets outside its namespace",
        );
        forbidden(
            Api::<Secret>::all(agent.clone())
                .list(&ListParams::default())
                .await
                .map(drop),
            "Secrets cluster-wide",
        );
        let map: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).unwrap();
        forbidden(
            Api::<ConfigMap>::namespaced(agent.clone(), CHART_NAMESPACE)
                .create(&PostParams::default(), &map)
                .await
                .map(drop),
            "a ConfigMap",
        );
        forbidden(
            Api::<Service>::namespaced(agent.clone(), "shop")
                .delete("anything", &Default::default())
                .await
                .map(drop),
            "deleting a Service",
        );
        forbidden(
            Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(agent.clone(), CHART_NAMESPACE)
                .get("someone-elses")
                .await
                .map(drop),
            "another Lease",
        );
    });
}
