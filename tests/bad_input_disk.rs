//! Bad disks (RELIABILITY.md, the last row): a read-only disk (EROFS, or EACCES on a folder the process may not
//! write) and a full disk (ENOSPC), on the simulated file system, so they are tested as root too (where
//! `bad_input_files.rs` cannot make a folder read-only). Each gives a clear `Error::Io` carrying the OS error,
//! writes nothing, and the store is usable again once the disk is (RELIABILITY.md rule 5). A full disk only
//! refuses new space: a store opens and appends into its preallocated segment; the append that needs a new
//! segment fails without poisoning (more in `io_errors.rs`).

mod sim_support;

use std::path::PathBuf;

use annals::fs::sim::{Errno, Fault, Op, SimFs};
use annals::{Durability, Error, ExpectedVersion, NewEvent};
use sim_support::*;

/// Every file and folder with its bytes.
fn state(sim: &SimFs) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    sim.paths().into_iter().map(|(p, dir)| (p.clone(), if dir { None } else { sim.read_file(&p) })).collect()
}

/// Faults that make every change to the disk fail with `errno`, as a read-only file system does.
fn read_only(sim: &SimFs, errno: Errno) {
    for op in [Op::CreateDir, Op::Create, Op::Write, Op::Rename, Op::Remove, Op::SyncData, Op::SyncDir] {
        sim.fail(Fault::persistent(op, 0, errno));
    }
}

fn assert_io(result: Result<annals::Store, Error>, errno: Errno, what: &str) {
    match result {
        Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(errno.raw()), "{what}: the OS error is passed on: {e}"),
        Err(e) => panic!("{what}: expected Error::Io({errno:?}), got {e:?}"),
        Ok(_) => panic!("{what}: the store opened"),
    }
}

/// A store holding a few appends, closed cleanly.
fn store_with_appends(sim: &SimFs) -> Log {
    let mut w = Workload::open(sim.clone(), 7, Durability::Sync).unwrap();
    for i in 0..5 {
        w.append_one(1 + i % 3, false).unwrap();
    }
    assert!(w.close());
    w.log
}

#[test]
fn a_new_store_on_a_read_only_disk_is_an_io_error_and_writes_nothing() {
    for errno in [Errno::Erofs, Errno::Eacces] {
        let sim = new_sim();
        read_only(&sim, errno);
        let before = state(&sim);
        assert_io(options(&sim, Durability::Sync).open(dir()), errno, &format!("{errno:?}: a new store"));
        assert_eq!(state(&sim), before, "{errno:?}: nothing is written");
        // Writable again: the store is created and works.
        sim.clear_faults();
        let store = options(&sim, Durability::Sync).open(dir()).unwrap();
        store.append("s", ExpectedVersion::NoStream, &[NewEvent::new("E", "x")]).unwrap();
    }
}

#[test]
fn an_existing_store_on_a_read_only_disk_is_an_io_error_and_changes_nothing() {
    for errno in [Errno::Erofs, Errno::Eacces] {
        let sim = new_sim();
        let log = store_with_appends(&sim);
        read_only(&sim, errno);
        let before = state(&sim);
        // Opening writes (recovery makes the tail durable before anything new can vouch for it): refused.
        assert_io(options(&sim, Durability::Sync).open(dir()), errno, &format!("{errno:?}: an existing store"));
        assert_eq!(state(&sim), before, "{errno:?}: nothing is changed");
        sim.clear_faults();
        let store = options(&sim, Durability::Sync).open(dir()).unwrap();
        let n = log.batches.len();
        check_recovered(&store, &log, n, n, &format!("{errno:?}: writable again"));
    }
}

#[test]
fn a_disk_that_turns_read_only_under_an_open_store_poisons_it_and_loses_nothing() {
    // As after ext4's errors=remount-ro: every write and sync fails from now on.
    let sim = new_sim();
    let mut w = Workload::open(sim.clone(), 8, Durability::Sync).unwrap();
    for i in 0..4 {
        w.append_one(1 + i % 2, false).unwrap();
    }
    read_only(&sim, Errno::Erofs);
    match w.append_one(1, false) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ReadOnlyFilesystem, "{e}"),
        other => panic!("expected Error::Io(EROFS), got {other:?}"),
    }
    // The failed append was written, its outcome is unknown: after a reopen it is all there or all absent.
    assert!(matches!(w.append_one(1, false), Err(Error::Poisoned)));
    w.forget_last_batch();
    assert!(matches!(w.store().sync(), Err(Error::Poisoned)));
    let n = w.log.batches.len() - 1;
    check_recovered(w.store(), &w.log, n, n, "reads still work");
    drop(w.store.take());
    sim.clear_faults();
    let store = options(&sim, Durability::Sync).open(dir()).unwrap();
    check_recovered(&store, &w.log, n, n + 1, "after the disk is writable again");
}

/// A full disk: writes that need new space (the files annals creates, which are written under temporary names)
/// fail with ENOSPC; overwriting preallocated space still works.
fn full(sim: &SimFs) {
    sim.fail(Fault::persistent(Op::Write, 0, Errno::Enospc).on_paths(".tmp"));
}

#[test]
fn a_new_store_on_a_full_disk_is_an_io_error_and_leaves_no_file() {
    let sim = new_sim();
    full(&sim);
    assert_io(options(&sim, Durability::Sync).open(dir()), Errno::Enospc, "a new store on a full disk");
    let names: Vec<PathBuf> = sim.paths().into_iter().filter(|(_, dir)| !dir).map(|(p, _)| p).collect();
    assert!(
        names.iter().all(|p| p.file_name().is_some_and(|n| n == "LOCK")),
        "only the empty lock file may be left: {names:?}"
    );
    sim.clear_faults();
    let store = options(&sim, Durability::Sync).open(dir()).unwrap();
    store.append("s", ExpectedVersion::NoStream, &[NewEvent::new("E", "x")]).unwrap();
}

#[test]
fn an_existing_store_on_a_full_disk_opens_and_appends_into_its_preallocated_segment() {
    let sim = new_sim();
    let log = store_with_appends(&sim);
    full(&sim);
    let mut w = Workload::open(sim.clone(), 9, Durability::Sync).expect("a store opens on a full disk");
    w.log = log;
    for b in &mut w.log.batches {
        b.start_op = 0;
    }
    for i in 0..6 {
        w.append_one(1 + i % 3, false).expect("appends into the preallocated segment");
    }
    // Until a new segment is needed: that append fails with ENOSPC, writes nothing, poisons nothing.
    let error = loop {
        if let Err(e) = w.append_one(1, true) {
            break e;
        }
    };
    match &error {
        Error::Io(e) => assert_eq!(e.raw_os_error(), Some(Errno::Enospc.raw()), "{e}"),
        other => panic!("expected Error::Io(ENOSPC), got {other:?}"),
    }
    w.forget_last_batch();
    w.append_one(1, false).expect("not poisoned");
    sim.clear_faults();
    w.append_one(1, true).expect("space is free again");
    assert!(w.close());
    let store = options(&sim, Durability::Sync).open(dir()).unwrap();
    let n = w.log.batches.len();
    check_recovered(&store, &w.log, n, n, "reopened");
}
