//! Tables for people: each answer of the API as aligned columns, `-` for
//! nothing, in the style of kubectl.

use meshlb_proto::v1 as pb;
use meshlb_proto::v1::event::Kind;

/// Columns padded to their widest cell, two spaces apart.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(&cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                text.push_str(&cell);
                text.push_str(&" ".repeat(pad));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// `items` comma-separated, or `-`.
fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

fn yes(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

/// `meshlbctl members`.
pub fn members(response: &pb::ListMembersResponse) -> String {
    let rows = response
        .members
        .iter()
        .map(|m| {
            let name = if m.local {
                format!("{} (this node)", m.name)
            } else {
                m.name.clone()
            };
            vec![
                name,
                m.address.clone(),
                if !m.has_record {
                    "no record yet".to_owned()
                } else if m.settling {
                    "settling".to_owned()
                } else {
                    "ready".to_owned()
                },
                list(&m.claims),
                if m.bgp_draining {
                    format!("{} (draining)", list(&m.bgp_announcing))
                } else {
                    list(&m.bgp_announcing)
                },
            ]
        })
        .collect();
    let mut out = table(&["NAME", "ADDRESS", "STATE", "LAYER2 CLAIMS", "BGP ANNOUNCING"], rows);
    if let Some(f) = &response.fence {
        out.push_str(&format!(
            "quorum: {} (live {}, reference {}, expected {}, a majority heard: {})\n",
            yes(f.quorum),
            f.live,
            f.reference,
            f.expected.map_or_else(|| "unknown".to_owned(), |e| e.to_string()),
            yes(f.heard_majority)
        ));
    }
    out
}

fn announcers_of(service: &pb::Service) -> String {
    let mut names: Vec<String> = service
        .owners
        .iter()
        .flat_map(|o| o.announcers.iter().chain(&o.bgp_announcers).cloned())
        .collect();
    names.sort();
    names.dedup();
    list(&names)
}

/// `meshlbctl services`.
pub fn services(services: &[pb::Service]) -> String {
    let rows = services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                list(&s.addresses),
                announcers_of(s),
                yes(s.owners.iter().any(|o| o.here)),
                s.outcome.clone(),
            ]
        })
        .collect();
    table(&["SERVICE", "ADDRESSES", "ANNOUNCED BY", "HERE", "OUTCOME"], rows)
}

/// `meshlbctl service NS/NAME`.
pub fn service(s: &pb::Service) -> String {
    let mut out = format!(
        "Service:     {}\nAddresses:   {}\nOutcome:     {}\n",
        s.name,
        list(&s.addresses),
        s.outcome
    );
    if s.layer2 {
        out.push_str(&format!(
            "Layer 2:     {} here{}\n",
            if s.serveable_here { "serveable" } else { "not serveable" },
            if !s.not_serveable_here.is_empty() {
                format!(": {}", s.not_serveable_here)
            } else if s.interfaces.is_empty() {
                String::new()
            } else {
                format!(", answered on {}", s.interfaces.join(","))
            }
        ));
    }
    out.push('\n');
    let rows = s
        .owners
        .iter()
        .map(|o| {
            let why = match (o.announcers.len(), o.bgp_announcers.len()) {
                (0, 0) => "nobody announces it".to_owned(),
                (1, _) if o.here => "this node owns it (Layer 2)".to_owned(),
                (1, _) => format!("{} owns it (Layer 2)", o.announcers[0]),
                (0, n) => format!("{n} node(s) announce it over BGP"),
                (n, _) => format!("{n} nodes claim it: a split brain the mesh is resolving"),
            };
            vec![
                o.address.clone(),
                list(&o.announcers),
                list(&o.bgp_announcers),
                candidates(&o.candidates),
                why,
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ADDRESS",
            "LAYER2 OWNER",
            "BGP ANNOUNCERS",
            "CANDIDATES (IN PLACEMENT ORDER)",
            "WHY",
        ],
        rows,
    ));
    out
}

/// Candidates in placement order, with their weight where they have one,
/// how many addresses each announces, and `settling` where they are.
fn candidates(candidates: &[pb::Candidate]) -> String {
    let names: Vec<String> = candidates
        .iter()
        .map(|c| {
            let mut name = c.node.clone();
            if c.weight > 0 {
                name.push_str(&format!("(weight {})", c.weight));
            }
            name.push_str(&format!("({} announced)", c.announcing));
            if c.settling {
                name.push_str("(settling)");
            }
            name
        })
        .collect();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(">")
    }
}

