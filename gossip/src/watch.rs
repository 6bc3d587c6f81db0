//! The owner watch: a fast, targeted failure detector beside SWIM, so that a
//! node announcing addresses is found dead in a quarter of a second instead
//! of SWIM's detection bound, without making every member chatty.
//!
//! SWIM detects any member's death for the whole mesh; clients only lose
//! anything when an *owner* (a node announcing addresses) dies. So each
//! owner sends a small heartbeat every `interval_ms` to one watcher (the
//! live member that follows it in name order, chosen by the mesh: one pair
//! per owner, whatever its number of addresses). The watcher:
//!
//! 1. arms on the first heartbeat (so a watcher an owner never chose, or a
//!    heartbeat stream that never started, raises nothing);
//! 2. after `suspect_ms` of silence suspects the owner: pings it directly
//!    every [`PROBE_EVERY_MS`], and asks up to [`HELPERS`] other members to
//!    ping it too until the watcher's deadline (SWIM's indirect probe, on a
//!    deadline);
//! 3. after `down_ms` of silence declares it down, but only with a helper's
//!    report that it heard nothing either: an owner reachable from a helper
//!    is alive (the watcher stops watching it until heartbeats resume), and a
//!    watcher no helper answers may be the one cut off, so it declares
//!    nothing and leaves the owner to SWIM.
//!
//! Anything heard from the owner (a heartbeat, a pong, any mesh datagram)
//! ends the suspicion: alive, but not heartbeating here, it is watched again
//! once a heartbeat comes. A watcher that was itself stalled (its calls came
//! late) shifts its silences by the delay, so its own stall never reads as
//! the owner's.
//!
//! The watcher echoes a heartbeat that asks for it: an owner asks while
//! it has heard no member for an interval (and until its watcher first
//! echoes), so it hears its mesh about every other interval, and one that hears
//! it anyway (another owner's heartbeats, SWIM's traffic) costs its watcher
//! nothing. An owner that has heard nothing from any member for
//! `suspect_ms` pings its watcher and two helpers every [`PROBE_EVERY_MS`]
//! (under heavy loss an answer gets through); one that has still heard
//! nothing after [`WatchTiming::cut_off_ms`] (shorter than the watcher's
//! deadline by an interval and a margin) is cut off: it announces nothing
//! until it hears again ([`Watch::cut_off`]), so an owner cut off from the
//! mesh goes quiet before its watcher's side takes over, not when SWIM's
//! detection finds the mesh gone. An owner that sent its watcher nothing
//! for [`WatchTiming::declarable_gap_ms`] (its process stalled) may have
//! been declared down meanwhile: it announces nothing until its watcher
//! answers a ping sent after the gap. The answer comes after every datagram
//! queued before it, so a declaration sent meanwhile is read first; a
//! watcher that declared it answers nothing. An owner whose watcher never
//! echoed (one running without this) does not fence itself.
//!
//! `down_ms` must exceed the longest silence a live owner may show: a stall
//! of the owner's process (one scheduling hiccup, a CPU quota) plus one
//! interval. With the `fast` profile (20 ms heartbeats, 235 ms) an owner
//! stalled for 200 ms is not declared down, and a crashed one is declared
//! down 235 ms after its last heartbeat, 215 to 235 ms after the crash.
//! What a declaration sets off (foca told the member is down, every member
//! told at once, the new owner claiming and announcing) is the mesh's
//! ([`crate::mesh`]); this module is the pure timing and messages, on the
//! caller's clock in milliseconds.
//!
//! Messages (inside the mesh's datagram kind 5, after the secure envelope):
//!
//! | sub-kind | content |
//! |---|---|
//! | 1 heartbeat | `flags:u8` (bit 0, last: this owner stops sending to this watcher; bit 1: echo wanted) |
//! | 2 ping | `nonce:u32` |
//! | 3 pong | `nonce:u32` |
//! | 4 probe request | `nonce:u32 within_ms:u16 target:name` |
//! | 5 probe result | `nonce:u32 alive:u8 target:name` |
//! | 6 down | `boot:u64 rejoin:u32 target:name` |
//! | 7 echo | (watcher to owner, for a heartbeat that asked) |

use std::collections::{BTreeMap, VecDeque};

use bytes::{Buf, BufMut};

use crate::identity::MAX_NAME_LEN;

/// How often a suspect is pinged, by its watcher and by each helper (ms).
pub const PROBE_EVERY_MS: u64 = 10;

/// How many other members a watcher asks to ping a suspect.
pub const HELPERS: usize = 2;

/// How long past `down_ms` a watcher waits for a helper's report before it
/// leaves the suspect to SWIM (ms).
pub const REPORT_GRACE_MS: u64 = 100;

/// A helper reports this long before the watcher's deadline (ms), so that
/// the report is there when the deadline comes.
const REPORT_AHEAD_MS: u64 = 3;

/// A call this much later than [`Watch::poll_timeout`] asked for means this
/// node was stalled meanwhile (ms).
const LATE_MS: u64 = 30;

/// How much later one heartbeat may take than the one before it to reach
/// the watcher (ms): a watcher's silence is at most the owner's gap between
/// two heartbeats plus this.
pub const TRANSIT_JITTER_MS: u64 = 10;

/// Timing of the owner watch (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchTiming {
    /// Heartbeat interval, owner to watcher.
    pub interval_ms: u64,
    /// Silence before the watcher suspects and probes.
    pub suspect_ms: u64,
    /// Silence before the watcher declares the owner down.
    pub down_ms: u64,
}

