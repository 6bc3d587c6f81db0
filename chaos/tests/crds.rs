//! meshlb's CustomResourceDefinitions (`meshlb-agent crds`) in a real
//! kube-apiserver: they install, every example manifest applies with
//! kubectl, objects as MetalLB stores them are admitted, every config
//! sample and documented example of MetalLB's own module applies and reads
//! as it is written, no field MetalLB's CRDs leave optional is required,
//! BGPPeer is served
//! as v1beta1 and v1beta2, and bad objects are refused at admission with a
//! message naming the field — each also refused by meshlb's own
//! validation, so the schema is never the only guard nor a stricter one.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use meshlb_chaos::kube_env::KubeEnv;

/// Runs kubectl with `input` on standard input: Ok(stdout) or Err(stderr).
/// A warning from the API server (a deprecated version, an unknown
/// schema format) fails the test unless `args` asks for a deprecated
/// version on purpose.
fn kubectl(env: &KubeEnv, args: &[&str], input: &str) -> Result<String, String> {
    let mut child = env
        .kubectl()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let deprecated_on_purpose =
        input.contains("metallb.io/v1beta1\nkind: BGPPeer") || args.iter().any(|a| a.contains("v1beta1"));
    assert!(
        !out.status.success() || !stderr.contains("Warning") || deprecated_on_purpose,
        "kubectl {args:?} warned: {stderr}"
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A merge patch of the status of `kind` `name` in metallb-system.
fn patch_status(env: &KubeEnv, kind: &str, name: &str, patch: &str) -> Result<String, String> {
    kubectl(
        env,
        &[
            "patch",
            kind,
            "-n",
            "metallb-system",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            patch,
        ],
        "",
    )
}

fn apply(env: &KubeEnv, manifest: &str) -> Result<String, String> {
    kubectl(env, &["apply", "-f", "-"], manifest)
}

/// An API server with meshlb's CRDs installed and established, and the
/// namespaces the examples use.
fn cluster_with_crds() -> KubeEnv {
    let env = KubeEnv::start().unwrap();
    env.apply_crds().unwrap();
    for namespace in ["metallb-system", "shop", "marketing", "prod"] {
        kubectl(&env, &["create", "namespace", namespace], "").unwrap();
    }
    env
}

/// What meshlb's own validation says of a manifest: Ok, or the errors.
fn meshlb_validation(manifest: &str) -> Result<(), String> {
    let objects = meshlb_config::parse_documents(manifest, "case.yaml")
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?
        .objects;
    meshlb_config::Config::build(&objects)
        .map(|_| ())
        .map_err(|rejected| rejected.to_string())
}

#[test]
fn every_example_applies_and_metallb_objects_are_admitted() {
    let env = cluster_with_crds();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut applied = 0;
    for dir in std::fs::read_dir(&examples).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let text = std::fs::read_to_string(&file).unwrap();
            apply(&env, &text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            applied += 1;
        }
    }
    assert!(applied >= 6, "only {applied} example files");

    // Objects as a cluster running MetalLB holds them: every default its
    // CRDs fill in written out, status present, and fields meshlb's schema
    // knows only through MetalLB (disableMP, dualStackAddressFamily).
    let stored_by_metallb = "\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: stored, namespace: metallb-system}
spec:
  addresses: ['192.0.2.128/26', '2001:db8:9::10 - 2001:db8:9::1f']
  autoAssign: true
  avoidBuggyIPs: false
  serviceAllocation:
    priority: 50
    namespaces: [shop]
    namespaceSelectors: [{matchLabels: {team: a}}]
    serviceSelectors: [{matchExpressions: [{key: tier, operator: In, values: [web]}]}]
status: {assignedIPv4: 0, assignedIPv6: 0, availableIPv4: 64, availableIPv6: 16}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: stored, namespace: metallb-system}
spec:
  aggregationLength: 32
  aggregationLengthV6: 128
  localPref: 100
  communities: ['65535:65282', 'large:64512:1:4294967295', NO_ADVERTISE, vpn-only]
  ipAddressPools: [stored]
  peers: [stored]
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: stored, namespace: metallb-system}
spec:
  myASN: 4200000000
  peerASN: 64512
  peerAddress: 192.0.2.1
  peerPort: 179
  holdTime: 1m30s
  keepaliveTime: 30s
  connectTime: 5s
  routerID: 192.0.2.50
  disableMP: false
  dualStackAddressFamily: false
  enableGracefulRestart: true
  ebgpMultiHop: false
