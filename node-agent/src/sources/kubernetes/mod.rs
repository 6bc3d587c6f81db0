//! The Kubernetes configuration source: what MetalLB reads, from the API
//! server, as the same [`SourceUpdate`]s the file source sends.
//!
//! Reflectors (list, then watch, relisting after errors with backoff) keep
//! a cache of:
//! - Services of type LoadBalancer, in every namespace (the class filter
//!   is the pipeline's, as in standalone mode);
//! - EndpointSlices of those Services (which nodes have ready, serving or
//!   terminating endpoints);
//! - Nodes (labels for node selectors, the exclude-from-external-load-
//!   balancers label, NetworkUnavailable) and Namespaces (labels for
//!   namespace selectors);
//! - the `metallb.io` kinds and meshlb's L2Policy in the configured
//!   namespace (`metallb-system` by default), and Deckhouse's
//!   MetalLoadBalancerClasses (cluster-scoped);
//! - the Secrets of type `kubernetes.io/basic-auth` in that namespace, the
//!   only ones a BGPPeer's `passwordSecret` may name, keeping only their
//!   `password` key (a field selector: no other Secret is listed).
//!
//! The first snapshot is built once every reflector has listed, so it is
//! consistent; after that, every change (debounced: a burst of updates
//! makes one snapshot, and builds are spaced by what they take) rebuilds it
//! on a blocking thread, and it is sent only if some object's
//! resourceVersion changed. A relist (after "too old resource version", or
//! an API server restart) swaps a reflector's cache only when the new list
//! is complete, so nothing announced disappears and comes back meanwhile.
//!
//! A kind the API server refuses for more than a moment (its CRD missing,
//! a 403, stored objects it cannot convert or read: [`watch_problem`]) is
//! read as its last copy (nothing, if it never listed) while every other
//! kind is served; the refusal, with what to do, is logged once and
//! reported as the source's [`Readability`] (which the ConfigurationState
//! shows). Failed lists and watches are retried within a second
//! ([`WatchBackoff`]), so the agents see what changed within seconds of an
//! API server's return.

pub mod allocator;
pub mod cluster_keys;
pub mod config_state;
pub mod convert;
pub mod events;
pub mod lease;
pub mod permissions;
pub mod service_status;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{CustomResourceExt, Resource};
use meshlb_config::meta::Kind;
use meshlb_config::{Error, Located, Object, Rejected};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc, watch};

use crate::sources::{Readability, SourceGuard, SourceStream, SourceUpdate};

/// The namespace MetalLB's objects live in unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "metallb-system";

/// Debounce: a snapshot is built once no change came for this long...
const QUIET: Duration = Duration::from_millis(50);
/// ...or at the latest this long after the first change of a burst...
const AT_MOST: Duration = Duration::from_millis(500);
/// ...but never sooner after the last build began than this many times
/// what it took: under a stream of changes (a cold start's thousands of
/// status writes) building snapshots takes at most a fifth of a core,
/// however large the cluster, while a change after a quiet moment is read
/// at once.
const SPACING_PER_BUILD_TIME: u32 = 5;

/// The caches of every kind read, and one notification for all changes.
#[derive(Clone)]
struct Caches {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    namespaces: Store<Namespace>,
    secrets: Store<Secret>,
    custom: Vec<(Kind, Store<DynamicObject>)>,
    /// How each kind is being read.
    states: watch::Sender<BTreeMap<String, KindState>>,
}

/// The custom kinds read, with their API resources (the versions meshlb's
/// CRDs store: BGPPeer v1beta2): all from the configured namespace but
/// Deckhouse's cluster-scoped MetalLoadBalancerClass.
fn custom_kinds() -> Vec<(Kind, ApiResource)> {
    use meshlb_config::kinds;
    vec![
        (Kind::IpAddressPool, kinds::IpAddressPool::api_resource()),
        (Kind::L2Advertisement, kinds::L2Advertisement::api_resource()),
        (Kind::BgpAdvertisement, kinds::BgpAdvertisement::api_resource()),
        (Kind::BgpPeer, kinds::BgpPeer::api_resource()),
        (Kind::BfdProfile, kinds::BfdProfile::api_resource()),
        (Kind::Community, kinds::Community::api_resource()),
        (Kind::L2Policy, kinds::L2Policy::api_resource()),
        (
            Kind::MetalLoadBalancerClass,
            kinds::MetalLoadBalancerClass::api_resource(),
        ),
    ]
}

