//! Real process kills: a child process (this test binary, re-run with `ANNALS_KILL_CHILD_DIR` set) appends to a
//! store with `Durability::Sync` (single-stream appends of one to four events, `append_many` over two streams,
//! now and then a large event that rolls the 1 MiB segments) and prints `ACK <batch>` after each append returns.
//! The parent kills it with SIGKILL at a random moment, reopens the store and checks that every acknowledged
//! append is there and that the log is an exact prefix of what the child writes, whole appends only. The same
//! folder is reused for 50 kills in a row, so each child also recovers after the previous kill.
//!
//! The child's appends are a pure function of (seed, batch number), so the parent knows what every batch holds.
//! `ANNALS_KILLS` (default 100) sets the number of kills; `ANNALS_SEED` replays the choices (the moments of the
//! kills depend on timing as well).

mod sim_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use annals::fs::sim::Rng;
use annals::{ExpectedVersion, NewEvent, Options, Position, Store, StreamAppend, Uuid};
use sim_support::{count, seed};

const SEGMENT_BYTES: u64 = 1 << 20;
/// Kills in one folder before the next starts afresh.
const KILLS_PER_FOLDER: u64 = 50;

/// One event the child writes; its payload is `size` bytes made from `fill`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    stream: String,
    id: Uuid,
    fill: u64,
    size: u64,
}

impl Ev {
    fn payload_byte(&self, j: u64) -> u8 {
        (self.fill.wrapping_add(j * 7) >> 9) as u8
    }

    fn payload(&self) -> Vec<u8> {
        (0..self.size).map(|j| self.payload_byte(j)).collect()
    }

    /// Compares a payload with this event's: every byte, or (`full` false) the length and the bytes at both
    /// ends, enough for data checked in full after an earlier kill.
    fn payload_is(&self, bytes: &[u8], full: bool) -> bool {
        if bytes.len() as u64 != self.size {
            return false;
        }
        let ends = (0..self.size.min(16)).chain(self.size.saturating_sub(16)..self.size);
        match full {
            true => bytes == self.payload(),
            false => ends.into_iter().all(|j| bytes[j as usize] == self.payload_byte(j)),
        }
    }
}

