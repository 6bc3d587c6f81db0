//! Each node's versioned state record, how it travels, and the book of the
//! latest record of every node.
//!
//! A record says what the others need to pick owners without asking the
//! API server, in typed sections, each with one writer:
//! - the node's labels (node selectors): written when the agent starts
//!   ([`crate::mesh::Mesh::set_labels`]);
//! - [`OwnershipSection`], written by the mesh itself: its configuration
//!   fingerprint, whether it is leaving or still settling (re-learning the
//!   mesh after a start or a stall), and the addresses it announces now
//!   (its claims: what non-revertive ownership sticks to, and what any node
//!   can report about any other);
//! - [`Layer2Section`], written by the Layer 2 plan through
//!   [`crate::mesh::Mesh::set_services`]: the link state of its interfaces
//!   and the services it can serve now (endpoint or health-check
//!   readiness).
//!
//! - [`BgpSection`], written by the BGP glue through
//!   [`crate::mesh::Mesh::set_bgp`]: the addresses the node announces to
//!   an established BGP peer, and whether it is draining (so a node
//!   leaving withdraws only once others announce what it did, and any node
//!   can say who announces what).
//!
//! On the wire each section is a kind, a length and its payload; a section of a kind this
//! build does not know (a newer agent's, during a rolling upgrade) is
//! skipped, not refused. Services are named by a 64-bit hash of
//! `namespace/name` ([`service_id`]), so 1,000 services cost 8 KB.
//!
//! A record is versioned by `(boot, version)`: `boot` is the boot time in
//! the node's identity (a restarted agent starts at a higher one; a rejoin
//! keeps it), the version counts its changes within that boot. It travels
//! as fragments of at most [`FRAGMENT_PAYLOAD`] bytes, each a foca custom broadcast that a newer
//! fragment with the same node and index invalidates, and again in the
//! anti-entropy exchange (see [`crate::mesh`]).
//!
//! ```text
//! fragment  = 'R' name-len:u8 name boot:u64 version:u64 index:u8 count:u8 payload
//! body      = (kind:u8 length:u32 section)*      each kind at most once
//! section 1 = labels:u16 (key-len:u16 key value-len:u16 value)*
//! section 2 = fingerprint:u64 flags:u8(bit 0 leaving, bit 1 settling)
//!             claims:u16 (family:u8(4|6) address:4|16)*
//! section 3 = links:u16 (name-len:u8 name up:u8)* services:u32 (id:u64)*
//! section 4 = flags:u8(bit 0 draining) announcing:u16 (family:u8(4|6) address:4|16)*
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Buf, BufMut};
use sha2::{Digest, Sha256};

use crate::identity::MAX_NAME_LEN;

/// Most payload bytes in one fragment: small enough that a fragment rides
/// along with foca's own messages in a 1,350-byte packet.
pub const FRAGMENT_PAYLOAD: usize = 1000;
/// Most fragments in a record (about 31,000 services).
pub const MAX_FRAGMENTS: usize = 255;
const FRAGMENT_TAG: u8 = b'R';

/// A service's name on the wire and in the mesh: the first 8 bytes of
/// sha256(`namespace/name`) ([`service_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceId(pub u64);

impl std::fmt::Display for ServiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The id of the service `namespace/name`.
pub fn service_id(key: &str) -> ServiceId {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    ServiceId(u64::from_be_bytes(first))
}

/// What one node tells the others about itself, by section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRecord {
    /// Node name.
    pub node: String,
    /// The boot time of the identity this record belongs to.
    pub boot: u64,
    /// Counts changes within a boot.
    pub version: u64,
    /// Node labels (written when the agent starts).
    pub labels: BTreeMap<String, String>,
    /// What the mesh says of this node (written by the mesh).
    pub ownership: OwnershipSection,
    /// What Layer 2 says of this node (written by the Layer 2 plan).
    pub layer2: Layer2Section,
    /// What BGP says of this node (written by the BGP glue).
    pub bgp: BgpSection,
}

/// The section BGP writes: what this node announces to routers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpSection {
    /// The service addresses announced to at least one established peer.
    pub announcing: BTreeSet<IpAddr>,
    /// Draining: about to withdraw everything (leaving or stopping).
    pub draining: bool,
}

