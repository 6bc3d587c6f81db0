//! The tokio driver over real UDP on loopback: two agents' meshes agree on
//! one owner for a service address, follow the owner's record when it stops
//! and starts serving, and a leaving owner hands the address over before it
//! goes quiet.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use meshlb_gossip::driver::{self, Command, DriverConfig, MeshHandle};
use meshlb_gossip::mesh::{Eligible, MeshService, ServicePlan};
use meshlb_gossip::ownership::{Failback, Fence};
use meshlb_gossip::profile::Profile;
use meshlb_gossip::record::service_id;
use meshlb_gossip::secure::{ClusterKey, Keyring};
use tokio::sync::watch;

fn free_port() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

async fn start(name: &str, bind: SocketAddr, seeds: Vec<SocketAddr>) -> MeshHandle {
    let keyring = Keyring::new(&ClusterKey::new(1, [7; 32]), &[]).unwrap();
    driver::start(DriverConfig {
        node: name.into(),
        bind,
        seeds,
        keyring,
        label: b"test".to_vec(),
        profile: Profile::fast(),
        // Both must be heard before either announces; the default fence
        // applies from three members on.
        fence: Fence::default().expecting(2),
        max_age_ms: 30_000,
        labels: BTreeMap::new(),
    })
    .await
    .unwrap()
}

/// Tells the mesh of `spec`, served here or not.
async fn plan(handle: &MeshHandle, spec: &MeshService, serving: bool) {
    let plan = ServicePlan {
        services: vec![spec.clone()],
        weight: Arc::new(|_, _| 0),
        layer2: meshlb_gossip::record::Layer2Section {
            serving: if serving { [spec.id].into() } else { Default::default() },
            links: BTreeMap::new(),
        },
    };
    handle.commands.send(Command::SetServices(plan)).await.unwrap();
}

/// The next change of either mesh's decision (a mesh that stopped has
/// none to give); `false` once both have stopped.
async fn next_change(watches: &mut [watch::Receiver<BTreeSet<IpAddr>>; 2], open: &mut [bool; 2]) -> bool {
    let [a, b] = watches;
    tokio::select! {
        changed = a.changed(), if open[0] => open[0] = changed.is_ok(),
        changed = b.changed(), if open[1] => open[1] = changed.is_ok(),
        else => return false,
    }
    true
}

/// Waits, woken by each change of the two meshes' decisions, until `done`
/// holds (failing after a generous 15 s).
async fn wait_until(what: &str, handles: [&MeshHandle; 2], done: impl Fn() -> bool) {
    let mut watches = handles.map(|h| h.announce.clone());
    let mut open = [true, true];
    let waited = tokio::time::timeout(Duration::from_secs(15), async {
        while !done() {
            assert!(
                next_change(&mut watches, &mut open).await,
                "both meshes stopped before {what}"
            );
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

#[tokio::test(flavor = "current_thread")]
async fn one_owner_and_a_handover_on_leave() {
    let (a_addr, b_addr) = (free_port(), free_port());
    let a = start("a", a_addr, vec![b_addr]).await;
    let b = start("b", b_addr, vec![a_addr]).await;
    let address: IpAddr = "203.0.113.10".parse().unwrap();
    let spec = MeshService {
        id: service_id("default/web"),
        addresses: vec![address],
        failback: Failback::Revertive,
        eligible: Eligible::Any,
    };
    plan(&a, &spec, true).await;
    plan(&b, &spec, true).await;
    let announced = |h: &MeshHandle| h.announce.borrow().contains(&address);
    wait_until("exactly one owner", [&a, &b], || announced(&a) != announced(&b)).await;
    // It stays that way: every change for a second keeps one owner.
    let mut watches = [a.announce.clone(), b.announce.clone()];
    let mut open = [true, true];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while next_change(&mut watches, &mut open).await {
            assert!(announced(&a) != announced(&b), "ownership flapped or doubled");
        }
    })
    .await;
    let (owner, other) = if announced(&a) { (a, b) } else { (b, a) };

    // The owner stops serving (its link went down, its health check
    // failed): the other takes over and the owner goes quiet; serving
    // again, it is eligible again and, revertive, takes the address back.
    plan(&owner, &spec, false).await;
    wait_until("the other node to take over", [&owner, &other], || {
        announced(&other) && !announced(&owner)
    })
    .await;
    plan(&owner, &spec, true).await;
    wait_until("the owner to be eligible again", [&owner, &other], || {
        announced(&owner) && !announced(&other)
    })
    .await;

    let (done, left) = tokio::sync::oneshot::channel();
    owner.commands.send(Command::Leave(done)).await.unwrap();
    // The successor takes over while the owner still announces (handover),
    // and the owner is silent once it has left.
    wait_until("the successor to announce", [&owner, &other], || announced(&other)).await;
    tokio::time::timeout(Duration::from_secs(10), left)
        .await
        .unwrap()
        .unwrap();
    assert!(owner.announce.borrow().is_empty(), "a departed node announces nothing");
    assert!(announced(&other));
}
