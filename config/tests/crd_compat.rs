//! meshlb's CustomResourceDefinitions against MetalLB's: every field of
//! every MetalLB kind and version (listed in `metallb-crd-fields.txt`)
//! exists in meshlb's schema with the same type, so objects a MetalLB
//! cluster holds keep every field when its CRDs are replaced by meshlb's.
#![cfg(feature = "kubernetes")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use meshlb_config::crd::definitions;

/// Every (kind, version, path) of a schema, with its type.
fn fields(kind: &str, version: &str, path: &str, schema: &JSONSchemaProps, out: &mut BTreeMap<String, String>) {
    out.insert(
        format!("{kind} {version} {path}"),
        schema.type_.clone().unwrap_or_default(),
    );
    for (name, property) in schema.properties.iter().flatten() {
        fields(kind, version, &format!("{path}.{name}"), property, out);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
        fields(kind, version, &format!("{path}[]"), items, out);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
        fields(kind, version, &format!("{path}{{}}"), values, out);
    }
}

#[test]
fn every_metallb_field_exists_with_its_type() {
    let mut ours = BTreeMap::new();
    for crd in definitions() {
        for version in &crd.spec.versions {
            let root = version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
            for top in ["spec", "status"] {
                if let Some(schema) = root.properties.as_ref().and_then(|p| p.get(top)) {
                    fields(
                        &crd.spec.names.kind,
                        &version.name,
                        &format!(".{top}"),
                        schema,
                        &mut ours,
                    );
                }
            }
        }
    }
    let listed = include_str!("metallb-crd-fields.txt");
    let mut missing = Vec::new();
    let mut checked = 0;
    for line in listed.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let mut words = line.split(' ');
        let (Some(kind), Some(version), Some(path)) = (words.next(), words.next(), words.next()) else {
            panic!("bad line {line:?}");
        };
        let their_type = words.next().unwrap_or("");
        checked += 1;
        match ours.get(&format!("{kind} {version} {path}")) {
            None => missing.push(format!("{kind} {version} {path}: missing")),
            Some(t) if t != their_type => missing.push(format!("{kind} {version} {path}: {t}, MetalLB {their_type}")),
            Some(_) => {}
        }
    }
    assert!(checked > 200, "only {checked} fields listed");
    assert!(
        missing.is_empty(),
        "{} differences:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn kinds_versions_and_scopes_are_metallbs() {
    let crds = definitions();
    let names: Vec<&str> = crds.iter().map(|c| c.metadata.name.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "ipaddresspools.metallb.io",
            "l2advertisements.metallb.io",
            "bgpadvertisements.metallb.io",
            "bgppeers.metallb.io",
            "bfdprofiles.metallb.io",
            "communities.metallb.io",
            "servicel2statuses.metallb.io",
            "servicebgpstatuses.metallb.io",
            "configurationstates.metallb.io",
            "l2policies.meshlb.io",
            "addressclaims.meshlb.io",
            "metalloadbalancerclasses.network.deckhouse.io",
        ]
    );
    for crd in &crds {
        // Deckhouse's class is cluster-scoped, as in its module.
        let scope = if crd.spec.group == "network.deckhouse.io" {
            "Cluster"
        } else {
            "Namespaced"
        };
        assert_eq!(crd.spec.scope, scope, "{names:?}");
        assert_eq!(crd.spec.versions.iter().filter(|v| v.storage).count(), 1);
        for version in &crd.spec.versions {
            assert!(version.served);
            // MetalLB declares the status subresource on every kind.
            let has_status = version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some();
            assert!(has_status || crd.spec.group == "meshlb.io", "{:?}", crd.metadata.name);
        }
    }
    let peer = &crds[3];
    let versions: Vec<(&str, bool, bool)> = peer
        .spec
        .versions
        .iter()
        .map(|v| (v.name.as_str(), v.storage, v.deprecated.unwrap_or(false)))
        .collect();
    assert_eq!(versions, [("v1beta1", false, true), ("v1beta2", true, false)]);
}

/// The Helm chart carries the CRDs `meshlb-agent crds` prints, unchanged
/// (regenerate: `meshlb-agent crds > charts/meshlb/crds/meshlb-crds.yaml`,
/// then `scripts/manifests`).
#[test]
fn the_charts_crds_are_the_agents() {
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/meshlb/crds/meshlb-crds.yaml");
    let copy = std::fs::read_to_string(&chart).unwrap();
    assert!(
        copy == meshlb_config::crd::definitions_yaml().unwrap(),
        "{} differs from `meshlb-agent crds`: regenerate it",
        chart.display()
    );
}
