//! A lab: one Ethernet segment (a Linux bridge in its own namespace) and
//! hosts (nodes, an optional router, clients), each a namespace with one veth
//! port on the segment.
//!
//! ```text
//!            +------------------ switch namespace ------------------+
//!            |                        br0                           |
//!            |   p-node1   p-node2   p-node3   p-router   p-client1 |
//!            +------|---------|---------|---------|----------|------+
//!                 eth0      eth0      eth0      eth0       eth0
//!                node1     node2     node3     router    client1
//!        198.51.100.11       .12       .13       .1        .101
//!    2001:db8:1::11 (/64)    ::12      ::13      ::1       ::65
//! ```
//!
//! Service IPs come from 203.0.113.0/24 and 2001:db8:100::/64; clients
//! reach them on-link through eth0, so a service IP is resolved with ARP/NDP.
//!
//! With [`LabSpec::mesh_link`], nodes also get `eth1` on a second segment
//! (`br1`, 192.0.2.0/24, ports `m-<host>`) that carries the mesh, as a
//! management network would: a node's client-facing link can then fail
//! while its agent stays a member. Isolation, partitions and loss apply to
//! both segments.
//! With [`LabSpec::remote_client`], a host `remote` sits behind the router
//! on a link of its own (192.0.2.240/30: router .241, remote .242; with
//! IPv6, 2001:db8:2::/64) and reaches the service ranges only through the
//! router, which forwards by the routes its BGP daemon installs: the data
//! path of BGP mode. The nodes route the remote link back via the router.
//! [`Lab::add_router_link`] gives a node a link of its own to the router,
//! with link-local addresses only (unnumbered BGP).
//! Nothing is added to the root namespace: every address and route lives in
//! a lab namespace.
//!
//! Dropping a [`Lab`] (also while unwinding from a panic) kills every
//! process in its namespaces and deletes them. Process logs are kept when
//! the lab is dropped during a panic or [`Lab::keep_logs`] was called.

use crate::error::LabError;
use crate::netns::{self, LAB_PREFIX, run, run_in};
use meshlb_wire::ethernet::MacAddr;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The IPv4 service range: 203.0.113.0/24.
pub const SERVICE_NET_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(203, 0, 113, 0), 24);
/// The IPv6 service range: 2001:db8:100::/64.
pub const SERVICE_NET_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0), 64);

/// A node's interface on its own link to the router
/// ([`Lab::add_router_link`]).
pub const ROUTER_LINK: &str = "up0";

/// What a host is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs the load balancer (or a baseline such as keepalived).
    Node,
    /// Runs a BGP peer.
    Router,
    /// Sends traffic to service IPs.
    Client,
    /// Runs the Kubernetes API server (with etcd) the nodes' agents use.
    ControlPlane,
    /// Sends traffic to service IPs from behind the router.
    Remote,
}

/// One host of a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Short name: `node1`, `router`, `client1`.
    pub name: String,
    /// What it is for.
    pub role: Role,
    /// Its network namespace.
    pub netns: String,
    /// The switch-side veth of its link.
    pub port: String,
    /// The MAC of its `eth0`.
    pub mac: MacAddr,
    /// IPv4 address on the segment (/24).
    pub ipv4: Ipv4Addr,
    /// IPv6 address on the segment (/64), if the lab has IPv6.
    pub ipv6: Option<Ipv6Addr>,
    /// IPv4 address of its `eth1` on the mesh segment (/24), if the lab has
    /// one and this is a node.
    pub mesh_ipv4: Option<Ipv4Addr>,
}

impl Host {
    /// The address the mesh runs on: `eth1`'s on a lab with a mesh
    /// segment, else `eth0`'s.
    pub fn mesh_address(&self) -> Ipv4Addr {
        self.mesh_ipv4.unwrap_or(self.ipv4)
    }
}