impl WatchTiming {
    /// Silence (from every member) after which an owner takes itself for
    /// cut off: an interval and 10 ms before its watcher's deadline, since
    /// the watcher counts from a heartbeat sent up to an interval earlier.
    pub fn cut_off_ms(&self) -> u64 {
        self.down_ms.saturating_sub(self.interval_ms + 10).max(self.interval_ms)
    }

    /// A gap between two of an owner's heartbeats this long may have let
    /// its watcher's deadline pass (the watcher's silence is the gap plus
    /// [`TRANSIT_JITTER_MS`] at most): the owner announces nothing until its
    /// watcher answers a ping sent after the gap.
    pub fn declarable_gap_ms(&self) -> u64 {
        self.down_ms.saturating_sub(TRANSIT_JITTER_MS).max(self.interval_ms)
    }

    /// The shortest stall of an owner's process that may leave a
    /// [`WatchTiming::declarable_gap_ms`] between its heartbeats (a gap is at
    /// most the stall plus an interval): what it announced before such a
    /// stall is not to be acted on until the mesh has confirmed it.
    pub fn stall_ms(&self) -> u64 {
        self.declarable_gap_ms()
            .saturating_sub(self.interval_ms)
            .max(self.interval_ms)
    }
}

/// Why a watch message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The message ended inside a field.
    #[error("truncated watch message")]
    Truncated,
    /// An unknown sub-kind.
    #[error("unknown watch message {0}")]
    Kind(u8),
    /// A node name that is not UTF-8 or too long.
    #[error("bad node name in a watch message")]
    Name,
}

/// One watch message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// Owner to watcher: alive (or, `last`, no longer sending here).
    Heartbeat {
        /// The owner stops sending to this watcher.
        last: bool,
        /// The owner wants an [`WatchMessage::Echo`] back.
        echo: bool,
    },
    /// Are you there?
    Ping {
        /// Echoed in the pong.
        nonce: u32,
    },
    /// Here.
    Pong {
        /// The ping's.
        nonce: u32,
    },
    /// Watcher to helper: ping `target` until `within_ms` from now, then
    /// report.
    ProbeRequest {
        /// The suspicion's.
        nonce: u32,
        /// How long to try.
        within_ms: u16,
        /// The suspect.
        target: String,
    },
    /// Helper to watcher: what the probe found.
    ProbeResult {
        /// The request's.
        nonce: u32,
        /// The target answered.
        alive: bool,
        /// The suspect.
        target: String,
    },
    /// Watcher to owner: heartbeat received.
    Echo,
    /// Watcher to every member: this member (in this identity) is down.
    Down {
        /// The member's boot.
        boot: u64,
        /// The member's rejoin counter.
        rejoin: u32,
        /// The member.
        target: String,
    },
}

impl WatchMessage {
    /// The message's bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            WatchMessage::Heartbeat { last, echo } => {
                out.put_u8(1);
                out.put_u8(u8::from(*last) | (u8::from(*echo) << 1));
            }
            WatchMessage::Ping { nonce } => {
                out.put_u8(2);
                out.put_u32(*nonce);
            }
            WatchMessage::Pong { nonce } => {
                out.put_u8(3);
                out.put_u32(*nonce);
            }
            WatchMessage::ProbeRequest {
                nonce,
                within_ms,
                target,
            } => {
                out.put_u8(4);
                out.put_u32(*nonce);
                out.put_u16(*within_ms);
                put_name(out, target);
            }
            WatchMessage::ProbeResult { nonce, alive, target } => {
                out.put_u8(5);
                out.put_u32(*nonce);
                out.put_u8(u8::from(*alive));
                put_name(out, target);
            }
            WatchMessage::Echo => out.put_u8(7),
            WatchMessage::Down { boot, rejoin, target } => {
                out.put_u8(6);
                out.put_u64(*boot);
                out.put_u32(*rejoin);
                put_name(out, target);
            }
        }
    }

    /// Reads one message; trailing bytes are refused with the rest.
    pub fn decode(mut body: &[u8]) -> Result<WatchMessage, WatchError> {
        let buf = &mut body;
        let message = match take_u8(buf)? {
            1 => {
                let flags = take_u8(buf)?;
                WatchMessage::Heartbeat {
                    last: flags & 1 != 0,
                    echo: flags & 2 != 0,
                }
            }
            2 => WatchMessage::Ping { nonce: take_u32(buf)? },
            3 => WatchMessage::Pong { nonce: take_u32(buf)? },
            4 => WatchMessage::ProbeRequest {
                nonce: take_u32(buf)?,
                within_ms: take_u16(buf)?,
                target: take_name(buf)?,
            },
            5 => WatchMessage::ProbeResult {
                nonce: take_u32(buf)?,
                alive: take_u8(buf)? != 0,
                target: take_name(buf)?,
            },
            6 => WatchMessage::Down {
                boot: take_u64(buf)?,
                rejoin: take_u32(buf)?,
                target: take_name(buf)?,
            },
            7 => WatchMessage::Echo,
            other => return Err(WatchError::Kind(other)),
        };
        if !buf.is_empty() {
            return Err(WatchError::Truncated);
        }
        Ok(message)
    }
}

fn take_u8(buf: &mut &[u8]) -> Result<u8, WatchError> {
    if buf.remaining() < 1 {
        return Err(WatchError::Truncated);
    }
    Ok(buf.get_u8())
}

