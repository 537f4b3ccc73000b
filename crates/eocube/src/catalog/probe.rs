//! The look a build takes at its catalog before any job runs, so that a build that would find
//! nothing, or nothing it can use, says so at once and says what the catalog holds instead
//! (issue 13: no silent success on nothing).
//!
//! One search over the whole bbox and date range: an item file is searched whole
//! ([`super::ItemCollection::census`] counts what matches step by step); a STAC API answers its
//! first page ([`super::ApiClient::first_page`]) and, when that is empty, its collection
//! documents tell whether the collection exists and what it covers. The items found must have
//! every band asked for, under a key eocube understands ([`super::resolve_asset_key`]).
//!
//! Owns: those refusals and their messages. Must not touch: what a job searches or reads; an
//! item that lacks a band is still the job's error ([`CatalogError::MissingBand`]).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Catalog, CatalogError, SearchRequest};
use crate::sensor::{LAYOUTS, SensorProfile, profile_for};

/// What the probe asks: the build's search over its whole bbox and dates, and its bands (SCL
/// included).
#[derive(Debug, Clone)]
pub struct Probe {
    pub search: SearchRequest,
    pub bands: Vec<String>,
    /// The dates as the user gave them, for messages (`2023-05-17 to 2023-07-24`).
    pub dates: String,
}

/// What the probe saw when it found something.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSummary {
    /// Items matching the search: all of them for a file, the first page's for an API.
    pub items: usize,
    /// An API had more pages.
    pub more: bool,
}

/// Why a build would make nothing, or could not read what it found. Each message starts with
/// the setting at fault, and says what the catalog holds instead.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "collection {collection}: {matched} of {total} items in {catalog} are of this collection; they are of: {others}; give one of those with `collection`"
    )]
    OtherCollections { collection: String, catalog: String, matched: usize, total: usize, others: String },
    #[error(
        "collection {collection}: the STAC API at {catalog} has no such collection; it has: {others}; give one of those with `collection`"
    )]
    NoCollection { collection: String, catalog: String, others: String },
    #[error(
        "{setting} {catalog}: no item of {search}; {instead}; check {settings}, or give `allow-empty` to build a cube of fill anyway"
    )]
    NoScenes {
        setting: &'static str,
        catalog: String,
        /// `collection X intersects the bbox W S E N from START to END[ with the filter]`.
        search: String,
        settings: &'static str,
        instead: String,
    },
    #[error("{setting} {band}: no item has {what} ({asked}); the items have: {available}; {fix}")]
    NoBand {
        setting: &'static str,
        band: String,
        what: &'static str,
        /// `asset `nir` or `B08` or `B08_10m`; looked at 10 items`.
        asked: String,
        available: String,
        fix: &'static str,
    },
    #[error(
        "collection {collection}: no item has an asset eocube understands ({looked}): the build asks for {bands} and the items' asset keys are: {keys}; eocube reads Sentinel-2 L2A assets named as Earth Search v1 names them (red, nir, scl, ...), by band number (B04, B08, SCL: Earth Search v0, Planetary Computer) or by band number and resolution (B04_10m, SCL_20m: Copernicus Data Space): give such a collection"
    )]
    UnknownAssets { collection: String, bands: String, looked: String, keys: String },
    /// The probe's own request failed: the caller names the catalog.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl ProbeError {
    /// The setting the message starts with, when it starts with one.
    pub fn setting(&self) -> Option<&'static str> {
        match self {
            ProbeError::OtherCollections { .. } | ProbeError::NoCollection { .. } => Some("collection"),
            ProbeError::UnknownAssets { .. } => Some("collection"),
            ProbeError::NoScenes { setting, .. } | ProbeError::NoBand { setting, .. } => Some(setting),
            ProbeError::Catalog(_) => None,
        }
    }

    /// The catalog holds nothing for the build (rather than something it cannot read): with
    /// `allow-empty` the build goes on and makes a cube of fill.
    pub fn is_nothing(&self) -> bool {
        matches!(
            self,
            ProbeError::OtherCollections { .. } | ProbeError::NoCollection { .. } | ProbeError::NoScenes { .. }
        )
    }
}

/// Most names a message lists before "and N more".
const MAX_LISTED: usize = 40;

fn listed(names: impl IntoIterator<Item = String>) -> String {
    let names: Vec<String> = names.into_iter().collect();
    if names.is_empty() {
        return "nothing".into();
    }
    let mut s = names.iter().take(MAX_LISTED).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > MAX_LISTED {
        s += &format!(" and {} more", names.len() - MAX_LISTED);
    }
    s
}

fn fmt_bbox(b: &[f64; 4]) -> String {
    format!("{} {} {} {}", b[0], b[1], b[2], b[3])
}

