//! Checkpoints: the engine's event-time state, written atomically together
//! with the source position it covers (Kafka offsets), so a restart, after
//! `kill -9` too, resumes exactly where the durable state ends. A checkpoint
//! costs what changed since the last one, not the size of the state.
//!
//! Layout:
//! - `PATH`, the manifest: the magic `AIWCKPT5`, then in postcard's compact
//!   binary encoding the watermark, the ids of the live history segments, for
//!   each key-hash shard the files that hold it and its spill store's
//!   savepoint, the files of the emitted violations, and the source position
//!   (JSON text).
//! - `PATH.history/segment-N.arrow`: history rows, immutable once a step has
//!   them, each written once as an Arrow IPC file.
//! - `PATH.shards/`: each shard's state as a chain of files, a base (the whole
//!   shard) and the deltas written after it (what changed since the file
//!   before: the open obligations, early fulfilments and conversations that
//!   changed, the decided keys added and expired in order, the seen ids,
//!   which span only the allowed lateness). A checkpoint writes a delta for
//!   each shard that changed and rewrites at most one shard whole, the one
//!   whose deltas have grown largest against its base, so chains stay short and
//!   the cost of a checkpoint stays proportional to the change. The emitted
//!   violations are a chain of their own. A restore reads each base and
//!   applies its deltas in order, then replays expiry at the manifest's
//!   watermark (expiry is a function of the watermark, so deltas need not
//!   list what it dropped).
//!
//! Ids the state keeps as 128-bit keys are written as keys. Checkpoints of
//! earlier layouts (`AIWCKPT2` to `AIWCKPT4`) are refused with advice: move the
//! state away and aiwatch resumes from the committed Kafka offsets.
//!
//! Safety: the manifest and every shard file end with a trailer, `AIWSUM01`
//! and the SHA-256 of everything before it, checked before anything is
//! decoded. Each write keeps the manifest it replaces as `PATH.prev`, and the
//! files that one references until the next write supersedes it. A latest
//! checkpoint that is missing or damaged (bad checksum, cut short, a file
//! unreadable) falls back to the previous one with a warning, and is renamed
//! `PATH.damaged`; when both are damaged aiwatch refuses to start, saying how
//! to reset. Files are created with mode 0600 and folders with 0700.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::spill::Spill;
use super::state::{each_shard, Conversation, Conversations, Deadlines, DeadlinesChanges, DeadlinesChangesRef, HashMap, HashSet, Key, Shard};
use super::Engine;

const MAGIC: &[u8; 8] = b"AIWCKPT5";
/// Starts a shard file (a base or a delta).
const PART_MAGIC: &[u8; 8] = b"AIWPART1";
/// Starts the trailer: this tag, then the SHA-256 of all bytes before the tag.
const SUM_TAG: &[u8; 8] = b"AIWSUM01";
const SUM_LEN: usize = 8 + 32;
/// Layouts of earlier releases.
const MAGIC_OLD: [&[u8; 8]; 3] = [b"AIWCKPT2", b"AIWCKPT3", b"AIWCKPT4"];

/// A chain's deltas are folded into a new base once they outgrow the base
/// (and this floor), or once there are this many of them.
const COMPACT_FLOOR_BYTES: u64 = 256 << 10;
const MAX_DELTAS: usize = 64;

/// One file of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct FileRef {
    seq: u64,
    base: bool,
    bytes: u64,
}

/// A base and the deltas written after it, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Chain {
    files: Vec<FileRef>,
}

impl Chain {
    fn base_bytes(&self) -> u64 {
        self.files.first().map_or(0, |f| f.bytes)
    }

    fn delta_bytes(&self) -> u64 {
        self.files.iter().skip(1).map(|f| f.bytes).sum()
    }

    /// How badly it wants folding into a new base: above 1 it should be.
    fn pressure(&self) -> f64 {
        if self.files.len() > MAX_DELTAS {
            return f64::INFINITY;
        }
        self.delta_bytes() as f64 / self.base_bytes().max(COMPACT_FLOOR_BYTES) as f64
    }
}

