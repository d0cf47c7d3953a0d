//! Group commit: makes written appends durable with as few `fdatasync`s as possible, and publishes them.
//!
//! Appends are written under the writer lock (`Buffered`: into the tail segment's mapping; `Sync`: into the
//! writer's buffer, which the next leader writes to the file with one `pwrite`, its `Flusher`), then wait
//! here until a sync covers them. Whoever needs durability and finds no sync running becomes the *leader*: it
//! captures the end of what has been written, syncs once for all of it, and wakes everyone it covered (the
//! blocked appenders sleep on one futex word: the leader marks the ones it covered, lets go of the lock, and
//! wakes them all with one system call); appends that arrive while a sync runs form the next group. A lone
//! writer therefore syncs inline with no added delay. When recent groups show that several writers are
//! active, the leader first waits, for at most about one sync's duration, until as many appends are pending
//! as in the largest recent group: without that, 16 blocking writers fall into alternating large and small
//! groups (RocksDB's write-group leader and KurrentDB's flush-when-idle writer are the models; neither is
//! copied).
//!
//! Waiting threads first yield the CPU in a loop (`sched_yield`) for about two syncs' time, and only then
//! sleep: a released appender then goes on without a wake-up, and a gathering leader sees its group fill
//! without being notified. Sleeping and waking 16 threads per sync cost more CPU here than the appends
//! themselves (docs/PERFORMANCE.md). [`crate::Options::spin_wait`] turns this off; against syncs slower than a
//! millisecond it is off anyway.
//!
//! A committer thread leads syncs for async appenders (so no runtime thread blocks on `fdatasync`) and, in
//! `Buffered` mode, syncs at the configured interval.
//!
//! Invariants: `durable <= written`; every position below `durable` is on stable storage; readers see
//! positions below `head`, which is `durable` in `Sync` mode and `written` in `Buffered` mode. A failed sync
//! poisons the commit: it is never retried (the kernel may have dropped the dirty pages; see the fsyncgate
//! study), every waiter it covered and every later append fails.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::log::segment::Segment;
use crate::notify::Ring;
use crate::{Error, Result};

/// The longest a leader waits for its group to fill.
const GROUP_WAIT_MAX: Duration = Duration::from_micros(500);
/// With spinning on ([`Commit::new`]), waiting threads yield instead of sleeping only while syncs take at most
/// this long on average: against a slow device the CPU they would burn buys nothing, since a sleep and wake-up
/// (tens of microseconds) are then a small part of the wait.
const SPIN_SYNC_MAX: Duration = Duration::from_millis(1);
/// How many recent group sizes the leader remembers.
const RECENT_GROUPS: usize = 8;

pub struct Commit {
    state: Mutex<CommitState>,
    /// A leader waiting for its group to fill sleeps here; appenders notify it.
    leader_cv: Condvar,
    /// Blocked appenders waiting for durability sleep here; the leader notifies them after each sync.
    done_cv: Condvar,
    /// The committer thread sleeps here.
    committer_cv: Condvar,
    /// Readers see positions below this. Stored (Release) after the events are in the index; loaded (Acquire)
    /// by readers.
    head: AtomicU64,
    /// Every position below this is durable. Stored (Release) after a sync returned; loaded (Acquire) by the
    /// writer to stamp frames with the watermark.
    durable: AtomicU64,
    poisoned: AtomicBool,
    /// The futex word blocked appenders sleep on: bumped (Release) after marking some of them released, then
    /// all sleepers are woken at once. One `futex` wake for a group of 16 costs a few microseconds; waking each
    /// appender on its own (`unpark`) took the leader a median 70 us for 15 of them, on the critical path
    /// between two syncs.
    wake_epoch: AtomicU32,
    /// `Buffered` mode: publish at write, not at sync.
    publish_on_write: bool,
    /// Subscribers' wake-ups: every store of `head` is followed by a publication here, under the commit lock
    /// (so there is one producer at a time).
    notify: Ring,
    /// Writes what the writer holds unwritten ([`crate::log::writer::Writer::flush`]) before a sync; `None`
    /// when appends go straight to the page cache (`Buffered`).
    flusher: Option<Flusher>,
    /// Whether waiting threads (blocked appenders, and a leader gathering its group) yield the CPU in a loop
    /// for about two syncs before they sleep ([`crate::Options::spin_wait`]).
    spin: bool,
}

/// Makes the page cache hold everything written so far (taking the writer lock), and says up to which position
/// that is, and in which segment file. A leader calls it before its sync, holding no commit lock.
pub type Flusher = Box<dyn Fn() -> io::Result<(u64, Option<Arc<Segment>>)> + Send + Sync>;

