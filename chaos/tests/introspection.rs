//! The agents' introspection API (gRPC) against the real grpcurl: with
//! server reflection alone (no .proto file) grpcurl lists and describes
//! the services, and its calls return the lab's actual state, before and
//! after the owner of a service crashes; bad requests get proper status
//! codes. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use meshlb_chaos::{Lab, LabSpec};
use serde_json::Value;

/// grpcurl, as scripts/grpcurl builds it (once per version, cached).
fn grpcurl() -> PathBuf {
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/grpcurl");
            let out = std::process::Command::new(&script).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

/// Runs grpcurl in `node`'s namespace against its agent's API; its
/// standard output, or (Err) its standard error.
fn call(lab: &Lab, node: &str, args: &[&str]) -> Result<String, String> {
    let binary = grpcurl();
    let mut all = vec!["-plaintext"];
    all.extend_from_slice(args);
    let netns = &lab.host(node).unwrap().netns;
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(&binary)
        .args(&all)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn json(lab: &Lab, node: &str, method: &str, body: &str) -> Value {
    let text = call(lab, node, &["-d", body, API, method]).unwrap();
    serde_json::from_str(&text).unwrap()
}

const API: &str = "127.0.0.1:7473";
const SERVICE: &str = "203.0.113.10";

/// The announcers of the service's address, as `node`'s agent says.
fn announcers(lab: &Lab, node: &str) -> Vec<String> {
    let service = json(
        lab,
        node,
        "meshlb.v1.Introspection/GetService",
        r#"{"name": "default/web"}"#,
    );
    service["owners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["address"] == SERVICE)
        .flat_map(|o| o["announcers"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

fn wait(what: &str, f: impl Fn() -> bool) {
    meshlb_chaos::wait::wait_for(Duration::from_secs(20), what, f).unwrap();
}

#[test]
fn grpcurl_reads_the_agents_state_through_reflection() {
    let lab = Lab::build(&LabSpec::segment(3, 0, false)).unwrap();
    let nodes = lab.node_names();
    let mut agents =
        meshlb_chaos::agent::start_cluster_with(&lab, &nodes, "fast", meshlb_chaos::agent::L2_WEB).unwrap();

    // Reflection: the services and their methods, with no .proto file.
    let services = call(&lab, "node1", &[API, "list"]).unwrap();
    for service in [
        "meshlb.v1.Introspection",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(services.lines().any(|l| l == service), "{service} in {services}");
    }
    let described = call(&lab, "node1", &[API, "describe", "meshlb.v1.Introspection"]).unwrap();
    for method in ["ListMembers", "ListServices", "GetService", "WatchEvents", "GetConfig"] {
        assert!(described.contains(&format!("rpc {method}")), "{described}");
    }
    let health = json(
        &lab,
        "node1",
        "grpc.health.v1.Health/Check",
        r#"{"service": "meshlb.v1.Introspection"}"#,
    );
    assert_eq!(health["status"], "SERVING");

    // The mesh, the configuration and the service as the lab has them.
    let members = json(&lab, "node2", "meshlb.v1.Introspection/ListMembers", "{}");
    let mut names: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["node1", "node2", "node3"]);
    assert_eq!(members["fence"]["quorum"], true);
    let config = json(&lab, "node3", "meshlb.v1.Introspection/GetConfig", "{}");
    assert_eq!(config["generation"], "1", "{config}");
    wait("every agent to name one announcer", || {
        nodes.iter().all(|n| announcers(&lab, n).len() == 1)
    });
    let owner = announcers(&lab, "node1").remove(0);
    for node in &nodes {
        assert_eq!(
            announcers(&lab, node),
            std::slice::from_ref(&owner),
            "as {node} sees it"
        );
    }
    let candidates = |node: &str| -> Vec<String> {
        let service = json(
            &lab,
            node,
            "meshlb.v1.Introspection/GetService",
            r#"{"name": "default/web"}"#,
        );
        service["owners"][0]["candidates"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["node"].as_str().map(str::to_owned))
            .collect()
    };
    let mut ranked = candidates("node1");
    assert!(ranked.contains(&owner), "{ranked:?}");
    ranked.sort();
    assert_eq!(ranked, nodes, "every node may announce it");
    let page = json(
        &lab,
        "node1",
        "meshlb.v1.Introspection/ListServices",
        r#"{"pageSize": 1}"#,
    );
    assert_eq!(page["services"][0]["name"], "default/web");
    assert_eq!(page["services"][0]["addresses"][0], SERVICE);
    let interfaces = json(&lab, &owner, "meshlb.v1.Introspection/ListInterfaces", "{}");
    assert!(
        interfaces["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "eth0" && i["answering"][0] == SERVICE),
        "{interfaces}"
    );

    // Bad requests: their status codes.
    let bad = call(
        &lab,
        "node1",
        &["-d", r#"{"name": "web"}"#, API, "meshlb.v1.Introspection/GetService"],
    )
    .unwrap_err();
    assert!(bad.contains("InvalidArgument"), "{bad}");
    let unknown = call(
        &lab,
        "node1",
        &[
            "-d",
            r#"{"name": "default/nope"}"#,
            API,
            "meshlb.v1.Introspection/GetService",
        ],
    )
    .unwrap_err();
    assert!(unknown.contains("NotFound"), "{unknown}");
    let token = call(
        &lab,
        "node1",
        &[
            "-d",
            r#"{"pageToken": "garbage"}"#,
            API,
            "meshlb.v1.Introspection/ListServices",
        ],
    )
    .unwrap_err();
    assert!(token.contains("InvalidArgument"), "{token}");

    // The owner crashes: the others' APIs show the new owner and two
    // members, and a follower of the event stream sees it happen.
    let watcher = nodes.iter().find(|n| **n != owner).unwrap().clone();
    let binary = grpcurl();
    let events = lab
        .spawn(
            &watcher,
            "grpcurl-events",
            &binary.to_string_lossy(),
            &["-plaintext", API, "meshlb.v1.Introspection/WatchEvents"],
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let victim = agents.iter().position(|a| a.node == owner).unwrap();
    agents[victim].process.kill().unwrap();
    agents.remove(victim);
    wait("a new announcer", || {
        let now = announcers(&lab, &watcher);
        now.len() == 1 && now[0] != owner
    });
    let members = json(&lab, &watcher, "meshlb.v1.Introspection/ListMembers", "{}");
    assert_eq!(members["members"].as_array().unwrap().len(), 2, "{members}");
    let left = candidates(&watcher);
    assert!(left.len() == 2 && !left.contains(&owner), "{left:?}");
    // meshlbctl says the same, for people and for scripts.
    let ctl = |args: &[&str]| -> String {
        let binary = meshlb_chaos::agent::ctl_binary().unwrap();
        let netns = &lab.host(&watcher).unwrap().netns;
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(&binary)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let new_owner = announcers(&lab, &watcher).remove(0);
    let table = ctl(&["service", "default/web"]);
    assert!(
        table.contains(&format!("{new_owner} owns it (Layer 2)")) || table.contains("this node owns it"),
        "{table}"
    );
    let services: Value = serde_json::from_str(&ctl(&["services", "-o", "json"])).unwrap();
    assert_eq!(
        services[0]["owners"][0]["announcers"][0],
        new_owner.as_str(),
        "{services}"
    );
    let members = ctl(&["members"]);
    assert!(members.contains("quorum: yes"), "{members}");
    assert_eq!(
        members.lines().filter(|l| l.starts_with("node")).count(),
        2,
        "{members}"
    );
    let pools = ctl(&["pools"]);
    assert!(
        pools
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["lab", "1/11", "0/0"]),
        "{pools}"
    );
    let yaml = ctl(&["config", "-o", "yaml"]);
    assert!(yaml.contains("generation: 1"), "{yaml}");
    wait("the member-down and ownership events", || {
        let log = events.log();
        log.contains("\"member-down\"") && log.contains(&format!("\"{owner}\"")) && log.contains("\"ownership\"")
    });
}
