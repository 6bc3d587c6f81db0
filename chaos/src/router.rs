//! BGP routers in the lab's `router` host: bird2, FRR (zebra + bgpd) or
//! gobgpd, configured by the lab to peer with every node, plus readers for
//! what they learned (RIB) and what reached the kernel (FIB, with ECMP).
//!
//! The router is AS [`ROUTER_ASN`]; nodes speak eBGP from [`NODE_ASN`]
//! unless told otherwise. bird2 and FRR install routes into the router
//! namespace's kernel table, merging equal paths into ECMP routes; gobgpd
//! has no FIB integration, so only its RIB is read.

use crate::error::LabError;
use crate::lab::{Lab, LabProcess, Role};
use crate::wait::{wait_for, wait_until};
use meshlb_wire::bgp::{Community, LargeCommunity};
use serde_json::Value;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The router's AS.
pub const ROUTER_ASN: u32 = 64512;
/// The nodes' AS by default (eBGP to the router).
pub const NODE_ASN: u32 = 64513;
/// gobgpd's gRPC endpoint inside a lab host (that host's own loopback).
pub const GOBGP_API: &str = "127.0.0.1";
/// gobgpd's gRPC port.
pub const GOBGP_API_PORT: &str = "50051";

/// Which BGP implementation plays the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouterKind {
    /// BIRD 2.
    Bird,
    /// FRRouting (zebra + bgpd).
    Frr,
    /// GoBGP.
    Gobgp,
}

impl std::fmt::Display for RouterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RouterKind::Bird => "bird2",
            RouterKind::Frr => "frr",
            RouterKind::Gobgp => "gobgpd",
        })
    }
}

/// One path to a prefix in a router's RIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RibPath {
    /// `address/length`.
    pub prefix: String,
    /// The peer it was learned from.
    pub peer: IpAddr,
    /// BGP next hop.
    pub next_hop: IpAddr,
    /// AS numbers, in order.
    pub as_path: Vec<u32>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF, where the router reports one.
    pub local_pref: Option<u32>,
    /// Standard communities.
    pub communities: Vec<Community>,
    /// Large communities.
    pub large_communities: Vec<LargeCommunity>,
    /// The router's best path for the prefix.
    pub best: bool,
}

impl RibPath {
    /// A path with no attributes read yet.
    fn bare(prefix: String, peer: IpAddr, best: bool) -> RibPath {
        RibPath {
            prefix,
            peer,
            next_hop: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            as_path: vec![],
            med: None,
            local_pref: None,
            communities: vec![],
            large_communities: vec![],
            best,
        }
    }
}

/// A route in a kernel table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FibRoute {
    /// `address/length`.
    pub prefix: String,
    /// Gateways; more than one is an ECMP route.
    pub next_hops: Vec<IpAddr>,
}

/// A running router.
#[derive(Debug)]
pub struct Router {
    /// The implementation.
    pub kind: RouterKind,
    /// The lab host it runs on (`router`, or `remote` for a peer two hops
    /// from the nodes).
    host: String,
    dir: PathBuf,
    peers: Vec<(IpAddr, u32)>,
    options: RouterOptions,
    processes: Vec<LabProcess>,
}

/// How the router peers, beyond the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterOptions {
    /// BFD with every peer (FRR: bfdd), at these timers.
    pub bfd: Option<BfdTimers>,
    /// The TCP MD5 password of every session (RFC 2385).
    pub password: Option<String>,
    /// IPv6 unicast on IPv4 sessions too (FRR; what a BGPPeer's
    /// `dualStackAddressFamily` meets).
    pub dual_stack: bool,
    /// Unnumbered peers (FRR's `neighbor IFACE interface`, both families):
    /// the router's interface to each ([`crate::Lab::add_router_link`])
    /// and its AS.
    pub interfaces: Vec<(String, u32)>,
    /// Peers that are not directly connected (eBGP multihop: FRR's
    /// `ebgp-multihop`, gobgpd's `ebgp-multihop`; not bird2, whose
    /// recursive next hops need an IGP table the lab does not run).
    pub multihop: bool,
    /// An import policy that rejects every route from the peers (bird2:
    /// filter `imports`; FRR: route-map `IMPORT`), until
    /// [`Router::set_import_policy`].
    pub reject_imports: bool,
}

/// BFD timers: receive and transmit interval, detect multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdTimers {
    /// Required Min RX and Desired Min TX, milliseconds.
    pub interval_ms: u32,
    /// Detect Mult.
    pub multiplier: u8,
}

impl Router {
    /// Starts `kind` on the lab's router, peering with every node at
    /// [`NODE_ASN`].
    pub fn start(lab: &Lab, kind: RouterKind) -> Result<Router, LabError> {
        let peers: Vec<(IpAddr, u32)> = lab.hosts_with(Role::Node).map(|h| (h.ipv4.into(), NODE_ASN)).collect();
        Self::start_with_peers(lab, kind, peers)
    }

