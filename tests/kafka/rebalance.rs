//! A second consumer joins the group, moves some partitions further than
//! aiwatch ever read them, and leaves: committed offsets never go backwards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::*;

/// Sends `n` junk lines to `partition` and waits for them.
fn produce_to(topic: &str, partition: i32, n: usize) {
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap()).create().expect("producer");
    block_on(async {
        for i in 0..n {
            let line = format!("not an event {i}");
            producer
                .send(FutureRecord::<(), str>::to(topic).payload(&line).partition(partition), Duration::from_secs(30))
                .await
                .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{partition}: {e}"));
        }
    });
}

#[test]
fn a_consumer_that_joins_moves_offsets_on_and_leaves_never_sees_them_committed_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("rebalance");
    create_topic(&topic, PARTITIONS);
    produce_file(&topic, &examples().join("events.jsonl"));

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.start_at_beginning();
    cfg.checkpoint_interval_seconds = 1;
    let mut first = Process::run(&cfg.write(dir.path()), false, &[]);
    let ends = end_offsets(&topic);
    wait_for(Duration::from_secs(60), "aiwatch to commit the whole topic", || {
        first.assert_running();
        (committed_offsets(&cfg.group, &topic) == ends).then_some(())
    });
    let assigned_lines = |p: &Process| std::fs::read_to_string(&p.stderr).unwrap_or_default().matches("partitions assigned").count();
    let assigned_before = assigned_lines(&first);

    // Every committed offset the group shows, polled all along: none may be below an earlier one.
    let stop = Arc::new(AtomicBool::new(false));
    let backwards: Arc<Mutex<Vec<String>>> = Arc::default();
    let poller = {
        let (stop, backwards, group, topic) = (stop.clone(), backwards.clone(), cfg.group.clone(), topic.clone());
        std::thread::spawn(move || {
            let mut highest: BTreeMap<i32, i64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                for (p, o) in committed_offsets(&group, &topic) {
                    let h = highest.entry(p).or_insert(o);
                    if o < *h {
                        backwards.lock().unwrap().push(format!("partition {p}: committed {o} after {h}"));
                    }
                    *h = (*h).max(o);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // A second member joins and gets some partitions.
    let second: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("second consumer");
    second.subscribe(&[&topic]).unwrap();
    let taken: Vec<i32> = wait_for(Duration::from_secs(60), "the second member to get partitions", || {
        let _ = second.poll(Duration::from_millis(100));
        let a = second.assignment().ok()?;
        let parts: Vec<i32> = a.elements().iter().map(|e| e.partition()).collect();
        (!parts.is_empty()).then_some(parts)
    });
    assert!(taken.len() < PARTITIONS as usize, "the second member took every partition: {taken:?}");
    // It reads further than aiwatch ever did on its partitions, and commits that.
    for p in &taken {
        produce_to(&topic, *p, 10);
    }
    let moved = end_offsets(&topic);
    wait_for(Duration::from_secs(60), "the second member to read its partitions to the end", || {
        let _ = second.poll(Duration::from_millis(100));
        let pos = second.position().ok()?;
        let at_end = taken.iter().all(|p| pos.elements().iter().any(|e| e.partition() == *p && e.offset() == rdkafka::Offset::Offset(moved[p])));
        at_end.then_some(())
    });
    second.commit_consumer_state(CommitMode::Sync).expect("second member commits");
    second.unsubscribe();
    drop(second);

    // aiwatch gets the partitions back; a message on a partition it kept makes it step and checkpoint.
    wait_for(Duration::from_secs(60), "aiwatch to be assigned partitions again after the second member left", || {
        first.assert_running();
        (assigned_lines(&first) >= assigned_before + 2).then_some(())
    });
    let kept = (0..PARTITIONS).find(|p| !taken.contains(p)).unwrap();
    produce_to(&topic, kept, 1);
    let now = end_offsets(&topic);
    wait_for(Duration::from_secs(60), "aiwatch to commit the new message", || {
        first.assert_running();
        (committed_offsets(&cfg.group, &topic).get(&kept) == now.get(&kept)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3)); // a few more checkpoints
    first.signal("TERM");
    first.wait_ok(Duration::from_secs(45));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();

    let backwards = backwards.lock().unwrap();
    assert!(backwards.is_empty(), "committed offsets went backwards: {backwards:?}\n{}", first.stderr_text());
    let committed = committed_offsets(&cfg.group, &topic);
    for p in &taken {
        assert_eq!(committed.get(p), now.get(p), "partition {p} the second member moved on");
    }
    delete_topics(&[&topic]);
}