fn take_u16(buf: &mut &[u8]) -> Result<u16, WatchError> {
    if buf.remaining() < 2 {
        return Err(WatchError::Truncated);
    }
    Ok(buf.get_u16())
}

fn take_u32(buf: &mut &[u8]) -> Result<u32, WatchError> {
    if buf.remaining() < 4 {
        return Err(WatchError::Truncated);
    }
    Ok(buf.get_u32())
}

fn take_u64(buf: &mut &[u8]) -> Result<u64, WatchError> {
    if buf.remaining() < 8 {
        return Err(WatchError::Truncated);
    }
    Ok(buf.get_u64())
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let bytes = &name.as_bytes()[..name.len().min(MAX_NAME_LEN)];
    out.put_u8(bytes.len() as u8);
    out.put_slice(bytes);
}

fn take_name(buf: &mut &[u8]) -> Result<String, WatchError> {
    let len = usize::from(take_u8(buf)?);
    if len > MAX_NAME_LEN {
        return Err(WatchError::Name);
    }
    if buf.remaining() < len {
        return Err(WatchError::Truncated);
    }
    let name = std::str::from_utf8(&buf[..len])
        .map_err(|_| WatchError::Name)?
        .to_owned();
    buf.advance(len);
    Ok(name)
}

/// An owner this node watches.
#[derive(Debug, Clone)]
struct Watched {
    last_heard_ms: u64,
    suspicion: Option<Suspicion>,
}

/// A suspicion under way: its nonce, the next direct ping, the helpers'
/// reports that they heard nothing either.
#[derive(Debug, Clone)]
struct Suspicion {
    nonce: u32,
    next_ping_ms: u64,
    silent_reports: usize,
}

/// An owner's ping to its watcher after a gap in its heartbeats: answered,
/// the watcher had not declared it down.
#[derive(Debug, Clone, Copy)]
struct Confirming {
    nonce: u32,
    next_ping_ms: u64,
}

/// A probe this node runs for a watcher.
#[derive(Debug, Clone)]
struct HelperProbe {
    requester: String,
    target: String,
    nonce: u32,
    deadline_ms: u64,
    next_ping_ms: u64,
}

/// The owner watch of one node: the heartbeats it sends as an owner, the
/// owners it watches, the probes it runs for other watchers.
#[derive(Debug, Clone)]
pub struct Watch {
    timing: WatchTiming,
    /// Whom this node sends heartbeats to (`None`: it owns nothing).
    watcher: Option<String>,
    next_heartbeat_ms: u64,
    /// The watcher has echoed a heartbeat since it was chosen.
    echoed: bool,
    /// When this node last heard any member (ms).
    last_heard_any_ms: u64,
    /// When this owner next pings its watcher and helpers, having heard no
    /// member for `suspect_ms`.
    next_self_check_ms: u64,
    /// Found cut off, and not heard from anyone since: it stays so even
    /// if its watcher is forgotten meanwhile (SWIM declaring the members
    /// it cannot hear down, one by one).
    latched: bool,
    /// When this owner last sent its watcher a heartbeat (ms).
    last_heartbeat_ms: Option<u64>,
    /// A gap between heartbeats long enough for the watcher to have
    /// declared this owner down ([`WatchTiming::declarable_gap_ms`]):
    /// the nonce of the ping the watcher must answer before this owner
    /// announces again, and when it is sent next.
    confirming: Option<Confirming>,
    watched: BTreeMap<String, Watched>,
    probes: Vec<HelperProbe>,
    outbox: VecDeque<(String, WatchMessage)>,
    declared: VecDeque<String>,
    next_nonce: u32,
    /// The latest time this watch was given (ms).
    now_ms: u64,
    /// What [`Watch::poll_timeout`] said last: a call much later than it
    /// means this node was stalled.
    due_ms: Option<u64>,
}

impl Watch {
    /// A watch with `timing`; `seed` starts its nonces.
    pub fn new(timing: WatchTiming, seed: u32) -> Watch {
        Watch {
            timing,
            watcher: None,
            next_heartbeat_ms: 0,
            echoed: false,
            last_heard_any_ms: 0,
            latched: false,
            last_heartbeat_ms: None,
            confirming: None,
            next_self_check_ms: 0,
            watched: BTreeMap::new(),
            probes: Vec::new(),
            outbox: VecDeque::new(),
            declared: VecDeque::new(),
            next_nonce: seed,
            now_ms: 0,
            due_ms: None,
        }
    }

    /// The owners watched here, by name.
    pub fn watched(&self) -> impl Iterator<Item = &str> {
        self.watched.keys().map(String::as_str)
    }

    /// Sets whom this node sends heartbeats to (`None`: it owns nothing).
    /// A watcher left behind is told so; a new one gets a heartbeat at once.
    pub fn set_watcher(&mut self, watcher: Option<String>, now_ms: u64) {
        if watcher == self.watcher {
            return;
        }
        if let Some(old) = self.watcher.take() {
            self.outbox.push_back((
                old,
                WatchMessage::Heartbeat {
                    last: true,
                    echo: false,
                },
            ));
        }
        self.watcher = watcher;
        self.echoed = false;
        self.last_heartbeat_ms = None;
        if self.watcher.is_none() {
            self.confirming = None;
        }
        self.next_heartbeat_ms = now_ms;
        self.send_heartbeat(now_ms);
    }

