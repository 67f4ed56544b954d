//! The allocator front of the static musl builds ([`CachingAlloc`]).

/// A global allocator for the static musl builds: musl's malloc returns the memory of a
/// freed block of tens of KiB to the kernel at once, so every 64 KiB DATA buffer and
/// WebSocket frame would cost an mmap, a munmap and 16 page faults. This front keeps up to [`CACHE_KEEP`] freed blocks per size class
/// between 12 KiB and 192 KiB and hands them out again; everything else goes straight to
/// the system allocator. Blocks are rounded up to their class, so a realloc within the
/// class is free. At most 1.2 MiB is ever held.
pub struct CachingAlloc {
    cache: std::sync::Mutex<[[usize; CACHE_KEEP]; CACHE_CLASSES.len()]>,
}

/// Block sizes the cache rounds to (bytes).
const CACHE_CLASSES: [usize; 8] = [
    16 << 10,
    24 << 10,
    32 << 10,
    48 << 10,
    66 << 10,
    96 << 10,
    132 << 10,
    192 << 10,
];
/// Freed blocks kept per class.
pub const CACHE_KEEP: usize = 2;
const CACHE_MIN: usize = 12 << 10;
const CACHE_ALIGN: usize = 16;

impl CachingAlloc {
    pub const fn new() -> CachingAlloc {
        CachingAlloc {
            cache: std::sync::Mutex::new([[0; CACHE_KEEP]; CACHE_CLASSES.len()]),
        }
    }

    fn class(layout: std::alloc::Layout) -> Option<usize> {
        if layout.align() > CACHE_ALIGN || layout.size() < CACHE_MIN {
            return None;
        }
        CACHE_CLASSES.iter().position(|&c| layout.size() <= c)
    }

    fn class_layout(c: usize) -> std::alloc::Layout {
        // Every class size is a non-zero multiple of the alignment.
        std::alloc::Layout::from_size_align(CACHE_CLASSES[c], CACHE_ALIGN)
            .unwrap_or(std::alloc::Layout::new::<u8>())
    }

    fn take(&self, c: usize) -> *mut u8 {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for slot in cache[c].iter_mut() {
            if *slot != 0 {
                return std::mem::replace(slot, 0) as *mut u8;
            }
        }
        std::ptr::null_mut()
    }

    fn keep(&self, c: usize, p: *mut u8) -> bool {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for slot in cache[c].iter_mut() {
            if *slot == 0 {
                *slot = p as usize;
                return true;
            }
        }
        false
    }
}

impl Default for CachingAlloc {
    fn default() -> Self {
        CachingAlloc::new()
    }
}

