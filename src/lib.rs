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

pub mod catalog;
pub mod cog;
pub mod fuse;
pub mod grid;
pub mod landmask;
pub mod mask;
pub mod plan;
pub mod reduce;
pub mod spec;
pub mod store;
pub mod time;
pub mod warp;

pub use grid::{Affine, Bbox, Chunk, ChunkGrid, Crs, GeoBox, GridError, PixelWindow, Shape, Transformer};