/// The section the mesh writes: where the node stands in ownership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnershipSection {
    /// Fingerprint of the services the node computes ownership for.
    pub config_fingerprint: u64,
    /// Leaving gracefully: successors take over before it goes quiet.
    pub leaving: bool,
    /// Still settling after a start or a stall: it announces nothing yet,
    /// and must not displace a settled member that announces (see
    /// [`crate::placement::place`]).
    pub settling: bool,
    /// Addresses this node announces now.
    pub claims: BTreeSet<IpAddr>,
}

/// The section Layer 2 writes: what this node can serve and where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer2Section {
    /// Interface name to link up.
    pub links: BTreeMap<String, bool>,
    /// Services ([`service_id`]) this node can serve now.
    pub serving: BTreeSet<ServiceId>,
}

impl std::fmt::Display for Layer2Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let up = self.links.values().filter(|up| **up).count();
        write!(
            f,
            "serving {} services; links up {up} of {}",
            self.serving.len(),
            self.links.len()
        )
    }
}

/// Section kinds on the wire.
const SECTION_LABELS: u8 = 1;
const SECTION_OWNERSHIP: u8 = 2;
const SECTION_LAYER2: u8 = 3;
const SECTION_BGP: u8 = 4;

/// Why a record or fragment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes ended inside a field.
    #[error("truncated record {0}")]
    Truncated(&'static str),
    /// Not a record fragment.
    #[error("not a record fragment")]
    NotAFragment,
    /// A fragment index outside its count, or a zero count.
    #[error("fragment {index} of {count}")]
    BadIndex {
        /// Index.
        index: u8,
        /// Count.
        count: u8,
    },
    /// A text field that is not UTF-8, or a name too long.
    #[error("bad text in {0}")]
    BadText(&'static str),
    /// Bytes after the last field of a section.
    #[error("{0} bytes after a record section")]
    Trailing(usize),
    /// A section kind twice in one record.
    #[error("record section {0} twice")]
    DuplicateSection(u8),
    /// The record needs more than [`MAX_FRAGMENTS`] fragments.
    #[error("record of {0} bytes is too large")]
    TooLarge(usize),
}

fn need(buf: &impl Buf, n: usize, what: &'static str) -> Result<(), RecordError> {
    if buf.remaining() < n {
        Err(RecordError::Truncated(what))
    } else {
        Ok(())
    }
}

fn get_text_u16(buf: &mut &[u8], what: &'static str) -> Result<String, RecordError> {
    need(buf, 2, what)?;
    let len = buf.get_u16() as usize;
    get_text(buf, len, what)
}

fn get_text(buf: &mut &[u8], len: usize, what: &'static str) -> Result<String, RecordError> {
    need(buf, len, what)?;
    let text = std::str::from_utf8(&buf[..len])
        .map_err(|_| RecordError::BadText(what))?
        .to_owned();
    buf.advance(len);
    Ok(text)
}

impl NodeRecord {
    /// A first record for a node: settling, serving and claiming nothing.
    pub fn new(node: impl Into<String>, boot: u64) -> NodeRecord {
        NodeRecord {
            node: node.into(),
            boot,
            version: 1,
            ownership: OwnershipSection {
                settling: true,
                ..OwnershipSection::default()
            },
            ..NodeRecord::default()
        }
    }

    /// `(boot, version)`: higher is newer.
    pub fn stamp(&self) -> (u64, u64) {
        (self.boot, self.version)
    }

    /// Whether the node can serve `service` (a [`service_id`]).
    pub fn serves(&self, service: ServiceId) -> bool {
        self.layer2.serving.contains(&service)
    }

    fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.layer2.serving.len() * 8);
        put_section(&mut out, SECTION_LABELS, |out| {
            out.put_u16(self.labels.len().min(u16::MAX as usize) as u16);
            for (k, v) in self.labels.iter().take(u16::MAX as usize) {
                let k = &k.as_bytes()[..k.len().min(u16::MAX as usize)];
                let v = &v.as_bytes()[..v.len().min(u16::MAX as usize)];
                out.put_u16(k.len() as u16);
                out.put_slice(k);
                out.put_u16(v.len() as u16);
                out.put_slice(v);
            }
        });
        let ownership = &self.ownership;
        put_section(&mut out, SECTION_OWNERSHIP, |out| {
            out.put_u64(ownership.config_fingerprint);
            out.put_u8(u8::from(ownership.leaving) | (u8::from(ownership.settling) << 1));
            out.put_u16(ownership.claims.len().min(u16::MAX as usize) as u16);
            for address in ownership.claims.iter().take(u16::MAX as usize) {
                crate::codec::put_address(*address, out);
            }
        });
        let layer2 = &self.layer2;
        put_section(&mut out, SECTION_LAYER2, |out| {
            out.put_u16(layer2.links.len().min(u16::MAX as usize) as u16);
            for (name, up) in layer2.links.iter().take(u16::MAX as usize) {
                let name = &name.as_bytes()[..name.len().min(255)];
                out.put_u8(name.len() as u8);
                out.put_slice(name);
                out.put_u8(u8::from(*up));
            }
            out.put_u32(layer2.serving.len() as u32);
            for id in &layer2.serving {
                out.put_u64(id.0);
            }
        });
        let bgp = &self.bgp;
        if bgp != &BgpSection::default() {
            put_section(&mut out, SECTION_BGP, |out| {
                out.put_u8(u8::from(bgp.draining));
                out.put_u16(bgp.announcing.len().min(u16::MAX as usize) as u16);
                for address in bgp.announcing.iter().take(u16::MAX as usize) {
                    crate::codec::put_address(*address, out);
                }
            });
        }
        out
    }

    fn decode_body(node: &str, boot: u64, version: u64, mut buf: &[u8]) -> Result<NodeRecord, RecordError> {
        let buf = &mut buf;
        let mut record = NodeRecord {
            node: node.to_owned(),
            boot,
            version,
            ..NodeRecord::default()
        };
        let mut seen = BTreeSet::new();
        while buf.has_remaining() {
            need(buf, 5, "section header")?;
            let kind = buf.get_u8();
            let length = buf.get_u32() as usize;
            need(buf, length, "section")?;
            let (mut section, rest) = buf.split_at(length);
            *buf = rest;
            if !seen.insert(kind) {
                return Err(RecordError::DuplicateSection(kind));
            }
            let section = &mut section;
            match kind {
                SECTION_LABELS => record.labels = decode_labels(section)?,
                SECTION_OWNERSHIP => record.ownership = decode_ownership(section)?,
                SECTION_LAYER2 => record.layer2 = decode_layer2(section)?,
                SECTION_BGP => record.bgp = decode_bgp(section)?,
                // A newer agent's section: not for this build.
                _ => section.advance(section.len()),
            }
            if section.has_remaining() {
                return Err(RecordError::Trailing(section.remaining()));
            }
        }
        Ok(record)
    }

    /// The record as fragments, each one foca custom broadcast.
    pub fn fragments(&self) -> Result<Vec<Vec<u8>>, RecordError> {
        if self.node.len() > MAX_NAME_LEN || self.node.is_empty() {
            return Err(RecordError::BadText("node name"));
        }
        let body = self.encode_body();
        let chunks: Vec<&[u8]> = if body.is_empty() {
            vec![&body[..]]
        } else {
            body.chunks(FRAGMENT_PAYLOAD).collect()
        };
        if chunks.len() > MAX_FRAGMENTS {
            return Err(RecordError::TooLarge(body.len()));
        }
        let count = chunks.len() as u8;
        Ok(chunks
            .into_iter()
            .enumerate()
            .map(|(index, payload)| {
                let mut out = Vec::with_capacity(20 + self.node.len() + payload.len());
                out.put_u8(FRAGMENT_TAG);
                out.put_u8(self.node.len() as u8);
                out.put_slice(self.node.as_bytes());
                out.put_u64(self.boot);
                out.put_u64(self.version);
                out.put_u8(index as u8);
                out.put_u8(count);
                out.put_slice(payload);
                out
            })
            .collect())
    }
}

