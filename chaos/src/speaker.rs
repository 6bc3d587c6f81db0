//! gobgpd as a BGP speaker on a node: announces routes to the lab's
//! router. It stands in for meshlb's own speaker until that exists, and is
//! the route-scale baseline.

use crate::error::LabError;
use crate::lab::{Lab, LabProcess};
use crate::router::{GOBGP_API, GOBGP_API_PORT};
use crate::wait::wait_for;
use meshlb_wire::bgp::{Community, LargeCommunity};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Path attributes of an announcement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announcement {
    /// COMMUNITIES.
    pub communities: Vec<Community>,
    /// LARGE_COMMUNITY.
    pub large_communities: Vec<LargeCommunity>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF (sent on iBGP sessions only).
    pub local_pref: Option<u32>,
}

/// gobgp's name for the family of `prefix`.
fn family_of(prefix: &str) -> &'static str {
    if prefix.contains(':') { "ipv6" } else { "ipv4" }
}

/// gobgpd running on a node.
#[derive(Debug)]
pub struct GobgpSpeaker {
    /// The node it runs on.
    pub node: String,
    process: LabProcess,
}

impl GobgpSpeaker {
    /// gobgpd's process id.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Starts gobgpd on `node` as AS `asn`, peering with `peer` (AS `peer_asn`).
    pub fn start(lab: &Lab, node: &str, asn: u32, peer: IpAddr, peer_asn: u32) -> Result<GobgpSpeaker, LabError> {
        Self::start_with_hold_time(lab, node, asn, peer, peer_asn, None)
    }

    /// [`GobgpSpeaker::start`] proposing `hold_time` seconds (keepalives
    /// at a third of it) instead of gobgpd's 90.
    pub fn start_with_hold_time(
        lab: &Lab,
        node: &str,
        asn: u32,
        peer: IpAddr,
        peer_asn: u32,
        hold_time: Option<u16>,
    ) -> Result<GobgpSpeaker, LabError> {
        let host = lab.host(node)?;
        let conf = lab.log_dir().join(format!("{node}-gobgpd.toml"));
        let family = if peer.is_ipv6() { "ipv6-unicast" } else { "ipv4-unicast" };
        let text = format!(
            "[global.config]\n  as = {asn}\n  router-id = \"{}\"\n[[neighbors]]\n  [neighbors.config]\n    \
             neighbor-address = \"{peer}\"\n    peer-as = {peer_asn}\n  [[neighbors.afi-safis]]\n    \
             [neighbors.afi-safis.config]\n      afi-safi-name = \"{family}\"\n{timers}",
            host.ipv4,
            timers = hold_time
                .map(|hold| format!(
                    "  [neighbors.timers.config]\n    hold-time = {hold}\n    keepalive-interval = {}\n",
                    (hold / 3).max(1)
                ))
                .unwrap_or_default()
        );
        std::fs::write(&conf, text).map_err(|e| LabError::io("write gobgpd.toml", e))?;
        let process = lab.spawn(
            node,
            "gobgpd",
            "gobgpd",
            &[
                "-f",
                &conf.to_string_lossy(),
                "-t",
                "toml",
                "--api-hosts",
                &format!("{GOBGP_API}:{GOBGP_API_PORT}"),
            ],
        )?;
        let speaker = GobgpSpeaker {
            node: node.to_owned(),
            process,
        };
        wait_for(Duration::from_secs(10), "gobgpd's API", || {
            speaker.cli(lab, &["global"]).is_ok()
        })?;
        Ok(speaker)
    }

    fn cli(&self, lab: &Lab, args: &[&str]) -> Result<String, LabError> {
        let mut all = vec!["-u", GOBGP_API, "-p", GOBGP_API_PORT];
        all.extend_from_slice(args);
        lab.exec(&self.node, "gobgp", &all)
    }

