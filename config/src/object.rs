//! Reading Kubernetes-style YAML (apiVersion, kind, metadata, spec) into
//! typed objects, one multi-document text at a time.
//!
//! The same manifests work in a cluster and in standalone mode: objects
//! exported with `kubectl get -o yaml` load unchanged (status and server-set
//! metadata are ignored), and every error carries the file and line of the
//! document it concerns.

use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, SourceLocation};
use crate::kinds::{
    BfdProfileSpec, BgpAdvertisementSpec, BgpPeerSpec, BgpPeerSpecV1beta1, CommunitySpec, IpAddressPoolSpec,
    L2AdvertisementSpec, L2PolicySpec, MetalLoadBalancerClassSpec,
};
use crate::meta::{Kind, ObjectMeta, ObjectRef};
use crate::secret::Secret;
use crate::service::{EndpointSlice, Namespace, Node, Service};

/// API group and version of MetalLB's resources.
pub const METALLB_V1BETA1: &str = "metallb.io/v1beta1";
/// API version of BGPPeer's storage version.
pub const METALLB_V1BETA2: &str = "metallb.io/v1beta2";
/// API group and version of meshlb's own resources.
pub const MESHLB_V1ALPHA1: &str = "meshlb.io/v1alpha1";
/// API group and version of Deckhouse's MetalLoadBalancerClass.
pub const DECKHOUSE_V1ALPHA1: &str = "network.deckhouse.io/v1alpha1";

/// A custom resource: metadata and a typed spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource<S> {
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// The spec as written.
    pub spec: S,
}

/// Any object meshlb reads. Every kind is behind a pointer, so an object
/// is two words however large its kind (a reading of ten thousand Services
/// holds ten thousand of them).
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// IPAddressPool.
    IpAddressPool(Box<Resource<IpAddressPoolSpec>>),
    /// L2Advertisement.
    L2Advertisement(Box<Resource<L2AdvertisementSpec>>),
    /// BGPAdvertisement.
    BgpAdvertisement(Box<Resource<BgpAdvertisementSpec>>),
    /// BGPPeer (v1beta1 objects are converted to v1beta2).
    BgpPeer(Box<Resource<BgpPeerSpec>>),
    /// BFDProfile.
    BfdProfile(Box<Resource<BfdProfileSpec>>),
    /// Community.
    Community(Box<Resource<CommunitySpec>>),
    /// meshlb L2Policy.
    L2Policy(Box<Resource<L2PolicySpec>>),
    /// Deckhouse MetalLoadBalancerClass.
    MetalLoadBalancerClass(Box<Resource<MetalLoadBalancerClassSpec>>),
    /// Service (shared: a cluster's reading keeps an unchanged Service
    /// from one snapshot to the next without copying it).
    Service(Arc<Service>),
    /// Namespace.
    Namespace(Box<Namespace>),
    /// EndpointSlice (shared, as Services are).
    EndpointSlice(Arc<EndpointSlice>),
    /// Node.
    Node(Box<Node>),
    /// Secret.
    Secret(Box<Secret>),
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
            Object::MetalLoadBalancerClass(_) => Kind::MetalLoadBalancerClass,
            Object::Service(_) => Kind::Service,
            Object::Namespace(_) => Kind::Namespace,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Node(_) => Kind::Node,
            Object::Secret(_) => Kind::Secret,
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
            Object::MetalLoadBalancerClass(r) => &r.metadata,
            Object::Service(s) => &s.metadata,
            Object::Namespace(n) => &n.metadata,
            Object::EndpointSlice(e) => &e.metadata,
            Object::Node(n) => &n.metadata,
            Object::Secret(s) => &s.metadata,
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
     (metallb.io), L2Policy (meshlb.io), MetalLoadBalancerClass (network.deckhouse.io), Service, Namespace, Node, \
     Secret (v1), EndpointSlice (discovery.k8s.io/v1)";

