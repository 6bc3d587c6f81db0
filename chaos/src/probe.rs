//! The data-path observer: a responder on every node and a prober in a
//! client namespace.
//!
//! The prober sends a small UDP datagram to a service IP every interval
//! (10 ms by default), each carrying a sequence number; the responder on
//! whichever node receives it answers with the sequence number and its node
//! name. From the log the prober reports which node answered when, the
//! outage window around a fault (last answered probe before it to the first
//! answered probe after it) and duplicate answers (one probe answered by two
//! nodes).

use crate::error::LabError;
use crate::lab::Lab;
use crate::netns::in_netns;
use crate::wait::wait_until;
use meshlb_wire::ethernet::MacAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// UDP port the responders listen on.
pub const RESPONDER_PORT: u16 = 7;

/// Answers every datagram on `port` (IPv4 and IPv6) with its first 8 bytes
/// followed by `name`. Runs until the process is killed.
pub fn run_responder(name: &str, port: u16) -> std::io::Result<()> {
    let socket = UdpSocket::bind(("::", port))?;
    let mut buf = [0u8; 64];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        if n < 8 {
            continue;
        }
        let mut reply = buf[..8].to_vec();
        reply.extend_from_slice(name.as_bytes());
        // A send can fail while the lab is being faulted; keep answering.
        let _ = socket.send_to(&reply, from);
    }
}

/// One probe and its answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Sequence number.
    pub seq: u64,
    /// When it was sent.
    pub sent: Instant,
    /// Who answered it, and when.
    pub answers: Vec<(Instant, String)>,
}

impl Probe {
    /// The first node that answered, if any.
    pub fn answered_by(&self) -> Option<&str> {
        self.answers.first().map(|(_, n)| n.as_str())
    }
}

/// What a prober saw.
#[derive(Debug, Clone)]
pub struct ProbeLog {
    /// Every probe in order.
    pub probes: Vec<Probe>,
}

/// The outage a fault caused, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// From the last answered probe sent before the fault to the first
    /// answered probe sent after it.
    pub window: Duration,
    /// Probes sent in between that got no answer.
    pub lost: usize,
    /// Who answered before the fault.
    pub before: Option<String>,
    /// Who answered the first probe after the outage.
    pub after: String,
    /// From the fault until a node other than `before` answered, if one did.
    pub switchover: Option<Duration>,
}

impl ProbeLog {
    /// Probes that got no answer.
    pub fn lost(&self) -> usize {
        self.probes.iter().filter(|p| p.answers.is_empty()).count()
    }

    /// Probes answered more than once (by one or several nodes).
    pub fn duplicates(&self) -> Vec<&Probe> {
        self.probes.iter().filter(|p| p.answers.len() > 1).collect()
    }

    /// Consecutive runs of answers by one node: (node, probes answered).
    pub fn answer_runs(&self) -> Vec<(String, usize)> {
        let mut runs: Vec<(String, usize)> = Vec::new();
        for node in self.probes.iter().filter_map(Probe::answered_by) {
            match runs.last_mut() {
                Some((last, n)) if last == node => *n += 1,
                _ => runs.push((node.to_owned(), 1)),
            }
        }
        runs
    }

    /// The outage around a fault injected at `fault`, if any probe was
    /// answered after it.
    pub fn outage_after(&self, fault: Instant) -> Option<Outage> {
        let before = self
            .probes
            .iter()
            .rev()
            .find(|p| p.sent < fault && !p.answers.is_empty());
        let after = self.probes.iter().find(|p| p.sent >= fault && !p.answers.is_empty())?;
        let last_ok = before.map_or(fault, |p| p.sent);
        let previous = before.and_then(|p| p.answered_by()).map(str::to_owned);
        let lost = self
            .probes
            .iter()
            .filter(|p| p.sent > last_ok && p.sent < after.sent && p.answers.is_empty())
            .count();
        let switchover = self
            .probes
            .iter()
            .filter(|p| p.sent >= fault)
            .find(|p| p.answered_by().is_some_and(|n| Some(n) != previous.as_deref()))
            .map(|p| p.sent.saturating_duration_since(fault));
        Some(Outage {
            window: after.sent.saturating_duration_since(last_ok),
            lost,
            before: previous,
            after: after.answered_by().unwrap_or_default().to_owned(),
            switchover,
        })
    }
}

