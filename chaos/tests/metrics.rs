//! The agents' Prometheus metrics scraped by a real Prometheus (Debian's)
//! on the lab's client host: every agent is a healthy target, MetalLB's
//! series are there with their labels, exactly one node announces the
//! service's address, and after that node crashes exactly one other does,
//! the crashed node's series gone and the ownership-change counter moved;
//! every panel of the Grafana dashboards (charts/meshlb/monitoring/dashboards) returns
//! data from it.
//! Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use meshlb_chaos::{Lab, LabSpec, Role};

const SERVICE: &str = "203.0.113.10";

/// Resolves a Go expression of MetalLB's metric code to its string: a
/// literal, `bgpmetrics.Namespace`/`.Subsystem`, `bgpmetrics.X.Name`, or a
/// constant of the file.
fn go_string(expression: &str, symbols: &std::collections::BTreeMap<String, String>) -> Option<String> {
    let expression = expression.trim().trim_end_matches(',').trim();
    if let Some(literal) = expression.strip_prefix('"') {
        return Some(literal.trim_end_matches('"').to_owned());
    }
    symbols.get(expression).cloned()
}

/// Every metric name MetalLB's speaker, controller and FRR-mode exporter
/// define, read from MetalLB's own source (its Go module), by subsystem.
fn metallb_metric_names() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let module = meshlb_chaos::metallb::module_dir().unwrap();
    let read = |path: &str| std::fs::read_to_string(module.join(path)).unwrap();
    // bgpmetrics' names: `SessionUp = metric{ Name: "session_up", ...`.
    let mut symbols = std::collections::BTreeMap::from([
        ("bgpmetrics.Namespace".to_owned(), "metallb".to_owned()),
        ("bgpmetrics.Subsystem".to_owned(), "bgp".to_owned()),
    ]);
    let shared = read("internal/bgp/metrics/metrics.go");
    let mut current = None;
    for line in shared.lines().map(str::trim) {
        if let Some((name, _)) = line.split_once(" = metric{") {
            current = Some(name.trim().to_owned());
        } else if let (Some(symbol), Some(value)) = (&current, line.strip_prefix("Name:")) {
            symbols.insert(format!("bgpmetrics.{symbol}.Name"), go_string(value, &symbols).unwrap());
            current = None;
        }
    }
    let mut names: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for file in [
        "internal/bgp/native/stats.go",
        "internal/allocator/stats.go",
        "internal/k8s/controllers/stats.go",
        "internal/layer2/stats.go",
        "speaker/main.go",
        "frr-tools/metrics/collector/bgp.go",
        "frr-tools/metrics/collector/bfd.go",
    ] {
        let text = read(file);
        let mut symbols = symbols.clone();
        let mut subsystem = None;
        for line in text.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix("const subsystem = ") {
                symbols.insert("subsystem".into(), go_string(value, &symbols).unwrap());
            } else if let Some(value) = line.strip_prefix("Subsystem:") {
                subsystem = go_string(value, &symbols);
            } else if let (Some(sub), Some(value)) = (&subsystem, line.strip_prefix("Name:")) {
                if let Some(name) = go_string(value, &symbols) {
                    names
                        .entry(sub.clone())
                        .or_default()
                        .insert(format!("metallb_{sub}_{name}"));
                }
                subsystem = None;
            } else if let Some(args) = line.split("prometheus.BuildFQName(").nth(1) {
                let args: Vec<&str> = args.split(')').next().unwrap_or_default().split(',').collect();
                if let [_, sub, name] = args[..] {
                    let (sub, name) = (go_string(sub, &symbols).unwrap(), go_string(name, &symbols).unwrap());
                    names
                        .entry(sub.clone())
                        .or_default()
                        .insert(format!("metallb_{sub}_{name}"));
                }
            }
        }
    }
    names
}

