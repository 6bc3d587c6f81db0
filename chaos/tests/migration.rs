//! Moving from MetalLB, as its users have it, on real nodes: MetalLB
//! v0.15.2 installed from its own chart or its own native manifest (from
//! its Go module), its controller and speakers running as pods with their
//! webhooks live, 22 Services in front of echo pods with the addresses
//! MetalLB gave them and answered by its speakers; then the README's
//! migration commands, read from the README and run as written
//! (meshlb_chaos::migration), the kubelets stopping MetalLB's pods and
//! starting meshlb's. No Service's address changes
//! at any step, no address is ever answered by two MACs, the client loses
//! at most the handover, meshlb answers every address, new Services get
//! fresh addresses, every agent's configuration is Valid with nothing
//! refused, every metallb.io kind reads (BGPPeer in both versions),
//! MetalLB's webhooks and conversion are gone, and `helm uninstall
//! metallb` keeps the CRDs and every object. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use meshlb_chaos::migration::{Install, MetallbCluster, NAMESPACE, SERVICES, readme_steps, service_addresses};
use meshlb_chaos::wait::wait_for;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

fn migrate_from(install: Install) {
    let mut cluster = MetallbCluster::build(install).unwrap();
    let blocks = readme_steps(&readme()).unwrap();
    let mut steps = blocks[0].clone();
    assert!(
        steps
            .iter()
            .any(|s| s.starts_with("meshlb-agent migrate --from-metallb")),
        "{steps:?}"
    );
    if install == Install::Chart {
        steps.extend(blocks[1].iter().cloned());
        assert!(
            steps.iter().any(|s| s.starts_with("helm uninstall metallb")),
            "{steps:?}"
        );
    }
    let migration = cluster.migrate(&steps).unwrap();
    for (step, printed) in &migration.steps {
        eprintln!("$ {step}\n{printed}");
    }
    let env = cluster.env();

    // What the dry run said, the migration did; the dry run did nothing
    // (MetalLB still ran after it: the next step found it).
    let dry = &migration.steps[0].1;
    assert!(dry.contains("would take over CRD bgppeers.metallb.io"), "{dry}");
    assert!(dry.contains("nothing changed (dry run)"), "{dry}");
    let done = &migration.steps[1].1;
    assert!(done.contains("found MetalLB's"), "{done}");
    assert!(
        done.contains("took over CRD ") || done.contains("take over CRD "),
        "{done}"
    );
    assert!(done.contains("MetalLB is stopped"), "{done}");

    // No Service's address changed, at any step.
    assert!(
        migration.addresses_changed.is_empty(),
        "{:#?}",
        migration.addresses_changed
    );
    let after = service_addresses(env).unwrap();
    for (service, addresses) in &cluster.addresses {
        assert_eq!(after.get(service), Some(addresses), "{service}");
    }
    // One MAC per address from the moment meshlb announces (MetalLB's
    // speakers, stopping one by one, may hand addresses among themselves
    // first: counted, not meshlb's).
    let meshlb = migration.meshlb_claims();
    let (mut moved, mut metallb_moved) = (0, 0);
    for address in cluster.distinct_addresses() {
        let ip = address.into();
        let claimants = meshlb.claimants(ip);
        assert_eq!(
            claimants.len(),
            1,
            "{address} claimed by {claimants:?} once MetalLB was gone (at {:.2} s): {:?}",
            migration.metallb_gone_at,
            meshlb
                .claims
                .iter()
                .filter(|c| c.ip == ip)
                .map(|c| (c.at, c.mac))
                .collect::<Vec<_>>()
        );
        let before: std::collections::BTreeSet<_> = migration
            .claims
            .claims
            .iter()
            .filter(|c| c.ip == ip && c.at < migration.metallb_gone_at)
            .map(|c| c.mac)
            .collect();
        metallb_moved += usize::from(before.len() > 1);
        moved += usize::from(!before.is_empty() && !before.is_superset(&claimants));
    }
    eprintln!(
        "{install}: meshlb answers {moved} addresses from another node than MetalLB did; \
         MetalLB's stopping speakers moved {metallb_moved} among themselves"
    );
    let lost = migration.probes.lost();
    let duplicates = migration.probes.duplicates().len();
    eprintln!(
        "{install}: {:.1} s from the first command until meshlb announced every address, {:.1} s of them \
         after MetalLB stopped; the client lost {lost} of {} probes",
        migration.took.as_secs_f64(),
        migration.gap.as_secs_f64(),
        migration.probes.probes.len()
    );
    if install == Install::Chart {
        let uninstall = migration
            .steps
            .iter()
            .find(|(step, _)| step.starts_with("helm uninstall metallb"))
            .map(|(_, printed)| printed.as_str())
            .unwrap_or_default();
        assert!(
            uninstall.contains("kept due to the resource policy") && uninstall.contains("bgppeers.metallb.io"),
            "{uninstall}"
        );
    }
    assert_eq!(duplicates, 0, "probes answered twice");

    // A new Service gets a fresh address.
    env.apply(
        "new.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: new, namespace: {SERVICES}}}\n\
             spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
        ),
    )
    .unwrap();
    let mut fresh = Vec::new();
    wait_for(Duration::from_secs(60), "the new Service addressed", || {
        fresh = service_addresses(env)
            .unwrap_or_default()
            .remove("new")
            .unwrap_or_default();
        !fresh.is_empty()
    })
    .unwrap();
    assert!(
        cluster.addresses.values().flatten().all(|a| !fresh.contains(a)),
        "{fresh:?} was already given"
    );

    // Every agent's configuration is Valid, and nothing was refused.
    wait_for(Duration::from_secs(60), "every agent's configuration Valid", || {
        env.run_kubectl(&[
            "get",
            "configurationstates",
            "-n",
            NAMESPACE,
            "-l",
            "metallb.io/component-type=speaker",
            "-o",
            "jsonpath={.items[*].status.result}",
        ])
        .is_ok_and(|r| r == "Valid Valid Valid")
    })
    .unwrap();
    let agents = cluster
        .cluster
        .agent_logs(meshlb_chaos::cluster::Announcer::Meshlb)
        .unwrap();
    assert_eq!(agents.len(), 3, "an agent pod on every node");
    for (pod, log) in &agents {
        let refused: Vec<&str> = log.lines().filter(|l| l.contains("forbidden")).take(3).collect();
        assert!(refused.is_empty(), "{pod} was refused: {refused:#?}");
    }

    // Every metallb.io kind reads, BGPPeer in both versions; no conversion
    // webhook, no MetalLB webhook, BGPPeers stored as v1beta2.
    for kind in [
        "ipaddresspools",
        "l2advertisements",
        "bgpadvertisements",
        "bgppeers.v1beta2.metallb.io",
        "bgppeers.v1beta1.metallb.io",
        "bfdprofiles",
        "communities",
        "servicel2statuses",
        "servicebgpstatuses",
        "configurationstates",
    ] {
        env.run_kubectl(&["get", kind, "-n", NAMESPACE])
            .unwrap_or_else(|e| panic!("{kind} does not read: {e}"));
    }
    let peers = env
        .run_kubectl(&[
            "get",
            "bgppeers",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .unwrap();
    assert_eq!(peers, "new-peer old-peer");
    let conversion = env
        .run_kubectl(&[
            "get",
            "crd",
            "bgppeers.metallb.io",
            "-o",
            "jsonpath={.spec.conversion.strategy} {.status.storedVersions}",
        ])
        .unwrap();
    assert_eq!(conversion, "None [\"v1beta2\"]");
    let webhooks = env
        .run_kubectl(&["get", "validatingwebhookconfigurations", "-o", "name"])
        .unwrap();
    assert!(!webhooks.contains("metallb"), "{webhooks}");
    // The L2Advertisement with no spec, the pools: all there.
    let pools = env
        .run_kubectl(&[
            "get",
            "ipaddresspools",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .unwrap();
    assert_eq!(pools, "lan second");
    // MetalLB's speakers' ServiceL2Status objects are gone; meshlb's name
    // the node answering for each Service.
    let mut names = String::new();
    let statuses = wait_for(
        Duration::from_secs(60),
        "one ServiceL2Status per Service, meshlb's",
        || {
            names = env
                .run_kubectl(&[
                    "get",
                    "servicel2statuses",
                    "-n",
                    NAMESPACE,
                    "-o",
                    "jsonpath={range .items[*]}{.metadata.name} {.status.serviceName} {.status.node}{\"\\n\"}{end}",
                ])
                .unwrap_or_default();
            let objects: Vec<&str> = names.lines().collect();
            objects.len() == meshlb_chaos::migration::SERVICE_COUNT
                && objects
                    .iter()
                    .all(|o| o.len() > 19 && o.as_bytes()[19] == b' ' && o.starts_with("l2-"))
        },
    );
    assert!(statuses.is_ok(), "{names}");
    // The backup holds every object as it was.
    let backup = std::fs::read_dir(cluster.lab.log_dir().join("migration"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("metallb-backup-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("a backup file");
    for name in [
        "name: old-peer",
        "name: new-peer",
        "name: everything",
        "name: lan",
        "name: communities",
    ] {
        assert!(backup.contains(name), "the backup lacks {name}");
    }
}

#[test]
fn from_metallbs_helm_chart() {
    migrate_from(Install::Chart);
}

#[test]
fn from_metallbs_native_manifest() {
    migrate_from(Install::Manifest);
}