    /// Starts `kind` on the lab's router peering with `peers` (address, AS).
    pub fn start_with_peers(lab: &Lab, kind: RouterKind, peers: Vec<(IpAddr, u32)>) -> Result<Router, LabError> {
        Self::start_with_options(lab, kind, peers, RouterOptions::default())
    }

    /// [`Router::start_with_peers`] with `options`.
    pub fn start_with_options(
        lab: &Lab,
        kind: RouterKind,
        peers: Vec<(IpAddr, u32)>,
        options: RouterOptions,
    ) -> Result<Router, LabError> {
        if lab.hosts_with(Role::Router).next().is_none() {
            return Err(LabError::Invalid("this lab has no router host".into()));
        }
        Self::start_on(lab, "router", kind, peers, options)
    }

    /// [`Router::start_with_options`] on lab host `host` (the remote one,
    /// for peers two hops away).
    pub fn start_on(
        lab: &Lab,
        host: &str,
        kind: RouterKind,
        peers: Vec<(IpAddr, u32)>,
        options: RouterOptions,
    ) -> Result<Router, LabError> {
        if options.bfd.is_some() && kind != RouterKind::Frr {
            return Err(LabError::Invalid(format!(
                "BFD on the lab's router is FRR's bfdd, not {kind}'s"
            )));
        }
        if options.multihop && kind == RouterKind::Bird {
            return Err(LabError::Invalid(
                "multihop peers are set up for FRR and gobgpd only".into(),
            ));
        }
        lab.host(host)?;
        let dir = lab.log_dir().join(format!("{host}-{kind}"));
        std::fs::create_dir_all(&dir).map_err(|e| LabError::io(format!("create {}", dir.display()), e))?;
        let mut router = Router {
            kind,
            host: host.to_owned(),
            dir,
            peers,
            options,
            processes: Vec::new(),
        };
        router.write_config(lab)?;
        router.launch(lab)?;
        Ok(router)
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    fn write_config(&self, lab: &Lab) -> Result<(), LabError> {
        let id = lab.host(&self.host)?.ipv4;
        let write = |file: &str, text: String| {
            std::fs::write(self.dir.join(file), text).map_err(|e| LabError::io(format!("write {file}"), e))
        };
        match self.kind {
            RouterKind::Bird => {
                let imports = if self.options.reject_imports {
                    "reject"
                } else {
                    "accept"
                };
                let mut c = format!(
                    "router id {id};\ntimeformat protocol iso long ms;\ntimeformat route iso long ms;\nprotocol device {{ }}\n\
                     protocol kernel kernel4 {{ ipv4 {{ import none; export all; }}; merge paths yes; }}\n\
                     protocol kernel kernel6 {{ ipv6 {{ import none; export all; }}; merge paths yes; }}\n\
                     filter imports {{ {imports}; }}\n\
                     template bgp nodes {{ local as {ROUTER_ASN}; direct; connect delay time 0; error wait time 1, 1; ipv4 {{ import filter imports; export none; }}; ipv6 {{ import filter imports; export none; }}; }}\n"
                );
                let password = self
                    .options
                    .password
                    .as_ref()
                    .map(|p| format!(" password \"{p}\";"))
                    .unwrap_or_default();
                for (i, (addr, asn)) in self.peers.iter().enumerate() {
                    let _ = writeln!(
                        c,
                        "protocol bgp peer{i} from nodes {{ neighbor {addr} as {asn};{password} }}"
                    );
                }
                write("bird.conf", c)
            }
            RouterKind::Frr => {
                // No route-map change re-evaluates routes by itself: only a
                // `clear bgp soft in` does.
                let mut c = String::from("hostname router\nbgp route-map delay-timer 0\n");
                if self.options.reject_imports {
                    c.push_str("route-map IMPORT deny 10\n");
                }
                let _ = write!(
                    c,
                    "router bgp {ROUTER_ASN}\n bgp router-id {id}\n no bgp ebgp-requires-policy\n \
                     bgp bestpath as-path multipath-relax\n"
                );
                let numbered = self.peers.iter().map(|(addr, asn)| (addr.to_string(), "", *asn));
                let unnumbered = self
                    .options
                    .interfaces
                    .iter()
                    .map(|(interface, asn)| (interface.clone(), " interface", *asn));
                for (addr, interface, asn) in numbered.chain(unnumbered) {
                    // Retry connections every second (FRR's default: 120).
                    let _ = writeln!(
                        c,
                        " neighbor {addr}{interface} remote-as {asn}\n neighbor {addr} timers connect 1"
                    );
                    if self.options.bfd.is_some() {
                        let _ = writeln!(c, " neighbor {addr} bfd\n neighbor {addr} bfd profile lab");
                    }
                    if let Some(password) = &self.options.password {
                        let _ = writeln!(c, " neighbor {addr} password {password}");
                    }
                    if self.options.multihop {
                        let _ = writeln!(c, " neighbor {addr} ebgp-multihop 255");
                    }
                }
                let import = |c: &mut String, addr: &IpAddr| {
                    if self.options.reject_imports {
                        let _ = writeln!(c, "  neighbor {addr} route-map IMPORT in");
                    }
                };
                c.push_str(" address-family ipv4 unicast\n  maximum-paths 64\n  maximum-paths ibgp 64\n");
                for (addr, _) in self.peers.iter().filter(|(a, _)| a.is_ipv4()) {
                    import(&mut c, addr);
                }
                c.push_str(" exit-address-family\n");
                c.push_str(" address-family ipv6 unicast\n  maximum-paths 64\n  maximum-paths ibgp 64\n");
                for (addr, _) in self
                    .peers
                    .iter()
                    .filter(|(a, _)| a.is_ipv6() || self.options.dual_stack)
                {
                    let _ = writeln!(c, "  neighbor {addr} activate");
                    import(&mut c, addr);
                }
                for (interface, _) in &self.options.interfaces {
                    let _ = writeln!(c, "  neighbor {interface} activate");
                }
                c.push_str(" exit-address-family\n");
                write("bgpd.conf", c)?;
                write("zebra.conf", "hostname router\n".into())?;
                if let Some(bfd) = self.options.bfd {
                    let interval = bfd.interval_ms;
                    write(
                        "bfdd.conf",
                        format!(
                            "hostname router\nbfd\n profile lab\n  receive-interval {interval}\n  \
                             transmit-interval {interval}\n  detect-multiplier {}\n !\n!\n",
                            bfd.multiplier
                        ),
                    )?;
                }
                // FRR daemons drop to user frr and must write here.
                crate::netns::run("chown", &["-R", "frr:frr", &self.dir.to_string_lossy()]).map(|_| ())
            }
            RouterKind::Gobgp => {
                let mut c = format!("[global.config]\n  as = {ROUTER_ASN}\n  router-id = \"{id}\"\n");
                let auth = self
                    .options
                    .password
                    .as_ref()
                    .map(|p| format!("    auth-password = \"{p}\"\n"))
                    .unwrap_or_default();
                let multihop = if self.options.multihop {
                    "  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 255\n"
                } else {
                    ""
                };
                for (addr, asn) in &self.peers {
                    let family = if addr.is_ipv6() { "ipv6-unicast" } else { "ipv4-unicast" };
                    let _ = write!(
                        c,
                        "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{addr}\"\n    peer-as = {asn}\n{auth}{multihop}  \
                         [neighbors.timers.config]\n    connect-retry = 1\n  \
                         [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{family}\"\n"
                    );
                }
                write("gobgpd.toml", c)
            }
        }
    }

    fn launch(&mut self, lab: &Lab) -> Result<(), LabError> {
        let p = |f: &str| self.path(f);
        self.processes = match self.kind {
            // TZ=UTC: bird prints local time, and the route-scale
            // benchmark compares its timestamps with the system clock.
            RouterKind::Bird => vec![lab.spawn(
                &self.host,
                "bird",
                "env",
                &[
                    "TZ=UTC",
                    "bird",
                    "-f",
                    "-c",
                    &p("bird.conf"),
                    "-s",
                    &p("bird.ctl"),
                    "-P",
                    &p("bird.pid"),
                ],
            )?],
            RouterKind::Frr => {
                let common = |conf: String, pid: String| {
                    vec![
                        "-f".to_owned(),
                        conf,
                        "-i".into(),
                        pid,
                        "-z".into(),
                        p("zserv.api"),
                        "--vty_socket".into(),
                        self.dir.to_string_lossy().into_owned(),
                    ]
                };
                let zebra_args = common(p("zebra.conf"), p("zebra.pid"));
                let zebra = lab.spawn(&self.host, "zebra", "/usr/lib/frr/zebra", &as_strs(&zebra_args))?;
                wait_for(Duration::from_secs(5), "zebra's API socket", || {
                    self.dir.join("zserv.api").exists()
                })?;
                let mut daemons = vec![zebra];
                if self.options.bfd.is_some() {
                    let mut bfdd_args = common(p("bfdd.conf"), p("bfdd.pid"));
                    bfdd_args.extend(["--bfdctl".to_owned(), p("bfdd.sock")]);
                    daemons.push(lab.spawn(&self.host, "bfdd", "/usr/lib/frr/bfdd", &as_strs(&bfdd_args))?);
                }
                let bgpd_args = common(p("bgpd.conf"), p("bgpd.pid"));
                daemons.push(lab.spawn(&self.host, "bgpd", "/usr/lib/frr/bgpd", &as_strs(&bgpd_args))?);
                daemons
            }
            RouterKind::Gobgp => vec![lab.spawn(
                &self.host,
                "gobgpd",
                "gobgpd",
                &[
                    "-f",
                    &p("gobgpd.toml"),
                    "-t",
                    "toml",
                    "--api-hosts",
                    &format!("{GOBGP_API}:{GOBGP_API_PORT}"),
                ],
            )?],
        };
        Ok(())
    }

    /// Kills the router's daemons and starts them again with the same
    /// configuration (the "router restart" fault).
    pub fn restart(&mut self, lab: &Lab) -> Result<(), LabError> {
        for p in &self.processes {
            p.kill()?;
            p.wait_exit(Duration::from_secs(5))?;
        }
        for stale in ["bird.ctl", "zserv.api"] {
            let _ = std::fs::remove_file(self.dir.join(stale));
        }
        self.launch(lab)
    }

    fn query(&self, lab: &Lab, args: &[&str]) -> Result<String, LabError> {
        match self.kind {
            RouterKind::Bird => {
                let mut all = vec!["-s".to_owned(), self.path("bird.ctl")];
                all.extend(args.iter().map(|a| (*a).to_owned()));
                lab.exec(&self.host, "birdc", &as_strs(&all))
            }
            RouterKind::Frr => self.vtysh(lab, &[&args.join(" ")]),
            RouterKind::Gobgp => {
                let mut all = vec!["-u", GOBGP_API, "-p", GOBGP_API_PORT];
                all.extend_from_slice(args);
                lab.exec(&self.host, "gobgp", &all)
            }
        }
    }

    /// Disables or enables bird2's session with `peers[index]` (bird2's
    /// `disable` and `enable`): disabled, it closes the session and refuses
    /// the peer's connections.
    pub fn set_bird_peer_enabled(&self, lab: &Lab, index: usize, enabled: bool) -> Result<(), LabError> {
        if self.kind != RouterKind::Bird {
            return Err(LabError::Invalid(format!(
                "disabling a peer is implemented for bird2, not {}",
                self.kind
            )));
        }
        let command = if enabled { "enable" } else { "disable" };
        self.query(lab, &[command, &format!("peer{index}")]).map(|_| ())
    }

    /// Changes the import policy of a router started with
    /// [`RouterOptions::reject_imports`] to accept everything, or to
    /// reject it again, without re-evaluating a route: bird2 is
    /// reconfigured softly (`configure soft`), FRR's route-map changed (its
    /// delay timer is off). The routes held are re-evaluated once the
    /// peers send them again ([`Router::refresh_imports`]).
    pub fn set_import_policy(&mut self, lab: &Lab, accept: bool) -> Result<(), LabError> {
        self.options.reject_imports = !accept;
        let (old, new) = if accept { ("deny", "permit") } else { ("permit", "deny") };
        match self.kind {
            RouterKind::Bird => {
                self.write_config(lab)?;
                let out = self.query(lab, &["configure", "soft"])?;
                if !out.contains("Reconfigured") {
                    return Err(LabError::Invalid(format!("bird2 did not reconfigure: {out}")));
                }
                Ok(())
            }
            RouterKind::Frr => self
                .vtysh(
                    lab,
                    &[
                        "configure terminal",
                        &format!("no route-map IMPORT {old} 10"),
                        &format!("route-map IMPORT {new} 10"),
                    ],
                )
                .map(|_| ()),
            RouterKind::Gobgp => Err(LabError::Invalid("import policies are set up for bird2 and FRR".into())),
        }
    }

    /// Asks every peer for its routes again (ROUTE-REFRESH, RFC 2918):
    /// bird2's `reload in`, FRR's `clear bgp * soft in`.
    pub fn refresh_imports(&self, lab: &Lab) -> Result<(), LabError> {
        match self.kind {
            RouterKind::Bird => {
                for i in 0..self.peers.len() {
                    self.query(lab, &["reload", "in", &format!("peer{i}")])?;
                }
                Ok(())
            }
            RouterKind::Frr => self.vtysh(lab, &["clear bgp * soft in"]).map(|_| ()),
            RouterKind::Gobgp => Err(LabError::Invalid("import policies are set up for bird2 and FRR".into())),
        }
    }

    /// Runs FRR's `vtysh` with `commands` in one session.
    fn vtysh(&self, lab: &Lab, commands: &[&str]) -> Result<String, LabError> {
        let mut all = vec!["--vty_socket".to_owned(), self.dir.to_string_lossy().into_owned()];
        for command in commands {
            all.extend(["-c".to_owned(), (*command).to_owned()]);
        }
        lab.exec(&self.host, "vtysh", &as_strs(&all))
    }

    /// The router's daemon called `name` (`bgpd`, `bfdd`, `bird`, ...).
    pub fn daemon(&self, name: &str) -> Option<&LabProcess> {
        self.processes.iter().find(|p| p.name == name)
    }

    /// The BFD peers whose session is up (FRR's bfdd).
    pub fn bfd_up_peers(&self, lab: &Lab) -> Result<Vec<IpAddr>, LabError> {
        let peers = json(&self.query(lab, &["show", "bfd", "peers", "json"])?)?;
        Ok(peers
            .as_array()
            .map(|peers| {
                peers
                    .iter()
                    .filter(|p| p["status"] == "up")
                    .filter_map(|p| p["peer"].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// How many times FRR's bfdd saw a session go down, over all peers
    /// (`show bfd peers counters`).
    pub fn bfd_down_events(&self, lab: &Lab) -> Result<u64, LabError> {
        let counters = json(&self.query(lab, &["show", "bfd", "peers", "counters", "json"])?)?;
        Ok(counters
            .as_array()
            .map(|peers| peers.iter().filter_map(|p| p["session-down"].as_u64()).sum())
            .unwrap_or_default())
    }

    /// Peers whose session is Established.
    pub fn established_peers(&self, lab: &Lab) -> Result<Vec<IpAddr>, LabError> {
        let peer_addr = |i: usize| self.peers.get(i).map(|(a, _)| *a);
        Ok(match self.kind {
            RouterKind::Bird => self
                .query(lab, &["show", "protocols"])?
                .lines()
                .filter(|l| l.contains("Established"))
                .filter_map(|l| l.split_whitespace().next()?.strip_prefix("peer")?.parse().ok())
                .filter_map(peer_addr)
                .collect(),
            RouterKind::Frr => {
                let v = json(&self.query(lab, &["show", "bgp", "summary", "json"])?)?;
                let mut up: Vec<IpAddr> = ["ipv4Unicast", "ipv6Unicast"]
                    .iter()
                    .filter_map(|family| v[family]["peers"].as_object())
                    .flat_map(|peers| peers.iter())
                    .filter(|(_, p)| p["state"] == "Established")
                    .filter_map(|(a, _)| a.parse().ok())
                    .collect();
                up.sort();
                up.dedup();
                up
            }
            RouterKind::Gobgp => json(&self.query(lab, &["neighbor", "-j"])?)?
                .as_array()
                .map(|peers| {
                    peers
                        .iter()
                        .filter(|p| p["state"]["session_state"] == 6)
                        .filter_map(|p| p["state"]["neighbor_address"].as_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The unnumbered peers (FRR, by the router's interface) whose session
    /// is Established.
    pub fn established_interfaces(&self, lab: &Lab) -> Result<Vec<String>, LabError> {
        let v = json(&self.query(lab, &["show", "bgp", "summary", "json"])?)?;
        let mut up: Vec<String> = ["ipv4Unicast", "ipv6Unicast"]
            .iter()
            .filter_map(|family| v[family]["peers"].as_object())
            .flat_map(|peers| peers.iter())
            .filter(|(name, p)| p["state"] == "Established" && self.options.interfaces.iter().any(|(i, _)| i == *name))
            .map(|(name, _)| name.clone())
            .collect();
        up.sort();
        up.dedup();
        Ok(up)
    }

    /// Waits until `count` sessions are Established; fails at once, with
    /// the daemon's log, if a router process has exited.
    pub fn wait_established(&self, lab: &Lab, count: usize, timeout: Duration) -> Result<(), LabError> {
        let mut dead = None;
        let result = wait_for(
            timeout,
            &format!("{count} established BGP sessions on {}", self.kind),
            || {
                dead = self.processes.iter().find(|p| !p.is_running());
                dead.is_some() || self.established_peers(lab).is_ok_and(|p| p.len() >= count)
            },
        );
        match dead {
            Some(p) => Err(LabError::Invalid(format!(
                "{} on the router exited: {}",
                p.name,
                p.log().trim()
            ))),
            None => result,
        }
    }

    /// Every IPv4 unicast path in the router's RIB.
    pub fn rib(&self, lab: &Lab) -> Result<Vec<RibPath>, LabError> {
        match self.kind {
            RouterKind::Bird => {
                let peers: Vec<IpAddr> = self.peers.iter().map(|(a, _)| *a).collect();
                Ok(parse_bird_routes(&self.query(lab, &["show", "route", "all"])?, &peers))
            }
            RouterKind::Frr => {
                let mut all = Vec::new();
                for family in ["ipv4", "ipv6"] {
                    let text = self.query(lab, &["show", "bgp", family, "unicast", "json", "detail"])?;
                    all.extend(parse_frr_routes(&json(&text)?)?);
                }
                Ok(all)
            }
            RouterKind::Gobgp => {
                let mut all = Vec::new();
                for family in ["ipv4", "ipv6"] {
                    all.extend(parse_gobgp_routes(&json(
                        &self.query(lab, &["global", "rib", "-a", family, "-j"])?,
                    )?)?);
                }
                Ok(all)
            }
        }
    }

    /// Waits until `accept` holds for the RIB; returns it.
    pub fn wait_rib(
        &self,
        lab: &Lab,
        timeout: Duration,
        accept: impl Fn(&[RibPath]) -> bool,
    ) -> Result<Vec<RibPath>, LabError> {
        let last = std::cell::Cell::new(0);
        wait_until(
            timeout,
            || format!("{} RIB to match (last: {} paths)", self.kind, last.get()),
            || {
                let rib = self.rib(lab).ok()?;
                last.set(rib.len());
                accept(&rib).then_some(rib)
            },
        )
    }
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn json(text: &str) -> Result<Value, LabError> {
    serde_json::from_str(text)
        .map_err(|e| LabError::Invalid(format!("unreadable JSON from a router ({e}): {text:.200}")))
}

/// Parses `birdc show route all`; protocol `peer<i>` is `peers[i]`.
fn parse_bird_routes(text: &str, peers: &[IpAddr]) -> Vec<RibPath> {
    let mut out: Vec<RibPath> = Vec::new();
    let mut prefix = String::new();
    for line in text.lines() {
        if line.starts_with('\t') {
            let Some(path) = out.last_mut() else { continue };
            let l = line.trim();
            if let Some(v) = l.strip_prefix("BGP.next_hop: ") {
                if let Some(a) = v.split_whitespace().next().and_then(|a| a.parse().ok()) {
                    path.next_hop = a;
                }
            } else if let Some(v) = l.strip_prefix("BGP.as_path: ") {
                path.as_path = v.split_whitespace().filter_map(|a| a.parse().ok()).collect();
            } else if let Some(v) = l.strip_prefix("BGP.med: ") {
                path.med = v.parse().ok();
            } else if let Some(v) = l.strip_prefix("BGP.local_pref: ") {
                path.local_pref = v.parse().ok();
            } else if let Some(v) = l.strip_prefix("BGP.community: ") {
                path.communities = v
                    .split(") (")
                    .filter_map(|c| c.trim_matches(['(', ')']).replace(',', ":").parse().ok())
                    .collect();
            } else if let Some(v) = l.strip_prefix("BGP.large_community: ") {
                path.large_communities = v
                    .split(") (")
                    .filter_map(|c| c.trim_matches(['(', ')']).replace(", ", ":").parse().ok())
                    .collect();
            }
            continue;
        }
        // "203.0.113.10/32      unicast [peer0 13:34:10.558] * (100) [AS64513i]"
        // or a further path of the same prefix, indented with spaces.
        let Some(kind_at) = line.find("unicast [") else {
            continue;
        };
        let head = line[..kind_at].trim();
        if !head.is_empty() {
            prefix = head.to_owned();
        }
        let rest = &line[kind_at..];
        let peer = rest
            .strip_prefix("unicast [peer")
            .and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok())
            .and_then(|i| peers.get(i).copied())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        out.push(RibPath::bare(prefix.clone(), peer, rest.contains("] * (")));
    }
    out
}

/// FRR names well-known communities in camelCase; meshlb-wire knows them
/// in kebab case.
fn frr_community(name: &str) -> Option<Community> {
    if name == "localAs" {
        return Some(Community::NO_EXPORT_SUBCONFED);
    }
    let kebab: String = name
        .chars()
        .flat_map(|c| {
            if c.is_ascii_uppercase() {
                vec!['-', c.to_ascii_lowercase()]
            } else {
                vec![c]
            }
        })
        .collect();
    kebab.parse().ok()
}

/// Parses `show bgp ipv4 unicast json detail` (FRR 8).
fn parse_frr_routes(v: &Value) -> Result<Vec<RibPath>, LabError> {
    let mut out = Vec::new();
    let Some(routes) = v["routes"].as_object() else {
        return Ok(out);
    };
    for (prefix, entries) in routes {
        for p in entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p.get("peer").is_some())
        {
            let ip = |s: &Value| {
                s.as_str()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            };
            out.push(RibPath {
                prefix: prefix.clone(),
                peer: ip(&p["peer"]["peerId"]),
                next_hop: ip(&p["nexthops"][0]["ip"]),
                as_path: p["aspath"]["segments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["list"].as_array().into_iter().flatten().filter_map(Value::as_u64))
                    .map(|a| a as u32)
                    .collect(),
                med: p["metric"].as_u64().map(|m| m as u32),
                local_pref: p["locPrf"].as_u64().map(|m| m as u32),
                communities: p["community"]["list"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(|c| c.parse().ok().or_else(|| frr_community(c)))
                    .collect(),
                large_communities: p["largeCommunity"]["list"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str()?.parse().ok())
                    .collect(),
                best: p["bestpath"]["overall"].as_bool().unwrap_or(false),
            });
        }
    }
    Ok(out)
}

/// Parses `gobgp global rib -j`.
fn parse_gobgp_routes(v: &Value) -> Result<Vec<RibPath>, LabError> {
    let mut out = Vec::new();
    let Some(routes) = v.as_object() else {
        return Ok(out);
    };
    for (prefix, paths) in routes {
        for p in paths.as_array().into_iter().flatten() {
            let mut path = RibPath::bare(
                prefix.clone(),
                p["neighbor-ip"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                p["best"].as_bool().unwrap_or(false),
            );
            for a in p["attrs"].as_array().into_iter().flatten() {
                match a["type"].as_u64() {
                    Some(2) => {
                        path.as_path = a["as_paths"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .flat_map(|s| s["asns"].as_array().into_iter().flatten().filter_map(Value::as_u64))
                            .map(|x| x as u32)
                            .collect()
                    }
                    Some(3 | 14) => {
                        if let Some(nh) = a["nexthop"].as_str().and_then(|s| s.parse().ok()) {
                            path.next_hop = nh;
                        }
                    }
                    Some(4) => path.med = a["metric"].as_u64().map(|m| m as u32),
                    Some(5) => path.local_pref = a["value"].as_u64().map(|m| m as u32),
                    Some(8) => {
                        path.communities = a["communities"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_u64)
                            .map(|c| Community(c as u32))
                            .collect()
                    }
                    Some(32) => {
                        path.large_communities = a["value"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| {
                                Some(LargeCommunity {
                                    global_admin: c["ASN"].as_u64()? as u32,
                                    local_data_1: c["LocalData1"].as_u64()? as u32,
                                    local_data_2: c["LocalData2"].as_u64()? as u32,
                                })
                            })
                            .collect()
                    }
                    _ => {}
                }
            }
            out.push(path);
        }
    }
    Ok(out)
}

/// The kernel routes of `host` (main tables of both families), with ECMP
/// next hops resolved through nexthop groups where a route names one.
pub fn kernel_routes(lab: &Lab, host: &str) -> Result<Vec<FibRoute>, LabError> {
    let mut routes = json(&lab.exec(host, "ip", &["-j", "route", "show"])?)?;
    let v6 = json(&lab.exec(host, "ip", &["-6", "-j", "route", "show"])?)?;
    if let (Some(all), Some(more)) = (routes.as_array_mut(), v6.as_array()) {
        all.extend(more.iter().cloned());
    }
    let groups = json(
        &lab.exec(host, "ip", &["-j", "nexthop", "show"])
            .unwrap_or_else(|_| "[]".into()),
    )
    .unwrap_or(Value::Array(vec![]));
    let gateway_of_id = |id: u64| -> Vec<IpAddr> {
        let Some(all) = groups.as_array() else { return vec![] };
        let find = |id: u64| all.iter().find(|g| g["id"].as_u64() == Some(id));
        let Some(g) = find(id) else { return vec![] };
        if let Some(members) = g["group"].as_array() {
            members
                .iter()
                .filter_map(|m| {
                    let member = find(m["id"].as_u64()?)?;
                    member["gateway"]
                        .as_str()
                        .or_else(|| member["via"]["host"].as_str())?
                        .parse()
                        .ok()
                })
                .collect()
        } else {
            g["gateway"]
                .as_str()
                .or_else(|| g["via"]["host"].as_str())
                .and_then(|a| a.parse().ok())
                .into_iter()
                .collect()
        }
    };
    Ok(routes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            let prefix = if dst.contains('/') {
                dst.to_owned()
            } else if dst.contains(':') {
                format!("{dst}/128")
            } else {
                format!("{dst}/32")
            };
            // A gateway of the route's family, or of the other (`via
            // inet6`: an IPv4 route over an IPv6 next hop, RFC 5549).
            let gateway = |hop: &Value| -> Option<IpAddr> {
                hop["gateway"]
                    .as_str()
                    .or_else(|| hop["via"]["host"].as_str())?
                    .parse()
                    .ok()
            };
            let mut next_hops: Vec<IpAddr> = gateway(r).into_iter().collect();
            next_hops.extend(r["nexthops"].as_array().into_iter().flatten().filter_map(gateway));
            if next_hops.is_empty()
                && let Some(id) = r["nhid"].as_u64()
            {
                next_hops = gateway_of_id(id);
            }
            next_hops.sort();
            Some(FibRoute { prefix, next_hops })
        })
        .collect())
}

impl Router {
    /// Routes in bird2's tables, from `show route count` (bird2 only).
    pub fn bird_route_count(&self, lab: &Lab) -> Result<usize, LabError> {
        if self.kind != RouterKind::Bird {
            return Err(LabError::Invalid(format!(
                "route counting is implemented for bird2, not {}",
                self.kind
            )));
        }
        // "10000 of 10000 routes for 10000 networks in table master6"
        Ok(self
            .query(lab, &["show", "route", "count"])?
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
            .sum())
    }
}

impl Router {
    /// When bird2's session with `peers[index]` last reached Established.
    pub fn bird_established_at(&self, lab: &Lab, index: usize) -> Result<SystemTime, LabError> {
        // "peer0      BGP        ---        up     2026-11-22 13:34:10.558  Established"
        let out = self.query(lab, &["show", "protocols", &format!("peer{index}")])?;
        out.lines()
            .find(|l| l.starts_with(&format!("peer{index} ")) && l.contains("Established"))
            .and_then(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                bird_time(f.get(4)?, f.get(5)?)
            })
            .ok_or_else(|| LabError::Invalid(format!("peer{index} is not Established: {out}")))
    }

    /// The latest import time of any route in bird2's tables.
    pub fn bird_last_import(&self, lab: &Lab) -> Result<Option<SystemTime>, LabError> {
        // "2001:db8:100::1/128  unicast [peer0 2026-11-22 13:34:10.600] * (100) [AS64513i]"
        Ok(self
            .query(lab, &["show", "route"])?
            .lines()
            .filter_map(|l| {
                let inner = l.split_once(" [peer")?.1;
                let mut f = inner.split_whitespace().skip(1);
                bird_time(f.next()?, f.next()?.trim_end_matches(']'))
            })
            .max())
    }
}

/// bird2's `iso long ms` time ("2026-11-22", "13:34:10.558"), in UTC.
fn bird_time(date: &str, time: &str) -> Option<SystemTime> {
    let d: Vec<i64> = date.split('-').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let (hms, ms) = time.split_once('.')?;
    let t: Vec<u64> = hms.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let ([y, m, day], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    // Days since 1970-01-01 in the proleptic Gregorian calendar.
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms.parse().ok()?))
}

/// Kernel routes of `host` installed by protocol `proto` (e.g. `bird`), both families.
pub fn kernel_route_count(lab: &Lab, host: &str, proto: &str) -> Result<usize, LabError> {
    let mut n = 0;
    for family in ["-4", "-6"] {
        n += lab
            .exec(
                host,
                "ip",
                &[family, "-o", "route", "show", "table", "all", "proto", proto],
            )?
            .lines()
            .count();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bird_multipath_output() {
        let text = "BIRD 2.0.12 ready.\nTable master4:\n\
203.0.113.10/32      unicast [peer0 13:34:10.558] * (100) [AS64513?]\n\
\tvia 198.51.100.11 on eth0\n\tType: BGP univ\n\tBGP.origin: Incomplete\n\tBGP.as_path: 64513\n\
\tBGP.next_hop: 198.51.100.11\n\tBGP.med: 7\n\tBGP.local_pref: 100\n\
\tBGP.community: (64512,100) (65535,65281)\n\tBGP.large_community: (64513, 1, 2)\n\
                     unicast [peer1 13:34:10.600] (100) [AS64513?]\n\
\tvia 198.51.100.12 on eth0\n\tBGP.as_path: 64513\n\tBGP.next_hop: 198.51.100.12\n";
        let peers: Vec<IpAddr> = ["198.51.100.11", "198.51.100.12"]
            .iter()
            .map(|a| a.parse().expect("ip"))
            .collect();
        let rib = parse_bird_routes(text, &peers);
        assert_eq!(rib.len(), 2);
        assert_eq!(rib[0].prefix, "203.0.113.10/32");
        assert!(rib[0].best && !rib[1].best);
        assert_eq!(
            rib[0].communities,
            vec![Community::new(64512, 100), Community::NO_EXPORT]
        );
        assert_eq!(rib[0].large_communities[0].to_string(), "64513:1:2");
        assert_eq!((rib[0].med, rib[0].local_pref), (Some(7), Some(100)));
        assert_eq!(rib[1].prefix, "203.0.113.10/32");
        assert_eq!(rib[1].next_hop.to_string(), "198.51.100.12");
        assert_eq!((rib[0].peer, rib[1].peer), (peers[0], peers[1]));
    }

    #[test]
    fn bird_times_are_utc() {
        let t = bird_time("2026-11-22", "13:34:10.558").expect("valid");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).expect("after epoch").as_millis(),
            1_795_354_450_558
        );
        let leap = bird_time("2024-02-29", "00:00:00.000").expect("valid");
        assert_eq!(
            leap.duration_since(UNIX_EPOCH).expect("after epoch").as_secs(),
            1_709_164_800
        );
        assert_eq!(bird_time("2026-11-22", "13:34:10"), None);
    }

    #[test]
    fn frr_community_names() {
        assert_eq!(frr_community("noExport"), Some(Community::NO_EXPORT));
        assert_eq!(frr_community("noAdvertise"), Some(Community::NO_ADVERTISE));
        assert_eq!(frr_community("gracefulShutdown"), Some(Community::GRACEFUL_SHUTDOWN));
        assert_eq!(frr_community("localAs"), Some(Community::NO_EXPORT_SUBCONFED));
    }
}
