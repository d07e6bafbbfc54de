//! Checkpoints: the engine's event-time state, written atomically (temporary
//! file, fsync, rename) together with the source position it covers (Kafka
//! offsets), so a restart, after `kill -9` too, resumes exactly where the
//! durable state ends.
//!
//! Layout: `PATH` holds the magic `AIWCKPT4`, then the snapshot in postcard's
//! compact binary encoding to the end of the file (watermark, seen id keys,
//! open deadlines, decided keys, emitted violations, the ids of the live
//! history segments, the source position as JSON text). Ids the state keeps
//! as 128-bit keys are written as keys.
//! History rows, the bulk of the state, are immutable once a step has them:
//! each segment is written once, as an Arrow IPC file in `PATH.history/`, and
//! deleted after a checkpoint no longer lists it. A checkpoint therefore
//! writes what changed since the last one plus the small mutable parts.
//! Checkpoints of earlier layouts (`AIWCKPT2`, `AIWCKPT3`, which kept ids as
//! strings) are refused with advice: move the state away and aiwatch resumes
//! from the committed Kafka offsets.
//!
//! Safety: the file ends with a trailer, `AIWSUM01` and the SHA-256 of
//! everything before it, checked before anything is decoded. Each write keeps
//! the checkpoint it replaces as `PATH.prev`, and the history segments that one
//! references until the next write supersedes it. A latest checkpoint that is
//! missing or damaged (bad checksum, cut short, a segment unreadable) falls back
//! to the previous one with a warning, and is renamed `PATH.damaged`; when both
//! are damaged aiwatch refuses to start, saying how to reset. Files are created
//! with mode 0600 and folders with 0700.

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
use super::state::{Conversation, Deadlines, HashMap, HashSet, Key};
use super::Engine;

const MAGIC: &[u8; 8] = b"AIWCKPT4";
/// Starts the trailer: this tag, then the SHA-256 of all bytes before the tag.
const SUM_TAG: &[u8; 8] = b"AIWSUM01";
const SUM_LEN: usize = 8 + 32;
/// Layouts of earlier releases, which kept ids as strings.
const MAGIC_OLD: [&[u8; 8]; 2] = [b"AIWCKPT2", b"AIWCKPT3"];

/// What is written: borrowed from the live state, so a checkpoint copies nothing.
#[derive(Serialize)]
struct SnapshotRef<'a, P> {
    max_seen: Option<i64>,
    watermark: i64,
    seen: &'a BTreeMap<i64, HashSet<Key>>,
    requests: &'a Deadlines,
    artifacts: &'a Deadlines,
    emitted: Vec<(&'a str, &'a str, i64)>,
    segments: Vec<u64>,
    next_segment: u64,
    conversations: &'a HashMap<Key, Conversation>,
    /// The source position: JSON text (postcard cannot carry a free-form JSON value).
    position: P,
}

/// What is read back; `P` is the position: JSON text, or a JSON value in the old layout.
#[derive(Deserialize)]
struct Snapshot<P> {
    max_seen: Option<i64>,
    watermark: i64,
    seen: BTreeMap<i64, HashSet<Key>>,
    requests: Deadlines,
    artifacts: Deadlines,
    /// (rule_id, subject, event time of the violation)
    emitted: Vec<(String, String, i64)>,
    segments: Vec<u64>,
    next_segment: u64,
    conversations: HashMap<Key, Conversation>,
    position: P,
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

impl Engine {
    /// Writes the state and the source `position` it covers to `path`,
    /// atomically, with a checksum; the checkpoint it replaces becomes `PATH.prev`.
    /// An error (a full disk) leaves the last good checkpoints as they were.
    pub fn write_checkpoint(&mut self, path: &Path, position: serde_json::Value) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io { path: path.display().to_string(), source };
        let dir = segment_dir(path);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io)?;
        // The segments of the latest checkpoint, which becomes the previous one.
        let previous: HashSet<u64> = self.persisted_segments.iter().copied().collect();
        let mut live = Vec::new();
        debug_assert!(self.pending.is_none(), "flush the pipelined step before a checkpoint");
        for (id, batch) in self.state.as_ref().expect("state present").history.segments() {
            live.push(id);
            if !self.persisted_segments.contains(&id) {
                write_atomically(&segment_file(&dir, id), None, |w| {
                    let mut ipc = StreamWriter::try_new(w, &batch.schema()).map_err(std::io::Error::other)?;
                    ipc.write(batch).map_err(std::io::Error::other)?;
                    ipc.finish().map_err(std::io::Error::other)
                })
                .map_err(io)?;
                self.persisted_segments.insert(id);
            }
        }
        // Open obligations spilled to disk: made durable as a savepoint of their store, named by the checkpoint.
        let savepoint = match self.state_mut().spill.as_mut() {
            Some(spill) => Some(spill.savepoint().map_err(|e| io(std::io::Error::other(e)))?),
            None => None,
        };
        let snap = self.snapshot(live.clone(), position.to_string());
        // Streamed into the file through the checksum: no copy of the state in memory.
        write_atomically(path, Some(&previous_path(path)), |w| {
            let mut summed = Summed { inner: w, hash: Sha256::new() };
            summed.write_all(MAGIC)?;
            postcard::to_io(&snap, &mut summed).map_err(std::io::Error::other)?;
            postcard::to_io(&savepoint, &mut summed).map_err(std::io::Error::other)?;
            let digest = summed.hash.finalize();
            w.write_all(SUM_TAG)?;
            w.write_all(&digest)
        })
        .map_err(io)?;
        // Only now is an expired segment unreferenced by both durable checkpoints.
        let live: HashSet<u64> = live.into_iter().collect();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let id = name.to_str().and_then(|n| n.strip_prefix("segment-")?.strip_suffix(".arrow")?.parse::<u64>().ok());
                if id.is_some_and(|id| !live.contains(&id) && !previous.contains(&id)) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        self.persisted_segments.retain(|id| live.contains(id));
        Ok(())
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

