//! The folder lock (RELIABILITY.md rule 6): while a store is open, by any handle, clone or iterator, in this
//! process or another, a second open of its folder fails with `Error::Locked` and changes nothing; once the last
//! of them is gone (or its process is dead) the folder opens again at once.
//!
//! The multi-process tests re-run this test binary as a child that runs only `lock_child`, steered by
//! environment variables, and talk to it through its stdin and stdout: no sleeps, no timing.

mod reliability_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use annals::{Durability, Error, ExpectedVersion, NewEvent, Options, Position, Store};
use reliability_support::*;

const CHILD_DIR: &str = "ANNALS_LOCK_TEST_DIR";
const CHILD_MODE: &str = "ANNALS_LOCK_TEST_MODE";

fn assert_locked(result: Result<Store, Error>, dir: &Path, what: &str) {
    match result {
        Err(Error::Locked { path }) => assert_eq!(path, dir.join("LOCK"), "{what}: Locked names the lock file"),
        Err(e) => panic!("{what}: expected Error::Locked, got {e:?}"),
        Ok(_) => panic!("{what}: expected Error::Locked, but a second store opened the folder"),
    }
}

/// A second open, with default and with other options, is `Locked` and changes no file.
fn assert_second_open_locked(dir: &Path, what: &str) {
    let before = snapshot(dir);
    assert_locked(Store::open(dir), dir, what);
    assert_locked(Options::new().durability(Durability::Buffered).segment_size(1 << 20).open(dir), dir, what);
    assert_same_files(&before, &snapshot(dir), &format!("{what}: the refused open"));
}

fn ev(payload: &str) -> NewEvent {
    NewEvent::new("E", payload.to_owned())
}

#[test]
fn a_second_open_in_the_same_process_is_locked_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::NoStream, &[ev("one")]).unwrap();
    assert_second_open_locked(dir.path(), "first store open");
    // The first store is unaffected by the refused opens.
    store.append("s", ExpectedVersion::Exact(0), &[ev("two")]).unwrap();
    drop(store);

    let store = Store::open(dir.path()).expect("open after the first store closed");
    assert_eq!(store.stream_version("s"), Some(1));
    assert_second_open_locked(dir.path(), "reopened store");
}

#[test]
fn clones_and_iterators_keep_the_folder_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::NoStream, &[ev("a"), ev("b"), ev("c")]).unwrap();
    let clone = store.clone();
    drop(store);
    assert_second_open_locked(dir.path(), "only a clone left");

    let mut all = clone.read_all(Position::START);
    let mut stream = clone.read_stream("s", 1).unwrap();
    drop(clone);
    assert_second_open_locked(dir.path(), "only two iterators left");
    // The iterators still read after every handle is gone.
    assert_eq!(all.next().unwrap().unwrap().payload(), b"a");
    drop(all);
    assert_second_open_locked(dir.path(), "only a read_stream iterator left");
    assert_eq!(stream.next().unwrap().unwrap().payload(), b"b");
    let event = stream.next().unwrap().unwrap();
    drop(stream);

    // A recorded event is not a handle (API.md: handles, iterators, subscriptions and adapters keep the store
    // open): with only an event left the folder opens, and the event's bytes stay readable.
    let store = Store::open(dir.path()).expect("open after every handle and iterator was dropped");
    assert_eq!(store.head(), Position::from_u64(3));
    store.append("s", ExpectedVersion::Exact(2), &[ev("d")]).unwrap();
    assert_eq!(event.payload(), b"c");
}

#[test]
fn a_failed_open_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::NoStream, &[ev("x")]).unwrap();
    drop(store);
    // Damage the store file: the open fails as corrupt, and must not leave the folder locked behind it.
    let path = dir.path().join("ANNALS");
    let orig = read(&path);
    let mut bad = orig.clone();
    bad[20] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    for _ in 0..2 {
        match Store::open(dir.path()) {
            Err(Error::Corrupt { .. }) => {}
            other => panic!("expected Corrupt (not Locked) from every attempt, got {other:?}"),
        }
    }
    std::fs::write(&path, &orig).unwrap();
    let store = Store::open(dir.path()).expect("open after the repair");
    assert_eq!(store.stream_version("s"), Some(0));
}

// ------------------------------------------------------------------------------------------------------------
// Other processes

/// Runs in the child process only (the env var names the folder); a no-op when run by hand.
#[test]
#[ignore = "helper run in a child process by the multi-process lock tests"]
fn lock_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let mode = std::env::var(CHILD_MODE).unwrap_or_default();
    let mut out = std::io::stdout();
    match mode.as_str() {
        "hold" => {
            let store = Store::open(&dir).expect("child: open");
            store.append("from-child", ExpectedVersion::Any, &[ev("child was here")]).expect("child: append");
            writeln!(out, "HOLDING").unwrap();
            out.flush().unwrap();
            // Hold the store until the parent closes our stdin.
            let mut rest = Vec::new();
            std::io::stdin().read_to_end(&mut rest).unwrap();
            drop(store);
            writeln!(out, "RELEASED").unwrap();
        }
        "expect-locked" => match Store::open(&dir) {
            Err(Error::Locked { path }) => {
                assert_eq!(path, Path::new(&dir).join("LOCK"));
                writeln!(out, "LOCKED").unwrap();
            }
            Err(e) => panic!("child: expected Error::Locked, got {e:?}"),
            Ok(_) => panic!("child: expected Error::Locked, but the store opened"),
        },
        other => panic!("child: unknown mode {other:?}"),
    }
    out.flush().unwrap();
}

