//! The three stores behind one small interface: annals, SQLite and fjall, each configured as BENCHMARKS.md
//! says (and as its users would for the same durability).
//!
//! A [`Peer`] is an open store; a [`Session`] is what one thread uses (annals: a clone of the `Store` handle;
//! SQLite: its own connection; fjall: a clone of the shared handles). Every implementation touches every
//! payload it reads with the same [`touch`] function, so the read workloads do the same work per event.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use annals::Bytes;
use uuid::Uuid;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Res<T> = Result<T, BoxError>;

/// The event type every workload writes.
pub const EVENT_TYPE: &str = "Deposited";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// An append returns once its events are durable (fdatasync / fsync).
    Sync,
    /// An append returns once its events are handed to the OS; `Peer::sync` makes them durable.
    Buffered,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Annals,
    Sqlite,
    Fjall,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Annals, Kind::Sqlite, Kind::Fjall];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Annals => "annals",
            Kind::Sqlite => "SQLite",
            Kind::Fjall => "fjall",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Kind::Annals => "annals",
            Kind::Sqlite => "sqlite",
            Kind::Fjall => "fjall",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.key().eq_ignore_ascii_case(s))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Any,
    Exact(u64),
}

/// An event to append: a fresh id and a payload (the type is always [`EVENT_TYPE`], metadata empty).
#[derive(Clone, Debug)]
pub struct Event {
    pub id: Uuid,
    pub payload: Bytes,
}

/// One row of a bulk load: the loader knows the versions, so no check is made.
pub struct LoadRow<'a> {
    pub stream: &'a str,
    pub version: u64,
    pub event: Event,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    Ok { last_version: u64 },
    Conflict,
}

/// What a read returned: the number of events, the last version seen and the sum over [`touch`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOut {
    pub events: u64,
    pub last_version: Option<u64>,
    pub checksum: u64,
}

impl ReadOut {
    #[inline]
    fn add(&mut self, version: u64, payload: &[u8]) {
        self.events += 1;
        self.last_version = Some(version);
        self.checksum = self.checksum.wrapping_add(touch(payload));
    }
}

