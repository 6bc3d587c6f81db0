//! `meshlb-agent migrate --from-metallb`: moves a cluster from MetalLB to
//! meshlb in one command, keeping every object and every Service's
//! address, whichever way MetalLB was installed (its Helm chart, its
//! native manifest). `--dry-run` says what it would do and changes
//! nothing.
//!
//! What it does, in order, each step saying what it did:
//! 1. **Finds MetalLB** in the namespace: its controller Deployment and
//!    speaker DaemonSet (by the labels of MetalLB's chart and manifest),
//!    its Helm releases (Helm's release records whose chart is `metallb`),
//!    its webhook configurations (those calling its webhook Service), and
//!    the state of the `metallb.io` CRDs (conversion, stored versions).
//! 2. **Backs up** every `metallb.io` and `meshlb.io` object of every
//!    namespace, the CRDs, the webhook configurations and MetalLB's Helm
//!    release records, as YAML to one file, before changing anything
//!    (objects only readable once the CRDs are taken over, BGPPeers
//!    stored as v1beta1 behind a conversion webhook that is gone, are
//!    added then, before they are rewritten).
//! 3. **Removes MetalLB's webhook configurations**: with its controller
//!    gone, they would refuse every write of its kinds.
//! 4. **Takes over the CRDs**: each replaced by meshlb's definition (same
//!    group, kinds, versions and fields; conversion `None`: BGPPeer's
//!    v1beta1 is a subset of v1beta2), so no webhook converts anything and
//!    nothing claims them for MetalLB's Helm release; then every object of
//!    a kind stored in an older version is written again in the storage
//!    version and the CRD's `storedVersions` trimmed to it.
//! 5. **Keeps the CRDs through `helm uninstall metallb`**: MetalLB's chart
//!    ships its CRDs as templates of a subchart, so uninstalling it would
//!    delete them and every pool, advertisement and peer with them. Each of
//!    its release records is rewritten with `helm.sh/resource-policy:
//!    keep` on the CRDs (as `helm mapkubeapis` rewrites records): Helm
//!    then keeps them and says so.
//! 6. **Stops MetalLB**: deletes its controller Deployment and speaker
//!    DaemonSet (and, installed by manifest, the rest of what the manifest
//!    made but the namespace and the CRDs; a Helm release's rest goes with
//!    `helm uninstall metallb`). Addresses in Services' status stay: meshlb
//!    keeps them.
//!
//! Then meshlb is installed (its chart, or its manifest) in the same
//! namespace.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Resource as _;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

/// What `migrate` is asked to do.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// The kubeconfig (default: as kubectl finds one).
    pub kubeconfig: Option<PathBuf>,
    /// MetalLB's namespace, where meshlb runs too.
    pub namespace: String,
    /// Say what would be done, and do nothing.
    pub dry_run: bool,
    /// Where the backup goes.
    pub backup: PathBuf,
}

