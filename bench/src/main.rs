//! `peers`: runs the workloads of BENCHMARKS.md against annals, SQLite and fjall in one process run and prints
//! a markdown table (or JSON) of medians, with the ratio of annals to the best peer.
//!
//! ```text
//! peers [--workloads W1,W3,...] [--scale F] [--runs N] [--dir PATH] [--peers annals,sqlite,fjall]
//!       [--no-w8-large] [--json] [--json-out FILE] [--seed N]
//! ```

mod peers;
mod workloads;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use peers::{Kind, Res};
use workloads::{Config, Figures, Measured, ReadSet};

const USAGE: &str = "usage: peers [--workloads W1,W2,...,W8] [--scale F] [--runs N] [--dir PATH]
             [--peers annals,sqlite,fjall] [--no-w8-large] [--json] [--json-out FILE] [--seed N]

  --workloads  which of W1..W8 to run (default: all of W1-W8)
  --scale      multiplies the event counts (default 1.0; 0.01 is a quick smoke run)
  --runs       repeat every workload N times with fresh stores, report medians (default 1)
  --dir        the folder the stores are made in, one fresh temporary folder each (default: $TMPDIR, or
               target/peers-data beside this package); all peers use the same file system
  --peers      which stores to run (default: all three)
  --no-w8-large  skip W8 at 10M events / 1M streams (it loads 10M events into every peer)
  --json       print JSON instead of the markdown table
  --json-out   also write the JSON to FILE";

/// One row of the table.
struct RowSpec {
    key: &'static str,
    name: &'static str,
    /// The headline figure the ratio is taken on.
    primary: &'static str,
    higher_is_better: bool,
}

const ROWS: &[RowSpec] = &[
    RowSpec { key: "W1", name: "durable-1", primary: "events_per_s", higher_is_better: true },
    RowSpec { key: "W2", name: "durable-16", primary: "events_per_s", higher_is_better: true },
    RowSpec { key: "W3", name: "durable-batch", primary: "events_per_s", higher_is_better: true },
    RowSpec { key: "W4", name: "buffered", primary: "events_per_s", higher_is_better: true },
    RowSpec { key: "W5", name: "command", primary: "commands_per_s", higher_is_better: true },
    RowSpec { key: "W6", name: "read-stream", primary: "events_per_s", higher_is_better: true },
    RowSpec { key: "W7", name: "scan-all", primary: "events_per_s", higher_is_better: true },
    RowSpec { key: "W8 clean", name: "open after clean close (W6 store)", primary: "ms", higher_is_better: false },
    RowSpec { key: "W8 crash", name: "open after crash (W6 store)", primary: "ms", higher_is_better: false },
    RowSpec { key: "W8 clean 10M", name: "open after clean close (10M/1M)", primary: "ms", higher_is_better: false },
    RowSpec { key: "W8 crash 10M", name: "open after crash (10M/1M)", primary: "ms", higher_is_better: false },
];

struct Args {
    workloads: Vec<u8>,
    scale: f64,
    runs: usize,
    dir: PathBuf,
    peers: Vec<Kind>,
    w8_large: bool,
    json: bool,
    json_out: Option<PathBuf>,
    seed: u64,
}

fn parse_args() -> Result<Args, String> {
    let default_dir = match std::env::var_os("TMPDIR") {
        Some(t) if !t.is_empty() => PathBuf::from(t).join("annals-peers"),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("peers-data"),
    };
    let mut a = Args {
        workloads: (1..=8).collect(),
        scale: 1.0,
        runs: 1,
        dir: default_dir,
        peers: Kind::ALL.to_vec(),
        w8_large: true,
        json: false,
        json_out: None,
        seed: 0x5eed,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        let mut value = || inline.clone().or_else(|| it.next()).ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--workloads" | "-w" => {
                a.workloads = value()?
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        let s = s.trim().trim_start_matches(['W', 'w']);
                        s.parse::<u8>().ok().filter(|n| (1..=8).contains(n)).ok_or(format!("unknown workload W{s}"))
                    })
                    .collect::<Result<_, _>>()?;
                a.workloads.sort_unstable();
                a.workloads.dedup();
            }
            "--scale" => {
                a.scale = value()?.parse().map_err(|e| format!("--scale: {e}"))?;
                if !(a.scale > 0.0 && a.scale.is_finite()) {
                    return Err("--scale must be a positive number".into());
                }
            }
            "--runs" => {
                a.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?;
                if a.runs == 0 {
                    return Err("--runs must be at least 1".into());
                }
            }
            "--dir" => a.dir = PathBuf::from(value()?),
            "--peers" => {
                a.peers = value()?
                    .split(',')
                    .map(|s| Kind::parse(s.trim()).ok_or(format!("unknown peer {s:?}")))
                    .collect::<Result<_, _>>()?;
            }
            "--seed" => a.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--no-w8-large" => a.w8_large = false,
            "--json" => a.json = true,
            "--json-out" => a.json_out = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(a)
}

