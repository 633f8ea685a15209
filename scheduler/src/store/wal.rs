//! The write-ahead log that makes a redb commit durable with one small synced write.
//!
//! A durable redb commit writes every page the transaction touched, its allocator state and
//! its header, then fsyncs the file: on a virtual disk that is 300–500 µs, twice per job. A
//! synced write of one record into a file whose blocks already exist is a third of that. So
//! [`super::redb_kv`] writes each transaction's ops here first, synced, and only then commits
//! it to redb without durability (visible to readers, not yet on disk). Every so often a commit
//! goes to redb durably instead, together with the sequence number of the last record it now
//! holds (the *checkpoint*), and the log starts again from its beginning. After a crash redb
//! comes back at its last durable commit, and the records after that checkpoint are applied
//! again ([`replay`]).
//!
//! # Layout
//!
//! One file of [`LOG_BYTES`], zero-filled and synced when created, so that a record never
//! allocates a block and the sync has no metadata to write. Records follow each other from
//! offset 0, each starting on a 4 KiB boundary (zeros pad the rest of its last block), so that
//! they can be written with direct I/O (`O_DIRECT | O_DSYNC`): one write that returns once the
//! block is on disk, without the page cache, measured 20–50 µs faster per record than a
//! buffered `O_DSYNC` write on the CI machine. Where the file system has no direct I/O (tmpfs),
//! records go through the page cache with `O_DSYNC`. A record is:
//!
//! | bytes | what |
//! |---|---|
//! | 4 | payload length, little-endian |
//! | 4 | CRC-32 of the length, the sequence number and the payload, little-endian |
//! | 8 | sequence number, little-endian: the checkpoint's plus one for the first record |
//! | n | the transaction's ops, protobuf-encoded ([`Record`]) |
//!
//! Reading stops at the first record that is not the next one: zeros (never written), a CRC
//! that does not match (the one write a crash cut short, which was never acknowledged), or a
//! sequence number that is not the next (a record of the log's previous round, which it started
//! to overwrite). Each record is synced before its transaction is acknowledged, and before the
//! next is written, so only the last one can be torn.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prost::Message;

use super::kv::Op;

/// The log's size. A record longer than a quarter of it is never logged: its transaction is
/// committed durably instead (a module upload, a job holding a large result).
pub(crate) const LOG_BYTES: u64 = 16 << 20;

/// Most records between two checkpoints. Until a checkpoint, redb cannot reuse the pages that
/// non-durable commits freed, so its file grows with every record.
pub(crate) const RECORDS_PER_CHECKPOINT: u64 = 256;

/// Longest record [`Wal::quick`] calls quick: a few blocks.
const QUICK_BYTES: u64 = 64 << 10;

/// Slowest synced write after which commits are no longer quick ([`Wal::quick`]): a disk that
/// takes longer is not one to wait for on an async runtime's worker. About ten times what a
/// write takes on an ordinary SSD.
const QUICK_WRITE: Duration = Duration::from_millis(1);

/// Length, CRC and sequence number.
const HEADER_BYTES: usize = 16;

/// Records start at multiples of this, the block direct I/O writes.
const BLOCK: usize = 4096;

/// `len` rounded up to whole blocks.
fn blocks(len: usize) -> usize {
    len.div_ceil(BLOCK).max(1) * BLOCK
}

/// A transaction's ops, as logged.
#[derive(Clone, PartialEq, Message)]
struct Record {
    #[prost(message, repeated, tag = "1")]
    ops: Vec<RecordOp>,
}

/// One op: a put when `to` is absent, else the deletion of `[key, to)`.
#[derive(Clone, PartialEq, Message)]
struct RecordOp {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
    #[prost(string, optional, tag = "3")]
    to: Option<String>,
}

