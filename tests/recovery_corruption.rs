//! Corruption: damage to data that something later vouches for (a later append's durable watermark, a
//! clean-close marker, a segment footer, or simply being in a sealed segment) is reported as `Error::Corrupt`
//! naming the file and the offset of the damaged frame, and a failed open changes no file: never a silent
//! truncation. Damage found while reading an open store is an `Err(Error::Corrupt)` item, never wrong bytes.
//!
//! The damage kinds are the ones storage actually suffers: a flipped bit, a zeroed 512-byte sector, and a
//! misplaced copy of a valid frame (a write that landed at the wrong offset).

mod reliability_support;

use std::path::{Path, PathBuf};

use annals::format::frame::{encode_event, EventFields, FrameKind};
use annals::format::segment_header::SegmentHeader;
use annals::format::store_file;
use annals::{Error, ExpectedVersion, NewEvent, Options, Position, Store};
use reliability_support::*;

fn options() -> Options {
    Options::new().segment_size(1 << 20)
}

#[derive(Debug, Clone, Copy)]
#[allow(dead_code, reason = "the fields are read through Debug, in failure messages")]
enum Damage {
    BitFlip { at: u64, bit: u32 },
    ZeroSector { at: u64 },
    MisplacedCopy { from: u64, to: u64, len: u64 },
}

/// Picks and applies one damage to `orig` whose first changed byte is in one of `targets` and which leaves every
/// byte at or after `keep_from` intact. Returns the damage, the damaged bytes and the offset of the frame (from
/// `all`) that holds the first changed byte: where `Error::Corrupt` must point.
fn damage(rng: &mut Rng, orig: &[u8], all: &[FrameAt], targets: &[FrameAt], keep_from: u64) -> (Damage, Vec<u8>, u64) {
    assert!(!targets.is_empty());
    let lo = targets[0].offset;
    loop {
        let mut bytes = orig.to_vec();
        let d = match rng.below(3) {
            0 => {
                let f = rng.pick(targets);
                let at = rng.range(f.offset as usize, f.end() as usize);
                let bit = rng.below(8) as u32;
                bytes[at] ^= 1 << bit;
                Damage::BitFlip { at: at as u64, bit }
            }
            1 => {
                let first = lo.div_ceil(SECTOR as u64).max(1);
                let end = keep_from / SECTOR as u64; // sectors first..end lie inside [lo, keep_from)
                if first >= end {
                    continue;
                }
                let at = (first + rng.below(end - first)) * SECTOR as u64;
                bytes[at as usize..at as usize + SECTOR].fill(0);
                Damage::ZeroSector { at }
            }
            _ => {
                let to = *rng.pick(targets);
                let from = *rng.pick(all);
                let len = from.frame.frame_bytes as u64;
                if from.frame.position == to.frame.position || to.offset + len > orig.len() as u64 {
                    continue;
                }
                bytes[to.offset as usize..(to.offset + len) as usize]
                    .copy_from_slice(&orig[from.offset as usize..from.end() as usize]);
                Damage::MisplacedCopy { from: from.offset, to: to.offset, len }
            }
        };
        let Some(first) = first_difference(orig, &bytes) else { continue };
        let holder = frame_holding(all, first as u64).expect("damage lands in a frame");
        assert!(targets.iter().any(|t| t.offset == holder.offset), "{d:?} landed outside the targets");
        // A misplaced copy is corruption wherever it lands (a valid frame at the wrong position); the other
        // damage must leave the vouching bytes alone.
        if !matches!(d, Damage::MisplacedCopy { .. }) {
            assert!(orig[keep_from as usize..] == bytes[keep_from as usize..], "{d:?} touched the protected bytes");
        }
        return (d, bytes, holder.offset);
    }
}

