//! Traffic delivery for Layer 2 service addresses outside Kubernetes: the
//! node must accept packets for them (kube-proxy arranges that in
//! Kubernetes), yet its kernel must never answer ARP or NDP for them, or
//! every node would claim every address.
//!
//! The addresses go on the loopback interface as host routes (/32, /128);
//! on the announcing interfaces `arp_ignore=1` (answer ARP only for
//! addresses configured on the asking interface) and `arp_announce=2`
//! (never source ARP from an address of another interface) keep the kernel
//! quiet for IPv4. The kernel answers Neighbor Solicitations only for
//! addresses on the receiving interface, so loopback addresses stay silent
//! for IPv6 without a setting. This is the LVS direct-routing arrangement;
//! a dummy interface would do as well where the kernel has one.
//!
//! Changes go through `ip` (iproute2) as child processes, never blocking
//! the runtime; every address added is removed again when the set shrinks
//! or the agent stops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The addresses this agent has put on loopback.
#[derive(Debug)]
pub struct LocalAddresses {
    enabled: bool,
    present: BTreeSet<IpAddr>,
    quiet_interfaces: BTreeSet<String>,
}

impl LocalAddresses {
    /// Manages loopback addresses when `enabled`; otherwise does nothing.
    pub fn new(enabled: bool) -> LocalAddresses {
        LocalAddresses {
            enabled,
            present: BTreeSet::new(),
            quiet_interfaces: BTreeSet::new(),
        }
    }

    /// Makes `addresses` the loopback service addresses, and quietens ARP
    /// on the `interfaces` first.
    pub async fn set(&mut self, addresses: &BTreeSet<IpAddr>, interfaces: &BTreeMap<String, bool>) {
        if !self.enabled {
            return;
        }
        for interface in interfaces.keys() {
            if self.quiet_interfaces.insert(interface.clone()) {
                quieten_arp(interface).await;
            }
        }
        for address in addresses.difference(&self.present.clone()) {
            if ip(&["addr", "replace", &host_prefix(address), "dev", "lo"]).await {
                self.present.insert(*address);
            }
        }
        for address in self.present.clone().difference(addresses) {
            ip(&["addr", "del", &host_prefix(address), "dev", "lo"]).await;
            self.present.remove(address);
        }
    }
}

fn host_prefix(address: &IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

async fn ip(args: &[&str]) -> bool {
    match tokio::process::Command::new("ip").args(args).output().await {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            tracing::warn!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
            false
        }
        Err(e) => {
            tracing::warn!("ip {}: {e} (is iproute2 installed?)", args.join(" "));
            false
        }
    }
}

async fn quieten_arp(interface: &str) {
    for (knob, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
        let path = format!("/proc/sys/net/ipv4/conf/{interface}/{knob}");
        if let Err(e) = tokio::fs::write(&path, value).await {
            tracing::warn!("{path}: {e}; the kernel may answer ARP for service addresses");
        }
    }
}