/// The Kubernetes source: see the module documentation.
#[derive(Clone)]
pub struct KubernetesSource {
    client: kube::Client,
    namespace: String,
}

impl Debug for KubernetesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesSource")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// How soon a failed list or watch is tried again: from 200 ms, doubling,
/// at most a second (with jitter), and from the start again once two
/// seconds passed without a failure. An agent's API server is its own
/// cluster's: a second is cheap to it, and an agent must see a Service
/// created as the server comes back within seconds (kube-runtime's default
/// grows to 30 s while the server is away, so a restart left watches idle
/// that long). kube's watcher asks for a reset at every event, the one it
/// emits before each list attempt included, which would retry a refused
/// list at the shortest delay for ever: only the quiet time resets this
/// one.
pub struct WatchBackoff {
    delays: kube::runtime::watcher::ExponentialBackoff,
    last_failure: Option<tokio::time::Instant>,
}

/// Two seconds without a failure: the next one starts from the shortest
/// delay again.
const QUIET_RESETS: Duration = Duration::from_secs(2);

impl Default for WatchBackoff {
    fn default() -> WatchBackoff {
        WatchBackoff {
            delays: backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(1))
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .into(),
            last_failure: None,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = tokio::time::Instant::now();
        if self.last_failure.is_some_and(|last| now - last > QUIET_RESETS) {
            kube::runtime::utils::Backoff::reset(&mut self.delays);
        }
        self.last_failure = Some(now);
        self.delays.next()
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {}
}

/// How long the API server must keep refusing a kind before it is
/// reported unreadable: one that has just started refuses every request
/// for a moment, until its authorizer has read the RBAC objects.
const REFUSAL_LASTS: Duration = Duration::from_secs(3);

/// How one kind is being read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KindState {
    /// Not listed yet.
    Waiting,
    /// Listed and watched.
    Readable,
    /// The API server refuses it, and why (see [`watch_problem`]).
    Unreadable(String),
}

/// Where a reflector reports how its kind is being read.
#[derive(Clone)]
struct KindHealth {
    kind: String,
    states: watch::Sender<BTreeMap<String, KindState>>,
}

impl KindHealth {
    /// A kind whose state nobody but the log follows.
    fn alone(kind: impl Into<String>) -> KindHealth {
        KindHealth::in_map(kind, &watch::Sender::new(BTreeMap::new()))
    }

    /// A kind reported in `states` (waiting, until it lists or fails).
    fn in_map(kind: impl Into<String>, states: &watch::Sender<BTreeMap<String, KindState>>) -> KindHealth {
        let kind = kind.into();
        states.send_modify(|all| {
            all.insert(kind.clone(), KindState::Waiting);
        });
        KindHealth {
            kind,
            states: states.clone(),
        }
    }

    fn set(&self, state: KindState) {
        self.states
            .send_if_modified(|all| all.insert(self.kind.clone(), state.clone()).as_ref() != Some(&state));
    }
}

/// What a failed list or watch means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchProblem {
    /// The API server answered with a refusal: the kind cannot be read
    /// until something changes (RBAC, a CRD, stored objects); why, and
    /// what to do, as an operator should read it.
    Unreadable(String),
    /// The API server is away, or a watch ended (it relists by itself).
    Transient(String),
}

