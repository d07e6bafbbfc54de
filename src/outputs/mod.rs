//! Where alerts and dead letters go.

pub mod jsonl;

pub use jsonl::JsonLines;
