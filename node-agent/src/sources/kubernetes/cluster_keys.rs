//! The cluster keys from a Secret: `--cluster-key-secret NAME` reads the
//! Secret's `keys` entry (`ID:HEX` per line, the first the primary, as in a
//! key file) from the API server and keeps the key file the mesh reads
//! (in the state directory) to it, as a mounted Secret volume would but
//! without waiting for a kubelet to sync it. The mesh re-reads that file
//! ([`crate::mesh::KEY_FILE_POLL`]), so the Secret rotates the keys the way
//! a file does: add the new key as a second line, move it first, drop the
//! old one, each step reaching every node before the next.
//!
//! Only text that parses as a keyring is written: a bad Secret is logged
//! and the running keys stay.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::mesh::parse_keyring;

/// The Secret entry holding the keys.
pub const KEYS_ENTRY: &str = "keys";

/// The keys text of `secret`, if it has a `keys` entry (the API server
/// serves `stringData` merged into `data`).
fn keys_of(secret: &Secret) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(KEYS_ENTRY)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Writes `text` to `path` atomically, readable by the agent alone.
fn write_keys(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Follows Secret `name` of `namespace`, writing its keys to `path` each
/// time they change and parse. The receiver turns true once a keyring has
/// been written (the mesh can start).
pub fn follow(client: kube::Client, namespace: &str, name: &str, path: PathBuf) -> watch::Receiver<bool> {
    let (ready, written) = watch::channel(false);
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let name = name.to_owned();
    tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut secrets = watcher(api, config)
            .backoff(super::WatchBackoff::default())
            .applied_objects()
            .boxed();
        let mut last: Option<String> = None;
        let mut told_missing = false;
        loop {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), secrets.next()).await;
            let secret = match next {
                Err(_) => {
                    if !*ready.borrow() && !told_missing {
                        tracing::warn!(secret = %name, "waiting for the cluster key Secret; nothing is gossiped or announced until it exists");
                        told_missing = true;
                    }
                    continue;
                }
                Ok(None) => return,
                Ok(Some(Err(e))) => {
                    tracing::warn!(secret = %name, "watching the cluster key Secret: {e}");
                    continue;
                }
                Ok(Some(Ok(secret))) => secret,
            };
            let Some(text) = keys_of(&secret) else {
                tracing::error!(secret = %name, "the cluster key Secret has no {KEYS_ENTRY:?} entry; the running keys stay");
                continue;
            };
            if last.as_ref() == Some(&text) {
                continue;
            }
            if let Err(e) = parse_keyring(&path, &text) {
                tracing::error!(secret = %name, "the cluster key Secret does not parse, the running keys stay: {e}");
                last = Some(text);
                continue;
            }
            match tokio::task::spawn_blocking({
                let (path, text) = (path.clone(), text.clone());
                move || write_keys(&path, &text)
            })
            .await
            {
                Ok(Ok(())) => {
                    last = Some(text);
                    ready.send_replace(true);
                }
                Ok(Err(e)) => tracing::error!(file = %path.display(), "cannot write the cluster keys: {e}"),
                Err(e) => tracing::error!("writing the cluster keys: {e}"),
            }
        }
    });
    written
}
