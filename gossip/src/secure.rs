//! Authenticated, encrypted gossip datagrams: a sans-IO envelope around
//! every packet foca sends.
//!
//! ```text
//!  0        1        2                                  18             26             34
//! +--------+--------+----------------------------------+--------------+--------------+------------+---------+
//! |version | key id |  sender epoch (16 random bytes)  |   sequence   | send time ms |ciphertext  | tag (16)|
//! +--------+--------+----------------------------------+--------------+--------------+------------+---------+
//!  \_____________________ header: authenticated, sent in clear _____________________/
//! ```
//!
//! - Cipher: XChaCha20-Poly1305 under a 32-byte cluster key. The 24-byte
//!   nonce is the sender epoch followed by the sequence number: the epoch is
//!   drawn at random when a process starts, the sequence counts up, so no
//!   nonce repeats under one key, across nodes and restarts.
//! - Associated data: the header and the cluster label, so a packet of
//!   another cluster sharing the key, or with an edited header, fails.
//! - Keyring: packets are sealed with the primary key and opened with any
//!   key of the ring (found by key id), so a key is rotated without
//!   downtime: add the new key everywhere, make it primary everywhere, then
//!   remove the old one.
//! - Replay: a packet older than `max_age` (or further in the future) is
//!   refused; within that window each sender epoch keeps a sliding bitmap
//!   of the last 128 sequence numbers, so a captured packet is accepted at
//!   most once. Windows are only moved by packets that authenticated.
//! - A packet that fails any check is dropped before its content is parsed,
//!   and counted by reason ([`DropCounters`]).

use std::collections::{BTreeMap, HashMap};

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};

/// Envelope version.
pub const VERSION: u8 = 1;
/// Header length.
pub const HEADER_LEN: usize = 34;
/// Authentication tag length.
pub const TAG_LEN: usize = 16;
/// Bytes the envelope adds to a datagram.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Width of the per-epoch replay window, in sequence numbers.
pub const REPLAY_WINDOW: u64 = 128;

/// A cluster key: 32 bytes and a one-byte id carried in every packet.
#[derive(Clone)]
pub struct ClusterKey {
    /// Key id.
    pub id: u8,
    bytes: [u8; 32],
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKey {{ id: {}, .. }}", self.id)
    }
}

impl ClusterKey {
    /// A key from raw bytes.
    pub fn new(id: u8, bytes: [u8; 32]) -> ClusterKey {
        ClusterKey { id, bytes }
    }

    /// Parses `ID:HEX` (ID 0 to 255, 64 hex digits), the form key files
    /// and Secrets hold.
    pub fn parse(text: &str) -> Result<ClusterKey, KeyError> {
        let (id, hex) = text.trim().split_once(':').ok_or(KeyError::Format)?;
        let id: u8 = id.trim().parse().map_err(|_| KeyError::Format)?;
        let hex = hex.trim().as_bytes();
        if hex.len() != 64 {
            return Err(KeyError::Length(hex.len()));
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(KeyError::Format);
            bytes[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(ClusterKey { id, bytes })
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not `ID:HEX`.
    #[error("a cluster key is written ID:HEX, ID 0 to 255 and HEX 64 hexadecimal digits")]
    Format,
    /// Wrong number of hex digits.
    #[error("a cluster key has 64 hexadecimal digits (32 bytes), not {0}")]
    Length(usize),
    /// Two keys share an id.
    #[error("key id {0} appears twice in the keyring")]
    DuplicateId(u8),
}

/// The keys a node seals with (the primary) and opens with (all).
#[derive(Clone)]
pub struct Keyring {
    primary: u8,
    ciphers: BTreeMap<u8, XChaCha20Poly1305>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring {{ primary: {}, ids: {:?} }}",
            self.primary,
            self.ciphers.keys().collect::<Vec<_>>()
        )
    }
}

impl Keyring {
    /// A keyring sealing with `primary` and also accepting `others`.
    pub fn new(primary: &ClusterKey, others: &[ClusterKey]) -> Result<Keyring, KeyError> {
        let mut ciphers = BTreeMap::new();
        for key in std::iter::once(primary).chain(others) {
            let cipher = XChaCha20Poly1305::new(&key.bytes.into());
            if ciphers.insert(key.id, cipher).is_some() {
                return Err(KeyError::DuplicateId(key.id));
            }
        }
        Ok(Keyring {
            primary: primary.id,
            ciphers,
        })
    }

