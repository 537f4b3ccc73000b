//! Pure functions from a [`CubeLayout`] to the Zarr metadata documents of the cube (DESIGN §8).
//!
//! No I/O here: the JSON built here is parsed and validated by `zarrs` and written by
//! [`super::Cube`]. Keeping it pure lets the unit tests pin the exact documents for v2 and v3.

use serde_json::{Map, Value, json};

use super::{CubeLayout, VALID_COUNT_VARIABLE, ZarrFormat};
use crate::grid::Crs;
use crate::reduce::{Encoding, GEOMEDIAN_EPS_DN, GEOMEDIAN_MAX_ITERS};

/// CF scale of a Sentinel-2 cube's digital numbers (DESIGN §7): reflectance = dn * 0.0001 - 0.1.
/// A cube's own scale is its sensor's ([`super::DataValues::scale_factor`]).
pub const SCALE_FACTOR: f64 = 0.0001;
/// CF offset of a Sentinel-2 cube's digital numbers (the Collection-1 BOA offset of +1000).
pub const ADD_OFFSET: f64 = -0.1;
/// zstd level of the data chunks: level 5 is within a few percent of 9 in size on reflectance
/// and several times faster to write.
pub const ZSTD_LEVEL: i64 = 5;
/// Fill of the v2 `time` coordinate. xarray turns a v2 `fill_value` into `_FillValue` and masks
/// it; 0 is 1970-01-01, a valid bin label, so use a value no date can have.
pub const TIME_FILL_V2: i64 = i64::MIN;
/// Fill of the v2 `spatial_ref` scalar; its value is 0, which must not read as missing.
pub const SPATIAL_REF_FILL_V2: i32 = i32::MIN;

/// The names of the spatial dims: `latitude`/`longitude` for a geographic CRS, `y`/`x` otherwise.
pub fn spatial_dims(crs: &Crs) -> (&'static str, &'static str) {
    if crs.is_geographic() { ("latitude", "longitude") } else { ("y", "x") }
}

/// One array of the cube: its path, dims, and the metadata document for the chosen format.
#[derive(Debug, Clone)]
pub struct ArrayDoc {
    pub name: String,
    pub dims: Vec<String>,
    /// v3: the whole `zarr.json`; v2: the `.zarray` document.
    pub metadata: Value,
    /// v2 only: the `.zattrs` document (v3 keeps attributes inside `zarr.json`).
    pub attrs: Value,
}

/// CF offset of a stored spread (`std`): stored = round(std in DN) + 1, so that 0 stays fill.
pub const SPREAD_ADD_OFFSET: f64 = -0.0001;

/// Attributes of the data variable.
fn data_attrs(layout: &CubeLayout) -> Map<String, Value> {
    let v = &layout.values;
    let mut a = Map::new();
    a.insert("grid_mapping".into(), json!("spatial_ref"));
    // Makes xarray load `spatial_ref` as a coordinate (the way rioxarray writes it).
    a.insert("coordinates".into(), json!("spatial_ref"));
    let bands = layout.bands.join(", ");
    let kind = v.reducer.split(':').next().unwrap_or("median");
    match v.encoding {
        Encoding::Reflectance => {
            a.insert("scale_factor".into(), json!(v.scale_factor));
            a.insert("add_offset".into(), json!(v.add_offset));
            let what = v.quantity.as_deref().unwrap_or("surface reflectance");
            a.insert("long_name".into(), json!(format!("{kind} {what} ({bands})")));
        }
        Encoding::Spread => {
            // stored = round(std in DN) + 1: one DN below zero
            a.insert("scale_factor".into(), json!(v.scale_factor));
            a.insert("add_offset".into(), json!(-v.scale_factor));
            let what = v.quantity.as_deref().unwrap_or("surface reflectance");
            a.insert("long_name".into(), json!(format!("standard deviation of {what} ({bands})")));
        }
        Encoding::Count => {
            a.insert("long_name".into(), json!(format!("number of valid observations ({bands})")));
        }
    }
    a.insert("units".into(), json!("1"));
    a.insert("eocube:reducer".into(), json!(v.reducer));
    if kind == "geomedian" {
        a.insert("eocube:geomedian_eps".into(), json!(GEOMEDIAN_EPS_DN * v.scale_factor));
        a.insert("eocube:geomedian_max_iters".into(), json!(GEOMEDIAN_MAX_ITERS));
    }
    if !v.quantiles.is_empty() {
        a.insert("eocube:quantile_method".into(), json!("linear"));
    }
    a
}

