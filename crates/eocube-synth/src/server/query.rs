//! The pure parts of item search: RFC 3339 intervals, planar polygon intersection in lon/lat,
//! and CQL2-JSON filters compiled once then evaluated per item. No I/O, no HTTP: every
//! function returns a `String` reason that the caller turns into a 400 answer.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// A closed interval in UTC; `None` ends are open (`..` or empty in STAC).
pub(crate) type Interval = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// One RFC 3339 instant, normalised to UTC.
pub(crate) fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 date-time such as 2024-05-01T00:00:00Z ({e})"))
}

/// STAC `datetime`: an instant `t` (the interval `[t, t]`), or `a/b`, `../b`, `a/..` (an empty
/// end counts as open, as the STAC API spec allows). A start after the end is an error.
pub(crate) fn parse_interval(s: &str) -> Result<Interval, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("is empty; give an instant or an interval like 2024-01-01T00:00:00Z/2024-12-31T23:59:59Z".into());
    }
    let Some((a, b)) = s.split_once('/') else {
        let t = parse_instant(s)?;
        return Ok((Some(t), Some(t)));
    };
    let end = |x: &str| -> Result<Option<DateTime<Utc>>, String> {
        match x.trim() {
            "" | ".." => Ok(None),
            x => parse_instant(x).map(Some),
        }
    };
    let (start, stop) = (end(a)?, end(b)?);
    if let (Some(a), Some(b)) = (start, stop)
        && a > b
    {
        return Err(format!("{s:?} starts after it ends"));
    }
    Ok((start, stop))
}

/// Whether the item's time span `[start, end]` meets the interval (both closed).
pub(crate) fn interval_overlaps(q: &Interval, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    q.0.is_none_or(|a| end >= a) && q.1.is_none_or(|b| start <= b)
}

pub(crate) type Point = (f64, f64);
/// A polygon's exterior ring (holes are ignored: too wide is the safe side for "does this scene
/// touch my region"), or a single position for a GeoJSON Point.
pub(crate) type Ring = Vec<Point>;

/// The exterior rings of a GeoJSON Polygon or MultiPolygon, or a Point as a one-position ring.
pub(crate) fn rings_of_geojson(g: &Value) -> Result<Vec<Ring>, String> {
    let pos = |p: &Value| -> Result<Point, String> {
        match p.as_array().map(Vec::as_slice) {
            Some([x, y, ..]) => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) if x.is_finite() && y.is_finite() => Ok((x, y)),
                _ => Err(format!("position {p} is not [lon, lat] numbers")),
            },
            _ => Err(format!("position {p} is not [lon, lat]")),
        }
    };
    let exterior = |poly: &Value| -> Result<Ring, String> {
        let rings = poly.as_array().ok_or("polygon coordinates are not an array of rings")?;
        let ring = rings.first().and_then(Value::as_array).ok_or("a polygon has no exterior ring")?;
        let ring = ring.iter().map(pos).collect::<Result<Ring, String>>()?;
        // RFC 7946 3.1.6: closed rings of at least 4 positions
        if ring.len() < 4 || ring.first() != ring.last() {
            return Err(format!("the ring {ring:?} is not closed with at least 4 positions (RFC 7946 3.1.6)"));
        }
        Ok(ring)
    };
    let coords = g.get("coordinates").ok_or("the geometry has no `coordinates`")?;
    match g.get("type").and_then(Value::as_str) {
        Some("Point") => Ok(vec![vec![pos(coords)?]]),
        Some("Polygon") => Ok(vec![exterior(coords)?]),
        Some("MultiPolygon") => {
            let polys = coords.as_array().ok_or("MultiPolygon coordinates are not an array")?;
            if polys.is_empty() {
                return Err("the MultiPolygon is empty".into());
            }
            polys.iter().map(exterior).collect()
        }
        t => Err(format!("geometry type {t:?} is not supported; give a GeoJSON Point, Polygon or MultiPolygon")),
    }
}

/// The rectangle of a bbox as a closed ring.
pub(crate) fn rect(w: f64, s: f64, e: f64, n: f64) -> Ring {
    vec![(w, s), (e, s), (e, n), (w, n), (w, s)]
}