    /// Announces `prefix` (`a.b.c.d/len`) with `attrs`, next hop self.
    pub fn announce(&self, lab: &Lab, prefix: &str, attrs: &Announcement) -> Result<(), LabError> {
        let mut args: Vec<String> = ["global", "rib", "-a", family_of(prefix), "add", prefix, "origin", "igp"]
            .map(str::to_owned)
            .to_vec();
        if !attrs.communities.is_empty() {
            let list: Vec<String> = attrs
                .communities
                .iter()
                .map(|c| format!("{}:{}", c.asn(), c.value()))
                .collect();
            args.extend(["community".into(), list.join(",")]);
        }
        if !attrs.large_communities.is_empty() {
            let list: Vec<String> = attrs.large_communities.iter().map(ToString::to_string).collect();
            args.extend(["large-community".into(), list.join(",")]);
        }
        if let Some(med) = attrs.med {
            args.extend(["med".into(), med.to_string()]);
        }
        if let Some(lp) = attrs.local_pref {
            args.extend(["local-pref".into(), lp.to_string()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(lab, &refs).map(|_| ())
    }

    /// Withdraws `prefix`.
    pub fn withdraw(&self, lab: &Lab, prefix: &str) -> Result<(), LabError> {
        self.cli(lab, &["global", "rib", "-a", family_of(prefix), "del", prefix])
            .map(|_| ())
    }

    /// Withdraws every route this speaker announced, both families.
    pub fn withdraw_all(&self, lab: &Lab) -> Result<(), LabError> {
        for family in ["ipv4", "ipv6"] {
            self.cli(lab, &["global", "rib", "-a", family, "del", "all"])?;
        }
        Ok(())
    }

    /// Routes of `family` (`ipv4` or `ipv6`) in gobgpd's global RIB.
    pub fn rib_count(&self, lab: &Lab, family: &str) -> Result<usize, LabError> {
        // "Table afi:AFI_IP6 safi:SAFI_UNICAST\nDestination: 300, Path: 300"
        let out = self.cli(lab, &["global", "rib", "-a", family, "summary"])?;
        out.split("Destination: ")
            .nth(1)
            .and_then(|rest| rest.split(',').next()?.trim().parse().ok())
            .ok_or_else(|| LabError::Invalid(format!("unreadable gobgp RIB summary: {out}")))
    }

    /// Loads MRT TABLE_DUMP_V2 files of `family` (each with its number of
    /// routes, all different) into gobgpd's global RIB. `gobgp mrt inject`
    /// streams the routes over gRPC and exits without closing the stream,
    /// so only what fits in the first flow-control window is sure to
    /// arrive: each file holds few enough, and is injected again (a route
    /// gobgpd has is replaced) until gobgpd holds all of them. Its
    /// complaints are errors, since it exits 0 even when it rejects entries.
    pub fn load_mrt(&self, lab: &Lab, files: &[(PathBuf, usize)], family: &str) -> Result<(), LabError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        let mut loaded = self.rib_count(lab, family)?;
        for (file, count) in files {
            let want = loaded + count;
            while loaded < want {
                if std::time::Instant::now() > deadline {
                    return Err(LabError::Timeout {
                        what: format!("gobgpd to load {} ({loaded} routes of {want})", file.display()),
                        waited: Duration::from_secs(300),
                    });
                }
                let out = self.cli(lab, &["mrt", "inject", "global", &file.to_string_lossy()])?;
                if let Some(complaint) = out.lines().find(|l| l.contains("failed")) {
                    return Err(LabError::Invalid(format!("gobgp rejected the MRT dump: {complaint}")));
                }
                loaded = self.rib_count(lab, family)?;
            }
        }
        Ok(())
    }

    /// Administratively enables the session to `peer`.
    pub fn enable_peer(&self, lab: &Lab, peer: IpAddr) -> Result<(), LabError> {
        self.cli(lab, &["neighbor", &peer.to_string(), "enable"]).map(|_| ())
    }

    /// Administratively disables (shuts down) the session to `peer`.
    pub fn disable_peer(&self, lab: &Lab, peer: IpAddr) -> Result<(), LabError> {
        self.cli(lab, &["neighbor", &peer.to_string(), "disable"]).map(|_| ())
    }
}