---
# A v1beta1 peer as MetalLB's conversion webhook stores it as v1beta2:
# zero timers, an empty passwordSecret and a password of its own.
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: converted, namespace: metallb-system}
spec:
  myASN: 64512
  peerASN: 64513
  peerAddress: 192.0.2.2
  peerPort: 179
  holdTime: 0s
  keepaliveTime: 0s
  password: secret
  passwordSecret: {}
  disableMP: false
  dualStackAddressFamily: false
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: stored, namespace: metallb-system}
spec: {receiveInterval: 10, transmitInterval: 60000, detectMultiplier: 255, echoInterval: 50, echoMode: false, passiveMode: false, minimumTtl: 254}
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: stored, namespace: metallb-system}
spec:
  communities:
    - {name: vpn-only, value: '1234:1'}
    - {name: big, value: 'large:1:2:3'}
";
    meshlb_validation(stored_by_metallb).unwrap();
    apply(&env, stored_by_metallb).unwrap();
    let printed = kubectl(&env, &["get", "ipaddresspools", "-n", "metallb-system", "stored"], "").unwrap();
    assert!(
        printed.contains("AUTO ASSIGN") && printed.contains("192.0.2.128/26"),
        "{printed}"
    );

    // The status-only kinds take what MetalLB's speakers write.
    let statuses = "\
apiVersion: metallb.io/v1beta1
kind: ServiceL2Status
metadata: {name: l2-abc, namespace: metallb-system, labels: {metallb.io/node: n1}}
spec: {}
---
apiVersion: metallb.io/v1beta1
kind: ServiceBGPStatus
metadata: {name: bgp-abc, namespace: metallb-system}
spec: {}
---
apiVersion: metallb.io/v1beta1
kind: ConfigurationState
metadata: {name: controller, namespace: metallb-system, labels: {metallb.io/component-type: controller}}
";
    apply(&env, statuses).unwrap();
    let patch = r#"{"status": {"node": "n1", "serviceName": "web", "serviceNamespace": "shop", "interfaces": [{"name": "eth0"}]}}"#;
    patch_status(&env, "servicel2status", "l2-abc", patch).unwrap();
    let printed = kubectl(&env, &["get", "servicel2statuses", "-n", "metallb-system"], "").unwrap();
    assert!(
        printed.contains("ALLOCATED NODE") && printed.contains("n1"),
        "{printed}"
    );
    // MetalLB's immutability rule: the node of a status object never changes.
    let moved = r#"{"status": {"node": "n2"}}"#;
    let refused = patch_status(&env, "servicel2status", "l2-abc", moved).unwrap_err();
    assert!(
        refused.contains("status.node") && refused.contains("immutable"),
        "{refused}"
    );
    let state = r#"{"status": {"result": "Invalid", "errorSummary": "IPAddressPool a: spec.addresses", "conditions": [{"type": "Valid", "status": "False", "reason": "ConfigInvalid", "message": "x", "lastTransitionTime": "2026-12-01T00:00:00Z"}]}}"#;
    patch_status(&env, "configurationstate", "controller", state).unwrap();
    let printed = kubectl(&env, &["get", "configurationstates", "-n", "metallb-system"], "").unwrap();
    assert!(printed.contains("RESULT") && printed.contains("Invalid"), "{printed}");
}

