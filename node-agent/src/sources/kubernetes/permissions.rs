//! What the agent does in the API server, permission by permission, and a
//! check of them at start: the API server is asked (a
//! SelfSubjectAccessReview each, which every authenticated identity may
//! make) whether this agent's identity may do each, and one log line names
//! every one it may not, by verb, resource and namespace, so a refusal
//! later never has to be guessed at. meshlb's chart grants exactly these
//! (a test holds the chart to the list).

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

/// One thing the agent does: `verb` on `group`/`resource` (a subresource
/// after a `/`), in the agent's namespace or cluster-wide, on one object
/// by name or any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// The verb.
    pub verb: &'static str,
    /// The API group (`""`: the core group).
    pub group: &'static str,
    /// The resource, and `/subresource`.
    pub resource: &'static str,
    /// Whether it is asked in the agent's namespace (else cluster-wide).
    pub namespaced: bool,
    /// The one object it is asked for, if one.
    pub name: Option<String>,
}

const fn cluster(verb: &'static str, group: &'static str, resource: &'static str) -> Permission {
    Permission {
        verb,
        group,
        resource,
        namespaced: false,
        name: None,
    }
}

const fn here(verb: &'static str, group: &'static str, resource: &'static str) -> Permission {
    Permission {
        verb,
        group,
        resource,
        namespaced: true,
        name: None,
    }
}

/// Everything the agent does in the API server, the allocator's Lease
/// named `lease`.
pub fn needed(lease: &str) -> Vec<Permission> {
    let lease = |verb| Permission {
        name: Some(lease.to_owned()),
        ..here(verb, "coordination.k8s.io", "leases")
    };
    let mut all = NEEDED.to_vec();
    all.extend([lease("get"), lease("update")]);
    all
}

/// [`needed`] but for the Lease.
const NEEDED: &[Permission] = &[
    // The configuration source, cluster-wide.
    cluster("list", "", "services"),
    cluster("watch", "", "services"),
    cluster("list", "discovery.k8s.io", "endpointslices"),
    cluster("watch", "discovery.k8s.io", "endpointslices"),
    cluster("list", "", "nodes"),
    cluster("watch", "", "nodes"),
    cluster("list", "", "namespaces"),
    cluster("watch", "", "namespaces"),
    // Deckhouse's classes are cluster-scoped.
    cluster("list", "network.deckhouse.io", "metalloadbalancerclasses"),
    cluster("watch", "network.deckhouse.io", "metalloadbalancerclasses"),
    // The allocator: Services' addresses, annotations and fences; Events.
    cluster("get", "", "services"),
    cluster("patch", "", "services"),
    cluster("patch", "", "services/status"),
    cluster("create", "events.k8s.io", "events"),
    cluster("patch", "events.k8s.io", "events"),
    // The configuration, in the agent's namespace.
    here("list", "metallb.io", "ipaddresspools"),
    here("watch", "metallb.io", "ipaddresspools"),
    here("list", "metallb.io", "l2advertisements"),
    here("watch", "metallb.io", "l2advertisements"),
    here("list", "metallb.io", "bgpadvertisements"),
    here("watch", "metallb.io", "bgpadvertisements"),
    here("list", "metallb.io", "bgppeers"),
    here("watch", "metallb.io", "bgppeers"),
    here("list", "metallb.io", "bfdprofiles"),
    here("watch", "metallb.io", "bfdprofiles"),
    here("list", "metallb.io", "communities"),
    here("watch", "metallb.io", "communities"),
    here("list", "meshlb.io", "l2policies"),
    here("watch", "meshlb.io", "l2policies"),
    here("list", "", "secrets"),
    here("watch", "", "secrets"),
    // What the agents write there.
    here("patch", "metallb.io", "ipaddresspools/status"),
    here("list", "metallb.io", "servicel2statuses"),
    here("watch", "metallb.io", "servicel2statuses"),
    here("create", "metallb.io", "servicel2statuses"),
    here("delete", "metallb.io", "servicel2statuses"),
    here("patch", "metallb.io", "servicel2statuses/status"),
    here("list", "metallb.io", "servicebgpstatuses"),
    here("watch", "metallb.io", "servicebgpstatuses"),
    here("create", "metallb.io", "servicebgpstatuses"),
    here("delete", "metallb.io", "servicebgpstatuses"),
    here("patch", "metallb.io", "servicebgpstatuses/status"),
    here("create", "metallb.io", "configurationstates"),
    here("patch", "metallb.io", "configurationstates/status"),
    here("list", "meshlb.io", "addressclaims"),
    here("watch", "meshlb.io", "addressclaims"),
    here("create", "meshlb.io", "addressclaims"),
    here("patch", "meshlb.io", "addressclaims"),
    here("delete", "meshlb.io", "addressclaims"),
    here("create", "coordination.k8s.io", "leases"),
];

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { "core" } else { self.group };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

/// The permissions of `needed` this client's identity lacks, in
/// `namespace` where they are namespaced, with where.
pub async fn missing(
    client: &kube::Client,
    namespace: &str,
    needed: &[Permission],
) -> Result<Vec<(Permission, String)>, kube::Error> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut lacking = Vec::new();
    for permission in needed {
        let (resource, subresource) = match permission.resource.split_once('/') {
            Some((resource, sub)) => (resource, Some(sub.to_owned())),
            None => (permission.resource, None),
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(permission.verb.to_owned()),
                    group: Some(permission.group.to_owned()),
                    resource: Some(resource.to_owned()),
                    subresource,
                    namespace: permission.namespaced.then(|| namespace.to_owned()),
                    name: permission.name.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = reviews.create(&PostParams::default(), &review).await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            let place = if permission.namespaced {
                format!("in namespace {namespace}")
            } else {
                "cluster-wide".to_owned()
            };
            lacking.push((permission.clone(), place));
        }
    }
    Ok(lacking)
}

/// Asks the API server what this agent may not do of [`needed`] (the
/// allocator's Lease named `lease`) and says it in one line (or that it
/// could not ask).
pub async fn check(client: kube::Client, namespace: String, lease: String) {
    match missing(&client, &namespace, &needed(&lease)).await {
        Ok(lacking) if lacking.is_empty() => tracing::info!("the agent may do everything it does in the API server"),
        Ok(lacking) => {
            let list: Vec<String> = lacking.iter().map(|(p, place)| format!("{p} {place}")).collect();
            tracing::warn!(
                "the agent may not: {}; those requests will be refused (meshlb's chart grants them: check the \
                 agent's ServiceAccount, its ClusterRole and Role, and their bindings)",
                list.join(", ")
            );
        }
        Err(e) => tracing::warn!("cannot ask the API server what the agent may do: {e}"),
    }
}
