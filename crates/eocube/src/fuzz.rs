//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz): one per parser of outside input,
//! each taking arbitrary bytes the way that parser meets them in production.
//!
//! | target | the bytes are | through |
//! |---|---|---|
//! | [`cog_header`] | a whole TIFF file | [`crate::cog::parse_header_bytes`], and the incremental parse `Fetcher::open` runs |
//! | [`stac_item`] | a STAC item, item array or FeatureCollection (JSON) | [`crate::catalog::parse_item`] on every item; [`crate::catalog::ItemCollection`] load and search (spatial, temporal, CQL2 filter from the document's `filter` member) |
//! | [`stac_page`] | an item search answer (JSON) | the page parse, its `next` link turned into the next request, its features into scenes |
//! | [`spec_toml`] | a `--config` file | [`crate::spec::SpecInput::from_toml_str`], run settings, validation |
//! | [`out_location`] | an `--out` argument | [`crate::store::OutLocation::parse`] |
//!
//! An error is a fine answer; a panic, an abort, a hang or an allocation past libFuzzer's limit
//! is the finding. Where eocube relies on a round trip, the entry asserts it, so a broken round
//! trip is a finding too: a stored spec must read back as the same spec (resume compares them),
//! a parsed output location must print as a URL that parses back to it (messages and stored
//! runs use the printed form), and a header parsed from a growing prefix must equal the header
//! parsed from the whole file.
//!
//! Compiled with the `fuzzing` feature (the fuzz crate turns it on) and in this crate's unit
//! tests, which replay the committed corpora (`fuzz/corpus/<target>/`) and fixed-seed mutations
//! of them through these same functions on the stable toolchain. Not part of eocube's API.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::catalog::{ItemCollection, SearchRequest, parse_item};
use crate::cog::tiff;
use crate::spec::{CubeSpec, SpecInput};
use crate::store::OutLocation;

/// The bands every STAC target asks items for: an Earth Search key, a band-number alias, SCL.
fn bands() -> Vec<String> {
    ["red", "B08", "scl"].map(String::from).to_vec()
}

/// A whole TIFF file. Also parses it the way `Fetcher::open` does, from an 8-byte prefix grown
/// to each `NeedMore` answer, and asserts the outcome is the whole-file outcome.
pub fn cog_header(data: &[u8]) {
    let _ = crate::cog::parse_header_bytes(data);
    let size = data.len() as u64;
    let whole = tiff::parse(data, size);
    let mut have = data.len().min(8);
    let grown = loop {
        match tiff::parse(data.get(..have).unwrap_or(data), size) {
            Ok(tiff::Parse::NeedMore { end }) => {
                // The whole file is there: never more than it, always more than we have.
                assert!(end > have as u64 && end <= size, "asked for byte {end} with {have} of {size}");
                have = usize::try_from(end).unwrap_or(data.len());
            }
            other => break other,
        }
    };
    // Debug, not PartialEq: a NaN in a ModelPixelScale is a NaN in both.
    assert_eq!(format!("{grown:?}"), format!("{whole:?}"), "a grown prefix parses differently");
}

/// A STAC item, a JSON array of items or a FeatureCollection.
pub fn stac_item(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else { return };
    let bands = bands();
    let items: Vec<&Value> = match &doc {
        Value::Array(a) => a.iter().collect(),
        Value::Object(m) => match m.get("features") {
            Some(Value::Array(f)) => f.iter().collect(),
            _ => vec![&doc],
        },
        _ => vec![&doc],
    };
    for item in &items {
        let _ = parse_item(item, &bands);
    }
    // The --items path: the collections the items name, everything in time, a bbox and a
    // polygon in space, and the document's own `filter` member as the CQL2 filter.
    let mut collections: Vec<&str> = items.iter().filter_map(|i| i.get("collection")?.as_str()).collect();
    collections.push("sentinel-2-c1-l2a");
    let filter = doc.get("filter").cloned();
    // The file's own path: items kept as text, parsed when a search returns them.
    if let Ok(catalog) = ItemCollection::from_text(Path::new("<fuzz>"), data) {
        let req = SearchRequest::new(&collections, DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        let _ = catalog.search(&req, &bands);
    }
    let Ok(catalog) = ItemCollection::from_json(Path::new("<fuzz>"), doc.clone()) else { return };
    let mut req = SearchRequest::new(&collections, DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
    req.filter = filter;
    req.max_cloud_cover = Some(50.0);
    req.bbox = crate::grid::Bbox::new_lonlat(-180.0, -90.0, 180.0, 90.0).ok();
    let _ = catalog.search(&req, &bands);
    req.bbox = None;
    req.intersects = Some(json!({"type": "Polygon", "coordinates": [[[-73, 42], [-71, 42], [-71, 45], [-73, 42]]]}));
    let _ = catalog.search(&req, &bands);
}

/// An item search answer: page, next link, next request, scenes.
pub fn stac_page(data: &[u8]) {
    let _ = crate::catalog::page_step(data, &bands());
}

/// A `--config` TOML file, then what `eocube build` does with it before any work.
pub fn spec_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(input) = SpecInput::from_toml_str(text, "<fuzz>.toml") else { return };
    if let Ok(settings) = input.run_settings()
        && let Some(out) = &settings.out
    {
        out_location(out.as_bytes());
    }
    let Ok(spec) = input.validate() else { return };
    let stored = spec.identity_json();
    let back = serde_json::from_value::<CubeSpec>(stored.clone());
    assert!(back.as_ref().is_ok_and(|b| *b == spec), "the stored spec {stored} reads back as {back:?}");
}

/// An `--out` argument (any bytes: a path need not be UTF-8).
pub fn out_location(data: &[u8]) {
    #[cfg(unix)]
    let arg = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(data);
    #[cfg(not(unix))]
    let Ok(arg) = std::str::from_utf8(data) else { return };
    let Ok(loc) = OutLocation::parse(arg) else { return };
    if matches!(&loc, OutLocation::Local(p) if p.to_str().is_none()) {
        return; // printed lossily: no round trip promised
    }
    let shown = loc.to_string();
    let again = OutLocation::parse(&shown);
    assert!(again.as_ref() == Ok(&loc), "{loc:?} prints as {shown:?}, which parses as {again:?}");
}

#[cfg(test)]
mod tests;