/// A shard's files and its spill store's savepoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ShardRef {
    chain: Chain,
    savepoint: Option<u64>,
}

/// Where the durable state is: the parts of a manifest that name files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Chains {
    shards: Vec<ShardRef>,
    emitted: Chain,
    next_file: u64,
}

impl Chains {
    /// The shard files it names.
    fn names(&self) -> HashSet<String> {
        let mut names: HashSet<String> = self.emitted.files.iter().map(|f| file_name("emitted", f)).collect();
        for (i, s) in self.shards.iter().enumerate() {
            names.extend(s.chain.files.iter().map(|f| file_name(&shard_name(i), f)));
        }
        names
    }
}

fn shard_name(i: usize) -> String {
    format!("shard-{i:03}")
}

fn file_name(part: &str, f: &FileRef) -> String {
    format!("{part}-{:012}.{}", f.seq, if f.base { "base" } else { "delta" })
}

/// The manifest.
#[derive(Serialize, Deserialize)]
struct Manifest<P> {
    max_seen: Option<i64>,
    watermark: i64,
    segments: Vec<u64>,
    next_segment: u64,
    chains: Chains,
    emitted_swept: i64,
    /// The source position: JSON text (postcard cannot carry a free-form JSON value).
    position: P,
}

/// A whole shard, borrowed from the live state.
#[derive(Serialize)]
struct ShardBaseRef<'a> {
    seen: &'a BTreeMap<i64, HashSet<Key>>,
    requests: &'a Deadlines,
    artifacts: &'a Deadlines,
    conversations: &'a HashMap<Key, Conversation>,
}

#[derive(Deserialize)]
struct ShardBase {
    seen: BTreeMap<i64, HashSet<Key>>,
    requests: Deadlines,
    artifacts: Deadlines,
    conversations: HashMap<Key, Conversation>,
}

/// What changed in a shard since the file before.
#[derive(Serialize)]
struct ShardDeltaRef<'a> {
    seen: &'a BTreeMap<i64, HashSet<Key>>,
    requests: DeadlinesChangesRef<'a>,
    artifacts: DeadlinesChangesRef<'a>,
    conversations: Vec<(Key, Option<&'a Conversation>)>,
}

#[derive(Deserialize)]
struct ShardDelta {
    seen: BTreeMap<i64, HashSet<Key>>,
    requests: DeadlinesChanges,
    artifacts: DeadlinesChanges,
    conversations: Vec<(Key, Option<Conversation>)>,
}

/// A change to the emitted violations, replayed in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum EmittedOp {
    /// (rule id, subject, event time)
    Add(String, String, i64),
    /// Everything older than this was forgotten.
    Sweep(i64),
}

/// A checkpoint that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("checkpoint {path} is not an aiwatch checkpoint or is damaged ({why}); move it away to start from the committed Kafka offsets")]
    Corrupt { path: String, why: String },
    #[error(
        "checkpoint {path} cannot be used ({latest}), nor can its previous copy ({previous}). To reset, stop aiwatch and move the \
         state_dir away (e.g. `mv STATE_DIR STATE_DIR.damaged`): aiwatch then starts with empty state from the group's committed \
         Kafka offsets (alerts whose events came before them are not found again)"
    )]
    BothDamaged { path: String, latest: String, previous: String },
}

/// What a shard's checkpoint wrote: its file (if any) and its savepoint.
type ShardWrite = std::io::Result<(Option<FileRef>, Option<u64>)>;

