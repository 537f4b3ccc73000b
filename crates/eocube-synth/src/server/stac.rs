//! The STAC API side: items indexed once at start (hrefs rewritten to this server, footprint,
//! time span, sort key), search requests parsed from a query string or a JSON body, pages with
//! `next` links, and the landing page / conformance / collections documents.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::query::rings_of_geojson;
use super::query::{Filter, Interval, Ring, interval_overlaps, parse_instant, parse_interval, rect, rings_intersect};
use super::{ApiError, ServeError};

pub(crate) const DEFAULT_LIMIT: usize = 10;
pub(crate) const MAX_LIMIT: usize = 10_000;
const STAC_VERSION: &str = "1.0.0";
const GEOJSON: &str = "application/geo+json";

const CONFORMANCE: &[&str] = &[
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#filter",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
];

/// One item as served: JSON with absolute hrefs, plus what search compares.
#[derive(Debug)]
struct Indexed {
    id: String,
    collection: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    footprint: Vec<Ring>,
    json: Value,
}

/// The catalog this server answers for: immutable after [`Catalog::new`].
#[derive(Debug)]
pub(crate) struct Catalog {
    base: String,
    /// Sorted by (start datetime, id): every answer comes out in this order.
    items: Vec<Indexed>,
    collections: BTreeMap<String, Value>,
}

/// A parsed item search.
#[derive(Debug, Default)]
pub(crate) struct Search {
    pub collections: Option<Vec<String>>,
    pub ids: Option<Vec<String>>,
    pub region: Option<Vec<Ring>>,
    pub datetime: Option<Interval>,
    pub filter: Option<Filter>,
    pub limit: Option<usize>,
    /// Index of the first item of the page, from the `token` of a `next` link.
    pub offset: usize,
}

/// How the page was asked for, which decides the form of its `next` link.
pub(crate) enum Origin<'a> {
    /// GET on `path` with these query pairs (the token is replaced in the next link).
    Get { path: &'a str, query: Vec<(String, String)> },
    /// POST /search: the next link carries only the token and says `merge: true`.
    Post,
}

fn bad(field: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("`{field}` {reason}"))
}