#[test]
fn bgp_peers_are_served_as_v1beta1_and_v1beta2() {
    let env = cluster_with_crds();
    let old = "\
apiVersion: metallb.io/v1beta1
kind: BGPPeer
metadata: {name: old, namespace: metallb-system}
spec: {myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.1, holdTime: 9s}
";
    let written = apply(&env, old).unwrap();
    assert!(written.contains("bgppeer.metallb.io/old created"), "{written}");
    let new = "\
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: new, namespace: metallb-system}
spec: {myASN: 64513, dynamicASN: external, peerAddress: 192.0.2.2, bfdProfile: fast}
";
    apply(&env, new).unwrap();
    let as_v1beta2 = kubectl(
        &env,
        &[
            "get",
            "bgppeers.v1beta2.metallb.io",
            "-n",
            "metallb-system",
            "old",
            "-o",
            "jsonpath={.apiVersion} {.spec.peerASN} {.spec.holdTime}",
        ],
        "",
    )
    .unwrap();
    assert_eq!(as_v1beta2, "metallb.io/v1beta2 64512 9s");
    let as_v1beta1 = kubectl(
        &env,
        &[
            "get",
            "bgppeers.v1beta1.metallb.io",
            "-n",
            "metallb-system",
            "new",
            "-o",
            "jsonpath={.apiVersion} {.spec.peerAddress}",
        ],
        "",
    )
    .unwrap();
    assert_eq!(as_v1beta1, "metallb.io/v1beta1 192.0.2.2");
    // Both read back into meshlb's model (v1beta1 converted on parse).
    for name in ["old", "new"] {
        let yaml = kubectl(
            &env,
            &["get", "bgppeer", "-n", "metallb-system", name, "-o", "yaml"],
            "",
        )
        .unwrap();
        let objects = meshlb_config::parse_documents(&yaml, name).unwrap().objects;
        assert_eq!(objects.len(), 1);
    }
    // Graceful restart is fixed at creation (MetalLB's rule).
    let gr = "\
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: gr, namespace: metallb-system}
spec: {myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.3, enableGracefulRestart: true}
";
    apply(&env, gr).unwrap();
    let changed = apply(
        &env,
        &gr.replace("enableGracefulRestart: true", "enableGracefulRestart: false"),
    )
    .unwrap_err();
    assert!(changed.contains("EnableGracefulRestart cannot be changed"), "{changed}");
}

/// A bad object: the manifest, and what kubectl's refusal must say (the
/// field, and the reason).
struct Bad {
    manifest: String,
    field: &'static str,
    reason: &'static str,
}

fn bad(kind_and_version: (&str, &str), spec: &str, field: &'static str, reason: &'static str) -> Bad {
    let (kind, version) = kind_and_version;
    Bad {
        manifest: format!(
            "apiVersion: {version}\nkind: {kind}\nmetadata: {{name: bad, namespace: metallb-system}}\nspec: {spec}\n"
        ),
        field,
        reason,
    }
}