/// Appends a section: its kind, its length, then what `write` puts.
fn put_section(out: &mut Vec<u8>, kind: u8, write: impl FnOnce(&mut Vec<u8>)) {
    out.put_u8(kind);
    let at = out.len();
    out.put_u32(0);
    write(out);
    let length = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&length.to_be_bytes());
}

fn decode_labels(buf: &mut &[u8]) -> Result<BTreeMap<String, String>, RecordError> {
    need(buf, 2, "label count")?;
    let mut labels = BTreeMap::new();
    for _ in 0..buf.get_u16() {
        let key = get_text_u16(buf, "label key")?;
        let value = get_text_u16(buf, "label value")?;
        labels.insert(key, value);
    }
    Ok(labels)
}

fn decode_ownership(buf: &mut &[u8]) -> Result<OwnershipSection, RecordError> {
    need(buf, 11, "ownership")?;
    let config_fingerprint = buf.get_u64();
    let flags = buf.get_u8();
    let mut claims = BTreeSet::new();
    for _ in 0..buf.get_u16() {
        let address = crate::codec::get_address(buf).map_err(|_| RecordError::Truncated("claim"))?;
        claims.insert(address);
    }
    Ok(OwnershipSection {
        config_fingerprint,
        leaving: flags & 1 == 1,
        settling: flags & 2 == 2,
        claims,
    })
}

