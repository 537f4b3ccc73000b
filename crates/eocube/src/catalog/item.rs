//! STAC item JSON → [`Scene`]: STAC 1.0 and 1.1 field spellings, asset-key aliases, validation.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Asset, CatalogError, Scene};
use crate::grid::{Affine, Bbox};
use crate::sensor::SENTINEL2_L2A;
use crate::sensor::sentinel2::BASELINE_PROPERTIES;

/// The names a band may go by: the Earth Search key and the band-number key, e.g. `B04` →
/// `["red", "B04"]`. Accepts either form in any case, and `B4` for `B04`. Unknown names map to
/// themselves only. The table is the Sentinel-2 profile's ([`crate::sensor`]).
pub fn band_aliases(band: &str) -> Vec<String> {
    SENTINEL2_L2A.aliases(band)
}

/// The asset key of `item_assets` that holds `band`, or `None`: Earth Search names, band
/// numbers, then Copernicus Data Space's per-resolution keys (`B04_10m`), as
/// [`crate::sensor::SensorProfile::resolve_asset_key`] says.
pub fn resolve_asset_key<'a>(assets: &'a Map<String, Value>, band: &str) -> Option<&'a str> {
    SENTINEL2_L2A.resolve_asset_key(assets, band)
}

/// Parses one STAC item (1.0 or 1.1) into a [`Scene`] with an [`Asset`] for each of `bands`.
/// Extra fields are ignored everywhere; missing or mistyped fields the pipeline needs are
/// [`CatalogError::InvalidItem`], a band the item lacks is [`CatalogError::MissingBand`].
pub fn parse_item(item: &Value, bands: &[String]) -> Result<Scene, CatalogError> {
    let Some(obj) = item.as_object() else {
        return Err(invalid("<not an object>", "item", format!("is {}, expected a JSON object", kind(item))));
    };
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(invalid("<empty id>", "id", "is empty".into())),
        Some(v) => return Err(invalid("<bad id>", "id", format!("is {}, expected a string", kind(v)))),
        None => return Err(invalid("<no id>", "id", "is missing".into())),
    };
    let p = Ctx { id: &id };
    if let Some(t) = obj.get("type")
        && t.as_str() != Some("Feature")
    {
        return Err(p.err("type", format!("is {t}, expected \"Feature\" (a STAC item)")));
    }
    let collection = match obj.get("collection") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return Err(p.err("collection", format!("is {}, expected a string", kind(v)))),
    };
    let props = match obj.get("properties") {
        Some(Value::Object(m)) => m,
        Some(v) => return Err(p.err("properties", format!("is {}, expected an object", kind(v)))),
        None => return Err(p.err("properties", "is missing".into())),
    };
    let datetime = item_datetime(&p, props)?;
    let bbox = item_bbox(&p, obj)?;
    let assets_obj = match obj.get("assets") {
        Some(Value::Object(m)) => Some(m),
        None | Some(Value::Null) => None,
        Some(v) => return Err(p.err("assets", format!("is {}, expected an object", kind(v)))),
    };

    let mut assets = Vec::with_capacity(bands.len());
    // The item's own collection says its sensor (its asset keys, its quality band).
    let profile = crate::sensor::profile_for(collection.as_deref().unwrap_or_default());
    let item_epsg = p.epsg(props, "properties")?;
    let mut epsg: Option<(u32, String)> = None;
    for band in bands {
        let empty = Map::new();
        let all = assets_obj.unwrap_or(&empty);
        let Some(key) = profile.resolve_asset_key(all, band) else {
            let available = all.keys().filter(|k| !k.to_ascii_lowercase().ends_with("-jp2")).cloned().collect();
            if profile.is_quality(band) && profile.quality.band.name != crate::sensor::SENTINEL2_L2A.quality.band.name {
                return Err(CatalogError::MissingQuality {
                    item: id.clone(),
                    band: profile.describe_keys(band),
                    sensor: profile.name,
                    available,
                });
            }
            return Err(CatalogError::MissingBand { item: id.clone(), band: band.clone(), available });
        };
        let field = format!("assets.{key}");
        let a = match all.get(key) {
            Some(Value::Object(m)) => m,
            Some(v) => return Err(p.err(&field, format!("is {}, expected an object", kind(v)))),
            None => return Err(p.err(&field, "is missing".into())),
        };
        // An asset's own CRS overrides the item's (STAC); a scene whose bands disagree is not
        // one raster grid, which the warp needs.
        if let Some(e) = p.epsg(a, &field)?.or(item_epsg) {
            match &epsg {
                Some((prev, prev_key)) if *prev != e => {
                    return Err(p.err(
                        &format!("{field}.proj:epsg"),
                        format!("is {e} while asset {prev_key} is in EPSG:{prev}; eocube needs one CRS per scene"),
                    ));
                }
                Some(_) => {}
                None => epsg = Some((e, key.to_string())),
            }
        }
        assets.push((band.clone(), p.asset(key, &field, a, props)?));
    }
    let Some(epsg) = epsg.map(|(e, _)| e).or(item_epsg) else {
        return Err(p.err(
            "properties.proj:epsg",
            "is missing (and so is proj:code, in the properties and on the assets); the item must state its CRS".into(),
        ));
    };

    // Each catalog family states the baseline under its own property (the profile lists them).
    let mut processing_baseline = None;
    for key in BASELINE_PROPERTIES {
        let field = format!("properties.{key}");
        processing_baseline = match props.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => Some(s.clone()),
            // some catalogs store it as a number (5.09): keep the SAFE spelling "05.09"
            Some(Value::Number(n)) => n.as_f64().map(|x| format!("{x:05.2}")),
            Some(v) => return Err(p.err(&field, format!("is {}, expected a string", kind(v)))),
        };
        break;
    }
    // Earth Search v1 says `earthsearch:`, its v0 said `sentinel:`.
    let mut boa_offset_applied = None;
    for key in ["earthsearch:boa_offset_applied", "sentinel:boa_offset_applied"] {
        boa_offset_applied = match props.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::Bool(b)) => Some(*b),
            Some(v) => {
                return Err(p.err(&format!("properties.{key}"), format!("is {}, expected true or false", kind(v))));
            }
        };
        break;
    }
    let cloud_cover = p.opt_f64(props, "eo:cloud_cover", "properties.eo:cloud_cover")?;
    Ok(Scene { id, collection, datetime, epsg, bbox, assets, processing_baseline, boa_offset_applied, cloud_cover })
}

