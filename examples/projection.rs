//! A read model that survives a crash: account balances projected from `Deposited` / `Withdrawn` events,
//! kept in one file together with its checkpoint, written atomically (write a temporary file, fsync it,
//! rename it over the old one, fsync the folder). A restart loads the file and resumes the subscription from
//! the checkpoint in it, so every deposit is counted exactly once, however the process died.
//!
//! ```text
//! cargo run --release --example projection                      # demo in a temporary folder
//! cargo run --release --example projection -- write STORE N     # append N deposits to 100 accounts
//! cargo run --release --example projection -- project STORE MODEL [BATCH]
//! ```
//! `project` catches up to the head, printing `SAVED <checkpoint>` after each save, then prints the totals.
//! tests/projection_kill.rs kills it with SIGKILL mid-run and checks the file after each kill and restart.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use annals::projection::{BoxError, Projection, ProjectionRunner};
use annals::{Durability, ExpectedVersion, NewEvent, Options, Position, RecordedEvent, Store, SubscriptionOptions};

/// The first line of the model file: a tag and a format version.
const MAGIC: &str = "annals-example-balances 1";

/// Account balances, and the checkpoint they are valid up to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Balances {
    pub checkpoint: u64,
    pub accounts: BTreeMap<String, i64>,
}

impl Balances {
    /// The file's bytes: the magic line, `checkpoint N`, one `stream amount` line per account, and a last line
    /// with the CRC-32 of everything before it (a torn or foreign file is refused, not half read).
    pub fn encode(&self) -> String {
        let mut s = format!("{MAGIC}\ncheckpoint {}\n", self.checkpoint);
        for (stream, amount) in &self.accounts {
            s.push_str(&format!("{stream} {amount}\n"));
        }
        let crc = crc32fast::hash(s.as_bytes());
        s.push_str(&format!("crc {crc:08x}\n"));
        s
    }

    /// Parses [`Balances::encode`]'s output; `None` if anything is off.
    pub fn decode(text: &str) -> Option<Balances> {
        let body_end = text.trim_end_matches('\n').rfind('\n')? + 1;
        let (body, last) = text.split_at(body_end);
        let crc = u32::from_str_radix(last.trim().strip_prefix("crc ")?, 16).ok()?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let checkpoint = lines.next()?.strip_prefix("checkpoint ")?.parse().ok()?;
        let mut accounts = BTreeMap::new();
        for line in lines {
            let (stream, amount) = line.rsplit_once(' ')?;
            accounts.insert(stream.to_owned(), amount.parse().ok()?);
        }
        Some(Balances { checkpoint, accounts })
    }

    /// Applies one event.
    pub fn apply(&mut self, ev: &RecordedEvent) -> Result<(), BoxError> {
        let amount: i64 = std::str::from_utf8(ev.payload())?.trim().parse()?;
        let sign = match ev.event_type() {
            "Deposited" => 1,
            "Withdrawn" => -1,
            _ => return Ok(()),
        };
        *self.accounts.entry(ev.stream().to_owned()).or_insert(0) += sign * amount;
        Ok(())
    }
}

/// The projection: the balances in memory and the file they are saved to.
pub struct BalancesProjection {
    path: PathBuf,
    state: Balances,
    /// Print `SAVED <checkpoint>` after each save (for the kill test).
    report: bool,
}

impl BalancesProjection {
    /// Loads the model from `path` (a new, empty one if there is no file).
    pub fn load(path: &Path, report: bool) -> Result<BalancesProjection, BoxError> {
        let state = match fs::read_to_string(path) {
            Ok(text) => Balances::decode(&text).ok_or_else(|| format!("{} is damaged", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Balances::default(),
            Err(e) => return Err(e.into()),
        };
        Ok(BalancesProjection { path: path.to_owned(), state, report })
    }

    pub fn balances(&self) -> &Balances {
        &self.state
    }
}

impl Projection for BalancesProjection {
    fn options(&self) -> SubscriptionOptions {
        SubscriptionOptions::new().stream_prefix("account-").event_types(["Deposited", "Withdrawn"])
    }

    fn checkpoint(&self) -> Position {
        Position::from_u64(self.state.checkpoint)
    }

    fn apply(&mut self, events: &[RecordedEvent]) -> Result<(), BoxError> {
        events.iter().try_for_each(|e| self.state.apply(e))
    }

    /// State and checkpoint in one file, replaced atomically: tmp, fsync, rename, fsync the folder.
    fn save(&mut self, checkpoint: Position) -> Result<(), BoxError> {
        self.state.checkpoint = checkpoint.as_u64();
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(self.state.encode().as_bytes())?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &self.path)?;
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()?;
        if self.report {
            println!("SAVED {}", checkpoint.as_u64());
            std::io::stdout().flush()?;
        }
        Ok(())
    }
}

/// The amount of deposit number `i` (so a test can compute the expected balances).
pub fn deposit_amount(i: u64) -> i64 {
    (i % 97) as i64 + 1
}

/// Appends `n` deposits to `account-{i % 100}` (and, every tenth, an order event the projection skips).
pub fn write_deposits(store: &Store, n: u64) -> annals::Result<()> {
    for i in 0..n {
        let stream = format!("account-{}", i % 100);
        store.append(&stream, ExpectedVersion::Any, &[NewEvent::new("Deposited", deposit_amount(i).to_string())])?;
        if i % 10 == 9 {
            store.append("order-1", ExpectedVersion::Any, &[NewEvent::new("Placed", "1")])?;
        }
    }
    Ok(())
}

/// The balances `write_deposits(n)` leads to.
pub fn expected_balances(n: u64) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for i in 0..n {
        *m.entry(format!("account-{}", i % 100)).or_insert(0) += deposit_amount(i);
    }
    m
}

/// Catches the model in `model` up with the store in `store_dir`.
pub fn project(store_dir: &Path, model: &Path, batch: usize, report: bool) -> Result<Balances, BoxError> {
    let store = Store::open(store_dir)?;
    let projection = BalancesProjection::load(model, report)?;
    let mut runner = ProjectionRunner::new(&store, projection).batch_events_max(batch);
    runner.catch_up()?;
    Ok(runner.into_inner().state)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("write") => {
            let store = Options::new().durability(Durability::Buffered).open(&args[1])?;
            write_deposits(&store, args[2].parse()?)?;
            store.sync()?;
        }
        Some("project") => {
            let batch = args.get(3).map(|b| b.parse()).transpose()?.unwrap_or(1_000);
            let b = project(Path::new(&args[1]), Path::new(&args[2]), batch, true)?;
            println!(
                "checkpoint {}; {} accounts; total {}",
                b.checkpoint,
                b.accounts.len(),
                b.accounts.values().sum::<i64>()
            );
        }
        _ => {
            let dir = tempfile::tempdir()?;
            let (store_dir, model) = (dir.path().join("store"), dir.path().join("balances.txt"));
            {
                let store = Options::new().durability(Durability::Buffered).open(&store_dir)?;
                write_deposits(&store, 10_000)?;
                store.sync()?;
            }
            let b = project(&store_dir, &model, 1_000, false)?;
            assert_eq!(b.accounts, expected_balances(10_000));
            println!("10,000 deposits projected into {} balances up to position {}", b.accounts.len(), b.checkpoint);
            for (stream, amount) in b.accounts.iter().take(3) {
                println!("  {stream}: {amount}");
            }
        }
    }
    Ok(())
}
