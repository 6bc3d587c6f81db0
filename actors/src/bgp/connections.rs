//! One peer's session over up to two TCP connections, sans-IO: the one
//! this side opens and the one the peer opens, with RFC 4271 section
//! 6.8's collision detection between them.
//!
//! Routers connect to a speaker as readily as a speaker connects to them,
//! and when both do at once there are two connections to one peer. The
//! configured [`Session`] (the main one: it connects, retries and
//! restarts) runs on whichever connection came first; a connection the
//! peer opens while the main one is still opening gets a core of its own
//! (the second, which never restarts). As soon as either side's OPEN gives
//! the peer's BGP identifier, [`collision_keeps`] picks the survivor, and
//! the other connection is closed with a Cease (Connection Collision
//! Resolution). What else a connection from the peer meets:
//!
//! | main session | the peer's new connection |
//! |---|---|
//! | stopped | closed |
//! | connecting, waiting, waiting to restart | taken (an attempt under way is dropped) |
//! | opening on an older connection of the peer's | taken in its place |
//! | opening on this side's connection | a second core, until the collision is resolved |
//! | established | a second core, until the peer's OPEN on it says whether the peer restarted |
//!
//! An established session is replaced only by a connection whose OPEN
//! announces the peer's restart (the graceful restart capability's
//! Restart State bit, RFC 4724 section 4.2): its old connection is then
//! closed without a NOTIFICATION, which would end a graceful restart at a
//! peer that is alive after all. Any other OPEN on a new connection is a
//! collision with the established session (the peer's attempt crossed
//! this side's, RFC 4271 section 6.8), refused with a Cease (Connection
//! Collision Resolution). A KEEPALIVE goes out on the established
//! connection the moment the new one arrives, so a dead one (the peer's
//! host restarted) draws a reset at once rather than at the hold time.
//!
//! The driver numbers its connections ([`ConnectionId`], never reused)
//! and reports each one's events under its number, with the time; the
//! [`Action`]s [`Connections::poll_action`] then gives say which connection
//! to write to or close, and [`Connections::poll_timeout`] when to call
//! [`Connections::handle_timeout`].

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Instant;

use meshlb_wire::bgp::notification::cease_subcode;
use meshlb_wire::bgp::{Family, Message};

use crate::bgp::session::{
    CloseReason, Direction, Input, Negotiated, Output, Session, SessionConfig, State, collision_keeps,
};

/// A connection, numbered by the driver; never reused.
pub type ConnectionId = u64;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a connection to the peer; report it with
    /// [`Connections::connected`] under a new number once it is up, or
    /// its failure with [`Connections::attempt_failed`].
    Connect,
    /// Drop the connection attempt under way, if any, for this reason.
    AbandonAttempt(CloseReason),
    /// Send this message on this connection.
    Send(ConnectionId, Message),
    /// The session is up on this connection, with these terms.
    Established(ConnectionId, Negotiated),
    /// The peer asks for this family's routes again (RFC 2918).
    RefreshRequested(Family),
    /// Close this connection (after what was sent on it before).
    Close {
        /// Which.
        connection: ConnectionId,
        /// Why.
        reason: CloseReason,
        /// Whether the session had been established on it (its routes
        /// are gone).
        established: bool,
    },
}

/// A session and the connection it runs on.
#[derive(Debug, Clone)]
struct Bound {
    connection: ConnectionId,
    direction: Direction,
}

/// One peer's session over its connections. See the module documentation.
#[derive(Debug, Clone)]
pub struct Connections {
    main: Session,
    /// The connection `main` runs on, while it has one (OpenSent and on).
    main_on: Option<Bound>,
    /// A core on a connection the peer opened while `main` was opening its
    /// own, until the collision is resolved.
    second: Option<(Session, ConnectionId)>,
    /// What the driver must do, in order.
    actions: VecDeque<Action>,
}

/// Whether a session is on a connection (past the TCP handshake).
fn on_connection(state: State) -> bool {
    matches!(state, State::OpenSent | State::OpenConfirm | State::Established)
}

impl Connections {
    /// A peer's session, not started.
    pub fn new(config: SessionConfig) -> Connections {
        Connections {
            main: Session::new(config),
            main_on: None,
            second: None,
            actions: VecDeque::new(),
        }
    }

    /// The configured session.
    pub fn session(&self) -> &Session {
        &self.main
    }

