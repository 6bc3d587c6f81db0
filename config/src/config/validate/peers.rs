//! BGPPeers, their password Secrets, and BFDProfiles.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::addresses::Family;
use crate::duration::parse_duration;
use crate::error::Invalid;
use crate::kinds::{BfdProfileSpec, BgpPeerSpec, SecretReference};
use crate::meta::{Kind, LabelSelector, ObjectRef, valid_dns_subdomain, validate_selectors};
use crate::object::Resource;
use crate::secret::{BASIC_AUTH, Md5Key, PASSWORD_KEY, Secret};

impl Builder {
    /// A Secret, checked only when a peer names it (the namespace holds
    /// others: the mesh's key, say).
    pub(super) fn secret(&mut self, secret: &Secret) {
        if self.claim_name(Kind::Secret, &secret.metadata).is_some() {
            self.secrets.insert(secret.metadata.name.clone(), secret.clone());
        }
    }

    /// The key in the Secret a peer names, as MetalLB reads it: a
    /// `kubernetes.io/basic-auth` Secret of the peer's namespace, its
    /// `password` key. A missing Secret is a warning (objects arrive in any
    /// order); one of another type, or without a usable password, an error.
    pub(super) fn password_from_secret(
        &mut self,
        peer: &ObjectRef,
        reference: &SecretReference,
        errors: &mut Vec<Invalid>,
    ) -> Option<Md5Key> {
        let field = "spec.passwordSecret";
        if let (Some(wanted), Some(own)) = (&reference.namespace, &peer.namespace)
            && wanted != own
        {
            errors.push(Invalid::new(
                peer,
                format!("{field}.namespace"),
                wanted,
                "is not the BGPPeer's namespace",
                format!("a Secret in {own}, where meshlb reads Secrets"),
            ));
            return None;
        }
        let Some(secret) = self.secrets.get(&reference.name) else {
            self.warn(Invalid::new(
                peer,
                format!("{field}.name"),
                &reference.name,
                format!("names no {BASIC_AUTH} Secret (none exists yet); the session waits for it"),
                format!("a {BASIC_AUTH} Secret with a {PASSWORD_KEY} key"),
            ));
            return None;
        };
        let expected = format!("a {BASIC_AUTH} Secret with a {PASSWORD_KEY} key of 1 to 80 bytes");
        let type_ = secret.type_.as_deref().unwrap_or("Opaque");
        if type_ != BASIC_AUTH {
            errors.push(Invalid::new(
                peer,
                format!("{field}.name"),
                &reference.name,
                format!("names a Secret of type {type_}"),
                expected,
            ));
            return None;
        }
        let why = match secret.value(PASSWORD_KEY) {
            Ok(Some(password)) => match Md5Key::new(password) {
                Ok(key) => return Some(key),
                Err(why) => format!("names a Secret whose {PASSWORD_KEY} {why}"),
            },
            Ok(None) => format!("names a Secret without a {PASSWORD_KEY} key"),
            Err(why) => format!("names a Secret whose {why}"),
        };
        errors.push(Invalid::new(
            peer,
            format!("{field}.name"),
            &reference.name,
            why,
            expected,
        ));
        None
    }

