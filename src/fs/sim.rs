//! A simulated file system for the reliability tests: in memory, deterministic, fault-injecting, and able to
//! show what a power loss or a crash of the process would leave on disk at any moment.
//!
//! It tracks, per file, the *durable* image (as of the last successful `sync_data`) and the *current* image
//! (what the page cache holds), and per folder the durable entries and the changes (create, rename, remove)
//! still pending, which become durable at `sync_dir` of their folder. [`SimFs::crash`] builds the file system a
//! restart would find: unsynced sectors (512 bytes) dropped, kept at random or torn, unsynced folder changes
//! dropped or kept at random; [`SimFs::crash_after`] does that right after the k-th operation and fails every
//! later one, so a workload stops where the power went. [`Fault`]s fail the k-th operation of a kind with a
//! chosen `errno`, once or from then on. Every random choice comes from a seed.
//!
//! File contents live in anonymous in-memory files (`O_TMPFILE` on `/dev/shm`), so `map` and `map_mut` are two
//! real shared mappings of the same pages, exactly as for a segment on disk: stores through one are seen
//! through the other and by `read_exact_at` at once, with no aliasing between Rust references and no `unsafe`
//! here (the mappings are made by `map_file`). The simulator compares the current bytes with the
//! durable ones sector by sector when it needs to know what is unsynced. A file's length is fixed once it is
//! mapped (the mmap contract); the simulator refuses to change it.
//!
//! Not modelled: metadata other than names and lengths, hard links, permissions. Deterministic as long as the
//! workload's operations come in a deterministic order (background threads may interleave differently).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{FileHandle, FileSystem, LockGuard, Mapping, MappingMut, OpenMode};

/// The unit in which unsynced data reaches the disk at a power loss.
pub const SECTOR_BYTES: usize = 512;

// ---------------------------------------------------------------------------------------------------------
// Randomness

/// splitmix64: tiny, fast, and good enough to pick crash states; replays exactly from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.next_u64() % n
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

// ---------------------------------------------------------------------------------------------------------
// Operations, faults, crash modes

/// The kinds of operations, for counting and for fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `open` with [`OpenMode::CreateNew`].
    Create,
    /// `open` of an existing file.
    Open,
    /// `read_exact_at`.
    Read,
    /// `write_all_at`.
    Write,
    /// `sync_data`.
    SyncData,
    /// `sync_dir`.
    SyncDir,
    /// `rename`.
    Rename,
    /// `remove_file`.
    Remove,
    /// `list_dir`.
    ListDir,
    /// `map` and `map_mut`.
    Map,
    /// `len_bytes`.
    Len,
    /// `try_lock`.
    Lock,
    /// `create_dir_all`.
    CreateDir,
}

/// The error an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// An I/O error of the device.
    Eio,
    /// No space left on the device.
    Enospc,
    /// A read-only file system.
    Erofs,
    /// Permission denied.
    Eacces,
}

impl Errno {
    pub fn raw(self) -> i32 {
        match self {
            Errno::Eio => 5,
            Errno::Eacces => 13,
            Errno::Enospc => 28,
            Errno::Erofs => 30,
        }
    }

    pub fn error(self) -> io::Error {
        io::Error::from_raw_os_error(self.raw())
    }
}

/// Fails an operation: the one after `after` more matching operations succeed, and with `persistent` every
/// matching one from then on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub op: Op,
    pub after: u64,
    pub errno: Errno,
    pub persistent: bool,
    /// Only operations on paths containing this string match (`None`: all).
    pub path_contains: Option<String>,
}

impl Fault {
    /// Fails the matching operation after `after` successful ones, once.
    pub fn once(op: Op, after: u64, errno: Errno) -> Fault {
        Fault { op, after, errno, persistent: false, path_contains: None }
    }

    /// Fails the matching operations from the one after `after` successful ones on.
    pub fn persistent(op: Op, after: u64, errno: Errno) -> Fault {
        Fault { op, after, errno, persistent: true, path_contains: None }
    }

    /// Restricts the fault to paths containing `part`.
    pub fn on_paths(mut self, part: &str) -> Fault {
        self.path_contains = Some(part.to_owned());
        self
    }
}

/// What happens at a power loss to data written since the last `sync_data` of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCrash {
    /// Everything reaches the disk: a crash of the process, where the page cache survives.
    KeepAll,
    /// Nothing unsynced reaches the disk.
    DropAll,
    /// Each unsynced sector independently reaches the disk or not.
    KeepSome,
    /// As `KeepSome`, and one unsynced sector is torn: the bytes being changed end up zero, garbage, or new up
    /// to a point and old after it; bytes the write does not change keep their value (powersafe overwrite).
    TearOne,
}

/// What happens at a power loss to folder changes made since the last `sync_dir` of their folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirCrash {
    /// Every change survives (a crash of the process).
    KeepAll,
    /// No unsynced change survives.
    DropAll,
    /// Each unsynced change independently survives or not (applied in their original order; a change that no
    /// longer applies, such as renaming a file whose creation was lost, is skipped).
    KeepSome,
}

/// How a crash treats unsynced data and unsynced folder changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashMode {
    pub data: DataCrash,
    pub dirs: DirCrash,
}

impl CrashMode {
    /// A crash of the process (`kill -9`): the OS keeps everything that was written.
    pub const PROCESS: CrashMode = CrashMode { data: DataCrash::KeepAll, dirs: DirCrash::KeepAll };
    /// A power loss that loses everything unsynced.
    pub const POWER_LOSS: CrashMode = CrashMode { data: DataCrash::DropAll, dirs: DirCrash::DropAll };

    /// Every combination, for sweeps.
    pub const ALL: [CrashMode; 12] = {
        const D: [DataCrash; 4] = [DataCrash::KeepAll, DataCrash::DropAll, DataCrash::KeepSome, DataCrash::TearOne];
        const R: [DirCrash; 3] = [DirCrash::KeepAll, DirCrash::DropAll, DirCrash::KeepSome];
        let mut all = [CrashMode::PROCESS; 12];
        let mut i = 0;
        while i < 12 {
            all[i] = CrashMode { data: D[i / 3], dirs: R[i % 3] };
            i += 1;
        }
        all
    };