struct CommitState {
    written: u64,
    durable: u64,
    /// The segment to sync: the writer's tail as of `written`.
    file: Option<Arc<Segment>>,
    syncing: bool,
    leader_waiting: bool,
    /// Appends written since the current leader captured its group.
    pending_appends: u32,
    recent_groups: [u32; RECENT_GROUPS],
    next_group_slot: usize,
    /// Moving average of recent sync durations.
    sync_average: Duration,
    last_sync_end: Instant,
    poisoned: Option<(io::ErrorKind, String)>,
    /// Some caller has been told of the poisoning error (as `Error::Io`); later callers get `Error::Poisoned`.
    reported: bool,
    /// Async appenders: (position they need durable, waker).
    wakers: Vec<(u64, Waker)>,
    /// Blocked appenders parked until a sync covers them (or they are picked to lead the next one).
    parked: Vec<Parked>,
    /// An empty vector kept for the leader's list of appenders to wake (no allocation per sync).
    spare_parked: Vec<Parked>,
    shutdown: bool,
    /// Syncs completed, and the appends they covered (for statistics).
    syncs: u64,
    synced_appends: u64,
}

/// A blocked appender waiting for a sync: released by the leader of the sync that covers it, or picked to lead
/// the next one. Released appenders do not take the commit lock again, so a finished sync does not send every
/// waiter into it at once, as a condition variable's `notify_all` would (the W2 write-up in
/// docs/PERFORMANCE.md).
struct Parked {
    target: u64,
    /// Set (Release) before the leader bumps [`Commit::wake_epoch`]; the sleeping appender loops on it
    /// (Acquire), so a wake-up meant for others only sends it back to sleep.
    released: Arc<AtomicBool>,
}

impl Parked {
    /// Marks the appender released. It wakes at the next [`Commit::wake_parked`].
    fn release(self) {
        self.released.store(true, Ordering::Release);
    }
}

impl Commit {
    pub fn new(
        next_position: u64,
        file: Option<Arc<Segment>>,
        publish_on_write: bool,
        flusher: Option<Flusher>,
        spin: bool,
    ) -> Commit {
        Commit {
            state: Mutex::new(CommitState {
                written: next_position,
                durable: next_position,
                file,
                syncing: false,
                leader_waiting: false,
                pending_appends: 0,
                recent_groups: [1; RECENT_GROUPS],
                next_group_slot: 0,
                sync_average: Duration::from_micros(50),
                last_sync_end: Instant::now(),
                poisoned: None,
                reported: false,
                wakers: Vec::new(),
                parked: Vec::new(),
                spare_parked: Vec::new(),
                shutdown: false,
                syncs: 0,
                synced_appends: 0,
            }),
            leader_cv: Condvar::new(),
            done_cv: Condvar::new(),
            committer_cv: Condvar::new(),
            head: AtomicU64::new(next_position),
            durable: AtomicU64::new(next_position),
            poisoned: AtomicBool::new(false),
            wake_epoch: AtomicU32::new(0),
            publish_on_write,
            notify: Ring::new(),
            flusher,
            spin,
        }
    }

    /// The ring on which every new head is published, for subscriptions.
    pub fn notify(&self) -> &Ring {
        &self.notify
    }

    fn lock(&self) -> MutexGuard<'_, CommitState> {
        // The state is updated only in short sections without user code; a panic there is a bug and the
        // counters stay conservative (durable never ahead of the disk).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The position readers may see up to (exclusive).
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Every position below this is durable.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Records that an append ending at `end` is in `file`'s mapping. Called under the writer lock, in
    /// position order.
    pub fn note_written(&self, end: u64, file: &Arc<Segment>) {
        let mut st = self.lock();
        assert!(end > st.written, "appends are noted in position order");
        st.written = end;
        if !st.file.as_ref().is_some_and(|f| Arc::ptr_eq(f, file)) {
            st.file = Some(file.clone());
        }
        st.pending_appends += 1;
        if self.publish_on_write {
            self.head.store(end, Ordering::Release);
            self.notify.publish(end);
        }
        if st.leader_waiting && st.pending_appends >= expected_group(&st) {
            self.leader_cv.notify_one();
        }
    }

    /// Poisons the commit after a failed write of log data: later appends fail, waiters are woken. The caller
    /// reports `error` itself.
    pub fn poison(&self, error: &io::Error) {
        let mut st = self.lock();
        self.poison_locked(&mut st, error);
        st.reported = true;
    }

    /// The poisoning error as `Error::Io` if no caller has been told of it yet (it happened in a background
    /// sync), else `Error::Poisoned`. For a caller refused because the store is poisoned.
    pub fn refusal(&self) -> Error {
        let mut st = self.lock();
        match &st.poisoned {
            Some(p) if !st.reported => {
                let e = poison_error(p);
                st.reported = true;
                e
            }
            _ => Error::Poisoned,
        }
    }

