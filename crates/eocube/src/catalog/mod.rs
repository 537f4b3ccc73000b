//! Finding scenes: a STAC API client and an offline item-collection reader, both turning STAC
//! items into [`Scene`]s, the one thing the rest of the pipeline needs from a catalog.
//!
//! Owns: DESIGN section 4. The search request ([`SearchRequest`]) and its JSON / query-string
//! forms, paging through `next` links (GET links, and POST links with `body`, `merge`,
//! `headers`), retries of transient HTTP failures, parsing STAC 1.0 and 1.1 items (projection,
//! raster and band metadata; asset keys in every layout the sensor profile knows: Earth Search
//! names, band numbers, Copernicus Data Space's `B04_10m`), and the local `--items items.json`
//! path, which filters in memory so that it answers like the API. [`preset`]: the catalogs known
//! by name (URL, collection, signing); [`sas`]: the Planetary Computer's SAS tokens, which COG
//! requests carry (signing itself is `cloud::sign`'s).
//!
//! Must not touch: pixels, COG headers or Zarr. A [`Scene`] carries asset hrefs and the metadata
//! the STAC item states; reading them is `cog`'s job, deciding what to do with a processing
//! baseline or `boa_offset_applied` is radiometry's.
//!
//! ```text
//! Catalog::Api  ─ POST /search (GET fallback) ─▶ pages ─(next links)─▶ items ─┐
//! Catalog::File ─ load_item_collection ─▶ in-memory filter ─────────▶ items ─┴▶ parse_item ─▶ Vec<Scene>
//!                                                          sorted by (datetime, id), unique ids
//! ```
//!
//! Every input from outside (STAC JSON, HTTP answers, the item file) is validated: bad input
//! gives a [`CatalogError`] naming the URL / item id / field and the fix, never a panic.

mod api;
mod item;
mod local;
pub mod preset;
pub mod probe;
pub mod sas;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::grid::{Affine, Bbox};

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use api::page_step;
pub use api::{ApiClient, ApiOptions, RetryPolicy, SEARCH_SILENCE_FACTOR, SearchMethod};
pub use item::{band_aliases, parse_item, resolve_asset_key};
pub use local::{Census, ItemCollection, load_item_collection};

/// What can go wrong while finding scenes. Every variant names the input at fault and the fix.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "STAC API {url} answered HTTP {status}: {body}; check the STAC API URL (`stac-url`) and the search (collections, datetime, filter)"
    )]
    Http { url: String, status: u16, body: String },
    #[error("cannot reach the STAC API at {url}: {reason}; check the STAC API URL (`stac-url`) and the network")]
    Unreachable { url: String, reason: String },
    #[error(
        "{url} did not answer valid STAC JSON: {reason}; check that `stac-url` is a STAC API root (eocube searches <url>/search) or that `items` is a STAC item collection"
    )]
    InvalidJson { url: String, reason: String },
    #[error("STAC item {item}: `{field}` {reason}; fix the item or the catalog, or leave the scene out")]
    InvalidItem { item: String, field: String, reason: String },
    #[error(
        "STAC item {item} has no asset for band {band:?}; its assets are {available:?}: ask for one of those (Earth Search names like `red`, or band numbers like `B04`)"
    )]
    MissingBand { item: String, band: String, available: Vec<String> },
    #[error(
        "STAC item {item} has no quality band {band}, which eocube masks {sensor} scenes with; its assets are \
         {available:?}: use a catalog whose items carry it (Earth Search or Planetary Computer `landsat-c2-l2` \
         give `qa_pixel`), or leave such scenes out with `--skip-bad-scenes`"
    )]
    MissingQuality { item: String, band: String, sensor: &'static str, available: Vec<String> },
    #[error(
        "STAC API paging loop at {url}: the `next` link repeats a request already made; the server's paging is broken, report it to the catalog or narrow the search"
    )]
    PagingLoop { url: String },
    #[error(
        "STAC search at {url} still had more pages after {max_pages} pages; narrow the search (bbox, datetime) or raise the page limit"
    )]
    TooManyPages { url: String, max_pages: usize },
    #[error(
        "STAC API {url} returned item {item} of collection {collection:?}, which the search did not ask for ({requested:?}); the server ignored `collections`, check `stac-url`"
    )]
    UnexpectedCollection { url: String, item: String, collection: String, requested: Vec<String> },
    #[error("cannot read the item collection {path}: {reason}; check `items`")]
    File { path: PathBuf, reason: String },
    #[error(
        "cannot get a SAS token from {url}: {reason}; check `sas-token-url` (the Planetary Computer's is https://planetarycomputer.microsoft.com/api/sas/v1/token) and `collection`"
    )]
    SasToken { url: String, reason: String },
    #[error("invalid search request: `{field}` {reason}")]
    InvalidRequest { field: String, reason: String },
}

