//! Crash recovery: a torn tail (an append that never completed, and that nothing later vouches for) is cut at
//! open, the store goes on from the last complete append, and what was cut never comes back.
//!
//! Crash states are copies of a live store's folder (what a crash of the process leaves), edited the way a
//! crash in the middle of an append's `write` or an OS crash before its `fdatasync` can leave them: frames
//! missing, half written, sectors of old and new bytes mixed, garbage after the end.

mod reliability_support;

use std::path::Path;

use annals::{Durability, ExpectedVersion, NewEvent, Options, Store};
use reliability_support::*;

fn options() -> Options {
    Options::new().segment_size(1 << 20)
}

/// A store with a few appends of 1..=3 events in two streams, the last one of `last_events` events.
fn build(dir: &Path, rng: &mut Rng, appends: usize, last_events: usize) -> (Store, Model) {
    let store = options().open(dir).expect("open");
    let mut model = Model::default();
    for i in 0..appends {
        let n = if i + 1 == appends { last_events } else { rng.range(1, 4) };
        let sizes: Vec<usize> = (0..n).map(|_| rng.range(1, 700)).collect();
        let stream = if i % 2 == 0 { "account-1" } else { "account-2" };
        model.append(&store, stream, &payloads(rng, &sizes));
    }
    (store, model)
}

/// Opens `dir`, checks it holds exactly `model`, appends two more events, closes, reopens and checks again.
fn check_recovered_and_usable(dir: &Path, model: &Model, rng: &mut Rng, what: &str) -> Model {
    let store = options().open(dir).unwrap_or_else(|e| panic!("{what}: open after the crash: {e}"));
    assert_holds(&store, model, what);
    let mut model = model.clone();
    model.append(&store, "account-1", &payloads(rng, &[10, 20]));
    assert_holds(&store, &model, &format!("{what}, after a new append"));
    drop(store);
    let store = options().open(dir).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    assert_holds(&store, &model, &format!("{what}, after a reopen"));
    model
}

#[test]
fn a_half_written_last_frame_drops_only_the_last_append() {
    let mut rng = Rng::from_env("a_half_written_last_frame_drops_only_the_last_append");
    let live = tempfile::tempdir().unwrap();
    let (store, model) = build(live.path(), &mut rng, 6, 3);
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(live.path(), crashed.path());
    drop(store);

    let seg = newest_segment(crashed.path());
    let appends = appends_of(&frames(&seg));
    assert_eq!(appends.len(), 6);
    let last = *appends[5].last().unwrap();
    // The write of the last append stopped in the middle of its last frame.
    let before = read(&seg);
    zero_range(&seg, last.offset + last.frame.frame_bytes as u64 / 2, last.end());
    assert_ne!(before, read(&seg), "the tear changed bytes");

    check_recovered_and_usable(crashed.path(), &model.prefix(5), &mut rng, "half-written last frame");
}

#[test]
fn a_multi_event_append_with_any_of_its_frames_missing_disappears_whole() {
    let mut rng = Rng::from_env("a_multi_event_append_with_any_of_its_frames_missing_disappears_whole");
    let live = tempfile::tempdir().unwrap();
    let (store, model) = build(live.path(), &mut rng, 4, 4);
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(live.path(), crashed.path());
    drop(store);
    let base = snapshot(crashed.path());
    let seg_name = newest_segment(crashed.path()).file_name().unwrap().to_string_lossy().into_owned();
    let last = appends_of(&frames(&newest_segment(crashed.path()))).pop().unwrap();
    assert_eq!(last.len(), 4);

    // Every subset of the last append's four frames reached the disk; the others are still zeros.
    for mask in 0u32..16 {
        let dir = tempfile::tempdir().unwrap();
        let mut snap = base.clone();
        let bytes = snap.get_mut(&seg_name).unwrap();
        for (i, f) in last.iter().enumerate() {
            if mask & (1 << i) == 0 {
                bytes[f.offset as usize..f.end() as usize].fill(0);
            }
        }
        restore(dir.path(), &snap);
        let what = format!("frames present {mask:04b}");
        let want = if mask == 0b1111 { model.clone() } else { model.prefix(3) };
        check_recovered_and_usable(dir.path(), &want, &mut rng, &what);
    }
}

