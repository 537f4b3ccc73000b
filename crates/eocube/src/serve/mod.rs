//! `eocube serve`: the read-only tile server, its documents and its pages (issue 11).
//!
//! Owns: everything between a cube view ([`crate::store::view::CubeView`], which reads and
//! caches chunks) and HTTP. Must not touch: how chunks are read or cached, the cube's layout on
//! disk, or writing anything; `pages/` (the HTML, CSS and JS) is helper W's.
//!
//! ```text
//!   server (axum: routes, cubes and versions, bounds, headers)
//!     ├─ params   query string ─▶ Style + time step, 400s that name the parameter
//!     ├─ tms      WebMercatorQuad, tile ─▶ level and the level pixel of every tile pixel
//!     ├─ render   DNs ─▶ reflectance ─▶ stretch / colormap / expression ─▶ RGBA
//!     │    ├─ colormap   control-point tables
//!     │    └─ expr       band maths parser and evaluator
//!     ├─ encode   RGBA ─▶ PNG / WebP / JPEG
//!     ├─ docs     TileJSON, OGC API - Tiles, WMTS capabilities
//!     ├─ pages    the catalog and map pages, their assets
//!     └─ quicklook + canvas   `eocube preview`'s figure (render ─▶ map, ticks, scale bar ─▶ PNG)
//! ```
//!
//! The pure modules (`tms`, `render`, `colormap`, `expr`, `encode`, `docs`, `params`) do no I/O
//! and are unit-tested; `server` is tested end to end in `tests/view/tiles.rs`.

pub mod canvas;
pub mod colormap;
pub mod docs;
pub mod encode;
/// The band-maths evaluator lives in [`crate::expr`] (cube indices use it too).
pub use crate::expr;
pub mod pages;
pub mod params;
pub mod quicklook;
pub mod render;
mod server;
pub mod tms;

pub use server::{CubeArg, Listening, ServeError, ServeOptions, Server, cube_args, valid_id};
