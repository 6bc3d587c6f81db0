//! Standalone mode end to end: example configurations, reload on change,
//! last good configuration on errors, restart safety through the state
//! file, and the `meshlb-agent` binary itself.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use meshlb_config::ServiceOutcome;
use meshlb_config::service::{ClassFilter, ServiceKey};
use meshlb_node_agent::file_source::watch;
use meshlb_node_agent::standalone::{Reload, Standalone};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn every_example_loads_and_every_service_gets_addresses() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 3, "examples/ holds {dirs:?}");
    for dir in dirs {
        let mut agent = Standalone::new(&dir, None, ClassFilter::default()).unwrap();
        let reload = agent.reload();
        assert!(
            matches!(reload, Reload::Accepted { generation: 1, .. }),
            "{}: {reload:?}",
            dir.display()
        );
        assert!(!agent.outcomes().is_empty(), "{}: no services", dir.display());
        for (key, outcome) in agent.outcomes() {
            assert!(
                matches!(outcome, ServiceOutcome::Assigned(_)),
                "{}: {key}: {outcome}",
                dir.display()
            );
        }
    }
}

const POOL: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: vips}
spec: {addresses: [192.0.2.0/29]}
";

fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    )
}

fn addresses(agent: &Standalone, name: &str) -> Vec<IpAddr> {
    agent.outcomes()[&ServiceKey::new("default", name)]
        .assignment()
        .unwrap()
        .addresses
        .clone()
}

#[tokio::test]
async fn reloads_on_change_and_keeps_the_last_good_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pool.yaml"), POOL).unwrap();
    std::fs::write(dir.path().join("web.yaml"), service("web")).unwrap();
    let mut agent = Standalone::new(dir.path(), None, ClassFilter::default()).unwrap();
    assert!(matches!(agent.reload(), Reload::Accepted { generation: 1, .. }));
    let (_watcher, mut changes) = watch(dir.path(), Duration::from_millis(50)).unwrap();
    let next_change = async |changes: &mut tokio::sync::mpsc::Receiver<()>| {
        tokio::time::timeout(Duration::from_secs(10), changes.recv())
            .await
            .expect("no change event")
            .unwrap();
    };

    // A new file: noticed, and the new service gets the next address.
    std::fs::write(dir.path().join("api.yaml"), service("api")).unwrap();
    next_change(&mut changes).await;
    let Reload::Accepted { generation, changed } = agent.reload() else {
        panic!("not accepted")
    };
    assert_eq!((generation, changed.len()), (2, 1));
    assert_eq!(addresses(&agent, "api"), ["192.0.2.1".parse::<IpAddr>().unwrap()]);

    // A broken edit: rejected with file, line and object; nothing changes.
    std::fs::write(
        dir.path().join("pool.yaml"),
        POOL.replace("192.0.2.0/29", "192.0.2.0/99"),
    )
    .unwrap();
    next_change(&mut changes).await;
    let Reload::Rejected(rejected) = agent.reload() else {
        panic!("bad configuration accepted")
    };
    let text = rejected.to_string();
    assert!(
        text.contains("pool.yaml:1: IPAddressPool vips: spec.addresses[0] \"192.0.2.0/99\""),
        "{text}"
    );
    assert_eq!(agent.store().generation(), 2);
    assert!(agent.store().last_rejection().is_some());
    assert_eq!(addresses(&agent, "web"), ["192.0.2.0".parse::<IpAddr>().unwrap()]);

    // Unparsable YAML in another file is rejected too.
    std::fs::write(dir.path().join("pool.yaml"), POOL).unwrap();
    std::fs::write(dir.path().join("zz.yaml"), "kind: [unclosed\n").unwrap();
    next_change(&mut changes).await;
    let Reload::Rejected(rejected) = agent.reload() else {
        panic!("broken YAML accepted")
    };
    assert!(rejected.to_string().contains("zz.yaml"), "{rejected}");

    // Fixed: accepted; deleting a service releases its address.
    std::fs::remove_file(dir.path().join("zz.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("web.yaml")).unwrap();
    next_change(&mut changes).await;
    let Reload::Accepted { changed, .. } = agent.reload() else {
        panic!("fixed configuration rejected")
    };
    assert_eq!(changed.get(&ServiceKey::new("default", "web")), Some(&None));
    assert!(agent.store().last_rejection().is_none());
    let counters = &agent.reconciler().allocator().counters()["vips"];
    assert_eq!((counters.v4.in_use, counters.v4.total), (1, 8));
}

#[test]
fn restart_keeps_addresses_through_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("assignments.yaml");
    std::fs::write(dir.path().join("pool.yaml"), POOL).unwrap();
    std::fs::write(dir.path().join("z.yaml"), service("z-old")).unwrap();
    let mut agent = Standalone::new(dir.path(), Some(&state_file), ClassFilter::default()).unwrap();
    agent.reload();
    assert_eq!(addresses(&agent, "z-old"), ["192.0.2.0".parse::<IpAddr>().unwrap()]);
    drop(agent);
    assert!(std::fs::read_to_string(&state_file).unwrap().contains("z-old"));

    // While the agent was down, a service sorting first was added. Without
    // the state file it would take 192.0.2.0 from z-old (MetalLB #1774).
    std::fs::write(dir.path().join("a.yaml"), service("a-new")).unwrap();
    let mut fresh = Standalone::new(dir.path(), None, ClassFilter::default()).unwrap();
    fresh.reload();
    assert_eq!(
        addresses(&fresh, "a-new"),
        ["192.0.2.0".parse::<IpAddr>().unwrap()],
        "the hazard is real"
    );
    let mut restarted = Standalone::new(dir.path(), Some(&state_file), ClassFilter::default()).unwrap();
    restarted.reload();
    assert_eq!(addresses(&restarted, "z-old"), ["192.0.2.0".parse::<IpAddr>().unwrap()]);
    assert_eq!(addresses(&restarted, "a-new"), ["192.0.2.1".parse::<IpAddr>().unwrap()]);

    std::fs::write(&state_file, "assignments: 7\n").unwrap();
    let err = Standalone::new(dir.path(), Some(&state_file), ClassFilter::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("assignments.yaml"), "{err}");
}

