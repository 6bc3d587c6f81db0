//! The Kubernetes allocation benchmark, for docs/benchmarks.md: a real
//! kube-apiserver with etcd ([`crate::kube_env`]), meshlb's CRDs, one IPv6
//! pool, and an allocator (`meshlb-agent run --kubernetes`, or MetalLB's
//! controller when one is given) as a process beside it.
//!
//! - Burst: N LoadBalancer Services created at once (32 requests in
//!   flight); per Service, the time from its create call returning to a
//!   watch seeing an address in its status.
//! - Cold start: M Services (each with an EndpointSlice) exist before the
//!   allocator starts; the time from its start to every one allocated, its
//!   peak RSS and CPU time then, and its CPU time for 1,000 Service
//!   updates after that.
//!
//! Services are IPv6 single-stack so that tens of thousands fit in the
//! documentation prefix: the pool is `2001:db8:100::/112`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use crate::error::LabError;
use crate::kube_env::{KubeEnv, install_crds};

/// The namespace the benchmark's Services live in.
const NAMESPACE: &str = "bench";
/// Requests in flight while creating or updating.
const IN_FLIGHT: usize = 32;
/// The longest a phase may take.
const PHASE_TIMEOUT: Duration = Duration::from_secs(1200);

/// Which allocator runs.
#[derive(Debug, Clone)]
pub enum Allocator {
    /// `meshlb-agent run --kubernetes` at this path.
    Meshlb(PathBuf),
    /// MetalLB's controller binary at this path.
    Metallb(PathBuf),
}

impl Allocator {
    /// Its name in tables.
    pub fn name(&self) -> &'static str {
        match self {
            Allocator::Meshlb(_) => "meshlb",
            Allocator::Metallb(_) => "MetalLB controller",
        }
    }

    fn spawn(&self, env: &KubeEnv, dir: &Path) -> Result<Child, LabError> {
        let log = std::fs::File::create(dir.join("allocator.log")).map_err(|e| LabError::io("allocator log", e))?;
        let mut command = match self {
            Allocator::Meshlb(binary) => {
                let mut c = Command::new(binary);
                c.args(["run", "--kubernetes", "--kubeconfig"])
                    .arg(env.kubeconfig())
                    .arg("--state-dir")
                    .arg(dir)
                    .args(["--node-name", "bench"]);
                c
            }
            Allocator::Metallb(binary) => {
                let mut c = Command::new(binary);
                c.env("KUBECONFIG", env.kubeconfig())
                    .args([
                        "--namespace",
                        "metallb-system",
                        "--port",
                        "0",
                        "--webhook-mode",
                        "disabled",
                    ])
                    // No memberlist secret: it is owned by a Deployment
                    // there is none of here, and only speakers use it.
                    .args(["--disable-cert-rotation", "--log-level", "warn"]);
                c
            }
        };
        command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| LabError::io(format!("start {}", self.name()), e))
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The allocator.
    pub allocator: &'static str,
    /// Burst size.
    pub burst: usize,
    /// Create-to-status latencies, sorted.
    pub burst_latencies: Vec<Duration>,
    /// First create to last status.
    pub burst_total: Duration,
    /// Services present at the cold start.
    pub existing: usize,
    /// Start to every one allocated.
    pub cold_start: Duration,
    /// Peak resident set of the allocator process, KiB.
    pub peak_rss_kib: u64,
    /// Its CPU time (user and system) until every one was allocated.
    pub cold_start_cpu: Duration,
    /// Its CPU time for 1,000 Service updates afterwards.
    pub cpu_per_1000_updates: Duration,
}

/// The value at quantile `q` (nearest rank) of sorted `samples`.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1]
}

fn api(what: &'static str) -> impl Fn(kube::Error) -> LabError {
    move |e| LabError::Invalid(format!("{what}: {e}"))
}