    /// A random mode, most often a power loss that keeps or tears some unsynced sectors.
    pub fn random(rng: &mut Rng) -> CrashMode {
        let data = match rng.below(8) {
            0 => DataCrash::KeepAll,
            1 | 2 => DataCrash::DropAll,
            3..=5 => DataCrash::KeepSome,
            _ => DataCrash::TearOne,
        };
        let dirs = match (data, rng.below(4)) {
            (DataCrash::KeepAll, _) => DirCrash::KeepAll,
            (_, 0) => DirCrash::KeepAll,
            (_, 1) => DirCrash::DropAll,
            _ => DirCrash::KeepSome,
        };
        CrashMode { data, dirs }
    }
}

/// What a failed `sync_data` does to the dirty data of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncFailure {
    /// The data stays dirty: a later successful sync may still make it durable.
    #[default]
    KeepDirty,
    /// Linux's behaviour (the fsyncgate study): the dirty pages are marked clean and their data never reaches
    /// the disk, although reads still return it; a later sync succeeds without writing them.
    DropPages,
}

// ---------------------------------------------------------------------------------------------------------
// State

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

/// A change to a folder, pending until its folder is synced.
#[derive(Debug, Clone)]
enum DirOp {
    Create {
        path: PathBuf,
        node: Node,
    },
    /// Renames the file `node` (which `from` named when it was renamed).
    Rename {
        from: PathBuf,
        to: PathBuf,
        node: Node,
    },
    /// Removes the file `node` (which `path` named when it was removed).
    Remove {
        path: PathBuf,
        node: Node,
    },
}

impl DirOp {
    /// The folders whose sync makes this change durable.
    fn touches(&self, dir: &Path) -> bool {
        match self {
            DirOp::Create { path, .. } | DirOp::Remove { path, .. } => path.parent() == Some(dir),
            DirOp::Rename { from, to, .. } => from.parent() == Some(dir) || to.parent() == Some(dir),
        }
    }

    /// Applies the change to a namespace; false (and no change) if it does not apply. Renames and removals act
    /// on the file they acted on, not on whatever holds the name now: when a crash keeps a rename but loses
    /// an earlier change to the same name, the rename must not move another file.
    fn apply(&self, names: &mut BTreeMap<PathBuf, Node>) -> bool {
        match self {
            // A change may become durable before its folder's own entry does; files left without a durable
            // folder are pruned when a crash image is made.
            DirOp::Create { path, node } => {
                names.insert(path.clone(), *node);
                true
            }
            DirOp::Rename { from, to, node } => {
                if names.get(from) != Some(node) || names.get(to) == Some(&Node::Dir) {
                    return false;
                }
                names.remove(from);
                names.insert(to.clone(), *node);
                true
            }
            DirOp::Remove { path, node } => {
                if names.get(path) != Some(node) {
                    return false;
                }
                names.remove(path);
                true
            }
        }
    }
}

/// One file's data.
#[derive(Debug)]
struct Inode {
    /// The current bytes, in an anonymous in-memory file.
    memory: File,
    /// The current length.
    len: u64,
    /// The bytes as of the last successful `sync_data`.
    durable: Vec<u8>,
    /// Sectors whose dirty data a failed sync dropped ([`SyncFailure::DropPages`]), with the bytes dropped:
    /// while a sector still holds them, it is clean but not durable.
    lost: BTreeMap<usize, Vec<u8>>,
    /// Mapped at least once: its length may not change any more.
    mapped: bool,
}

impl Inode {
    fn new(bytes: &[u8]) -> io::Result<Inode> {
        let memory = memory_file()?;
        memory.write_all_at(bytes, 0)?;
        Ok(Inode { memory, len: bytes.len() as u64, durable: bytes.to_vec(), lost: BTreeMap::new(), mapped: false })
    }

    fn current(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; self.len as usize];
        self.memory.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    fn frozen(&self) -> io::Result<FrozenFile> {
        Ok(FrozenFile { current: self.current()?, durable: self.durable.clone(), lost: self.lost.clone() })
    }
}

/// Whether sector `s` of `current` must still reach the disk: it differs from the durable bytes and was not
/// dropped by a failed sync.
fn is_dirty(current: &[u8], durable: &[u8], lost: &BTreeMap<usize, Vec<u8>>, s: usize) -> bool {
    let (start, end) = (s * SECTOR_BYTES, (s + 1) * SECTOR_BYTES);
    let same = if current.len() >= end && durable.len() >= end {
        current[start..end] == durable[start..end]
    } else {
        sector(current, s) == sector(durable, s)
    };
    !same && lost.get(&s).is_none_or(|l| l[..] != sector(current, s)[..])
}

/// The dirty sectors of a file, in order.
fn dirty_sectors(current: &[u8], durable: &[u8], lost: &BTreeMap<usize, Vec<u8>>) -> Vec<usize> {
    if current == durable {
        return Vec::new();
    }
    (0..sectors(current.len().max(durable.len()))).filter(|&s| is_dirty(current, durable, lost, s)).collect()
}

/// Sector `s` of `bytes`, padded with zeros past the end.
fn sector(bytes: &[u8], s: usize) -> [u8; SECTOR_BYTES] {
    let mut out = [0u8; SECTOR_BYTES];
    let start = (s * SECTOR_BYTES).min(bytes.len());
    let end = ((s + 1) * SECTOR_BYTES).min(bytes.len());
    out[..end - start].copy_from_slice(&bytes[start..end]);
    out
}

fn sectors(len: usize) -> usize {
    len.div_ceil(SECTOR_BYTES)
}

/// An anonymous file in memory: gone when closed, nothing left behind if the process dies.
fn memory_file() -> io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut last = None;
        for dir in [PathBuf::from("/dev/shm"), std::env::temp_dir()] {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .mode(0o600)
                .custom_flags(libc::O_TMPFILE)
                .open(&dir)
            {
                Ok(f) => return Ok(f),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no folder for anonymous files")))
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("annals-sim-{}-{n}", std::process::id()));
        let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(f)
    }
}

#[derive(Debug)]
struct ArmedCrash {
    after_ops: u64,
    mode: CrashMode,
    seed: u64,
}

#[derive(Debug)]
struct ActiveFault {
    fault: Fault,
    /// Matching operations seen since the fault was set.
    seen: u64,
    spent: bool,
}

