//! Folders and files annals must refuse with a clear error and without writing anything: a folder that is not a
//! store, a store or segment of a newer format version, a store file that is not one, a path that is a file, a
//! read-only folder, and options out of range.

mod reliability_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use annals::format::segment_header::SegmentHeader;
use annals::format::store_file::{self, StoreFile};
use annals::format::FORMAT_VERSION;
use annals::{Error, ExpectedVersion, NewEvent, Options, Store};
use reliability_support::*;

/// Every entry of a folder (files and folders), by name.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn assert_incompatible(result: Result<Store, Error>, path: &Path, what: &str) {
    match result {
        Err(Error::Incompatible { path: p, reason }) => {
            assert_eq!(p, path, "{what}: Incompatible names the wrong path ({reason})")
        }
        Err(e) => panic!("{what}: expected Error::Incompatible for {}, got {e:?}", path.display()),
        Ok(_) => panic!("{what}: expected Error::Incompatible for {}, but the store opened", path.display()),
    }
}

/// A closed store with a few events in 1 MiB segments (several segments if `segments` > 1).
fn store_with_events(dir: &Path, segments: usize) -> Model {
    let mut rng = Rng::new(7);
    let store = Options::new().segment_size(1 << 20).open(dir).unwrap();
    let mut model = Model::default();
    model.append(&store, "s", &payloads(&mut rng, &[10, 20]));
    while segment_paths(dir).len() < segments {
        model.append(&store, "big", &payloads(&mut rng, &[60_000, 60_000]));
    }
    drop(store);
    model
}

#[test]
fn a_folder_with_other_files_is_not_a_store() {
    type Make = fn(&Path);
    let cases: [(&str, Make); 4] = [
        ("an unrelated file", |d| std::fs::write(d.join("notes.txt"), b"my notes").unwrap()),
        ("a sub-folder", |d| std::fs::create_dir(d.join("photos")).unwrap()),
        ("a segment-like file without ANNALS", |d| {
            std::fs::write(d.join(format!("{:020}.seg", 0)), [1u8; 4096]).unwrap()
        }),
        ("a store whose ANNALS file was deleted", |d| {
            store_with_events(d, 1);
            std::fs::remove_file(d.join(store_file::FILE_NAME)).unwrap();
        }),
    ];
    for (what, make) in cases {
        let dir = tempfile::tempdir().unwrap();
        make(dir.path());
        let names = entries(dir.path());
        let before = snapshot(dir.path());
        assert_incompatible(Store::open(dir.path()), dir.path(), what);
        // No store file, no segment, no temporary file was created; what was there is untouched. (A `LOCK` file
        // is checked on its own below.)
        let mut after = entries(dir.path());
        after.retain(|n| n != "LOCK" || names.contains(&"LOCK".to_owned()));
        assert_eq!(after, names, "{what}: entries were added or removed");
        let mut after = snapshot(dir.path());
        if !before.contains_key("LOCK") {
            after.remove("LOCK");
        }
        assert_same_files(&before, &after, what);
        // And it stays refused.
        assert_incompatible(Store::open(dir.path()), dir.path(), &format!("{what}, again"));
    }
}

#[test]
fn a_store_file_of_a_newer_format_version_is_incompatible() {
    let dir = tempfile::tempdir().unwrap();
    let model = store_with_events(dir.path(), 1);
    let path = dir.path().join(store_file::FILE_NAME);
    let orig = read(&path);
    let created_us = StoreFile::decode(&orig).unwrap().created_us;
    for version in [FORMAT_VERSION + 1, u32::MAX] {
        std::fs::write(&path, StoreFile { format_version: version, created_us }.encode()).unwrap();
        let before = snapshot(dir.path());
        let what = format!("ANNALS of format version {version}");
        assert_incompatible(Store::open(dir.path()), &path, &what);
        assert_same_files(&before, &snapshot(dir.path()), &what);
    }
    std::fs::write(&path, &orig).unwrap();
    assert_holds(&Store::open(dir.path()).unwrap(), &model, "restored");
}

#[test]
fn a_segment_of_a_newer_format_version_is_incompatible() {
    let dir = tempfile::tempdir().unwrap();
    let model = store_with_events(dir.path(), 3);
    let segs = segment_paths(dir.path());
    assert!(segs.len() >= 3);
    // The oldest (sealed) segment, one in the middle, and the newest.
    for seg in [&segs[0], &segs[1], segs.last().unwrap()] {
        let orig = read(seg);
        let h = header_of(&orig);
        let mut newer = orig.clone();
        newer[..64].copy_from_slice(&SegmentHeader { format_version: FORMAT_VERSION + 1, ..h }.encode());
        std::fs::write(seg, &newer).unwrap();
        let before = snapshot(dir.path());
        let what = format!("{} of a newer format version", seg.display());
        assert_incompatible(Options::new().segment_size(1 << 20).open(dir.path()), seg, &what);
        assert_same_files(&before, &snapshot(dir.path()), &what);
        std::fs::write(seg, &orig).unwrap();
    }
    assert_holds(&Store::open(dir.path()).unwrap(), &model, "restored");
}