/// A cluster with the CRDs, `metallb-system` with the pool, and the
/// benchmark's namespace.
async fn prepare(env: &KubeEnv) -> Result<kube::Client, LabError> {
    let client = env.client().await?;
    install_crds(&client).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["metallb-system", NAMESPACE] {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))
            .map_err(|e| LabError::Invalid(e.to_string()))?;
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .map_err(api("namespace"))?;
    }
    use meshlb_config::kinds::{IpAddressPool, IpAddressPoolSpec};
    let pools: Api<IpAddressPool> = Api::namespaced(client.clone(), "metallb-system");
    let pool = IpAddressPool::new(
        "bench",
        IpAddressPoolSpec {
            addresses: vec!["2001:db8:100::/112".into()],
            ..IpAddressPoolSpec::default()
        },
    );
    pools.create(&PostParams::default(), &pool).await.map_err(api("pool"))?;
    Ok(client)
}

fn service(name: &str) -> Result<Service, LabError> {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
        // No node ports: their range (2,768) is smaller than the workload.
        "spec": {"type": "LoadBalancer", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"],
                 "allocateLoadBalancerNodePorts": false,
                 "selector": {"app": name}, "ports": [{"port": 80}]},
    }))
    .map_err(|e| LabError::Invalid(e.to_string()))
}

fn endpoint_slice(name: &str, index: usize) -> Result<EndpointSlice, LabError> {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-1"), "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv6",
        "endpoints": [{"addresses": [format!("2001:db8:200::{:x}", index + 1)], "nodeName": "bench",
                       "conditions": {"ready": true}}],
        "ports": [{"port": 8080}],
    }))
    .map_err(|e| LabError::Invalid(e.to_string()))
}

fn has_address(service: &Service) -> bool {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty())
}

/// Records when a watch first sees each Service of the namespace with an
/// address, until `count` have one.
fn watch_allocations(client: &kube::Client, count: usize) -> tokio::task::JoinHandle<HashMap<String, Instant>> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    tokio::spawn(async move {
        let mut seen = HashMap::new();
        let mut events = watcher(services, watcher::Config::default()).boxed();
        while seen.len() < count {
            match events.next().await {
                Some(Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s))) if has_address(&s) => {
                    let name = s.metadata.name.unwrap_or_default();
                    seen.entry(name).or_insert_with(Instant::now);
                }
                Some(_) => {}
                None => break,
            }
        }
        seen
    })
}

/// Creates `count` Services (and EndpointSlices, if `slices`), `IN_FLIGHT`
/// at a time: when each create returned.
async fn create(client: &kube::Client, count: usize, slices: bool) -> Result<HashMap<String, Instant>, LabError> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let endpoint_slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let created = Arc::new(Mutex::new(HashMap::new()));
    let results: Vec<Result<(), LabError>> = futures_util::stream::iter(0..count)
        .map(|i| {
            let (services, endpoint_slices, created) = (services.clone(), endpoint_slices.clone(), created.clone());
            async move {
                let name = format!("s{i:05}");
                services
                    .create(&PostParams::default(), &service(&name)?)
                    .await
                    .map_err(api("create a Service"))?;
                if let Ok(mut created) = created.lock() {
                    created.insert(name.clone(), Instant::now());
                }
                if slices {
                    endpoint_slices
                        .create(&PostParams::default(), &endpoint_slice(&name, i)?)
                        .await
                        .map_err(api("create an EndpointSlice"))?;
                }
                Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(created.lock().map(|c| c.clone()).unwrap_or_default())
}

/// Peak RSS (KiB) and CPU time of a process.
pub fn usage(pid: u32) -> Result<(u64, Duration), LabError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| LabError::io("/proc status", e))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| LabError::io("/proc stat", e))?;
    // The command name is in parentheses and may hold spaces: count the
    // fields after it.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // After the name: state is field 3, so utime (14) and stime (15) are
    // the 12th and 13th words.
    let ticks = field(11) + field(12);
    // USER_HZ is 100 on Linux.
    Ok((rss, Duration::from_millis(ticks * 10)))
}

