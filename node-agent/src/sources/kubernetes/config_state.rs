//! What each agent reports of its configuration, as MetalLB's components
//! do: a `ConfigurationState` object per agent (`Valid`, or `Invalid`
//! with every error naming object and field), and a Warning Event on each
//! object a rejected configuration names.
//!
//! It reads the hub's configuration section only, and writes when that
//! changes: a burst of rejections of one configuration makes one status
//! write and one Event per object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::events::{Event, EventType, Recorder};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use meshlb_config::crd::{ConfigurationResult, ConfigurationState, ConfigurationStateSpec, ConfigurationStateStatus};
use meshlb_config::meta::ObjectRef;
use tokio::sync::watch;

use crate::sources::Readability;
use crate::status::ConfigStatus;

/// The label MetalLB gives a ConfigurationState: which component.
pub const COMPONENT_LABEL: &str = "metallb.io/component-type";
/// The label MetalLB gives a speaker's ConfigurationState: its node.
pub const NODE_LABEL: &str = "metallb.io/node-name";

/// How soon a failed write is tried again, at first...
const RETRY: Duration = Duration::from_millis(250);
/// ...and at the latest, while writes keep failing.
const RETRY_AT_MOST: Duration = Duration::from_secs(2);

/// The longest `errorSummary` written (the errors are in the Events too).
const MAX_SUMMARY: usize = 8192;
/// The longest Event note the API server takes.
const MAX_NOTE: usize = 1024;

/// `text` cut to at most `max` bytes (at a character boundary), saying so.
fn bounded(mut text: String, max: usize) -> String {
    const MORE: &str = " …";
    if text.len() > max {
        let cut = (0..=max - MORE.len())
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push_str(MORE);
    }
    text
}

/// The status a configuration status reports
/// (and the kinds the source cannot read: each is an error, as the
/// configuration running lacks what they hold now).
pub fn state_of(config: &ConfigStatus, source: &Readability) -> ConfigurationStateStatus {
    let unreadable: Vec<String> = source
        .unreadable()
        .map(|(kind, why)| format!("{kind} cannot be read: {why}"))
        .collect();
    let (result, summary) = match (&config.last_rejection, config.generation) {
        (Some(rejection), _) => {
            let mut errors = unreadable.clone();
            errors.extend(rejection.errors.iter().map(ToString::to_string));
            (ConfigurationResult::Invalid, bounded(errors.join("; "), MAX_SUMMARY))
        }
        (None, 0) => (ConfigurationResult::Unknown, String::new()),
        (None, _) if !unreadable.is_empty() => (
            ConfigurationResult::Invalid,
            bounded(unreadable.join("; "), MAX_SUMMARY),
        ),
        (None, _) => (ConfigurationResult::Valid, String::new()),
    };
    let (status, reason) = match result {
        ConfigurationResult::Valid => ("True", "ConfigurationValid"),
        ConfigurationResult::Invalid if config.last_rejection.is_none() => ("False", "KindUnreadable"),
        ConfigurationResult::Invalid => ("False", "ConfigurationInvalid"),
        ConfigurationResult::Unknown => ("Unknown", "NotRead"),
    };
    let at = config
        .last_rejection
        .as_ref()
        .map(|r| r.at)
        .or(config.accepted_at)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    ConfigurationStateStatus {
        result: Some(result),
        error_summary: summary.clone(),
        conditions: vec![Condition {
            type_: "Valid".into(),
            status: status.into(),
            reason: reason.into(),
            message: summary,
            last_transition_time: Time(Timestamp::try_from(at).unwrap_or(Timestamp::UNIX_EPOCH)),
            observed_generation: None,
        }],
    }
}

/// The merge patch that writes `state`, removing what it leaves empty: a
/// merge patch keeps every field it does not name, so a configuration
/// that healed would keep the last rejection's `errorSummary` beside
/// `Valid`.
pub fn status_patch(state: &ConfigurationStateStatus) -> serde_json::Value {
    let mut status = serde_json::to_value(state).unwrap_or_default();
    if state.error_summary.is_empty() {
        status["errorSummary"] = serde_json::Value::Null;
    }
    serde_json::json!({ "status": status })
}

fn reference(object: &ObjectRef, namespace: &str) -> ObjectReference {
    let namespace = match object.kind {
        meshlb_config::meta::Kind::Node | meshlb_config::meta::Kind::Namespace => None,
        _ => Some(object.namespace.clone().unwrap_or_else(|| namespace.to_owned())),
    };
    ObjectReference {
        api_version: Some(object.kind.api_version().into()),
        kind: Some(object.kind.as_str().into()),
        namespace,
        name: Some(object.name.clone()),
        ..ObjectReference::default()
    }
}

