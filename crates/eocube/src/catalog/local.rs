//! The offline catalog (`--items items.json`): a local item collection filtered in memory with
//! the semantics of a STAC API item search, so both paths give the same scenes for one request.
//!
//! Spatial filter: the item's footprint (its GeoJSON Polygon / MultiPolygon geometry, else its
//! bbox) must intersect the request's `intersects` polygon or `bbox`, touching included, as
//! PostGIS `ST_Intersects` does in pgstac. Polygon holes are ignored (Sentinel-2 footprints have
//! none; at worst a hole makes an item match that the server would drop). Geometries are planar
//! in lon/lat degrees, like pgstac's `geometry` type. Temporal filter: `start <= datetime <= end`.
//! Filter: CQL2-JSON comparisons (`=`, `<>`, `<`, `<=`, `>`, `>=`), `and`, `or`, `not`,
//! `isNull` on item properties; anything else is refused with an error rather than guessed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use super::item::{item_bbox_of, item_datetime_of};
use super::{CatalogError, Scene, SearchRequest, scenes_from_items};

type Ring = Vec<(f64, f64)>;

/// A local item collection, loaded and indexed once, searched any number of times. Cheap to
/// clone: clones share the items. A job clones its context for every scene it reads, and a
/// copy of every item's JSON each time cost a job more than its search did.
#[derive(Debug, Clone)]
pub struct ItemCollection {
    path: PathBuf,
    items: Arc<[Indexed]>,
}

/// One item: what a search tests, and the item's JSON text, parsed again only when a search
/// returns it. Held as a tree, an Earth Search item took ten times its 4 KB of text, so an
/// export of 5,200 items held 280 MB in every worker.
#[derive(Debug)]
struct Indexed {
    collection: Option<String>,
    datetime: DateTime<Utc>,
    footprint: Vec<Ring>,
    json: Box<RawValue>,
}

/// The members of an item a search tests, parsed once while the file loads and then dropped;
/// serde skips the rest (its assets and links, most of an item's text) without building them.
#[derive(Deserialize)]
struct Searched {
    id: Option<Value>,
    collection: Option<Value>,
    geometry: Option<Value>,
    bbox: Option<Value>,
    properties: Option<Value>,
}

/// The top of a file: a FeatureCollection's type and features, or an item's type.
#[derive(Deserialize)]
struct Top<'a> {
    #[serde(rename = "type")]
    kind: Option<Value>,
    #[serde(borrow)]
    features: Option<&'a RawValue>,
}

/// Reads a GeoJSON FeatureCollection / STAC ItemCollection, one Item, or a JSON array of items.
/// Each item's id, datetime and footprint are checked here, so a bad file fails at start-up.
pub fn load_item_collection(path: impl Into<PathBuf>) -> Result<ItemCollection, CatalogError> {
    let path = path.into();
    let text = std::fs::read(&path).map_err(|e| CatalogError::File { path: path.clone(), reason: e.to_string() })?;
    ItemCollection::from_text(&path, &text)
}

/// What an error about one item's text names: an item keeps no path of its own.
const ITEM_TEXT: &str = "an item of the item file";

fn not_items(path: &Path, what: String) -> CatalogError {
    CatalogError::InvalidJson {
        url: path.display().to_string(),
        reason: format!("{what}; expected a FeatureCollection of STAC items, one item, or an array of items"),
    }
}

impl Indexed {
    /// An item from its text: only the members a search tests are parsed. An item that is not
    /// an object of them takes [`Indexed::from_value`]'s path, whose errors say what is wrong.
    fn from_text(text: &RawValue) -> Result<Indexed, CatalogError> {
        let Ok(Searched { id, collection, geometry, bbox, properties }) = serde_json::from_str(text.get()) else {
            // The file parsed, so its items do; the error is for completeness, not expected.
            let json: Value = serde_json::from_str(text.get())
                .map_err(|e| CatalogError::InvalidJson { url: ITEM_TEXT.into(), reason: e.to_string() })?;
            return Indexed::from_value(json);
        };
        let mut searched = serde_json::Map::new();
        for (key, v) in
            [("id", id), ("collection", collection), ("geometry", geometry), ("bbox", bbox), ("properties", properties)]
        {
            if let Some(v) = v {
                searched.insert(key.into(), v);
            }
        }
        Indexed::checked(&Value::Object(searched), text.to_owned())
    }