/// Attributes of `valid_count`.
fn count_attrs() -> Map<String, Value> {
    as_map(json!({
        "grid_mapping": "spatial_ref",
        "coordinates": "spatial_ref",
        "long_name": "number of valid observations",
        "units": "1",
    }))
}

fn time_attrs() -> Map<String, Value> {
    let v = json!({
        "units": "days since 1970-01-01",
        "calendar": "proleptic_gregorian",
        "standard_name": "time",
        "long_name": "time",
        "axis": "T",
    });
    as_map(v)
}

fn y_attrs(crs: &Crs) -> Map<String, Value> {
    as_map(if crs.is_geographic() {
        json!({"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude", "axis": "Y"})
    } else {
        json!({"units": "metre", "standard_name": "projection_y_coordinate",
               "long_name": "y coordinate of projection", "axis": "Y"})
    })
}

fn x_attrs(crs: &Crs) -> Map<String, Value> {
    as_map(if crs.is_geographic() {
        json!({"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude", "axis": "X"})
    } else {
        json!({"units": "metre", "standard_name": "projection_x_coordinate",
               "long_name": "x coordinate of projection", "axis": "X"})
    })
}

/// CF grid-mapping attributes plus the GDAL/rioxarray ones (`crs_wkt`, `spatial_ref`, `GeoTransform`).
pub fn spatial_ref_attrs(layout: &CubeLayout) -> Map<String, Value> {
    let crs = &layout.geobox.crs;
    let mut a = Map::new();
    let wkt = crs.wkt();
    a.insert("crs_wkt".into(), json!(wkt));
    a.insert("spatial_ref".into(), json!(wkt));
    // GDAL order, space separated, as rioxarray writes it (`{c} {a} {b} {f} {d} {e}`).
    let gt = layout.geobox.affine.to_gdal().iter().map(|v| format!("{v}")).collect::<Vec<_>>().join(" ");
    a.insert("GeoTransform".into(), json!(gt));
    let epsg = crs.epsg();
    if crs.is_geographic() {
        a.insert("grid_mapping_name".into(), json!("latitude_longitude"));
    } else if let Some((zone, south)) = wgs84_utm_zone(epsg) {
        // WGS 84 / UTM: the parameters are fixed by the zone, so the CF mapping is complete.
        a.insert("grid_mapping_name".into(), json!("transverse_mercator"));
        a.insert("latitude_of_projection_origin".into(), json!(0.0));
        a.insert("longitude_of_central_meridian".into(), json!(f64::from(zone) * 6.0 - 183.0));
        a.insert("scale_factor_at_central_meridian".into(), json!(0.9996));
        a.insert("false_easting".into(), json!(500000.0));
        a.insert("false_northing".into(), json!(if south { 10_000_000.0 } else { 0.0 }));
    }
    a
}

/// `(zone, south)` for EPSG:326zz / 327zz.
fn wgs84_utm_zone(epsg: u32) -> Option<(u32, bool)> {
    match epsg {
        32601..=32660 => Some((epsg - 32600, false)),
        32701..=32760 => Some((epsg - 32700, true)),
        _ => None,
    }
}

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The dims of the data variable, in order.
pub fn data_dims(layout: &CubeLayout) -> Vec<String> {
    let (y, x) = spatial_dims(&layout.geobox.crs);
    let mut dims = vec!["time".into(), y.into(), x.into(), "band".into()];
    if !layout.values.quantiles.is_empty() {
        dims.push("quantile".into());
    }
    dims
}

