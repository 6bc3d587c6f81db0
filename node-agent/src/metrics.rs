//! Prometheus metrics, read off the [status hub](crate::status) like the
//! introspection API: a sampler sets every series from the hub's current
//! snapshots each [`SAMPLE_EVERY`] (and at each change of the mesh), and
//! metrics-exporter-prometheus serves them on `--metrics-listen` (every
//! address, port 7472, MetalLB's speaker port, by default). A series the
//! sampler stops setting — an address this node no longer announces, a
//! peer gone — is dropped after [`STALE_AFTER`], so no stale
//! `metallb_speaker_announced` outlives a failover (MetalLB #1972).
//!
//! MetalLB's names and labels where the meaning is the same, so its
//! dashboards and alerts keep working:
//!
//! | series | labels | value |
//! |---|---|---|
//! | `metallb_allocator_addresses_total`, `..._in_use_total` (and `_ipv4_`, `_ipv6_`) | `pool` | addresses in the pool, and assigned |
//! | `metallb_speaker_announced` | `service`, `protocol` (`layer2`, `bgp`), `node`, `ip` | 1 per address this node announces |
//! | `metallb_layer2_requests_received`, `..._responses_sent`, `..._gratuitous_sent` | `ip` | ARP/NDP questions for an address owned here, answers, gratuitous announcements |
//! | `metallb_allocator_services_allocated_total` | `pool` | Services holding addresses of the pool |
//! | `metallb_bgp_session_up`, `metallb_bgp_announced_prefixes_total`, `..._pending_prefixes_total` | `peer` (`address:port`), `vrf` | 1 when established; prefixes sent; prefixes waiting for a session |
//! | `metallb_bgp_updates_total`, `..._updates_total_received`, `..._opens_sent`, `..._opens_received`, `..._notifications_sent`, `..._keepalives_sent`, `..._keepalives_received`, `..._route_refresh_sent`, `..._total_sent`, `..._total_received` | `peer`, `vrf` | messages by type, as MetalLB's FRR mode counts them (UPDATEs with End-of-RIB) |
//! | `metallb_bfd_session_up`, `metallb_bfd_control_packet_input`, `..._output`, `metallb_bfd_echo_packet_input`, `..._output`, `metallb_bfd_session_up_events`, `..._down_events` | `peer`, `vrf` | 1 while the BFD session is up; packets and transitions |
//! | `metallb_k8s_client_config_loaded_bool`, `..._config_stale_bool` | | a configuration runs; the latest update was refused |
//! | `metallb_k8s_client_updates_total`, `..._update_errors_total` | | configuration updates taken, and refused |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, `process_start_time_seconds`, ... | | the agent process, as every exporter gives it |
//!
//! and meshlb's own:
//!
//! | series | labels | value |
//! |---|---|---|
//! | `meshlb_members`, `meshlb_members_expected` | | live members this node sees; members the cluster should have |
//! | `meshlb_members_by_state` | `state` (`ready`, `settling`, `leaving`, `no-record`) | live members by where they stand |
//! | `meshlb_quorum_fence_engaged` | | 1 while this node may not announce |
//! | `meshlb_ownership_changes_total` | | announcer changes seen, any address |
//! | `meshlb_ownership_change_seconds` (histogram) | | how long an address that changed announcer went without one, as this node saw it |
//! | `meshlb_failures_detected_total` | | members this node declared down that had not left |
//! | `meshlb_failure_detection_seconds` (histogram) | | for each, how long the member had been silent to this node when declared down: an upper bound of the detection time |
//! | `meshlb_owner_watch_declarations_total` | | of those, owners this node declared down as their watcher (the fast path: heartbeats, helpers' probes) |
//! | `meshlb_mesh_suspicions_total` | | members this node suspected (a SWIM probe failed); a suspect that lives refutes, so suspicions without failures mean loss or a starved node |
//! | `meshlb_allocation_seconds` (histogram) | | from the allocator taking up a change to the addresses it gives taking effect: a standalone agent's allocation pass; the cluster allocator's pass until each Service's status write succeeds |
//! | `meshlb_gossip_datagrams_dropped_total` | `reason` | datagrams the envelope refused |
//! | `meshlb_gossip_bytes_sent_total` | | bytes sent, envelope included |
//! | `meshlb_config_reloads_total` | `result` (`accepted`, `rejected`) | configuration updates |
//! | `meshlb_layer2_arp_replies_total`, `..._na_replies_total`, `..._announcements_total` | `interface` | answers and gratuitous announcements sent |
//! | `meshlb_bgp_peer_running` | `peer` | 0 for a planned peer that cannot run (why: `meshlbctl bgp`) |
//!
//! Every series is set here from the hub, but for `meshlb_allocation_seconds`:
//! its observations are recorded where the allocation happens
//! ([`crate::pipeline`], [`crate::sources::kubernetes::allocator`]),
//! since a snapshot would lose those between two samples.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use metrics::{SharedString, counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
use metrics_util::MetricKindMask;