/// What `error`, from listing or watching `resource` (its URL), means.
pub fn watch_problem(error: &watcher::Error, resource: &str) -> WatchProblem {
    let refused = |status: &kube::core::Status| {
        let message = &status.message;
        WatchProblem::Unreadable(match status.code {
            403 => format!(
                "forbidden: this agent may not list and watch {resource} ({message}); meshlb's chart grants \
                 it: check the agent's ServiceAccount, ClusterRole, Role and their bindings"
            ),
            404 => format!(
                "not found: the API server does not serve {resource}: its CustomResourceDefinition is not \
                 installed (`meshlb-agent crds | kubectl apply --server-side -f -`)"
            ),
            _ if message.contains("conversion") || message.contains("from the storage") => format!(
                "the API server cannot read the stored objects of {resource} ({message}): a conversion \
                 webhook that is gone (MetalLB's) still converts them; `meshlb-agent migrate --from-metallb` \
                 takes the CustomResourceDefinitions over and rewrites the stored objects"
            ),
            code => format!("{code} {} from the API server for {resource}: {message}", status.reason),
        })
    };
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
            if status.code != 410 =>
        {
            refused(status)
        }
        watcher::Error::WatchError(status) if status.code != 410 => refused(status),
        other => WatchProblem::Transient(other.to_string()),
    }
}

/// Runs one reflector until the source stops, notifying after every event.
fn reflect<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
    health: KindHealth,
) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    reflect_with(api, watcher::Config::default(), |_| {}, writer, changed, health)
}

/// [`reflect`] of the objects `config` selects, each trimmed by `trim`
/// before it is cached. Each change of how the kind can be read is
/// logged once, with what to do, and reported to `health`.
fn reflect_with<K>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    writer: reflector::store::Writer<K>,
    changed: Arc<Notify>,
    health: KindHealth,
) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    let resource = api.resource_url().to_owned();
    tokio::spawn(async move {
        // managedFields are most of an object's size and nothing reads
        // them: the cache does not keep them.
        let stream = watcher(api, config)
            .modify(move |object| {
                object.meta_mut().managed_fields = None;
                trim(object);
            })
            .backoff(WatchBackoff::default());
        let mut events = reflector::reflector(writer, stream).boxed();
        let kind = health.kind.clone();
        // Refused since when, and the refusal reported (once it lasted).
        let mut refused_since: Option<tokio::time::Instant> = None;
        let mut reported: Option<String> = None;
        while let Some(event) = events.next().await {
            match event {
                // Emitted before each list attempt, not a sign of success.
                Ok(watcher::Event::Init) => {}
                Ok(_) => {
                    refused_since = None;
                    if reported.take().is_some() {
                        tracing::info!(%kind, "{resource} can be read again");
                    }
                    health.set(KindState::Readable);
                    changed.notify_one();
                }
                // The watcher relists by itself, with backoff; the cache
                // keeps what it held until the new list is complete.
                Err(e) => match watch_problem(&e, &resource) {
                    WatchProblem::Transient(why) => tracing::debug!(%kind, "watch ended, relisting: {why}"),
                    WatchProblem::Unreadable(why) => {
                        let since = *refused_since.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() < REFUSAL_LASTS {
                            tracing::debug!(%kind, "refused, trying again: {why}");
                            continue;
                        }
                        if reported.as_ref() != Some(&why) {
                            tracing::warn!(
                                %kind,
                                "{why}; meanwhile the last copy read is used, and every other kind is served"
                            );
                        }
                        health.set(KindState::Unreadable(why.clone()));
                        reported = Some(why);
                        changed.notify_one();
                    }
                },
            }
        }
    })
}

/// The password Secrets of `namespace` (type `kubernetes.io/basic-auth`,
/// the only type a BGPPeer's `passwordSecret` may name), each holding only
/// its `password` key: the namespace's other Secrets (Helm's releases, the
/// mesh's key) are never listed, and no other value is ever cached.
fn reflect_password_secrets(
    client: &kube::Client,
    namespace: &str,
    changed: &Arc<Notify>,
    states: &watch::Sender<BTreeMap<String, KindState>>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Store<Secret> {
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().fields(&format!("type={}", meshlb_config::secret::BASIC_AUTH));
    let trim: fn(&mut Secret) = |secret| {
        if let Some(data) = &mut secret.data {
            data.retain(|key, _| key == meshlb_config::secret::PASSWORD_KEY);
        }
    };
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let health = KindHealth::in_map("Secret", states);
    tasks.push(reflect_with(api, config, trim, writer, changed.clone(), health));
    store
}

/// The cache of every object of a built-in kind, cluster-wide, kept by a
/// reflector task pushed onto `tasks`.
fn reflect_all<K>(
    client: &kube::Client,
    changed: &Arc<Notify>,
    states: &watch::Sender<BTreeMap<String, KindState>>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Store<K>
where
    K: k8s_openapi::Resource + Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let health = KindHealth::in_map(<K as k8s_openapi::Resource>::KIND, states);
    tasks.push(reflect(Api::<K>::all(client.clone()), writer, changed.clone(), health));
    store
}

/// Waits until `store` has listed, or its kind is refused (it is then
/// read as what it last held: nothing, if it never listed).
async fn listed_or_refused<K>(
    store: &Store<K>,
    kind: &str,
    mut states: watch::Receiver<BTreeMap<String, KindState>>,
) -> Result<(), reflector::store::WriterDropped>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    tokio::select! {
        listed = store.wait_until_ready() => listed,
        _ = states.wait_for(|all| matches!(all.get(kind), Some(KindState::Unreadable(_)))) => Ok(()),
    }
}