    /// An item from its JSON tree.
    fn from_value(json: Value) -> Result<Indexed, CatalogError> {
        let text = serde_json::value::to_raw_value(&json)
            .map_err(|e| CatalogError::InvalidJson { url: ITEM_TEXT.into(), reason: e.to_string() })?;
        Indexed::checked(&json, text)
    }

    /// Checks `searched` (the item, or the members of it a search tests) and indexes it.
    fn checked(searched: &Value, json: Box<RawValue>) -> Result<Indexed, CatalogError> {
        let id = searched.get("id").and_then(Value::as_str).unwrap_or("<no id>").to_string();
        let datetime = item_datetime_of(searched)?;
        let footprint = match searched.get("geometry").filter(|g| !g.is_null()) {
            Some(g) => polygons_of_geojson(g).map_err(|reason| CatalogError::InvalidItem {
                item: id.clone(),
                field: "geometry".into(),
                reason,
            })?,
            None => {
                let b = item_bbox_of(searched)?;
                vec![rect(b.west, b.south, b.east, b.north)]
            }
        };
        let collection = searched.get("collection").and_then(Value::as_str).map(str::to_string);
        Ok(Indexed { collection, datetime, footprint, json })
    }

    /// The item's JSON tree. Its text parsed when the file was loaded, so this is not expected to
    /// fail.
    fn parse(&self) -> Result<Value, CatalogError> {
        serde_json::from_str(self.json.get())
            .map_err(|e| CatalogError::InvalidJson { url: ITEM_TEXT.into(), reason: e.to_string() })
    }
}

