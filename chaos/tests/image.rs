//! The container image: scripts/image builds it from the Dockerfile with
//! buildah (no daemon), as an OCI layout; umoci unpacks it, and the
//! binaries run from the unpacked root filesystem alone (chroot: static,
//! nothing else in the image), with the entrypoint and user the Dockerfile
//! gives. No container runs: this sandbox refuses podman's setrlimit.
//! Needs root, buildah and umoci (scripts/install-deps).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `command`: its standard output, or the test fails with its errors.
fn run(command: Command) -> String {
    let what = format!("{command:?}");
    meshlb_chaos::netns::run_command(command, &what).unwrap()
}

/// Removes a scratch directory when dropped (also on a failing test).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every path under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_image_holds_static_binaries_that_run_alone() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scratch = Scratch(std::env::temp_dir().join(format!("meshlb-image-{}", std::process::id())));
    let layout = scratch.0.join("oci");
    let bundle = scratch.0.join("bundle");
    let mut build = Command::new(repo.join("scripts/image"));
    build.arg(&layout);
    run(build);
    let mut unpack = Command::new("umoci");
    unpack
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", layout.display()))
        .arg(&bundle);
    run(unpack);
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        tree(&rootfs),
        [
            "usr",
            "usr/local",
            "usr/local/bin",
            "usr/local/bin/meshlb-agent",
            "usr/local/bin/meshlbctl",
            "var",
            "var/lib",
            "var/lib/meshlb",
        ],
        "the image holds the two binaries and the state directory, nothing else"
    );
    // The runtime configuration umoci derives from the image's.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["/usr/local/bin/meshlb-agent", "run", "--kubernetes"])
    );
    assert_eq!(config["process"]["user"]["uid"], 0);

    // Nothing but the image's files: a binary needing a shared library
    // would not start.
    let chroot = |args: &[&str]| {
        let mut command = Command::new("chroot");
        command.arg(&rootfs).args(args);
        run(command)
    };
    let version = chroot(&["/usr/local/bin/meshlb-agent", "--version"]);
    assert_eq!(version.trim(), format!("meshlb-agent {}", env!("CARGO_PKG_VERSION")));
    assert!(chroot(&["/usr/local/bin/meshlbctl", "--version"]).starts_with("meshlbctl "));
    // The image's agent prints the CRDs the chart carries.
    let crds = chroot(&["/usr/local/bin/meshlb-agent", "crds"]);
    let chart = std::fs::read_to_string(repo.join("charts/meshlb/crds/meshlb-crds.yaml")).unwrap();
    assert!(crds == chart, "the image's CRDs differ from the chart's");
}
