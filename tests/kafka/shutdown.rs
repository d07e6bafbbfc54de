//! SIGTERM: the current batch is finished, flushed and committed, the exit is
//! clean, and a restart carries on from there without repeating anything.

use std::time::Duration;

use crate::support::*;

#[test]
fn sigterm_commits_everything_processed_exits_0_and_a_restart_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (events, policy) = (dir.path().join("events.jsonl"), dir.path().join("policy.toml"));
    generate(&["--events", "8000", "--disorder", "10", "--duplicates", "0.01", "--malformed", "0.002", "--seed", "5"], &events, &policy);
    let scanned = scan(&policy, &events, dir.path());
    // The first half is there before the first run; the second half comes while it is down.
    let data = std::fs::read(&events).unwrap();
    let lines = lines_of(&data);
    let (first_half, second_half) = lines.split_at(lines.len() / 2);
    let join = |ls: &[&[u8]]| ls.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect::<Vec<u8>>();

    let topic = unique("sigterm");
    create_topic(&topic, PARTITIONS);
    let total = produce_lines(&topic, &join(first_half)).at.len() as f64;

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.policy = policy;
    // Longer than the test: offsets reach Kafka only through the commit at shutdown.
    cfg.checkpoint_interval_seconds = 3600;
    let metrics = free_addr();
    cfg.metrics = Some(metrics);
    cfg.start_at_beginning();
    let config = cfg.write(dir.path());
    let mut p = Process::run(&config, false, &[]);

    wait_for(Duration::from_secs(60), "GET /readyz to answer 200", || {
        p.assert_running();
        matches!(http_get(metrics, "/readyz"), Some((200, _))).then_some(())
    });
    wait_for(Duration::from_secs(90), "every record to be consumed", || {
        p.assert_running();
        let m = scrape(metrics)?;
        let taken = metric_sum(&m, "aiwatch_events_consumed_total")
            + metric_sum(&m, "aiwatch_duplicate_events_total")
            + metric_sum(&m, "aiwatch_dead_letters_total");
        (taken >= total).then_some(())
    });
    assert!(committed_offsets(&cfg.group, &topic).values().all(|o| *o == 0), "offsets were committed before shutdown");

    p.signal("TERM");
    let status = p.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status}\n{}", p.stderr_text());
    assert_eq!(committed_offsets(&cfg.group, &topic), end_offsets(&topic), "committed offsets after SIGTERM");
    assert!(cfg.state_dir.join("checkpoint.aiwatch").exists(), "no checkpoint written at shutdown");
    let before = json_lines(cfg.alerts()).len();
    violations_once(&json_lines(cfg.alerts()));

    // The rest of the stream, then a restart to its end: together exactly what scan finds,
    // and after a clean stop no violation is emitted a second time.
    produce_lines(&topic, &join(second_half));
    let log = run_until_end(&config, Duration::from_secs(90), &[]);
    let summary = Summary::parse(&log).expect("summary");
    assert_eq!(summary.records() as usize, second_half.len(), "records the restart read");
    let all = json_lines(cfg.alerts());
    assert!(all.len() > before, "the restart found nothing in the second half");
    assert_same_violations(&violations_once(&all), &scanned, "alerts before SIGTERM plus the restart vs scan");
    assert_eq!(committed_offsets(&cfg.group, &topic), end_offsets(&topic), "committed offsets after the restart");
    delete_topics(&[&topic]);
}
