//! The archive of `aiwatch run`: written at checkpoints, and part of what a
//! checkpoint covers.
//!
//! Each checkpoint first flushes what was archived since the last one, as
//! files labelled `k{group}-c{sequence}` (the group id's hash and the number
//! of the checkpoint), then writes the checkpoint with that sequence in its
//! position. A restart reads the sequence back and deletes the files of later
//! sequences before it replays: they were written by a run that crashed
//! between its archive flush and its checkpoint, and the replay writes their
//! events again. So every event is archived once, after `kill -9` too.

use object_store::ObjectStoreExt as _;
use sha2::{Digest as _, Sha256};

use super::compact::list_partitions;
use super::{ArchiveError, ArchiveWriter, Table, Target};
use crate::decode::Decoded;
use crate::engine::StepReport;

pub struct RunArchive {
    writer: ArchiveWriter,
    /// `k` and the first 12 hex digits of the group id's SHA-256.
    prefix: String,
    /// Flushes made, the last one's label included.
    seq: u64,
    /// Dates dead letters with no time of their own: the newest event time before them.
    stream_time: i64,
}

impl RunArchive {
    /// Opens the archive at `location` for consumer group `group`, whose last
    /// durable checkpoint had flushed `seq` times, and deletes what later
    /// flushes of a crashed run left.
    pub async fn open(location: &str, group: &str, seq: u64) -> Result<RunArchive, ArchiveError> {
        let target = Target::open(location)?;
        let digest = Sha256::digest(group.as_bytes());
        let prefix = format!("k{}", digest.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>());
        let archive = RunArchive {
            writer: ArchiveWriter::new(target),
            prefix,
            seq,
            stream_time: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        };
        archive.remove_after(seq).await?;
        Ok(archive)
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn label(&self, seq: u64) -> String {
        format!("{}-c{seq:012}", self.prefix)
    }

    /// The sequence of a file name of this group, if it is one.
    fn seq_of(&self, file: &str) -> Option<u64> {
        file.rsplit('/').next()?.strip_suffix(".parquet")?.strip_prefix(&self.prefix)?.strip_prefix("-c")?.parse().ok()
    }

    async fn remove_after(&self, seq: u64) -> Result<(), ArchiveError> {
        let target = self.writer.target();
        for table in Table::ALL {
            for files in list_partitions(target, table).await?.into_values() {
                for f in files.iter().filter(|f| self.seq_of(f).is_some_and(|s| s > seq)) {
                    tracing::info!(file = %f, "removing an archive file of a flush no checkpoint covers (a crashed run's); its events are read again");
                    target
                        .store
                        .delete(&target.path(f))
                        .await
                        .map_err(|source| ArchiveError::Write { path: format!("{}/{f}", target.display), source })?;
                }
            }
        }
        Ok(())
    }

    /// A decoded batch's dead letters (metadata only), before its events go to the engine.
    pub fn dead_letters(&mut self, decoded: &Decoded) -> Result<(), ArchiveError> {
        let (times, last) = super::writer::stream_times(&decoded.events, &decoded.dead_letters, self.stream_time);
        self.stream_time = last;
        self.writer.append_dead_letters(&decoded.dead_letters, &times)
    }

    /// The events a step accepted and the alerts it raised.
    pub fn step(&mut self, report: &StepReport) -> Result<(), ArchiveError> {
        for b in &report.accepted {
            self.writer.append_events(b)?;
        }
        self.writer.append_alerts(&report.alerts)
    }

    /// Writes what was archived since the last flush; returns the sequence
    /// the checkpoint about to be written must carry. A checkpoint that then
    /// fails leaves the flush in place: the next checkpoint covers it too (a
    /// restart before that deletes it and reads its events again). An error
    /// here loses what was pending, so the run must stop and replay.
    pub async fn flush(&mut self) -> Result<u64, ArchiveError> {
        self.seq += 1;
        self.writer.flush(&self.label(self.seq)).await?;
        Ok(self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Decoder;
    use crate::event::{Origin, RawBatch};

    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for table in ["events", "alerts", "dead_letters"] {
            let Ok(days) = std::fs::read_dir(dir.join(table)) else { continue };
            for day in days.flatten() {
                for f in std::fs::read_dir(day.path()).unwrap().flatten() {
                    out.push(format!("{table}/{}/{}", day.file_name().to_string_lossy(), f.file_name().to_string_lossy()));
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_restart_deletes_the_flushes_no_checkpoint_covers_and_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().display().to_string();
        let mut raw = RawBatch::default();
        raw.push(br#"{"event_id":"e1","event_type":"ai.request","time":"2026-01-05T10:00:00Z","tenant_id":"t","actor_id":"a","request_id":"r1"}"#, Origin::Generated { seq: 0 });
        raw.push(b"not json", Origin::Generated { seq: 1 });
        let decoded = Decoder::new().decode(&raw);
        let report = StepReport { accepted: vec![decoded.events.clone()], ..Default::default() };

        let mut a = RunArchive::open(&location, "group-a", 0).await.unwrap();
        a.dead_letters(&decoded).unwrap();
        a.step(&report).unwrap();
        assert_eq!(a.flush().await.unwrap(), 1, "the first checkpoint carries 1");
        a.step(&report).unwrap();
        assert_eq!(a.flush().await.unwrap(), 2);
        let written = files(dir.path());
        assert_eq!(written.len(), 3, "{written:?}");
        assert!(written.iter().all(|f| f.ends_with("-c000000000001.parquet") || f.ends_with("-c000000000002.parquet")), "{written:?}");

        // Killed after flush 2 and before its checkpoint: the restart from checkpoint 1 deletes flush 2 only.
        let other = RunArchive::open(&location, "group-b", 0).await.unwrap();
        assert_eq!(files(dir.path()), written, "another group's files are not touched");
        drop(other);
        let restarted = RunArchive::open(&location, "group-a", 1).await.unwrap();
        assert_eq!(restarted.seq(), 1);
        let left = files(dir.path());
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.iter().all(|f| f.ends_with("-c000000000001.parquet")), "{left:?}");
    }
}
