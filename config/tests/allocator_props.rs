//! Property tests of the allocator: random pools, services and operations,
//! with the invariants checked after every step.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use meshlb_config::addresses::{AddressRange, Family, confuses_buggy_firmware};
use meshlb_config::config::Pool;
use meshlb_config::meta::StringMap;
use meshlb_config::service::{AllocationRequest, Backend, FamilyPolicy, PortKey, ServiceKey};
use meshlb_config::{Allocator, allocate_all};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct PoolShape {
    v4: Option<(u32, u32)>,
    v6: Option<(u32, u32)>,
    avoid_buggy: bool,
    auto_assign: bool,
}

fn make_pool(index: usize, shape: &PoolShape) -> Pool {
    let mut ranges = Vec::new();
    // Each pool owns a block of 512 IPv4 addresses starting at 198.51.100.0
    // + 512 * index (crossing .255/.0 boundaries), and a /112 of IPv6.
    if let Some((offset, size)) = shape.v4 {
        let base = u32::from(std::net::Ipv4Addr::new(198, 51, 100, 0)) + 512 * index as u32 + offset;
        let first = IpAddr::V4(base.into());
        let last = IpAddr::V4((base + size - 1).into());
        ranges.push(AddressRange::new(first, last).unwrap());
    }
    if let Some((offset, size)) = shape.v6 {
        let base = u128::from("2001:db8::".parse::<std::net::Ipv6Addr>().unwrap())
            + (index as u128) * 65536
            + u128::from(offset);
        let first = IpAddr::V6(base.into());
        let last = IpAddr::V6((base + u128::from(size) - 1).into());
        ranges.push(AddressRange::new(first, last).unwrap());
    }
    Pool {
        name: format!("pool{index}"),
        labels: StringMap::new(),
        ranges,
        auto_assign: shape.auto_assign,
        avoid_buggy_ips: shape.avoid_buggy,
        allocation: None,
        class: None,
    }
}

fn pool_shape() -> impl Strategy<Value = PoolShape> {
    (
        proptest::option::weighted(0.8, (240u32..270, 1u32..12)),
        proptest::option::weighted(0.5, (0u32..8, 1u32..10)),
        any::<bool>(),
        proptest::bool::weighted(0.85),
    )
        .prop_filter("a pool has addresses", |(v4, v6, _, _)| v4.is_some() || v6.is_some())
        .prop_map(|(v4, v6, avoid_buggy, auto_assign)| PoolShape {
            v4,
            v6,
            avoid_buggy,
            auto_assign,
        })
}

#[derive(Debug, Clone)]
struct ServiceShape {
    sharing: Option<&'static str>,
    ports: Vec<(&'static str, u16)>,
    local: bool,
    policy: FamilyPolicy,
    families: Vec<Family>,
    per_family: u8,
    pool: Option<usize>,
    explicit: Option<(usize, u32)>,
}

fn service_shape() -> impl Strategy<Value = ServiceShape> {
    let port = prop_oneof![
        Just(("TCP", 80u16)),
        Just(("TCP", 443)),
        Just(("UDP", 53)),
        Just(("UDP", 80))
    ];
    (
        prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))],
        proptest::collection::vec(port, 1..3),
        proptest::bool::weighted(0.2),
        prop_oneof![
            4 => Just(FamilyPolicy::SingleStack),
            1 => Just(FamilyPolicy::PreferDualStack),
            1 => Just(FamilyPolicy::RequireDualStack)
        ],
        prop_oneof![Just(vec![]), Just(vec![Family::V4]), Just(vec![Family::V6])],
        prop_oneof![4 => Just(1u8), 1 => Just(2u8)],
        proptest::option::weighted(0.2, 0usize..4),
        proptest::option::weighted(0.15, (0usize..4, 0u32..14)),
    )
        .prop_map(
            |(sharing, mut ports, local, policy, families, per_family, pool, explicit)| {
                ports.dedup();
                ServiceShape {
                    sharing,
                    ports,
                    local,
                    policy,
                    families,
                    per_family,
                    pool,
                    explicit,
                }
            },
        )
}

