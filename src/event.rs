//! Events going in ([`NewEvent`], [`StreamAppend`]) and coming out ([`RecordedEvent`]), and the small value
//! types around them ([`Position`], [`ExpectedVersion`], [`AppendResult`]).
//!
//! A [`RecordedEvent`] borrows its bytes from the memory-mapped segment that holds it: it keeps that segment
//! alive through a reference count, so reading an event allocates nothing and copies nothing.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;

use crate::format::frame::EventHeader;
use crate::log::segment::Segment;

/// An event's place in the global order of the store: the first event ever committed has position 0, the
/// next 1, and so on, with no gaps, in commit order.
///
/// ```
/// use annals::Position;
/// let p = Position::from_u64(41);
/// assert!(Position::START < p);
/// assert_eq!(p.as_u64() + 1, Position::from_u64(42).as_u64());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(u64);

impl Position {
    /// The position of the first event of every store.
    pub const START: Position = Position(0);

    /// The position with this number.
    pub const fn from_u64(position: u64) -> Position {
        Position(position)
    }

    /// This position's number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({})", self.0)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What an append expects of its stream: the optimistic-concurrency check.
///
/// ```
/// use annals::{ExpectedVersion, NewEvent, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("order-1", ExpectedVersion::NoStream, &[NewEvent::new("Placed", "")])?;
/// store.append("order-1", ExpectedVersion::Exact(0), &[NewEvent::new("Paid", "")])?;
/// store.append("order-1", ExpectedVersion::StreamExists, &[NewEvent::new("Shipped", "")])?;
/// store.append("order-1", ExpectedVersion::Any, &[NewEvent::new("Noted", "")])?;
/// assert_eq!(store.stream_version("order-1"), Some(3));
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check: append whatever the stream's state.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (have at least one event).
    StreamExists,
    /// The stream's last version must be exactly this.
    Exact(u64),
}

/// An event to append: a type, a payload, optional metadata, and an id that makes retries idempotent.
///
/// ```
/// use annals::{NewEvent, Uuid};
/// let e = NewEvent::new("Deposited", &b"{\"amount\":5}"[..]).with_metadata("trace=abc");
/// assert_eq!(e.event_type(), "Deposited");
/// let id = Uuid::now_v7();
/// assert_eq!(e.with_id(id).id(), id);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    id: Uuid,
    event_type: String,
    payload: Bytes,
    metadata: Bytes,
}

impl NewEvent {
    /// An event with a fresh UUIDv7 id and no metadata. Retrying an append with the same `NewEvent` (same id)
    /// is idempotent.
    pub fn new(event_type: impl Into<String>, payload: impl Into<Bytes>) -> NewEvent {
        NewEvent { id: Uuid::now_v7(), event_type: event_type.into(), payload: payload.into(), metadata: Bytes::new() }
    }

    /// An event with the given id and no metadata: what `NewEvent::new(event_type, payload).with_id(id)` makes,
    /// without drawing a UUIDv7 first only to replace it (a clock read and random bits per event: about a tenth
    /// of a single-event `Buffered` append, docs/PERFORMANCE.md).
    ///
    /// ```
    /// use annals::{NewEvent, Uuid};
    /// let id = Uuid::now_v7(); // in practice derived from the command, so that a retried command is idempotent
    /// let e = NewEvent::new_with_id(id, "Deposited", &b"{\"amount\":5}"[..]);
    /// assert_eq!(e, NewEvent::new("Deposited", &b"{\"amount\":5}"[..]).with_id(id));
    /// ```
    pub fn new_with_id(id: Uuid, event_type: impl Into<String>, payload: impl Into<Bytes>) -> NewEvent {
        NewEvent { id, event_type: event_type.into(), payload: payload.into(), metadata: Bytes::new() }
    }

    /// Sets the event id (for example one derived from the command, so a retried command writes nothing twice).
    pub fn with_id(mut self, id: Uuid) -> NewEvent {
        self.id = id;
        self
    }

    /// Sets the metadata bytes (empty by default).
    pub fn with_metadata(mut self, metadata: impl Into<Bytes>) -> NewEvent {
        self.metadata = metadata.into();
        self
    }

    /// The event id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The metadata bytes.
    pub fn metadata(&self) -> &[u8] {
        &self.metadata
    }
}

/// One stream's part of an atomic multi-stream append ([`crate::Store::append_many`]).
///
/// ```
/// use annals::{ExpectedVersion, NewEvent, StreamAppend};
/// let events = vec![NewEvent::new("Reserved", "")];
/// let part = StreamAppend::new("stock-9", ExpectedVersion::Any, &events);
/// assert_eq!(part.stream(), "stock-9");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct StreamAppend<'a> {
    pub(crate) stream: &'a str,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: &'a [NewEvent],
}

