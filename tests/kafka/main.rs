//! Integration tests of `aiwatch run` against a real Kafka broker
//! (`AIWATCH_KAFKA_BOOTSTRAP`; `scripts/test.sh` starts one). Every test uses
//! its own topics and consumer group, so they run in parallel and re-run.

mod support;
mod until_end;
