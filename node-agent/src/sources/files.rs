//! The standalone configuration source: a directory of YAML files holding
//! the same objects as a cluster (metallb.io kinds, meshlb.io L2Policy,
//! Deckhouse's MetalLoadBalancerClass, Services, Namespaces,
//! EndpointSlices), several documents per file.
//!
//! Files ending in `.yaml` or `.yml` are read in name order; hidden files
//! (editor swap files, the `..data` links of a mounted ConfigMap) and
//! subdirectories are skipped. A file that cannot be read or parsed rejects
//! the whole reading, since what it meant is unknown, and so does a file
//! larger than [`ReadLimits::max_file_bytes`] (refused before it is read).
//! Reading and parsing are separate steps: a reading's fingerprint tells
//! whether anything changed before any parsing is done, and each file's
//! hash whether that file did ([`ParsedFiles`] parses only the files that
//! changed and keeps the rest as parsed, their Services shared).
//!
//! [`FileSource`] is the standalone agent's [configuration
//! source](crate::sources): it reads the directory now, then on every
//! change inotify reports and every resync, on a blocking thread, and
//! sends an update only when the bytes differ from the last reading's.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshlb_config::{Error, Located, Object, Rejected, SourceLocation, parse_documents};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::AgentError;
use crate::sources::{SourceGuard, SourceStream, SourceUpdate};

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

/// One configuration file as read, not yet parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileText {
    /// Its path, as errors name it.
    pub name: String,
    /// Its text.
    pub text: String,
    /// A hash of its text: equal texts have equal hashes.
    pub hash: u64,
}

/// The configuration files of a directory as read, not yet parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// Each file, in name order.
    pub files: Vec<FileText>,
    /// A hash of every file's name and content: equal readings have equal
    /// fingerprints, so an unchanged directory is recognised without
    /// parsing it.
    pub fingerprint: u64,
}

