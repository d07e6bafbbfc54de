//! End-to-end tests of the real `aiwatch` binary (one test binary, one module per area).

mod archive;
mod errors;
mod example;
mod hot_key;
mod invariance;
mod limits;
mod report;
mod support;
