//! One BFD session, sans-IO: RFC 5880's asynchronous mode (sections 6.2,
//! 6.8) for one peer, with its three-way handshake, detection time, slow
//! start and Poll Sequence.
//!
//! The driver feeds it the control packets that reached it (already
//! decoded and checked packet by packet, [`meshlb_wire::bfd`]) with the
//! time ([`BfdSession::handle_packet`]) and calls
//! [`BfdSession::handle_timeout`] at [`BfdSession::poll_timeout`]; after
//! each, it sends the packets [`BfdSession::poll_output`] gives and acts on
//! the state changes ([`Output::Up`], [`Output::Down`]): a BGP session
//! over a path BFD sees fail goes down at once.
//!
//! ```text
//!            Down ──(peer Down)──▶ Init ──(peer Init/Up)──▶ Up
//!             ▲ ╲___________(peer Init)___________________▶ ▲
//!             └──── detection time passes, or the peer says Down ┘
//! ```
//!
//! Until the session is Up it transmits no faster than once a second
//! (section 6.8.3); once Up it switches to the configured interval with a
//! Poll Sequence. Transmission intervals are jittered by up to 25 %
//! (section 6.8.7).
//!
//! The Echo function (sections 6.4 and 6.8.9): with an echo interval
//! configured, once Up and while the peer advertises a non-zero Required
//! Min Echo RX Interval, the session sends Echo packets
//! ([`Output::SendEcho`]; the driver addresses them to this system through
//! the peer) at the slower of the two intervals, jittered like control
//! packets; when none comes back ([`BfdSession::handle_echo`]) for Detect
//! Mult intervals, the session goes Down with Echo Function Failed. What
//! it advertises as its own Required Min Echo RX Interval is
//! [`BfdConfig::echo_receive`]: only non-zero where this system's
//! forwarding loops the peer's Echo packets back. Control packets keep
//! their rate (as FRR's bfdd does; section 6.8.3 allows slowing them).
//!
//! Not implemented: Demand mode and authentication (a packet carrying
//! authentication is discarded, as the RFC asks of a session without it).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use meshlb_wire::bfd::{ControlPacket, Diagnostic, Flags, State};
use meshlb_wire::bfd_echo::EchoPacket;

/// The slowest an unestablished session transmits (section 6.8.3).
pub const SLOW_START_INTERVAL: Duration = Duration::from_secs(1);

/// A session's timers and role (from a BFDProfile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdConfig {
    /// Desired Min TX Interval once Up.
    pub desired_min_tx: Duration,
    /// Required Min RX Interval.
    pub required_min_rx: Duration,
    /// Detect Mult.
    pub detect_multiplier: u8,
    /// Passive: send nothing until the peer has.
    pub passive: bool,
    /// Echo mode: send Echo packets at least this far apart (BFDProfile
    /// `echoMode` with `echoInterval`); `None`: no Echo packets sent.
    pub echo_interval: Option<Duration>,
    /// The Required Min Echo RX Interval advertised: zero unless this
    /// system loops the peer's Echo packets back (it forwards IP).
    pub echo_receive: Duration,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this control packet to the peer.
    Send(ControlPacket),
    /// Send this Echo packet, through the peer back to this system.
    SendEcho(EchoPacket),
    /// The session came up.
    Up,
    /// The session went down from Up, for this reason.
    Down(Diagnostic),
}

