//! The README's demo command runs `meshlb-lab smoke`; this runs the same
//! binary and checks that it does what it claims: a failover measured by
//! the prober, then a clean teardown.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

fn field<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.trim().strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
}

#[test]
fn the_smoke_demo_measures_a_failover_and_tears_down() {
    let child = Command::new(env!("CARGO_BIN_EXE_meshlb-lab"))
        .arg("smoke")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "smoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old = field(&stdout, "master before the crash");
    let new = field(&stdout, "master after");
    assert_ne!(old, new);
    let outage: f64 = field(&stdout, "outage")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // keepalived's default timers: about 3 s; generous bounds only.
    assert!(outage > 0.1 && outage < 20.0, "outage {outage} s");
    // Every namespace it created (named after its pid) is gone.
    let left: Vec<String> = meshlb_chaos::netns::lab_namespaces()
        .unwrap()
        .into_iter()
        .filter(|n| meshlb_chaos::netns::namespace_owner(n) == Some(pid))
        .collect();
    assert!(left.is_empty(), "smoke left namespaces: {left:?}");
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
