//! Reading Kubernetes-style YAML (apiVersion, kind, metadata, spec) into
//! typed objects, one multi-document text at a time.
//!
//! The same manifests work in a cluster and in standalone mode: objects
//! exported with `kubectl get -o yaml` load unchanged (status and server-set
//! metadata are ignored), and every error carries the file and line of the
//! document it concerns.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, SourceLocation};
use crate::kinds::{
    BfdProfileSpec, BgpAdvertisementSpec, BgpPeerSpec, BgpPeerSpecV1beta1, CommunitySpec, IpAddressPoolSpec,
    L2AdvertisementSpec, L2PolicySpec,
};
use crate::meta::{Kind, ObjectMeta, ObjectRef};
use crate::service::{EndpointSlice, Namespace, Service};

/// API group and version of MetalLB's resources.
pub const METALLB_V1BETA1: &str = "metallb.io/v1beta1";
/// API version of BGPPeer's storage version.
pub const METALLB_V1BETA2: &str = "metallb.io/v1beta2";
/// API group and version of meshlb's own resources.
pub const MESHLB_V1ALPHA1: &str = "meshlb.io/v1alpha1";

/// A custom resource: metadata and a typed spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource<S> {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// The spec as written.
    pub spec: S,
}

/// Any object meshlb reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// IPAddressPool.
    IpAddressPool(Resource<IpAddressPoolSpec>),
    /// L2Advertisement.
    L2Advertisement(Resource<L2AdvertisementSpec>),
    /// BGPAdvertisement.
    BgpAdvertisement(Resource<BgpAdvertisementSpec>),
    /// BGPPeer (v1beta1 objects are converted to v1beta2).
    BgpPeer(Resource<BgpPeerSpec>),
    /// BFDProfile.
    BfdProfile(Resource<BfdProfileSpec>),
    /// Community.
    Community(Resource<CommunitySpec>),
    /// meshlb L2Policy.
    L2Policy(Resource<L2PolicySpec>),
    /// Service.
    Service(Service),
    /// Namespace.
    Namespace(Namespace),
    /// EndpointSlice.
    EndpointSlice(EndpointSlice),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::IpAddressPool(_) => Kind::IpAddressPool,
            Object::L2Advertisement(_) => Kind::L2Advertisement,
            Object::BgpAdvertisement(_) => Kind::BgpAdvertisement,
            Object::BgpPeer(_) => Kind::BgpPeer,
            Object::BfdProfile(_) => Kind::BfdProfile,
            Object::Community(_) => Kind::Community,
            Object::L2Policy(_) => Kind::L2Policy,
            Object::Service(_) => Kind::Service,
            Object::Namespace(_) => Kind::Namespace,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::IpAddressPool(r) => &r.metadata,
            Object::L2Advertisement(r) => &r.metadata,
            Object::BgpAdvertisement(r) => &r.metadata,
            Object::BgpPeer(r) => &r.metadata,
            Object::BfdProfile(r) => &r.metadata,
            Object::Community(r) => &r.metadata,
            Object::L2Policy(r) => &r.metadata,
            Object::Service(s) => &s.metadata,
            Object::Namespace(n) => &n.metadata,
            Object::EndpointSlice(e) => &e.metadata,
        }
    }

    /// A reference naming the object in messages.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(self.kind(), self.metadata())
    }
}

/// An object and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// File and line.
    pub location: SourceLocation,
    /// The object.
    pub object: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<HeaderMeta>,
}

#[derive(Deserialize)]
struct HeaderMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound = "S: DeserializeOwned + Default"
)]
struct Envelope<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde_yaml_ng::Value>,
}

const KNOWN_KINDS: &str = "IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer, BFDProfile, Community \
     (metallb.io), L2Policy (meshlb.io), Service, Namespace (v1), EndpointSlice (discovery.k8s.io/v1)";

