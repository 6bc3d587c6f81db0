//! The state directory's status files, written from the [status
//! hub](crate::status) until gRPC introspection exists (the lab reads
//! them; so can an operator with `cat`). Each is replaced atomically.
//!
//! - `mesh-events.log`: one line per membership event, `@ <unix seconds>
//!   <event> <node>` (`member-up`, `member-down`, `rejoined`, and `idle`,
//!   `stalled`, `left` with no node), appended;
//! - `mesh-members`: the live members as this node sees them, one per line
//!   (`<name> <address> boot=<ms> rejoin=<n>`, then from its record
//!   `settling=<true|false> claims=<addresses, comma-separated, or ->
//!   labels=<key=value, comma-separated, or ->`, or
//!   `record=none` before it arrived), then `quorum <true|false>` and what
//!   the fence counts (`live=<n> reference=<n> expected=<n>
//!   heard-majority=<true|false>`: see [`meshlb_gossip::ownership::Fence`]),
//!   on every change. A member that is `settling` does not take an address
//!   from a member that claims it;
//! - `mesh-drops`: gossip datagrams dropped over the agent's life, one
//!   `<reason> <count>` line per reason (`forged` for a wrong key or
//!   label, `replayed`, `stale`, `truncated`, …, and `refused-by-mesh` for
//!   authenticated datagrams the mesh could not use), refreshed at least
//!   every [`meshlb_gossip::driver::DROP_SUMMARY`] while they grow;
//! - `interfaces`: per interface answering here, `<name> link=<up|down>
//!   answering=<addresses or -> arp-replies=<n> na-replies=<n>
//!   announcements=<n> malformed=<n> not-ours=<n>`;
//! - `ownership`: per address of every Layer 2 service, `<namespace/name>
//!   <address> announcers=<members whose record claims it, or -> here=<true|false>`;
//! - `config`: `generation=<n> fingerprint=<hex or -> rejections=<n>
//!   held=<true|false>`, then `held <reason>`, one `warning <warning>`
//!   line per warning of the running configuration and one `rejected
//!   <error>` line per error of the last refused update, if any.
//!
//! - `services`: per service served, `<namespace/name> <outcome>` (its
//!   addresses and pool, or why it has none).
//!
//! The last four change with every answer or reload, so they are written
//! at most every [`SLOW_FILES_EVERY`].

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshlb_gossip::driver::{self, MeshStatus};
use tokio::sync::{broadcast, watch};

use crate::status::{ConfigStatus, Layer2Status, StatusHub, ownership};

/// How often `interfaces`, `ownership` and `config` are written at most.
pub const SLOW_FILES_EVERY: Duration = Duration::from_millis(500);

/// Writes the status files of `dir` from `hub` until the returned task is
/// aborted (or the hub's writers are gone).
pub fn spawn(hub: StatusHub, dir: PathBuf) -> tokio::task::JoinHandle<()> {
    // Followed from now on: nothing published after this call is missed.
    let mut mesh = hub.mesh().watch();
    mesh.mark_changed();
    let events = hub.mesh_events().subscribe();
    tokio::spawn(async move {
        tokio::join!(
            write_mesh(mesh, dir.clone()),
            write_events(events, dir.clone()),
            write_slow(hub, dir),
        );
    })
}

fn write_or_warn(path: &Path, text: &str) {
    if let Err(e) = write_atomically(path, text) {
        tracing::warn!("{}: {e}", path.display());
    }
}

async fn write_mesh(mut mesh: watch::Receiver<std::sync::Arc<MeshStatus>>, dir: PathBuf) {
    let members_path = dir.join("mesh-members");
    let drops_path = dir.join("mesh-drops");
    let mut drops_written = None;
    while mesh.changed().await.is_ok() {
        let status = std::sync::Arc::clone(&mesh.borrow_and_update());
        write_or_warn(&members_path, &members_text(&status));
        let drops = drops_text(&status);
        if drops_written.as_ref() != Some(&drops) {
            write_or_warn(&drops_path, &drops);
            drops_written = Some(drops);
        }
    }
}

async fn write_events(mut events: broadcast::Receiver<crate::status::TimedMeshEvent>, dir: PathBuf) {
    let path = dir.join("mesh-events.log");
    loop {
        let timed = match events.recv().await {
            Ok(timed) => timed,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    "{}: {missed} mesh events not written (too many at once)",
                    path.display()
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let line = format!(
            "@ {:.6} {} {}\n",
            unix_seconds(timed.at),
            timed.event.kind(),
            timed.event.member().unwrap_or_default()
        );
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!("{}: {e}", path.display());
        }
    }
}