    /// Id of the primary key.
    pub fn primary_id(&self) -> u8 {
        self.primary
    }
}

/// A sender epoch: 16 random bytes drawn when a process starts.
pub type Epoch = [u8; 16];

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum DropReason {
    /// Shorter than header and tag.
    #[error("shorter than the envelope")]
    Truncated,
    /// Unknown envelope version.
    #[error("unknown envelope version")]
    Version,
    /// Key id not in the keyring.
    #[error("sealed with a key this node does not have")]
    UnknownKey,
    /// Older than the maximum age (or a replay of an evicted epoch).
    #[error("too old")]
    Stale,
    /// Sent further in the future than the clock tolerance.
    #[error("from the future (clock skew)")]
    Future,
    /// Already received, or older than the replay window.
    #[error("replayed")]
    Replayed,
    /// Authentication failed: wrong key, wrong cluster label or tampering.
    #[error("failed authentication")]
    Forged,
}

impl DropReason {
    /// Every reason.
    pub const ALL: [DropReason; 7] = [
        DropReason::Truncated,
        DropReason::Version,
        DropReason::UnknownKey,
        DropReason::Stale,
        DropReason::Future,
        DropReason::Replayed,
        DropReason::Forged,
    ];
}

/// Dropped packets by reason, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: BTreeMap<DropReason, u64>,
}

impl DropCounters {
    /// Packets dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts.get(&reason).copied().unwrap_or(0)
    }

    /// Every reason with a non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        self.counts.iter().map(|(r, n)| (*r, *n))
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

#[derive(Debug, Clone)]
struct EpochWindow {
    highest: u64,
    /// Bit i set: sequence `highest - i` was received.
    seen: u128,
    last_seen_ms: u64,
}

impl EpochWindow {
    fn check(&self, sequence: u64) -> bool {
        if sequence > self.highest {
            return true;
        }
        let age = self.highest - sequence;
        age < REPLAY_WINDOW && self.seen & (1u128 << age) == 0
    }

    fn mark(&mut self, sequence: u64, now_ms: u64) {
        if sequence > self.highest {
            let shift = sequence - self.highest;
            self.seen = if shift >= REPLAY_WINDOW { 0 } else { self.seen << shift };
            self.highest = sequence;
        }
        self.seen |= 1u128 << (self.highest - sequence);
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
    }
}

/// Seals outgoing and opens incoming datagrams.
#[derive(Debug)]
pub struct SecureChannel {
    keyring: Keyring,
    label: Vec<u8>,
    epoch: Epoch,
    next_sequence: u64,
    max_age_ms: u64,
    windows: HashMap<Epoch, EpochWindow>,
    max_epochs: usize,
    drops: DropCounters,
}

impl SecureChannel {
    /// A channel for the cluster `label`, sending under `epoch`, refusing
    /// packets more than `max_age_ms` old or ahead (the tolerated clock skew
    /// plus transit).
    pub fn new(keyring: Keyring, label: &[u8], epoch: Epoch, max_age_ms: u64) -> SecureChannel {
        SecureChannel {
            keyring,
            label: label.to_vec(),
            epoch,
            next_sequence: 0,
            max_age_ms,
            windows: HashMap::new(),
            max_epochs: 4096,
            drops: DropCounters::default(),
        }
    }

    /// Replaces the keyring (key rotation); replay state is kept.
    pub fn set_keyring(&mut self, keyring: Keyring) {
        self.keyring = keyring;
    }

    /// Dropped packets so far.
    pub fn drops(&self) -> &DropCounters {
        &self.drops
    }

