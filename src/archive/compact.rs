//! `aiwatch archive compact`: the small files of each day become one file.
//!
//! For each table and day, every file of the partition is read, rows written
//! twice (by a replay, see [`Table::key_columns`]) are dropped, the rest sorted
//! by time and written as `date=D/compacted.parquet`, replacing the old one in
//! one put; only then are the small files deleted. Rerunning is safe at any
//! point: a crash after the put leaves small files whose rows the compacted
//! file already holds, and the next run drops them as duplicates.

use std::collections::{BTreeMap, HashSet};

use arrow::array::BooleanArray;
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::row::{RowConverter, SortField};
use futures::TryStreamExt as _;
use object_store::ObjectStoreExt as _;

use super::writer::{encode, read_file, sort_rows};
use super::{ArchiveError, Table, Target};

/// The name of a day's compacted file.
pub const COMPACTED: &str = "compacted.parquet";

/// What a compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compacted {
    /// Partitions rewritten (table and day).
    pub partitions: usize,
    pub files_in: usize,
    pub rows_in: usize,
    pub rows_out: usize,
    /// Partitions left alone because they already are one compacted file.
    pub unchanged: usize,
}

/// The Parquet files of `table`, by day (`YYYY-MM-DD`), as paths relative to the archive.
pub async fn list_partitions(target: &Target, table: Table) -> Result<BTreeMap<String, Vec<String>>, ArchiveError> {
    let prefix = target.path(table.name());
    let objects: Vec<_> = target
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|source| ArchiveError::List { prefix: format!("{}/{}", target.display, table.name()), source })?;
    let mut days: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in objects {
        let Some(rel) = o.location.prefix_match(&target.prefix) else { continue };
        let parts: Vec<String> = rel.map(|p| p.as_ref().to_string()).collect();
        // events / date=D / NAME.parquet; anything else is not ours and is left alone.
        if let [t, d, name] = parts.as_slice() {
            if let (Some(day), true) = (d.strip_prefix("date="), name.ends_with(".parquet")) {
                days.entry(day.to_string()).or_default().push(format!("{t}/{d}/{name}"));
            }
        }
    }
    for files in days.values_mut() {
        files.sort();
    }
    Ok(days)
}

/// Compacts every partition whose day is on or before `through` (`YYYY-MM-DD`).
pub async fn compact(target: &Target, through: &str) -> Result<Compacted, ArchiveError> {
    let mut done = Compacted::default();
    for table in Table::ALL {
        for (day, files) in list_partitions(target, table).await? {
            if day.as_str() > through {
                continue;
            }
            if files.len() == 1 && files[0].ends_with(&format!("/{COMPACTED}")) {
                done.unchanged += 1;
                continue;
            }
            let mut batches = Vec::new();
            for f in &files {
                batches.extend(read_file(target, f).await?);
            }
            let all = concat_batches(&table.schema(), &batches)?;
            let unique = drop_repeats(table, &all)?;
            let sorted = sort_rows(table, &unique)?;
            let bytes = encode(table, &sorted)?;
            let rel = format!("{}/date={day}/{COMPACTED}", table.name());
            target
                .store
                .put(&target.path(&rel), bytes.into())
                .await
                .map_err(|source| ArchiveError::Write { path: format!("{}/{rel}", target.display), source })?;
            for f in files.iter().filter(|f| **f != rel) {
                target
                    .store
                    .delete(&target.path(f))
                    .await
                    .map_err(|source| ArchiveError::Write { path: format!("{}/{f}", target.display), source })?;
            }
            done.partitions += 1;
            done.files_in += files.len();
            done.rows_in += all.num_rows();
            done.rows_out += sorted.num_rows();
        }
    }
    Ok(done)
}

/// Keeps the first row of each key (see [`Table::key_columns`]).
pub fn drop_repeats(table: Table, batch: &arrow::array::RecordBatch) -> Result<arrow::array::RecordBatch, ArchiveError> {
    let columns: Vec<_> = table.key_columns().iter().map(|c| batch.column_by_name(c).expect("schema column").clone()).collect();
    let converter = RowConverter::new(columns.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
    let rows = converter.convert_columns(&columns)?;
    let mut seen = HashSet::with_capacity(batch.num_rows());
    let keep: BooleanArray = (0..rows.num_rows()).map(|i| Some(seen.insert(rows.row(i)))).collect();
    Ok(filter_record_batch(batch, &keep)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Alert, Evidence};
    use crate::archive::schema::{alerts_batch, to_archive};

    fn alert(id: &str, detected_at: &str, evidence: &[&str]) -> Alert {
        Alert {
            alert_id: id.into(),
            rule_id: "r".into(),
            category: "c".into(),
            severity: "high".into(),
            subject: "s".into(),
            tenant_id: None,
            time: "2026-01-01T00:00:00Z".into(),
            detected_at: detected_at.into(),
            summary: String::new(),
            controls: vec!["CC6.1".into()],
            evidence: Evidence { event_ids: evidence.iter().map(|e| e.to_string()).collect(), events: vec![] },
            title: "t".into(),
            remediation: String::new(),
        }
    }

    #[test]
    fn a_replayed_alert_is_one_row_and_a_repeat_with_other_evidence_stays() {
        let alerts = [
            alert("aw-1", "2026-01-01T00:00:01Z", &["e1"]),
            alert("aw-1", "2026-01-02T09:00:00Z", &["e1"]), // the same alert, detected again by a replay
            alert("aw-1", "2026-01-01T00:00:01Z", &["e2"]), // the violation repeated with other evidence
            alert("aw-2", "2026-01-01T00:00:01Z", &["e1"]),
        ];
        let batch = to_archive(Table::Alerts, &alerts_batch(&alerts).unwrap()).unwrap();
        let kept = drop_repeats(Table::Alerts, &batch).unwrap();
        assert_eq!(kept.num_rows(), 3);
    }
}
