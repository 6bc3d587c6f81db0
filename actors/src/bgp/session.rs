//! One BGP session, sans-IO: RFC 4271 section 8's finite state machine
//! over one TCP connection, with its timers, the OPEN this side sends and
//! the checks on the one it receives, and what the two negotiate.
//!
//! The core owns no socket and reads no clock. Its driver (the per-peer
//! actor) feeds it [`Input`]s (events named after the RFC's: a manual start
//! or stop, the TCP connection coming up or failing, each decoded message,
//! a message that failed to decode) with the current time
//! ([`Session::handle_input`]), acts on the [`Output`]s
//! [`Session::poll_output`] then gives (connect, send, close), and calls
//! [`Session::handle_timeout`] at [`Session::poll_timeout`]. So the whole
//! machine runs on virtual time in tests, two cores wired to each other.
//!
//! ```text
//!            ManualStart                 connection up: send OPEN
//!   Idle ───────────────▶ Connect ─────────────────────────────▶ OpenSent
//!    ▲  ▲  (passive:        │  ▲ connect retry                      │ OPEN ok:
//!    │  │   Active)          ▼  │                                   │ send KEEPALIVE
//!    │  │                  Active ──── connection up: send OPEN ───▶│
//!    │  │                                                           ▼
//!    │  └── error, hold timer, NOTIFICATION, connection lost ◀── OpenConfirm
//!    │       (restart after a delay that doubles per failure)       │ KEEPALIVE
//!    └──────────────── ManualStop (no restart) ◀──── Established ◀──┘
//! ```
//!
//! Simplifications RFC 4271 allows: no DelayOpen, no peer oscillation
//! damping beyond the doubling restart delay, and one connection per core:
//! when both sides connect at once, [`crate::bgp::connections`] runs a
//! core per connection and keeps the one [`collision_keeps`] names
//! (section 6.8).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use meshlb_wire::bgp::notification::{cease_subcode, code, fsm_subcode, open_subcode};
use meshlb_wire::bgp::{
    BgpError, Capability, ExtendedNextHop, Family, GracefulRestart, Message, Notification, Open, SessionParams,
    route_refresh_subtype,
};

/// The hold time set while waiting for the peer's OPEN (RFC 4271 section
/// 8.2.2 suggests 4 minutes).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// The first delay before an automatic restart after a failure; it doubles
/// with each failure in a row, up to [`MAX_RESTART_DELAY`].
pub const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);

/// The longest delay before an automatic restart.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// The AS the peer must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAs {
    /// Exactly this AS (BGPPeer `peerASN`).
    Exact(u32),
    /// The local AS: iBGP (BGPPeer `dynamicASN: internal`).
    Internal,
    /// Any AS but the local one: eBGP (BGPPeer `dynamicASN: external`).
    External,
}

/// What a session is configured with (from a BGPPeer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// This side's AS.
    pub local_as: u32,
    /// The AS the peer must have.
    pub peer_as: PeerAs,
    /// This side's BGP identifier (router ID).
    pub router_id: Ipv4Addr,
    /// The hold time proposed, seconds: 0 (no keepalives) or at least 3.
    pub hold_time: u16,
    /// The keepalive interval wanted, seconds (default: a third of the
    /// negotiated hold time; never more than that).
    pub keepalive_time: Option<u16>,
    /// ConnectRetryTime: how long a connection attempt may take, and the
    /// wait between attempts (BGPPeer `connectTime`).
    pub connect_retry: Duration,
    /// Only accept connections, never initiate one.
    pub passive: bool,
    /// The families this side offers.
    pub families: Vec<Family>,
    /// Whether to advertise route refresh, plain (RFC 2918) and enhanced
    /// (RFC 7313).
    pub route_refresh: bool,
    /// Whether to offer IPv4 routes with IPv6 next hops (RFC 8950), as an
    /// unnumbered session over link-local addresses needs.
    pub extended_next_hop: bool,
    /// The graceful restart capability to advertise, if any.
    pub graceful_restart: Option<GracefulRestart>,
}

impl SessionConfig {
    /// The OPEN this side sends.
    pub fn open(&self) -> Open {
        let mut capabilities: Vec<Capability> = self.families.iter().copied().map(Capability::Multiprotocol).collect();
        if self.route_refresh {
            capabilities.push(Capability::RouteRefresh);
            capabilities.push(Capability::EnhancedRouteRefresh);
        }
        if self.extended_next_hop {
            capabilities.push(Capability::ExtendedNextHop(vec![ExtendedNextHop::IPV4_OVER_IPV6]));
        }
        if let Some(gr) = &self.graceful_restart {
            capabilities.push(Capability::GracefulRestart(gr.clone()));
        }
        Open::new(self.local_as, self.hold_time, self.router_id, capabilities)
    }
}

/// RFC 4271's session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not trying; a restart may be scheduled.
    Idle,
    /// Connecting.
    Connect,
    /// Waiting for the peer to connect (and, unless passive, retrying).
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Up: UPDATEs flow.
    Established,
}

/// An event for the session (RFC 4271 section 8.1's, by name where one
/// fits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Events 1/4 (ManualStart, ManualStart_with_PassiveTcpEstablishment).
    ManualStart,
    /// Event 2 (ManualStop): a Cease NOTIFICATION if a connection is up; no
    /// restart.
    ManualStop,
    /// ManualStop for a graceful restart of this speaker (RFC 4724): no
    /// NOTIFICATION, the connection just closes, so a peer helping with the
    /// restart keeps this side's routes until it is back.
    RestartStop,
    /// Events 16/17: the TCP connection is up (outgoing or incoming).
    TcpConnectionConfirmed,
    /// Event 18: the TCP connection failed or closed.
    TcpConnectionFails,
    /// A message received and decoded.
    Message(Message),
    /// A message received that failed to decode (events 21/22/28): its
    /// NOTIFICATION is sent and the connection closed.
    DecodeError(BgpError),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the peer.
    Connect,
    /// Send this message on the connection.
    Send(Message),
    /// The session is up with these terms.
    Established(Negotiated),
    /// The peer asks for this family's routes again (RFC 2918): a family
    /// of the session, with route refresh offered.
    RefreshRequested(Family),
    /// Close the connection (after sending what came before); `established`
    /// says the session was up, so its routes are gone.
    Closed {
        /// Why.
        reason: CloseReason,
        /// Whether the session had been established.
        established: bool,
    },
}