impl From<&Op> for RecordOp {
    fn from(op: &Op) -> Self {
        match op {
            Op::Put(key, value) => Self {
                key: key.clone(),
                value: value.clone(),
                to: None,
            },
            Op::DeleteRange { from, to } => Self {
                key: from.clone(),
                value: Vec::new(),
                to: Some(to.clone()),
            },
        }
    }
}

impl From<RecordOp> for Op {
    fn from(op: RecordOp) -> Self {
        match op.to {
            None => Op::Put(op.key, op.value),
            Some(to) => Op::DeleteRange { from: op.key, to },
        }
    }
}

/// One transaction, framed and padded to whole blocks, ready to append.
#[derive(Debug)]
pub(crate) struct Frame {
    seq: u64,
    blocks: Blocks,
}

impl Frame {
    /// Frames `ops` as record number `seq`.
    pub(crate) fn new(seq: u64, ops: &[Op]) -> Self {
        let record = Record {
            ops: ops.iter().map(RecordOp::from).collect(),
        };
        let payload = record.encode_to_vec();
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let header = [
            &len.to_le_bytes()[..],
            &checksum(len, seq, &payload).to_le_bytes(),
            &seq.to_le_bytes(),
        ];
        Self {
            seq,
            blocks: Blocks::of(&[&header.concat(), &payload[..]]),
        }
    }

    /// Bytes it takes in the log: whole blocks.
    pub(crate) fn len(&self) -> u64 {
        self.blocks.len as u64
    }
}

fn checksum(len: u32, seq: u64, payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    crc.finalize()
}

/// What a log holds after a checkpoint.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Replay {
    /// Each record's sequence number and ops, in order.
    pub(crate) records: Vec<(u64, Vec<Op>)>,
    /// Why reading stopped.
    pub(crate) stop: Stop,
}

/// Why reading a log stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Zeros: nothing was written there.
    #[default]
    Unwritten,
    /// The end of the bytes, which the next record does not fit in.
    End,
    /// A record cut short or altered: the write a crash interrupted.
    Torn,
    /// A record of an earlier round of the log.
    Stale,
}

/// The records of `log` that follow record number `checkpoint`: a pure function of the bytes.
///
/// # Errors
///
/// When a record whose CRC matches does not decode, which no crash explains: the log was
/// written by something else.
pub(crate) fn replay(log: &[u8], checkpoint: u64) -> Result<Replay, String> {
    let mut records = Vec::new();
    let mut at = 0;
    let stop = loop {
        let expected = checkpoint + 1 + records.len() as u64;
        let Some(header) = log.get(at..at + HEADER_BYTES) else {
            break Stop::End;
        };
        if header.iter().all(|b| *b == 0) {
            break Stop::Unwritten;
        }
        let word = |range: std::ops::Range<usize>| header[range].try_into().unwrap_or_default();
        let len = u32::from_le_bytes(word(0..4));
        let crc = u32::from_le_bytes(word(4..8));
        let seq = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let start = at + HEADER_BYTES;
        let Some(payload) = log.get(start..start + len as usize) else {
            break Stop::End;
        };
        if checksum(len, seq, payload) != crc {
            break Stop::Torn;
        }
        if seq != expected {
            break Stop::Stale;
        }
        let record = Record::decode(payload)
            .map_err(|e| format!("record {seq} at offset {at} does not decode: {e}"))?;
        records.push((seq, record.ops.into_iter().map(Op::from).collect()));
        at += blocks(HEADER_BYTES + len as usize);
    };
    Ok(Replay { records, stop })
}

/// The records of the log at `path` after record number `checkpoint`; none if there is no log.
/// Reads only as far as the records go (after a clean stop, one block), not the whole log.
///
/// # Errors
///
/// When the file cannot be read, or holds a record that does not decode.
pub(crate) fn read(path: &Path, checkpoint: u64) -> io::Result<Replay> {
    use std::io::Read as _;
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Replay::default()),
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    let mut bytes = Vec::new();
    let mut want = 16 * BLOCK as u64;
    loop {
        // Read more, and replay again, while the records run past what was read.
        let more = want.min(size) - bytes.len() as u64;
        (&file).take(more).read_to_end(&mut bytes)?;
        let replay = replay(&bytes, checkpoint)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if replay.stop != Stop::End || bytes.len() as u64 >= size {
            return Ok(replay);
        }
        want *= 4;
    }
}