#[derive(Debug)]
struct Inner {
    /// The current namespace; always holds the root folder.
    names: BTreeMap<PathBuf, Node>,
    /// The durable namespace.
    durable_names: BTreeMap<PathBuf, Node>,
    /// Folder changes not yet durable, in order.
    pending: Vec<DirOp>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    locks: HashSet<PathBuf>,
    ops: u64,
    ops_by_kind: BTreeMap<Op, u64>,
    faults: Vec<ActiveFault>,
    /// Every failure injected so far: the operation, its path, the error.
    injected: Vec<(Op, PathBuf, Errno)>,
    sync_failure: SyncFailure,
    armed: Option<ArmedCrash>,
    crashed: Option<SimFs>,
    /// Operations before and after which to freeze the state, and the states frozen.
    freeze_before: std::collections::BTreeSet<u64>,
    freeze_after: std::collections::BTreeSet<u64>,
    frozen: Vec<(CrashPoint, Frozen)>,
    /// After an armed crash: every operation fails.
    halted: bool,
    /// Which boot of the simulated machine this is: a crash image of a power loss starts the next one.
    boot: u64,
}

fn root() -> PathBuf {
    PathBuf::from("/")
}

/// Paths are taken as absolute (a relative path is put under the root).
fn norm(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root().join(path)
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("sim: no such file or folder: {}", path.display()))
}

impl Inner {
    fn new() -> Inner {
        let mut names = BTreeMap::new();
        names.insert(root(), Node::Dir);
        Inner {
            durable_names: names.clone(),
            names,
            pending: Vec::new(),
            inodes: HashMap::new(),
            next_inode: 1,
            locks: HashSet::new(),
            ops: 0,
            ops_by_kind: BTreeMap::new(),
            faults: Vec::new(),
            injected: Vec::new(),
            sync_failure: SyncFailure::default(),
            armed: None,
            crashed: None,
            freeze_before: Default::default(),
            freeze_after: Default::default(),
            frozen: Vec::new(),
            halted: false,
            boot: 1,
        }
    }

    /// Counts an operation and decides whether it fails before doing anything.
    fn begin(&mut self, op: Op, path: &Path) -> io::Result<()> {
        if self.freeze_before.remove(&(self.ops + 1)) && !self.halted {
            let frozen = self.freeze().unwrap_or_else(|e| panic!("sim: freezing the state failed: {e}"));
            self.frozen.push((CrashPoint { ops_done: self.ops, before_next: true }, frozen));
        }
        self.ops += 1;
        *self.ops_by_kind.entry(op).or_insert(0) += 1;
        if self.halted {
            return Err(io::Error::other("sim: the machine lost power"));
        }
        let path = path.to_string_lossy();
        let mut failure = None;
        for f in &mut self.faults {
            if f.spent || f.fault.op != op || !f.fault.path_contains.as_ref().is_none_or(|p| path.contains(p.as_str()))
            {
                continue;
            }
            f.seen += 1;
            if f.seen > f.fault.after {
                f.spent = !f.fault.persistent;
                failure.get_or_insert(f.fault.errno);
            }
        }
        match failure {
            Some(errno) => {
                self.injected.push((op, PathBuf::from(path.as_ref()), errno));
                Err(errno.error())
            }
            None => Ok(()),
        }
    }

    /// After an operation: freezes the state if asked to at this operation, and takes the armed crash image
    /// if this was its operation.
    fn end(&mut self) {
        if self.freeze_after.remove(&self.ops) && !self.halted {
            let frozen = self.freeze().unwrap_or_else(|e| panic!("sim: freezing the state failed: {e}"));
            self.frozen.push((CrashPoint { ops_done: self.ops, before_next: false }, frozen));
        }
        let due = self.armed.as_ref().is_some_and(|a| self.ops >= a.after_ops);
        if due && !self.halted {
            let a = self.armed.take().expect("checked above");
            let image = self.freeze().and_then(|f| f.try_crash(a.mode, a.seed));
            self.crashed = Some(image.unwrap_or_else(|e| panic!("sim: building a crash image failed: {e}")));
            self.halted = true;
        }
    }

    fn file(&self, path: &Path) -> io::Result<u64> {
        match self.names.get(path) {
            Some(Node::File(id)) => Ok(*id),
            Some(Node::Dir) => Err(io::Error::new(io::ErrorKind::IsADirectory, format!("sim: {}", path.display()))),
            None => Err(not_found(path)),
        }
    }

    fn require_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent().map(|p| self.names.get(p)) {
            Some(Some(Node::Dir)) => Ok(()),
            _ => Err(not_found(path.parent().unwrap_or(path))),
        }
    }

    fn create_file(&mut self, path: &Path) -> io::Result<u64> {
        self.require_parent(path)?;
        if self.names.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("sim: {} exists", path.display())));
        }
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, Inode::new(&[])?);
        self.names.insert(path.to_path_buf(), Node::File(id));
        self.pending.push(DirOp::Create { path: path.to_path_buf(), node: Node::File(id) });
        Ok(id)
    }

    fn inode(&self, id: u64) -> &Inode {
        self.inodes.get(&id).expect("open files keep their inode")
    }

    fn inode_mut(&mut self, id: u64) -> &mut Inode {
        self.inodes.get_mut(&id).expect("open files keep their inode")
    }

    fn write(&mut self, id: u64, buf: &[u8], offset: u64) -> io::Result<()> {
        let inode = self.inode_mut(id);
        let end = offset + buf.len() as u64;
        if end > inode.len && inode.mapped {
            return Err(io::Error::other("sim: a mapped file cannot grow (mmap contract)"));
        }
        inode.memory.write_all_at(buf, offset)?;
        inode.len = inode.len.max(end);
        if !inode.lost.is_empty() && !buf.is_empty() {
            // Writing dirties the pages again: what a failed sync dropped can be made durable once more.
            let (first, last) = (offset as usize / SECTOR_BYTES, (end as usize - 1) / SECTOR_BYTES);
            inode.lost.retain(|&s, _| s < first || s > last);
        }
        Ok(())
    }

    fn sync_data(&mut self, id: u64, fail: bool) -> io::Result<()> {
        let drop_pages = self.sync_failure == SyncFailure::DropPages;
        let inode = self.inode_mut(id);
        let current = inode.current()?;
        let dirty = dirty_sectors(&current, &inode.durable, &inode.lost);
        if fail {
            if drop_pages {
                for s in dirty {
                    inode.lost.insert(s, sector(&current, s).to_vec());
                }
            }
            return Ok(());
        }
        if inode.lost.is_empty() {
            inode.durable = current;
            return Ok(());
        }
        // Sectors a failed sync dropped stay as they were on disk.
        let mut durable = vec![0u8; current.len()];
        for s in 0..sectors(current.len()) {
            let src = if dirty.binary_search(&s).is_ok() { &current } else { &inode.durable };
            let (start, end) = (s * SECTOR_BYTES, ((s + 1) * SECTOR_BYTES).min(current.len()));
            durable[start..end].copy_from_slice(&sector(src, s)[..end - start]);
        }
        inode.durable = durable;
        inode.lost.retain(|&s, l| dirty.binary_search(&s).is_err() && sector(&current, s)[..] == l[..]);
        Ok(())
    }

    fn sync_dir(&mut self, dir: &Path) {
        let (now, later): (Vec<DirOp>, Vec<DirOp>) = self.pending.drain(..).partition(|op| op.touches(dir));
        self.pending = later;
        for op in now {
            op.apply(&mut self.durable_names);
        }
    }

    /// The state as of now, from which any crash image can be made later.
    fn freeze(&self) -> io::Result<Frozen> {
        let mut files = HashMap::new();
        let ids = self.durable_names.values().chain(self.pending.iter().filter_map(|op| match op {
            DirOp::Create { node, .. } => Some(node),
            _ => None,
        }));
        for node in ids {
            if let Node::File(id) = node {
                if !files.contains_key(id) {
                    files.insert(*id, self.inode(*id).frozen()?);
                }
            }
        }
        Ok(Frozen { durable_names: self.durable_names.clone(), pending: self.pending.clone(), files, boot: self.boot })
    }
}

