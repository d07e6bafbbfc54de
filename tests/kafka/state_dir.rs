//! `state_dir` against a real broker: a second process on the same
//! `state_dir` is refused and names the holder; the lock of a process killed
//! with `kill -9` does not block the restart.

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