/// Writes `damaged` over `file`, opens the store (which must fail with `Corrupt` at `offset` of `file`, or open
/// and then have `verify` report it there, for damage in the indexed part of the log), checks that a failed open
/// changed no file, and puts everything back as it was (with `orig` in `file`).
fn expect_corrupt_and_restore(dir: &Path, file: &Path, orig: &[u8], damaged: &[u8], offset: u64, what: &str) {
    std::fs::write(file, damaged).unwrap();
    let before = snapshot(dir);
    let opened = options().open(dir);
    let failed = opened.is_err();
    assert_corrupt(opened, file, offset, what);
    if failed {
        assert_same_files(&before, &snapshot(dir), &format!("{what}: the failed open"));
    } else {
        // The store opened (and closed): undo its close marker and index writes.
        for name in snapshot(dir).keys().filter(|n| !before.contains_key(*n)) {
            std::fs::remove_file(dir.join(name)).unwrap();
        }
        restore(dir, &before);
    }
    std::fs::write(file, orig).unwrap();
}

/// A store of `appends` appends of 1..=3 events with random payloads in three streams.
fn fill(store: &Store, rng: &mut Rng, appends: usize) -> Model {
    let mut model = Model::default();
    for _ in 0..appends {
        let sizes: Vec<usize> = (0..rng.range(1, 4)).map(|_| rng.range(1, 1500)).collect();
        let stream = format!("stream-{}", rng.below(3));
        model.append(store, &stream, &payloads(rng, &sizes));
    }
    model
}

/// A store with 1 MiB segments and at least `segments` segment files.
fn fill_segments(store: &Store, dir: &Path, rng: &mut Rng, segments: usize) -> Model {
    let mut model = Model::default();
    while segment_paths(dir).len() < segments {
        let sizes: Vec<usize> = (0..rng.range(1, 4)).map(|_| rng.range(1000, 40_000)).collect();
        let stream = format!("stream-{}", rng.below(4));
        model.append(store, &stream, &payloads(rng, &sizes));
    }
    for _ in 0..3 {
        let size = rng.range(10, 2000);
        model.append(store, "stream-0", &payloads(rng, &[size]));
    }
    model
}

#[test]
fn damage_anywhere_in_a_sealed_segment_is_corruption() {
    let mut rng = Rng::from_env("damage_anywhere_in_a_sealed_segment_is_corruption");
    let total = cases(200);
    let mut done = 0;
    while done < total {
        let dir = tempfile::tempdir().unwrap();
        let store = options().open(dir.path()).unwrap();
        let model = fill_segments(&store, dir.path(), &mut rng, 3);
        let crashed = rng.chance(1, 2);
        let folder = if crashed {
            // Sometimes a crash copy (no marker), sometimes a clean close: sealed segments are final either way.
            let copy = tempfile::tempdir().unwrap();
            crash_copy(dir.path(), copy.path());
            drop(store);
            copy
        } else {
            drop(store);
            dir
        };
        let segs = segment_paths(folder.path());
        for _ in 0..25 {
            let seg = rng.pick(&segs[..segs.len() - 1]).clone();
            let orig = read(&seg);
            let all = frames_of(&orig);
            let footer = *all.last().unwrap();
            assert_eq!(footer.frame.kind, FrameKind::Footer, "{} is sealed", seg.display());
            let (d, damaged, offset) = damage(&mut rng, &orig, &all, &all, footer.end());
            let what = format!("case {done}: {d:?} in sealed {} (crash copy: {crashed})", seg.display());
            expect_corrupt_and_restore(folder.path(), &seg, &orig, &damaged, offset, &what);
            done += 1;
        }
        let store = options().open(folder.path()).expect("the restored store opens");
        assert_holds(&store, &model, "restored");
    }
}

/// Appends until an append rolls into a second segment, takes a crash copy and removes that append from it, as if
/// the crash came right after the roll, before the append was written: a sealed segment, then an empty one.
fn sealed_then_empty(rng: &mut Rng) -> (tempfile::TempDir, Model, Vec<PathBuf>) {
    let live = tempfile::tempdir().unwrap();
    let store = options().open(live.path()).unwrap();
    let mut model = Model::default();
    while segment_paths(live.path()).len() < 2 {
        let size = rng.range(5000, 40_000);
        model.append(&store, "s", &payloads(rng, &[size, 100]));
    }
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(live.path(), crashed.path());
    drop(store);
    let segs = segment_paths(crashed.path());
    let len = read(&segs[1]).len() as u64;
    zero_range(&segs[1], 64, len);
    let model = model.prefix(model.appends.len() - 1);
    // That state on its own is a legitimate crash state.
    let control = tempfile::tempdir().unwrap();
    crash_copy(crashed.path(), control.path());
    let store = options().open(control.path()).expect("sealed segment + empty segment opens");
    assert_holds(&store, &model, "sealed then empty");
    (crashed, model, segs)
}

