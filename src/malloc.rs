//! glibc's allocator, tuned at start-up for how a build allocates: a few large buffers at a time
//! (decoded windows of 2-6 MB, solar days of 3 MB a band), made and freed over and over by the
//! threads of the CPU pool.
//!
//! With glibc's defaults, such a buffer is a fresh `mmap` or comes from one of up to eight arenas
//! per core. A fresh mapping is faulted in page by page, its `munmap` interrupts every other core
//! to flush their TLBs, and memory freed in one arena is not reused by a thread of another. One
//! arena and a mapping threshold above every buffer of a job make a freed buffer's pages the next
//! one's. On the chunk-month benchmark (docs/bench.md) that cut page faults from about 115,000 to
//! about 70,000 and CPU time by 8 %, with the same peak memory.
//!
//! Freed memory at the top of the heap is kept up to [`TRIM_THRESHOLD`] instead of glibc's 128 KB:
//! a job frees its buffers and the next allocates them again, and each return to the system made
//! the next buffer fault its pages in again (a sixth of a seed-bilinear job's page faults).
//!
//! A user who sets `MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or
//! `GLIBC_TUNABLES` keeps their setting: then nothing is changed. Other C libraries (musl builds for Lambda) are left alone.

/// Allocations below this come from the heap, so freed ones are reused; only bigger ones (none in
/// a job of the default chunk size) are mapped and unmapped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 64 << 20;

/// Free memory at the heap's top kept for the next buffers: above a job's peak (about 200 MB for
/// a 1200 x 1200 chunk-month), so a build's buffers are faulted in once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 256 << 20;

/// Tunes glibc's malloc; call first thing in `main`, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    let user_set = ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"];
    if user_set.iter().any(|v| std::env::var_os(v).is_some()) {
        return;
    }
    // SAFETY: mallopt only changes the allocator's parameters, and no other thread exists yet to
    // allocate concurrently. A refused value (return 0) leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}