/// When a state was frozen: after `ops_done` operations, right after the last of them or (`before_next`) right
/// before the next one, with the stores into mappings made in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPoint {
    pub ops_done: u64,
    pub before_next: bool,
}

/// One file's state, frozen.
#[derive(Debug, Clone)]
struct FrozenFile {
    current: Vec<u8>,
    durable: Vec<u8>,
    lost: BTreeMap<usize, Vec<u8>>,
}

/// The state of a [`SimFs`] at one moment (the durable and current bytes of every file that can survive a
/// crash, the durable names and the pending folder changes): any crash image of that moment can be made from
/// it, later and as often as needed.
#[derive(Debug, Clone)]
pub struct Frozen {
    durable_names: BTreeMap<PathBuf, Node>,
    pending: Vec<DirOp>,
    files: HashMap<u64, FrozenFile>,
    boot: u64,
}

impl Frozen {
    /// The file system a restart after a crash at the frozen moment finds, with everything in it durable.
    pub fn crash(&self, mode: CrashMode, seed: u64) -> SimFs {
        self.try_crash(mode, seed).unwrap_or_else(|e| panic!("sim: building a crash image failed: {e}"))
    }

    fn try_crash(&self, mode: CrashMode, seed: u64) -> io::Result<SimFs> {
        let mut rng = Rng::new(seed);
        // The namespace: the durable one plus the pending changes that survive, then without orphans.
        let mut names = self.durable_names.clone();
        for op in &self.pending {
            let keep = match mode.dirs {
                DirCrash::KeepAll => true,
                DirCrash::DropAll => false,
                DirCrash::KeepSome => rng.chance(1, 2),
            };
            if keep {
                op.apply(&mut names);
            }
        }
        let mut kept: BTreeMap<PathBuf, Node> = BTreeMap::new();
        for (path, node) in names {
            let parent_ok = path.parent().is_none_or(|p| kept.get(p) == Some(&Node::Dir));
            if parent_ok {
                kept.insert(path, node);
            }
        }
        // The data of every surviving file.
        let files: Vec<(&PathBuf, &FrozenFile)> = kept
            .iter()
            .filter_map(|(p, n)| match n {
                Node::File(id) => Some((p, self.files.get(id).expect("frozen with its file"))),
                Node::Dir => None,
            })
            .collect();
        let dirty: Vec<Vec<usize>> =
            files.iter().map(|(_, f)| dirty_sectors(&f.current, &f.durable, &f.lost)).collect();
        let all_dirty: Vec<(usize, usize)> =
            dirty.iter().enumerate().flat_map(|(i, d)| d.iter().map(move |&s| (i, s))).collect();
        let torn = match mode.data {
            DataCrash::TearOne if !all_dirty.is_empty() => Some(all_dirty[rng.below(all_dirty.len() as u64) as usize]),
            _ => None,
        };
        let out = SimFs::new();
        {
            let mut o = out.lock();
            for (i, (path, f)) in files.iter().enumerate() {
                let (current, durable) = (&f.current, &f.durable);
                let len = match mode.data {
                    _ if current.len() == durable.len() => current.len(),
                    DataCrash::KeepAll => current.len(),
                    DataCrash::DropAll => durable.len(),
                    DataCrash::KeepSome | DataCrash::TearOne => {
                        if rng.chance(1, 2) {
                            current.len()
                        } else {
                            durable.len()
                        }
                    }
                };
                // A process crash keeps what the page cache shows, dropped pages included.
                let mut bytes = if mode.data == DataCrash::KeepAll { current.clone() } else { durable.clone() };
                bytes.resize(len, 0);
                if mode.data != DataCrash::KeepAll {
                    for &s in &dirty[i] {
                        let (start, end) = (s * SECTOR_BYTES, ((s + 1) * SECTOR_BYTES).min(len));
                        if start >= len {
                            break;
                        }
                        let chosen = if torn == Some((i, s)) {
                            tear(&sector(durable, s), &sector(current, s), &mut rng)
                        } else if mode.data != DataCrash::DropAll && rng.chance(1, 2) {
                            sector(current, s)
                        } else {
                            sector(durable, s)
                        };
                        bytes[start..end].copy_from_slice(&chosen[..end - start]);
                    }
                }
                let new_id = o.next_inode;
                o.next_inode += 1;
                o.inodes.insert(new_id, Inode::new(&bytes)?);
                o.names.insert((*path).clone(), Node::File(new_id));
            }
            for (path, node) in &kept {
                if *node == Node::Dir {
                    o.names.insert(path.clone(), Node::Dir);
                }
            }
            o.durable_names = o.names.clone();
            // Only a crash of the process keeps the machine running: anything else is a new boot.
            o.boot = if mode == CrashMode::PROCESS { self.boot } else { self.boot + 1 };
        }
        Ok(out)
    }
}

