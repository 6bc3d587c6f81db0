//! The split-brain detector: a capture on the segment that counts, per IP
//! address and time window, how many distinct MACs claimed it (ARP replies
//! and announcements, NDP Neighbor Advertisements).
//!
//! tcpdump captures on the bridge inside the switch namespace, so it sees
//! every frame between hosts; tshark reads the capture back.

use crate::error::LabError;
use crate::lab::{Lab, LabProcess};
use crate::netns::run;
use crate::wait::wait_for;
use meshlb_wire::ethernet::MacAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// One claim: at `at` (seconds into the capture), `mac` said it has `ip`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// Seconds since the capture started.
    pub at: f64,
    /// The address claimed.
    pub ip: IpAddr,
    /// The MAC that claimed it.
    pub mac: MacAddr,
}

/// Claims seen during a capture.
#[derive(Debug, Clone, Default)]
pub struct ClaimLog {
    /// Every claim in capture order.
    pub claims: Vec<Claim>,
}

impl ClaimLog {
    /// For `ip`, the distinct MACs claiming it in each window of `window`
    /// length (windows with no claim are left out), keyed by window start.
    pub fn macs_per_window(&self, ip: IpAddr, window: Duration) -> BTreeMap<u64, BTreeSet<MacAddr>> {
        let width = window.as_secs_f64().max(1e-3);
        let mut out: BTreeMap<u64, BTreeSet<MacAddr>> = BTreeMap::new();
        for c in self.claims.iter().filter(|c| c.ip == ip) {
            out.entry((c.at / width) as u64).or_default().insert(c.mac);
        }
        out
    }

    /// The most MACs that claimed `ip` within one window.
    pub fn max_claimants(&self, ip: IpAddr, window: Duration) -> usize {
        self.macs_per_window(ip, window)
            .values()
            .map(BTreeSet::len)
            .max()
            .unwrap_or(0)
    }

    /// Every MAC that claimed `ip` during the capture.
    pub fn claimants(&self, ip: IpAddr) -> BTreeSet<MacAddr> {
        self.claims.iter().filter(|c| c.ip == ip).map(|c| c.mac).collect()
    }

    /// The longest time (seconds) two MACs both claimed `ip`: for every
    /// MAC that started claiming it, how long an earlier claimant went on
    /// claiming after that (0 when claims never interleave).
    pub fn overlap(&self, ip: IpAddr) -> f64 {
        let mut spans: BTreeMap<MacAddr, (f64, f64)> = BTreeMap::new();
        for c in self.claims.iter().filter(|c| c.ip == ip) {
            let span = spans.entry(c.mac).or_insert((c.at, c.at));
            span.0 = span.0.min(c.at);
            span.1 = span.1.max(c.at);
        }
        let mut worst: f64 = 0.0;
        for (earlier_first, earlier_last) in spans.values() {
            for (later_first, _) in spans.values() {
                if earlier_first < later_first {
                    worst = worst.max(earlier_last - later_first);
                }
            }
        }
        worst
    }
}

/// A running capture; [`SplitBrainDetector::stop`] analyses it.
pub struct SplitBrainDetector {
    tcpdump: LabProcess,
    file: PathBuf,
    /// When the capture was open (the wall clock the capture's frame
    /// times are in): a claim's time counts from here, not from the first
    /// frame, so it compares with the caller's clock.
    started: SystemTime,
}

impl SplitBrainDetector {
    /// Starts capturing ARP and ICMPv6 on the lab's segment.
    pub fn start(lab: &Lab) -> Result<SplitBrainDetector, LabError> {
        let file = lab.log_dir().join("segment-claims.pcap");
        let path = file.to_string_lossy().into_owned();
        let tcpdump = lab.spawn(
            "switch",
            "tcpdump",
            "tcpdump",
            &[
                "-i",
                "br0",
                "--immediate-mode",
                "-U",
                "-n",
                "-Z",
                "root",
                "-w",
                &path,
                "arp or icmp6",
            ],
        )?;
        // tcpdump says "listening on" once the capture is open. `-Z root`:
        // Debian's tcpdump otherwise drops to a user that cannot write here.
        wait_for(Duration::from_secs(5), "tcpdump to start capturing", || {
            tcpdump.log().contains("listening on") || !tcpdump.is_running()
        })?;
        if !tcpdump.is_running() {
            return Err(LabError::Invalid(format!("tcpdump exited: {}", tcpdump.log())));
        }
        Ok(SplitBrainDetector {
            tcpdump,
            file,
            started: SystemTime::now(),
        })
    }