impl<'a> StreamAppend<'a> {
    /// A part appending `events` to `stream` if it is at `expected`.
    pub fn new(stream: &'a str, expected: ExpectedVersion, events: &'a [NewEvent]) -> StreamAppend<'a> {
        StreamAppend { stream, expected, events }
    }

    /// The stream this part appends to.
    pub fn stream(&self) -> &'a str {
        self.stream
    }

    /// The expected version of the stream.
    pub fn expected(&self) -> ExpectedVersion {
        self.expected
    }

    /// The events of this part.
    pub fn events(&self) -> &'a [NewEvent] {
        self.events
    }
}

/// What an append wrote (or, for an idempotent retry, what the original append wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppendResult {
    /// The version of the first event written (a stream's first event has version 0).
    pub first_version: u64,
    /// The version of the last event written.
    pub last_version: u64,
    /// The position of the last event written.
    pub position: Position,
}

/// An event read from the store. Its bytes are borrowed from the memory-mapped segment that holds it (which
/// this value keeps mapped); its checksum was verified when it was read.
///
/// ```
/// use annals::{ExpectedVersion, NewEvent, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("account-1", ExpectedVersion::Any, &[NewEvent::new("Deposited", "5").with_metadata("m")])?;
/// let ev = store.read_stream("account-1", 0)?.next().expect("one event")?;
/// assert_eq!((ev.stream(), ev.version(), ev.event_type()), ("account-1", 0, "Deposited"));
/// assert_eq!((ev.payload(), ev.metadata()), (&b"5"[..], &b"m"[..]));
/// assert_eq!(ev.position().as_u64(), 0);
/// assert!(ev.timestamp() > 0);
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Clone)]
pub struct RecordedEvent {
    segment: Arc<Segment>,
    offset: usize,
}

impl RecordedEvent {
    /// Wraps the event frame of `frame_bytes` at `offset`, whose checksum, bounds and UTF-8 names the caller has
    /// verified.
    #[inline]
    pub(crate) fn new(segment: Arc<Segment>, offset: usize, frame_bytes: usize) -> RecordedEvent {
        debug_assert!(offset + frame_bytes <= segment.bytes().len());
        RecordedEvent { segment, offset }
    }

    #[inline]
    fn header(&self) -> EventHeader<'_> {
        EventHeader::new(&self.segment.bytes()[self.offset..])
    }

    #[inline]
    fn slice(&self, (at, len): (usize, usize)) -> &[u8] {
        let start = self.offset + at;
        &self.segment.bytes()[start..start + len]
    }

    /// The stream name's bytes, without the UTF-8 check of [`RecordedEvent::stream`]: for comparing with a
    /// name that is known to be UTF-8.
    pub(crate) fn stream_bytes(&self) -> &[u8] {
        self.slice(self.header().stream())
    }

    /// The stream the event belongs to.
    pub fn stream(&self) -> &str {
        // The iterators checked that the name is UTF-8 before handing the event out.
        std::str::from_utf8(self.slice(self.header().stream())).unwrap_or_default()
    }

    /// The event's version in its stream (0 for the stream's first event).
    pub fn version(&self) -> u64 {
        self.header().version()
    }

    /// The event's position in the store.
    pub fn position(&self) -> Position {
        Position(self.header().position())
    }

    /// The event id.
    pub fn id(&self) -> Uuid {
        Uuid::from_bytes(self.header().id())
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        // The iterators checked that the type is UTF-8 before handing the event out.
        std::str::from_utf8(self.slice(self.header().event_type())).unwrap_or_default()
    }

    /// The payload, borrowed from the mapped segment; it starts at a 16-byte aligned address.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.slice(self.header().payload())
    }

    /// The metadata, borrowed from the mapped segment.
    pub fn metadata(&self) -> &[u8] {
        self.slice(self.header().metadata())
    }

    /// When the event was appended, in microseconds since the Unix epoch.
    pub fn timestamp(&self) -> u64 {
        self.header().timestamp_us()
    }
}

impl fmt::Debug for RecordedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedEvent")
            .field("stream", &self.stream())
            .field("version", &self.version())
            .field("position", &self.position())
            .field("id", &self.id())
            .field("event_type", &self.event_type())
            .field("payload_bytes", &self.payload().len())
            .field("metadata_bytes", &self.metadata().len())
            .field("timestamp", &self.timestamp())
            .finish()
    }
}
