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

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};

use super::state::{Deadlines, HashSet, Key};
use super::Engine;

const MAGIC: &[u8; 8] = b"AIWCKPT4";
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
    position: P,
}

/// A checkpoint that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("checkpoint {path} is not an aiwatch checkpoint or is damaged ({why}); move it away to start from the committed Kafka offsets")]
    Corrupt { path: String, why: String },
}

impl Engine {
    /// Writes the state and the source `position` it covers to `path`, atomically.
    pub fn write_checkpoint(&mut self, path: &Path, position: serde_json::Value) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io { path: path.display().to_string(), source };
        let dir = segment_dir(path);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut live = Vec::new();
        debug_assert!(self.pending.is_none(), "flush the pipelined step before a checkpoint");
        for (id, batch) in self.state.as_ref().expect("state present").history.segments() {
            live.push(id);
            if !self.persisted_segments.contains(&id) {
                write_atomically(&segment_file(&dir, id), |w| {
                    let mut ipc = StreamWriter::try_new(w, &batch.schema()).map_err(std::io::Error::other)?;
                    ipc.write(batch).map_err(std::io::Error::other)?;
                    ipc.finish().map_err(std::io::Error::other)
                })
                .map_err(io)?;
                self.persisted_segments.insert(id);
            }
        }
        let snap = self.snapshot(live.clone(), position.to_string());
        // Streamed into the file: no copy of the state in memory.
        write_atomically(path, |w| {
            w.write_all(MAGIC)?;
            postcard::to_io(&snap, &mut *w).map_err(std::io::Error::other)?;
            Ok(())
        })
        .map_err(io)?;
        // Only now is an expired segment unreferenced by the durable checkpoint.
        let live: HashSet<u64> = live.into_iter().collect();
        let gone: Vec<u64> = self.persisted_segments.iter().filter(|id| !live.contains(id)).copied().collect();
        for id in gone {
            let _ = std::fs::remove_file(segment_file(&dir, id));
            self.persisted_segments.remove(&id);
        }
        Ok(())
    }

    /// Loads a checkpoint written by [`Engine::write_checkpoint`]; returns the
    /// source position it covers, or `None` when there is no checkpoint yet.
    pub fn restore_checkpoint(&mut self, path: &Path) -> Result<Option<serde_json::Value>, CheckpointError> {
        let p = path.display().to_string();
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Io { path: p, source }),
        };
        let corrupt = |why: String| CheckpointError::Corrupt { path: p.clone(), why };
        let mut r = BufReader::new(f);
        let mut head = [0u8; 8];
        r.read_exact(&mut head).map_err(|e| corrupt(e.to_string()))?;
        let position = if &head == MAGIC {
            let mut bytes = Vec::new();
            r.read_to_end(&mut bytes).map_err(|e| corrupt(e.to_string()))?;
            let snap: Snapshot<String> = postcard::from_bytes(&bytes).map_err(|e| corrupt(e.to_string()))?;
            let text = self.install(snap, path)?;
            serde_json::from_str(&text).map_err(|e| corrupt(format!("source position: {e}")))?
        } else if MAGIC_OLD.contains(&&head) {
            return Err(corrupt(format!("written by an earlier aiwatch, layout {}", String::from_utf8_lossy(&head))));
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
            position,
        }
    }

    /// Puts a read snapshot in place (history segments from their files) and returns its position.
    fn install<P>(&mut self, snap: Snapshot<P>, path: &Path) -> Result<P, CheckpointError> {
        let corrupt = |why: String| CheckpointError::Corrupt { path: path.display().to_string(), why };
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
        self.state_mut().history.restore(segments, snap.next_segment);
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

/// Writes a file whole or not at all: temporary file, fsync, rename, fsync of the folder.
fn write_atomically(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::new(File::create(&tmp)?);
    write(&mut w)?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
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
        assert!(err.contains("move it away"), "{err}");
        assert_eq!(engine().await.restore_checkpoint(&dir.path().join("none")).unwrap(), None);
    }
}