#[test]
fn damage_in_a_sealed_segment_followed_by_an_empty_one_is_corruption_and_changes_nothing() {
    let mut rng =
        Rng::from_env("damage_in_a_sealed_segment_followed_by_an_empty_one_is_corruption_and_changes_nothing");
    let (crashed, _model, segs) = sealed_then_empty(&mut rng);
    let orig = read(&segs[0]);
    let all = frames_of(&orig);
    let first = all[0];
    let mut damaged = orig.clone();
    damaged[first.offset as usize + 90] ^= 0x10;
    expect_corrupt_and_restore(crashed.path(), &segs[0], &orig, &damaged, first.offset, "bit flip, footer intact");
}

#[test]
fn damage_in_an_unsealed_segment_followed_by_an_empty_one_is_corruption_and_changes_nothing() {
    // A crash between creating the next segment and writing this one's footer; an earlier append of this
    // segment is damaged, and a later append vouches for it.
    let mut rng =
        Rng::from_env("damage_in_an_unsealed_segment_followed_by_an_empty_one_is_corruption_and_changes_nothing");
    let (crashed, _model, segs) = sealed_then_empty(&mut rng);
    let all = frames(&segs[0]);
    let footer = *all.last().unwrap();
    zero_range(&segs[0], footer.offset, footer.end());
    let orig = read(&segs[0]);
    let mut damaged = orig.clone();
    damaged[all[0].offset as usize + 90] ^= 0x10;
    expect_corrupt_and_restore(crashed.path(), &segs[0], &orig, &damaged, all[0].offset, "bit flip, no footer");
}

#[test]
fn a_damaged_segment_header_is_corruption() {
    let mut rng = Rng::from_env("a_damaged_segment_header_is_corruption");
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let model = fill_segments(&store, dir.path(), &mut rng, 3);
    drop(store);
    for seg in segment_paths(dir.path()) {
        let orig = read(&seg);
        for _ in 0..cases(24) {
            let at = rng.below(64) as usize;
            let mut damaged = orig.clone();
            damaged[at] ^= 1 << rng.below(8);
            let what = format!("bit flip at header byte {at} of {}", seg.display());
            expect_corrupt_and_restore(dir.path(), &seg, &orig, &damaged, 0, &what);
        }
        // A whole zeroed first sector.
        let mut damaged = orig.clone();
        damaged[..SECTOR].fill(0);
        expect_corrupt_and_restore(dir.path(), &seg, &orig, &damaged, 0, "zeroed first sector");
    }
    let store = options().open(dir.path()).unwrap();
    assert_holds(&store, &model, "restored");
}

