//! Subscriptions: catch up from the log, then follow it live, woken by the notification ring.
//!
//! A subscription reads the log itself, exactly as `read_all` (or `read_stream`) does, up to a head it learned
//! of; when it has read everything below that head it asks the ring ([`crate::notify`]) for a newer one and,
//! if there is none, waits on the ring (spin briefly, then park). Because every event is read from the log,
//! in position order, events arrive exactly once, in commit order, without gaps, however far the subscriber
//! falls behind: the ring only says "the head moved to X" and a subscriber that lagged past its capacity
//! just reads the head. Writers never wait for subscribers.
//!
//! Invariants: the subscription's ring cursor is taken before it first reads the head, so no publication is
//! missed; it never reads at or past a head it was told of (so in `Sync` mode it never sees an event before
//! it is durable); [`Subscription::checkpoint`] only moves forward, and every matching event below it has been
//! delivered. A subscription holds the store open, like the read iterators.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{Position, RecordedEvent};
use crate::log::reader::ReadAll;
use crate::notify::{Cursor, Recv, Ring};
use crate::store::{ReadStream, Shared, Store};
use crate::{Error, Result};

/// Default for [`SubscriptionOptions::checkpoint_every`].
pub const CHECKPOINT_EVERY_EVENTS_DEFAULT: u64 = 10_000;
/// Default for [`SubscriptionOptions::checkpoint_interval`].
pub const CHECKPOINT_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);

/// What a subscription delivers and from where: a builder for [`Store::subscribe`].
///
/// By default: every event, from [`Position::START`]. Filters combine with *and*: an event is delivered if
/// its stream name starts with the prefix (when one is set) and its type is one of the types (when some are
/// set). Events that do not match are read and skipped; while a filter matches nothing, the subscription
/// reports a checkpoint at least every [`checkpoint_every`](Self::checkpoint_every) events or
/// [`checkpoint_interval`](Self::checkpoint_interval), so that a consumer's persisted position moves through
/// sparse stretches (see [`Subscription::next_item_timeout`]).
///
/// ```
/// use std::time::Duration;
/// use annals::{ExpectedVersion, NewEvent, Position, Store, SubscriptionOptions};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("account-1", ExpectedVersion::Any, &[NewEvent::new("Deposited", "5")])?;
/// store.append("order-1", ExpectedVersion::Any, &[NewEvent::new("Placed", "")])?;
/// store.append("account-1", ExpectedVersion::Any, &[NewEvent::new("Withdrawn", "2")])?;
/// let mut sub = store.subscribe(
///     SubscriptionOptions::new().from(Position::START).stream_prefix("account-").event_types(["Deposited"]),
/// );
/// let ev = sub.next_timeout(Duration::from_secs(5))?.expect("the deposit");
/// assert_eq!((ev.stream(), ev.event_type()), ("account-1", "Deposited"));
/// assert!(sub.next_timeout(Duration::from_millis(10))?.is_none());
/// assert_eq!(sub.checkpoint(), Position::from_u64(3)); // scanned through everything
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SubscriptionOptions {
    from: Position,
    stream_prefix: Option<Box<str>>,
    event_types: Option<Box<[Box<str>]>>,
    checkpoint_every_events: u64,
    checkpoint_interval: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> SubscriptionOptions {
        SubscriptionOptions::new()
    }
}

impl SubscriptionOptions {
    /// Every event from [`Position::START`], checkpoints every 10,000 events or 1 s.
    ///
    /// ```
    /// let options = annals::SubscriptionOptions::new();
    /// # let _ = options;
    /// ```
    pub fn new() -> SubscriptionOptions {
        SubscriptionOptions {
            from: Position::START,
            stream_prefix: None,
            event_types: None,
            checkpoint_every_events: CHECKPOINT_EVERY_EVENTS_DEFAULT,
            checkpoint_interval: CHECKPOINT_INTERVAL_DEFAULT,
        }
    }