/// The shape of a lab.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// Node count (1 to 89).
    pub nodes: usize,
    /// Client count (0 to 50).
    pub clients: usize,
    /// Whether a router host is added.
    pub router: bool,
    /// Whether a control-plane host (`control`, 198.51.100.2) is added,
    /// for a Kubernetes API server ([`crate::kube_env::KubeEnv::start_in_lab`]).
    pub control_plane: bool,
    /// Whether hosts get IPv6 addresses.
    pub ipv6: bool,
    /// Whether nodes also get `eth1` on a second segment for the mesh.
    pub mesh_link: bool,
    /// Whether a host `remote` is added behind the router (needs the
    /// router; not with the mesh segment, whose range it shares).
    pub remote_client: bool,
    /// Where process logs go (a directory per lab is made inside).
    pub log_root: PathBuf,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            nodes: 3,
            clients: 1,
            router: false,
            control_plane: false,
            ipv6: true,
            mesh_link: false,
            remote_client: false,
            log_root: std::env::var_os("MESHLB_LAB_LOGS")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("meshlb-lab-logs")),
        }
    }
}

impl LabSpec {
    /// `nodes` nodes and `clients` clients on one segment, no router, IPv4
    /// only or with IPv6 too.
    pub fn segment(nodes: usize, clients: usize, ipv6: bool) -> LabSpec {
        LabSpec {
            nodes,
            clients,
            router: false,
            ipv6,
            ..LabSpec::default()
        }
    }
}

/// Faults applied on the segment, rendered as one nftables bridge ruleset.
#[derive(Debug, Default)]
struct SegmentFaults {
    isolated: BTreeSet<String>,
    partition: Vec<BTreeSet<String>>,
    loss_per_mille: Vec<(String, u32)>,
}

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running lab. See the module documentation.
#[derive(Debug)]
pub struct Lab {
    name: String,
    switch: String,
    hosts: Vec<Host>,
    log_dir: PathBuf,
    keep_logs: AtomicBool,
    faults: Mutex<SegmentFaults>,
}

fn host_octet(role: Role, index: usize) -> u8 {
    match role {
        Role::Router => 1,
        Role::ControlPlane => 2,
        Role::Node => 10 + index as u8,
        Role::Client => 100 + index as u8,
        Role::Remote => REMOTE_OCTET,
    }
}

/// The remote link: 192.0.2.240/30.
const REMOTE_LINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 240);
/// The remote host's last octet on its link (the router's: .241).
const REMOTE_OCTET: u8 = 242;
/// The remote link's IPv6 prefix (/64): router ::1, remote ::2.
const REMOTE_LINK_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0);

/// The IPv6 host part that reads like the IPv4 octet: .11 becomes ::11.
fn v6_group_like(octet: u8) -> u16 {
    octet
        .to_string()
        .chars()
        .filter_map(|c| c.to_digit(10))
        .fold(0u16, |acc, d| acc * 16 + d as u16)
}

