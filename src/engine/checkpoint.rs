//! Checkpoints: the engine's whole event-time state in one file, written
//! atomically (temporary file, fsync, rename), together with the source
//! position it covers (Kafka offsets), so a restart, after `kill -9` too,
//! resumes exactly where the durable state ends.
//!
//! Layout: the magic `AIWCKPT1`, a little-endian u64 length, that many bytes of
//! JSON (watermark, seen ids, open deadlines, emitted violations, source
//! position), then an Arrow IPC stream of the retained history rows.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};

use super::state::Deadlines;
use super::Engine;
use crate::event::events_schema;

const MAGIC: &[u8; 8] = b"AIWCKPT1";

/// What is written: borrowed from the live state, so a checkpoint copies nothing.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    max_seen: Option<i64>,
    watermark: i64,
    seen: &'a BTreeMap<i64, HashSet<String>>,
    requests: &'a Deadlines,
    artifacts: &'a Deadlines,
    emitted: Vec<(&'a str, &'a str, i64)>,
    position: serde_json::Value,
}

/// What is read back.
#[derive(Deserialize)]
struct Snapshot {
    max_seen: Option<i64>,
    watermark: i64,
    seen: BTreeMap<i64, HashSet<String>>,
    requests: Deadlines,
    artifacts: Deadlines,
    /// (rule_id, subject, watermark when emitted)
    emitted: Vec<(String, String, i64)>,
    position: serde_json::Value,
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
    pub fn write_checkpoint(&self, path: &Path, position: serde_json::Value) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io { path: path.display().to_string(), source };
        let snap = SnapshotRef {
            max_seen: self.state.max_seen,
            watermark: self.state.watermark,
            seen: &self.state.seen,
            requests: &self.state.requests,
            artifacts: &self.state.artifacts,
            emitted: self.emitted.iter().map(|((i, subject), at)| (self.rules[*i].rule.id.as_str(), subject.as_str(), *at)).collect(),
            position,
        };
        let tmp = path.with_extension("tmp");
        {
            let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
            let json = serde_json::to_vec(&snap).expect("state serializes");
            w.write_all(MAGIC).map_err(io)?;
            w.write_all(&(json.len() as u64).to_le_bytes()).map_err(io)?;
            w.write_all(&json).map_err(io)?;
            let mut ipc = StreamWriter::try_new(&mut w, &events_schema()).map_err(|e| io(std::io::Error::other(e)))?;
            for b in self.state.history.segments() {
                ipc.write(b).map_err(|e| io(std::io::Error::other(e)))?;
            }
            ipc.finish().map_err(|e| io(std::io::Error::other(e)))?;
            drop(ipc);
            let f = w.into_inner().map_err(|e| io(e.into_error()))?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
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
        let mut head = [0u8; 16];
        r.read_exact(&mut head).map_err(|e| corrupt(e.to_string()))?;
        if &head[..8] != MAGIC {
            return Err(corrupt("bad magic".into()));
        }
        let len = u64::from_le_bytes(head[8..].try_into().expect("8 bytes")) as usize;
        let mut json = vec![0u8; len];
        r.read_exact(&mut json).map_err(|e| corrupt(e.to_string()))?;
        let snap: Snapshot = serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))?;
        let ipc = StreamReader::try_new(r, None).map_err(|e| corrupt(e.to_string()))?;
        let mut segments = Vec::new();
        for b in ipc {
            segments.push(b.map_err(|e| corrupt(e.to_string()))?);
        }

        self.state.max_seen = snap.max_seen;
        self.state.watermark = snap.watermark;
        self.state.seen = snap.seen;
        self.state.requests = snap.requests;
        self.state.requests.reindex();
        self.state.artifacts = snap.artifacts;
        self.state.artifacts.reindex();
        self.state.history.restore(segments);
        let index: std::collections::HashMap<&str, usize> =
            self.rules.iter().enumerate().map(|(i, r)| (r.rule.id.as_str(), i)).collect();
        self.emitted = snap
            .emitted
            .into_iter()
            .filter_map(|(rule, subject, at)| index.get(rule.as_str()).map(|i| ((*i, subject), at)))
            .collect();
        Ok(Some(snap.position))
    }
}
