//! What each agent tells the cluster of its Layer 2 announcements, as
//! MetalLB's speakers do: a `ServiceL2Status` per Service this node
//! announces (node, Service, the interfaces it answers on), removed when it
//! stops, and a `nodeAssigned` Event on the Service when it starts.
//!
//! It reads the hub's Layer 2 section (what the mesh gives this node and
//! where it answers) and the mesh's members, so the objects follow the
//! mesh's decisions, never the other way round: an API server that is down
//! delays them and changes nothing announced. The objects of this node are
//! found by their `metallb.io/node` label (a reflector), so leftovers from
//! before a restart are removed too; each is named for its node and
//! Service. A node that takes a Service over also removes the objects of
//! that Service written by nodes the mesh no longer has (a crashed owner
//! cannot remove its own): a node announcing has quorum, so one it does
//! not hear from cannot be announcing too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::events::{Event, EventType, Recorder};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector;
use meshlb_config::crd::{InterfaceName, L2ServiceStatus, ServiceL2Status, ServiceL2StatusSpec};
use meshlb_config::service::ServiceKey;
use tokio::sync::{Notify, watch};

use meshlb_gossip::driver::MeshStatus;

use crate::status::Layer2Status;

/// The label naming the announcing node (MetalLB's).
pub const NODE_LABEL: &str = "metallb.io/node";
/// The label naming the Service.
pub const SERVICE_NAME_LABEL: &str = "metallb.io/service-name";
/// The label naming the Service's namespace.
pub const SERVICE_NAMESPACE_LABEL: &str = "metallb.io/service-namespace";

/// How long Layer 2 must be still before the objects are written (a
/// failover changes it in a few steps).
const SETTLE: Duration = Duration::from_millis(100);
/// How soon a failed write is tried again, at first...
const RETRY: Duration = Duration::from_secs(1);
/// ...and at the latest, while writes keep failing (an API server away).
const RETRY_AT_MOST: Duration = Duration::from_secs(30);

/// What this node announces: each Service with an address the mesh gives
/// it, and the interfaces it answers on.
pub fn announced(layer2: &Layer2Status) -> BTreeMap<ServiceKey, BTreeSet<String>> {
    layer2
        .services
        .values()
        .filter(|s| s.addresses.iter().any(|a| layer2.announcing.contains(a)))
        .map(|s| (s.key.clone(), s.interfaces.clone()))
        .collect()
}

/// The name of `node`'s object for `service`: fixed, so writes are
/// idempotent, and short whatever the names' lengths.
pub fn object_name(node: &str, service: &ServiceKey) -> String {
    format!(
        "l2-{:016x}",
        meshlb_gossip::record::service_id(&format!("{node}/{service}"))
    )
}

/// The status of `node`'s object for `service`.
pub fn status_of(node: &str, service: &ServiceKey, interfaces: &BTreeSet<String>) -> L2ServiceStatus {
    L2ServiceStatus {
        node: node.to_owned(),
        service_name: service.name.clone(),
        service_namespace: service.namespace.clone(),
        interfaces: interfaces
            .iter()
            .map(|name| InterfaceName { name: name.clone() })
            .collect(),
    }
}

/// The label `object` carries under `key`.
fn label<'a>(object: &'a ServiceL2Status, key: &str) -> Option<&'a str> {
    object.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Keeps `node`'s ServiceL2Status objects in `namespace` to what `layer2`
