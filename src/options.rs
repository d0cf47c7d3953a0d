//! How a store is opened: the [`Options`] builder and the [`Durability`] modes.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::fs::{FileSystem, StdFileSystem};
use crate::limits;
use crate::{Result, Store};

/// When an append returns, relative to its events reaching stable storage.
///
/// ```
/// use annals::{Durability, Options};
/// let dir = tempfile::tempdir()?;
/// let store = Options::new().durability(Durability::Buffered).open(dir.path())?;
/// store.append("s", annals::ExpectedVersion::Any, &[annals::NewEvent::new("E", "x")])?;
/// store.sync()?; // now durable
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// An append returns once its events are durable (`fdatasync` completed). The default.
    #[default]
    Sync,
    /// An append returns once its events are handed to the operating system: visible to readers at once and
    /// kept through a crash of the process. An OS crash or power loss may lose the appends after the last
    /// completed [`Store::sync`] (whole appends, from the end, never a hole).
    Buffered,
}

/// Options for opening a [`Store`]: a builder with documented defaults and bounds.
///
/// ```
/// use annals::{Durability, Options};
/// let dir = tempfile::tempdir()?;
/// let store = Options::new().segment_size(8 << 20).durability(Durability::Sync).open(dir.path())?;
/// assert_eq!(store.head().as_u64(), 0);
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) segment_bytes: u64,
    pub(crate) durability: Durability,
    pub(crate) sync_interval: Option<Duration>,
    pub(crate) file_system: Arc<dyn FileSystem>,
    pub(crate) stream_hash_bits: u32,
    pub(crate) index_checkpoint_bytes: u64,
    pub(crate) spin_wait: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: limits::SEGMENT_BYTES_DEFAULT,
            durability: Durability::Sync,
            sync_interval: Some(Duration::from_secs(1)),
            file_system: Arc::new(StdFileSystem),
            stream_hash_bits: 64,
            index_checkpoint_bytes: crate::index::CHECKPOINT_LOG_BYTES,
            spin_wait: true,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("segment_size", &self.segment_bytes)
            .field("durability", &self.durability)
            .field("sync_interval", &self.sync_interval)
            .field("file_system", &self.file_system)
            .field("spin_wait", &self.spin_wait)
            .finish()
    }
}

impl Options {
    /// The defaults: 64 MiB segments, [`Durability::Sync`], the operating system's file system.
    pub fn new() -> Options {
        Options::default()
    }

    /// Bytes per segment file. Default 64 MiB; accepted from 1 MiB to 1 GiB, rounded up to a multiple of 4 KiB
    /// when the store opens (an out-of-range value makes [`Options::open`] fail with `InvalidInput`). An append
    /// larger than this gets a segment of its own, sized to fit, so the size does not lower any other limit.
    /// The size applies to segments created from now on; existing ones keep theirs. A store's first segment is
    /// 1 MiB and each next one doubles until this size is reached, so small stores stay small.
    pub fn segment_size(mut self, bytes: u64) -> Options {
        self.segment_bytes = bytes;
        self
    }

    /// When appends return; see [`Durability`]. Default [`Durability::Sync`].
    pub fn durability(mut self, durability: Durability) -> Options {
        self.durability = durability;
        self
    }

    /// With [`Durability::Buffered`], how often a background thread makes everything appended so far durable
    /// (only when something was appended since the last sync). This bounds what an OS crash or power loss can
    /// lose. Default: 1 second. `None`: only [`Store::sync`] and closing the store sync. Ignored with
    /// [`Durability::Sync`], where every append is durable before it returns.
    ///
    /// ```
    /// use std::time::Duration;
    /// use annals::{Durability, Options};
    /// let dir = tempfile::tempdir()?;
    /// let store = Options::new()
    ///     .durability(Durability::Buffered)
    ///     .sync_interval(Some(Duration::from_millis(100)))
    ///     .open(dir.path())?;
    /// # drop(store);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn sync_interval(mut self, interval: Option<Duration>) -> Options {
        self.sync_interval = interval;
        self
    }

    /// Whether a thread whose [`Durability::Sync`] append waits for a sync run by another thread yields the CPU
    /// in a loop (`sched_yield`) for about two syncs before it sleeps. Default: on.
    ///
    /// With many threads appending at once, each sync releases a whole group of them. Woken from sleep, each
    /// costs a wake-up and a context switch that, on a 2-core virtual machine, took more CPU than its append
    /// (`annals bench` W2, 16 threads: 67-82k events/s sleeping, 107-117k yielding; docs/PERFORMANCE.md). The
    /// price is CPU time: the waiting threads stay runnable, though they let any other runnable thread go
    /// first. Off, waiting threads sleep at once. Against a device whose syncs take over a millisecond on
    /// average, waiting threads sleep at once either way. A lone appender never waits (it syncs itself), and
    /// async appends never block a thread.
    ///
    /// ```
    /// use annals::Options;
    /// let dir = tempfile::tempdir()?;
    /// let store = Options::new().spin_wait(false).open(dir.path())?; // waiting appenders sleep at once
    /// # drop(store);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn spin_wait(mut self, enabled: bool) -> Options {
        self.spin_wait = enabled;
        self
    }

    /// Replaces the file-system layer: every file operation of the store goes through it. This is the seam
    /// the fault-injection tests use; ordinary users never need it.
    #[doc(hidden)]
    pub fn file_system(mut self, file_system: Arc<dyn FileSystem>) -> Options {
        self.file_system = file_system;
        self
    }

    /// Keeps only the low `bits` bits (1 to 64) of the stream hash in the index files of a store created with
    /// these options, so that different stream names collide often. For tests of the collision handling only;
    /// an existing store keeps the setting it was created with.
    #[doc(hidden)]
    pub fn stream_hash_bits(mut self, bits: u32) -> Options {
        self.stream_hash_bits = bits;
        self
    }

    /// Bytes of log between index checkpoints (default 8 MiB): the most log an open re-reads after a crash, and
    /// what bounds the index's heap memory. Smaller values make tests exercise many index files.
    #[doc(hidden)]
    pub fn index_checkpoint_bytes(mut self, bytes: u64) -> Options {
        self.index_checkpoint_bytes = bytes;
        self
    }

    /// Opens (creating if needed) the store in the folder `path` with these options.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(path.as_ref(), self.clone())
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.index_checkpoint_bytes == 0 {
            return Err(crate::Error::invalid("index_checkpoint_bytes must be above zero"));
        }
        if !(1..=64).contains(&self.stream_hash_bits) {
            return Err(crate::Error::invalid("stream_hash_bits must be 1 to 64"));
        }
        if self.sync_interval.is_some_and(|i| i.is_zero()) {
            return Err(crate::Error::invalid("sync_interval must be longer than zero (or None)"));
        }
        if !(limits::SEGMENT_BYTES_MIN..=limits::SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(crate::Error::invalid(format!(
                "segment_size {} is outside {}..={} bytes",
                self.segment_bytes,
                limits::SEGMENT_BYTES_MIN,
                limits::SEGMENT_BYTES_MAX
            )));
        }
        Ok(())
    }
}
