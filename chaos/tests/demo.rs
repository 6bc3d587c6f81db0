//! The README's demo command runs `meshlb-lab demo` (Kubernetes) and offers
//! `--standalone`; this runs the same binary both ways and checks that it
//! does what it claims: owners shown, a crash failover measured by the
//! prober, then a clean teardown.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.trim().strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
}

/// Runs `meshlb-lab demo ARGS`: its standard output (it must succeed), and
/// checks that it left none of its namespaces.
fn run_demo(args: &[&str]) -> String {
    let child = Command::new(env!("CARGO_BIN_EXE_meshlb-lab"))
        .arg("demo")
        .args(args)
        .env("MESHLB_AGENT", meshlb_chaos::agent::agent_binary().unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every namespace it created (named after its pid) is gone.
    let left: Vec<String> = meshlb_chaos::netns::lab_namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| meshlb_chaos::netns::namespace_owner(n) == Some(pid))
        .collect();
    assert!(left.is_empty(), "the demo left namespaces: {left:?}");
    // And no real node's state (pods, mounts, cgroups, directories).
    let nodes_left: Vec<String> = std::fs::read_dir(meshlb_chaos::cluster::NODES_ROOT)
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| meshlb_chaos::netns::namespace_owner(n) == Some(pid))
                .collect()
        })
        .unwrap_or_default();
    assert!(nodes_left.is_empty(), "the demo left nodes' state: {nodes_left:?}");
    stdout
}

/// The owners before and after the crash, checked to differ, and the
/// outage checked within generous bounds.
fn failover(stdout: &str) -> (String, String) {
    let old = field(stdout, "owner before the crash");
    let new = field(stdout, "owner after");
    assert!(old.starts_with("node") && new.starts_with("node"), "{stdout}");
    assert_ne!(old, new);
    let outage: f64 = field(stdout, "outage")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The fast profile: about a second; generous bounds only.
    assert!(outage > 0.05 && outage < 10.0, "outage {outage} s");
    (old.to_owned(), new.to_owned())
}

/// The Kubernetes demo, on real nodes: the chart's pods Running on every
/// node, the Service's EXTERNAL-IP from the pool, the ServiceL2Status
/// naming the node the client reached before the crash, and the one it
/// reached after.
#[test]
fn the_kubernetes_demo_shows_the_address_and_owner_and_fails_over() {
    let stdout = run_demo(&[]);
    let (old, new) = failover(&stdout);
    assert_eq!(field(&stdout, "ServiceL2Status before"), old, "{stdout}");
    assert_eq!(field(&stdout, "ServiceL2Status after"), new, "{stdout}");
    let service = stdout
        .lines()
        .find(|l| l.starts_with("service/echo ") && l.contains("LoadBalancer"))
        .unwrap_or_else(|| panic!("no `kubectl get pods,svc` line for the echo Service:\n{stdout}"));
    assert!(service.contains("198.51.100.2"), "EXTERNAL-IP from the pool: {service}");
    // The chart's pods ran on the real kubelets, one per node.
    let agents: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("meshlb-") && l.contains("Running"))
        .collect();
    assert_eq!(agents.len(), 3, "a Running agent pod per node:\n{stdout}");
}

#[test]
fn the_standalone_demo_shows_owners_measures_a_failover_and_tears_down() {
    let stdout = run_demo(&["--standalone"]);
    let (_, new) = failover(&stdout);
    let new = new.as_str();
    // Every address had exactly one owner before and after, and web's two
    // addresses moved together to the new owner.
    let owners: Vec<&str> = stdout.lines().filter(|l| l.contains("answered by")).collect();
    assert_eq!(owners.len(), 6, "{stdout}");
    assert!(owners.iter().all(|l| !l.ends_with("nobody")), "{stdout}");
    let after_web: Vec<&&str> = owners[3..].iter().filter(|l| l.contains("default/web")).collect();
    assert!(after_web.iter().all(|l| l.ends_with(new)), "{stdout}");
}

#[test]
fn sigint_tears_down_the_labs_of_a_running_meshlb_lab() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshlb-lab"))
        .args(["up", "--nodes", "2", "--router", "bird"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("is up"));
    let mine = || {
        meshlb_chaos::netns::lab_namespaces()
            .unwrap()
            .into_iter()
            .filter(|n| meshlb_chaos::netns::namespace_owner(n) == Some(pid))
            .count()
    };
    assert_eq!(mine(), 5, "switch, two nodes, router, client");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(mine(), 0, "SIGINT left namespaces behind");
}