    fn poison_locked(&self, st: &mut CommitState, error: &io::Error) {
        if st.poisoned.is_none() {
            st.poisoned = Some((error.kind(), error.to_string()));
        }
        self.poisoned.store(true, Ordering::Release);
        self.notify.close();
        for (_, w) in st.wakers.drain(..) {
            w.wake();
        }
        st.parked.drain(..).for_each(Parked::release);
        self.wake_parked();
        self.done_cv.notify_all();
    }

    /// Blocks until every position below `target` is durable, leading a sync if none is running.
    pub fn wait_durable(&self, target: u64) -> Result<()> {
        let mut st = self.lock();
        loop {
            if st.durable >= target {
                return Ok(());
            }
            if let Some(p) = &st.poisoned {
                let e = poison_error(p);
                st.reported = true;
                return Err(e);
            }
            if st.syncing {
                let released = Arc::new(AtomicBool::new(false));
                st.parked.push(Parked { target, released: released.clone() });
                let spin = self.spin_budget(&st);
                drop(st);
                // Yield until released, for about the running sync and the next: the leader's release is then
                // seen without a sleep and a wake-up, which on this project's machine cost more CPU than the
                // appends they separate (docs/PERFORMANCE.md, "Waiting by yielding").
                if let Some(spin) = spin {
                    let until = Instant::now() + spin;
                    while !released.load(Ordering::Acquire) && Instant::now() < until {
                        std::thread::yield_now();
                    }
                }
                loop {
                    // The epoch is read before the flag: a release after this read bumps the epoch, and then
                    // the wait returns at once instead of sleeping.
                    let epoch = self.wake_epoch.load(Ordering::Acquire);
                    if released.load(Ordering::Acquire) {
                        break;
                    }
                    atomic_wait::wait(&self.wake_epoch, epoch);
                }
                // Covered: done, without taking the lock again (the leader stored `durable` before waking).
                if self.durable.load(Ordering::Acquire) >= target {
                    return Ok(());
                }
                st = self.lock();
            } else {
                st = self.lead(st, true);
            }
        }
    }

    /// How long a waiting thread yields before it sleeps: twice the average sync, if spinning is on and syncs
    /// are fast enough for it to pay ([`SPIN_SYNC_MAX`]).
    fn spin_budget(&self, st: &CommitState) -> Option<Duration> {
        (self.spin && st.sync_average <= SPIN_SYNC_MAX).then(|| st.sync_average * 2)
    }

