//! The Layer 2 glue without the lab: [`Layer2Actor`] and the applier it
//! starts run against running states the test publishes, a link state and
//! an ownership decision the test sets, a mesh the test reads and
//! interfaces that record what they are sent; the test asserts what each
//! receives across a configuration change, a link going down, ownership
//! moving and a stop. The plan itself is unit-tested with its protocol
//! (`meshlb_actors::l2::plan`); here it must reach the mesh, the delivery
//! of addresses and each interface as whole address sets.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use actix::{Actor, ActorContext, Context, Handler};
use meshlb_actors::l2::applier::OpenInterface;
use meshlb_actors::l2::interface::{Answer, Shutdown};
use meshlb_actors::l2::links::{Link, Links};
use meshlb_config::service::ClassFilter;
use meshlb_gossip::driver::Command;
use meshlb_gossip::mesh::ServicePlan;
use meshlb_gossip::record::{ServiceId, service_id};
use meshlb_node_agent::layer2::{Layer2Actor, Layer2Inputs, Stop};
use meshlb_node_agent::local_address::Delivery;
use meshlb_node_agent::node::NodeOptions;
use meshlb_node_agent::pipeline::Pipeline;
use meshlb_node_agent::running::Decisions;
use meshlb_node_agent::status::StatusHub;
use tokio::sync::{mpsc, watch};

mod common;

const POOLS: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: public, namespace: metallb-system}
spec: {addresses: [203.0.113.0/30]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: metallb-system}
spec: {ipAddressPools: [public], interfaces: [eth0, eth1]}
";

fn service(name: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}
"
    )
}

/// What a fake interface was told.
#[derive(Debug, PartialEq, Eq)]
enum Told {
    Opened(String),
    Answer(String, BTreeSet<IpAddr>),
    Shutdown(String),
}

/// Stands in for an interface actor.
struct Recorder {
    name: String,
    log: mpsc::UnboundedSender<Told>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<Answer> for Recorder {
    type Result = ();
    fn handle(&mut self, answer: Answer, _: &mut Context<Self>) {
        let _ = self.log.send(Told::Answer(self.name.clone(), answer.addresses));
    }
}

impl Handler<Shutdown> for Recorder {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        let _ = self.log.send(Told::Shutdown(self.name.clone()));
        ctx.stop();
    }
}

fn recorders(log: mpsc::UnboundedSender<Told>) -> OpenInterface {
    Box::new(move |name: &str, _resync| {
        let _ = log.send(Told::Opened(name.to_owned()));
        let recorder = Recorder {
            name: name.to_owned(),
            log: log.clone(),
        };
        Some(recorder.start().into())
    })
}

async fn next_told(log: &mut mpsc::UnboundedReceiver<Told>) -> Told {
    tokio::time::timeout(Duration::from_secs(30), log.recv())
        .await
        .expect("no interface was told anything")
        .expect("the glue dropped every interface")
}

/// The next service plan the glue tells the mesh.
async fn next_plan(mesh: &mut mpsc::Receiver<Command>) -> ServicePlan {
    common::next_command(mesh, |command| match command {
        Command::SetServices(plan) => Some(plan),
        _ => None,
    })
    .await
}

/// The addresses `plan` gives service `id`.
fn addresses_of(plan: &ServicePlan, id: ServiceId) -> BTreeSet<IpAddr> {
    let service = plan
        .services
        .iter()
        .find(|s| s.id == id)
        .expect("the service is planned");
    service.addresses.iter().copied().collect()
}

fn answer(name: &str, sets: &[&BTreeSet<IpAddr>]) -> Told {
    Told::Answer(name.to_owned(), sets.iter().flat_map(|s| s.iter().copied()).collect())
}

fn links(eth1_up: bool) -> Links {
    BTreeMap::from([
        ("eth0".to_owned(), Link::Up),
        ("eth1".to_owned(), Link::from_up(eth1_up)),
    ])
}

