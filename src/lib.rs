//! aiwatch: streaming SOC 2 monitoring for AI request logs.
//!
//! The data path, one direction:
//!
//! - [`sources`]: JSON Lines files or Kafka yield raw records with their origin ([`event::RawBatch`]);
//! - [`decode`]: records become Arrow batches of the `events` schema ([`event::FIELDS`]),
//!   or dead letters, through their [`formats`] (`aiwatch`, `litellm`, `otlp_json`, `otlp_proto`);
//! - [`engine`]: event-time state and the SQL rules ([`rules`], `queries/`) against the
//!   [`policy`] turn batches into [`alert::Alert`]s;
//! - [`outputs`]: alerts and dead letters leave for files, stdout, Kafka and on-call tools;
//!   [`telemetry`] exports Prometheus metrics and health; [`archive`] keeps events, alerts
//!   and dead letters as Parquet for SQL over months, and [`report`] turns a period of it
//!   into the SOC 2 evidence report.
//!
//! [`pipeline`] wires these together for `aiwatch scan`, [`stream`] for `aiwatch run`
//! (configured by [`config`], its checkpoints in a locked [`state_dir`]); [`generate`]
//! makes synthetic traffic; [`allocator`] tunes the allocator the binary registers.

pub mod alert;
pub mod archive;
pub mod allocator;
pub mod config;
pub mod decode;
pub mod engine;
pub mod event;
pub mod formats;
pub mod generate;
pub mod outputs;
pub mod pipeline;
pub mod policy;
pub mod report;
pub mod rules;
pub mod sources;
pub mod state_dir;
pub mod stream;
pub mod telemetry;

#[cfg(test)]
mod fuzz;
