//! Configuration validation as a MetalLB user meets it: whole manifests in,
//! either a configuration or every problem, each naming object, field,
//! value and what is allowed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::IpAddr;
use std::time::Duration;

use meshlb_config::config::{BgpCommunity, Failback, PeerAsn, PeerEndpoint, PeerPassword};
use meshlb_config::{Config, ConfigStore, Offer, Rejected, parse_documents};

fn build(yaml: &str) -> Result<Config, Rejected> {
    let objects = parse_documents(yaml, "test.yaml").expect("manifest parses").objects;
    Config::build(&objects)
}

/// The error messages of a manifest that must be rejected.
fn rejected(yaml: &str) -> Vec<String> {
    match build(yaml) {
        Ok(config) => panic!("accepted: {config:#?}"),
        Err(r) => r.errors.iter().map(ToString::to_string).collect(),
    }
}

fn assert_one(errors: &[String], wants: &[&str]) {
    assert!(
        errors.iter().any(|e| wants.iter().all(|w| e.contains(w))),
        "no error containing all of {wants:?} in {errors:#?}"
    );
}

const POOL: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool-a, namespace: metallb-system}
spec:
  addresses: [192.0.2.0/28]
";

#[test]
fn full_metallb_manifest_is_accepted_with_metallb_defaults() {
    let config = build(
        "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: public, namespace: metallb-system, labels: {tier: public}}
spec:
  addresses: [192.0.2.0/26, '192.0.2.100 - 192.0.2.110', '2001:db8:1::/120']
  avoidBuggyIPs: true
  serviceAllocation:
    priority: 10
    namespaces: [shop]
    namespaceSelectors: [{matchLabels: {team: web}}]
    serviceSelectors: [{matchExpressions: [{key: app, operator: In, values: [web, api]}]}]
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: manual, namespace: metallb-system}
spec:
  addresses: [198.51.100.0/24]
  autoAssign: false
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: metallb-system}
spec:
  ipAddressPoolSelectors: [{matchLabels: {tier: public}}]
  nodeSelectors: [{matchLabels: {kubernetes.io/hostname: node1}}]
  interfaces: [eth0, bond0.100]
  preferredNodeSelectors: [{weight: 50, preference: {matchLabels: {zone: a}}}]
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: communities, namespace: metallb-system}
spec:
  communities:
    - {name: vpn-only, value: '1234:1'}
    - {name: big, value: 'large:64512:1:2'}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: fast, namespace: metallb-system}
spec: {receiveInterval: 50, transmitInterval: 50, detectMultiplier: 3, passiveMode: true}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
spec:
  myASN: 64513
  peerASN: 64512
  peerAddress: 192.0.2.1
  sourceAddress: 192.0.2.11
  peerPort: 1179
  holdTime: 9s
  connectTime: 5s
  routerID: 192.0.2.11
  passwordSecret: {name: bgp-secret, namespace: metallb-system}
  bfdProfile: fast
  enableGracefulRestart: true
  vrf: red
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: dyn, namespace: metallb-system}
spec: {myASN: 64513, dynamicASN: internal, peerAddress: '2001:db8::1', keepaliveTime: 10s, password: secret}
---
apiVersion: metallb.io/v1beta1
kind: BGPPeer
metadata: {name: legacy, namespace: metallb-system}
spec: {myASN: 64513, peerASN: 64600, peerAddress: 203.0.113.1, ebgpMultiHop: true}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: bgp, namespace: metallb-system}
spec:
  ipAddressPools: [manual]
  aggregationLength: 24
  aggregationLengthV6: 120
  localPref: 100
  communities: [vpn-only, 'large:1:2:3', no-export, big]
  peers: [tor, legacy]
---
apiVersion: meshlb.io/v1alpha1
kind: L2Policy
metadata: {name: spread}
spec:
  serviceSelectors: [{matchLabels: {spread: 'yes'}}]
  addressesPerService: 3
  nodePreferences: [{weight: 100, preference: {matchLabels: {rack: r1}}}]
  failback: NonRevertive
