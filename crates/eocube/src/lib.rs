//! # eocube
//!
//! Turns piles of satellite scenes into analysis-ready Zarr datacubes.
//!
//! ```text
//! CubeSpec ──plan──▶ GeoBox + time bins + jobs
//! job (t, iy, ix): search ─▶ cog::Cog::read_window ─▶ warp::warp_into ─▶ mask ─▶ reduce ─▶ store
//! ```
//!
//! Modules follow the pipeline's nouns: [`grid`] (Bbox, GeoBox, CRSs), [`cog`] (Cloud-Optimized
//! GeoTIFF windows from local files, HTTP and S3), [`warp`] (resampling a source window onto a
//! chunk of the target grid). Data flows one way, spec → plan → jobs → chunks → store; no module
//! reaches back up.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod build;
pub mod catalog;
pub mod cloud;
pub mod cog;
pub mod executor;
pub mod expr;
mod fifo;
pub mod fuse;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub mod grid;
pub mod index;
pub mod job;
pub mod landmask;
pub mod mask;
pub mod plan;
pub mod pyramid;
pub mod reduce;
pub mod report;
#[cfg(test)]
mod scratch;
pub mod sensor;
pub mod serve;
pub mod spec;
pub mod store;
pub mod time;
pub mod warp;
pub mod worker;

pub use grid::{Affine, Bbox, Chunk, ChunkGrid, Crs, GeoBox, GridError, PixelWindow, Shape, Transformer};

/// `e`'s message followed by each source's message not already in it: libraries (reqwest,
/// object_store) keep the reason, e.g. "connection refused", in the sources.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !msg.contains(&m) {
            msg.push_str(": ");
            msg.push_str(&m);
        }
        src = s.source();
    }
    msg
}

/// A number in [0, 1) for jitter. Not cryptographic; only needs to differ between processes
/// and between calls, which the clock and a counter give (splitmix64 mixes them).
pub(crate) fn unit_random() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let mut z = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ u64::from(std::process::id());
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}