/// Waits until the process uses under 5 % of a core for a second (done
/// with what it was given; a controller may never be wholly idle), at
/// most a minute: its CPU time then.
pub fn wait_idle(pid: u32) -> Result<Duration, LabError> {
    let mut last = usage(pid)?.1;
    for _ in 0..60 {
        std::thread::sleep(Duration::from_secs(1));
        let now = usage(pid)?.1;
        if now.saturating_sub(last) < Duration::from_millis(50) {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// [`wait_idle`] off the runtime's threads.
async fn until_idle(pid: u32) -> Result<Duration, LabError> {
    tokio::task::spawn_blocking(move || wait_idle(pid))
        .await
        .map_err(|e| LabError::Invalid(format!("waiting for the process to idle: {e}")))?
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, LabError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| LabError::io("tokio runtime", e))
}

/// One run of both phases with `allocator`.
pub fn run(allocator: &Allocator, burst: usize, existing: usize) -> Result<Report, LabError> {
    let scratch = std::env::temp_dir().join(format!("meshlb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| LabError::io("scratch", e))?;
    let report = run_in(allocator, burst, existing, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    report
}

fn run_in(allocator: &Allocator, burst: usize, existing: usize, scratch: &Path) -> Result<Report, LabError> {
    let rt = runtime()?;

    // Burst.
    let env = KubeEnv::start()?;
    let (burst_latencies, burst_total) = rt.block_on(async {
        let client = prepare(&env).await?;
        let _allocator = Running(allocator.spawn(&env, scratch)?);
        // Let it list and settle before the burst.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let watch = watch_allocations(&client, burst);
        let start = Instant::now();
        let created = create(&client, burst, false).await?;
        let seen = tokio::time::timeout(PHASE_TIMEOUT, watch)
            .await
            .map_err(|_| LabError::Invalid(format!("{}: burst not allocated in time", allocator.name())))?
            .map_err(|e| LabError::Invalid(e.to_string()))?;
        let mut latencies: Vec<Duration> = created
            .iter()
            .filter_map(|(name, at)| Some(seen.get(name)?.saturating_duration_since(*at)))
            .collect();
        latencies.sort_unstable();
        let last = seen.values().max().copied().unwrap_or(start);
        Ok::<_, LabError>((latencies, last.saturating_duration_since(start)))
    })?;
    drop(env);

    // Cold start.
    let env = KubeEnv::start()?;
    let (cold_start, peak_rss_kib, cold_start_cpu, cpu_per_1000_updates) = rt.block_on(async {
        let client = prepare(&env).await?;
        create(&client, existing, true).await?;
        let watch = watch_allocations(&client, existing);
        let start = Instant::now();
        let process = Running(allocator.spawn(&env, scratch)?);
        tokio::time::timeout(PHASE_TIMEOUT, watch)
            .await
            .map_err(|_| LabError::Invalid(format!("{}: cold start not allocated in time", allocator.name())))?
            .map_err(|e| LabError::Invalid(e.to_string()))?;
        let cold_start = start.elapsed();
        let pid = process.0.id();
        let before = until_idle(pid).await?;
        let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
        let updates: Vec<Result<(), LabError>> = futures_util::stream::iter(0..1000.min(existing))
            .map(|i| {
                let services = services.clone();
                async move {
                    let patch = json!({"metadata": {"labels": {"touched": "yes"}}});
                    services
                        .patch(&format!("s{i:05}"), &PatchParams::default(), &Patch::Merge(patch))
                        .await
                        .map(|_| ())
                        .map_err(api("update a Service"))
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        updates.into_iter().collect::<Result<Vec<()>, _>>()?;
        let after = until_idle(pid).await?;
        let (rss, _) = usage(pid)?;
        Ok::<_, LabError>((cold_start, rss, before, after.saturating_sub(before)))
    })?;
    drop(env);
    Ok(Report {
        allocator: allocator.name(),
        burst,
        burst_latencies,
        burst_total,
        existing,
        cold_start,
        peak_rss_kib,
        cold_start_cpu,
        cpu_per_1000_updates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(quantile(&samples, 0.5), ms(50));
        assert_eq!(quantile(&samples, 0.99), ms(99));
        assert_eq!(quantile(&samples, 1.0), ms(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