#[test]
fn bad_objects_are_refused_at_admission_naming_the_field() {
    let env = cluster_with_crds();
    let pool = ("IPAddressPool", "metallb.io/v1beta1");
    let ad = ("BGPAdvertisement", "metallb.io/v1beta1");
    let peer = ("BGPPeer", "metallb.io/v1beta2");
    let old_peer = ("BGPPeer", "metallb.io/v1beta1");
    let cases = [
        bad(pool, "{addresses: [192.0.2.0/33]}", "spec.addresses", "192.0.2.0/33"),
        bad(
            pool,
            "{addresses: [192.0.2.0/28, not-an-ip]}",
            "spec.addresses",
            "not-an-ip",
        ),
        bad(
            pool,
            "{addresses: ['192.0.2.1-2001:db8::1']}",
            "spec.addresses",
            "one family",
        ),
        bad(pool, "{addresses: [192.0.2.7]}", "spec.addresses", "192.0.2.7"),
        bad(
            pool,
            "{addresses: [192.0.2.0/28], autoAsign: false}",
            "autoAsign",
            "unknown field",
        ),
        bad(
            peer,
            "{myASN: 64513, peerASN: 64512, dynamicASN: external, peerAddress: 192.0.2.1}",
            "spec.dynamicASN",
            "mutually exclusive",
        ),
        bad(
            peer,
            "{myASN: 64513, dynamicASN: both, peerAddress: 192.0.2.1}",
            "spec.dynamicASN",
            "internal",
        ),
        bad(
            peer,
            "{myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.1, holdTime: 2s}",
            "spec.holdTime",
            "at least 3s",
        ),
        bad(
            old_peer,
            "{myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.1, holdTime: 2s}",
            "spec.holdTime",
            "at least 3s",
        ),
        bad(
            peer,
            "{myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.1, holdTime: 30s, keepaliveTime: 60s}",
            "spec.keepaliveTime",
            "must not exceed holdTime",
        ),
        bad(
            peer,
            "{myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.1, connectTime: 1500ms}",
            "spec.connectTime",
            "whole number of seconds",
        ),
        bad(
            peer,
            "{myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.300}",
            "spec.peerAddress",
            "IP address",
        ),
        bad(
            peer,
            "{myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.1, routerID: '2001:db8::1'}",
            "spec.routerID",
            "IPv4",
        ),
        bad(
            peer,
            "{myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.1, peerPort: 70000}",
            "spec.peerPort",
            "16384",
        ),
        bad(ad, "{communities: ['65536:1']}", "spec.communities", "65536:1"),
        bad(ad, "{communities: ['large:1:2']}", "spec.communities", "large:1:2"),
        bad(
            ad,
            "{aggregationLength: 24, serviceSelectors: [{matchLabels: {a: b}}]}",
            "spec",
            "serviceSelectors and aggregationLength are mutually exclusive",
        ),
        bad(
            ("Community", "metallb.io/v1beta1"),
            "{communities: [{name: x, value: '1:2:3'}]}",
            "spec.communities[0].value",
            "1:2:3",
        ),
        bad(
            ("BFDProfile", "metallb.io/v1beta1"),
            "{detectMultiplier: 1}",
            "spec.detectMultiplier",
            "greater than or equal to 2",
        ),
        bad(
            ("L2Policy", "meshlb.io/v1alpha1"),
            "{failback: Sometimes}",
            "spec.failback",
            "NonRevertive",
        ),
    ];
    for case in &cases {
        let refusal = apply(&env, &case.manifest).expect_err(&case.manifest);
        assert!(
            refusal.contains(case.field) && refusal.contains(case.reason),
            "{}\nwant {} / {}, got: {refusal}",
            case.manifest,
            case.field,
            case.reason
        );
        assert!(
            meshlb_validation(&case.manifest).is_err(),
            "meshlb's validation admits what the schema refuses:\n{}",
            case.manifest
        );
    }
}

/// The `required` list of every field of a schema (empty where none is),
/// by JSON path (`[]` list items, `{}` map values).
fn required_fields(
    schema: &serde_yaml_ng::Value,
    path: &str,
    out: &mut std::collections::BTreeMap<String, Vec<String>>,
) {
    let required = schema.get("required").and_then(|r| r.as_sequence());
    out.insert(
        path.to_owned(),
        required
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect(),
    );
    if let Some(properties) = schema.get("properties").and_then(|p| p.as_mapping()) {
        for (name, property) in properties {
            required_fields(property, &format!("{path}.{}", name.as_str().unwrap_or("?")), out);
        }
    }
    if let Some(items) = schema.get("items") {
        required_fields(items, &format!("{path}[]"), out);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_mapping()) {
        required_fields(values, &format!("{path}{{}}"), out);
    }
}

