//! Link state, read in one place: [`monitor`] polls `/sys/class/net` every
//! [`LINK_POLL`] and publishes the Ethernet interfaces of this node with
//! their link state on a `watch`, when it changes. The Layer 2 plan, the
//! interface actors and the status all read that one channel, so they
//! never disagree about a link and the kernel is asked once per poll.
//!
//! An interface counts when its hardware type is Ethernet (`type` 1; read
//! once per interface and remembered), it is not loopback, and its link is
//! up when `carrier` is 1 and `operstate` is `up` (or `unknown`, as on
//! links without carrier detection).
//!
//! Why not pnet_datalink's `interfaces()`: it would replace these reads
//! with one `getifaddrs`, but it reads every link-layer address as six
//! bytes whatever its length and does not give the hardware type, so an
//! IP-in-IP tunnel (a 4-byte "address") would pass for Ethernet. Reading
//! sysfs keeps the type exact.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

/// Every Ethernet interface of this node and its link state.
pub type Links = BTreeMap<String, Link>;

/// An interface's link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Link {
    /// Carrier, and up.
    Up,
    /// No carrier, or administratively down.
    Down,
}

impl Link {
    /// The state `up` says.
    pub fn from_up(up: bool) -> Link {
        if up { Link::Up } else { Link::Down }
    }

    /// Whether it is up.
    pub fn is_up(self) -> bool {
        self == Link::Up
    }
}

/// How often link state is read.
pub const LINK_POLL: Duration = Duration::from_millis(100);

/// `ARPHRD_ETHER`, the hardware type of Ethernet (and veth, bridges,
/// bonds, VLANs on them).
const ARPHRD_ETHER: &str = "1";

fn sys_class_net(interface: &str, file: &str) -> PathBuf {
    PathBuf::from("/sys/class/net").join(interface).join(file)
}

fn read_sys(interface: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(sys_class_net(interface, file))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// `interface`'s link: up with a carrier, or down.
pub fn link_of(interface: &str) -> Link {
    let carrier = read_sys(interface, "carrier").is_some_and(|c| c == "1");
    let state = read_sys(interface, "operstate").unwrap_or_default();
    Link::from_up(carrier && (state == "up" || state == "unknown"))
}

/// Reads link state, remembering each interface's hardware type.
#[derive(Debug, Default)]
pub struct LinkReader {
    /// Whether each interface seen is Ethernet (its type never changes
    /// while the name exists).
    ethernet: BTreeMap<String, bool>,
}

impl LinkReader {
    /// This node's Ethernet interfaces (loopback left out) now.
    pub fn read(&mut self) -> Links {
        let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
            return Links::new();
        };
        let names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name != "lo")
            .collect();
        self.ethernet.retain(|name, _| names.contains(name));
        let mut links = Links::new();
        for name in names {
            let ethernet = *self
                .ethernet
                .entry(name.clone())
                .or_insert_with(|| read_sys(&name, "type").is_some_and(|t| t == ARPHRD_ETHER));
            if ethernet {
                let link = link_of(&name);
                links.insert(name, link);
            }
        }
        links
    }
}

/// Publishes this node's links on `links` now and after every change,
/// reading them every [`LINK_POLL`], until nobody watches any more.
pub async fn monitor(links: watch::Sender<Links>) {
    let mut reader = LinkReader::default();
    let mut tick = tokio::time::interval(LINK_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = reader.read();
        links.send_if_modified(|current| {
            let modified = *current != now;
            *current = now;
            modified
        });
        if links.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_left_out_and_a_missing_link_is_down() {
        let links = LinkReader::default().read();
        assert!(!links.contains_key("lo"), "{links:?}");
        assert_eq!(link_of("no-such-if0"), Link::Down);
    }
}