#[test]
fn segment_headers_that_disagree_with_the_folder_are_corruption() {
    let mut rng = Rng::from_env("segment_headers_that_disagree_with_the_folder_are_corruption");
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let model = fill_segments(&store, dir.path(), &mut rng, 3);
    drop(store);
    let segs = segment_paths(dir.path());
    for seg in &segs {
        let orig = read(seg);
        let h = header_of(&orig);
        let with_header = |h: SegmentHeader| {
            let mut b = orig.clone();
            b[..64].copy_from_slice(&h.encode());
            b
        };
        let wrong = [
            ("segment number", SegmentHeader { segment_number: h.segment_number + 1, ..h }),
            ("first position", SegmentHeader { first_position: h.first_position + 1, ..h }),
            ("segment bytes", SegmentHeader { segment_bytes: h.segment_bytes + 4096, ..h }),
            ("format version 0", SegmentHeader { format_version: 0, ..h }),
        ];
        for (field, h) in wrong {
            let what = format!("valid header with a wrong {field} in {}", seg.display());
            expect_corrupt_and_restore(dir.path(), seg, &orig, &with_header(h), 0, &what);
        }
        // The file is shorter or longer than its header says; or shorter than a header.
        for len in [orig.len() - 4096, orig.len() + 4096, 10] {
            let mut b = orig.clone();
            b.resize(len, 0);
            let what = format!("{} resized to {len} bytes", seg.display());
            expect_corrupt_and_restore(dir.path(), seg, &orig, &b, 0, &what);
        }
    }
    // A segment file missing from the middle: the next one is found where the missing one belongs.
    let missing = read(&segs[1]);
    std::fs::remove_file(&segs[1]).unwrap();
    let before = snapshot(dir.path());
    assert_corrupt(options().open(dir.path()), &segs[2], 0, "segment 1 missing");
    assert_same_files(&before, &snapshot(dir.path()), "segment 1 missing: the failed open");
    std::fs::write(&segs[1], missing).unwrap();
    let store = options().open(dir.path()).unwrap();
    assert_holds(&store, &model, "restored");
}

#[test]
fn a_valid_frame_with_the_wrong_position_is_corruption_even_at_the_tail() {
    // RELIABILITY.md rule 3: a frame with a valid checksum at the wrong position is corruption, not a torn
    // write, even where nothing vouches for it.
    let mut rng = Rng::from_env("a_valid_frame_with_the_wrong_position_is_corruption_even_at_the_tail");
    let live = tempfile::tempdir().unwrap();
    let store = options().open(live.path()).unwrap();
    let model = fill(&store, &mut rng, 6);
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(live.path(), crashed.path());
    drop(store);
    let seg = newest_segment(crashed.path());
    let orig = read(&seg);
    let all = frames_of(&orig);
    let end = all.last().unwrap().end();
    for copy in &all {
        let mut damaged = orig.clone();
        damaged[end as usize..(end + copy.frame.frame_bytes as u64) as usize]
            .copy_from_slice(&orig[copy.offset as usize..copy.end() as usize]);
        let what = format!("copy of the frame of position {} after the last append", copy.frame.position);
        expect_corrupt_and_restore(crashed.path(), &seg, &orig, &damaged, end, &what);
    }
    let store = options().open(crashed.path()).unwrap();
    assert_holds(&store, &model, "restored");
}

