//! The evidence archive: every valid event, every alert and every dead letter's
//! metadata as Parquet (zstd, sorted by time within a file), Hive-partitioned by
//! event date, on a local disk or an object store:
//!
//! ```text
//! events/date=2026-01-05/s1a2b3c4-000000000001-000000065536.parquet
//! alerts/date=2026-01-05/…
//! dead_letters/date=2026-01-05/…
//! ```
//!
//! A file's name derives from what it holds (the writer's flush label, see
//! [`ArchiveWriter::flush`]), so writing the same input again rewrites the same
//! files. `aiwatch query --archive` and `aiwatch report` read it back through
//! DataFusion listing tables ([`tables`]); DuckDB, Spark and Trino read it as it is
//! (docs/archive.md).

pub mod compact;
pub mod run;
pub mod schema;
pub mod tables;
pub mod target;
pub mod writer;

pub use schema::Table;
pub use target::Target;
pub use writer::{ArchiveWriter, Written};

/// Errors of the archive, each naming the file or location it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive location {location:?} is not usable: {reason}")]
    Location { location: String, reason: String },
    #[error("cannot write {path} in the archive: {source}")]
    Write { path: String, source: object_store::Error },
    #[error("cannot read {path} in the archive: {source}")]
    Read { path: String, source: object_store::Error },
    #[error("cannot list {prefix} in the archive: {source}")]
    List { prefix: String, source: object_store::Error },
    #[error("{path} in the archive is not a Parquet file aiwatch can read: {source} (move it out of the archive, or restore it)")]
    Parquet { path: String, source: parquet::errors::ParquetError },
    #[error("cannot encode a batch for the archive: {0}")]
    Encode(#[from] arrow::error::ArrowError),
}