    /// Waits up to `timeout` for every position below `target` to be durable, without leading a sync (for
    /// background work that must not be the one to meet a failed sync). Returns whether it is.
    pub fn wait_durable_for(&self, target: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if st.durable >= target {
                return Ok(true);
            }
            if let Some(p) = &st.poisoned {
                return Err(poison_error(p));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            st = self.done_cv.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Makes everything written so far durable (for `Store::sync`): joins a running sync or leads one, without
    /// waiting for a group to form.
    pub fn sync_all(&self) -> Result<()> {
        self.sync_all_for(true)
    }

    /// [`Commit::sync_all`] for background work: a failure is left for the next caller to be told of.
    pub fn sync_all_background(&self) -> Result<()> {
        self.sync_all_for(false)
    }

    fn sync_all_for(&self, reports: bool) -> Result<()> {
        let mut st = self.lock();
        let target = st.written;
        loop {
            if st.durable >= target {
                return Ok(());
            }
            if let Some(p) = &st.poisoned {
                let e = poison_error(p);
                st.reported |= reports;
                return Err(e);
            }
            if st.syncing {
                st = self.done_cv.wait(st).unwrap_or_else(|e| e.into_inner());
            } else {
                st = self.lead(st, false);
            }
        }
    }

    /// The async form of [`Commit::wait_durable`]: registers the waker and hands the sync to the committer
    /// thread instead of running it.
    pub fn poll_durable(&self, target: u64, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut st = self.lock();
        if st.durable >= target {
            return Poll::Ready(Ok(()));
        }
        if let Some(p) = &st.poisoned {
            let e = poison_error(p);
            st.reported = true;
            return Poll::Ready(Err(e));
        }
        match st.wakers.iter_mut().find(|(t, w)| *t == target && w.will_wake(cx.waker())) {
            Some(_) => {}
            None => st.wakers.push((target, cx.waker().clone())),
        }
        if !st.syncing {
            self.committer_cv.notify_one();
        }
        Poll::Pending
    }

    /// Runs one sync as the leader. Called with the lock held and no sync running; returns with the lock held.
    /// With `gather`, first waits (briefly, bounded) for the group to reach the size of recent groups.
    fn lead<'a>(&'a self, mut st: MutexGuard<'a, CommitState>, gather: bool) -> MutexGuard<'a, CommitState> {
        assert!(!st.syncing);
        st.syncing = true;
        let expected = expected_group(&st);
        if gather && st.pending_appends < expected && !st.shutdown {
            let deadline = Instant::now() + st.sync_average.min(GROUP_WAIT_MAX);
            // Spinning, the leader yields between looks at the count (the wait is at most one sync); else it
            // sleeps until the append that fills the group notifies it.
            let spin = self.spin_budget(&st).is_some();
            st.leader_waiting = !spin;
            while st.pending_appends < expected {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                if spin {
                    drop(st);
                    std::thread::yield_now();
                    st = self.lock();
                } else {
                    st = self.leader_cv.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
            st.leader_waiting = false;
        }
        let captured = (st.written, st.file.clone());
        let group = st.pending_appends;
        st.pending_appends = 0;
        drop(st);

        let started = Instant::now();
        // With a flusher, the sync covers what the flush wrote: at least what was captured, maybe a few appends
        // more (they are counted in the next group), and never bytes that are not in the page cache yet.
        let result = match &self.flusher {
            Some(flush) => flush(),
            None => Ok(captured),
        }
        .and_then(|(target, file)| match &file {
            Some(f) if target > self.durable() => f.file().sync_data().map(|()| target),
            _ => Ok(target),
        });
        let took = started.elapsed();

        let mut st = self.lock();
        st.syncing = false;
        st.last_sync_end = Instant::now();
        match result {
            Ok(target) => {
                // The flush may have written the frames of an append that failed before it was noted (the index
                // refused it and poisoned the store): they are never counted durable.
                st.durable = st.durable.max(target.min(st.written));
                self.durable.store(st.durable, Ordering::Release);
                if !self.publish_on_write {
                    self.head.store(st.durable, Ordering::Release);
                    self.notify.publish(st.durable);
                }
                let slot = st.next_group_slot;
                st.recent_groups[slot] = group.max(1);
                st.next_group_slot = (slot + 1) % RECENT_GROUPS;
                st.sync_average = (st.sync_average * 7 + took) / 8;
                st.syncs += 1;
                st.synced_appends += u64::from(group);
                let durable = st.durable;
                let mut i = 0;
                while i < st.wakers.len() {
                    if st.wakers[i].0 <= durable {
                        st.wakers.swap_remove(i).1.wake();
                    } else {
                        i += 1;
                    }
                }
                // Every parked appender this sync covered, and the first it did not: that one leads the next
                // sync (unless an arriving appender does first; then it parks again). Woken after the lock is
                // let go, so that they do not wake into a held lock.
                let mut released = std::mem::take(&mut st.spare_parked);
                let mut leader_picked = false;
                let mut i = 0;
                while i < st.parked.len() {
                    let covered = st.parked[i].target <= durable;
                    if covered || !leader_picked {
                        leader_picked |= !covered;
                        released.push(st.parked.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                self.done_cv.notify_all();
                drop(st);
                if !released.is_empty() {
                    released.drain(..).for_each(Parked::release);
                    self.wake_parked();
                }
                st = self.lock();
                st.spare_parked = released;
            }
            Err(e) => self.poison_locked(&mut st, &e),
        }
        st
    }

    /// Wakes every blocked appender, after some were marked released: those go on, the others sleep again.
    fn wake_parked(&self) {
        self.wake_epoch.fetch_add(1, Ordering::Release);
        atomic_wait::wake_all(&self.wake_epoch);
    }

    /// The committer thread's loop: leads syncs for async appenders and, if `interval` is set, syncs written
    /// data at least that often. Returns at shutdown.
    pub fn run_committer(&self, interval: Option<Duration>) {
        let mut st = self.lock();
        loop {
            if st.shutdown {
                return;
            }
            let dirty = st.durable < st.written && !st.syncing && st.poisoned.is_none();
            let async_due = dirty && !st.wakers.is_empty();
            let interval_due = dirty && interval.is_some_and(|i| st.last_sync_end.elapsed() >= i);
            if async_due || interval_due {
                st = self.lead(st, async_due);
                continue;
            }
            st = match interval {
                Some(i) => self.committer_cv.wait_timeout(st, i).unwrap_or_else(|e| e.into_inner()).0,
                None => self.committer_cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// (syncs completed, appends they covered, average sync duration).
    pub fn counters(&self) -> (u64, u64, Duration) {
        let st = self.lock();
        (st.syncs, st.synced_appends, st.sync_average)
    }

    /// Stops the committer thread.
    pub fn shutdown(&self) {
        self.lock().shutdown = true;
        self.committer_cv.notify_all();
    }
}

/// The group size a leader waits for: the largest of the recent groups.
fn expected_group(st: &CommitState) -> u32 {
    st.recent_groups.iter().copied().max().unwrap_or(1)
}

fn poison_error((kind, message): &(io::ErrorKind, String)) -> Error {
    Error::Io(io::Error::new(*kind, format!("a sync of the log failed, the store is poisoned: {message}")))
}