#[test]
fn a_store_file_that_is_not_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = store_with_events(dir.path(), 1);
    let path = dir.path().join(store_file::FILE_NAME);
    let orig = read(&path);
    let mut wrong_magic = orig.clone();
    wrong_magic[0] = b'X';
    let mut longer = orig.clone();
    longer.push(0);
    let contents: [(&str, Vec<u8>); 5] = [
        ("wrong magic", wrong_magic),
        ("empty", Vec::new()),
        ("one byte longer", longer),
        ("a text file", b"this is not a store\n".to_vec()),
        ("a large file", vec![0xAB; 1 << 20]),
    ];
    for (what, bytes) in contents {
        std::fs::write(&path, &bytes).unwrap();
        let before = snapshot(dir.path());
        let what = format!("ANNALS is {what}");
        match Store::open(dir.path()) {
            Err(Error::Incompatible { path: p, .. }) => assert_eq!(p, path, "{what}"),
            // A file too large to be one is refused before it is read; any clear error is fine.
            Err(Error::Io(_) | Error::Corrupt { .. }) if bytes.len() > 4096 => {}
            other => panic!("{what}: expected Error::Incompatible, got {:?}", other.map(|_| "an open store")),
        }
        assert_same_files(&before, &snapshot(dir.path()), &what);
    }
    // ANNALS is a folder.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let before = snapshot(dir.path());
    assert!(Store::open(dir.path()).is_err(), "ANNALS is a folder");
    assert_same_files(&before, &snapshot(dir.path()), "ANNALS is a folder");
    assert!(path.is_dir());
    std::fs::remove_dir(&path).unwrap();
    std::fs::write(&path, &orig).unwrap();
    assert_holds(&Store::open(dir.path()).unwrap(), &model, "restored");
}

#[test]
fn a_path_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, b"precious").unwrap();
    for path in [file.clone(), file.join("store")] {
        match Store::open(&path) {
            Err(Error::Io(_) | Error::Incompatible { .. }) => {}
            other => panic!("{}: expected an I/O error, got {:?}", path.display(), other.map(|_| "an open store")),
        }
    }
    assert_eq!(read(&file), b"precious");
    assert_eq!(entries(dir.path()), ["data"]);
}

#[test]
fn options_out_of_range_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new-store");
    for size in [0, (1 << 20) - 1, (1 << 30) + 1, u64::MAX] {
        match Options::new().segment_size(size).open(&path) {
            Err(Error::InvalidInput { .. }) => {}
            other => panic!("segment_size {size}: expected InvalidInput, got {:?}", other.map(|_| "an open store")),
        }
        assert!(!path.exists(), "segment_size {size}: the folder was created");
    }
    // An existing store is not touched either.
    let model = store_with_events(&path, 1);
    let before = snapshot(&path);
    assert!(matches!(Options::new().segment_size(1).open(&path), Err(Error::InvalidInput { .. })));
    assert_same_files(&before, &snapshot(&path), "invalid options on an existing store");
    assert_holds(&Store::open(&path).unwrap(), &model, "still intact");
}

/// Makes `path` read-only; returns false (after restoring it) if this process can write there anyway (root).
fn make_read_only(path: &Path) -> bool {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = path.join(".write-probe");
    match std::fs::write(&probe, b"x") {
        Ok(()) => {
            std::fs::remove_file(&probe).unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
            false
        }
        Err(_) => true,
    }
}

#[test]
fn a_read_only_folder_is_an_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    // An empty read-only folder: no store can be created in it.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    if !make_read_only(&empty) {
        println!("SKIPPED: this process can write to a read-only folder (running as root?); nothing to test");
        return;
    }
    assert!(matches!(Store::open(&empty), Err(Error::Io(_))), "a new store in a read-only folder");
    assert!(entries(&empty).is_empty());

    // An existing store whose folder and files are read-only.
    let store = dir.path().join("store");
    let model = store_with_events(&store, 1);
    for name in entries(&store) {
        std::fs::set_permissions(store.join(name), std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    assert!(make_read_only(&store));
    let before = snapshot(&store);
    assert!(matches!(Store::open(&store), Err(Error::Io(_))), "a read-only store");
    assert_same_files(&before, &snapshot(&store), "a read-only store");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in entries(&store) {
        std::fs::set_permissions(store.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let s = Store::open(&store).unwrap();
    assert_holds(&s, &model, "writable again");
    s.append("s", ExpectedVersion::Exact(1), &[NewEvent::new("E", "after")]).unwrap();
}

//
// - refusing_a_folder_that_is_not_a_store_creates_no_lock_file: `Store::open` creates `LOCK` before it checks that
//   the folder is a store.

#[test]
fn refusing_a_folder_that_is_not_a_store_creates_no_lock_file() {
    // RELIABILITY.md "Bad input": a folder that is not a store gets a clear error and nothing written. Pointing a
    // store at the wrong folder (a home directory, a mount point) must not leave a `LOCK` file behind in it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"my notes").unwrap();
    assert_incompatible(Store::open(dir.path()), dir.path(), "an unrelated file");
    assert_eq!(entries(dir.path()), ["notes.txt"], "the refused open created files in a folder that is not a store");
}