/// A torn sector: the bytes being changed end up zero, garbage, or new up to a point and old after it. Bytes
/// the write does not change keep their value ("powersafe overwrite", as SQLite assumes of disks): otherwise no
/// durable byte that shares a sector with a later write could be trusted.
fn tear(old: &[u8; SECTOR_BYTES], new: &[u8; SECTOR_BYTES], rng: &mut Rng) -> [u8; SECTOR_BYTES] {
    let mut out = *old;
    let how = rng.below(3);
    let cut = 1 + rng.below(SECTOR_BYTES as u64 - 1) as usize;
    for i in 0..SECTOR_BYTES {
        if old[i] == new[i] {
            continue;
        }
        out[i] = match how {
            0 => 0,
            1 => rng.next_u64() as u8,
            _ if i < cut => new[i],
            _ => old[i],
        };
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// The file system

/// The simulated file system: a cheap handle (clones share the state). Plug it into a store with
/// `Options::file_system(Arc::new(sim.clone()))`.
#[derive(Clone)]
pub struct SimFs {
    inner: Arc<Mutex<Inner>>,
    gate: Arc<Gate>,
}

/// Holds operations on some paths until released (to make one thread slow, deterministically).
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Default)]
struct GateState {
    /// Operations on paths containing this wait: all of them, or those of one kind.
    closed_on: Option<(Option<Op>, String)>,
    /// Threads waiting at the gate now.
    waiting: usize,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("SimFs").field("files", &g.inodes.len()).field("ops", &g.ops).finish()
    }
}

impl Default for SimFs {
    fn default() -> Self {
        SimFs::new()
    }
}