/// `datetime`, or `start_datetime` for items that only give a range (STAC allows a null datetime).
pub(super) fn item_datetime_of(item: &Value) -> Result<DateTime<Utc>, CatalogError> {
    let id = item.get("id").and_then(Value::as_str).unwrap_or("<no id>");
    let p = Ctx { id };
    match item.get("properties") {
        Some(Value::Object(props)) => item_datetime(&p, props),
        _ => Err(p.err("properties", "is missing or not an object".into())),
    }
}

fn item_datetime(p: &Ctx, props: &Map<String, Value>) -> Result<DateTime<Utc>, CatalogError> {
    let (field, v) = match props.get("datetime") {
        Some(Value::Null) | None => ("properties.start_datetime", props.get("start_datetime")),
        v => ("properties.datetime", v),
    };
    match v {
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| p.err(field, format!("is {s:?}, not an RFC 3339 date-time ({e})"))),
        Some(Value::Null) | None => {
            Err(p.err("properties.datetime", "is missing (and there is no start_datetime either)".into()))
        }
        Some(v) => Err(p.err(field, format!("is {}, expected an RFC 3339 string", kind(v)))),
    }
}

/// The item's `bbox` (2-D or 3-D), else the bounds of its geometry.
pub(super) fn item_bbox_of(item: &Value) -> Result<Bbox, CatalogError> {
    let id = item.get("id").and_then(Value::as_str).unwrap_or("<no id>");
    match item.as_object() {
        Some(obj) => item_bbox(&Ctx { id }, obj),
        None => Err(invalid(id, "item", "is not a JSON object".into())),
    }
}