impl Engine {
    /// Writes the state and the source `position` it covers to `path`:
    /// new history segments, a delta for each shard that changed (one shard
    /// whole when its chain is due for it), then the manifest, atomically; the
    /// manifest it replaces becomes `PATH.prev`. An error (a full disk) leaves
    /// the last good checkpoints as they were, and the next write covers the
    /// same changes.
    pub fn write_checkpoint(&mut self, path: &Path, position: serde_json::Value) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io { path: path.display().to_string(), source };
        debug_assert!(self.pending.is_none(), "flush the pipelined step before a checkpoint");
        let segments = self.write_segments(path).map_err(io)?;
        let dir = shards_dir(path);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io)?;

        let n = self.state().shard_count();
        let mut chains = self.durable.clone().filter(|c| c.shards.len() == n).unwrap_or_else(|| Chains {
            shards: vec![ShardRef::default(); n],
            next_file: self.durable.as_ref().map_or(0, |c| c.next_file),
            ..Chains::default()
        });
        // At most one shard is rewritten whole per checkpoint: the one whose deltas weigh most against its base.
        let compact = chains
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| (s.chain.pressure(), i))
            .filter(|(p, _)| *p > 1.0)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, i)| i);
        let first_seq = chains.next_file;
        chains.next_file += n as u64 + 1;
        let refs = &chains.shards;
        let writes: Vec<ShardWrite> = each_shard(
            &mut self.state.as_mut().expect("state present").shards,
            true,
            |i, shard| {
                let savepoint = match shard.spill.as_mut() {
                    Some(spill) => Some(spill.savepoint().map_err(std::io::Error::other)?),
                    None => None,
                };
                let seq = first_seq + i as u64;
                let whole = refs[i].chain.files.is_empty() || compact == Some(i);
                let file = if whole {
                    let base = ShardBaseRef {
                        seen: &shard.seen,
                        requests: &shard.requests,
                        artifacts: &shard.artifacts,
                        conversations: shard.conversations.all(),
                    };
                    Some(write_part(&dir, &shard_name(i), seq, true, &base)?)
                } else if shard.changed() {
                    let delta = ShardDeltaRef {
                        seen: &shard.seen,
                        requests: shard.requests.changes(),
                        artifacts: shard.artifacts.changes(),
                        conversations: shard.conversations.changes(),
                    };
                    Some(write_part(&dir, &shard_name(i), seq, false, &delta)?)
                } else {
                    None
                };
                Ok((file, savepoint))
            },
            || (),
        )
        .0;
        for (i, w) in writes.into_iter().enumerate() {
            let (file, savepoint) = w.map_err(io)?;
            let chain = &mut chains.shards[i];
            chain.savepoint = savepoint;
            match file {
                Some(f) if f.base => chain.chain.files = vec![f],
                Some(f) => chain.chain.files.push(f),
                None => {}
            }
        }
        // The emitted violations: a chain of their own.
        let seq = first_seq + n as u64;
        if chains.emitted.files.is_empty() || chains.emitted.pressure() > 1.0 {
            let all: Vec<(&str, &str, i64)> = self.emitted.iter().map(|((i, s), at)| (self.rules[*i].rule.id.as_str(), s.as_str(), *at)).collect();
            chains.emitted.files = vec![write_part(&dir, "emitted", seq, true, &all).map_err(io)?];
        } else if !self.emitted_log.is_empty() {
            chains.emitted.files.push(write_part(&dir, "emitted", seq, false, &self.emitted_log).map_err(io)?);
        }

        let manifest = Manifest {
            max_seen: self.state().max_seen,
            watermark: self.state().watermark,
            segments: segments.clone(),
            next_segment: self.state().history.next_segment_id(),
            chains: chains.clone(),
            emitted_swept: self.emitted_swept,
            position: position.to_string(),
        };
        write_summed(path, Some(&previous_path(path)), MAGIC, &manifest).map_err(io)?;

        // Durable now: what changed is in the files, and what neither durable checkpoint names can go.
        for shard in &mut self.state_mut().shards {
            shard.clear_changes();
        }
        self.emitted_log.clear();
        let previous = self.durable.replace(chains);
        self.forget_files(path, &segments, previous);
        Ok(())
    }

    /// Writes the history segments no checkpoint holds yet; returns the live segments' ids.
    fn write_segments(&mut self, path: &Path) -> std::io::Result<Vec<u64>> {
        let dir = segment_dir(path);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let mut live = Vec::new();
        for (id, batch) in self.state.as_ref().expect("state present").history.segments() {
            live.push(id);
            if !self.persisted_segments.contains(&id) {
                write_atomically(&segment_file(&dir, id), None, |w| {
                    let mut ipc = StreamWriter::try_new(w, &batch.schema()).map_err(std::io::Error::other)?;
                    ipc.write(batch).map_err(std::io::Error::other)?;
                    ipc.finish().map_err(std::io::Error::other)
                })?;
                self.persisted_segments.insert(id);
            }
        }
        Ok(live)
    }

    /// Deletes the segments and shard files that neither the latest checkpoint
    /// nor the one before it (`previous`) names.
    fn forget_files(&mut self, path: &Path, live_segments: &[u64], previous: Option<Chains>) {
        let live: HashSet<u64> = live_segments.iter().copied().collect();
        let kept_segments: HashSet<u64> = live.iter().chain(self.previous_segments.iter()).copied().collect();
        if let Ok(entries) = std::fs::read_dir(segment_dir(path)) {
            for e in entries.flatten() {
                let name = e.file_name();
                let id = name.to_str().and_then(|n| n.strip_prefix("segment-")?.strip_suffix(".arrow")?.parse::<u64>().ok());
                if id.is_some_and(|id| !kept_segments.contains(&id)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        self.persisted_segments.retain(|id| live.contains(id));
        self.previous_segments = live;
        let mut kept = self.durable.as_ref().map(Chains::names).unwrap_or_default();
        kept.extend(previous.as_ref().map(Chains::names).unwrap_or_default());
        if let Ok(entries) = std::fs::read_dir(shards_dir(path)) {
            for e in entries.flatten() {
                if e.file_name().to_str().is_some_and(|n| !kept.contains(n)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Loads a checkpoint written by [`Engine::write_checkpoint`]; returns the
    /// source position it covers, or `None` when there is no checkpoint yet.
    /// A missing or damaged latest checkpoint falls back to `PATH.prev` with a
    /// warning (the damaged file is kept as `PATH.damaged`); two damaged ones
    /// are an error that says how to reset.
    pub fn restore_checkpoint(&mut self, path: &Path) -> Result<Option<serde_json::Value>, CheckpointError> {
        let previous = previous_path(path);
        let why = |e: CheckpointError| match e {
            CheckpointError::Io { source, .. } => source.to_string(),
            CheckpointError::Corrupt { why, .. } => why,
            other => other.to_string(),
        };
        let latest = match self.restore_one(path, path) {
            Ok(Some(position)) => return Ok(Some(position)),
            Ok(None) if !previous.exists() => return Ok(None),
            Ok(None) => "missing".to_string(),
            Err(e) => why(e),
        };
        match self.restore_one(&previous, path) {
            Ok(Some(position)) => {
                tracing::warn!(path = %path.display(), problem = %latest, previous = %previous.display(),
                    "the latest checkpoint cannot be used; restored the previous one (events since it are read again)");
                if path.exists() {
                    let mut damaged = path.as_os_str().to_owned();
                    damaged.push(".damaged");
                    // So that the next checkpoint does not keep it as the previous one.
                    std::fs::rename(path, &damaged).map_err(|source| CheckpointError::Io { path: path.display().to_string(), source })?;
                }
                Ok(Some(position))
            }
            Ok(None) => Err(CheckpointError::BothDamaged { path: path.display().to_string(), latest, previous: "missing".into() }),
            Err(e) => Err(CheckpointError::BothDamaged { path: path.display().to_string(), latest, previous: why(e) }),
        }
    }

    /// Loads one manifest and the files it names, checksums first; `None`
    /// when it does not exist. Its history segments and shard files are those
    /// of the checkpoint at `base` (the latest and the previous one share
    /// their folders).
    fn restore_one(&mut self, path: &Path, base: &Path) -> Result<Option<serde_json::Value>, CheckpointError> {
        let p = path.display().to_string();
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Io { path: p, source }),
        };
        let corrupt = |why: String| CheckpointError::Corrupt { path: p.clone(), why };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| corrupt(e.to_string()))?;
        let body = verified(&bytes).map_err(|why| corrupt(why.into()))?;
        if MAGIC_OLD.iter().any(|m| body.starts_with(*m)) {
            return Err(corrupt(format!("written by an earlier aiwatch, layout {}", String::from_utf8_lossy(&body[..8]))));
        }
        let Some(body) = body.strip_prefix(MAGIC) else { return Err(corrupt("bad magic".into())) };
        let manifest: Manifest<String> = postcard::from_bytes(body).map_err(|e| corrupt(e.to_string()))?;
        let text = self.install(manifest, base).map_err(corrupt)?;
        serde_json::from_str(&text).map(Some).map_err(|e| corrupt(format!("source position: {e}")))
    }

    /// Puts a read manifest's state in place (shards from their chains,
    /// history segments from their files) and returns its position.
    fn install<P>(&mut self, m: Manifest<P>, path: &Path) -> Result<P, String> {
        let dir = shards_dir(path);
        let (watermark, lateness) = (m.watermark, self.state().lateness);
        let n = m.chains.shards.len();
        if !(1..=super::state::MAX_SHARDS).contains(&n) {
            return Err(format!("it names {n} shards"));
        }
        let state = self.state_mut();
        if n != state.shard_count() {
            tracing::info!(checkpoint = m.chains.shards.len(), configured = state.shard_count(), "the state keeps the shard count of its checkpoint");
        }
        state.reshard(m.chains.shards.len());
        let refs = &m.chains.shards;
        let restored: Vec<Result<(), String>> =
            each_shard(&mut state.shards, true, |i, shard| restore_shard(shard, &dir, (i, n), &refs[i], watermark, lateness), || ()).0;
        restored.into_iter().collect::<Result<Vec<()>, String>>()?;

        let segment_dir = segment_dir(path);
        let mut segments = Vec::with_capacity(m.segments.len());
        for id in &m.segments {
            let file = segment_file(&segment_dir, *id);
            let f = File::open(&file).map_err(|e| format!("history segment {}: {e}", file.display()))?;
            for b in StreamReader::try_new(BufReader::new(f), None).map_err(|e| e.to_string())? {
                segments.push((*id, b.map_err(|e| e.to_string())?));
            }
        }
        let state = self.state_mut();
        state.max_seen = m.max_seen;
        state.watermark = m.watermark;
        state.history.restore(segments, m.next_segment);
        self.persisted_segments = m.segments.iter().copied().collect();
        self.previous_segments = self.persisted_segments.clone();

        let index: std::collections::HashMap<&str, usize> = self.rules.iter().enumerate().map(|(i, r)| (r.rule.id.as_str(), i)).collect();
        let mut emitted = HashMap::default();
        for (n, f) in m.chains.emitted.files.iter().enumerate() {
            let bytes = read_part(&dir, "emitted", f)?;
            let ops: Vec<EmittedOp> = if n == 0 {
                let all: Vec<(String, String, i64)> = postcard::from_bytes(&bytes).map_err(|e| format!("emitted violations: {e}"))?;
                all.into_iter().map(|(r, s, at)| EmittedOp::Add(r, s, at)).collect()
            } else {
                postcard::from_bytes(&bytes).map_err(|e| format!("emitted violations: {e}"))?
            };
            for op in ops {
                match op {
                    EmittedOp::Add(rule, subject, at) => {
                        if let Some(i) = index.get(rule.as_str()) {
                            emitted.insert((*i, subject), at);
                        }
                    }
                    EmittedOp::Sweep(cutoff) => emitted.retain(|_, at| *at >= cutoff),
                }
            }
        }
        self.emitted = emitted;
        self.emitted_swept = m.emitted_swept;
        self.emitted_log.clear();
        self.durable = Some(m.chains);
        Ok(m.position)
    }
}

/// Rebuilds shard `i` from its chain and rolls its spill store back to the checkpoint's savepoint.
fn restore_shard(shard: &mut Shard, dir: &Path, (i, n): (usize, usize), r: &ShardRef, watermark: i64, lateness: i64) -> Result<(), String> {
    let name = shard_name(i);
    for (n, f) in r.chain.files.iter().enumerate() {
        let bytes = read_part(dir, &name, f)?;
        let bad = |e: postcard::Error| format!("{}: {e}", file_name(&name, f));
        if n == 0 {
            let base: ShardBase = postcard::from_bytes(&bytes).map_err(bad)?;
            shard.seen = base.seen;
            shard.requests = base.requests;
            shard.requests.reindex();
            shard.artifacts = base.artifacts;
            shard.artifacts.reindex();
            shard.conversations = Conversations::from_map(base.conversations);
        } else {
            let delta: ShardDelta = postcard::from_bytes(&bytes).map_err(bad)?;
            shard.seen = delta.seen;
            shard.requests.apply(delta.requests);
            shard.artifacts.apply(delta.artifacts);
            for (k, c) in delta.conversations {
                shard.conversations.put(k, c);
            }
        }
    }
    shard.requests.reindex();
    shard.artifacts.reindex();
    shard.conversations.reindex();

    // The spill store goes back to what this checkpoint saw.
    let spill = shard.spill.take();
    let (requests, artifacts) = match (r.savepoint, spill, shard.spill_path.clone()) {
        (None, _, None) => (0, 0),
        (None, spill, Some(file)) => {
            drop(spill);
            // Written after this checkpoint: nothing in it belongs to the state restored.
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("spill store {}: {e}", file.display())),
            }
            (0, 0)
        }
        (Some(_), _, None) => return Err("it names a spill store, and this engine has none configured".into()),
        (Some(id), spill, Some(file)) => {
            let mut spill = match spill {
                Some(s) => s,
                None => Spill::open(Some(&file), false, n).map_err(|e| e.to_string())?,
            };
            let counts = spill.restore(Some(id)).map_err(|e| e.to_string())?;
            shard.spill = Some(spill);
            counts
        }
    };
    shard.requests.spilled = requests;
    shard.artifacts.spilled = artifacts;
    // Expiry is a function of the watermark: what the live state had dropped goes again.
    shard.expire(watermark, lateness);
    shard.clear_changes();
    Ok(())
}

/// Writes one chain file (`PART_MAGIC`, postcard, checksum trailer) atomically.
fn write_part<T: Serialize>(dir: &Path, part: &str, seq: u64, base: bool, value: &T) -> std::io::Result<FileRef> {
    let mut f = FileRef { seq, base, bytes: 0 };
    let path = dir.join(file_name(part, &f));
    write_summed(&path, None, PART_MAGIC, value)?;
    f.bytes = std::fs::metadata(&path)?.len();
    Ok(f)
}

/// The body of a chain file, its checksum verified.
fn read_part(dir: &Path, part: &str, f: &FileRef) -> Result<Vec<u8>, String> {
    let path = dir.join(file_name(part, f));
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let body = verified(&bytes).map_err(|why| format!("{}: {why}", path.display()))?;
    let body = body.strip_prefix(PART_MAGIC).ok_or_else(|| format!("{}: bad magic", path.display()))?;
    Ok(body.to_vec())
}

/// Writes `magic`, `value` in postcard and the checksum trailer to `path`,
/// atomically, streamed through the checksum (no copy of the state in memory).
fn write_summed<T: Serialize>(path: &Path, keep: Option<&Path>, magic: &[u8; 8], value: &T) -> std::io::Result<()> {
    write_atomically(path, keep, |w| {
        let mut summed = Summed { inner: w, hash: Sha256::new() };
        summed.write_all(magic)?;
        postcard::to_io(value, &mut summed).map_err(std::io::Error::other)?;
        let digest = summed.hash.finalize();
        w.write_all(SUM_TAG)?;
        w.write_all(&digest)
    })
}

fn shards_dir(checkpoint: &Path) -> PathBuf {
    let mut name = checkpoint.file_name().unwrap_or_default().to_os_string();
    name.push(".shards");
    checkpoint.with_file_name(name)
}

fn segment_dir(checkpoint: &Path) -> PathBuf {
    let mut name = checkpoint.file_name().unwrap_or_default().to_os_string();
    name.push(".history");
    checkpoint.with_file_name(name)
}

fn segment_file(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("segment-{id:012}.arrow"))
}

