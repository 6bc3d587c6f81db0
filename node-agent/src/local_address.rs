//! Traffic delivery for service addresses outside Kubernetes: the node
//! must accept packets for the addresses it answers for (Layer 2) or
//! announces (BGP) (kube-proxy arranges that in Kubernetes), yet its
//! kernel must never answer ARP or NDP for them, or every node would claim
//! every address. One task owns the loopback addresses for both modes
//! ([`Delivery`]): each says what it wants, and the task applies the union.
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

use tokio::sync::watch;

/// What the modes want delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Wanted {
    /// Layer 2's addresses, and the interfaces it answers on (by name,
    /// with whether each is up).
    layer2: (BTreeSet<IpAddr>, BTreeMap<String, bool>),
    /// The addresses BGP announces.
    bgp: BTreeSet<IpAddr>,
    /// Once set: everything but these addresses is removed and the task
    /// ends.
    closed: Option<BTreeSet<IpAddr>>,
}

/// The handle to the task owning the loopback service addresses: cloned
/// into Layer 2's glue and BGP's, closed once at shutdown.
#[derive(Debug, Clone)]
pub struct Delivery(watch::Sender<Wanted>);

impl Delivery {
    /// Starts the task on the current local task set (inside an actix
    /// system); it manages addresses only when `enabled` (standalone
    /// mode). `adopted`: the addresses a predecessor left on loopback for a
    /// graceful restart, kept as BGP's until BGP says what it announces.
    /// The handle returned ends when [`Delivery::close`] is done.
    pub fn start(enabled: bool, adopted: BTreeSet<IpAddr>) -> (Delivery, tokio::task::JoinHandle<()>) {
        let mut addresses = LocalAddresses::new(enabled);
        if enabled {
            addresses.present.clone_from(&adopted);
        }
        let (tx, mut rx) = watch::channel(Wanted {
            bgp: adopted,
            ..Wanted::default()
        });
        let task = tokio::task::spawn_local(async move {
            loop {
                let wanted = rx.borrow_and_update().clone();
                if let Some(kept) = &wanted.closed {
                    addresses.set(kept, &BTreeMap::new()).await;
                    return;
                }
                let union: BTreeSet<IpAddr> = wanted.layer2.0.union(&wanted.bgp).copied().collect();
                addresses.set(&union, &wanted.layer2.1).await;
                if rx.changed().await.is_err() {
                    addresses.set(&BTreeSet::new(), &BTreeMap::new()).await;
                    return;
                }
            }
        });
        (Delivery(tx), task)
    }

    /// Layer 2's addresses, and the interfaces whose ARP is kept quiet.
    pub fn set_layer2(&self, addresses: BTreeSet<IpAddr>, interfaces: BTreeMap<String, bool>) {
        self.0
            .send_if_modified(|w| replace(&mut w.layer2, (addresses, interfaces)));
    }

    /// The addresses BGP announces.
    pub fn set_bgp(&self, addresses: BTreeSet<IpAddr>) {
        self.0.send_if_modified(|w| replace(&mut w.bgp, addresses));
    }

    /// Removes every address but `kept` (those left for a graceful
    /// restart) and ends the task.
    pub fn close(&self, kept: BTreeSet<IpAddr>) {
        self.0.send_modify(|w| w.closed = Some(kept));
    }
}

/// Sets `slot` to `value`; whether that changed it.
fn replace<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        false
    } else {
        *slot = value;
        true
    }
}

/// The addresses this agent has put on loopback.
#[derive(Debug)]
struct LocalAddresses {
    enabled: bool,
    present: BTreeSet<IpAddr>,
    quiet_interfaces: BTreeSet<String>,
}

impl LocalAddresses {
    /// Manages loopback addresses when `enabled`; otherwise does nothing.
    fn new(enabled: bool) -> LocalAddresses {
        LocalAddresses {
            enabled,
            present: BTreeSet::new(),
            quiet_interfaces: BTreeSet::new(),
        }
    }

    /// Makes `addresses` the loopback service addresses, and quietens ARP
    /// on the `interfaces` first.
    async fn set(&mut self, addresses: &BTreeSet<IpAddr>, interfaces: &BTreeMap<String, bool>) {
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