    pub(super) fn bgp_peer(&mut self, resource: &Resource<BgpPeerSpec>) {
        let Some(object) = self.claim_name(Kind::BgpPeer, &resource.metadata) else {
            return;
        };
        let spec = &resource.spec;
        let mut errors = Vec::new();
        let o = &object;
        if spec.my_asn == 0 {
            errors.push(Invalid::new(
                o,
                "spec.myASN",
                "0",
                "is missing or zero",
                "an AS number from 1 to 4294967295",
            ));
        }
        if spec.local_asn == Some(0) {
            errors.push(Invalid::new(
                o,
                "spec.localASN",
                "0",
                "is zero",
                "an AS number from 1 to 4294967295",
            ));
        }
        let peer_asn = match (spec.peer_asn, spec.dynamic_asn.as_deref()) {
            (Some(_), Some(d)) => {
                errors.push(Invalid::new(
                    o,
                    "spec.dynamicASN",
                    d,
                    "is set together with spec.peerASN",
                    "exactly one of peerASN or dynamicASN",
                ));
                PeerAsn::External
            }
            (None, None) | (Some(0), None) => {
                errors.push(Invalid::new(
                    o,
                    "spec.peerASN",
                    "",
                    "is missing (and dynamicASN is not set)",
                    "peerASN from 1 to 4294967295, or dynamicASN internal or external",
                ));
                PeerAsn::External
            }
            (Some(asn), None) => PeerAsn::Fixed(asn),
            (None, Some("internal")) => PeerAsn::Internal,
            (None, Some("external")) => PeerAsn::External,
            (None, Some(other)) => {
                errors.push(Invalid::new(
                    o,
                    "spec.dynamicASN",
                    other,
                    "is not a dynamic AS mode",
                    "internal or external",
                ));
                PeerAsn::External
            }
        };
        let endpoint = match (&spec.peer_address, &spec.interface) {
            (Some(a), Some(i)) => {
                errors.push(Invalid::new(
                    o,
                    "spec.interface",
                    i,
                    format!("is set together with spec.peerAddress {a}"),
                    "exactly one of peerAddress or interface",
                ));
                PeerEndpoint::Interface(i.clone())
            }
            (None, None) => {
                errors.push(Invalid::new(
                    o,
                    "spec.peerAddress",
                    "",
                    "is missing (and interface is not set)",
                    "an IPv4 or IPv6 address, or an interface for an unnumbered session",
                ));
                PeerEndpoint::Interface(String::new())
            }
            (Some(a), None) => match a.trim().parse::<IpAddr>() {
                Ok(ip) => PeerEndpoint::Address(ip),
                Err(_) => {
                    errors.push(Invalid::new(
                        o,
                        "spec.peerAddress",
                        a,
                        "is not an IP address",
                        "an IPv4 or IPv6 address",
                    ));
                    PeerEndpoint::Interface(String::new())
                }
            },
            (None, Some(i)) => {
                check_interface(o, "spec.interface", i, &mut errors);
                PeerEndpoint::Interface(i.clone())
            }
        };
        let source_address = spec
            .source_address
            .as_ref()
            .and_then(|s| match s.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    if let PeerEndpoint::Address(peer) = endpoint
                        && Family::of(peer) != Family::of(ip)
                    {
                        {
                            errors.push(Invalid::new(
                                o,
                                "spec.sourceAddress",
                                s,
                                format!(
                                    "is {} but the peer address {peer} is {}",
                                    Family::of(ip),
                                    Family::of(peer)
                                ),
                                "a source address of the peer's family",
                            ));
                        }
                    }
                    Some(ip)
                }
                Err(_) => {
                    errors.push(Invalid::new(
                        o,
                        "spec.sourceAddress",
                        s,
                        "is not an IP address",
                        "an IPv4 or IPv6 address",
                    ));
                    None
                }
            });
        let port = match spec.peer_port {
            None => 179,
            Some(p) if in_range(p, 1, 16384) => p as u16,
            Some(p) => {
                errors.push(Invalid::new(
                    o,
                    "spec.peerPort",
                    p.to_string(),
                    "is out of range",
                    "1 to 16384",
                ));
                179
            }
        };
        let (hold_time, keepalive_time) = peer_timers(o, spec, &mut errors);
        let connect_time = spec.connect_time.as_ref().and_then(|text| match parse_duration(text) {
            Ok(d) if d.subsec_nanos() == 0 && in_range(d.as_secs() as i64, 1, 65535) => Some(d),
            Ok(_) => {
                errors.push(Invalid::new(
                    o,
                    "spec.connectTime",
                    text,
                    "is not a whole number of seconds from 1 to 65535",
                    "a duration such as 10s",
                ));
                None
            }
            Err(problem) => {
                errors.push(Invalid::new(
                    o,
                    "spec.connectTime",
                    text,
                    problem.to_string(),
                    "a duration such as 10s",
                ));
                None
            }
        });
        let router_id = spec
            .router_id
            .as_ref()
            .and_then(|text| match text.trim().parse::<Ipv4Addr>() {
                Ok(id) if !id.is_unspecified() => Some(id),
                _ => {
                    errors.push(Invalid::new(
                        o,
                        "spec.routerID",
                        text,
                        "is not a usable BGP identifier",
                        "a non-zero IPv4 address such as 192.0.2.1",
                    ));
                    None
                }
            });
        // An empty password or Secret name is none, as MetalLB reads them
        // (its conversion of a v1beta1 peer writes `passwordSecret: {}`).
        let inline = spec.password.as_ref().filter(|p| !p.is_empty());
        let secret = spec.password_secret.as_ref().filter(|s| !s.name.is_empty());
        let password = match (inline, secret) {
            (Some(_), Some(secret)) => {
                errors.push(Invalid::new(
                    o,
                    "spec.passwordSecret",
                    &secret.name,
                    "is set together with spec.password",
                    "exactly one of password or passwordSecret",
                ));
                None
            }
            (Some(p), None) => match Md5Key::new(p.as_str()) {
                Ok(key) => Some(PeerPassword::Inline(key)),
                Err(why) => {
                    errors.push(Invalid::new(
                        o,
                        "spec.password",
                        "(hidden)",
                        why.to_string(),
                        "1 to 80 bytes (the TCP MD5 key limit)",
                    ));
                    None
                }
            },
            (None, Some(secret)) => {
                if !valid_dns_subdomain(&secret.name) {
                    errors.push(Invalid::new(
                        o,
                        "spec.passwordSecret.name",
                        &secret.name,
                        "is not a Secret name",
                        "a DNS subdomain such as bgp-password",
                    ));
                }
                let key = self.password_from_secret(o, secret, &mut errors);
                Some(PeerPassword::Secret {
                    name: secret.name.clone(),
                    namespace: secret.namespace.clone(),
                    key,
                })
            }
            (None, None) => None,
        };
        if let Some(profile) = &spec.bfd_profile {
            match self.config.bfd_profiles.get(profile) {
                None if !self.seen_name(Kind::BfdProfile, profile) => errors.push(Invalid::new(
                    o,
                    "spec.bfdProfile",
                    profile,
                    "names no BFDProfile",
                    self.known(Kind::BfdProfile),
                )),
                Some(p) if p.echo_mode && spec.ebgp_multi_hop => errors.push(Invalid::new(
                    o,
                    "spec.bfdProfile",
                    profile,
                    "has echoMode on, which BFD forbids on a multihop session",
                    "a profile without echoMode for an ebgpMultiHop peer",
                )),
                _ => {}
            }
        }
        let peer = BgpPeer {
            name: resource.metadata.name.clone(),
            my_asn: spec.my_asn,
            peer_asn,
            local_asn: spec.local_asn,
            endpoint,
            source_address,
            port,
            hold_time,
            keepalive_time,
            connect_time,
            router_id,
            node_selectors: spec.node_selectors.clone(),
            password,
            bfd_profile: spec.bfd_profile.clone(),
            graceful_restart: spec.enable_graceful_restart,
            ebgp_multi_hop: spec.ebgp_multi_hop,
            vrf: spec.vrf.clone().filter(|v| !v.is_empty()),
            disable_mp: spec.disable_mp,
            dual_stack_address_family: spec.dual_stack_address_family,
        };
        if peer.ebgp_multi_hop && peer.is_internal() {
            errors.push(Invalid::new(
                o,
                "spec.ebgpMultiHop",
                "true",
                "is set on an iBGP peer (peer AS equals ours)",
                "ebgpMultiHop only for eBGP peers",
            ));
        }
        if let Some(vrf) = &peer.vrf {
            check_interface(o, "spec.vrf", vrf, &mut errors);
        }
        validate_selectors(o, "spec.nodeSelectors", &spec.node_selectors, &mut errors);
        // The same session twice: same address, port, VRF and nodes.
        let key = |p: &BgpPeer| {
            let selectors: Vec<String> = p.node_selectors.iter().map(LabelSelector::canonical).collect();
            (format!("{:?}", p.endpoint), p.port, p.vrf.clone(), selectors)
        };
        if let Some(other) = self.config.bgp_peers.values().find(|other| key(other) == key(&peer)) {
            errors.push(Invalid::new(
                o,
                "spec.peerAddress",
                spec.peer_address.clone().or(spec.interface.clone()).unwrap_or_default(),
                format!(
                    "duplicates BGPPeer {} (same address, port, VRF and node selectors)",
                    other.name
                ),
                "one BGPPeer per session",
            ));
        }
        if !errors.is_empty() {
            return self.extend(errors);
        }
        self.config.bgp_peers.insert(peer.name.clone(), peer);
    }

    pub(super) fn bfd_profile(&mut self, resource: &Resource<BfdProfileSpec>) {
        let Some(object) = self.claim_name(Kind::BfdProfile, &resource.metadata) else {
            return;
        };
        let spec = &resource.spec;
        let mut errors = Vec::new();
        let mut field = |name: &str, value: Option<i64>, low: i64, high: i64, default: i64, unit: &str| -> i64 {
            match value {
                None => default,
                Some(v) if in_range(v, low, high) => v,
                Some(v) => {
                    errors.push(Invalid::new(
                        &object,
                        format!("spec.{name}"),
                        v.to_string(),
                        "is out of range",
                        format!("{low} to {high}{unit}"),
                    ));
                    default
                }
            }
        };
        let profile = BfdProfile {
            name: resource.metadata.name.clone(),
            receive_interval_ms: field("receiveInterval", spec.receive_interval, 10, 60000, 300, " ms") as u32,
            transmit_interval_ms: field("transmitInterval", spec.transmit_interval, 10, 60000, 300, " ms") as u32,
            detect_multiplier: field("detectMultiplier", spec.detect_multiplier, 2, 255, 3, "") as u8,
            echo_interval_ms: field("echoInterval", spec.echo_interval, 10, 60000, 50, " ms") as u32,
            echo_mode: spec.echo_mode,
            passive_mode: spec.passive_mode,
            minimum_ttl: field("minimumTtl", spec.minimum_ttl, 1, 254, 254, "") as u8,
        };
        if !errors.is_empty() {
            return self.extend(errors);
        }
        self.config.bfd_profiles.insert(profile.name.clone(), profile);
    }
}