    /// The first position to read (inclusive): [`Position::START`], or a checkpoint saved from
    /// [`Subscription::checkpoint`]. A position past the head waits until events get there.
    ///
    /// ```
    /// use annals::{Position, SubscriptionOptions};
    /// let options = SubscriptionOptions::new().from(Position::from_u64(42));
    /// # let _ = options;
    /// ```
    pub fn from(mut self, from: Position) -> SubscriptionOptions {
        self.from = from;
        self
    }

    /// Deliver only events of streams whose name starts with `prefix` (a category such as `"account-"`).
    /// Replaces an earlier prefix.
    ///
    /// ```
    /// let options = annals::SubscriptionOptions::new().stream_prefix("account-");
    /// # let _ = options;
    /// ```
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> SubscriptionOptions {
        self.stream_prefix = Some(prefix.into().into_boxed_str());
        self
    }

    /// Deliver only events whose type is one of `types` (exact match). Replaces earlier types; an empty
    /// list matches nothing.
    ///
    /// ```
    /// let options = annals::SubscriptionOptions::new().event_types(["Deposited", "Withdrawn"]);
    /// # let _ = options;
    /// ```
    pub fn event_types<I, S>(mut self, types: I) -> SubscriptionOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = Some(types.into_iter().map(|t| t.into().into_boxed_str()).collect());
        self
    }

    /// Report a checkpoint after at most this many events were skipped by the filters without one being
    /// reported (default 10,000; at least 1).
    ///
    /// ```
    /// let options = annals::SubscriptionOptions::new().checkpoint_every(1_000);
    /// # let _ = options;
    /// ```
    pub fn checkpoint_every(mut self, events: u64) -> SubscriptionOptions {
        self.checkpoint_every_events = events.max(1);
        self
    }

    /// Report a checkpoint when events were skipped and the last report is this old, while waiting for new
    /// events (default 1 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = annals::SubscriptionOptions::new().checkpoint_interval(Duration::from_millis(250));
    /// # let _ = options;
    /// ```
    pub fn checkpoint_interval(mut self, interval: Duration) -> SubscriptionOptions {
        self.checkpoint_interval = interval;
        self
    }
}

/// One step of a subscription, from [`Subscription::next_item_timeout`]: an event, or a checkpoint reported
/// while the filters skipped events.
///
/// ```
/// use std::time::Duration;
/// use annals::{ExpectedVersion, NewEvent, Position, Store, SubscriptionItem, SubscriptionOptions};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// for _ in 0..3 {
///     store.append("order-1", ExpectedVersion::Any, &[NewEvent::new("Placed", "")])?;
/// }
/// let mut sub = store.subscribe(SubscriptionOptions::new().stream_prefix("account-").checkpoint_every(2));
/// match sub.next_item_timeout(Duration::from_secs(5))? {
///     Some(SubscriptionItem::Checkpoint(p)) => assert_eq!(p, Position::from_u64(2)),
///     other => panic!("expected a checkpoint, got {other:?}"),
/// }
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Debug, Clone)]
pub enum SubscriptionItem {
    /// The next matching event.
    Event(RecordedEvent),
    /// Every matching event below this position has been delivered: a consumer may persist it and resume
    /// from it later ([`SubscriptionOptions::from`]).
    Checkpoint(Position),
}

/// Which events a subscription delivers.
#[derive(Debug, Clone)]
struct Filter {
    stream_prefix: Option<Box<str>>,
    event_types: Option<Box<[Box<str>]>>,
}

impl Filter {
    fn matches(&self, ev: &RecordedEvent) -> bool {
        if let Some(prefix) = &self.stream_prefix {
            if !ev.stream().starts_with(&**prefix) {
                return false;
            }
        }
        match &self.event_types {
            Some(types) => types.iter().any(|t| **t == *ev.event_type()),
            None => true,
        }
    }

    fn is_all(&self) -> bool {
        self.stream_prefix.is_none() && self.event_types.is_none()
    }
}