/// One BFD session. See the module documentation.
#[derive(Debug, Clone)]
pub struct BfdSession {
    config: BfdConfig,
    local_discriminator: u32,
    remote_discriminator: u32,
    state: State,
    diagnostic: Diagnostic,
    /// The peer's Required Min RX Interval (1 µs until heard, section 6.8.1).
    remote_min_rx: Duration,
    /// The peer's Desired Min TX Interval and Detect Mult, for the
    /// detection time.
    remote_desired_tx: Duration,
    remote_detect_multiplier: u8,
    /// The Desired Min TX Interval advertised now (slow start until Up).
    desired_tx: Duration,
    /// A Poll Sequence is under way.
    polling: bool,
    next_transmit: Option<Instant>,
    detect_at: Option<Instant>,
    /// xorshift state for the jitter.
    jitter: u64,
    /// The peer's Required Min Echo RX Interval (zero: no Echo packets).
    remote_min_echo_rx: Duration,
    /// The Echo function: the next Echo packet due, and when it fails if
    /// none comes back before.
    next_echo: Option<Instant>,
    echo_detect_at: Option<Instant>,
    echo_sequence: u64,
    /// What the driver must do, in order.
    outputs: VecDeque<Output>,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl BfdSession {
    /// A session in Down with `local_discriminator` (non-zero, unique on
    /// this system); `seed` seeds the jitter. Unless passive, it transmits
    /// from `now`.
    pub fn new(config: BfdConfig, local_discriminator: u32, seed: u64, now: Instant) -> BfdSession {
        let mut session = BfdSession {
            config,
            local_discriminator: local_discriminator.max(1),
            remote_discriminator: 0,
            state: State::Down,
            diagnostic: Diagnostic::NoDiagnostic,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_detect_multiplier: 0,
            desired_tx: config.desired_min_tx.max(SLOW_START_INTERVAL),
            polling: false,
            next_transmit: None,
            detect_at: None,
            jitter: seed | 1,
            remote_min_echo_rx: Duration::ZERO,
            next_echo: None,
            echo_detect_at: None,
            echo_sequence: 0,
            outputs: VecDeque::new(),
        };
        if !config.passive {
            session.next_transmit = Some(now);
        }
        session
    }

    /// Its state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Its discriminator.
    pub fn local_discriminator(&self) -> u32 {
        self.local_discriminator
    }

    /// When [`BfdSession::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.next_transmit, self.detect_at, self.next_echo, self.echo_detect_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether Echo packets are being sent.
    pub fn echo_active(&self) -> bool {
        self.next_echo.is_some()
    }

    /// The interval between Echo packets: the slower of this side's and
    /// what the peer can receive (section 6.8.9); `None` while the Echo
    /// function cannot run.
    pub fn echo_interval(&self) -> Option<Duration> {
        let own = self.config.echo_interval?;
        (self.state == State::Up && !self.remote_min_echo_rx.is_zero()).then(|| own.max(self.remote_min_echo_rx))
    }

    /// How long the Echo function waits for a packet to come back.
    fn echo_detection_time(&self, interval: Duration) -> Duration {
        interval.saturating_mul(u32::from(self.config.detect_multiplier.max(1)))
    }

    /// One of this session's Echo packets came back at `now`.
    pub fn handle_echo(&mut self, echo: &EchoPacket, now: Instant) {
        if echo.discriminator != self.local_discriminator || self.echo_detect_at.is_none() {
            return;
        }
        if let Some(interval) = self.echo_interval() {
            self.echo_detect_at = Some(now + self.echo_detection_time(interval));
        }
    }

    /// Starts or stops the Echo function as the state and the peer's
    /// interval now allow.
    fn update_echo(&mut self, now: Instant) {
        match self.echo_interval() {
            Some(interval) if self.next_echo.is_none() => {
                self.next_echo = Some(now);
                self.echo_detect_at = Some(now + self.echo_detection_time(interval));
            }
            Some(_) => {}
            None => {
                self.next_echo = None;
                self.echo_detect_at = None;
            }
        }
    }

    /// `interval` less up to 25 % (at most 10 % with a Detect Mult of 1),
    /// by the jitter's next value (section 6.8.7).
    fn jittered(&mut self, interval: Duration) -> Duration {
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let (lowest, span) = if self.config.detect_multiplier == 1 {
            (75, 15)
        } else {
            (75, 25)
        };
        let percent = lowest + (self.jitter % (span + 1));
        interval.mul_f64(percent as f64 / 100.0)
    }

    /// The detection time: the peer's Detect Mult times the slower of what
    /// this side can receive and the peer wants to send (section 6.8.4).
    pub fn detection_time(&self) -> Duration {
        self.config
            .required_min_rx
            .max(self.remote_desired_tx)
            .saturating_mul(u32::from(self.remote_detect_multiplier))
    }

    /// Takes a control packet the peer sent at `now` (section 6.8.6, from
    /// the session lookup on).
    pub fn handle_packet(&mut self, packet: &ControlPacket, now: Instant) {
        if packet.your_discriminator != 0 && packet.your_discriminator != self.local_discriminator {
            return;
        }
        if packet.authentication.is_some() || self.state == State::AdminDown {
            return;
        }
        let mut out = Vec::new();
        let interval_before = self.transmit_interval();
        self.remote_discriminator = packet.my_discriminator;
        self.remote_min_rx = Duration::from_micros(packet.required_min_rx_interval.into());
        self.remote_desired_tx = Duration::from_micros(packet.desired_min_tx_interval.into());
        self.remote_detect_multiplier = packet.detect_multiplier;
        self.remote_min_echo_rx = Duration::from_micros(packet.required_min_echo_rx_interval.into());
        if packet.flags.final_ {
            self.polling = false;
        }
        self.detect_at = Some(now + self.detection_time());
        let before = self.state;
        match (self.state, packet.state) {
            // Not a failure (RFC 5882 section 3.2): the client is not told.
            (State::Down, State::AdminDown) => {}
            (_, State::AdminDown) => self.go_down(Diagnostic::NeighborSignaledSessionDown, false, &mut out),
            (State::Down, State::Down) => self.state = State::Init,
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => self.go_up(&mut out),
            (State::Up, State::Down) => self.go_down(Diagnostic::NeighborSignaledSessionDown, true, &mut out),
            _ => {}
        }
        // A passive session starts transmitting once it has heard the peer;
        // a Poll is answered at once with a Final.
        if packet.flags.poll {
            out.push(Output::Send(self.packet(true)));
        }
        if self.next_transmit.is_none() || self.state != before {
            self.schedule_transmit(now);
        } else if self.transmit_interval() < interval_before {
            // A shorter interval (the peer left its own slow start, its
            // Required Min RX down from a second) takes effect for the
            // next packet (section 6.8.7), not after the packet scheduled
            // at the old, longer one: the peer detects at its new rate.
            let sooner = now + self.jittered(self.transmit_interval());
            if self.next_transmit.is_some_and(|at| at > sooner) {
                self.next_transmit = Some(sooner);
            }
        }
        self.update_echo(now);
        self.outputs.extend(out);
    }

    /// The next thing the driver must do (a packet to send, a state
    /// change to act on).
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The interval between periodic transmissions, before jitter: the
    /// slower of this side's Desired Min TX and the peer's Required Min RX.
    fn transmit_interval(&self) -> Duration {
        self.desired_tx.max(self.remote_min_rx)
    }

    /// Handles the timers due at `now`: a detection time passed without a
    /// packet (down), or a packet to transmit.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut out = Vec::new();
        if self.detect_at.is_some_and(|at| at <= now) {
            self.detect_at = None;
            if matches!(self.state, State::Init | State::Up) {
                self.go_down(Diagnostic::ControlDetectionTimeExpired, true, &mut out);
            }
            // Section 6.8.1: the peer is forgotten.
            self.remote_discriminator = 0;
            self.remote_min_rx = Duration::from_micros(1);
            if self.config.passive {
                self.next_transmit = None;
            }
        }
        if self.echo_detect_at.is_some_and(|at| at <= now) {
            self.echo_detect_at = None;
            self.next_echo = None;
            if self.state == State::Up {
                self.go_down(Diagnostic::EchoFunctionFailed, true, &mut out);
            }
        }
        if self.next_transmit.is_some_and(|at| at <= now) {
            out.push(Output::Send(self.packet(false)));
            self.schedule_transmit(now);
        }
        if self.next_echo.is_some_and(|at| at <= now) {
            if let Some(interval) = self.echo_interval() {
                self.echo_sequence += 1;
                out.push(Output::SendEcho(EchoPacket {
                    discriminator: self.local_discriminator,
                    sequence: self.echo_sequence,
                }));
                self.next_echo = Some(now + self.jittered(interval));
            } else {
                self.next_echo = None;
            }
        }
        self.update_echo(now);
        self.outputs.extend(out);
    }