async fn write_slow(hub: StatusHub, dir: PathBuf) {
    let mut interfaces = hub.interfaces().watch();
    let mut layer2 = hub.layer2().watch();
    let mut mesh = hub.mesh().watch();
    let mut config = hub.config().watch();
    let mut running = hub.running().watch();
    loop {
        write_or_warn(&dir.join("interfaces"), &interfaces_text(&hub.interfaces().get()));
        write_or_warn(
            &dir.join("ownership"),
            &ownership_text(&hub.layer2().get(), &hub.mesh().get()),
        );
        write_or_warn(&dir.join("config"), &config_text(&hub.config().get()));
        write_or_warn(&dir.join("services"), &services_text(&hub.running().get()));
        tokio::time::sleep(SLOW_FILES_EVERY).await;
        tokio::select! {
            Ok(()) = interfaces.changed() => {}
            Ok(()) = layer2.changed() => {}
            Ok(()) = mesh.changed() => {}
            Ok(()) = config.changed() => {}
            Ok(()) = running.changed() => {}
            else => return,
        }
        interfaces.mark_unchanged();
        layer2.mark_unchanged();
        mesh.mark_unchanged();
        config.mark_unchanged();
        running.mark_unchanged();
    }
}

fn services_text(state: &crate::running::RunningState) -> String {
    let mut text = String::new();
    for (key, outcome) in state.outcomes.iter() {
        text.push_str(&format!("{key} {outcome}\n"));
    }
    text
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let words: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if words.is_empty() {
        "-".to_owned()
    } else {
        words.join(",")
    }
}

fn interfaces_text(
    interfaces: &std::collections::BTreeMap<String, meshlb_actors::l2::interface::AnnouncerStatus>,
) -> String {
    let mut text = String::new();
    for (name, status) in interfaces {
        let s = &status.stats;
        text.push_str(&format!(
            "{name} link={} answering={} arp-replies={} na-replies={} announcements={} malformed={} not-ours={}\n",
            if status.link_up { "up" } else { "down" },
            list(&status.owned),
            s.arp_replies,
            s.na_replies,
            s.announcements,
            s.malformed,
            s.not_ours
        ));
    }
    text
}

fn ownership_text(layer2: &Layer2Status, mesh: &MeshStatus) -> String {
    let mut text = String::new();
    for owned in ownership(layer2, mesh) {
        text.push_str(&format!(
            "{} {} announcers={} here={}\n",
            owned.service,
            owned.address,
            list(&owned.announcers),
            owned.here
        ));
    }
    text
}

