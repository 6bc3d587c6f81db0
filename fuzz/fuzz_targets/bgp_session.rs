//! BGP session core: any sequence of events, received bytes and waits.
//! It never panics, has negotiated terms exactly while OpenConfirm or
//! Established, never schedules a timer in the past, never connects while
//! passive, and after a manual stop stays in Idle with nothing scheduled
//! until started again.
#![no_main]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use meshlb_actors::bgp::session::{Input, Output, PeerAs, Session, SessionConfig, State};
use meshlb_wire::bgp::{Capability, Family, Message, Open, SessionParams};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let passive = flags & 1 == 1;
    let mut session = Session::new(SessionConfig {
        local_as: 64600,
        peer_as: if flags & 2 == 2 {
            PeerAs::External
        } else {
            PeerAs::Exact(64512)
        },
        router_id: Ipv4Addr::new(192, 0, 2, 10),
        hold_time: 9,
        keepalive_time: None,
        connect_retry: Duration::from_secs(5),
        passive,
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        route_refresh: true,
        extended_next_hop: true,
        graceful_restart: None,
    });
    let good_open = Open::new(
        64512,
        90,
        Ipv4Addr::new(192, 0, 2, 1),
        vec![Capability::Multiprotocol(Family::IPV4_UNICAST)],
    );
    let mut now = Instant::now();
    let mut stopped = true;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 8 {
            0 => {
                stopped = false;
                session.handle_input(Input::ManualStart, now)
            }
            1 => {
                stopped = true;
                session.handle_input(Input::ManualStop, now)
            }
            2 => session.handle_input(Input::TcpConnectionConfirmed, now),
            3 => session.handle_input(Input::TcpConnectionFails, now),
            4 => {
                let Some((&wait, tail)) = rest.split_first() else { break };
                rest = tail;
                now += Duration::from_millis(u64::from(wait) * 100);
                session.handle_timeout(now)
            }
            5 => {
                // A frame of the next bytes, decoded as the session would.
                let Some((&len, tail)) = rest.split_first() else { break };
                let len = usize::from(len).min(tail.len());
                let (frame, tail) = tail.split_at(len);
                rest = tail;
                let params = session.negotiated().map_or(SessionParams::FOUR_OCTET_AS, |n| n.params);
                let input = match Message::decode(frame, &params) {
                    Ok(message) => Input::Message(message),
                    Err(e) => Input::DecodeError(e),
                };
                session.handle_input(input, now)
            }
            6 => session.handle_input(Input::Message(Message::Open(good_open.clone())), now),
            _ => session.handle_input(Input::Message(Message::Keepalive), now),
        }
        let outputs: Vec<Output> = std::iter::from_fn(|| session.poll_output()).collect();
        let state = session.state();
        assert_eq!(
            session.negotiated().is_some(),
            matches!(state, State::OpenConfirm | State::Established)
        );
        assert!(session.poll_timeout().is_none_or(|at| at > now));
        if passive {
            assert!(!outputs.contains(&Output::Connect));
        }
        if stopped {
            assert_eq!(state, State::Idle);
            assert_eq!(session.poll_timeout(), None);
        }
    }
});