#[actix::test]
async fn interfaces_answer_what_the_plan_and_the_mesh_give_this_node() {
    let hub = StatusHub::default();
    let decisions = Decisions::default();
    let mut pipeline = Pipeline::new(None, ClassFilter::default()).unwrap();
    let web_only = format!("{POOLS}{}", service("web"));
    decisions.publish_running(common::running(&mut pipeline, &web_only, 1));
    let (links_tx, links_rx) = watch::channel(links(true));
    let (owned_tx, owned) = watch::channel(BTreeSet::new());
    let (mesh_tx, mut mesh) = mpsc::channel(64);
    let (delivery, _delivery_task) = Delivery::start(false, BTreeSet::new());
    let mut deliverable = delivery.deliverable();
    let (log_tx, mut log) = mpsc::unbounded_channel();
    let glue = Layer2Actor::start(
        NodeOptions {
            node: "n1".into(),
            node_labels: BTreeMap::new(),
            require_endpoints: false,
            schedule: Default::default(),
            local_addresses: false,
        },
        Layer2Inputs {
            running: decisions.running(),
            hub: hub.clone(),
            mesh: mesh_tx,
            owned,
            links: links_rx,
            answering: actix::Arbiter::current(),
            interfaces: recorders(log_tx),
            delivery,
        },
    );

    // The mesh learns the service, that this node serves it and its links;
    // the interfaces are opened before anything is owned; the address is
    // delivered.
    let plan = next_plan(&mut mesh).await;
    let (web, db) = (service_id("default/web"), service_id("default/db"));
    let web_addresses = addresses_of(&plan, web);
    assert_eq!(plan.layer2.serving, [web].into());
    assert_eq!(plan.layer2.links, [("eth0".into(), true), ("eth1".into(), true)].into());
    assert_eq!(next_told(&mut log).await, Told::Opened("eth0".into()));
    assert_eq!(next_told(&mut log).await, Told::Opened("eth1".into()));
    assert!(deliverable.wait_for(|d| *d == web_addresses).await.is_ok());

    // The mesh gives this node the address: answered on both interfaces.
    owned_tx.send_replace(web_addresses.clone());
    assert_eq!(next_told(&mut log).await, answer("eth0", &[&web_addresses]));
    assert_eq!(next_told(&mut log).await, answer("eth1", &[&web_addresses]));

    // A configuration change adds a Service; once the mesh gives it here
    // too, each interface gets both addresses as one set.
    let both = format!("{web_only}{}", service("db"));
    decisions.publish_running(common::running(&mut pipeline, &both, 2));
    let plan = next_plan(&mut mesh).await;
    assert_eq!(plan.layer2.serving, [web, db].into());
    let db_addresses = addresses_of(&plan, db);
    assert!(web_addresses.is_disjoint(&db_addresses));
    owned_tx.send_replace(web_addresses.union(&db_addresses).copied().collect());
    assert_eq!(
        next_told(&mut log).await,
        answer("eth0", &[&web_addresses, &db_addresses])
    );
    assert_eq!(
        next_told(&mut log).await,
        answer("eth1", &[&web_addresses, &db_addresses])
    );

    // eth1's link goes down: it answers nothing, and the mesh hears so.
    links_tx.send_replace(links(false));
    assert_eq!(next_told(&mut log).await, answer("eth1", &[]));
    let plan = next_plan(&mut mesh).await;
    assert_eq!(
        plan.layer2.links,
        [("eth0".into(), true), ("eth1".into(), false)].into()
    );

    // Ownership of web moves away; then db's Service is deleted while the
    // mesh still gives its address here: nothing left to answer.
    owned_tx.send_replace(db_addresses.clone());
    assert_eq!(next_told(&mut log).await, answer("eth0", &[&db_addresses]));
    decisions.publish_running(common::running(&mut pipeline, &web_only, 3));
    assert_eq!(next_told(&mut log).await, answer("eth0", &[]));
    assert_eq!(next_plan(&mut mesh).await.layer2.serving, [web].into());

    // A stop shuts each interface down and gives the addresses up.
    glue.send(Stop).await.unwrap();
    assert_eq!(next_told(&mut log).await, Told::Shutdown("eth0".into()));
    assert_eq!(next_told(&mut log).await, Told::Shutdown("eth1".into()));
    assert!(deliverable.wait_for(BTreeSet::is_empty).await.is_ok());
    assert!(log.try_recv().is_err(), "nothing told after the shutdown");
}