/// The log file, and where the next record goes.
#[derive(Debug)]
pub(crate) struct Wal {
    path: PathBuf,
    file: File,
    /// Offset of the next record.
    end: u64,
    /// Sequence number of the last record written (or of the checkpoint, if none since).
    last: u64,
    /// Records written since the checkpoint.
    since_checkpoint: u64,
    /// How long the last write took, synced.
    last_write: Duration,
}

impl Wal {
    /// Opens the log at `path` to write records after `checkpoint`, creating it zero-filled if
    /// it is missing or not of [`LOG_BYTES`]. Only once what [`read`] found there is applied
    /// and checkpointed: the records are then overwritten.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened, or created and synced.
    pub(crate) fn open(path: &Path, checkpoint: u64) -> io::Result<Self> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() == LOG_BYTES => {}
            Ok(_) => create(path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => create(path)?,
            Err(e) => return Err(e),
        }
        let file = open_for_writes(path)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            end: 0,
            last: checkpoint,
            since_checkpoint: 0,
            last_write: Duration::ZERO,
        })
    }

    /// Sequence number of the last record written: what a checkpoint now records.
    pub(crate) fn last(&self) -> u64 {
        self.last
    }

    /// The next record, framed.
    pub(crate) fn frame(&self, ops: &[Op]) -> Frame {
        Frame::new(self.last + 1, ops)
    }

    /// Whether `frame` should be logged, rather than its transaction committed durably as a
    /// checkpoint: it fits after the records already there, is no longer than a quarter of the
    /// log, and the checkpoint is not due.
    pub(crate) fn takes(&self, frame: &Frame) -> bool {
        frame.len() <= LOG_BYTES / 4
            && self.end + frame.len() <= LOG_BYTES
            && self.since_checkpoint < RECORDS_PER_CHECKPOINT
    }

    /// Whether appending `frame` would be quick: the log takes it ([`Wal::takes`]), it is no
    /// longer than [`QUICK_BYTES`], and the last write took no more than [`QUICK_WRITE`]. A slow
    /// disk thus sends commits back to the blocking pool after one slow write, and a commit
    /// there that writes fast again brings them back.
    pub(crate) fn quick(&self, frame: &Frame) -> bool {
        frame.len() <= QUICK_BYTES && self.last_write <= QUICK_WRITE && self.takes(frame)
    }

    /// Writes `frame` at the end and syncs it: once this returns, the transaction survives a
    /// crash.
    ///
    /// # Errors
    ///
    /// When the write or the sync fails; the record is then not counted as written, its
    /// header is zeroed if it can be, and the next record overwrites it.
    pub(crate) fn append(&mut self, frame: &Frame) -> io::Result<()> {
        debug_assert_eq!(frame.seq, self.last + 1);
        let started = Instant::now();
        let written = self.file.write_all_at(frame.blocks.bytes(), self.end);
        self.last_write = started.elapsed();
        if let Err(e) = written {
            // Some of it may be on disk, even all of it if only the sync failed: unmark it as
            // best we can, since its transaction is reported as failed.
            let _ = self.file.write_all_at(Blocks::of(&[]).bytes(), self.end);
            return Err(e);
        }
        self.end += frame.len();
        self.last = frame.seq;
        self.since_checkpoint += 1;
        Ok(())
    }

    /// Takes back the last record, `frame`, whose transaction could not be committed: zeroes
    /// its header, synced, so that no replay applies it.
    ///
    /// # Errors
    ///
    /// When the write or the sync fails: the record may then be applied by the next replay.
    pub(crate) fn take_back(&mut self, frame: &Frame) -> io::Result<()> {
        let start = self.end - frame.len();
        self.file.write_all_at(Blocks::of(&[]).bytes(), start)?;
        self.end = start;
        self.last -= 1;
        self.since_checkpoint -= 1;
        Ok(())
    }

    /// Records that a durable commit now holds every record up to [`Wal::last`]: the next
    /// record goes at the start of the log.
    pub(crate) fn checkpointed(&mut self) {
        self.end = 0;
        self.since_checkpoint = 0;
    }

    /// Where the log is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens the log so that each write returns once it is on disk, like a write followed by