    /// Takes the session administratively down (the agent stopping):
    /// the packet telling the peer, which does not count it a failure.
    pub fn admin_down(&mut self) -> ControlPacket {
        self.state = State::AdminDown;
        self.diagnostic = Diagnostic::AdministrativelyDown;
        self.next_transmit = None;
        self.detect_at = None;
        self.next_echo = None;
        self.echo_detect_at = None;
        self.packet(false)
    }

    fn go_up(&mut self, out: &mut Vec<Output>) {
        self.state = State::Up;
        self.diagnostic = Diagnostic::NoDiagnostic;
        // Out of slow start: the configured interval, announced by a Poll.
        if self.desired_tx != self.config.desired_min_tx {
            self.desired_tx = self.config.desired_min_tx;
            self.polling = true;
        }
        out.push(Output::Up);
    }

    /// Down for `diagnostic`; the client is told (`tell`) if it was Up.
    fn go_down(&mut self, diagnostic: Diagnostic, tell: bool, out: &mut Vec<Output>) {
        let was_up = self.state == State::Up && tell;
        self.state = State::Down;
        self.diagnostic = diagnostic;
        self.desired_tx = self.config.desired_min_tx.max(SLOW_START_INTERVAL);
        self.polling = false;
        if was_up {
            out.push(Output::Down(diagnostic));
        }
    }