/// Splits a multi-document YAML text at `---` lines, returning each
/// document with its 1-based first line.
/// The deepest nesting of flow collections (`[…]`, `{…}`) a text may have.
/// The YAML scanner does work proportional to the flow depth for every
/// token, so deep nesting costs time quadratic in the text's length (40 KB
/// of `[` once took over a minute); MetalLB objects nest a few levels deep.
/// Block nesting has no such cost (and the deserializer bounds it).
pub const MAX_FLOW_DEPTH: usize = 64;

/// Refuses, in one linear pass and before any parsing, a text whose flow
/// collections nest deeper than [`MAX_FLOW_DEPTH`]. Brackets inside quoted
/// scalars, comments, block scalars (`|`, `>`) and plain scalars (`echo
/// [x]`) do not count.
fn check_flow_depth(text: &str, file: &str) -> Result<(), Error> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    // Inside a block scalar: lines more indented than its header's belong to it.
    let mut block_scalar_parent: Option<usize> = None;
    for (index, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if let Some(parent) = block_scalar_parent {
            if line.trim().is_empty() || indent > parent {
                continue;
            }
            block_scalar_parent = None;
        }
        // The last character outside quotes and whitespace; '\n' at the
        // start of the line. A collection or a quote opens a node only
        // where a node may start.
        let mut last = '\n';
        let mut code_end = line.len();
        let mut chars = line.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match quote {
                Some('\'') => {
                    if c == '\'' {
                        if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                            chars.next();
                        } else {
                            quote = None;
                            last = c;
                        }
                    }
                }
                Some(_) => {
                    if c == '\\' {
                        chars.next();
                    } else if c == '"' {
                        quote = None;
                        last = c;
                    }
                }
                None => {
                    let node_start =
                        matches!(last, '\n' | ':' | '-' | '?' | ',') || (depth > 0 && matches!(last, '[' | '{'));
                    match c {
                        '#' if at == 0 || line[..at].ends_with([' ', '\t']) => {
                            code_end = at;
                            break;
                        }
                        '\'' | '"' if node_start => quote = Some(c),
                        '[' | '{' if depth > 0 || node_start => {
                            depth += 1;
                            if depth > MAX_FLOW_DEPTH {
                                return Err(Error::Parse {
                                    location: SourceLocation {
                                        file: file.into(),
                                        line: index + 1,
                                    },
                                    object: None,
                                    message: format!(
                                        "flow collections ([…], {{…}}) nest deeper than {MAX_FLOW_DEPTH} levels; \
                                         refused before parsing"
                                    ),
                                });
                            }
                        }
                        ']' | '}' if depth > 0 => depth -= 1,
                        _ => {}
                    }
                    if !c.is_whitespace() {
                        last = c;
                    }
                }
            }
        }
        if quote.is_none() && depth == 0 && is_block_scalar_header(&line[..code_end]) {
            block_scalar_parent = Some(indent);
        }
    }
    Ok(())
}

/// Whether a line (comment removed) ends with a block scalar header: `|`
/// or `>`, with optional chomping and indentation indicators.
fn is_block_scalar_header(code: &str) -> bool {
    let head = code
        .trim_end()
        .trim_end_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit());
    let Some(before) = head.strip_suffix(['|', '>']) else {
        return false;
    };
    before.is_empty() || before.ends_with([' ', '\t'])
}

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
    let message = crate::error::excerpt(message.split(" at line ").next().unwrap_or(&message));
    Error::Parse {
        location: SourceLocation {
            file: file.into(),
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

/// A document of a kind meshlb does not read (a Deployment beside the
/// Services of a manifest), skipped with a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where the document is.
    pub location: SourceLocation,
    /// Its apiVersion.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: skipped {} {} {:?}: not a kind meshlb reads ({KNOWN_KINDS})",
            self.location, self.api_version, self.kind, self.name
        )
    }
}

/// What a multi-document text holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// The objects meshlb reads.
    pub objects: Vec<Located<Object>>,
    /// Documents of other kinds, outside meshlb's groups.
    pub skipped: Vec<Skipped>,
}

