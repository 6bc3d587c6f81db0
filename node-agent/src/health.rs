//! Runs the local health probes services declare in standalone mode
//! (`meshlb.io/health-check`), one task per service, and publishes each
//! service's health on a watch channel. The rise/fall logic is the pure
//! [`HealthTracker`] of `meshlb-config`; this module only does the I/O.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use meshlb_config::health::{Health, HealthCheck, HealthTracker, Probe};
use meshlb_config::service::ServiceKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeFailure {
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The answer is not HTTP.
    #[error("not an HTTP response: {0:?}")]
    NotHttp(String),
    /// An HTTP status other than 2xx or 3xx.
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    /// A command probe with no command.
    #[error("empty command")]
    EmptyCommand,
    /// The command could not run.
    #[error("{program}: {source}")]
    Spawn {
        /// The command.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The command failed.
    #[error("{program} exited with {status}")]
    Exited {
        /// The command.
        program: String,
        /// How it exited.
        status: std::process::ExitStatus,
    },
}

/// Runs one probe; `Err` says why it failed.
pub async fn probe_once(probe: &Probe, timeout: Duration) -> Result<(), ProbeFailure> {
    match tokio::time::timeout(timeout, run(probe)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeFailure::Timeout(timeout)),
    }
}

async fn run(probe: &Probe) -> Result<(), ProbeFailure> {
    match probe {
        Probe::Tcp(address) => Ok(TcpStream::connect(address).await.map(drop)?),
        Probe::Http { address, path } => {
            let mut stream = TcpStream::connect(address).await?;
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: meshlb-agent\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await?;
            // The status line is all we need; read until its end.
            let mut head = Vec::new();
            let mut buf = [0u8; 256];
            while !head.contains(&b'\n') && head.len() < 4096 {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&head);
            let line = line.lines().next().unwrap_or_default();
            let status: u16 = line
                .strip_prefix("HTTP/1.")
                .and_then(|rest| rest.get(2..5))
                .and_then(|code| code.parse().ok())
                .ok_or_else(|| ProbeFailure::NotHttp(line.to_owned()))?;
            if (200..400).contains(&status) {
                Ok(())
            } else {
                Err(ProbeFailure::HttpStatus(status))
            }
        }
        Probe::Command(argv) => {
            let (program, args) = argv.split_first().ok_or(ProbeFailure::EmptyCommand)?;
            let status = tokio::process::Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|source| ProbeFailure::Spawn {
                    program: program.clone(),
                    source,
                })?;
            if status.success() {
                Ok(())
            } else {
                Err(ProbeFailure::Exited {
                    program: program.clone(),
                    status,
                })
            }
        }
    }
}

/// One monitoring task per service with a health check.
pub struct HealthMonitors {
    tasks: BTreeMap<ServiceKey, (HealthCheck, JoinHandle<()>)>,
    health: watch::Sender<BTreeMap<ServiceKey, Health>>,
}

impl HealthMonitors {
    /// No monitors yet; the receiver sees every service's health.
    pub fn new() -> (HealthMonitors, watch::Receiver<BTreeMap<ServiceKey, Health>>) {
        let (health, rx) = watch::channel(BTreeMap::new());
        (
            HealthMonitors {
                tasks: BTreeMap::new(),
                health,
            },
            rx,
        )
    }

    /// Starts, restarts (changed check) or stops monitors so that exactly
    /// these checks run. A new monitor starts unhealthy.
    pub fn update(&mut self, checks: BTreeMap<ServiceKey, HealthCheck>) {
        let stale: Vec<ServiceKey> = self
            .tasks
            .iter()
            .filter(|(k, (c, _))| checks.get(*k) != Some(c))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some((_, task)) = self.tasks.remove(&key) {
                task.abort();
            }
            self.health.send_modify(|m| {
                m.remove(&key);
            });
        }
        for (key, check) in checks {
            if self.tasks.contains_key(&key) {
                continue;
            }
            self.health.send_modify(|m| {
                m.insert(key.clone(), Health::Unhealthy);
            });
            let task = tokio::spawn(monitor(key.clone(), check.clone(), self.health.clone()));
            self.tasks.insert(key, (check, task));
        }
    }
}

impl Drop for HealthMonitors {
    fn drop(&mut self) {
        for (_, task) in self.tasks.values() {
            task.abort();
        }
    }
}

async fn monitor(key: ServiceKey, check: HealthCheck, health: watch::Sender<BTreeMap<ServiceKey, Health>>) {
    let mut tracker = HealthTracker::new(check.rise, check.fall);
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = probe_once(&check.probe, check.timeout).await;
        if let Some(now) = tracker.record(result.is_ok()) {
            match (&now, &result) {
                (Health::Healthy, _) => tracing::info!(service = %key, "health check passes: node can serve"),
                (Health::Unhealthy, Err(why)) => {
                    tracing::warn!(service = %key, reason = %why, "health check fails: node cannot serve")
                }
                (Health::Unhealthy, Ok(())) => {}
            }
            health.send_modify(|m| {
                m.insert(key.clone(), now);
            });
        }
    }
}