pub use crate::listen::Listen;
use crate::status::{Announcing, StatusHub, announcers};

/// The default listening address: every address, MetalLB's speaker port.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7472";
/// How often the series are set from the hub.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// How long a series no longer set stays.
pub const STALE_AFTER: Duration = Duration::from_secs(3);

/// What the sampler keeps between samples.
#[derive(Debug, Default)]
pub struct Sampler {
    /// Who announced each address at the last sample.
    announcers: BTreeMap<IpAddr, BTreeSet<String>>,
    /// Announcer changes seen so far.
    ownership_changes: u64,
    /// Addresses that lost their announcer, since when.
    unclaimed_since: BTreeMap<IpAddr, std::time::Instant>,
    /// The mesh's failure detections recorded so far.
    failures_recorded: u64,
    /// The process's series (`process_*`).
    process: metrics_process::Collector,
}

impl Sampler {
    /// Sets every series from `hub` (on the current recorder).
    pub fn sample(&mut self, hub: &StatusHub) {
        self.process.collect();
        let running = hub.running().get();
        let pools = hub.pools().get();
        for (pool, c) in pools.iter() {
            let labels = [("pool", pool.clone())];
            gauge!("metallb_allocator_addresses_total", &labels).set((c.v4.total + c.v6.total) as f64);
            gauge!("metallb_allocator_addresses_in_use_total", &labels).set((c.v4.in_use + c.v6.in_use) as f64);
            gauge!("metallb_allocator_ipv4_addresses_total", &labels).set(c.v4.total as f64);
            gauge!("metallb_allocator_ipv4_addresses_in_use_total", &labels).set(c.v4.in_use as f64);
            gauge!("metallb_allocator_ipv6_addresses_total", &labels).set(c.v6.total as f64);
            gauge!("metallb_allocator_ipv6_addresses_in_use_total", &labels).set(c.v6.in_use as f64);
        }
        let mut allocated: BTreeMap<&str, u64> = pools.keys().map(|p| (p.as_str(), 0)).collect();
        for assignment in running.outcomes.values().filter_map(|o| o.assignment()) {
            *allocated.entry(&*assignment.pool).or_default() += 1;
        }
        for (pool, services) in allocated {
            gauge!("metallb_allocator_services_allocated_total", "pool" => pool.to_owned()).set(services as f64);
        }

        // One series an announced address, as MetalLB has: the labels all
        // of them have in common are shared text, not copied into each.
        let mesh = hub.mesh().get();
        let node = SharedString::from(Arc::<str>::from(
            mesh.identity.as_ref().map_or("", |id| id.name.as_str()),
        ));
        let services: BTreeMap<IpAddr, SharedString> = running
            .outcomes
            .iter()
            .filter_map(|(key, outcome)| match &**outcome {
                meshlb_config::ServiceOutcome::Assigned(a) => Some((key, a)),
                _ => None,
            })
            .flat_map(|(key, a)| {
                let service = SharedString::from(Arc::<str>::from(key.to_string()));
                a.addresses.iter().map(move |address| (*address, service.clone()))
            })
            .collect();
        let service_of = |address: &IpAddr| services.get(address).cloned().unwrap_or_default();
        let layer2 = hub.layer2().get();
        let own_record = mesh
            .members
            .iter()
            .find(|m| Some(&m.id.name) == mesh.identity.as_ref().map(|id| &id.name))
            .and_then(|m| m.record.as_ref());
        let none = BTreeSet::new();
        let bgp_announcing = own_record.map_or(&none, |r| &r.bgp.announcing);
        for (protocol, addresses) in [("layer2", &layer2.announcing), ("bgp", bgp_announcing)] {
            for address in addresses {
                let labels = [
                    ("service", service_of(address)),
                    ("protocol", SharedString::const_str(protocol)),
                    ("node", node.clone()),
                    ("ip", SharedString::from(address.to_string())),
                ];
                gauge!("metallb_speaker_announced", &labels).set(1.0);
            }
        }

        let bgp = hub.bgp().get();
        for (peer, status) in &bgp.peers {
            let labels = [
                ("peer", status.address.map_or_else(|| peer.clone(), peer_label)),
                ("vrf", DEFAULT_VRF.to_owned()),
            ];
            let established = status.established();
            gauge!("metallb_bgp_session_up", &labels).set(if established { 1.0 } else { 0.0 });
            let prefixes = status.prefixes.len() as f64;
            gauge!("metallb_bgp_announced_prefixes_total", &labels).set(if established { prefixes } else { 0.0 });
            // Sent at once on an established session: pending only while
            // there is none.
            gauge!("metallb_bgp_pending_prefixes_total", &labels).set(if established { 0.0 } else { prefixes });
            let (sent, received) = (&status.sent, &status.received);
            for (name, value) in [
                ("metallb_bgp_updates_total", sent.updates),
                ("metallb_bgp_updates_total_received", received.updates),
                ("metallb_bgp_opens_sent", sent.opens),
                ("metallb_bgp_opens_received", received.opens),
                ("metallb_bgp_notifications_sent", sent.notifications),
                ("metallb_bgp_keepalives_sent", sent.keepalives),
                ("metallb_bgp_keepalives_received", received.keepalives),
                ("metallb_bgp_route_refresh_sent", sent.route_refreshes),
                ("metallb_bgp_total_sent", sent.total()),
                ("metallb_bgp_total_received", received.total()),
            ] {
                counter!(name, &labels).absolute(value);
            }
            gauge!("meshlb_bgp_peer_running", "peer" => peer.clone()).set(if status.not_running.is_some() {
                0.0
            } else {
                1.0
            });
        }

        for session in hub.bfd().get().iter() {
            let up = session.state == meshlb_wire::bfd::State::Up;
            let labels = [("peer", session.peer.to_string()), ("vrf", DEFAULT_VRF.to_owned())];
            gauge!("metallb_bfd_session_up", &labels).set(if up { 1.0 } else { 0.0 });
            let c = &session.counters;
            for (name, value) in [
                ("metallb_bfd_control_packet_input", c.control_in),
                ("metallb_bfd_control_packet_output", c.control_out),
                ("metallb_bfd_echo_packet_input", c.echo_in),
                ("metallb_bfd_echo_packet_output", c.echo_out),
                ("metallb_bfd_session_up_events", c.up_events),
                ("metallb_bfd_session_down_events", c.down_events),
            ] {
                counter!(name, &labels).absolute(value);
            }
        }

        let config = hub.config().get();
        gauge!("metallb_k8s_client_config_loaded_bool").set(if config.generation > 0 { 1.0 } else { 0.0 });
        let stale = match (&config.last_rejection, config.accepted_at) {
            (Some(rejection), Some(accepted)) => rejection.at > accepted,
            (Some(_), None) => true,
            (None, _) => false,
        };
        gauge!("metallb_k8s_client_config_stale_bool").set(if stale { 1.0 } else { 0.0 });
        counter!("metallb_k8s_client_updates_total").absolute(config.updates);
        counter!("metallb_k8s_client_update_errors_total").absolute(config.rejections);
        counter!("meshlb_config_reloads_total", "result" => "accepted").absolute(config.generation);
        counter!("meshlb_config_reloads_total", "result" => "rejected").absolute(config.rejections);

        gauge!("meshlb_members").set(mesh.members.len() as f64);
        let mut by_state: BTreeMap<&str, u64> = ["ready", "settling", "leaving", "no-record"]
            .into_iter()
            .map(|state| (state, 0))
            .collect();
        for member in &mesh.members {
            let state = match &member.record {
                None => "no-record",
                Some(r) if r.ownership.leaving => "leaving",
                Some(r) if r.ownership.settling => "settling",
                Some(_) => "ready",
            };
            *by_state.entry(state).or_default() += 1;
        }
        for (state, count) in by_state {
            gauge!("meshlb_members_by_state", "state" => state).set(count as f64);
        }
        // Not known yet: no series, rather than a made-up number.
        if let Some(expected) = mesh.fence.expected {
            gauge!("meshlb_members_expected").set(expected as f64);
        }
        gauge!("meshlb_quorum_fence_engaged").set(if mesh.fence.quorum { 0.0 } else { 1.0 });
        // Every reason, zero included, so a rate shows 0 rather than nothing.
        for reason in meshlb_gossip::secure::DropReason::ALL {
            let count = mesh.drops.iter().find(|(r, _)| *r == reason).map_or(0, |(_, n)| *n);
            counter!(
                "meshlb_gossip_datagrams_dropped_total",
                "reason" => meshlb_gossip::driver::drop_reason_name(reason)
            )
            .absolute(count);
        }
        counter!("meshlb_gossip_bytes_sent_total").absolute(mesh.wire_bytes_sent);
        self.record_detections(&mesh.stats);
        let announcers = announcers(&mesh, Announcing::Layer2);
        self.observe_handovers(&announcers, std::time::Instant::now());
        let addresses: BTreeSet<&IpAddr> = self.announcers.keys().chain(announcers.keys()).collect();
        let changed = addresses
            .into_iter()
            .filter(|a| {
                self.announcers.get(*a) != announcers.get(*a) && announcers.get(*a).is_some_and(|s| !s.is_empty())
            })
            .count();
        self.ownership_changes += changed as u64;
        self.announcers = announcers;
        counter!("meshlb_ownership_changes_total").absolute(self.ownership_changes);

        let mut by_address: BTreeMap<IpAddr, meshlb_actors::l2::responder::AddressCounters> = BTreeMap::new();
        for (interface, status) in hub.interfaces().get().iter() {
            for (address, c) in &status.addresses {
                let total = by_address.entry(*address).or_default();
                total.requests_received += c.requests_received;
                total.responses_sent += c.responses_sent;
                total.gratuitous_sent += c.gratuitous_sent;
            }
            let labels = [("interface", interface.clone())];
            counter!("meshlb_layer2_arp_replies_total", &labels).absolute(status.stats.arp_replies);
            counter!("meshlb_layer2_na_replies_total", &labels).absolute(status.stats.na_replies);
            counter!("meshlb_layer2_announcements_total", &labels).absolute(status.stats.announcements);
        }
        for (address, c) in by_address {
            let labels = [("ip", address.to_string())];
            counter!("metallb_layer2_requests_received", &labels).absolute(c.requests_received);
            counter!("metallb_layer2_responses_sent", &labels).absolute(c.responses_sent);
            counter!("metallb_layer2_gratuitous_sent", &labels).absolute(c.gratuitous_sent);
        }
    }
}