/// Why a connection was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// A manual stop.
    Stopped,
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// This side sent this NOTIFICATION, for this reason.
    NotificationSent(Notification, String),
    /// The TCP connection failed or was closed by the peer.
    ConnectionLost,
    /// A connection attempt took longer than the connect retry time.
    ConnectTimeout,
    /// This side dropped the connection, for this reason: another one to
    /// the peer took its place, or the session takes none.
    Dropped(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Stopped => f.write_str("stopped"),
            CloseReason::NotificationReceived(n) => write!(f, "the peer sent NOTIFICATION {n}"),
            CloseReason::NotificationSent(n, reason) => write!(f, "{reason}; sent NOTIFICATION {n}"),
            CloseReason::ConnectionLost => f.write_str("the TCP connection was lost"),
            CloseReason::ConnectTimeout => f.write_str("the connection attempt timed out"),
            CloseReason::Dropped(reason) => f.write_str(reason),
        }
    }
}

/// What the two OPENs agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's AS.
    pub peer_as: u32,
    /// The peer's BGP identifier.
    pub peer_id: Ipv4Addr,
    /// The hold time, seconds (0: none).
    pub hold_time: u16,
    /// The keepalive interval, seconds (0: none).
    pub keepalive_time: u16,
    /// The families both sides offered.
    pub families: Vec<Family>,
    /// How UPDATEs are encoded.
    pub params: SessionParams,
    /// Whether the peer takes route refresh requests.
    pub route_refresh: bool,
    /// Whether both sides offered enhanced route refresh (RFC 7313): a
    /// re-advertisement goes between Beginning- and End-of-Route-Refresh
    /// markers.
    pub enhanced_route_refresh: bool,
    /// Whether IPv4 routes may carry IPv6 next hops: both sides offered it
    /// (RFC 8950).
    pub ipv4_over_ipv6: bool,
    /// The peer's graceful restart capability, if it sent one.
    pub peer_graceful_restart: Option<GracefulRestart>,
}

impl Negotiated {
    /// Whether the session is iBGP.
    pub fn is_internal(&self, local_as: u32) -> bool {
        self.peer_as == local_as
    }
}

/// Which side initiated a TCP connection to a peer. Of two connections to
/// one peer, a collision (RFC 4271 section 6.8) keeps the one initiated by
/// the side with the higher BGP identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// The connection this side initiated.
    Outgoing,
    /// The connection the peer initiated.
    Incoming,
}

/// The connection that survives a collision between this side
/// (`local_id`) and a peer (`peer_id`); the other is closed with a Cease
/// (Connection Collision Resolution) NOTIFICATION.
pub fn collision_keeps(local_id: Ipv4Addr, peer_id: Ipv4Addr) -> Direction {
    if u32::from(local_id) > u32::from(peer_id) {
        Direction::Outgoing
    } else {
        Direction::Incoming
    }
}

/// The session's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    /// The automatic restart after a failure (RFC 4271's IdleHoldTimer).
    Restart,
}

const TIMERS: [Timer; 4] = [Timer::ConnectRetry, Timer::Hold, Timer::Keepalive, Timer::Restart];

/// One session. See the module documentation.
#[derive(Debug, Clone)]
pub struct Session {
    config: SessionConfig,
    state: State,
    /// Deadlines, by [`Timer`] (in [`TIMERS`]' order).
    deadlines: [Option<Instant>; 4],
    negotiated: Option<Negotiated>,
    /// Failures since the last establishment: sets the restart delay.
    failures: u32,
    /// Whether a manual start is in force (a manual stop clears it).
    started: bool,
    /// What the driver must do, in order.
    outputs: VecDeque<Output>,
}

impl Session {
    /// A session in Idle, not started.
    pub fn new(config: SessionConfig) -> Session {
        Session {
            config,
            state: State::Idle,
            deadlines: [None; 4],
            negotiated: None,
            failures: 0,
            started: false,
            outputs: VecDeque::new(),
        }
    }

    /// A session started on a connection the peer opened: in OpenSent,
    /// with the OPEN to send.
    pub fn accepting(config: SessionConfig, now: Instant) -> Session {
        let mut session = Session::new(config);
        session.started = true;
        session.handle_input(Input::TcpConnectionConfirmed, now);
        session
    }

    /// The next thing the driver must do (connect, send, close, act on
    /// the session's establishment).
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Whether a manual start is in force.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Its state.
    pub fn state(&self) -> State {
        self.state
    }

    /// What was negotiated, while OpenConfirm or Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Its configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// When [`Session::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Takes `input` at `now`.
    pub fn handle_input(&mut self, input: Input, now: Instant) {
        let mut out = Vec::new();
        match input {
            Input::ManualStart => {
                self.started = true;
                if self.state == State::Idle {
                    self.set(Timer::Restart, None);
                    self.start(now, &mut out);
                }
            }
            Input::ManualStop | Input::RestartStop => {
                self.started = false;
                let connected = matches!(self.state, State::OpenSent | State::OpenConfirm | State::Established);
                if connected && input == Input::ManualStop {
                    let cease = Notification::new(code::CEASE, cease_subcode::ADMINISTRATIVE_SHUTDOWN, vec![]);
                    out.push(Output::Send(Message::Notification(cease)));
                }
                self.close(now, CloseReason::Stopped, &mut out);
            }
            Input::TcpConnectionConfirmed => {
                // While trying to connect, or waiting to restart (a peer's
                // connection is then an automatic start, RFC 4271 event
                // 5); a connection in the other states is the driver's
                // collision to resolve ([`crate::bgp::connections`]).
                let waiting_to_restart = self.state == State::Idle && self.started;
                if matches!(self.state, State::Connect | State::Active) || waiting_to_restart {
                    self.set(Timer::Restart, None);
                    self.set(Timer::ConnectRetry, None);
                    out.push(Output::Send(Message::Open(self.config.open())));
                    self.set(Timer::Hold, Some(now + OPEN_HOLD_TIME));
                    self.state = State::OpenSent;
                }
            }
            Input::TcpConnectionFails => match self.state {
                State::Idle => {}
                State::Connect | State::Active => {
                    // Wait out the connect retry time in Active.
                    self.set(Timer::ConnectRetry, Some(now + self.config.connect_retry));
                    self.state = State::Active;
                }
                State::OpenSent | State::OpenConfirm | State::Established => {
                    self.close(now, CloseReason::ConnectionLost, &mut out);
                }
            },
            Input::Message(message) => self.receive(now, message, &mut out),
            Input::DecodeError(error) => {
                if matches!(self.state, State::OpenSent | State::OpenConfirm | State::Established) {
                    self.fail(now, error.notification, error.reason, &mut out);
                }
            }
        }
        self.outputs.extend(out);
    }

