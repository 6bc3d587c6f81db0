//! Kubernetes Events on the objects the agents act on (`IPAllocated` and
//! `AllocationFailed` on Services, `nodeAssigned`, `InvalidConfiguration`
//! on configuration objects), as `kubectl describe` shows them.
//!
//! An Event is one (object, type, reason, action, note): the same one
//! again bumps its series count, as Kubernetes' recorders do; one whose
//! note differs is a new Event, so the newest Event on an object always
//! says why now, not why first. (kube-runtime's recorder groups Events
//! without their note: a Service whose allocation failed for a second,
//! different reason kept showing the first.)

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as KubeEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::{Event, EventType};
use serde_json::json;

/// How long a published Event is remembered, to bump its series rather
/// than create another (kube-runtime's and client-go's figure).
const REMEMBERED_FOR: SignedDuration = SignedDuration::from_mins(6);

/// What makes two Events the same one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    regarding: (Option<String>, Option<String>, Option<String>, Option<String>),
    type_: &'static str,
    reason: String,
    action: String,
    note: Option<String>,
}

/// A published Event: where it is, and its series so far.
#[derive(Debug, Clone)]
struct Published {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes Events as one reporting controller (`meshlb-agent` or
/// `meshlb-allocator`) of one instance (the node).
pub struct Recorder {
    client: kube::Client,
    controller: String,
    instance: String,
    published: Mutex<HashMap<EventKey, Published>>,
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

impl Recorder {
    /// A recorder reporting as `controller` on `instance`.
    pub fn new(client: kube::Client, controller: impl Into<String>, instance: impl Into<String>) -> Recorder {
        Recorder {
            client,
            controller: controller.into(),
            instance: instance.into(),
            published: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes `event` on `regarding` (in its namespace; a cluster-wide
    /// object's Events go to `default`, as Kubernetes puts them).
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = EventKey {
            regarding: (
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.kind.clone(),
                regarding.uid.clone(),
            ),
            type_: type_name(event.type_),
            reason: event.reason.clone(),
            action: event.action.clone(),
            note: event.note.clone(),
        };
        let known = {
            let mut published = self.published.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            published.retain(|_, p| p.last + REMEMBERED_FOR > now);
            published.get(&key).cloned()
        };
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let events: Api<KubeEvent> = Api::namespaced(self.client.clone(), &namespace);
        let done = match known {
            Some(known) => {
                let count = known.count + 1;
                let series = EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                };
                let patch = json!({ "series": series });
                events
                    .patch(&known.name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                Published {
                    count,
                    last: now,
                    ..known
                }
            }
            None => {
                let object = KubeEvent {
                    metadata: ObjectMeta {
                        namespace: Some(namespace.clone()),
                        // Kubernetes' own recorders' names: the object's
                        // and the time.
                        name: Some(format!(
                            "{}.{:x}",
                            regarding.name.as_deref().unwrap_or(&self.controller),
                            now.as_nanosecond()
                        )),
                        ..ObjectMeta::default()
                    },
                    action: Some(event.action.clone()),
                    reason: Some(event.reason.clone()),
                    note: event.note.clone(),
                    type_: Some(key.type_.to_owned()),
                    event_time: Some(MicroTime(now)),
                    regarding: Some(regarding.clone()),
                    related: event.secondary.clone(),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    ..KubeEvent::default()
                };
                let created = events.create(&PostParams::default(), &object).await?;
                Published {
                    name: created.metadata.name.unwrap_or_default(),
                    count: 1,
                    last: now,
                }
            }
        };
        self.published
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, done);
        Ok(())
    }
}