fn unreadable(file: String, message: String) -> Error {
    Error::Parse {
        location: SourceLocation {
            file: file.into(),
            line: 0,
        },
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
    let mut fingerprint = DefaultHasher::new();
    let mut read = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let name = file.display().to_string();
        match read_bounded(&file, limits.max_file_bytes) {
            Ok(text) => {
                let mut hasher = DefaultHasher::new();
                text.hash(&mut hasher);
                let hash = hasher.finish();
                (&name, hash).hash(&mut fingerprint);
                read.push(FileText { name, text, hash });
            }
            Err(why) => errors.push(unreadable(name, why.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(Reading {
            files: read,
            fingerprint: fingerprint.finish(),
        })
    } else {
        Err(Rejected { errors })
    }
}

/// Why a configuration file was not read.
#[derive(Debug, thiserror::Error)]
enum Unread {
    /// Opening or reading it failed.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// Larger than allowed.
    #[error(
        "{size} bytes is larger than the {max_bytes} bytes a configuration file may have (--max-config-file-bytes)"
    )]
    TooLarge {
        /// Its size, as far as read.
        size: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// Not text.
    #[error("not UTF-8 text ({0})")]
    NotText(#[from] std::string::FromUtf8Error),
}

/// A file's text, refused unread if it is larger than `max_bytes` (and
/// never read past that, should it grow meanwhile).
fn read_bounded(path: &Path, max_bytes: u64) -> Result<String, Unread> {
    use std::io::Read as _;
    let too_large = |size: u64| Unread::TooLarge { size, max_bytes };
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > max_bytes {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(String::from_utf8(bytes)?)
}

/// What one file parsed to: its objects, or every problem it has.
type FileParse = Result<Vec<Located<Object>>, Vec<Error>>;

/// The files of the last reading as parsed, by name, each with the hash of
/// the text it was parsed from: a reading parses only the files whose text
/// changed, so editing one file of many costs that file alone, and an
/// unchanged file's Services stay the same shared objects.
#[derive(Debug, Default)]
pub struct ParsedFiles {
    files: BTreeMap<String, (u64, FileParse)>,
    parsed: u64,
}

impl ParsedFiles {
    /// Every object of every file of `reading`. Every problem of every
    /// file is reported; any problem rejects the reading. Documents of
    /// other kinds (a Deployment beside its Service) are skipped with a
    /// notice in the log when their file is parsed.
    pub fn parse(&mut self, reading: &Reading) -> Result<Vec<Located<Object>>, Rejected> {
        let mut last = std::mem::take(&mut self.files);
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for file in &reading.files {
            let parse = match last.remove(&file.name) {
                Some((hash, parse)) if hash == file.hash => parse,
                _ => {
                    self.parsed += 1;
                    parse_documents(&file.text, &file.name).map(|parsed| {
                        for skipped in &parsed.skipped {
                            tracing::info!("{skipped}");
                        }
                        parsed.objects
                    })
                }
            };
            match &parse {
                Ok(parsed) => objects.extend(parsed.iter().cloned()),
                Err(e) => errors.extend(e.iter().cloned()),
            }
            self.files.insert(file.name.clone(), (file.hash, parse));
        }
        if errors.is_empty() {
            Ok(objects)
        } else {
            Err(Rejected { errors })
        }
    }

    /// How many files were parsed (a file read with unchanged text is
    /// not).
    pub fn files_parsed(&self) -> u64 {
        self.parsed
    }
}

/// How long after a change of the directory it is read: the other steps of
/// an editor's save, or of a ConfigMap's swap, land within it.
pub const CHANGE_DEBOUNCE: Duration = Duration::from_millis(50);

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

/// What the last reading of a [`FileSource`] was.
#[derive(Debug, Clone, PartialEq)]
enum LastReading {
    /// Files read, with this fingerprint (parsed or refused).
    Read(u64),
    /// The files could not be read, for these reasons.
    Unreadable(Rejected),
}

/// The standalone configuration source: see the module documentation.
#[derive(Debug)]
pub struct FileSource {
    dir: PathBuf,
    limits: ReadLimits,
    last: Option<LastReading>,
    parsed: u64,
    files: ParsedFiles,
}

impl FileSource {
    /// A source reading `dir` within `limits`; nothing is read yet.
    pub fn new(dir: &Path, limits: ReadLimits) -> FileSource {
        FileSource {
            dir: dir.to_path_buf(),
            limits,
            last: None,
            parsed: 0,
            files: ParsedFiles::default(),
        }
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many readings were parsed (a reading of unchanged files is not).
    pub fn readings_parsed(&self) -> u64 {
        self.parsed
    }

    /// How many files were parsed (a file whose text did not change since
    /// the last reading is not).
    pub fn files_parsed(&self) -> u64 {
        self.files.files_parsed()
    }

    /// Reads the directory now (blocking): `None` if it reads as the last
    /// time, otherwise the snapshot it holds or why it cannot be used.
    pub fn read(&mut self) -> Option<SourceUpdate> {
        let reading = match read_directory(&self.dir, &self.limits) {
            Ok(reading) => reading,
            Err(rejected) => {
                let last = LastReading::Unreadable(rejected.clone());
                if self.last.as_ref() == Some(&last) {
                    return None;
                }
                self.last = Some(last);
                return Some(SourceUpdate::unreadable(rejected));
            }
        };
        if self.last == Some(LastReading::Read(reading.fingerprint)) {
            return None;
        }
        self.last = Some(LastReading::Read(reading.fingerprint));
        self.parsed += 1;
        // A file that does not parse may hold Services: nothing of the
        // reading is served until it does.
        Some(match self.files.parse(&reading) {
            Ok(objects) => SourceUpdate::of_reading(&objects, Vec::new(), reading.fingerprint),
            Err(rejected) => SourceUpdate::unreadable(rejected),
        })
    }

    /// Runs the source on the current tokio runtime: reads now, then after
    /// every change of the directory and every `resync`, each time on a
    /// blocking thread, and sends what changed.
    pub fn spawn(self, resync: Duration) -> Result<SourceStream, AgentError> {
        let (watcher, mut changes) = watch(&self.dir, CHANGE_DEBOUNCE)?;
        let (tx, updates) = mpsc::channel(4);
        let task = tokio::spawn(async move {
            let _watcher = watcher;
            let mut source = self;
            let mut resync_timer = tokio::time::interval_at(tokio::time::Instant::now() + resync, resync);
            resync_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let read = tokio::task::spawn_blocking(move || {
                    let update = source.read();
                    (source, update)
                })
                .await;
                let update;
                (source, update) = match read {
                    Ok(read) => read,
                    Err(e) => {
                        tracing::error!("reading the configuration directory failed: {e}");
                        return;
                    }
                };
                if let Some(update) = update
                    && tx.send(update).await.is_err()
                {
                    return;
                }
                tokio::select! {
                    changed = changes.recv() => if changed.is_none() { return },
                    _ = resync_timer.tick() => {}
                }
            }
        });
        Ok(SourceStream::new(updates, SourceGuard::new(task)))
    }
}