/// Why a migration stopped. Every step before it is done (and said); the
/// backup, once written, holds everything as it was.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The cluster could not be reached or asked.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: kube::Error,
    },
    /// The Kubernetes client could not be set up.
    #[error("Kubernetes client: {0}")]
    Client(#[from] crate::KubeClientError),
    /// The backup could not be written.
    #[error("backup {path}: {source}")]
    Backup {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A Helm release record could not be read or written back.
    #[error("Helm release record {secret}: {source}")]
    Release {
        /// The record's Secret.
        secret: String,
        /// What is wrong.
        source: ReleaseError,
    },
    /// A CRD did not become established.
    #[error("CustomResourceDefinition {0} was not established within a minute")]
    NotEstablished(String),
}

/// What is wrong with a Helm release record, reading or writing it.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Its payload is not base64.
    #[error("not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// Compressing or uncompressing it failed.
    #[error("not gzip: {0}")]
    Gzip(#[from] std::io::Error),
    /// Its JSON is not a release.
    #[error("not a release: {0}")]
    Json(#[from] serde_json::Error),
    /// Its manifest's CRD could not be marked or written.
    #[error("CRD {name}: {problem}")]
    Crd {
        /// The CRD.
        name: String,
        /// What is wrong.
        problem: CrdProblem,
    },
}

/// Why a CRD of a release's manifest could not be marked to be kept.
#[derive(Debug, thiserror::Error)]
pub enum CrdProblem {
    /// It has no metadata.
    #[error("no metadata")]
    NoMetadata,
    /// Its annotations are not a map.
    #[error("annotations are not a map")]
    AnnotationsNotAMap,
    /// It could not be written back.
    #[error("{0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> MigrateError {
    let what = what.into();
    move |source| MigrateError::Api { what, source }
}

/// The annotation that keeps a resource through `helm uninstall`.
pub const KEEP_ANNOTATION: &str = "helm.sh/resource-policy";

/// The labels MetalLB's manifest and chart give its workloads.
const METALLB_SELECTORS: [&str; 2] = ["app=metallb", "app.kubernetes.io/name=metallb"];

/// MetalLB's webhook Service (its manifest's and chart's name).
const WEBHOOK_SERVICE: &str = "metallb-webhook-service";

/// A Helm release record's payload (`data.release` of its Secret):
/// base64 of the gzip of the release's JSON, as Helm writes it.
pub fn decode_release(data: &[u8]) -> Result<serde_json::Value, ReleaseError> {
    let gzipped = base64::engine::general_purpose::STANDARD.decode(data)?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(gzipped.as_slice()).read_to_end(&mut json)?;
    Ok(serde_json::from_slice(&json)?)
}

/// The payload of `release`, as Helm writes it (see [`decode_release`]).
pub fn encode_release(release: &serde_json::Value) -> Result<Vec<u8>, ReleaseError> {
    let json = serde_json::to_vec(release)?;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&json)?;
    let gzipped = gzip.finish()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(gzipped).into_bytes())
}

/// `manifest` (a release's rendered templates: YAML documents, each headed
/// by Helm's `# Source:` comment) with every CustomResourceDefinition
/// annotated [`KEEP_ANNOTATION`]`: keep`; the CRDs' names it marked.
pub fn keep_crds(manifest: &str) -> Result<(String, Vec<String>), ReleaseError> {
    // Helm separates documents by lines of `---`.
    let mut documents: Vec<Vec<&str>> = vec![Vec::new()];
    for line in manifest.lines() {
        if line.trim_end() == "---" {
            documents.push(Vec::new());
        } else if let Some(document) = documents.last_mut() {
            document.push(line);
        }
    }
    let mut marked = Vec::new();
    let mut out = String::new();
    for (i, lines) in documents.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let first = lines
            .iter()
            .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .unwrap_or(lines.len());
        let (comments, body) = lines.split_at(first);
        let body = body.join("\n");
        let value = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&body).ok();
        let Some(mut value) =
            value.filter(|v| v.get("kind").and_then(|k| k.as_str()) == Some("CustomResourceDefinition"))
        else {
            for line in lines {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        };
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_owned();
        let crd = |problem| ReleaseError::Crd {
            name: name.clone(),
            problem,
        };
        let metadata = value
            .get_mut("metadata")
            .and_then(|m| m.as_mapping_mut())
            .ok_or_else(|| crd(CrdProblem::NoMetadata))?;
        let annotations = metadata
            .entry("annotations".into())
            .or_insert_with(|| serde_yaml_ng::Value::Mapping(Default::default()));
        if annotations.is_null() {
            *annotations = serde_yaml_ng::Value::Mapping(Default::default());
        }
        annotations
            .as_mapping_mut()
            .ok_or_else(|| crd(CrdProblem::AnnotationsNotAMap))?
            .insert(KEEP_ANNOTATION.into(), "keep".into());
        for line in comments {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&serde_yaml_ng::to_string(&value).map_err(|e| crd(CrdProblem::Yaml(e)))?);
        marked.push(name);
    }
    Ok((out, marked))
}