fn agent_binary() -> &'static str {
    env!("CARGO_BIN_EXE_meshlb-agent")
}

#[test]
fn check_command_reports_assignments_and_errors() {
    let out = Command::new(agent_binary())
        .arg("check")
        .arg(examples().join("layer2"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("configuration valid: 1 pools"), "{stdout}");
    assert!(
        stdout.contains("service shop/dns: 198.51.100.201 from pool lan"),
        "{stdout}"
    );
    assert!(
        stdout.contains("service shop/web: 198.51.100.201 from pool lan"),
        "sharing: {stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("peer.yaml"),
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r1}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, holdTime: 1s}\n",
    )
    .unwrap();
    let out = Command::new(agent_binary())
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("peer.yaml:1: BGPPeer r1: spec.holdTime \"1s\" is below 3 seconds"),
        "{stdout}"
    );
}

/// Collects the agent's log lines on a thread.
fn log_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for_line(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            let found = want.iter().all(|w| line.contains(w));
            seen.push(line);
            if found {
                return;
            }
        }
    }
    panic!("no log line with {want:?}; saw:\n{}", seen.join("\n"));
}

#[test]
fn run_command_watches_the_directory_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pool.yaml"), POOL).unwrap();
    let mut child = Command::new(agent_binary())
        .args(["run", "--config-dir"])
        .arg(dir.path())
        .arg("--state-dir")
        .arg(state.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = log_lines(&mut child);
    let mut seen = Vec::new();
    wait_for_line(&lines, &mut seen, &["configuration accepted", "generation=1"]);
    std::fs::write(dir.path().join("web.yaml"), service("web")).unwrap();
    wait_for_line(
        &lines,
        &mut seen,
        &["service=default/web", "assigned 192.0.2.0 from pool vips"],
    );
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
    )
    .unwrap();
    wait_for_line(&lines, &mut seen, &["bad.yaml:1", "unknown kind \"Pod\""]);
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let remembered = std::fs::read_to_string(state.path().join("assignments.yaml")).unwrap();
    assert!(
        remembered.contains("192.0.2.0") && remembered.contains("web"),
        "{remembered}"
    );
}