/// The required fields of every kind and version of a set of CRDs.
fn required_by_version(
    documents: impl IntoIterator<Item = serde_yaml_ng::Value>,
) -> std::collections::BTreeMap<(String, String), std::collections::BTreeMap<String, Vec<String>>> {
    let mut all = std::collections::BTreeMap::new();
    for crd in documents {
        if crd.get("kind").and_then(|k| k.as_str()) != Some("CustomResourceDefinition") {
            continue;
        }
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        for version in crd["spec"]["versions"].as_sequence().unwrap() {
            let mut required = std::collections::BTreeMap::new();
            required_fields(&version["schema"]["openAPIV3Schema"], "", &mut required);
            all.insert((kind.clone(), version["name"].as_str().unwrap().to_owned()), required);
        }
    }
    all
}

/// meshlb's CRDs require nothing MetalLB's own CRDs (from MetalLB's module,
/// as its users install them) leave optional: every object MetalLB admits
/// is admitted, the L2Advertisement with no spec first of all.
#[test]
fn meshlb_requires_no_field_metallbs_crds_leave_optional() {
    let module = meshlb_chaos::metallb::module_dir().unwrap();
    let mut theirs = Vec::new();
    for file in std::fs::read_dir(module.join("config/crd/bases")).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        theirs.push(serde_yaml_ng::from_str(&text).unwrap());
    }
    let theirs = required_by_version(theirs);
    let ours = required_by_version(
        meshlb_config::crd::definitions()
            .into_iter()
            .map(|crd| serde_yaml_ng::to_value(crd).unwrap()),
    );
    assert!(theirs.len() >= 8, "MetalLB's CRDs: {:?}", theirs.keys());
    for (version, required) in &theirs {
        let ours = ours.get(version).unwrap_or_else(|| panic!("meshlb has no {version:?}"));
        for (path, fields) in ours {
            // Fields MetalLB's schema does not have are meshlb's own.
            let Some(allowed) = required.get(path) else {
                continue;
            };
            let extra: Vec<&String> = fields.iter().filter(|f| !allowed.contains(f)).collect();
            assert!(
                extra.is_empty(),
                "{version:?} {path:?}: meshlb requires {extra:?}, MetalLB only {allowed:?}"
            );
        }
    }
}

