//! # annals
//!
//! An embedded, high-performance event store: the storage engine on the write side of CQRS / event-sourced
//! systems. Events are appended to streams under optimistic concurrency, atomically, and get one gapless
//! global position in commit order; they are read back from memory-mapped segment files without copying.
//!
//! ```
//! use annals::{ExpectedVersion, NewEvent, Position, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//!
//! // Write: the stream must not exist yet.
//! let r = store.append("account-42", ExpectedVersion::NoStream, &[NewEvent::new("Opened", "{}")])?;
//! // Write again, expecting the version we saw.
//! store.append("account-42", ExpectedVersion::Exact(r.last_version), &[NewEvent::new("Deposited", "{\"amount\":5}")])?;
//!
//! // Read one stream, or everything in commit order.
//! let types: Vec<String> = store
//!     .read_stream("account-42", 0)?
//!     .map(|e| e.map(|e| e.event_type().to_owned()))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(types, ["Opened", "Deposited"]);
//! assert_eq!(store.read_all(Position::START).count(), 2);
//! assert_eq!(store.head(), Position::from_u64(2));
//! # Ok::<(), annals::Error>(())
//! ```
//!
//! ## Idempotent retries
//! Every [`NewEvent`] has an id (a fresh UUIDv7 unless set with [`NewEvent::with_id`]). Retrying an append
//! with the same ids returns the original [`AppendResult`] and writes nothing:
//! - with `ExpectedVersion::Exact(n)` or `NoStream`: when the stream's events at versions `n+1..` (`0..`) have
//!   exactly these ids, in order; any other state is the usual conflict;
//! - with `Any` or `StreamExists`: when the stream's newest events have exactly these ids, in order;
//!   otherwise the events are appended;
//! - two events with the same id in one append: [`Error::InvalidInput`].
//!
//! ## Limits
//! Stream names 1 to 255 bytes of UTF-8 (names starting with `$` are reserved); event types 1 to 255 bytes;
//! payload plus metadata of one event up to 16 MiB; up to 10,000 events and 32 MiB of payload plus metadata per
//! append (all parts of an `append_many` together); segment sizes from 1 MiB to 1 GiB. An append larger than the
//! segment size gets a segment of its own, so a small segment size lowers no limit. Beyond a limit: [`Error::InvalidInput`], and
//! nothing is written. The constants are in [`limits`].
//!
//! ## The mmap contract
//! Reads borrow bytes from read-only shared mappings of the segment files. This is sound because the store
//! holds an exclusive lock on its folder, never changes the length of a segment file, and never rewrites bytes
//! below the published head. Do not modify the files of an open store from outside. A disk error on a mapped
//! page raises SIGBUS, as in every mmap-based engine; recovery reads with `pread` and reports such errors.

#![forbid(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod event;
/// Pure encoding and decoding of the on-disk structures. Public only for the fuzz targets, benches and
/// reliability tests; not part of the stable API.
#[doc(hidden)]
pub mod format;
#[doc(hidden)]
pub mod fs;
mod index;
mod indexer;
pub mod limits;
mod log;
/// The notification ring that wakes subscriptions. Public only for the loom model tests and benches; not part
/// of the stable API.
#[doc(hidden)]
pub mod notify;
mod options;
mod prefetch;
pub mod projection;
mod store;
mod subscription;
mod sync;
mod verify;

pub use bytes::Bytes;
pub use error::{Error, Result};
pub use event::{AppendResult, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamAppend};
pub use log::reader::ReadAll;
pub use options::{Durability, Options};
pub use store::{AppendFuture, ReadStream, Store, StoreStats};
#[cfg(feature = "async")]
pub use subscription::SubscriptionStream;
pub use subscription::{Subscription, SubscriptionItem, SubscriptionOptions};
pub use uuid::Uuid;
pub use verify::VerifyReport;