/// MetalLB's Helm release: its record's Secret and what it holds.
#[derive(Debug, Clone)]
struct HelmRelease {
    name: String,
    secret: String,
    release: serde_json::Value,
}

/// The newest record of every Helm release of MetalLB's chart in
/// `namespace`.
async fn metallb_releases(client: &kube::Client, namespace: &str) -> Result<Vec<HelmRelease>, MigrateError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let records = secrets
        .list(&ListParams::default().labels("owner=helm"))
        .await
        .map_err(api_error("list Helm's release records"))?;
    let mut newest: BTreeMap<String, (u64, Secret)> = BTreeMap::new();
    for secret in records.items {
        let labels = secret.metadata.labels.clone().unwrap_or_default();
        let (Some(name), Some(version)) = (labels.get("name"), labels.get("version")) else {
            continue;
        };
        let version: u64 = version.parse().unwrap_or(0);
        if newest.get(name).is_none_or(|(v, _)| *v < version) {
            newest.insert(name.clone(), (version, secret));
        }
    }
    let mut releases = Vec::new();
    for (name, (_, secret)) in newest {
        let secret_name = secret.metadata.name.clone().unwrap_or_default();
        let Some(data) = secret.data.as_ref().and_then(|d| d.get("release")) else {
            continue;
        };
        let release = decode_release(&data.0).map_err(|source| MigrateError::Release {
            secret: secret_name.clone(),
            source,
        })?;
        if release["chart"]["metadata"]["name"] == "metallb" {
            releases.push(HelmRelease {
                name,
                secret: secret_name,
                release,
            });
        }
    }
    Ok(releases)
}

/// MetalLB's webhook configurations (validating ones: MetalLB has no
/// other): those calling a Service of `namespace` named as MetalLB's
/// webhook Service, or named as MetalLB names them.
fn calls_metallb(name: &str, services: impl Iterator<Item = (String, String)>, namespace: &str) -> bool {
    name == "metallb-webhook-configuration"
        || services
            .into_iter()
            .any(|(ns, service)| ns == namespace && service == WEBHOOK_SERVICE)
}