/// Parses every document of `text` (read from `file`). Empty documents are
/// skipped, and so are documents of kinds meshlb does not read from groups
/// other than `metallb.io` and `meshlb.io` (reported in
/// [`Parsed::skipped`]); an unknown kind in those groups is an error, as a
/// misspelt kind would be silently ignored otherwise. All documents are
/// tried; every failure is reported.
pub fn parse_documents(text: &str, file: &str) -> Result<Parsed, Vec<Error>> {
    check_flow_depth(text, file).map_err(|e| vec![e])?;
    let mut parsed = Parsed::default();
    let mut errors = Vec::new();
    let shared_file: std::sync::Arc<str> = file.into();
    for (start, document) in split_documents(text) {
        let location = SourceLocation {
            file: std::sync::Arc::clone(&shared_file),
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
        if let Some(skipped) = foreign(&header, &location) {
            parsed.skipped.push(skipped);
            continue;
        }
        match parse_one(&document, file, start, header) {
            Ok(object) => parsed.objects.push(Located { location, object }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(parsed) } else { Err(errors) }
}

/// The document as [`Skipped`], if it is of a kind meshlb does not read
/// and outside meshlb's and MetalLB's groups.
fn foreign(header: &Header, location: &SourceLocation) -> Option<Skipped> {
    let api_version = header.api_version.as_deref()?;
    let kind = header.kind.as_deref()?;
    let group = api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("");
    let ours = matches!(group, "metallb.io" | "meshlb.io")
        || matches!(
            (group, kind),
            ("", "Service" | "Namespace" | "Node" | "Secret")
                | ("discovery.k8s.io", "EndpointSlice")
                | ("network.deckhouse.io", "MetalLoadBalancerClass")
        );
    (!ours && !kind.is_empty()).then(|| Skipped {
        location: location.clone(),
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: header
            .metadata
            .as_ref()
            .and_then(|m| m.name.clone())
            .unwrap_or_default(),
    })
}

fn parse_one(document: &str, file: &str, start: usize, header: Header) -> Result<Object, Error> {
    let location = SourceLocation {
        file: file.into(),
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
        "MetalLoadBalancerClass" => Kind::MetalLoadBalancerClass,
        "Service" => Kind::Service,
        "Namespace" => Kind::Namespace,
        "EndpointSlice" => Kind::EndpointSlice,
        "Node" => Kind::Node,
        "Secret" => Kind::Secret,
        other => {
            return Err(parse_error(
                None,
                format!("unknown kind {other:?} (known: {KNOWN_KINDS})"),
            ));
        }
    };
    let object = ObjectRef::named(kind, meta.namespace, name);
    if object.name.is_empty() {
        return Err(parse_error(Some(object), "metadata.name is missing".into()));
    }
    let allowed: &[&str] = match kind {
        Kind::BgpPeer => &[METALLB_V1BETA2, METALLB_V1BETA1],
        Kind::L2Policy => &[MESHLB_V1ALPHA1],
        Kind::MetalLoadBalancerClass => &[DECKHOUSE_V1ALPHA1],
        Kind::Service | Kind::Namespace | Kind::Node | Kind::Secret => &["v1"],
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
        Kind::IpAddressPool => Object::IpAddressPool(Box::new(read_resource(document, file, start, o)?)),
        Kind::L2Advertisement => Object::L2Advertisement(Box::new(read_resource(document, file, start, o)?)),
        Kind::BgpAdvertisement => Object::BgpAdvertisement(Box::new(read_resource(document, file, start, o)?)),
        Kind::BgpPeer if api_version == METALLB_V1BETA1 => {
            let old: Resource<BgpPeerSpecV1beta1> = read_resource(document, file, start, o)?;
            Object::BgpPeer(Box::new(Resource {
                metadata: old.metadata,
                spec: old.spec.into(),
            }))
        }
        Kind::BgpPeer => Object::BgpPeer(Box::new(read_resource(document, file, start, o)?)),
        Kind::BfdProfile => Object::BfdProfile(Box::new(read_resource(document, file, start, o)?)),
        Kind::Community => Object::Community(Box::new(read_resource(document, file, start, o)?)),
        Kind::L2Policy => Object::L2Policy(Box::new(read_resource(document, file, start, o)?)),
        Kind::MetalLoadBalancerClass => {
            Object::MetalLoadBalancerClass(Box::new(read_resource(document, file, start, o)?))
        }
        Kind::Service => Object::Service(Arc::new(read_plain(document, file, start, o)?)),
        Kind::Namespace => Object::Namespace(Box::new(read_plain(document, file, start, o)?)),
        Kind::EndpointSlice => Object::EndpointSlice(Arc::new(read_plain(document, file, start, o)?)),
        Kind::Node => Object::Node(Box::new(read_plain(document, file, start, o)?)),
        Kind::Secret => Object::Secret(Box::new(read_plain(document, file, start, o)?)),
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
        let objects = parse_documents(TWO, "pools.yaml").unwrap().objects;
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
    fn references_to_services_name_their_namespace() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: 5}\n";
        let errors = parse_documents(text, "x.yaml").unwrap_err();
        let Error::Parse { object: Some(o), .. } = &errors[0] else {
            panic!("{errors:?}")
        };
        assert_eq!(o.to_string(), "Service default/web");
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let deep = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {}\n",
            "[".repeat(40_000)
        );
        let errors = parse_documents(&deep, "x.yaml").unwrap_err();
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(
            text.starts_with("x.yaml:4:") && text.contains("deeper than 64"),
            "{text}"
        );
        // Just within the bound: parsed as usual (and refused for what it is).
        let ok_depth = format!("a: {}{}\n", "[".repeat(MAX_FLOW_DEPTH), "]".repeat(MAX_FLOW_DEPTH));
        assert!(check_flow_depth(&ok_depth, "x.yaml").is_ok());
        let too_deep = format!(
            "a: {}{}\n",
            "[".repeat(MAX_FLOW_DEPTH + 1),
            "]".repeat(MAX_FLOW_DEPTH + 1)
        );
        assert!(check_flow_depth(&too_deep, "x.yaml").is_err());
        // Brackets that open no collection do not count.
        let many = "[".repeat(1000);
        for text in [
            format!("a: \"{many}\"\n"),
            format!("a: '{many} it''s'\n"),
            format!("a: echo {many}\n"),
            format!("a: 1 # {many}\n"),
            format!("# {many}\n"),
            format!("a: |\n  {many}\n  more\nb: [1, 2]\n"),
            format!("a: >-\n    {many}\n"),
            format!("a: \"multi\n  line {many}\"\n"),
        ] {
            assert!(check_flow_depth(&text, "x.yaml").is_ok(), "{text:.60}");
        }
        // After a block scalar ends, collections count again.
        let after = format!("a: |\n  text\nb: {}\n", "[".repeat(100));
        assert!(check_flow_depth(&after, "x.yaml").is_err());
    }

    #[test]
    fn unknown_kinds_versions_and_names_are_refused() {
        let cases = [
            (
                "apiVersion: metallb.io/v1beta1\nkind: IPAdressPool\nmetadata: {name: p}\n",
                "unknown kind \"IPAdressPool\"",
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
        assert_eq!(
            parse_documents("# nothing\n---\n", "x.yaml").unwrap(),
            Parsed::default()
        );
    }

    #[test]
    fn other_kinds_are_skipped_with_a_notice() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: [odd]}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata: {name: web}\n";
        let parsed = parse_documents(text, "app.yaml").unwrap();
        assert_eq!(parsed.objects.len(), 1);
        let notices: Vec<String> = parsed.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(notices.len(), 2);
        assert!(
            notices[0].starts_with("app.yaml:1: skipped apps/v1 Deployment \"web\": not a kind meshlb reads"),
            "{notices:?}"
        );
        assert!(notices[1].contains("v1 ConfigMap"), "{notices:?}");
    }
}