impl Catalog {
    /// Indexes `items` (hrefs relative to the archive root) for a server at `base`.
    pub(crate) fn new(base: &str, items: Vec<Value>, collections: Vec<Value>) -> Result<Self, ServeError> {
        let mut indexed = Vec::with_capacity(items.len());
        for (n, mut json) in items.into_iter().enumerate() {
            let invalid = |reason: String| ServeError::InvalidItem {
                item: json.get("id").and_then(Value::as_str).map_or_else(|| format!("#{n}"), str::to_string),
                reason,
            };
            let id = json.get("id").and_then(Value::as_str).ok_or_else(|| invalid("has no string `id`".into()))?;
            let id = id.to_string();
            let collection = json
                .get("collection")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("has no string `collection`".into()))?
                .to_string();
            let props = json
                .get("properties")
                .filter(|p| p.is_object())
                .ok_or_else(|| invalid("has no `properties`".into()))?;
            let time = |k: &str| props.get(k).and_then(Value::as_str).map(parse_instant).transpose();
            let (start, end) = match (time("datetime"), time("start_datetime"), time("end_datetime")) {
                (Ok(Some(t)), _, _) => (t, t),
                (Ok(None), Ok(Some(a)), Ok(Some(b))) => (a, b),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(invalid(e)),
                _ => return Err(invalid("has neither `datetime` nor `start_datetime` and `end_datetime`".into())),
            };
            let footprint = match json.get("geometry").filter(|g| !g.is_null()) {
                Some(g) => rings_of_geojson(g).map_err(|e| invalid(format!("`geometry`: {e}")))?,
                None => match json.get("bbox").and_then(Value::as_array).map(|b| b.iter().map(Value::as_f64).collect())
                {
                    Some(Some::<Vec<f64>>(b)) if b.len() == 4 => vec![rect(b[0], b[1], b[2], b[3])],
                    _ => return Err(invalid("has neither a `geometry` nor a 2D `bbox`".into())),
                },
            };
            rewrite_item(&mut json, base, &id, &collection);
            indexed.push(Indexed { id, collection, start, end, footprint, json });
        }
        indexed.sort_by(|a, b| (a.start, &a.id, &a.collection).cmp(&(b.start, &b.id, &b.collection)));
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = indexed.iter().find(|i| !seen.insert((&i.collection, &i.id))) {
            return Err(ServeError::InvalidItem {
                item: dup.id.clone(),
                reason: "appears twice in its collection".into(),
            });
        }
        let mut docs = BTreeMap::new();
        for c in collections {
            let id = c.get("id").and_then(Value::as_str).ok_or_else(|| ServeError::InvalidCollection {
                reason: format!(
                    "a collection has no string `id`: {}",
                    c.to_string().chars().take(200).collect::<String>()
                ),
            })?;
            docs.insert(id.to_string(), c.clone());
        }
        // Collections that only the items name get a minimal document with their extent.
        for it in &indexed {
            if !docs.contains_key(&it.collection) {
                let of: Vec<&Indexed> = indexed.iter().filter(|i| i.collection == it.collection).collect();
                docs.insert(it.collection.clone(), default_collection(&it.collection, &of));
            }
        }
        for (id, doc) in docs.iter_mut() {
            rewrite_collection(doc, base, id);
        }
        Ok(Catalog { base: base.to_string(), items: indexed, collections: docs })
    }

    pub(crate) fn has_collection(&self, id: &str) -> bool {
        self.collections.contains_key(id)
    }

    pub(crate) fn landing(&self) -> Value {
        let b = &self.base;
        let mut links = vec![
            json!({"rel": "self", "href": format!("{b}/"), "type": "application/json"}),
            json!({"rel": "root", "href": format!("{b}/"), "type": "application/json"}),
            json!({"rel": "conformance", "href": format!("{b}/conformance"), "type": "application/json"}),
            json!({"rel": "data", "href": format!("{b}/collections"), "type": "application/json"}),
            json!({"rel": "search", "href": format!("{b}/search"), "type": GEOJSON, "method": "GET"}),
            json!({"rel": "search", "href": format!("{b}/search"), "type": GEOJSON, "method": "POST"}),
        ];
        links.extend(
            self.collections
                .keys()
                .map(|id| json!({"rel": "child", "href": format!("{b}/collections/{id}"), "type": "application/json"})),
        );
        json!({
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": "eocube-archive",
            "title": "eocube local archive",
            "description": "Scenes served by eocube's built-in STAC API (eocube::serve::archive)",
            "conformsTo": CONFORMANCE,
            "links": links,
        })
    }

    pub(crate) fn conformance(&self) -> Value {
        json!({"conformsTo": CONFORMANCE})
    }

    pub(crate) fn collections(&self) -> Value {
        let b = &self.base;
        json!({
            "collections": self.collections.values().collect::<Vec<_>>(),
            "links": [
                {"rel": "self", "href": format!("{b}/collections"), "type": "application/json"},
                {"rel": "root", "href": format!("{b}/"), "type": "application/json"},
            ],
        })
    }

    pub(crate) fn collection(&self, id: &str) -> Result<Value, ApiError> {
        self.collections.get(id).cloned().ok_or_else(|| self.unknown_collection(id))
    }

    pub(crate) fn item(&self, collection: &str, id: &str) -> Result<Value, ApiError> {
        self.collection(collection)?;
        self.items
            .iter()
            .find(|i| i.collection == collection && i.id == id)
            .map(|i| i.json.clone())
            .ok_or_else(|| ApiError::not_found(format!("collection {collection:?} has no item {id:?}")))
    }

    fn unknown_collection(&self, id: &str) -> ApiError {
        let known: Vec<&String> = self.collections.keys().collect();
        ApiError::not_found(format!("no collection {id:?} in this archive; it has {known:?}"))
    }

    /// One page of the items matching `s`, as an ItemCollection with a `next` link when more remain.
    pub(crate) fn search(&self, s: &Search, origin: Origin<'_>) -> Result<Value, ApiError> {
        if let Some(cs) = &s.collections
            && let Some(c) = cs.iter().find(|c| !self.has_collection(c))
        {
            return Err(self.unknown_collection(c));
        }
        let matched: Vec<&Indexed> = self.items.iter().filter(|it| s.matches(it)).collect();
        let limit = s.limit.unwrap_or(DEFAULT_LIMIT);
        let page: Vec<Value> = matched.iter().skip(s.offset).take(limit).map(|i| i.json.clone()).collect();
        let next_offset = s.offset.saturating_add(page.len());
        let b = &self.base;
        let mut links = vec![json!({"rel": "root", "href": format!("{b}/"), "type": "application/json"})];
        let token = format!("next:{next_offset}");
        match origin {
            Origin::Get { path, query } => {
                let mut url = format!("{b}{path}");
                let self_query = encode_query(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                links.push(json!({"rel": "self", "href": with_query(&url, &self_query), "type": GEOJSON}));
                if next_offset < matched.len() {
                    let rest = query.iter().filter(|(k, _)| k != "token").map(|(k, v)| (k.as_str(), v.as_str()));
                    let q = encode_query(rest.chain([("token", token.as_str())]));
                    url = with_query(&url, &q);
                    links.push(json!({"rel": "next", "href": url, "type": GEOJSON, "method": "GET"}));
                }
            }
            Origin::Post => {
                links.push(json!({"rel": "self", "href": format!("{b}/search"), "type": GEOJSON}));
                if next_offset < matched.len() {
                    links.push(json!({
                        "rel": "next", "href": format!("{b}/search"), "type": GEOJSON,
                        "method": "POST", "body": {"token": token}, "merge": true,
                    }));
                }
            }
        }
        Ok(json!({
            "type": "FeatureCollection",
            "numberMatched": matched.len(),
            "numberReturned": page.len(),
            "features": page,
            "links": links,
            "context": {"matched": matched.len(), "returned": page.len(), "limit": limit},
        }))
    }
}