/// Where a subscription reads from.
enum Source {
    /// The whole log in commit order (`subscribe_all`, `subscribe`), filtered.
    All { reader: ReadAll, filter: Filter },
    /// One stream, through the stream index (`subscribe_stream`).
    Stream {
        stream: Box<str>,
        next_version: u64,
        reader: Option<ReadStream>,
        /// A new `read_stream` is due: the head moved since the last one was made.
        stale: bool,
        /// The head known when the current `read_stream` was made.
        reader_end: u64,
        /// Every event of the stream below this has been delivered.
        position: u64,
    },
}

/// A live subscription: every event from a position on (or every event of one stream, or every event that
/// passes a filter), exactly once each, in commit order, with no gaps: first those already in the store, then
/// each new one as soon as it is visible to readers (durable with [`crate::Durability::Sync`], written with
/// [`crate::Durability::Buffered`]).
///
/// A blocking [`Iterator`] (it ends only after an error); [`Subscription::next_timeout`] waits at most a given
/// time. `Send`. It holds the store open. A slow subscription never slows or blocks writers: it reads the log
/// at its own pace.
///
/// ```
/// use std::time::Duration;
/// use annals::{ExpectedVersion, NewEvent, Position, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("account-1", ExpectedVersion::Any, &[NewEvent::new("Opened", "")])?;
/// let mut sub = store.subscribe_all(Position::START);
/// let writer = {
///     let store = store.clone();
///     std::thread::spawn(move || store.append("account-1", ExpectedVersion::Exact(0), &[NewEvent::new("Deposited", "5")]))
/// };
/// let types: Vec<String> = sub.by_ref().take(2).map(|e| e.map(|e| e.event_type().to_owned())).collect::<Result<_, _>>()?;
/// assert_eq!(types, ["Opened", "Deposited"]);
/// writer.join().unwrap()?;
/// assert!(sub.next_timeout(Duration::from_millis(10))?.is_none());
/// # Ok::<(), annals::Error>(())
/// ```
pub struct Subscription {
    store: Store,
    /// This subscriber's place in the ring; taken before the first read of the head.
    cursor: Cursor,
    /// The newest head this subscription knows of: positions below it are visible.
    end: u64,
    source: Source,
    checkpoint_every_events: u64,
    checkpoint_interval: Duration,
    /// The position last reported (by a checkpoint, or implied by a delivered event).
    reported: u64,
    reported_at: Instant,
    /// An error was returned: the iterator is over.
    failed: bool,
}

impl Subscription {
    pub(crate) fn all(store: Store, options: SubscriptionOptions) -> Subscription {
        let shared = store.shared().clone();
        let cursor = shared.notify().cursor();
        let end = shared.head();
        let from = options.from.as_u64();
        let filter = Filter { stream_prefix: options.stream_prefix, event_types: options.event_types };
        Subscription {
            store,
            cursor,
            end,
            source: Source::All { reader: ReadAll::new(shared, from, end), filter },
            checkpoint_every_events: options.checkpoint_every_events,
            checkpoint_interval: options.checkpoint_interval,
            reported: from,
            reported_at: Instant::now(),
            failed: false,
        }
    }

    pub(crate) fn stream(store: Store, stream: &str, from_version: u64) -> Subscription {
        let shared = store.shared().clone();
        let cursor = shared.notify().cursor();
        let end = shared.head();
        Subscription {
            store,
            cursor,
            end,
            source: Source::Stream {
                stream: stream.into(),
                next_version: from_version,
                reader: None,
                stale: true,
                reader_end: end,
                position: 0,
            },
            checkpoint_every_events: CHECKPOINT_EVERY_EVENTS_DEFAULT,
            checkpoint_interval: CHECKPOINT_INTERVAL_DEFAULT,
            reported: 0,
            reported_at: Instant::now(),
            failed: false,
        }
    }