/// The YAML blocks of MetalLB's documentation (its module's
/// `website/content`) that hold metallb.io objects: (page, block).
fn documentation_examples(module: &Path) -> Vec<(String, String)> {
    let mut pages = vec![module.join("website/content")];
    let mut examples = Vec::new();
    while let Some(path) = pages.pop() {
        if path.is_dir() {
            pages.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for block in text.split("```yaml\n").skip(1) {
            let block = block.split("```").next().unwrap_or_default();
            if block.contains("apiVersion: metallb.io/") {
                let page = path.strip_prefix(module).unwrap().display().to_string();
                // FRR-K8s's kinds (FRRConfiguration), shown beside
                // MetalLB's in its FRR-K8s pages, are another project's.
                let documents: Vec<&str> = block
                    .split("\n---\n")
                    .filter(|d| !d.contains("apiVersion: frrk8s.metallb.io/"))
                    .collect();
                examples.push((page, documents.join("\n---\n")));
            }
        }
    }
    examples.sort();
    examples
}

/// The metallb.io objects of a manifest in meshlb's model, by kind and
/// name, as meshlb reads them (a file, or what the API server stored).
fn metallb_objects(manifest: &str, what: &str) -> Vec<(String, String, String)> {
    let objects = meshlb_config::parse_documents(manifest, what)
        .unwrap_or_else(|e| panic!("{what}: meshlb cannot read it: {e:?}"))
        .objects;
    let mut out: Vec<(String, String, String)> = objects
        .iter()
        .filter(|o| o.object.object_ref().kind.api_version().starts_with("metallb.io"))
        .map(|o| {
            let reference = o.object.object_ref();
            (
                reference.kind.as_str().to_owned(),
                reference.name.clone(),
                meaning(&o.object),
            )
        })
        .collect();
    out.sort();
    out
}

/// What a metallb.io object says: its labels (selectors match them) and
/// its spec, not where or when it was read.
fn meaning(object: &meshlb_config::Object) -> String {
    use meshlb_config::Object;
    match object {
        Object::IpAddressPool(r) => format!("{:?} {:?}", r.metadata.labels, r.spec),
        Object::L2Advertisement(r) => format!("{:?} {:?}", r.metadata.labels, r.spec),
        Object::BgpAdvertisement(r) => format!("{:?} {:?}", r.metadata.labels, r.spec),
        Object::BgpPeer(r) => format!("{:?} {:?}", r.metadata.labels, r.spec),
        Object::BfdProfile(r) => format!("{:?} {:?}", r.metadata.labels, r.spec),
        Object::Community(r) => format!("{:?} {:?}", r.metadata.labels, r.spec),
        other => format!("{other:?}"),
    }
}

/// Every config sample MetalLB ships (`configsamples/`) and every example
/// of its documentation applies with kubectl through the real API server
/// with meshlb's CRDs, and means the same: what the API server stores reads,
/// in meshlb's model, as the file does; and meshlb's validation takes each
/// sample.
#[test]
fn metallbs_config_samples_and_documented_examples_apply_and_mean_the_same() {
    let env = cluster_with_crds();
    let module = meshlb_chaos::metallb::module_dir().unwrap();
    let mut manifests: Vec<(String, String)> = Vec::new();
    for file in std::fs::read_dir(module.join("configsamples")).unwrap() {
        let path = file.unwrap().path();
        let name = path.strip_prefix(&module).unwrap().display().to_string();
        manifests.push((name, std::fs::read_to_string(&path).unwrap()));
    }
    manifests.sort();
    let samples = manifests.len();
    assert!(samples >= 15, "only {samples} config samples in {}", module.display());
    let documented = documentation_examples(&module);
    assert!(documented.len() >= 30, "only {} documented examples", documented.len());
    manifests.extend(documented);
    let mut objects = 0;
    for (what, manifest) in &manifests {
        let stored = kubectl(
            &env,
            &["apply", "-n", "metallb-system", "-o", "yaml", "-f", "-"],
            manifest,
        )
        .unwrap_or_else(|e| panic!("{what} is refused:\n{manifest}\n{e}"));
        // `apply -o yaml` prints what the server stored: a List when the
        // manifest holds several objects.
        let stored: serde_yaml_ng::Value = serde_yaml_ng::from_str(&stored).unwrap();
        let items = match stored.get("items") {
            Some(items) => items.as_sequence().unwrap().clone(),
            None => vec![stored],
        };
        let stored_text: String = items
            .iter()
            .map(|item| format!("---\n{}", serde_yaml_ng::to_string(item).unwrap()))
            .collect();
        let from_file = metallb_objects(manifest, what);
        let from_server = metallb_objects(&stored_text, what);
        assert_eq!(
            from_server
                .iter()
                .map(|(kind, name, _)| (kind, name))
                .collect::<Vec<_>>(),
            from_file.iter().map(|(kind, name, _)| (kind, name)).collect::<Vec<_>>(),
            "{what}: the server stored other objects"
        );
        for (file, server) in from_file.iter().zip(&from_server) {
            assert_eq!(
                file.2, server.2,
                "{what}: {} {} reads otherwise once stored",
                file.0, file.1
            );
        }
        objects += from_file.len();
        if what.starts_with("configsamples/") {
            let validated = meshlb_validation(manifest);
            assert!(validated.is_ok(), "{what}: meshlb refuses it: {validated:?}");
        }
        // Each example stands alone (several name their peer "example",
        // one with graceful restart, which never changes on an object).
        kubectl(&env, &["delete", "-n", "metallb-system", "--wait", "-f", "-"], manifest).unwrap();
    }
    assert!(objects >= 60, "only {objects} metallb.io objects applied");
}
