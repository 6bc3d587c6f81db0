//! The standalone configuration source: a directory of YAML files holding
//! the same objects as a cluster (metallb.io kinds, meshlb.io L2Policy,
//! Services, Namespaces, EndpointSlices), several documents per file.
//!
//! Files ending in `.yaml` or `.yml` are read in name order; hidden files
//! (editor swap files, the `..data` links of a mounted ConfigMap) and
//! subdirectories are skipped. A file that cannot be read or parsed rejects
//! the whole reading, since what it meant is unknown, and so does a file
//! larger than [`ReadLimits::max_file_bytes`] (refused before it is read).
//! Reading and parsing are separate steps: a reading's fingerprint tells
//! whether anything changed before any parsing is done.

use std::path::{Path, PathBuf};
use std::time::Duration;

use meshlb_config::{Error, Located, Object, Rejected, SourceLocation, parse_documents};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::AgentError;

/// The YAML files of `dir`, in name order.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>, AgentError> {
    let io = |source| AgentError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        // `is_file` follows symlinks, as ConfigMap mounts need.
        if yaml && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The default of [`ReadLimits::max_file_bytes`]: etcd's request limit,
/// which bounds every object in a cluster, so no manifest that fits a
/// cluster is refused here.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1_572_864;

/// Bounds on what a reading may hold, checked before anything is parsed.
/// Nesting is bounded by the reader itself
/// ([`meshlb_config::object::MAX_FLOW_DEPTH`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest file read; a larger one rejects the reading.
    pub max_file_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> ReadLimits {
        ReadLimits {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// The configuration files of a directory as read, not yet parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// Each file's name and text.
    pub files: Vec<(String, String)>,
    /// A hash of every file's name and content: equal readings have equal
    /// fingerprints, so an unchanged directory is recognised without
    /// parsing it.
    pub fingerprint: u64,
}

fn unreadable(file: String, message: String) -> Error {
    Error::Parse {
        location: SourceLocation { file, line: 0 },
        object: None,
        message,
    }
}

/// Reads every configuration file of `dir` within `limits`. Every problem
/// of every file is reported; any problem rejects the reading.
pub fn read_directory(dir: &Path, limits: &ReadLimits) -> Result<Reading, Rejected> {
    let files = config_files(dir).map_err(|e| Rejected {
        errors: vec![unreadable(dir.display().to_string(), e.to_string())],
    })?;
    let mut hasher = std::hash::DefaultHasher::new();
    let mut read = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let name = file.display().to_string();
        match read_bounded(&file, limits.max_file_bytes) {
            Ok(text) => {
                std::hash::Hash::hash(&(&name, &text), &mut hasher);
                read.push((name, text));
            }
            Err(message) => errors.push(unreadable(name, message)),
        }
    }
    if errors.is_empty() {
        Ok(Reading {
            files: read,
            fingerprint: std::hash::Hasher::finish(&hasher),
        })
    } else {
        Err(Rejected { errors })
    }
}

/// A file's text, refused unread if it is larger than `max_bytes` (and
/// never read past that, should it grow meanwhile).
fn read_bounded(path: &Path, max_bytes: u64) -> Result<String, String> {
    use std::io::Read as _;
    let too_large = |size: u64| {
        format!(
            "{size} bytes is larger than the {max_bytes} bytes a configuration file may have (--max-config-file-bytes)"
        )
    };
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let size = file.metadata().map_err(|e| format!("cannot read: {e}"))?.len();
    if size > max_bytes {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text ({e})"))
}

impl Reading {
    /// Every object of every file. Every problem of every file is
    /// reported; any problem rejects the reading.
    pub fn parse(&self) -> Result<Vec<Located<Object>>, Rejected> {
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for (name, text) in &self.files {
            match parse_documents(text, name) {
                Ok(found) => objects.extend(found),
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(objects)
        } else {
            Err(Rejected { errors })
        }
    }
}

/// Watches `dir`: a unit arrives on the channel after any change, at most
/// one per `debounce` (editors write files in several steps). Keep the
/// returned watcher alive as long as changes are wanted.
pub fn watch(dir: &Path, debounce: Duration) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<()>), AgentError> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = raw_tx.send(());
        }
    })
    .map_err(|source| AgentError::Watch {
        path: dir.to_path_buf(),
        source,
    })?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| AgentError::Watch {
            path: dir.to_path_buf(),
            source,
        })?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            tokio::time::sleep(debounce).await;
            while raw_rx.try_recv().is_ok() {}
            if tx.send(()).await.is_err() {
                break;
            }
        }
    });
    Ok((watcher, rx))
}