/// Splits a multi-document YAML text at `---` lines, returning each
/// document with its 1-based first line.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        let is_separator = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_separator || line == "..." {
            documents.push((start, std::mem::take(&mut current)));
            start = index + 2;
            // Content after `--- ` on the same line belongs to the next document.
            if let Some(rest) = line.strip_prefix("---").filter(|r| !r.trim().is_empty()) {
                current.push_str(rest.trim_start());
                current.push('\n');
                start = index + 1;
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    documents.push((start, current));
    documents
}

fn yaml_error(file: &str, start: usize, object: Option<ObjectRef>, err: &serde_yaml_ng::Error) -> Error {
    let line = err
        .location()
        .map(|l| start + l.line().saturating_sub(1))
        .unwrap_or(start);
    // serde_yaml_ng appends "at line N column M", which would name the line
    // inside the document; the location we give is the file's.
    let message = err.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message).to_string();
    Error::Parse {
        location: SourceLocation {
            file: file.to_string(),
            line,
        },
        object,
        message,
    }
}

fn read_resource<S: DeserializeOwned + Default>(
    document: &str,
    file: &str,
    start: usize,
    object: &ObjectRef,
) -> Result<Resource<S>, Error> {
    let envelope: Envelope<S> =
        serde_yaml_ng::from_str(document).map_err(|e| yaml_error(file, start, Some(object.clone()), &e))?;
    Ok(Resource {
        metadata: envelope.metadata,
        spec: envelope.spec,
    })
}

fn read_plain<T: DeserializeOwned>(document: &str, file: &str, start: usize, object: &ObjectRef) -> Result<T, Error> {
    serde_yaml_ng::from_str(document).map_err(|e| yaml_error(file, start, Some(object.clone()), &e))
}