/// `meshlbctl interfaces`.
pub fn interfaces(interfaces: &[pb::Interface]) -> String {
    let rows = interfaces
        .iter()
        .map(|i| {
            vec![
                i.name.clone(),
                if i.link_up { "up" } else { "down" }.to_owned(),
                list(&i.answering),
                i.arp_replies.to_string(),
                i.na_replies.to_string(),
                i.announcements.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "INTERFACE",
            "LINK",
            "ANSWERING",
            "ARP REPLIES",
            "NA REPLIES",
            "ANNOUNCEMENTS",
        ],
        rows,
    )
}

/// `meshlbctl bgp`.
pub fn bgp(peers: &[pb::BgpPeer]) -> String {
    let rows = peers
        .iter()
        .map(|p| {
            let state = if !p.not_running.is_empty() {
                format!("not running: {}", p.not_running)
            } else if p.established {
                "established".to_owned()
            } else {
                "connecting".to_owned()
            };
            vec![
                p.name.clone(),
                if p.address.is_empty() {
                    "-".to_owned()
                } else {
                    p.address.clone()
                },
                state,
                if p.established {
                    format!("{}s/{}s", p.hold_time, p.keepalive_time)
                } else {
                    "-".to_owned()
                },
                list(&p.capabilities),
                list(&p.prefixes),
            ]
        })
        .collect();
    table(
        &["PEER", "ADDRESS", "STATE", "HOLD/KEEPALIVE", "CAPABILITIES", "PREFIXES"],
        rows,
    )
}

/// `meshlbctl bfd`.
pub fn bfd(sessions: &[pb::BfdSession]) -> String {
    let rows = sessions
        .iter()
        .map(|s| {
            vec![
                s.peer.clone(),
                s.state.clone(),
                if s.multihop { "multihop" } else { "single hop" }.to_owned(),
                yes(s.echo),
                format!("{} ms", s.detection_time_ms),
                if s.last_down.is_empty() {
                    "-".to_owned()
                } else {
                    s.last_down.clone()
                },
            ]
        })
        .collect();
    table(&["PEER", "STATE", "HOPS", "ECHO", "DETECTION", "LAST DOWN"], rows)
}

/// `meshlbctl pools`.
pub fn pools(pools: &[pb::Pool]) -> String {
    let rows = pools
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                format!("{}/{}", p.ipv4_in_use, p.ipv4_total),
                format!("{}/{}", p.ipv6_in_use, p.ipv6_total),
            ]
        })
        .collect();
    table(&["POOL", "IPV4 IN USE", "IPV6 IN USE"], rows)
}

/// `meshlbctl config`.
pub fn config(c: &pb::ConfigState) -> String {
    let mut out = format!(
        "Generation:  {}\nFingerprint: {}\nRejections:  {}\n",
        c.generation,
        if c.fingerprint.is_empty() { "-" } else { &c.fingerprint },
        c.rejections
    );
    if !c.held.is_empty() {
        out.push_str(&format!("Held:        {}\n", c.held));
    }
    for warning in &c.warnings {
        out.push_str(&format!("Warning:     {warning}\n"));
    }
    if let Some(rejection) = &c.last_rejection {
        out.push_str("Last rejection:\n");
        for error in &rejection.errors {
            out.push_str(&format!("  {error}\n"));
        }
    }
    out
}

/// One event, one line: its time (Unix seconds) and what happened.
pub fn event(e: &pb::Event) -> String {
    let what = match &e.kind {
        Some(Kind::Member(m)) if m.node.is_empty() => m.what.clone(),
        Some(Kind::Member(m)) => format!("{} {}", m.what, m.node),
        Some(Kind::Config(c)) if c.accepted => format!("config-accepted generation={}", c.generation),
        Some(Kind::Config(c)) => format!("config-rejected {}", c.errors.join("; ")),
        Some(Kind::Ownership(o)) => format!("ownership {} announcers={}", o.address, list(&o.announcers)),
        Some(Kind::Session(s)) => format!(
            "bgp-session {} {}",
            s.peer,
            if s.established { "established" } else { "down" }
        ),
        None => "unknown".to_owned(),
    };
    format!("{:.3} {what}", e.at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let text = table(
            &["NAME", "ADDRESS"],
            vec![
                vec!["node1".into(), "198.51.100.11:7947".into()],
                vec!["a-longer-name".into(), "-".into()],
            ],
        );
        assert_eq!(
            text,
            "NAME           ADDRESS\nnode1          198.51.100.11:7947\na-longer-name  -\n"
        );
    }

    #[test]
    fn a_service_explains_who_owns_each_address() {
        let service = pb::Service {
            name: "default/web".into(),
            addresses: vec!["203.0.113.10".into(), "203.0.113.11".into()],
            outcome: "203.0.113.10 from pool lab".into(),
            owners: vec![
                pb::AddressOwner {
                    address: "203.0.113.10".into(),
                    announcers: vec!["node2".into()],
                    here: false,
                    bgp_announcers: vec![],
                    candidates: vec![
                        pb::Candidate {
                            node: "node2".into(),
                            weight: 10,
                            settling: false,
                            announcing: 2,
                        },
                        pb::Candidate {
                            node: "node1".into(),
                            weight: 0,
                            settling: true,
                            announcing: 0,
                        },
                    ],
                },
                pb::AddressOwner {
                    address: "203.0.113.11".into(),
                    announcers: vec!["node1".into(), "node3".into()],
                    here: false,
                    bgp_announcers: vec![],
                    candidates: vec![],
                },
            ],
            layer2: true,
            serveable_here: true,
            interfaces: vec!["eth0".into()],
            not_serveable_here: String::new(),
        };
        let text = super::service(&service);
        assert!(text.contains("node2 owns it (Layer 2)"), "{text}");
        assert!(text.contains("2 nodes claim it"), "{text}");
        assert!(text.contains("serveable here, answered on eth0"), "{text}");
        assert!(
            text.contains("node2(weight 10)(2 announced)>node1(0 announced)(settling)"),
            "{text}"
        );
        assert_eq!(services(std::slice::from_ref(&service)).lines().count(), 2);
        assert!(services(&[service]).contains("node1,node2,node3"));
    }

    #[test]
    fn events_read_as_one_line_each() {
        let event = pb::Event {
            at: 1.5,
            kind: Some(Kind::Member(pb::MemberEvent {
                what: "member-down".into(),
                node: "node2".into(),
            })),
        };
        assert_eq!(super::event(&event), "1.500 member-down node2");
    }
}