fn request(index: usize, shape: &ServiceShape, pools: &[Pool]) -> AllocationRequest {
    let mut families = shape.families.clone();
    if shape.policy != FamilyPolicy::SingleStack {
        let primary = families.first().copied().unwrap_or(Family::V4);
        families = vec![primary, primary.other()];
    }
    let addresses = match shape.explicit {
        Some((p, k)) if p < pools.len() => pools[p]
            .ranges
            .first()
            .map(|r| {
                let (lo, hi) = r.bounds();
                let n = lo + u128::from(k).min(hi - lo);
                meshlb_config::addresses::number_to_ip(r.family(), n)
            })
            .into_iter()
            .collect(),
        _ => vec![],
    };
    AllocationRequest {
        service: ServiceKey::new("ns", format!("svc{index:02}")),
        labels: StringMap::new(),
        namespace_labels: Default::default(),
        pool: shape.pool.filter(|p| *p < pools.len()).map(|p| format!("pool{p}")),
        addresses,
        family_policy: shape.policy,
        families,
        per_family: shape.per_family,
        sharing_key: shape.sharing.map(String::from),
        class: None,
        ports: shape
            .ports
            .iter()
            .map(|(p, n)| PortKey {
                protocol: p.parse().expect("a protocol"),
                port: *n,
            })
            .collect(),
        backend: if shape.local {
            Backend::Local("app=x".into())
        } else {
            Backend::Cluster
        },
    }
}

#[derive(Debug, Clone)]
enum Op {
    Assign(usize),
    Release(usize),
    Shrink(usize, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..24).prop_map(Op::Assign),
        2 => (0usize..24).prop_map(Op::Release),
        1 => (0usize..4, 0u32..6).prop_map(|(p, by)| Op::Shrink(p, by)),
    ]
}

/// Shrinks every range of pool `index` by `by` addresses at the top.
fn shrink(pools: &mut [Pool], index: usize, by: u32) {
    let Some(pool) = pools.get_mut(index) else { return };
    for range in &mut pool.ranges {
        let (lo, hi) = range.bounds();
        let new_hi = hi.saturating_sub(u128::from(by)).max(lo);
        *range = AddressRange::new(
            meshlb_config::addresses::number_to_ip(range.family(), lo),
            meshlb_config::addresses::number_to_ip(range.family(), new_hi),
        )
        .unwrap();
    }
}

