//! Snapshots as files, shared by every raft group of a node. A snapshot is cut from a RocksDB
//! snapshot taken while the state machine stands at the snapshot's log id, so its rows are
//! exactly the state at that id; a thread of its own then streams them to a file, off the apply
//! path, through a fixed-size buffer, so neither building, sending nor installing a snapshot
//! holds more than one row in memory. The file is kept as the group's current snapshot:
//! openraft reads its header at start instead of having one built.
//!
//! File layout: the magic bytes, then length-delimited `SnapshotItem`s of `proto/raft.proto`:
//! one header (the snapshot's meta), the rows of each table in key order, and an end item whose
//! row count must match. Lengths are checked against a bound before anything is read, so a
//! damaged file is an error, never a large allocation.
//!
//! Installing replaces the group's rows in bounded batches. The first batch writes an
//! *installing* marker and deletes the old rows; the last one removes the marker together with
//! the group's new applied position. A crash in between leaves the marker: the next start
//! finishes the install from the kept file ([`SnapshotDir::resume_install`]), so the group is
//! never left with part of a snapshot.

use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::{BasicNode, RaftSnapshotBuilder, RaftTypeConfig, SnapshotMeta, StorageIOError};
use prost::Message;
use rocksdb::{DB, Direction, IteratorMode, WriteBatch};
use tokio::sync::oneshot;

use crate::codec::{DecodeError, proto, snapshot_meta_from_proto, snapshot_meta_to_proto};
use crate::{StorageResult, storage_io as io, synced};

const MAGIC: &[u8; 8] = b"RPRSNAP1";
/// The largest item a snapshot file may hold: a row bigger than this is damage.
const MAX_ITEM: u64 = 512 << 20;
/// Rows are installed in write batches of about this many bytes.
const INSTALL_BATCH_BYTES: usize = 4 << 20;
/// Buffer of the file writer and reader.
const IO_BUFFER: usize = 1 << 20;

const CURRENT: &str = "current.snap";
const RECEIVING: &str = "receiving.tmp";
const INSTALLING: &str = "installing.snap";

type Meta = SnapshotMeta<u64, BasicNode>;

/// One table of a group's snapshot: the rows of a column family in `from..to`.
#[derive(Debug, Clone)]
pub struct SnapshotTable {
    /// The table's number in the file; the group's own, stable across versions.
    pub id: u32,
    pub cf: &'static str,
    pub from: Vec<u8>,
    /// Exclusive; `None` for the end of the column family.
    pub to: Option<Vec<u8>>,
}

/// Whether a row (its table, its key) belongs to the group installing a snapshot.
pub type RowFilter = Box<dyn Fn(&SnapshotTable, &[u8]) -> bool + Send + Sync>;

/// What [`SnapshotDir::install`] writes besides the rows: where the marker goes while it runs,
/// and the group's own final writes (its applied position), committed with the marker's removal.
pub struct InstallPlan {
    pub tables: Vec<SnapshotTable>,
    /// Column family and key of the installing marker.
    pub marker: (&'static str, Vec<u8>),
    /// Refuses a row the group does not own (say, a key outside a partition's range).
    pub accept: RowFilter,
    pub finish: WriteBatch,
}

/// A group's snapshot directory: the current snapshot and the files being built or received.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: Arc<PathBuf>,
    counter: Arc<AtomicU64>,
}

fn failed(err: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(err.to_string())
}

