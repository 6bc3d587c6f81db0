//! meshlbctl as a user runs it, without an agent: its help names every
//! command, and an agent that is not there or a server that is not an
//! address give a clear error and a failing exit status, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

fn meshlbctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshlbctl"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_names_every_command() {
    let out = meshlbctl(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "members",
        "services",
        "service",
        "interfaces",
        "bgp",
        "bfd",
        "pools",
        "config",
        "events",
    ] {
        assert!(help.contains(command), "{command} in {help}");
    }
}

#[test]
fn no_agent_is_a_clear_error() {
    // A port of loopback nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = meshlbctl(&["--server", &format!("127.0.0.1:{port}"), "members"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: cannot reach the agent at 127.0.0.1:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = meshlbctl(&["--server", "not an address", "members"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not host:port or unix:/path"), "{err}");

    let out = meshlbctl(&["--server", "unix:/nonexistent/meshlb.sock", "config"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the agent"));
}
