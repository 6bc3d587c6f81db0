//! Which agent allocates: a `coordination.k8s.io` Lease, taken and renewed
//! with compare-and-swap on its resourceVersion.
//!
//! The Lease keeps allocation to one agent at a time in the normal case,
//! so agents do not race each other for every new Service. It is not what
//! makes a double allocation impossible: two agents that both believe they
//! hold it (a lease that expired under a stalled holder) are still kept
//! apart by the address claims (see [`super::allocator`]).
//!
//! Expiry is judged by this agent's own clock: a Lease whose
//! resourceVersion has not changed for a whole lease duration, as this
//! agent observed it, is expired (the holder's `renewTime` is another
//! node's clock and may be skewed). A holder that stops cleanly gives the
//! Lease up, so another agent takes over at its next attempt.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// One agent's view of the allocator Lease.
#[derive(Debug)]
pub struct LeaderLease {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The Lease's resourceVersion when last read, and when that changed.
    observed: Option<(String, Instant)>,
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

impl LeaderLease {
    /// The Lease `name` in `namespace`, held by `identity` for `duration`
    /// after each renewal.
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> LeaderLease {
        LeaderLease {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: None,
        }
    }

    fn spec(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let ours = previous.is_some_and(|p| p.holder_identity.as_deref() == Some(&self.identity));
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().clamp(1, i32::MAX as u64) as i32),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(
                previous.and_then(|p| p.lease_transitions).unwrap_or(0) + i32::from(previous.is_some() && !ours),
            ),
            ..LeaseSpec::default()
        }
    }

    /// Takes or renews the Lease if it is free, expired or ours: whether
    /// this agent holds it now.
    pub async fn try_acquire(&mut self) -> Result<bool, kube::Error> {
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let version = current.metadata.resource_version.clone().unwrap_or_default();
        let now = Instant::now();
        match &self.observed {
            Some((seen, _)) if *seen == version => {}
            _ => self.observed = Some((version, now)),
        }
        let unchanged_for = self.observed.as_ref().map_or(Duration::ZERO, |(_, at)| now - *at);
        let holder = current.spec.as_ref().and_then(|s| s.holder_identity.clone());
        let free = holder.as_deref().is_none_or(str::is_empty);
        let ours = holder.as_deref() == Some(&self.identity);
        if !(free || ours || unchanged_for > self.duration) {
            return Ok(false);
        }
        let mut renewed = current.clone();
        renewed.spec = Some(self.spec(current.spec.as_ref()));
        // The resourceVersion read above is the precondition: of several
        // agents trying at once, one wins.
        match self.api.replace(&self.name, &PostParams::default(), &renewed).await {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if this agent holds it (on a clean stop), so the
    /// next agent need not wait for it to expire.
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut current) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = current.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        match self.api.replace(&self.name, &PostParams::default(), &current).await {
            Ok(_) => Ok(()),
            Err(e) if conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
