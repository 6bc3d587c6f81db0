//! Traffic delivery for service addresses outside Kubernetes: the node
//! must accept packets for the addresses it answers for (Layer 2) or
//! announces (BGP) (kube-proxy arranges that in Kubernetes), yet its
//! kernel must never answer ARP or NDP for them, or every node would claim
//! every address. One task owns the delivery of both modes' addresses
//! ([`Delivery`]): each says what it wants, and the task applies the union.
//!
//! Each address gets a local route through the loopback interface in the
//! local table (`ip route show table local proto 77`): the kernel delivers
//! its packets to this host as it does an interface address's (AnyIP),
//! and servers listening on the wildcard address take its connections.
//! Not being an interface address, it is answered for by no ARP or NDP of
//! the kernel's where `arp_ignore=1` (answer ARP only for addresses
//! configured on the asking interface), set on the announcing interfaces
//! with `arp_announce=2` (never source ARP from an address of another
//! interface); the kernel answers Neighbor Solicitations only for
//! interface addresses. (A server binding one IPv6 service address itself
//! needs `IPV6_FREEBIND` or `net.ipv6.ip_nonlocal_bind=1`; IPv4 binds
//! work.) Routes rather than addresses because the kernel inserts and
//! removes a route at the same small cost however many there are, while
//! removing an IPv6 address walks the whole routing table (for routes
//! whose preferred source it was), so removing many costs time quadratic
//! in their number.
//!
//! Changes go to the kernel over rtnetlink, many to a datagram
//! ([`meshlb_actors::netlink`], on tokio's blocking threads, never the
//! runtime's). A route delivers once the kernel has acknowledged it
//! ([`Delivery::deliverable`]); BGP announces only those addresses, so no
//! route reaches a router before the node accepts its traffic. Routes the
//! kernel refused are tried again every [`RETRY`]. Every route added is
//! removed again when the set shrinks or the agent stops, but those kept
//! for a graceful restart, which the successor adopts (and, from an
//! agent that put them on loopback as addresses, takes those away once
//! its routes are in). In Kubernetes kube-proxy delivers the traffic, and
//! every wanted address counts as deliverable at once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use meshlb_actors::l2::links::Links;
use meshlb_actors::netlink::{LOOPBACK_INDEX, RouteSocket};
use meshlb_wire::rtnetlink::Change;
use tokio::sync::watch;

/// How long before routes the kernel refused are tried again.
pub const RETRY: Duration = Duration::from_secs(1);

/// What the modes want delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Wanted {
    /// Layer 2's addresses, and the interfaces it answers on (by name,
    /// with whether each is up).
    layer2: (BTreeSet<IpAddr>, Links),
    /// The addresses BGP announces.
    bgp: BTreeSet<IpAddr>,
    /// Once set: everything but these addresses is removed and the task
    /// ends.
    closed: Option<BTreeSet<IpAddr>>,
}

/// The handle to the task owning the service addresses' local routes: cloned
/// into Layer 2's glue and BGP's, closed once at shutdown.
#[derive(Debug, Clone)]
pub struct Delivery {
    wanted: watch::Sender<Wanted>,
    deliverable: watch::Receiver<BTreeSet<IpAddr>>,
}