fn decode_layer2(buf: &mut &[u8]) -> Result<Layer2Section, RecordError> {
    need(buf, 2, "link count")?;
    let mut links = BTreeMap::new();
    for _ in 0..buf.get_u16() {
        need(buf, 1, "link name length")?;
        let nl = buf.get_u8() as usize;
        let name = get_text(buf, nl, "link name")?;
        need(buf, 1, "link state")?;
        links.insert(name, buf.get_u8() == 1);
    }
    need(buf, 4, "service count")?;
    let count = buf.get_u32() as usize;
    need(buf, count.saturating_mul(8), "services")?;
    let serving = (0..count).map(|_| ServiceId(buf.get_u64())).collect();
    Ok(Layer2Section { links, serving })
}

fn decode_bgp(buf: &mut &[u8]) -> Result<BgpSection, RecordError> {
    need(buf, 3, "BGP section")?;
    let draining = buf.get_u8() & 1 == 1;
    let mut announcing = BTreeSet::new();
    for _ in 0..buf.get_u16() {
        let address = crate::codec::get_address(buf).map_err(|_| RecordError::Truncated("announced address"))?;
        announcing.insert(address);
    }
    Ok(BgpSection { announcing, draining })
}

/// A decoded fragment header and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// Node the record belongs to.
    pub node: String,
    /// Boot time of the record's identity.
    pub boot: u64,
    /// Record version.
    pub version: u64,
    /// This fragment's index.
    pub index: u8,
    /// How many fragments the record has.
    pub count: u8,
    /// Part of the record body.
    pub payload: &'a [u8],
}

impl Fragment<'_> {
    /// Parses a fragment.
    pub fn parse(mut data: &[u8]) -> Result<Fragment<'_>, RecordError> {
        let buf = &mut data;
        need(buf, 2, "fragment tag")?;
        if buf.get_u8() != FRAGMENT_TAG {
            return Err(RecordError::NotAFragment);
        }
        let nl = buf.get_u8() as usize;
        let node = get_text(buf, nl, "node name")?;
        if node.is_empty() {
            return Err(RecordError::BadText("node name"));
        }
        need(buf, 18, "fragment header")?;
        let boot = buf.get_u64();
        let version = buf.get_u64();
        let index = buf.get_u8();
        let count = buf.get_u8();
        if count == 0 || index >= count {
            return Err(RecordError::BadIndex { index, count });
        }
        Ok(Fragment {
            node,
            boot,
            version,
            index,
            count,
            payload: data,
        })
    }
}

/// What foca keys a record fragment by: a newer fragment of the same node
/// and index replaces an older one still being disseminated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentKey {
    node: String,
    stamp: (u64, u64),
    index: u8,
}

impl foca::Invalidates for FragmentKey {
    fn invalidates(&self, other: &FragmentKey) -> bool {
        self.node == other.node && self.index == other.index && self.stamp >= other.stamp
    }
}

#[derive(Debug)]
struct Assembly {
    stamp: (u64, u64),
    parts: Vec<Option<Vec<u8>>>,
}

/// The latest complete record of every node, and records being assembled.
#[derive(Debug, Default)]
pub struct RecordBook {
    records: BTreeMap<String, NodeRecord>,
    assembling: BTreeMap<String, Assembly>,
    changed: BTreeSet<String>,
    refused: u64,
}