/// The names of the series the agent on `node` serves, scraped from its
/// `/metrics` as Prometheus would.
fn exported_names(lab: &Lab, node: &str) -> std::collections::BTreeSet<String> {
    let text = lab
        .exec(node, "curl", &["-sf", "http://127.0.0.1:7472/metrics"])
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The process series every exporter gives (client_golang's).
const PROCESS_SERIES: [&str; 4] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
];

/// One instant query's result from the Prometheus on `host`: each
/// series' labels (as promtool prints them) and value.
fn query_on(lab: &Lab, host: &str, expr: &str) -> Vec<(String, f64)> {
    let out = lab
        .exec(host, "promtool", &["query", "instant", "http://127.0.0.1:9090", expr])
        .unwrap_or_default();
    // `{ip="203.0.113.10", node="node2"} => 1 @[1764643200.123]`
    out.lines()
        .filter_map(|line| {
            let (labels, rest) = line.split_once(" => ")?;
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some((labels.to_owned(), value))
        })
        .collect()
}

/// The value of `label` in promtool's rendering of a series' labels.
fn label(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')? + start;
    Some(labels[start..end].to_owned())
}

/// An instant query to the Prometheus on the client host.
fn query(lab: &Lab, expr: &str) -> Vec<(String, f64)> {
    query_on(lab, "client1", expr)
}

/// Starts Prometheus on `host`, scraping every node's agent each second.
fn start_prometheus(lab: &Lab, host: &str) -> meshlb_chaos::LabProcess {
    let targets: Vec<String> = lab
        .hosts_with(Role::Node)
        .map(|h| format!("'{}:7472'", h.ipv4))
        .collect();
    let config = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\n\
         scrape_configs:\n- job_name: meshlb\n  static_configs:\n  - targets: [{}]\n",
        targets.join(", ")
    );
    let dir = lab.log_dir().join(format!("prometheus-{host}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let checked = lab
        .exec(
            host,
            "promtool",
            &["check", "config", &dir.join("prometheus.yml").to_string_lossy()],
        )
        .unwrap();
    assert!(checked.contains("SUCCESS"), "{checked}");
    lab.spawn(
        host,
        "prometheus",
        "prometheus",
        &[
            &format!("--config.file={}", dir.join("prometheus.yml").display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            "--web.listen-address=127.0.0.1:9090",
        ],
    )
    .unwrap()
}

/// Every dashboard's panel queries, `(dashboard/panel, expr)`, after
/// checking each dashboard's shape: a uid and title, the data source as
/// a variable, panels with unique ids, a grid position and a query each.
fn dashboard_queries(uids: &[&str]) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/meshlb/monitoring/dashboards");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = dashboard["uid"].as_str().unwrap().to_owned();
        if !uids.contains(&name.as_str()) {
            continue;
        }
        assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}");
        assert!(dashboard["schemaVersion"].as_u64().is_some(), "{name}");
        assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource", "{name}");
        let panels = dashboard["panels"].as_array().unwrap();
        let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), panels.len(), "{name}: panel ids are unique");
        for panel in panels {
            let title = panel["title"].as_str().unwrap();
            for key in ["x", "y", "w", "h"] {
                assert!(
                    panel["gridPos"][key].as_u64().is_some(),
                    "{name}/{title}: gridPos.{key}"
                );
            }
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{name}/{title}");
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}/{title}");
            for target in targets {
                queries.push((format!("{name}/{title}"), target["expr"].as_str().unwrap().to_owned()));
            }
        }
    }
    queries
}

/// Whether promtool's `labels` are of the scrape target on `node`.
fn owner_is_instance(lab: &Lab, node: &str, labels: &str) -> bool {
    let address = lab.host(node).unwrap().ipv4;
    label(labels, "instance").is_some_and(|i| i == format!("{address}:7472"))
}

fn wait(what: &str, f: impl Fn() -> bool) {
    meshlb_chaos::wait::wait_for(Duration::from_secs(30), what, f).unwrap();
}