impl Search {
    fn matches(&self, it: &Indexed) -> bool {
        self.collections.as_ref().is_none_or(|cs| cs.contains(&it.collection))
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&it.id))
            && self.datetime.as_ref().is_none_or(|q| interval_overlaps(q, it.start, it.end))
            && self.region.as_ref().is_none_or(|r| rings_intersect(r, &it.footprint))
            && self.filter.as_ref().is_none_or(|f| f.eval(&it.json) == Some(true))
    }

    /// From the query string of `GET /search` (or `/collections/{id}/items`): arrays are
    /// comma-separated, `intersects` and `filter` are JSON text.
    pub(crate) fn from_query(pairs: &[(String, String)]) -> Result<Search, ApiError> {
        let get = |k: &str| pairs.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let list = |v: &str| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        let mut s =
            Search { collections: get("collections").map(list), ids: get("ids").map(list), ..Search::default() };
        let bbox = get("bbox")
            .map(|v| v.split(',').map(|x| x.trim().parse::<f64>()).collect::<Result<Vec<_>, _>>())
            .transpose()
            .map_err(|e| bad("bbox", format!("is not comma-separated numbers ({e})")))?;
        let intersects = get("intersects")
            .map(serde_json::from_str::<Value>)
            .transpose()
            .map_err(|e| bad("intersects", format!("is not GeoJSON ({e})")))?;
        s.region = region(bbox, intersects)?;
        s.datetime = get("datetime").map(parse_interval).transpose().map_err(|e| bad("datetime", e))?;
        s.limit = get("limit")
            .map(|v| v.trim().parse::<i64>().map_err(|e| bad("limit", format!("{v:?} is not an integer ({e})"))))
            .transpose()?
            .map(check_limit)
            .transpose()?;
        if let Some(f) = get("filter") {
            match get("filter-lang").unwrap_or("cql2-json") {
                "cql2-json" => {}
                other => return Err(unsupported_lang(other)),
            }
            let v: Value = serde_json::from_str(f)
                .map_err(|e| bad("filter", format!("is not CQL2-JSON ({e}); CQL2 text is not supported")))?;
            s.filter = Some(Filter::parse(&v).map_err(|e| bad("filter", e))?);
        }
        check_filter_crs(get("filter-crs"))?;
        s.offset = get("token").map(parse_token).transpose()?.unwrap_or(0);
        Ok(s)
    }

    /// From the JSON body of `POST /search`.
    pub(crate) fn from_body(body: &[u8]) -> Result<Search, ApiError> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not JSON ({e})")))?;
        let m = v.as_object().ok_or_else(|| ApiError::bad_request("the request body is not a JSON object"))?;
        let strings = |k: &str| -> Result<Option<Vec<String>>, ApiError> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_string).ok_or_else(|| bad(k, "must be an array of strings")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(bad(k, "must be an array of strings")),
            }
        };
        let mut s = Search { collections: strings("collections")?, ids: strings("ids")?, ..Search::default() };
        let bbox = match m.get("bbox") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|x| x.as_f64().ok_or_else(|| bad("bbox", "must be an array of numbers")))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(bad("bbox", "must be an array of 4 (or 6) numbers")),
        };
        s.region = region(bbox, m.get("intersects").filter(|v| !v.is_null()).cloned())?;
        s.datetime = match m.get("datetime") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) => Some(parse_interval(d).map_err(|e| bad("datetime", e))?),
            Some(_) => return Err(bad("datetime", "must be a string")),
        };
        s.limit = match m.get("limit") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => {
                Some(check_limit(n.as_i64().ok_or_else(|| bad("limit", format!("{n} is not an integer")))?)?)
            }
            Some(_) => return Err(bad("limit", "must be an integer")),
        };
        if let Some(f) = m.get("filter").filter(|v| !v.is_null()) {
            match m.get("filter-lang").and_then(Value::as_str).unwrap_or("cql2-json") {
                "cql2-json" => {}
                other => return Err(unsupported_lang(other)),
            }
            s.filter = Some(Filter::parse(f).map_err(|e| bad("filter", e))?);
        }
        check_filter_crs(m.get("filter-crs").and_then(Value::as_str))?;
        s.offset = match m.get("token") {
            None | Some(Value::Null) => 0,
            Some(Value::String(t)) => parse_token(t)?,
            Some(_) => return Err(bad("token", "must be a string from a `next` link")),
        };
        Ok(s)
    }
}

