//! End-to-end tests of the real `aiwatch` binary (one test binary, one module per area).

mod archive;
mod errors;
mod example;
mod formats;
mod hot_key;
mod invariance;
mod limits;
mod ops;
mod report;
mod support;