",
    )
    .unwrap();
    let public = &config.pools["public"];
    assert_eq!(public.ranges.len(), 3);
    assert!(public.avoid_buggy_ips && public.auto_assign);
    assert!(!config.pools["manual"].auto_assign);
    let tor = &config.bgp_peers["tor"];
    assert_eq!(
        (tor.hold_time, tor.keepalive_time),
        (Duration::from_secs(9), Duration::from_secs(3))
    );
    assert_eq!(tor.port, 1179);
    assert_eq!(tor.connect_time, Some(Duration::from_secs(5)));
    assert!(matches!(&tor.password, Some(PeerPassword::Secret { name, .. }) if name == "bgp-secret"));
    let dyn_peer = &config.bgp_peers["dyn"];
    assert_eq!(dyn_peer.peer_asn, PeerAsn::Internal);
    assert_eq!(
        (dyn_peer.hold_time, dyn_peer.keepalive_time),
        (Duration::from_secs(30), Duration::from_secs(10))
    );
    assert_eq!(
        dyn_peer.endpoint,
        PeerEndpoint::Address("2001:db8::1".parse::<IpAddr>().unwrap())
    );
    let legacy = &config.bgp_peers["legacy"];
    assert_eq!(
        (legacy.peer_asn, legacy.port, legacy.hold_time),
        (PeerAsn::Fixed(64600), 179, Duration::from_secs(90))
    );
    let bgp = &config.bgp_advertisements["bgp"];
    assert_eq!(bgp.communities.len(), 4);
    assert!(matches!(bgp.communities[0], BgpCommunity::Standard(c) if c.0 == (1234 << 16 | 1)));
    assert!(matches!(bgp.communities[3], BgpCommunity::Large(_)));
    assert_eq!(
        config.bfd_profiles["fast"].echo_interval_ms, 50,
        "default echo interval"
    );
    let spread = &config.l2_policies["spread"];
    assert_eq!(
        (spread.addresses_per_service, spread.failback),
        (3, Failback::NonRevertive)
    );
}

#[test]
fn overlapping_pools_name_both() {
    let errors = rejected(&format!(
        "{POOL}---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: pool-b}}
spec:
  addresses: [192.0.2.8-192.0.2.20]
"
    ));
    assert_one(
        &errors,
        &[
            "IPAddressPool pool-b",
            "spec.addresses",
            "192.0.2.8-192.0.2.20",
            "overlaps 192.0.2.0/28 of IPAddressPool pool-a",
        ],
    );
    assert_one(&errors, &["test.yaml:8"]);
}

#[test]
fn bad_cidrs_and_ranges() {
    let errors = rejected(
        "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: p}
spec:
  addresses: [192.0.2.0/33, 192.0.2.9-192.0.2.1, '2001:db8::/64', '2001:db8::8/125', banana]
",
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_one(
        &errors,
        &[
            "spec.addresses[0]",
            "\"192.0.2.0/33\"",
            "prefix length 33",
            "allowed: a CIDR such as",
        ],
    );
    assert_one(&errors, &["spec.addresses[1]", "after its end"]);
    assert_one(&errors, &["spec.addresses[3]", "overlaps spec.addresses[2]"]);
    assert_one(&errors, &["spec.addresses[4]", "banana"]);
    assert_one(
        &rejected("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {}\n"),
        &["spec.addresses", "is empty"],
    );
}

#[test]
fn references_to_missing_objects() {
    // A BFD profile a peer names must exist (as in MetalLB).
    let errors = rejected(
        "apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: p1}
spec: {myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.1, bfdProfile: missing}
",
    );
    assert_one(&errors, &["BGPPeer p1", "spec.bfdProfile", "missing", "there are none"]);
}

#[test]
fn advertisements_naming_missing_pools_or_peers_are_warnings() {
    // In a cluster objects arrive in any order: an advertisement may come
    // before its pool. It is accepted, with a warning, and covers the
    // names that exist.
    let manifest = format!(
        "{POOL}---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: l2}}
spec: {{ipAddressPools: [pool-a, pool-z]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: bgp}}
spec: {{ipAddressPools: [nope], peers: [ghost]}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: p1}}
spec: {{myASN: 64513, peerASN: 64512, peerAddress: 192.0.2.1}}
"
    );
    let config = build(&manifest).unwrap();
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert_one(
        &warnings,
        &[
            "test.yaml:8",
            "L2Advertisement l2",
            "spec.ipAddressPools[1]",
            "pool-z",
            "names no IPAddressPool (yet)",
            "one of pool-a",
        ],
    );
    assert_one(&warnings, &["BGPAdvertisement bgp", "spec.ipAddressPools[0]", "nope"]);
    assert_one(
        &warnings,
        &[
            "BGPAdvertisement bgp",
            "spec.peers[0]",
            "ghost",
            "names no BGPPeer (yet)",
            "one of p1",
        ],
    );
    let pool = &config.pools["pool-a"];
    assert!(config.l2_advertisements["l2"].pools.covers(pool));
    assert!(!config.bgp_advertisements["bgp"].pools.covers(pool));
    // Once the pool exists the advertisement covers it, without a warning.
    let with_pool = manifest
        .replace("[nope]", "[pool-a]")
        .replace("[pool-a, pool-z]", "[pool-a]");
    let config = build(&with_pool.replace("[ghost]", "[p1]")).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(config.bgp_advertisements["bgp"].pools.covers(&config.pools["pool-a"]));
}