    fn send_heartbeat(&mut self, now_ms: u64) {
        let Some(watcher) = self.watcher.clone() else { return };
        if now_ms < self.next_heartbeat_ms {
            return;
        }
        let echo = !self.echoed || now_ms >= self.last_heard_any_ms + self.timing.interval_ms;
        if self.silent_to_watcher(now_ms) {
            // Its watcher may have declared it down meanwhile: a ping the
            // watcher answers says it did not (and, answered after every
            // datagram queued before it, that no declaration is on its way).
            let nonce = self.next_nonce;
            self.next_nonce = self.next_nonce.wrapping_add(1);
            self.confirming = Some(Confirming {
                nonce,
                next_ping_ms: now_ms,
            });
        }
        self.last_heartbeat_ms = Some(now_ms);
        self.outbox
            .push_back((watcher, WatchMessage::Heartbeat { last: false, echo }));
        // Behind by more than an interval (a stall): the next one an
        // interval from now, not a burst to catch up.
        self.next_heartbeat_ms += self.timing.interval_ms;
        if self.next_heartbeat_ms <= now_ms {
            self.next_heartbeat_ms = now_ms + self.timing.interval_ms;
        }
    }

    /// Whether this owner's watcher, having echoed, has had no heartbeat
    /// from it for [`WatchTiming::declarable_gap_ms`] at `now_ms`.
    fn silent_to_watcher(&self, now_ms: u64) -> bool {
        self.watcher.is_some()
            && self.echoed
            && self
                .last_heartbeat_ms
                .is_some_and(|last| now_ms >= last + self.timing.declarable_gap_ms())
    }

    /// Pings the watcher for confirmation, every [`PROBE_EVERY_MS`] until
    /// it answers.
    fn ping_to_confirm(&mut self, now_ms: u64) {
        let Some(watcher) = self.watcher.clone() else {
            self.confirming = None;
            return;
        };
        let Some(confirming) = self.confirming.as_mut().filter(|c| now_ms >= c.next_ping_ms) else {
            return;
        };
        confirming.next_ping_ms = now_ms + PROBE_EVERY_MS;
        let nonce = confirming.nonce;
        self.outbox.push_back((watcher, WatchMessage::Ping { nonce }));
    }

    /// Something came from `name` (any datagram): it is alive.
    /// Under suspicion, it is alive but not heartbeating here (its path to
    /// this watcher lost, or a watcher it no longer chose and the goodbye
    /// lost): watched again from its next heartbeat.
    pub fn heard(&mut self, name: &str, now_ms: u64) {
        self.shift_for_stall(now_ms);
        self.last_heard_any_ms = self.last_heard_any_ms.max(now_ms);
        self.latched = false;
        if let Some(watched) = self.watched.get_mut(name) {
            if watched.suspicion.is_some() {
                self.watched.remove(name);
            } else {
                watched.last_heard_ms = watched.last_heard_ms.max(now_ms);
            }
        }
        self.due_ms = self.poll_timeout();
    }

    /// `name` is down or gone: stop watching it and probing for it or on
    /// its behalf, and stop sending it heartbeats.
    pub fn forget(&mut self, name: &str) {
        self.watched.remove(name);
        self.probes.retain(|p| p.target != name && p.requester != name);
        if self.watcher.as_deref() == Some(name) {
            self.watcher = None;
        }
    }

    /// Takes a message from member `from` (the caller has checked that it
    /// is a live member, and handles [`WatchMessage::Down`] itself).
    pub fn handle_message(&mut self, from: &str, message: WatchMessage, now_ms: u64) {
        self.shift_for_stall(now_ms);
        match message {
            WatchMessage::Heartbeat { last: true, .. } => {
                self.watched.remove(from);
            }
            WatchMessage::Heartbeat { last: false, echo } => {
                if echo {
                    self.outbox.push_back((from.to_owned(), WatchMessage::Echo));
                }
                let watched = self.watched.entry(from.to_owned()).or_insert(Watched {
                    last_heard_ms: now_ms,
                    suspicion: None,
                });
                watched.last_heard_ms = watched.last_heard_ms.max(now_ms);
                watched.suspicion = None;
            }
            WatchMessage::Ping { nonce } => {
                self.outbox.push_back((from.to_owned(), WatchMessage::Pong { nonce }));
            }
            WatchMessage::Pong { nonce } => {
                if self.watcher.as_deref() == Some(from) && self.confirming.is_some_and(|c| c.nonce == nonce) {
                    self.confirming = None;
                }
                let answered: Vec<HelperProbe> = self
                    .probes
                    .iter()
                    .filter(|p| p.target == from && p.nonce == nonce)
                    .cloned()
                    .collect();
                self.probes.retain(|p| !(p.target == from && p.nonce == nonce));
                for probe in answered {
                    self.outbox.push_back((
                        probe.requester,
                        WatchMessage::ProbeResult {
                            nonce,
                            alive: true,
                            target: probe.target,
                        },
                    ));
                }
            }
            WatchMessage::ProbeRequest {
                nonce,
                within_ms,
                target,
            } => {
                let duplicate = self.probes.iter().any(|p| p.requester == from && p.nonce == nonce);
                if !duplicate && target != from {
                    self.outbox.push_back((target.clone(), WatchMessage::Ping { nonce }));
                    self.probes.push(HelperProbe {
                        requester: from.to_owned(),
                        target,
                        nonce,
                        deadline_ms: now_ms + u64::from(within_ms),
                        next_ping_ms: now_ms + PROBE_EVERY_MS,
                    });
                }
            }
            WatchMessage::ProbeResult { nonce, alive, target } => {
                let Some(watched) = self.watched.get_mut(&target) else {
                    return;
                };
                let Some(suspicion) = watched.suspicion.as_mut().filter(|s| s.nonce == nonce) else {
                    return;
                };
                if alive {
                    // Reachable from a helper but not heartbeating here (a
                    // path to this watcher down, or a watcher it no longer
                    // chose): alive; watched again when heartbeats resume.
                    self.watched.remove(&target);
                } else {
                    suspicion.silent_reports += 1;
                }
            }
            WatchMessage::Echo => {
                if self.watcher.as_deref() == Some(from) {
                    self.echoed = true;
                    self.last_heard_any_ms = self.last_heard_any_ms.max(now_ms);
                }
            }
            WatchMessage::Down { .. } => {}
        }
        self.due_ms = self.poll_timeout();
    }

