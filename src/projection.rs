//! Projections: read models kept up to date from a subscription, with a durable checkpoint.
//!
//! A [`Projection`] owns its state and its checkpoint (the position below which every event is in the state).
//! The [`ProjectionRunner`] subscribes from that checkpoint, hands the projection batches of events in commit
//! order, and after each batch asks it to [`save`](Projection::save) its state together with the new
//! checkpoint. Where the state and the checkpoint can be written atomically (one file written as tmp, fsync,
//! rename; one database transaction), every event is applied exactly once across crashes: a restart resumes
//! from the checkpoint that was saved with the state. Where they cannot, save the state first and the
//! checkpoint after it: a crash between the two re-applies the events after the old checkpoint, so `apply`
//! must then be idempotent, with the event's position as the key (skip positions the state already holds).
//!
//! The runner never blocks writers: it is an ordinary subscription. It does not retry a failing projection;
//! the error is returned and the caller decides (a restart resumes from the last saved checkpoint).

use std::time::Duration;

use crate::event::{Position, RecordedEvent};
use crate::store::Store;
use crate::subscription::{Subscription, SubscriptionItem, SubscriptionOptions};

/// The error type projections return from [`Projection::apply`] and [`Projection::save`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Default for [`ProjectionRunner::batch_events_max`].
pub const BATCH_EVENTS_MAX_DEFAULT: usize = 1_000;

/// What a [`ProjectionRunner`] can fail with.
///
/// ```
/// use annals::projection::ProjectionError;
/// let e = ProjectionError::Projection("the read model's disk is full".into());
/// assert!(e.to_string().contains("disk is full"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// Reading events from the store failed.
    #[error("reading the store: {0}")]
    Store(#[from] crate::Error),
    /// The projection's `apply` or `save` failed.
    #[error("the projection failed: {0}")]
    Projection(BoxError),
}

/// A read model fed by a [`ProjectionRunner`]: batches of events in, a durable checkpoint out.
///
/// ```
/// use annals::projection::{BoxError, Projection, ProjectionRunner};
/// use annals::{ExpectedVersion, NewEvent, Position, RecordedEvent, Store, SubscriptionOptions};
///
/// /// Counts deposits; "saves" into memory (a real one writes a file or a table, with the checkpoint).
/// #[derive(Default)]
/// struct Deposits { count: u64, checkpoint: Position, saved: Option<(u64, Position)> }
///
/// impl Projection for Deposits {
///     fn options(&self) -> SubscriptionOptions {
///         SubscriptionOptions::new().event_types(["Deposited"])
///     }
///     fn checkpoint(&self) -> Position {
///         self.checkpoint
///     }
///     fn apply(&mut self, events: &[RecordedEvent]) -> Result<(), BoxError> {
///         self.count += events.len() as u64;
///         Ok(())
///     }
///     fn save(&mut self, checkpoint: Position) -> Result<(), BoxError> {
///         self.checkpoint = checkpoint;
///         self.saved = Some((self.count, checkpoint));
///         Ok(())
///     }
/// }
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("account-1", ExpectedVersion::Any, &[NewEvent::new("Opened", ""), NewEvent::new("Deposited", "5")])?;
/// let mut runner = ProjectionRunner::new(&store, Deposits::default());
/// assert_eq!(runner.catch_up()?, Position::from_u64(2));
/// assert_eq!(runner.projection().saved, Some((1, Position::from_u64(2))));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Projection {
    /// Which events the projection wants (filters and checkpoint cadence); the runner sets the start
    /// position from [`Projection::checkpoint`]. Default: every event.
    fn options(&self) -> SubscriptionOptions {
        SubscriptionOptions::new()
    }

    /// The checkpoint saved with the state: every wanted event below it is in the state. [`Position::START`]
    /// for a new projection. Read once, when the runner starts.
    fn checkpoint(&self) -> Position;

    /// Applies events, in commit order, to the state (in memory; durability comes with `save`).
    fn apply(&mut self, events: &[RecordedEvent]) -> Result<(), BoxError>;

    /// Makes the state durable together with `checkpoint`: after a crash, [`Projection::checkpoint`] must
    /// return a checkpoint that matches the state loaded with it.
    fn save(&mut self, checkpoint: Position) -> Result<(), BoxError>;
}

/// Feeds a [`Projection`] from a subscription that starts at its checkpoint, and saves after every batch.
///
/// ```
/// # use annals::projection::{BoxError, Projection, ProjectionRunner};
/// # use annals::{ExpectedVersion, NewEvent, Position, RecordedEvent, Store};
/// # #[derive(Default)] struct Count(u64, Position);
/// # impl Projection for Count {
/// #     fn checkpoint(&self) -> Position { self.1 }
/// #     fn apply(&mut self, e: &[RecordedEvent]) -> Result<(), BoxError> { self.0 += e.len() as u64; Ok(()) }
/// #     fn save(&mut self, c: Position) -> Result<(), BoxError> { self.1 = c; Ok(()) }
/// # }
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let mut runner = ProjectionRunner::new(&store, Count::default()).batch_events_max(10);
/// store.append("a", ExpectedVersion::Any, &[NewEvent::new("E", "")])?;
/// let saved = runner.run_once(std::time::Duration::from_secs(5))?;
/// assert_eq!(saved, Some(Position::from_u64(1)));
/// assert_eq!(runner.into_inner().0, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ProjectionRunner<P> {
    projection: P,
    subscription: Subscription,
    batch_events_max: usize,
    /// The checkpoint last saved (or loaded).
    saved: Position,
    batch: Vec<RecordedEvent>,
}