    /// Gives up this connection for another one to the same peer: a
    /// Cease with `subcode` if a connection is up (Connection Collision
    /// Resolution, or Connection Rejected), then the close, for `reason`.
    pub fn yield_connection(&mut self, subcode: u8, reason: &str, now: Instant) {
        let mut out = Vec::new();
        if matches!(self.state, State::OpenSent | State::OpenConfirm | State::Established) {
            self.fail(
                now,
                Notification::new(code::CEASE, subcode, vec![]),
                reason.into(),
                &mut out,
            );
        } else {
            self.close(now, CloseReason::Dropped(reason.into()), &mut out);
        }
        self.outputs.extend(out);
    }

    /// Closes the connection without a NOTIFICATION, for `reason`: the
    /// peer opened a new one announcing its restart (RFC 4724 section
    /// 4.2), so this one is dead, and a peer that is in fact alive and
    /// helping with graceful restart keeps the routes across a close
    /// that no NOTIFICATION ended.
    pub fn drop_connection(&mut self, reason: &str, now: Instant) {
        let mut out = Vec::new();
        self.close(now, CloseReason::Dropped(reason.into()), &mut out);
        self.outputs.extend(out);
    }

    /// Sends an UPDATE or a ROUTE-REFRESH marker; only while Established
    /// (otherwise nothing).
    pub fn send_routing(&mut self, message: Message, now: Instant) {
        if self.state != State::Established || !matches!(message, Message::Update(_) | Message::RouteRefresh(_)) {
            return;
        }
        // Sending an UPDATE restarts the keepalive timer (section 8.2.2).
        if let Some(keepalive) = self.keepalive() {
            self.set(Timer::Keepalive, Some(now + keepalive));
        }
        self.outputs.push_back(Output::Send(message));
    }

