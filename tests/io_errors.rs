//! I/O errors (RELIABILITY.md rule 5): a fixed workload on the simulated file system with the k-th write,
//! sync_data, rename, sync_dir, create or read failing with EIO or ENOSPC, once or from then on, for every k.
//! After the failure:
//! - the failing call returns `Error::Io` (never a panic, never `Corrupt`), and nothing unacknowledged is
//!   acknowledged: a power loss right then keeps every acknowledged `Sync` append (and every `Buffered` one a
//!   completed `sync()` or close covered);
//! - a failed write or sync of log data poisons the store: appends and `sync()` return `Error::Poisoned` (even
//!   once the disk works again) and reads of acknowledged events keep working, until the store is reopened;
//! - a failure while preparing a segment (creating or zero-filling its file, installing it) fails that append
//!   only: nothing of it is written, the store is not poisoned, and appends work again once the fault is gone;
//! - reopening, on the crash image and on the un-crashed file system, loses nothing acknowledged and keeps
//!   appends whole, and the store works after it.
//!
//! `ANNALS_SEED` is printed and replays the random choices of the workload; `ANNALS_IO_ROUNDS` (default 1)
//! repeats the loops over workloads of further seeds.

mod sim_support;

use std::path::Path;

use annals::format::frame::{self, event_frame_bytes};
use annals::format::segment_header;
use annals::fs::sim::{CrashMode, DataCrash, DirCrash, Errno, Fault, Op, SimFs, SyncFailure};
use annals::{Durability, Error, Position};
use sim_support::*;

const KINDS: [Op; 6] = [Op::Write, Op::SyncData, Op::Rename, Op::SyncDir, Op::Create, Op::Read];

fn small(w: &mut Workload, n: usize) -> Result<(), Error> {
    for i in 0..n {
        w.append_one(1 + i % 3, false)?;
    }
    Ok(())
}

/// `Sync` appends of every kind with a segment roll and a reopen, then `Buffered` ones with `sync()` calls and
/// another roll, then a clean close.
fn script(w: &mut Workload) -> Result<(), Error> {
    small(w, 3)?;
    w.append_many(false)?;
    for _ in 0..4 {
        w.append_one(1, true)?;
    }
    small(w, 2)?;
    w.reopen()?;
    w.durability = Durability::Buffered;
    w.reopen()?;
    small(w, 3)?;
    sync(w)?;
    for _ in 0..4 {
        w.append_one(1, true)?;
    }
    w.append_many(false)?;
    sync(w)?;
    small(w, 2)?;
    if !w.close() {
        return Err(Error::Io(std::io::Error::other("the clean close failed")));
    }
    Ok(())
}

fn sync(w: &mut Workload) -> Result<(), Error> {
    w.store().sync()?;
    let op = w.sim.ops();
    w.log.all_durable(op);
    Ok(())
}

/// Appends known to be durable (acknowledged in `Sync` mode, or covered by a sync or close).
fn durable(log: &Log) -> usize {
    log.batches.iter().take_while(|b| b.durable_op.is_some()).count()
}

/// Appends acknowledged at all.
fn acked(log: &Log) -> usize {
    log.batches.iter().take_while(|b| b.acked_op.is_some()).count()
}

/// Whether an injected failure hit the log's own data (a write or sync of a segment file), which must poison.
fn hits_log_data(op: Op, path: &Path) -> bool {
    matches!(op, Op::Write | Op::SyncData) && path.extension().is_some_and(|e| e == "seg")
}

#[derive(Default, Debug)]
struct Tally {
    cases: u64,
    poisoned: u64,
    not_written: u64,
    failed_open: u64,
    unseen: u64,
}