    /// The store this subscription reads.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    fn shared(&self) -> &Arc<Shared> {
        self.store.shared()
    }

    fn ring(&self) -> &Ring {
        self.store.shared().notify()
    }

    /// The next event, waiting at most `timeout` for one; `Ok(None)` on timeout. Checkpoints are not
    /// returned here (see [`Subscription::next_item_timeout`]), but [`Subscription::checkpoint`] moves on.
    ///
    /// ```
    /// use std::time::Duration;
    /// use annals::{Position, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let mut sub = store.subscribe_all(Position::START);
    /// assert!(sub.next_timeout(Duration::from_millis(5))?.is_none());
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        let deadline = Instant::now().checked_add(timeout);
        match self.next_until(deadline, false)? {
            Some(SubscriptionItem::Event(e)) => Ok(Some(e)),
            Some(SubscriptionItem::Checkpoint(_)) => unreachable!("checkpoints were not asked for"),
            None => Ok(None),
        }
    }

    /// The next event or checkpoint, waiting at most `timeout`; `Ok(None)` on timeout. A checkpoint comes
    /// when the filters skipped [`SubscriptionOptions::checkpoint_every`] events since the last report, or,
    /// while waiting, when events were skipped and the last report is older than
    /// [`SubscriptionOptions::checkpoint_interval`]. Persist it with the consumer's state to resume there.
    ///
    /// ```
    /// use std::time::Duration;
    /// use annals::{ExpectedVersion, NewEvent, Position, Store, SubscriptionItem, SubscriptionOptions};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("order-1", ExpectedVersion::Any, &[NewEvent::new("Placed", "")])?;
    /// let mut sub = store.subscribe(
    ///     SubscriptionOptions::new().stream_prefix("account-").checkpoint_interval(Duration::from_millis(1)),
    /// );
    /// let item = sub.next_item_timeout(Duration::from_secs(5))?;
    /// assert!(matches!(item, Some(SubscriptionItem::Checkpoint(p)) if p == Position::from_u64(1)));
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn next_item_timeout(&mut self, timeout: Duration) -> Result<Option<SubscriptionItem>> {
        self.next_until(Instant::now().checked_add(timeout), true)
    }

    /// The next event or checkpoint, blocking until there is one. See [`Subscription::next_item_timeout`].
    ///
    /// ```
    /// use annals::{ExpectedVersion, NewEvent, Position, Store, SubscriptionItem};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a", ExpectedVersion::Any, &[NewEvent::new("E", "")])?;
    /// let mut sub = store.subscribe_all(Position::START);
    /// assert!(matches!(sub.next_item()?, SubscriptionItem::Event(_)));
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn next_item(&mut self) -> Result<SubscriptionItem> {
        match self.next_until(None, true)? {
            Some(item) => Ok(item),
            None => unreachable!("no deadline"),
        }
    }

    /// Where the subscription stands: every matching event below this position has been delivered (or, for
    /// a stream subscription, every event of the stream below it). Moves through events the filters skip
    /// too; persist it as a checkpoint and pass it to [`SubscriptionOptions::from`] to resume. For a stream
    /// subscription resume by version instead ([`Store::subscribe_stream`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use annals::{ExpectedVersion, NewEvent, Position, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a", ExpectedVersion::Any, &[NewEvent::new("E", ""), NewEvent::new("E", "")])?;
    /// let mut sub = store.subscribe_all(Position::START);
    /// sub.next_timeout(Duration::from_secs(1))?;
    /// assert_eq!(sub.checkpoint(), Position::from_u64(1));
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn checkpoint(&self) -> Position {
        Position::from_u64(match &self.source {
            Source::All { reader, .. } => reader.next_position(),
            Source::Stream { position, .. } => *position,
        })
    }

    /// Waits for the next item until `deadline` (forever with `None`).
    fn next_until(&mut self, deadline: Option<Instant>, checkpoints: bool) -> Result<Option<SubscriptionItem>> {
        if self.failed {
            return Err(Error::invalid("the subscription already returned an error"));
        }
        let r = self.next_until_inner(deadline, checkpoints);
        self.failed = r.is_err();
        r
    }

    fn next_until_inner(&mut self, deadline: Option<Instant>, checkpoints: bool) -> Result<Option<SubscriptionItem>> {
        loop {
            if let Some(item) = self.poll_item(checkpoints)? {
                return Ok(Some(item));
            }
            let now = Instant::now();
            let mut wake_at = deadline;
            if checkpoints && self.checkpoint().as_u64() > self.reported {
                let due = self.reported_at + self.checkpoint_interval;
                if now >= due {
                    return Ok(Some(self.report_checkpoint()));
                }
                wake_at = Some(wake_at.map_or(due, |d| d.min(due)));
            }
            if deadline.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            self.store.shared().notify().wait(&self.cursor, wake_at);
        }
    }

    fn report_checkpoint(&mut self) -> SubscriptionItem {
        let p = self.checkpoint();
        debug_assert!(p.as_u64() >= self.reported, "checkpoints only move forward");
        self.reported = p.as_u64();
        self.reported_at = Instant::now();
        SubscriptionItem::Checkpoint(p)
    }

    /// Without blocking: the next item from the log below the known head, after asking the ring for a newer
    /// head when that is exhausted. `Ok(None)` when there is nothing new.
    fn poll_item(&mut self, checkpoints: bool) -> Result<Option<SubscriptionItem>> {
        loop {
            if let Some(item) = self.read_available(checkpoints)? {
                return Ok(Some(item));
            }
            // Everything below `end` is read: is there a newer head?
            let newer = match self.store.shared().notify().recv_latest(&mut self.cursor) {
                Recv::Value(head) => head,
                // Fell behind the ring: the log's head is the truth (it is stored before it is published).
                Recv::Lagged { .. } => self.shared().head(),
                Recv::Empty => self.end,
            };
            if newer > self.end {
                self.end = newer;
                match &mut self.source {
                    Source::All { reader, .. } => reader.extend_to(newer),
                    Source::Stream { stale, .. } => *stale = true,
                }
                continue;
            }
            if self.ring().is_closed() {
                return Err(Error::Poisoned);
            }
            return Ok(None);
        }
    }

    /// The next item below `end`, reading (and skipping) from the log.
    fn read_available(&mut self, checkpoints: bool) -> Result<Option<SubscriptionItem>> {
        match &mut self.source {
            Source::All { reader, filter } => {
                let all = filter.is_all();
                for ev in reader.by_ref() {
                    let ev = ev?;
                    let next = ev.position().as_u64() + 1;
                    if all || filter.matches(&ev) {
                        // A delivered event is as good as a report of the position after it (the clock is left
                        // alone: reading it per event would cost more than reading the event).
                        self.reported = next;
                        return Ok(Some(SubscriptionItem::Event(ev)));
                    }
                    if checkpoints && next - self.reported >= self.checkpoint_every_events {
                        self.reported = next;
                        self.reported_at = Instant::now();
                        return Ok(Some(SubscriptionItem::Checkpoint(Position::from_u64(next))));
                    }
                }
                Ok(None)
            }
            Source::Stream { stream, next_version, reader, stale, reader_end, position } => loop {
                if let Some(r) = reader {
                    match r.next() {
                        Some(ev) => {
                            let ev = ev?;
                            assert_eq!(ev.version(), *next_version, "a stream's events come in version order");
                            *next_version += 1;
                            *position = ev.position().as_u64() + 1;
                            self.reported = *position;
                            return Ok(Some(SubscriptionItem::Event(ev)));
                        }
                        None => {
                            *reader = None;
                            // Every event of the stream below the head it was made at has been delivered.
                            *position = (*position).max(*reader_end);
                        }
                    }
                }
                if !*stale {
                    return Ok(None);
                }
                *stale = false;
                *reader_end = self.end;
                *reader = Some(self.store.read_stream(stream, *next_version)?);
            },
        }
    }
}