#[test]
fn frames_of_a_cut_append_never_come_back() {
    // The last append (5 events of equal size) lost its third frame; frames 4 and 5 reached the disk. After the
    // cut, a new append of 3 events of the same sizes ends exactly where the old fourth frame started: had the
    // cut left those frames in place, the next recovery would read them as a valid append (right positions,
    // right versions) and resurrect two events nobody acknowledged.
    let mut rng = Rng::from_env("frames_of_a_cut_append_never_come_back");
    let live = tempfile::tempdir().unwrap();
    let store = options().open(live.path()).unwrap();
    let mut model = Model::default();
    model.append(&store, "s", &payloads(&mut rng, &[100, 200]));
    let same_size = payloads(&mut rng, &[300; 5]);
    let lost: Vec<NewEvent> = same_size
        .iter()
        .enumerate()
        .map(|(i, p)| NewEvent::new(format!("Type{}", i % 3), p.clone()).with_metadata(format!("m{i}")))
        .collect();
    store.append("s", ExpectedVersion::Exact(1), &lost).unwrap();
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(live.path(), crashed.path());
    drop(store);

    let seg = newest_segment(crashed.path());
    let torn = appends_of(&frames(&seg)).pop().unwrap();
    assert_eq!(torn.len(), 5);
    zero_range(&seg, torn[2].offset, torn[2].end());
    let ghost_at = torn[3].offset;

    let store = options().open(crashed.path()).expect("open after the crash");
    assert_holds(&store, &model, "after the cut");
    // The same sizes and type lengths as the lost events: the new frames have exactly their layout.
    let mut model2 = model.clone();
    model2.append(&store, "s", &payloads(&mut rng, &[300; 3]));
    let crashed_again = tempfile::tempdir().unwrap();
    crash_copy(crashed.path(), crashed_again.path());
    drop(store);

    let seg2 = newest_segment(crashed_again.path());
    let new_append = appends_of(&frames(&seg2))[1].clone();
    assert_eq!(new_append.len(), 3);
    assert_eq!(new_append[2].end(), ghost_at, "the new append ends where the cut frames began");
    let store = options().open(crashed_again.path()).expect("open after the second crash");
    assert_holds(&store, &model2, "the cut frames stayed cut");
}