impl SnapshotDir {
    /// Opens (creating) the directory and removes snapshots that were being built when the
    /// process stopped. A file being installed is kept for [`Self::resume_install`].
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "tmp") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(Self {
            dir: Arc::new(dir),
            counter: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The current snapshot, if one was built or installed: its meta is read from the file's
    /// header, nothing else.
    pub async fn current<C>(&self) -> StorageResult<Option<openraft::Snapshot<C>>>
    where
        C: RaftTypeConfig<NodeId = u64, Node = BasicNode, SnapshotData = tokio::fs::File>,
    {
        let path = self.dir.join(CURRENT);
        let read = {
            let path = path.clone();
            crate::blocking(move || match File::open(&path) {
                Ok(file) => read_header(&mut BufReader::new(file)).map(Some),
                Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
                Err(err) => Err(err),
            })
            .await
        };
        let Some(meta) = read.map_err(|e| io(StorageIOError::read_snapshot(None, &e)))? else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io(StorageIOError::read_snapshot(Some(meta.signature()), &e)))?;
        Ok(Some(openraft::Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }

    /// Starts a snapshot of `tables` as they are now, labelled `meta`: returns once the
    /// consistent view is taken (the caller may apply more right away); the rows are written by
    /// a thread of their own, and [`PendingSnapshot::finish`] waits for it.
    pub async fn cut(
        &self,
        db: Arc<DB>,
        meta: Meta,
        tables: Vec<SnapshotTable>,
    ) -> PendingSnapshot {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let building = self.dir.join(format!("building-{n}.tmp"));
        let (taken_tx, taken) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let thread_meta = meta.clone();
        let path = building.clone();
        let spawned = std::thread::Builder::new()
            .name("snapshot".to_owned())
            .spawn(move || {
                let view = db.snapshot();
                let _ = taken_tx.send(());
                let result = write_file(&db, &view, &path, &thread_meta, &tables)
                    // The snapshot lets openraft purge the log it covers: the state machine's
                    // own rows up to this point must be on disk too.
                    .and_then(|()| db.flush_wal(true).map_err(failed));
                let _ = done_tx.send(result);
            });
        if let Err(err) = spawned {
            return PendingSnapshot {
                dir: self.clone(),
                meta,
                building,
                done: Err(err),
            };
        }
        // The thread sends before it does anything that could fail; a closed channel means
        // it is gone, and `finish` reports why.
        let _ = taken.await;
        PendingSnapshot {
            dir: self.clone(),
            meta,
            building,
            done: Ok(done),
        }
    }

    /// A new, empty file for a snapshot sent by the leader.
    pub async fn receive(&self) -> StorageResult<Box<tokio::fs::File>> {
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.dir.join(RECEIVING))
            .await
            .map_err(|e| io(StorageIOError::write_snapshot(None, &e)))?;
        Ok(Box::new(file))
    }

    /// Installs the received snapshot `file` (from [`Self::receive`]) whose meta is `meta`,
    /// replacing the rows of `plan.tables`; the file becomes the current snapshot.
    pub async fn install(
        &self,
        db: Arc<DB>,
        meta: &Meta,
        mut file: Box<tokio::fs::File>,
        plan: InstallPlan,
    ) -> StorageResult<()> {
        let signature = meta.signature();
        let write_err =
            |e: std::io::Error| io(StorageIOError::write_snapshot(Some(signature.clone()), &e));
        use tokio::io::AsyncWriteExt;
        file.flush().await.map_err(write_err)?;
        let file = file.into_std().await;
        let dir = self.clone();
        let expected = meta.clone();
        crate::blocking(move || {
            dir.take_for_install(file)?;
            dir.install_file(&db, plan, Some(&expected)).map(|_| ())
        })
        .await
        .map_err(write_err)
    }

    /// Makes `file` the `installing` file: renamed when it is the received file (the usual
    /// case), copied when openraft hands over another one (say, a snapshot of this node's).
    fn take_for_install(&self, mut file: File) -> std::io::Result<()> {
        use std::io::Seek;
        use std::os::unix::fs::MetadataExt;
        let installing = self.dir.join(INSTALLING);
        let received = self.dir.join(RECEIVING);
        let given = file.metadata()?;
        let is_received = std::fs::metadata(&received)
            .is_ok_and(|r| r.ino() == given.ino() && r.dev() == given.dev());
        if is_received {
            file.sync_all()?;
            std::fs::rename(&received, &installing)?;
        } else {
            file.seek(std::io::SeekFrom::Start(0))?;
            let mut copy = File::create(&installing)?;
            std::io::copy(&mut file, &mut copy)?;
            copy.sync_all()?;
        }
        self.sync_dir()
    }

    /// Finishes an install a crash interrupted, if the marker says one was running: returns
    /// the meta of the installed snapshot. Run at start, before the group reads its state.
    pub fn resume_install(&self, db: &DB, plan: InstallPlan) -> std::io::Result<Option<Meta>> {
        let (cf_name, key) = &plan.marker;
        let cf = db
            .cf_handle(cf_name)
            .ok_or_else(|| failed(format!("column family `{cf_name}` is missing")))?;
        if db.get_cf(cf, key).map_err(failed)?.is_none() {
            // A file refused before its install began writing.
            match std::fs::remove_file(self.dir.join(INSTALLING)) {
                Err(err) if err.kind() != ErrorKind::NotFound => return Err(err),
                _ => return Ok(None),
            }
        }
        if !self.dir.join(INSTALLING).exists() {
            return Err(failed(format!(
                "a snapshot install was interrupted and its file {} is gone: the group's rows \
                 are incomplete; remove the node's data directory and let it rejoin",
                self.dir.join(INSTALLING).display()
            )));
        }
        self.install_file(db, plan, None).map(Some)
    }

    /// Streams the `installing` file into the tables (see the module comment), then makes it
    /// the current snapshot. The file is read through once before anything is written, so a
    /// damaged file, or one that is not the snapshot openraft announced (`expected`), is
    /// refused with the tables untouched.
    fn install_file(
        &self,
        db: &DB,
        plan: InstallPlan,
        expected: Option<&Meta>,
    ) -> std::io::Result<Meta> {
        let path = self.dir.join(INSTALLING);
        let open = || -> std::io::Result<BufReader<File>> {
            Ok(BufReader::with_capacity(IO_BUFFER, File::open(&path)?))
        };
        let checked =
            read_rows(&mut open()?, &plan, |_, _| Ok(())).and_then(|meta| match expected {
                Some(expected)
                    if meta.snapshot_id != expected.snapshot_id
                        || meta.last_log_id != expected.last_log_id =>
                {
                    Err(failed(format!(
                        "the snapshot file holds {} but the leader announced {}",
                        meta.snapshot_id, expected.snapshot_id
                    )))
                }
                _ => Ok(meta),
            });
        let meta = match checked {
            Ok(meta) => meta,
            Err(err) => {
                // Nothing was written: the refused file goes.
                let _ = std::fs::remove_file(&path);
                return Err(err);
            }
        };
        let first = expected.is_some();
        let cf = |name: &str| {
            db.cf_handle(name)
                .ok_or_else(|| failed(format!("column family `{name}` is missing")))
        };
        let write = |batch: WriteBatch, sync: bool| {
            let mut options = rocksdb::WriteOptions::default();
            options.set_sync(sync);
            db.write_opt(batch, &options).map_err(failed)
        };
        // The marker and the deletion of the old rows (again, after a crash: rows of the
        // partial install are deleted with them).
        let mut batch = WriteBatch::default();
        let (marker_cf, marker_key) = &plan.marker;
        batch.put_cf(cf(marker_cf)?, marker_key, meta.snapshot_id.as_bytes());
        for table in &plan.tables {
            delete_rows(db, &mut batch, table)?;
        }
        write(batch, first)?;

        let mut batch = WriteBatch::default();
        read_rows(&mut open()?, &plan, |table, row| {
            batch.put_cf(cf(table.cf)?, &row.key, &row.value);
            if batch.size_in_bytes() >= INSTALL_BATCH_BYTES {
                write(std::mem::take(&mut batch), false)?;
            }
            Ok(())
        })?;
        write(batch, false)?;
        let mut last = plan.finish;
        last.delete_cf(cf(marker_cf)?, marker_key);
        db.write_opt(last, &synced()).map_err(failed)?;
        std::fs::rename(&path, self.dir.join(CURRENT))?;
        self.sync_dir()?;
        Ok(meta)
    }

    fn sync_dir(&self) -> std::io::Result<()> {
        File::open(self.dir.as_path())?.sync_all()
    }
}

/// openraft's builder of a snapshot cut with [`SnapshotDir::cut`]: openraft runs it on a
/// task of its own while the state machine goes on applying.
pub struct SnapshotBuilder(Option<PendingSnapshot>);

impl SnapshotBuilder {
    pub fn new(pending: PendingSnapshot) -> Self {
        Self(Some(pending))
    }
}

impl<C> RaftSnapshotBuilder<C> for SnapshotBuilder
where
    C: RaftTypeConfig<NodeId = u64, Node = BasicNode, SnapshotData = tokio::fs::File>,
{
    async fn build_snapshot(&mut self) -> StorageResult<openraft::Snapshot<C>> {
        match self.0.take() {
            Some(pending) => pending.finish().await,
            None => Err(io(StorageIOError::write_snapshot(
                None,
                &failed("this snapshot builder was already used"),
            ))),
        }
    }
}

/// A snapshot being written by its thread.
pub struct PendingSnapshot {
    dir: SnapshotDir,
    meta: Meta,
    building: PathBuf,
    done: std::io::Result<oneshot::Receiver<std::io::Result<()>>>,
}

impl PendingSnapshot {
    /// Waits for the file, makes it the current snapshot, and opens it for openraft.
    pub async fn finish<C>(self) -> StorageResult<openraft::Snapshot<C>>
    where
        C: RaftTypeConfig<NodeId = u64, Node = BasicNode, SnapshotData = tokio::fs::File>,
    {
        let signature = self.meta.signature();
        let err =
            |e: std::io::Error| io(StorageIOError::write_snapshot(Some(signature.clone()), &e));
        let written = match self.done {
            Ok(done) => done
                .await
                .unwrap_or_else(|_| Err(failed("the snapshot thread stopped"))),
            Err(spawn) => Err(spawn),
        };
        if let Err(e) = written {
            let _ = std::fs::remove_file(&self.building);
            return Err(err(e));
        }
        let current = self.dir.dir.join(CURRENT);
        let dir = self.dir.clone();
        let building = self.building;
        let target = current.clone();
        crate::blocking(move || {
            std::fs::rename(&building, &target)?;
            dir.sync_dir()
        })
        .await
        .map_err(err)?;
        let file = tokio::fs::File::open(&current).await.map_err(err)?;
        Ok(openraft::Snapshot {
            meta: self.meta,
            snapshot: Box::new(file),
        })
    }
}

/// Adds the deletion of every row of `table` to `batch`.
fn delete_rows(db: &DB, batch: &mut WriteBatch, table: &SnapshotTable) -> std::io::Result<()> {
    let cf = db
        .cf_handle(table.cf)
        .ok_or_else(|| failed(format!("column family `{}` is missing", table.cf)))?;
    if let Some(to) = &table.to {
        batch.delete_range_cf(cf, &table.from, to);
        return Ok(());
    }
    // No end: a range up to a key of 0xff bytes, then whatever sorts after it, one by one
    // (normally nothing: no key of ours starts with that many 0xff bytes).
    let high = vec![0xff; 32];
    if table.from < high {
        batch.delete_range_cf(cf, &table.from, &high);
    }
    let start = std::cmp::max(table.from.clone(), high);
    for item in db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
        let (key, _) = item.map_err(failed)?;
        batch.delete_cf(cf, key);
    }
    Ok(())
}