impl SimFs {
    /// An empty file system holding only the root folder `/`.
    pub fn new() -> SimFs {
        SimFs { inner: Arc::new(Mutex::new(Inner::new())), gate: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is only changed under the lock by code without panics on valid input; a panicking test
        // thread must not hide the state from the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one counted operation: fails it if the machine is halted or a fault says so, and takes an armed
    /// crash image right after it.
    fn op<T>(&self, op: Op, path: &Path, f: impl FnOnce(&mut Inner) -> io::Result<T>) -> io::Result<T> {
        self.pass_gate(op, path);
        let mut g = self.lock();
        let r = match g.begin(op, path) {
            Ok(()) => f(&mut g),
            Err(e) => Err(e),
        };
        g.end();
        r
    }

    /// Makes every operation on a path containing `part` wait (before it does anything) until [`SimFs::release`].
    pub fn hold(&self, part: &str) {
        self.gate.state.lock().unwrap_or_else(|e| e.into_inner()).closed_on = Some((None, part.to_owned()));
    }

    /// [`SimFs::hold`] for the operations of one kind only.
    pub fn hold_op(&self, op: Op, part: &str) {
        self.gate.state.lock().unwrap_or_else(|e| e.into_inner()).closed_on = Some((Some(op), part.to_owned()));
    }

    /// Lets the held operations go on.
    pub fn release(&self) {
        self.gate.state.lock().unwrap_or_else(|e| e.into_inner()).closed_on = None;
        self.gate.cv.notify_all();
    }

    /// Threads waiting in a held operation now.
    pub fn held(&self) -> usize {
        self.gate.state.lock().unwrap_or_else(|e| e.into_inner()).waiting
    }

    fn pass_gate(&self, op: Op, path: &Path) {
        let mut st = self.gate.state.lock().unwrap_or_else(|e| e.into_inner());
        let path = path.to_string_lossy();
        let held = |st: &GateState| {
            st.closed_on.as_ref().is_some_and(|(kind, p)| kind.is_none_or(|k| k == op) && path.contains(p.as_str()))
        };
        if held(&st) {
            st.waiting += 1;
            while held(&st) {
                st = self.gate.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st.waiting -= 1;
        }
    }

    /// Adds a fault.
    pub fn fail(&self, fault: Fault) {
        self.lock().faults.push(ActiveFault { fault, seen: 0, spent: false });
    }

    /// Every failure injected so far, in order: the operation, its path, the error returned.
    pub fn injected(&self) -> Vec<(Op, PathBuf, Errno)> {
        self.lock().injected.clone()
    }

    /// Removes every fault ("space was freed", "the disk was replaced").
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Chooses what a failed `sync_data` does; see [`SyncFailure`].
    pub fn set_sync_failure(&self, behaviour: SyncFailure) {
        self.lock().sync_failure = behaviour;
    }

    /// Operations performed so far (failed ones included).
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Operations of one kind performed so far.
    pub fn ops_of(&self, op: Op) -> u64 {
        self.lock().ops_by_kind.get(&op).copied().unwrap_or(0)
    }

    /// The file system a restart would find after a crash right now. This one is unchanged and usable.
    pub fn crash(&self, mode: CrashMode, seed: u64) -> SimFs {
        self.freeze().crash(mode, seed)
    }

    /// The state as of now, from which any crash image of this moment can be made.
    pub fn freeze(&self) -> Frozen {
        self.lock().freeze().unwrap_or_else(|e| panic!("sim: freezing the state failed: {e}"))
    }

    /// Freezes the state right after each operation that brings the count to one of `ops`, without stopping
    /// anything: a crash at each of those moments can be studied after the workload ran on.
    pub fn freeze_after(&self, ops: impl IntoIterator<Item = u64>) {
        self.lock().freeze_after.extend(ops);
    }

    /// Freezes the state right before each operation that brings the count to one of `ops`: with every store
    /// into a mapping made since the previous operation. A crash then is a crash *during* that operation
    /// (during a `sync_data`, any of the dirty sectors may have reached the disk).
    pub fn freeze_before(&self, ops: impl IntoIterator<Item = u64>) {
        self.lock().freeze_before.extend(ops);
    }

    /// The states frozen so far, in the order they were taken; the list is emptied.
    pub fn take_frozen(&self) -> Vec<(CrashPoint, Frozen)> {
        std::mem::take(&mut self.lock().frozen)
    }

    /// Crashes right after the operation that brings the count to `ops` (at once if it is there already): the
    /// image is kept for [`SimFs::take_crashed`] and every later operation fails, as on a machine without power.
    pub fn crash_after(&self, ops: u64, mode: CrashMode, seed: u64) {
        let mut g = self.lock();
        g.armed = Some(ArmedCrash { after_ops: ops, mode, seed });
        if g.ops >= ops {
            g.end();
        }
    }

    /// The image of an armed crash that happened.
    pub fn take_crashed(&self) -> Option<SimFs> {
        self.lock().crashed.take()
    }

    /// True once an armed crash happened.
    pub fn is_halted(&self) -> bool {
        self.lock().halted
    }

    /// Sectors that are written but not durable, over all files.
    pub fn unsynced_sectors(&self) -> usize {
        let g = self.lock();
        let mut n = 0;
        for inode in g.inodes.values() {
            let current = inode.current().expect("sim: reading an in-memory file");
            n += dirty_sectors(&current, &inode.durable, &inode.lost).len();
        }
        n
    }

    /// Folder changes that are not durable.
    pub fn unsynced_dir_changes(&self) -> usize {
        self.lock().pending.len()
    }

    /// The current bytes of a file (uncounted, never failing: for tests to inspect).
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let g = self.lock();
        let id = g.file(&norm(path)).ok()?;
        Some(g.inode(id).current().expect("sim: reading an in-memory file"))
    }

    /// Overwrites bytes of a file in place, durably (uncounted: for tests that damage files). The file's length
    /// must not change.
    pub fn damage_file(&self, path: &Path, offset: u64, bytes: &[u8]) {
        let mut g = self.lock();
        let id = g.file(&norm(path)).expect("sim: damage_file of a missing file");
        let inode = g.inode_mut(id);
        assert!(offset + bytes.len() as u64 <= inode.len, "damage_file stays inside the file");
        inode.memory.write_all_at(bytes, offset).expect("sim: writing an in-memory file");
        let (o, e) = (offset as usize, offset as usize + bytes.len());
        inode.durable[o..e].copy_from_slice(bytes);
    }

    /// The files and folders (current namespace), sorted.
    pub fn paths(&self) -> Vec<(PathBuf, bool)> {
        self.lock().names.iter().map(|(p, n)| (p.clone(), *n == Node::Dir)).collect()
    }
}

impl FileSystem for SimFs {
    fn boot_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.lock().boot.to_le_bytes());
        id[8..].copy_from_slice(b"sim-boot");
        id
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = norm(path);
        self.op(Op::CreateDir, &path, |g| {
            let mut at = PathBuf::new();
            for c in path.components() {
                at.push(c);
                match g.names.get(&at) {
                    Some(Node::Dir) => {}
                    Some(Node::File(_)) => {
                        return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("sim: {}", at.display())))
                    }
                    None => {
                        g.names.insert(at.clone(), Node::Dir);
                        g.pending.push(DirOp::Create { path: at.clone(), node: Node::Dir });
                    }
                }
            }
            Ok(())
        })
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let path = norm(path);
        self.op(Op::ListDir, &path, |g| {
            if g.names.get(&path) != Some(&Node::Dir) {
                return Err(not_found(&path));
            }
            Ok(g.names
                .keys()
                .filter(|p| p.parent() == Some(&path))
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect())
        })
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>> {
        let path = norm(path);
        let op = if mode == OpenMode::CreateNew { Op::Create } else { Op::Open };
        let id = self.op(op, &path, |g| match mode {
            OpenMode::CreateNew => g.create_file(&path),
            OpenMode::Read | OpenMode::ReadWrite => g.file(&path),
        })?;
        Ok(Box::new(SimFile { fs: self.clone(), id, path, writable: mode != OpenMode::Read }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (norm(from), norm(to));
        self.op(Op::Rename, &to, |g| {
            let id = g.file(&from)?;
            g.require_parent(&to)?;
            if g.names.get(&to) == Some(&Node::Dir) {
                return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("sim: {}", to.display())));
            }
            g.names.remove(&from);
            g.names.insert(to.clone(), Node::File(id));
            g.pending.push(DirOp::Rename { from: from.clone(), to: to.clone(), node: Node::File(id) });
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = norm(path);
        self.op(Op::Remove, &path, |g| {
            let id = g.file(&path)?;
            g.names.remove(&path);
            g.pending.push(DirOp::Remove { path: path.clone(), node: Node::File(id) });
            Ok(())
        })
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let path = norm(path);
        self.op(Op::SyncDir, &path, |g| {
            if g.names.get(&path) != Some(&Node::Dir) {
                return Err(not_found(&path));
            }
            g.sync_dir(&path);
            Ok(())
        })
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let path = norm(path);
        self.op(Op::Lock, &path, |g| {
            if !g.names.contains_key(&path) {
                g.create_file(&path)?;
            }
            if !g.locks.insert(path.clone()) {
                return Ok(None);
            }
            Ok(Some(Box::new(SimLock { fs: self.clone(), path: path.clone() }) as Box<dyn LockGuard>))
        })
    }
}

/// A held lock of the in-memory lock table.
struct SimLock {
    fs: SimFs,
    path: PathBuf,
}

impl std::fmt::Debug for SimLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimLock").field("path", &self.path).finish()
    }
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.path);
    }
}

/// An open file of a [`SimFs`]. Like a Unix file descriptor it refers to the file, not its name: it stays
/// usable after the file is renamed or removed.
struct SimFile {
    fs: SimFs,
    id: u64,
    path: PathBuf,
    writable: bool,
}

impl std::fmt::Debug for SimFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFile").field("path", &self.path).field("inode", &self.id).finish()
    }
}

