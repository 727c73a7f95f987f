//! Events of the per-CPU ring buffers put back into time order.
//!
//! The kernel side writes each event into the ring of the CPU its program runs on, so one
//! thread's events land in several rings when the scheduler moves it, and reading the rings
//! one after the other would hand a connection's data out of order. Events are therefore
//! copied out of the rings, held, and released sorted by their timestamp once no ring can
//! still receive an earlier one.
//!
//! When that is: a program reads the clock and commits its event within one run, with
//! preemption off (tracepoint and uprobe programs), i.e. within microseconds. An event whose
//! timestamp is older than [`HOLD_NS`] before the moment the rings are drained is therefore
//! already in its ring and read by that drain; everything up to that watermark can go out in
//! order, and the rest waits for the next drain (at most the poll interval plus [`HOLD_NS`]).
//!
//! Each ring's events are already in time order, so releasing is a merge of the rings'
//! queues. An event is copied out of its ring once, into a chunk of up to [`CHUNK_BYTES`]
//! shared by the events read after it from the same ring; the event and the segments made
//! from it are slices of that chunk (no second copy of the payload, and one allocation per
//! chunk rather than two per event: its own buffer and the shared header `Bytes` adds when
//! it is first sliced). A segment held downstream (a request waiting for its response) keeps
//! its chunk alive, at most [`CHUNK_BYTES`] for a small event; a message may be up to the
//! engine's `max_message_bytes` anyway. Bounded: what is held is what the rings held, minus
//! what was released; at most the rings' total size plus the events of the last [`HOLD_NS`].

use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// How far behind the drain's clock reading the released events stop (2 ms: three orders of
/// magnitude above a program's run time, and short against the poll interval).
pub const HOLD_NS: u64 = 2_000_000;

/// Events are copied into chunks of this size (an event larger than this gets one of its own).
pub const CHUNK_BYTES: usize = 4096;

/// Events of one ring copied since its last chunk was sealed: (timestamp, start, end).
#[derive(Debug, Default)]
struct Staged {
    buf: Vec<u8>,
    marks: Vec<(u64, usize, usize)>,
}

/// Events copied out of the rings, released in timestamp order: a merge of the rings'
/// queues, each already in order (a program reads the clock and writes its event on one CPU
/// with preemption off). Each queue holds (timestamp, event).
#[derive(Debug, Default)]
pub struct Reorder {
    queues: Vec<VecDeque<(u64, Bytes)>>,
    staged: Vec<Staged>,
}

