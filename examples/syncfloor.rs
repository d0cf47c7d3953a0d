//! The device's floor under the durable workloads: how long one `pwrite` plus one `fdatasync` takes here, for
//! the write sizes of W1 (one 240-byte frame) and W3 (100 frames, 24 KB), on a pre-zeroed file as annals'
//! segments are. No store is involved: whatever annals does, a `Sync` append that must be durable when it
//! returns costs at least this much, so W1 cannot pass `1 / floor(240 B)` appends per second and W3 cannot pass
//! `100 / floor(24 KB)` events per second.
//!
//! ```text
//! cargo run --release --example syncfloor -- [DIR] [ROUNDS]
//! ```
//!
//! `DIR` is where the scratch file goes (default: the system temp folder; use the disk you benchmark on);
//! `ROUNDS` is the number of timed writes per size (default 2000). Prints the median and p99 per size and the
//! ceilings they put on W1 and W3.
//!
//! Then it shows why segments are zero-filled before use: the same writes (a quarter of `ROUNDS`, at increasing
//! offsets, never over a written block) into a file prepared four ways. Pre-zeroed, as annals' segments are;
//! `fallocate`d and sparse (the blocks are allocated, or their allocation is made durable, at the sync: the file
//! system's journal is committed with it); and grown by each write (the same, plus the file's size).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Instant;

const FILE_BYTES: u64 = 64 << 20;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map_or_else(std::env::temp_dir, Into::into);
    let rounds: usize = match args.next() {
        Some(r) => r.parse().map_err(|_| std::io::Error::other(format!("ROUNDS must be a number, got {r:?}")))?,
        None => 2000,
    };
    if rounds == 0 {
        return Err(std::io::Error::other("ROUNDS must be at least 1"));
    }
    let path = dir.join(format!("annals-syncfloor-{}.tmp", std::process::id()));
    let result = measure(&path, rounds).and_then(|()| compare_preparations(&path, (rounds / 4).max(1)));
    let _ = std::fs::remove_file(&path);
    result
}

/// How a file is made ready for appends.
#[derive(Clone, Copy, Debug)]
enum Prepared {
    Zeroed,
    Fallocated,
    Sparse,
    Growing,
}

/// The same timed `pwrite` + `fdatasync` rounds into a fresh file prepared each way, at increasing offsets.
fn compare_preparations(path: &std::path::Path, rounds: usize) -> std::io::Result<()> {
    println!("the file prepared four ways, {rounds} rounds per size (median, p99):");
    for bytes in [240usize, 24_000] {
        let buf = vec![0x5au8; bytes];
        let len = (rounds * bytes) as u64;
        let mut line = format!("  {bytes:>6} bytes:");
        for how in [Prepared::Zeroed, Prepared::Fallocated, Prepared::Sparse, Prepared::Growing] {
            let _ = std::fs::remove_file(path);
            let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
            prepare(&file, how, len)?;
            let mut micros = Vec::with_capacity(rounds);
            for i in 0..rounds {
                let started = Instant::now();
                file.write_all_at(&buf, (i * bytes) as u64)?;
                file.sync_data()?;
                micros.push(started.elapsed().as_secs_f64() * 1e6);
            }
            micros.sort_by(f64::total_cmp);
            let p99 = micros[(micros.len() * 99 / 100).min(micros.len() - 1)];
            line += &format!("  {how:?} {:.1} / {p99:.1} us", micros[micros.len() / 2]);
        }
        println!("{line}");
    }
    Ok(())
}

fn prepare(file: &std::fs::File, how: Prepared, len: u64) -> std::io::Result<()> {
    match how {
        Prepared::Zeroed => {
            let zeros = vec![0u8; 1 << 20];
            let mut at = 0;
            while at < len {
                let n = (len - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
        }
        Prepared::Fallocated => fallocate(file, len)?,
        Prepared::Sparse => file.set_len(len)?,
        Prepared::Growing => {}
    }
    file.sync_all()
}

#[cfg(target_os = "linux")]
fn fallocate(file: &std::fs::File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for writing for the duration of the call; no memory is passed.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere there is no portable `fallocate`: the file is only sized (sparse).
#[cfg(not(target_os = "linux"))]
fn fallocate(file: &std::fs::File, len: u64) -> std::io::Result<()> {
    file.set_len(len)
}

fn measure(path: &std::path::Path, rounds: usize) -> std::io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    // Pre-zeroed and synced, as annals prepares a segment: later syncs then carry data only.
    let zeros = vec![0u8; 1 << 20];
    for at in (0..FILE_BYTES).step_by(zeros.len()) {
        file.write_all_at(&zeros, at)?;
    }
    file.sync_data()?;
    println!("pwrite + fdatasync on a pre-zeroed file in {}, {rounds} rounds per size", path.display());
    for (name, bytes, events) in [("W1", 240usize, 1u64), ("W3", 24_000, 100)] {
        let buf = vec![0x5au8; bytes];
        let mut micros = Vec::with_capacity(rounds);
        let mut at = 0u64;
        for _ in 0..rounds {
            if at + bytes as u64 > FILE_BYTES {
                at = 0;
            }
            let started = Instant::now();
            file.write_all_at(&buf, at)?;
            file.sync_data()?;
            micros.push(started.elapsed().as_secs_f64() * 1e6);
            at += bytes as u64;
        }
        micros.sort_by(f64::total_cmp);
        let median = micros[micros.len() / 2];
        let p99 = micros[(micros.len() * 99 / 100).min(micros.len() - 1)];
        println!(
            "{name}: {bytes} bytes: median {median:.1} us, p99 {p99:.1} us; ceiling {:.0} events/s",
            events as f64 * 1e6 / median
        );
    }
    Ok(())
}
