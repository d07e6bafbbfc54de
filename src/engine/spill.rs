//! Open obligations on disk.
//!
//! A stored artifact is owed a deletion for up to its retention (30 to 365
//! days), so a long-running engine holds millions of open obligations. When
//! the state passes `state_memory_limit`, the open obligations in memory move
//! to an embedded B-tree store ([redb](https://www.redb.org)): the artifacts'
//! first, then the requests' if the state is still over. In memory a spilled
//! obligation costs nothing; a later event for its key reads it from the
//! store, and the watermark takes it out of the store's deadline index when it
//! is due. Each obligation is spilled at most once, so the cost is amortised.
//!
//! Tables, per kind of obligation: `open_*` (key -> the obligation, postcard)
//! and `due_*` ((deadline, key) -> ()), the deadline order the watermark reads.
//!
//! Between checkpoints the store commits without fsync. A checkpoint makes a
//! persistent savepoint and records its id (see [`super::checkpoint`]); a
//! restore rolls the store back to the savepoint its checkpoint names, so what
//! is on disk always matches the checkpoint it is read with, after `kill -9`
//! too. The two newest savepoints are kept (the latest checkpoint's and the
//! previous one's, which a damaged latest checkpoint falls back to).
//!
//! A store that cannot be written or read (a full or failing disk) stops the
//! engine with a message: the state would otherwise be wrong. A restart
//! resumes from the last checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, Durability, ReadableTable as _, ReadableTableMetadata as _, TableDefinition, WriteTransaction};

use super::state::{Key, Obligation};

/// The stores' file name in `state_dir`, beside the checkpoint: each shard's
/// store is named after it (`spill-000.redb`, see [`shard_file`]).
pub const SPILL_FILE: &str = "spill.redb";

/// Memory the stores together may use to cache their pages (redb's default is
/// 1 GiB a store, more than the state they relieve).
const CACHE_BYTES: usize = 64 << 20;

/// The store of shard `i`, named after `base` (`spill.redb` -> `spill-003.redb`).
pub fn shard_file(base: &Path, i: usize) -> PathBuf {
    let stem = base.file_stem().map_or_else(|| "spill".into(), |s| s.to_string_lossy().into_owned());
    let ext = base.extension().map_or_else(|| "redb".into(), |s| s.to_string_lossy().into_owned());
    base.with_file_name(format!("{stem}-{i:03}.{ext}"))
}

/// Bytes the shards' stores named after `base` take on disk.
pub fn stores_bytes(base: &Path) -> u64 {
    let (Some(dir), Some(stem)) = (base.parent(), base.file_stem().and_then(|s| s.to_str())) else { return 0 };
    let prefix = format!("{stem}-");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".redb")))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Which obligations a pair of tables holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Requests,
    Artifacts,
}

impl Kind {
    fn open(self) -> TableDefinition<'static, u128, &'static [u8]> {
        match self {
            Kind::Requests => TableDefinition::new("open_requests"),
            Kind::Artifacts => TableDefinition::new("open_artifacts"),
        }
    }

    fn due(self) -> TableDefinition<'static, (i64, u128), ()> {
        match self {
            Kind::Requests => TableDefinition::new("due_requests"),
            Kind::Artifacts => TableDefinition::new("due_artifacts"),
        }
    }
}

/// The store cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("spill store {path}: {message}")]
pub struct SpillError {
    pub path: String,
    pub message: String,
}

/// The on-disk store of spilled obligations.
pub struct Spill {
    db: Database,
    path: PathBuf,
    /// A scratch store (`scan`), removed when dropped.
    scratch: bool,
    /// The savepoint of the latest checkpoint, kept with the next one's.
    latest: Option<u64>,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill").field("path", &self.path).field("latest", &self.latest).finish()
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        if self.scratch {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Spill {
    /// Opens the store at `path`, or a scratch store in the temporary folder for
    /// `None`. `fresh` starts it empty: a store left by a run that crashed
    /// before its first checkpoint holds nothing of the state. `stores`: how
    /// many stores share the page cache (one a shard).
    pub fn open(path: Option<&Path>, fresh: bool, stores: usize) -> Result<Spill, SpillError> {
        static SCRATCH: AtomicU64 = AtomicU64::new(0);
        let (path, scratch) = match path {
            Some(p) => (p.to_path_buf(), false),
            None => {
                let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
                (std::env::temp_dir().join(format!("aiwatch-spill-{}-{n}.redb", std::process::id())), true)
            }
        };
        if scratch || fresh {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpillError { path: path.display().to_string(), message: e.to_string() }),
            }
        }
        let db = Database::builder().set_cache_size(CACHE_BYTES / stores.max(1)).create(&path).map_err(|e| SpillError {
            path: path.display().to_string(),
            message: format!("{e}; check that the folder is writable and has free space"),
        })?;
        Ok(Spill { db, path, scratch, latest: None })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, e: impl std::fmt::Display) -> SpillError {
        SpillError { path: self.path.display().to_string(), message: e.to_string() }
    }

