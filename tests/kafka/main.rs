//! Integration tests of `aiwatch run` against a real Kafka broker, as separate
//! processes: the broker comes from `AIWATCH_KAFKA_BOOTSTRAP` (`scripts/test.sh`
//! starts one and sets it). Every test makes its own topics and consumer group,
//! so the tests run in parallel and can be re-run against the same broker.
//! `broker_restart` kills a broker: one of its own, on another port.
//!
//! Run: `scripts/test.sh`, or with a broker already up
//! `AIWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092 cargo test --test kafka`.

mod broker_restart;
mod crash;
mod formats;
mod metrics;
mod ops;
mod outputs;
mod poison;
mod rebalance;
mod refused;
mod shutdown;
mod state_dir;
mod transactions;
mod support;
mod until_end;