/// Runs the script with `fault` and checks everything the module docs promise.
fn run_case(seed: u64, fault: Fault, sync_failure: SyncFailure, tally: &mut Tally) {
    let what = format!("{fault:?}, {sync_failure:?}, seed {seed}");
    let sim = new_sim();
    sim.set_sync_failure(sync_failure);
    sim.fail(fault.clone());
    tally.cases += 1;
    let mut w = match Workload::open(sim.clone(), seed, Durability::Sync) {
        Ok(w) => w,
        Err(e) => {
            // A failed first open: an error, and the store opens once the disk works.
            assert!(matches!(e, Error::Io(_)), "{what}: the first open failed with {e:?}");
            tally.failed_open += 1;
            sim.clear_faults();
            let store = options(&sim, Durability::Sync).open(dir()).unwrap_or_else(|e| panic!("{what}: open: {e:?}"));
            assert_eq!(store.head().as_u64(), 0, "{what}");
            return;
        }
    };
    let result = script(&mut w);
    let injected = sim.injected();
    let Err(error) = result else {
        // The failure was absorbed (the background preparation of a segment failed and the writer made the
        // segment itself) or never happened: everything is there.
        tally.unseen += 1;
        sim.clear_faults();
        let store = options(&sim, Durability::Sync).open(dir()).unwrap_or_else(|e| panic!("{what}: reopen: {e:?}"));
        check_recovered(&store, &w.log, w.log.batches.len(), w.log.batches.len(), &what);
        return;
    };
    assert!(!injected.is_empty(), "{what}: {error:?} without a fault");
    // A failure may have been absorbed first (the background preparation of a segment): the store must be
    // poisoned exactly when one of the failures hit the log's own data.
    let poisoning = injected.iter().any(|(op, path, _)| hits_log_data(*op, path));
    let failures: Vec<String> = injected.iter().map(|(op, path, _)| format!("{op:?} on {}", path.display())).collect();
    let what = format!("{what}: failures {failures:?}, the workload got {error:?}");
    assert!(matches!(error, Error::Io(_)), "{what}: expected Error::Io");
    if w.store.is_none() {
        // The failure came during a reopen: the open failed; nothing else to ask of a store.
        tally.failed_open += 1;
    } else {
        let store = w.store().clone();
        // Reads of acknowledged events keep working.
        check_recovered(&store, &w.log, acked(&w.log), w.log.batches.len(), &format!("{what}: reads after it"));
        if poisoning {
            tally.poisoned += 1;
            sim.clear_faults();
            let probe = poisoned_probe(&mut w);
            assert!(matches!(probe, Err(Error::Poisoned)), "{what}: an append after it returned {probe:?}");
            let s = store.sync();
            assert!(matches!(s, Err(Error::Poisoned)), "{what}: sync() after it returned {s:?}");
        } else {
            // Preparing a segment failed: that append wrote nothing and the store is not poisoned.
            tally.not_written += 1;
            let failed = w.log.batches.last().expect("the failed append").clone();
            assert!(failed.acked_op.is_none());
            let visible = read_everything(&store, &what);
            assert!(visible.len() <= failed.start, "{what}: the failed append is visible");
            w.forget_last_batch();
            if fault.persistent {
                // The fault is still there: the same append fails again, and poisons if the failure now hits
                // the log's data (a persistent sync failure reaches the segment's own sync).
                let before = sim.injected().len();
                let again = w.append_one(1, true);
                let hit_log = sim.injected()[before..].iter().any(|(op, path, _)| hits_log_data(*op, path));
                match again {
                    // Failed before writing (preparing a segment, or syncing the old tail before a roll).
                    Err(Error::Io(_)) if !hit_log => w.forget_last_batch(),
                    // Maybe written (it fit in the current segment and its sync failed): all or nothing later.
                    Err(Error::Io(_)) => {}
                    Ok(()) => {}
                    other => panic!("{what}: with the fault still there: {other:?}"),
                }
                if hit_log {
                    let probe = poisoned_probe(&mut w);
                    assert!(matches!(probe, Err(Error::Poisoned)), "{what}: after a failed sync: {probe:?}");
                    sim.clear_faults();
                    drop(store);
                    return check_after(seed, &sim, w, &what);
                }
            }
            sim.clear_faults();
            // In Buffered mode the indexer syncs in the background: it may meet a persistent sync fault after
            // the workload's own failure was recorded above, and poison the store then. Nothing can fail now.
            if fault.persistent && sim.injected().iter().any(|(op, path, _)| hits_log_data(*op, path)) {
                drop(store);
                return check_after(seed, &sim, w, &what);
            }
            w.append_one(1, true).unwrap_or_else(|e| panic!("{what}: an append once the disk works: {e:?}"));
            w.append_one(1, false).unwrap_or_else(|e| panic!("{what}: an append once the disk works: {e:?}"));
        }
    }
    check_after(seed, &sim, w, &what);
}