/// Looks at `catalog` for `p`; `Ok` when it holds items for the build with every band asked for.
pub async fn probe(catalog: &Catalog, p: &Probe) -> Result<ProbeSummary, ProbeError> {
    let collection = p.search.collections.join(", ");
    let bbox = p.search.bbox.map(|b| fmt_bbox(&[b.west, b.south, b.east, b.north])).unwrap_or_else(|| "(none)".into());
    let (filter, settings) = match p.search.max_cloud_cover {
        Some(cc) => (format!(" with eo:cloud_cover <= {cc}"), "`bbox`, `start`, `end` and `cloud-cover-max`"),
        None => (String::new(), "`bbox`, `start` and `end`"),
    };
    let search = format!("collection {collection} intersects the bbox {bbox} from {}{filter}", p.dates);
    let no_scenes = |setting, catalog: String, instead: String| ProbeError::NoScenes {
        setting,
        catalog,
        search: search.clone(),
        settings,
        instead,
    };
    let (items, more) = match catalog {
        Catalog::File(file) => {
            let source = file.path().display().to_string();
            let c = file.census(&p.search)?;
            if c.total == 0 {
                return Err(no_scenes("items", source, "the file holds no items".into()));
            }
            if c.of_collection == 0 {
                let others = c.by_collection.iter().map(|(name, n)| format!("{name} ({n})"));
                return Err(ProbeError::OtherCollections {
                    collection,
                    catalog: source,
                    matched: 0,
                    total: c.total,
                    others: listed(others),
                });
            }
            if c.matching.is_empty() {
                let of = format!("its {} items of this collection", c.of_collection);
                let instead = if c.in_time == 0 {
                    match c.span {
                        Some((a, b)) => format!("{of} date from {} to {}", a.date_naive(), b.date_naive()),
                        None => format!("{of} are all outside those dates"),
                    }
                } else if c.in_time_and_space == 0 {
                    let extent = c.extent.map(|e| fmt_bbox(&e)).unwrap_or_default();
                    format!("{of} lie within {extent}, and the {} of them in those dates miss the bbox", c.in_time)
                } else {
                    format!("{} items match the bbox and the dates, but none passes the filter", c.in_time_and_space)
                };
                return Err(no_scenes("items", source, instead));
            }
            (c.matching, false)
        }
        Catalog::Api(api) => {
            let source = api.url().to_string();
            let (items, more) = api.first_page(&p.search).await?;
            if items.is_empty() {
                // An API need not serve its collections (`/collections` is optional): failures
                // there only leave the message shorter.
                let doc = api.get_json(&format!("collections/{collection}")).await.ok().flatten();
                if doc.is_none()
                    && let Ok(Some(list)) = api.get_json("collections").await
                {
                    let ids: Vec<String> = list
                        .get("collections")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|c| c.get("id")?.as_str().map(String::from)).collect())
                        .unwrap_or_default();
                    if !ids.is_empty() && !ids.contains(&collection) {
                        return Err(ProbeError::NoCollection { collection, catalog: source, others: listed(ids) });
                    }
                }
                let instead = match doc.as_ref().and_then(extent_of) {
                    Some(extent) => format!("the STAC API found none; the collection covers {extent}"),
                    None => "the STAC API found none".into(),
                };
                return Err(no_scenes("stac-url", source, instead));
            }
            (items, more)
        }
    };
    check_bands(&collection, &items, more, &p.bands)?;
    Ok(ProbeSummary { items: items.len(), more })
}

/// `2015-06-27T00:00:00Z to (open) over -180 -90 180 90` from a collection's `extent`.
fn extent_of(doc: &Value) -> Option<String> {
    let e = doc.get("extent")?;
    let interval = e.pointer("/temporal/interval/0")?.as_array()?;
    let end = |i: usize| interval.get(i).and_then(Value::as_str).unwrap_or("(open)").to_string();
    let mut s = format!("{} to {}", end(0), end(1));
    if let Some(b) = e.pointer("/spatial/bbox/0").and_then(Value::as_array)
        && let [w, so, ea, n] = b.as_slice()
        && let (Some(w), Some(so), Some(ea), Some(n)) = (w.as_f64(), so.as_f64(), ea.as_f64(), n.as_f64())
    {
        s += &format!(" over {}", fmt_bbox(&[w, so, ea, n]));
    }
    Some(s)
}

/// The keys a band is looked for under, one per layout (the native resolution for
/// per-resolution layouts), for messages: `red/B04/B04_10m`.
fn known_keys(profile: &SensorProfile, band: &str) -> Vec<String> {
    match profile.band(band) {
        Some(b) => {
            let mut keys: Vec<String> = LAYOUTS.iter().filter_map(|l| b.keys(*l).into_iter().next()).collect();
            keys.dedup();
            keys
        }
        None => profile.aliases(band),
    }
}

