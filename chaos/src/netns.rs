//! Network namespaces: running commands, entering a namespace on one
//! thread, and sweeping away labs that were not torn down.
//!
//! Every lab namespace is named `mlb<pid>n<k>-<host>`: `<pid>` is the process
//! that built it, so a sweep can tell a live lab from one left behind by a
//! process that crashed or was killed.

use crate::error::LabError;
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Prefix of every namespace a lab creates.
pub const LAB_PREFIX: &str = "mlb";

/// Runs `program args...`, returning its standard output.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut command = Command::new(program);
    command.args(args);
    run_command(command, &format!("{program} {}", args.join(" ")))
}

/// Runs `command` (described as `what` in errors) with no standard input,
/// returning its standard output; a failure to start or a failed exit is
/// an error with its standard error.
pub fn run_command(mut command: Command, what: &str) -> Result<String, LabError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            program: what.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: what.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program args...` inside namespace `ns`.
pub(crate) fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Runs `f` on a thread that has entered namespace `ns`; sockets created
/// there stay in that namespace whichever thread uses them later.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = File::open(&path).map_err(|e| LabError::io(format!("open {path}"), e))?;
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| LabError::Sys {
                    what: format!("enter namespace {ns}"),
                    source,
                })?;
                Ok(f())
            })
            .join()
            .map_err(|_| LabError::Invalid(format!("a thread inside namespace {ns} panicked")))?
    })
}

/// The lab namespaces on this machine.
pub fn lab_namespaces() -> Result<Vec<String>, LabError> {
    Ok(run("ip", &["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(LAB_PREFIX))
        .map(str::to_owned)
        .collect())
}

/// The process that created lab namespace `name`, from its name.
pub fn namespace_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(LAB_PREFIX)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn process_alive(pid: i32) -> bool {
    !matches!(kill(Pid::from_raw(pid), None), Err(nix::errno::Errno::ESRCH))
}

/// Process IDs inside namespace `ns`.
pub(crate) fn pids_in(ns: &str) -> Result<Vec<i32>, LabError> {
    Ok(run("ip", &["netns", "pids", ns])?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// SIGKILLs every process in `ns` until none is left (5 s at most).
pub(crate) fn kill_all_in(ns: &str) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = pids_in(ns)?;
        if pids.is_empty() {
            return Ok(());
        }
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: format!("processes {pids:?} in {ns} to die"),
                waited: Duration::from_secs(5),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills every process in `ns` and deletes it.
pub(crate) fn destroy(ns: &str) -> Result<(), LabError> {
    kill_all_in(ns)?;
    run("ip", &["netns", "delete", ns]).map(|_| ())
}

/// Which leftover labs [`sweep`] removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepScope {
    /// Every lab namespace, live or not.
    All,
    /// Labs whose creating process no longer exists.
    Orphaned,
    /// Labs created by this process ID.
    Owner(i32),
    /// One lab, by its name (`mlb<pid>n<k>`).
    Lab(String),
}

impl SweepScope {
    /// Whether lab `name` (`mlb<pid>n<k>`) is one of those swept.
    pub fn selects_lab(&self, name: &str) -> bool {
        let owner = namespace_owner(name);
        match self {
            SweepScope::All => true,
            SweepScope::Orphaned => owner.is_none_or(|pid| !process_alive(pid)),
            SweepScope::Owner(pid) => owner == Some(*pid),
            SweepScope::Lab(lab) => name == lab,
        }
    }
}

/// Removes lab namespaces (killing their processes first), and the state
/// of their real Kubernetes nodes ([`crate::cluster::sweep`]); returns the
/// namespaces' names.
pub fn sweep(scope: &SweepScope) -> Result<Vec<String>, LabError> {
    crate::cluster::sweep(scope);
    let mut removed = Vec::new();
    for ns in lab_namespaces()? {
        // `<lab>-<host>`: the lab's name has no dash.
        let lab = ns.split('-').next().unwrap_or(&ns);
        if scope.selects_lab(lab) {
            destroy(&ns)?;
            removed.push(ns);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_comes_from_the_name() {
        assert_eq!(namespace_owner("mlb4242n3-node1"), Some(4242));
        assert_eq!(namespace_owner("mlbxn3-node1"), None);
        assert_eq!(namespace_owner("other"), None);
    }
}