// SAFETY: every block handed out is either the system allocator's answer for the exact
// layout asked (no class), or a block of at least the class size with CACHE_ALIGN
// alignment that no one else holds: it came from the system allocator for
// `class_layout(c)` and was either just allocated or taken out of the cache, which only
// holds blocks given back through `dealloc`. `dealloc` and `realloc` receive the layout
// the block was handed out with (GlobalAlloc's contract), and `class` is a pure function
// of it, so a block goes back to the class (and the system layout) it came from. The
// cache's lock is never held across a call into the system allocator.
unsafe impl std::alloc::GlobalAlloc for CachingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::alloc::System;
        match Self::class(layout) {
            None => System.alloc(layout),
            Some(c) => {
                let p = self.take(c);
                if p.is_null() {
                    System.alloc(Self::class_layout(c))
                } else {
                    p
                }
            }
        }
    }

    /// Zeroed blocks: fresh ones come zeroed from the system (musl's calloc does not
    /// touch fresh pages, so a large buffer costs no resident memory until it is used);
    /// only a reused block is cleared.
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::alloc::System;
        match Self::class(layout) {
            None => System.alloc_zeroed(layout),
            Some(c) => {
                let p = self.take(c);
                if p.is_null() {
                    System.alloc_zeroed(Self::class_layout(c))
                } else {
                    std::ptr::write_bytes(p, 0, layout.size());
                    p
                }
            }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: std::alloc::Layout) {
        use std::alloc::System;
        match Self::class(layout) {
            None => System.dealloc(p, layout),
            Some(c) => {
                if !self.keep(c, p) {
                    System.dealloc(p, Self::class_layout(c));
                }
            }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use std::alloc::System;
        let Ok(new) = std::alloc::Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        match (Self::class(layout), Self::class(new)) {
            (None, None) => System.realloc(p, layout, new_size),
            (Some(a), Some(b)) if a == b => p,
            _ => {
                let q = self.alloc(new);
                if !q.is_null() {
                    std::ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                    self.dealloc(p, layout);
                }
                q
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zeroed_blocks_are_zero_whether_fresh_or_reused() {
        use super::CachingAlloc;
        use std::alloc::{GlobalAlloc, Layout};
        let a = CachingAlloc::new();
        for size in [100usize, 20 << 10, 64 << 10, 300 << 10] {
            let l = Layout::from_size_align(size, 8).unwrap();
            // SAFETY (test): blocks are used within their layout and freed once with it.
            unsafe {
                let p = a.alloc(l);
                std::ptr::write_bytes(p, 0xAB, size);
                a.dealloc(p, l);
                let q = a.alloc_zeroed(l);
                assert!(!q.is_null());
                let bytes = std::slice::from_raw_parts(q, size);
                assert!(bytes.iter().all(|&b| b == 0), "size {size}");
                a.dealloc(q, l);
            }
        }
    }

    #[test]
    fn caching_alloc_reuses_freed_blocks_per_class_and_keeps_data_on_realloc() {
        use super::{CachingAlloc, CACHE_KEEP};
        use std::alloc::{GlobalAlloc, Layout};
        let a = CachingAlloc::new();
        let l60 = Layout::from_size_align(60 << 10, 1).unwrap();
        let l62 = Layout::from_size_align(62 << 10, 8).unwrap();
        // SAFETY: each block is used within its layout and freed once with the layout
        // it was last handed out with.
        unsafe {
            let p = a.alloc(l60);
            assert!(!p.is_null());
            a.dealloc(p, l60);
            // Same class (66 KiB): the freed block comes back.
            let q = a.alloc(l62);
            assert_eq!(p, q);
            // Growing within the class keeps the block; across classes it moves, data kept.
            q.write_bytes(0xab, 62 << 10);
            let r = a.realloc(q, l62, 65 << 10);
            assert_eq!(r, q);
            let l65 = Layout::from_size_align(65 << 10, 8).unwrap();
            let s = a.realloc(r, l65, 100 << 10);
            assert_ne!(s, r);
            assert!(std::slice::from_raw_parts(s, 62 << 10)
                .iter()
                .all(|&b| b == 0xab));
            let l100 = Layout::from_size_align(100 << 10, 8).unwrap();
            // Shrinking below the smallest class hands it to the system allocator.
            let t = a.realloc(s, l100, 100);
            assert!(std::slice::from_raw_parts(t, 100)
                .iter()
                .all(|&b| b == 0xab));
            a.dealloc(t, Layout::from_size_align(100, 8).unwrap());
            // At most CACHE_KEEP blocks per class are kept.
            let blocks: Vec<*mut u8> = (0..CACHE_KEEP + 2).map(|_| a.alloc(l60)).collect();
            for &b in &blocks {
                a.dealloc(b, l60);
            }
            let again: Vec<*mut u8> = (0..CACHE_KEEP + 2).map(|_| a.alloc(l60)).collect();
            let reused = again.iter().filter(|p| blocks.contains(p)).count();
            assert!(reused >= CACHE_KEEP, "{reused}");
            for &b in &again {
                a.dealloc(b, l60);
            }
            // Alignment above 16 and small sizes are not cached.
            let big_align = Layout::from_size_align(64 << 10, 4096).unwrap();
            let u = a.alloc(big_align);
            assert_eq!(u as usize % 4096, 0);
            a.dealloc(u, big_align);
        }
    }
}