impl Iterator for Subscription {
    type Item = Result<RecordedEvent>;

    /// The next event, blocking until there is one. `None` only after an error was returned.
    fn next(&mut self) -> Option<Result<RecordedEvent>> {
        if self.failed {
            return None;
        }
        // The catch-up fast path: an unfiltered subscription with events below the known head.
        if let Source::All { reader, filter } = &mut self.source {
            if filter.is_all() {
                match reader.next() {
                    Some(Ok(e)) => {
                        // The reader has moved just past the event it returned.
                        self.reported = reader.next_position();
                        return Some(Ok(e));
                    }
                    Some(Err(e)) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                    None => {}
                }
            }
        }
        match self.next_until(None, false) {
            Ok(Some(SubscriptionItem::Event(e))) => Some(Ok(e)),
            Ok(_) => unreachable!("no deadline and no checkpoints"),
            Err(e) => Some(Err(e)),
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Subscription");
        if let Source::Stream { stream, next_version, .. } = &self.source {
            d.field("stream", stream).field("next_version", next_version);
        }
        d.field("position", &self.checkpoint()).field("known_head", &self.end).finish()
    }
}

#[cfg(feature = "async")]
pub use self::stream::SubscriptionStream;

#[cfg(feature = "async")]
mod stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::{Subscription, SubscriptionItem};
    use crate::{RecordedEvent, Result};