    /// The connection the session is established on, if it is.
    pub fn established_on(&self) -> Option<ConnectionId> {
        (self.main.state() == State::Established)
            .then(|| self.main_on.as_ref().map(|b| b.connection))
            .flatten()
    }

    /// The connections the cores run on (at most two).
    pub fn connections(&self) -> Vec<ConnectionId> {
        self.main_on
            .iter()
            .map(|b| b.connection)
            .chain(self.second.iter().map(|(_, c)| *c))
            .collect()
    }

    /// When [`Connections::handle_timeout`] must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let second = self.second.as_ref().and_then(|(s, _)| s.poll_timeout());
        [self.main.poll_timeout(), second].into_iter().flatten().min()
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// ManualStart.
    pub fn start(&mut self, now: Instant) {
        let mut out = Vec::new();
        self.run_main(now, Input::ManualStart, &mut out);
        self.actions.extend(out);
    }

    /// ManualStop: a Cease on every connection up, and no restart; with
    /// `for_restart`, the session's own connection closes without one
    /// ([`Input::RestartStop`]).
    pub fn stop(&mut self, for_restart: bool, now: Instant) {
        let mut out = Vec::new();
        if let Some((mut second, connection)) = self.second.take() {
            second.handle_input(Input::ManualStop, now);
            map(&mut second, Some(connection), &mut out);
        }
        let stop = if for_restart {
            Input::RestartStop
        } else {
            Input::ManualStop
        };
        self.run_main(now, stop, &mut out);
        self.actions.extend(out);
    }

    /// The connection numbered `connection` is up, opened by `direction`.
    pub fn connected(&mut self, connection: ConnectionId, direction: Direction, now: Instant) {
        let mut out = Vec::new();
        match direction {
            Direction::Outgoing => {
                if matches!(self.main.state(), State::Connect | State::Active) {
                    self.main_on = Some(Bound { connection, direction });
                    self.run_main(now, Input::TcpConnectionConfirmed, &mut out);
                } else {
                    out.push(Action::Close {
                        connection,
                        reason: CloseReason::Dropped("a connection attempt no longer wanted".into()),
                        established: false,
                    });
                }
            }
            Direction::Incoming => self.incoming(now, connection, &mut out),
        }
        self.settle(now, &mut out);
        self.actions.extend(out);
    }

    fn incoming(&mut self, now: Instant, connection: ConnectionId, out: &mut Vec<Action>) {
        let state = self.main.state();
        let main_direction = self.main_on.as_ref().map(|b| b.direction);
        let take = |this: &mut Connections, out: &mut Vec<Action>| {
            if this.main.state() == State::Connect {
                out.push(Action::AbandonAttempt(CloseReason::Dropped(
                    "the peer's connection is taken instead".into(),
                )));
            }
            this.main_on = Some(Bound {
                connection,
                direction: Direction::Incoming,
            });
            this.run_main(now, Input::TcpConnectionConfirmed, out);
        };
        match state {
            State::Idle if !self.main.is_started() => out.push(Action::Close {
                connection,
                reason: CloseReason::Dropped("the session is stopped".into()),
                established: false,
            }),
            State::Idle | State::Connect | State::Active => take(self, out),
            State::OpenSent | State::OpenConfirm if main_direction == Some(Direction::Incoming) => {
                self.yield_main(now, "the peer opened a newer connection", out);
                take(self, out);
            }
            State::OpenSent | State::OpenConfirm | State::Established => {
                if state == State::Established
                    && let Some(established) = &self.main_on
                {
                    out.push(Action::Send(established.connection, Message::Keepalive));
                }
                if let Some((mut older, older_connection)) = self.second.take() {
                    older.yield_connection(
                        cease_subcode::CONNECTION_COLLISION_RESOLUTION,
                        "the peer opened a newer connection",
                        now,
                    );
                    map(&mut older, Some(older_connection), out);
                }
                let mut second = Session::accepting(self.main.config().clone(), now);
                map(&mut second, Some(connection), out);
                self.second = Some((second, connection));
            }
        }
    }

    /// Takes the session down with a Cease of `subcode` (BFD Down, say),
    /// for `reason`; it restarts as after any failure.
    pub fn cease(&mut self, subcode: u8, reason: &str, now: Instant) {
        let mut out = Vec::new();
        if on_connection(self.main.state()) {
            self.main.yield_connection(subcode, reason, now);
            self.map_main(&mut out);
        }
        self.settle(now, &mut out);
        self.actions.extend(out);
    }

