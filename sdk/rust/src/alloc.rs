//! The plugins' allocator: power-of-two size classes with free lists in front of the system
//! allocator (dlmalloc in wasm32-wasi).
//!
//! Every Wasm operator a plugin executes is metered and costs time; a dlmalloc `malloc` +
//! `free` pair runs ~230 of them (measured with the host's `instructions` metric), and a hook
//! that reads its context and builds a result allocates about eight times. A class allocation
//! is a free-list pop, its release a push (a few dozen operators each).
//!
//! Blocks of 16 B to 64 KiB are rounded up to a power of two and, once freed, kept on their
//! class's list for the next allocation of that class: they are not given back to dlmalloc,
//! so the memory held is the peak of what was live per class (at most twice the bytes asked
//! for) — the host's linear-memory cap still bounds it. Larger blocks, and alignments above
//! 16, go to the system allocator unchanged.
//!
//! The SDK installs it as the global allocator of `wasm32` builds. Wasm plugins are
//! single-threaded (no shared memory), which the free lists rely on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Classes 16 << 0 ..= 16 << 12 (16 B ..= 64 KiB).
const CLASSES: usize = 13;
const MIN: usize = 16;
const ALIGN: usize = 16;

/// The allocator (see the module documentation).
pub struct PluginAlloc {
    heads: UnsafeCell<[*mut u8; CLASSES]>,
}

// SAFETY: only used single-threaded: as the global allocator of a wasm32 module without
// threads, or owned by one test.
unsafe impl Sync for PluginAlloc {}

impl PluginAlloc {
    /// An allocator with empty free lists.
    pub const fn new() -> Self {
        PluginAlloc { heads: UnsafeCell::new([ptr::null_mut(); CLASSES]) }
    }

    /// Blocks held on the free lists, per class (for tests and diagnostics).
    pub fn free_blocks(&self) -> [usize; CLASSES] {
        let mut n = [0; CLASSES];
        // SAFETY: single-threaded (see `Sync`); the lists only hold blocks this allocator
        // linked, each starting with the next pointer.
        unsafe {
            let heads = &*self.heads.get();
            for (c, count) in n.iter_mut().enumerate() {
                let mut p = heads[c];
                while !p.is_null() {
                    *count += 1;
                    p = *(p as *mut *mut u8);
                }
            }
        }
        n
    }
}

impl Default for PluginAlloc {
    fn default() -> Self {
        Self::new()
    }
}

/// The class of a layout, `None` for blocks the system allocator serves directly.
#[inline]
fn class(size: usize, align: usize) -> Option<usize> {
    if align > ALIGN || size > MIN << (CLASSES - 1) {
        return None;
    }
    let n = size.max(MIN);
    // ceil(log2(n)) - log2(MIN)
    Some((usize::BITS - (n - 1).leading_zeros()) as usize - 4)
}

unsafe impl GlobalAlloc for PluginAlloc {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        match class(l.size(), l.align()) {
            Some(c) => {
                let heads = &mut *self.heads.get();
                let p = heads[c];
                if p.is_null() {
                    System.alloc(Layout::from_size_align_unchecked(MIN << c, ALIGN))
                } else {
                    heads[c] = *(p as *mut *mut u8);
                    p
                }
            }
            None => System.alloc(l),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        match class(l.size(), l.align()) {
            Some(c) => {
                let heads = &mut *self.heads.get();
                *(p as *mut *mut u8) = heads[c];
                heads[c] = p;
            }
            None => System.dealloc(p, l),
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let old = class(l.size(), l.align());
        let new = class(new_size, l.align());
        if old.is_some() && old == new {
            return p; // the block already has room
        }
        if old.is_none() && new.is_none() {
            return System.realloc(p, l, new_size);
        }
        let nl = Layout::from_size_align_unchecked(new_size, l.align());
        let q = self.alloc(nl);
        if !q.is_null() {
            ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
            self.dealloc(p, l);
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class(0, 1), Some(0));
        assert_eq!(class(16, 8), Some(0));
        assert_eq!(class(17, 1), Some(1));
        assert_eq!(class(1024, 1), Some(6));
        assert_eq!(class(1025, 1), Some(7));
        assert_eq!(class(65536, 16), Some(12));
        assert_eq!(class(65537, 1), None);
        assert_eq!(class(64, 32), None);
    }

    #[test]
    fn freed_blocks_are_reused_by_their_class() {
        let a = PluginAlloc::new();
        unsafe {
            let l = Layout::from_size_align(100, 8).unwrap();
            let p = a.alloc(l);
            assert!(!p.is_null() && p as usize % ALIGN == 0);
            ptr::write_bytes(p, 0xab, 100);
            a.dealloc(p, l);
            assert_eq!(a.free_blocks()[3], 1); // 100 -> 128 B
            // Any size of the same class gets the same block back, and the list is empty.
            let q = a.alloc(Layout::from_size_align(65, 1).unwrap());
            assert_eq!(p, q);
            assert_eq!(a.free_blocks(), [0; CLASSES]);
            // A smaller class does not take it.
            a.dealloc(q, Layout::from_size_align(65, 1).unwrap());
            let r = a.alloc(Layout::from_size_align(20, 1).unwrap());
            assert_ne!(r, q);
            a.dealloc(r, Layout::from_size_align(20, 1).unwrap());
            assert_eq!(a.free_blocks()[1], 1);
            assert_eq!(a.free_blocks()[3], 1);
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_and_the_block_while_the_class_fits() {
        let a = PluginAlloc::new();
        unsafe {
            let l = Layout::from_size_align(20, 1).unwrap();
            let p = a.alloc(l);
            for i in 0..20 {
                *p.add(i) = i as u8;
            }
            let q = a.realloc(p, l, 32);
            assert_eq!(p, q, "20 and 32 bytes are both the 32 B class");
            let r = a.realloc(q, Layout::from_size_align(32, 1).unwrap(), 70_000);
            assert_ne!(r, q);
            for i in 0..20 {
                assert_eq!(*r.add(i), i as u8);
            }
            assert_eq!(a.free_blocks()[1], 1, "the old block is free");
            let big = Layout::from_size_align(70_000, 1).unwrap();
            let s = a.realloc(r, big, 100_000);
            assert_eq!(*s.add(19), 19);
            a.dealloc(s, Layout::from_size_align(100_000, 1).unwrap());
        }
    }
}