impl Sampler {
    /// Records in `meshlb_ownership_change_seconds` how long each address
    /// that changed announcer went without one, as this node saw it: from
    /// the sample its announcer was gone in to the one a new announcer
    /// claims it in (0 for a handover without a gap).
    fn observe_handovers(&mut self, now_claims: &BTreeMap<IpAddr, BTreeSet<String>>, now: std::time::Instant) {
        let claimed =
            |claims: &BTreeMap<IpAddr, BTreeSet<String>>, a: &IpAddr| claims.get(a).is_some_and(|s| !s.is_empty());
        for address in self.announcers.keys() {
            if claimed(&self.announcers, address) && !claimed(now_claims, address) {
                self.unclaimed_since.insert(*address, now);
            }
        }
        for (address, announcers) in now_claims.iter().filter(|(a, _)| claimed(now_claims, a)) {
            if let Some(since) = self.unclaimed_since.remove(address) {
                histogram!(OWNERSHIP_CHANGE_SECONDS).record(now.saturating_duration_since(since).as_secs_f64());
            } else if let Some(before) = self.announcers.get(address).filter(|b| !b.is_empty())
                && before.is_disjoint(announcers)
            {
                histogram!(OWNERSHIP_CHANGE_SECONDS).record(0.0);
            }
        }
        // An address nobody takes within an hour (its service gone) is
        // forgotten.
        self.unclaimed_since
            .retain(|_, since| now.saturating_duration_since(*since) < Duration::from_secs(3600));
    }

