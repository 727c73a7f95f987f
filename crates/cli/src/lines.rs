//! Record lines formatted on the engine's worker threads and written by one writer thread.
//!
//! The workers hand each record to [`Lines::push`] (the engine's callback output): it is
//! formatted into a shared buffer right where it was built, and dropped there. Handing whole
//! records to a printer thread instead moved ~800 bytes through a channel per record and made
//! the printer release every one of the record's shared buffers, whose reference counts then
//! bounced between the two cores' caches. Full buffers go to the writer thread through a
//! bounded channel (a full channel blocks the workers: backpressure, nothing dropped); a live
//! capture or a terminal also gets what is buffered written every [`LIVE_FLUSH`].

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use l7tap::L7Record;
use parking_lot::Mutex;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A buffer is handed to the writer once it holds this many bytes.
const CHUNK_BYTES: usize = 64 << 10;
/// Full buffers waiting for the writer; more block the workers.
const CHUNKS_QUEUED: usize = 16;
/// How often a live view writes what is buffered.
pub(crate) const LIVE_FLUSH: Duration = Duration::from_millis(100);

/// How each record becomes one line.
pub(crate) type Format = fn(&L7Record, &mut Vec<u8>);

pub(crate) enum Msg {
    Chunk(Chunk),
    Done,
}

/// Lines formatted, and how many.
#[derive(Default)]
pub(crate) struct Chunk {
    bytes: Vec<u8>,
    lines: u64,
}

impl Chunk {
    fn new() -> Chunk {
        Chunk {
            bytes: Vec::with_capacity(CHUNK_BYTES * 2),
            lines: 0,
        }
    }
}

/// The shared line buffer and the writer's channel.
pub(crate) struct Lines {
    buf: Mutex<Chunk>,
    tx: Sender<Msg>,
    format: Format,
    /// Lines formatted.
    lines: AtomicU64,
    /// Lines not written because the writer had stopped on an error.
    lost: AtomicU64,
}

impl Lines {
    /// A line buffer formatting with `format`, and the receiving end for [`write_all`].
    pub(crate) fn new(format: Format) -> (Lines, Receiver<Msg>) {
        let (tx, rx) = bounded(CHUNKS_QUEUED);
        let lines = Lines {
            buf: Mutex::new(Chunk::new()),
            tx,
            format,
            lines: AtomicU64::new(0),
            lost: AtomicU64::new(0),
        };
        (lines, rx)
    }

    /// Formats `r` as one line (called on a worker thread). The line is formatted outside
    /// the lock, into the thread's own scratch buffer, so workers only queue for the copy.
    pub(crate) fn push(&self, r: &L7Record) {
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                (self.format)(r, &mut line);
                self.append(&line);
            }
            // Only if `format` itself pushed a record: format into a buffer of its own.
            Err(_) => {
                let mut own = Vec::new();
                (self.format)(r, &mut own);
                self.append(&own);
            }
        })
    }

    fn append(&self, line: &[u8]) {
        let full = {
            let mut buf = self.buf.lock();
            buf.bytes.extend_from_slice(line);
            buf.bytes.push(b'\n');
            buf.lines += 1;
            if buf.bytes.len() < CHUNK_BYTES {
                return;
            }
            std::mem::replace(&mut *buf, Chunk::new())
        };
        self.send(full);
    }

    fn send(&self, chunk: Chunk) {
        // Several workers may send: shared counters, so real atomic adds (once per chunk).
        self.lines.fetch_add(chunk.lines, Ordering::Relaxed);
        if let Err(e) = self.tx.send(Msg::Chunk(chunk)) {
            // The writer is gone (it only stops at `Done`, so: it panicked).
            if let Msg::Chunk(c) = e.into_inner() {
                self.lost.fetch_add(c.lines, Ordering::Relaxed);
            }
        }
    }

    /// Hands over what is buffered and tells the writer to finish (after the workers have).
    pub(crate) fn finish(&self) {
        let rest = std::mem::take(&mut *self.buf.lock());
        if !rest.bytes.is_empty() {
            self.send(rest);
        }
        let _ = self.tx.send(Msg::Done);
    }

    /// (lines handed to the writer, of them lost because the writer had stopped).
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.lines.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
        )
    }

    /// Takes what is buffered, for a live flush (counted as handed over).
    fn take(&self) -> Chunk {
        let chunk = {
            let mut buf = self.buf.lock();
            if buf.bytes.is_empty() {
                return Chunk::default();
            }
            std::mem::replace(&mut *buf, Chunk::new())
        };
        self.lines.fetch_add(chunk.lines, Ordering::Relaxed);
        chunk
    }
}

