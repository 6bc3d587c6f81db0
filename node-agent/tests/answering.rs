//! The answering thread: the gossip driver (like the ARP/NDP answering
//! actors) runs on an arbiter of its own, so blocking the control thread
//! (where the pipeline, the Layer 2 glue, Kubernetes and gRPC
//! run) for longer than a stall neither stalls the mesh nor gets the node
//! declared down.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use actix::Arbiter;
use meshlb_gossip::mesh::{MeshEvent, STALL_MS};
use meshlb_gossip::profile::Profile;
use meshlb_node_agent::mesh::{AgentMesh, MeshOptions};
use meshlb_node_agent::status::StatusHub;

const KEY: &str = "1:00000000000000000000000000000000000000000000000000000000000000a1\n";

fn free_loopback_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[test]
fn a_blocked_control_thread_does_not_stall_the_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("keys");
    std::fs::write(&key_file, KEY).unwrap();
    let (a, b) = (free_loopback_port(), free_loopback_port());
    let options = |node: &str, bind: SocketAddr, seed: SocketAddr| MeshOptions {
        node: node.to_owned(),
        bind,
        seeds: vec![seed],
        key_file: key_file.clone(),
        key_secret: None,
        label: "answering-test".into(),
        profile: Profile::fast(),
        labels: Default::default(),
        expected_members: Some(2),
    };
    actix_rt::System::new().block_on(async move {
        let answering = Arbiter::new();
        let (hub_a, hub_b) = (StatusHub::default(), StatusHub::default());
        let mut events = vec![hub_a.mesh_events().subscribe(), hub_b.mesh_events().subscribe()];
        let mesh_a = AgentMesh::start(options("a", a, b), hub_a.clone(), &answering.handle())
            .await
            .unwrap();
        let mesh_b = AgentMesh::start(options("b", b, a), hub_b.clone(), &answering.handle())
            .await
            .unwrap();
        let both = |hub: &StatusHub| {
            let mesh = hub.mesh().get();
            mesh.fence.quorum && mesh.members.len() == 2
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !(both(&hub_a) && both(&hub_b)) {
            assert!(tokio::time::Instant::now() < deadline, "the two agents never met");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The control thread is blocked well past a stall.
        std::thread::sleep(Duration::from_millis(2 * STALL_MS + 500));
        // Let the reporters pass on what the mesh did meanwhile.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for events in &mut events {
            while let Ok(timed) = events.try_recv() {
                assert!(
                    !matches!(timed.event, MeshEvent::Stalled(_) | MeshEvent::MemberDown(_)),
                    "the mesh noticed the control thread: {:?}",
                    timed.event
                );
            }
        }
        assert!(both(&hub_a) && both(&hub_b), "the members still see each other");
        mesh_a.leave().await;
        mesh_b.leave().await;
        answering.stop();
    });
}