fn item_bbox(p: &Ctx, obj: &Map<String, Value>) -> Result<Bbox, CatalogError> {
    let b = match obj.get("bbox") {
        Some(Value::Null) | None => {
            let geometry = obj.get("geometry").unwrap_or(&Value::Null);
            let polys = super::local::polygons_of_geojson(geometry)
                .map_err(|r| p.err("bbox", format!("is missing and the geometry gives none: {r}")))?;
            let bounds = Bbox::from_points(polys.iter().flatten().copied());
            return bounds.ok_or_else(|| p.err("bbox", "is missing and the geometry has no points".into()));
        }
        Some(v) => {
            let nums = p.numbers(v, "bbox")?;
            match nums.as_slice() {
                [w, s, e, n] => [*w, *s, *e, *n],
                [w, s, _, e, n, _] => [*w, *s, *e, *n],
                _ => return Err(p.err("bbox", format!("has {} numbers, expected 4 (or 6 for 3-D)", nums.len()))),
            }
        }
    };
    let [mut west, south, mut east, north] = b;
    if west > east {
        // crosses the antimeridian (RFC 7946 section 5.2): keep every longitude, see Scene::bbox
        (west, east) = (-180.0, 180.0);
    }
    let lat = -90.0..=90.0;
    let lon = -180.0..=180.0;
    let valid =
        south <= north && lat.contains(&south) && lat.contains(&north) && lon.contains(&west) && lon.contains(&east);
    if !valid {
        return Err(p.err("bbox", format!("is {b:?}, not a lon/lat box [west, south, east, north]")));
    }
    Ok(Bbox { west, south, east, north })
}