impl ItemCollection {
    /// From the text of a file ([`load_item_collection`]); `path` only names it in errors. The
    /// items are kept as text: only the members a search tests are parsed here.
    pub fn from_text(path: &Path, text: &[u8]) -> Result<Self, CatalogError> {
        let bad_json =
            |e: serde_json::Error| CatalogError::InvalidJson { url: path.display().to_string(), reason: e.to_string() };
        let raw: Vec<&RawValue> = match text.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => serde_json::from_slice(text).map_err(bad_json)?,
            Some(b'{') => {
                let top: Top<'_> = serde_json::from_slice(text).map_err(bad_json)?;
                // An array of items, each kept as its text.
                let items = top.features.and_then(|f| serde_json::from_str::<Vec<&RawValue>>(f.get()).ok());
                match (top.kind.as_ref().and_then(Value::as_str), items) {
                    (Some("FeatureCollection"), Some(items)) => items,
                    (Some("FeatureCollection"), None) => {
                        return Err(not_items(path, "a FeatureCollection without a `features` array".into()));
                    }
                    (Some("Feature"), _) => vec![serde_json::from_slice(text).map_err(bad_json)?],
                    (t, _) => return Err(not_items(path, format!("an object of type {t:?}"))),
                }
            }
            // Not an object or an array: let the parser say what it is (or that it is no JSON).
            _ => {
                serde_json::from_slice::<IgnoredAny>(text).map_err(bad_json)?;
                return Err(not_items(path, "neither an object nor an array".into()));
            }
        };
        let items = raw.into_iter().map(Indexed::from_text).collect::<Result<Arc<[_]>, CatalogError>>()?;
        Ok(ItemCollection { path: path.to_path_buf(), items })
    }

    /// From an already-parsed document; `path` only names it in errors. The document is read
    /// as [`ItemCollection::from_text`] reads a file, from its text.
    pub fn from_json(path: &Path, doc: Value) -> Result<Self, CatalogError> {
        let text = serde_json::to_vec(&doc)
            .map_err(|e| CatalogError::InvalidJson { url: path.display().to_string(), reason: e.to_string() })?;
        ItemCollection::from_text(path, &text)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items matching `req`, as JSON trees, in file order. Every job searches, so this keeps
    /// no counts: [`ItemCollection::census`] is for explaining a search that found nothing.
    pub fn matching_items(&self, req: &SearchRequest) -> Result<Vec<Value>, CatalogError> {
        let query = Query::new(req)?;
        let mut matching = Vec::new();
        for it in self.items.iter() {
            if query.in_collections(it) && query.in_time(it) && query.in_region(it) {
                let json = it.parse()?;
                if query.passes_filter(&json)? {
                    matching.push(json);
                }
            }
        }
        Ok(matching)
    }

    /// What the file holds for `req`, step by step: the items of its collections, of those the
    /// ones in its dates, in its region, and passing its filter (the matching items), so that a
    /// search that finds nothing can say what there is instead.
    pub fn census(&self, req: &SearchRequest) -> Result<Census, CatalogError> {
        let query = Query::new(req)?;
        let mut c = Census { total: self.items.len(), ..Census::default() };
        for it in self.items.iter() {
            let name = it.collection.clone().unwrap_or_else(|| "(no collection)".into());
            *c.by_collection.entry(name).or_default() += 1;
            if !query.in_collections(it) {
                continue;
            }
            c.of_collection += 1;
            c.span = Some(match c.span {
                Some((a, b)) => (a.min(it.datetime), b.max(it.datetime)),
                None => (it.datetime, it.datetime),
            });
            for ring in &it.footprint {
                for &(x, y) in ring {
                    let e = c.extent.get_or_insert([x, y, x, y]);
                    *e = [e[0].min(x), e[1].min(y), e[2].max(x), e[3].max(y)];
                }
            }
            if !query.in_time(it) {
                continue;
            }
            c.in_time += 1;
            if !query.in_region(it) {
                continue;
            }
            c.in_time_and_space += 1;
            let json = it.parse()?;
            if query.passes_filter(&json)? {
                c.matching.push(json);
            }
        }
        Ok(c)
    }

    /// The scenes matching `req` with the assets of `bands`, sorted by (datetime, id).
    pub fn search(&self, req: &SearchRequest, bands: &[String]) -> Result<Vec<Scene>, CatalogError> {
        scenes_from_items(&self.matching_items(req)?, bands)
    }
}

/// What an item file holds for one search ([`ItemCollection::census`]).
#[derive(Debug, Clone, Default)]
pub struct Census {
    /// Items in the file.
    pub total: usize,
    /// Items per `collection` (items without one under "(no collection)").
    pub by_collection: std::collections::BTreeMap<String, usize>,
    /// Items of the search's collections...
    pub of_collection: usize,
    /// ...of those, in its dates...
    pub in_time: usize,
    /// ...and in its region too.
    pub in_time_and_space: usize,
    /// The first and last datetime of the items of the search's collections.
    pub span: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Their lon/lat extent `[west, south, east, north]`.
    pub extent: Option<[f64; 4]>,
    /// The items that match the whole search (its filter too), in file order.
    pub matching: Vec<Value>,
}

/// One search, checked and ready to test items with, step by step in the order the census
/// counts them: collection, time, region, filter.
struct Query<'r> {
    req: &'r SearchRequest,
    region: Option<Vec<Ring>>,
    filter: Option<Value>,
}