impl KubernetesSource {
    /// A source reading through `client`, with the metallb.io objects from
    /// `namespace`.
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> KubernetesSource {
        KubernetesSource {
            client,
            namespace: namespace.into(),
        }
    }

    /// Starts the reflectors and the snapshot builder on the current tokio
    /// runtime.
    pub fn spawn(self) -> SourceStream {
        let changed = Arc::new(Notify::new());
        let states = watch::Sender::new(BTreeMap::new());
        let mut tasks = Vec::new();
        let client = &self.client;
        let services = reflect_all(client, &changed, &states, &mut tasks);
        let slices = reflect_all(client, &changed, &states, &mut tasks);
        let nodes = reflect_all(client, &changed, &states, &mut tasks);
        let namespaces = reflect_all(client, &changed, &states, &mut tasks);
        let secrets = reflect_password_secrets(client, &self.namespace, &changed, &states, &mut tasks);
        let mut custom = Vec::new();
        for (kind, resource) in custom_kinds() {
            let writer = reflector::store::Writer::new(resource.clone());
            custom.push((kind, writer.as_reader()));
            let api = if kind == Kind::MetalLoadBalancerClass {
                Api::<DynamicObject>::all_with(client.clone(), &resource)
            } else {
                Api::<DynamicObject>::namespaced_with(client.clone(), &self.namespace, &resource)
            };
            let health = KindHealth::in_map(kind.as_str(), &states);
            tasks.push(reflect(api, writer, changed.clone(), health));
        }
        // What can be read, as the pipeline reports it.
        let (readable_tx, readability) = watch::channel(Arc::new(Readability::default()));
        let mut followed = states.subscribe();
        tasks.push(tokio::spawn(async move {
            loop {
                let now = Readability {
                    kinds: followed
                        .borrow_and_update()
                        .iter()
                        .map(|(kind, state)| {
                            let why = match state {
                                KindState::Unreadable(why) => Some(why.clone()),
                                KindState::Waiting | KindState::Readable => None,
                            };
                            (kind.clone(), why)
                        })
                        .collect(),
                };
                readable_tx.send_if_modified(|last| (**last != now).then(|| *last = Arc::new(now)).is_some());
                if followed.changed().await.is_err() {
                    break;
                }
            }
        }));
        let caches = Caches {
            services,
            slices,
            nodes,
            namespaces,
            secrets,
            custom,
            states,
        };
        let (tx, updates) = mpsc::channel(4);
        let task = tokio::spawn(async move {
            let _reflectors = AbortOnDrop(tasks);
            if caches.wait_until_ready().await.is_err() {
                return;
            }
            tracing::info!("Kubernetes caches synced");
            let mut last = None;
            let mut converted = Converted::default();
            loop {
                let started = tokio::time::Instant::now();
                let built = {
                    let caches = caches.clone();
                    tokio::task::spawn_blocking(move || {
                        let built = caches.snapshot(&mut converted);
                        (converted, built)
                    })
                    .await
                };
                let Ok((kept, (fingerprint, update))) = built else {
                    return;
                };
                converted = kept;
                let took = started.elapsed();
                tracing::debug!(ms = took.as_millis() as u64, "snapshot built");
                let next_build = started + took * SPACING_PER_BUILD_TIME;
                if last != Some(fingerprint) {
                    last = Some(fingerprint);
                    if tx.send(update).await.is_err() {
                        return;
                    }
                }
                changed.notified().await;
                // Debounce: wait for a quiet moment, or at most a while.
                let deadline = tokio::time::Instant::now() + AT_MOST;
                while tokio::time::timeout_at(deadline, async {
                    tokio::time::timeout(QUIET, changed.notified()).await.is_ok()
                })
                .await
                .unwrap_or(false)
                {}
                tokio::time::sleep_until(next_build).await;
            }
        });
        SourceStream {
            updates,
            readability,
            guard: SourceGuard::new(task),
        }
    }
}

