//! One input file as a stream of event batches: how it is opened (gzip, a
//! decompressed-size limit), how its layout is told (JSON Lines or one
//! document) and how it is decoded, on the merge's thread or one of its own.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use super::input::{File, Source};
use crate::decode::{Decoder, OwnedEvent, ReadError, SkipReason};

/// Events per batch handed from a file to the merge.
const BATCH_EVENTS: usize = 1024;
/// Messages per batch, so a run of skipped lines still yields control.
const BATCH_MESSAGES: u64 = 8192;
/// Longest JSON Lines line held in memory; a longer one is one `too_large`
/// message (a whole CloudTrail file on one line is read as a document).
pub(super) const MAX_LINE_BYTES: usize = 64 << 20;
/// Bytes looked at to tell JSON Lines from one document.
const HEAD_BYTES: usize = 1 << 20;
/// Read buffer of a file (and of its decompressed stream).
const BUF_BYTES: usize = 256 << 10;

/// A JSON document (not lines) up to this size is read whole and parsed in
/// place; a larger one is parsed as it is read. (Small in unit tests, so
/// they take both ways.)
const WHOLE_BYTES: usize = if cfg!(test) { 64 << 10 } else { 32 << 20 };

/// Fails the first read with the error it holds (none: reads nothing).
struct Failing(Option<io::Error>);

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        self.0.take().map_or(Ok(0), Err)
    }
}

/// What a batch read besides its events.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub messages: u64,
    pub skipped: BTreeMap<&'static str, u64>,
    pub decode_errors: BTreeMap<&'static str, u64>,
}

/// Events of one file, in file order, with what else was read.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub events: Vec<OwnedEvent>,
    pub tally: Tally,
}

/// Opens and decodes files.
#[derive(Debug, Clone)]
pub(super) struct Opener {
    pub decoder: Arc<Decoder>,
    /// Per-file cap on decompressed bytes.
    pub max_decompressed: u64,
    /// Bytes read from the inputs as stored (compressed), for progress.
    pub bytes_read: Arc<AtomicU64>,
    /// Undecodable messages so far, to log only the first few.
    pub warned: Arc<AtomicU64>,
    /// Decode threads that may still start (4 per job from `--jobs` 2, see
    /// [`Opener::stream`]).
    pub spare_threads: Arc<AtomicUsize>,
}

/// A file being read, batch by batch.
pub(super) enum Stream {
    /// JSON Lines decoded on the calling thread.
    Lines(Box<LineReader>),
    /// Decoded on a thread of its own (a document, or JSON Lines with `--jobs`).
    Thread(Receiver<Result<Batch, String>>),
}

impl Stream {
    /// The next batch; `None` at the end; `Err` with the reason the file
    /// could not be read further.
    pub fn next_batch(&mut self) -> Option<Result<Batch, String>> {
        match self {
            Stream::Lines(r) => r.next_batch(),
            Stream::Thread(rx) => rx.recv().ok(),
        }
    }
}

type Reader = Box<dyn BufRead + Send>;

impl Opener {
    /// The file's bytes, decompressed when they are gzip.
    fn open(&self, file: &File, counter: Arc<AtomicU64>) -> io::Result<Reader> {
        let raw: Box<dyn Read + Send> = match &file.what {
            Source::Path(p) => Box::new(std::fs::File::open(p)?),
            Source::Stdin => Box::new(io::stdin()),
            Source::Bytes(b) => Box::new(Cursor::new(b.clone())),
        };
        let mut r = BufReader::with_capacity(
            BUF_BYTES,
            Counted {
                inner: raw,
                counter,
            },
        );
        if r.fill_buf()?.starts_with(&[0x1f, 0x8b]) {
            let gz = flate2::bufread::MultiGzDecoder::new(r);
            Ok(Box::new(BufReader::with_capacity(
                BUF_BYTES,
                Limited {
                    inner: gz,
                    left: self.max_decompressed,
                    limit: self.max_decompressed,
                },
            )))
        } else {
            Ok(Box::new(r))
        }
    }