    /// Fires what is due at `now_ms`: heartbeats, suspicions and their
    /// pings and requests, helper probes and their reports, declarations.
    /// `helpers` are the live members this node may ask to probe (itself
    /// excluded); `may_declare` is whether it may declare a member down
    /// now (settled, with quorum).
    pub fn handle_timeout(&mut self, now_ms: u64, helpers: &[String], may_declare: bool) {
        self.shift_for_stall(now_ms);
        self.latched = self.cut_off(now_ms);
        self.send_heartbeat(now_ms);
        self.ping_to_confirm(now_ms);
        self.check_self(now_ms, helpers);
        let timing = self.timing;
        let mut gone: Vec<String> = Vec::new();
        let names: Vec<String> = self.watched.keys().cloned().collect();
        for name in names {
            let Some(watched) = self.watched.get_mut(&name) else {
                continue;
            };
            let silence = now_ms.saturating_sub(watched.last_heard_ms);
            if silence < timing.suspect_ms {
                continue;
            }
            if watched.suspicion.is_none() {
                let nonce = self.next_nonce;
                self.next_nonce = self.next_nonce.wrapping_add(1);
                watched.suspicion = Some(Suspicion {
                    nonce,
                    next_ping_ms: now_ms,
                    silent_reports: 0,
                });
                let within = (timing.down_ms.saturating_sub(silence)).saturating_sub(REPORT_AHEAD_MS);
                let within_ms = u16::try_from(within).unwrap_or(u16::MAX);
                // Helpers in turn from the nonce, so successive suspicions
                // ask different members.
                let candidates: Vec<&String> = helpers.iter().filter(|h| **h != name).collect();
                for k in 0..HELPERS.min(candidates.len()) {
                    let helper = candidates[(nonce as usize + k) % candidates.len()].clone();
                    self.outbox.push_back((
                        helper,
                        WatchMessage::ProbeRequest {
                            nonce,
                            within_ms,
                            target: name.clone(),
                        },
                    ));
                }
            }
            let Some(suspicion) = watched.suspicion.as_mut() else {
                continue;
            };
            if now_ms >= suspicion.next_ping_ms {
                suspicion.next_ping_ms = now_ms + PROBE_EVERY_MS;
                let nonce = suspicion.nonce;
                self.outbox.push_back((name.clone(), WatchMessage::Ping { nonce }));
            }
            if silence >= timing.down_ms && suspicion.silent_reports > 0 && may_declare {
                self.declared.push_back(name.clone());
                gone.push(name);
            } else if silence >= timing.down_ms + REPORT_GRACE_MS {
                // No helper reported: this node may be the one cut off.
                gone.push(name);
            }
        }
        for name in gone {
            self.watched.remove(&name);
        }
        let mut reports = Vec::new();
        for probe in &mut self.probes {
            if now_ms >= probe.deadline_ms {
                reports.push((
                    probe.requester.clone(),
                    WatchMessage::ProbeResult {
                        nonce: probe.nonce,
                        alive: false,
                        target: probe.target.clone(),
                    },
                ));
            } else if now_ms >= probe.next_ping_ms {
                probe.next_ping_ms = now_ms + PROBE_EVERY_MS;
                self.outbox
                    .push_back((probe.target.clone(), WatchMessage::Ping { nonce: probe.nonce }));
            }
        }
        self.probes.retain(|p| now_ms < p.deadline_ms);
        self.outbox.extend(reports);
        self.due_ms = self.poll_timeout();
    }

    /// An owner that has heard no member for `suspect_ms`: pings its
    /// watcher and two helpers, every [`PROBE_EVERY_MS`] until it hears one.
    fn check_self(&mut self, now_ms: u64, helpers: &[String]) {
        let Some(watcher) = self.watcher.clone().filter(|_| self.echoed) else {
            return;
        };
        if now_ms < self.last_heard_any_ms + self.timing.suspect_ms || now_ms < self.next_self_check_ms {
            return;
        }
        self.next_self_check_ms = now_ms + PROBE_EVERY_MS;
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(1);
        let others = helpers.iter().filter(|h| **h != watcher).take(HELPERS).cloned();
        for to in std::iter::once(watcher.clone()).chain(others) {
            self.outbox.push_back((to, WatchMessage::Ping { nonce }));
        }
    }

