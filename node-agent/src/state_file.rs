//! Assignments remembered across restarts in standalone mode.
//!
//! In a cluster, `Service.status` records which addresses a service holds,
//! and the agent re-admits them on start. Standalone files carry no status,
//! so the agent writes its assignments to a state file (atomically: a
//! temporary file renamed over the old one) and re-admits them before
//! allocating anything new. A missing file means a first start.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use meshlb_config::Allocator;
use meshlb_config::service::ServiceKey;
use serde::{Deserialize, Serialize};

use crate::AgentError;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    assignments: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    namespace: String,
    name: String,
    pool: String,
    addresses: Vec<IpAddr>,
}

/// Reads remembered assignments; a missing file gives none.
pub fn load(path: &Path) -> Result<BTreeMap<ServiceKey, Vec<IpAddr>>, AgentError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(AgentError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let state: StateFile = serde_yaml_ng::from_str(&text).map_err(|e| AgentError::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(state
        .assignments
        .into_iter()
        .map(|e| (ServiceKey::new(e.namespace, e.name), e.addresses))
        .collect())
}

/// Writes the allocator's assignments.
pub fn save(path: &Path, allocator: &Allocator) -> Result<(), AgentError> {
    let state = StateFile {
        assignments: allocator
            .assignments()
            .map(|(k, a)| Entry {
                namespace: k.namespace.clone(),
                name: k.name.clone(),
                pool: a.pool.clone(),
                addresses: a.addresses.clone(),
            })
            .collect(),
    };
    let io = |source| AgentError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_yaml_ng::to_string(&state).map_err(|e| AgentError::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(b"# Written by meshlb-agent: addresses held by services, re-admitted on restart.\n")
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}
