//! Viewing (issue 11), one test binary: the pyramid (`pyramid`), the tile server and its
//! documents (`tiles`), the pages in headless Chromium (`pages`) and the quicklook (`preview`).

#[path = "../common/mod.rs"]
mod common;

mod pages;
mod preview;
mod pyramid;
mod tiles;