fn write_file(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    path: &Path,
    meta: &Meta,
    tables: &[SnapshotTable],
) -> std::io::Result<()> {
    let file = File::create(path)?;
    let mut out = BufWriter::with_capacity(IO_BUFFER, file);
    out.write_all(MAGIC)?;
    let header = proto::SnapshotHeader {
        meta: Some(snapshot_meta_to_proto(meta)),
    };
    write_item(&mut out, proto::snapshot_item::Item::Header(header))?;
    let mut rows = 0u64;
    for table in tables {
        let cf = db
            .cf_handle(table.cf)
            .ok_or_else(|| failed(format!("column family `{}` is missing", table.cf)))?;
        let mut options = rocksdb::ReadOptions::default();
        if let Some(to) = &table.to {
            options.set_iterate_upper_bound(to.clone());
        }
        let iter = view.iterator_cf_opt(
            cf,
            options,
            IteratorMode::From(&table.from, Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(failed)?;
            let row = proto::SnapshotRow {
                table: table.id,
                key: key.to_vec().into(),
                value: value.to_vec().into(),
            };
            write_item(&mut out, proto::snapshot_item::Item::Row(row))?;
            rows += 1;
        }
    }
    write_item(
        &mut out,
        proto::snapshot_item::Item::End(proto::SnapshotEnd { rows }),
    )?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Reads a whole snapshot file, checking every row against `plan` and the row count against
/// the end item, and hands each row to `on_row`.
fn read_rows(
    reader: &mut impl Read,
    plan: &InstallPlan,
    mut on_row: impl FnMut(&SnapshotTable, proto::SnapshotRow) -> std::io::Result<()>,
) -> std::io::Result<Meta> {
    let meta = read_header(reader)?;
    let mut rows = 0u64;
    let mut buffer = Vec::new();
    loop {
        match read_item(reader, &mut buffer)? {
            Some(proto::snapshot_item::Item::Row(row)) => {
                let table = plan
                    .tables
                    .iter()
                    .find(|t| t.id == row.table)
                    .ok_or_else(|| failed(format!("a row of unknown table {}", row.table)))?;
                if !(plan.accept)(table, &row.key) {
                    return Err(failed(format!(
                        "a row of table `{}` lies outside what this group owns",
                        table.cf
                    )));
                }
                on_row(table, row)?;
                rows += 1;
            }
            Some(proto::snapshot_item::Item::End(end)) if end.rows == rows => return Ok(meta),
            Some(proto::snapshot_item::Item::End(end)) => {
                return Err(failed(format!(
                    "the snapshot file has {rows} rows, its end item says {}",
                    end.rows
                )));
            }
            Some(proto::snapshot_item::Item::Header(_)) => {
                return Err(failed("a second header in a snapshot file"));
            }
            None => return Err(failed("the snapshot file ends before its end item")),
        }
    }
}

fn write_item(out: &mut impl Write, item: proto::snapshot_item::Item) -> std::io::Result<()> {
    let item = proto::SnapshotItem { item: Some(item) };
    out.write_all(&item.encode_length_delimited_to_vec())
}

fn read_header(reader: &mut impl Read) -> std::io::Result<Meta> {
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(failed("not a snapshot file (bad magic bytes)"));
    }
    let mut buffer = Vec::new();
    match read_item(reader, &mut buffer)? {
        Some(proto::snapshot_item::Item::Header(header)) => {
            let meta = header
                .meta
                .ok_or_else(|| failed(DecodeError::missing("the snapshot's meta")))?;
            snapshot_meta_from_proto(meta).map_err(failed)
        }
        _ => Err(failed("a snapshot file without its header")),
    }
}

/// The next item, or `None` at a clean end of file. `buffer` is reused between items.
fn read_item(
    reader: &mut impl Read,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<proto::snapshot_item::Item>> {
    let Some(len) = read_varint(reader)? else {
        return Ok(None);
    };
    if len > MAX_ITEM {
        return Err(failed(format!(
            "a snapshot item of {len} bytes is over the {MAX_ITEM}-byte bound"
        )));
    }
    buffer.clear();
    // Grows with the bytes that are really there, not with the stored length.
    let got = reader.by_ref().take(len).read_to_end(buffer)?;
    if got as u64 != len {
        return Err(failed("the snapshot file ends inside an item"));
    }
    let item = proto::SnapshotItem::decode(buffer.as_slice()).map_err(failed)?;
    item.item
        .map(Some)
        .ok_or_else(|| failed("an empty snapshot item"))
}

/// A protobuf varint, or `None` at end of file before its first byte.
fn read_varint(reader: &mut impl Read) -> std::io::Result<Option<u64>> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        if let Err(err) = reader.read_exact(&mut byte) {
            return if err.kind() == ErrorKind::UnexpectedEof && i == 0 {
                Ok(None)
            } else {
                Err(err)
            };
        }
        value |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(failed("a malformed length in a snapshot file"))
}
