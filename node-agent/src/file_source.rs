//! The standalone configuration source: a directory of YAML files holding
//! the same objects as a cluster (metallb.io kinds, meshlb.io L2Policy,
//! Services, Namespaces, EndpointSlices), several documents per file.
//!
//! Files ending in `.yaml` or `.yml` are read in name order; hidden files
//! (editor swap files, the `..data` links of a mounted ConfigMap) and
//! subdirectories are skipped. A file that cannot be read or parsed rejects
//! the whole reading, since what it meant is unknown.

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

/// Reads every object of the directory. Every problem of every file is
/// reported; any problem rejects the reading.
pub fn read_directory(dir: &Path) -> Result<Vec<Located<Object>>, Rejected> {
    let files = config_files(dir).map_err(|e| Rejected {
        errors: vec![Error::Parse {
            location: SourceLocation {
                file: dir.display().to_string(),
                line: 0,
            },
            object: None,
            message: e.to_string(),
        }],
    })?;
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let name = file.display().to_string();
        match std::fs::read(&file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => match parse_documents(&text, &name) {
                    Ok(found) => objects.extend(found),
                    Err(e) => errors.extend(e),
                },
                Err(e) => errors.push(Error::Parse {
                    location: SourceLocation { file: name, line: 0 },
                    object: None,
                    message: format!("not UTF-8 text ({e})"),
                }),
            },
            Err(e) => errors.push(Error::Parse {
                location: SourceLocation { file: name, line: 0 },
                object: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(Rejected { errors })
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