    /// Loads one checkpoint file, checksum first; `None` when it does not exist.
    /// Its history segments are those of the checkpoint at `base` (the latest and
    /// the previous one share a folder).
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
        let position = if body.starts_with(MAGIC) {
            let (snap, rest): (Snapshot<String>, _) = postcard::take_from_bytes(&body[MAGIC.len()..]).map_err(|e| corrupt(e.to_string()))?;
            // Written after the snapshot; absent in checkpoints of releases without spilling.
            let savepoint: Option<u64> = if rest.is_empty() { None } else { postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))? };
            let text = self.install(snap, savepoint, base)?;
            serde_json::from_str(&text).map_err(|e| corrupt(format!("source position: {e}")))?
        } else if MAGIC_OLD.iter().any(|m| body.starts_with(*m)) {
            return Err(corrupt(format!("written by an earlier aiwatch, layout {}", String::from_utf8_lossy(&body[..8]))));
        } else {
            return Err(corrupt("bad magic".into()));
        };
        Ok(Some(position))
    }

    /// The state as written, borrowed.
    fn snapshot<P>(&self, live: Vec<u64>, position: P) -> SnapshotRef<'_, P> {
        SnapshotRef {
            max_seen: self.state().max_seen,
            watermark: self.state().watermark,
            seen: &self.state().seen,
            requests: &self.state().requests,
            artifacts: &self.state().artifacts,
            emitted: self.emitted.iter().map(|((i, subject), at)| (self.rules[*i].rule.id.as_str(), subject.as_str(), *at)).collect(),
            segments: live,
            next_segment: self.state().history.next_segment_id(),
            conversations: self.state().history.conversation_summaries(),
            position,
        }
    }

    /// Puts a read snapshot in place (history segments from their files) and returns its position.
    fn install<P>(&mut self, snap: Snapshot<P>, savepoint: Option<u64>, path: &Path) -> Result<P, CheckpointError> {
        let corrupt = |why: String| CheckpointError::Corrupt { path: path.display().to_string(), why };
        // The spill store goes back to what this checkpoint saw.
        let state = self.state_mut();
        let store = state.spill_config.path.clone();
        let spilled = match (savepoint, state.spill.take(), store) {
            (None, _, None) => (0, 0),
            (None, spill, Some(file)) => {
                drop(spill);
                // Written after this checkpoint: nothing in it belongs to the state restored.
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(corrupt(format!("spill store {}: {e}", file.display()))),
                }
                (0, 0)
            }
            (Some(_), _, None) => return Err(corrupt("it names a spill store, and this engine has none configured".into())),
            (Some(id), spill, Some(file)) => {
                let mut spill = match spill {
                    Some(s) => s,
                    None => Spill::open(Some(&file), false).map_err(|e| corrupt(e.to_string()))?,
                };
                let counts = spill.restore(Some(id)).map_err(|e| corrupt(e.to_string()))?;
                state.spill = Some(spill);
                counts
            }
        };
        let dir = segment_dir(path);
        let mut segments = Vec::with_capacity(snap.segments.len());
        for id in &snap.segments {
            let file = segment_file(&dir, *id);
            let f = File::open(&file).map_err(|e| corrupt(format!("history segment {}: {e}", file.display())))?;
            for b in StreamReader::try_new(BufReader::new(f), None).map_err(|e| corrupt(e.to_string()))? {
                segments.push((*id, b.map_err(|e| corrupt(e.to_string()))?));
            }
        }
        self.state_mut().max_seen = snap.max_seen;
        self.state_mut().watermark = snap.watermark;
        self.state_mut().seen = snap.seen;
        self.state_mut().requests = snap.requests;
        self.state_mut().requests.reindex();
        self.state_mut().artifacts = snap.artifacts;
        self.state_mut().artifacts.reindex();
        self.state_mut().requests.spilled = spilled.0;
        self.state_mut().artifacts.spilled = spilled.1;
        self.state_mut().history.restore(segments, snap.next_segment, snap.conversations);
        self.persisted_segments = snap.segments.iter().copied().collect();
        let index: std::collections::HashMap<&str, usize> =
            self.rules.iter().enumerate().map(|(i, r)| (r.rule.id.as_str(), i)).collect();
        self.emitted = snap
            .emitted
            .into_iter()
            .filter_map(|(rule, subject, at)| index.get(rule.as_str()).map(|i| ((*i, subject), at)))
            .collect();
        Ok(snap.position)
    }
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