/// Aborts the reflector tasks when the source stops.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// What an object converted to.
type Conversion = Result<Located<Object>, Error>;

/// An object's kind, namespace and name.
type ObjectKey = (Kind, Option<String>, Option<String>);

/// Objects already converted, by kind, namespace and name, with the
/// resourceVersion they were converted at: a snapshot converts only the
/// objects that changed since the last one.
#[derive(Default)]
struct Converted {
    objects: HashMap<ObjectKey, (Option<String>, Conversion)>,
    seen: HashSet<ObjectKey>,
}

impl Converted {
    fn begin(&mut self) {
        self.seen.clear();
    }

    /// `object` converted, from the last snapshot if its version is the same.
    fn get<K: Resource>(&mut self, kind: Kind, object: &K, convert: impl FnOnce(&K) -> Conversion) -> Conversion {
        let meta = object.meta();
        let key = (kind, meta.namespace.clone(), meta.name.clone());
        self.seen.insert(key.clone());
        if let Some((version, done)) = self.objects.get(&key)
            && *version == meta.resource_version
        {
            return done.clone();
        }
        let done = convert(object);
        self.objects.insert(key, (meta.resource_version.clone(), done.clone()));
        done
    }

    /// Forgets the objects the last snapshot did not hold.
    fn end(&mut self) {
        let seen = &self.seen;
        self.objects.retain(|key, _| seen.contains(key));
    }
}

/// Hashes an object's identity and version into a fingerprint.
fn version_of<K: Resource>(object: &K, hasher: &mut impl Hasher) {
    let meta = object.meta();
    (&meta.namespace, &meta.name, &meta.resource_version).hash(hasher);
}

/// Sorts objects by namespace and name, so every snapshot lists them in
/// one order (errors come out in the same order every time).
fn sorted<K: Resource>(mut objects: Vec<Arc<K>>) -> Vec<Arc<K>> {
    objects.sort_by(|a, b| (&a.meta().namespace, &a.meta().name).cmp(&(&b.meta().namespace, &b.meta().name)));
    objects
}