fn check_invariants(allocator: &Allocator) -> Result<(), TestCaseError> {
    let mut holders: BTreeMap<IpAddr, Vec<&ServiceKey>> = BTreeMap::new();
    for (service, assignment) in allocator.assignments() {
        let pool = &allocator.pools()[&*assignment.pool];
        let request = allocator.request(service).unwrap();
        let families: Vec<Family> = [Family::V4, Family::V6]
            .into_iter()
            .filter(|f| assignment.addresses.iter().any(|a| Family::of(*a) == *f))
            .collect();
        prop_assert_eq!(
            assignment.addresses.len(),
            families.len() * usize::from(request.per_family)
        );
        match request.family_policy {
            FamilyPolicy::SingleStack => prop_assert_eq!(families.len(), 1),
            FamilyPolicy::RequireDualStack => prop_assert_eq!(families.len(), 2),
            FamilyPolicy::PreferDualStack => prop_assert!(families.contains(&request.families[0])),
        }
        for (i, address) in assignment.addresses.iter().enumerate() {
            prop_assert!(
                pool.contains(*address),
                "{} holds {} outside pool {}",
                service,
                address,
                pool.name
            );
            prop_assert!(!(pool.avoid_buggy_ips && confuses_buggy_firmware(*address)));
            prop_assert!(!assignment.addresses[..i].contains(address));
            holders.entry(*address).or_default().push(service);
        }
    }
    for (address, services) in &holders {
        for (i, a) in services.iter().enumerate() {
            for b in &services[i + 1..] {
                let (ra, rb) = (allocator.request(a).unwrap(), allocator.request(b).unwrap());
                prop_assert!(
                    ra.sharing_key.is_some() && ra.sharing_key == rb.sharing_key,
                    "{address}: {a} and {b} share without a common key"
                );
                prop_assert_eq!(&ra.backend, &rb.backend);
                prop_assert!(
                    !ra.ports.iter().any(|p| rb.ports.contains(p)),
                    "{address}: {a} and {b} overlap ports"
                );
            }
        }
    }
    for (name, counters) in allocator.counters() {
        let pool = &allocator.pools()[&name];
        for (family, c) in [(Family::V4, counters.v4), (Family::V6, counters.v6)] {
            let used = holders
                .keys()
                .filter(|a| Family::of(**a) == family && pool.contains(**a))
                .count() as u128;
            prop_assert_eq!(c.in_use, used);
            prop_assert_eq!(c.available, c.total - c.in_use);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_hold_through_any_sequence(
        pool_shapes in proptest::collection::vec(pool_shape(), 1..5),
        services in proptest::collection::vec(service_shape(), 24),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut pools: Vec<Pool> = pool_shapes.iter().enumerate().map(|(i, s)| make_pool(i, s)).collect();
        let mut allocator = Allocator::new(pools.clone());
        for op in ops {
            match op {
                Op::Assign(i) => {
                    let r = request(i, &services[i], &pools);
                    let held_before: Vec<IpAddr> = allocator.assignments().flat_map(|(_, a)| a.addresses.clone()).collect();
                    let fresh = allocator.assignment(&r.service).is_none();
                    if let Ok(assignment) = allocator.assign(&r) {
                        // First free in order: no usable address that was free
                        // precedes the one taken, in the pool's range order.
                        let simple = fresh && r.sharing_key.is_none() && r.addresses.is_empty()
                            && r.per_family == 1 && r.family_policy == FamilyPolicy::SingleStack;
                        if simple {
                            let pool = &allocator.pools()[&*assignment.pool];
                            let taken = assignment.addresses[0];
                            for range in pool.ranges.iter().filter(|x| x.family() == Family::of(taken)) {
                                let (lo, hi) = range.bounds();
                                let mut n = lo;
                                while n <= hi {
                                    let ip = meshlb_config::addresses::number_to_ip(range.family(), n);
                                    if ip == taken { break; }
                                    let usable = !(pool.avoid_buggy_ips && confuses_buggy_firmware(ip));
                                    prop_assert!(!usable || held_before.contains(&ip), "{} took {} though {} was free", r.service, taken, ip);
                                    n += 1;
                                }
                                if range.contains(taken) { break; }
                            }
                        }
                    }
                }
                Op::Release(i) => { allocator.release(&ServiceKey::new("ns", format!("svc{i:02}"))); }
                Op::Shrink(p, by) => {
                    let before: BTreeMap<ServiceKey, meshlb_config::Assignment> =
                        allocator.assignments().map(|(k, a)| (k.clone(), a.clone())).collect();
                    shrink(&mut pools, p, by);
                    let moved = allocator.set_pools(pools.clone());
                    // Shrinking never moves a service whose addresses are still inside its pool.
                    for (service, assignment) in &before {
                        let still_inside = pools.iter().find(|x| *x.name == *assignment.pool)
                            .is_some_and(|x| assignment.addresses.iter().all(|a| x.contains(*a)));
                        if still_inside {
                            prop_assert!(!moved.contains_key(service), "{} moved though inside", service);
                            prop_assert_eq!(allocator.assignment(service), Some(assignment));
                        }
                    }
                }
            }
            check_invariants(&allocator)?;
        }

        // Restart: the same inputs, in any order, give the same result, and
        // every held address is re-admitted to its holder.
        let inputs: Vec<(AllocationRequest, Vec<IpAddr>)> = (0..services.len())
            .map(|i| {
                let key = ServiceKey::new("ns", format!("svc{i:02}"));
                match allocator.request(&key) {
                    Some(r) => (r.clone(), allocator.assignment(&key).unwrap().addresses.clone()),
                    None => (request(i, &services[i], &pools), vec![]),
                }
            })
            .collect();
        let mut reversed = inputs.clone();
        reversed.reverse();
        let (restarted, results) = allocate_all(pools.clone(), inputs.clone());
        let (_, results_reversed) = allocate_all(pools.clone(), reversed);
        prop_assert_eq!(&results, &results_reversed);
        check_invariants(&restarted)?;
        for (service, assignment) in allocator.assignments() {
            prop_assert_eq!(restarted.assignment(service), Some(assignment), "{} lost its addresses on restart", service);
        }
    }
}
