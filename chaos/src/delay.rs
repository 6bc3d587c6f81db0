//! Delay and reordering on a host's link, without `sch_netem` (this kernel
//! has none): the switch namespace's bridge hands the IP packets a host
//! sends to ip(6)tables (br_netfilter), a `physdev` rule queues them to
//! NFQUEUE, and a delayer process (`meshlb-lab delayer`) holds each packet
//! for the delay plus or minus the jitter before accepting it. A share of
//! packets is accepted at once instead, which reorders them the way netem's
//! `reorder` does. ARP is not IP and is never delayed.

use crate::error::LabError;
use crate::lab::{Lab, LabProcess};
use crate::netns::run_in;
use crate::random::XorShift;
use crate::wait::wait_for;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;
use std::time::{Duration, Instant};

/// How a host's outgoing IP packets are impaired.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Added to every delayed packet.
    pub delay: Duration,
    /// Uniformly random extra delay in `[-jitter, +jitter]`.
    pub jitter: Duration,
    /// Percentage of packets let through at once (reordered ahead of delayed ones).
    pub reorder_percent: f64,
}

/// Runs the delayer on NFQUEUE `queue` until killed.
pub fn run_delayer(queue: u16, impairment: &Impairment) -> std::io::Result<()> {
    let mut q = nfq::Queue::open()?;
    q.bind(queue)?;
    // Verdicts need only the packet ID: copy no payload.
    q.set_copy_range(queue, 0)?;
    q.set_fail_open(queue, true)?;
    q.set_nonblocking(true);
    println!("delayer bound to queue {queue}: {impairment:?}");
    let mut rng = XorShift::seeded();
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut held: BTreeMap<u64, nfq::Message> = BTreeMap::new();
    let mut next_id = 0u64;
    loop {
        loop {
            match q.recv() {
                Ok(mut msg) => {
                    msg.set_verdict(nfq::Verdict::Accept);
                    let wait = if rng.unit() * 100.0 < impairment.reorder_percent {
                        Duration::ZERO
                    } else {
                        let jitter = impairment.jitter.as_secs_f64() * (2.0 * rng.unit() - 1.0);
                        Duration::from_secs_f64((impairment.delay.as_secs_f64() + jitter).max(0.0))
                    };
                    due.push(Reverse((Instant::now() + wait, next_id)));
                    held.insert(next_id, msg);
                    next_id += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        while let Some(Reverse((at, id))) = due.peek().copied() {
            if at > now {
                break;
            }
            due.pop();
            if let Some(msg) = held.remove(&id) {
                q.verdict(msg)?;
            }
        }
        let idle = due.peek().map_or(Duration::from_millis(1), |Reverse((at, _))| {
            at.saturating_duration_since(now)
        });
        std::thread::sleep(idle.min(Duration::from_millis(1)));
    }
}

/// Delay applied to one host; removed by [`Delay::stop`] or on drop.
#[derive(Debug)]
pub struct Delay {
    switch: String,
    rules: Vec<(&'static str, Vec<String>)>,
    _delayer: LabProcess,
}

impl Delay {
    /// Delays the IP packets `host` sends, as `impairment` says.
    pub fn start(lab: &Lab, host: &str, impairment: &Impairment, lab_binary: &Path) -> Result<Delay, LabError> {
        let index = lab
            .hosts()
            .iter()
            .position(|h| h.name == host)
            .ok_or_else(|| LabError::Invalid(format!("no host {host}")))?;
        let queue = (index + 1).to_string();
        let port = lab.host(host)?.port.clone();
        let binary = lab_binary.to_string_lossy().into_owned();
        let args = [
            "delayer".to_owned(),
            "--queue".into(),
            queue.clone(),
            "--delay-ms".into(),
            impairment.delay.as_millis().to_string(),
            "--jitter-ms".into(),
            impairment.jitter.as_millis().to_string(),
            "--reorder-percent".into(),
            impairment.reorder_percent.to_string(),
        ];
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let delayer = lab.spawn("switch", &format!("delayer-{host}"), &binary, &refs)?;
        wait_for(Duration::from_secs(5), "the delayer to bind its queue", || {
            delayer.log().contains("bound to queue") || !delayer.is_running()
        })?;
        if !delayer.is_running() {
            return Err(LabError::Invalid(format!("the delayer exited: {}", delayer.log())));
        }
        let switch = lab.switch_netns().to_owned();
        run_in(
            &switch,
            "sysctl",
            &[
                "-q",
                "-w",
                "net.bridge.bridge-nf-call-iptables=1",
                "net.bridge.bridge-nf-call-ip6tables=1",
            ],
        )?;
        let rule: Vec<String> = [
            "FORWARD",
            "-m",
            "physdev",
            "--physdev-in",
            &port,
            "-j",
            "NFQUEUE",
            "--queue-num",
            &queue,
            "--queue-bypass",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut delay = Delay {
            switch,
            rules: Vec::new(),
            _delayer: delayer,
        };
        for tool in ["iptables", "ip6tables"] {
            let mut add = vec!["-A".to_owned()];
            add.extend(rule.iter().cloned());
            run_in(&delay.switch, tool, &add.iter().map(String::as_str).collect::<Vec<_>>())?;
            delay.rules.push((tool, rule.clone()));
        }
        Ok(delay)
    }

    /// Removes the delay.
    pub fn stop(mut self) -> Result<(), LabError> {
        self.remove_rules()
    }

    fn remove_rules(&mut self) -> Result<(), LabError> {
        for (tool, rule) in std::mem::take(&mut self.rules) {
            let mut del = vec!["-D".to_owned()];
            del.extend(rule);
            run_in(&self.switch, tool, &del.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        Ok(())
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        let _ = self.remove_rules();
    }
}
