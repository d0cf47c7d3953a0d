//! Model-based fuzzing: the input picks a seed, a durability mode and a sequence of operations (single and
//! multi-event appends, append_many, large appends that roll segments, sync, reads, clean reopens that may
//! switch the durability mode, and crashes of every kind) run against a store on the simulated file system,
//! checked against a model of what was written and acknowledged (tests/sim_support): after every read and
//! every crash the store must hold an exact prefix of the written log, whole appends only, with every
//! acknowledged append; a crash never yields an error on reopen.
#![no_main]

#[path = "../../tests/sim_support/mod.rs"]
#[allow(dead_code)]
mod sim_support;

use annals::fs::sim::{CrashMode, CrashPoint, DataCrash, DirCrash};
use annals::Durability;
use libfuzzer_sys::fuzz_target;
use sim_support::*;

/// Most operations per input: keeps one run well under a second.
const OPS_MAX: usize = 48;

fn crash(w: &mut Workload, code: u8, seed: u64) {
    let data = [DataCrash::KeepAll, DataCrash::DropAll, DataCrash::KeepSome, DataCrash::TearOne][(code & 3) as usize];
    let dirs = [DirCrash::KeepAll, DirCrash::DropAll, DirCrash::KeepSome][((code >> 2) % 3) as usize];
    let mode = CrashMode { data, dirs };
    let at = CrashPoint { ops_done: w.sim.ops(), before_next: true };
    let required = w.log.required_at(at, mode);
    let possible = w.log.possible_at(at);
    let image = w.sim.crash(mode, seed);
    drop(w.store.take());
    let what = format!("crash {mode:?} seed {seed}");
    let store = options(&image, w.durability)
        .open(dir())
        .unwrap_or_else(|e| panic!("{what}: open after a pure crash: {e:?}\n{}", describe(&image)));
    let n = check_recovered(&store, &w.log, required, possible, &what);
    // What recovery kept is durable now (recovery syncs it): the model continues from there.
    w.log = w.log.prefix(n);
    for b in &mut w.log.batches {
        b.start_op = 0;
        b.acked_op = Some(0);
        b.durable_op = Some(0);
    }
    w.sim = image;
    w.store = Some(store);
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let seed = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let durability = if data[8] & 1 == 0 { Durability::Sync } else { Durability::Buffered };
    let mut w = Workload::open(new_sim(), seed, durability).expect("open on an empty file system");
    for (i, &b) in data[9..].iter().take(OPS_MAX).enumerate() {
        let arg = b >> 4;
        let result = match b & 15 {
            0..=3 => w.append_one(1 + (arg as usize % 4), false),
            4 | 5 => w.append_many(false),
            6 => w.append_one(1 + (arg as usize % 2), arg >= 12),
            7 => w.store().sync().map(|()| {
                let op = w.sim.ops();
                w.log.all_durable(op);
            }),
            8 | 9 => {
                let acked = w.log.batches.iter().take_while(|b| b.acked_op.is_some()).count();
                check_recovered(w.store(), &w.log, acked, w.log.batches.len(), "read");
                Ok(())
            }
            10 => {
                if arg & 1 == 1 {
                    w.durability =
                        if w.durability == Durability::Sync { Durability::Buffered } else { Durability::Sync };
                }
                w.reopen()
            }
            _ => {
                crash(&mut w, arg, seed ^ (i as u64).wrapping_mul(0x9e37_79b9));
                Ok(())
            }
        };
        result.unwrap_or_else(|e| panic!("operation {i} ({b:#04x}) failed on a healthy disk: {e:?}"));
    }
    // A clean close keeps everything.
    assert!(w.close());
    let store = options(&w.sim, Durability::Sync).open(dir()).expect("reopen after a clean close");
    let all = w.log.batches.len();
    check_recovered(&store, &w.log, all, all, "after a clean close");
});
