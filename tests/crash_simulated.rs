//! Crash tests on the simulated file system: a store is crashed (power loss or a crash of the process) at
//! random operations of randomised workloads, and after every operation of a fixed one; the store reopened on
//! what the crash left must hold every acknowledged append, an exact prefix of what was written (positions,
//! streams, versions, ids, payloads), whole appends only, and open without `Error::Corrupt`. A crash during
//! that recovery must recover to the same log.
//!
//! A crash state is one (moment, crash mode, seed) triple; the crash modes (`annals::fs::sim::CrashMode`)
//! drop, keep or tear unsynced sectors and drop or keep unsynced folder changes. Counts:
//! `ANNALS_CRASH_STATES` (random states, default 5,000; a tenth of that again with halting crashes) and `ANNALS_SWEEP_MODES` (crash modes per operation of
//! the sweep, default all 12). Every test prints its seed; `ANNALS_SEED` replays it.

mod sim_support;

use annals::fs::sim::{CrashMode, CrashPoint, DataCrash, DirCrash, Frozen, Rng, SimFs};
use annals::{Durability, Error};
use sim_support::*;

/// Checks one crash state: opens the image, checks it against the log, and sometimes crashes again during
/// that recovery (the second image must recover to the same log) or appends after it. Returns the crash
/// states checked (1, or 2 with a crash during recovery).
fn check_state(frozen: &Frozen, at: CrashPoint, log: &Log, mode: CrashMode, rng: &mut Rng, what: &str) -> u64 {
    let seed = rng.next_u64();
    let required = log.required_at(at, mode);
    let possible = log.possible_at(at);
    let when = if at.before_next { "during" } else { "after" };
    let op = at.ops_done + u64::from(at.before_next);
    let what = format!("{what}, crash {when} operation {op}, {mode:?}, image seed {seed}");
    let image = frozen.crash(mode, seed);
    let durability = if rng.chance(1, 2) { Durability::Sync } else { Durability::Buffered };
    let store = match options(&image, durability).open(dir()) {
        Ok(s) => s,
        Err(e) => panic!(
            "{what}: open after a pure crash failed: {e:?}\nthe crash image:\n{}",
            describe(&frozen.crash(mode, seed))
        ),
    };
    let recovery_ops = image.ops();
    let recovered = check_recovered(&store, log, required, possible, &what);
    let mut states = 1;
    if rng.chance(1, 4) {
        // The store is usable after recovery: append, close, reopen.
        let prefix = log.prefix(recovered);
        let e = annals::NewEvent::new("AfterCrash", "x");
        store
            .append("after-crash", annals::ExpectedVersion::NoStream, &[e])
            .unwrap_or_else(|e| panic!("{what}: append after recovery: {e}"));
        drop(store);
        let store = options(&image, durability).open(dir()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
        let got = read_everything(&store, &what);
        assert_eq!(got.len(), prefix.events.len() + 1, "{what}: the append after recovery");
        assert!(got[..prefix.events.len()] == prefix.events[..], "{what}: the log changed after recovery");
    } else {
        drop(store);
    }
    if rng.chance(1, 3) && recovery_ops > 0 {
        // A crash during recovery, then recovery again.
        let again = frozen.crash(mode, seed);
        let k = 1 + rng.below(recovery_ops);
        let mode2 = CrashMode::random(rng);
        let seed2 = rng.next_u64();
        again.crash_after(k, mode2, seed2);
        let _ = options(&again, durability).open(dir());
        let twice = again
            .take_crashed()
            .unwrap_or_else(|| panic!("{what}: crash {k} of {recovery_ops} during recovery did not happen"));
        let what2 = format!("{what}; crashed again after operation {k} of its recovery, {mode2:?}, seed {seed2}");
        let store = options(&twice, durability).open(dir()).unwrap_or_else(|e| panic!("{what2}: open: {e:?}"));
        let recovered_twice = check_recovered(&store, log, recovered, recovered, &what2);
        assert_eq!(recovered_twice, recovered, "{what2}");
        states += 1;
    }
    states
}

/// Runs a random workload of `steps` steps and freezes the file system after the given operations; the
/// workload ends with a clean close. Returns the log, the frozen states and the operations done.
fn run_frozen(
    sim: SimFs,
    seed: u64,
    durability: Durability,
    steps: usize,
    points: &[(u64, bool)],
) -> (Log, Vec<(CrashPoint, Frozen)>, u64) {
    sim.freeze_before(points.iter().filter(|p| p.1).map(|p| p.0));
    sim.freeze_after(points.iter().filter(|p| !p.1).map(|p| p.0));
    let mut w = Workload::open(sim.clone(), seed, durability).expect("open on an empty file system");
    for _ in 0..steps {
        w.step().unwrap_or_else(|e| panic!("workload seed {seed}: {e:?}"));
    }
    assert!(w.close());
    let ops = sim.ops();
    (w.log, sim.take_frozen(), ops)
}

#[test]
fn random_workloads_crashed_at_random_operations() {
    let seed = seed("random_workloads_crashed_at_random_operations");
    let mut rng = Rng::new(seed);
    let target = count("ANNALS_CRASH_STATES", 5_000);
    let mut states = 0u64;
    let mut runs = 0u64;
    let mut ops_estimate = 400u64;
    while states < target {
        runs += 1;
        let run_seed = rng.next_u64();
        let durability = if rng.chance(1, 2) { Durability::Sync } else { Durability::Buffered };
        let steps = 10 + rng.below(50) as usize;
        let points: Vec<(u64, bool)> = (0..12).map(|_| (1 + rng.below(ops_estimate), rng.chance(1, 2))).collect();
        let what = format!("run {runs} (workload seed {run_seed}, {durability:?}, {steps} steps)");
        let sim = new_sim();
        let (log, frozen, ops) = run_frozen(sim.clone(), run_seed, durability, steps, &points);
        ops_estimate = ops.max(50);
        for (at, f) in &frozen {
            let mode = CrashMode::random(&mut rng);
            states += check_state(f, *at, &log, mode, &mut rng, &what);
        }
        // After the clean close everything is durable: a power loss keeps it all.
        let after_close = sim.freeze();
        let end = CrashPoint { ops_done: ops, before_next: true };
        assert_eq!(log.required_at(end, CrashMode::POWER_LOSS), log.batches.len(), "{what}: all acknowledged");
        states += check_state(&after_close, end, &log, CrashMode::POWER_LOSS, &mut rng, &what);
    }
    println!("{states} crash states in {runs} runs");
}

/// The fixed workload of the sweep: `Sync` appends of every kind with two segment rolls and a clean reopen,
/// then the same in `Buffered` mode with `sync()` calls, ending with a clean close.
fn fixed_workload(sim: SimFs) -> Result<Workload, Error> {
    const SEED: u64 = 0x5eed_0fa1_1005;
    let mut w = Workload::open(sim, SEED, Durability::Sync)?;
    let script = |w: &mut Workload| -> Result<(), Error> {
        for round in 0..2 {
            for i in 0..6 {
                w.append_one(1 + i % 3, false)?;
            }
            w.append_many(false)?;
            w.append_one(1, true)?;
            w.append_one(2, true)?;
            w.append_one(1, true)?;
            w.append_many(true)?;
            w.append_one(3, false)?;
            if w.durability == Durability::Buffered {
                w.store().sync()?;
                let op = w.sim.ops();
                w.log.all_durable(op);
            }
            w.reopen()?;
            if round == 0 {
                w.durability = Durability::Buffered;
                w.reopen()?;
            }
        }
        Ok(())
    };
    script(&mut w)?;
    Ok(w)
}

#[test]
fn a_fixed_workload_crashed_after_every_operation() {
    let seed = seed("a_fixed_workload_crashed_after_every_operation");
    let mut rng = Rng::new(seed);
    let modes_per_op = count("ANNALS_SWEEP_MODES", CrashMode::ALL.len() as u64) as usize;
    // How many operations the workload does.
    let sim = new_sim();
    let mut w = fixed_workload(sim.clone()).unwrap_or_else(|e| panic!("fixed workload: {e}"));
    assert!(w.close());
    let total = sim.ops();
    let mut states = 0u64;
    const CHUNK: u64 = 24;
    let mut from = 1;
    while from <= total {
        let to = (from + CHUNK).min(total + 1);
        let sim = new_sim();
        sim.freeze_before(from..to);
        sim.freeze_after(from..to);
        let mut w = fixed_workload(sim.clone()).unwrap_or_else(|e| panic!("fixed workload: {e}"));
        assert!(w.close());
        for (at, frozen) in sim.take_frozen() {
            for m in 0..modes_per_op {
                let mode = CrashMode::ALL[(at.ops_done as usize + m) % CrashMode::ALL.len()];
                states += check_state(&frozen, at, &w.log, mode, &mut rng, "sweep");
            }
        }
        from = to;
    }
    println!("{states} crash states over {total} operations");
    assert!(states >= total * modes_per_op as u64);
}

#[test]
fn crashes_that_halt_the_machine_mid_workload() {
    // Like the random test, but the machine stops at the crash: every later operation fails, so the store
    // runs its failure paths (a failed sync, a failed roll) before the state is checked.
    let seed = seed("crashes_that_halt_the_machine_mid_workload");
    let mut rng = Rng::new(seed);
    let target = count("ANNALS_CRASH_STATES", 5_000) / 10;
    let mut states = 0;
    let mut ops_estimate = 400;
    while states < target {
        let run_seed = rng.next_u64();
        let durability = if rng.chance(1, 2) { Durability::Sync } else { Durability::Buffered };
        let sim = new_sim();
        let k = 1 + rng.below(ops_estimate);
        let mode = CrashMode::random(&mut rng);
        let crash_seed = rng.next_u64();
        sim.crash_after(k, mode, crash_seed);
        let what =
            format!("workload seed {run_seed}, {durability:?}, crash after operation {k}, {mode:?}, seed {crash_seed}");
        let mut w = match Workload::open(sim.clone(), run_seed, durability) {
            Ok(w) => w,
            Err(_) => {
                // The crash came during the first open: whatever is there must open as an empty store.
                let image = sim.take_crashed().expect("halted");
                let store = options(&image, durability).open(dir()).unwrap_or_else(|e| panic!("{what}: {e:?}"));
                assert_eq!(store.head().as_u64(), 0, "{what}");
                states += 1;
                continue;
            }
        };
        let mut failed = false;
        for _ in 0..60 {
            if w.step().is_err() {
                failed = true;
                break;
            }
        }
        if !failed {
            w.close();
            ops_estimate = sim.ops().max(50);
        }
        let Some(image) = sim.take_crashed() else {
            continue;
        };
        drop(w.store.take());
        let at = CrashPoint { ops_done: k, before_next: false };
        let required = w.log.required_at(at, mode);
        let possible = w.log.possible_at(at);
        let store = options(&image, durability).open(dir()).unwrap_or_else(|e| panic!("{what}: open: {e:?}"));
        check_recovered(&store, &w.log, required, possible, &what);
        states += 1;
    }
    println!("{states} halting crash states");
}

/// Crashes after every operation of `during` (run on a store holding `before`'s appends), in every crash mode,
/// and checks each state. Returns the states checked.
fn crash_during(
    durability: Durability,
    seed: u64,
    before: impl Fn(&mut Workload) -> Result<(), Error>,
    during: impl Fn(&mut Workload) -> Result<(), Error>,
    what: &str,
) -> u64 {
    let mut rng = Rng::new(seed);
    let sim = new_sim();
    let mut w = Workload::open(sim.clone(), seed, durability).unwrap();
    before(&mut w).unwrap();
    let from = sim.ops() + 1;
    sim.freeze_before(from..from + 10_000);
    sim.freeze_after(from..from + 10_000);
    during(&mut w).unwrap();
    let frozen = sim.take_frozen();
    assert!(!frozen.is_empty(), "{what}: no operation to crash after");
    let mut states = 0;
    for (at, f) in &frozen {
        for mode in FOCUSED_MODES {
            states += check_state(f, *at, &w.log, mode, &mut rng, what);
        }
    }
    states
}

/// The crash modes of the focused tests: a crash of the process, a clean power loss, and power losses that
/// keep some unsynced sectors and folder changes, with and without a torn sector.
const FOCUSED_MODES: [CrashMode; 4] = [
    CrashMode::PROCESS,
    CrashMode::POWER_LOSS,
    CrashMode { data: DataCrash::KeepSome, dirs: DirCrash::KeepSome },
    CrashMode { data: DataCrash::TearOne, dirs: DirCrash::KeepSome },
];

fn small_appends(w: &mut Workload, n: usize) -> Result<(), Error> {
    for i in 0..n {
        w.append_one(1 + i % 3, false)?;
    }
    Ok(())
}

#[test]
fn regression_a_new_store_folder_survives_a_power_loss() {
    // The store folder's entry in its parent was never synced: a power loss could take the whole store.
    let states = crash_during(Durability::Sync, 1, |_| Ok(()), |w| small_appends(w, 3), "first appends");
    let sim = new_sim();
    let mut w = Workload::open(sim.clone(), 2, Durability::Sync).unwrap();
    small_appends(&mut w, 2).unwrap();
    let image = sim.crash(CrashMode::POWER_LOSS, 0);
    let store = options(&image, Durability::Sync).open(dir()).unwrap();
    assert_eq!(check_recovered(&store, &w.log, 2, 2, "power loss after two appends"), 2);
    assert!(states > 0);
}

#[test]
fn regression_a_roll_after_unsynced_buffered_appends() {
    // The next segment was installed before the old tail's Buffered appends were synced: a power loss between
    // the install and the seal left a later segment starting past the old tail's durable end, reported as
    // corruption.
    crash_during(
        Durability::Buffered,
        3,
        |w| {
            small_appends(w, 4)?;
            w.store().sync()?;
            let op = w.sim.ops();
            w.log.all_durable(op);
            w.append_one(1, true)?;
            w.append_one(1, true)?;
            small_appends(w, 5)
        },
        |w| {
            // Large appends until the segment rolls.
            for _ in 0..8 {
                w.append_one(1, true)?;
            }
            Ok(())
        },
        "a roll after unsynced appends",
    );
}

#[test]
fn regression_a_clean_close_after_unsynced_buffered_appends() {
    // The clean-close marker was written and synced together with the appends before it: a power loss during
    // that one sync could keep the marker and drop an earlier frame, reported as corruption.
    crash_during(
        Durability::Buffered,
        4,
        |w| {
            small_appends(w, 3)?;
            w.store().sync()?;
            let op = w.sim.ops();
            w.log.all_durable(op);
            small_appends(w, 12)
        },
        |w| {
            assert!(w.close());
            Ok(())
        },
        "a clean close after unsynced appends",
    );
}

#[test]
fn regression_a_crash_while_a_new_store_writes_its_store_file() {
    // A leftover ANNALS.tmp made the next open fail with NotFound.
    crash_during(Durability::Sync, 5, |w| w.reopen(), |w| small_appends(w, 1), "first append");
    let sim = new_sim();
    let mut rng = Rng::new(6);
    sim.freeze_before(1..200);
    sim.freeze_after(1..200);
    let mut w = Workload::open(sim.clone(), 6, Durability::Sync).unwrap();
    small_appends(&mut w, 1).unwrap();
    let mut states = 0;
    for (at, f) in sim.take_frozen() {
        for mode in FOCUSED_MODES {
            states += check_state(&f, at, &w.log, mode, &mut rng, "creating a store");
        }
    }
    assert!(states > 0);
}
