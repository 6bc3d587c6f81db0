//! keepalived (VRRP) as a baseline: the failover meshlb must beat.

use crate::error::LabError;
use crate::lab::{Lab, LabProcess};
use crate::wait::wait_until;
use std::net::Ipv4Addr;
use std::time::Duration;

/// One VRRP instance shared by a set of nodes.
#[derive(Debug, Clone)]
pub struct VrrpSpec {
    /// The virtual IP the master holds.
    pub vip: Ipv4Addr,
    /// VRRP router ID.
    pub router_id: u8,
    /// Advertisement interval in seconds: 1 is keepalived's default; values
    /// below 1 use VRRPv3, which counts in centiseconds.
    pub advert_interval: f64,
}

impl VrrpSpec {
    /// keepalived's defaults: VRRPv2, one advertisement a second.
    pub fn default_timers(vip: Ipv4Addr) -> Self {
        VrrpSpec {
            vip,
            router_id: 51,
            advert_interval: 1.0,
        }
    }

    /// A fast setting: VRRPv3 with 100 ms advertisements.
    pub fn fast_timers(vip: Ipv4Addr) -> Self {
        VrrpSpec {
            advert_interval: 0.1,
            ..Self::default_timers(vip)
        }
    }

    fn config(&self, node: &str, priority: u8) -> String {
        let version = if self.advert_interval < 1.0 { 3 } else { 2 };
        format!(
            "global_defs {{\n  router_id {node}\n  vrrp_version {version}\n  vrrp_garp_master_repeat 3\n  vrrp_garp_master_delay 0\n}}\n\
             vrrp_instance VI_{id} {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {id}\n  priority {priority}\n  advert_int {adv}\n  virtual_ipaddress {{\n    {vip}/32 dev eth0\n  }}\n}}\n",
            id = self.router_id,
            adv = self.advert_interval,
            vip = self.vip,
        )
    }
}

/// Starts keepalived on `node` with `priority` (higher wins).
pub fn start(lab: &Lab, node: &str, priority: u8, spec: &VrrpSpec) -> Result<LabProcess, LabError> {
    let dir = lab.log_dir();
    let conf = dir.join(format!("{node}-keepalived.conf"));
    std::fs::write(&conf, spec.config(node, priority)).map_err(|e| LabError::io("write keepalived.conf", e))?;
    let path = |suffix: &str| {
        dir.join(format!("{node}-keepalived{suffix}"))
            .to_string_lossy()
            .into_owned()
    };
    lab.spawn(
        node,
        "keepalived",
        "keepalived",
        &[
            "--dont-fork",
            "--log-console",
            "--vrrp",
            "--use-file",
            &conf.to_string_lossy(),
            "--pid",
            &path(".pid"),
            "--vrrp_pid",
            &path("-vrrp.pid"),
            "--checkers_pid",
            &path("-checkers.pid"),
        ],
    )
}

/// The nodes whose `eth0` currently holds `vip`.
pub fn holders(lab: &Lab, vip: Ipv4Addr) -> Vec<String> {
    lab.hosts_with(crate::lab::Role::Node)
        .filter(|h| {
            lab.exec(&h.name, "ip", &["-4", "-o", "addr", "show", "dev", "eth0"])
                .is_ok_and(|out| out.contains(&format!("inet {vip}/32")))
        })
        .map(|h| h.name.clone())
        .collect()
}

/// Waits until `node`, and only `node`, holds `vip`. At start every
/// instance is BACKUP and the first to time out becomes master; the
/// highest-priority node then preempts it, so waiting for "any single
/// holder" could pick a master about to be replaced.
pub fn wait_for_master(lab: &Lab, node: &str, vip: Ipv4Addr, timeout: Duration) -> Result<(), LabError> {
    wait_until(
        timeout,
        || {
            format!(
                "{node} to be the only VRRP master for {vip} (holders: {:?})",
                holders(lab, vip)
            )
        },
        || (holders(lab, vip) == [node]).then_some(()),
    )
}
