//! Opening a store: `Store::open`, the `Options` builder, segment-size bounds, locking, foreign folders.

mod api_helpers;

use annals::{limits, Durability, Error, ExpectedVersion, Options, Position, Store};
use api_helpers::*;

#[test]
fn open_creates_the_folder_including_parents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("data");
    assert!(!path.exists());
    let store = Store::open(&path).unwrap();
    assert!(path.is_dir());
    assert_eq!(store.head(), Position::START);
    assert_eq!(store.stream_version("anything"), None);
    assert_eq!(store.read_all(Position::START).count(), 0);
    assert_eq!(store.durability(), Durability::Sync, "Sync is the default");
    assert_usable(&store);
}

#[test]
fn open_an_existing_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.head(), Position::START);
    assert_usable(&store);
}

#[test]
fn options_is_default_clone_debug_and_builds() {
    fn assert_traits<T: Default + Clone + std::fmt::Debug>() {}
    assert_traits::<Options>();

    let o = Options::new().segment_size(2 << 20).durability(Durability::Buffered);
    let copy = o.clone();
    let shown = format!("{copy:?}");
    assert!(shown.contains("Buffered"), "Debug shows the durability: {shown}");
    let dir = tempfile::tempdir().unwrap();
    let store = copy.open(dir.path()).unwrap();
    assert_eq!(store.durability(), Durability::Buffered);
    assert_usable(&store);
    drop(store);
    // The original builder is still usable after the clone was used.
    let store = o.open(dir.path()).unwrap();
    assert_eq!(store.head().as_u64(), 1);
    drop(store);
    let store = Options::default().open(dir.path()).unwrap();
    assert_eq!(store.durability(), Durability::Sync);
    assert_eq!(store.head().as_u64(), 1);
}

#[test]
fn durability_sync_can_be_set_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().durability(Durability::Sync).open(dir.path()).unwrap();
    assert_eq!(store.durability(), Durability::Sync);
    let r = store.append("s", ExpectedVersion::NoStream, &[ev("E", "x")]).unwrap();
    assert_eq!(r.position, Position::START);
}

#[test]
fn segment_size_of_one_mib_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_size(limits::SEGMENT_BYTES_MIN).open(dir.path()).unwrap();
    assert_eq!(limits::SEGMENT_BYTES_MIN, 1 << 20);
    assert_usable(&store);
}

#[test]
fn segment_size_not_a_multiple_of_4_kib_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Options::new().segment_size((1 << 20) + 1).open(dir.path()).unwrap();
    for i in 0..200 {
        store.append("s", ExpectedVersion::Any, &[ev("E", vec![i as u8; 10_000])]).unwrap();
    }
    assert_eq!(store.stream_version("s"), Some(199));
    let events = stream(&store, "s");
    assert!(events.iter().enumerate().all(|(i, e)| e.payload == vec![i as u8; 10_000]));
}

#[test]
fn largest_segment_size_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    // Opening only: no segment needs to be created to check the bound.
    let store = Options::new().segment_size(limits::SEGMENT_BYTES_MAX).open(dir.path()).unwrap();
    assert_eq!(store.head(), Position::START);
}

#[test]
fn segment_size_below_one_mib_is_invalid_input() {
    for size in [0, 1, 4096, (1 << 20) - 1] {
        let dir = tempfile::tempdir().unwrap();
        assert_invalid(Options::new().segment_size(size).open(dir.path()));
        // The failed open holds no lock: a valid open of the same folder works right after.
        let store = Store::open(dir.path()).unwrap();
        assert_usable(&store);
    }
}

#[test]
fn segment_size_above_the_maximum_is_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    assert_invalid(Options::new().segment_size(limits::SEGMENT_BYTES_MAX + 1).open(dir.path()));
    assert_invalid(Options::new().segment_size(u64::MAX).open(dir.path()));
    let store = Store::open(dir.path()).unwrap();
    assert_usable(&store);
}

#[test]
fn second_open_in_the_same_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    match Store::open(dir.path()) {
        Err(Error::Locked { .. }) => {}
        other => panic!("expected Error::Locked, got {other:?}"),
    }
    match Options::new().durability(Durability::Buffered).open(dir.path()) {
        Err(Error::Locked { .. }) => {}
        other => panic!("expected Error::Locked, got {other:?}"),
    }
    // The failed opens did not disturb the open store.
    assert_usable(&store);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.head().as_u64(), 1);
}

/// The child half of `second_open_from_another_process_is_locked`: run only when the parent sets the variable.
#[test]
#[ignore = "helper run as a child process by second_open_from_another_process_is_locked"]
fn child_tries_to_open_a_locked_store() {
    let Ok(path) = std::env::var("ANNALS_TEST_LOCKED_DIR") else { return };
    match Store::open(&path) {
        Err(Error::Locked { .. }) => std::process::exit(42),
        Err(e) => panic!("expected Error::Locked, got {e:?}"),
        Ok(_) => panic!("expected Error::Locked, the open succeeded"),
    }
}

#[test]
fn second_open_from_another_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::NoStream, &[ev("E", "x")]).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_tries_to_open_a_locked_store", "--ignored", "--nocapture", "--test-threads=1"])
        .env("ANNALS_TEST_LOCKED_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(42),
        "the child must see Error::Locked; its output:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_usable(&store);
    assert_eq!(store.stream_version("s"), Some(0));
}

#[test]
fn a_folder_with_foreign_files_is_incompatible() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not an event store").unwrap();
    match Store::open(dir.path()) {
        Err(Error::Incompatible { .. }) => {}
        other => panic!("expected Error::Incompatible, got {other:?}"),
    }
    // The foreign file is untouched.
    assert_eq!(std::fs::read(dir.path().join("notes.txt")).unwrap(), b"not an event store");
}

#[test]
fn errors_implement_std_error_and_display() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();
    let dir = tempfile::tempdir().unwrap();
    let e = Options::new().segment_size(1).open(dir.path()).unwrap_err();
    assert!(!e.to_string().is_empty());
}