/// Whether any ring of `a` intersects any ring of `b` (touching counts, like `ST_Intersects`).
pub(crate) fn rings_intersect(a: &[Ring], b: &[Ring]) -> bool {
    a.iter().any(|p| b.iter().any(|q| ring_pair_intersects(p, q)))
}

/// Two simple polygons intersect iff an edge of one crosses or touches an edge of the other, or
/// one lies inside the other (then its first vertex is inside the other).
fn ring_pair_intersects(p: &[Point], q: &[Point]) -> bool {
    let (Some(&p0), Some(&q0)) = (p.first(), q.first()) else { return false };
    let bounds = |r: &[Point]| {
        r.iter().fold((f64::MAX, f64::MAX, f64::MIN, f64::MIN), |(a, b, c, d), &(x, y)| {
            (a.min(x), b.min(y), c.max(x), d.max(y))
        })
    };
    let (pw, ps, pe, pn) = bounds(p);
    let (qw, qs, qe, qn) = bounds(q);
    if pw > qe || qw > pe || ps > qn || qs > pn {
        return false;
    }
    let edges = |r: &[Point]| r.iter().zip(r.iter().cycle().skip(1)).map(|(&a, &b)| (a, b)).collect::<Vec<_>>();
    let (ep, eq) = (edges(p), edges(q));
    if ep.iter().any(|&(a, b)| eq.iter().any(|&(c, d)| segments_intersect(a, b, c, d))) {
        return true;
    }
    point_in_ring(p0, q) || point_in_ring(q0, p)
}

fn orient(a: Point, b: Point, c: Point) -> f64 {
    (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0)
}

fn on_segment(a: Point, b: Point, p: Point) -> bool {
    p.0 >= a.0.min(b.0) && p.0 <= a.0.max(b.0) && p.1 >= a.1.min(b.1) && p.1 <= a.1.max(b.1)
}

fn segments_intersect(a: Point, b: Point, c: Point, d: Point) -> bool {
    let (d1, d2, d3, d4) = (orient(c, d, a), orient(c, d, b), orient(a, b, c), orient(a, b, d));
    let opposite = |x: f64, y: f64| (x > 0.0 && y < 0.0) || (x < 0.0 && y > 0.0);
    if opposite(d1, d2) && opposite(d3, d4) {
        return true;
    }
    (d1 == 0.0 && on_segment(c, d, a))
        || (d2 == 0.0 && on_segment(c, d, b))
        || (d3 == 0.0 && on_segment(a, b, c))
        || (d4 == 0.0 && on_segment(a, b, d))
}

/// Even-odd rule; boundary points were already caught by the edge test.
fn point_in_ring(pt: Point, ring: &[Point]) -> bool {
    let mut inside = false;
    for (&(xi, yi), &(xj, yj)) in ring.iter().zip(ring.iter().cycle().skip(ring.len().saturating_sub(1))) {
        if (yi > pt.1) != (yj > pt.1) && pt.0 < (xj - xi) * (pt.1 - yi) / (yj - yi) + xi {
            inside = !inside;
        }
    }
    inside
}

/// A CQL2-JSON filter, checked once per request so that an unsupported operator is a 400 even
/// when no item would reach it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    IsNull(Operand),
    Cmp(CmpOp, Operand, Operand),
    Const(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    /// An item property; `id` and `collection` are the item's top-level members.
    Property(String),
    Num(f64),
    Str(String),
    Bool(bool),
    Time(DateTime<Utc>),
}

/// What an item's value becomes for a comparison.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Num(f64),
    Str(String),
    Bool(bool),
    Time(DateTime<Utc>),
}

const SUPPORTED: &str = "supported: and, or, not, =, <>, <, <=, >, >=, isNull on properties with number, string, \
                         boolean or {\"timestamp\": ...} literals";