    /// The next periodic transmission: none while passive and unheard, or
    /// when the peer wants none; otherwise the slower of this side's and
    /// the peer's intervals, less up to 25 % (at most 10 % less with a
    /// Detect Mult of 1).
    fn schedule_transmit(&mut self, now: Instant) {
        if (self.config.passive && self.remote_discriminator == 0) || self.remote_min_rx.is_zero() {
            self.next_transmit = None;
            return;
        }
        let interval = self.transmit_interval();
        self.next_transmit = Some(now + self.jittered(interval));
    }

    fn packet(&self, final_: bool) -> ControlPacket {
        ControlPacket {
            diagnostic: self.diagnostic,
            state: self.state,
            flags: Flags {
                poll: self.polling && !final_,
                final_,
                ..Flags::default()
            },
            detect_multiplier: self.config.detect_multiplier,
            my_discriminator: self.local_discriminator,
            your_discriminator: self.remote_discriminator,
            desired_min_tx_interval: micros(self.desired_tx),
            required_min_rx_interval: micros(self.config.required_min_rx),
            required_min_echo_rx_interval: micros(self.config.echo_receive),
            authentication: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Everything `session` has for the driver now.
    fn outputs(session: &mut BfdSession) -> Vec<Output> {
        std::iter::from_fn(|| session.poll_output()).collect()
    }

    fn config(passive: bool) -> BfdConfig {
        BfdConfig {
            desired_min_tx: 300 * MS,
            required_min_rx: 300 * MS,
            detect_multiplier: 3,
            passive,
            echo_interval: None,
            echo_receive: Duration::ZERO,
        }
    }

    /// Two sessions on virtual time; what one sends reaches the other 1 ms
    /// later (through the real encoder and decoder) while the link is up.
    struct Pair {
        now: Instant,
        sides: [BfdSession; 2],
        in_flight: Vec<(Instant, usize, ControlPacket)>,
        link_up: bool,
        /// Echo packets looped back by the other side's forwarding, due
        /// back at their sender.
        echoes: Vec<(Instant, usize, EchoPacket)>,
        /// Whether the sides' forwarding loops Echo packets back.
        forwarding_up: bool,
        /// Every output with its time, per side.
        seen: [Vec<(Instant, Output)>; 2],
    }

    impl Pair {
        fn new(a: BfdConfig, b: BfdConfig) -> Pair {
            let now = Instant::now();
            Pair {
                now,
                sides: [BfdSession::new(a, 11, 1, now), BfdSession::new(b, 22, 2, now)],
                in_flight: Vec::new(),
                link_up: true,
                echoes: Vec::new(),
                forwarding_up: true,
                seen: [Vec::new(), Vec::new()],
            }
        }

        fn act(&mut self, side: usize) {
            while let Some(output) = self.sides[side].poll_output() {
                if let Output::Send(packet) = &output
                    && self.link_up
                {
                    let decoded = ControlPacket::decode(&packet.to_bytes()).unwrap();
                    self.in_flight.push((self.now + MS, 1 - side, decoded));
                }
                if let Output::SendEcho(echo) = &output
                    && self.link_up
                    && self.forwarding_up
                {
                    let back = EchoPacket::decode(&echo.to_bytes()).unwrap();
                    self.echoes.push((self.now + 2 * MS, side, back));
                }
                self.seen[side].push((self.now, output));
            }
        }

        fn run_for(&mut self, duration: Duration) {
            let end = self.now + duration;
            loop {
                let timer = self.sides.iter().filter_map(BfdSession::poll_timeout).min();
                let arrival = self
                    .in_flight
                    .iter()
                    .map(|(at, _, _)| *at)
                    .chain(self.echoes.iter().map(|(at, _, _)| *at))
                    .min();
                let Some(next) = [timer, arrival].into_iter().flatten().min().filter(|at| *at <= end) else {
                    break;
                };
                self.now = self.now.max(next);
                if let Some(i) = self.in_flight.iter().position(|(at, _, _)| *at <= self.now) {
                    let (_, to, packet) = self.in_flight.remove(i);
                    self.sides[to].handle_packet(&packet, self.now);
                    self.act(to);
                    continue;
                }
                if let Some(i) = self.echoes.iter().position(|(at, _, _)| *at <= self.now) {
                    let (_, to, echo) = self.echoes.remove(i);
                    self.sides[to].handle_echo(&echo, self.now);
                    continue;
                }
                for side in 0..2 {
                    self.sides[side].handle_timeout(self.now);
                    self.act(side);
                }
            }
            self.now = end;
        }

        fn states(&self) -> [State; 2] {
            [self.sides[0].state(), self.sides[1].state()]
        }

        fn sends(&self, side: usize) -> Vec<(Instant, ControlPacket)> {
            self.seen[side]
                .iter()
                .filter_map(|(at, o)| match o {
                    Output::Send(p) => Some((*at, p.clone())),
                    _ => None,
                })
                .collect()
        }

        fn echoes_sent(&self, side: usize) -> Vec<Instant> {
            self.seen[side]
                .iter()
                .filter(|(_, o)| matches!(o, Output::SendEcho(_)))
                .map(|(at, _)| *at)
                .collect()
        }

        fn events(&self, side: usize) -> Vec<Output> {
            self.seen[side]
                .iter()
                .filter(|(_, o)| !matches!(o, Output::Send(_) | Output::SendEcho(_)))
                .map(|(_, o)| o.clone())
                .collect()
        }
    }

    /// A packet from a peer in its own slow start, as FRR's bfdd is after
    /// this system restarted: a second's Desired Min TX and Required Min RX.
    fn peer_packet(state: State, local: u32, interval: Duration, poll: bool) -> ControlPacket {
        ControlPacket {
            diagnostic: Diagnostic::NoDiagnostic,
            state,
            flags: Flags {
                poll,
                ..Flags::default()
            },
            detect_multiplier: 3,
            my_discriminator: 99,
            your_discriminator: local,
            desired_min_tx_interval: micros(interval),
            required_min_rx_interval: micros(interval),
            required_min_echo_rx_interval: 0,
            authentication: None,
        }
    }

    /// This side comes up while the peer still asks for a packet a second
    /// (its slow start); when the peer's Poll brings its Required Min RX
    /// down to 100 ms, this side's next packet goes within 100 ms, not at
    /// the second it had scheduled: the peer, detecting at 3 x 100 ms,
    /// would declare it down (an agent restart flapped its route so).
    #[test]
    fn a_shorter_interval_takes_effect_for_the_next_packet() {
        let fast = BfdConfig {
            desired_min_tx: 100 * MS,
            required_min_rx: 100 * MS,
            ..config(false)
        };
        let mut now = Instant::now();
        let mut session = BfdSession::new(fast, 11, 7, now);
        session.handle_timeout(now);
        outputs(&mut session);
        let second = SLOW_START_INTERVAL;
        session.handle_packet(&peer_packet(State::Down, 0, second, false), now);
        outputs(&mut session);
        now += 10 * MS;
        session.handle_packet(&peer_packet(State::Init, 11, second, false), now);
        assert_eq!(outputs(&mut session), [Output::Up]);
        // Up, the peer still slow: a packet a second at most.
        assert!(session.poll_timeout().is_some_and(|at| at > now + 500 * MS));
        now += 20 * MS;
        session.handle_packet(&peer_packet(State::Up, 11, 100 * MS, true), now);
        let out = outputs(&mut session);
        assert!(
            matches!(&out[..], [Output::Send(p)] if p.flags.final_),
            "the Poll answered at once: {out:?}"
        );
        let next = session.poll_timeout().unwrap();
        assert!(next <= now + 100 * MS, "next packet {:?} after the Poll", next - now);
        session.handle_timeout(next);
        let out = outputs(&mut session);
        assert!(matches!(&out[..], [Output::Send(_)]), "{out:?}");
        assert!(session.poll_timeout().unwrap() <= next + 100 * MS);
    }

    /// The three-way handshake brings both up; a Poll Sequence then moves
    /// both from the slow-start second to 300 ms, jittered to 75-100 %;
    /// the detection time becomes 3 x 300 ms.
    #[test]
    fn both_come_up_and_leave_slow_start_with_a_poll() {
        let mut pair = Pair::new(config(false), config(false));
        pair.run_for(3 * SLOW_START_INTERVAL);
        assert_eq!(pair.states(), [State::Up, State::Up]);
        assert_eq!(pair.events(0), [Output::Up]);
        assert_eq!(pair.events(1), [Output::Up]);
        for side in 0..2 {
            let sends = pair.sends(side);
            assert!(sends.iter().any(|(_, p)| p.flags.poll), "a Poll announced 300 ms");
            assert!(
                pair.sends(1 - side).iter().any(|(_, p)| p.flags.final_),
                "answered by a Final"
            );
            let late: Vec<_> = sends
                .iter()
                .filter(|(at, _)| *at > pair.now - SLOW_START_INTERVAL)
                .collect();
            assert!(
                late.iter()
                    .all(|(_, p)| p.desired_min_tx_interval == 300_000 && !p.flags.poll)
            );
            for gap in late.windows(2).map(|w| w[1].0 - w[0].0).filter(|g| *g > 10 * MS) {
                assert!((225 * MS..=300 * MS).contains(&gap), "a periodic interval of {gap:?}");
            }
            assert_eq!(pair.sides[side].detection_time(), 900 * MS);
        }
    }

    /// Silence: the detection time after the last packet heard, Down with
    /// Control Detection Time Expired, never before.
    #[test]
    fn silence_for_the_detection_time_takes_it_down() {
        let mut pair = Pair::new(config(false), config(false));
        pair.run_for(3 * SLOW_START_INTERVAL);
        pair.link_up = false;
        let cut = pair.now;
        pair.run_for(2 * SLOW_START_INTERVAL);
        assert_eq!(pair.states(), [State::Down, State::Down]);
        for side in 0..2 {
            let (at, _) = pair.seen[side]
                .iter()
                .find(|(_, o)| *o == Output::Down(Diagnostic::ControlDetectionTimeExpired))
                .unwrap();
            let waited = *at - cut;
            assert!(
                waited <= 900 * MS && waited >= 600 * MS,
                "down {waited:?} after the cut"
            );
        }
        // Back: the handshake again, from the slow start.
        pair.link_up = true;
        pair.run_for(4 * SLOW_START_INTERVAL);
        assert_eq!(pair.states(), [State::Up, State::Up]);
    }

    /// A passive side sends nothing until it hears the peer, then comes up.
    #[test]
    fn a_passive_side_waits_to_be_heard() {
        let mut pair = Pair::new(config(true), config(true));
        pair.run_for(5 * SLOW_START_INTERVAL);
        assert!(pair.sends(0).is_empty() && pair.sends(1).is_empty());
        let mut pair = Pair::new(config(false), config(true));
        pair.run_for(4 * SLOW_START_INTERVAL);
        assert_eq!(pair.states(), [State::Up, State::Up]);
    }

    /// The peer going administratively down is no failure: Down without
    /// telling the client. The peer restarting (Down, a new discriminator)
    /// is one.
    #[test]
    fn admin_down_is_no_failure_and_a_restarted_peer_is() {
        let mut pair = Pair::new(config(false), config(false));
        pair.run_for(3 * SLOW_START_INTERVAL);
        let packet = pair.sides[1].admin_down();
        let at = pair.now + MS;
        pair.in_flight.push((at, 0, packet));
        pair.run_for(10 * MS);
        assert_eq!(pair.states()[0], State::Down);
        assert_eq!(pair.events(0), [Output::Up], "the client is not told");

        let mut pair = Pair::new(config(false), config(false));
        pair.run_for(3 * SLOW_START_INTERVAL);
        pair.sides[1] = BfdSession::new(config(false), 33, 3, pair.now);
        pair.run_for(10 * MS);
        assert_eq!(
            pair.events(0),
            [Output::Up, Output::Down(Diagnostic::NeighborSignaledSessionDown)]
        );
        pair.run_for(4 * SLOW_START_INTERVAL);
        assert_eq!(pair.states(), [State::Up, State::Up]);
    }

    /// A packet for another discriminator, or with authentication this
    /// session does not have, changes nothing.
    #[test]
    fn packets_for_others_or_authenticated_are_discarded() {
        let now = Instant::now();
        let mut session = BfdSession::new(config(false), 11, 1, now);
        let mut packet = BfdSession::new(config(false), 22, 2, now).packet(false);
        packet.your_discriminator = 99;
        session.handle_packet(&packet, now);
        assert!(outputs(&mut session).is_empty());
        packet.your_discriminator = 0;
        packet.authentication = Some(meshlb_wire::bfd::Authentication::SimplePassword {
            key_id: 1,
            password: b"x".to_vec(),
        });
        session.handle_packet(&packet, now);
        assert!(outputs(&mut session).is_empty());
        assert_eq!(session.state(), State::Down);
        packet.authentication = None;
        session.handle_packet(&packet, now);
        assert_eq!(session.state(), State::Init);
    }

    fn echoing(interval: Option<Duration>, receive: Duration) -> BfdConfig {
        BfdConfig {
            echo_interval: interval,
            echo_receive: receive,
            ..config(false)
        }
    }

    /// Echo packets go only once Up and only to a peer that advertises an
    /// echo receive interval, at the slower of both intervals, jittered.
    #[test]
    fn echo_packets_go_only_to_a_peer_that_loops_them_back() {
        let mut pair = Pair::new(echoing(Some(50 * MS), Duration::ZERO), config(false));
        pair.run_for(4 * SLOW_START_INTERVAL);
        assert_eq!(pair.states(), [State::Up, State::Up]);
        assert!(pair.echoes_sent(0).is_empty(), "the peer receives no Echo");
        assert!(!pair.sides[0].echo_active());

        let mut pair = Pair::new(echoing(Some(50 * MS), Duration::ZERO), echoing(None, 80 * MS));
        pair.run_for(3 * SLOW_START_INTERVAL);
        let up_at = pair.seen[0].iter().find(|(_, o)| *o == Output::Up).unwrap().0;
        let sent = pair.echoes_sent(0);
        assert!(sent.iter().all(|at| *at >= up_at), "none before Up");
        assert!(sent.len() > 10, "{} Echo packets", sent.len());
        for gap in sent.windows(2).map(|w| w[1] - w[0]) {
            assert!((60 * MS..=80 * MS).contains(&gap), "an Echo interval of {gap:?}");
        }
        assert_eq!(pair.sides[0].echo_interval(), Some(80 * MS));
        assert!(pair.echoes_sent(1).is_empty(), "the other side has no echo mode");
        assert_eq!(pair.states(), [State::Up, State::Up], "every Echo came back");
        let advertised = pair.sends(1).last().unwrap().1.required_min_echo_rx_interval;
        assert_eq!(advertised, 80_000);
    }

    /// The forwarding path fails while both control planes still talk:
    /// the echoing side goes Down with Echo Function Failed within Detect
    /// Mult echo intervals, long before control packets would tell.
    #[test]
    fn echo_packets_lost_take_the_session_down() {
        let mut pair = Pair::new(echoing(Some(50 * MS), Duration::ZERO), echoing(None, 50 * MS));
        pair.run_for(3 * SLOW_START_INTERVAL);
        assert_eq!(pair.states(), [State::Up, State::Up]);
        pair.forwarding_up = false;
        let cut = pair.now;
        pair.run_for(300 * MS);
        let (at, _) = pair.seen[0]
            .iter()
            .find(|(_, o)| *o == Output::Down(Diagnostic::EchoFunctionFailed))
            .expect("Echo Function Failed");
        assert!(*at - cut <= 150 * MS, "down {:?} after the cut", *at - cut);
        assert!(!pair.sides[0].echo_active(), "no Echo while Down");
        // The peer learns from the control packets (Down), and the
        // sessions come back once forwarding does.
        assert!(
            pair.events(1)
                .contains(&Output::Down(Diagnostic::NeighborSignaledSessionDown))
        );
        pair.forwarding_up = true;
        pair.run_for(4 * SLOW_START_INTERVAL);
        assert_eq!(pair.states(), [State::Up, State::Up]);
        assert!(pair.sides[0].echo_active());
    }

    /// Another session's Echo packet does not keep this one alive.
    #[test]
    fn only_its_own_echo_packets_count() {
        let mut pair = Pair::new(echoing(Some(50 * MS), Duration::ZERO), echoing(None, 50 * MS));
        pair.run_for(3 * SLOW_START_INTERVAL);
        pair.forwarding_up = false;
        for _ in 0..10 {
            let foreign = EchoPacket {
                discriminator: 999,
                sequence: 1,
            };
            pair.sides[0].handle_echo(&foreign, pair.now);
            pair.run_for(30 * MS);
        }
        assert_eq!(pair.states()[0], State::Down);
    }
}