    /// A call later than this watch asked for by more than [`LATE_MS`]:
    /// this node was stalled, and the silences it measures grew by the
    /// delay without the owners being silent. They are shifted back.
    fn shift_for_stall(&mut self, now_ms: u64) {
        let expected = self.due_ms.map(|due| due.max(self.now_ms));
        self.now_ms = self.now_ms.max(now_ms);
        let Some(expected) = expected else { return };
        if now_ms <= expected + LATE_MS {
            return;
        }
        let late = now_ms - expected;
        self.last_heard_any_ms += late;
        for watched in self.watched.values_mut() {
            watched.last_heard_ms += late;
            if let Some(s) = watched.suspicion.as_mut() {
                s.next_ping_ms += late;
            }
        }
        for probe in &mut self.probes {
            probe.deadline_ms += late;
            probe.next_ping_ms += late;
        }
        self.due_ms = None;
    }

    /// When [`Watch::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        let timing = self.timing;
        let now = self.now_ms;
        let heartbeat = self.watcher.as_ref().map(|_| self.next_heartbeat_ms);
        let confirming = self.confirming.map(|c| c.next_ping_ms);
        let cut_off = (self.watcher.is_some() && self.echoed)
            .then(|| {
                let silent_from = self.last_heard_any_ms + timing.suspect_ms;
                let check = self.next_self_check_ms.max(silent_from);
                check.min(self.last_heard_any_ms + timing.cut_off_ms())
            })
            .filter(|at| *at > now);
        let watched = self.watched.values().map(|w| {
            let down = w.last_heard_ms + timing.down_ms;
            match &w.suspicion {
                None => w.last_heard_ms + timing.suspect_ms,
                // A report in and the deadline past: declare now.
                Some(s) if s.silent_reports > 0 && down <= now => now,
                Some(s) if down > now => s.next_ping_ms.min(down),
                Some(s) => s.next_ping_ms.min(down + REPORT_GRACE_MS),
            }
        });
        let probes = self.probes.iter().map(|p| p.next_ping_ms.min(p.deadline_ms));
        heartbeat
            .into_iter()
            .chain(confirming)
            .chain(cut_off)
            .chain(watched)
            .chain(probes)
            .min()
    }

    /// Whether this node, an owner whose watcher echoes, announces nothing
    /// at `now_ms`: it has heard no member for [`WatchTiming::cut_off_ms`]
    /// (until it hears one again), or its watcher has heard no heartbeat
    /// from it for [`WatchTiming::declarable_gap_ms`] (until the watcher
    /// answers a ping sent after the gap).
    pub fn cut_off(&self, now_ms: u64) -> bool {
        self.latched
            || self.confirming.is_some()
            || self.silent_to_watcher(now_ms)
            || (self.watcher.is_some() && self.echoed && now_ms >= self.last_heard_any_ms + self.timing.cut_off_ms())
    }

    /// The next message to send: to whom (a member's name), and what.
    pub fn poll_transmit(&mut self) -> Option<(String, WatchMessage)> {
        self.outbox.pop_front()
    }

    /// The next member this watch declares down.
    pub fn poll_declared(&mut self) -> Option<String> {
        self.declared.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: WatchTiming = WatchTiming {
        interval_ms: 20,
        suspect_ms: 120,
        down_ms: 235,
    };

    /// Owner `o`, watcher `w` and helper `h` on a lossless network with
    /// a delay of `delay` ms; `o_alive` says whether the owner answers.
    struct Trio {
        now: u64,
        nodes: BTreeMap<&'static str, Watch>,
        in_flight: Vec<(u64, &'static str, &'static str, WatchMessage)>,
        delay: u64,
        /// Nodes whose messages go nowhere and who hear nothing.
        dead: Vec<&'static str>,
        /// Nodes stalled until a time: they hear and fire nothing, and
        /// take what came meanwhile when it ends.
        stalled_until: BTreeMap<&'static str, u64>,
        declared: Vec<(u64, &'static str, String)>,
        /// Echoes sent.
        echoes: usize,
    }

    const NAMES: [&str; 3] = ["h", "o", "w"];

    impl Trio {
        fn new() -> Trio {
            let mut nodes = BTreeMap::new();
            for (i, name) in NAMES.iter().enumerate() {
                nodes.insert(*name, Watch::new(FAST, i as u32 * 1000));
            }
            let mut trio = Trio {
                now: 0,
                nodes,
                in_flight: Vec::new(),
                delay: 1,
                dead: Vec::new(),
                stalled_until: BTreeMap::new(),
                declared: Vec::new(),
                echoes: 0,
            };
            if let Some(o) = trio.nodes.get_mut("o") {
                o.set_watcher(Some("w".into()), 0);
            }
            trio.flush();
            trio
        }

        fn name(name: &str) -> &'static str {
            NAMES.iter().copied().find(|n| *n == name).unwrap_or("?")
        }

        fn active(&self, name: &str) -> bool {
            !self.dead.contains(&name) && self.stalled_until.get(name).is_none_or(|until| self.now >= *until)
        }

        fn flush(&mut self) {
            for name in NAMES {
                let Some(watch) = self.nodes.get_mut(name) else {
                    continue;
                };
                while let Some((to, message)) = watch.poll_transmit() {
                    self.echoes += usize::from(message == WatchMessage::Echo);
                    if !self.dead.contains(&name) {
                        self.in_flight
                            .push((self.now + self.delay, name, Trio::name(&to), message));
                    }
                }
                while let Some(declared) = watch.poll_declared() {
                    self.declared.push((self.now, name, declared));
                }
            }
        }

        /// Runs to `until`, one millisecond at a time.
        fn run_to(&mut self, until: u64) {
            while self.now < until {
                self.now += 1;
                let now = self.now;
                let mut arriving = Vec::new();
                self.in_flight.retain(|m| {
                    if m.0 <= now {
                        arriving.push(m.clone());
                        false
                    } else {
                        true
                    }
                });
                for (at, from, to, message) in arriving {
                    if self.dead.contains(&to) {
                        continue;
                    }
                    if !self.active(to) {
                        // Queued in its socket until the stall ends.
                        self.in_flight.push((self.stalled_until[to], from, to, message));
                        continue;
                    }
                    let _ = at;
                    if let Some(watch) = self.nodes.get_mut(to) {
                        watch.heard(from, now);
                        watch.handle_message(from, message, now);
                    }
                }
                for name in NAMES {
                    if !self.active(name) {
                        continue;
                    }
                    let helpers: Vec<String> = NAMES.iter().filter(|n| **n != name).map(|n| n.to_string()).collect();
                    if let Some(watch) = self.nodes.get_mut(name)
                        && watch.poll_timeout().is_some_and(|due| due <= now)
                    {
                        watch.handle_timeout(now, &helpers, true);
                    }
                }
                self.flush();
            }
        }
    }

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let all = [
            WatchMessage::Heartbeat {
                last: true,
                echo: false,
            },
            WatchMessage::Heartbeat {
                last: false,
                echo: true,
            },
            WatchMessage::Heartbeat {
                last: false,
                echo: false,
            },
            WatchMessage::Ping { nonce: 7 },
            WatchMessage::Pong { nonce: u32::MAX },
            WatchMessage::ProbeRequest {
                nonce: 1,
                within_ms: 115,
                target: "node-1".into(),
            },
            WatchMessage::ProbeResult {
                nonce: 2,
                alive: true,
                target: "node-2".into(),
            },
            WatchMessage::Down {
                boot: 99,
                rejoin: 3,
                target: "node-3".into(),
            },
            WatchMessage::Echo,
        ];
        for message in all {
            let mut bytes = Vec::new();
            message.encode(&mut bytes);
            assert_eq!(WatchMessage::decode(&bytes), Ok(message.clone()));
            for cut in 0..bytes.len() {
                assert!(WatchMessage::decode(&bytes[..cut]).is_err(), "{message:?} cut at {cut}");
            }
            bytes.push(0);
            assert!(WatchMessage::decode(&bytes).is_err(), "trailing byte");
        }
        assert_eq!(WatchMessage::decode(&[9]), Err(WatchError::Kind(9)));
        assert_eq!(
            WatchMessage::decode(&[4, 0, 0, 0, 1, 0, 1, 2, 0xff, 0xfe]),
            Err(WatchError::Name)
        );
    }

    #[test]
    fn a_live_owner_is_never_suspected() {
        let mut trio = Trio::new();
        trio.run_to(10_000);
        assert!(trio.declared.is_empty());
        assert_eq!(trio.nodes["w"].watched().collect::<Vec<_>>(), ["o"]);
    }

    /// An owner that hears nothing but its watcher asks for an echo every
    /// other heartbeat (an interval of silence); one that hears another
    /// member every 10 ms asks only its new watcher's first. Neither is
    /// ever cut off.
    #[test]
    fn an_owner_asks_for_echoes_only_when_it_hears_nothing_else() {
        let mut quiet = Trio::new();
        quiet.run_to(1_000);
        assert!(
            (20..=30).contains(&quiet.echoes),
            "{} echoes in a second of 50 heartbeats",
            quiet.echoes
        );
        let mut chatty = Trio::new();
        for step in 1..=100 {
            chatty.run_to(step * 10);
            if let Some(owner) = chatty.nodes.get_mut("o") {
                owner.heard("h", step * 10);
            }
            assert!(!chatty.nodes["o"].cut_off(step * 10));
        }
        assert_eq!(chatty.echoes, 1);
        assert!(!quiet.nodes["o"].cut_off(1_000));
        assert!(quiet.declared.is_empty() && chatty.declared.is_empty());
    }

    #[test]
    fn a_dead_owner_is_declared_within_the_bound_by_its_watcher_alone() {
        for crash in [1_000, 1_005, 1_013, 1_019] {
            let mut trio = Trio::new();
            trio.run_to(crash);
            trio.dead.push("o");
            trio.run_to(crash + 1_000);
            assert_eq!(trio.declared.len(), 1, "{:?}", trio.declared);
            let (at, by, whom) = &trio.declared[0];
            assert_eq!((*by, whom.as_str()), ("w", "o"));
            let after = at - crash;
            // Silence counted from the last heartbeat, sent up to an
            // interval before the crash.
            assert!(
                (FAST.down_ms - FAST.interval_ms..=FAST.down_ms + 2).contains(&after),
                "declared {after} ms after the crash"
            );
        }
    }

    /// Neither declared nor silent of its own accord: its heartbeats' gap
    /// stays under [`WatchTiming::declarable_gap_ms`].
    #[test]
    fn an_owner_stalled_for_200_ms_is_not_declared() {
        for start in 1_000..1_020 {
            let mut trio = Trio::new();
            trio.run_to(start);
            trio.stalled_until.insert("o", start + 200);
            while trio.now < start + 2_000 {
                trio.run_to(trio.now + 1);
                let awake = trio.active("o");
                assert!(
                    !(awake && trio.nodes["o"].cut_off(trio.now)),
                    "stall from {start}: cut off at {}",
                    trio.now
                );
            }
            assert!(trio.declared.is_empty(), "stall from {start}: {:?}", trio.declared);
        }
    }

    /// An owner stalled long enough that its watcher may have declared it
    /// down announces nothing when it wakes, whatever it reads first (the
    /// echoes and pings queued meanwhile), until its watcher answers a ping
    /// sent after the stall.
    #[test]
    fn an_owner_silent_past_its_watchers_deadline_waits_for_its_watcher() {
        for (stall, timer_first) in [
            (FAST.declarable_gap_ms(), false),
            (FAST.declarable_gap_ms(), true),
            (400, false),
        ] {
            let mut trio = Trio::new();
            trio.run_to(1_000);
            let last = trio.nodes["o"].last_heartbeat_ms.unwrap_or(0);
            let woke = last + stall;
            trio.stalled_until.insert("o", woke);
            trio.run_to(woke - 1);
            if timer_first {
                // Its timer runs before it reads what was queued.
                if let Some(o) = trio.nodes.get_mut("o") {
                    o.handle_timeout(woke, &["w".into(), "h".into()], true);
                }
                trio.flush();
            }
            trio.run_to(woke);
            assert!(trio.nodes["o"].cut_off(woke), "stall {stall}: announcing on waking");
            assert!(trio.nodes["o"].echoed, "stall {stall}: queued echoes were read");
            while trio.nodes["o"].cut_off(trio.now) && trio.now < woke + 100 {
                trio.run_to(trio.now + 1);
            }
            assert!(
                trio.now - woke <= 2 * trio.delay,
                "stall {stall}: confirmed {} ms after waking",
                trio.now - woke
            );
        }
    }

    #[test]
    fn an_owner_stalled_past_the_bound_is_declared() {
        let mut trio = Trio::new();
        trio.run_to(1_000);
        trio.stalled_until.insert("o", 1_400);
        trio.run_to(2_000);
        assert_eq!(trio.declared.len(), 1);
    }

    #[test]
    fn a_watcher_that_hears_no_helper_declares_nothing() {
        let mut trio = Trio::new();
        trio.run_to(1_000);
        // The watcher cut off from both: it may be the one that is alone.
        trio.dead.push("o");
        trio.dead.push("h");
        trio.run_to(3_000);
        assert!(trio.declared.is_empty());
        assert_eq!(trio.nodes["w"].watched().count(), 0, "left to SWIM");
    }

    #[test]
    fn an_owner_a_helper_still_reaches_is_alive() {
        let mut trio = Trio::new();
        trio.run_to(1_000);
        // Only the owner's heartbeats to its watcher stop (its watcher
        // changed, say, and the goodbye was lost): the helper's ping is
        // answered.
        if let Some(o) = trio.nodes.get_mut("o") {
            o.watcher = None;
        }
        trio.run_to(3_000);
        assert!(trio.declared.is_empty());
        assert_eq!(trio.nodes["w"].watched().count(), 0);
    }

    #[test]
    fn a_stalled_watcher_does_not_take_its_own_stall_for_the_owners() {
        let mut trio = Trio::new();
        trio.run_to(1_000);
        trio.stalled_until.insert("w", 1_500);
        trio.run_to(3_000);
        assert!(trio.declared.is_empty(), "{:?}", trio.declared);
        assert_eq!(trio.nodes["w"].watched().collect::<Vec<_>>(), ["o"]);
    }

    #[test]
    fn an_owner_that_stops_owning_says_goodbye() {
        let mut trio = Trio::new();
        trio.run_to(1_000);
        if let Some(o) = trio.nodes.get_mut("o") {
            o.set_watcher(None, 1_000);
        }
        trio.flush();
        trio.run_to(1_010);
        assert_eq!(trio.nodes["w"].watched().count(), 0);
        trio.run_to(3_000);
        assert!(trio.declared.is_empty());
    }

    #[test]
    fn an_owner_that_hears_no_one_is_cut_off_before_its_watcher_declares_it() {
        let mut trio = Trio::new();
        trio.run_to(1_000);
        assert!(!trio.nodes["o"].cut_off(1_000), "echoed, and heard");
        // The owner alone on its side: it hears nothing, nothing hears it.
        let (o, mut others) = (trio.nodes.remove("o"), std::mem::take(&mut trio.nodes));
        trio.dead.push("o");
        trio.nodes = std::mem::take(&mut others);
        let mut o = o.unwrap_or_else(|| Watch::new(FAST, 0));
        let mut fenced_at = None;
        for now in 1_001..1_400 {
            if o.poll_timeout().is_some_and(|due| due <= now) {
                o.handle_timeout(now, &["w".into(), "h".into()], true);
            }
            while o.poll_transmit().is_some() {}
            if fenced_at.is_none() && o.cut_off(now) {
                fenced_at = Some(now);
            }
            trio.run_to(now);
        }
        let (declared_at, _, _) = trio.declared.first().cloned().unwrap_or((u64::MAX, "", String::new()));
        let fenced_at = fenced_at.unwrap_or(u64::MAX);
        assert!(
            fenced_at < declared_at,
            "cut off at {fenced_at}, declared at {declared_at}"
        );
        // Its watcher forgotten (SWIM found it down): still cut off.
        o.forget("w");
        assert!(o.cut_off(1_400));
        // Heard again: no longer cut off.
        o.heard("h", 1_400);
        assert!(!o.cut_off(1_400));
    }
}