impl Filter {
    /// Compiles a CQL2-JSON expression.
    pub(crate) fn parse(f: &Value) -> Result<Filter, String> {
        if let Some(b) = f.as_bool() {
            return Ok(Filter::Const(b));
        }
        let op =
            f.get("op").and_then(Value::as_str).ok_or_else(|| format!("{f} has no \"op\" string ({SUPPORTED})"))?;
        let args = f.get("args").and_then(Value::as_array).ok_or_else(|| format!("`{op}` has no \"args\" array"))?;
        let lower = op.to_ascii_lowercase();
        match lower.as_str() {
            "and" | "or" => {
                if args.is_empty() {
                    return Err(format!("`{op}` needs at least one argument"));
                }
                let subs = args.iter().map(Filter::parse).collect::<Result<Vec<_>, _>>()?;
                Ok(if lower == "and" { Filter::And(subs) } else { Filter::Or(subs) })
            }
            "not" => match args.as_slice() {
                [a] => Ok(Filter::Not(Box::new(Filter::parse(a)?))),
                _ => Err("`not` takes one argument".into()),
            },
            "isnull" => match args.as_slice() {
                [a] => Ok(Filter::IsNull(Operand::parse(a)?)),
                _ => Err("`isNull` takes one argument".into()),
            },
            "=" | "<>" | "<" | "<=" | ">" | ">=" => {
                let [l, r] = args.as_slice() else { return Err(format!("`{op}` takes two arguments")) };
                let cmp = match op {
                    "=" => CmpOp::Eq,
                    "<>" => CmpOp::Ne,
                    "<" => CmpOp::Lt,
                    "<=" => CmpOp::Le,
                    ">" => CmpOp::Gt,
                    _ => CmpOp::Ge,
                };
                Ok(Filter::Cmp(cmp, Operand::parse(l)?, Operand::parse(r)?))
            }
            _ => Err(format!("operator `{op}` is not supported by this server ({SUPPORTED})")),
        }
    }

    /// SQL's three-valued logic, as pgstac: a comparison with a missing property (or values of
    /// different types) is unknown, `None`, and an unknown filter drops the item.
    pub(crate) fn eval(&self, item: &Value) -> Option<bool> {
        match self {
            Filter::Const(b) => Some(*b),
            Filter::And(subs) | Filter::Or(subs) => {
                let is_and = matches!(self, Filter::And(_));
                let mut acc = Some(is_and);
                for s in subs {
                    acc = match (acc, s.eval(item)) {
                        (Some(x), Some(y)) => Some(if is_and { x && y } else { x || y }),
                        // false AND unknown = false; true OR unknown = true
                        (Some(x), None) | (None, Some(x)) if x != is_and => Some(x),
                        _ => None,
                    };
                }
                acc
            }
            Filter::Not(s) => s.eval(item).map(|x| !x),
            Filter::IsNull(o) => Some(o.value(item).is_none()),
            Filter::Cmp(op, l, r) => {
                let (l, r) = (l.value(item)?, r.value(item)?);
                let ord = compare(&l, &r)?;
                Some(match op {
                    CmpOp::Eq => ord == Ordering::Equal,
                    CmpOp::Ne => ord != Ordering::Equal,
                    CmpOp::Lt => ord == Ordering::Less,
                    CmpOp::Le => ord != Ordering::Greater,
                    CmpOp::Gt => ord == Ordering::Greater,
                    CmpOp::Ge => ord != Ordering::Less,
                })
            }
        }
    }
}

