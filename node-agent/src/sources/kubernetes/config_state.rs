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
use std::time::SystemTime;

use super::events::{Event, EventType, Recorder};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use meshlb_config::crd::{ConfigurationResult, ConfigurationState, ConfigurationStateSpec, ConfigurationStateStatus};
use meshlb_config::meta::ObjectRef;
use tokio::sync::watch;

use crate::status::ConfigStatus;

/// The label MetalLB gives a ConfigurationState: which component.
pub const COMPONENT_LABEL: &str = "metallb.io/component-type";
/// The label MetalLB gives a speaker's ConfigurationState: its node.
pub const NODE_LABEL: &str = "metallb.io/node-name";

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

/// The status a configuration status reports.
pub fn state_of(config: &ConfigStatus) -> ConfigurationStateStatus {
    let (result, summary) = match (&config.last_rejection, config.generation) {
        (Some(rejection), _) => {
            let errors: Vec<String> = rejection.errors.iter().map(ToString::to_string).collect();
            (ConfigurationResult::Invalid, bounded(errors.join("; "), MAX_SUMMARY))
        }
        (None, 0) => (ConfigurationResult::Unknown, String::new()),
        (None, _) => (ConfigurationResult::Valid, String::new()),
    };
    let (status, reason) = match result {
        ConfigurationResult::Valid => ("True", "ConfigurationValid"),
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
/// and the Events of rejections up to date with `config`, until the hub
/// closes.
pub async fn run(
    client: kube::Client,
    namespace: String,
    node: String,
    mut config: watch::Receiver<Arc<ConfigStatus>>,
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
    config.mark_changed();
    while config.changed().await.is_ok() {
        let status = Arc::clone(&config.borrow_and_update());
        if !created {
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => created = true,
                Err(kube::Error::Api(e)) if e.code == 409 => created = true,
                Err(e) => tracing::warn!("cannot create ConfigurationState {name}: {e}"),
            }
        }
        let state = state_of(&status);
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
                Err(e) => tracing::warn!("cannot write ConfigurationState {name}: {e}"),
            }
        }
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
        let healed = state_of(&ConfigStatus {
            generation: 2,
            ..ConfigStatus::default()
        });
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
}