fn peer(spec: &str) -> Vec<String> {
    rejected(&format!(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: p}}\nspec: {spec}\n"
    ))
}

#[test]
fn asn_and_timer_rules() {
    assert_one(
        &peer("{peerASN: 1, peerAddress: 192.0.2.1}"),
        &["spec.myASN", "missing or zero"],
    );
    assert_one(
        &peer("{myASN: 1, peerAddress: 192.0.2.1}"),
        &["spec.peerASN", "is missing"],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 2, dynamicASN: external, peerAddress: 192.0.2.1}"),
        &[
            "spec.dynamicASN",
            "together with spec.peerASN",
            "exactly one of peerASN or dynamicASN",
        ],
    );
    assert_one(
        &peer("{myASN: 1, dynamicASN: sideways, peerAddress: 192.0.2.1}"),
        &["internal or external"],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, holdTime: 2s}"),
        &[
            "spec.holdTime",
            "\"2s\"",
            "below 3 seconds",
            "0 (no keepalives) or at least 3s",
        ],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, keepaliveTime: 500ms}"),
        &["spec.keepaliveTime", "whole number of seconds"],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, holdTime: 10s, keepaliveTime: 20s}"),
        &["spec.keepaliveTime", "exceeds the hold time 10s"],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, holdTime: soon}"),
        &["spec.holdTime", "\"soon\""],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, connectTime: 0s}"),
        &["spec.connectTime", "1 to 65535"],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, peerPort: 20000}"),
        &["spec.peerPort", "20000", "1 to 16384"],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, routerID: '2001:db8::1'}"),
        &["spec.routerID", "IPv4"],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 1, peerAddress: 192.0.2.1, ebgpMultiHop: true}"),
        &["spec.ebgpMultiHop", "iBGP"],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, sourceAddress: '2001:db8::1'}"),
        &["spec.sourceAddress", "is IPv6 but the peer address 192.0.2.1 is IPv4"],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, interface: eth0}"),
        &["exactly one of peerAddress or interface"],
    );
    assert_one(
        &peer("{myASN: 1, peerASN: 2, peerAddress: router}"),
        &["spec.peerAddress", "\"router\"", "not an IP address"],
    );
    // Zero hold time (keepalives off) is legal.
    build("apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, holdTime: 0s}\n").unwrap();
}

#[test]
fn exclusive_password_fields() {
    assert_one(
        &peer("{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, password: x, passwordSecret: {name: s}}"),
        &[
            "spec.passwordSecret",
            "together with spec.password",
            "exactly one of password or passwordSecret",
        ],
    );
}