    /// Records in `meshlb_failure_detection_seconds` the failures the mesh
    /// detected since the last sample (all, unless more than it keeps came
    /// in between).
    fn record_detections(&mut self, stats: &meshlb_gossip::mesh::MeshStats) {
        let new = stats.failures_detected.saturating_sub(self.failures_recorded);
        let recent = &stats.recent_detections;
        let skip = recent.len().saturating_sub(usize::try_from(new).unwrap_or(usize::MAX));
        for detection in recent.iter().skip(skip) {
            if let Some(silent) = detection.silent {
                histogram!(FAILURE_DETECTION_SECONDS).record(silent.as_secs_f64());
            }
        }
        self.failures_recorded = stats.failures_detected;
        counter!("meshlb_failures_detected_total").absolute(stats.failures_detected);
        counter!("meshlb_owner_watch_declarations_total").absolute(stats.watch_declarations);
        counter!("meshlb_mesh_suspicions_total").absolute(stats.suspicions_raised);
    }
}

/// The allocation latency histogram (recorded where allocation happens).
pub const ALLOCATION_SECONDS: &str = "meshlb_allocation_seconds";
const OWNERSHIP_CHANGE_SECONDS: &str = "meshlb_ownership_change_seconds";
const FAILURE_DETECTION_SECONDS: &str = "meshlb_failure_detection_seconds";