/// The writer thread's loop: writes chunks to `out` until [`Lines::finish`]. With `live`,
/// what is buffered is also written whenever no chunk came for [`LIVE_FLUSH`]. After a write
/// error (the reader went away) it calls `failed_once` (a live capture stops there: nobody
/// reads it any more) and keeps taking chunks until the end, counting their lines as lost, so
/// no worker blocks on a full channel and no line goes uncounted; the error is returned at the
/// end. A live view with nothing to write asks `closed` every [`LIVE_FLUSH`], so a reader
/// that went away is noticed then, not at the next record (on a quiet host, much later).
pub(crate) fn write_all(
    lines: &Lines,
    rx: Receiver<Msg>,
    out: &mut dyn Write,
    live: bool,
    failed_once: &dyn Fn(),
    closed: &dyn Fn() -> bool,
) -> std::io::Result<()> {
    let mut failed: Option<std::io::Error> = None;
    loop {
        // (chunk, flush after writing it)
        let (chunk, flush) = if live {
            match rx.recv_timeout(LIVE_FLUSH) {
                Ok(Msg::Chunk(c)) => (c, rx.is_empty()),
                Err(RecvTimeoutError::Timeout) => (lines.take(), true),
                Ok(Msg::Done) | Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(Msg::Chunk(c)) => (c, false),
                Ok(Msg::Done) | Err(_) => break,
            }
        };
        if chunk.bytes.is_empty() {
            if live && failed.is_none() && closed() {
                failed = Some(std::io::ErrorKind::BrokenPipe.into());
                failed_once();
            }
            continue;
        }
        if failed.is_none() {
            let written =
                out.write_all(&chunk.bytes)
                    .and_then(|()| if flush { out.flush() } else { Ok(()) });
            match written {
                Ok(()) => continue,
                Err(e) => {
                    failed = Some(e);
                    failed_once();
                }
            }
        }
        // Not written (this chunk may have gone out in part: counted whole).
        lines.lost.fetch_add(chunk.lines, Ordering::Relaxed);
    }
    match failed {
        Some(e) => Err(e),
        None => out.flush(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(r: &L7Record, out: &mut Vec<u8>) {
        out.extend_from_slice(r.request_resource.as_ref());
    }

    fn rec(path: &str) -> L7Record {
        L7Record {
            request_resource: bytes::Bytes::copy_from_slice(path.as_bytes()),
            ..Default::default()
        }
    }

    /// Lines and a writer thread collecting what it writes.
    fn to_memory() -> (
        std::sync::Arc<Lines>,
        std::thread::JoinHandle<std::io::Result<Vec<u8>>>,
    ) {
        let (lines, rx) = Lines::new(fmt);
        let lines = std::sync::Arc::new(lines);
        let l2 = std::sync::Arc::clone(&lines);
        let writer = std::thread::spawn(move || {
            let mut out = Vec::new();
            write_all(&l2, rx, &mut out, false, &|| {}, &|| false).map(|()| out)
        });
        (lines, writer)
    }

    #[test]
    fn every_line_is_written_once_in_order_across_chunks() {
        let (lines, writer) = to_memory();
        // 20 000 lines of 10 bytes: three chunks handed over full, the rest by finish.
        for i in 0..20_000 {
            lines.push(&rec(&format!("/p{i:07}")));
        }
        lines.finish();
        let out = writer.join().unwrap().unwrap();
        let text = String::from_utf8(out).unwrap();
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(got.len(), 20_000);
        for (i, l) in got.iter().enumerate() {
            assert_eq!(*l, format!("/p{i:07}"));
        }
        assert_eq!(lines.totals(), (20_000, 0));
    }

    #[test]
    fn workers_pushing_at_once_never_mix_lines() {
        let (lines, writer) = to_memory();
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let l = std::sync::Arc::clone(&lines);
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        l.push(&rec(&format!("/t{t}-{i:06}")));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        lines.finish();
        let text = String::from_utf8(writer.join().unwrap().unwrap()).unwrap();
        // Each thread's lines whole and in its order; 20 000 in all.
        let mut next = [0usize; 4];
        let mut n = 0;
        for l in text.lines() {
            let (t, i) = l[2..].split_once('-').unwrap();
            let t: usize = t.parse().unwrap();
            assert_eq!(i.parse::<usize>().unwrap(), next[t], "line {l}");
            next[t] += 1;
            n += 1;
        }
        assert_eq!(n, 20_000);
        assert_eq!(lines.totals(), (20_000, 0));
    }

    #[test]
    fn a_live_view_sees_lines_without_a_full_chunk() {
        let (lines, rx) = Lines::new(fmt);
        let lines = std::sync::Arc::new(lines);
        let l2 = std::sync::Arc::clone(&lines);
        let (seen_tx, seen_rx) = bounded::<usize>(1);
        struct Probe(Vec<u8>, Sender<usize>);
        impl Write for Probe {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                let _ = self.1.try_send(self.0.len());
                Ok(())
            }
        }
        let writer = std::thread::spawn(move || {
            let mut p = Probe(Vec::new(), seen_tx);
            write_all(&l2, rx, &mut p, true, &|| {}, &|| false)
        });
        lines.push(&rec("/one"));
        // Written by the periodic flush, long before the 64 KiB chunk fills.
        let n = seen_rx.recv_timeout(LIVE_FLUSH * 20).unwrap();
        assert_eq!(n, "/one\n".len());
        lines.finish();
        writer.join().unwrap().unwrap();
    }

    #[test]
    fn a_failing_output_loses_every_line_counted_and_blocks_nobody() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (lines, rx) = Lines::new(fmt);
        let lines = std::sync::Arc::new(lines);
        let l2 = std::sync::Arc::clone(&lines);
        let writer =
            std::thread::spawn(move || write_all(&l2, rx, &mut Closed, false, &|| {}, &|| false));
        // Far more than the channel holds (16 chunks of 64 KiB): a writer that stopped
        // reading would leave this loop blocked.
        for i in 0..200_000 {
            lines.push(&rec(&format!("/p{i:07}")));
        }
        lines.finish();
        let err = writer.join().unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
        assert_eq!(lines.totals(), (200_000, 200_000));
    }

    #[test]
    fn lines_after_the_writer_failed_are_counted_lost() {
        let (lines, rx) = Lines::new(fmt);
        drop(rx); // the writer is gone
        let big = "x".repeat(CHUNK_BYTES);
        lines.push(&rec(&big)); // one full chunk: its send fails
        lines.push(&rec("/tail"));
        lines.finish(); // the rest: lost too
        assert_eq!(lines.totals(), (2, 2));
    }
}