impl Lab {
    /// Builds a lab. Labs orphaned by dead processes are swept first.
    pub fn build(spec: &LabSpec) -> Result<Lab, LabError> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err(LabError::NotRoot);
        }
        if !(1..=89).contains(&spec.nodes) || spec.clients > 50 {
            return Err(LabError::Invalid(format!(
                "a lab has 1 to 89 nodes and at most 50 clients, not {} and {}",
                spec.nodes, spec.clients
            )));
        }
        if spec.remote_client && (!spec.router || spec.mesh_link) {
            return Err(LabError::Invalid(
                "a remote client needs the router, and shares its range with the mesh segment".into(),
            ));
        }
        let _ = netns::sweep(&netns::SweepScope::Orphaned);
        let name = format!(
            "{LAB_PREFIX}{}n{}",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut hosts = Vec::new();
        let mut add = |role: Role, index: usize, host_name: String| {
            let octet = host_octet(role, index);
            let role_byte = match role {
                Role::Router => 0,
                Role::Node => 1,
                Role::Client => 2,
                Role::ControlPlane => 3,
                Role::Remote => 4,
            };
            let remote = role == Role::Remote;
            hosts.push(Host {
                netns: format!("{name}-{host_name}"),
                port: format!("p-{host_name}"),
                mac: MacAddr([0x02, 0, 0, 0, role_byte, octet]),
                ipv4: if remote {
                    Ipv4Addr::from(u32::from(REMOTE_LINK) + 2)
                } else {
                    Ipv4Addr::new(198, 51, 100, octet)
                },
                ipv6: spec.ipv6.then(|| {
                    if remote {
                        Ipv6Addr::from(u128::from(REMOTE_LINK_V6) + 2)
                    } else {
                        Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, v6_group_like(octet))
                    }
                }),
                mesh_ipv4: (spec.mesh_link && role == Role::Node).then(|| Ipv4Addr::new(192, 0, 2, octet)),
                name: host_name,
                role,
            });
        };
        for i in 1..=spec.nodes {
            add(Role::Node, i, format!("node{i}"));
        }
        if spec.router {
            add(Role::Router, 0, "router".into());
        }
        if spec.control_plane {
            add(Role::ControlPlane, 0, "control".into());
        }
        for i in 1..=spec.clients {
            add(Role::Client, i, format!("client{i}"));
        }
        if spec.remote_client {
            add(Role::Remote, 0, "remote".into());
        }
        let log_dir = spec.log_root.join(&name);
        std::fs::create_dir_all(&log_dir).map_err(|e| LabError::io(format!("create {}", log_dir.display()), e))?;
        let lab = Lab {
            switch: format!("{name}-switch"),
            name,
            hosts,
            log_dir,
            keep_logs: AtomicBool::new(false),
            faults: Mutex::new(SegmentFaults::default()),
        };
        // From here on, Drop cleans up whatever part was built.
        lab.build_switch()?;
        for host in &lab.hosts {
            if host.role == Role::Remote {
                lab.build_remote(host)?;
            } else {
                lab.build_host(host)?;
            }
        }
        Ok(lab)
    }

    fn build_switch(&self) -> Result<(), LabError> {
        let sw = self.switch.as_str();
        run("ip", &["netns", "add", sw])?;
        run(
            "ip",
            &["-n", sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"],
        )?;
        run("ip", &["-n", sw, "link", "set", "br0", "up"])?;
        if self.hosts.iter().any(|h| h.mesh_ipv4.is_some()) {
            run(
                "ip",
                &["-n", sw, "link", "add", "br1", "type", "bridge", "mcast_snooping", "0"],
            )?;
            run("ip", &["-n", sw, "link", "set", "br1", "up"])?;
        }
        Ok(())
    }

    /// A host's namespace, without duplicate address detection (the lab's
    /// addresses are unique, and DAD would delay them).
    fn add_namespace(ns: &str) -> Result<(), LabError> {
        run("ip", &["netns", "add", ns])?;
        run_in(
            ns,
            "sysctl",
            &[
                "-q",
                "-w",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ],
        )
        .map(|_| ())
    }

    /// `address`/64 on `device` in namespace `ns`, without duplicate
    /// address detection.
    fn add_ipv6(ns: &str, address: Ipv6Addr, device: &str) -> Result<(), LabError> {
        let address = format!("{address}/64");
        run("ip", &["-n", ns, "-6", "addr", "add", &address, "dev", device, "nodad"]).map(|_| ())
    }

    fn build_host(&self, host: &Host) -> Result<(), LabError> {
        let (ns, sw) = (host.netns.as_str(), self.switch.as_str());
        Self::add_namespace(ns)?;
        run(
            "ip",
            &[
                "-n", sw, "link", "add", &host.port, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        )?;
        run("ip", &["-n", sw, "link", "set", &host.port, "master", "br0", "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &["-n", ns, "link", "set", "eth0", "address", &host.mac.to_string()],
        )?;
        run(
            "ip",
            &["-n", ns, "addr", "add", &format!("{}/24", host.ipv4), "dev", "eth0"],
        )?;
        if let Some(v6) = host.ipv6 {
            Self::add_ipv6(ns, v6, "eth0")?;
        }
        run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
        if let Some(mesh) = host.mesh_ipv4 {
            let port = format!("m-{}", host.name);
            run(
                "ip",
                &[
                    "-n", sw, "link", "add", &port, "type", "veth", "peer", "name", "eth1", "netns", ns,
                ],
            )?;
            run("ip", &["-n", sw, "link", "set", &port, "master", "br1", "up"])?;
            // eth1's MAC: eth0's with the fourth byte set.
            let mut mac = host.mac;
            mac.0[3] = 1;
            run("ip", &["-n", ns, "link", "set", "eth1", "address", &mac.to_string()])?;
            run("ip", &["-n", ns, "addr", "add", &format!("{mesh}/24"), "dev", "eth1"])?;
            run("ip", &["-n", ns, "link", "set", "eth1", "up"])?;
        }
        if host.role == Role::Client {
            let (v4, l4) = SERVICE_NET_V4;
            run("ip", &["-n", ns, "route", "add", &format!("{v4}/{l4}"), "dev", "eth0"])?;
            if host.ipv6.is_some() {
                let (v6, l6) = SERVICE_NET_V6;
                run(
                    "ip",
                    &["-n", ns, "-6", "route", "add", &format!("{v6}/{l6}"), "dev", "eth0"],
                )?;
            }
        }
        Ok(())
    }

    /// The remote host, linked to the router (built before it) by a veth
    /// pair: the router's `eth1`, the remote's `eth0`. The router forwards;
    /// the remote reaches the service ranges through it, and the nodes
    /// reach the remote through it.
    fn build_remote(&self, host: &Host) -> Result<(), LabError> {
        let router = self.host("router")?.clone();
        let (ns, rns) = (host.netns.as_str(), router.netns.as_str());
        Self::add_namespace(ns)?;
        run(
            "ip",
            &[
                "-n", rns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        )?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &["-n", ns, "link", "set", "eth0", "address", &host.mac.to_string()],
        )?;
        let router_side = Ipv4Addr::from(u32::from(REMOTE_LINK) + 1);
        run(
            "ip",
            &["-n", rns, "addr", "add", &format!("{router_side}/30"), "dev", "eth1"],
        )?;
        run(
            "ip",
            &["-n", ns, "addr", "add", &format!("{}/30", host.ipv4), "dev", "eth0"],
        )?;
        let router_side_v6 = Ipv6Addr::from(u128::from(REMOTE_LINK_V6) + 1);
        if let Some(v6) = host.ipv6 {
            Self::add_ipv6(rns, router_side_v6, "eth1")?;
            Self::add_ipv6(ns, v6, "eth0")?;
        }
        run("ip", &["-n", rns, "link", "set", "eth1", "up"])?;
        run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
        run_in(
            rns,
            "sysctl",
            &["-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
        )?;
        let (v4, l4) = SERVICE_NET_V4;
        run(
            "ip",
            &[
                "-n",
                ns,
                "route",
                "add",
                &format!("{v4}/{l4}"),
                "via",
                &router_side.to_string(),
            ],
        )?;
        if host.ipv6.is_some() {
            let (v6, l6) = SERVICE_NET_V6;
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "-6",
                    "route",
                    "add",
                    &format!("{v6}/{l6}"),
                    "via",
                    &router_side_v6.to_string(),
                ],
            )?;
        }
        for node in self.hosts_with(Role::Node) {
            run(
                "ip",
                &[
                    "-n",
                    &node.netns,
                    "route",
                    "add",
                    &format!("{REMOTE_LINK}/30"),
                    "via",
                    &router.ipv4.to_string(),
                ],
            )?;
            if let (Some(_), Some(router_v6)) = (node.ipv6, router.ipv6) {
                run(
                    "ip",
                    &[
                        "-n",
                        &node.netns,
                        "-6",
                        "route",
                        "add",
                        &format!("{REMOTE_LINK_V6}/64"),
                        "via",
                        &router_v6.to_string(),
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// The lab's name (`mlb<pid>n<k>`), the prefix of all its namespaces.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace holding the bridge.
    pub fn switch_netns(&self) -> &str {
        &self.switch
    }

    /// Every host.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Hosts with `role`.
    pub fn hosts_with(&self, role: Role) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(move |h| h.role == role)
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Result<&Host, LabError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::Invalid(format!("lab {} has no host {name:?}", self.name)))
    }

    /// Where this lab's process logs are.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Keep the logs when the lab is dropped.
    pub fn keep_logs(&self) {
        self.keep_logs.store(true, Ordering::Relaxed);
    }

    /// Runs a scenario on this lab, keeping the logs if it fails.
    pub fn run<T>(&self, scenario: impl FnOnce(&Lab) -> Result<T, LabError>) -> Result<T, LabError> {
        let result = scenario(self);
        if result.is_err() {
            self.keep_logs();
        }
        result
    }

    /// Gives every host a permanent neighbour entry for every other host's
    /// segment addresses (IPv4 and, if present, IPv6).
    ///
    /// Needed for labs of more than a few dozen hosts that all talk to each
    /// other: the kernel's neighbour tables are shared by every namespace
    /// and capped as a whole (`gc_thresh3`, 1,024 by default, settable only
    /// for the whole machine), so a full mesh of 50 nodes (2,450 entries)
    /// overflows and the kernel drops packets it cannot resolve. Permanent
    /// entries do not count against the cap. Service addresses still
    /// resolve by ARP and NDP.
    pub fn pin_neighbours(&self) -> Result<(), LabError> {
        for host in &self.hosts {
            let mut batch = String::new();
            for other in self.hosts.iter().filter(|o| o.name != host.name) {
                let _ = writeln!(
                    batch,
                    "neigh replace {} lladdr {} dev eth0 nud permanent",
                    other.ipv4, other.mac
                );
                if let (Some(v6), Some(_)) = (other.ipv6, host.ipv6) {
                    let _ = writeln!(
                        batch,
                        "-6 neigh replace {v6} lladdr {} dev eth0 nud permanent",
                        other.mac
                    );
                }
            }
            let path = self.log_dir.join(format!("{}-neighbours.batch", host.name));
            std::fs::write(&path, batch).map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
            run("ip", &["-n", &host.netns, "-batch", &path.to_string_lossy()])?;
        }
        Ok(())
    }

    /// The nodes' names, in order (`node1`, `node2`, ...).
    pub fn node_names(&self) -> Vec<String> {
        self.hosts_with(Role::Node).map(|h| h.name.clone()).collect()
    }

    /// Runs a command to completion inside `host`'s namespace.
    pub fn exec(&self, host: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
        run_in(&self.host(host)?.netns, program, args)
    }

    /// Starts `program` inside `host`'s namespace (or, for `"switch"`, the
    /// bridge's namespace) with standard output and error going to
    /// `<log_dir>/<host>-<name>.log`.
    pub fn spawn(&self, host: &str, name: &str, program: &str, args: &[&str]) -> Result<LabProcess, LabError> {
        self.spawn_with_env(host, name, program, args, &[])
    }

    /// [`Lab::spawn`] with `env` added to the process's environment.
    pub fn spawn_with_env(
        &self,
        host: &str,
        name: &str,
        program: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> Result<LabProcess, LabError> {
        self.spawn_entering(host, name, program, args, env, false)
    }

    /// [`Lab::spawn`] entering only `host`'s network namespace: the process
    /// shares this one's mounts, as a node's kubelet and containerd must
    /// share theirs (`ip netns exec` gives each process a private mount
    /// namespace of its own, where a mount one makes the other never
    /// sees).
    pub fn spawn_sharing_mounts(
        &self,
        host: &str,
        name: &str,
        program: &str,
        args: &[&str],
    ) -> Result<LabProcess, LabError> {
        self.spawn_entering(host, name, program, args, &[], true)
    }

    fn spawn_entering(
        &self,
        host: &str,
        name: &str,
        program: &str,
        args: &[&str],
        env: &[(String, String)],
        sharing_mounts: bool,
    ) -> Result<LabProcess, LabError> {
        let netns = if host == "switch" {
            self.switch.clone()
        } else {
            self.host(host)?.netns.clone()
        };
        let log = self.log_dir.join(format!("{host}-{name}.log"));
        let out = File::create(&log).map_err(|e| LabError::io(format!("create {}", log.display()), e))?;
        let err = out.try_clone().map_err(|e| LabError::io("clone log file", e))?;
        let mut command = if sharing_mounts {
            let mut command = Command::new("nsenter");
            command.arg(format!("--net=/run/netns/{netns}")).args(["--", program]);
            command
        } else {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", &netns, program]);
            command
        };
        let child = command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| LabError::Spawn {
                program: program.to_owned(),
                source,
            })?;
        Ok(LabProcess {
            name: name.to_owned(),
            host: host.to_owned(),
            pid: Pid::from_raw(child.id() as i32),
            child: Mutex::new(child),
            log,
        })
    }

    /// Kills every process in the lab and deletes its namespaces.
    pub fn teardown(&self) -> Result<(), LabError> {
        let mut first_error = None;
        for ns in self
            .hosts
            .iter()
            .map(|h| h.netns.as_str())
            .chain([self.switch.as_str()])
        {
            let exists = netns::lab_namespaces()
                .map(|all| all.iter().any(|n| n == ns))
                .unwrap_or(true);
            if exists && let Err(e) = netns::destroy(ns) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Links `node` straight to the router with a veth pair of no
    /// addresses but their IPv6 link-local ones, for an unnumbered BGP
    /// session: [`ROUTER_LINK`] on the node, the returned name on the
    /// router.
    pub fn add_router_link(&self, node: &str) -> Result<String, LabError> {
        let host = self.host(node)?;
        if host.role != Role::Node {
            return Err(LabError::Invalid(format!("{node} is not a node")));
        }
        let router = self.host("router")?;
        let router_side = format!("to-{node}");
        run(
            "ip",
            &[
                "-n",
                &router.netns,
                "link",
                "add",
                &router_side,
                "type",
                "veth",
                "peer",
                "name",
                ROUTER_LINK,
                "netns",
                &host.netns,
            ],
        )?;
        run("ip", &["-n", &router.netns, "link", "set", &router_side, "up"])?;
        run("ip", &["-n", &host.netns, "link", "set", ROUTER_LINK, "up"])?;
        Ok(router_side)
    }

    // ===== Faults =====

    /// Sets `host`'s `eth0` down (the node sees its link go away).
    pub fn link_down(&self, host: &str) -> Result<(), LabError> {
        self.set_interface(host, "eth0", false)
    }

    /// Sets `host`'s `eth0` up again.
    pub fn link_up(&self, host: &str) -> Result<(), LabError> {
        self.set_interface(host, "eth0", true)
    }

    /// Sets one of `host`'s interfaces (`eth0`, `eth1`) down or up.
    pub fn set_interface(&self, host: &str, interface: &str, up: bool) -> Result<(), LabError> {
        let state = if up { "up" } else { "down" };
        run("ip", &["-n", &self.host(host)?.netns, "link", "set", interface, state]).map(|_| ())
    }

    /// Cuts `host` off the segment: its link stays up, but the switch drops
    /// every frame to or from it.
    pub fn isolate(&self, host: &str) -> Result<(), LabError> {
        self.host(host)?;
        self.update_faults(|f| {
            f.isolated.insert(host.to_owned());
        })
    }

    /// Undoes [`Lab::isolate`].
    pub fn rejoin(&self, host: &str) -> Result<(), LabError> {
        self.update_faults(|f| {
            f.isolated.remove(host);
        })
    }

    /// Partitions the nodes: hosts in different groups cannot exchange
    /// frames; hosts in no group (router, clients) still reach everyone, so
    /// clients see both sides.
    pub fn partition(&self, groups: &[&[&str]]) -> Result<(), LabError> {
        for host in groups.iter().flat_map(|g| g.iter()) {
            self.host(host)?;
        }
        self.update_faults(|f| {
            f.partition = groups
                .iter()
                .map(|g| g.iter().map(|h| (*h).to_owned()).collect())
                .collect();
        })
    }

    /// Drops `percent` of the frames to and from `host` at random (0 clears).
    pub fn set_loss(&self, host: &str, percent: f64) -> Result<(), LabError> {
        self.host(host)?;
        if !(0.0..=100.0).contains(&percent) {
            return Err(LabError::Invalid(format!("loss {percent}% is not between 0 and 100")));
        }
        let per_mille = (percent * 10.0).round() as u32;
        self.update_faults(|f| {
            f.loss_per_mille.retain(|(h, _)| h != host);
            if per_mille > 0 {
                f.loss_per_mille.push((host.to_owned(), per_mille));
            }
        })
    }

    /// Removes every segment fault (isolation, partition, loss).
    pub fn heal(&self) -> Result<(), LabError> {
        self.update_faults(|f| *f = SegmentFaults::default())
    }

    /// Kills every process on `host` (SIGKILL) and cuts it off the segment:
    /// what a client sees when a machine dies.
    pub fn crash(&self, host: &str) -> Result<(), LabError> {
        self.isolate(host)?;
        netns::kill_all_in(&self.host(host)?.netns)
    }

    fn update_faults(&self, change: impl FnOnce(&mut SegmentFaults)) -> Result<(), LabError> {
        let mut faults = self
            .faults
            .lock()
            .map_err(|_| LabError::Invalid("fault state poisoned by a panic".into()))?;
        change(&mut faults);
        let mut rules = String::new();
        // Every rule for both segments: `@` stands for the port prefix,
        // p- on br0 and m- on br1 (absent names match nothing).
        let mut rule = |matches: String| {
            for segment in ["p-", "m-"] {
                let matches = matches.replace("@", segment);
                let _ = writeln!(rules, "add rule bridge meshlb_lab forward_filter {matches} drop");
            }
        };
        for h in &faults.isolated {
            rule(format!("iifname \"@{h}\""));
            rule(format!("oifname \"@{h}\""));
        }
        // Every ordered pair of hosts in different groups, both directions.
        let members: Vec<(usize, &String)> = faults
            .partition
            .iter()
            .enumerate()
            .flat_map(|(g, hosts)| hosts.iter().map(move |h| (g, h)))
            .collect();
        for (a_group, a) in &members {
            for (b_group, b) in &members {
                if a_group != b_group {
                    rule(format!("iifname \"@{a}\" oifname \"@{b}\""));
                }
            }
        }
        for (h, per_mille) in &faults.loss_per_mille {
            rule(format!("iifname \"@{h}\" numgen random mod 1000 < {per_mille}"));
            rule(format!("oifname \"@{h}\" numgen random mod 1000 < {per_mille}"));
        }
        let script = format!(
            "table bridge meshlb_lab {{}}\nflush table bridge meshlb_lab\n\
             table bridge meshlb_lab {{\n  chain forward_filter {{\n    type filter hook forward priority 0; policy accept;\n  }}\n}}\n{rules}"
        );
        let path = self.log_dir.join("segment-faults.nft");
        std::fs::write(&path, script).map_err(|e| LabError::io(format!("write {}", path.display()), e))?;
        run_in(&self.switch, "nft", &["-f", &path.to_string_lossy()]).map(|_| ())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("lab {}: teardown failed: {e}; run `meshlb-lab sweep`", self.name);
        }
        if std::thread::panicking() || self.keep_logs.load(Ordering::Relaxed) {
            eprintln!("lab {}: logs kept in {}", self.name, self.log_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// A process running inside a lab host.
#[derive(Debug)]
pub struct LabProcess {
    /// What it is (`keepalived`, `responder`, ...).
    pub name: String,
    /// The host it runs on.
    pub host: String,
    pid: Pid,
    child: Mutex<Child>,
    log: PathBuf,
}

impl LabProcess {
    /// Its process ID.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Sends `signal` to the process and every child it started (each lab
    /// process leads its own process group): freezing keepalived must
    /// freeze its VRRP child too.
    pub fn signal(&self, signal: Signal) -> Result<(), LabError> {
        killpg(self.pid, signal).map_err(|source| LabError::Sys {
            what: format!("send {signal} to {} on {}", self.name, self.host),
            source,
        })
    }

    /// SIGKILL: dies at once, no clean-up.
    pub fn kill(&self) -> Result<(), LabError> {
        self.signal(Signal::SIGKILL)
    }

    /// SIGSTOP: frozen, sockets open, nothing sent or answered.
    pub fn freeze(&self) -> Result<(), LabError> {
        self.signal(Signal::SIGSTOP)
    }

    /// SIGCONT: runs again after a freeze.
    pub fn thaw(&self) -> Result<(), LabError> {
        self.signal(Signal::SIGCONT)
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&self) -> Result<(), LabError> {
        self.signal(Signal::SIGTERM)
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&self, timeout: Duration) -> Result<Option<ExitStatus>, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self
                .child
                .lock()
                .map_err(|_| LabError::Invalid("process handle poisoned".into()))?
                .try_wait()
                .map_err(|e| LabError::io(format!("wait for {}", self.name), e))?;
            if status.is_some() || Instant::now() >= deadline {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&self) -> bool {
        matches!(self.wait_exit(Duration::ZERO), Ok(None))
    }

    /// What the process has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = kill(self.pid, Signal::SIGCONT);
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}