/// Keeps this agent's ConfigurationState (`agent-<node>` in `namespace`)
/// and the Events of rejections up to date with `config` and `source`
/// (a kind that cannot be read is an Event on the ConfigurationState),
/// until the hub closes.
pub async fn run(
    client: kube::Client,
    namespace: String,
    node: String,
    mut config: watch::Receiver<Arc<ConfigStatus>>,
    mut source: watch::Receiver<Arc<Readability>>,
) {
    let api: Api<ConfigurationState> = Api::namespaced(client.clone(), &namespace);
    let name = format!("agent-{node}");
    let mut object = ConfigurationState::new(&name, ConfigurationStateSpec {});
    object.metadata.labels = Some(BTreeMap::from([
        (COMPONENT_LABEL.to_owned(), "speaker".to_owned()),
        (NODE_LABEL.to_owned(), node.clone()),
    ]));
    let recorder = Recorder::new(client, "meshlb-agent", node);
    let mut created = false;
    let mut written: Option<ConfigurationStateStatus> = None;
    let mut told: Option<SystemTime> = None;
    let mut told_unreadable: BTreeMap<String, String> = BTreeMap::new();
    let this = ObjectReference {
        api_version: Some("metallb.io/v1beta1".into()),
        kind: Some("ConfigurationState".into()),
        namespace: Some(namespace.clone()),
        name: Some(name.clone()),
        ..ObjectReference::default()
    };
    // A failed write is tried again after `retry_in` (doubling to
    // RETRY_AT_MOST): an API server away delays the state, never for
    // longer than seconds after it is back.
    let mut retry_in: Option<Duration> = None;
    config.mark_changed();
    loop {
        tokio::select! {
            r = config.changed() => if r.is_err() { break },
            r = source.changed() => if r.is_err() { break },
            () = tokio::time::sleep(retry_in.unwrap_or(RETRY)), if retry_in.is_some() => {}
        }
        let status = Arc::clone(&config.borrow_and_update());
        let readable = Arc::clone(&source.borrow_and_update());
        let mut failed = false;
        if !created {
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => created = true,
                Err(kube::Error::Api(e)) if e.code == 409 => created = true,
                Err(e) => {
                    tracing::warn!("cannot create ConfigurationState {name}: {e}");
                    failed = true;
                }
            }
        }
        let state = state_of(&status, &readable);
        // Conditions carry times; compare what they say.
        let same = written
            .as_ref()
            .is_some_and(|w| w.result == state.result && w.error_summary == state.error_summary);
        if created && !same {
            let patch = status_patch(&state);
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => written = Some(state),
                Err(e) => {
                    // Removed meanwhile (its CRD taken over, say): made again.
                    if matches!(&e, kube::Error::Api(status) if status.code == 404) {
                        created = false;
                    }
                    tracing::warn!("cannot write ConfigurationState {name}: {e}");
                    failed = true;
                }
            }
        }
        retry_in = failed.then(|| retry_in.map_or(RETRY, |last| (last * 2).min(RETRY_AT_MOST)));
        let unreadable: BTreeMap<String, String> = readable
            .unreadable()
            .map(|(kind, why)| (kind.to_owned(), why.to_owned()))
            .collect();
        for (kind, why) in &unreadable {
            if told_unreadable.get(kind) == Some(why) {
                continue;
            }
            let event = Event {
                type_: EventType::Warning,
                reason: "KindUnreadable".into(),
                note: Some(bounded(format!("{kind} cannot be read: {why}"), MAX_NOTE)),
                action: "Read".into(),
                secondary: None,
            };
            if let Err(e) = recorder.publish(&event, &this).await {
                tracing::warn!("cannot record an event on ConfigurationState {name}: {e}");
            }
        }
        told_unreadable = unreadable;
        if let Some(rejection) = &status.last_rejection
            && told != Some(rejection.at)
        {
            told = Some(rejection.at);
            let mut by_object: BTreeMap<&ObjectRef, Vec<String>> = BTreeMap::new();
            for error in &rejection.errors {
                if let Some(object) = error.object() {
                    by_object.entry(object).or_default().push(error.to_string());
                }
            }
            for (object, errors) in by_object {
                let event = Event {
                    type_: EventType::Warning,
                    reason: "InvalidConfiguration".into(),
                    note: Some(bounded(errors.join("; "), MAX_NOTE)),
                    action: "Validate".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &reference(object, &namespace)).await {
                    tracing::warn!("cannot record an event on {object}: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_state_removes_the_last_error_summary() {
        let healed = state_of(
            &ConfigStatus {
                generation: 2,
                ..ConfigStatus::default()
            },
            &Readability::default(),
        );
        assert_eq!(healed.result, Some(ConfigurationResult::Valid));
        let patch = status_patch(&healed);
        assert_eq!(patch["status"]["errorSummary"], serde_json::Value::Null);
        assert!(
            patch["status"]
                .as_object()
                .is_some_and(|status| status.contains_key("errorSummary")),
            "{patch}"
        );
        assert_eq!(patch["status"]["conditions"][0]["message"], "");
    }

    #[test]
    fn a_kind_that_cannot_be_read_makes_the_state_invalid_and_says_why() {
        let running = ConfigStatus {
            generation: 3,
            ..ConfigStatus::default()
        };
        let source = Readability {
            kinds: BTreeMap::from([
                ("BGPPeer".to_owned(), Some("forbidden: grant list".to_owned())),
                ("IPAddressPool".to_owned(), None),
            ]),
        };
        let state = state_of(&running, &source);
        assert_eq!(state.result, Some(ConfigurationResult::Invalid));
        assert_eq!(state.error_summary, "BGPPeer cannot be read: forbidden: grant list");
        assert_eq!(state.conditions[0].reason, "KindUnreadable");
    }
}