impl Caches {
    /// Waits until every kind has listed or is refused (see
    /// [`watch_problem`]): one kind that cannot be read does not keep the
    /// others from being served.
    async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        let states = || self.states.subscribe();
        listed_or_refused(&self.services, "Service", states()).await?;
        listed_or_refused(&self.slices, "EndpointSlice", states()).await?;
        listed_or_refused(&self.nodes, "Node", states()).await?;
        listed_or_refused(&self.namespaces, "Namespace", states()).await?;
        listed_or_refused(&self.secrets, "Secret", states()).await?;
        for (kind, store) in &self.custom {
            listed_or_refused(store, kind.as_str(), states()).await?;
        }
        Ok(())
    }

    /// The snapshot of what the caches hold now, and its fingerprint (a
    /// hash of every object's name and resourceVersion).
    fn snapshot(&self, converted: &mut Converted) -> (u64, SourceUpdate) {
        let mut hasher = std::hash::DefaultHasher::new();
        let mut objects: Vec<Located<Object>> = Vec::new();
        // Configuration objects that could not be read reject the
        // configuration; a cluster object that could not be read (none
        // can: the API server validated them) rejects the whole reading.
        let mut unreadable: Vec<Error> = Vec::new();
        let mut cluster_unreadable: Vec<Error> = Vec::new();
        converted.begin();
        for (kind, store) in &self.custom {
            // Oldest first: when two objects conflict (overlapping pools),
            // the error names the newer one, as a file's error names the
            // later document.
            let mut listed = sorted(store.state());
            listed.sort_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp));
            for object in listed {
                version_of(object.as_ref(), &mut hasher);
                match converted.get(*kind, object.as_ref(), |o| convert::custom(*kind, o)) {
                    Ok(object) => objects.push(object),
                    Err(e) => unreadable.push(e),
                }
            }
        }
        for secret in sorted(self.secrets.state()) {
            version_of(secret.as_ref(), &mut hasher);
            match converted.get(Kind::Secret, secret.as_ref(), convert::secret) {
                Ok(object) => objects.push(object),
                Err(e) => unreadable.push(e),
            }
        }
        let mut take = |result: Result<Located<Object>, Error>| match result {
            Ok(object) => objects.push(object),
            Err(e) => cluster_unreadable.push(e),
        };
        for namespace in sorted(self.namespaces.state()) {
            version_of(namespace.as_ref(), &mut hasher);
            take(converted.get(Kind::Namespace, namespace.as_ref(), convert::namespace));
        }
        for node in sorted(self.nodes.state()) {
            version_of(node.as_ref(), &mut hasher);
            take(converted.get(Kind::Node, node.as_ref(), convert::node));
        }
        let mut load_balancers = BTreeSet::new();
        for service in sorted(self.services.state()) {
            if convert::is_load_balancer(&service) {
                version_of(service.as_ref(), &mut hasher);
                load_balancers.insert((
                    service.metadata.namespace.clone().unwrap_or_default(),
                    service.metadata.name.clone().unwrap_or_default(),
                ));
                take(converted.get(Kind::Service, service.as_ref(), convert::service));
            }
        }
        for slice in sorted(self.slices.state()) {
            let of_load_balancer = convert::slice_service(&slice)
                .is_some_and(|(ns, name)| load_balancers.contains(&(ns.to_owned(), name.to_owned())));
            if of_load_balancer {
                version_of(slice.as_ref(), &mut hasher);
                take(converted.get(Kind::EndpointSlice, slice.as_ref(), convert::endpoint_slice));
            }
        }
        converted.end();
        let fingerprint = hasher.finish();
        let update = if cluster_unreadable.is_empty() {
            SourceUpdate::of_reading(&objects, unreadable, fingerprint)
        } else {
            cluster_unreadable.extend(unreadable);
            SourceUpdate::unreadable(Rejected {
                errors: cluster_unreadable,
            })
        };
        (fingerprint, update)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn refused(code: u16, message: &str) -> watcher::Error {
        let status = kube::core::Status {
            code,
            message: message.into(),
            reason: "Reason".into(),
            ..kube::core::Status::default()
        };
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn refusals_say_what_to_do_and_restarts_are_transient() {
        let url = "/apis/metallb.io/v1beta2/namespaces/metallb-system/bgppeers";
        let said = |e: watcher::Error| match watch_problem(&e, url) {
            WatchProblem::Unreadable(why) => why,
            WatchProblem::Transient(why) => panic!("transient: {why}"),
        };
        assert!(
            said(refused(403, "nope")).starts_with("forbidden: this agent may not list and watch /apis/metallb.io")
        );
        assert!(said(refused(404, "")).contains("meshlb-agent crds"));
        let storage = said(refused(
            429,
            "storage is (re)initializing: failed to read one or more bgppeers.metallb.io from the storage",
        ));
        assert!(storage.contains("migrate --from-metallb"), "{storage}");
        let gone = watcher::Error::WatchError(Box::new(kube::core::Status {
            code: 410,
            ..kube::core::Status::default()
        }));
        assert!(matches!(watch_problem(&gone, url), WatchProblem::Transient(_)));
    }

    /// Retries grow to a second while failures go on, whatever resets the
    /// watcher asks for, and start short again after a quiet while.
    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded_and_start_short_after_quiet() {
        let mut backoff = WatchBackoff::default();
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            kube::runtime::utils::Backoff::reset(&mut backoff);
            last = backoff.next().unwrap();
            assert!(last <= Duration::from_secs(2), "{last:?}");
            tokio::time::advance(last).await;
        }
        assert!(last >= Duration::from_secs(1), "grown to the bound: {last:?}");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(backoff.next().unwrap() < Duration::from_millis(500), "short again");
    }
}