/// `fdatasync`, in one call: with direct I/O where the file system has it.
fn open_for_writes(path: &Path) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DSYNC | libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => return Ok(file),
        // No direct I/O on this file system (tmpfs): through the page cache.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(e),
    }
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DSYNC)
        .open(path)
}

/// Bytes zero-padded to whole blocks, in memory aligned to a block: what direct I/O writes.
#[derive(Debug)]
struct Blocks {
    buffer: Vec<u8>,
    start: usize,
    len: usize,
}

impl Blocks {
    /// `parts`, one after the other, padded (one block of zeros for none).
    fn of(parts: &[&[u8]]) -> Self {
        let len = blocks(parts.iter().map(|part| part.len()).sum());
        let mut buffer = vec![0; len + BLOCK];
        // Below a block, always, at run time; 0 otherwise, and the write then fails cleanly.
        let start = match buffer.as_ptr().align_offset(BLOCK) {
            start if start < BLOCK => start,
            _ => 0,
        };
        let mut at = start;
        for part in parts {
            buffer[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Self { buffer, start, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.buffer[self.start..self.start + self.len]
    }
}

/// Creates the log zero-filled through a temporary file, synced and renamed, with its directory
/// synced: a log is either whole or absent.
fn create(path: &Path) -> io::Result<()> {
    let temporary = path.with_extension("wal.new");
    {
        let file = File::create(&temporary)?;
        file.set_len(0)?;
        // Written, not just sized: blocks that exist make each record's sync a data write only.
        let zeros = vec![0; 1 << 20];
        let mut at = 0;
        while at < LOG_BYTES {
            file.write_all_at(&zeros, at)?;
            at += zeros.len() as u64;
        }
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Op {
        Op::Put(key.to_owned(), value.as_bytes().to_vec())
    }

    fn delete(from: &str, to: &str) -> Op {
        Op::DeleteRange {
            from: from.to_owned(),
            to: to.to_owned(),
        }
    }

    /// A frame's record as written, without its padding.
    fn record(frame: &Frame) -> Vec<u8> {
        let bytes = frame.blocks.bytes();
        let len = u32::from_le_bytes(bytes[..4].try_into().expect("length"));
        bytes[..HEADER_BYTES + len as usize].to_vec()
    }

    /// Frames of records `first..`, one per op list, each padded to whole blocks.
    fn log(first: u64, records: &[Vec<Op>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (i, ops) in records.iter().enumerate() {
            bytes.extend(Frame::new(first + i as u64, ops).blocks.bytes());
        }
        bytes
    }

    #[test]
    fn replay_reads_the_records_after_the_checkpoint_and_says_why_it_stopped() {
        let a = vec![put("jobs/a", "1"), delete("stdin/", "stdin0")];
        let b = vec![put("jobs/b", "")];
        let two = log(8, &[a.clone(), b.clone()]);
        let with = |tail: &[u8]| [two.as_slice(), tail].concat();
        let both = vec![(8, a.clone()), (9, b.clone())];
        let third = record(&Frame::new(10, &[put("jobs/c", "3")]));
        let mut altered = third.clone();
        *altered.last_mut().expect("byte") ^= 1;
        type Records = Vec<(u64, Vec<Op>)>;
        let cases: Vec<(&str, Vec<u8>, u64, Records, Stop)> = vec![
            ("empty", vec![], 7, vec![], Stop::End),
            ("zeros", vec![0; 64], 7, vec![], Stop::Unwritten),
            (
                "two, then zeros",
                with(&[0; 64]),
                7,
                both.clone(),
                Stop::Unwritten,
            ),
            ("two, then the end", two.clone(), 7, both.clone(), Stop::End),
            (
                "a header cut by the end of the bytes",
                with(&third[..10]),
                7,
                both.clone(),
                Stop::End,
            ),
            (
                "a record cut by the end of the bytes",
                with(&third[..third.len() - 1]),
                7,
                both.clone(),
                Stop::End,
            ),
            (
                "an altered payload",
                with(&altered),
                7,
                both.clone(),
                Stop::Torn,
            ),
            (
                "a record of the previous round",
                with(&record(&Frame::new(3, &[put("jobs/old", "")]))),
                7,
                both.clone(),
                Stop::Stale,
            ),
            (
                "a checkpoint past the first",
                two.clone(),
                8,
                vec![],
                Stop::Stale,
            ),
            (
                "a checkpoint before the first",
                two.clone(),
                6,
                vec![],
                Stop::Stale,
            ),
        ];
        for (name, bytes, checkpoint, records, stop) in cases {
            let got = replay(&bytes, checkpoint).expect(name);
            assert_eq!(got, Replay { records, stop }, "{name}");
        }
    }

    #[test]
    fn a_record_whose_crc_matches_but_does_not_decode_is_an_error() {
        let payload = [0xff, 0xff, 0xff];
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&checksum(3, 1, &payload).to_le_bytes());
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&payload);
        let err = replay(&bytes, 0).expect_err("undecodable");
        assert!(
            err.starts_with("record 1 at offset 0 does not decode"),
            "{err}"
        );
    }

    #[test]
    fn appended_records_replay_and_a_taken_back_one_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.wal");
        assert_eq!(read(&path, 0).expect("read"), Replay::default());
        let mut wal = Wal::open(&path, 0).expect("create");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), LOG_BYTES);
        for i in 0..3 {
            let frame = wal.frame(&[put(&format!("k{i}"), "v")]);
            wal.append(&frame).expect("append");
        }
        let frame = wal.frame(&[put("k3", "v")]);
        wal.append(&frame).expect("append");
        wal.take_back(&frame).expect("take back");
        assert_eq!(wal.last(), 3);
        drop(wal);

        let replayed = read(&path, 0).expect("read");
        let keys: Vec<u64> = replayed.records.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(keys, [1, 2, 3]);
        assert_eq!(replayed.stop, Stop::Unwritten);

        // Checkpointed at 3: the next round overwrites the first record, and stops at the
        // second, which is stale.
        let mut wal = Wal::open(&path, 3).expect("reopen");
        let frame = wal.frame(&[put("k4", "v")]);
        wal.append(&frame).expect("append");
        drop(wal);
        let replayed = read(&path, 3).expect("read");
        assert_eq!(replayed.records, vec![(4, vec![put("k4", "v")])]);
        assert_eq!(replayed.stop, Stop::Stale);
    }

