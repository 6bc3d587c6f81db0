//! The BGP glue without the lab: the applier ([`BgpActor`]) runs against a
//! scripted router on loopback, a running state the test publishes and a
//! mesh the test plays, and the test asserts what each side receives. The
//! subject is the glue's part of a planned stop: the drain's state machine
//! is unit-tested with its protocol; here it must reach the wire and the
//! mesh in the right order (marked, said to drain, withdrawn only once the
//! mesh shows another node announcing, ceased after the linger).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use meshlb_actors::bgp::drain::WITHDRAW_LINGER;
use meshlb_config::service::ClassFilter;
use meshlb_gossip::driver::{Command, MeshStatus};
use meshlb_gossip::identity::NodeId;
use meshlb_gossip::mesh::MemberView;
use meshlb_gossip::record::{BgpSection, NodeRecord};
use meshlb_node_agent::bgp::{BgpInputs, Stop};
use meshlb_node_agent::local_address::Delivery;
use meshlb_node_agent::node::NodeOptions;
use meshlb_node_agent::pipeline::Pipeline;
use meshlb_node_agent::running::Decisions;
use meshlb_node_agent::status::StatusHub;
use meshlb_wire::bgp::{Capability, Community, Family, Framer, Message, Open, SessionParams, Update};
use tokio::sync::{mpsc, watch};

mod common;

const ROUTER_AS: u32 = 64512;
const SERVICE: &str = "203.0.113.0";

fn config(port: u16) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: public, namespace: metallb-system}}
spec: {{addresses: [203.0.113.0/30]}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: router, namespace: metallb-system}}
spec: {{myASN: 64513, peerASN: {ROUTER_AS}, peerAddress: 127.0.0.1, peerPort: {port}, holdTime: 9s}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: hosts, namespace: metallb-system}}
spec: {{ipAddressPools: [public]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}
"
    )
}

/// What the scripted router saw, in order.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// An UPDATE announcing the service's host route, with its communities.
    Announced(Vec<Community>),
    /// An UPDATE withdrawing it.
    Withdrawn,
    /// A NOTIFICATION (the session ceased).
    Notification(u8),
}

/// The next message on `stream`, framed by the codec's own framer.
fn read_message(stream: &mut TcpStream, framer: &mut Framer) -> Option<Message> {
    loop {
        if let Some(frame) = framer.next_frame().ok()? {
            return Message::decode(&frame, &SessionParams::FOUR_OCTET_AS).ok();
        }
        let mut buf = [0u8; 4096];
        let read = stream.read(&mut buf).ok().filter(|n| *n > 0)?;
        framer.push(&buf[..read]);
    }
}

/// Takes the agent's session through OPEN and reports what it sends until
/// it closes.
fn router(listener: TcpListener, seen: mpsc::UnboundedSender<Seen>) {
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut framer = Framer::new();
    assert!(matches!(read_message(&mut stream, &mut framer), Some(Message::Open(_))));
    let open = Open::new(
        ROUTER_AS,
        9,
        Ipv4Addr::new(192, 0, 2, 1),
        vec![Capability::Multiprotocol(Family::IPV4_UNICAST)],
    );
    let params = SessionParams::FOUR_OCTET_AS;
    stream.write_all(&Message::Open(open).encode(&params).unwrap()).unwrap();
    stream.write_all(&Message::Keepalive.encode(&params).unwrap()).unwrap();
    let host = format!("{SERVICE}/32");
    while let Some(message) = read_message(&mut stream, &mut framer) {
        let event = match message {
            Message::Update(Update { withdrawn, .. }) if withdrawn.iter().any(|p| p.to_string() == host) => {
                Seen::Withdrawn
            }
            Message::Update(update) if update.nlri.iter().any(|p| p.to_string() == host) => {
                Seen::Announced(update.communities().to_vec())
            }
            Message::Notification(n) => Seen::Notification(n.code),
            Message::Keepalive => {
                let _ = stream.write_all(&Message::Keepalive.encode(&params).unwrap());
                continue;
            }
            _ => continue,
        };
        if seen.send(event).is_err() {
            return;
        }
    }
}

async fn next_seen(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("the router saw nothing")
        .expect("the router's connection ended")
}