    /// The connection attempt under way failed.
    pub fn attempt_failed(&mut self, now: Instant) {
        let mut out = Vec::new();
        if matches!(self.main.state(), State::Connect | State::Active) {
            self.run_main(now, Input::TcpConnectionFails, &mut out);
        }
        self.settle(now, &mut out);
        self.actions.extend(out);
    }

    /// `input` (a message, a decode error, or the connection's failure)
    /// arrived on `connection`; a connection no core runs on is ignored.
    pub fn handle_input(&mut self, connection: ConnectionId, input: Input, now: Instant) {
        let mut out = Vec::new();
        if self.main_on.as_ref().is_some_and(|b| b.connection == connection) {
            self.run_main(now, input, &mut out);
        } else if let Some((second, on)) = &mut self.second
            && *on == connection
        {
            second.handle_input(input, now);
            map(second, Some(connection), &mut out);
        }
        self.settle(now, &mut out);
        self.actions.extend(out);
    }

    /// Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut out = Vec::new();
        self.main.handle_timeout(now);
        self.map_main(&mut out);
        if let Some((second, connection)) = &mut self.second {
            second.handle_timeout(now);
            map(second, Some(*connection), &mut out);
        }
        self.settle(now, &mut out);
        self.actions.extend(out);
    }

    /// Sends an UPDATE or a ROUTE-REFRESH marker on the established
    /// session (nothing otherwise).
    pub fn send_routing(&mut self, message: Message, now: Instant) {
        let mut out = Vec::new();
        self.main.send_routing(message, now);
        self.map_main(&mut out);
        self.actions.extend(out);
    }

    fn run_main(&mut self, now: Instant, input: Input, out: &mut Vec<Action>) {
        self.main.handle_input(input, now);
        self.map_main(out);
    }

    /// Maps the main session's outputs to its connection (an attempt, while
    /// it has none), and forgets the connection once it is closed.
    fn map_main(&mut self, out: &mut Vec<Action>) {
        map(&mut self.main, self.main_on.as_ref().map(|b| b.connection), out);
        if !on_connection(self.main.state()) {
            self.main_on = None;
        }
    }

    /// The main session gives up its connection (to one of the peer's).
    fn yield_main(&mut self, now: Instant, reason: &str, out: &mut Vec<Action>) {
        self.main
            .yield_connection(cease_subcode::CONNECTION_COLLISION_RESOLUTION, reason, now);
        self.map_main(out);
    }

    /// After any event: a second core that closed is dropped; one left
    /// alone (the main session lost its connection) becomes the main one;
    /// with both opening and the peer's identifier known, the collision is
    /// resolved.
    fn settle(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some((second, _)) = &self.second else {
            return;
        };
        if !on_connection(second.state()) {
            self.second = None;
            return;
        }
        if !on_connection(self.main.state()) {
            self.promote_second(out);
            return;
        }
        if self.main.state() == State::Established {
            let Some(opened) = second.negotiated() else {
                return;
            };
            if opened.peer_graceful_restart.as_ref().is_some_and(|gr| gr.restart_state) {
                self.main.drop_connection(
                    "the peer opened a new connection announcing its restart (RFC 4724): the old one is dead",
                    now,
                );
                self.map_main(out);
                self.promote_second(out);
            } else if let Some((mut second, connection)) = self.second.take() {
                second.yield_connection(
                    cease_subcode::CONNECTION_COLLISION_RESOLUTION,
                    "connection collision: a session with the peer is established",
                    now,
                );
                map(&mut second, Some(connection), out);
            }
            return;
        }
        let peer_id = self.main.negotiated().or(second.negotiated()).map(|n| n.peer_id);
        let Some(peer_id) = peer_id else {
            return;
        };
        let local_id: Ipv4Addr = self.main.config().router_id;
        // The second core always runs on the peer's connection, the main
        // one here on this side's.
        match collision_keeps(local_id, peer_id) {
            Direction::Outgoing => {
                if let Some((mut second, connection)) = self.second.take() {
                    second.yield_connection(
                        cease_subcode::CONNECTION_COLLISION_RESOLUTION,
                        "connection collision: this side's connection is kept (its BGP identifier is higher)",
                        now,
                    );
                    map(&mut second, Some(connection), out);
                }
            }
            Direction::Incoming => {
                self.yield_main(
                    now,
                    "connection collision: the peer's connection is kept (its BGP identifier is higher)",
                    out,
                );
                self.promote_second(out);
            }
        }
    }

    /// The second core becomes the main one; the main one's pending
    /// attempt or restart is dropped with it.
    fn promote_second(&mut self, out: &mut Vec<Action>) {
        if let Some((second, connection)) = self.second.take() {
            if self.main.state() == State::Connect {
                out.push(Action::AbandonAttempt(CloseReason::Dropped(
                    "the peer's connection is kept instead".into(),
                )));
            }
            self.main = second;
            self.main_on = Some(Bound {
                connection,
                direction: Direction::Incoming,
            });
        }
    }
}