/// Every array of the cube: the data variable first, then `time`, y, x, `band`, `spatial_ref`,
/// then `quantile` and `valid_count` when the cube has them (so a median cube's list is as before).
pub fn array_docs(layout: &CubeLayout) -> Vec<ArrayDoc> {
    let (yname, xname) = spatial_dims(&layout.geobox.crs);
    let (nt, ny, nx, nb) = (layout.times.len(), layout.geobox.shape.ny, layout.geobox.shape.nx, layout.bands.len());
    let cs = layout.chunk_size;
    let crs = &layout.geobox.crs;
    let mut data_attrs = data_attrs(layout);
    let f = layout.zarr_format;
    if f == ZarrFormat::V3 && layout.values.encoding != Encoding::Count {
        // xarray reads a v3 `fill_value` as data, not as a mask; the CF mask needs `_FillValue`.
        // A count of 0 is data, so counts have none.
        data_attrs.insert("_FillValue".into(), json!(0));
    }
    let spec = |name: &str, dims: Vec<&str>, shape: Vec<usize>, chunks: Vec<usize>, kind: Kind, attrs| {
        let dims: Vec<String> = dims.into_iter().map(String::from).collect();
        array_doc(f, name, dims, &shape, &chunks, kind, attrs)
    };
    let nq = layout.values.quantiles.len();
    let (mut dims, mut shape, mut chunks) =
        (vec!["time", yname, xname, "band"], vec![nt, ny, nx, nb], vec![1, cs, cs, nb]);
    if nq > 0 {
        dims.push("quantile");
        shape.push(nq);
        chunks.push(nq);
    }
    let mut docs = vec![
        spec(&layout.variable, dims, shape, chunks, Kind::U16Data, data_attrs),
        spec("time", vec!["time"], vec![nt], vec![nt.max(1)], Kind::I64Time, time_attrs()),
        spec(yname, vec![yname], vec![ny], vec![ny.max(1)], Kind::F64, y_attrs(crs)),
        spec(xname, vec![xname], vec![nx], vec![nx.max(1)], Kind::F64, x_attrs(crs)),
        spec("band", vec!["band"], vec![nb], vec![nb.max(1)], Kind::Str, as_map(json!({"long_name": "band"}))),
        spec("spatial_ref", vec![], vec![], vec![], Kind::I32Scalar, spatial_ref_attrs(layout)),
    ];
    if nq > 0 {
        let attrs = as_map(json!({"long_name": "quantile", "eocube:method": "linear (numpy's default)"}));
        docs.push(spec("quantile", vec!["quantile"], vec![nq], vec![nq], Kind::F64, attrs));
    }
    if layout.values.valid_count {
        docs.push(spec(
            VALID_COUNT_VARIABLE,
            vec!["time", yname, xname],
            vec![nt, ny, nx],
            vec![1, cs, cs],
            Kind::U16Data,
            count_attrs(),
        ));
    }
    for (i, name) in layout.values.indices.iter().enumerate() {
        let (mut dims, mut shape, mut chunks) = (vec!["time", yname, xname], vec![nt, ny, nx], vec![1, cs, cs]);
        if nq > 0 {
            dims.push("quantile");
            shape.push(nq);
            chunks.push(nq);
        }
        docs.push(spec(name, dims, shape, chunks, Kind::U16Data, index_attrs(layout, i)));
    }
    docs
}

/// Attributes of index variable `i`: its formula (from the spec) and the encoding of
/// [`crate::index`] (a spread or a count is stored as the reflectance's are).
fn index_attrs(layout: &CubeLayout, i: usize) -> Map<String, Value> {
    let v = &layout.values;
    let formula = layout.attrs.pointer(&format!("/index/{i}")).and_then(Value::as_str).unwrap_or_default();
    let index: Option<crate::index::SpectralIndex> = formula.parse().ok();
    let what = index.map_or_else(|| formula.to_string(), |x| format!("{} ({})", x.long_name(), x.expression));
    let kind = v.reducer.split(':').next().unwrap_or("median");
    let mut a = as_map(json!({
        "grid_mapping": "spatial_ref",
        "coordinates": "spatial_ref",
        "units": "1",
        "eocube:reducer": v.reducer,
        "eocube:index": formula,
    }));
    match v.encoding {
        Encoding::Count => {
            a.insert("long_name".into(), json!(format!("number of valid observations of {what}")));
        }
        Encoding::Spread => {
            a.insert("scale_factor".into(), json!(crate::index::SCALE_FACTOR));
            a.insert("add_offset".into(), json!(SPREAD_ADD_OFFSET));
            a.insert("long_name".into(), json!(format!("standard deviation of {what}")));
        }
        Encoding::Reflectance => {
            a.insert("scale_factor".into(), json!(crate::index::SCALE_FACTOR));
            a.insert("add_offset".into(), json!(crate::index::ADD_OFFSET));
            a.insert("valid_range".into(), json!(crate::index::VALID_RANGE));
            a.insert("long_name".into(), json!(format!("{kind} of {what}")));
            a.insert(
                "eocube:encoding".into(),
                json!("stored = floor(index * 10000 + 0.5) + 32768, clipped to [1, 65535]; 0 = no data"),
            );
        }
    }
    if layout.zarr_format == ZarrFormat::V3 && v.encoding != Encoding::Count {
        a.insert("_FillValue".into(), json!(0));
    }
    if !v.quantiles.is_empty() {
        a.insert("eocube:quantile_method".into(), json!("linear"));
    }
    a
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    U16Data,
    I64Time,
    F64,
    Str,
    I32Scalar,
}

