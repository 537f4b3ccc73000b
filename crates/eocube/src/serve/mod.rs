//! `eocube serve`: the read-only tile server, its documents and its pages (issue 11).

pub mod canvas;
pub mod quicklook;