impl RecordBook {
    /// The latest complete record of `node`.
    pub fn get(&self, node: &str) -> Option<&NodeRecord> {
        self.records.get(node)
    }

    /// Every complete record.
    pub fn records(&self) -> impl Iterator<Item = &NodeRecord> {
        self.records.values()
    }

    /// `(node, stamp)` of every complete record, by node name.
    pub fn digest(&self) -> BTreeMap<String, (u64, u64)> {
        self.records.values().map(|r| (r.node.clone(), r.stamp())).collect()
    }

    /// Nodes whose record changed since the last call.
    pub fn take_changed(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.changed)
    }

    /// Fragments that failed to parse or assembled into a bad record.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Stores a record (this node's own, or a complete one).
    pub fn insert(&mut self, record: NodeRecord) {
        self.assembling.remove(&record.node);
        self.changed.insert(record.node.clone());
        self.records.insert(record.node.clone(), record);
    }

    /// Takes one fragment. Returns its key if it was new (so it is worth
    /// passing on), `None` if stale or already held.
    pub fn receive(&mut self, data: &[u8]) -> Result<Option<FragmentKey>, RecordError> {
        let fragment = match Fragment::parse(data) {
            Ok(f) => f,
            Err(e) => {
                self.refused += 1;
                return Err(e);
            }
        };
        let stamp = (fragment.boot, fragment.version);
        if self.records.get(&fragment.node).is_some_and(|r| r.stamp() >= stamp) {
            return Ok(None);
        }
        let assembly = self
            .assembling
            .entry(fragment.node.clone())
            .or_insert_with(|| Assembly {
                stamp,
                parts: vec![None; fragment.count as usize],
            });
        if assembly.stamp > stamp {
            return Ok(None);
        }
        if assembly.stamp < stamp || assembly.parts.len() != fragment.count as usize {
            *assembly = Assembly {
                stamp,
                parts: vec![None; fragment.count as usize],
            };
        }
        let slot = &mut assembly.parts[fragment.index as usize];
        if slot.is_some() {
            return Ok(None);
        }
        *slot = Some(fragment.payload.to_vec());
        let key = FragmentKey {
            node: fragment.node.clone(),
            stamp,
            index: fragment.index,
        };
        if assembly.parts.iter().all(Option::is_some) {
            let body: Vec<u8> = assembly.parts.iter().flatten().flatten().copied().collect();
            self.assembling.remove(&fragment.node);
            match NodeRecord::decode_body(&fragment.node, stamp.0, stamp.1, &body) {
                Ok(record) => self.insert(record),
                Err(e) => {
                    self.refused += 1;
                    return Err(e);
                }
            }
        }
        Ok(Some(key))
    }
}

/// The record book shared between the mesh and foca's broadcast handler.
#[derive(Debug, Clone, Default)]
pub struct SharedBook(Arc<Mutex<RecordBook>>);