fn compare(l: &Scalar, r: &Scalar) -> Option<Ordering> {
    let time = |s: &Scalar| match s {
        Scalar::Time(t) => Some(*t),
        Scalar::Str(s) => parse_instant(s).ok(),
        _ => None,
    };
    match (l, r) {
        (Scalar::Num(a), Scalar::Num(b)) => a.partial_cmp(b),
        (Scalar::Str(a), Scalar::Str(b)) => Some(a.cmp(b)),
        (Scalar::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
        (Scalar::Time(_), _) | (_, Scalar::Time(_)) => Some(time(l)?.cmp(&time(r)?)),
        _ => None,
    }
}

impl Operand {
    fn parse(v: &Value) -> Result<Operand, String> {
        match v {
            Value::Number(n) => n.as_f64().map(Operand::Num).ok_or_else(|| format!("{n} is not a finite number")),
            Value::String(s) => Ok(Operand::Str(s.clone())),
            Value::Bool(b) => Ok(Operand::Bool(*b)),
            Value::Object(m) => {
                if let Some(p) = m.get("property") {
                    return p.as_str().map(|p| Operand::Property(p.to_string())).ok_or_else(|| {
                        format!("{v}: \"property\" must be a string naming an item property such as eo:cloud_cover")
                    });
                }
                match m.get("timestamp").or_else(|| m.get("date")) {
                    Some(Value::String(t)) => {
                        let t = if t.len() == 10 { format!("{t}T00:00:00Z") } else { t.clone() };
                        parse_instant(&t).map(Operand::Time)
                    }
                    _ => Err(format!("operand {v} is not supported ({SUPPORTED})")),
                }
            }
            _ => Err(format!("operand {v} is not supported ({SUPPORTED})")),
        }
    }

    fn value(&self, item: &Value) -> Option<Scalar> {
        let v = match self {
            Operand::Num(x) => return Some(Scalar::Num(*x)),
            Operand::Str(s) => return Some(Scalar::Str(s.clone())),
            Operand::Bool(b) => return Some(Scalar::Bool(*b)),
            Operand::Time(t) => return Some(Scalar::Time(*t)),
            Operand::Property(name) => match name.as_str() {
                "id" | "collection" => item.get(name),
                _ => item.get("properties").and_then(|p| p.get(name)),
            },
        };
        match v? {
            Value::Number(n) => n.as_f64().map(Scalar::Num),
            Value::String(s) => Some(Scalar::Str(s.clone())),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        parse_instant(s).unwrap()
    }

    #[test]
    fn intervals_of_every_form() {
        let a = t("2024-01-01T00:00:00Z");
        let b = t("2024-02-01T12:00:00Z");
        assert_eq!(parse_interval("2024-01-01T00:00:00Z").unwrap(), (Some(a), Some(a)));
        assert_eq!(parse_interval("2024-01-01T00:00:00Z/2024-02-01T12:00:00Z").unwrap(), (Some(a), Some(b)));
        assert_eq!(parse_interval("../2024-02-01T12:00:00Z").unwrap(), (None, Some(b)));
        assert_eq!(parse_interval("2024-01-01T00:00:00Z/..").unwrap(), (Some(a), None));
        assert_eq!(parse_interval("/2024-02-01T12:00:00Z").unwrap(), (None, Some(b)));
        assert_eq!(parse_interval("2024-01-01T01:00:00+01:00").unwrap(), (Some(a), Some(a)));
        assert_eq!(parse_interval("../..").unwrap(), (None, None));
        assert!(parse_interval("2024-02-01T12:00:00Z/2024-01-01T00:00:00Z").unwrap_err().contains("after"));
        assert!(parse_interval("2024-01-01").is_err());
        assert!(parse_interval("").is_err());
        assert!(parse_interval("yesterday/..").is_err());
        let q = parse_interval("2024-01-01T00:00:00Z/2024-02-01T12:00:00Z").unwrap();
        assert!(interval_overlaps(&q, a, a));
        assert!(interval_overlaps(&q, b, b), "closed at the end");
        assert!(!interval_overlaps(&q, t("2024-02-01T12:00:01Z"), t("2024-03-01T00:00:00Z")));
        assert!(interval_overlaps(&q, t("2023-12-01T00:00:00Z"), a), "a span touching the start");
    }

    #[test]
    fn polygons_intersect_beyond_their_bboxes() {
        // A triangle whose bbox covers (0..10, 0..10) but which only covers the lower-right half.
        let tri = json!({"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]});
        let tri = rings_of_geojson(&tri).unwrap();
        assert!(!rings_intersect(&tri, &[rect(0.0, 6.0, 3.0, 9.0)]), "inside the bbox, outside the triangle");
        assert!(rings_intersect(&tri, &[rect(6.0, 1.0, 8.0, 3.0)]), "wholly inside");
        assert!(rings_intersect(&tri, &[rect(-5.0, -5.0, 20.0, 20.0)]), "wholly containing");
        assert!(rings_intersect(&tri, &[rect(4.0, 4.0, 6.0, 4.5)]), "crossing the diagonal");
        assert!(rings_intersect(&tri, &[rect(10.0, 2.0, 12.0, 3.0)]), "touching an edge");
        assert!(!rings_intersect(&tri, &[rect(11.0, 2.0, 12.0, 3.0)]));
        let pt = rings_of_geojson(&json!({"type": "Point", "coordinates": [8, 2]})).unwrap();
        assert!(rings_intersect(&tri, &pt));
        let pt = rings_of_geojson(&json!({"type": "Point", "coordinates": [2, 8]})).unwrap();
        assert!(!rings_intersect(&tri, &pt));
        let multi = json!({"type": "MultiPolygon", "coordinates": [
            [[[20, 20], [21, 20], [21, 21], [20, 20]]],
            [[[9, 1], [9.5, 1], [9.5, 1.5], [9, 1]]]]});
        assert!(rings_intersect(&tri, &rings_of_geojson(&multi).unwrap()));
    }

    #[test]
    fn bad_geometries_are_reasons() {
        for g in [
            json!({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]}),
            json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}),
            json!({"type": "Polygon", "coordinates": [[["a", 0], [1, 0], [1, 1], ["a", 0]]]}),
            json!({"type": "Polygon"}),
            json!({"type": "MultiPolygon", "coordinates": []}),
            json!([1, 2]),
        ] {
            assert!(rings_of_geojson(&g).is_err(), "{g}");
        }
    }

    #[test]
    fn cql2_comparisons_and_logic() {
        let item = json!({"id": "S2A_X", "collection": "c", "properties": {
            "eo:cloud_cover": 12.5, "platform": "sentinel-2a", "datetime": "2024-05-03T10:00:00Z", "flag": true}});
        let f = |v: Value| Filter::parse(&v).unwrap().eval(&item);
        let p = |n: &str| json!({"property": n});
        assert_eq!(f(json!({"op": "<", "args": [p("eo:cloud_cover"), 20]})), Some(true));
        assert_eq!(f(json!({"op": "<=", "args": [p("eo:cloud_cover"), 12.5]})), Some(true));
        assert_eq!(f(json!({"op": ">", "args": [p("eo:cloud_cover"), 12.5]})), Some(false));
        assert_eq!(f(json!({"op": ">=", "args": [30, p("eo:cloud_cover")]})), Some(true));
        assert_eq!(f(json!({"op": "=", "args": [p("platform"), "sentinel-2a"]})), Some(true));
        assert_eq!(f(json!({"op": "<>", "args": [p("id"), "S2A_X"]})), Some(false));
        assert_eq!(f(json!({"op": "=", "args": [p("flag"), true]})), Some(true));
        let after = json!({"op": ">", "args": [p("datetime"), {"timestamp": "2024-05-01T00:00:00Z"}]});
        assert_eq!(f(after), Some(true));
        // missing property: unknown, and `and` with false is false, `or` with true is true
        let missing = json!({"op": "<", "args": [p("s2:nodata_pixel_percentage"), 5]});
        assert_eq!(f(missing.clone()), None);
        let no = json!({"op": "=", "args": [1, 2]});
        let yes = json!({"op": "=", "args": [1, 1]});
        assert_eq!(f(json!({"op": "and", "args": [missing.clone(), no.clone()]})), Some(false));
        assert_eq!(f(json!({"op": "and", "args": [missing.clone(), yes.clone()]})), None);
        assert_eq!(f(json!({"op": "or", "args": [missing.clone(), yes]})), Some(true));
        assert_eq!(f(json!({"op": "not", "args": [no]})), Some(true));
        assert_eq!(f(json!({"op": "isNull", "args": [p("nope")]})), Some(true));
        assert_eq!(f(json!({"op": "=", "args": [p("platform"), 3]})), None, "mixed types are unknown");
    }

    #[test]
    fn unsupported_cql2_is_refused_up_front() {
        for v in [
            json!({"op": "like", "args": [{"property": "id"}, "S2%"]}),
            json!({"op": "s_intersects", "args": [{"property": "geometry"}, {"type": "Point", "coordinates": [0, 0]}]}),
            json!({"op": "and", "args": [{"op": "between", "args": [{"property": "x"}, 1, 2]}]}),
            json!({"op": "<", "args": [{"property": "x"}]}),
            json!({"op": "<", "args": [{"property": 3}, 1]}),
            json!({"args": []}),
            json!({"op": "and", "args": []}),
            json!("eo:cloud_cover < 10"),
        ] {
            assert!(Filter::parse(&v).is_err(), "{v}");
        }
    }
}