/// What `session` asks for, as actions on `connection` (an attempt when
/// `None`).
fn map(session: &mut Session, connection: Option<ConnectionId>, out: &mut Vec<Action>) {
    while let Some(output) = session.poll_output() {
        out.push(match (output, connection) {
            (Output::Connect, _) => Action::Connect,
            (Output::Send(message), Some(c)) => Action::Send(c, message),
            (Output::Established(terms), Some(c)) => Action::Established(c, terms),
            (Output::RefreshRequested(family), Some(_)) => Action::RefreshRequested(family),
            (Output::Closed { reason, established }, Some(c)) => Action::Close {
                connection: c,
                reason,
                established,
            },
            (Output::Closed { reason, .. }, None) => Action::AbandonAttempt(reason),
            // Nothing is sent or established without a connection.
            (Output::Send(_) | Output::Established(_) | Output::RefreshRequested(_), None) => continue,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, VecDeque};
    use std::time::Duration;

    use meshlb_wire::bgp::notification::code;
    use meshlb_wire::bgp::{Family, GracefulRestart, Notification};

    use crate::bgp::session::PeerAs;

    /// `step` on `core`, and what the driver must then do.
    fn after(core: &mut Connections, step: impl FnOnce(&mut Connections)) -> Vec<Action> {
        step(core);
        std::iter::from_fn(|| core.poll_action()).collect()
    }

    const HIGH: [u8; 4] = [192, 0, 2, 200];
    const LOW: [u8; 4] = [192, 0, 2, 1];

    fn config(local_as: u32, peer_as: u32, id: [u8; 4]) -> SessionConfig {
        SessionConfig {
            local_as,
            peer_as: PeerAs::Exact(peer_as),
            router_id: Ipv4Addr::from(id),
            hold_time: 9,
            keepalive_time: None,
            connect_retry: std::time::Duration::from_secs(5),
            passive: false,
            families: vec![Family::IPV4_UNICAST],
            route_refresh: true,
            extended_next_hop: false,
            graceful_restart: None,
        }
    }

    /// A TCP connection between the two sides: who opened it, which ends
    /// are open, what is in flight to each side; a cut one carries nothing
    /// and reports no close (a crashed host).
    struct Link {
        opener: usize,
        open: [bool; 2],
        queues: [VecDeque<Message>; 2],
        cut: bool,
    }

    /// Two peers' cores on virtual time, each the other's peer. An attempt
    /// becomes a connection when [`Net::complete_attempts`] runs (so both
    /// sides' attempts can be up before either learns of the other's); a
    /// close reaches the other end after what was sent before it.
    struct Net {
        now: Instant,
        sides: [Connections; 2],
        attempting: [bool; 2],
        links: BTreeMap<ConnectionId, Link>,
        next_id: ConnectionId,
        log: [Vec<Action>; 2],
    }

    impl Net {
        fn new(a: SessionConfig, b: SessionConfig) -> Net {
            Net {
                now: Instant::now(),
                sides: [Connections::new(a), Connections::new(b)],
                attempting: [false; 2],
                links: BTreeMap::new(),
                next_id: 1,
                log: [Vec::new(), Vec::new()],
            }
        }

        fn ebgp(a_id: [u8; 4], b_id: [u8; 4]) -> Net {
            Net::new(config(64513, 64512, a_id), config(64512, 64513, b_id))
        }

        fn start(&mut self, side: usize) {
            self.sides[side].start(self.now);
            self.act(side);
        }

        fn act(&mut self, side: usize) {
            while let Some(action) = self.sides[side].poll_action() {
                self.log[side].push(action.clone());
                match action {
                    Action::Connect => self.attempting[side] = true,
                    Action::AbandonAttempt(_) => self.attempting[side] = false,
                    Action::Send(connection, message) => {
                        if let Some(link) = self.links.get_mut(&connection)
                            && link.open[side]
                            && !link.cut
                        {
                            link.queues[1 - side].push_back(message);
                        }
                    }
                    Action::Established(..) | Action::RefreshRequested(_) => {}
                    Action::Close { connection, .. } => {
                        if let Some(link) = self.links.get_mut(&connection) {
                            link.open[side] = false;
                        }
                    }
                }
            }
        }

        /// The attempts of `openers` in flight become connections, each
        /// reported to its opener first, then to the other side.
        fn complete_attempts(&mut self, openers: &[usize]) {
            let mut opened = Vec::new();
            let attempting = self.attempting;
            for &opener in openers.iter().filter(|s| attempting[**s]) {
                self.attempting[opener] = false;
                let id = self.next_id;
                self.next_id += 1;
                self.links.insert(
                    id,
                    Link {
                        opener,
                        open: [true; 2],
                        queues: [VecDeque::new(), VecDeque::new()],
                        cut: false,
                    },
                );
                opened.push((id, opener));
            }
            for &(id, opener) in &opened {
                self.sides[opener].connected(id, Direction::Outgoing, self.now);
                self.act(opener);
            }
            for &(id, opener) in &opened {
                self.sides[1 - opener].connected(id, Direction::Incoming, self.now);
                self.act(1 - opener);
            }
        }

        /// Delivers one message or close; false when nothing is in flight.
        fn deliver_one(&mut self) -> bool {
            let ids: Vec<ConnectionId> = self.links.keys().copied().collect();
            for id in ids {
                for side in 0..2 {
                    let Some(link) = self.links.get_mut(&id) else { continue };
                    if !link.open[side] || link.cut {
                        continue;
                    }
                    let input = if let Some(message) = link.queues[side].pop_front() {
                        Input::Message(message)
                    } else if !link.open[1 - side] {
                        link.open[side] = false;
                        Input::TcpConnectionFails
                    } else {
                        continue;
                    };
                    self.sides[side].handle_input(id, input, self.now);
                    self.act(side);
                    return true;
                }
            }
            false
        }

        fn quiesce(&mut self) {
            loop {
                if self.attempting.iter().any(|a| *a) {
                    self.complete_attempts(&[0, 1]);
                } else if !self.deliver_one() {
                    return;
                }
            }
        }

        fn run_for(&mut self, duration: Duration) {
            let end = self.now + duration;
            loop {
                self.quiesce();
                match self.sides.iter().filter_map(Connections::poll_timeout).min() {
                    Some(at) if at <= end => {
                        self.now = self.now.max(at);
                        for side in 0..2 {
                            self.sides[side].handle_timeout(self.now);
                            self.act(side);
                        }
                    }
                    _ => break,
                }
            }
            self.quiesce();
            self.now = end;
        }

        fn established(&self) -> [Option<ConnectionId>; 2] {
            [self.sides[0].established_on(), self.sides[1].established_on()]
        }

        fn establishments(&self, side: usize) -> usize {
            self.log[side]
                .iter()
                .filter(|a| matches!(a, Action::Established(..)))
                .count()
        }

        fn notifications_on(&self, side: usize, connection: ConnectionId) -> Vec<(u8, u8)> {
            self.log[side]
                .iter()
                .filter_map(|a| match a {
                    Action::Send(c, Message::Notification(n)) if *c == connection => Some((n.code, n.subcode)),
                    _ => None,
                })
                .collect()
        }
    }

    const COLLISION: (u8, u8) = (code::CEASE, cease_subcode::CONNECTION_COLLISION_RESOLUTION);

    /// Both sides connect at once: two connections, each side's main
    /// session on its own and a second core on the other's. The peer's
    /// OPEN decides: both keep the connection the higher identifier
    /// opened and close the other with a Cease (Connection Collision
    /// Resolution), establishing once, whichever side is higher.
    #[test]
    fn a_collision_keeps_the_connection_the_higher_identifier_opened() {
        for (a_id, b_id, higher) in [(HIGH, LOW, 0), (LOW, HIGH, 1)] {
            let mut net = Net::ebgp(a_id, b_id);
            net.start(0);
            net.start(1);
            net.complete_attempts(&[0, 1]);
            assert_eq!(net.links.len(), 2, "both connections are up before either side knows");
            net.run_for(Duration::from_secs(30));

            let [a, b] = net.established();
            assert!(a.is_some() && a == b, "one connection for both: {a:?} {b:?}");
            let kept = a.unwrap();
            assert_eq!(net.links[&kept].opener, higher);
            let dropped = *net.links.keys().find(|id| **id != kept).unwrap();
            assert_eq!(net.links[&dropped].open, [false, false]);
            assert_eq!(net.links[&dropped].opener, 1 - higher);
            // The lower side gives up its own connection, the higher side
            // the peer's: both send the collision Cease on it.
            assert_eq!(net.notifications_on(higher, dropped), [COLLISION]);
            assert_eq!(net.notifications_on(1 - higher, dropped), [COLLISION]);
            assert_eq!([net.establishments(0), net.establishments(1)], [1, 1]);
            assert_eq!(net.links.len(), 2, "no reconnection after the collision");
        }
    }

    /// A waiting side (passive, or connecting with its attempt still under
    /// way) takes the peer's connection, dropping its own attempt.
    #[test]
    fn a_waiting_or_connecting_side_takes_the_peers_connection() {
        let mut passive = config(64513, 64512, LOW);
        passive.passive = true;
        let mut net = Net::new(passive, config(64512, 64513, HIGH));
        net.start(0);
        net.start(1);
        net.run_for(Duration::from_secs(10));
        let [a, b] = net.established();
        assert!(a.is_some() && a == b);
        assert_eq!(net.links[&a.unwrap()].opener, 1);
        assert!(!net.log[0].contains(&Action::Connect), "a passive side never connects");

        // Side 0 connecting, side 1's connection up first: side 0 takes
        // it, whatever the identifiers, and abandons its attempt.
        let mut net = Net::ebgp(HIGH, LOW);
        net.start(0);
        net.start(1);
        net.complete_attempts(&[1]);
        assert!(net.log[0].iter().any(|a| matches!(a, Action::AbandonAttempt(_))));
        assert!(!net.attempting[0]);
        net.run_for(Duration::from_secs(10));
        let [a, b] = net.established();
        assert!(a.is_some() && a == b);
        assert_eq!(net.links.len(), 1);
    }

    /// An established session meets a connection from the peer (the peer
    /// restarted and this side has not noticed). A peer whose OPEN
    /// announces a graceful restart gets the new connection at once, the
    /// old session closed without a NOTIFICATION; any other is refused
    /// until this side's hold timer ends the old one.
    #[test]
    fn while_established_a_new_connection_replaces_the_session_only_for_a_graceful_restarter() {
        for graceful in [false, true] {
            let mut restarter = config(64512, 64513, LOW);
            if graceful {
                restarter.graceful_restart = Some(GracefulRestart {
                    restart_state: true,
                    notification: false,
                    restart_time: 120,
                    families: Vec::new(),
                });
            }
            let mut net = Net::new(config(64513, 64512, HIGH), restarter.clone());
            net.start(0);
            net.start(1);
            net.run_for(Duration::from_secs(5));
            let old = net.established()[0].unwrap();

            // Side 1 crashes (its connection goes silent) and comes back.
            for link in net.links.values_mut() {
                link.cut = true;
            }
            net.sides[1] = Connections::new(restarter);
            net.start(1);
            net.run_for(Duration::from_secs(3));
            let [a, b] = net.established();
            if graceful {
                assert!(a.is_some() && a == b && a != Some(old), "{a:?} {b:?}");
                assert!(net.log[0].iter().any(|x| matches!(
                    x,
                    Action::Close { connection, established: true, .. } if *connection == old
                )));
                assert!(
                    net.notifications_on(0, old).is_empty(),
                    "no NOTIFICATION on the old connection"
                );
            } else {
                assert_eq!(a, Some(old), "the old session stands until its hold timer");
                assert_eq!(b, None);
                let refused = *net.links.keys().find(|id| **id > old).unwrap();
                assert_eq!(net.notifications_on(0, refused), [COLLISION]);
                net.run_for(Duration::from_secs(30));
                let [a, b] = net.established();
                assert!(a.is_some() && a == b && a != Some(old), "{a:?} {b:?}");
            }
        }
    }

    /// The peer's connection attempt crosses this side's, and arrives
    /// just after the session came up on this side's connection (a
    /// restarted agent and a router retrying at the same moment): the
    /// peer's OPEN on it announces no restart, so it is a collision and
    /// refused with a Cease; the established session is untouched, but
    /// for a KEEPALIVE that checks its connection is alive. Both sides can
    /// restart gracefully, as in the lab's graceful restart test.
    #[test]
    fn a_crossing_connection_after_establishment_leaves_the_session_alone() {
        let graceful = |restart_state| GracefulRestart {
            restart_state,
            notification: false,
            restart_time: 120,
            families: Vec::new(),
        };
        let mut local = config(64513, 64512, LOW);
        local.graceful_restart = Some(graceful(true));
        let mut peer = config(64512, 64513, HIGH);
        peer.graceful_restart = Some(graceful(false));
        // The peer waits, so the session comes up on this side's
        // connection.
        let mut waiting = peer.clone();
        waiting.passive = true;
        let mut net = Net::new(local, waiting);
        net.start(1);
        net.start(0);
        net.run_for(Duration::from_secs(5));
        let old = net.established()[0].unwrap();
        assert_eq!(net.links[&old].opener, 0);

        let now = net.now;
        let core = &mut net.sides[0];
        let actions = after(core, |c| c.connected(100, Direction::Incoming, now));
        assert!(actions.contains(&Action::Send(old, Message::Keepalive)), "{actions:?}");
        let open = net.sides[0].session().config().open();
        assert!(actions.contains(&Action::Send(100, Message::Open(open))));
        let core = &mut net.sides[0];
        let actions = after(core, |c| {
            c.handle_input(100, Input::Message(Message::Open(peer.open())), now)
        });
        let refused = actions
            .iter()
            .any(|a| matches!(a, Action::Send(100, Message::Notification(n)) if (n.code, n.subcode) == COLLISION));
        assert!(refused, "{actions:?}");
        assert!(
            actions.iter().any(|a| matches!(
                a,
                Action::Close {
                    connection: 100,
                    established: false,
                    ..
                }
            )),
            "{actions:?}"
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Close { connection, .. } if *connection == old)),
            "{actions:?}"
        );
        assert_eq!(net.sides[0].established_on(), Some(old));
        assert_eq!(net.sides[0].connections(), [old]);

        // The same OPEN announcing a restart replaces the session, the
        // old connection closed without a NOTIFICATION.
        let mut restarted = peer;
        restarted.graceful_restart = Some(graceful(true));
        let core = &mut net.sides[0];
        after(core, |c| c.connected(101, Direction::Incoming, now));
        let actions = after(core, |c| {
            c.handle_input(101, Input::Message(Message::Open(restarted.open())), now)
        });
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Close { connection, established: true, reason: CloseReason::Dropped(_) } if *connection == old)),
            "{actions:?}"
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::Send(c, Message::Notification(_)) if *c == old)),
            "{actions:?}"
        );
        after(core, |c| c.handle_input(101, Input::Message(Message::Keepalive), now));
        assert_eq!(core.established_on(), Some(101));
    }

    /// A stopped session refuses the peer's connections; an opening one
    /// on the peer's older connection takes its newer one instead.
    #[test]
    fn a_stopped_session_refuses_and_a_newer_connection_replaces_an_older_one() {
        let now = Instant::now();
        let mut stopped = Connections::new(config(64513, 64512, LOW));
        let actions = after(&mut stopped, |c| c.connected(7, Direction::Incoming, now));
        assert!(
            matches!(actions[..], [Action::Close { connection: 7, .. }]),
            "{actions:?}"
        );
        assert!(stopped.connections().is_empty());

        let mut passive = config(64513, 64512, LOW);
        passive.passive = true;
        let mut waiting = Connections::new(passive);
        after(&mut waiting, |c| c.start(now));
        let actions = after(&mut waiting, |c| c.connected(1, Direction::Incoming, now));
        assert!(
            matches!(actions[..], [Action::Send(1, Message::Open(_))]),
            "{actions:?}"
        );
        let actions = after(&mut waiting, |c| c.connected(2, Direction::Incoming, now));
        assert!(
            matches!(
                &actions[..],
                [
                    Action::Send(1, Message::Notification(n)),
                    Action::Close { connection: 1, .. },
                    Action::Send(2, Message::Open(_)),
                ] if (n.code, n.subcode) == COLLISION
            ),
            "{actions:?}"
        );
        assert_eq!(waiting.connections(), [2]);
        // What still comes on the old connection is ignored.
        assert!(after(&mut waiting, |c| c.handle_input(1, Input::TcpConnectionFails, now)).is_empty());
        assert_eq!(waiting.session().state(), State::OpenSent);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Start,
        Stop,
        Connected(Direction),
        /// On the connection numbered this many back from the newest.
        Received(u64, Input),
        AttemptFailed,
        Wait(u64),
    }

    fn steps() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let open = |id: [u8; 4]| {
            Message::Open(meshlb_wire::bgp::Open::new(
                64512,
                9,
                Ipv4Addr::from(id),
                vec![meshlb_wire::bgp::Capability::Multiprotocol(Family::IPV4_UNICAST)],
            ))
        };
        let input = prop_oneof![
            Just(Input::Message(open(HIGH))),
            Just(Input::Message(open(LOW))),
            Just(Input::Message(Message::Keepalive)),
            Just(Input::Message(Message::Notification(Notification::new(6, 2, vec![])))),
            Just(Input::TcpConnectionFails),
        ];
        prop_oneof![
            Just(Step::Start),
            Just(Step::Stop),
            Just(Step::Connected(Direction::Outgoing)),
            Just(Step::Connected(Direction::Incoming)),
            (0..3u64, input).prop_map(|(back, input)| Step::Received(back, input)),
            Just(Step::AttemptFailed),
            (0..20_000u64).prop_map(Step::Wait),
        ]
    }

    proptest::proptest! {
        /// Whatever the connections do: the cores run on at most two, all
        /// of them open; nothing is sent on, established on or closed on a
        /// connection that is not open; the session is established only
        /// on one of its connections; no timer is in the past.
        #[test]
        fn any_history_keeps_the_connections_consistent(
            history in proptest::collection::vec(steps(), 1..80),
            local_high in proptest::bool::ANY,
        ) {
            let mut core = Connections::new(config(64513, 64512, if local_high { HIGH } else { LOW }));
            let mut now = Instant::now();
            let mut open = std::collections::BTreeSet::new();
            let mut newest: ConnectionId = 0;
            for step in history {
                let mut lost = None;
                let actions = match step {
                    Step::Start => after(&mut core, |c| c.start(now)),
                    Step::Stop => after(&mut core, |c| c.stop(false, now)),
                    Step::Connected(direction) => {
                        newest += 1;
                        open.insert(newest);
                        after(&mut core, |c| c.connected(newest, direction, now))
                    }
                    Step::Received(back, input) => {
                        let connection = newest.saturating_sub(back);
                        if input == Input::TcpConnectionFails {
                            lost = Some(connection);
                        }
                        after(&mut core, |c| c.handle_input(connection, input, now))
                    }
                    Step::AttemptFailed => after(&mut core, |c| c.attempt_failed(now)),
                    Step::Wait(ms) => {
                        now += Duration::from_millis(ms);
                        after(&mut core, |c| c.handle_timeout(now))
                    }
                };
                for action in &actions {
                    match action {
                        Action::Send(c, _) | Action::Established(c, _) => {
                            proptest::prop_assert!(open.contains(c), "{action:?} on a closed connection");
                        }
                        Action::Close { connection, .. } => {
                            proptest::prop_assert!(open.remove(connection), "{action:?} twice");
                        }
                        Action::Connect | Action::AbandonAttempt(_) | Action::RefreshRequested(_) => {}
                    }
                }
                if let Some(connection) = lost {
                    open.remove(&connection);
                }
                let on = core.connections();
                proptest::prop_assert!(on.len() <= 2);
                proptest::prop_assert!(on.iter().all(|c| open.contains(c)), "{on:?} not all in {open:?}");
                if let Some(c) = core.established_on() {
                    proptest::prop_assert!(on.contains(&c));
                }
                proptest::prop_assert!(core.poll_timeout().is_none_or(|at| at > now));
            }
        }
    }
}