    /// Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut out = Vec::new();
        for (index, timer) in TIMERS.iter().enumerate() {
            if self.deadlines[index].is_some_and(|at| at <= now) {
                self.deadlines[index] = None;
                self.expire(now, *timer, &mut out);
            }
        }
        self.outputs.extend(out);
    }

    fn expire(&mut self, now: Instant, timer: Timer, out: &mut Vec<Output>) {
        match (timer, self.state) {
            (Timer::Restart, State::Idle) if self.started => self.start(now, out),
            (Timer::ConnectRetry, State::Connect) => {
                // The attempt took too long: drop it and try again.
                out.push(Output::Closed {
                    reason: CloseReason::ConnectTimeout,
                    established: false,
                });
                out.push(Output::Connect);
                self.set(Timer::ConnectRetry, Some(now + self.config.connect_retry));
            }
            (Timer::ConnectRetry, State::Active) => {
                self.set(Timer::ConnectRetry, Some(now + self.config.connect_retry));
                if !self.config.passive {
                    out.push(Output::Connect);
                    self.state = State::Connect;
                }
            }
            (Timer::Hold, State::OpenSent | State::OpenConfirm | State::Established) => {
                let expired = Notification::new(code::HOLD_TIMER_EXPIRED, 0, vec![]);
                self.fail(now, expired, "the hold timer expired".into(), out);
            }
            (Timer::Keepalive, State::OpenConfirm | State::Established) => {
                out.push(Output::Send(Message::Keepalive));
                if let Some(keepalive) = self.keepalive() {
                    self.set(Timer::Keepalive, Some(now + keepalive));
                }
            }
            // A timer of a state left behind.
            _ => {}
        }
    }

    /// Leaves Idle: connects, or (passive) waits for the peer.
    fn start(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.set(Timer::ConnectRetry, Some(now + self.config.connect_retry));
        if self.config.passive {
            self.state = State::Active;
        } else {
            out.push(Output::Connect);
            self.state = State::Connect;
        }
    }

    fn receive(&mut self, now: Instant, message: Message, out: &mut Vec<Output>) {
        let unexpected = |subcode: u8, what: &str, state: State| {
            (
                Notification::new(code::FSM, subcode, vec![]),
                format!("unexpected {what} in {state:?}"),
            )
        };
        let name = message_name(&message);
        match (self.state, message) {
            (State::Idle | State::Connect | State::Active, _) => {}
            (_, Message::Notification(n)) => self.close(now, CloseReason::NotificationReceived(n), out),
            (State::OpenSent, Message::Open(open)) => match self.negotiate(&open) {
                Ok(negotiated) => {
                    out.push(Output::Send(Message::Keepalive));
                    self.negotiated = Some(negotiated);
                    self.set(Timer::Hold, self.hold().map(|h| now + h));
                    self.set(Timer::Keepalive, self.keepalive().map(|k| now + k));
                    self.state = State::OpenConfirm;
                }
                Err((notification, reason)) => self.fail(now, notification, reason, out),
            },
            (State::OpenSent, _) => {
                let (n, reason) = unexpected(fsm_subcode::UNEXPECTED_IN_OPEN_SENT, name, State::OpenSent);
                self.fail(now, n, reason, out);
            }
            (State::OpenConfirm, Message::Keepalive) => {
                self.restart_hold(now);
                self.failures = 0;
                self.state = State::Established;
                // The restart this side's OPEN announced (R bit) is over:
                // a later session of this speaker is no restart, and this
                // speaker keeps forwarding across a session's reset (F).
                if let Some(gr) = &mut self.config.graceful_restart {
                    gr.restart_state = false;
                    for family in &mut gr.families {
                        family.forwarding_preserved = true;
                    }
                }
                if let Some(negotiated) = &self.negotiated {
                    out.push(Output::Established(negotiated.clone()));
                }
            }
            (State::OpenConfirm, _) => {
                let (n, reason) = unexpected(fsm_subcode::UNEXPECTED_IN_OPEN_CONFIRM, name, State::OpenConfirm);
                self.fail(now, n, reason, out);
            }
            (State::Established, Message::Open(_)) => {
                let (n, reason) = unexpected(fsm_subcode::UNEXPECTED_IN_ESTABLISHED, name, State::Established);
                self.fail(now, n, reason, out);
            }
            // A refresh request for a family of the session; any other
            // (a family never offered, or the peer's own refresh markers)
            // is ignored (RFC 2918 section 4, RFC 7313 section 4).
            (State::Established, Message::RouteRefresh(refresh)) => {
                self.restart_hold(now);
                if refresh.subtype == route_refresh_subtype::REQUEST
                    && self.config.route_refresh
                    && self
                        .negotiated
                        .as_ref()
                        .is_some_and(|n| n.families.contains(&refresh.family))
                {
                    out.push(Output::RefreshRequested(refresh.family));
                }
            }
            // KEEPALIVE and UPDATE keep the session up (received routes are
            // not installed).
            (State::Established, _) => self.restart_hold(now),
        }
    }

    /// The terms of a session with the peer that sent `open`, or the
    /// NOTIFICATION refusing it and why (RFC 4271 section 6.2).
    fn negotiate(&self, open: &Open) -> Result<Negotiated, (Notification, String)> {
        let refuse =
            |subcode: u8, data: Vec<u8>, reason: String| Err((Notification::new(code::OPEN, subcode, data), reason));
        let peer_as = open.asn();
        let local_as = self.config.local_as;
        let as_ok = match self.config.peer_as {
            PeerAs::Exact(asn) => peer_as == asn,
            PeerAs::Internal => peer_as == local_as,
            PeerAs::External => peer_as != local_as,
        };
        if !as_ok {
            let data = open.my_as.to_be_bytes().to_vec();
            return refuse(
                open_subcode::BAD_PEER_AS,
                data,
                format!("the peer's AS is {peer_as}; expected {:?}", self.config.peer_as),
            );
        }
        if peer_as == local_as && open.bgp_identifier == self.config.router_id {
            return refuse(
                open_subcode::BAD_BGP_IDENTIFIER,
                open.bgp_identifier.octets().to_vec(),
                format!("an iBGP peer with this side's BGP identifier {}", open.bgp_identifier),
            );
        }
        let theirs = open.families();
        let families: Vec<Family> = self
            .config
            .families
            .iter()
            .copied()
            .filter(|f| theirs.contains(f))
            .collect();
        if families.is_empty() {
            return refuse(
                open_subcode::UNSUPPORTED_CAPABILITY,
                Vec::new(),
                format!(
                    "no address family in common (offered {:?}, the peer supports {theirs:?})",
                    self.config.families
                ),
            );
        }
        let hold_time = self.config.hold_time.min(open.hold_time);
        let keepalive_time = if hold_time == 0 {
            0
        } else {
            let third = (hold_time / 3).max(1);
            self.config.keepalive_time.map_or(third, |k| k.clamp(1, third))
        };
        Ok(Negotiated {
            peer_as,
            peer_id: open.bgp_identifier,
            hold_time,
            keepalive_time,
            families,
            params: SessionParams::negotiate(&self.config.open(), open),
            route_refresh: open.capabilities.contains(&Capability::RouteRefresh),
            enhanced_route_refresh: self.config.route_refresh
                && open.capabilities.contains(&Capability::EnhancedRouteRefresh),
            ipv4_over_ipv6: self.config.extended_next_hop
                && open.capabilities.iter().any(|c| {
                    matches!(c, Capability::ExtendedNextHop(tuples) if tuples.contains(&ExtendedNextHop::IPV4_OVER_IPV6))
                }),
            peer_graceful_restart: open.capabilities.iter().find_map(|c| match c {
                Capability::GracefulRestart(gr) => Some(gr.clone()),
                _ => None,
            }),
        })
    }

    /// The negotiated hold time, if the session has one (not 0).
    fn hold(&self) -> Option<Duration> {
        let seconds = self.negotiated.as_ref()?.hold_time;
        (seconds > 0).then(|| Duration::from_secs(seconds.into()))
    }

    /// The negotiated keepalive interval, if the session has one (not 0).
    fn keepalive(&self) -> Option<Duration> {
        let seconds = self.negotiated.as_ref()?.keepalive_time;
        (seconds > 0).then(|| Duration::from_secs(seconds.into()))
    }

    fn restart_hold(&mut self, now: Instant) {
        if let Some(hold) = self.hold() {
            self.set(Timer::Hold, Some(now + hold));
        }
    }

    /// Sends `notification` and closes, for `reason`.
    fn fail(&mut self, now: Instant, notification: Notification, reason: String, out: &mut Vec<Output>) {
        out.push(Output::Send(Message::Notification(notification.clone())));
        self.close(now, CloseReason::NotificationSent(notification, reason), out);
    }

    /// Back to Idle: the connection closed (if there was one or an attempt)
    /// and, unless stopped, a restart after a delay doubling per failure.
    fn close(&mut self, now: Instant, reason: CloseReason, out: &mut Vec<Output>) {
        if self.state != State::Idle {
            out.push(Output::Closed {
                reason,
                established: self.state == State::Established,
            });
        }
        self.state = State::Idle;
        self.deadlines = [None; 4];
        self.negotiated = None;
        if self.started {
            let delay = FIRST_RESTART_DELAY
                .saturating_mul(1u32 << self.failures.min(6))
                .min(MAX_RESTART_DELAY);
            self.failures = self.failures.saturating_add(1);
            self.set(Timer::Restart, Some(now + delay));
        }
    }

    fn set(&mut self, timer: Timer, at: Option<Instant>) {
        if let Some(index) = TIMERS.iter().position(|t| *t == timer) {
            self.deadlines[index] = at;
        }
    }
}

