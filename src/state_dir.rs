//! The `state_dir` of `aiwatch run`: created private (mode 0700) and held with
//! an exclusive lock for the life of the process, so two processes never mix
//! or delete each other's checkpoints.
//!
//! The lock is an OS file lock (`flock`) on `state_dir/lock`, released by the
//! kernel when the process ends however it ends (`kill -9` included), so a
//! stale lock file never blocks a restart. The file holds the holder's pid,
//! host and start time, for the message a second process prints.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("cannot create state_dir {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot open the lock file {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error(
        "state_dir {path} is in use by another aiwatch ({holder}); run one aiwatch per state_dir, \
         or give this one a state_dir of its own"
    )]
    Locked { path: PathBuf, holder: String },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
}

/// A locked state directory; the lock is held until this is dropped or the process ends.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates `path` (mode 0700) if needed and takes its lock, or says who holds it.
    pub fn open(path: &Path) -> Result<StateDir, StateDirError> {
        if !path.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|source| StateDirError::Create { path: path.to_owned(), source })?;
        }
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(state_dir = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "state_dir is readable by other users; its checkpoints hold tenant and event ids (chmod 700 it)");
            }
        }
        let lock_path = path.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| StateDirError::Open { path: lock_path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StateDirError::Locked { path: path.to_owned(), holder: describe_holder(&text) });
            }
            Err(TryLockError::Error(source)) => return Err(StateDirError::Lock { path: lock_path, source }),
        }
        // Holding the lock: say who we are. Best effort; the lock is what counts.
        let me = format!("pid={}\nhost={}\nstarted={}\n", std::process::id(), hostname(), chrono::Utc::now().to_rfc3339());
        let written = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(me.as_bytes())).and_then(|()| file.sync_data());
        if let Err(e) = written {
            tracing::warn!(path = %lock_path.display(), error = %e, "cannot write the holder into the lock file");
        }
        Ok(StateDir { path: path.to_owned(), _lock: file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// "pid 12 on host a, since ..." from the lock file's `key=value` lines.
fn describe_holder(text: &str) -> String {
    let get = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::trim).filter(|v| !v.is_empty());
    match (get("pid"), get("host")) {
        (Some(pid), Some(host)) => match get("started") {
            Some(since) => format!("pid {pid} on host {host}, since {since}"),
            None => format!("pid {pid} on host {host}"),
        },
        _ => "holder unknown: it has not written the lock file yet".to_string(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_host() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b/state");
        let first = StateDir::open(&state).unwrap();
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(state.join("lock")).unwrap().permissions().mode() & 0o777, 0o600);
        let e = StateDir::open(&state).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())) && e.contains(&hostname()), "{e}");
        assert!(e.contains(&state.display().to_string()), "{e}");
        drop(first);
        // Released on drop (and by the kernel when a process dies): the next one gets it.
        let again = StateDir::open(&state).unwrap();
        assert_eq!(again.path(), state);
    }

    #[test]
    fn an_existing_folder_keeps_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("checkpoint.aiwatch"), b"x").unwrap();
        let _held = StateDir::open(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("checkpoint.aiwatch")).unwrap(), b"x");
    }

    #[test]
    fn the_holder_is_described_from_the_lock_file() {
        assert_eq!(describe_holder("pid=7\nhost=h\nstarted=t\n"), "pid 7 on host h, since t");
        assert!(describe_holder("").contains("unknown"));
    }
}
