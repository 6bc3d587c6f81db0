//! MetalLB in the lab, as its users have it: its module from the Go module
//! proxy ([`module_dir`]: its chart, manifests, CRDs, config samples and
//! documentation, applied by the tests as they are) and its images, packed
//! from the binaries `scripts/metallb` builds from it ([`images_dir`]:
//! real pods on real nodes,
//! [`crate::cluster::Cluster::install_metallb`], [`crate::migration`]).

use std::path::{Path, PathBuf};

use crate::error::LabError;
use crate::kube_env::KubeEnv;

/// The MetalLB release `chaos/metallb/go.mod` pins.
pub const VERSION: &str = "v0.15.2";

/// The namespace MetalLB runs in (and reads its configuration from).
pub const NAMESPACE: &str = "metallb-system";

/// The speaker Pods' labels, which the speakers list to find each other
/// (`METALLB_ML_LABELS` in MetalLB's manifests).
pub const SPEAKER_LABELS: &str = "app=metallb,component=speaker";

/// Runs `scripts/metallb ARG`; what it prints, trimmed.
fn script(arg: &str) -> Result<PathBuf, LabError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/metallb");
    let mut command = std::process::Command::new(&script);
    command.arg(arg).stderr(std::process::Stdio::inherit());
    let printed = crate::netns::run_command(command, &format!("scripts/metallb {arg}"))?;
    let path = PathBuf::from(printed.trim());
    if path.as_os_str().is_empty() || !path.exists() {
        return Err(LabError::Invalid(format!(
            "scripts/metallb {arg} printed no existing path ({printed:?})"
        )));
    }
    Ok(path)
}

/// The directory of MetalLB's module ([`VERSION`]) in Go's module cache,
/// downloaded from the module proxy if need be: `charts/metallb`,
/// `config/manifests/metallb-native.yaml`, `config/crd/bases`,
/// `configsamples`, `website/content`. Asked once per process.
pub fn module_dir() -> Result<PathBuf, LabError> {
    static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| script("module").map_err(|e| e.to_string()))
        .clone()
        .map_err(LabError::Invalid)
}

/// The directory of MetalLB's images (`controller.tar`, `speaker.tar`,
/// docker archives named as MetalLB publishes them), packed from its
/// binaries by `scripts/metallb images`.
pub fn images_dir() -> Result<PathBuf, LabError> {
    script("images")
}

/// Applies `yaml` (saved as `name`) once MetalLB's webhooks admit it:
/// they answer only after the controller has made its certificate, so
/// refusals are retried for two minutes; the last refusal is in the
/// error.
pub fn apply_when_admitted(env: &KubeEnv, name: &str, yaml: &str) -> Result<(), LabError> {
    let mut refusal = String::new();
    crate::wait::wait_for(
        std::time::Duration::from_secs(120),
        "MetalLB's webhooks to admit the configuration",
        || match env.apply(name, yaml) {
            Ok(()) => true,
            Err(e) => {
                refusal = e.to_string();
                false
            }
        },
    )
    .map_err(|e| LabError::Invalid(format!("{e}: {refusal}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_is_the_one_go_mod_pins() {
        let go_mod = include_str!("../metallb/go.mod");
        assert!(go_mod.contains(&format!("go.universe.tf/metallb {}", super::VERSION)));
    }
}
