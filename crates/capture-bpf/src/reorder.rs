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
//! queues. An event is copied out of its ring once, into a `Bytes` of its own that the
//! segments made from it slice (no second copy of the payload, and a held segment keeps only
//! its own event alive). Bounded: what is held is what the rings held, minus what was
//! released; at most the rings' total size plus the events of the last [`HOLD_NS`].

use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// How far behind the drain's clock reading the released events stop (2 ms: three orders of
/// magnitude above a program's run time, and short against the poll interval).
pub const HOLD_NS: u64 = 2_000_000;

/// Events copied out of the rings, released in timestamp order: a merge of the rings'
/// queues, each already in order (a program reads the clock and writes its event on one CPU
/// with preemption off). Each queue holds (timestamp, event).
#[derive(Debug, Default)]
pub struct Reorder {
    queues: Vec<VecDeque<(u64, Bytes)>>,
}

impl Reorder {
    /// Copies one event read from ring `ring` in. Its timestamp is its first 8 bytes (native
    /// order, like the whole header); a shorter event counts as time 0 and is handed on as it
    /// is (the decoder counts it as undecodable).
    pub fn push(&mut self, ring: usize, event: &[u8]) {
        if self.queues.len() <= ring {
            self.queues.resize_with(ring + 1, VecDeque::new);
        }
        let ts = event
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_ne_bytes);
        if let Some(q) = self.queues.get_mut(ring) {
            q.push_back((ts, Bytes::copy_from_slice(event)));
        }
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }

    /// Hands `out` every held event with a timestamp up to `upto`, oldest first (of equal
    /// timestamps, the lower ring's first), and keeps the others.
    pub fn release(&mut self, upto: u64, out: &mut dyn FnMut(&Bytes)) {
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
                out(&ev);
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
    fn a_cut_event_is_handed_on_first() {
        let mut r = Reorder::default();
        r.push(0, &ev(3, b'a'));
        r.push(1, &[1, 2, 3]);
        let mut got = Vec::new();
        r.release(u64::MAX, &mut |e| got.push(e.len()));
        assert_eq!(got, [3, 13]);
    }
}