    /// A [`Subscription`] as a [`futures_core::Stream`] of events (feature `async`), from
    /// [`Subscription::into_stream`]. Executor-agnostic: it registers the task's waker with the
    /// notification ring, and the committer wakes it when the head moves. Never blocks a thread: catching
    /// up reads mapped memory; waiting returns `Poll::Pending`. Checkpoints are not delivered; read
    /// [`SubscriptionStream::checkpoint`].
    ///
    /// ```
    /// use annals::{ExpectedVersion, NewEvent, Position, Store};
    /// use futures_core::Stream;
    /// use std::task::{Context, Poll, Waker};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a", ExpectedVersion::Any, &[NewEvent::new("E", "")])?;
    /// let mut stream = std::pin::pin!(store.subscribe_all(Position::START).into_stream());
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(matches!(stream.as_mut().poll_next(&mut cx), Poll::Ready(Some(Ok(_)))));
    /// assert!(stream.as_mut().poll_next(&mut cx).is_pending());
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub struct SubscriptionStream {
        sub: Subscription,
        /// This stream's key in the ring's list of wakers, once it waited.
        key: Option<u64>,
    }

    impl Subscription {
        /// This subscription as an async [`futures_core::Stream`] of events (feature `async`).
        ///
        /// ```
        /// use annals::{Position, Store};
        /// let dir = tempfile::tempdir()?;
        /// let store = Store::open(dir.path())?;
        /// let stream = store.subscribe_all(Position::START).into_stream();
        /// # drop(stream);
        /// # Ok::<(), annals::Error>(())
        /// ```
        pub fn into_stream(self) -> SubscriptionStream {
            SubscriptionStream { sub: self, key: None }
        }
    }

    impl SubscriptionStream {
        /// See [`Subscription::checkpoint`].
        ///
        /// ```
        /// use annals::{Position, Store};
        /// let dir = tempfile::tempdir()?;
        /// let store = Store::open(dir.path())?;
        /// assert_eq!(store.subscribe_all(Position::START).into_stream().checkpoint(), Position::START);
        /// # Ok::<(), annals::Error>(())
        /// ```
        pub fn checkpoint(&self) -> crate::Position {
            self.sub.checkpoint()
        }
    }

    impl futures_core::Stream for SubscriptionStream {
        type Item = Result<RecordedEvent>;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<RecordedEvent>>> {
            let this = self.get_mut();
            if this.sub.failed {
                return Poll::Ready(None);
            }
            loop {
                match this.sub.poll_item(false) {
                    Ok(Some(SubscriptionItem::Event(e))) => return Poll::Ready(Some(Ok(e))),
                    Ok(Some(SubscriptionItem::Checkpoint(_))) => unreachable!("checkpoints were not asked for"),
                    Ok(None) => {
                        let ring = this.sub.store.shared().notify();
                        let key = *this.key.get_or_insert_with(|| ring.waker_key());
                        if !ring.register(&this.sub.cursor, key, cx.waker()) {
                            return Poll::Pending;
                        }
                    }
                    Err(e) => {
                        this.sub.failed = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
        }
    }

    impl Drop for SubscriptionStream {
        fn drop(&mut self) {
            if let Some(key) = self.key {
                self.sub.store.shared().notify().unregister(key);
            }
        }
    }
}