impl<'r> Query<'r> {
    fn new(req: &'r SearchRequest) -> Result<Query<'r>, CatalogError> {
        req.validate()?;
        let region = match (&req.intersects, &req.bbox) {
            (Some(g), _) => Some(
                polygons_of_geojson(g)
                    .map_err(|reason| CatalogError::InvalidRequest { field: "intersects".into(), reason })?,
            ),
            (None, Some(b)) => Some(vec![rect(b.west, b.south, b.east, b.north)]),
            (None, None) => None,
        };
        Ok(Query { req, region, filter: req.cql2_filter() })
    }

    fn in_collections(&self, it: &Indexed) -> bool {
        it.collection.as_ref().is_some_and(|c| self.req.collections.contains(c))
    }

    fn in_time(&self, it: &Indexed) -> bool {
        self.req.datetime.0 <= it.datetime && it.datetime <= self.req.datetime.1
    }

    fn in_region(&self, it: &Indexed) -> bool {
        self.region.as_ref().is_none_or(|r| polygons_intersect(r, &it.footprint))
    }

    fn passes_filter(&self, item: &Value) -> Result<bool, CatalogError> {
        let Some(f) = &self.filter else { return Ok(true) };
        let props = item.get("properties").unwrap_or(&Value::Null);
        Ok(eval_cql2(f, props)? == Some(true))
    }
}

fn rect(w: f64, s: f64, e: f64, n: f64) -> Ring {
    vec![(w, s), (e, s), (e, n), (w, n), (w, s)]
}

/// The exterior rings of a GeoJSON Polygon or MultiPolygon (a bare geometry or a Feature).
pub(super) fn polygons_of_geojson(g: &Value) -> Result<Vec<Ring>, String> {
    let g = if g.get("type").and_then(Value::as_str) == Some("Feature") { &g["geometry"] } else { g };
    let ring = |v: &Value| -> Result<Ring, String> {
        let pts = v.as_array().ok_or("a ring is not an array of positions")?;
        let ring = pts
            .iter()
            .map(|p| match p.as_array().map(|a| a.as_slice()) {
                Some([x, y, ..]) => match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) if x.is_finite() && y.is_finite() => Ok((x, y)),
                    _ => Err(format!("position {p} is not [lon, lat] numbers")),
                },
                _ => Err(format!("position {p} is not [lon, lat]")),
            })
            .collect::<Result<Ring, String>>()?;
        if ring.len() < 3 {
            return Err(format!("a ring has {} positions, a polygon needs at least 3", ring.len()));
        }
        Ok(ring)
    };
    let exterior = |poly: &Value| -> Result<Ring, String> {
        let rings = poly.as_array().ok_or("polygon coordinates are not an array of rings")?;
        ring(rings.first().ok_or("a polygon has no rings")?)
    };
    let coords = g.get("coordinates").ok_or("the geometry has no `coordinates`")?;
    match g.get("type").and_then(Value::as_str) {
        Some("Polygon") => Ok(vec![exterior(coords)?]),
        Some("MultiPolygon") => {
            let polys = coords.as_array().ok_or("MultiPolygon coordinates are not an array")?;
            if polys.is_empty() {
                return Err("the MultiPolygon is empty".into());
            }
            polys.iter().map(exterior).collect()
        }
        t => Err(format!("geometry type {t:?} is not supported; give a GeoJSON Polygon or MultiPolygon in lon/lat")),
    }
}

fn polygons_intersect(a: &[Ring], b: &[Ring]) -> bool {
    a.iter().any(|p| b.iter().any(|q| polygon_pair_intersects(p, q)))
}

/// Two simple polygons intersect iff an edge of one crosses or touches an edge of the other,
/// or one lies inside the other (then any vertex of it is inside).
fn polygon_pair_intersects(p: &Ring, q: &Ring) -> bool {
    let bounds = |r: &Ring| {
        r.iter().fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |(a, b, c, d), &(x, y)| {
            (a.min(x), b.min(y), c.max(x), d.max(y))
        })
    };
    let (pw, ps, pe, pn) = bounds(p);
    let (qw, qs, qe, qn) = bounds(q);
    if pw > qe || qw > pe || ps > qn || qs > pn {
        return false;
    }
    let edges = |r: &Ring| {
        let n = r.len();
        (0..n).map(move |i| (r[i], r[(i + 1) % n])).collect::<Vec<_>>()
    };
    let (ep, eq) = (edges(p), edges(q));
    if ep.iter().any(|&(a, b)| eq.iter().any(|&(c, d)| segments_intersect(a, b, c, d))) {
        return true;
    }
    point_in_ring(p[0], q) || point_in_ring(q[0], p)
}

fn orient(a: (f64, f64), b: (f64, f64), c: (f64, f64)) -> f64 {
    (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0)
}