impl CatalogError {
    /// True for failures a later attempt may not see (network, throttling, server errors); the
    /// client already retried them, so the job-level retry is the next line of defence.
    pub fn is_transient(&self) -> bool {
        match self {
            CatalogError::Unreachable { .. } => true,
            CatalogError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// One band of one scene: where its COG lives and what the STAC item says about its pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    /// The asset key the band resolved to in this item (e.g. `red` for a request of `B04`).
    pub key: String,
    pub href: String,
    /// `proj:transform` (rasterio order), from the asset or else the item properties.
    pub transform: Option<Affine>,
    /// `proj:shape` as `(rows, cols)`, from the asset or else the item properties.
    pub shape: Option<(usize, usize)>,
    pub nodata: Option<f64>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub data_type: Option<String>,
}

/// A STAC item reduced to what the pipeline needs, with one [`Asset`] per requested band.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub id: String,
    /// The item's `collection`; STAC lets an item have none (only possible with `--items`).
    pub collection: Option<String>,
    /// The item's `datetime` (or `start_datetime` when `datetime` is null), in UTC.
    pub datetime: DateTime<Utc>,
    /// From `proj:epsg` or `proj:code` (`"EPSG:32618"`), in the properties or on the assets.
    pub epsg: u32,
    /// The item's lon/lat `bbox` (or the bounds of its geometry). An item crossing the
    /// antimeridian (west > east) gets the whole longitude range: too wide is safe for "which
    /// scenes touch this chunk", too narrow would lose data.
    pub bbox: Bbox,
    /// One entry per requested band, in the order requested.
    pub assets: Vec<(String, Asset)>,
    /// `s2:processing_baseline`, else `processing:version` (Copernicus Data Space), else
    /// `sentinel:processing_baseline` (Earth Search v0), e.g. `"05.11"`.
    pub processing_baseline: Option<String>,
    /// `earthsearch:boa_offset_applied` (Earth Search v1) or `sentinel:boa_offset_applied` (v0).
    pub boa_offset_applied: Option<bool>,
    /// `eo:cloud_cover` in percent.
    pub cloud_cover: Option<f64>,
}

impl Scene {
    /// The asset of a band as requested (the name given to `search`, not the resolved key).
    pub fn asset(&self, band: &str) -> Option<&Asset> {
        self.assets.iter().find(|(b, _)| b == band).map(|(_, a)| a)
    }
}

/// One item search. The same request gives the same scenes from an API and from a local file.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// Required: a catalog may hold many collections (Earth Search mixes Sentinel-1, L1C, L2A).
    pub collections: Vec<String>,
    /// A GeoJSON Polygon or MultiPolygon in lon/lat (e.g. a chunk's footprint). Exclusive with `bbox`.
    pub intersects: Option<Value>,
    /// A lon/lat bbox. Exclusive with `intersects`.
    pub bbox: Option<Bbox>,
    /// Closed interval `[start, end]` in UTC.
    pub datetime: (DateTime<Utc>, DateTime<Utc>),
    /// Page size asked of the server (servers may cap it); paging fetches everything anyway.
    pub limit: usize,
    /// A CQL2-JSON filter, AND-ed with the cloud-cover condition.
    pub filter: Option<Value>,
    /// Keep items with `eo:cloud_cover <= max_cloud_cover` (items without the property drop out,
    /// as with a CQL2 comparison on the server).
    pub max_cloud_cover: Option<f64>,
}

/// Default page size: Earth Search caps pages at 250 items, pgstac allows more; 100 keeps
/// each answer small enough to retry cheaply.
pub const DEFAULT_LIMIT: usize = 100;

impl SearchRequest {
    /// A request for `collections` over `[start, end]`, everything else left open.
    pub fn new(collections: &[&str], start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        SearchRequest {
            collections: collections.iter().map(|c| c.to_string()).collect(),
            intersects: None,
            bbox: None,
            datetime: (start, end),
            limit: DEFAULT_LIMIT,
            filter: None,
            max_cloud_cover: None,
        }
    }

    /// Checks what a server would reject (or silently misread) before any request is made.
    pub fn validate(&self) -> Result<(), CatalogError> {
        let bad = |field: &str, reason: String| Err(CatalogError::InvalidRequest { field: field.into(), reason });
        if self.collections.is_empty() || self.collections.iter().any(|c| c.trim().is_empty()) {
            return bad("collections", "must name at least one collection, e.g. sentinel-2-c1-l2a".into());
        }
        if self.datetime.0 > self.datetime.1 {
            return bad("datetime", format!("starts ({}) after it ends ({})", self.datetime.0, self.datetime.1));
        }
        if self.limit == 0 {
            return bad("limit", "must be at least 1".into());
        }
        if self.intersects.is_some() && self.bbox.is_some() {
            return bad("intersects", "and `bbox` are exclusive in STAC API item search; give one".into());
        }
        if let Some(g) = &self.intersects {
            let rings = local::polygons_of_geojson(g)
                .map_err(|reason| CatalogError::InvalidRequest { field: "intersects".into(), reason })?;
            // RFC 7946 3.1.6, which servers enforce (pgstac answers 400): closed rings of 4+ positions
            if let Some(r) = rings.iter().find(|r| r.len() < 4 || r.first() != r.last()) {
                return bad("intersects", format!("has a ring {r:?} that is not closed with at least 4 positions"));
            }
        }
        if let Some(b) = &self.bbox
            && let Err(e) = Bbox::new_lonlat(b.west, b.south, b.east, b.north)
        {
            return bad("bbox", e.to_string());
        }
        if let Some(cc) = self.max_cloud_cover
            && !(cc.is_finite() && (0.0..=100.0).contains(&cc))
        {
            return bad("max_cloud_cover", format!("is {cc}; give a percentage in [0, 100]"));
        }
        if let Some(f) = &self.filter
            && !f.is_object()
        {
            return bad("filter", "must be a CQL2-JSON object such as {\"op\": \"<\", \"args\": [...]}".into());
        }
        Ok(())
    }