impl<P: Projection> ProjectionRunner<P> {
    /// A runner for `projection`, subscribed to `store` from the projection's checkpoint.
    ///
    /// ```
    /// # use annals::projection::{BoxError, Projection, ProjectionRunner};
    /// # use annals::{Position, RecordedEvent, Store};
    /// # struct Nothing;
    /// # impl Projection for Nothing {
    /// #     fn checkpoint(&self) -> Position { Position::START }
    /// #     fn apply(&mut self, _: &[RecordedEvent]) -> Result<(), BoxError> { Ok(()) }
    /// #     fn save(&mut self, _: Position) -> Result<(), BoxError> { Ok(()) }
    /// # }
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let runner = ProjectionRunner::new(&store, Nothing);
    /// assert_eq!(runner.checkpoint(), Position::START);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn new(store: &Store, projection: P) -> ProjectionRunner<P> {
        let saved = projection.checkpoint();
        let subscription = store.subscribe(projection.options().from(saved));
        ProjectionRunner {
            projection,
            subscription,
            batch_events_max: BATCH_EVENTS_MAX_DEFAULT,
            saved,
            batch: Vec::new(),
        }
    }

    /// The most events handed to one [`Projection::apply`] (and so per save). Default 1,000; at least 1.
    ///
    /// ```
    /// # use annals::projection::{BoxError, Projection, ProjectionRunner};
    /// # use annals::{Position, RecordedEvent, Store};
    /// # struct Nothing;
    /// # impl Projection for Nothing {
    /// #     fn checkpoint(&self) -> Position { Position::START }
    /// #     fn apply(&mut self, _: &[RecordedEvent]) -> Result<(), BoxError> { Ok(()) }
    /// #     fn save(&mut self, _: Position) -> Result<(), BoxError> { Ok(()) }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::open(dir.path())?;
    /// let runner = ProjectionRunner::new(&store, Nothing).batch_events_max(100);
    /// # drop(runner);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn batch_events_max(mut self, events: usize) -> ProjectionRunner<P> {
        self.batch_events_max = events.max(1);
        self
    }

    /// The projection.
    ///
    /// ```
    /// # use annals::projection::{BoxError, Projection, ProjectionRunner};
    /// # use annals::{Position, RecordedEvent, Store};
    /// # struct Nothing;
    /// # impl Projection for Nothing {
    /// #     fn checkpoint(&self) -> Position { Position::START }
    /// #     fn apply(&mut self, _: &[RecordedEvent]) -> Result<(), BoxError> { Ok(()) }
    /// #     fn save(&mut self, _: Position) -> Result<(), BoxError> { Ok(()) }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::open(dir.path())?;
    /// let runner = ProjectionRunner::new(&store, Nothing);
    /// let _: &Nothing = runner.projection();
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The projection, and the end of the runner (and of its subscription).
    ///
    /// ```
    /// # use annals::projection::{BoxError, Projection, ProjectionRunner};
    /// # use annals::{Position, RecordedEvent, Store};
    /// # struct Nothing;
    /// # impl Projection for Nothing {
    /// #     fn checkpoint(&self) -> Position { Position::START }
    /// #     fn apply(&mut self, _: &[RecordedEvent]) -> Result<(), BoxError> { Ok(()) }
    /// #     fn save(&mut self, _: Position) -> Result<(), BoxError> { Ok(()) }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::open(dir.path())?;
    /// let projection: Nothing = ProjectionRunner::new(&store, Nothing).into_inner();
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn into_inner(self) -> P {
        self.projection
    }

    /// The checkpoint last saved (or the one the projection started from).
    ///
    /// ```
    /// # use annals::projection::{BoxError, Projection, ProjectionRunner};
    /// # use annals::{Position, RecordedEvent, Store};
    /// # struct From7;
    /// # impl Projection for From7 {
    /// #     fn checkpoint(&self) -> Position { Position::from_u64(7) }
    /// #     fn apply(&mut self, _: &[RecordedEvent]) -> Result<(), BoxError> { Ok(()) }
    /// #     fn save(&mut self, _: Position) -> Result<(), BoxError> { Ok(()) }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::open(dir.path())?;
    /// assert_eq!(ProjectionRunner::new(&store, From7).checkpoint(), Position::from_u64(7));
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn checkpoint(&self) -> Position {
        self.saved
    }

    /// One batch: waits up to `timeout` for the first event or checkpoint, takes whatever else is ready (up
    /// to [`ProjectionRunner::batch_events_max`] events), applies the events and saves the new checkpoint.
    /// Returns the checkpoint saved, or `None` if nothing moved.
    ///
    /// ```
    /// # use annals::projection::{BoxError, Projection, ProjectionRunner};
    /// # use annals::{Position, RecordedEvent, Store};
    /// # struct Nothing;
    /// # impl Projection for Nothing {
    /// #     fn checkpoint(&self) -> Position { Position::START }
    /// #     fn apply(&mut self, _: &[RecordedEvent]) -> Result<(), BoxError> { Ok(()) }
    /// #     fn save(&mut self, _: Position) -> Result<(), BoxError> { Ok(()) }
    /// # }
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::open(dir.path())?;
    /// let mut runner = ProjectionRunner::new(&store, Nothing);
    /// assert_eq!(runner.run_once(std::time::Duration::from_millis(1))?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_once(&mut self, timeout: Duration) -> Result<Option<Position>, ProjectionError> {
        self.batch.clear();
        let mut wait = timeout;
        while self.batch.len() < self.batch_events_max {
            match self.subscription.next_item_timeout(wait)? {
                Some(SubscriptionItem::Event(e)) => self.batch.push(e),
                Some(SubscriptionItem::Checkpoint(_)) => {}
                None => break,
            }
            wait = Duration::ZERO;
        }
        // Everything wanted below this is in the batch or was applied before.
        let checkpoint = self.subscription.checkpoint();
        if checkpoint <= self.saved {
            debug_assert!(self.batch.is_empty(), "delivered events move the subscription's checkpoint");
            return Ok(None);
        }
        if !self.batch.is_empty() {
            self.projection.apply(&self.batch).map_err(ProjectionError::Projection)?;
        }
        self.projection.save(checkpoint).map_err(ProjectionError::Projection)?;
        self.saved = checkpoint;
        self.batch.clear();
        Ok(Some(checkpoint))
    }

    /// Applies and saves everything up to the store's head as of this call; returns the checkpoint saved.
    ///
    /// ```
    /// # use annals::projection::{BoxError, Projection, ProjectionRunner};
    /// # use annals::{ExpectedVersion, NewEvent, Position, RecordedEvent, Store};
    /// # #[derive(Default)] struct Count(u64, Position);
    /// # impl Projection for Count {
    /// #     fn checkpoint(&self) -> Position { self.1 }
    /// #     fn apply(&mut self, e: &[RecordedEvent]) -> Result<(), BoxError> { self.0 += e.len() as u64; Ok(()) }
    /// #     fn save(&mut self, c: Position) -> Result<(), BoxError> { self.1 = c; Ok(()) }
    /// # }
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// for _ in 0..5 {
    ///     store.append("a", ExpectedVersion::Any, &[NewEvent::new("E", "")])?;
    /// }
    /// let mut runner = ProjectionRunner::new(&store, Count::default()).batch_events_max(2);
    /// assert_eq!(runner.catch_up()?, Position::from_u64(5));
    /// assert_eq!(runner.projection().0, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn catch_up(&mut self) -> Result<Position, ProjectionError> {
        let head = self.subscription_head();
        while self.saved < head {
            self.run_once(Duration::from_millis(100))?;
        }
        Ok(self.saved)
    }

    /// Runs batches until `stop()` returns true (asked between batches, at least every 100 ms); returns the
    /// checkpoint last saved.
    ///
    /// ```
    /// # use annals::projection::{BoxError, Projection, ProjectionRunner};
    /// # use annals::{ExpectedVersion, NewEvent, Position, RecordedEvent, Store};
    /// # #[derive(Default)] struct Count(u64, Position);
    /// # impl Projection for Count {
    /// #     fn checkpoint(&self) -> Position { self.1 }
    /// #     fn apply(&mut self, e: &[RecordedEvent]) -> Result<(), BoxError> { self.0 += e.len() as u64; Ok(()) }
    /// #     fn save(&mut self, c: Position) -> Result<(), BoxError> { self.1 = c; Ok(()) }
    /// # }
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a", ExpectedVersion::Any, &[NewEvent::new("E", ""), NewEvent::new("E", "")])?;
    /// let mut runner = ProjectionRunner::new(&store, Count::default());
    /// let saved = runner.run_until(|p| p.0 == 2)?;
    /// assert_eq!(saved, Position::from_u64(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_until(&mut self, mut stop: impl FnMut(&P) -> bool) -> Result<Position, ProjectionError> {
        while !stop(&self.projection) {
            self.run_once(Duration::from_millis(100))?;
        }
        Ok(self.saved)
    }

    fn subscription_head(&self) -> Position {
        self.subscription.store().head()
    }
}

impl<P> std::fmt::Debug for ProjectionRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("saved", &self.saved)
            .field("batch_events_max", &self.batch_events_max)
            .field("subscription", &self.subscription)
            .finish()
    }
}
