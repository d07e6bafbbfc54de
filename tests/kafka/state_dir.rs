//! `state_dir` against a real broker: a second process on the same
//! `state_dir` is refused and names the holder; the lock of a process killed
//! with `kill -9` does not block the restart; a full disk fails checkpoints
//! without a crash or a commit, and they resume once there is room.

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

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a `size` tmpfs on `at`; `None` (with a note) where that is not allowed.
    fn mount(at: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"]).arg(at).output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(at.to_path_buf())),
            Ok(o) => {
                eprintln!("note: skipping the full-disk test: cannot mount a tmpfs ({})", String::from_utf8_lossy(&o.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("note: skipping the full-disk test: cannot run mount ({e})");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_checkpoints_without_a_crash_or_a_commit_and_they_resume_with_room() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("state"), "2m") else { return };
    let topic = unique("full-disk");
    create_topic(&topic, PARTITIONS);
    produce_file(&topic, &examples().join("events.jsonl"));

    let mut cfg = RunConfig::new(dir.path(), &topic);
    cfg.state_dir = disk.0.clone();
    cfg.checkpoint_interval_seconds = 1;
    let metrics = free_addr();
    cfg.metrics = Some(metrics);
    cfg.start_at_beginning();
    let mut p = Process::run(&cfg.write(dir.path()), false, &[]);
    let before = end_offsets(&topic);
    wait_for(Duration::from_secs(60), "the first checkpoints and commits", || {
        p.assert_running();
        (committed_offsets(&cfg.group, &topic) == before && http_get(metrics, "/readyz")?.0 == 200).then_some(())
    });

    // Fill the disk, then give aiwatch more to checkpoint.
    let filler = disk.0.join("filler");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 << 10];
        while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
    }
    produce_file(&topic, &examples().join("events.jsonl"));
    let after = end_offsets(&topic);
    wait_for(Duration::from_secs(60), "checkpoints to fail and be retried, with /readyz at 503", || {
        p.assert_running();
        let failures = metric_sum(&scrape(metrics)?, "aiwatch_checkpoint_failures_total");
        (failures >= 2.0 && http_get(metrics, "/readyz")?.0 == 503).then_some(())
    });
    assert_eq!(committed_offsets(&cfg.group, &topic), before, "offsets were committed without a checkpoint");
    assert!(std::fs::read_to_string(&p.stderr).unwrap().contains("checkpoint failed"), "{}", p.stderr_text());

    // Room again: the next checkpoint is written and everything is committed.
    std::fs::remove_file(&filler).unwrap();
    wait_for(Duration::from_secs(60), "a checkpoint and a commit once there is room", || {
        p.assert_running();
        (committed_offsets(&cfg.group, &topic) == after && http_get(metrics, "/readyz")?.0 == 200).then_some(())
    });
    p.signal("TERM");
    p.wait_ok(Duration::from_secs(45));
    drop(disk);
    delete_topics(&[&topic]);
}