    #[test]
    fn records_longer_than_a_block_are_followed_at_the_next_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.wal");
        let mut wal = Wal::open(&path, 0).expect("create");
        // Three blocks each: twelve of them run past what `read` reads first.
        let long = Op::Put("long".into(), vec![7; 2 * BLOCK + 5]);
        let mut expected = Vec::new();
        for seq in 1..=12 {
            let frame = wal.frame(std::slice::from_ref(&long));
            assert_eq!(frame.len(), 3 * BLOCK as u64);
            wal.append(&frame).expect("append");
            expected.push((seq, vec![long.clone()]));
        }
        let frame = wal.frame(&[put("short", "v")]);
        wal.append(&frame).expect("append");
        expected.push((13, vec![put("short", "v")]));
        let replayed = read(&path, 0).expect("read");
        assert_eq!(replayed.records, expected);
        assert_eq!(replayed.stop, Stop::Unwritten);
    }

    /// tmpfs has no direct I/O: the log falls back to the page cache there.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_log_where_direct_io_is_refused_is_written_through_the_page_cache() {
        let dir = tempfile::tempdir_in("/dev/shm").expect("a directory on tmpfs");
        let path = dir.path().join("state.wal");
        let mut wal = Wal::open(&path, 0).expect("create");
        let frame = wal.frame(&[put("k", "v")]);
        wal.append(&frame).expect("append");
        assert_eq!(
            read(&path, 0).expect("read").records,
            vec![(1, vec![put("k", "v")])]
        );
    }

    #[test]
    fn a_log_of_the_wrong_size_is_read_then_made_anew() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.wal");
        std::fs::write(&path, log(1, &[vec![put("a", "1")]])).expect("write");
        let replayed = read(&path, 0).expect("read");
        assert_eq!(replayed.records, vec![(1, vec![put("a", "1")])]);
        let wal = Wal::open(&path, 1).expect("open");
        assert_eq!(wal.last(), 1);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), LOG_BYTES);
        assert_eq!(read(&path, 1).expect("read"), Replay::default());
    }

    #[test]
    fn only_frames_that_fit_before_the_checkpoint_is_due_are_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(&dir.path().join("state.wal"), 0).expect("create");
        let big = wal.frame(&[Op::Put("big".into(), vec![1; (LOG_BYTES / 4) as usize])]);
        assert!(!wal.takes(&big), "longer than a quarter of the log");
        let small = wal.frame(&[put("k", "v")]);
        assert!(wal.takes(&small));
        wal.end = LOG_BYTES - small.len() + 1;
        assert!(!wal.takes(&small), "past the end");
        wal.end = 0;
        wal.since_checkpoint = RECORDS_PER_CHECKPOINT;
        assert!(!wal.takes(&small), "the checkpoint is due");
        wal.checkpointed();
        assert!(wal.takes(&small));
    }

    #[test]
    fn only_small_appends_to_a_log_that_writes_fast_are_quick() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::open(&dir.path().join("state.wal"), 0).expect("create");
        let fresh = |wal: &mut Wal| {
            wal.end = 0;
            wal.since_checkpoint = 0;
            wal.last_write = Duration::ZERO;
        };
        // A value of `n` bytes; the largest quick record is exactly QUICK_BYTES of blocks.
        let largest = QUICK_BYTES as usize - 100;
        let record_of = |wal: &Wal, n: usize| wal.frame(&[Op::Put("k".into(), vec![7; n])]);
        assert_eq!(record_of(&wal, largest).len(), QUICK_BYTES);
        type SetUp = fn(&mut Wal);
        let cases: [(&str, SetUp, usize, bool); 6] = [
            ("a small append", |_| {}, 300, true),
            ("the largest quick one", |_| {}, largest, true),
            ("too large", |_| {}, QUICK_BYTES as usize, false),
            (
                "the checkpoint due",
                |w| w.since_checkpoint = RECORDS_PER_CHECKPOINT,
                300,
                false,
            ),
            (
                "the log full",
                |w| w.end = LOG_BYTES - BLOCK as u64 + 1,
                300,
                false,
            ),
            (
                "the last write slow",
                |w| w.last_write = QUICK_WRITE * 2,
                300,
                false,
            ),
        ];
        for (case, set_up, bytes, quick) in cases {
            fresh(&mut wal);
            set_up(&mut wal);
            assert_eq!(wal.quick(&record_of(&wal, bytes)), quick, "{case}");
        }
        // Each write measures itself, which is how a slow one is followed by a fast one.
        fresh(&mut wal);
        wal.last_write = Duration::MAX;
        let frame = wal.frame(&[put("k", "v")]);
        wal.append(&frame).expect("append");
        assert!(wal.last_write < Duration::MAX);
    }
}