/// An append after a failure that poisoned the store: returns what it got, or, if it got the poisoning error
/// itself (`Error::Io`, when the failed sync was a background one, here the indexer's in `Buffered` mode, so the
/// workload's own error was another), what a second append gets.
fn poisoned_probe(w: &mut Workload) -> Result<(), Error> {
    let probe = w.append_one(1, false);
    w.forget_last_batch();
    match probe {
        Err(Error::Io(e)) if e.to_string().contains("poisoned") => {
            let again = w.append_one(1, false);
            w.forget_last_batch();
            again
        }
        other => other,
    }
}

/// After the failure: a power loss keeps everything durable, and a reopen once the disk works keeps
/// everything acknowledged; the store works again.
fn check_after(seed: u64, sim: &SimFs, mut w: Workload, what: &str) {
    let image = sim.crash(CrashMode::POWER_LOSS, seed);
    let store = options(&image, Durability::Sync)
        .open(dir())
        .unwrap_or_else(|e| panic!("{what}: open after a power loss: {e:?}\n{}", describe(&image)));
    check_recovered(&store, &w.log, durable(&w.log), w.log.batches.len(), &format!("{what}: after a power loss"));
    drop(store);
    // So does reopening the un-crashed file system once the disk works, and the store works again.
    drop(w.store.take());
    sim.clear_faults();
    let required = acked(&w.log);
    let store = options(sim, Durability::Sync)
        .open(dir())
        .unwrap_or_else(|e| panic!("{what}: reopen: {e:?}\n{}", describe(sim)));
    let n = check_recovered(&store, &w.log, required, w.log.batches.len(), &format!("{what}: reopened"));
    store
        .append("after-reopen", annals::ExpectedVersion::NoStream, &[annals::NewEvent::new("E", "x")])
        .unwrap_or_else(|e| panic!("{what}: append after reopen: {e:?}"));
    assert_eq!(store.head().as_u64(), w.log.prefix(n).events.len() as u64 + 1);
}

/// How many operations of each kind the script does without faults.
fn op_counts(seed: u64) -> Vec<(Op, u64)> {
    let sim = new_sim();
    let mut w = Workload::open(sim.clone(), seed, Durability::Sync).unwrap();
    script(&mut w).unwrap();
    KINDS.iter().map(|&op| (op, sim.ops_of(op))).collect()
}

fn every_k(test: &str, errno: Errno, sync_failure: SyncFailure) {
    let first = seed(test);
    let mut tally = Tally::default();
    // The long mode repeats the loop with workloads of other seeds (ANNALS_IO_ROUNDS).
    let mut rng = annals::fs::sim::Rng::new(first);
    for round in 0..count("ANNALS_IO_ROUNDS", 1) {
        let seed = if round == 0 { first } else { rng.next_u64() };
        for (op, n) in op_counts(seed) {
            assert!(n > 0, "the script does no {op:?}");
            for k in 0..=n {
                for persistent in [false, true] {
                    let fault = if persistent { Fault::persistent(op, k, errno) } else { Fault::once(op, k, errno) };
                    run_case(seed, fault, sync_failure, &mut tally);
                }
            }
        }
    }
    println!("{test}: {tally:?}");
    assert!(tally.poisoned > 0 && tally.not_written > 0 && tally.failed_open > 0, "{tally:?}");
}

#[test]
fn eio_at_every_operation_once_and_persistently() {
    every_k("eio_at_every_operation_once_and_persistently", Errno::Eio, SyncFailure::KeepDirty);
}

#[test]
fn enospc_at_every_operation_once_and_persistently() {
    every_k("enospc_at_every_operation_once_and_persistently", Errno::Enospc, SyncFailure::KeepDirty);
}