/// Every band asked for is an asset of at least one item found, under a key eocube resolves.
fn check_bands(collection: &str, items: &[Value], more: bool, bands: &[String]) -> Result<(), ProbeError> {
    let profile = profile_for(collection);
    let empty = serde_json::Map::new();
    let assets = |it: &Value| it.get("assets").and_then(Value::as_object).unwrap_or(&empty).clone();
    let all: Vec<serde_json::Map<String, Value>> = items.iter().map(assets).collect();
    let looked = if more {
        format!("looked at the first {} items", items.len())
    } else {
        format!("looked at {} items", items.len())
    };
    let keys: BTreeSet<String> =
        all.iter().flat_map(|a| a.keys().filter(|k| !k.to_ascii_lowercase().ends_with("-jp2")).cloned()).collect();
    let missing: Vec<&String> =
        bands.iter().filter(|b| !all.iter().any(|a| profile.resolve_asset_key(a, b).is_some())).collect();
    let Some(band) = missing.first() else { return Ok(()) };
    if missing.len() == bands.len() {
        return Err(ProbeError::UnknownAssets {
            collection: collection.to_string(),
            bands: bands.iter().map(|b| known_keys(profile, b).join("/")).collect::<Vec<_>>().join(", "),
            looked,
            keys: listed(keys),
        });
    }
    let scl = profile.is_quality(band);
    let keys_of_band = known_keys(profile, band).iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" or ");
    Err(ProbeError::NoBand {
        setting: if scl { "collection" } else { "bands" },
        band: if scl { collection.to_string() } else { band.to_string() },
        what: match (scl, profile.quality.decoding) {
            (false, _) => "this band",
            (true, crate::sensor::QualityDecoding::Classes { .. }) => {
                "the scene classification (SCL) that the cloud mask reads"
            }
            (true, crate::sensor::QualityDecoding::Bits { .. }) => "the QA_PIXEL band that the cloud mask reads",
        },
        asked: format!("asset {keys_of_band}; {looked}"),
        available: listed(keys),
        fix: if scl {
            "eocube builds from Sentinel-2 L2A and Landsat Collection 2 Level-2 collections, whose items have it"
        } else {
            "ask for bands the items have with `bands`"
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ItemCollection;
    use crate::grid::Bbox;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    /// An item over lon -72.1..-71.9, lat 43.9..44.1 with the assets `keys`.
    fn item(id: &str, collection: &str, date: &str, cloud: f64, keys: &[&str]) -> Value {
        let assets: serde_json::Map<String, Value> =
            keys.iter().map(|k| (k.to_string(), json!({"href": format!("{id}/{k}.tif")}))).collect();
        json!({
            "type": "Feature", "id": id, "collection": collection,
            "geometry": {"type": "Polygon", "coordinates": [[[-72.1, 43.9], [-71.9, 43.9], [-71.9, 44.1], [-72.1, 44.1], [-72.1, 43.9]]]},
            "properties": {"datetime": format!("{date}T15:00:00Z"), "eo:cloud_cover": cloud},
            "assets": assets,
        })
    }

    const S2: [&str; 5] = ["red", "green", "blue", "scl", "thumbnail"];

    fn file(items: Vec<Value>) -> Catalog {
        let doc = json!({"type": "FeatureCollection", "features": items});
        Catalog::File(ItemCollection::from_json(std::path::Path::new("items.json"), doc).expect("items"))
    }

    fn probe_of(bands: &[&str], bbox: [f64; 4], cloud: Option<f64>) -> Probe {
        let start = Utc.with_ymd_and_hms(2023, 5, 1, 0, 0, 0).single().expect("date");
        let end = Utc.with_ymd_and_hms(2023, 7, 31, 0, 0, 0).single().expect("date");
        let mut search = SearchRequest::new(&["s2"], start, end);
        search.bbox = Some(Bbox::new_lonlat(bbox[0], bbox[1], bbox[2], bbox[3]).expect("bbox"));
        search.max_cloud_cover = cloud;
        Probe { search, bands: bands.iter().map(|b| b.to_string()).collect(), dates: "2023-05-01 to 2023-07-31".into() }
    }

    const HERE: [f64; 4] = [-72.05, 44.0, -71.95, 44.06];

    fn run(c: &Catalog, p: &Probe) -> Result<ProbeSummary, ProbeError> {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(probe(c, p))
    }

    #[test]
    fn items_with_every_band_pass() {
        let c = file(vec![item("a", "s2", "2023-06-01", 10.0, &S2), item("b", "other", "2023-06-01", 10.0, &S2)]);
        let s = run(&c, &probe_of(&["red", "B03", "scl"], HERE, None)).expect("found");
        assert_eq!(s, ProbeSummary { items: 1, more: false });
    }

    #[test]
    fn items_of_another_collection_are_counted_by_collection() {
        let c = file((0..25).map(|i| item(&format!("i{i}"), "sentinel-2-l2a", "2023-06-01", 1.0, &S2)).collect());
        let e = run(&c, &probe_of(&["red", "scl"], HERE, None)).expect_err("wrong collection");
        let msg = e.to_string();
        assert!(msg.starts_with("collection s2: 0 of 25 items in items.json"), "{msg}");
        assert!(msg.contains("they are of: sentinel-2-l2a (25)"), "{msg}");
        assert_eq!(e.setting(), Some("collection"));
        assert!(e.is_nothing());
    }

    #[test]
    fn no_scene_in_the_range_says_what_there_is() {
        let c = file(vec![item("a", "s2", "2021-03-02", 1.0, &S2), item("b", "s2", "2021-04-09", 1.0, &S2)]);
        let e = run(&c, &probe_of(&["red", "scl"], HERE, None)).expect_err("dates");
        assert!(e.to_string().contains("its 2 items of this collection date from 2021-03-02 to 2021-04-09"), "{e}");
        assert_eq!(e.setting(), Some("items"));
        let c = file(vec![item("a", "s2", "2023-06-01", 1.0, &S2)]);
        let e = run(&c, &probe_of(&["red", "scl"], [10.0, 45.0, 10.1, 45.1], None)).expect_err("bbox");
        assert!(e.to_string().contains("lie within -72.1 43.9 -71.9 44.1"), "{e}");
        let e = run(&c, &probe_of(&["red", "scl"], HERE, Some(0.5))).expect_err("cloud cover");
        let msg = e.to_string();
        assert!(msg.contains("with eo:cloud_cover <= 0.5") && msg.contains("none passes the filter"), "{msg}");
        assert!(msg.contains("`cloud-cover-max`") && e.is_nothing(), "{msg}");
        let e = run(&file(vec![]), &probe_of(&["red"], HERE, None)).expect_err("empty file");
        assert!(e.to_string().contains("the file holds no items"), "{e}");
    }

    #[test]
    fn a_band_no_item_has_lists_the_bands_they_have() {
        let c = file(vec![item("a", "s2", "2023-06-01", 1.0, &S2)]);
        let e = run(&c, &probe_of(&["red", "nir", "scl"], HERE, None)).expect_err("nir");
        let msg = e.to_string();
        assert!(
            msg.starts_with("bands nir: no item has this band (asset `nir` or `B08` or `B08_10m`; looked at 1 items)"),
            "{msg}"
        );
        assert!(msg.contains("the items have: blue, green, red, scl, thumbnail"), "{msg}");
        assert!(!e.is_nothing(), "a band that is not there is an error even with allow-empty");
        let c = file(vec![item("a", "s2", "2023-06-01", 1.0, &["red", "green"])]);
        let e = run(&c, &probe_of(&["red", "scl"], HERE, None)).expect_err("scl");
        assert!(e.to_string().starts_with("collection s2: no item has the scene classification (SCL)"), "{e}");
    }

    #[test]
    fn asset_keys_eocube_does_not_understand_are_listed() {
        // Landsat Collection-2 keys: no profile serves them yet
        let c = file(vec![item("a", "s2", "2023-06-01", 1.0, &["SR_B4", "SR_B3", "QA_PIXEL"])]);
        let e = run(&c, &probe_of(&["red", "green", "scl"], HERE, None)).expect_err("keys");
        let msg = e.to_string();
        assert!(msg.contains("the build asks for red/B04/B04_10m, green/B03/B03_10m, scl/SCL/SCL_20m"), "{msg}");
        assert!(msg.contains("asset keys are: QA_PIXEL, SR_B3, SR_B4"), "{msg}");
        assert_eq!(e.setting(), Some("collection"));
    }

    #[test]
    fn every_catalog_layout_passes() {
        for keys in [
            &["red", "green", "scl"][..],
            &["B04", "B03", "SCL", "visual"],
            &["B04_10m", "B04_20m", "B03_10m", "SCL_20m", "SCL_60m"],
        ] {
            let c = file(vec![item("a", "s2", "2023-06-01", 1.0, keys)]);
            let s = run(&c, &probe_of(&["red", "green", "scl"], HERE, None));
            assert!(s.is_ok(), "{keys:?}: {s:?}");
        }
    }
}