/// The next section the glue puts in this node's record.
async fn next_section(mesh: &mut mpsc::Receiver<Command>) -> BgpSection {
    common::next_command(mesh, |command| match command {
        Command::SetBgp(section) => Some(section),
        _ => None,
    })
    .await
}

fn member_announcing(name: &str, address: IpAddr) -> MemberView {
    let mut record = NodeRecord::new(name, 1);
    record.bgp.announcing = [address].into();
    MemberView {
        id: NodeId::new(name, SocketAddr::from(([192, 0, 2, 2], 7946)), 1),
        record: Some(record),
    }
}

#[actix::test]
async fn a_planned_stop_is_marked_then_withdrawn_once_the_mesh_covers_it() {
    // A BGPPeer's port is at most 16384 (MetalLB's range): a free one of
    // those, from a start this process's id spreads.
    let start = 8_000 + u16::try_from(std::process::id() % 8_000).unwrap();
    let (listener, port) = (start..=16_384)
        .chain(1_024..start)
        .find_map(|port| TcpListener::bind(("127.0.0.1", port)).ok().map(|l| (l, port)))
        .expect("a free port on loopback");
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let router = std::thread::spawn(move || router(listener, seen_tx));

    let hub = StatusHub::default();
    let decisions = Decisions::default();
    let mut pipeline = Pipeline::new(None, ClassFilter::default()).unwrap();
    decisions.publish_running(common::running(&mut pipeline, &config(port), 1));
    let (delivery, _delivery_task) = Delivery::start(false, BTreeSet::new());
    let (mesh_tx, mut mesh) = mpsc::channel(64);
    let (mesh_status_tx, mesh_status) = watch::channel(MeshStatus::default());
    let glue = meshlb_node_agent::bgp::start(
        NodeOptions {
            node: "n1".into(),
            node_labels: BTreeMap::new(),
            require_endpoints: false,
            schedule: Default::default(),
            local_addresses: false,
        },
        BgpInputs {
            running: decisions.running(),
            router_id: Some(Ipv4Addr::new(192, 0, 2, 11)),
            listen_port: 0,
            hub: hub.clone(),
            answering: actix::Arbiter::current(),
            delivery,
            mesh: mesh_tx,
            mesh_status,
            drain_timeout: Duration::from_secs(60),
            restarted: false,
        },
    );

    // Established: the route goes out unmarked, and the record says so.
    assert_eq!(next_seen(&mut seen).await, Seen::Announced(vec![]));
    let service: IpAddr = SERVICE.parse().unwrap();
    let section = next_section(&mut mesh).await;
    assert_eq!(section.announcing, [service].into());
    assert!(!section.draining);

    // Stopped: the route is marked for a graceful shutdown and the record
    // says this node drains; nothing is withdrawn while no other node
    // announces the address.
    // As in the agent, the pipeline has ended (its running state with it)
    // before BGP is stopped.
    drop(decisions);
    let stopped = actix::spawn(glue.send(Stop));
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Announced(vec![Community::GRACEFUL_SHUTDOWN])
    );
    assert!(next_section(&mut mesh).await.draining);
    let early = tokio::time::timeout(Duration::from_millis(500), seen.recv()).await;
    assert!(early.is_err(), "withdrawn before the mesh covered it: {early:?}");
    assert!(!stopped.is_finished());

    // Another node announces the address: withdrawn; the stop answers
    // after the linger, with nothing to keep, and the session ceases.
    let covered_at = Instant::now();
    mesh_status_tx.send_replace(MeshStatus {
        members: vec![member_announcing("n2", service)],
        ..MeshStatus::default()
    });
    assert_eq!(next_seen(&mut seen).await, Seen::Withdrawn);
    let kept = tokio::time::timeout(Duration::from_secs(30), stopped)
        .await
        .expect("the stop never answered")
        .unwrap()
        .unwrap();
    assert!(kept.is_empty(), "a drain keeps nothing delivered: {kept:?}");
    assert!(
        covered_at.elapsed() >= WITHDRAW_LINGER,
        "the stop answered before the routers had the linger"
    );
    assert_eq!(next_seen(&mut seen).await, Seen::Notification(6), "a Cease");
    router.join().unwrap();
}