/// What was found.
#[derive(Debug, Default)]
struct Found {
    workloads: Vec<(&'static str, String)>,
    releases: Vec<HelmRelease>,
    validating: Vec<String>,
    crds: BTreeMap<String, CustomResourceDefinition>,
}

impl Found {
    fn installed_by_manifest(&self) -> bool {
        self.releases.is_empty() && !self.workloads.is_empty()
    }
}

async fn find(client: &kube::Client, namespace: &str) -> Result<Found, MigrateError> {
    let mut found = Found::default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let daemons: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    for selector in METALLB_SELECTORS {
        let params = ListParams::default().labels(selector);
        for d in deployments
            .list(&params)
            .await
            .map_err(api_error("list Deployments"))?
            .items
        {
            found
                .workloads
                .push(("Deployment", d.metadata.name.unwrap_or_default()));
        }
        for d in daemons.list(&params).await.map_err(api_error("list DaemonSets"))?.items {
            found.workloads.push(("DaemonSet", d.metadata.name.unwrap_or_default()));
        }
    }
    found.workloads.sort();
    found.workloads.dedup();
    found.releases = metallb_releases(client, namespace).await?;
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    for config in validating
        .list(&ListParams::default())
        .await
        .map_err(api_error("list ValidatingWebhookConfigurations"))?
        .items
    {
        let services = config.webhooks.iter().flatten().filter_map(|w| {
            let s = w.client_config.service.as_ref()?;
            Some((s.namespace.clone(), s.name.clone()))
        });
        let name = config.metadata.name.clone().unwrap_or_default();
        if calls_metallb(&name, services, namespace) {
            found.validating.push(name);
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for ours in meshlb_config::crd::definitions() {
        let name = ours.metadata.name.clone().unwrap_or_default();
        if let Some(live) = crds
            .get_opt(&name)
            .await
            .map_err(api_error(format!("read CRD {name}")))?
        {
            found.crds.insert(name, live);
        }
    }
    Ok(found)
}

/// The API resource of `crd`'s storage version.
fn storage_resource(crd: &CustomResourceDefinition) -> Option<ApiResource> {
    let version = crd.spec.versions.iter().find(|v| v.storage)?;
    let gvk = GroupVersionKind::gvk(&crd.spec.group, &version.name, &crd.spec.names.kind);
    Some(ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural))
}

/// Every object of `crd`, in every namespace, or why they cannot be read.
async fn objects_of(client: &kube::Client, crd: &CustomResourceDefinition) -> Result<Vec<DynamicObject>, kube::Error> {
    let Some(resource) = storage_resource(crd) else {
        return Ok(Vec::new());
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    Ok(api.list(&ListParams::default()).await?.items)
}

/// Appends `documents` to the backup.
fn back_up(
    file: &mut std::fs::File,
    path: &std::path::Path,
    documents: &[serde_json::Value],
) -> Result<(), MigrateError> {
    let error = |source| MigrateError::Backup {
        path: path.to_path_buf(),
        source,
    };
    for document in documents {
        let mut document = document.clone();
        if let Some(metadata) = document.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            metadata.remove("managedFields");
        }
        let text = serde_yaml_ng::to_string(&document).map_err(|e| error(std::io::Error::other(e)))?;
        writeln!(file, "---\n{text}").map_err(error)?;
    }
    file.flush().map_err(error)
}

fn document<K: serde::Serialize + kube::Resource<DynamicType = ()>>(object: &K) -> serde_json::Value {
    let mut value = serde_json::to_value(object).unwrap_or_default();
    value["apiVersion"] = json!(K::api_version(&()));
    value["kind"] = json!(K::kind(&()));
    value
}

/// Runs the migration (see the module documentation), telling `say` each
/// step as it is done (or, with `--dry-run`, would be).
pub async fn run(options: &MigrateOptions, say: &mut dyn FnMut(String)) -> Result<(), MigrateError> {
    let client = crate::app::kube_client(options.kubeconfig.as_deref()).await?;
    let namespace = options.namespace.as_str();
    let would = if options.dry_run { "would " } else { "" };
    let found = find(&client, namespace).await?;

    // 1. What is there.
    if found.workloads.is_empty() && found.releases.is_empty() && found.crds.is_empty() {
        say(format!(
            "no MetalLB in namespace {namespace}, and no metallb.io CRDs: nothing to migrate"
        ));
        return Ok(());
    }
    for (kind, name) in &found.workloads {
        say(format!("found MetalLB's {kind} {namespace}/{name}"));
    }
    for release in &found.releases {
        let version = release.release["chart"]["metadata"]["version"].as_str().unwrap_or("?");
        say(format!(
            "found MetalLB's Helm release {} (chart metallb {version})",
            release.name
        ));
    }
    if found.installed_by_manifest() {
        say("MetalLB was installed without Helm (its manifest)".into());
    }
    for name in &found.validating {
        say(format!("found MetalLB's webhook configuration {name}"));
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());

    // 2. The backup, of everything readable now.
    let mut unreadable: Vec<String> = Vec::new();
    let mut documents: Vec<serde_json::Value> = Vec::new();
    for live in found.crds.values() {
        documents.push(document(live));
    }
    for live in found.crds.values() {
        let name = live.metadata.name.clone().unwrap_or_default();
        match objects_of(&client, live).await {
            Ok(objects) => {
                documents.extend(objects.iter().map(|o| serde_json::to_value(o).unwrap_or_default()));
            }
            Err(e) => {
                say(format!(
                    "{name}: its objects cannot be read now ({e}); backed up once the CRD is taken over"
                ));
                unreadable.push(name);
            }
        }
    }
    let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    for name in &found.validating {
        if let Some(config) = webhooks
            .get_opt(name)
            .await
            .map_err(api_error(format!("read {name}")))?
        {
            documents.push(document(&config));
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for release in &found.releases {
        if let Some(record) = secrets
            .get_opt(&release.secret)
            .await
            .map_err(api_error(format!("read {}", release.secret)))?
        {
            documents.push(document(&record));
        }
    }
    let backup_path = &options.backup;
    let mut backup = if options.dry_run {
        say(format!(
            "would back up {} objects to {}",
            documents.len(),
            backup_path.display()
        ));
        None
    } else {
        let mut file = std::fs::File::create(backup_path).map_err(|source| MigrateError::Backup {
            path: backup_path.clone(),
            source,
        })?;
        back_up(&mut file, backup_path, &documents)?;
        say(format!(
            "backed up {} objects to {}",
            documents.len(),
            backup_path.display()
        ));
        Some(file)
    };

    // 3. MetalLB's webhooks.
    for name in &found.validating {
        say(format!("{would}remove ValidatingWebhookConfiguration {name}"));
        if !options.dry_run {
            delete_if_there(&webhooks, name).await?;
        }
    }

    // 4. The CRDs.
    for ours in meshlb_config::crd::definitions() {
        let name = ours.metadata.name.clone().unwrap_or_default();
        match found.crds.get(&name) {
            None => {
                say(format!("{would}create CRD {name}"));
                if !options.dry_run {
                    crds.create(&PostParams::default(), &ours)
                        .await
                        .map_err(api_error(format!("create CRD {name}")))?;
                }
            }
            Some(live) => {
                let converted = live.spec.conversion.as_ref().is_some_and(|c| c.strategy == "Webhook");
                say(format!(
                    "{would}take over CRD {name}{}",
                    if converted {
                        " (its conversion webhook replaced: no conversion)"
                    } else {
                        ""
                    }
                ));
                if !options.dry_run {
                    let mut replacement = ours.clone();
                    replacement.metadata.resource_version = live.metadata.resource_version.clone();
                    crds.replace(&name, &PostParams::default(), &replacement)
                        .await
                        .map_err(api_error(format!("take over CRD {name}")))?;
                }
            }
        }
    }
    if !options.dry_run {
        for ours in meshlb_config::crd::definitions() {
            let name = ours.metadata.name.clone().unwrap_or_default();
            let established = kube::runtime::wait::await_condition(
                crds.clone(),
                &name,
                kube::runtime::wait::conditions::is_crd_established(),
            );
            match tokio::time::timeout(std::time::Duration::from_secs(60), established).await {
                Ok(Ok(_)) => {}
                _ => return Err(MigrateError::NotEstablished(name)),
            }
        }
    }
    // The objects that could not be read before, and those stored in an
    // older version: backed up (if not yet), written again in the storage
    // version.
    for ours in meshlb_config::crd::definitions() {
        let name = ours.metadata.name.clone().unwrap_or_default();
        let Some(live) = found.crds.get(&name) else { continue };
        let Some(storage) = ours.spec.versions.iter().find(|v| v.storage).map(|v| v.name.clone()) else {
            continue;
        };
        let stored = live
            .status
            .as_ref()
            .and_then(|s| s.stored_versions.clone())
            .unwrap_or_default();
        let older = stored.iter().any(|v| *v != storage);
        if !older && !unreadable.contains(&name) {
            continue;
        }
        if options.dry_run {
            say(format!(
                "{would}write every {} again as {storage} (stored as {})",
                ours.spec.names.kind,
                stored.join(", ")
            ));
            continue;
        }
        let objects = objects_of(&client, &ours)
            .await
            .map_err(api_error(format!("list {name} after taking it over")))?;
        if unreadable.contains(&name)
            && let Some(file) = backup.as_mut()
        {
            let values: Vec<serde_json::Value> = objects
                .iter()
                .map(|o| serde_json::to_value(o).unwrap_or_default())
                .collect();
            back_up(file, backup_path, &values)?;
            say(format!("backed up the {} objects of {name}", values.len()));
        }
        if let Some(resource) = storage_resource(&ours) {
            for object in &objects {
                let namespace = object.metadata.namespace.clone().unwrap_or_default();
                let object_name = object.metadata.name.clone().unwrap_or_default();
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
                api.replace(&object_name, &PostParams::default(), object)
                    .await
                    .map_err(api_error(format!(
                        "write {name} {namespace}/{object_name} as {storage}"
                    )))?;
            }
        }
        let patch = json!({"status": {"storedVersions": [storage]}});
        crds.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_error(format!("trim the stored versions of {name}")))?;
        say(format!(
            "wrote the {} objects of {name} again as {storage}; its stored versions are [{storage}]",
            objects.len()
        ));
    }

    // 5. Helm keeps the CRDs.
    for release in &found.releases {
        let manifest = release.release["manifest"].as_str().unwrap_or_default();
        let (manifest, marked) = keep_crds(manifest).map_err(|source| MigrateError::Release {
            secret: release.secret.clone(),
            source,
        })?;
        say(format!(
            "{would}mark the {} CRDs of Helm release {} to be kept by `helm uninstall {}`",
            marked.len(),
            release.name,
            release.name
        ));
        if options.dry_run || marked.is_empty() {
            continue;
        }
        let mut updated = release.release.clone();
        updated["manifest"] = json!(manifest);
        let payload = encode_release(&updated).map_err(|source| MigrateError::Release {
            secret: release.secret.clone(),
            source,
        })?;
        let patch = json!({"data": {"release": ByteString(payload)}});
        secrets
            .patch(&release.secret, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(api_error(format!("rewrite Helm's release record {}", release.secret)))?;
    }

    // 6. MetalLB stops.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let daemons: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    for (kind, name) in &found.workloads {
        say(format!("{would}stop MetalLB: delete {kind} {namespace}/{name}"));
        if options.dry_run {
            continue;
        }
        match *kind {
            "Deployment" => delete_if_there(&deployments, name).await?,
            _ => delete_if_there(&daemons, name).await?,
        }
    }
    if found.installed_by_manifest() {
        remove_manifest_leftovers(&client, namespace, options.dry_run, say).await?;
    }
    let done = if options.dry_run {
        "nothing changed (dry run)"
    } else {
        "MetalLB is stopped"
    };
    say(format!("{done}; every object and every Service's address is kept"));
    say(format!(
        "next: install meshlb in {namespace} (helm install meshlb charts/meshlb --namespace {namespace})"
    ));
    for release in &found.releases {
        say(format!(
            "then: helm uninstall {} --namespace {namespace} removes the rest of MetalLB and keeps the CRDs",
            release.name
        ));
    }
    Ok(())
}

/// Deletes `name` if it exists.
async fn delete_if_there<K>(api: &Api<K>, name: &str) -> Result<(), MigrateError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(MigrateError::Api {
            what: format!("delete {name}"),
            source: e,
        }),
    }
}

/// What MetalLB's native manifest makes besides its namespace, CRDs,
/// workloads and webhook configuration: its RBAC (labelled `app=metallb`)
/// and the objects its manifest names.
async fn remove_manifest_leftovers(
    client: &kube::Client,
    namespace: &str,
    dry_run: bool,
    say: &mut dyn FnMut(String),
) -> Result<(), MigrateError> {
    use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    let would = if dry_run { "would " } else { "" };
    let labelled = ListParams::default().labels("app=metallb");
    macro_rules! labelled {
        ($kind:ty, $api:expr) => {{
            let api: Api<$kind> = $api;
            let kind = <$kind as kube::Resource>::kind(&());
            for object in api
                .list(&labelled)
                .await
                .map_err(api_error(format!("list {kind}s")))?
                .items
            {
                let name = object.meta().name.clone().unwrap_or_default();
                say(format!("{would}remove MetalLB's {kind} {name}"));
                if !dry_run {
                    delete_if_there(&api, &name).await?;
                }
            }
        }};
    }
    labelled!(ServiceAccount, Api::namespaced(client.clone(), namespace));
    labelled!(Role, Api::namespaced(client.clone(), namespace));
    labelled!(RoleBinding, Api::namespaced(client.clone(), namespace));
    labelled!(ClusterRole, Api::all(client.clone()));
    labelled!(ClusterRoleBinding, Api::all(client.clone()));
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let named: [(&str, &str); 4] = [
        ("Service", WEBHOOK_SERVICE),
        ("Secret", "metallb-webhook-cert"),
        ("Secret", "memberlist"),
        ("ConfigMap", "metallb-excludel2"),
    ];
    for (kind, name) in named {
        say(format!("{would}remove MetalLB's {kind} {name}"));
        if dry_run {
            continue;
        }
        match kind {
            "Service" => delete_if_there(&services, name).await?,
            "Secret" => delete_if_there(&secrets, name).await?,
            _ => delete_if_there(&maps, name).await?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MANIFEST: &str = "\
---
# Source: metallb/charts/crds/templates/crds.yaml
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  annotations:
    controller-gen.kubebuilder.io/version: v0.16.3
  name: bgppeers.metallb.io
spec:
  group: metallb.io
---
# Source: metallb/charts/crds/templates/crds.yaml
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ipaddresspools.metallb.io
---
# Source: metallb/templates/service-accounts.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: metallb-controller
";

    #[test]
    fn crds_of_a_release_are_marked_kept_and_nothing_else_changes() {
        let (kept, marked) = keep_crds(MANIFEST).unwrap();
        assert_eq!(marked, ["bgppeers.metallb.io", "ipaddresspools.metallb.io"]);
        let documents: Vec<&str> = kept.split("---\n").collect();
        assert_eq!(documents.len(), 4, "{kept}");
        assert!(
            documents[1].starts_with("# Source: metallb/charts/crds/templates/crds.yaml\n"),
            "{}",
            documents[1]
        );
        for crd in &documents[1..3] {
            let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(crd).unwrap();
            assert_eq!(value["metadata"]["annotations"][KEEP_ANNOTATION], "keep", "{crd}");
        }
        let first: serde_yaml_ng::Value = serde_yaml_ng::from_str(documents[1]).unwrap();
        assert_eq!(
            first["metadata"]["annotations"]["controller-gen.kubebuilder.io/version"],
            "v0.16.3"
        );
        assert_eq!(
            documents[3],
            MANIFEST.split("---\n").nth(3).unwrap(),
            "other kinds untouched"
        );
        assert_eq!(keep_crds(&kept).unwrap().0, kept, "marking again changes nothing");
    }

    #[test]
    fn release_records_read_back_as_written() {
        let release =
            json!({"name": "metallb", "chart": {"metadata": {"name": "metallb"}}, "manifest": MANIFEST, "version": 1});
        let payload = encode_release(&release).unwrap();
        assert_eq!(decode_release(&payload).unwrap(), release);
        assert!(decode_release(b"not base64!").is_err());
    }

    #[test]
    fn metallbs_webhooks_are_told_by_their_service_or_name() {
        let service = |ns: &str, name: &str| std::iter::once((ns.to_owned(), name.to_owned()));
        assert!(calls_metallb(
            "anything",
            service("metallb-system", WEBHOOK_SERVICE),
            "metallb-system"
        ));
        assert!(calls_metallb(
            "metallb-webhook-configuration",
            std::iter::empty(),
            "metallb-system"
        ));
        assert!(!calls_metallb(
            "cert-manager",
            service("cert-manager", "webhook"),
            "metallb-system"
        ));
        assert!(!calls_metallb("x", service("other", WEBHOOK_SERVICE), "metallb-system"));
    }
}