    /// Stops the capture and returns every claim in it.
    pub fn stop(self) -> Result<ClaimLog, LabError> {
        // Let frames in flight reach the capture before stopping it.
        std::thread::sleep(Duration::from_millis(100));
        self.tcpdump.terminate()?;
        self.tcpdump.wait_exit(Duration::from_secs(5))?;
        read_claims(&self.file, self.started)
    }
}

fn read_claims(file: &std::path::Path, started: SystemTime) -> Result<ClaimLog, LabError> {
    let started = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|e| LabError::Invalid(format!("the clock is before 1970: {e}")))?
        .as_secs_f64();
    let out = run(
        "tshark",
        &[
            "-n",
            "-r",
            &file.to_string_lossy(),
            "-Y",
            "(arp.opcode == 2 || arp.src.proto_ipv4 == arp.dst.proto_ipv4) || icmpv6.type == 136",
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-e",
            "frame.time_epoch",
            "-e",
            "arp.src.proto_ipv4",
            "-e",
            "arp.src.hw_mac",
            "-e",
            "icmpv6.nd.na.target_address",
            "-e",
            "icmpv6.opt.linkaddr",
            "-e",
            "eth.src",
        ],
    )?;
    let mut claims = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [at, arp_ip, arp_mac, na_target, na_ll, eth_src] = f.as_slice() else {
            continue;
        };
        let Ok(epoch) = at.parse::<f64>() else { continue };
        let at = epoch - started;
        let (ip, mac) = if !arp_ip.is_empty() {
            (arp_ip.parse::<IpAddr>(), arp_mac.parse::<MacAddr>())
        } else {
            let mac = if na_ll.is_empty() { eth_src } else { na_ll };
            (
                na_target.parse::<IpAddr>(),
                mac.split(',').next().unwrap_or_default().parse::<MacAddr>(),
            )
        };
        if let (Ok(ip), Ok(mac)) = (ip, mac) {
            claims.push(Claim { at, ip, mac });
        }
    }
    Ok(ClaimLog { claims })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_macs_per_window() {
        let ip: IpAddr = "203.0.113.10".parse().expect("ip");
        let a = MacAddr([2, 0, 0, 0, 1, 11]);
        let b = MacAddr([2, 0, 0, 0, 1, 12]);
        let log = ClaimLog {
            claims: vec![
                Claim { at: 0.1, ip, mac: a },
                Claim { at: 0.5, ip, mac: a },
                Claim { at: 1.2, ip, mac: a },
                Claim { at: 1.7, ip, mac: b },
                Claim { at: 2.5, ip, mac: b },
            ],
        };
        assert_eq!(log.max_claimants(ip, Duration::from_secs(1)), 2);
        assert_eq!(log.macs_per_window(ip, Duration::from_secs(1)).len(), 3);
        assert_eq!(log.max_claimants(ip, Duration::from_millis(400)), 1);
        assert_eq!(log.claimants(ip).len(), 2);
        assert_eq!(log.overlap(ip), 0.0, "b started after a's last claim");
        let mut interleaved = log.clone();
        interleaved.claims.push(Claim { at: 2.0, ip, mac: a });
        assert!(
            (interleaved.overlap(ip) - 0.3).abs() < 1e-9,
            "a went on 0.3 s after b began"
        );
        assert_eq!(
            log.max_claimants("203.0.113.99".parse().expect("ip"), Duration::from_secs(1)),
            0
        );
    }
}