    /// A write transaction that commits without fsync (a checkpoint's savepoint makes it durable).
    pub fn begin(&self) -> WriteTransaction {
        let run = || -> Result<WriteTransaction, redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::None)?;
            Ok(txn)
        };
        run().unwrap_or_else(|e| fatal(&self.fail(e)))
    }

    pub fn commit(&self, txn: WriteTransaction) {
        txn.commit().unwrap_or_else(|e| fatal(&self.fail(e)))
    }

    /// Makes everything committed so far durable as a savepoint, and drops the
    /// savepoints older than the previous one. Returns the savepoint's id.
    pub fn savepoint(&mut self) -> Result<u64, SpillError> {
        let txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        let id = txn.persistent_savepoint().map_err(|e| self.fail(e))?;
        let keep = [Some(id), self.latest];
        let old: Vec<u64> = txn.list_persistent_savepoints().map_err(|e| self.fail(e))?.filter(|s| !keep.contains(&Some(*s))).collect();
        for s in old {
            txn.delete_persistent_savepoint(s).map_err(|e| self.fail(e))?;
        }
        txn.commit().map_err(|e| self.fail(e))?;
        self.latest = Some(id);
        Ok(id)
    }

    /// Rolls the store back to savepoint `id` (or empties it, for a checkpoint
    /// taken before anything spilled). Returns how many obligations of each
    /// kind it then holds: (requests, artifacts).
    pub fn restore(&mut self, id: Option<u64>) -> Result<(usize, usize), SpillError> {
        let mut txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        match id {
            Some(id) => {
                let sp = txn.get_persistent_savepoint(id).map_err(|e| self.fail(format!("savepoint {id}: {e}")))?;
                txn.restore_savepoint(&sp).map_err(|e| self.fail(format!("savepoint {id}: {e}")))?;
            }
            None => {
                for kind in [Kind::Requests, Kind::Artifacts] {
                    txn.delete_table(kind.open()).map_err(|e| self.fail(e))?;
                    txn.delete_table(kind.due()).map_err(|e| self.fail(e))?;
                }
            }
        }
        let counts = {
            let len = |kind: Kind| -> Result<usize, SpillError> {
                let t = txn.open_table(kind.open()).map_err(|e| self.fail(e))?;
                Ok(t.len().map_err(|e| self.fail(e))? as usize)
            };
            (len(Kind::Requests)?, len(Kind::Artifacts)?)
        };
        txn.commit().map_err(|e| self.fail(e))?;
        self.latest = id;
        Ok(counts)
    }

    /// Bytes the store's file takes on disk.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

/// The engine cannot go on with a state it cannot read or write.
fn fatal(e: &SpillError) -> ! {
    panic!("{e}: the engine state cannot be kept; free disk space or fix the disk, then restart (aiwatch resumes from its last checkpoint)")
}

fn ok<T, E: std::fmt::Display>(path: &Path, r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| fatal(&SpillError { path: path.display().to_string(), message: e.to_string() }))
}

/// One kind's tables, open in a step's transaction.
pub struct Tables<'t> {
    open: redb::Table<'t, u128, &'static [u8]>,
    due: redb::Table<'t, (i64, u128), ()>,
    path: &'t Path,
}

impl<'t> Tables<'t> {
    pub fn open(spill: &'t Spill, txn: &'t WriteTransaction, kind: Kind) -> Tables<'t> {
        let run = || -> Result<Tables<'t>, redb::Error> {
            Ok(Tables { open: txn.open_table(kind.open())?, due: txn.open_table(kind.due())?, path: &spill.path })
        };
        run().unwrap_or_else(|e| fatal(&spill.fail(e)))
    }


    pub fn get(&self, k: Key) -> Option<Obligation> {
        let got = ok(self.path, self.open.get(k));
        got.map(|v| ok(self.path, postcard::from_bytes(v.value())))
    }

    /// Stores `o` under `k` (replacing what was there) and indexes its deadline.
    pub fn put(&mut self, k: Key, o: &Obligation) {
        let bytes = ok(self.path, postcard::to_allocvec(o));
        ok(self.path, self.open.insert(k, bytes.as_slice()).map(|_| ()));
        ok(self.path, self.due.insert((o.deadline, k), ()).map(|_| ()));
    }

    /// Replaces the obligation under `k`, whose deadline is unchanged (a fulfilment).
    pub fn update(&mut self, k: Key, o: &Obligation) {
        let bytes = ok(self.path, postcard::to_allocvec(o));
        ok(self.path, self.open.insert(k, bytes.as_slice()).map(|_| ()));
    }

    /// Every key held, for rebuilding the in-memory filter.
    pub fn keys(&self) -> Vec<Key> {
        let range = ok(self.path, self.open.range::<u128>(..));
        range.map(|r| ok(self.path, r).0.value()).collect()
    }

    /// Forgets the deadline entry of an obligation being replaced.
    pub fn unindex(&mut self, k: Key, deadline: i64) {
        ok(self.path, self.due.remove((deadline, k)).map(|_| ()));
    }

    /// Takes the obligations due at `watermark` (before it, or at it when `inclusive`), in (deadline, key) order.
    pub fn take_due(&mut self, watermark: i64, inclusive: bool) -> Vec<(Key, Obligation)> {
        let end = if inclusive { (watermark, u128::MAX) } else { (watermark.saturating_sub(1), u128::MAX) };
        let path = self.path;
        let due: Vec<(i64, u128)> = {
            let range = ok(path, self.due.range((i64::MIN, 0u128)..=end));
            range.map(|r| ok(path, r).0.value()).collect()
        };
        let mut out = Vec::with_capacity(due.len());
        for (deadline, k) in due {
            ok(path, self.due.remove((deadline, k)).map(|_| ()));
            let removed = ok(path, self.open.remove(k)).map(|v| ok(path, postcard::from_bytes::<Obligation>(v.value())));
            if let Some(o) = removed {
                out.push((k, o));
            }
        }
        out
    }
}
