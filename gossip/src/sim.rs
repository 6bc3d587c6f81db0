//! A deterministic virtual network for many [`Mesh`]es on virtual time:
//! loss, delay with jitter, partitions, crashes, freezes, stalls and
//! restarts (graceful leaves go through the meshes themselves). Same seed, same run, so a failing property shrinks to a
//! replayable case. The secure envelope is left out (its own tests cover
//! it); everything above it is the code the agent runs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::identity::NodeId;
use crate::mesh::{Mesh, MeshEvent, MeshService, MeshStats, ServicePlan};
use crate::ownership::Fence;
use crate::profile::Profile;
use crate::record::ServiceId;

/// The gossip port of simulated nodes.
pub const SIM_PORT: u16 = 7946;

/// A simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// Its name.
    pub name: String,
    /// Its gossip address.
    pub addr: SocketAddr,
    /// Its mesh, while the process runs.
    pub mesh: Option<Mesh>,
    /// Frozen: takes no input and fires no timer (SIGSTOP). On thawing,
    /// its mesh notices the stall by the gap in its clock, as in the agent.
    pub frozen: bool,
    /// Stalled until this virtual time (ms): like frozen, but what reaches
    /// it meanwhile waits in its socket and is read when the stall ends (a
    /// process descheduled, a CPU quota spent: [`SimNet::stall`]).
    pub stalled_until: u64,
    /// Events with the virtual time they happened.
    pub events: Vec<(u64, MeshEvent)>,
    /// Addresses this node announced after each ownership evaluation.
    pub announcing: BTreeSet<IpAddr>,
}

/// What strikes a live cluster in a [`SimNet::soak`]: none of it may
/// move an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strain {
    /// 5 % loss on every path.
    Loss,
    /// 5 % loss, and every 10 s a 2 s burst of 30 %.
    Bursts,
    /// Every 1.5 s an announcer stalled for 200 ms (its datagrams wait in
    /// its socket), one after the other; no loss.
    Stalls,
    /// The bursts, and the stalls during them only: both at once, beyond
    /// what either alone asks.
    StallsInBursts,
}

impl Strain {
    /// Every strain.
    pub const ALL: [Strain; 4] = [Strain::Loss, Strain::Bursts, Strain::Stalls, Strain::StallsInBursts];

    /// In words, for tables.
    pub fn describe(self) -> &'static str {
        match self {
            Strain::Loss => "5 % loss",
            Strain::Bursts => "5 % loss, 2 s of 30 % every 10 s",
            Strain::Stalls => "an announcer stalled 200 ms every 1.5 s",
            Strain::StallsInBursts => "stalls of 200 ms during bursts of 30 % loss",
        }
    }
}

/// What a [`SimNet::soak`] counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoakReport {
    /// Virtual time run (the soak stops at the first change).
    pub ran_ms: u64,
    /// Addresses that changed hands or lost their sole announcer, with
    /// when (ms into the soak).
    pub changes: Vec<(u64, IpAddr)>,
    /// Members declared down.
    pub declared_down: u64,
    /// Of those, owners declared down by their watcher.
    pub watch_declarations: u64,
    /// Stalls inflicted.
    pub stalls: usize,
}

/// The virtual network.
#[derive(Debug)]
pub struct SimNet {
    /// Virtual time, ms.
    pub now_ms: u64,
    /// The meshes' clock at virtual time 0.
    origin: Instant,
    /// Nodes, by index.
    pub nodes: Vec<SimNode>,
    /// Fraction of datagrams lost, 0 to 1.
    pub loss: f64,
    /// One-way delay: base and uniform jitter, ms.
    pub delay_ms: (u64, u64),
    /// Ownership is evaluated at least this often (ms): see
    /// [`SimNet::set_evaluation_interval`].
    evaluate_every_ms: u64,
    profile: Profile,
    rng: Xoshiro256PlusPlus,
    /// Datagrams in flight by (arrival time, send order): sender, receiver
    /// index, bytes.
    in_flight: BTreeMap<(u64, u64), (SocketAddr, usize, Vec<u8>)>,
    seq: u64,
    group: Vec<usize>,
    by_addr: BTreeMap<SocketAddr, usize>,
    services: Vec<MeshService>,
    /// The staged services' ids the nodes serve (`None`: all of them).
    serving: Option<BTreeSet<ServiceId>>,
    /// Pairs of nodes (lower index first) that cannot reach each other
    /// whatever their groups.
    cut: BTreeSet<(usize, usize)>,
    /// The cluster size every node is told (its fence's expected members).
    pub expected_members: usize,
    /// Wall time of each ownership evaluation, while timed
    /// ([`SimNet::time_evaluations`]).
    evaluation_times: Option<Vec<Duration>>,
}