/// Re-encodes the event frame `f` of `bytes` (same size, valid checksum) with `change` applied to its fields.
fn reencoded(bytes: &[u8], f: &FrameAt, change: impl FnOnce(&mut EventFields<'_>)) -> Vec<u8> {
    let salt = header_of(bytes).salt;
    let at = f.offset as usize;
    let d = f.frame;
    let body = &bytes[at..at + d.frame_bytes as usize];
    let mut fields = EventFields {
        position: d.position,
        batch_end: d.batch_end,
        durable: d.durable,
        version: d.version,
        timestamp_us: d.timestamp_us,
        id: d.id,
        stream: &body[d.stream_at()..d.type_at()],
        event_type: &body[d.type_at()..d.metadata_at()],
        metadata: &body[d.metadata_at()..d.metadata_at() + d.metadata_bytes as usize],
        payload: &body[d.payload_at()..d.payload_at() + d.payload_bytes as usize],
    };
    change(&mut fields);
    let mut frame = Vec::new();
    encode_event(&mut frame, salt, &fields);
    assert_eq!(frame.len(), d.frame_bytes as usize);
    let mut out = bytes.to_vec();
    out[at..at + frame.len()].copy_from_slice(&frame);
    out
}

#[test]
fn valid_frames_that_do_not_fit_their_place_are_corruption() {
    // Checksums intact, but the content contradicts the log around it: never data, never a torn write, even in
    // the last append that nothing vouches for (RELIABILITY.md rule 3).
    let mut rng = Rng::from_env("valid_frames_that_do_not_fit_their_place_are_corruption");
    let live = tempfile::tempdir().unwrap();
    let store = options().open(live.path()).unwrap();
    let mut model = fill(&store, &mut rng, 4);
    model.append(&store, "last", &payloads(&mut rng, &[100, 200, 300]));
    let crashed = tempfile::tempdir().unwrap();
    crash_copy(live.path(), crashed.path());
    drop(store);
    let seg = newest_segment(crashed.path());
    let orig = read(&seg);
    let all = frames_of(&orig);
    let last = appends_of(&all).pop().unwrap();
    let first = all[0];
    type Change = fn(&mut EventFields<'_>);
    // (what, the frame changed, the change, the frame where the contradiction shows)
    let cases: [(&str, FrameAt, Change, FrameAt); 6] = [
        ("a stream version that skips ahead", last[1], |e| e.version += 5, last[1]),
        ("a stream version that repeats", last[2], |e| e.version -= 1, last[2]),
        ("a batch end that disagrees with its append", last[1], |e| e.batch_end += 1, last[1]),
        ("a batch end that ends the append early", last[0], |e| e.batch_end -= 1, last[1]),
        ("a batch end over the per-append limit", last[0], |e| e.batch_end = e.position + 10_001, last[0]),
        (
            "a position one too far, in the first frame",
            first,
            |e| {
                e.position += 1;
                e.batch_end += 1;
                e.durable += 1;
            },
            first,
        ),
    ];
    for (what, f, change, reported) in cases {
        let damaged = reencoded(&orig, &f, change);
        expect_corrupt_and_restore(crashed.path(), &seg, &orig, &damaged, reported.offset, what);
    }
    let store = options().open(crashed.path()).unwrap();
    assert_holds(&store, &model, "restored");
}

#[test]
fn a_store_file_with_a_bad_checksum_is_corruption() {
    let mut rng = Rng::from_env("a_store_file_with_a_bad_checksum_is_corruption");
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let model = fill(&store, &mut rng, 3);
    drop(store);
    let path = dir.path().join(store_file::FILE_NAME);
    let orig = read(&path);
    assert_eq!(orig.len(), store_file::SIZE_BYTES);
    // Every bit after the magic: fields, reserved bytes and the checksum itself.
    for bit in 8 * 8..store_file::SIZE_BYTES * 8 {
        let mut damaged = orig.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        expect_corrupt_and_restore(dir.path(), &path, &orig, &damaged, 0, &format!("ANNALS bit {bit} flipped"));
    }
    let store = options().open(dir.path()).unwrap();
    assert_holds(&store, &model, "restored");
}

/// Every item of a read: the `Ok` ones must equal the model (positions given), then at most one `Err`, which must
/// be `Corrupt` at `file`/`offset`, and nothing after it. Returns whether the `Err` came.
fn check_read(
    items: Vec<Result<annals::RecordedEvent, Error>>,
    model: &Model,
    positions: &[usize],
    file: &Path,
    offset: u64,
    what: &str,
) -> bool {
    let mut failed = false;
    for (i, item) in items.into_iter().enumerate() {
        assert!(!failed, "{what}: an item after the error");
        match item {
            Ok(ev) => {
                let p = positions[i];
                assert_eq!(ev.position().as_u64(), p as u64, "{what}: position of item {i}");
                let want = &model.events[p];
                assert!(ev.payload() == &want.payload[..], "{what}: wrong payload bytes at position {p}");
                assert!(ev.metadata() == &want.metadata[..], "{what}: wrong metadata bytes at position {p}");
                assert_eq!((ev.stream(), ev.version()), (&want.stream[..], want.version), "{what}: at {p}");
                assert_eq!((ev.event_type(), ev.id()), (&want.event_type[..], want.id), "{what}: at {p}");
            }
            Err(Error::Corrupt { file: f, offset: o, .. }) => {
                assert_eq!((f.as_path(), o), (file, offset), "{what}: Corrupt names the damaged frame");
                failed = true;
            }
            Err(e) => panic!("{what}: expected Error::Corrupt, got {e:?}"),
        }
    }
    failed
}

#[test]
fn reads_of_an_open_store_report_a_damaged_event_as_corrupt() {
    let mut rng = Rng::from_env("reads_of_an_open_store_report_a_damaged_event_as_corrupt");
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let model = fill(&store, &mut rng, 12);
    let seg = newest_segment(dir.path());
    let all = frames(&seg);
    assert_eq!(all.len(), model.events.len());
    for case in 0..cases(200) {
        // Only bytes of committed events: a payload byte most of the time, else any byte of the frame.
        let k = rng.below(all.len() as u64) as usize;
        let f = all[k];
        let payload_at = f.offset + f.frame.payload_at() as u64;
        let at = if f.frame.payload_bytes > 0 && rng.chance(2, 3) {
            payload_at + rng.below(f.frame.payload_bytes as u64)
        } else {
            f.offset + rng.below(f.frame.frame_bytes as u64)
        };
        let mut byte = [read(&seg)[at as usize]];
        let orig = byte;
        byte[0] ^= 1 << rng.below(8);
        write_at(&seg, at, &byte);
        let want = &model.events[k];
        let what = format!("case {case}: bit flipped at {at} in the frame of position {k} (frame at {})", f.offset);

        // read_stream from the start of the damaged event's stream: everything before it, then Corrupt.
        let positions: Vec<usize> =
            (0..model.events.len()).filter(|&p| model.events[p].stream == want.stream).collect();
        let items: Vec<_> = store.read_stream(&want.stream, 0).unwrap().collect();
        let before_k = positions.iter().filter(|&&p| p < k).count();
        assert_eq!(items.len(), before_k + 1, "{what}: read_stream stops at the error");
        assert!(check_read(items, &model, &positions, &seg, f.offset, &what), "{what}: read_stream reported nothing");

        // read_stream from the next version does not touch the damaged frame.
        let after: Vec<usize> = positions.iter().copied().filter(|&p| p > k).collect();
        let items: Vec<_> = store.read_stream(&want.stream, want.version + 1).unwrap().collect();
        assert!(!check_read(items, &model, &after, &seg, f.offset, &what), "{what}: later versions read fine");

        // read_all from the start, and from just after the damaged event: only correct events, then Corrupt.
        let items: Vec<_> = store.read_all(Position::START).collect();
        assert_eq!(items.len(), k + 1, "{what}: read_all stops at the error");
        assert!(check_read(items, &model, &(0..k + 1).collect::<Vec<_>>(), &seg, f.offset, &what));
        let items: Vec<_> = store.read_all(Position::from_u64(k as u64 + 1)).collect();
        check_read(items, &model, &(k + 1..model.events.len()).collect::<Vec<_>>(), &seg, f.offset, &what);

        check_retry_of_damaged_event(&store, &model, k, &seg, f.offset, &what);

        write_at(&seg, at, &orig);
        assert_holds(&store, &model, &format!("{what}, repaired"));
    }
    drop(store);
    let store = options().open(dir.path()).unwrap();
    assert_holds(&store, &model, "reopened");
}

/// An idempotent retry (same id, `Exact`) of the damaged event at position `k`: `Error::Corrupt` naming the
/// frame, a conflict (the stored id no longer matches), or the original result, exactly; never a result made of
/// damaged bytes, and nothing written.
fn check_retry_of_damaged_event(store: &Store, model: &Model, k: usize, seg: &Path, offset: u64, what: &str) {
    let want = &model.events[k];
    let head = store.head();
    let expected = match want.version {
        0 => ExpectedVersion::NoStream,
        v => ExpectedVersion::Exact(v - 1),
    };
    let retry = NewEvent::new(want.event_type.clone(), want.payload.clone()).with_id(want.id);
    match store.append(&want.stream, expected, &[retry]) {
        Err(Error::Corrupt { file, offset: o, .. }) => assert_eq!((file.as_path(), o), (seg, offset), "{what}"),
        Ok(r) => {
            assert_eq!(
                (r.first_version, r.last_version, r.position),
                (want.version, want.version, Position::from_u64(k as u64)),
                "{what}: a retry of the damaged event returned a result that is not the original one"
            );
        }
        Err(Error::WrongExpectedVersion { actual, .. }) => {
            assert_eq!(actual, model.version_of(&want.stream), "{what}: conflict with the true version")
        }
        Err(e) => panic!("{what}: a retry of the damaged event gave {e:?}"),
    }
    assert_eq!(store.head(), head, "{what}: the retry wrote nothing");
}

//
// - vouched_damage_in_the_newest_segment_is_corruption, damage_to_the_last_append_before_a_clean_close_marker_is_
//   corruption, a_bit_flip_in_the_first_of_two_appends_is_corruption: `recovery::look_past` never finds a vouching
//   frame since the frame length moved to offset 4 (commit 2b8e6c5): it peeks the length from a 4-byte read, so
//   vouched-for damage in the newest segment is silently cut.
// - a_retry_never_answers_from_a_damaged_frame_header: `retry_of` answers from `decode_unverified` bytes.
// - stream_version_is_not_misled_by_a_damaged_frame: `stream_version` steps back on an unverified position.

#[test]
fn a_bit_flip_in_the_first_of_two_appends_is_corruption() {
    // The smallest case of the randomised tests above: the second append's watermark vouches for the first.
    for clean_close in [false, true] {
        let live = tempfile::tempdir().unwrap();
        let store = options().open(live.path()).unwrap();
        store.append("s", ExpectedVersion::NoStream, &[NewEvent::new("E", "first")]).unwrap();
        store.append("s", ExpectedVersion::Exact(0), &[NewEvent::new("E", "second")]).unwrap();
        let crashed = tempfile::tempdir().unwrap();
        crash_copy(live.path(), crashed.path());
        drop(store);
        let dir = if clean_close { live.path() } else { crashed.path() };
        let seg = newest_segment(dir);
        let orig = read(&seg);
        let first = frames_of(&orig)[0];
        let mut damaged = orig.clone();
        damaged[first.offset as usize + first.frame.payload_at()] ^= 1; // "first" -> "girst"
        let what = format!("bit flip in the first append's payload (clean close: {clean_close})");
        expect_corrupt_and_restore(dir, &seg, &orig, &damaged, first.offset, &what);
    }
}

#[test]
fn a_retry_never_answers_from_a_damaged_frame_header() {
    // The retry check reads the stream's stored events; a flipped bit in a stored event's position field must
    // not come back as the position of the "original" append.
    let mut rng = Rng::from_env("a_retry_never_answers_from_a_damaged_frame_header");
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let model = fill(&store, &mut rng, 8);
    let seg = newest_segment(dir.path());
    let all = frames(&seg);
    const POSITION_FIELD_AT: u64 = 24;
    for (k, f) in all.iter().enumerate() {
        for bit in [0u32, 3, 17, 40] {
            let at = f.offset + POSITION_FIELD_AT + bit as u64 / 8;
            let orig = [read(&seg)[at as usize]];
            write_at(&seg, at, &[orig[0] ^ (1 << (bit % 8))]);
            let what = format!("bit {bit} of the position of event {k} flipped");
            check_retry_of_damaged_event(&store, &model, k, &seg, f.offset, &what);
            write_at(&seg, at, &orig);
        }
    }
    assert_holds(&store, &model, "repaired");
}

#[test]
fn damage_to_the_last_append_before_a_clean_close_marker_is_corruption() {
    let mut rng = Rng::from_env("damage_to_the_last_append_before_a_clean_close_marker_is_corruption");
    let total = cases(150);
    let mut done = 0;
    while done < total {
        let dir = tempfile::tempdir().unwrap();
        let store = options().open(dir.path()).unwrap();
        let earlier = rng.range(0, 4);
        let mut model = fill(&store, &mut rng, earlier);
        // A last append large enough to hold whole sectors.
        let sizes: Vec<usize> = (0..rng.range(1, 4)).map(|_| rng.range(400, 1500)).collect();
        model.append(&store, "last", &payloads(&mut rng, &sizes));
        drop(store); // clean close: the marker vouches for everything before it

        let seg = newest_segment(dir.path());
        let orig = read(&seg);
        let all = frames_of(&orig);
        let marker = *all.last().unwrap();
        assert_eq!(marker.frame.kind, FrameKind::CloseMarker);
        assert_eq!(marker.frame.durable, model.events.len() as u64);
        let last = appends_of(&all).pop().unwrap();
        for _ in 0..25 {
            let (d, damaged, offset) = damage(&mut rng, &orig, &all, &last, marker.offset);
            let what = format!("case {done}: {d:?} in the last append, marker at {}", marker.offset);
            expect_corrupt_and_restore(dir.path(), &seg, &orig, &damaged, offset, &what);
            done += 1;
        }
        let store = options().open(dir.path()).expect("the restored store opens");
        assert_holds(&store, &model, "restored");
    }
}

#[test]
fn stream_version_is_not_misled_by_a_damaged_frame() {
    // `stream_version` has no error to give: it must answer from what recovery and the appends verified, not
    // from bytes read back from the log unverified.
    let mut rng = Rng::from_env("stream_version_is_not_misled_by_a_damaged_frame");
    let dir = tempfile::tempdir().unwrap();
    let store = options().open(dir.path()).unwrap();
    let model = fill(&store, &mut rng, 8);
    let seg = newest_segment(dir.path());
    let all = frames(&seg);
    for stream in model.streams() {
        let k = (0..model.events.len()).rev().find(|&p| model.events[p].stream == stream).unwrap();
        for bit in [7u32, 62] {
            const POSITION_FIELD_AT: u64 = 24;
            let at = all[k].offset + POSITION_FIELD_AT + bit as u64 / 8;
            let orig = [read(&seg)[at as usize]];
            write_at(&seg, at, &[orig[0] ^ (1 << (bit % 8))]);
            assert_eq!(
                store.stream_version(&stream),
                model.version_of(&stream),
                "bit {bit} of the position of {stream}'s last event (position {k}) flipped"
            );
            write_at(&seg, at, &orig);
        }
    }
    assert_holds(&store, &model, "repaired");
}

#[test]
fn vouched_damage_in_the_newest_segment_is_corruption() {
    let mut rng = Rng::from_env("vouched_damage_in_the_newest_segment_is_corruption");
    let total = cases(400);
    let mut done = 0;
    let mut kinds = [0usize; 3];
    while done < total {
        // A crash copy: no clean-close marker; the last append's watermark vouches for every earlier one.
        let live = tempfile::tempdir().unwrap();
        let store = options().open(live.path()).unwrap();
        let appends = rng.range(3, 12);
        let model = fill(&store, &mut rng, appends);
        let crashed = tempfile::tempdir().unwrap();
        crash_copy(live.path(), crashed.path());
        drop(store);

        let seg = newest_segment(crashed.path());
        let orig = read(&seg);
        let all = frames_of(&orig);
        let groups = appends_of(&all);
        let last = groups.last().unwrap();
        assert_eq!(last[0].frame.durable, last[0].frame.position, "Sync: the last append vouches for all before it");
        let targets: Vec<FrameAt> = all.iter().copied().filter(|f| f.end() <= last[0].offset).collect();
        for _ in 0..50 {
            let (d, damaged, offset) = damage(&mut rng, &orig, &all, &targets, last[0].offset);
            kinds[match d {
                Damage::BitFlip { .. } => 0,
                Damage::ZeroSector { .. } => 1,
                Damage::MisplacedCopy { .. } => 2,
            }] += 1;
            let what = format!("case {done}: {d:?} ({} appends)", groups.len());
            expect_corrupt_and_restore(crashed.path(), &seg, &orig, &damaged, offset, &what);
            done += 1;
        }
        // Undamaged, the same folder opens with everything in it: no false reports.
        let store = options().open(crashed.path()).expect("the restored copy opens");
        assert_holds(&store, &model, "restored");
    }
    println!("{done} cases: {} bit flips, {} zeroed sectors, {} misplaced copies", kinds[0], kinds[1], kinds[2]);
}