impl Reorder {
    /// Copies one event read from ring `ring` in. Its timestamp is its first 8 bytes (native
    /// order, like the whole header); a shorter event counts as time 0 and is handed on as it
    /// is (the decoder counts it as undecodable).
    pub fn push(&mut self, ring: usize, event: &[u8]) {
        if self.queues.len() <= ring {
            self.queues.resize_with(ring + 1, VecDeque::new);
            self.staged.resize_with(ring + 1, Staged::default);
        }
        let ts = event
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_ne_bytes);
        let full = self
            .staged
            .get(ring)
            .is_some_and(|st| !st.buf.is_empty() && st.buf.len() + event.len() > CHUNK_BYTES);
        if full {
            self.seal(ring);
        }
        if let Some(st) = self.staged.get_mut(ring) {
            if st.buf.capacity() == 0 {
                st.buf.reserve_exact(CHUNK_BYTES.max(event.len()));
            }
            let start = st.buf.len();
            st.buf.extend_from_slice(event);
            st.marks.push((ts, start, st.buf.len()));
        }
    }

    /// Moves ring `ring`'s staged events into its queue as slices of one chunk.
    fn seal(&mut self, ring: usize) {
        let (Some(st), Some(q)) = (self.staged.get_mut(ring), self.queues.get_mut(ring)) else {
            return;
        };
        if st.marks.is_empty() {
            return;
        }
        let mut buf = std::mem::take(&mut st.buf);
        // A chunk sealed half empty (a quiet moment: a drain found a few events) gives back
        // its unused room, so a held event never keeps much more than itself alive.
        if buf.len() < buf.capacity() / 2 {
            buf.shrink_to_fit();
        }
        let chunk = Bytes::from(buf);
        for (ts, a, b) in st.marks.drain(..) {
            q.push_back((ts, chunk.slice(a..b)));
        }
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum::<usize>()
            + self.staged.iter().map(|s| s.marks.len()).sum::<usize>()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands `out` every held event with a timestamp up to `upto`, oldest first (of equal
    /// timestamps, the lower ring's first), and keeps the others. Each event is handed over,
    /// not lent: the segment made of it can be that very `Bytes`, narrowed to its payload
    /// (no reference-count traffic on the chunk the reader and the worker share).
    pub fn release(&mut self, upto: u64, out: &mut dyn FnMut(Bytes)) {
        for ring in 0..self.staged.len() {
            self.seal(ring);
        }
        let due = |q: &VecDeque<(u64, Bytes)>| q.front().map(|e| e.0).filter(|ts| *ts <= upto);
        // The next due event of each ring, oldest on top: a merge costs O(log rings) per
        // event, whatever the number of CPUs.
        let mut heads: BinaryHeap<Reverse<(u64, usize)>> = self
            .queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| due(q).map(|ts| Reverse((ts, i))))
            .collect();
        while let Some(Reverse((_, i))) = heads.pop() {
            let Some(q) = self.queues.get_mut(i) else {
                continue;
            };
            if let Some((_, ev)) = q.pop_front() {
                out(ev);
            }
            if let Some(ts) = due(q) {
                heads.push(Reverse((ts, i)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: u64, tag: u8) -> Vec<u8> {
        let mut v = ts.to_ne_bytes().to_vec();
        v.extend_from_slice(&[tag; 5]);
        v
    }

    fn drain(r: &mut Reorder, upto: u64) -> Vec<(u64, u8)> {
        let mut got = Vec::new();
        r.release(upto, &mut |e| {
            got.push((u64::from_ne_bytes(e[..8].try_into().unwrap()), e[8]))
        });
        got
    }

    #[test]
    fn two_rings_merge_into_time_order() {
        let mut r = Reorder::default();
        // Ring 0 then ring 1, each in order, interleaved in time.
        for (ts, tag) in [(10, b'a'), (30, b'c'), (50, b'e')] {
            r.push(0, &ev(ts, tag));
        }
        for (ts, tag) in [(20, b'b'), (40, b'd'), (60, b'f')] {
            r.push(1, &ev(ts, tag));
        }
        assert_eq!(
            drain(&mut r, 45),
            [(10, b'a'), (20, b'b'), (30, b'c'), (40, b'd')]
        );
        assert_eq!(r.len(), 2);
        // A later drain brings, from a third ring, an event older than what is held but newer
        // than the last watermark.
        r.push(2, &ev(47, b'x'));
        assert_eq!(
            drain(&mut r, u64::MAX),
            [(47, b'x'), (50, b'e'), (60, b'f')]
        );
        assert!(r.is_empty());
    }

    #[test]
    fn equal_timestamps_go_lower_ring_first() {
        let mut r = Reorder::default();
        r.push(1, &ev(5, b'2'));
        r.push(0, &ev(5, b'1'));
        r.push(0, &ev(9, b'3'));
        r.push(1, &ev(7, b'4'));
        assert_eq!(drain(&mut r, 6), [(5, b'1'), (5, b'2')]);
        assert_eq!(drain(&mut r, u64::MAX), [(7, b'4'), (9, b'3')]);
    }

    #[test]
    fn a_long_run_comes_out_whole_and_in_order() {
        // 3 000 events of 100 bytes per ring, released in slices while more arrive: every
        // event comes out whole and in order.
        let mut r = Reorder::default();
        let event = |ts: u64| {
            let mut v = ts.to_ne_bytes().to_vec();
            v.extend((0..92).map(|i| (ts as u8).wrapping_add(i)));
            v
        };
        let mut next = 0u64;
        let mut got = Vec::new();
        for ts in 0..6000u64 {
            r.push((ts % 2) as usize, &event(ts));
            if ts % 700 == 699 {
                r.release(ts - 100, &mut |e| got.push(e.to_vec()));
            }
        }
        r.release(u64::MAX, &mut |e| got.push(e.to_vec()));
        assert_eq!(got.len(), 6000);
        for e in got {
            assert_eq!(e, event(next));
            next += 1;
        }
        assert!(r.is_empty());
    }

    #[test]
    fn events_share_chunks_and_big_ones_get_their_own() {
        let mut r = Reorder::default();
        let sized = |ts: u64, n: usize| {
            let mut v = ts.to_ne_bytes().to_vec();
            v.resize(n, ts as u8);
            v
        };
        // Two small events: one chunk, the second right after the first.
        r.push(0, &sized(1, 100));
        r.push(0, &sized(2, 200));
        // 3 000 + 3 000 do not fit in 4 KiB: the second starts a new chunk.
        r.push(0, &sized(3, 3000));
        r.push(0, &sized(4, 3000));
        // Larger than a chunk: a chunk of its own, whole.
        r.push(0, &sized(5, 10_000));
        r.push(0, &sized(6, 50));
        assert_eq!(r.len(), 6);
        let mut got: Vec<Bytes> = Vec::new();
        r.release(u64::MAX, &mut |e| got.push(e));
        let lens: Vec<usize> = got.iter().map(Bytes::len).collect();
        assert_eq!(lens, [100, 200, 3000, 3000, 10_000, 50]);
        for (i, e) in got.iter().enumerate() {
            assert_eq!(e, &sized(i as u64 + 1, e.len())[..], "event {i} intact");
        }
        let adjacent = |a: &Bytes, b: &Bytes| a.as_ptr().wrapping_add(a.len()) == b.as_ptr();
        assert!(adjacent(&got[0], &got[1]), "small events share a chunk");
        assert!(
            adjacent(&got[1], &got[2]),
            "3 000 bytes still fit after 300"
        );
        assert!(!adjacent(&got[2], &got[3]), "a full chunk starts a new one");
        assert!(!adjacent(&got[3], &got[4]));
        assert!(
            !adjacent(&got[4], &got[5]),
            "after a big event, a new chunk"
        );
        assert!(r.is_empty());
    }

    #[test]
    fn a_cut_event_is_handed_on_first() {
        let mut r = Reorder::default();
        r.push(0, &ev(3, b'a'));
        r.push(1, &[1, 2, 3]);
        let mut got = Vec::new();
        r.release(u64::MAX, &mut |e| got.push(e.len()));
        assert_eq!(got, [3, 13]);
    }
}