    fn header(&self, key_id: u8, sequence: u64, now_ms: u64) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = VERSION;
        h[1] = key_id;
        h[2..18].copy_from_slice(&self.epoch);
        h[18..26].copy_from_slice(&sequence.to_be_bytes());
        h[26..34].copy_from_slice(&now_ms.to_be_bytes());
        h
    }

    fn aad(&self, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(header.len() + self.label.len());
        aad.extend_from_slice(header);
        aad.extend_from_slice(&self.label);
        aad
    }

    /// Seals `plaintext` at unix time `now_ms`.
    pub fn seal(&mut self, plaintext: &[u8], now_ms: u64) -> Vec<u8> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let key_id = self.keyring.primary;
        let header = self.header(key_id, sequence, now_ms);
        let mut nonce = [0u8; 24];
        nonce[..16].copy_from_slice(&self.epoch);
        nonce[16..].copy_from_slice(&sequence.to_be_bytes());
        let aad = self.aad(&header);
        let mut packet = header.to_vec();
        if let Some(cipher) = self.keyring.ciphers.get(&key_id) {
            // Encryption into a Vec cannot fail for datagram-sized input.
            if let Ok(sealed) = cipher.encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            ) {
                packet.extend_from_slice(&sealed);
            }
        }
        packet
    }

    /// Opens a packet received at unix time `now_ms`.
    pub fn open(&mut self, packet: &[u8], now_ms: u64) -> Result<Vec<u8>, DropReason> {
        let result = self.try_open(packet, now_ms);
        if let Err(reason) = result {
            *self.drops.counts.entry(reason).or_default() += 1;
        }
        result
    }

    fn try_open(&mut self, packet: &[u8], now_ms: u64) -> Result<Vec<u8>, DropReason> {
        if packet.len() < OVERHEAD {
            return Err(DropReason::Truncated);
        }
        let (header, body) = packet.split_at(HEADER_LEN);
        if header[0] != VERSION {
            return Err(DropReason::Version);
        }
        let cipher = self.keyring.ciphers.get(&header[1]).ok_or(DropReason::UnknownKey)?;
        let mut epoch = [0u8; 16];
        epoch.copy_from_slice(&header[2..18]);
        let mut word = [0u8; 8];
        word.copy_from_slice(&header[18..26]);
        let sequence = u64::from_be_bytes(word);
        word.copy_from_slice(&header[26..34]);
        let sent_ms = u64::from_be_bytes(word);
        if sent_ms.saturating_add(self.max_age_ms) < now_ms {
            return Err(DropReason::Stale);
        }
        if sent_ms > now_ms.saturating_add(self.max_age_ms) {
            return Err(DropReason::Future);
        }
        if self.windows.get(&epoch).is_some_and(|w| !w.check(sequence)) {
            return Err(DropReason::Replayed);
        }
        let mut nonce = [0u8; 24];
        nonce[..16].copy_from_slice(&epoch);
        nonce[16..].copy_from_slice(&sequence.to_be_bytes());
        let aad = self.aad(header);
        let plaintext = cipher
            .decrypt(&nonce.into(), Payload { msg: body, aad: &aad })
            .map_err(|_| DropReason::Forged)?;
        // Authenticated: only now may the packet move replay state.
        self.forget_old_epochs(now_ms);
        self.windows
            .entry(epoch)
            .or_insert(EpochWindow {
                highest: sequence,
                seen: 0,
                last_seen_ms: now_ms,
            })
            .mark(sequence, now_ms);
        Ok(plaintext)
    }

    /// Epochs silent for longer than twice the maximum age can go: any
    /// packet of theirs would now be refused as stale. If a flood of
    /// authenticated epochs exceeds the cap, the quietest go first.
    fn forget_old_epochs(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.max_age_ms.saturating_mul(2));
        if self.windows.len() >= self.max_epochs {
            self.windows.retain(|_, w| w.last_seen_ms >= horizon);
        }
        while self.windows.len() >= self.max_epochs {
            let Some(oldest) = self.windows.iter().min_by_key(|(_, w)| w.last_seen_ms).map(|(e, _)| *e) else {
                break;
            };
            self.windows.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8, fill: u8) -> ClusterKey {
        ClusterKey::new(id, [fill; 32])
    }

    fn channel(primary: &ClusterKey, others: &[ClusterKey], epoch: u8) -> SecureChannel {
        SecureChannel::new(
            Keyring::new(primary, others).unwrap(),
            b"cluster-a",
            [epoch; 16],
            30_000,
        )
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn round_trip_and_overhead() {
        let (mut a, mut b) = (channel(&key(1, 7), &[], 1), channel(&key(1, 7), &[], 2));
        let packet = a.seal(b"hello mesh", NOW);
        assert_eq!(packet.len(), 10 + OVERHEAD);
        assert!(!packet.windows(10).any(|w| w == b"hello mesh"), "payload is encrypted");
        assert_eq!(b.open(&packet, NOW + 5).unwrap(), b"hello mesh");
    }

    #[test]
    fn every_tampered_byte_is_refused() {
        let (mut a, mut b) = (channel(&key(1, 7), &[], 1), channel(&key(1, 7), &[], 2));
        let packet = a.seal(b"state", NOW);
        for i in 0..packet.len() {
            let mut bad = packet.clone();
            bad[i] ^= 0x01;
            let err = b.open(&bad, NOW).unwrap_err();
            match i {
                0 => assert_eq!(err, DropReason::Version),
                1 => assert_eq!(err, DropReason::UnknownKey),
                // The send time: a high bit makes it stale or future, a low one forged.
                26..=33 => assert!(
                    matches!(err, DropReason::Stale | DropReason::Future | DropReason::Forged),
                    "byte {i}: {err}"
                ),
                _ => assert_eq!(err, DropReason::Forged, "byte {i}"),
            }
        }
        assert_eq!(b.open(&packet, NOW).unwrap(), b"state", "the original still opens");
        assert_eq!(b.drops().total(), packet.len() as u64);
        assert!(b.drops().get(DropReason::Forged) >= packet.len() as u64 - 10);
    }

    #[test]
    fn other_cluster_label_or_key_fails() {
        let mut a = channel(&key(1, 7), &[], 1);
        let mut other_label = SecureChannel::new(Keyring::new(&key(1, 7), &[]).unwrap(), b"cluster-b", [3; 16], 30_000);
        let mut other_key = channel(&key(1, 8), &[], 4);
        let packet = a.seal(b"x", NOW);
        assert_eq!(other_label.open(&packet, NOW), Err(DropReason::Forged));
        assert_eq!(other_key.open(&packet, NOW), Err(DropReason::Forged));
        assert_eq!(other_key.open(&packet[..20], NOW), Err(DropReason::Truncated));
    }

    #[test]
    fn replays_and_stale_packets_are_refused() {
        let (mut a, mut b) = (channel(&key(1, 7), &[], 1), channel(&key(1, 7), &[], 2));
        let packets: Vec<Vec<u8>> = (0..200).map(|i| a.seal(&[i as u8], NOW)).collect();
        assert!(b.open(&packets[5], NOW).is_ok());
        assert_eq!(b.open(&packets[5], NOW), Err(DropReason::Replayed));
        // Out of order within the window is fine, once.
        assert!(b.open(&packets[3], NOW).is_ok());
        assert_eq!(b.open(&packets[3], NOW), Err(DropReason::Replayed));
        assert!(b.open(&packets[199], NOW).is_ok());
        assert_eq!(
            b.open(&packets[10], NOW),
            Err(DropReason::Replayed),
            "behind the 128-packet window"
        );
        assert!(b.open(&packets[150], NOW).is_ok());
        let late = a.seal(b"late", NOW);
        assert_eq!(b.open(&late, NOW + 30_001), Err(DropReason::Stale));
        let early = a.seal(b"early", NOW + 30_001);
        assert_eq!(b.open(&early, NOW), Err(DropReason::Future));
        // A forged packet never moves the window.
        let mut forged = a.seal(b"f", NOW);
        let sequence_of_forged = forged.clone();
        forged[40] ^= 1;
        assert_eq!(b.open(&forged, NOW), Err(DropReason::Forged));
        assert!(b.open(&sequence_of_forged, NOW).is_ok());
    }

    #[test]
    fn key_rotation_without_downtime() {
        let (old, new) = (key(1, 7), key(2, 9));
        let mut a = channel(&old, &[], 1);
        let mut b = channel(&old, &[], 2);
        // Step 1: everyone accepts the new key, still sealing with the old.
        a.set_keyring(Keyring::new(&old, std::slice::from_ref(&new)).unwrap());
        b.set_keyring(Keyring::new(&old, std::slice::from_ref(&new)).unwrap());
        // Step 2: a switches first; both directions keep working.
        a.set_keyring(Keyring::new(&new, std::slice::from_ref(&old)).unwrap());
        assert_eq!(b.open(&a.seal(b"1", NOW), NOW).unwrap(), b"1");
        assert_eq!(a.open(&b.seal(b"2", NOW), NOW).unwrap(), b"2");
        // Step 3: the old key is removed everywhere.
        a.set_keyring(Keyring::new(&new, &[]).unwrap());
        b.set_keyring(Keyring::new(&new, &[]).unwrap());
        assert_eq!(b.open(&a.seal(b"3", NOW), NOW).unwrap(), b"3");
        let mut straggler = channel(&old, &[], 3);
        assert_eq!(b.open(&straggler.seal(b"4", NOW), NOW), Err(DropReason::UnknownKey));
        assert!(Keyring::new(&old, &[key(1, 3)]).is_err());
    }

    #[test]
    fn key_text_form() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let k = ClusterKey::parse(&format!("7:{hex}")).unwrap();
        assert_eq!((k.id, k.bytes[1], k.bytes[31]), (7, 0x11, 0xff));
        assert_eq!(ClusterKey::parse("7:abcd").unwrap_err(), KeyError::Length(4));
        assert_eq!(ClusterKey::parse(&format!("300:{hex}")).unwrap_err(), KeyError::Format);
        assert_eq!(
            ClusterKey::parse(&format!("1:{}", hex.replace('0', "g"))).unwrap_err(),
            KeyError::Format
        );
        assert!(!format!("{k:?}").contains("11"), "Debug never prints key bytes");
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics_and_never_opens(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut b = channel(&key(1, 7), &[], 2);
            proptest::prop_assert!(b.open(&bytes, NOW).is_err());
        }
    }
}