/// Reads every byte of a payload (a wrapping sum of its 8-byte words), so no read path can skip the bytes.
#[inline]
pub fn touch(payload: &[u8]) -> u64 {
    let mut chunks = payload.chunks_exact(8);
    let mut s = 0u64;
    for c in &mut chunks {
        s = s.wrapping_add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    for &b in chunks.remainder() {
        s = s.wrapping_add(b as u64);
    }
    s
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// An open store.
pub trait Peer: Send + Sync {
    /// A handle for one thread.
    fn session(&self) -> Res<Box<dyn Session>>;
    /// Makes everything appended so far durable (the end of a Buffered workload).
    fn sync(&self) -> Res<()>;
    /// Waits until the store's own background work (flushes, compactions) is idle, so a copy of its folder is
    /// a consistent picture. A no-op for stores without background writers.
    fn quiesce(&self) -> Res<()> {
        Ok(())
    }
}

/// What one thread does with a store.
pub trait Session: Send {
    /// Appends `events` to `stream` if it is at `expected` (checked and written atomically).
    fn append(&mut self, stream: &str, expected: Expected, events: &[Event]) -> Res<Appended>;
    /// Writes rows whose versions the caller vouches for (untimed loading). A stream appears in at most one
    /// run of consecutive rows per call.
    fn bulk_load(&mut self, rows: &[LoadRow<'_>]) -> Res<()>;
    /// Reads one stream whole, oldest first.
    fn read_stream(&mut self, stream: &str) -> Res<ReadOut>;
    /// Reads every event in global order.
    fn scan_all(&mut self) -> Res<ReadOut>;
}

/// Opens (creating if needed) a store of `kind` in the folder `dir`: everything a first append or read needs.
pub fn open(kind: Kind, dir: &Path, durability: Durability) -> Res<Box<dyn Peer>> {
    Ok(match kind {
        Kind::Annals => Box::new(AnnalsPeer::open(dir, durability)?),
        Kind::Sqlite => Box::new(SqlitePeer::open(dir, durability)?),
        Kind::Fjall => Box::new(FjallPeer::open(dir, durability)?),
    })
}

// ------------------------------------------------------------------------------------------------
// annals

pub struct AnnalsPeer {
    store: annals::Store,
}

impl AnnalsPeer {
    fn open(dir: &Path, durability: Durability) -> Res<AnnalsPeer> {
        let d = match durability {
            Durability::Sync => annals::Durability::Sync,
            Durability::Buffered => annals::Durability::Buffered,
        };
        Ok(AnnalsPeer { store: annals::Options::new().durability(d).open(dir)? })
    }
}

impl Peer for AnnalsPeer {
    fn session(&self) -> Res<Box<dyn Session>> {
        Ok(Box::new(AnnalsSession { store: self.store.clone() }))
    }

    fn sync(&self) -> Res<()> {
        Ok(self.store.sync()?)
    }

    /// annals' background writer is its indexer: wait until it has written the checkpoint it was handed (the
    /// events since the last checkpoint stay in memory and in the log, as an LSM's memtable and journal do).
    fn quiesce(&self) -> Res<()> {
        let start = std::time::Instant::now();
        while self.store.stats().index_pending_events > 0 {
            if start.elapsed() > std::time::Duration::from_secs(300) {
                return Err("annals: the indexer did not settle in 300 s".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }
}

struct AnnalsSession {
    store: annals::Store,
}

fn new_event(e: &Event) -> annals::NewEvent {
    annals::NewEvent::new_with_id(e.id, EVENT_TYPE, e.payload.clone())
}

impl Session for AnnalsSession {
    fn append(&mut self, stream: &str, expected: Expected, events: &[Event]) -> Res<Appended> {
        let expected = match expected {
            Expected::Any => annals::ExpectedVersion::Any,
            Expected::Exact(v) => annals::ExpectedVersion::Exact(v),
        };
        // A single event needs no vector (W1, W2, W4 and W5 append one at a time).
        let appended = match events {
            [e] => self.store.append(stream, expected, std::slice::from_ref(&new_event(e))),
            _ => self.store.append(stream, expected, &events.iter().map(new_event).collect::<Vec<_>>()),
        };
        match appended {
            Ok(r) => Ok(Appended::Ok { last_version: r.last_version }),
            Err(annals::Error::WrongExpectedVersion { .. }) => Ok(Appended::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    fn bulk_load(&mut self, rows: &[LoadRow<'_>]) -> Res<()> {
        let events: Vec<annals::NewEvent> = rows.iter().map(|r| new_event(&r.event)).collect();
        let mut parts = Vec::new();
        let mut start = 0;
        for i in 1..=rows.len() {
            if i == rows.len() || rows[i].stream != rows[start].stream {
                parts.push(annals::StreamAppend::new(
                    rows[start].stream,
                    annals::ExpectedVersion::Any,
                    &events[start..i],
                ));
                start = i;
            }
        }
        if !parts.is_empty() {
            self.store.append_many(&parts)?;
        }
        Ok(())
    }

    fn read_stream(&mut self, stream: &str) -> Res<ReadOut> {
        let mut out = ReadOut::default();
        for ev in self.store.read_stream(stream, 0)? {
            let ev = ev?;
            out.add(ev.version(), ev.payload());
        }
        Ok(out)
    }

    fn scan_all(&mut self) -> Res<ReadOut> {
        let mut out = ReadOut::default();
        for ev in self.store.read_all(annals::Position::START) {
            let ev = ev?;
            out.add(ev.version(), ev.payload());
        }
        Ok(out)
    }
}

// ------------------------------------------------------------------------------------------------
// SQLite: WAL; synchronous=FULL for Sync, OFF for Buffered; one table of events with a global integer key
// and a unique (stream, version) index; check + insert in one BEGIN IMMEDIATE transaction; one connection
// per thread.

pub const SQLITE_FILE: &str = "events.db";

const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events (
    position  INTEGER PRIMARY KEY,
    stream    TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    id        BLOB    NOT NULL,
    type      TEXT    NOT NULL,
    payload   BLOB    NOT NULL,
    metadata  BLOB    NOT NULL,
    timestamp INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_stream_version ON events (stream, version);";

const SQLITE_INSERT: &str =
    "INSERT INTO events (stream, version, id, type, payload, metadata, timestamp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

pub struct SqlitePeer {
    path: PathBuf,
    durability: Durability,
    /// Kept open for the life of the peer, so the WAL is checkpointed and removed only at its clean close.
    _main: Mutex<rusqlite::Connection>,
}

fn sqlite_connect(path: &Path, durability: Durability) -> Res<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(60))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused WAL mode ({mode})").into());
    }
    let sync = match durability {
        Durability::Sync => "FULL",
        Durability::Buffered => "OFF",
    };
    conn.execute_batch(&format!("PRAGMA synchronous = {sync};"))?;
    Ok(conn)
}

impl SqlitePeer {
    fn open(dir: &Path, durability: Durability) -> Res<SqlitePeer> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(SQLITE_FILE);
        let main = sqlite_connect(&path, durability)?;
        main.execute_batch(SQLITE_SCHEMA)?;
        // Ready to serve: the head is known (this also reads the schema and, after a crash, the WAL).
        let _head: Option<i64> = main.query_row("SELECT max(position) FROM events", [], |r| r.get(0))?;
        Ok(SqlitePeer { path, durability, _main: Mutex::new(main) })
    }
}

impl Peer for SqlitePeer {
    fn session(&self) -> Res<Box<dyn Session>> {
        Ok(Box::new(SqliteSession { conn: sqlite_connect(&self.path, self.durability)? }))
    }

    fn sync(&self) -> Res<()> {
        // synchronous=OFF never syncs; make the database and its WAL durable, as `Store::sync` does for annals.
        if self.durability == Durability::Buffered {
            for suffix in ["", "-wal"] {
                let p = PathBuf::from(format!("{}{suffix}", self.path.display()));
                if p.exists() {
                    std::fs::OpenOptions::new().read(true).write(true).open(&p)?.sync_data()?;
                }
            }
        }
        Ok(())
    }
}

struct SqliteSession {
    conn: rusqlite::Connection,
}

impl Session for SqliteSession {
    fn append(&mut self, stream: &str, expected: Expected, events: &[Event]) -> Res<Appended> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let actual: Option<i64> = tx
            .prepare_cached("SELECT max(version) FROM events WHERE stream = ?1")?
            .query_row([stream], |r| r.get(0))?;
        let actual = actual.map(|v| v as u64);
        if let Expected::Exact(v) = expected {
            if actual != Some(v) {
                return Ok(Appended::Conflict); // the transaction rolls back on drop
            }
        }
        let first = actual.map_or(0, |v| v + 1);
        let ts = now_us() as i64;
        {
            let mut ins = tx.prepare_cached(SQLITE_INSERT)?;
            for (i, e) in events.iter().enumerate() {
                ins.execute(rusqlite::params![
                    stream,
                    (first + i as u64) as i64,
                    &e.id.as_bytes()[..],
                    EVENT_TYPE,
                    &e.payload[..],
                    &[][..] as &[u8],
                    ts
                ])?;
            }
        }
        tx.commit()?;
        Ok(Appended::Ok { last_version: first + events.len() as u64 - 1 })
    }

    fn bulk_load(&mut self, rows: &[LoadRow<'_>]) -> Res<()> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let ts = now_us() as i64;
        {
            let mut ins = tx.prepare_cached(SQLITE_INSERT)?;
            for r in rows {
                ins.execute(rusqlite::params![
                    r.stream,
                    r.version as i64,
                    &r.event.id.as_bytes()[..],
                    EVENT_TYPE,
                    &r.event.payload[..],
                    &[][..] as &[u8],
                    ts
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn read_stream(&mut self, stream: &str) -> Res<ReadOut> {
        let mut out = ReadOut::default();
        let mut st = self
            .conn
            .prepare_cached("SELECT version, type, payload, metadata FROM events WHERE stream = ?1 ORDER BY version")?;
        let mut rows = st.query([stream])?;
        while let Some(row) = rows.next()? {
            let version: i64 = row.get(0)?;
            let _type = row.get_ref(1)?.as_str()?;
            let payload = row.get_ref(2)?.as_blob()?;
            let _metadata = row.get_ref(3)?.as_blob()?;
            out.add(version as u64, payload);
        }
        Ok(out)
    }

    fn scan_all(&mut self) -> Res<ReadOut> {
        let mut out = ReadOut::default();
        let mut st = self.conn.prepare_cached(
            "SELECT position, stream, version, type, payload, metadata FROM events ORDER BY position",
        )?;
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            let _stream = row.get_ref(1)?.as_str()?;
            let version: i64 = row.get(2)?;
            let _type = row.get_ref(3)?.as_str()?;
            let payload = row.get_ref(4)?.as_blob()?;
            let _metadata = row.get_ref(5)?.as_blob()?;
            out.add(version as u64, payload);
        }
        Ok(out)
    }
}

// ------------------------------------------------------------------------------------------------
// fjall: one keyspace by global position holding the event (the log), one keyed by (stream, version) holding
// the position (the stream index), as SQLite's table + unique index and most event stores lay it out; a write
// batch per append (the default batch hands its bytes to the OS at commit), then `persist(SyncData)` for Sync;
// the expected-version check and the position assignment under one lock.

struct FjallInner {
    db: fjall::Database,
    by_stream: fjall::Keyspace,
    by_position: fjall::Keyspace,
    durability: Durability,
    /// The position the next event gets; held across check and commit.
    next: Mutex<u64>,
}

pub struct FjallPeer {
    inner: Arc<FjallInner>,
}

/// Key prefix of a stream in the (stream, version) keyspace: its length, then its bytes.
fn stream_prefix(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.len() + 9);
    k.push(u8::try_from(stream.len()).expect("stream names are at most 255 bytes"));
    k.extend_from_slice(stream.as_bytes());
    k
}

fn stream_key(prefix: &[u8], version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn be_u64(b: &[u8]) -> Res<u64> {
    let a: [u8; 8] = b.try_into().map_err(|_| "fjall: expected 8 bytes")?;
    Ok(u64::from_be_bytes(a))
}

/// The event record: stream, version, id, timestamp, type, metadata, payload.
fn fjall_encode(stream: &str, version: u64, e: &Event, ts: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + stream.len() + 8 + 16 + 8 + 1 + EVENT_TYPE.len() + 4 + e.payload.len());
    v.push(stream.len() as u8);
    v.extend_from_slice(stream.as_bytes());
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(e.id.as_bytes());
    v.extend_from_slice(&ts.to_le_bytes());
    v.push(EVENT_TYPE.len() as u8);
    v.extend_from_slice(EVENT_TYPE.as_bytes());
    v.extend_from_slice(&0u32.to_le_bytes()); // metadata length
    v.extend_from_slice(&e.payload);
    v
}

/// (version, payload) of an event record, with every length checked.
fn fjall_decode(v: &[u8]) -> Res<(u64, &[u8])> {
    let bad = || -> BoxError { "fjall: malformed event record".into() };
    let s = *v.first().ok_or_else(bad)? as usize;
    let mut at = 1 + s;
    let version = be_u64(v.get(at..at + 8).ok_or_else(bad)?)?;
    at += 8 + 16 + 8;
    let t = *v.get(at).ok_or_else(bad)? as usize;
    at += 1;
    std::str::from_utf8(v.get(at..at + t).ok_or_else(bad)?)?;
    at += t;
    let m = u32::from_le_bytes(v.get(at..at + 4).ok_or_else(bad)?.try_into()?) as usize;
    at += 4 + m;
    Ok((version, v.get(at..).ok_or_else(bad)?))
}

impl FjallPeer {
    fn open(dir: &Path, durability: Durability) -> Res<FjallPeer> {
        let db = fjall::Database::builder(dir).open()?;
        let by_stream = db.keyspace("by_stream", fjall::KeyspaceCreateOptions::default)?;
        let by_position = db.keyspace("by_position", fjall::KeyspaceCreateOptions::default)?;
        // Ready to serve: the head is known.
        let next = match by_position.last_key_value() {
            Some(g) => be_u64(&g.key()?)? + 1,
            None => 0,
        };
        Ok(FjallPeer { inner: Arc::new(FjallInner { db, by_stream, by_position, durability, next: Mutex::new(next) }) })
    }
}

impl Peer for FjallPeer {
    fn session(&self) -> Res<Box<dyn Session>> {
        Ok(Box::new(FjallSession { inner: self.inner.clone() }))
    }

    fn sync(&self) -> Res<()> {
        Ok(self.inner.db.persist(fjall::PersistMode::SyncData)?)
    }

    fn quiesce(&self) -> Res<()> {
        let start = std::time::Instant::now();
        while self.inner.db.outstanding_flushes() > 0 || self.inner.db.active_compactions() > 0 {
            if start.elapsed() > std::time::Duration::from_secs(300) {
                return Err("fjall: background work did not settle in 300 s".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }
}

struct FjallSession {
    inner: Arc<FjallInner>,
}

impl FjallSession {
    fn last_version(&self, prefix: &[u8]) -> Res<Option<u64>> {
        match self.inner.by_stream.prefix(prefix).next_back() {
            Some(g) => {
                let k = g.key()?;
                Ok(Some(be_u64(&k[k.len() - 8..])?))
            }
            None => Ok(None),
        }
    }
}

impl Session for FjallSession {
    fn append(&mut self, stream: &str, expected: Expected, events: &[Event]) -> Res<Appended> {
        let prefix = stream_prefix(stream);
        let inner = &*self.inner;
        let mut next = inner.next.lock().map_err(|_| "fjall: lock poisoned")?;
        let actual = self.last_version(&prefix)?;
        if let Expected::Exact(v) = expected {
            if actual != Some(v) {
                return Ok(Appended::Conflict);
            }
        }
        let first = actual.map_or(0, |v| v + 1);
        let ts = now_us();
        let mut batch = inner.db.batch();
        for (i, e) in events.iter().enumerate() {
            let version = first + i as u64;
            let position = (*next + i as u64).to_be_bytes();
            batch.insert(&inner.by_position, &position[..], fjall_encode(stream, version, e, ts));
            batch.insert(&inner.by_stream, stream_key(&prefix, version), &position[..]);
        }
        batch.commit()?;
        *next += events.len() as u64;
        drop(next);
        if inner.durability == Durability::Sync {
            inner.db.persist(fjall::PersistMode::SyncData)?;
        }
        Ok(Appended::Ok { last_version: first + events.len() as u64 - 1 })
    }

    fn bulk_load(&mut self, rows: &[LoadRow<'_>]) -> Res<()> {
        let inner = &*self.inner;
        let mut next = inner.next.lock().map_err(|_| "fjall: lock poisoned")?;
        let ts = now_us();
        let mut batch = inner.db.batch();
        for (i, r) in rows.iter().enumerate() {
            let position = (*next + i as u64).to_be_bytes();
            batch.insert(&inner.by_position, &position[..], fjall_encode(r.stream, r.version, &r.event, ts));
            batch.insert(&inner.by_stream, stream_key(&stream_prefix(r.stream), r.version), &position[..]);
        }
        batch.commit()?;
        *next += rows.len() as u64;
        Ok(())
    }

    fn read_stream(&mut self, stream: &str) -> Res<ReadOut> {
        let mut out = ReadOut::default();
        for g in self.inner.by_stream.prefix(stream_prefix(stream)) {
            let position = g.value()?;
            let record = self.inner.by_position.get(&position)?.ok_or("fjall: stream index names a missing event")?;
            let (version, payload) = fjall_decode(&record)?;
            out.add(version, payload);
        }
        Ok(out)
    }

    fn scan_all(&mut self) -> Res<ReadOut> {
        let mut out = ReadOut::default();
        for g in self.inner.by_position.iter() {
            let record = g.value()?;
            let (version, payload) = fjall_decode(&record)?;
            out.add(version, payload);
        }
        Ok(out)
    }
}