    /// Opens a file for the merge. With a spare decode thread (`--jobs` 2
    /// or more), the file is opened, its layout told and its events decoded
    /// on that thread, so the merging thread never decompresses; without
    /// one, the layout is told here, JSON Lines are decoded on the calling
    /// thread and a document on a thread of its own.
    pub fn stream(&self, file: &File, index: u32) -> Result<Stream, String> {
        if self.take_spare() {
            let opener = self.clone();
            let file = file.clone();
            return Ok(spawn(index, move |tx| {
                match opener.open_detected(&file) {
                    Ok((reader, true)) => send_lines(opener.line_reader(reader, &file), &tx),
                    Ok((reader, false)) => opener.send_document(reader, &file, &tx),
                    Err(reason) => {
                        let _ = tx.send(Err(reason));
                    }
                }
                opener.spare_threads.fetch_add(1, Ordering::AcqRel);
            }));
        }
        let (reader, lines) = self.open_detected(file)?;
        if lines {
            return Ok(Stream::Lines(Box::new(self.line_reader(reader, file))));
        }
        let opener = self.clone();
        let file = file.clone();
        Ok(spawn(index, move |tx| {
            opener.send_document(reader, &file, &tx)
        }))
    }

    /// Takes one of the spare decode threads, if one is left.
    fn take_spare(&self) -> bool {
        self.spare_threads
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// The file opened, and whether it is JSON Lines (see [`detect`]).
    fn open_detected(&self, file: &File) -> Result<(Reader, bool), String> {
        let mut reader = self
            .open(file, self.bytes_read.clone())
            .map_err(|e| e.to_string())?;
        detect(&mut reader).map_err(|e| e.to_string())
    }

    fn line_reader(&self, reader: Reader, file: &File) -> LineReader {
        LineReader {
            reader,
            line: Vec::new(),
            decoder: self.decoder.clone(),
            name: file.name.clone(),
            warned: self.warned.clone(),
            failed: None,
        }
    }

    /// Decodes one JSON document (or several, concatenated) and sends its
    /// events in batches, then the reason it could not be read to its end,
    /// if any.
    fn send_document(
        &self,
        mut reader: Reader,
        file: &File,
        tx: &SyncSender<Result<Batch, String>>,
    ) {
        let mut batch = Batch::default();
        let mut gone = false;
        let mut values = 0;
        let mut emit = |r: Result<crate::decode::AuditEvent<'_>, SkipReason>| {
            push(&mut batch, r.as_ref().map(OwnedEvent::from).map_err(|s| *s));
            if batch.events.len() >= BATCH_EVENTS && !gone {
                gone = tx.send(Ok(std::mem::take(&mut batch))).is_err();
            }
        };
        // A document that fits in `WHOLE_BYTES` (a CloudTrail file almost
        // always does) is parsed in place; a larger one is streamed, so
        // memory stays bounded whatever a file holds.
        let mut whole = Vec::new();
        let result = match (&mut *reader)
            .take(WHOLE_BYTES as u64 + 1)
            .read_to_end(&mut whole)
        {
            Ok(n) if n <= WHOLE_BYTES => self
                .decoder
                .decode_values(&whole, &mut values, &mut emit)
                .map_err(ReadError::Decode),
            read => {
                // Larger, or a read failed (the records before the
                // failure are still applied, then it is reported).
                let failed = read.err();
                let rest = Cursor::new(whole).chain(Failing(failed).chain(reader));
                let mut rest = BufReader::with_capacity(BUF_BYTES, rest);
                self.decoder
                    .decode_reader(&mut rest, &mut values, &mut emit)
            }
        };
        let failure = match result {
            Ok(()) => None,
            Err(ReadError::Decode(e)) => {
                *batch.tally.decode_errors.entry(e.as_str()).or_default() += 1;
                warn_undecodable(
                    &self.warned,
                    &file.name,
                    &e.to_string(),
                    "the rest of this document",
                );
                None
            }
            Err(ReadError::Io(e)) => Some(e.to_string()),
        };
        batch.tally.messages = values;
        let _ = tx.send(Ok(batch));
        if let Some(reason) = failure {
            let _ = tx.send(Err(reason));
        }
    }