#[test]
fn prometheus_sees_one_announcer_before_and_after_a_crash() {
    let lab = Lab::build(&LabSpec::segment(3, 1, false)).unwrap();
    let nodes = lab.node_names();
    let mut agents =
        meshlb_chaos::agent::start_cluster_with(&lab, &nodes, "fast", meshlb_chaos::agent::L2_WEB).unwrap();
    let _prometheus = start_prometheus(&lab, "client1");

    wait("every agent up as a target", || {
        query(&lab, "up").iter().filter(|(_, v)| *v == 1.0).count() == 3
    });
    wait("one announcer of the address", || {
        query(&lab, &format!("metallb_speaker_announced{{ip=\"{SERVICE}\"}}")).len() == 1
    });
    let announced = query(&lab, &format!("metallb_speaker_announced{{ip=\"{SERVICE}\"}}"));
    let (labels, value) = &announced[0];
    assert_eq!(*value, 1.0);
    assert_eq!(label(labels, "protocol").as_deref(), Some("layer2"), "{labels}");
    assert_eq!(label(labels, "service").as_deref(), Some("default/web"), "{labels}");
    let owner = label(labels, "node").unwrap();
    assert!(nodes.contains(&owner), "{labels}");
    let pool = query(&lab, "metallb_allocator_addresses_in_use_total{pool=\"lab\"}");
    assert_eq!(pool.len(), 3, "every agent counts the pool: {pool:?}");
    assert!(pool.iter().all(|(_, v)| *v == 1.0), "{pool:?}");
    let total = query(&lab, "max(metallb_allocator_addresses_total{pool=\"lab\"})");
    assert_eq!(total[0].1, 11.0, "{total:?}");
    let loaded = query(&lab, "min(metallb_k8s_client_config_loaded_bool)");
    assert_eq!(loaded[0].1, 1.0);
    let changes_before = query(&lab, "max(meshlb_ownership_changes_total)")[0].1;
    // The client asks for the address: the owner counts the question and
    // its answer under MetalLB's names, beside its takeover announcements.
    lab.exec("client1", "arping", &["-c", "2", "-w", "3", "-I", "eth0", SERVICE])
        .unwrap();
    wait("the owner's per-address counters", || {
        let counted = |name: &str| {
            query(&lab, &format!("{name}{{ip=\"{SERVICE}\"}}"))
                .iter()
                .any(|(labels, v)| *v > 0.0 && owner_is_instance(&lab, &owner, labels))
        };
        counted("metallb_layer2_requests_received")
            && counted("metallb_layer2_responses_sent")
            && counted("metallb_layer2_gratuitous_sent")
    });

    // Every metric MetalLB's Layer 2 speaker and controller define is
    // here, under its name, and the process series.
    let metallb = metallb_metric_names();
    let exported = exported_names(&lab, &owner);
    for subsystem in ["allocator", "k8s_client", "layer2", "speaker"] {
        let theirs = &metallb[subsystem];
        let missing: Vec<&String> = theirs.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "MetalLB's {missing:?} are not exported: {exported:?}"
        );
    }
    assert!(PROCESS_SERIES.iter().all(|n| exported.contains(*n)), "{exported:?}");

    // Every panel of every dashboard returns data from this Prometheus.
    let queries = dashboard_queries(&["meshlb-overview", "meshlb-layer2"]);
    assert!(queries.len() >= 10, "{queries:?}");
    wait("every dashboard query to return data", || {
        queries.iter().all(|(_, expr)| !query(&lab, expr).is_empty())
    });

    // The owner crashes: exactly one other node announces the address,
    // and the ownership-change counter moved.
    let victim = agents.iter().position(|a| a.node == owner).unwrap();
    agents[victim].process.kill().unwrap();
    agents.remove(victim);
    wait("another single announcer", || {
        let now = query(&lab, &format!("metallb_speaker_announced{{ip=\"{SERVICE}\"}}"));
        now.len() == 1 && label(&now[0].0, "node").is_some_and(|n| n != owner)
    });
    wait("the ownership change counted", || {
        query(&lab, "max(meshlb_ownership_changes_total)")
            .first()
            .is_some_and(|(_, v)| *v > changes_before)
    });
    wait("the handover's duration observed", || {
        query(&lab, "sum(meshlb_ownership_change_seconds_count)")
            .first()
            .is_some_and(|(_, v)| *v > 0.0)
    });
    let slowest = query(
        &lab,
        "max(meshlb_ownership_change_seconds_sum / meshlb_ownership_change_seconds_count)",
    );
    // Generous: the benchmarks measure; this catches a broken clock.
    assert!(slowest[0].1 < 30.0, "{slowest:?}");
    // Each survivor's next scrape shows it (Prometheus scrapes each target
    // on its own schedule).
    wait("both survivors counting two members", || {
        query(&lab, "meshlb_members").iter().filter(|(_, v)| *v == 2.0).count() >= 2
    });
    // Both survivors detected the crash, each timing it once.
    wait("the crash detected by both survivors", || {
        let detected = query(&lab, "meshlb_failures_detected_total == 1");
        let timed = query(&lab, "meshlb_failure_detection_seconds_count == 1");
        detected.len() == 2 && timed.len() == 2
    });
    let silent = query(&lab, "max(meshlb_failure_detection_seconds_sum)");
    assert!(silent[0].1 > 0.0 && silent[0].1 < 30.0, "{silent:?}");
    // Every agent allocated the Service's address at start.
    let allocations = query(&lab, "meshlb_allocation_seconds_count");
    assert!(
        allocations.len() >= 2 && allocations.iter().all(|(_, v)| *v >= 1.0),
        "{allocations:?}"
    );

    // Every panel of the mesh dashboard returns data, a failure included.
    let queries = dashboard_queries(&["meshlb-mesh"]);
    assert!(queries.len() >= 6, "{queries:?}");
    wait("every mesh dashboard query to return data", || {
        queries.iter().all(|(_, expr)| !query(&lab, expr).is_empty())
    });
}