/// A running prober; [`Prober::stop`] returns its log.
pub struct Prober {
    stop_sending: Arc<AtomicBool>,
    stop_receiving: Arc<AtomicBool>,
    sender: Option<JoinHandle<()>>,
    receiver: Option<JoinHandle<()>>,
    log: Arc<Mutex<BTreeMap<u64, Probe>>>,
}

impl Prober {
    /// Starts probing `target` from `client` every `interval`.
    pub fn start(lab: &Lab, client: &str, target: SocketAddr, interval: Duration) -> Result<Prober, LabError> {
        let netns = lab.host(client)?.netns.clone();
        let bind: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0"
                .parse()
                .map_err(|_| LabError::Invalid("bind address".into()))?
        } else {
            "[::]:0".parse().map_err(|_| LabError::Invalid("bind address".into()))?
        };
        let socket = in_netns(&netns, || UdpSocket::bind(bind))?.map_err(|e| LabError::io("bind prober socket", e))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| LabError::io("prober socket timeout", e))?;
        let receive = socket.try_clone().map_err(|e| LabError::io("clone prober socket", e))?;
        // Separate flags: answers keep being recorded for a while after
        // the last probe is sent.
        let stop_sending = Arc::new(AtomicBool::new(false));
        let stop_receiving = Arc::new(AtomicBool::new(false));
        let log: Arc<Mutex<BTreeMap<u64, Probe>>> = Arc::default();

        let sender = {
            let (stop, log) = (stop_sending.clone(), log.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = start + interval * (seq as u32);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let sent = Instant::now();
                    if let Ok(mut l) = log.lock() {
                        l.insert(
                            seq,
                            Probe {
                                seq,
                                sent,
                                answers: vec![],
                            },
                        );
                    }
                    // An unreachable target (no ARP answer yet) is a lost probe.
                    let _ = socket.send_to(&seq.to_be_bytes(), target);
                    seq += 1;
                }
            })
        };
        let receiver = {
            let (stop, log) = (stop_receiving.clone(), log.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 128];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, _)) = receive.recv_from(&mut buf) else {
                        continue;
                    };
                    let at = Instant::now();
                    if n < 8 {
                        continue;
                    }
                    let mut seq_bytes = [0u8; 8];
                    seq_bytes.copy_from_slice(&buf[..8]);
                    let seq = u64::from_be_bytes(seq_bytes);
                    let node = String::from_utf8_lossy(&buf[8..n]).into_owned();
                    if let Ok(mut l) = log.lock()
                        && let Some(p) = l.get_mut(&seq)
                    {
                        p.answers.push((at, node));
                    }
                }
            })
        };
        Ok(Prober {
            stop_sending,
            stop_receiving,
            sender: Some(sender),
            receiver: Some(receiver),
            log,
        })
    }

    /// Waits until a probe sent after `since` is answered by a node for
    /// which `accept` holds; returns that node.
    pub fn wait_for_answer(
        &self,
        since: Instant,
        timeout: Duration,
        accept: impl Fn(&str) -> bool,
    ) -> Result<String, LabError> {
        wait_until(
            timeout,
            || "a probe answer".to_owned(),
            || {
                let log = self.log.lock().ok()?;
                log.values()
                    .filter(|p| p.sent >= since)
                    .find_map(|p| p.answered_by().filter(|n| accept(n)).map(str::to_owned))
            },
        )
    }

    /// Stops probing (answers in flight get 100 ms to arrive) and returns the log.
    pub fn stop(mut self) -> ProbeLog {
        self.halt();
        let probes = self
            .log
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default();
        ProbeLog { probes }
    }

    fn halt(&mut self) {
        self.stop_sending.store(true, Ordering::Relaxed);
        if let Some(s) = self.sender.take() {
            let _ = s.join();
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop_receiving.store(true, Ordering::Relaxed);
        if let Some(r) = self.receiver.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Every MAC that answered `client`'s ARP requests for `ip` (two broadcast
/// requests a second apart, two seconds at most; one unanswered is no
/// error): more than one is a split brain.
pub fn arp_answerers(lab: &Lab, client: &str, ip: std::net::Ipv4Addr) -> BTreeSet<MacAddr> {
    // arping exits 1 when a request went unanswered, 2 on an error.
    let arping = "arping -b -I eth0 -c 2 -w 2 \"$0\"; [ $? -le 1 ]";
    let out = lab
        .exec(client, "sh", &["-c", arping, &ip.to_string()])
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.get(l.find('[')? + 1..l.find(']')?)?.parse().ok())
        .collect()
}

/// Round-trip times (ms) of `count` ARP requests from `client` for `ip`,
/// each a fresh broadcast from its own `arping` (iputils' arping takes whole
/// seconds between requests; arping times each request itself, so starting
/// it does not count).
pub fn arp_round_trips(lab: &Lab, client: &str, ip: std::net::Ipv4Addr, count: usize) -> Vec<f64> {
    let target = ip.to_string();
    (0..count)
        .filter_map(|_| {
            let out = lab
                .exec(client, "arping", &["-b", "-I", "eth0", "-c", "1", "-w", "1", &target])
                .ok()?;
            out.lines()
                .find(|l| l.contains("reply from"))?
                .split_whitespace()
                .last()?
                .strip_suffix("ms")?
                .parse()
                .ok()
        })
        .collect()
}

/// The MAC in the first Neighbor Advertisement `client` gets for `ip`
/// (ndisc6, two tries), if any.
pub fn ndp_answerer(lab: &Lab, client: &str, ip: std::net::Ipv6Addr) -> Option<MacAddr> {
    let out = lab
        .exec(
            client,
            "ndisc6",
            &["-1", "-r", "2", "-w", "500", &ip.to_string(), "eth0"],
        )
        .ok()?;
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Target link-layer address:"))
        .and_then(|mac| mac.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(start: Instant, answers: &[Option<&str>]) -> ProbeLog {
        let interval = Duration::from_millis(10);
        ProbeLog {
            probes: answers
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let sent = start + interval * i as u32;
                    Probe {
                        seq: i as u64,
                        sent,
                        answers: a
                            .map(|n| vec![(sent + Duration::from_millis(1), n.to_owned())])
                            .unwrap_or_default(),
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn outage_spans_last_answer_before_to_first_after() {
        let start = Instant::now();
        let l = log(
            start,
            &[Some("n1"), Some("n1"), None, None, None, Some("n2"), Some("n2")],
        );
        let fault = start + Duration::from_millis(15);
        let o = l.outage_after(fault).expect("recovered");
        assert_eq!(o.window, Duration::from_millis(40));
        assert_eq!(o.lost, 3);
        assert_eq!((o.before.as_deref(), o.after.as_str()), (Some("n1"), "n2"));
        assert_eq!(o.switchover, Some(Duration::from_millis(35)));
        assert_eq!(l.lost(), 3);
        assert_eq!(l.answer_runs(), vec![("n1".to_owned(), 2), ("n2".to_owned(), 2)]);
    }

    #[test]
    fn no_recovery_means_no_outage_figure() {
        let start = Instant::now();
        let l = log(start, &[Some("n1"), None, None]);
        assert_eq!(l.outage_after(start + Duration::from_millis(5)), None);
    }
}