/// The histograms and their buckets (seconds): failover times, and
/// allocation (milliseconds to seconds).
const HISTOGRAMS: &[(&str, &[f64])] = &[
    (OWNERSHIP_CHANGE_SECONDS, FAILOVER_BUCKETS),
    (FAILURE_DETECTION_SECONDS, FAILOVER_BUCKETS),
    (
        ALLOCATION_SECONDS,
        &[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ],
    ),
];
const FAILOVER_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

/// `builder` with the buckets of every histogram.
fn with_buckets(builder: PrometheusBuilder) -> Result<PrometheusBuilder, metrics_exporter_prometheus::BuildError> {
    HISTOGRAMS.iter().try_fold(builder, |builder, (name, buckets)| {
        builder.set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Full((*name).into()), buckets)
    })
}

/// MetalLB's `peer` label: the address (and port, when not 179).
/// The `peer` label of a BGP session's series: its address and port as
/// MetalLB writes them (`198.51.100.1:179`; an IPv6 address unbracketed,
/// as its FRR-mode exporter writes it), so label matchers written for
/// MetalLB match.
fn peer_label(address: SocketAddr) -> String {
    format!("{}:{}", address.ip(), address.port())
}

/// The `vrf` label: meshlb's sessions run in the default VRF, as FRR names it.
const DEFAULT_VRF: &str = "default";