/// The events of batch `b`, grouped by stream (one group, or two for an `append_many`).
fn batch(seed: u64, b: u64) -> Vec<Vec<Ev>> {
    let mut rng = Rng::new(seed ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let n = 1 + rng.below(4) as usize;
    let large = rng.chance(1, 12);
    let parts = if rng.chance(1, 3) { 2 } else { 1 };
    let first = rng.below(6);
    (0..parts)
        .map(|p| {
            let stream = format!("kill-{}", (first + p) % 6);
            (0..n)
                .map(|i| {
                    let size = if large && i == 0 && p == 0 { 100_000 + rng.below(200_000) } else { rng.below(700) };
                    let fill = rng.next_u64();
                    Ev { stream: stream.clone(), id: Uuid::from_u64_pair(rng.next_u64(), rng.next_u64()), fill, size }
                })
                .collect()
        })
        .collect()
}

fn options() -> Options {
    Options::new().segment_size(SEGMENT_BYTES)
}

/// Reads the whole store and checks it is batches `0..n` of the child's sequence, exactly (payloads byte for byte
/// from batch `full_from` on); returns `n`.
fn check_prefix(store: &Store, seed: u64, full_from: u64, what: &str) -> u64 {
    let got: Vec<(String, u64, Uuid, Vec<u8>)> = store
        .read_all(Position::START)
        .map(|e| {
            let e = e.unwrap_or_else(|e| panic!("{what}: read_all: {e}"));
            (e.stream().to_owned(), e.version(), e.id(), e.payload().to_vec())
        })
        .collect();
    let mut versions = std::collections::HashMap::<String, u64>::new();
    let mut at = 0usize;
    let mut b = 0u64;
    while at < got.len() {
        for part in batch(seed, b) {
            for e in part {
                let Some((stream, version, id, payload)) = got.get(at) else {
                    panic!("{what}: batch {b} is cut at position {at}: an append is not all-or-nothing");
                };
                let v = versions.entry(e.stream.clone()).or_insert(0);
                assert!(
                    *stream == e.stream && *version == *v && *id == e.id && e.payload_is(payload, b >= full_from),
                    "{what}: position {at} (batch {b}) is not what the child wrote"
                );
                *v += 1;
                at += 1;
            }
        }
        b += 1;
    }
    assert_eq!(store.head().as_u64(), got.len() as u64, "{what}: head");
    b
}

/// The child: continues the sequence from what the store holds and appends until killed. Run only by the
/// parent (`--ignored --exact kill_child` with `ANNALS_KILL_CHILD_DIR` set).
#[test]
#[ignore = "the child process of sigkill_at_random_moments_loses_no_acknowledged_append"]
fn kill_child() {
    let Ok(dir) = std::env::var("ANNALS_KILL_CHILD_DIR") else { return };
    let seed: u64 = std::env::var("ANNALS_KILL_CHILD_SEED").expect("seed").parse().expect("seed");
    let store = options().open(&dir).expect("child: open");
    let mut b = check_prefix(&store, seed, u64::MAX, "child: at open");
    println!("READY {b}");
    loop {
        let parts = batch(seed, b);
        let events: Vec<Vec<NewEvent>> = parts
            .iter()
            .map(|p| p.iter().map(|e| NewEvent::new("Killed", e.payload()).with_id(e.id)).collect())
            .collect();
        if parts.len() == 1 {
            store.append(&parts[0][0].stream, ExpectedVersion::Any, &events[0]).expect("child: append");
        } else {
            let many: Vec<StreamAppend<'_>> = parts
                .iter()
                .zip(&events)
                .map(|(p, e)| StreamAppend::new(&p[0].stream, ExpectedVersion::Any, e))
                .collect();
            store.append_many(&many).expect("child: append_many");
        }
        println!("ACK {b}");
        b += 1;
    }
}

fn run_child(dir: &Path, seed: u64, acks_before_kill: u64, extra_delay: Duration) -> (Option<u64>, u64) {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "kill_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("ANNALS_KILL_CHILD_DIR", dir)
        .env("ANNALS_KILL_CHILD_SEED", seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut last_ack = None;
    let mut ready = None;
    let mut acks = 0;
    while acks < acks_before_kill || ready.is_none() {
        let Some(Ok(line)) = lines.next() else { break };
        // The test harness prints "test kill_child ... " before the first line of the child.
        if let Some(i) = line.find("READY ") {
            ready = Some(line[i + 6..].parse().expect("READY n"));
        } else if let Some(b) = line.strip_prefix("ACK ") {
            last_ack = Some(b.parse::<u64>().expect("ACK n"));
            acks += 1;
        }
    }
    std::thread::sleep(extra_delay);
    child.kill().expect("SIGKILL");
    // Acknowledgements printed before the kill landed count too.
    for line in lines.map_while(Result::ok) {
        if let Some(b) = line.strip_prefix("ACK ") {
            last_ack = Some(b.parse().expect("ACK n"));
        }
    }
    let status = child.wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "the child ended by SIGKILL, not on its own: {status:?}");
    (last_ack, ready.expect("the child opened the store and said READY"))
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_append() {
    let seed = seed("sigkill_at_random_moments_loses_no_acknowledged_append");
    let mut rng = Rng::new(seed);
    let kills = count("ANNALS_KILLS", 100);
    let mut dir = tempfile::tempdir().unwrap();
    let mut batches = 0;
    let mut mid_append = 0;
    for kill in 0..kills {
        if kill > 0 && kill % KILLS_PER_FOLDER == 0 {
            // A fresh folder now and then: every open scans the whole log, so one folder for 10,000 kills
            // would make the long mode quadratic.
            let store = options().open(dir.path()).unwrap();
            assert_eq!(check_prefix(&store, seed, 0, "before a fresh folder"), batches);
            drop(store);
            dir = tempfile::tempdir().unwrap();
            batches = 0;
        }
        let acks = rng.below(25);
        let delay = Duration::from_micros(rng.below(3000));
        let (last_ack, ready) = run_child(dir.path(), seed, acks, delay);
        let what = format!("kill {kill} (after {acks} acknowledgements and {delay:?})");
        assert_eq!(ready, batches, "{what}: the child saw what the parent checked last time");
        let store = options().open(dir.path()).unwrap_or_else(|e| panic!("{what}: reopen: {e:?}"));
        let n = check_prefix(&store, seed, batches.saturating_sub(2), &what);
        if let Some(b) = last_ack {
            assert!(n > b, "{what}: batch {b} was acknowledged, only {n} batches are there");
        }
        mid_append += u64::from(last_ack.map_or(0, |b| b + 1) < n);
        batches = n;
    }
    // At the end, every payload byte for byte.
    let store = options().open(dir.path()).unwrap();
    assert_eq!(check_prefix(&store, seed, 0, "in the end"), batches);
    println!("{kills} kills, {batches} batches in the end, {mid_append} times an append not yet acknowledged survived");
}