fn spawn_child(dir: &Path, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode)
        .env_remove("RUST_TEST_THREADS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child test process")
}

/// Reads the child's stdout until a line equal to `marker`; panics with its stderr if it ends first.
fn wait_for_line(child: &mut Child, stdout: &mut BufReader<ChildStdout>, marker: &str) {
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            let status = child.wait().unwrap();
            panic!("the child ended ({status}) before printing {marker:?}; its stderr:\n{err}");
        }
        // libtest prints "test lock_child ... " without a newline before the test's own output.
        if line.trim_end().ends_with(marker) {
            return;
        }
    }
}

#[test]
fn a_store_held_by_another_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(dir.path(), "hold");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    wait_for_line(&mut child, &mut stdout, "HOLDING");

    assert_second_open_locked(dir.path(), "held by another process");

    drop(child.stdin.take()); // the child drops its store and exits
    wait_for_line(&mut child, &mut stdout, "RELEASED");
    assert!(child.wait().unwrap().success(), "the child exits cleanly");
    let store = Store::open(dir.path()).expect("open after the other process closed the store");
    let got: Vec<_> = store.read_stream("from-child", 0).unwrap().map(|e| e.unwrap().payload().to_vec()).collect();
    assert_eq!(got, [b"child was here".to_vec()]);
}

#[test]
fn a_store_held_here_is_locked_for_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::NoStream, &[ev("parent")]).unwrap();
    let before = snapshot(dir.path());
    let mut child = spawn_child(dir.path(), "expect-locked");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    wait_for_line(&mut child, &mut stdout, "LOCKED");
    assert!(child.wait().unwrap().success(), "the child saw Error::Locked");
    assert_same_files(&before, &snapshot(dir.path()), "the other process's refused open");
    store.append("s", ExpectedVersion::Exact(0), &[ev("still mine")]).unwrap();
}

#[test]
fn the_lock_dies_with_the_process_that_held_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(dir.path(), "hold");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    wait_for_line(&mut child, &mut stdout, "HOLDING");
    assert_second_open_locked(dir.path(), "held by a live process");

    child.kill().unwrap(); // SIGKILL: no clean close, no unlock by the child
    let status = child.wait().unwrap();
    assert!(!status.success());
    let store = Store::open(dir.path()).expect("open after the holder was killed");
    let got: Vec<_> = store.read_stream("from-child", 0).unwrap().map(|e| e.unwrap().payload().to_vec()).collect();
    assert_eq!(got, [b"child was here".to_vec()], "the killed child's acknowledged append survived");
}

/// A forked child shares its parent's open files, the lock file's included, until it calls `exec` (and for good
/// if it never does). Dropping a store must release the folder all the same: otherwise a store dropped while
/// another thread spawns a process keeps its folder locked, and an open right after the drop fails with `Locked`
/// (it did in CI, when the drop only closed the lock file).
#[test]
fn a_forked_child_does_not_keep_the_folder_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.append("s", ExpectedVersion::NoStream, &[ev("before the fork")]).unwrap();

    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    let [read_end, write_end] = fds;
    // SAFETY: the child calls only async-signal-safe functions (close, read, _exit) before it exits, as a
    // fork of a multi-threaded process must.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // The child: holds copies of every descriptor of the parent, the lock file's included, until the
        // parent closes the pipe's write end.
        // SAFETY: the descriptors are the pipe's, open in this process; `byte` is a valid one-byte buffer;
        // `_exit` ends the child without running the parent's destructors or the test harness.
        unsafe {
            libc::close(write_end);
            let mut byte = 0u8;
            libc::read(read_end, (&mut byte as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    // SAFETY: the parent no longer needs the read end.
    unsafe { libc::close(read_end) };

    drop(store);
    let reopened = Store::open(dir.path());
    // Let the child go before asserting, so a failure does not leave it waiting.
    // SAFETY: the write end is ours; closing it ends the child's read.
    unsafe { libc::close(write_end) };
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-parameter.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let store = reopened.expect("open right after the drop, while a forked child still holds the parent's files");
    assert_eq!(store.stream_version("s"), Some(0));
    // And the lock taken by the reopen holds against other processes, the child's exit notwithstanding.
    let mut child = spawn_child(dir.path(), "expect-locked");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    wait_for_line(&mut child, &mut stdout, "LOCKED");
    assert!(child.wait().unwrap().success(), "another process saw Error::Locked");
}