/// Parses every document of `text` (read from `file`). Empty documents are
/// skipped. All documents are tried; every failure is reported.
pub fn parse_documents(text: &str, file: &str) -> Result<Vec<Located<Object>>, Vec<Error>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (start, document) in split_documents(text) {
        let location = SourceLocation {
            file: file.to_string(),
            line: start,
        };
        let header: Option<Header> = match serde_yaml_ng::from_str(&document) {
            Ok(header) => header,
            Err(e) => {
                errors.push(yaml_error(file, start, None, &e));
                continue;
            }
        };
        let Some(header) = header else { continue };
        match parse_one(&document, file, start, header) {
            Ok(object) => objects.push(Located { location, object }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(objects) } else { Err(errors) }
}

fn parse_one(document: &str, file: &str, start: usize, header: Header) -> Result<Object, Error> {
    let location = SourceLocation {
        file: file.to_string(),
        line: start,
    };
    let api_version = header.api_version.unwrap_or_default();
    let kind_name = header.kind.unwrap_or_default();
    let meta = header.metadata.unwrap_or(HeaderMeta {
        name: None,
        namespace: None,
    });
    let name = meta.name.unwrap_or_default();
    let parse_error = |object: Option<ObjectRef>, message: String| Error::Parse {
        location: location.clone(),
        object,
        message,
    };
    if kind_name.is_empty() {
        return Err(parse_error(
            None,
            format!("document has no kind (expected one of {KNOWN_KINDS})"),
        ));
    }
    let kind = match kind_name.as_str() {
        "IPAddressPool" => Kind::IpAddressPool,
        "L2Advertisement" => Kind::L2Advertisement,
        "BGPAdvertisement" => Kind::BgpAdvertisement,
        "BGPPeer" => Kind::BgpPeer,
        "BFDProfile" => Kind::BfdProfile,
        "Community" => Kind::Community,
        "L2Policy" => Kind::L2Policy,
        "Service" => Kind::Service,
        "Namespace" => Kind::Namespace,
        "EndpointSlice" => Kind::EndpointSlice,
        other => {
            return Err(parse_error(
                None,
                format!("unknown kind {other:?} (known: {KNOWN_KINDS})"),
            ));
        }
    };
    let object = ObjectRef {
        kind,
        namespace: meta.namespace,
        name,
    };
    if object.name.is_empty() {
        return Err(parse_error(Some(object), "metadata.name is missing".into()));
    }
    let allowed: &[&str] = match kind {
        Kind::BgpPeer => &[METALLB_V1BETA2, METALLB_V1BETA1],
        Kind::L2Policy => &[MESHLB_V1ALPHA1],
        Kind::Service | Kind::Namespace => &["v1"],
        Kind::EndpointSlice => &["discovery.k8s.io/v1"],
        _ => &[METALLB_V1BETA1],
    };
    if !allowed.contains(&api_version.as_str()) {
        return Err(parse_error(
            Some(object.clone()),
            format!(
                "{object}: apiVersion {api_version:?} is not served for {kind} (allowed: {})",
                allowed.join(", ")
            ),
        ));
    }
    let o = &object;
    Ok(match kind {
        Kind::IpAddressPool => Object::IpAddressPool(read_resource(document, file, start, o)?),
        Kind::L2Advertisement => Object::L2Advertisement(read_resource(document, file, start, o)?),
        Kind::BgpAdvertisement => Object::BgpAdvertisement(read_resource(document, file, start, o)?),
        Kind::BgpPeer if api_version == METALLB_V1BETA1 => {
            let old: Resource<BgpPeerSpecV1beta1> = read_resource(document, file, start, o)?;
            Object::BgpPeer(Resource {
                metadata: old.metadata,
                spec: old.spec.into(),
            })
        }
        Kind::BgpPeer => Object::BgpPeer(read_resource(document, file, start, o)?),
        Kind::BfdProfile => Object::BfdProfile(read_resource(document, file, start, o)?),
        Kind::Community => Object::Community(read_resource(document, file, start, o)?),
        Kind::L2Policy => Object::L2Policy(read_resource(document, file, start, o)?),
        Kind::Service => Object::Service(read_plain(document, file, start, o)?),
        Kind::Namespace => Object::Namespace(read_plain(document, file, start, o)?),
        Kind::EndpointSlice => Object::EndpointSlice(read_plain(document, file, start, o)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
# leading comment
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: a
  namespace: metallb-system
  uid: 1234
spec:
  addresses: [192.0.2.0/28]
status:
  assignedIPv4: 3
---
---
apiVersion: metallb.io/v1beta1
kind: BGPPeer
metadata: {name: old}
spec:
  myASN: 64513
  peerASN: 64512
  peerAddress: 192.0.2.1
";

    #[test]
    fn reads_documents_with_locations() {
        let objects = parse_documents(TWO, "pools.yaml").unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].location.line, 1);
        assert_eq!(objects[1].location.line, 14);
        let Object::BgpPeer(peer) = &objects[1].object else {
            panic!("not a peer")
        };
        assert_eq!(peer.spec.peer_asn, Some(64512));
        assert_eq!(peer.spec.peer_address.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn errors_name_file_line_and_object() {
        let text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\n---\n\
                    apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b}\nspec:\n  autoAsign: true\n";
        let errors = parse_documents(text, "x.yaml").unwrap_err();
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(text.starts_with("x.yaml:9:"), "{text}");
        assert!(text.contains("unknown field `autoAsign`"), "{text}");
        let Error::Parse { object: Some(o), .. } = &errors[0] else {
            panic!()
        };
        assert_eq!(o.to_string(), "IPAddressPool b");
    }

    #[test]
    fn unknown_kinds_versions_and_names_are_refused() {
        let cases = [
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
                "unknown kind \"Pod\"",
            ),
            (
                "apiVersion: metallb.io/v1\nkind: IPAddressPool\nmetadata: {name: p}\n",
                "apiVersion \"metallb.io/v1\"",
            ),
            (
                "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nspec: {}\n",
                "metadata.name is missing",
            ),
            ("kind: [\n", "x.yaml:1"),
            ("apiVersion: v1\nmetadata: {name: p}\n", "document has no kind"),
        ];
        for (text, want) in cases {
            let errors = parse_documents(text, "x.yaml").unwrap_err();
            assert!(errors[0].to_string().contains(want), "{text}: {}", errors[0]);
        }
        assert_eq!(parse_documents("# nothing\n---\n", "x.yaml").unwrap(), vec![]);
    }
}