    /// The time of each file's first event ([`Opener::first_time`]; none for
    /// standard input, which cannot be read twice), on `threads` threads.
    pub fn first_times(&self, files: &[File], threads: usize) -> Vec<Option<i64>> {
        let first = |f: &File| (!f.is_stdin()).then(|| self.first_time(f)).flatten();
        if threads <= 1 || files.len() < 2 {
            return files.iter().map(first).collect();
        }
        let next = AtomicUsize::new(0);
        let mut out = vec![None; files.len()];
        let found: Vec<Vec<(usize, Option<i64>)>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads.min(files.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut found = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(f) = files.get(i) else { break };
                            found.push((i, first(f)));
                        }
                        found
                    })
                })
                .collect();
            workers.into_iter().filter_map(|w| w.join().ok()).collect()
        });
        for (i, t) in found.into_iter().flatten() {
            out[i] = t;
        }
        out
    }

    /// The time of the file's first event, reading no further than it (and
    /// at most `limit` records): where the file starts in event time.
    pub fn first_time(&self, file: &File) -> Option<i64> {
        let mut found = None;
        self.sample(file, &self.decoder, 1000, |t| {
            found = Some(t);
            false
        });
        found
    }

    /// Decodes up to `limit` records of the file with `decoder`, handing
    /// each event's time to `on_event` until it returns false. Returns the
    /// records read.
    pub fn sample(
        &self,
        file: &File,
        decoder: &Decoder,
        limit: u64,
        mut on_event: impl FnMut(i64) -> bool,
    ) -> u64 {
        let Ok(reader) = self.open(file, Arc::new(AtomicU64::new(0))) else {
            return 0;
        };
        let stop = Rc::new(Cell::new(false));
        let mut reader = Stoppable {
            inner: reader,
            stop: stop.clone(),
        };
        let mut records = 0u64;
        let mut values = 0u64;
        // The walk ends at the first read after `stop` is set: the rest of
        // the file is never decompressed.
        let _ = decoder.decode_reader(&mut reader, &mut values, |r| {
            if stop.get() {
                return;
            }
            records += 1;
            if let Ok(ev) = r {
                if !on_event(ev.time_ms) {
                    stop.set(true);
                }
            }
            if records >= limit {
                stop.set(true);
            }
        });
        records
    }
}

fn spawn(
    index: u32,
    work: impl FnOnce(SyncSender<Result<Batch, String>>) + Send + 'static,
) -> Stream {
    let (tx, rx) = sync_channel(2);
    let spawned = std::thread::Builder::new()
        .name(format!("replay-decode-{index}"))
        .spawn(move || work(tx));
    match spawned {
        Ok(_) => Stream::Thread(rx),
        Err(e) => {
            let (tx, rx) = sync_channel(1);
            let _ = tx.send(Err(format!("cannot start a decode thread: {e}")));
            Stream::Thread(rx)
        }
    }
}

/// Sends a JSON Lines file's batches until its end or the merge is gone.
fn send_lines(mut r: LineReader, tx: &SyncSender<Result<Batch, String>>) {
    while let Some(b) = r.next_batch() {
        if tx.send(b).is_err() {
            break;
        }
    }
}

fn push(batch: &mut Batch, r: Result<OwnedEvent, SkipReason>) {
    match r {
        Ok(ev) => batch.events.push(ev),
        Err(reason) => *batch.tally.skipped.entry(reason.as_str()).or_default() += 1,
    }
}

fn warn_undecodable(warned: &AtomicU64, file: &str, error: &str, lost: &str) {
    if warned.fetch_add(1, Ordering::Relaxed) < 5 {
        tracing::warn!(file, error, "skipping undecodable message ({lost})");
    }
}

/// Tells JSON Lines from one document by the head of the stream, and gives
/// the stream back whole. `[` starts a document; `{` starts JSON Lines when
/// the first line is a whole JSON value, or, when it is not (a broken first
/// record, or a pretty-printed document), when most of the next lines are;
/// a first line longer than the head is one large document.
fn detect(reader: &mut Reader) -> io::Result<(Reader, bool)> {
    let mut head = Vec::new();
    let mut lines: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    let mut first_byte = None;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            if start < head.len() {
                lines.push((start, head.len()));
            }
            break;
        }
        let room = HEAD_BYTES.saturating_sub(head.len());
        let take = buf.len().min(room);
        head.extend_from_slice(&buf[..take]);
        reader.consume(take);
        while let Some(nl) = head[start..].iter().position(|&b| b == b'\n') {
            lines.push((start, start + nl));
            start += nl + 1;
        }
        first_byte = first_byte.or_else(|| head.iter().find(|b| !b.is_ascii_whitespace()).copied());
        let non_empty = lines
            .iter()
            .filter(|&&(a, b)| !head[a..b].trim_ascii().is_empty())
            .count();
        let decided = match first_byte {
            Some(b'{') => {
                non_empty >= 9
                    || (non_empty >= 1 && whole_value(&head, lines[first_non_empty(&head, &lines)]))
            }
            Some(_) => true,
            None => false,
        };
        if decided || head.len() >= HEAD_BYTES {
            break;
        }
    }
    let jsonl = match first_byte {
        Some(b'[') => false,
        Some(b'{') => {
            let mut non_empty = lines
                .iter()
                .filter(|&&(a, b)| !head[a..b].trim_ascii().is_empty());
            match non_empty.next() {
                // The first line did not end within the head: one large value.
                None => false,
                Some(&first) if whole_value(&head, first) => true,
                Some(_) => {
                    let rest: Vec<_> = non_empty.take(8).collect();
                    let whole = rest.iter().filter(|&&&l| whole_value(&head, l)).count();
                    whole > 0 && whole * 2 >= rest.len()
                }
            }
        }
        _ => true,
    };
    let rest = std::mem::replace(reader, Box::new(io::empty()));
    Ok((Box::new(Cursor::new(head).chain(rest)), jsonl))
}

