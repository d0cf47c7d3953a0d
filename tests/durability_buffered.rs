//! `Durability::Buffered`: appends are visible to readers at once, `sync()` works, dropping the store syncs,
//! and acknowledged events survive a crash of the process (checked with a child process that aborts). The same
//! crash check runs for `Durability::Sync`.

mod api_helpers;

use annals::{Durability, ExpectedVersion, NewEvent, Options, Position, Store, StreamAppend};
use api_helpers::*;

fn buffered(path: &std::path::Path) -> Store {
    Options::new().durability(Durability::Buffered).open(path).unwrap()
}

#[test]
fn buffered_appends_are_visible_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = buffered(dir.path());
    assert_eq!(store.durability(), Durability::Buffered);
    for i in 0..50u64 {
        let r = store.append("s", ExpectedVersion::Any, &[ev("E", i.to_string())]).unwrap();
        assert_eq!(r.position.as_u64(), i);
        assert_eq!(store.head().as_u64(), i + 1);
        assert_eq!(store.stream_version("s"), Some(i));
        let last = store.read_stream("s", i).unwrap().next().unwrap().unwrap();
        assert_eq!(last.payload(), i.to_string().as_bytes());
        let last = store.read_all(Position::from_u64(i)).next().unwrap().unwrap();
        assert_eq!(last.payload(), i.to_string().as_bytes());
    }
}

#[test]
fn sync_works_in_both_modes() {
    for durability in [Durability::Buffered, Durability::Sync] {
        let dir = tempfile::tempdir().unwrap();
        let store = Options::new().durability(durability).open(dir.path()).unwrap();
        store.sync().unwrap(); // nothing appended yet
        store.append("s", ExpectedVersion::NoStream, &evs(3)).unwrap();
        store.sync().unwrap();
        store.sync().unwrap(); // twice in a row
        let (a, b) = (evs(1), evs(2));
        store
            .append_many(&[
                StreamAppend::new("s", ExpectedVersion::Exact(2), &a),
                StreamAppend::new("t", ExpectedVersion::Any, &b),
            ])
            .unwrap();
        store.sync().unwrap();
        assert_eq!(store.head().as_u64(), 6);
        assert_eq!(all(&store).len(), 6);
        assert_usable(&store);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.head().as_u64(), 7);
    }
}

#[test]
fn sync_from_several_threads_while_appending() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_buffered(dir.path());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    store.append(&format!("t{t}"), ExpectedVersion::Any, &[ev("E", vec![t as u8; 2000])]).unwrap();
                    if i % 10 == 0 {
                        store.sync().unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    store.sync().unwrap();
    assert_eq!(store.head().as_u64(), 400);
    for t in 0..4u8 {
        let events = stream(&store, &format!("t{t}"));
        assert_eq!(events.len(), 100);
        assert!(events.iter().all(|e| e.payload == vec![t; 2000]));
    }
}

#[test]
fn dropping_a_buffered_store_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = buffered(dir.path());
    for i in 0..200u64 {
        store.append(&format!("s{}", i % 7), ExpectedVersion::Any, &[ev("E", i.to_le_bytes().to_vec())]).unwrap();
    }
    let before = all(&store);
    drop(store); // no sync() call: the close syncs
    let store = buffered(dir.path());
    assert_eq!(all(&store), before);
    assert_eq!(store.head().as_u64(), 200);
}

/// Buffered appends are stored through a window of the segment that moves as they go: appends that straddle a
/// window's end, and one larger than a window, land whole, and read back the same before and after a reopen.
#[test]
fn appends_across_write_windows_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_size(16 << 20).durability(Durability::Buffered).open(dir.path()).unwrap();
    // Frame sizes that do not divide a MiB, so appends straddle every window boundary at a different place.
    let mut expected = Vec::new();
    for i in 0..3000u64 {
        let payload = vec![(i % 251) as u8; 700 + (i as usize * 37) % 1900];
        store.append("small", ExpectedVersion::Any, &[ev("E", payload.clone())]).unwrap();
        expected.push(payload);
    }
    // One append of 3 MiB: wider than a window.
    let big: Vec<NewEvent> = (0..48u8).map(|k| ev("Big", vec![k; 64 << 10])).collect();
    store.append("big", ExpectedVersion::NoStream, &big).unwrap();
    store.append("small", ExpectedVersion::Exact(2999), &[ev("E", b"last".to_vec())]).unwrap();
    expected.push(b"last".to_vec());
    let check = |store: &Store| {
        let small: Vec<Vec<u8>> = stream(store, "small").into_iter().map(|e| e.payload).collect();
        assert_eq!(small, expected);
        let big = stream(store, "big");
        assert_eq!(big.len(), 48);
        assert!(big.iter().enumerate().all(|(k, e)| e.payload == vec![k as u8; 64 << 10]));
    };
    check(&store);
    drop(store);
    let store = buffered(dir.path());
    check(&store);
    assert_eq!(store.head().as_u64(), 3049);
}

/// The child half of the crash tests: appends, reports nothing, and aborts without closing the store.
#[test]
#[ignore = "helper run as a child process by the crash tests"]
fn child_appends_then_aborts() {
    let Ok(path) = std::env::var("ANNALS_TEST_CRASH_DIR") else { return };
    let durability = match std::env::var("ANNALS_TEST_CRASH_MODE").as_deref() {
        Ok("sync") => Durability::Sync,
        _ => Durability::Buffered,
    };
    let store = Options::new().segment_size(1 << 20).durability(durability).open(&path).unwrap();
    for i in 0..300u64 {
        let batch: Vec<NewEvent> = (0..3).map(|j| ev("E", format!("{i}-{j}-{}", "x".repeat(1000)))).collect();
        store.append(&format!("s{}", i % 5), ExpectedVersion::Any, &batch).unwrap();
    }
    // Every append above was acknowledged. Crash without dropping the store.
    std::process::abort();
}

fn crash_child(path: &std::path::Path, mode: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_appends_then_aborts", "--ignored", "--nocapture", "--test-threads=1"])
        .env("ANNALS_TEST_CRASH_DIR", path)
        .env("ANNALS_TEST_CRASH_MODE", mode)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && out.status.code().is_none(),
        "the child must die by abort; status {:?}, output:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_after_crash(path: &std::path::Path) {
    // The crashed process's lock is gone with it: the folder opens at once.
    let store = small_buffered(path);
    assert_eq!(store.head().as_u64(), 900, "every acknowledged event survives a crash of the process");
    for s in 0..5u64 {
        let events = stream(&store, &format!("s{s}"));
        assert_eq!(events.len(), 180);
        for (k, e) in events.iter().enumerate() {
            let (i, j) = (s + 5 * (k as u64 / 3), k % 3);
            assert_eq!(e.payload, format!("{i}-{j}-{}", "x".repeat(1000)).as_bytes());
        }
    }
    assert!(all(&store).iter().enumerate().all(|(i, e)| e.position == i as u64));
    // And the store goes on.
    let r = store.append("s0", ExpectedVersion::Exact(179), &evs(1)).unwrap();
    assert_eq!(r.position.as_u64(), 900);
    drop(store);
    let store = Store::open(path).unwrap();
    assert_eq!(store.head().as_u64(), 901);
}

#[test]
fn buffered_events_survive_a_crash_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    crash_child(dir.path(), "buffered");
    check_after_crash(dir.path());
}

#[test]
fn sync_events_survive_a_crash_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    crash_child(dir.path(), "sync");
    check_after_crash(dir.path());
}
