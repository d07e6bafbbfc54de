//! `state_dir` and poison inputs against a real broker: a second process on
//! the same `state_dir` is refused and names the holder; a lock left by
//! `kill -9` does not block the restart; events stamped far ahead of the clock
//! or outside the computable range are dead letters and bend no alert.

use std::time::Duration;

use crate::support::*;

#[test]
fn a_second_process_on_the_same_state_dir_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("lock");
    create_topic(&topic, PARTITIONS);
    produce_file(&topic, &examples().join("events.jsonl"));

    let mut cfg = RunConfig::new(dir.path(), &topic);
    let metrics = free_addr();
    cfg.metrics = Some(metrics);
    cfg.start_at_beginning();
    let mut first = Process::run(&cfg.write(dir.path()), false, &[]);
    wait_for(Duration::from_secs(60), "GET /readyz to answer 200", || {
        first.assert_running();
        matches!(http_get(metrics, "/readyz"), Some((200, _))).then_some(())
    });
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cfg.state_dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "state_dir mode");

    // Same state_dir (and, here, the same metrics address): refused for the lock, before anything else.
    let mut second = Process::run(&cfg.write(dir.path()), false, &[]);
    let status = second.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{}", second.stderr_text());
    let err = second.stderr_text();
    assert!(err.contains("is in use by another aiwatch") && err.contains(&format!("pid {}", first.pid())), "{err}");
    first.assert_running();
    assert!(matches!(http_get(metrics, "/readyz"), Some((200, _))), "the first process stopped serving");

    // kill -9 leaves the lock file, not the lock: the next run starts and finishes.
    first.kill9();
    cfg.metrics = None;
    run_until_end(&cfg.write(dir.path()), Duration::from_secs(90), &[]);
    assert_same_violations(&violations_once(&json_lines(cfg.alerts())), &expected_violations(), "after the restart");
    delete_topics(&[&topic]);
}

#[test]
fn far_future_and_out_of_range_times_are_dead_letters_and_change_no_alert() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("future");
    create_topic(&topic, PARTITIONS);
    let ahead = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut data = std::fs::read(examples().join("events.jsonl")).unwrap();
    if !data.ends_with(b"\n") {
        data.push(b'\n');
    }
    // One day ahead of the clock (past max_future_seconds = 300), and past 2200.
    let poison = [
        format!(r#"{{"event_id":"poison-ahead","event_type":"ai.request","time":"{ahead}","tenant_id":"acme","request_id":"r-poison","provider":"openai"}}"#),
        r#"{"event_id":"poison-2262","event_type":"ai.request","time":"2262-01-01T00:00:00Z","tenant_id":"acme","request_id":"r-poison-2","provider":"openai"}"#.to_string(),
    ];
    for p in &poison {
        data.extend_from_slice(p.as_bytes());
        data.push(b'\n');
    }
    produce_lines(&topic, &data);

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.single_step();
    cfg.start_at_beginning();
    run_until_end(&cfg.write(dir.path()), Duration::from_secs(90), &[]);
    assert_same_violations(&violations_once(&json_lines(cfg.alerts())), &expected_violations(), "run with far-future events");
    let dead = json_lines(cfg.dead_letters());
    assert_eq!(dead.len(), 16, "the example's 14 dead letters and the 2 poison events");
    let kinds: Vec<&str> = dead.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"time_in_future") && kinds.contains(&"time_out_of_range"), "{kinds:?}");
    assert!(dead.iter().all(|d| d["sha256"].is_string() && d["length"].is_u64()), "dead letters carry length and hash");
    delete_topics(&[&topic]);
}