/// `PATH.prev`: the checkpoint before the latest.
fn previous_path(checkpoint: &Path) -> PathBuf {
    let mut name = checkpoint.as_os_str().to_owned();
    name.push(".prev");
    PathBuf::from(name)
}

/// The bytes before the trailer, if the trailer's checksum matches them.
fn verified(bytes: &[u8]) -> Result<&[u8], &'static str> {
    if bytes.len() < SUM_LEN {
        return Err("too short to hold a checksum: cut short, or written by an earlier aiwatch");
    }
    let (body, trailer) = bytes.split_at(bytes.len() - SUM_LEN);
    if &trailer[..8] != SUM_TAG {
        return Err("no checksum trailer: cut short, or written by an earlier aiwatch");
    }
    if Sha256::digest(body).as_slice() != &trailer[8..] {
        return Err("checksum mismatch: the file was damaged after it was written");
    }
    Ok(body)
}

/// A writer that hashes what passes through it.
struct Summed<'a, W: Write> {
    inner: &'a mut W,
    hash: Sha256,
}

impl<W: Write> Write for Summed<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a file whole or not at all: temporary file (mode 0600), fsync,
/// rename, fsync of the folder. With `keep`, the file it replaces is renamed
/// there first (a crash between the two renames leaves only `keep`, which
/// [`Engine::restore_checkpoint`] falls back to). On an error the temporary
/// file is removed, so a full disk gets its space back.
fn write_atomically(path: &Path, keep: Option<&Path>, write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        let mut w = BufWriter::new(f);
        write(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(keep) = keep {
        match std::fs::rename(path, keep) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::CheckpointError;
    use crate::decode::Decoder;
    use crate::engine::{Engine, EngineConfig};
    use crate::event::{Origin, RawBatch};
    use crate::generate::{Generator, GeneratorConfig, DEMO_POLICY};
    use crate::policy::Policy;

    fn batches(n: usize, per: usize) -> Vec<RawBatch> {
        let mut g = Generator::new(GeneratorConfig { events_per_second: 5.0, max_disorder_seconds: 20.0, duplicate_rate: 0.01, ..Default::default() });
        let mut out = Vec::new();
        let mut line = Vec::new();
        for chunk in 0..n.div_ceil(per) {
            let mut raw = RawBatch::default();
            for i in 0..per.min(n - chunk * per) {
                line.clear();
                g.next_into(&mut line);
                raw.push(&line, Origin::Kafka { topic: "t".into(), partition: 0, offset: (chunk * per + i) as i64 });
            }
            out.push(raw);
        }
        out
    }

    async fn engine() -> Engine {
        let policy = Arc::new(Policy::parse(DEMO_POLICY, "demo").unwrap());
        Engine::new(policy, crate::rules::builtin(), &EngineConfig::default()).await.unwrap()
    }

    async fn feed(e: &mut Engine, raws: &[RawBatch], out: &mut Vec<(String, String)>) {
        let mut d = Decoder::new();
        for raw in raws {
            let r = e.step(d.decode(raw).events).await.unwrap();
            out.extend(r.alerts.into_iter().map(|a| (a.rule_id, a.subject)));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_from_a_checkpoint_finds_exactly_what_one_run_finds() {
        let raws = batches(12_000, 500);
        let mut whole = Vec::new();
        let mut e = engine().await;
        feed(&mut e, &raws, &mut whole).await;
        whole.extend(e.finish().await.unwrap().alerts.into_iter().map(|a| (a.rule_id, a.subject)));
        let expected: BTreeSet<_> = whole.iter().cloned().collect();
        assert!(expected.iter().any(|(r, _)| r == "retention.expired"), "the stream has absence violations");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt");
        let mut first = Vec::new();
        let mut e = engine().await;
        feed(&mut e, &raws[..11], &mut first).await;
        e.write_checkpoint(&path, serde_json::json!({"next": 5500})).unwrap();
        drop(e);

        let mut e = engine().await;
        assert_eq!(e.restore_checkpoint(&path).unwrap(), Some(serde_json::json!({"next": 5500})));
        let mut second = Vec::new();
        feed(&mut e, &raws[11..], &mut second).await;
        second.extend(e.finish().await.unwrap().alerts.into_iter().map(|a| (a.rule_id, a.subject)));

        let firsts: BTreeSet<_> = first.iter().cloned().collect();
        assert!(second.iter().all(|v| !firsts.contains(v)), "a violation emitted before the checkpoint is not emitted again");
        let union: BTreeSet<_> = first.into_iter().chain(second).collect();
        assert_eq!(union, expected);
    }

    #[tokio::test]
    async fn a_damaged_checkpoint_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt");
        std::fs::write(&path, b"not a checkpoint at all").unwrap();
        let err = engine().await.restore_checkpoint(&path).unwrap_err().to_string();
        assert!(err.contains("move the state_dir away") && err.contains("cut short"), "{err}");
        assert_eq!(engine().await.restore_checkpoint(&dir.path().join("none")).unwrap(), None);
    }

    /// Two checkpoints of a stream, at positions 1 and 2, and the path.
    async fn two_checkpoints(dir: &std::path::Path) -> std::path::PathBuf {
        let raws = batches(3_000, 500);
        let path = dir.join("ckpt");
        let mut e = engine().await;
        feed(&mut e, &raws[..3], &mut Vec::new()).await;
        e.write_checkpoint(&path, serde_json::json!(1)).unwrap();
        feed(&mut e, &raws[3..], &mut Vec::new()).await;
        e.write_checkpoint(&path, serde_json::json!(2)).unwrap();
        path
    }

    fn damage(path: &std::path::Path) {
        let mut bytes = std::fs::read(path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(path, bytes).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_latest_checkpoint_falls_back_to_the_previous_one_with_its_history() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = two_checkpoints(dir.path()).await;
        let prev = super::previous_path(&path);
        for f in [&path, &prev] {
            assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{}", f.display());
        }
        for seg in std::fs::read_dir(super::segment_dir(&path)).unwrap() {
            assert_eq!(seg.unwrap().metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(engine().await.restore_checkpoint(&path).unwrap(), Some(serde_json::json!(2)));

        damage(&path);
        let mut e = engine().await;
        assert_eq!(e.restore_checkpoint(&path).unwrap(), Some(serde_json::json!(1)), "the previous checkpoint, with the segments it names");
        assert!(e.state().history.segments().next().is_some(), "history restored");
        assert!(!path.exists() && dir.path().join("ckpt.damaged").exists(), "the damaged one is set aside");
        // The next checkpoint keeps the good previous one as its previous.
        e.write_checkpoint(&path, serde_json::json!(3)).unwrap();
        assert_eq!(engine().await.restore_checkpoint(&path).unwrap(), Some(serde_json::json!(3)));
        damage(&path);
        assert_eq!(engine().await.restore_checkpoint(&path).unwrap(), Some(serde_json::json!(1)));
        assert!(prev.exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_latest_falls_back_and_a_damaged_pair_refuses_with_a_way_to_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = two_checkpoints(dir.path()).await;
        let prev = super::previous_path(&path);
        // A crash between the two renames of a write leaves only the previous one.
        std::fs::rename(&path, dir.path().join("elsewhere")).unwrap();
        assert_eq!(engine().await.restore_checkpoint(&path).unwrap(), Some(serde_json::json!(1)));

        std::fs::rename(dir.path().join("elsewhere"), &path).unwrap();
        damage(&path);
        damage(&prev);
        let err = engine().await.restore_checkpoint(&path).unwrap_err();
        assert!(matches!(err, CheckpointError::BothDamaged { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("checksum mismatch") && text.contains("move the") && text.contains("state_dir away"), "{text}");

        // Cut short: no trailer.
        let bytes = std::fs::read(&prev).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let text = engine().await.restore_checkpoint(&path).unwrap_err().to_string();
        assert!(text.contains("cut short"), "{text}");
    }
}