impl Delivery {
    /// Starts the task on the current local task set (inside an actix
    /// system); it manages addresses only when `enabled` (standalone
    /// mode). `adopted`: the addresses a predecessor left delivered for a
    /// graceful restart, kept as BGP's until BGP says what it announces.
    /// The handle returned ends when [`Delivery::close`] is done.
    pub fn start(enabled: bool, adopted: BTreeSet<IpAddr>) -> (Delivery, tokio::task::JoinHandle<()>) {
        let mut addresses = LocalAddresses::new(enabled, &adopted);
        let (tx, mut rx) = watch::channel(Wanted {
            bgp: adopted,
            ..Wanted::default()
        });
        let (deliverable_tx, deliverable) = watch::channel(BTreeSet::new());
        let task = tokio::task::spawn_local(async move {
            loop {
                let wanted = rx.borrow_and_update().clone();
                if let Some(kept) = &wanted.closed {
                    addresses.set(kept, &BTreeMap::new()).await;
                    return;
                }
                let union: BTreeSet<IpAddr> = wanted.layer2.0.union(&wanted.bgp).copied().collect();
                let delivered = addresses.set(&union, &wanted.layer2.1).await;
                let complete = delivered == union;
                deliverable_tx.send_if_modified(|d| replace(d, delivered));
                let changed = if complete {
                    rx.changed().await
                } else {
                    tokio::select! {
                        changed = rx.changed() => changed,
                        () = tokio::time::sleep(RETRY) => Ok(()),
                    }
                };
                if changed.is_err() {
                    addresses.set(&BTreeSet::new(), &BTreeMap::new()).await;
                    return;
                }
            }
        });
        (
            Delivery {
                wanted: tx,
                deliverable,
            },
            task,
        )
    }

    /// Layer 2's addresses, and the interfaces whose ARP is kept quiet.
    pub fn set_layer2(&self, addresses: BTreeSet<IpAddr>, interfaces: Links) {
        self.wanted
            .send_if_modified(|w| replace(&mut w.layer2, (addresses, interfaces)));
    }

    /// The addresses BGP announces, or has withdrawn and still delivers
    /// for a while.
    pub fn set_bgp(&self, addresses: BTreeSet<IpAddr>) {
        self.wanted.send_if_modified(|w| replace(&mut w.bgp, addresses));
    }

    /// The wanted addresses the node accepts traffic for now: changes
    /// after each change the task applies.
    pub fn deliverable(&self) -> watch::Receiver<BTreeSet<IpAddr>> {
        self.deliverable.clone()
    }