/// Serves the metrics on `listen` and samples them from `hub` until the
/// returned task is aborted; `None` when off, or (logged) when the
/// address cannot be bound: the metrics are for dashboards, not worth
/// stopping the agent.
pub fn spawn(hub: StatusHub, listen: &Listen) -> Option<tokio::task::JoinHandle<()>> {
    let builder = match listen {
        Listen::Tcp(address) => PrometheusBuilder::new().with_http_listener(*address),
        Listen::Unix(path) => {
            // A socket left by a previous run would refuse the bind.
            let _ = std::fs::remove_file(path);
            PrometheusBuilder::new().with_http_uds_listener(path.clone())
        }
        Listen::Off => return None,
    };
    // The sampler sets counters and gauges each time; histograms are
    // observations and stay.
    let built = with_buckets(builder.idle_timeout(MetricKindMask::COUNTER | MetricKindMask::GAUGE, Some(STALE_AFTER)))
        .and_then(|builder| builder.build());
    let (recorder, exporter) = match built {
        Ok(built) => built,
        Err(e) => {
            tracing::error!(%listen, "metrics: cannot serve ({e}); running without them");
            return None;
        }
    };
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::error!("metrics: a recorder is installed already; running without them");
        return None;
    }
    tracing::info!(%listen, "metrics served");
    Some(tokio::spawn(async move {
        let serve = async {
            if let Err(e) = exporter.await {
                tracing::warn!("metrics: the listener stopped: {e:?}");
            }
        };
        let sample = async {
            let mut sampler = Sampler::default();
            sampler.process.describe();
            let mut mesh = hub.mesh().watch();
            loop {
                sampler.sample(&hub);
                // Ownership moves show at once; the rest at the interval.
                let _ = tokio::time::timeout(SAMPLE_EVERY, mesh.changed()).await;
            }
        };
        tokio::join!(serve, sample);
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::status::{BgpPeerStatus, BgpStatus, Layer2Service, Layer2Status};
    use meshlb_config::service::ServiceKey;
    use meshlb_gossip::record::ServiceId;

    /// What `record` records, rendered as Prometheus scrapes it (with the
    /// agent's buckets).
    pub(crate) fn recorded(record: impl FnOnce()) -> String {
        let recorder = with_buckets(PrometheusBuilder::new()).unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, record);
        handle.render()
    }

    #[test]
    fn series_follow_the_hub_with_metallb_names() {
        let hub = StatusHub::default();
        let address: IpAddr = "203.0.113.10".parse().unwrap();
        hub.layer2().publish(Layer2Status {
            services: BTreeMap::from([(
                ServiceId(1),
                Layer2Service {
                    key: ServiceKey::new("default", "web"),
                    addresses: vec![address],
                    serveable: true,
                    interfaces: BTreeSet::from(["eth0".to_owned()]),
                    blocked: None,
                    preferences: Vec::new(),
                },
            )]),
            announcing: BTreeSet::from([address]),
        });
        hub.bgp().publish(BgpStatus {
            peers: BTreeMap::from([(
                "router".to_owned(),
                BgpPeerStatus {
                    address: Some("198.51.100.1:179".parse().unwrap()),
                    prefixes: vec!["203.0.113.10/32".into()],
                    addresses: BTreeSet::from(["203.0.113.10".parse().unwrap()]),
                    not_running: None,
                    negotiated: Some(crate::status::established_session()),
                    sent: meshlb_actors::bgp::peer::MessageCounts {
                        updates: 3,
                        ..Default::default()
                    },
                    received: meshlb_actors::bgp::peer::MessageCounts::default(),
                },
            )]),
        });
        let text = recorded(|| Sampler::default().sample(&hub));
        assert!(
            text.lines().any(|l| l.starts_with("metallb_speaker_announced{")
                && l.contains("protocol=\"layer2\"")
                && l.contains("ip=\"203.0.113.10\"")
                && l.ends_with(" 1")),
            "{text}"
        );
        assert!(
            text.contains("metallb_bgp_session_up{peer=\"198.51.100.1:179\",vrf=\"default\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("metallb_bgp_announced_prefixes_total{peer=\"198.51.100.1:179\",vrf=\"default\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("metallb_bgp_updates_total{peer=\"198.51.100.1:179\",vrf=\"default\"} 3"),
            "{text}"
        );
        assert!(text.contains("metallb_k8s_client_config_loaded_bool 0"), "{text}");
        assert!(text.contains("meshlb_quorum_fence_engaged 1"), "{text}");
    }

    #[test]
    fn a_handover_records_how_long_the_address_went_unannounced() {
        let address: IpAddr = "203.0.113.10".parse().unwrap();
        let claims = |names: &[&str]| BTreeMap::from([(address, names.iter().map(|n| n.to_string()).collect())]);
        let start = std::time::Instant::now();
        let mut sampler = Sampler::default();
        let text = recorded(|| {
            sampler.observe_handovers(&claims(&["node1"]), start);
            sampler.announcers = claims(&["node1"]);
            sampler.observe_handovers(&claims(&[]), start + Duration::from_millis(100));
            sampler.announcers = claims(&[]);
            sampler.observe_handovers(&claims(&["node2"]), start + Duration::from_millis(900));
            sampler.announcers = claims(&["node2"]);
            // A handover without a gap: node2 to node3 at once.
            sampler.observe_handovers(&claims(&["node3"]), start + Duration::from_secs(2));
        });
        assert!(text.contains("meshlb_ownership_change_seconds_count 2"), "{text}");
        assert!(
            text.contains("meshlb_ownership_change_seconds_bucket{le=\"0.01\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("meshlb_ownership_change_seconds_bucket{le=\"1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("meshlb_ownership_change_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn each_failure_detection_is_recorded_once() {
        use meshlb_gossip::mesh::{FailureDetection, MeshStats};
        let detection = |member: &str, silent_ms: Option<u64>| FailureDetection {
            member: member.into(),
            at: std::time::Instant::now(),
            silent: silent_ms.map(std::time::Duration::from_millis),
        };
        let mut stats = MeshStats {
            failures_detected: 1,
            watch_declarations: 1,
            suspicions_raised: 5,
            recent_detections: [detection("node1", Some(300))].into(),
            ..MeshStats::default()
        };
        let mut sampler = Sampler::default();
        let text = recorded(|| {
            sampler.record_detections(&stats);
            // Sampled again with nothing new.
            sampler.record_detections(&stats);
            stats.failures_detected = 3;
            stats.recent_detections.push_back(detection("node2", Some(4_000)));
            // Never heard directly: counted, not timed.
            stats.recent_detections.push_back(detection("node3", None));
            sampler.record_detections(&stats);
        });
        assert!(text.contains("meshlb_failures_detected_total 3"), "{text}");
        assert!(text.contains("meshlb_owner_watch_declarations_total 1"), "{text}");
        assert!(text.contains("meshlb_mesh_suspicions_total 5"), "{text}");
        assert!(text.contains("meshlb_failure_detection_seconds_count 2"), "{text}");
        assert!(
            text.contains("meshlb_failure_detection_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("meshlb_failure_detection_seconds_bucket{le=\"5\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn peer_labels_are_the_address_as_metallb_gives_it() {
        assert_eq!(peer_label("198.51.100.1:179".parse().unwrap()), "198.51.100.1:179");
        assert_eq!(peer_label("[2001:db8::1]:179".parse().unwrap()), "2001:db8::1:179");
    }
}
