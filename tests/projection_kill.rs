//! A projection killed with SIGKILL mid-run resumes from its checkpoint with a correct result: every deposit
//! counted exactly once. The child process is this test binary re-run with `ANNALS_PROJECTION_CHILD` set; it
//! runs the account-balances projection of examples/projection.rs (included below) with small batches and
//! prints `SAVED <checkpoint>` after each atomic save. The parent kills it after a random number of saves,
//! checks that the model file on disk is intact and holds exactly the deposits below its checkpoint, and
//! starts the next child, which resumes from that file; the last child runs to the end. The seed is printed.

#[allow(dead_code)]
#[path = "../examples/projection.rs"]
mod example;

mod subscription_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use annals::{Durability, Position};
use example::Balances;
use subscription_support::{seed, Rng};

const DEPOSITS: u64 = 20_000;
const BATCH: usize = 50;
const KILLS: usize = 6;

/// What the balances must be at `checkpoint`: the deposits among the events below it.
fn expected_at(store_dir: &Path, checkpoint: u64) -> BTreeMap<String, i64> {
    let store = annals::Store::open(store_dir).expect("open");
    let mut model = Balances::default();
    for e in store.read_all(Position::START).take(checkpoint as usize) {
        let e = e.expect("read");
        if e.stream().starts_with("account-") {
            model.apply(&e).expect("apply");
        }
    }
    model.accounts
}

/// The child: runs the projection to the end, reporting each save.
#[test]
fn child_entry() {
    let Ok(dir) = std::env::var("ANNALS_PROJECTION_CHILD") else { return };
    let dir = Path::new(&dir);
    example::project(&dir.join("store"), &dir.join("balances.txt"), BATCH, true).expect("projection");
}

fn child(dir: &Path, stdout: Stdio) -> std::process::Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("ANNALS_PROJECTION_CHILD", dir)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

fn load(dir: &Path) -> Balances {
    match std::fs::read_to_string(dir.join("balances.txt")) {
        Ok(text) => Balances::decode(&text).expect("the model file is never torn"),
        Err(_) => Balances::default(),
    }
}

#[test]
fn a_killed_projection_resumes_and_counts_every_deposit_exactly_once() {
    if std::env::var_os("ANNALS_PROJECTION_CHILD").is_some() {
        return;
    }
    let mut rng = Rng::new(seed());
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store =
            annals::Options::new().durability(Durability::Buffered).open(dir.path().join("store")).expect("open");
        example::write_deposits(&store, DEPOSITS).expect("write");
        store.sync().expect("sync");
    }
    let mut kills = 0;
    let mut last_checkpoint = 0;
    for round in 0..KILLS {
        let saves_before_kill = 1 + rng.below(40);
        let mut c = child(dir.path(), Stdio::piped());
        let out = BufReader::new(c.stdout.take().expect("stdout"));
        let mut saves = 0;
        for line in out.lines() {
            let line = line.expect("child output");
            if line.starts_with("SAVED ") {
                saves += 1;
                if saves == saves_before_kill {
                    c.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
                    kills += 1;
                    break;
                }
            }
        }
        c.wait().expect("wait");
        let model = load(dir.path());
        assert!(model.checkpoint >= last_checkpoint, "round {round}: the checkpoint went back");
        last_checkpoint = model.checkpoint;
        assert!(
            model.accounts == expected_at(&dir.path().join("store"), model.checkpoint),
            "round {round}: the balances at checkpoint {} count some deposit twice or not at all",
            model.checkpoint
        );
    }
    assert!(kills > 0, "at least one child was killed mid-run");
    // The last run goes to the end.
    let status = child(dir.path(), Stdio::null()).wait().expect("last child");
    assert!(status.success());
    let model = load(dir.path());
    let head = annals::Store::open(dir.path().join("store")).expect("open").head().as_u64();
    assert_eq!(model.checkpoint, head);
    assert!(model.accounts == example::expected_balances(DEPOSITS), "every deposit counted exactly once");
}