fn unsupported_lang(lang: &str) -> ApiError {
    bad("filter-lang", format!("{lang:?} is not supported; this server takes cql2-json"))
}

fn check_filter_crs(crs: Option<&str>) -> Result<(), ApiError> {
    match crs {
        None | Some("http://www.opengis.net/def/crs/OGC/1.3/CRS84") => Ok(()),
        Some(c) => Err(bad("filter-crs", format!("{c:?} is not supported; only CRS84 (lon/lat)"))),
    }
}

fn check_limit(n: i64) -> Result<usize, ApiError> {
    if n < 1 {
        return Err(bad("limit", format!("is {n}; give 1 to {MAX_LIMIT}")));
    }
    // larger limits are capped, as the STAC API spec lets servers do
    Ok((n as u64).min(MAX_LIMIT as u64) as usize)
}

fn parse_token(t: &str) -> Result<usize, ApiError> {
    t.strip_prefix("next:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| bad("token", format!("{t:?} is not a token of this server; take it from a `next` link")))
}

/// `bbox` (2D or 3D, west > east crossing the antimeridian) or `intersects`, exclusive.
fn region(bbox: Option<Vec<f64>>, intersects: Option<Value>) -> Result<Option<Vec<Ring>>, ApiError> {
    match (bbox, intersects) {
        (Some(_), Some(_)) => Err(bad("bbox", "and `intersects` are exclusive; give one")),
        (None, Some(g)) => rings_of_geojson(&g).map(Some).map_err(|e| bad("intersects", e)),
        (Some(b), None) => {
            let (w, s, e, n) = match b.as_slice() {
                &[w, s, e, n] | &[w, s, _, e, n, _] => (w, s, e, n),
                _ => return Err(bad("bbox", format!("has {} numbers; give west,south,east,north", b.len()))),
            };
            if !b.iter().all(|x| x.is_finite()) || s > n || !(-90.0..=90.0).contains(&s) || !(-90.0..=90.0).contains(&n)
            {
                return Err(bad("bbox", format!("{b:?} is not a lon/lat box with south <= north")));
            }
            Ok(Some(if w > e { vec![rect(w, s, 180.0, n), rect(-180.0, s, e, n)] } else { vec![rect(w, s, e, n)] }))
        }
        (None, None) => Ok(None),
    }
}

/// `k=v&…` with RFC 3986 unreserved characters kept and everything else percent-encoded.
fn encode_query<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn with_query(url: &str, q: &str) -> String {
    if q.is_empty() { url.to_string() } else { format!("{url}?{q}") }
}

/// Percent-encodes each segment of a relative path for a URL.
fn encode_path(rel: &str) -> String {
    rel.split('/')
        .map(|seg| {
            seg.bytes()
                .map(|c| match c {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (c as char).to_string(),
                    _ => format!("%{c:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Asset hrefs relative to the root become `{base}/files/<rel>`; absolute URLs stay.
/// Links to this server are set (self, parent, collection, root); other links are kept.
fn rewrite_item(item: &mut Value, base: &str, id: &str, collection: &str) {
    if let Some(assets) = item.get_mut("assets").and_then(Value::as_object_mut) {
        for a in assets.values_mut() {
            if let Some(h) = a.get("href").and_then(Value::as_str)
                && !h.contains("://")
            {
                let rel = h.trim_start_matches("./").trim_start_matches('/');
                a["href"] = Value::String(format!("{base}/files/{}", encode_path(rel)));
            }
        }
    }
    let (c, i) = (encode_path(collection), encode_path(id));
    let ours = [
        ("self", format!("{base}/collections/{c}/items/{i}"), GEOJSON),
        ("parent", format!("{base}/collections/{c}"), "application/json"),
        ("collection", format!("{base}/collections/{c}"), "application/json"),
        ("root", format!("{base}/"), "application/json"),
    ];
    set_links(item, &ours);
    if let Some(m) = item.as_object_mut() {
        m.entry("stac_version").or_insert(json!(STAC_VERSION));
        m.entry("type").or_insert(json!("Feature"));
    }
}

fn rewrite_collection(doc: &mut Value, base: &str, id: &str) {
    let c = encode_path(id);
    let ours = [
        ("self", format!("{base}/collections/{c}"), "application/json"),
        ("parent", format!("{base}/"), "application/json"),
        ("root", format!("{base}/"), "application/json"),
        ("items", format!("{base}/collections/{c}/items"), GEOJSON),
    ];
    set_links(doc, &ours);
}

fn set_links(doc: &mut Value, ours: &[(&str, String, &str)]) {
    let Some(m) = doc.as_object_mut() else { return };
    let mut links: Vec<Value> = match m.remove("links") {
        Some(Value::Array(l)) => l
            .into_iter()
            .filter(|l| !ours.iter().any(|(rel, _, _)| l.get("rel").and_then(Value::as_str) == Some(rel)))
            .collect(),
        _ => Vec::new(),
    };
    links.extend(ours.iter().map(|(rel, href, ty)| json!({"rel": rel, "href": href, "type": ty})));
    m.insert("links".into(), Value::Array(links));
}

/// A minimal STAC collection for `id` whose extent covers `items`.
fn default_collection(id: &str, items: &[&Indexed]) -> Value {
    let mut b = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
    for (x, y) in items.iter().flat_map(|i| i.footprint.iter().flatten()) {
        b = [b[0].min(*x), b[1].min(*y), b[2].max(*x), b[3].max(*y)];
    }
    let bbox = if b[0] <= b[2] { json!([b]) } else { json!([[-180.0, -90.0, 180.0, 90.0]]) };
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let first = items.iter().map(|i| i.start).min().map(fmt);
    let last = items.iter().map(|i| i.end).max().map(fmt);
    let mut m = Map::new();
    m.insert("type".into(), json!("Collection"));
    m.insert("stac_version".into(), json!(STAC_VERSION));
    m.insert("id".into(), json!(id));
    m.insert("description".into(), json!(format!("{id}, served by eocube")));
    m.insert("license".into(), json!("proprietary"));
    m.insert("extent".into(), json!({"spatial": {"bbox": bbox}, "temporal": {"interval": [[first, last]]}}));
    m.insert("links".into(), json!([]));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, day: u32, cc: f64) -> Value {
        json!({
            "type": "Feature", "id": id, "collection": "c",
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
            "properties": {"datetime": format!("2024-01-{day:02}T10:00:00Z"), "eo:cloud_cover": cc},
            "assets": {"red": {"href": "c/x y/red.tif"}, "ext": {"href": "https://example.com/a.tif"}},
        })
    }

    #[test]
    fn items_are_indexed_sorted_and_rewritten() {
        let cat =
            Catalog::new("http://h:1", vec![item("b", 2, 5.0), item("a", 2, 5.0), item("z", 1, 5.0)], vec![]).unwrap();
        let ids: Vec<&str> = cat.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["z", "a", "b"]);
        let a = cat.item("c", "a").unwrap();
        assert_eq!(a["assets"]["red"]["href"], "http://h:1/files/c/x%20y/red.tif");
        assert_eq!(a["assets"]["ext"]["href"], "https://example.com/a.tif");
        let c = cat.collection("c").unwrap();
        assert_eq!(c["extent"]["spatial"]["bbox"], json!([[0.0, 0.0, 1.0, 1.0]]));
        assert_eq!(cat.collection("nope").unwrap_err().status, hyper::StatusCode::NOT_FOUND);
        let dup = Catalog::new("http://h:1", vec![item("a", 1, 1.0), item("a", 1, 1.0)], vec![]);
        assert!(matches!(dup, Err(ServeError::InvalidItem { .. })));
        let mut no_time = item("t", 1, 1.0);
        no_time["properties"]["datetime"] = json!("soon");
        assert!(matches!(Catalog::new("http://h:1", vec![no_time], vec![]), Err(ServeError::InvalidItem { .. })));
    }

    #[test]
    fn query_and_body_parse_alike() {
        let q = |s: &str| -> Vec<(String, String)> {
            url::form_urlencoded::parse(s.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
        };
        let s = Search::from_query(&q(
            "collections=a,b&bbox=170,-10,-170,10&limit=50000&token=next:4&datetime=../2024-01-01T00:00:00Z",
        ))
        .unwrap();
        assert_eq!(s.collections, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(s.region.as_ref().map(Vec::len), Some(2), "antimeridian bbox splits in two");
        assert_eq!((s.limit, s.offset), (Some(MAX_LIMIT), 4));
        let b = Search::from_body(br#"{"collections":["a"],"limit":3,"filter":{"op":"<","args":[{"property":"eo:cloud_cover"},5]},"filter-lang":"cql2-json"}"#).unwrap();
        assert_eq!(b.limit, Some(3));
        assert!(b.filter.is_some());
        for bad in [
            "limit=0",
            "limit=x",
            "bbox=1,2,3",
            "bbox=0,10,1,5",
            "datetime=2024",
            "token=abc",
            "filter=nope",
            "filter-lang=cql2-text&filter=x",
            "bbox=0,0,1,1&intersects={\"type\":\"Point\",\"coordinates\":[0,0]}",
        ] {
            assert_eq!(Search::from_query(&q(bad)).unwrap_err().status, hyper::StatusCode::BAD_REQUEST, "{bad}");
        }
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"collections":"a"}"#,
            br#"{"limit":-1}"#,
            br#"{"limit":2.5}"#,
            br#"{"filter":{"op":"like","args":[]}}"#,
            br#"{"intersects":{"type":"LineString","coordinates":[[0,0],[1,1]]}}"#,
        ] {
            let e = Search::from_body(bad).unwrap_err();
            assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(bad));
        }
    }
}