    /// `start/end` in RFC 3339 UTC, as item search wants it.
    pub fn datetime_param(&self) -> String {
        let f = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        format!("{}/{}", f(&self.datetime.0), f(&self.datetime.1))
    }

    /// The CQL2-JSON filter sent to the server: `filter` AND `eo:cloud_cover <= max`.
    pub fn cql2_filter(&self) -> Option<Value> {
        let cc = self.max_cloud_cover.map(|x| json!({"op": "<=", "args": [{"property": "eo:cloud_cover"}, x]}));
        match (self.filter.clone(), cc) {
            (Some(f), Some(c)) => Some(json!({"op": "and", "args": [f, c]})),
            (f, c) => f.or(c),
        }
    }

    /// The JSON body of `POST /search`.
    pub fn to_body(&self) -> Value {
        let mut body = json!({
            "collections": self.collections,
            "datetime": self.datetime_param(),
            "limit": self.limit,
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(g) = &self.intersects {
                map.insert("intersects".into(), g.clone());
            }
            if let Some(b) = &self.bbox {
                map.insert("bbox".into(), json!([b.west, b.south, b.east, b.north]));
            }
            if let Some(f) = self.cql2_filter() {
                map.insert("filter".into(), f);
                map.insert("filter-lang".into(), json!("cql2-json"));
            }
        }
        body
    }

    /// The query parameters of `GET /search` (arrays comma-separated, JSON values as strings).
    pub fn to_query(&self) -> Vec<(String, String)> {
        let mut q = vec![
            ("collections".to_string(), self.collections.join(",")),
            ("datetime".to_string(), self.datetime_param()),
            ("limit".to_string(), self.limit.to_string()),
        ];
        if let Some(g) = &self.intersects {
            q.push(("intersects".into(), g.to_string()));
        }
        if let Some(b) = &self.bbox {
            q.push(("bbox".into(), format!("{},{},{},{}", b.west, b.south, b.east, b.north)));
        }
        if let Some(f) = self.cql2_filter() {
            q.push(("filter".into(), f.to_string()));
            q.push(("filter-lang".into(), "cql2-json".into()));
        }
        q
    }
}

/// Where scenes come from: a STAC API, or a local item collection for offline use.
#[derive(Debug, Clone)]
pub enum Catalog {
    Api(ApiClient),
    File(ItemCollection),
}

impl Catalog {
    /// A STAC API at `url` (its root; searches go to `{url}/search`) with default options.
    pub fn api(url: &str) -> Result<Self, CatalogError> {
        Catalog::api_with(url, ApiOptions::default())
    }

    /// [`Catalog::api`] with `options` (timeouts, retries, method).
    pub fn api_with(url: &str, options: ApiOptions) -> Result<Self, CatalogError> {
        Ok(Catalog::Api(ApiClient::new(url, options)?))
    }

    /// A local FeatureCollection / ItemCollection file (or one item, or a JSON array of items).
    pub fn file(path: impl Into<PathBuf>) -> Result<Self, CatalogError> {
        Ok(Catalog::File(load_item_collection(path)?))
    }

    /// Checks, before any work, that the catalog answers: an API's landing page offers item
    /// search; a file was already read by [`Catalog::file`].
    pub async fn check(&self) -> Result<(), CatalogError> {
        match self {
            Catalog::Api(c) => c.landing().await.map(|_| ()),
            Catalog::File(_) => Ok(()),
        }
    }

    /// Every scene matching `req`, with the assets of `bands`, sorted by (datetime, id), ids unique.
    pub async fn search(&self, req: &SearchRequest, bands: &[String]) -> Result<Vec<Scene>, CatalogError> {
        match self {
            Catalog::Api(c) => c.search(req, bands).await,
            Catalog::File(f) => f.search(req, bands),
        }
    }
}

/// Parses items into scenes, then sorts by (datetime, id) and keeps the first of each id: pages
/// of a live catalog can repeat an item when it is updated between two page requests.
pub fn scenes_from_items<'v>(
    items: impl IntoIterator<Item = &'v Value>,
    bands: &[String],
) -> Result<Vec<Scene>, CatalogError> {
    let mut scenes = items.into_iter().map(|i| parse_item(i, bands)).collect::<Result<Vec<_>, _>>()?;
    scenes.sort_by(|a, b| a.datetime.cmp(&b.datetime).then_with(|| a.id.cmp(&b.id)));
    let mut seen = HashSet::new();
    scenes.retain(|s| seen.insert(s.id.clone()));
    Ok(scenes)
}