fn first_non_empty(head: &[u8], lines: &[(usize, usize)]) -> usize {
    lines
        .iter()
        .position(|&(a, b)| !head[a..b].trim_ascii().is_empty())
        .unwrap_or(0)
}

/// Whether a line is an object and a whole JSON value.
fn whole_value(head: &[u8], (a, b): (usize, usize)) -> bool {
    let line = head[a..b].trim_ascii();
    line.first() == Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

/// A JSON Lines file, decoded line by line (borrowing from the line).
pub(super) struct LineReader {
    reader: Reader,
    line: Vec<u8>,
    decoder: Arc<Decoder>,
    name: String,
    warned: Arc<AtomicU64>,
    failed: Option<String>,
}

enum Line {
    Eof,
    Read,
    TooLong,
}

impl LineReader {
    fn next_batch(&mut self) -> Option<Result<Batch, String>> {
        if let Some(reason) = self.failed.take() {
            return Some(Err(reason));
        }
        let mut batch = Batch::default();
        let mut any = false;
        while batch.events.len() < BATCH_EVENTS && batch.tally.messages < BATCH_MESSAGES {
            match read_line(&mut self.reader, &mut self.line) {
                Ok(Line::Eof) => break,
                Ok(Line::TooLong) => {
                    any = true;
                    batch.tally.messages += 1;
                    *batch.tally.decode_errors.entry("too_large").or_default() += 1;
                    warn_undecodable(
                        &self.warned,
                        &self.name,
                        "line longer than 64 MiB",
                        "that line",
                    );
                }
                Ok(Line::Read) => {
                    any = true;
                    let line = self.line.trim_ascii();
                    if line.is_empty() {
                        continue;
                    }
                    batch.tally.messages += 1;
                    let decoded = self.decoder.decode(line, |r| {
                        push(&mut batch, r.as_ref().map(OwnedEvent::from).map_err(|s| *s))
                    });
                    if let Err(e) = decoded {
                        *batch.tally.decode_errors.entry(e.as_str()).or_default() += 1;
                        warn_undecodable(&self.warned, &self.name, &e.to_string(), "that line");
                    }
                }
                Err(e) => {
                    self.failed = Some(e.to_string());
                    any = true;
                    break;
                }
            }
        }
        any.then_some(Ok(batch))
    }
}

/// Reads one line (without its newline) into `line`; a line longer than
/// [`MAX_LINE_BYTES`] is skipped to its end without being held.
fn read_line(r: &mut Reader, line: &mut Vec<u8>) -> io::Result<Line> {
    line.clear();
    let mut any = false;
    let mut too_long = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => Line::Eof,
                (true, false) => Line::Read,
                (true, true) => Line::TooLong,
            });
        }
        any = true;
        let nl = memchr::memchr(b'\n', buf);
        let chunk = &buf[..nl.unwrap_or(buf.len())];
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE_BYTES {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = nl.map_or(buf.len(), |i| i + 1);
        r.consume(used);
        if nl.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Read });
        }
    }
}

/// Counts the bytes read from storage.
struct Counted<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Fails once more than `limit` decompressed bytes were read: a gzip bomb
/// is one failed file, not an exhausted machine.
struct Limited<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(left) => {
                self.left = left;
                Ok(n)
            }
            None => Err(io::Error::other(format!(
                "decompressed size passed the limit of {} (--max-decompressed)",
                super::ByteSize(self.limit)
            ))),
        }
    }
}

/// A reader that fails once `stop` is set, to end a decode early.
struct Stoppable {
    inner: Reader,
    stop: Rc<Cell<bool>>,
}

fn stopped() -> io::Error {
    io::Error::other("sample complete")
}

impl Read for Stoppable {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.get() {
            return Err(stopped());
        }
        self.inner.read(buf)
    }
}

impl BufRead for Stoppable {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.stop.get() {
            return Err(stopped());
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
    }
}
