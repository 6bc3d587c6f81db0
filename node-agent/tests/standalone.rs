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
use meshlb_node_agent::pipeline::{Pipeline, Reload};
use meshlb_node_agent::sources::files::{FileSource, ReadLimits, watch};

/// The file source and the pipeline, read by hand.
struct Standalone {
    source: FileSource,
    pipeline: Pipeline,
}

impl Standalone {
    fn new(
        dir: &Path,
        state: Option<&Path>,
        classes: ClassFilter,
    ) -> Result<Standalone, meshlb_node_agent::AgentError> {
        Ok(Standalone {
            source: FileSource::new(dir, ReadLimits::default()),
            pipeline: Pipeline::new(state, classes)?,
        })
    }

    fn limited(mut self, limits: ReadLimits) -> Standalone {
        self.source = FileSource::new(self.source.dir(), limits);
        self
    }

    /// Reads the directory and offers what changed to the pipeline.
    fn reload(&mut self) -> Reload {
        self.reload_at(Instant::now())
    }

    /// Reads the directory and offers what changed to the pipeline, at
    /// `now`.
    fn reload_at(&mut self, now: Instant) -> Reload {
        match self.source.read() {
            Some(update) => self.pipeline.offer(update, now),
            None => Reload::Unchanged,
        }
    }

    fn outcomes(&self) -> &meshlb_config::reconcile::Outcomes {
        self.pipeline.outcomes()
    }
}

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
                matches!(**outcome, ServiceOutcome::Assigned(_)),
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
    let Reload::Accepted {
        generation,
        changed,
        refused: None,
    } = agent.reload()
    else {
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
    assert_eq!(agent.pipeline.store().generation(), 2);
    assert!(agent.pipeline.store().last_rejection().is_some());
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
    assert!(agent.pipeline.store().last_rejection().is_none());
    let counters = &agent.pipeline.reconciler().allocator().counters()["vips"];
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

/// A truncated file reads as no configuration at all: held with a
/// warning while the previous configuration keeps running, forgotten when
/// the file is written anew, and applied only if the files still read the
/// same once the grace period is over.
#[test]
fn a_reading_that_withdraws_everything_is_held_for_a_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pool.yaml"), POOL).unwrap();
    std::fs::write(dir.path().join("web.yaml"), service("web")).unwrap();
    let mut agent = Standalone::new(dir.path(), None, ClassFilter::default()).unwrap();
    agent.pipeline = agent.pipeline.holding_withdrawals_for(Duration::from_millis(300));
    assert!(matches!(agent.reload(), Reload::Accepted { generation: 1, .. }));

    // An editor truncates both files before writing them anew.
    std::fs::write(dir.path().join("pool.yaml"), "").unwrap();
    std::fs::write(dir.path().join("web.yaml"), "").unwrap();
    let Reload::Held { reason, .. } = agent.reload() else {
        panic!("an empty configuration was applied at once")
    };
    assert!(reason.contains("removes every pool"), "{reason}");
    assert_eq!(addresses(&agent, "web"), ["192.0.2.0".parse::<IpAddr>().unwrap()]);
    assert!(agent.pipeline.held_until().is_some());
    assert!(
        matches!(agent.pipeline.hold_over(Instant::now()), Reload::Held { .. }),
        "applied before its time"
    );
    std::fs::write(dir.path().join("pool.yaml"), POOL).unwrap();
    std::fs::write(dir.path().join("web.yaml"), service("web")).unwrap();
    assert_eq!(agent.reload(), Reload::Unchanged);
    assert!(agent.pipeline.held_until().is_none(), "the hold is forgotten");

    // The service's file alone emptied: every address would go.
    std::fs::write(dir.path().join("web.yaml"), "").unwrap();
    let Reload::Held { reason, until } = agent.reload() else {
        panic!("withdrawing every address was applied at once")
    };
    assert!(reason.contains("withdraws every address"), "{reason}");
    // Nothing else came during the grace period: applied, at its end.
    assert_eq!(
        agent.reload_at(until),
        Reload::Unchanged,
        "the files still read the same"
    );
    let Reload::Accepted { changed, .. } = agent.pipeline.hold_over(until) else {
        panic!("a reading that stayed the same was not applied")
    };
    assert_eq!(changed.get(&ServiceKey::new("default", "web")), Some(&None));

    // Ordinary changes apply at once, removing some services or not.
    std::fs::write(dir.path().join("web.yaml"), service("web")).unwrap();
    std::fs::write(dir.path().join("api.yaml"), service("api")).unwrap();
    assert!(matches!(agent.reload(), Reload::Accepted { .. }));
    std::fs::remove_file(dir.path().join("api.yaml")).unwrap();
    assert!(matches!(agent.reload(), Reload::Accepted { .. }));
}

