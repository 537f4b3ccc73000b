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
pub mod cog;
pub mod demo;
pub mod executor;
pub mod fuse;
pub mod grid;
pub mod job;
pub mod landmask;
pub mod mask;
pub mod plan;
pub mod reduce;
pub mod serve;
pub mod spec;
pub mod store;
pub mod synth;
pub mod time;
pub mod warp;

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
