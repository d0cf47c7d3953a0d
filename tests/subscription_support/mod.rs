//! Helpers shared by the subscription tests (subscription_*.rs, subscriber_lag.rs). Each test file uses only
//! some of them.
#![allow(dead_code)]

use std::time::Duration;

use annals::{Durability, Options, RecordedEvent, Store, Subscription, Uuid};

/// Long enough that a passing test never hits it on a loaded 2-core machine; it only turns a hang into a
/// failure.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// What a test compares of a delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub id: Uuid,
    pub event_type: String,
}

impl Got {
    pub fn of(e: &RecordedEvent) -> Got {
        Got {
            position: e.position().as_u64(),
            stream: e.stream().to_owned(),
            version: e.version(),
            id: e.id(),
            event_type: e.event_type().to_owned(),
        }
    }
}

/// A store in `dir` with the given durability (Buffered: no background sync, so tests decide when).
pub fn open(dir: &std::path::Path, durability: Durability) -> Store {
    Options::new().durability(durability).sync_interval(None).open(dir).expect("open")
}

/// The next `n` events of `sub`, each within [`PATIENCE`].
pub fn take(sub: &mut Subscription, n: usize) -> Vec<Got> {
    (0..n)
        .map(|i| {
            let e = sub
                .next_timeout(PATIENCE)
                .expect("subscription item")
                .unwrap_or_else(|| panic!("event {i} of {n} did not arrive within {PATIENCE:?}"));
            Got::of(&e)
        })
        .collect()
}

/// Every event in the store, as a subscription would deliver them.
pub fn all(store: &Store) -> Vec<Got> {
    store.read_all(annals::Position::START).map(|e| Got::of(&e.expect("read_all"))).collect()
}

/// Checks the positions are `from, from + 1, ...` without gaps or repeats.
pub fn assert_gapless(got: &[Got], from: u64) {
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.position, from + i as u64, "event {i} out of order or missing: {g:?}");
    }
}

/// A seed from `ANNALS_SEED` or the clock, printed so a failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("ANNALS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    eprintln!("seed: {seed} (replay with ANNALS_SEED={seed})");
    seed
}

/// xorshift64*: small, deterministic for a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}