fn config_text(config: &ConfigStatus) -> String {
    let mut text = format!(
        "generation={} fingerprint={} rejections={} held={}\n",
        config.generation,
        config.fingerprint.map_or("-".to_owned(), |f| format!("{f:016x}")),
        config.rejections,
        config.held.is_some()
    );
    if let Some(reason) = &config.held {
        text.push_str(&format!("held {reason}\n"));
    }
    for warning in &config.warnings {
        text.push_str(&format!("warning {warning}\n"));
    }
    for error in config.last_rejection.iter().flat_map(|r| &r.errors) {
        text.push_str(&format!("rejected {error}\n"));
    }
    text
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn drops_text(status: &MeshStatus) -> String {
    let mut text = String::new();
    for (reason, count) in &status.drops {
        text.push_str(&format!("{} {count}\n", driver::drop_reason_name(*reason)));
    }
    text.push_str(&format!("refused-by-mesh {}\n", status.stats.refused_datagrams));
    text
}

fn members_text(status: &MeshStatus) -> String {
    let mut text = String::new();
    for m in &status.members {
        text.push_str(&format!(
            "{} {} boot={} rejoin={}",
            m.id.name, m.id.addr, m.id.boot, m.id.rejoin
        ));
        match &m.record {
            Some(record) => {
                let claims: Vec<String> = record.ownership.claims.iter().map(ToString::to_string).collect();
                let claims = if claims.is_empty() {
                    "-".to_owned()
                } else {
                    claims.join(",")
                };
                let labels: Vec<String> = record.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let labels = if labels.is_empty() {
                    "-".to_owned()
                } else {
                    labels.join(",")
                };
                text.push_str(&format!(
                    " settling={} claims={claims} labels={labels}\n",
                    record.ownership.settling
                ));
            }
            None => text.push_str(" record=none\n"),
        }
    }
    let fence = &status.fence;
    text.push_str(&format!(
        "quorum {} live={} reference={} expected={} heard-majority={}\n",
        fence.quorum,
        fence.live,
        fence.reference,
        meshlb_gossip::ownership::ExpectedSize(fence.expected),
        fence.heard_majority
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn members_are_listed_with_what_their_records_say() {
        use meshlb_gossip::identity::NodeId;
        use meshlb_gossip::mesh::MemberView;
        use meshlb_gossip::ownership::FenceStatus;
        use meshlb_gossip::record::NodeRecord;

        let id = |name: &str, last: u8| NodeId::new(name, SocketAddr::from(([192, 0, 2, last], 7947)), 100);
        let mut record = NodeRecord::new("b", 100);
        record.ownership.settling = false;
        record.ownership.claims = ["203.0.113.10".parse().unwrap(), "2001:db8:100::10".parse().unwrap()].into();
        record.labels.insert("rack".into(), "r1".into());
        let status = MeshStatus {
            members: vec![
                MemberView {
                    id: id("a", 1),
                    record: Some(NodeRecord::new("a", 100)),
                },
                MemberView {
                    id: id("b", 2),
                    record: Some(record),
                },
                MemberView {
                    id: id("c", 3),
                    record: None,
                },
            ],
            fence: FenceStatus {
                expected: Some(3),
                reference: 3,
                live: 3,
                heard_majority: true,
                quorum: true,
            },
            ..MeshStatus::default()
        };
        assert_eq!(
            members_text(&status),
            "a 192.0.2.1:7947 boot=100 rejoin=0 settling=true claims=- labels=-\n\
             b 192.0.2.2:7947 boot=100 rejoin=0 settling=false claims=203.0.113.10,2001:db8:100::10 labels=rack=r1\n\
             c 192.0.2.3:7947 boot=100 rejoin=0 record=none\n\
             quorum true live=3 reference=3 expected=3 heard-majority=true\n"
        );
    }

    #[test]
    fn drops_are_listed_by_reason() {
        use meshlb_gossip::secure::DropReason;
        let mut status = MeshStatus {
            drops: vec![(DropReason::Replayed, 4), (DropReason::Forged, 20_000)],
            ..MeshStatus::default()
        };
        status.stats.refused_datagrams = 2;
        assert_eq!(drops_text(&status), "replayed 4\nforged 20000\nrefused-by-mesh 2\n");
    }

    #[test]
    fn interfaces_and_config_say_what_they_count() {
        use meshlb_actors::l2::interface::AnnouncerStatus;
        let mut eth0 = AnnouncerStatus {
            link_up: true,
            owned: ["203.0.113.10".parse().unwrap()].into(),
            ..AnnouncerStatus::default()
        };
        eth0.stats.arp_replies = 12;
        eth0.stats.announcements = 3;
        let interfaces = std::collections::BTreeMap::from([
            ("eth0".to_owned(), eth0),
            ("eth1".to_owned(), AnnouncerStatus::default()),
        ]);
        assert_eq!(
            interfaces_text(&interfaces),
            "eth0 link=up answering=203.0.113.10 arp-replies=12 na-replies=0 announcements=3 malformed=0 not-ours=0\n\
             eth1 link=down answering=- arp-replies=0 na-replies=0 announcements=0 malformed=0 not-ours=0\n"
        );
        let config = ConfigStatus {
            generation: 4,
            fingerprint: Some(0xab),
            rejections: 2,
            last_rejection: Some(crate::status::Rejection {
                at: SystemTime::UNIX_EPOCH,
                errors: vec![meshlb_config::Error::Parse {
                    location: meshlb_config::SourceLocation {
                        file: "pool.yaml".into(),
                        line: 1,
                    },
                    object: None,
                    message: "IPAddressPool vips: spec.addresses[0] \"x\" is not a CIDR".into(),
                }],
            }),
            warnings: vec!["ads.yaml:1: L2Advertisement l2: spec.ipAddressPools[0] names no IPAddressPool".into()],
            ..ConfigStatus::default()
        };
        assert_eq!(
            config_text(&config),
            "generation=4 fingerprint=00000000000000ab rejections=2 held=false\n\
             warning ads.yaml:1: L2Advertisement l2: spec.ipAddressPools[0] names no IPAddressPool\n\
             rejected pool.yaml:1: IPAddressPool vips: spec.addresses[0] \"x\" is not a CIDR\n"
        );
    }

    #[test]
    fn services_say_their_outcome() {
        use meshlb_config::service::ServiceKey;
        use meshlb_config::{Assignment, ServiceOutcome};
        let state = crate::running::RunningState {
            outcomes: [
                (
                    ServiceKey::new("shop", "web"),
                    ServiceOutcome::Assigned(Assignment {
                        pool: "lan".into(),
                        addresses: vec!["192.0.2.10".parse().unwrap()],
                    }),
                ),
                (ServiceKey::new("shop", "new"), ServiceOutcome::Pending),
            ]
            .into_iter()
            .map(|(key, outcome)| (key, std::sync::Arc::new(outcome)))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into(),
            ..Default::default()
        };
        assert_eq!(
            services_text(&state),
            "shop/new pending: no address in its status yet\nshop/web 192.0.2.10 from pool lan\n"
        );
    }
}
