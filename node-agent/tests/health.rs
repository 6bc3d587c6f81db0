//! Local health probes against real listeners and programs on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::Duration;

use meshlb_config::health::{Health, HealthCheck, Probe};
use meshlb_config::service::ServiceKey;
use meshlb_node_agent::health::{HealthMonitors, ProbeFailure, probe_once};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn tcp_probe_follows_the_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    probe_once(&Probe::Tcp(address), TIMEOUT).await.unwrap();
    drop(listener);
    let err = probe_once(&Probe::Tcp(address), TIMEOUT).await.unwrap_err();
    assert!(
        matches!(&err, ProbeFailure::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err}"
    );
}

/// Answers every HTTP request with `status`, and records the request line.
async fn http_server(status: u16) -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let _ = tx.send(request);
            let _ = stream
                .write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await;
        }
    });
    (address, rx)
}

#[tokio::test]
async fn http_probe_reads_the_status() {
    let (ok, mut requests) = http_server(204).await;
    probe_once(
        &Probe::Http {
            address: ok,
            path: "/healthz".into(),
        },
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(requests.recv().await.unwrap(), "GET /healthz HTTP/1.1");
    let (failing, _) = http_server(503).await;
    let err = probe_once(
        &Probe::Http {
            address: failing,
            path: "/".into(),
        },
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ProbeFailure::HttpStatus(503)), "{err}");
    assert_eq!(err.to_string(), "HTTP status 503");
    // A listener that never answers: the timeout decides.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probe = Probe::Http {
        address: silent.local_addr().unwrap(),
        path: "/".into(),
    };
    let err = probe_once(&probe, Duration::from_millis(200)).await.unwrap_err();
    assert!(matches!(err, ProbeFailure::Timeout(_)), "{err}");
    assert!(err.to_string().contains("no answer within"), "{err}");
}

#[tokio::test]
async fn command_probe_uses_the_exit_status() {
    let run = |argv: &[&str]| Probe::Command(argv.iter().map(|s| s.to_string()).collect());
    probe_once(&run(&["true"]), TIMEOUT).await.unwrap();
    let failed = probe_once(&run(&["false"]), TIMEOUT).await.unwrap_err();
    assert!(matches!(failed, ProbeFailure::Exited { .. }), "{failed}");
    assert!(failed.to_string().contains("exited with"), "{failed}");
    let missing = probe_once(&run(&["/nonexistent/check"]), TIMEOUT).await.unwrap_err();
    assert!(matches!(missing, ProbeFailure::Spawn { .. }), "{missing}");
    let started = std::time::Instant::now();
    let hung = probe_once(&run(&["sleep", "30"]), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(hung, ProbeFailure::Timeout(_)), "{hung}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a hung command is abandoned at the timeout"
    );
}

#[tokio::test]
async fn monitor_turns_healthy_and_unhealthy_with_rise_and_fall() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let key = ServiceKey::new("default", "db");
    let check = HealthCheck {
        probe: Probe::Tcp(address),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(50),
        rise: 2,
        fall: 2,
    };
    let (mut monitors, mut health) = HealthMonitors::new();
    monitors.update(BTreeMap::from([(key.clone(), check)]));
    assert_eq!(health.borrow().get(&key), Some(&Health::Unhealthy), "starts unhealthy");
    let wait = async |health: &mut tokio::sync::watch::Receiver<BTreeMap<ServiceKey, Health>>, want: Health| {
        tokio::time::timeout(Duration::from_secs(10), health.wait_for(|m| m.get(&key) == Some(&want)))
            .await
            .expect("health did not change")
            .unwrap();
    };
    wait(&mut health, Health::Healthy).await;
    drop(listener);
    wait(&mut health, Health::Unhealthy).await;
    monitors.update(BTreeMap::new());
    assert!(health.borrow().is_empty(), "a removed check stops and leaves no state");
}