/// What one (row, peer) cell collected over the runs.
#[derive(Default)]
struct Cell {
    runs: Vec<Figures>,
    error: Option<String>,
}

type Results = BTreeMap<&'static str, BTreeMap<&'static str, Cell>>;

fn record(results: &mut Results, kind: Kind, outcome: Res<Vec<Measured>>, rows: &[&'static str]) {
    match outcome {
        Ok(ms) => {
            for m in ms {
                eprintln!("    {:<13} {:<7} {}", m.row, kind.name(), format_cell(m.row, &m.figures));
                results.entry(m.row).or_default().entry(kind.key()).or_default().runs.push(m.figures);
            }
        }
        Err(e) => {
            eprintln!("    {:<13} {:<7} ERROR: {e}", rows.join("/"), kind.name());
            for r in rows {
                results.entry(r).or_default().entry(kind.key()).or_default().error = Some(e.to_string());
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median of every figure of a cell over its runs.
fn medians(cell: &Cell) -> Option<Figures> {
    let first = cell.runs.first()?;
    Some(
        first
            .iter()
            .map(|(name, _)| {
                let vals = cell.runs.iter().filter_map(|f| f.iter().find(|(n, _)| n == name).map(|(_, v)| *v));
                (*name, median(vals.collect()))
            })
            .collect(),
    )
}

fn get(f: &Figures, name: &str) -> f64 {
    f.iter().find(|(n, _)| *n == name).map_or(f64::NAN, |(_, v)| *v)
}

/// 1234567.8 -> "1,234,568".
fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// A latency or time: one decimal below 100, none above.
fn short(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        thousands(v)
    }
}

fn format_cell(row: &str, f: &Figures) -> String {
    let g = |n| get(f, n);
    match row {
        "W1" => format!(
            "{} ev/s; p50/p99/p999 {}/{}/{} us; first append {} ms",
            thousands(g("events_per_s")),
            short(g("p50_us")),
            short(g("p99_us")),
            short(g("p999_us")),
            short(g("first_append_ms"))
        ),
        "W2" => format!("{} ev/s; p99 {} us", thousands(g("events_per_s")), short(g("p99_us"))),
        "W3" => format!(
            "{} ev/s ({} without the first append, which took {} ms)",
            thousands(g("events_per_s")),
            thousands(g("events_per_s_after_first")),
            short(g("first_append_ms"))
        ),
        "W4" => format!(
            "{} ev/s; {} MB/s; {} MB on disk",
            thousands(g("events_per_s")),
            thousands(g("payload_mb_per_s")),
            thousands(g("disk_mb"))
        ),
        "W5" => format!(
            "{} cmd/s; {} conflicts; p99 {} us",
            thousands(g("commands_per_s")),
            thousands(g("conflicts")),
            short(g("p99_us"))
        ),
        "W6" => format!("{} ev/s; p99 {} us/stream", thousands(g("events_per_s")), short(g("p99_us"))),
        "W7" => format!("{} ev/s; {:.2} GB/s", thousands(g("events_per_s")), g("payload_gb_per_s")),
        _ => format!("{} ms", short(g("ms"))),
    }
}

/// annals' headline figure over the best peer's.
fn ratio(spec: &RowSpec, cells: &BTreeMap<&'static str, Figures>) -> Option<f64> {
    let annals = get(cells.get(Kind::Annals.key())?, spec.primary);
    let peers = cells.iter().filter(|(k, _)| **k != Kind::Annals.key()).map(|(_, f)| get(f, spec.primary));
    let best = if spec.higher_is_better { peers.fold(f64::NAN, f64::max) } else { peers.fold(f64::NAN, f64::min) };
    (annals.is_finite() && best.is_finite() && best > 0.0).then(|| annals / best)
}

fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The annals commit the run measured, with "+dirty" if its sources differ from that commit (`ANNALS_REVISION`
/// overrides, for a run built from an exported commit).
fn annals_revision() -> String {
    if let Some(r) = std::env::var_os("ANNALS_REVISION") {
        return r.to_string_lossy().into_owned();
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let rev = shell("git", &["-C", root, "rev-parse", "--short=12", "HEAD"]);
    if rev.is_empty() {
        return "unknown".into();
    }
    let dirty = shell("git", &["-C", root, "status", "--porcelain", "--", "src", "Cargo.toml"]);
    if dirty.is_empty() {
        rev
    } else {
        format!("{rev}+dirty")
    }
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join("/")
}

struct Machine {
    cpus: usize,
    cpu_model: String,
    memory: String,
    kernel: String,
    fs: String,
}

fn machine(dir: &std::path::Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, v)| v.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or("unknown".into(), |kb| format!("{:.1} GiB", kb / (1024.0 * 1024.0)));
    let df = shell("df", &["-T", &dir.display().to_string()]);
    let fs = df
        .lines()
        .nth(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} on {} ({})", f.get(1).unwrap_or(&"?"), f.first().unwrap_or(&"?"), f.last().unwrap_or(&"?"))
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        memory,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        fs,
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("cannot create {}: {e}", args.dir.display());
        std::process::exit(1);
    }
    let cfg = Config { scale: args.scale, base: args.dir.clone(), w8_large: args.w8_large, seed: args.seed };
    let date = shell("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    let command: Vec<String> = std::env::args().collect();
    let m = machine(&args.dir);
    let revision = annals_revision();
    let load_before = loadavg();

    let mut results: Results = BTreeMap::new();
    let has = |w: u8| args.workloads.contains(&w);
    for run in 1..=args.runs {
        // Rotate the order of the peers from run to run, so no store always runs first (or last).
        let mut order = args.peers.clone();
        let n = order.len();
        order.rotate_left((run - 1) % n);
        for w in 1..=5u8 {
            if !has(w) {
                continue;
            }
            eprintln!("[run {run}/{}] W{w}", args.runs);
            for &kind in &order {
                let outcome = match w {
                    1 => workloads::w1(kind, &cfg),
                    2 => workloads::w2(kind, &cfg),
                    3 => workloads::w3(kind, &cfg),
                    4 => workloads::w4(kind, &cfg),
                    _ => workloads::w5(kind, &cfg),
                };
                record(&mut results, kind, outcome, &[ROWS[w as usize - 1].key]);
            }
        }
        let want = ReadSet { w6: has(6), w7: has(7), w8: has(8) };
        if want.w6 || want.w7 || want.w8 {
            eprintln!("[run {run}/{}] read store (W6/W7/W8)", args.runs);
            let mut rows = Vec::new();
            for (on, key) in [(want.w6, "W6"), (want.w7, "W7"), (want.w8, "W8 clean"), (want.w8, "W8 crash")] {
                if on {
                    rows.push(key);
                }
            }
            for &kind in &order {
                record(&mut results, kind, workloads::read_store(kind, &cfg, want), &rows);
            }
        }
        if want.w8 && cfg.w8_large {
            eprintln!("[run {run}/{}] W8 at 10M events / 1M streams", args.runs);
            for &kind in &order {
                record(&mut results, kind, workloads::open_large(kind, &cfg), &["W8 clean 10M", "W8 crash 10M"]);
            }
        }
    }

    let load_after = loadavg();

    // Medians, table and JSON.
    let mut md = String::new();
    md.push_str(&format!(
        "annals peer comparison, {date}\n\nannals {revision}; SQLite {} (rusqlite, bundled); fjall 3.x (exact versions in bench/Cargo.lock)\n\
         machine: {} CPUs ({}), {} RAM, Linux {}; stores in {} on {}\n\
         load average (1/5/15 min) {load_before} at the start, {load_after} at the end (the machine is shared)\n\
         command: `{}`\nscale {}, {} run(s) (medians)\n\n",
        rusqlite::version(),
        m.cpus,
        m.cpu_model,
        m.memory,
        m.kernel,
        args.dir.display(),
        m.fs,
        command.join(" "),
        args.scale,
        args.runs
    ));
    md.push_str("| workload |");
    for k in &args.peers {
        md.push_str(&format!(" {} |", k.name()));
    }
    md.push_str(" ratio annals / best peer |\n|---|");
    for _ in &args.peers {
        md.push_str("---|");
    }
    md.push_str("---|\n");
    let mut json_rows = Vec::new();
    for spec in ROWS {
        let Some(row) = results.get(spec.key) else { continue };
        let cells: BTreeMap<&'static str, Figures> = row
            .iter()
            .filter_map(|(k, c)| if c.error.is_some() { None } else { medians(c).map(|f| (*k, f)) })
            .collect();
        md.push_str(&format!("| {} {} |", spec.key, spec.name));
        let mut jpeers = serde_json::Map::new();
        for k in &args.peers {
            let cell = row.get(k.key());
            let text = match (cell.and_then(|c| c.error.as_ref()), cells.get(k.key())) {
                (Some(e), _) => {
                    jpeers.insert(k.key().into(), serde_json::json!({ "error": e }));
                    format!("error: {}", e.replace('|', "/"))
                }
                (None, Some(f)) => {
                    let as_map = |f: &Figures| -> serde_json::Map<String, serde_json::Value> {
                        f.iter().map(|(n, v)| ((*n).to_owned(), serde_json::json!(v))).collect()
                    };
                    let mut obj = as_map(f);
                    let runs: Vec<serde_json::Value> = cell
                        .map_or(&[][..], |c| &c.runs[..])
                        .iter()
                        .map(|r| serde_json::Value::Object(as_map(r)))
                        .collect();
                    obj.insert("runs".into(), serde_json::Value::Array(runs));
                    jpeers.insert(k.key().into(), serde_json::Value::Object(obj));
                    format_cell(spec.key, f)
                }
                (None, None) => "-".into(),
            };
            md.push_str(&format!(" {text} |"));
        }
        let r = ratio(spec, &cells);
        let rtext = match r {
            Some(r) if spec.higher_is_better => format!("{r:.2}x"),
            Some(r) => format!("{r:.2}x (time: < 1 is faster)"),
            None => "-".into(),
        };
        md.push_str(&format!(" {rtext} |\n"));
        json_rows.push(serde_json::json!({
            "row": spec.key,
            "name": spec.name,
            "primary": spec.primary,
            "higher_is_better": spec.higher_is_better,
            "peers": jpeers,
            "ratio_annals_over_best_peer": r,
        }));
    }
    md.push_str(
        "\nev/s: events per second. W4 MB/s counts payload bytes (128 per event); W7 GB/s likewise. Latencies \
         are per append (W1, W2), per command including retries (W5), per stream read (W6). W8 is the time to \
         open the store until it can serve the next append (warm page cache).\n",
    );
    let json = serde_json::json!({
        "date": date,
        "annals_revision": revision,
        "loadavg_start": load_before,
        "loadavg_end": load_after,
        "sqlite_version": rusqlite::version(),
        "command": command,
        "machine": {
            "cpus": m.cpus, "cpu_model": m.cpu_model, "memory": m.memory, "kernel": m.kernel, "fs": m.fs,
        },
        "dir": args.dir.display().to_string(),
        "scale": args.scale,
        "runs": args.runs,
        "rows": json_rows,
    });
    let pretty = serde_json::to_string_pretty(&json).expect("JSON of plain values");
    if let Some(p) = &args.json_out {
        if let Err(e) = std::fs::write(p, format!("{pretty}\n")) {
            eprintln!("cannot write {}: {e}", p.display());
        }
    }
    if args.json {
        println!("{pretty}");
    } else {
        print!("{md}");
    }
    let failed = results.values().flat_map(|r| r.values()).any(|c| c.error.is_some());
    if failed {
        std::process::exit(1);
    }
}