/// says it announces (and removes those of nodes `mesh` no longer has, for
/// the Services it took over), until the hub closes.
pub async fn run(
    client: kube::Client,
    namespace: String,
    node: String,
    mut layer2: watch::Receiver<Arc<Layer2Status>>,
    mut mesh: watch::Receiver<Arc<MeshStatus>>,
) {
    let api: Api<ServiceL2Status> = Api::namespaced(client.clone(), &namespace);
    let changed = Arc::new(Notify::new());
    let (objects, writer) = reflector::store();
    let reflector = super::reflect(api.clone(), writer, changed.clone(), "ServiceL2Status");
    let _reflector = super::AbortOnDrop(vec![reflector]);
    if objects.wait_until_ready().await.is_err() {
        return;
    }
    let recorder = Recorder::new(client, "meshlb-agent", node.clone());
    let mut told: BTreeSet<ServiceKey> = BTreeSet::new();
    // Failed writes are retried after `retry_in` (from RETRY, doubled
    // while they keep failing); each round that fails logs once.
    let mut retry_in: Option<Duration> = None;
    let live_members =
        |mesh: &MeshStatus| -> BTreeSet<String> { mesh.members.iter().map(|m| m.id.name.clone()).collect() };
    let mut live = live_members(&mesh.borrow_and_update());
    layer2.mark_changed();
    loop {
        let proceed = loop {
            tokio::select! {
                r = layer2.changed() => break r.is_ok(),
                // The mesh's status changes often; only a member gone or
                // come matters (a gone one's objects may be left to remove).
                r = mesh.changed() => {
                    if r.is_err() {
                        break false;
                    }
                    if live_members(&mesh.borrow_and_update()) != live {
                        break true;
                    }
                }
                () = changed.notified() => break true,
                () = tokio::time::sleep(retry_in.unwrap_or(RETRY)), if retry_in.is_some() => break true,
            }
        };
        if !proceed {
            return;
        }
        // Settle: a failover moves several things at once.
        while tokio::time::timeout(SETTLE, layer2.changed())
            .await
            .is_ok_and(|r| r.is_ok())
        {}
        let wanted = announced(&layer2.borrow_and_update());
        live = live_members(&mesh.borrow_and_update());
        let mut failures: Vec<String> = Vec::new();
        let all = objects.state();
        let existing: BTreeMap<String, Arc<ServiceL2Status>> = all
            .iter()
            .filter(|o| label(o, NODE_LABEL) == Some(node.as_str()))
            .filter_map(|o| Some((o.metadata.name.clone()?, Arc::clone(o))))
            .collect();
        // Objects of the Services this node announces, written by nodes
        // the mesh no longer has.
        let orphaned: Vec<String> = all
            .iter()
            .filter(|o| {
                label(o, NODE_LABEL).is_some_and(|n| n != node && !live.contains(n))
                    && label(o, SERVICE_NAME_LABEL)
                        .zip(label(o, SERVICE_NAMESPACE_LABEL))
                        .is_some_and(|(name, ns)| wanted.contains_key(&ServiceKey::new(ns, name)))
            })
            .filter_map(|o| o.metadata.name.clone())
            .collect();
        for (service, interfaces) in &wanted {
            let name = object_name(&node, service);
            let status = status_of(&node, service, interfaces);
            let current = existing.get(&name);
            if current.is_some_and(|o| o.status.as_ref() == Some(&status)) {
                continue;
            }
            if current.is_none() {
                let mut object = ServiceL2Status::new(&name, ServiceL2StatusSpec {});
                object.metadata.labels = Some(BTreeMap::from([
                    (NODE_LABEL.to_owned(), node.clone()),
                    (SERVICE_NAME_LABEL.to_owned(), service.name.clone()),
                    (SERVICE_NAMESPACE_LABEL.to_owned(), service.namespace.clone()),
                ]));
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => {
                        failures.push(format!("create {name} ({service}): {e}"));
                        continue;
                    }
                }
            }
            let patch = serde_json::json!({"status": status});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                failures.push(format!("write {name} ({service}): {e}"));
            }
        }
        let wanted_names: BTreeSet<String> = wanted.keys().map(|s| object_name(&node, s)).collect();
        let unwanted = existing.keys().filter(|n| !wanted_names.contains(*n));
        for name in unwanted.chain(orphaned.iter()) {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => failures.push(format!("remove {name}: {e}")),
            }
        }
        retry_in = if failures.is_empty() {
            None
        } else {
            let next = retry_in.map_or(RETRY, |last| (last * 2).min(RETRY_AT_MOST));
            tracing::warn!(
                failed = failures.len(),
                retry_in_s = next.as_secs(),
                "ServiceL2Status not written: {}",
                failures[0]
            );
            Some(next)
        };
        // MetalLB's nodeAssigned, once per gain.
        told.retain(|service| wanted.contains_key(service));
        for service in wanted
            .keys()
            .filter(|s| !told.contains(*s))
            .cloned()
            .collect::<Vec<_>>()
        {
            let event = Event {
                type_: EventType::Normal,
                reason: "nodeAssigned".into(),
                note: Some(format!("announcing from node \"{node}\" with protocol \"layer2\"")),
                action: "Announce".into(),
                secondary: None,
            };
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Service".into()),
                namespace: Some(service.namespace.clone()),
                name: Some(service.name.clone()),
                ..ObjectReference::default()
            };
            match recorder.publish(&event, &reference).await {
                Ok(()) => {
                    told.insert(service);
                }
                Err(e) => tracing::warn!(service = %service, "cannot record nodeAssigned: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::status::Layer2Service;

    #[test]
    fn only_services_with_an_address_given_here_are_announced() {
        let service = |name: &str, address: &str| Layer2Service {
            key: ServiceKey::new("shop", name),
            addresses: vec![address.parse().unwrap()],
            serveable: true,
            interfaces: BTreeSet::from(["eth0".to_owned()]),
            blocked: None,
            preferences: Vec::new(),
        };
        let layer2 = Layer2Status {
            services: BTreeMap::from([(1, service("web", "192.0.2.1")), (2, service("db", "192.0.2.2"))]),
            announcing: BTreeSet::from(["192.0.2.1".parse().unwrap()]),
        };
        let announced = announced(&layer2);
        assert_eq!(
            announced.keys().map(ToString::to_string).collect::<Vec<_>>(),
            ["shop/web"]
        );
        let web = ServiceKey::new("shop", "web");
        let status = status_of("node-a", &web, &announced[&web]);
        assert_eq!(
            (status.node.as_str(), status.interfaces[0].name.as_str()),
            ("node-a", "eth0")
        );
        let name = object_name("node-a", &web);
        assert_eq!(name.len(), 19);
        assert_ne!(name, object_name("node-b", &web), "one object per node");
    }
}