/// Every dashboard in charts/meshlb/monitoring/dashboards is one the lab tests evaluate.
#[test]
fn every_dashboard_is_evaluated() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/meshlb/monitoring/dashboards");
    let mut uids: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
            dashboard["uid"].as_str().unwrap().to_owned()
        })
        .collect();
    uids.sort();
    assert_eq!(uids, ["meshlb-bgp", "meshlb-layer2", "meshlb-mesh", "meshlb-overview"]);
}

/// BGP mode with BFD, two nodes and FRR, Prometheus on the router: both
/// sessions and both BFD sessions up, the address announced by both nodes
/// (ECMP, no split brain), and every panel of the BGP dashboard returns
/// data.
#[test]
fn prometheus_sees_the_bgp_sessions_and_the_ecmp_announcers() {
    use meshlb_chaos::router::{BfdTimers, NODE_ASN, Router, RouterKind, RouterOptions};
    let lab = Lab::build(&LabSpec {
        router: true,
        ..LabSpec::segment(2, 0, false)
    })
    .unwrap();
    let peers = lab
        .hosts_with(Role::Node)
        .map(|h| (std::net::IpAddr::V4(h.ipv4), NODE_ASN))
        .collect();
    let options = RouterOptions {
        bfd: Some(BfdTimers {
            interval_ms: 300,
            multiplier: 3,
        }),
        ..RouterOptions::default()
    };
    let _router = Router::start_with_options(&lab, RouterKind::Frr, peers, options).unwrap();
    let profile = "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast, namespace: metallb-system}\n\
                   spec: {receiveInterval: 300, transmitInterval: 300, detectMultiplier: 3}\n---\n";
    let router_address = std::net::IpAddr::V4(lab.host("router").unwrap().ipv4);
    let config = meshlb_chaos::agent::bgp_config(
        router_address,
        "203.0.113.20/32",
        ", holdTime: 9s, bfdProfile: fast",
        "",
        profile,
    );
    let nodes = lab.node_names();
    let _agents = meshlb_chaos::agent::start_cluster_with(&lab, &nodes, "fast", &config).unwrap();
    let _prometheus = start_prometheus(&lab, "router");
    let q = |expr: &str| query_on(&lab, "router", expr);
    wait("both BGP sessions up", || {
        q("sum(metallb_bgp_session_up)").first().is_some_and(|(_, v)| *v == 2.0)
    });
    wait("both BFD sessions up", || {
        q("sum(metallb_bfd_session_up)").first().is_some_and(|(_, v)| *v == 2.0)
    });
    wait("both nodes announcing the address", || {
        q("count by (ip) (metallb_speaker_announced{protocol=\"bgp\", ip=\"203.0.113.20\"})")
            .first()
            .is_some_and(|(_, v)| *v == 2.0)
    });
    // An UPDATE with the route and End-of-RIB at least, per session.
    let updates = q("metallb_bgp_updates_total");
    assert!(
        updates.len() == 2 && updates.iter().all(|(_, v)| *v >= 2.0),
        "{updates:?}"
    );
    let ready = q("meshlb_members_by_state{state=\"ready\"}");
    assert!(ready.iter().all(|(_, v)| *v == 2.0), "{ready:?}");
    let prefixes = q("metallb_bgp_announced_prefixes_total");
    assert!(
        prefixes.len() == 2 && prefixes.iter().all(|(_, v)| *v == 1.0),
        "{prefixes:?}"
    );
    assert!(
        q("count by (ip) (metallb_speaker_announced{protocol=\"layer2\"}) > 1").is_empty(),
        "BGP's ECMP announcers are no Layer 2 split brain"
    );
    // Every BGP and BFD metric MetalLB's speakers define (native and FRR
    // mode) is here, under its name and with its labels, but FRR's zebra
    // notifications (meshlb has no zebra).
    let metallb = metallb_metric_names();
    let exported = exported_names(&lab, "node1");
    for subsystem in ["bgp", "bfd"] {
        let missing: Vec<&String> = metallb[subsystem]
            .iter()
            .filter(|n| !exported.contains(*n) && n.as_str() != "metallb_bfd_zebra_notifications")
            .collect();
        assert!(
            missing.is_empty(),
            "MetalLB's {missing:?} are not exported: {exported:?}"
        );
    }
    assert!(metallb["bgp"].len() >= 13 && metallb["bfd"].len() >= 7, "{metallb:?}");
    assert!(PROCESS_SERIES.iter().all(|n| exported.contains(*n)), "{exported:?}");
    let sessions = q("metallb_bgp_session_up");
    let router = lab.host("router").unwrap().ipv4;
    assert!(
        sessions
            .iter()
            .all(|(labels, _)| label(labels, "peer") == Some(format!("{router}:179"))
                && label(labels, "vrf").as_deref() == Some("default")),
        "peer labels as MetalLB writes them: {sessions:?}"
    );
    let keepalives = q("metallb_bgp_keepalives_received");
    assert!(keepalives.iter().all(|(_, v)| *v >= 1.0), "{keepalives:?}");
    let bfd = q("metallb_bfd_control_packet_input");
    assert!(bfd.len() == 2 && bfd.iter().all(|(_, v)| *v > 0.0), "{bfd:?}");
    let ups = q("metallb_bfd_session_up_events");
    assert!(ups.iter().all(|(_, v)| *v >= 1.0), "{ups:?}");

    let queries = dashboard_queries(&["meshlb-bgp"]);
    assert!(queries.len() >= 6, "{queries:?}");
    wait("every BGP dashboard query to return data", || {
        queries.iter().all(|(_, expr)| !q(expr).is_empty())
    });
}