impl SimNet {
    /// Virtual time `ms` on the meshes' clock.
    fn at(&self, ms: u64) -> Instant {
        self.origin + Duration::from_millis(ms)
    }

    /// A time on the meshes' clock as virtual time, ms.
    pub fn ms_of(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// `n` nodes named `node-000`…, not yet started.
    pub fn new(n: usize, profile: Profile, seed: u64) -> SimNet {
        let nodes: Vec<SimNode> = (0..n)
            .map(|i| SimNode {
                name: format!("node-{i:03}"),
                addr: SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(198, 51, (100 + i / 250) as u8, (1 + i % 250) as u8)),
                    SIM_PORT,
                ),
                mesh: None,
                frozen: false,
                stalled_until: 0,
                events: Vec::new(),
                announcing: BTreeSet::new(),
            })
            .collect();
        let by_addr = nodes.iter().enumerate().map(|(i, n)| (n.addr, i)).collect();
        SimNet {
            now_ms: 1,
            origin: Instant::now(),
            group: vec![0; n],
            nodes,
            loss: 0.0,
            delay_ms: (1, 1),
            evaluate_every_ms: crate::mesh::EVALUATE_EVERY_MS,
            profile,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            in_flight: BTreeMap::new(),
            seq: 0,
            by_addr,
            services: Vec::new(),
            serving: None,
            cut: BTreeSet::new(),
            expected_members: n,
            evaluation_times: None,
        }
    }

    fn plan(&self) -> ServicePlan {
        let serving = match &self.serving {
            Some(ids) => self
                .services
                .iter()
                .map(|s| s.id)
                .filter(|id| ids.contains(id))
                .collect(),
            None => self.services.iter().map(|s| s.id).collect(),
        };
        ServicePlan {
            services: self.services.clone(),
            layer2: crate::record::Layer2Section {
                serving,
                ..Default::default()
            },
            ..ServicePlan::default()
        }
    }

    /// Services every node can serve; ownership is evaluated for them.
    /// Every running node is told at once.
    pub fn set_services(&mut self, services: Vec<MeshService>) {
        self.stage_services(services);
        for i in 0..self.nodes.len() {
            self.configure(i);
        }
    }

    /// Sets the services nodes are given on start and by
    /// [`SimNet::configure`], telling none of the running ones yet; every
    /// node serves them all.
    pub fn stage_services(&mut self, services: Vec<MeshService>) {
        self.services = services;
        self.serving = None;
    }

    /// Sets the services nodes are given on start and by
    /// [`SimNet::configure`], and which of them (by id) every node serves
    /// (the others have no ready endpoint, say), telling none of the
    /// running ones yet.
    pub fn stage_serving(&mut self, services: Vec<MeshService>, serving: BTreeSet<ServiceId>) {
        self.services = services;
        self.serving = Some(serving);
    }

    /// Gives node `i` the staged services now, as its agent does on reading
    /// its configuration (agents read a changed configuration at slightly
    /// different times: configure the nodes one by one to model that).
    pub fn configure(&mut self, i: usize) {
        let plan = self.plan();
        if let Some(mesh) = self.nodes[i].mesh.as_mut() {
            let _ = mesh.set_services(plan);
        }
        self.flush(i);
    }

    /// Starts node `i` (again, after a crash: with a later boot time),
    /// joining through the first three nodes.
    pub fn start(&mut self, i: usize) {
        let seeds: Vec<SocketAddr> = self.nodes.iter().take(3).map(|n| n.addr).collect();
        let seed = self.rng.random::<u64>();
        let plan = self.plan();
        let now = self.at(self.now_ms);
        let node = &mut self.nodes[i];
        let id = NodeId::new(node.name.clone(), node.addr, self.now_ms);
        let mut mesh = Mesh::new(id, self.profile.clone(), seed, now);
        mesh.set_fence(Fence::default().expecting(self.expected_members));
        mesh.set_evaluation_interval(self.evaluate_every_ms);
        let _ = mesh.set_services(plan);
        mesh.join(&seeds, now);
        node.mesh = Some(mesh);
        node.frozen = false;
        node.announcing.clear();
        self.flush(i);
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// SIGKILL: the process is gone, nothing more is sent.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].mesh = None;
        self.nodes[i].announcing.clear();
    }

    /// SIGSTOP / SIGCONT. Datagrams reaching a frozen node are lost (a
    /// socket buffer would hold a few; the effect on the others is the same).
    pub fn set_frozen(&mut self, i: usize, frozen: bool) {
        self.nodes[i].frozen = frozen;
    }

    /// Stalls node `i` for `ms` from now: it fires no timer and reads
    /// nothing until then, and then reads what came meanwhile.
    pub fn stall(&mut self, i: usize, ms: u64) {
        self.nodes[i].stalled_until = self.now_ms + ms;
    }

    /// Whether node `i` is stalled now.
    fn is_stalled(&self, i: usize) -> bool {
        self.nodes[i].stalled_until > self.now_ms
    }

    /// Begins node `i`'s graceful leave, as its agent does on SIGTERM; its
    /// mesh ends it after the handover time ([`MeshEvent::Left`]).
    pub fn leave(&mut self, i: usize) {
        let now = self.at(self.now_ms);
        if let Some(mesh) = self.nodes[i].mesh.as_mut()
            && let Err(e) = mesh.begin_leave(now)
        {
            tracing::warn!("begin leave: {e}");
        }
        self.flush(i);
    }

    /// Sets how often every node evaluates ownership at least (the
    /// agent's is [`crate::mesh::EVALUATE_EVERY_MS`]; a large simulation
    /// runs faster evaluating less often).
    pub fn set_evaluation_interval(&mut self, every_ms: u64) {
        self.evaluate_every_ms = every_ms;
        for node in &mut self.nodes {
            if let Some(mesh) = node.mesh.as_mut() {
                mesh.set_evaluation_interval(every_ms);
            }
        }
    }

    /// Splits the network: nodes in different groups cannot reach each
    /// other. Nodes in no group form one more group.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        self.group = vec![usize::MAX; self.nodes.len()];
        for (g, members) in groups.iter().enumerate() {
            for &m in *members {
                self.group[m] = g;
            }
        }
    }

    /// Ends every partition (cut links stay cut).
    pub fn heal(&mut self) {
        self.group = vec![0; self.nodes.len()];
    }

    /// Cuts the path between `a` and `b` alone (both ways), as a staged
    /// heal leaves some paths down longer than others.
    pub fn cut_link(&mut self, a: usize, b: usize) {
        self.cut.insert((a.min(b), a.max(b)));
    }

    /// Restores a path cut by [`SimNet::cut_link`].
    pub fn restore_link(&mut self, a: usize, b: usize) {
        self.cut.remove(&(a.min(b), a.max(b)));
    }

    /// Whether `a` and `b` can reach each other.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b] && !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn flush(&mut self, i: usize) {
        let now = self.now_ms;
        let node = &mut self.nodes[i];
        let Some(mesh) = node.mesh.as_mut() else { return };
        let mut changed = false;
        while let Some(e) = mesh.poll_event() {
            changed = true;
            node.events.push((now, e));
        }
        // As the agent's driver does: ownership is evaluated when the mesh
        // says it is due (periodically, or something it depends on
        // changed) and after any event.
        if (mesh.take_evaluation_due() || changed) && !node.frozen {
            let began = std::time::Instant::now();
            node.announcing = mesh.evaluate_ownership();
            if let Some(times) = self.evaluation_times.as_mut() {
                times.push(began.elapsed());
            }
        }
        let mut out = Vec::new();
        while let Some(t) = mesh.poll_transmit() {
            out.push(t);
        }
        for (to, data) in out {
            let Some(&j) = self.by_addr.get(&to) else { continue };
            if !self.connected(i, j) || self.rng.random::<f64>() < self.loss {
                continue;
            }
            let jitter = if self.delay_ms.1 > 0 {
                self.rng.random_range(0..=self.delay_ms.1)
            } else {
                0
            };
            self.seq += 1;
            let from = self.nodes[i].addr;
            self.in_flight
                .insert((self.now_ms + self.delay_ms.0 + jitter, self.seq), (from, j, data));
        }
    }

    /// Runs the network for `ms` of virtual time.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        loop {
            let next_packet = self.in_flight.first_key_value().map_or(u64::MAX, |((t, _), _)| *t);
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| !n.frozen)
                .filter_map(|n| {
                    n.mesh
                        .as_ref()
                        .map(|m| self.ms_of(m.poll_timeout()).max(n.stalled_until))
                })
                .min()
                .unwrap_or(u64::MAX);
            let next = next_packet.min(next_timer);
            if next > end {
                self.now_ms = end;
                return;
            }
            self.now_ms = self.now_ms.max(next);
            if next_packet <= next_timer {
                let Some((_, (from, j, data))) = self.in_flight.pop_first() else {
                    continue;
                };
                if self.nodes[j].frozen {
                    continue;
                }
                if self.is_stalled(j) {
                    // Waits in the socket until the stall ends.
                    self.seq += 1;
                    let until = self.nodes[j].stalled_until;
                    self.in_flight.insert((until, self.seq), (from, j, data));
                    continue;
                }
                let now = self.at(self.now_ms);
                if let Some(mesh) = self.nodes[j].mesh.as_mut() {
                    let _ = mesh.handle_datagram(from, &data, now);
                    self.flush(j);
                }
            } else {
                let now = self.at(self.now_ms);
                let due: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| {
                        !self.nodes[i].frozen
                            && !self.is_stalled(i)
                            && self.nodes[i].mesh.as_ref().is_some_and(|m| m.poll_timeout() <= now)
                    })
                    .collect();
                for i in due {
                    if let Some(mesh) = self.nodes[i].mesh.as_mut() {
                        mesh.handle_timeout(now);
                    }
                    self.flush(i);
                }
            }
        }
    }

    /// Times every ownership evaluation from now on (the wall time of
    /// [`Mesh::evaluate_ownership`]), for [`SimNet::take_evaluation_times`].
    pub fn time_evaluations(&mut self) {
        self.evaluation_times.get_or_insert_with(Vec::new);
    }

    /// The evaluation times recorded since timing began or the last call.
    pub fn take_evaluation_times(&mut self) -> Vec<Duration> {
        self.evaluation_times.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Bytes each node has sent since it started, by index, with the
    /// secure envelope every datagram carries in the agent
    /// ([`crate::secure::OVERHEAD`]); 0 for a node not running.
    pub fn bytes_sent(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| {
                n.mesh.as_ref().map_or(0, |m| {
                    m.stats().sent_bytes + m.stats().sent_datagrams * crate::secure::OVERHEAD as u64
                })
            })
            .collect()
    }

    /// Runs `ms` and returns the bytes a node sent per second meanwhile
    /// (counted as [`SimNet::bytes_sent`] counts them): the mean over the
    /// nodes, and the most any node sent.
    pub fn send_rate_over(&mut self, ms: u64) -> (f64, f64) {
        let before = self.bytes_sent();
        self.run_for(ms);
        let secs = ms.max(1) as f64 / 1_000.0;
        let rates: Vec<f64> = before
            .iter()
            .zip(self.bytes_sent())
            .map(|(b, a)| a.saturating_sub(*b) as f64 / secs)
            .collect();
        let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
        (mean, rates.iter().copied().fold(0.0, f64::max))
    }

    /// Indices of running, unfrozen nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].mesh.is_some() && !self.nodes[i].frozen)
            .collect()
    }

    /// Whether every running node sees exactly the running nodes it can
    /// reach, with every one's current record.
    pub fn converged(&self) -> bool {
        let running = self.running();
        running.iter().all(|&i| {
            let expected: BTreeSet<String> = running
                .iter()
                .filter(|&&j| self.connected(i, j))
                .map(|&j| self.nodes[j].name.clone())
                .collect();
            let Some(mesh) = self.nodes[i].mesh.as_ref() else {
                return false;
            };
            mesh.live_names() == expected
                && mesh.member_stamps().iter().all(|(id, stamp)| {
                    let own = self.by_addr.get(&id.addr).and_then(|&j| self.nodes[j].mesh.as_ref());
                    own.is_some_and(|o| *stamp == Some(o.own_record().stamp()))
                })
        })
    }

    /// Runs until [`SimNet::converged`] or `limit_ms` passes; returns the
    /// time it took, or `None`.
    pub fn run_until_converged(&mut self, limit_ms: u64) -> Option<u64> {
        let start = self.now_ms;
        while self.now_ms - start < limit_ms {
            self.run_for(100);
            if self.converged() {
                return Some(self.now_ms - start);
            }
        }
        None
    }

    /// For every service address, the running nodes announcing it.
    pub fn announcers(&self) -> BTreeMap<IpAddr, Vec<usize>> {
        let mut out: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
        for service in &self.services {
            for a in &service.addresses {
                out.entry(*a).or_default();
            }
        }
        for i in self.running() {
            for a in &self.nodes[i].announcing {
                out.entry(*a).or_default().push(i);
            }
        }
        out
    }

    /// For every service address, its announcer when exactly one running
    /// node announces it.
    pub fn sole_announcers(&self) -> BTreeMap<IpAddr, Option<usize>> {
        self.announcers()
            .into_iter()
            .map(|(address, announcers)| (address, (announcers.len() == 1).then(|| announcers[0])))
            .collect()
    }

    /// A counter of [`MeshStats`] summed over the running nodes' lives.
    fn total(&self, counter: impl Fn(&MeshStats) -> u64) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.mesh.as_ref())
            .map(|m| counter(m.stats()))
            .sum()
    }

    /// Members declared down, summed over the running nodes' lives.
    pub fn declared_down(&self) -> u64 {
        self.total(|s| s.members_declared_down)
    }

    /// Owners declared down by their watcher, summed over the running
    /// nodes' lives.
    pub fn watch_declarations(&self) -> u64 {
        self.total(|s| s.watch_declarations)
    }

    /// Crashes node `i` and runs in steps of 1 ms until every address it
    /// announced has one other announcer, for at most `limit_ms`: how long
    /// that took (`None`: not within the limit), and for how long (ms) any
    /// address had two announcers meanwhile.
    pub fn crash_and_time_failover(&mut self, i: usize, limit_ms: u64) -> (Option<u64>, u64) {
        let lost: Vec<IpAddr> = self.nodes[i].announcing.iter().copied().collect();
        let crashed_at = self.now_ms;
        self.crash(i);
        let mut overlap = 0;
        while self.now_ms < crashed_at + limit_ms {
            self.run_for(1);
            let announcers = self.announcers();
            if announcers.values().any(|a| a.len() > 1) {
                overlap += 1;
            }
            if lost.iter().all(|a| announcers.get(a).is_some_and(|n| n.len() == 1)) {
                return (Some(self.now_ms - crashed_at), overlap);
            }
        }
        (None, overlap)
    }

    /// Runs `ms` under `strain` (on a converged cluster whose addresses
    /// each have one announcer) and counts what a live cluster must never
    /// do: an address changing hands or losing its sole announcer (checked
    /// every 10 ms), a member declared down. Stalls strike the announcer of
    /// one address after another.
    pub fn soak(&mut self, strain: Strain, ms: u64) -> SoakReport {
        let start = self.now_ms;
        let first = self.sole_announcers();
        let addresses: Vec<IpAddr> = first.keys().copied().collect();
        let downs = self.declared_down();
        let declarations = self.watch_declarations();
        let mut report = SoakReport::default();
        let mut next_stall = start + 1_000;
        while self.now_ms < start + ms {
            let t = self.now_ms - start;
            let in_burst = t % 10_000 >= 8_000;
            self.loss = match strain {
                Strain::Loss => 0.05,
                Strain::Bursts | Strain::StallsInBursts if in_burst => 0.30,
                Strain::Bursts | Strain::StallsInBursts => 0.05,
                Strain::Stalls => 0.0,
            };
            let stalls = match strain {
                Strain::Stalls => true,
                Strain::StallsInBursts => in_burst,
                Strain::Loss | Strain::Bursts => false,
            };
            if stalls && self.now_ms >= next_stall && !addresses.is_empty() {
                let address = addresses[report.stalls % addresses.len()];
                if let Some(owner) = first[&address] {
                    self.stall(owner, 200);
                }
                report.stalls += 1;
                next_stall = self.now_ms + 1_500;
            }
            self.run_for(10);
            for (address, owner) in self.sole_announcers() {
                if owner != first[&address] {
                    report.changes.push((self.now_ms - start, address));
                }
            }
            if !report.changes.is_empty() {
                // From here on the count would be of one change's echoes.
                break;
            }
        }
        report.ran_ms = self.now_ms - start;
        report.declared_down = self.declared_down() - downs;
        report.watch_declarations = self.watch_declarations() - declarations;
        self.loss = 0.0;
        report
    }

    /// First time node `observer` saw `member` declared down after `since`.
    pub fn down_seen_at(&self, observer: usize, member: &str, since: u64) -> Option<u64> {
        self.nodes[observer]
            .events
            .iter()
            .find(|(t, e)| *t >= since && matches!(e, MeshEvent::MemberDown(id) if id.name == member))
            .map(|(t, _)| *t)
    }
}