/// A BGPPeer's passwordSecret as MetalLB reads it: a basic-auth Secret of
/// the peer's namespace, its `password` key; a Secret not there yet is a
/// warning and no key (the session waits, never runs unsigned), a wrong one
/// an error on the peer naming the Secret; keys never print.
#[test]
fn password_secrets_as_metallb_reads_them() {
    let peer = "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p, namespace: metallb-system}\n\
                spec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, passwordSecret: {name: bgp}}\n";
    let secret = |type_: &str, data: &str| {
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: bgp, namespace: metallb-system}}\ntype: {type_}\n{data}\n"
        )
    };
    let key = |config: &Config| {
        config.bgp_peers["p"]
            .password
            .as_ref()
            .and_then(PeerPassword::key)
            .cloned()
    };

    let config = build(&format!(
        "{peer}{}",
        secret("kubernetes.io/basic-auth", "data: {password: czNjcjN0}")
    ))
    .unwrap();
    assert_eq!(key(&config).map(|k| k.as_bytes().to_vec()), Some(b"s3cr3t".to_vec()));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(!format!("{config:?}").contains("s3cr3t"), "a key never prints");
    let plain = build(&format!(
        "{peer}{}",
        secret("kubernetes.io/basic-auth", "stringData: {password: plain}")
    ))
    .unwrap();
    assert_eq!(key(&plain).map(|k| k.as_bytes().to_vec()), Some(b"plain".to_vec()));

    let waiting = build(peer).unwrap();
    assert_eq!(key(&waiting), None);
    let warnings: Vec<String> = waiting.warnings.iter().map(ToString::to_string).collect();
    assert_one(
        &warnings,
        &[
            "BGPPeer metallb-system/p",
            "spec.passwordSecret.name",
            "none exists yet",
        ],
    );

    assert_one(
        &rejected(&format!("{peer}{}", secret("Opaque", "data: {password: czNjcjN0}"))),
        &[
            "BGPPeer metallb-system/p",
            "spec.passwordSecret.name",
            "of type Opaque",
            "kubernetes.io/basic-auth",
        ],
    );
    assert_one(
        &rejected(&format!(
            "{peer}{}",
            secret("kubernetes.io/basic-auth", "data: {username: YQ==}")
        )),
        &["spec.passwordSecret.name", "without a password key"],
    );
    assert_one(
        &rejected(&format!(
            "{peer}{}",
            secret("kubernetes.io/basic-auth", "data: {password: '%%'}")
        )),
        &["spec.passwordSecret.name", "not base64"],
    );
    assert_one(
        &rejected(&format!(
            "{peer}{}",
            secret("kubernetes.io/basic-auth", "data: {password: ''}")
        )),
        &["spec.passwordSecret.name", "is 0 bytes long"],
    );
    assert_one(
        &rejected(&peer.replace("{name: bgp}", "{name: bgp, namespace: other}")),
        &["spec.passwordSecret.namespace", "other", "not the BGPPeer's namespace"],
    );
    // Other Secrets of the namespace are no one's business.
    let unrelated = secret("Opaque", "data: {k: YQ==}").replace("name: bgp,", "name: memberlist,");
    assert!(build(&format!("{POOL}{unrelated}")).is_ok());
}

#[test]
fn duplicate_peers_and_names() {
    let errors = rejected(
        "apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: a}
spec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: b}
spec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.1}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: a}
spec: {myASN: 1, peerASN: 2, peerAddress: 192.0.2.9}
",
    );
    assert_one(&errors, &["BGPPeer b", "duplicates BGPPeer a"]);
    assert_one(
        &errors,
        &[
            "BGPPeer a",
            "metadata.name",
            "already used by another BGPPeer (first at test.yaml:1)",
        ],
    );
}

#[test]
fn bad_community_strings() {
    let errors = rejected(&format!(
        "{POOL}---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {{name: c}}
spec:
  communities: [{{name: ok, value: '1:1'}}, {{name: bad, value: '70000:1'}}, {{name: ok, value: '2:2'}}]
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: bgp}}
spec: {{communities: ['1:2:3', 'large:1:2', unknown-alias]}}
"
    ));
    assert_one(
        &errors,
        &["Community c", "spec.communities[1].value", "70000:1", "each 0 to 65535"],
    );
    assert_one(&errors, &["Community c", "spec.communities[2].name", "defined twice"]);
    assert_one(&errors, &["BGPAdvertisement bgp", "spec.communities[0]", "1:2:3"]);
    assert_one(&errors, &["spec.communities[1]", "large:1:2"]);
    assert_one(&errors, &["spec.communities[2]", "unknown-alias"]);
}