fn message_name(message: &Message) -> &'static str {
    match message {
        Message::Open(_) => "OPEN",
        Message::Update(_) => "UPDATE",
        Message::Notification(_) => "NOTIFICATION",
        Message::Keepalive => "KEEPALIVE",
        Message::RouteRefresh(_) => "ROUTE-REFRESH",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Session {
        /// `input` at `now`, and what the session then asks for.
        fn handled(&mut self, input: Input, now: Instant) -> Vec<Output> {
            self.handle_input(input, now);
            std::iter::from_fn(|| self.poll_output()).collect()
        }

        /// The timers due at `now`, and what the session then asks for.
        fn timed_out(&mut self, now: Instant) -> Vec<Output> {
            self.handle_timeout(now);
            std::iter::from_fn(|| self.poll_output()).collect()
        }
    }
    use meshlb_wire::bgp::RouteRefresh;

    fn config(asn: u32, peer: PeerAs, id: [u8; 4], hold: u16) -> SessionConfig {
        SessionConfig {
            local_as: asn,
            peer_as: peer,
            router_id: Ipv4Addr::from(id),
            hold_time: hold,
            keepalive_time: None,
            connect_retry: Duration::from_secs(5),
            passive: false,
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            route_refresh: true,
            extended_next_hop: false,
            graceful_restart: None,
        }
    }

    /// Two sessions wired to each other on virtual time: what one sends
    /// the other receives (through the real encoder and decoder); a
    /// connect brings the connection up on both if the other side takes
    /// connections (Connect or Active; otherwise it is refused); a close
    /// brings it down on both while the link is up (with the link cut,
    /// the other side learns nothing).
    struct Pair {
        now: Instant,
        sides: [Session; 2],
        /// Messages in flight, to side 0 and to side 1.
        wires: [Vec<Message>; 2],
        connected: bool,
        /// Whether the wire carries anything (false: the link is cut).
        link_up: bool,
        /// Everything each side output, in order.
        seen: [Vec<Output>; 2],
    }

    impl Pair {
        fn new(a: SessionConfig, b: SessionConfig) -> Pair {
            Pair {
                now: Instant::now(),
                sides: [Session::new(a), Session::new(b)],
                wires: [Vec::new(), Vec::new()],
                connected: false,
                link_up: true,
                seen: [Vec::new(), Vec::new()],
            }
        }

        fn input(&mut self, side: usize, input: Input) {
            let out = self.sides[side].handled(input, self.now);
            self.act(side, out);
        }

        fn act(&mut self, side: usize, outputs: Vec<Output>) {
            for output in outputs {
                self.seen[side].push(output.clone());
                match output {
                    Output::Connect if self.connected => {}
                    Output::Connect => {
                        let accepting = matches!(self.sides[1 - side].state(), State::Connect | State::Active);
                        if self.link_up && accepting {
                            self.connected = true;
                            for s in [side, 1 - side] {
                                let out = self.sides[s].handled(Input::TcpConnectionConfirmed, self.now);
                                self.act(s, out);
                            }
                        } else {
                            let out = self.sides[side].handled(Input::TcpConnectionFails, self.now);
                            self.act(side, out);
                        }
                    }
                    Output::Send(message) if self.connected && self.link_up => {
                        let params = self.sides[side]
                            .negotiated()
                            .map_or(SessionParams::FOUR_OCTET_AS, |n| n.params);
                        let bytes = message.encode(&params).unwrap();
                        let decoded = Message::decode(&bytes, &params).unwrap();
                        self.wires[1 - side].push(decoded);
                    }
                    Output::Send(_) => {}
                    Output::Closed { .. } if self.connected && self.link_up => {
                        // What was sent before the close still arrives.
                        self.deliver();
                        self.connected = false;
                        let out = self.sides[1 - side].handled(Input::TcpConnectionFails, self.now);
                        self.act(1 - side, out);
                    }
                    Output::Closed { .. } if self.connected => self.connected = false,
                    Output::Closed { .. } | Output::Established(_) | Output::RefreshRequested(_) => {}
                }
            }
        }

        fn deliver(&mut self) {
            while let Some(side) = (0..2).find(|s| !self.wires[*s].is_empty()) {
                let message = self.wires[side].remove(0);
                self.input(side, Input::Message(message));
            }
        }

        /// Runs until `until` from now, timers and messages in order.
        fn run_for(&mut self, until: Duration) {
            let end = self.now + until;
            loop {
                self.deliver();
                let next = self.sides.iter().filter_map(Session::poll_timeout).min();
                match next {
                    Some(at) if at <= end => {
                        self.now = self.now.max(at);
                        for side in 0..2 {
                            let out = self.sides[side].timed_out(self.now);
                            self.act(side, out);
                        }
                    }
                    _ => break,
                }
            }
            self.deliver();
            self.now = end;
        }

        fn states(&self) -> [State; 2] {
            [self.sides[0].state(), self.sides[1].state()]
        }

        fn sent_notifications(&self, side: usize) -> Vec<(u8, u8)> {
            self.seen[side]
                .iter()
                .filter_map(|o| match o {
                    Output::Send(Message::Notification(n)) => Some((n.code, n.subcode)),
                    _ => None,
                })
                .collect()
        }
    }

    fn ebgp_pair() -> Pair {
        let mut router = config(64512, PeerAs::Exact(64600), [192, 0, 2, 1], 90);
        router.passive = true;
        Pair::new(config(64600, PeerAs::Exact(64512), [192, 0, 2, 10], 9), router)
    }

    #[test]
    fn an_active_and_a_passive_side_establish_with_the_smaller_hold_time() {
        let mut pair = ebgp_pair();
        pair.input(1, Input::ManualStart);
        assert_eq!(pair.states(), [State::Idle, State::Active]);
        pair.input(0, Input::ManualStart);
        pair.run_for(Duration::from_millis(1));
        assert_eq!(pair.states(), [State::Established, State::Established]);
        let negotiated = pair.sides[0].negotiated().unwrap().clone();
        assert_eq!((negotiated.hold_time, negotiated.keepalive_time), (9, 3));
        assert_eq!(negotiated.peer_as, 64512);
        assert_eq!(negotiated.families, [Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        assert!(negotiated.params.four_octet_as && negotiated.route_refresh);
        assert!(!negotiated.is_internal(64600));
        assert_eq!(pair.sides[1].negotiated().unwrap().hold_time, 9, "both agree");
        for side in 0..2 {
            assert_eq!(
                pair.seen[side]
                    .iter()
                    .filter(|o| matches!(o, Output::Established(_)))
                    .count(),
                1
            );
        }
    }

    /// IPv4 routes over IPv6 next hops only when both sides offer them.
    #[test]
    fn ipv4_over_ipv6_next_hops_need_both_sides() {
        for (ours, theirs) in [(true, true), (true, false), (false, true)] {
            let mut pair = ebgp_pair();
            pair.sides[0].config.extended_next_hop = ours;
            pair.sides[1].config.extended_next_hop = theirs;
            pair.input(1, Input::ManualStart);
            pair.input(0, Input::ManualStart);
            pair.run_for(Duration::from_millis(1));
            assert_eq!(pair.states(), [State::Established, State::Established]);
            for side in 0..2 {
                let negotiated = pair.sides[side].negotiated().unwrap();
                assert_eq!(negotiated.ipv4_over_ipv6, ours && theirs, "{ours} {theirs}");
            }
        }
    }

    /// A ROUTE-REFRESH request for a family of the session asks the driver
    /// for the routes again; one for a family never offered, the peer's
    /// own refresh markers, or any before the session is up ask nothing
    /// (RFC 2918 section 4, RFC 7313 section 4). Enhanced route refresh is
    /// used when both offer it.
    #[test]
    fn refresh_requests_for_the_session_s_families_ask_for_the_routes() {
        let mut pair = ebgp_pair();
        pair.sides[0].config.families = vec![Family::IPV4_UNICAST];
        pair.input(1, Input::ManualStart);
        pair.input(0, Input::ManualStart);
        pair.run_for(Duration::from_millis(1));
        assert_eq!(pair.states(), [State::Established, State::Established]);
        assert!(pair.sides[0].negotiated().unwrap().enhanced_route_refresh);
        let now = pair.now;
        let mut asked = |refresh: RouteRefresh| {
            pair.sides[0]
                .handled(Input::Message(Message::RouteRefresh(refresh)), now)
                .into_iter()
                .filter_map(|o| match o {
                    Output::RefreshRequested(family) => Some(family),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let request = route_refresh_subtype::REQUEST;
        assert_eq!(
            asked(RouteRefresh::new(Family::IPV4_UNICAST, request)),
            [Family::IPV4_UNICAST]
        );
        assert_eq!(asked(RouteRefresh::new(Family::IPV6_UNICAST, request)), []);
        for marker in [route_refresh_subtype::BEGIN, route_refresh_subtype::END, 7] {
            assert_eq!(asked(RouteRefresh::new(Family::IPV4_UNICAST, marker)), []);
        }
        assert_eq!(pair.states()[0], State::Established, "nothing closes the session");

        let mut plain = ebgp_pair();
        plain.sides[1].config.route_refresh = false;
        plain.input(1, Input::ManualStart);
        plain.input(0, Input::ManualStart);
        plain.run_for(Duration::from_millis(1));
        let negotiated = plain.sides[0].negotiated().unwrap();
        assert!(!negotiated.route_refresh && !negotiated.enhanced_route_refresh);
    }

    /// Keepalives every third of the hold time keep a session up for ten
    /// minutes; when the link goes silent, both sides' hold timers expire
    /// within the hold time and each sends Hold Timer Expired.
    #[test]
    fn keepalives_keep_it_up_and_silence_expires_the_hold_timer() {
        let mut pair = ebgp_pair();
        pair.input(1, Input::ManualStart);
        pair.input(0, Input::ManualStart);
        pair.run_for(Duration::from_secs(600));
        assert_eq!(pair.states(), [State::Established, State::Established]);
        let keepalives = pair.seen[0]
            .iter()
            .filter(|o| matches!(o, Output::Send(Message::Keepalive)))
            .count();
        assert!((199..=202).contains(&keepalives), "{keepalives} in 600 s at 3 s");

        pair.link_up = false;
        pair.run_for(Duration::from_secs(9));
        assert!(!pair.states().contains(&State::Established), "{:?}", pair.states());
        for side in 0..2 {
            assert_eq!(pair.sent_notifications(side), [(code::HOLD_TIMER_EXPIRED, 0)]);
            assert!(pair.seen[side].contains(&Output::Closed {
                reason: CloseReason::NotificationSent(
                    Notification::new(code::HOLD_TIMER_EXPIRED, 0, vec![]),
                    "the hold timer expired".into()
                ),
                established: true,
            }));
        }
    }

    /// A peer with the wrong AS is refused with Bad Peer AS, again at each
    /// retry, and the session establishes once the peer's AS is right.
    #[test]
    fn a_wrong_peer_as_is_refused_until_it_is_right() {
        let mut router = config(64513, PeerAs::External, [192, 0, 2, 1], 90);
        router.passive = true;
        let mut pair = Pair::new(config(64600, PeerAs::Exact(64512), [192, 0, 2, 10], 90), router);
        pair.input(1, Input::ManualStart);
        pair.input(0, Input::ManualStart);
        pair.run_for(Duration::from_secs(30));
        let refusals = pair.sent_notifications(0);
        assert!(refusals.len() >= 2, "{refusals:?}");
        assert!(refusals.iter().all(|n| *n == (code::OPEN, open_subcode::BAD_PEER_AS)));
        assert_ne!(pair.states()[0], State::Established);

        pair.sides[1].config.local_as = 64512;
        pair.run_for(Duration::from_secs(120));
        assert_eq!(pair.states(), [State::Established, State::Established]);
    }

    /// After each failure in a row the restart waits twice as long, up to
    /// a minute; an establishment resets it.
    #[test]
    fn restarts_back_off_until_an_establishment() {
        let bad = Open::new(64999, 90, Ipv4Addr::new(192, 0, 2, 1), vec![]);
        let good = Open::new(64512, 90, Ipv4Addr::new(192, 0, 2, 1), vec![]);
        let mut session = Session::new(config(64600, PeerAs::Exact(64512), [192, 0, 2, 10], 90));
        let mut now = Instant::now();
        session.handled(Input::ManualStart, now);
        let mut delays = Vec::new();
        for _ in 0..8 {
            session.handled(Input::TcpConnectionConfirmed, now);
            session.handled(Input::Message(Message::Open(bad.clone())), now);
            assert_eq!(session.state(), State::Idle);
            let restart = session.poll_timeout().unwrap();
            delays.push((restart - now).as_secs());
            now = restart;
            assert_eq!(session.timed_out(now), [Output::Connect]);
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        session.handled(Input::TcpConnectionConfirmed, now);
        session.handled(Input::Message(Message::Open(good)), now);
        let out = session.handled(Input::Message(Message::Keepalive), now);
        assert!(matches!(out.as_slice(), [Output::Established(_)]), "{out:?}");
        session.handled(Input::TcpConnectionFails, now);
        assert_eq!(session.poll_timeout().unwrap() - now, FIRST_RESTART_DELAY);
    }

    /// dynamicASN: internal takes only the local AS, external any other;
    /// an iBGP peer with this side's own identifier is refused.
    #[test]
    fn dynamic_peer_as_and_identifiers_are_checked() {
        for (peer_as, their_as, ok) in [
            (PeerAs::Internal, 64600, true),
            (PeerAs::Internal, 64601, false),
            (PeerAs::External, 64600, false),
            (PeerAs::External, 4_200_000_000, true),
        ] {
            let session = Session::new(config(64600, peer_as, [192, 0, 2, 10], 90));
            let open = Open::new(
                their_as,
                90,
                Ipv4Addr::new(192, 0, 2, 1),
                vec![Capability::Multiprotocol(Family::IPV4_UNICAST)],
            );
            assert_eq!(session.negotiate(&open).is_ok(), ok, "{peer_as:?} with AS {their_as}");
        }
        let session = Session::new(config(64600, PeerAs::Internal, [192, 0, 2, 10], 90));
        let same_id = Open::new(64600, 90, Ipv4Addr::new(192, 0, 2, 10), vec![]);
        let (n, _) = session.negotiate(&same_id).unwrap_err();
        assert_eq!((n.code, n.subcode), (code::OPEN, open_subcode::BAD_BGP_IDENTIFIER));
        let evpn_only = Open::new(
            64600,
            90,
            Ipv4Addr::new(192, 0, 2, 1),
            vec![Capability::Multiprotocol(Family { afi: 25, safi: 65 })],
        );
        let (n, reason) = session.negotiate(&evpn_only).unwrap_err();
        assert_eq!(n.subcode, open_subcode::UNSUPPORTED_CAPABILITY, "{reason}");
    }

    /// Hold time 0 on either side: no keepalives and no hold timer; the
    /// session stays up through silence.
    #[test]
    fn a_zero_hold_time_disables_keepalives() {
        let mut router = config(64512, PeerAs::Exact(64600), [192, 0, 2, 1], 0);
        router.passive = true;
        let mut pair = Pair::new(config(64600, PeerAs::Exact(64512), [192, 0, 2, 10], 90), router);
        pair.input(1, Input::ManualStart);
        pair.input(0, Input::ManualStart);
        pair.run_for(Duration::from_secs(1));
        assert_eq!(pair.sides[0].negotiated().unwrap().keepalive_time, 0);
        let sent = pair.seen[0].len();
        pair.run_for(Duration::from_secs(3600));
        assert_eq!(pair.states(), [State::Established, State::Established]);
        assert_eq!(pair.seen[0].len(), sent, "nothing sent in an hour");
        assert_eq!(pair.sides[0].poll_timeout(), None);
    }

    /// A manual stop sends Cease (Administrative Shutdown) and does not
    /// restart; the peer closes on the NOTIFICATION and restarts.
    #[test]
    fn a_manual_stop_ceases_and_stays_down() {
        let mut pair = ebgp_pair();
        pair.input(1, Input::ManualStart);
        pair.input(0, Input::ManualStart);
        pair.run_for(Duration::from_secs(1));
        pair.input(0, Input::ManualStop);
        pair.run_for(Duration::from_secs(120));
        assert_eq!(
            pair.sent_notifications(0),
            [(code::CEASE, cease_subcode::ADMINISTRATIVE_SHUTDOWN)]
        );
        assert!(pair.seen[1].iter().any(|o| matches!(
            o,
            Output::Closed {
                reason: CloseReason::NotificationReceived(_),
                established: true
            }
        )));
        assert_eq!(
            pair.states(),
            [State::Idle, State::Active],
            "the router waits for a new connection"
        );
        assert_eq!(
            pair.seen[0].iter().filter(|o| matches!(o, Output::Connect)).count(),
            1,
            "no reconnect after a manual stop"
        );
    }

    /// A stop for a graceful restart closes without a NOTIFICATION (the
    /// peer sees the connection lost, and a helper keeps the routes); the
    /// R bit of a restarted speaker's OPEN is set until its session is
    /// established, not in the OPENs after.
    #[test]
    fn a_restart_stop_sends_nothing_and_the_restart_bit_lasts_one_establishment() {
        let mut pair = ebgp_pair();
        pair.sides[0].config.graceful_restart = Some(GracefulRestart {
            restart_state: true,
            notification: false,
            restart_time: 120,
            families: vec![meshlb_wire::bgp::GracefulRestartFamily {
                family: Family::IPV4_UNICAST,
                forwarding_preserved: false,
            }],
        });
        let bits = |session: &Session| {
            let gr = session.config().open().capabilities.iter().find_map(|c| match c {
                Capability::GracefulRestart(gr) => Some(gr.clone()),
                _ => None,
            });
            gr.map(|gr| (gr.restart_state, gr.families[0].forwarding_preserved))
        };
        assert_eq!(bits(&pair.sides[0]), Some((true, false)));
        pair.input(1, Input::ManualStart);
        pair.input(0, Input::ManualStart);
        pair.run_for(Duration::from_secs(1));
        assert_eq!(pair.states(), [State::Established; 2]);
        assert_eq!(
            bits(&pair.sides[0]),
            Some((false, true)),
            "the restart is over; forwarding is kept from now on"
        );

        pair.input(0, Input::RestartStop);
        pair.run_for(Duration::from_secs(5));
        assert!(pair.sent_notifications(0).is_empty());
        assert!(pair.seen[1].iter().any(|o| matches!(
            o,
            Output::Closed {
                reason: CloseReason::ConnectionLost,
                established: true
            }
        )));
        assert_eq!(pair.states()[0], State::Idle);
        assert_eq!(pair.sides[0].poll_timeout(), None, "no restart of its own");
    }

    /// Messages a state does not expect get the FSM error for that state;
    /// a message that failed to decode gets its own NOTIFICATION.
    #[test]
    fn unexpected_and_malformed_messages_close_with_the_right_notification() {
        let now = Instant::now();
        let mut session = Session::new(config(64600, PeerAs::Exact(64512), [192, 0, 2, 10], 90));
        session.handled(Input::ManualStart, now);
        session.handled(Input::TcpConnectionConfirmed, now);
        assert_eq!(session.state(), State::OpenSent);
        let out = session.handled(Input::Message(Message::Keepalive), now);
        assert!(out.contains(&Output::Send(Message::Notification(Notification::new(
            code::FSM,
            fsm_subcode::UNEXPECTED_IN_OPEN_SENT,
            vec![]
        )))));
        assert_eq!(session.state(), State::Idle);

        let later = now + Duration::from_secs(2);
        session.timed_out(later);
        session.handled(Input::TcpConnectionConfirmed, later);
        let bad = BgpError::new(code::MESSAGE_HEADER, 1, vec![], "bad marker");
        let out = session.handled(Input::DecodeError(bad.clone()), later);
        assert_eq!(out[0], Output::Send(Message::Notification(bad.notification)));
        assert!(
            matches!(&out[1], Output::Closed { reason: CloseReason::NotificationSent(_, r), established: false } if r == "bad marker")
        );
    }

    /// A connection attempt that hangs is dropped and retried every
    /// connect retry time; a refused one waits it out in Active.
    #[test]
    fn connection_attempts_retry_every_connect_retry_time() {
        let now = Instant::now();
        let mut session = Session::new(config(64600, PeerAs::Exact(64512), [192, 0, 2, 10], 90));
        assert_eq!(session.handled(Input::ManualStart, now), [Output::Connect]);
        let retry = session.poll_timeout().unwrap();
        assert_eq!(retry - now, Duration::from_secs(5));
        let out = session.timed_out(retry);
        assert_eq!(
            out,
            [
                Output::Closed {
                    reason: CloseReason::ConnectTimeout,
                    established: false
                },
                Output::Connect
            ]
        );
        assert!(session.handled(Input::TcpConnectionFails, retry).is_empty());
        assert_eq!(session.state(), State::Active);
        let next = session.poll_timeout().unwrap();
        assert_eq!(session.timed_out(next), [Output::Connect]);
        assert_eq!(session.state(), State::Connect);
    }

    /// One step of an arbitrary history: an input, or time passing.
    #[derive(Debug, Clone)]
    enum Step {
        Input(Input),
        Wait(Duration),
    }

    fn steps() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let good = Open::new(64512, 9, Ipv4Addr::new(192, 0, 2, 1), vec![]);
        let bad_as = Open::new(64999, 9, Ipv4Addr::new(192, 0, 2, 1), vec![]);
        let zero_hold = Open::new(64512, 0, Ipv4Addr::new(192, 0, 2, 1), vec![]);
        let cease = Notification::new(code::CEASE, cease_subcode::ADMINISTRATIVE_RESET, vec![]);
        let inputs = vec![
            Input::ManualStart,
            Input::ManualStop,
            Input::RestartStop,
            Input::TcpConnectionConfirmed,
            Input::TcpConnectionFails,
            Input::Message(Message::Keepalive),
            Input::Message(Message::Open(good)),
            Input::Message(Message::Open(bad_as)),
            Input::Message(Message::Open(zero_hold)),
            Input::Message(Message::Update(meshlb_wire::bgp::Update::default())),
            Input::Message(Message::Notification(cease)),
            Input::DecodeError(BgpError::new(code::MESSAGE_HEADER, 1, vec![], "bad marker")),
        ];
        prop_oneof![
            3 => proptest::sample::select(inputs).prop_map(Step::Input),
            1 => (0u64..20_000).prop_map(|ms| Step::Wait(Duration::from_millis(ms))),
        ]
    }

    proptest::proptest! {
        /// Any history of events and waits: no panic, terms exactly while
        /// OpenConfirm or Established, a hold timer running in OpenSent
        /// and (with a hold time) after, nothing scheduled once stopped,
        /// a passive session never connecting, and a close only of a
        /// connection there was.
        #[test]
        fn any_history_keeps_the_machine_sound(
            history in proptest::collection::vec(steps(), 0..150),
            passive in proptest::bool::ANY,
        ) {
            let mut config = config(64600, PeerAs::Exact(64512), [192, 0, 2, 10], 90);
            config.passive = passive;
            let mut session = Session::new(config);
            let mut now = Instant::now();
            for step in history {
                let before = session.state();
                let out = match step {
                    Step::Input(input) => session.handled(input, now),
                    Step::Wait(wait) => {
                        now += wait;
                        session.timed_out(now)
                    }
                };
                let state = session.state();
                proptest::prop_assert_eq!(
                    session.negotiated().is_some(),
                    matches!(state, State::OpenConfirm | State::Established)
                );
                let hold = session.deadlines[1];
                match state {
                    State::OpenSent => proptest::prop_assert!(hold.is_some()),
                    State::OpenConfirm | State::Established => {
                        let has_hold = session.negotiated().is_some_and(|n| n.hold_time > 0);
                        proptest::prop_assert_eq!(hold.is_some(), has_hold);
                    }
                    State::Idle | State::Connect | State::Active => proptest::prop_assert!(hold.is_none()),
                }
                if !session.started {
                    proptest::prop_assert_eq!(state, State::Idle);
                    proptest::prop_assert_eq!(session.poll_timeout(), None);
                }
                if passive {
                    proptest::prop_assert!(!out.contains(&Output::Connect));
                }
                if out.iter().any(|o| matches!(o, Output::Closed { .. })) {
                    proptest::prop_assert_ne!(before, State::Idle);
                }
                proptest::prop_assert!(session.poll_timeout().is_none_or(|at| at > now));
            }
        }
    }

    #[test]
    fn the_higher_identifier_keeps_its_own_connection() {
        let low = Ipv4Addr::new(192, 0, 2, 1);
        let high = Ipv4Addr::new(192, 0, 2, 200);
        assert_eq!(collision_keeps(high, low), Direction::Outgoing);
        assert_eq!(collision_keeps(low, high), Direction::Incoming);
    }
}