fn invalid(item: &str, field: &str, reason: String) -> CatalogError {
    CatalogError::InvalidItem { item: item.to_string(), field: field.to_string(), reason }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The item being parsed, so every error names it.
struct Ctx<'a> {
    id: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: &str, reason: String) -> CatalogError {
        invalid(self.id, field, reason)
    }

    fn numbers(&self, v: &Value, field: &str) -> Result<Vec<f64>, CatalogError> {
        let Value::Array(a) = v else {
            return Err(self.err(field, format!("is {}, expected an array of numbers", kind(v))));
        };
        a.iter()
            .enumerate()
            .map(|(i, x)| match x.as_f64() {
                Some(f) if f.is_finite() => Ok(f),
                _ => Err(self.err(field, format!("element {i} is {x}, expected a finite number"))),
            })
            .collect()
    }

    fn opt_f64(&self, m: &Map<String, Value>, key: &str, field: &str) -> Result<Option<f64>, CatalogError> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(v) => Err(self.err(field, format!("is {}, expected a number", kind(v)))),
        }
    }

    /// `proj:epsg` (STAC 1.0, projection extension 1.x) or `proj:code` (`"EPSG:32618"`, 2.x).
    fn epsg(&self, m: &Map<String, Value>, at: &str) -> Result<Option<u32>, CatalogError> {
        if let Some(v) = m.get("proj:epsg").filter(|v| !v.is_null()) {
            let field = format!("{at}.proj:epsg");
            return match v.as_f64() {
                Some(f) if f.fract() == 0.0 && f >= 1024.0 && f <= f64::from(u32::MAX) => Ok(Some(f as u32)),
                _ => Err(self.err(&field, format!("is {v}, expected an EPSG code such as 32618"))),
            };
        }
        if let Some(v) = m.get("proj:code").filter(|v| !v.is_null()) {
            let field = format!("{at}.proj:code");
            let parsed = v.as_str().and_then(|s| {
                let (auth, code) = s.trim().split_once(':')?;
                if !auth.eq_ignore_ascii_case("EPSG") {
                    return None;
                }
                code.trim().parse::<u32>().ok()
            });
            return match parsed {
                Some(c) => Ok(Some(c)),
                None => Err(self.err(&field, format!("is {v}, expected \"EPSG:<code>\" such as \"EPSG:32618\""))),
            };
        }
        Ok(None)
    }

    fn asset(
        &self,
        key: &str,
        field: &str,
        a: &Map<String, Value>,
        props: &Map<String, Value>,
    ) -> Result<Asset, CatalogError> {
        let href = match a.get("href") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(v) => return Err(self.err(&format!("{field}.href"), format!("is {v}, expected a URL string"))),
            None => return Err(self.err(&format!("{field}.href"), "is missing".into())),
        };
        // projection fields: the asset's own, else the item's (STAC allows both places)
        let pick = |k: &str| match a.get(k).filter(|v| !v.is_null()) {
            Some(v) => Some((format!("{field}.{k}"), v)),
            None => props.get(k).filter(|v| !v.is_null()).map(|v| (format!("properties.{k}"), v)),
        };
        let transform = match pick("proj:transform") {
            None => None,
            Some((f, v)) => {
                let n = self.numbers(v, &f)?;
                match n.as_slice() {
                    [a, b, c, d, e, f6] => Some(Affine::new(*a, *b, *c, *d, *e, *f6)),
                    [a, b, c, d, e, f6, g, h, i] if *g == 0.0 && *h == 0.0 && *i == 1.0 => {
                        Some(Affine::new(*a, *b, *c, *d, *e, *f6))
                    }
                    [.., g, h, i] if n.len() == 9 => {
                        return Err(self.err(&f, format!("last row is [{g}, {h}, {i}], expected [0, 0, 1]")));
                    }
                    _ => return Err(self.err(&f, format!("has {} numbers, expected 6 or 9", n.len()))),
                }
            }
        };
        let shape = match pick("proj:shape") {
            None => None,
            Some((f, v)) => {
                let n = self.numbers(v, &f)?;
                match n.as_slice() {
                    [r, c] if *r >= 1.0 && *c >= 1.0 && r.fract() == 0.0 && c.fract() == 0.0 => {
                        Some((*r as usize, *c as usize))
                    }
                    _ => return Err(self.err(&f, format!("is {v}, expected [rows, cols] of positive integers"))),
                }
            }
        };
        // raster:bands[0] (STAC 1.0) or bands[0] (1.1), with the asset itself as the fallback
        // because 1.1 lets a single-band asset carry nodata / data_type / raster:scale directly.
        let band0 = ["raster:bands", "bands"].iter().find_map(|k| match a.get(*k) {
            Some(Value::Array(v)) => v.first().map(|b| (format!("{field}.{k}[0]"), b)),
            _ => None,
        });
        let band0 = match band0 {
            Some((f, Value::Object(m))) => Some((f, m)),
            Some((f, v)) => return Err(self.err(&f, format!("is {}, expected an object", kind(v)))),
            None => None,
        };
        let get = |keys: &[&str]| -> Option<(String, &Value)> {
            for (f, m) in band0.iter().map(|(f, m)| (f.as_str(), *m)).chain([(field, a)]) {
                for k in keys {
                    if let Some(v) = m.get(*k).filter(|v| !v.is_null()) {
                        return Some((format!("{f}.{k}"), v));
                    }
                }
            }
            None
        };
        let num = |keys: &[&str]| -> Result<Option<f64>, CatalogError> {
            match get(keys) {
                None => Ok(None),
                Some((f, v)) => match v.as_f64() {
                    Some(x) => Ok(Some(x)),
                    None => Err(self.err(&f, format!("is {v}, expected a number"))),
                },
            }
        };
        let nodata = match get(&["nodata"]) {
            None => None,
            Some((f, v)) => Some(match v {
                Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                // the raster extension spells the non-finite values as strings
                Value::String(s) if s == "nan" => f64::NAN,
                Value::String(s) if s == "inf" => f64::INFINITY,
                Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
                _ => return Err(self.err(&f, format!("is {v}, expected a number, \"nan\", \"inf\" or \"-inf\""))),
            }),
        };
        let scale = num(&["scale", "raster:scale"])?;
        let offset = num(&["offset", "raster:offset"])?;
        let data_type = match get(&["data_type"]) {
            None => None,
            Some((_, Value::String(s))) => Some(s.clone()),
            Some((f, v)) => return Err(self.err(&f, format!("is {v}, expected a string such as \"uint16\""))),
        };
        Ok(Asset { key: key.to_string(), href, transform, shape, nodata, scale, offset, data_type })
    }
}
