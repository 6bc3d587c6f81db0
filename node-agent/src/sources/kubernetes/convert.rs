//! API objects into meshlb's model: what the reflectors hold, as the
//! [`Located<Object>`]s an [`Inventory`](meshlb_config::Inventory) is built
//! from.
//!
//! Core kinds (Service, EndpointSlice, Node, Namespace, Secret) arrive
//! typed and always convert. The `metallb.io` and `meshlb.io` kinds arrive untyped:
//! an object the API server holds but meshlb cannot read (written before
//! the CRDs had meshlb's schema, say) becomes an error naming it, which
//! rejects the snapshot and keeps the last good configuration running,
//! instead of failing the watch for every object of its kind.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::DynamicObject;
use meshlb_config::meta::{Kind, ObjectMeta, ObjectRef};
use meshlb_config::object::Resource;
use meshlb_config::service::ServiceType;
use meshlb_config::{Error, Located, Object, SourceLocation};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where objects read from the API server are said to come from.
pub const LOCATION: &str = "kubernetes";

fn location() -> SourceLocation {
    SourceLocation {
        file: LOCATION.into(),
        line: 0,
    }
}

fn parse_error(object: ObjectRef, message: String) -> Error {
    Error::Parse {
        location: location(),
        object: Some(object),
        message,
    }
}

/// A typed API object in meshlb's model, through its JSON form (the model
/// reads what `kubectl get -o json` shows).
fn through_json<A: Serialize, T: DeserializeOwned>(
    object: &A,
    reference: impl FnOnce() -> ObjectRef,
) -> Result<T, Error> {
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(|e| parse_error(reference(), e.to_string()))
}

fn located(object: Object) -> Located<Object> {
    Located {
        location: location(),
        object,
    }
}

fn named(kind: Kind, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ObjectRef {
    ObjectRef::named(kind, meta.namespace.clone(), meta.name.clone().unwrap_or_default())
}

/// A Service.
pub fn service(service: &Service) -> Result<Located<Object>, Error> {
    through_json(service, || named(Kind::Service, &service.metadata)).map(|s| located(Object::Service(Arc::new(s))))
}

/// Whether a Service is of type LoadBalancer (the only ones meshlb reads;
/// one that changes type leaves the inventory and releases its addresses).
pub fn is_load_balancer(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .and_then(ServiceType::parse)
        == Some(ServiceType::LoadBalancer)
}

/// An EndpointSlice.
pub fn endpoint_slice(slice: &EndpointSlice) -> Result<Located<Object>, Error> {
    through_json(slice, || named(Kind::EndpointSlice, &slice.metadata))
        .map(|s| located(Object::EndpointSlice(Arc::new(s))))
}

/// The Service an EndpointSlice belongs to: `(namespace, name)`.
pub fn slice_service(slice: &EndpointSlice) -> Option<(&str, &str)> {
    let namespace = slice.metadata.namespace.as_deref()?;
    let name = slice.metadata.labels.as_ref()?.get("kubernetes.io/service-name")?;
    Some((namespace, name.as_str()))
}

/// A Node.
pub fn node(node: &Node) -> Result<Located<Object>, Error> {
    through_json(node, || named(Kind::Node, &node.metadata)).map(|n| located(Object::Node(Box::new(n))))
}

/// A Namespace.
pub fn namespace(namespace: &Namespace) -> Result<Located<Object>, Error> {
    through_json(namespace, || named(Kind::Namespace, &namespace.metadata))
        .map(|n| located(Object::Namespace(Box::new(n))))
}

/// A Secret (its values base64-encoded, as the API serves them).
pub fn secret(secret: &Secret) -> Result<Located<Object>, Error> {
    through_json(secret, || named(Kind::Secret, &secret.metadata)).map(|s| located(Object::Secret(Box::new(s))))
}

/// A `metallb.io`, `meshlb.io` or `network.deckhouse.io` object of `kind`.
pub fn custom(kind: Kind, object: &DynamicObject) -> Result<Located<Object>, Error> {
    let reference = || named(kind, &object.metadata);
    let metadata: ObjectMeta = through_json(&object.metadata, reference)?;
    let spec = object
        .data
        .get("spec")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    fn resource<S: DeserializeOwned>(
        metadata: ObjectMeta,
        spec: serde_json::Value,
        reference: impl FnOnce() -> ObjectRef,
    ) -> Result<Resource<S>, Error> {
        let spec = serde_json::from_value(spec).map_err(|e| parse_error(reference(), format!("spec: {e}")))?;
        Ok(Resource { metadata, spec })
    }
    let object = match kind {
        Kind::IpAddressPool => Object::IpAddressPool(Box::new(resource(metadata, spec, reference)?)),
        Kind::L2Advertisement => Object::L2Advertisement(Box::new(resource(metadata, spec, reference)?)),
        Kind::BgpAdvertisement => Object::BgpAdvertisement(Box::new(resource(metadata, spec, reference)?)),
        Kind::BgpPeer => Object::BgpPeer(Box::new(resource(metadata, spec, reference)?)),
        Kind::BfdProfile => Object::BfdProfile(Box::new(resource(metadata, spec, reference)?)),
        Kind::Community => Object::Community(Box::new(resource(metadata, spec, reference)?)),
        Kind::L2Policy => Object::L2Policy(Box::new(resource(metadata, spec, reference)?)),
        Kind::MetalLoadBalancerClass => Object::MetalLoadBalancerClass(Box::new(resource(metadata, spec, reference)?)),
        other => {
            return Err(parse_error(
                reference(),
                format!("{other} is not a custom resource kind"),
            ));
        }
    };
    Ok(located(object))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_custom_object_meshlb_cannot_read_is_an_error_naming_it() {
        let pool: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "old", "namespace": "metallb-system", "resourceVersion": "7"},
            "spec": {"addresses": "192.0.2.0/24"},
        }))
        .unwrap();
        let error = custom(Kind::IpAddressPool, &pool).unwrap_err().to_string();
        assert!(
            error.starts_with("kubernetes: ") && error.contains("spec: invalid type: string"),
            "{error}"
        );
        let Error::Parse { object: Some(o), .. } = custom(Kind::IpAddressPool, &pool).unwrap_err() else {
            panic!()
        };
        assert_eq!(o.to_string(), "IPAddressPool metallb-system/old");
    }

    #[test]
    fn objects_keep_what_the_model_reads() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": {"metallb.io/address-pool": "lan"},
                         "resourceVersion": "12", "uid": "u1"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "clusterIP": "198.19.0.9"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.5", "ipMode": "VIP"}]}},
        }))
        .unwrap();
        assert!(is_load_balancer(&service));
        let Object::Service(read) = service_object(&service) else {
            panic!()
        };
        assert_eq!(read.metadata.annotations["metallb.io/address-pool"], "lan");
        assert_eq!(
            read.assigned_addresses(),
            vec!["192.0.2.5".parse::<std::net::IpAddr>().unwrap()]
        );
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-x", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["198.18.0.1"], "nodeName": "n1", "conditions": {"ready": false, "serving": true}}],
        }))
        .unwrap();
        assert_eq!(slice_service(&slice), Some(("shop", "web")));
        let Object::EndpointSlice(read) = endpoint_slice(&slice).unwrap().object else {
            panic!()
        };
        assert!(read.endpoints[0].is_healthy());
    }

    fn service_object(service: &Service) -> Object {
        super::service(service).unwrap().object
    }
}