impl SharedBook {
    /// Locks the book (a panic elsewhere cannot leave it half-written: every
    /// change is a single insert).
    pub fn lock(&self) -> MutexGuard<'_, RecordBook> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl foca::BroadcastHandler<crate::identity::NodeId> for SharedBook {
    type Key = FragmentKey;
    type Error = RecordError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&crate::identity::NodeId>,
    ) -> Result<Option<FragmentKey>, RecordError> {
        self.lock().receive(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big_record(services: usize) -> NodeRecord {
        let mut r = NodeRecord::new("worker-17", 1_700_000_000_000);
        r.version = 9;
        r.ownership.config_fingerprint = 0xfeed;
        r.labels.insert("kubernetes.io/hostname".into(), "worker-17".into());
        r.labels.insert("topology.kubernetes.io/zone".into(), "a".into());
        r.layer2.links.insert("eth0".into(), true);
        r.layer2.links.insert("eth1".into(), false);
        r.layer2.serving = (0..services).map(|i| service_id(&format!("default/svc-{i}"))).collect();
        r.ownership.claims.insert("203.0.113.9".parse().unwrap());
        r.ownership.claims.insert("2001:db8::9".parse().unwrap());
        r.bgp.announcing.insert("203.0.113.20".parse().unwrap());
        r.bgp.announcing.insert("2001:db8:100::20".parse().unwrap());
        r.bgp.draining = true;
        r
    }

    #[test]
    fn a_thousand_services_assemble_in_any_order() {
        let record = big_record(1000);
        let mut fragments = record.fragments().unwrap();
        assert!(fragments.len() > 1, "8 KB of services need several fragments");
        assert!(fragments.iter().all(|f| f.len() <= FRAGMENT_PAYLOAD + 64));
        fragments.reverse();
        let mut book = RecordBook::default();
        for (i, f) in fragments.iter().enumerate() {
            assert!(book.receive(f).unwrap().is_some());
            assert_eq!(book.get("worker-17").is_some(), i + 1 == fragments.len());
        }
        assert_eq!(book.get("worker-17"), Some(&record));
        assert_eq!(book.take_changed().len(), 1);
        assert_eq!(book.receive(&fragments[0]), Ok(None), "a held record is not new again");
    }

    #[test]
    fn newer_versions_replace_and_older_ones_are_stale() {
        let mut book = RecordBook::default();
        let mut r = big_record(3);
        for f in r.fragments().unwrap_or_default() {
            let _ = book.receive(&f);
        }
        let old = r.fragments().unwrap_or_default();
        assert!(
            book.get("worker-17")
                .is_some_and(|x| x.ownership.settling && !x.ownership.leaving)
        );
        r.version += 1;
        r.ownership.leaving = true;
        r.ownership.settling = false;
        for f in r.fragments().unwrap_or_default() {
            let _ = book.receive(&f);
        }
        assert!(
            book.get("worker-17")
                .is_some_and(|x| x.ownership.leaving && !x.ownership.settling)
        );
        assert_eq!(book.receive(&old[0]), Ok(None));
        // A restart (higher boot) beats any version of the old one.
        let restarted = NodeRecord::new("worker-17", r.boot + 1);
        for f in restarted.fragments().unwrap_or_default() {
            let _ = book.receive(&f);
        }
        assert_eq!(book.get("worker-17").map(NodeRecord::stamp), Some(restarted.stamp()));
        use foca::Invalidates;
        let k = |v| FragmentKey {
            node: "a".into(),
            stamp: (1, v),
            index: 0,
        };
        assert!(k(2).invalidates(&k(1)) && !k(1).invalidates(&k(2)));
    }

    #[test]
    fn bad_fragments_are_refused_and_counted() {
        let mut book = RecordBook::default();
        assert!(book.receive(b"").is_err());
        assert!(book.receive(b"Xjunk").is_err());
        let mut f = big_record(1).fragments().unwrap_or_default().remove(0);
        f.truncate(f.len() - 3);
        assert!(
            book.receive(&f).is_err(),
            "a complete record with a cut body is refused"
        );
        assert_eq!(book.refused(), 3);
        assert!(book.get("worker-17").is_none());
    }

    /// A section this build does not know (what a newer agent's BGP
    /// section is to an older one) is skipped; the known ones still read.
    /// A section twice, or one with bytes left over, is refused.
    #[test]
    fn unknown_sections_are_skipped_and_bad_ones_refused() {
        let record = big_record(2);
        let mut body = record.encode_body();
        put_section(&mut body, 200, |out| out.put_slice(b"what BGP will say"));
        let decoded = NodeRecord::decode_body("worker-17", record.boot, record.version, &body).unwrap();
        assert_eq!(decoded, record);

        let mut twice = record.encode_body();
        put_section(&mut twice, SECTION_LAYER2, |out| {
            out.put_u16(0);
            out.put_u32(0);
        });
        let error = NodeRecord::decode_body("worker-17", 1, 1, &twice).unwrap_err();
        assert_eq!(error, RecordError::DuplicateSection(SECTION_LAYER2));

        let mut long = Vec::new();
        put_section(&mut long, SECTION_LABELS, |out| {
            out.put_u16(0);
            out.put_u8(7);
        });
        let error = NodeRecord::decode_body("worker-17", 1, 1, &long).unwrap_err();
        assert_eq!(error, RecordError::Trailing(1));
        assert_eq!(record.layer2.to_string(), "serving 2 services; links up 1 of 2");
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = RecordBook::default().receive(&bytes);
        }
    }
}