fn array_doc(
    f: ZarrFormat,
    name: &str,
    dims: Vec<String>,
    shape: &[usize],
    chunks: &[usize],
    kind: Kind,
    mut attrs: Map<String, Value>,
) -> ArrayDoc {
    match f {
        ZarrFormat::V3 => {
            let (data_type, fill, codecs) = match kind {
                Kind::U16Data => ("uint16", json!(0), u16_codecs_v3()),
                Kind::I64Time => ("int64", json!(0), bytes_codec()),
                Kind::F64 => ("float64", json!("NaN"), bytes_codec()),
                Kind::Str => ("string", json!(""), json!([{"name": "vlen-utf8"}])),
                Kind::I32Scalar => ("int32", json!(0), bytes_codec()),
            };
            let metadata = json!({
                "zarr_format": 3,
                "node_type": "array",
                "shape": shape,
                "data_type": data_type,
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": fill,
                "codecs": codecs,
                "attributes": attrs,
                "dimension_names": dims,
            });
            ArrayDoc { name: name.into(), dims, metadata, attrs: Value::Null }
        }
        ZarrFormat::V2 => {
            let (dtype, fill, compressor, filters) = match kind {
                Kind::U16Data => ("<u2", json!(0), u16_compressor_v2(), Value::Null),
                Kind::I64Time => ("<i8", json!(TIME_FILL_V2), Value::Null, Value::Null),
                Kind::F64 => ("<f8", json!("NaN"), Value::Null, Value::Null),
                Kind::Str => ("|O", Value::Null, Value::Null, json!([{"id": "vlen-utf8"}])),
                Kind::I32Scalar => ("<i4", json!(SPATIAL_REF_FILL_V2), Value::Null, Value::Null),
            };
            let metadata = json!({
                "zarr_format": 2,
                "shape": shape,
                "chunks": chunks,
                "dtype": dtype,
                "compressor": compressor,
                "fill_value": fill,
                "order": "C",
                "filters": filters,
                "dimension_separator": ".",
            });
            attrs.insert("_ARRAY_DIMENSIONS".into(), json!(dims));
            ArrayDoc { name: name.into(), dims, metadata, attrs: Value::Object(attrs) }
        }
    }
}

/// The v3 codec chain of the uint16 arrays (the data variable and the pyramid's bands).
pub fn u16_codecs_v3() -> Value {
    json!([{"name": "bytes", "configuration": {"endian": "little"}},
           {"name": "zstd", "configuration": {"level": ZSTD_LEVEL, "checksum": false}}])
}

/// The v2 compressor of the uint16 arrays: numcodecs' `Zstd` with its level only. numcodecs
/// before 0.13 (zarr-python 2.17's, still common) refuses any other key, `"checksum": false`
/// included (`TypeError: unexpected keyword argument 'checksum'`), and every numcodecs and zarrs
/// reads a missing `checksum` as false, so the chunks are the same.
pub fn u16_compressor_v2() -> Value {
    json!({"id": "zstd", "level": ZSTD_LEVEL})
}

fn bytes_codec() -> Value {
    json!([{"name": "bytes", "configuration": {"endian": "little"}}])
}