#[test]
fn failed_syncs_that_drop_the_dirty_pages() {
    // Linux after a failed fsync: the dirty pages are marked clean and never written. The store must not have
    // acknowledged anything they held, and must never count on a later sync to write them.
    let seed = seed("failed_syncs_that_drop_the_dirty_pages");
    let mut tally = Tally::default();
    let n = op_counts(seed).into_iter().find(|(op, _)| *op == Op::SyncData).expect("syncs").1;
    for k in 0..=n {
        run_case(seed, Fault::once(Op::SyncData, k, Errno::Eio), SyncFailure::DropPages, &mut tally);
    }
    println!("failed_syncs_that_drop_the_dirty_pages: {tally:?}");
    assert!(tally.poisoned > 0, "{tally:?}");
}

#[test]
fn no_space_while_preparing_a_segment_fails_that_append_only() {
    // The disk is full for new files (the background preparation and the writer's own attempt both fail):
    // the append that needs a new segment fails with a clear error, nothing is written, the store is not
    // poisoned, and the same append works once space is freed.
    let seed = seed("no_space_while_preparing_a_segment_fails_that_append_only");
    let sim = new_sim();
    let mut w = Workload::open(sim.clone(), seed, Durability::Sync).unwrap();
    small(&mut w, 5).unwrap();
    sim.fail(Fault::persistent(Op::Write, 0, Errno::Enospc).on_paths(".tmp"));
    let mut failed = None;
    for _ in 0..8 {
        match w.append_one(1, true) {
            Ok(()) => {}
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let e = failed.expect("a segment roll was needed");
    match &e {
        Error::Io(io) => assert_eq!(io.raw_os_error(), Some(28), "ENOSPC is passed on: {io:?}"),
        other => panic!("expected Error::Io(ENOSPC), got {other:?}"),
    }
    w.forget_last_batch();
    let segments = |sim: &SimFs| sim.paths().iter().filter(|(p, _)| p.extension().is_some_and(|e| e == "seg")).count();
    assert_eq!(segments(&sim), 1, "no new segment file");
    // The log's temporaries only: the indexer writes its chunk files through `{name}.idx.tmp` too (here it fails
    // and retries), and one may be between its creation and its removal or rename at any moment.
    let log_temporary =
        |p: &std::path::Path| p.extension().is_some_and(|e| e == "tmp") && !p.to_string_lossy().ends_with(".idx.tmp");
    assert!(!sim.paths().iter().any(|(p, _)| log_temporary(p)), "no temporary file of the log is left");
    // An append that still fits in the current segment works while the disk is full. Where the writer is: the
    // segment's header, then every frame so far (one segment, no close marker); it keeps room for two header-only
    // frames at the end (a footer and a close marker).
    let segment = sim.paths().into_iter().find(|(p, _)| p.extension().is_some_and(|e| e == "seg")).unwrap().0;
    let segment_bytes = sim.read_file(&segment).unwrap().len();
    let frames: usize = w
        .store()
        .read_all(Position::START)
        .map(|e| {
            e.map(|e| event_frame_bytes(e.stream().len(), e.event_type().len(), e.metadata().len(), e.payload().len()))
        })
        .sum::<Result<usize, Error>>()
        .unwrap();
    let room = segment_bytes - segment_header::SIZE_BYTES - frames - 2 * frame::HEADER_BYTES;
    let tiny = event_frame_bytes(w.longest_stream_name(), "Type0".len(), 0, 0);
    if room >= tiny {
        // Up to 1,000 payload bytes, as much as fits (padding included) for the longest stream name.
        let payload = (room - tiny).min(1000) / 16 * 16;
        w.append_sized(payload).expect("an append that needs no new segment");
    } else {
        // The failed append left less room than the smallest event takes: even it needs the new segment.
        match w.append_sized(0) {
            Err(Error::Io(io)) => assert_eq!(io.raw_os_error(), Some(28), "ENOSPC is passed on: {io:?}"),
            other => panic!("{room} bytes left: expected Error::Io(ENOSPC), got {other:?}"),
        }
        w.forget_last_batch();
    }
    check_recovered(w.store(), &w.log, w.log.batches.len(), w.log.batches.len(), "while the disk is full");
    sim.clear_faults();
    while segments(&sim) < 2 {
        w.append_one(1, true).expect("large appends once space is freed");
    }
    assert!(w.close());
    let store = options(&sim, Durability::Sync).open(dir()).unwrap();
    check_recovered(&store, &w.log, w.log.batches.len(), w.log.batches.len(), "reopened");
}

#[test]
fn a_power_loss_after_reopening_a_store_whose_failed_sync_dropped_pages() {
    // fsyncgate: a failed sync drops the dirty pages but reads still return them. A reopen in the same OS
    // session reads them from the page cache; whatever recovery keeps of them must be made durable before new
    // appends vouch for it, or a later power loss turns the store corrupt or loses acknowledged appends.
    let seed = seed("a_power_loss_after_reopening_a_store_whose_failed_sync_dropped_pages");
    let sim = new_sim();
    sim.set_sync_failure(SyncFailure::DropPages);
    let mut w = Workload::open(sim.clone(), seed, Durability::Sync).unwrap();
    small(&mut w, 3).unwrap();
    sim.fail(Fault::once(Op::SyncData, 0, Errno::Eio));
    assert!(matches!(w.append_one(2, false), Err(Error::Io(_))));
    drop(w.store.take());
    w.reopen_after_failure().expect("reopen");
    small(&mut w, 2).unwrap();
    let acked = acked(&w.log);
    let image = sim.crash(CrashMode::POWER_LOSS, seed);
    let store = options(&image, Durability::Sync)
        .open(dir())
        .unwrap_or_else(|e| panic!("open after the power loss: {e:?}\n{}", describe(&image)));
    check_recovered(&store, &w.log, acked, w.log.batches.len(), "after the power loss");
}

#[test]
fn a_failed_segment_install_leaves_no_file_behind() {
    // A folder sync or the reopening read after renaming a new segment into place fails: the append fails
    // without writing, and the renamed file must go, or the log moves past its first position and the next
    // open reports corruption; if its removal does not survive a power loss, recovery removes it.
    let seed = seed("a_failed_segment_install_leaves_no_file_behind");
    let segments = |sim: &SimFs| sim.paths().iter().filter(|(p, _)| p.extension().is_some_and(|e| e == "seg")).count();
    let mut failed_installs = 0;
    for (op, after) in [(Op::SyncDir, 0), (Op::SyncDir, 1), (Op::SyncDir, 2), (Op::Read, 0), (Op::Map, 0)] {
        let what = format!("{op:?} failing after {after}");
        let sim = new_sim();
        let mut w = Workload::open(sim.clone(), seed, Durability::Sync).unwrap();
        small(&mut w, 3).unwrap();
        let base = sim.injected().len();
        sim.fail(Fault::once(op, after, Errno::Eio));
        while segments(&sim) < 2 {
            if w.append_one(1, true).is_err() {
                w.forget_last_batch();
                break;
            }
        }
        let hit_rename = sim.injected().len() > base && segments(&sim) == 1;
        failed_installs += u64::from(hit_rename);
        // A fault the install did not reach is not this test's business (the close would meet it).
        sim.clear_faults();
        small(&mut w, 3).unwrap();
        // The removal of the failed segment may not have survived: a power loss now must still open.
        let image = sim.crash(CrashMode { data: DataCrash::DropAll, dirs: DirCrash::DropAll }, seed);
        let store = options(&image, Durability::Sync)
            .open(dir())
            .unwrap_or_else(|e| panic!("{what}: power loss: {e:?}\n{}", describe(&image)));
        check_recovered(&store, &w.log, w.log.batches.len(), w.log.batches.len(), &what);
        drop(store);
        assert!(w.close());
        let store = options(&sim, Durability::Sync).open(dir()).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        check_recovered(&store, &w.log, w.log.batches.len(), w.log.batches.len(), &what);
    }
    assert!(failed_installs > 0, "no case failed an install");
}

/// Puts an empty segment (a valid header, zeros after it) numbered 1 and starting at `first` into the store.
fn put_empty_segment(sim: &SimFs, first: u64) -> std::path::PathBuf {
    use annals::format::segment_header::SegmentHeader;
    use annals::fs::{FileSystem, OpenMode};
    let header = SegmentHeader {
        format_version: annals::format::FORMAT_VERSION,
        segment_number: 1,
        first_position: first,
        salt: 0x5a17,
        segment_bytes: 1 << 20,
        created_us: 0,
    };
    let path = dir().join(format!("{first:020}.seg"));
    let mut bytes = vec![0u8; 1 << 20];
    bytes[..64].copy_from_slice(&header.encode());
    let f = sim.open(&path, OpenMode::CreateNew).unwrap();
    f.write_all_at(&bytes, 0).unwrap();
    f.sync_data().unwrap();
    sim.sync_dir(&dir()).unwrap();
    path
}

#[test]
fn an_empty_segment_left_by_a_failed_roll_is_removed_at_open() {
    // What a failed install leaves if its removal does not survive a crash: an empty segment starting below
    // the end of the log, which went on in the older, unsealed segment. Harmless: removed at open. One starting
    // past the end of the log would mean the older segment lost acknowledged appends: corruption.
    let seed = seed("an_empty_segment_left_by_a_failed_roll_is_removed_at_open");
    let sim = new_sim();
    let mut w = Workload::open(sim.clone(), seed, Durability::Sync).unwrap();
    small(&mut w, 6).unwrap();
    assert!(w.close());
    let end = w.log.events.len() as u64;
    let n = w.log.batches.len();
    for first in [1, end] {
        let orphan = put_empty_segment(&sim, first);
        let store = options(&sim, Durability::Sync).open(dir()).unwrap_or_else(|e| panic!("first {first}: {e:?}"));
        check_recovered(&store, &w.log, n, n, &format!("an empty segment at {first}"));
        assert!(sim.read_file(&orphan).is_none(), "first {first}: the empty segment is removed");
    }
    put_empty_segment(&sim, end + 1);
    match options(&sim, Durability::Sync).open(dir()) {
        Err(Error::Corrupt { .. }) => {}
        other => {
            panic!("an empty segment past the end of the log: expected Corrupt, got {:?}", other.map(|s| s.head()))
        }
    }
}

/// One appender's sync is held in the file system while eight more append and wait for a sync, then the held
/// sync succeeds or fails. Success: every appender returns, the first covered by the held sync, the others by
/// the next one, which one of them leads (the leader picks it) and whose leader releases the rest. Failure:
/// every one of them returns `Error::Io` (the leader's sync failed, so the store is poisoned), none hangs, and
/// nothing unacknowledged is acknowledged.
#[test]
fn a_held_sync_releases_every_appender_waiting_behind_it() {
    use annals::{ExpectedVersion, NewEvent};
    const WAITING: usize = 8;
    for fail in [false, true] {
        let sim = new_sim();
        let store = options(&sim, Durability::Sync).open(dir()).unwrap();
        store.append("first", ExpectedVersion::NoStream, &[NewEvent::new("E", "0")]).unwrap();
        sim.hold_op(Op::SyncData, ".seg");
        if fail {
            sim.fail(Fault::persistent(Op::SyncData, 0, Errno::Eio).on_paths(".seg"));
        }
        // Results come back on a channel, so that an appender that is never woken fails the test (after a
        // minute) instead of hanging it.
        let (done, results) = std::sync::mpsc::channel();
        let append = |store: annals::Store, i: usize, stream: String| {
            let done = done.clone();
            std::thread::spawn(move || {
                let r = store.append(&stream, ExpectedVersion::NoStream, &[NewEvent::new("E", "1")]);
                drop(store); // before reporting: the reopen below needs every handle gone
                done.send((i, r)).expect("the test waits for every appender");
            })
        };
        append(store.clone(), 0, "leader".into());
        while sim.held() == 0 {
            std::thread::yield_now();
        }
        let written = store.stats().index_memtable_events;
        for i in 1..=WAITING {
            append(store.clone(), i, format!("waiting-{i}"));
        }
        // Each waiting append writes its event (the index counts it), then finds a sync running and sleeps.
        // (The test holds for any interleaving; waiting for the writes only makes it likely that all of them
        // sleep before the release.)
        for _ in 0..100_000 {
            if store.stats().index_memtable_events >= written + WAITING as u64 {
                break;
            }
            std::thread::yield_now();
        }
        sim.release();
        for _ in 0..=WAITING {
            let (i, r) = results
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("fail {fail}: an appender was never released ({e})"));
            match (fail, &r) {
                (false, Ok(r)) => assert_eq!(r.first_version, 0, "appender {i}"),
                (true, Err(Error::Io(_))) => {}
                _ => panic!("fail {fail}: appender {i} got {r:?}"),
            }
        }
        let acknowledged = if fail { 1 } else { 2 + WAITING as u64 };
        if fail {
            assert!(matches!(
                store.append("after", ExpectedVersion::Any, &[NewEvent::new("E", "2")]),
                Err(Error::Poisoned)
            ));
        }
        assert_eq!(store.read_all(Position::START).count() as u64, acknowledged, "fail {fail}: readers");
        drop(store);
        sim.clear_faults();
        let store = options(&sim, Durability::Sync).open(dir()).unwrap();
        let recovered = store.read_all(Position::START).count() as u64;
        // After a failed sync the written appends may or may not be on disk (their outcome is unknown), but
        // the acknowledged one is.
        assert!(recovered >= acknowledged && recovered <= 2 + WAITING as u64, "fail {fail}: {recovered} recovered");
        assert_eq!(store.stream_version("first"), Some(0), "fail {fail}");
    }
}

/// An idempotent retry of an append whose frames the writer still holds (written, not yet in the file: a sync is
/// running, and the next one writes them first). The retry's check reads them from the writer, answers the
/// original result once it is durable, and writes nothing; with `Exact` and with `Any`. Meanwhile readers see
/// nothing of it (and nothing damaged: its frames are not in the file).
#[test]
fn a_retry_of_an_append_still_held_by_the_writer_is_recognised() {
    use annals::{ExpectedVersion, NewEvent, Uuid};
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Any] {
        let sim = new_sim();
        let store = options(&sim, Durability::Sync).open(dir()).unwrap();
        store.append("first", ExpectedVersion::NoStream, &[NewEvent::new("E", "0")]).unwrap();
        sim.hold_op(Op::SyncData, ".seg");
        let leader = {
            let store = store.clone();
            std::thread::spawn(move || store.append("leader", ExpectedVersion::NoStream, &[NewEvent::new("E", "1")]))
        };
        while sim.held() == 0 {
            std::thread::yield_now();
        }
        // Written while the leader's sync is held: the writer holds these frames until the next sync.
        let events =
            [NewEvent::new("E", "a").with_id(Uuid::from_u128(7)), NewEvent::new("E", "b").with_id(Uuid::from_u128(8))];
        let original = {
            let (store, events) = (store.clone(), events.clone());
            std::thread::spawn(move || store.append("s", expected, &events))
        };
        let head = store.stats().index_memtable_events;
        for _ in 0..100_000 {
            if store.stats().index_memtable_events >= head + 2 {
                break;
            }
            std::thread::yield_now();
        }
        // Not visible yet, and not in the file yet: readers see nothing of it, and nothing damaged.
        assert_eq!(store.stream_version("s"), None, "{expected:?}");
        assert_eq!(store.read_stream("s", 0).unwrap().count(), 0, "{expected:?}");
        assert_eq!(store.read_all(Position::START).count(), 1, "{expected:?}");
        let retry = {
            let (store, events) = (store.clone(), events.clone());
            std::thread::spawn(move || store.append("s", expected, &events))
        };
        sim.release();
        leader.join().unwrap().unwrap();
        let (original, retry) = (original.join().unwrap(), retry.join().unwrap());
        let (original, retry) =
            (original.unwrap(), retry.unwrap_or_else(|e| panic!("{expected:?}: the retry got {e:?}")));
        assert_eq!(original, retry, "{expected:?}");
        assert_eq!(store.stream_version("s"), Some(1), "{expected:?}: nothing written twice");
        let ids: Vec<Uuid> = store.read_stream("s", 0).unwrap().map(|e| e.unwrap().id()).collect();
        assert_eq!(ids, [Uuid::from_u128(7), Uuid::from_u128(8)], "{expected:?}");
    }
}