impl FileHandle for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.fs.op(Op::Read, &self.path, |g| {
            let inode = g.inode(self.id);
            if offset + buf.len() as u64 > inode.len {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "sim: read past the end of the file"));
            }
            inode.memory.read_exact_at(buf, offset)
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.fs.op(Op::Write, &self.path, |g| {
            if !self.writable {
                return Err(io::Error::from_raw_os_error(9)); // EBADF
            }
            g.write(self.id, buf, offset)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fs.pass_gate(Op::SyncData, &self.path);
        let mut g = self.fs.lock();
        let r = g.begin(Op::SyncData, &self.path);
        // A failed sync still touches the data (SyncFailure), unless the machine is off.
        let result = match r {
            Ok(()) => g.sync_data(self.id, false),
            Err(e) if !g.halted => g.sync_data(self.id, true).and(Err(e)),
            Err(e) => Err(e),
        };
        g.end();
        result
    }

    fn len_bytes(&self) -> io::Result<u64> {
        self.fs.op(Op::Len, &self.path, |g| Ok(g.inode(self.id).len))
    }

    fn map(&self) -> io::Result<Arc<dyn Mapping>> {
        self.fs.op(Op::Map, &self.path, |g| {
            let inode = g.inode_mut(self.id);
            inode.mapped = true;
            super::map_file(&inode.memory)
        })
    }

    fn map_mut(&self, offset: u64, len: usize) -> io::Result<Box<dyn MappingMut>> {
        self.fs.op(Op::Map, &self.path, |g| {
            if !self.writable {
                return Err(io::Error::from_raw_os_error(9)); // EBADF
            }
            let inode = g.inode_mut(self.id);
            inode.mapped = true;
            super::map_file_mut(&inode.memory, offset, len)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn file_with(fs: &SimFs, path: &str, bytes: &[u8]) -> Box<dyn FileHandle> {
        let f = fs.open(&p(path), OpenMode::CreateNew).unwrap();
        f.write_all_at(bytes, 0).unwrap();
        f
    }

    #[test]
    fn unsynced_data_and_names_are_lost_at_a_power_loss() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        let f = file_with(&fs, "/d/a", &[1u8; 1000]);
        let crashed = fs.crash(CrashMode::POWER_LOSS, 1);
        assert_eq!(crashed.read_file(&p("/d/a")), None, "the name was never synced");
        fs.sync_dir(&p("/d")).unwrap();
        let crashed = fs.crash(CrashMode::POWER_LOSS, 1);
        assert_eq!(crashed.read_file(&p("/d/a")), Some(vec![]), "name durable, data not");
        f.sync_data().unwrap();
        f.write_all_at(&[2u8; 10], 600).unwrap();
        let crashed = fs.crash(CrashMode::POWER_LOSS, 1);
        assert_eq!(crashed.read_file(&p("/d/a")), Some(vec![1u8; 1000]));
        let crashed = fs.crash(CrashMode::PROCESS, 1);
        let mut want = vec![1u8; 1000];
        want[600..610].fill(2);
        assert_eq!(crashed.read_file(&p("/d/a")), Some(want));
        assert_eq!(fs.unsynced_sectors(), 1);
    }

    #[test]
    fn a_folder_whose_entry_is_lost_takes_its_files_with_it() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d/e")).unwrap();
        let f = file_with(&fs, "/d/e/a", b"x");
        f.sync_data().unwrap();
        fs.sync_dir(&p("/d/e")).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        assert!(fs.crash(CrashMode::POWER_LOSS, 0).paths().iter().all(|(path, _)| path == &p("/")));
        fs.sync_dir(&p("/")).unwrap();
        assert_eq!(fs.crash(CrashMode::POWER_LOSS, 0).read_file(&p("/d/e/a")), Some(b"x".to_vec()));
    }

    #[test]
    fn renames_are_durable_after_the_folder_sync() {
        let fs = SimFs::new();
        let f = file_with(&fs, "/a.tmp", b"new");
        f.sync_data().unwrap();
        fs.sync_dir(&p("/")).unwrap();
        fs.rename(&p("/a.tmp"), &p("/a")).unwrap();
        let lost = fs.crash(CrashMode::POWER_LOSS, 0);
        assert_eq!((lost.read_file(&p("/a.tmp")), lost.read_file(&p("/a"))), (Some(b"new".to_vec()), None));
        fs.sync_dir(&p("/")).unwrap();
        let kept = fs.crash(CrashMode::POWER_LOSS, 0);
        assert_eq!((kept.read_file(&p("/a.tmp")), kept.read_file(&p("/a"))), (None, Some(b"new".to_vec())));
    }

    #[test]
    fn a_kept_rename_never_moves_another_file_of_the_same_name() {
        // An old a.tmp is removed and a new one created and renamed; a crash that keeps the rename must not
        // rename the old file, whatever else it keeps or loses.
        let fs = SimFs::new();
        let old = file_with(&fs, "/a.tmp", b"old");
        old.sync_data().unwrap();
        fs.sync_dir(&p("/")).unwrap();
        fs.remove_file(&p("/a.tmp")).unwrap();
        let new = file_with(&fs, "/a.tmp", b"new");
        new.sync_data().unwrap();
        fs.rename(&p("/a.tmp"), &p("/a")).unwrap();
        let mode = CrashMode { data: DataCrash::DropAll, dirs: DirCrash::KeepSome };
        for seed in 0..64 {
            let image = fs.crash(mode, seed);
            assert_ne!(image.read_file(&p("/a")), Some(b"old".to_vec()), "seed {seed}");
        }
    }

    #[test]
    fn freezing_before_an_operation_sees_the_stores_made_since_the_previous_one() {
        let fs = SimFs::new();
        let f = file_with(&fs, "/seg", &[0u8; 1024]);
        f.sync_data().unwrap();
        fs.sync_dir(&p("/")).unwrap();
        let mut rw = f.map_mut(0, 1024).unwrap();
        let next = fs.ops() + 1;
        fs.freeze_after([next]);
        fs.freeze_before([next]);
        rw.bytes_mut()[0] = 1;
        f.sync_data().unwrap();
        let frozen = fs.take_frozen();
        assert_eq!(frozen.len(), 2);
        let before = &frozen.iter().find(|(at, _)| at.before_next).unwrap().1;
        assert_eq!(before.crash(CrashMode::PROCESS, 0).read_file(&p("/seg")).unwrap()[0], 1);
        assert_eq!(before.crash(CrashMode::POWER_LOSS, 0).read_file(&p("/seg")).unwrap()[0], 0);
        let after = &frozen.iter().find(|(at, _)| !at.before_next).unwrap().1;
        assert_eq!(after.crash(CrashMode::POWER_LOSS, 0).read_file(&p("/seg")).unwrap()[0], 1);
    }

    #[test]
    fn a_writable_mapping_of_a_range_covers_that_range_only() {
        let fs = SimFs::new();
        let align = super::super::MAP_ALIGN_BYTES as usize;
        let f = file_with(&fs, "/seg", &vec![0u8; 3 * align]);
        let mut rw = f.map_mut(align as u64, align).unwrap();
        assert_eq!(rw.bytes_mut().len(), align);
        rw.bytes_mut()[0] = 7;
        let mut buf = [0u8; 1];
        f.read_exact_at(&mut buf, align as u64).unwrap();
        assert_eq!(buf, [7]);
        for (offset, len) in [(1, 10), (align as u64, 2 * align + 1), (4 * align as u64, 1), (u64::MAX - 65535, 2)] {
            let e = f.map_mut(offset, len).err().expect("a bad range is refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{offset} {len}");
        }
    }

    #[test]
    fn both_mappings_and_reads_share_one_buffer() {
        let fs = SimFs::new();
        let f = file_with(&fs, "/seg", &[5u8; 4096]);
        let ro = f.map().unwrap();
        let mut rw = f.map_mut(0, 4096).unwrap();
        rw.bytes_mut()[100..104].copy_from_slice(b"abcd");
        assert_eq!(&ro.bytes()[100..104], b"abcd");
        let mut buf = [0u8; 4];
        f.read_exact_at(&mut buf, 100).unwrap();
        assert_eq!(&buf, b"abcd");
        assert!(f.write_all_at(b"x", 4096).is_err(), "a mapped file cannot grow");
        assert_eq!(fs.unsynced_sectors(), 8, "the whole file is unsynced");
        f.sync_data().unwrap();
        fs.sync_dir(&p("/")).unwrap();
        assert_eq!(fs.unsynced_sectors(), 0);
        rw.bytes_mut()[1000] = 9;
        assert_eq!(fs.unsynced_sectors(), 1, "stores through the mapping are seen as unsynced");
        assert_eq!(fs.crash(CrashMode::POWER_LOSS, 0).read_file(&p("/seg")).unwrap()[1000], 5);
        assert_eq!(fs.crash(CrashMode::PROCESS, 0).read_file(&p("/seg")).unwrap()[1000], 9);
    }

    #[test]
    fn crashes_are_deterministic_from_the_seed_and_keep_some_sectors() {
        let fs = SimFs::new();
        let f = file_with(&fs, "/f", &[0u8; 64 * SECTOR_BYTES]);
        f.sync_data().unwrap();
        fs.sync_dir(&p("/")).unwrap();
        f.write_all_at(&[7u8; 64 * SECTOR_BYTES], 0).unwrap();
        let mode = CrashMode { data: DataCrash::KeepSome, dirs: DirCrash::KeepSome };
        let a = fs.crash(mode, 42).read_file(&p("/f")).unwrap();
        let b = fs.crash(mode, 42).read_file(&p("/f")).unwrap();
        assert_eq!(a, b);
        let kept = a.chunks(SECTOR_BYTES).filter(|s| s[0] == 7).count();
        assert!(kept > 0 && kept < 64, "kept {kept} of 64 sectors");
        assert!(a.chunks(SECTOR_BYTES).all(|s| s.iter().all(|&b| b == s[0])), "whole sectors only");
        let torn = fs.crash(CrashMode { data: DataCrash::TearOne, dirs: DirCrash::DropAll }, 5);
        let torn = torn.read_file(&p("/f")).unwrap();
        let mixed = torn.chunks(SECTOR_BYTES).filter(|s| !s.iter().all(|&b| b == 7) && !s.iter().all(|&b| b == 0));
        assert!(mixed.count() <= 1, "at most one torn sector");
    }

    #[test]
    fn faults_fail_the_kth_operation_once_or_persistently() {
        let fs = SimFs::new();
        let f = file_with(&fs, "/f", b"abc");
        fs.fail(Fault::once(Op::Write, 1, Errno::Enospc));
        f.write_all_at(b"1", 0).unwrap();
        let e = f.write_all_at(b"2", 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        f.write_all_at(b"3", 0).unwrap();
        fs.fail(Fault::persistent(Op::SyncData, 0, Errno::Eio).on_paths("/g"));
        f.sync_data().unwrap();
        let g = file_with(&fs, "/g", b"x");
        assert!(g.sync_data().is_err() && g.sync_data().is_err());
        fs.clear_faults();
        g.sync_data().unwrap();
    }

    #[test]
    fn a_failed_sync_that_drops_pages_never_makes_them_durable() {
        let fs = SimFs::new();
        fs.set_sync_failure(SyncFailure::DropPages);
        let f = file_with(&fs, "/f", &[1u8; 1024]);
        fs.sync_dir(&p("/")).unwrap();
        fs.fail(Fault::once(Op::SyncData, 0, Errno::Eio));
        assert!(f.sync_data().is_err());
        f.sync_data().unwrap();
        assert_eq!(fs.crash(CrashMode::POWER_LOSS, 0).read_file(&p("/f")).unwrap(), vec![0u8; 1024]);
        assert_eq!(fs.read_file(&p("/f")).unwrap(), vec![1u8; 1024], "reads still see the data");
        f.write_all_at(&[1u8; 512], 512).unwrap();
        f.sync_data().unwrap();
        let after = fs.crash(CrashMode::POWER_LOSS, 0).read_file(&p("/f")).unwrap();
        assert_eq!((after[0], after[600]), (0, 1), "a rewritten sector is dirty again");
    }

    #[test]
    fn an_armed_crash_halts_the_machine_after_its_operation() {
        let fs = SimFs::new();
        let f = file_with(&fs, "/f", b"abc");
        let at = fs.ops() + 2;
        fs.crash_after(at, CrashMode::PROCESS, 0);
        f.sync_data().unwrap();
        fs.sync_dir(&p("/")).unwrap();
        assert!(fs.is_halted());
        assert!(f.write_all_at(b"x", 0).is_err());
        let image = fs.take_crashed().unwrap();
        assert_eq!(image.read_file(&p("/f")), Some(b"abc".to_vec()));
        image.open(&p("/f"), OpenMode::ReadWrite).unwrap().write_all_at(b"y", 0).unwrap();
    }

    #[test]
    fn the_lock_table_is_exclusive_until_the_guard_drops() {
        let fs = SimFs::new();
        let a = fs.try_lock(&p("/LOCK")).unwrap();
        assert!(a.is_some());
        assert!(fs.try_lock(&p("/LOCK")).unwrap().is_none());
        drop(a);
        assert!(fs.try_lock(&p("/LOCK")).unwrap().is_some());
    }
}