fn on_segment(a: (f64, f64), b: (f64, f64), p: (f64, f64)) -> bool {
    p.0 >= a.0.min(b.0) && p.0 <= a.0.max(b.0) && p.1 >= a.1.min(b.1) && p.1 <= a.1.max(b.1)
}

fn segments_intersect(a: (f64, f64), b: (f64, f64), c: (f64, f64), d: (f64, f64)) -> bool {
    let (d1, d2, d3, d4) = (orient(c, d, a), orient(c, d, b), orient(a, b, c), orient(a, b, d));
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0)) && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0)) {
        return true;
    }
    (d1 == 0.0 && on_segment(c, d, a))
        || (d2 == 0.0 && on_segment(c, d, b))
        || (d3 == 0.0 && on_segment(a, b, c))
        || (d4 == 0.0 && on_segment(a, b, d))
}

/// Even-odd rule; points on the boundary are caught by the edge test before this is asked.
fn point_in_ring(pt: (f64, f64), ring: &Ring) -> bool {
    let mut inside = false;
    let n = ring.len();
    let mut j = n - 1;
    for i in 0..n {
        let (xi, yi) = ring[i];
        let (xj, yj) = ring[j];
        if (yi > pt.1) != (yj > pt.1) && pt.0 < (xj - xi) * (pt.1 - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Evaluates a CQL2-JSON filter against item properties, with SQL's three-valued logic (a
/// comparison with a missing property is unknown, `None`, and an unknown filter drops the item,
/// as in pgstac).
fn eval_cql2(f: &Value, props: &Value) -> Result<Option<bool>, CatalogError> {
    let bad = |reason: String| CatalogError::InvalidRequest { field: "filter".into(), reason };
    let op = f.get("op").and_then(Value::as_str).ok_or_else(|| bad(format!("{f} has no \"op\"")))?;
    let args = f.get("args").and_then(Value::as_array).ok_or_else(|| bad(format!("{f} has no \"args\" array")))?;
    let operand = |v: &Value| -> Option<Value> {
        match v.get("property").and_then(Value::as_str) {
            Some(name) => props.get(name).filter(|p| !p.is_null()).cloned(),
            None => Some(v.clone()),
        }
    };
    match op.to_ascii_lowercase().as_str() {
        "and" | "or" => {
            let is_and = op.eq_ignore_ascii_case("and");
            let mut acc = Some(is_and);
            for a in args {
                acc = match (acc, eval_cql2(a, props)?) {
                    (Some(x), Some(y)) => Some(if is_and { x && y } else { x || y }),
                    (Some(x), None) | (None, Some(x)) if x != is_and => Some(x),
                    _ => None,
                };
            }
            Ok(acc)
        }
        "not" => match args.as_slice() {
            [a] => Ok(eval_cql2(a, props)?.map(|x| !x)),
            _ => Err(bad("`not` takes one argument".into())),
        },
        "isnull" => match args.as_slice() {
            [a] => Ok(Some(operand(a).is_none())),
            _ => Err(bad("`isNull` takes one argument".into())),
        },
        "=" | "<>" | "<" | "<=" | ">" | ">=" => {
            let [l, r] = args.as_slice() else {
                return Err(bad(format!("`{op}` takes two arguments")));
            };
            let (Some(l), Some(r)) = (operand(l), operand(r)) else { return Ok(None) };
            let ord = match (&l, &r) {
                (Value::Number(a), Value::Number(b)) => a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b)),
                (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
                _ => None,
            };
            let Some(ord) = ord else { return Ok(None) };
            use std::cmp::Ordering::*;
            Ok(Some(match op {
                "=" => ord == Equal,
                "<>" => ord != Equal,
                "<" => ord == Less,
                "<=" => ord != Greater,
                ">" => ord == Greater,
                _ => ord != Less,
            }))
        }
        _ => Err(bad(format!(
            "operator `{op}` is not supported for a local item collection (only =, <>, <, <=, >, >=, and, or, not, isNull); use a STAC API or a simpler filter"
        ))),
    }
}