#[test]
fn aggregation_cannot_reach_outside_the_pool() {
    let errors = rejected(&format!(
        "{POOL}---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: wide}}
spec: {{aggregationLength: 24}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: huge}}
spec: {{aggregationLength: 33, aggregationLengthV6: -1}}
"
    ));
    assert_one(
        &errors,
        &[
            "BGPAdvertisement wide",
            "spec.aggregationLength",
            "\"24\"",
            "192.0.2.0/28 of IPAddressPool pool-a",
            "at least 28",
        ],
    );
    assert_one(
        &errors,
        &["BGPAdvertisement huge", "spec.aggregationLength", "33", "0 to 32"],
    );
    assert_one(
        &errors,
        &["BGPAdvertisement huge", "spec.aggregationLengthV6", "-1", "0 to 128"],
    );
}

#[test]
fn bfd_ranges_and_echo_with_multihop() {
    let errors = rejected(
        "apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: bad}
spec: {receiveInterval: 5, detectMultiplier: 1, minimumTtl: 255}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: echo}
spec: {echoMode: true}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: far}
spec: {myASN: 1, peerASN: 2, peerAddress: 203.0.113.1, ebgpMultiHop: true, bfdProfile: echo}
",
    );
    assert_one(
        &errors,
        &["BFDProfile bad", "spec.receiveInterval", "\"5\"", "10 to 60000 ms"],
    );
    assert_one(&errors, &["spec.detectMultiplier", "2 to 255"]);
    assert_one(&errors, &["spec.minimumTtl", "1 to 254"]);
    assert_one(&errors, &["BGPPeer far", "echoMode on", "multihop"]);
}

#[test]
fn selectors_interfaces_and_meshlb_policy() {
    let errors = rejected(&format!(
        "{POOL}---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: l2}}
spec:
  nodeSelectors: [{{matchExpressions: [{{key: zone, operator: Near}}]}}]
  interfaces: [this-name-is-far-too-long]
  preferredNodeSelectors: [{{weight: 0, preference: {{}}}}]
---
apiVersion: meshlb.io/v1alpha1
kind: L2Policy
metadata: {{name: pol}}
spec: {{addressesPerService: 17, failback: Sometimes}}
"
    ));
    assert_one(&errors, &["spec.nodeSelectors[0].matchExpressions[0].operator", "Near"]);
    assert_one(&errors, &["spec.interfaces[0]", "not a Linux interface name"]);
    assert_one(&errors, &["spec.preferredNodeSelectors[0].weight", "1 to 100"]);
    assert_one(&errors, &["L2Policy pol", "spec.addressesPerService", "1 to 16"]);
    assert_one(&errors, &["L2Policy pol", "spec.failback", "Revertive or NonRevertive"]);
}

#[test]
fn invalid_update_never_replaces_the_last_valid_one() {
    let mut store = ConfigStore::default();
    assert_eq!(store.offer(build(POOL)), Offer::Accepted(1));
    let good = store.active().cloned().unwrap();
    let bad = build(&POOL.replace("192.0.2.0/28", "192.0.2.0/40"));
    let Offer::Rejected(rejection) = store.offer(bad) else {
        panic!("bad config accepted")
    };
    assert!(
        rejection.to_string().contains("configuration rejected (1 error)"),
        "{rejection}"
    );
    assert_eq!(store.active(), Some(&good));
    assert_eq!((store.generation(), store.rejections()), (1, 1));
    assert!(store.last_rejection().is_some());
    assert_eq!(store.offer(build(POOL)), Offer::Unchanged(1));
    assert!(store.last_rejection().is_none(), "a good offer clears the rejection");
    assert_eq!(store.offer(build(&POOL.replace("/28", "/27"))), Offer::Accepted(2));
}