    /// Removes every address but `kept` (those left for a graceful
    /// restart) and ends the task.
    pub fn close(&self, kept: BTreeSet<IpAddr>) {
        self.wanted.send_modify(|w| w.closed = Some(kept));
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

/// The local routes this agent has put in.
#[derive(Debug)]
struct LocalAddresses {
    enabled: bool,
    present: BTreeSet<IpAddr>,
    /// Adopted addresses a predecessor may have left as loopback
    /// addresses: removed once the first change has put their routes in.
    legacy: Vec<IpAddr>,
    quiet_interfaces: BTreeSet<String>,
    /// Taken by the blocking thread for the length of a change.
    socket: Option<RouteSocket>,
    /// The addresses whose routes the kernel refused last time: told as
    /// a warning when they change, not at every retry.
    refused: BTreeSet<IpAddr>,
}

impl LocalAddresses {
    /// Manages local routes when `enabled`; otherwise does nothing.
    fn new(enabled: bool, adopted: &BTreeSet<IpAddr>) -> LocalAddresses {
        LocalAddresses {
            enabled,
            present: BTreeSet::new(),
            legacy: adopted.iter().copied().collect(),
            quiet_interfaces: BTreeSet::new(),
            socket: None,
            refused: BTreeSet::new(),
        }
    }

    /// Makes `addresses` the delivered service addresses, and quietens ARP
    /// on the `interfaces` first; those of `addresses` the node delivers
    /// now.
    async fn set(&mut self, addresses: &BTreeSet<IpAddr>, interfaces: &Links) -> BTreeSet<IpAddr> {
        if !self.enabled {
            return addresses.clone();
        }
        for interface in interfaces.keys() {
            if self.quiet_interfaces.insert(interface.clone()) {
                quieten_arp(interface).await;
            }
        }
        let change = Routes {
            add: addresses.difference(&self.present).copied().collect(),
            remove: self.present.difference(addresses).copied().collect(),
            legacy: std::mem::take(&mut self.legacy),
        };
        if !change.add.is_empty() || !change.remove.is_empty() || !change.legacy.is_empty() {
            let socket = self.socket.take();
            match tokio::task::spawn_blocking(move || change.apply(socket)).await {
                Ok(applied) => {
                    self.socket = applied.socket;
                    for address in &applied.removed {
                        self.present.remove(address);
                    }
                    self.present.extend(applied.added);
                    self.legacy = applied.legacy_left;
                    self.tell_refusals(applied.refused);
                }
                Err(e) => tracing::warn!("service address routes: the change did not run ({e})"),
            }
        }
        self.present.intersection(addresses).copied().collect()
    }

    /// Logs what the kernel refused: a warning when the refused addresses
    /// change (a few of them, with why), a debug line at every retry.
    fn tell_refusals(&mut self, refused: BTreeMap<IpAddr, String>) {
        let now: BTreeSet<IpAddr> = refused.keys().copied().collect();
        let some: Vec<String> = refused.iter().take(3).map(|(a, why)| format!("{a}: {why}")).collect();
        if now == self.refused {
            if !now.is_empty() {
                tracing::debug!(
                    count = now.len(),
                    "service address routes still refused: {}",
                    some.join("; ")
                );
            }
        } else if now.is_empty() {
            tracing::info!("service address routes: nothing refused any more");
        } else {
            tracing::warn!(
                count = now.len(),
                "service address routes refused, tried again every second: {}",
                some.join("; ")
            );
        }
        self.refused = now;
    }
}

/// One change of the local routes, carried out on a blocking thread.
struct Routes {
    add: Vec<IpAddr>,
    remove: Vec<IpAddr>,
    legacy: Vec<IpAddr>,
}

/// What a [`Routes`] change did.
struct Applied {
    added: Vec<IpAddr>,
    removed: Vec<IpAddr>,
    /// What the kernel refused to add or remove, and why.
    refused: BTreeMap<IpAddr, String>,
    /// The predecessor's addresses not tried yet (no socket): tried with
    /// the next change.
    legacy_left: Vec<IpAddr>,
    /// The socket, for the next change (none if it failed).
    socket: Option<RouteSocket>,
}

impl Routes {
    fn apply(self, socket: Option<RouteSocket>) -> Applied {
        let mut applied = Applied {
            added: Vec::new(),
            removed: Vec::new(),
            refused: BTreeMap::new(),
            legacy_left: Vec::new(),
            socket: None,
        };
        let mut socket = match socket.map_or_else(RouteSocket::open, Ok) {
            Ok(socket) => socket,
            Err(e) => {
                let why = format!("no rtnetlink socket ({e})");
                applied.refused = self.add.iter().chain(&self.remove).map(|a| (*a, why.clone())).collect();
                applied.legacy_left = self.legacy;
                return applied;
            }
        };
        let removed = socket.change_local_routes(Change::Remove, LOOPBACK_INDEX, &self.remove);
        for (address, outcome) in self.remove.iter().zip(removed) {
            match outcome {
                // Already gone (removed by hand): as good as removed.
                Err(e) if e.raw_os_error() != Some(ESRCH) => {
                    applied
                        .refused
                        .insert(*address, format!("cannot remove its local route: {e}"));
                }
                _ => applied.removed.push(*address),
            }
        }
        let added = socket.change_local_routes(Change::Add, LOOPBACK_INDEX, &self.add);
        for (address, outcome) in self.add.iter().zip(added) {
            match outcome {
                Ok(()) => applied.added.push(*address),
                Err(e) => {
                    applied
                        .refused
                        .insert(*address, format!("cannot add its local route: {e}"));
                }
            }
        }
        // Most were never addresses: their refusals say nothing.
        let _ = socket.remove_addresses(LOOPBACK_INDEX, &self.legacy);
        applied.socket = Some(socket);
        applied
    }
}

/// "No such process": the kernel's answer to removing a route that is not
/// there (linux/errno.h).
const ESRCH: i32 = 3;

async fn quieten_arp(interface: &str) {
    for (knob, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
        let path = format!("/proc/sys/net/ipv4/conf/{interface}/{knob}");
        if let Err(e) = tokio::fs::write(&path, value).await {
            tracing::warn!("{path}: {e}; the kernel may answer ARP for service addresses");
        }
    }
}