/// A resync of files that did not change costs a read and a hash, not a
/// parse; a change parses only the file it touched; a file over the size
/// limit is refused unread, naming the limit, and the running
/// configuration stays.
#[test]
fn unchanged_files_are_not_parsed_again_and_oversized_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pool.yaml"), POOL).unwrap();
    std::fs::write(dir.path().join("web.yaml"), service("web")).unwrap();
    let mut agent = Standalone::new(dir.path(), None, ClassFilter::default())
        .unwrap()
        .limited(ReadLimits { max_file_bytes: 4096 });
    assert!(matches!(agent.reload(), Reload::Accepted { .. }));
    for _ in 0..3 {
        assert_eq!(agent.reload(), Reload::Unchanged);
    }
    std::fs::write(dir.path().join("web.yaml"), service("web")).unwrap();
    assert_eq!(agent.reload(), Reload::Unchanged, "rewritten with the same bytes");
    assert_eq!(agent.source.readings_parsed(), 1);
    assert_eq!(agent.source.files_parsed(), 2);
    // A comment changes the bytes, not the configuration: parsed, unchanged.
    std::fs::write(dir.path().join("web.yaml"), format!("# web\n{}", service("web"))).unwrap();
    assert_eq!(agent.reload(), Reload::Unchanged);
    assert_eq!(agent.source.readings_parsed(), 2);
    assert_eq!(agent.source.files_parsed(), 3, "web.yaml alone parsed again");
    // A new file is parsed alone, and so is one that changed back.
    std::fs::write(dir.path().join("api.yaml"), service("api")).unwrap();
    assert!(matches!(agent.reload(), Reload::Accepted { .. }));
    assert_eq!(agent.source.files_parsed(), 4);
    assert_eq!(addresses(&agent, "api").len(), 1);
    std::fs::write(dir.path().join("web.yaml"), service("web")).unwrap();
    assert_eq!(agent.reload(), Reload::Unchanged);
    assert_eq!(agent.source.files_parsed(), 5);
    // A file that no longer parses rejects the reading and is parsed once;
    // mended, the reading is whole again.
    std::fs::write(dir.path().join("api.yaml"), "kind: [").unwrap();
    assert!(matches!(agent.reload(), Reload::Rejected(_)));
    std::fs::remove_file(dir.path().join("api.yaml")).unwrap();
    assert!(matches!(agent.reload(), Reload::Accepted { .. }));
    assert_eq!(agent.source.files_parsed(), 6, "removing a file parses nothing");
    assert!(!agent.outcomes().contains_key(&ServiceKey::new("default", "api")));

    let parsed = agent.source.readings_parsed();
    let big = format!("{}# {}\n", service("web"), "x".repeat(5000));
    std::fs::write(dir.path().join("web.yaml"), big).unwrap();
    let Reload::Rejected(rejected) = agent.reload() else {
        panic!("an oversized file was read")
    };
    let text = rejected.to_string();
    assert!(
        text.contains("web.yaml") && text.contains("larger than the 4096 bytes"),
        "{text}"
    );
    assert_eq!(agent.source.readings_parsed(), parsed, "refused before parsing");
    assert_eq!(addresses(&agent, "web"), ["192.0.2.0".parse::<IpAddr>().unwrap()]);
}

/// The agent's pipeline reads, parses, validates and allocates on a
/// blocking thread: a configuration that takes a long time to handle does
/// not hold up the thread that gossips and answers. A task ticking every
/// 10 ms on the agent's (single) thread is never held up for more than a
/// quarter of the time the reload took.
#[test]
fn a_large_configuration_is_read_off_the_agents_thread() {
    use std::fmt::Write as _;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: vips}\nspec: {addresses: [198.18.0.0/16]}\n",
    );
    for i in 0..20_000 {
        write!(
            text,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("big.yaml"), &text).unwrap();
    let limits = ReadLimits {
        max_file_bytes: text.len() as u64,
    };
    let source = FileSource::new(dir.path(), limits);
    let pipeline = Pipeline::new(None, ClassFilter::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let worst = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let ticks = Arc::clone(&worst);
    let took = runtime.block_on(async move {
        let ticker = tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let gap = last.elapsed();
                if let Ok(mut worst) = ticks.lock() {
                    *worst = (*worst).max(gap);
                }
                last = Instant::now();
            }
        });
        // The ticker runs before the agent starts.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let decisions = meshlb_node_agent::running::Decisions::default();
        let hub = meshlb_node_agent::status::StatusHub::mirroring(&decisions);
        let mut state = decisions.running();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        let first_generation = async {
            state.wait_for(|s| s.generation == 1).await.unwrap();
            let took = started.elapsed();
            stop.send(()).unwrap();
            took
        };
        let shutdown = async {
            let _ = stopped.await;
        };
        let source = source.spawn(Duration::from_secs(60)).unwrap();
        let (ran, took) = tokio::join!(pipeline.run(source, shutdown, hub.clone(), decisions), first_generation);
        ran.unwrap();
        ticker.abort();
        took
    });
    let worst_gap = *worst.lock().unwrap();
    eprintln!("the first reload took {took:?}; the agent's thread was held up {worst_gap:?} at most");
    assert!(took > Duration::from_millis(100), "too quick to say anything: {took:?}");
    assert!(
        worst_gap * 4 < took,
        "the agent's thread was held up {worst_gap:?} by a reload of {took:?}"
    );
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
    // A Deployment beside a Service is skipped with a notice; a misspelt
    // kind of MetalLB's is an error.
    std::fs::write(
        dir.path().join("app.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n",
    )
    .unwrap();
    wait_for_line(&lines, &mut seen, &["app.yaml:1", "skipped apps/v1 Deployment \"web\""]);
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: metallb.io/v1beta1\nkind: IPAdressPool\nmetadata: {name: p}\n",
    )
    .unwrap();
    wait_for_line(&lines, &mut seen, &["bad.yaml:1", "unknown kind \"IPAdressPool\""]);
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