#[test]
fn garbage_after_the_last_append_is_cut_and_zeroed() {
    let mut rng = Rng::from_env("garbage_after_the_last_append_is_cut_and_zeroed");
    for case in 0..cases(12) {
        let live = tempfile::tempdir().unwrap();
        let (appends, last_events) = (rng.range(1, 6), rng.range(1, 4));
        let (store, model) = build(live.path(), &mut rng, appends, last_events);
        let crashed = tempfile::tempdir().unwrap();
        crash_copy(live.path(), crashed.path());
        drop(store);

        let seg = newest_segment(crashed.path());
        let end = frames(&seg).last().unwrap().end();
        let len = rng.range(1, 16 << 10) as u64;
        // Sometimes the recovery that cut this once crashed part-way through zeroing it: only its end remains.
        let from = if rng.chance(1, 3) { end + rng.below(len) } else { end };
        let garbage = rng.bytes((end + len - from) as usize);
        write_at(&seg, from, &garbage);
        let what = format!("case {case}: {len} bytes of garbage after offset {end} (written from {from})");

        let store = options().open(crashed.path()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
        assert_holds(&store, &model, &what);
        let bytes = read(&seg);
        assert!(
            bytes[end as usize..(end + len) as usize].iter().all(|&b| b == 0),
            "{what}: the cut region was not zeroed"
        );
        // A crash right after one more small append: the shorter new frames leave no garbage behind them.
        let mut model = model.clone();
        model.append(&store, "account-3", &payloads(&mut rng, &[1]));
        let crashed_again = tempfile::tempdir().unwrap();
        crash_copy(crashed.path(), crashed_again.path());
        drop(store);
        check_recovered_and_usable(crashed_again.path(), &model, &mut rng, &what);
    }
}

#[test]
fn damage_to_the_last_append_that_nothing_vouches_for_is_treated_as_torn() {
    // The one region where damage and a torn write cannot be told apart (RELIABILITY.md rule 7): the last append
    // before a crash, with no clean-close marker after it. It is cut, as documented.
    let mut rng = Rng::from_env("damage_to_the_last_append_that_nothing_vouches_for_is_treated_as_torn");
    let live = tempfile::tempdir().unwrap();
    let (store, model) = build(live.path(), &mut rng, 5, 2);
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(live.path(), crashed.path());
    drop(store);

    let seg = newest_segment(crashed.path());
    let last = appends_of(&frames(&seg)).pop().unwrap();
    let at = rng.range(last[0].offset as usize, last[1].end() as usize) as u64;
    let mut byte = [read(&seg)[at as usize]];
    byte[0] ^= 1 << rng.below(8);
    write_at(&seg, at, &byte);
    check_recovered_and_usable(crashed.path(), &model.prefix(4), &mut rng, &format!("bit flip at {at}"));
}

/// A store with 1 MiB segments and at least `segments` segment files.
fn build_multi_segment(dir: &Path, rng: &mut Rng, segments: usize) -> (Store, Model) {
    let store = options().open(dir).expect("open");
    let mut model = Model::default();
    while segment_paths(dir).len() < segments {
        let sizes: Vec<usize> = (0..rng.range(1, 4)).map(|_| rng.range(1000, 30_000)).collect();
        let stream = format!("stream-{}", rng.below(5));
        model.append(&store, &stream, &payloads(rng, &sizes));
    }
    // A few more, so the newest segment holds several appends.
    for _ in 0..3 {
        let size = rng.range(100, 2000);
        model.append(&store, "stream-0", &payloads(rng, &[size]));
    }
    (store, model)
}

#[test]
fn a_torn_tail_in_a_store_of_several_segments() {
    let mut rng = Rng::from_env("a_torn_tail_in_a_store_of_several_segments");
    let live = tempfile::tempdir().unwrap();
    let (store, model) = build_multi_segment(live.path(), &mut rng, 3);
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(live.path(), crashed.path());
    drop(store);

    let segs = segment_paths(crashed.path());
    assert!(segs.len() >= 3);
    let seg = segs.last().unwrap();
    let last = appends_of(&frames(seg)).pop().unwrap();
    let f = last.last().unwrap();
    zero_range(seg, f.offset + 80, f.end());
    let model_after = check_recovered_and_usable(
        crashed.path(),
        &model.prefix(model.appends.len() - 1),
        &mut rng,
        "torn tail in the newest of several segments",
    );
    assert_eq!(segment_paths(crashed.path()).len(), segs.len(), "no segment was added or removed");
    // And the store rolls on into new segments after that.
    let store = options().open(crashed.path()).unwrap();
    let mut model = model_after;
    while segment_paths(crashed.path()).len() <= segs.len() {
        model.append(&store, "stream-9", &payloads(&mut rng, &[20_000, 20_000]));
    }
    drop(store);
    let store = options().open(crashed.path()).unwrap();
    assert_holds(&store, &model, "after rolling on");
}

/// Appends until an append rolls into a new segment; returns the crash copy taken right after that append.
fn crash_right_after_a_roll(rng: &mut Rng) -> (tempfile::TempDir, Model) {
    let live = tempfile::tempdir().unwrap();
    let store = options().open(live.path()).unwrap();
    let mut model = Model::default();
    model.append(&store, "s", &payloads(rng, &[100]));
    let start = segment_paths(live.path()).len();
    while segment_paths(live.path()).len() == start {
        let size = rng.range(5000, 40_000);
        model.append(&store, "s", &payloads(rng, &[size, 3000]));
    }
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(live.path(), crashed.path());
    drop(store);
    (crashed, model)
}

#[test]
fn a_torn_first_append_of_a_new_segment() {
    let mut rng = Rng::from_env("a_torn_first_append_of_a_new_segment");
    let (crashed, model) = crash_right_after_a_roll(&mut rng);
    let segs = segment_paths(crashed.path());
    assert_eq!(segs.len(), 2);
    let only = appends_of(&frames(&segs[1]));
    assert_eq!(only.len(), 1, "the append that rolled is the only one in the new segment");
    let second = only[0][1];
    zero_range(&segs[1], second.offset + 100, second.end());
    check_recovered_and_usable(crashed.path(), &model.prefix(model.appends.len() - 1), &mut rng, "torn first append");
}

#[test]
fn a_crash_between_creating_a_segment_and_sealing_the_previous_one() {
    // The roll creates the next segment, then writes the footer of the current one, then the append. A crash
    // between the first two leaves an unsealed segment followed by an empty one.
    let mut rng = Rng::from_env("a_crash_between_creating_a_segment_and_sealing_the_previous_one");
    let (crashed, model) = crash_right_after_a_roll(&mut rng);
    let segs = segment_paths(crashed.path());
    assert_eq!(segs.len(), 2);
    let len = read(&segs[1]).len() as u64;
    zero_range(&segs[1], 64, len);
    let footer = *frames(&segs[0]).last().unwrap();
    assert_eq!(footer.frame.kind, annals::format::frame::FrameKind::Footer);
    zero_range(&segs[0], footer.offset, footer.end());

    let model = check_recovered_and_usable(
        crashed.path(),
        &model.prefix(model.appends.len() - 1),
        &mut rng,
        "unsealed segment followed by an empty one",
    );
    // The same appends as before roll into a new segment again and survive.
    let store = options().open(crashed.path()).unwrap();
    let mut model = model;
    while segment_paths(crashed.path()).len() < 2 {
        model.append(&store, "s", &payloads(&mut rng, &[30_000]));
    }
    drop(store);
    let store = options().open(crashed.path()).unwrap();
    assert_holds(&store, &model, "after rolling again");
}

/// Mixes two states of a file the way a power loss can: each 512-byte sector is either its old or its new
/// content; sometimes one sector is torn (a prefix of new bytes, then old).
fn mix_sectors(old: &[u8], new: &[u8], rng: &mut Rng) -> Vec<u8> {
    assert_eq!(old.len(), new.len());
    let mut out = old.to_vec();
    let changed: Vec<usize> = (0..old.len() / SECTOR)
        .filter(|s| old[s * SECTOR..(s + 1) * SECTOR] != new[s * SECTOR..(s + 1) * SECTOR])
        .collect();
    let keep_num = rng.below(4);
    for &s in &changed {
        if rng.chance(keep_num, 3) {
            out[s * SECTOR..(s + 1) * SECTOR].copy_from_slice(&new[s * SECTOR..(s + 1) * SECTOR]);
        }
    }
    if !changed.is_empty() && rng.chance(1, 3) {
        let s = *rng.pick(&changed);
        let cut = rng.range(1, SECTOR);
        out[s * SECTOR..s * SECTOR + cut].copy_from_slice(&new[s * SECTOR..s * SECTOR + cut]);
        out[s * SECTOR + cut..(s + 1) * SECTOR].copy_from_slice(&old[s * SECTOR + cut..(s + 1) * SECTOR]);
    }
    out
}

/// How many of `model`'s appends from `from` on survive in `mixed` (their bytes equal `new`), in order.
fn surviving_appends(model: &Model, from: usize, new_frames: &[FrameAt], mixed: &[u8], new: &[u8]) -> usize {
    let appends = appends_of(new_frames);
    let mut n = from;
    for a in &appends[from..] {
        let (s, e) = (a[0].offset as usize, a.last().unwrap().end() as usize);
        if mixed[s..e] != new[s..e] {
            break;
        }
        n += 1;
    }
    assert!(n <= model.appends.len());
    n
}

#[test]
fn sync_power_loss_during_the_last_append_keeps_it_whole_or_not_at_all() {
    let mut rng = Rng::from_env("sync_power_loss_during_the_last_append_keeps_it_whole_or_not_at_all");
    let rounds = cases(60);
    let mut kept = 0;
    let mut round = 0;
    while round < rounds {
        let live = tempfile::tempdir().unwrap();
        let appends = rng.range(1, 5);
        let (store, mut model) = build(live.path(), &mut rng, appends, 1);
        let before = tempfile::tempdir().unwrap();
        crash_copy(live.path(), before.path());
        let sizes: Vec<usize> = (0..rng.range(1, 6)).map(|_| rng.range(1, 3000)).collect();
        model.append(&store, "account-1", &payloads(&mut rng, &sizes));
        let seg = newest_segment(live.path());
        let name = seg.file_name().unwrap().to_string_lossy().into_owned();
        let new = read(&seg);
        drop(store);
        let old = snapshot(before.path())[&name].clone();
        let new_frames = frames_of(&new);
        // Several power losses of the same append.
        for _ in 0..10 {
            let mixed = mix_sectors(&old, &new, &mut rng);
            let survivors = surviving_appends(&model, model.appends.len() - 1, &new_frames, &mixed, &new);
            kept += survivors + 1 - model.appends.len();
            let dir = tempfile::tempdir().unwrap();
            let mut snap = snapshot(before.path());
            snap.insert(name.clone(), mixed);
            restore(dir.path(), &snap);
            let what = format!(
                "round {round}: last append of {} events kept: {}",
                sizes.len(),
                survivors == model.appends.len()
            );
            let store = options().open(dir.path()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
            assert_holds(&store, &model.prefix(survivors), &what);
            round += 1;
        }
    }
    println!("{rounds} power losses, the last append survived {kept} times");
}

#[test]
fn buffered_power_loss_keeps_every_synced_append_and_an_exact_prefix_of_the_rest() {
    let mut rng = Rng::from_env("buffered_power_loss_keeps_every_synced_append_and_an_exact_prefix_of_the_rest");
    let buffered = || options().durability(Durability::Buffered);
    let rounds = cases(60);
    let mut round = 0;
    let mut histogram = vec![0usize; 8];
    while round < rounds {
        let live = tempfile::tempdir().unwrap();
        let store = buffered().open(live.path()).unwrap();
        let mut model = Model::default();
        for _ in 0..rng.range(0, 4) {
            let size = rng.range(1, 2000);
            model.append(&store, "a", &payloads(&mut rng, &[size]));
        }
        store.sync().unwrap();
        let synced = model.appends.len();
        let before = tempfile::tempdir().unwrap();
        crash_copy(live.path(), before.path());
        let unsynced = rng.range(1, 7);
        for _ in 0..unsynced {
            let sizes: Vec<usize> = (0..rng.range(1, 4)).map(|_| rng.range(1, 1500)).collect();
            let stream = if rng.chance(1, 2) { "a" } else { "b" };
            model.append(&store, stream, &payloads(&mut rng, &sizes));
        }
        let seg = newest_segment(live.path());
        let name = seg.file_name().unwrap().to_string_lossy().into_owned();
        let new = read(&seg);
        drop(store);
        // Before the first append there was no segment file: the new one is created (header synced) at once.
        let old = snapshot(before.path()).get(&name).cloned().unwrap_or_else(|| {
            let mut v = vec![0u8; new.len()];
            v[..64].copy_from_slice(&new[..64]);
            v
        });
        let new_frames = frames_of(&new);
        for _ in 0..10 {
            let mixed = mix_sectors(&old, &new, &mut rng);
            let survivors = surviving_appends(&model, synced, &new_frames, &mixed, &new);
            histogram[survivors - synced] += 1;
            let dir = tempfile::tempdir().unwrap();
            let mut snap = snapshot(before.path());
            snap.insert(name.clone(), mixed);
            restore(dir.path(), &snap);
            let what =
                format!("round {round}: {synced} synced appends, {unsynced} unsynced, {} survive", survivors - synced);
            let store = buffered().open(dir.path()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
            assert_holds(&store, &model.prefix(survivors), &what);
            round += 1;
        }
    }
    println!("unsynced appends surviving a power loss (count: times): {histogram:?}");
}

#[test]
fn leftover_temporary_files_are_removed_at_open() {
    // A crash while a file was being created under a temporary name (a segment being prepared, the store file
    // of a new store): the temporary file is garbage, whatever it holds, and the next open removes it.
    let mut rng = Rng::from_env("leftover_temporary_files_are_removed_at_open");
    let live = tempfile::tempdir().unwrap();
    let (store, model) = build(live.path(), &mut rng, 4, 2);
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(live.path(), crashed.path());
    drop(store);
    let seg = newest_segment(crashed.path());
    let seg_tmp = format!("{}.tmp", seg.file_name().unwrap().to_string_lossy());
    let next_first = format!("{:020}.seg.tmp", model.events.len());
    let half_segment = {
        // A half-prepared segment: a valid header that claims the full size, then zeros, cut short.
        let mut b = read(&seg)[..64].to_vec();
        b.resize(300_000, 0);
        b
    };
    for (name, bytes) in [
        ("next-segment.tmp", half_segment.clone()),
        (seg_tmp.as_str(), rng.bytes(5000)),
        (next_first.as_str(), half_segment),
        ("ANNALS.tmp", rng.bytes(32)),
    ] {
        std::fs::write(crashed.path().join(name), bytes).unwrap();
    }
    let store = options().open(crashed.path()).expect("open with leftover temporary files");
    let names: Vec<String> = snapshot(crashed.path()).into_keys().collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "temporary files left: {names:?}");
    assert_holds(&store, &model, "after removing temporary files");
    drop(store);
    check_recovered_and_usable(crashed.path(), &model, &mut rng, "after removing temporary files");
}
