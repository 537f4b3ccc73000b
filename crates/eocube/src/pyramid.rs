//! Overview pyramids of a cube (issue 11): the levels at 2x steps written beside the data
//! variable in the same store, in the layout browser viewers read. See `docs/cube.md`, "Pyramid".
//!
//! Owns: the level geometry ([`level_geoboxes`]), the valid-only 2x2 average ([`downsample`]),
//! the Zarr documents of the `pyramid` group and its level groups (multiscales, `proj:` and
//! `spatial:` conventions, CF coordinates and `spatial_ref` per level, consolidated metadata
//! per group), and the build of the levels tile by tile, each tile as soon as what lies below
//! it is final ([`Builder`]: beside a build's jobs, or at once for a finished cube, [`write`],
//! [`overviews`]). Must not touch: the data variable or its chunks (only read), the cube's own
//! metadata documents (the root's consolidated metadata picks the pyramid up by itself,
//! `store::consolidated`), or how a back end commits (it goes through [`CubeStore`]).
//!
//! ```text
//!  cube data (t, y, x, band), chunks cs ──re-tile──▶ pyramid/0/{band} (t, y, x), chunks 512
//!  pyramid/{L-1}/{band} 2x2 tiles ──valid mean──▶ pyramid/{L}/{band} one tile
//!
//!  job recorded ─▶ Feed::chunks_final ─▶ Deps: level-0 tiles over it wait for one chunk less
//!  tile built ─▶ Deps: the tile above waits for one tile less ─▶ ready ─▶ `jobs` at a time
//! ```
//!
//! Level 0 and every level above are derived only from the data on disk, so the bytes are the
//! same on every run: rerunning rewrites identical objects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use zarrs::array::Array;
use zarrs::metadata::ArrayMetadata;
use zarrs::metadata::v2::ArrayMetadataV2;
use zarrs::metadata::v3::ArrayMetadataV3;
use zarrs::storage::store::MemoryStore;

use crate::fifo::Fifo;
use crate::grid::{GeoBox, Shape};
use crate::plan::Job;
use crate::store::codec::{self, decode_u16};
use crate::store::{Cube, CubeLayout, CubeStore, DataValues, OutLocation, StoreError, ZarrFormat, meta};

/// Edge of a level chunk in pixels, and the size below which the pyramid stops: one tile is
/// what a map draws at a time, and 512 x 512 uint16 is 0.5 MB raw, far under the 8 MB that
/// tile servers manage in about 300 ms.
pub const TILE: usize = 512;
/// The group of the pyramid, at the cube's root.
pub const GROUP: &str = "pyramid";

const MULTISCALES_UUID: &str = "d35379db-88df-4056-af3a-620245f8e347";
const PROJ_UUID: &str = "f17cb550-5864-4468-aeb7-f3180cfb622f";
const SPATIAL_UUID: &str = "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4";

/// Names a band may not have: the coordinates that share a level group with the bands.
const RESERVED: [&str; 6] = ["time", "latitude", "longitude", "x", "y", "spatial_ref"];

/// Why the pyramid was not written. Each message names the cube and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PyramidError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{location}: the cube is not finished (jobs are left, or it was never published); finish the build first \
         (run the same `eocube build` again until it says complete), then run `eocube overviews` again"
    )]
    Unfinished { location: String },
    #[error(
        "{location}: the band {name:?} has the name of a coordinate of the pyramid levels ({}); overviews need \
         other band names",
        RESERVED.join(", ")
    )]
    NameClash { location: String, name: String },
    #[error(
        "{location}: the chunk {key} cannot be read back ({reason}); rebuild the cube, this is an eocube bug if eocube wrote it"
    )]
    BadChunk { location: String, key: String, reason: String },
    #[error(
        "{location}: the cube has a quantile dimension ({reducer}); overviews are made of one value per band, so build the \
         pyramid from a cube of one reducer (e.g. `--reducer median`), or leave out `--overviews`"
    )]
    Quantiles { location: String, reducer: String },
    #[error("{location}: a pyramid task stopped ({reason}); run the same command again")]
    Task { location: String, reason: String },
    #[error("{location}: the pyramid documents could not be made ({reason}); this is an eocube bug, please report it")]
    Documents { location: String, reason: String },
}

type Result<T, E = PyramidError> = std::result::Result<T, E>;

/// Objects to write, `(key from the cube's root, bytes)`.
type Objects = Vec<(String, Bytes)>;
/// A metadata document, `(file name, JSON)`.
type Doc = (String, Value);
/// What is told of the build's progress.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// Geometry and the kernel (pure)
// ---------------------------------------------------------------------------------------------

/// The grids of every level: level L has `ceil(n / 2^L)` pixels per axis and the level-0
/// affine scaled by 2^L (same origin); the last level is the first whose long side is at most
/// [`TILE`].
pub fn level_geoboxes(geobox: &GeoBox) -> Vec<GeoBox> {
    let mut out = vec![geobox.clone()];
    let mut f = 1usize;
    while out.last().is_some_and(|g| g.shape.ny.max(g.shape.nx) > TILE) {
        f *= 2;
        let shape = Shape { ny: geobox.shape.ny.div_ceil(f), nx: geobox.shape.nx.div_ceil(f) };
        out.push(GeoBox::new(geobox.crs.clone(), geobox.affine.scaled(f as f64, f as f64), shape));
    }
    out
}

/// Tiles of a grid per axis `(rows, cols)`.
pub fn tile_grid(shape: Shape) -> (usize, usize) {
    (shape.ny.div_ceil(TILE), shape.nx.div_ceil(TILE))
}

/// The valid-only 2x2 mean: `src` is `rows x cols` row-major; the result is
/// `ceil(rows/2) x ceil(cols/2)`. Each output pixel is the mean of the non-zero pixels of its
/// block, rounded half up (`(sum + n/2) / n`); a block with none is 0 (fill). Pixels past an
/// odd edge are absent, like fill, so they never pull a mean down.
pub fn downsample(src: &[u16], rows: usize, cols: usize) -> Vec<u16> {
    let (orows, ocols) = (rows.div_ceil(2), cols.div_ceil(2));
    let mut out = vec![0u16; orows * ocols];
    if src.len() < rows * cols {
        return out;
    }
    for (oy, line) in out.chunks_exact_mut(ocols.max(1)).enumerate().take(orows) {
        let y0 = oy * 2;
        let y1 = (y0 + 2).min(rows);
        for (ox, o) in line.iter_mut().enumerate() {
            let x0 = ox * 2;
            let x1 = (x0 + 2).min(cols);
            let (mut sum, mut n) = (0u32, 0u32);
            for y in y0..y1 {
                for &v in &src[y * cols + x0..y * cols + x1] {
                    if v != 0 {
                        sum += u32::from(v);
                        n += 1;
                    }
                }
            }
            if let Some(mean) = (sum + n / 2).checked_div(n) {
                // The mean of u16 values fits u16.
                *o = mean as u16;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Documents (pure)
// ---------------------------------------------------------------------------------------------

fn conventions() -> Value {
    json!([
        {
            "uuid": MULTISCALES_UUID,
            "name": "multiscales",
            "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v1/schema.json",
            "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v1/README.md",
            "description": "Multiscale layout of zarr datasets",
        },
        {
            "uuid": PROJ_UUID,
            "name": "proj:",
            "schema_url": "https://raw.githubusercontent.com/zarr-conventions/geo-proj/refs/tags/v1/schema.json",
            "spec_url": "https://github.com/zarr-conventions/geo-proj/blob/v1/README.md",
            "description": "Coordinate reference system information for geospatial data",
        },
        {
            "uuid": SPATIAL_UUID,
            "name": "spatial:",
            "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
            "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
            "description": "Spatial coordinate information",
        },
    ])
}

/// `spatial:transform`: the affine in GDAL's `affine` order `[a, b, c, d, e, f]`.
fn spatial_transform(g: &GeoBox) -> Value {
    json!(g.affine.to_array())
}

fn proj_code(g: &GeoBox) -> String {
    format!("EPSG:{}", g.crs.epsg())
}

/// Attributes of the `pyramid` group.
pub fn group_attrs(layout: &CubeLayout) -> Value {
    let levels = level_geoboxes(&layout.geobox);
    let entries: Vec<Value> = levels
        .iter()
        .enumerate()
        .map(|(l, g)| {
            let mut e = json!({
                "asset": l.to_string(),
                "spatial:shape": [g.shape.ny, g.shape.nx],
                "spatial:transform": spatial_transform(g),
            });
            if l > 0 {
                e["derived_from"] = json!((l - 1).to_string());
                e["transform"] = json!({"scale": [2.0, 2.0], "translation": [0.0, 0.0]});
                e["resampling_method"] = json!("average");
            }
            e
        })
        .collect();
    let (y, x) = meta::spatial_dims(&layout.geobox.crs);
    let b = layout.geobox.bbox();
    json!({
        "zarr_conventions": conventions(),
        "multiscales": {"layout": entries, "resampling_method": "average"},
        "proj:code": proj_code(&layout.geobox),
        "spatial:dimensions": [y, x],
        "spatial:bbox": [b.west, b.south, b.east, b.north],
        "description": format!("overview pyramid of {}: one uint16 array per band, (time, {y}, {x})", layout.variable),
    })
}

/// Attributes of level group `pyramid/{level}`: `proj:` passes to direct children only, so it
/// is repeated here, and readers that look at a level alone find its grid on it.
pub fn level_attrs(layout: &CubeLayout, level: usize, g: &GeoBox) -> Value {
    let (y, x) = meta::spatial_dims(&layout.geobox.crs);
    let b = g.bbox();
    json!({
        "zarr_conventions": conventions().as_array().map(|c| c[1..].to_vec()).unwrap_or_default(),
        "proj:code": proj_code(g),
        "spatial:dimensions": [y, x],
        "spatial:shape": [g.shape.ny, g.shape.nx],
        "spatial:transform": spatial_transform(g),
        "spatial:bbox": [b.west, b.south, b.east, b.north],
        "pyramid_level": level,
    })
}

/// The cube's layout with the grid of one level: the coordinate documents of the cube, made
/// for that grid.
fn level_layout(layout: &CubeLayout, g: &GeoBox) -> CubeLayout {
    // The levels hold the bands of the data variable only: no `quantile` dim, no `valid_count`,
    // no index variables.
    let values = DataValues { quantiles: Vec::new(), valid_count: false, indices: Vec::new(), ..layout.values.clone() };
    CubeLayout { geobox: g.clone(), chunk_size: TILE, values, ..layout.clone() }
}

/// Attributes of a band array: the data variable's, with its own `long_name`.
fn band_attrs(layout: &CubeLayout, band: &str) -> Map<String, Value> {
    let data = meta::array_docs(layout).into_iter().next();
    let mut a = match data {
        Some(d) if layout.zarr_format == ZarrFormat::V3 => d.metadata.get("attributes").cloned(),
        Some(d) => Some(d.attrs),
        None => None,
    }
    .and_then(|v| v.as_object().cloned())
    .unwrap_or_default();
    a.remove("_ARRAY_DIMENSIONS");
    a.insert("long_name".into(), json!(format!("median surface reflectance, {band}")));
    a
}

/// One band array of a level: `(metadata, v2 .zattrs)`; v3 keeps the attributes inside.
fn band_doc(layout: &CubeLayout, g: &GeoBox, band: &str) -> (Value, Value) {
    let (y, x) = meta::spatial_dims(&layout.geobox.crs);
    let shape = [layout.times.len(), g.shape.ny, g.shape.nx];
    let chunks = [1, TILE, TILE];
    let mut attrs = band_attrs(layout, band);
    match layout.zarr_format {
        ZarrFormat::V3 => (
            json!({
                "zarr_format": 3,
                "node_type": "array",
                "shape": shape,
                "data_type": "uint16",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": 0,
                "codecs": meta::u16_codecs_v3(),
                "attributes": attrs,
                "dimension_names": ["time", y, x],
            }),
            Value::Null,
        ),
        ZarrFormat::V2 => {
            attrs.insert("_ARRAY_DIMENSIONS".into(), json!(["time", y, x]));
            (
                json!({
                    "zarr_format": 2,
                    "shape": shape,
                    "chunks": chunks,
                    "dtype": "<u2",
                    "compressor": meta::u16_compressor_v2(),
                    "fill_value": 0,
                    "order": "C",
                    "filters": null,
                    "dimension_separator": ".",
                }),
                Value::Object(attrs),
            )
        }
    }
}

/// The metadata of one node below a group, as a consolidated listing holds it.
struct Member {
    /// Relative to the group.
    path: String,
    /// v3: `zarr.json`; v2: `.zarray` or `.zgroup`.
    meta: Value,
    /// v2 only: `.zattrs`.
    attrs: Value,
}

/// Everything of level `level` but its data chunks: `(key, bytes)` from the cube's root (the
/// group document with its consolidated metadata last), and the level's members for the
/// `pyramid` group's listing.
fn level_objects(layout: &CubeLayout, level: usize, g: &GeoBox, location: &str) -> Result<(Objects, Vec<Member>)> {
    let bad = |reason: String| PyramidError::Documents { location: location.to_string(), reason };
    let prefix = format!("{GROUP}/{level}");
    let mut objects = Vec::new();
    let mut members = Vec::new();
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).map(Bytes::from).map_err(|e| bad(e.to_string()));
    let v3 = layout.zarr_format == ZarrFormat::V3;
    for band in &layout.bands {
        let (m, a) = band_doc(layout, g, band);
        if v3 {
            objects.push((format!("{prefix}/{band}/zarr.json"), pretty(&m)?));
        } else {
            objects.push((format!("{prefix}/{band}/.zarray"), pretty(&m)?));
            objects.push((format!("{prefix}/{band}/.zattrs"), pretty(&a)?));
        }
        members.push(Member { path: band.clone(), meta: m, attrs: a });
    }
    // The cube's own coordinate documents and values, made for this level's grid.
    let (y, x) = meta::spatial_dims(&layout.geobox.crs);
    let keep = ["time", y, x, "spatial_ref"];
    let coords = crate::store::template_objects(std::path::Path::new(location), &level_layout(layout, g))
        .map_err(|e| bad(e.to_string()))?;
    for (key, bytes) in coords {
        let Some((node, rest)) = key.split_once('/') else { continue };
        if !keep.contains(&node) {
            continue;
        }
        match rest {
            "zarr.json" | ".zarray" => {
                let m: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
                members.push(Member { path: node.to_string(), meta: m, attrs: Value::Null });
            }
            ".zattrs" => {
                let a: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
                if let Some(m) = members.iter_mut().find(|m| m.path == node) {
                    m.attrs = a;
                }
            }
            _ => {}
        }
        objects.push((format!("{prefix}/{key}"), bytes));
    }
    let attrs = level_attrs(layout, level, g);
    let (docs, listing) = group_docs(layout.zarr_format, attrs, &members);
    for (k, v) in docs {
        objects.push((if k.is_empty() { prefix.clone() } else { format!("{prefix}/{k}") }, pretty(&v)?));
    }
    if let Some((k, v)) = listing {
        objects.push((format!("{prefix}/{k}"), pretty(&v)?));
    }
    // The level group as a member of `pyramid`: zarr-python lists child groups with an empty
    // listing of their own in a parent's consolidated metadata.
    let group_meta = match layout.zarr_format {
        ZarrFormat::V3 => json!({"zarr_format": 3, "node_type": "group", "attributes": level_attrs(layout, level, g),
                                 "consolidated_metadata": empty_listing()}),
        ZarrFormat::V2 => json!({"zarr_format": 2}),
    };
    let mut out_members = vec![Member {
        path: level.to_string(),
        meta: group_meta,
        attrs: if v3 { Value::Null } else { level_attrs(layout, level, g) },
    }];
    out_members.extend(members.into_iter().map(|m| Member { path: format!("{level}/{}", m.path), ..m }));
    Ok((objects, out_members))
}

fn empty_listing() -> Value {
    json!({"kind": "inline", "must_understand": false, "metadata": {}})
}

/// A group's documents with its members consolidated: v3 one `zarr.json` (the listing inline,
/// as zarr-python 3 writes it), v2 `.zgroup`, `.zattrs` and `.zmetadata`. Returns
/// `[(file, doc)]` and the v2 listing separately (it goes last).
fn group_docs(format: ZarrFormat, attrs: Value, members: &[Member]) -> (Vec<Doc>, Option<Doc>) {
    match format {
        ZarrFormat::V3 => {
            let mut listing = Map::new();
            for m in members {
                listing.insert(m.path.clone(), m.meta.clone());
            }
            let doc = json!({
                "zarr_format": 3,
                "node_type": "group",
                "attributes": attrs,
                "consolidated_metadata": {"kind": "inline", "must_understand": false, "metadata": listing},
            });
            (vec![("zarr.json".into(), doc)], None)
        }
        ZarrFormat::V2 => {
            let mut listing = Map::new();
            listing.insert(".zgroup".into(), json!({"zarr_format": 2}));
            listing.insert(".zattrs".into(), attrs.clone());
            for m in members {
                let is_group = m.meta.get("shape").is_none();
                listing.insert(format!("{}/{}", m.path, if is_group { ".zgroup" } else { ".zarray" }), m.meta.clone());
                listing.insert(format!("{}/.zattrs", m.path), m.attrs.clone());
            }
            (
                vec![(".zgroup".into(), json!({"zarr_format": 2})), (".zattrs".into(), attrs)],
                Some((".zmetadata".into(), json!({"metadata": listing, "zarr_consolidated_format": 1}))),
            )
        }
    }
}

/// The documents of the `pyramid` group, listing every level's nodes: written last, so a
/// pyramid is listed (by the root's consolidated metadata too) only once its levels are there.
fn pyramid_group_objects(layout: &CubeLayout, members: &[Member], location: &str) -> Result<Vec<(String, Bytes)>> {
    let bad = |reason: String| PyramidError::Documents { location: location.to_string(), reason };
    let (docs, listing) = group_docs(layout.zarr_format, group_attrs(layout), members);
    let mut out = Vec::new();
    for (k, v) in docs.into_iter().chain(listing) {
        out.push((
            format!("{GROUP}/{k}"),
            serde_json::to_vec_pretty(&v).map(Bytes::from).map_err(|e| bad(e.to_string()))?,
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Options, progress, summary and the level encoders
// ---------------------------------------------------------------------------------------------

/// How the pyramid is built.
#[derive(Clone)]
pub struct PyramidOptions {
    /// Tiles in work at once (reads, averaging and writes); each holds a few MB.
    pub jobs: usize,
    /// Told after every tile.
    pub progress: Option<ProgressFn>,
}

impl Default for PyramidOptions {
    fn default() -> Self {
        PyramidOptions { jobs: std::thread::available_parallelism().map_or(2, |n| n.get()), progress: None }
    }
}

impl std::fmt::Debug for PyramidOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyramidOptions").field("jobs", &self.jobs).finish_non_exhaustive()
    }
}

/// How far the build is: told once the cube's chunks are all final, then after every tile
/// (tiles built while a build's jobs ran are counted, not told).
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub levels: usize,
    /// Tiles (one per level, time step and tile position, all bands) built, and in all.
    pub done: usize,
    pub total: usize,
}

/// What a pyramid build did.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct PyramidSummary {
    pub levels: usize,
    /// `(ny, nx)` per level.
    pub shapes: Vec<(usize, usize)>,
    /// Tiles built (one per level, time step and tile position), and of them those built while
    /// the build's jobs were still running.
    pub tiles: usize,
    pub tiles_while_jobs_ran: usize,
    /// Chunks stored (one per band, time step and tile with data).
    pub chunks_written: usize,
    /// Chunks left out because they are all fill.
    pub chunks_empty: usize,
    /// Bytes of the stored chunks.
    pub bytes: u64,
    pub seconds: f64,
}

/// The encoder of every band array of every level: zarrs arrays (bound to an empty in-memory
/// store) name the chunks, and [`codec::encode_u16`] encodes them, as [`Cube`] does its chunks,
/// so level chunks have the data variable's exact codecs.
struct Encoders {
    /// `[level][band]`
    arrays: Vec<Vec<Array<MemoryStore>>>,
}

impl Encoders {
    fn new(layout: &CubeLayout, levels: &[GeoBox], location: &str) -> Result<Encoders> {
        let bad = |reason: String| PyramidError::Documents { location: location.to_string(), reason };
        let memory = Arc::new(MemoryStore::new());
        let mut arrays = Vec::new();
        for (l, g) in levels.iter().enumerate() {
            let mut per_band = Vec::new();
            for band in &layout.bands {
                let (m, a) = band_doc(layout, g, band);
                let metadata = match layout.zarr_format {
                    ZarrFormat::V3 => {
                        ArrayMetadata::V3(serde_json::from_value::<ArrayMetadataV3>(m).map_err(|e| bad(e.to_string()))?)
                    }
                    ZarrFormat::V2 => {
                        let mut v2: ArrayMetadataV2 = serde_json::from_value(m).map_err(|e| bad(e.to_string()))?;
                        if let Value::Object(a) = a {
                            v2.attributes = a;
                        }
                        ArrayMetadata::V2(v2)
                    }
                };
                let path = format!("/{GROUP}/{l}/{band}");
                per_band
                    .push(Array::new_with_metadata(memory.clone(), &path, metadata).map_err(|e| bad(e.to_string()))?);
            }
            arrays.push(per_band);
        }
        Ok(Encoders { arrays })
    }

    /// The key and bytes of chunk `(t, ty, tx)` of a band at a level; `None`: all fill.
    fn encode(
        &self,
        level: usize,
        band: usize,
        idx: [u64; 3],
        data: Vec<u16>,
    ) -> Result<(String, Option<Bytes>), String> {
        let key = self.key(level, band, idx).ok_or("no such level or band")?;
        // All fill (0): not stored, as for the cube's chunks.
        if data.iter().all(|&v| v == 0) {
            return Ok((key, None));
        }
        let bytes = codec::encode_u16(&data).map_err(|e| e.to_string())?;
        Ok((key, Some(Bytes::from(bytes))))
    }

    fn key(&self, level: usize, band: usize, idx: [u64; 3]) -> Option<String> {
        self.arrays.get(level).and_then(|b| b.get(band)).map(|a| a.chunk_key(&idx).as_str().to_string())
    }
}

/// One unit of work: a tile position of one level at one time step, every band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tile {
    level: usize,
    t: usize,
    ty: usize,
    tx: usize,
}

/// Counts shared by the tasks.
#[derive(Default)]
struct Tally {
    written: AtomicUsize,
    empty: AtomicUsize,
    bytes: AtomicU64,
}

// ---------------------------------------------------------------------------------------------
// Which tiles can be built (pure)
// ---------------------------------------------------------------------------------------------

/// What every tile still waits for: a level-0 tile for the cube chunks below it that are not
/// final yet, a tile above for those of its 2x2 tiles below that are not built yet. A tile is
/// handed out exactly once, when nothing is left to wait for.
struct Deps {
    times: usize,
    /// Edge of a cube chunk, and the level-0 grid.
    chunk: usize,
    shape: Shape,
    /// `(rows, cols)` of tiles per level.
    grids: Vec<(usize, usize)>,
    /// `[level][(t * rows + ty) * cols + tx]`
    waiting: Vec<Vec<u32>>,
    /// Cube chunks not final yet.
    pending: std::collections::HashSet<Job>,
}

impl Deps {
    /// The tiles of `levels`, with `pending` the jobs whose chunks are not final yet; returns
    /// the tiles that can be built at once, in row-major order per time step.
    fn new(layout: &CubeLayout, levels: &[GeoBox], pending: &[Job]) -> (Deps, Vec<Tile>) {
        let times = layout.times.len();
        let grids: Vec<(usize, usize)> = levels.iter().map(|g| tile_grid(g.shape)).collect();
        let mut deps = Deps {
            times,
            chunk: layout.chunk_size.max(1),
            shape: layout.geobox.shape,
            waiting: grids.iter().map(|&(r, c)| vec![0; times * r * c]).collect(),
            grids,
            pending: Default::default(),
        };
        for &job in pending {
            let tiles = deps.tiles_over(job);
            if !tiles.is_empty() && deps.pending.insert(job) {
                for i in tiles {
                    deps.waiting[0][i] += 1;
                }
            }
        }
        for level in 1..deps.grids.len() {
            let (rows, cols) = deps.grids[level];
            let (below_rows, below_cols) = deps.grids[level - 1];
            for t in 0..times {
                for ty in 0..rows {
                    for tx in 0..cols {
                        let n = (2 * ty..2 * ty + 2).filter(|&r| r < below_rows).count()
                            * (2 * tx..2 * tx + 2).filter(|&c| c < below_cols).count();
                        deps.waiting[level][(t * rows + ty) * cols + tx] = n as u32;
                    }
                }
            }
        }
        let ready = deps.tiles(0).filter(|&(_, i)| deps.waiting[0][i] == 0).map(|(tile, _)| tile).collect();
        (deps, ready)
    }

    /// Every tile of `level` with its index, row-major per time step.
    fn tiles(&self, level: usize) -> impl Iterator<Item = (Tile, usize)> + use<> {
        let grid = self.grids.get(level).copied().unwrap_or((0, 0));
        (0..self.times * grid.0 * grid.1).map(move |i| (tile_at(level, grid, i), i))
    }

    /// Indices of the level-0 tiles that cube chunk `job` overlaps (none for a job outside the
    /// cube).
    fn tiles_over(&self, job: Job) -> Vec<usize> {
        let Some(&(rows, cols)) = self.grids.first() else { return vec![] };
        let cs = self.chunk;
        let (r0, c0) = (job.iy * cs, job.ix * cs);
        if job.t >= self.times || r0 >= self.shape.ny || c0 >= self.shape.nx {
            return vec![];
        }
        let (r1, c1) = ((r0 + cs).min(self.shape.ny), (c0 + cs).min(self.shape.nx));
        let mut out = Vec::new();
        for ty in r0 / TILE..=(r1 - 1) / TILE {
            for tx in c0 / TILE..=(c1 - 1) / TILE {
                out.push((job.t * rows + ty) * cols + tx);
            }
        }
        out
    }

    /// Chunk `job` is final: the level-0 tiles that wait for nothing more go to `ready`.
    fn chunk_final(&mut self, job: Job, ready: &mut Vec<Tile>) {
        if !self.pending.remove(&job) {
            return;
        }
        for i in self.tiles_over(job) {
            let w = &mut self.waiting[0][i];
            *w = w.saturating_sub(1);
            if *w == 0 {
                ready.push(tile_at(0, self.grids[0], i));
            }
        }
    }

    /// Every chunk is final (the build is complete): whatever still waits for one is ready.
    fn all_final(&mut self, ready: &mut Vec<Tile>) {
        let pending: Vec<Job> = self.pending.iter().copied().collect();
        for job in pending {
            self.chunk_final(job, ready);
        }
    }

    /// `tile` is built: the tile above it, if it waits for nothing more now.
    fn built(&mut self, tile: Tile) -> Option<Tile> {
        let level = tile.level + 1;
        let &(rows, cols) = self.grids.get(level)?;
        let up = Tile { level, t: tile.t, ty: tile.ty / 2, tx: tile.tx / 2 };
        let w = self.waiting[level].get_mut((up.t * rows + up.ty) * cols + up.tx)?;
        *w = w.checked_sub(1)?;
        (*w == 0).then_some(up)
    }

    /// Tiles of every level.
    fn total(&self) -> usize {
        self.waiting.iter().map(Vec::len).sum()
    }
}

/// Tile `i` of `level` in the order of `Deps::waiting` (time, row, column) on a grid of
/// `(rows, cols)` tiles per time.
fn tile_at(level: usize, (rows, cols): (usize, usize), i: usize) -> Tile {
    let rest = i % (rows * cols);
    Tile { level, t: i / (rows * cols), ty: rest / cols, tx: rest % cols }
}

// ---------------------------------------------------------------------------------------------
// The build
// ---------------------------------------------------------------------------------------------

/// What the builder is told.
enum Msg {
    /// These jobs' chunks are final.
    Final(Vec<Job>),
    /// Every chunk is final: build the rest and stop.
    Finish,
}

/// Tells a [`Builder`] which cube chunks are final. Cheap to clone.
#[derive(Clone)]
pub struct Feed(tokio::sync::mpsc::UnboundedSender<Msg>);

impl Feed {
    /// The chunks of `jobs` are in the store and will not change in this build.
    pub fn chunks_final(&self, jobs: &[Job]) {
        // A builder that has stopped (on an error, kept for `finish`) needs no more news.
        let _ = self.0.send(Msg::Final(jobs.to_vec()));
    }
}

/// What the driver hands back.
struct Driven {
    tiles: usize,
    while_jobs_ran: usize,
}

/// The pyramid of a cube, built tile by tile as the cube's chunks become final: a level-0 tile
/// once every chunk below it is, a tile above once its 2x2 tiles below are built, `jobs` tiles
/// at a time, beside the build's own jobs. [`Builder::finish`] builds what is left and lists
/// the pyramid; dropping the builder stops it (the tiles written stay unlisted, and are
/// rewritten with the same bytes by the next build or `eocube overviews`).
pub struct Builder {
    feed: Feed,
    driver: Option<tokio::task::JoinHandle<Result<Driven>>>,
    store: Arc<dyn CubeStore>,
    layout: CubeLayout,
    location: String,
    members: Vec<Member>,
    levels: Vec<GeoBox>,
    tally: Arc<Tally>,
    t0: Instant,
}

impl Builder {
    /// Starts the pyramid of `cube`: writes the level documents (unlisted until
    /// [`Builder::finish`]) and builds at once every tile that no job of `pending` (the jobs
    /// whose chunks are not final yet) lies below.
    pub async fn start(cube: &Cube, opts: &PyramidOptions, pending: &[Job]) -> Result<Builder> {
        let t0 = Instant::now();
        let layout = cube.layout().clone();
        let location = cube.location().to_string();
        if let Some(name) = layout.bands.iter().find(|b| RESERVED.contains(&b.as_str())) {
            return Err(PyramidError::NameClash { location, name: name.clone() });
        }
        if !layout.values.quantiles.is_empty() {
            return Err(PyramidError::Quantiles { location, reducer: layout.values.reducer.clone() });
        }
        let store = cube.store().clone();
        let levels = level_geoboxes(&layout.geobox);
        let mut members = Vec::new();
        for (l, g) in levels.iter().enumerate() {
            let (objects, m) = level_objects(&layout, l, g, &location)?;
            store.write_derived(objects.into_iter().map(|(k, v)| (k, Some(v))).collect()).await?;
            members.extend(m);
        }
        let tally = Arc::new(Tally::default());
        let ctx = Arc::new(Ctx {
            cube_store: store.clone(),
            layout: layout.clone(),
            cube_keys: CubeKeys::of(cube),
            enc: Arc::new(Encoders::new(&layout, &levels, &location)?),
            location: location.clone(),
            recent: Fifo::new(RECENT_BYTES),
            tally: tally.clone(),
        });
        let (deps, ready) = Deps::new(&layout, &levels, pending);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = Driver { ctx, deps, ready: ready.into(), jobs: opts.jobs.max(1), progress: opts.progress.clone() };
        Ok(Builder {
            feed: Feed(tx),
            driver: Some(tokio::spawn(driver.run(rx))),
            store,
            layout,
            location,
            members,
            levels,
            tally,
            t0,
        })
    }

    /// Where to say that chunks are final.
    pub fn feed(&self) -> Feed {
        self.feed.clone()
    }

    /// Every chunk of the cube is final: builds the tiles left and writes the `pyramid` group's
    /// documents (the caller makes them visible: the build's publish, or
    /// [`CubeStore::publish_derived`]).
    pub async fn finish(mut self) -> Result<PyramidSummary> {
        let _ = self.feed.0.send(Msg::Finish);
        let Some(driver) = self.driver.take() else {
            return Err(PyramidError::Task { location: self.location.clone(), reason: "finished twice".into() });
        };
        let driven = driver
            .await
            .map_err(|e| PyramidError::Task { location: self.location.clone(), reason: e.to_string() })??;
        let group = pyramid_group_objects(&self.layout, &self.members, &self.location)?;
        self.store.write_derived(group.into_iter().map(|(k, v)| (k, Some(v))).collect()).await?;
        Ok(PyramidSummary {
            levels: self.levels.len(),
            shapes: self.levels.iter().map(|g| (g.shape.ny, g.shape.nx)).collect(),
            tiles: driven.tiles,
            tiles_while_jobs_ran: driven.while_jobs_ran,
            chunks_written: self.tally.written.load(Ordering::Relaxed),
            chunks_empty: self.tally.empty.load(Ordering::Relaxed),
            bytes: self.tally.bytes.load(Ordering::Relaxed),
            seconds: self.t0.elapsed().as_secs_f64(),
        })
    }
}

impl Drop for Builder {
    fn drop(&mut self) {
        if let Some(d) = self.driver.take() {
            d.abort();
        }
    }
}

/// The task that hands ready tiles to workers and learns what became ready.
struct Driver {
    ctx: Arc<Ctx>,
    deps: Deps,
    ready: std::collections::VecDeque<Tile>,
    jobs: usize,
    progress: Option<ProgressFn>,
}

impl Driver {
    async fn run(mut self, mut rx: tokio::sync::mpsc::UnboundedReceiver<Msg>) -> Result<Driven> {
        let total = self.deps.total();
        let levels = self.deps.grids.len();
        let mut running = tokio::task::JoinSet::new();
        let (mut built, mut while_jobs_ran) = (0usize, 0usize);
        let mut finishing = false;
        let tell = |done: usize, progress: &Option<ProgressFn>| {
            if let Some(p) = progress {
                p(&Progress { levels, done, total });
            }
        };
        loop {
            while running.len() < self.jobs
                && let Some(tile) = self.ready.pop_front()
            {
                let ctx = self.ctx.clone();
                running.spawn(async move { ctx.run(tile).await.map(|()| tile) });
            }
            if finishing && running.is_empty() {
                break;
            }
            tokio::select! {
                msg = rx.recv(), if !finishing => {
                    let mut fresh = Vec::new();
                    match msg {
                        Some(Msg::Final(jobs)) => jobs.into_iter().for_each(|j| self.deps.chunk_final(j, &mut fresh)),
                        Some(Msg::Finish) | None => {
                            self.deps.all_final(&mut fresh);
                            finishing = true;
                            while_jobs_ran = built;
                            tell(built, &self.progress);
                        }
                    }
                    self.ready.extend(fresh);
                }
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    let tile = joined.map_err(|e| PyramidError::Task {
                        location: self.ctx.location.clone(),
                        reason: e.to_string(),
                    })??;
                    built += 1;
                    if let Some(up) = self.deps.built(tile) {
                        self.ready.push_back(up);
                    }
                    if finishing {
                        tell(built, &self.progress);
                    }
                }
            }
        }
        Ok(Driven { tiles: built, while_jobs_ran })
    }
}

/// Writes every level of the finished `cube`'s pyramid into its store
/// ([`CubeStore::write_derived`]); the caller makes them visible (the build's publish, or
/// [`CubeStore::publish_derived`]).
pub async fn write(cube: &Cube, opts: &PyramidOptions) -> Result<PyramidSummary> {
    Builder::start(cube, opts, &[]).await?.finish().await
}

/// The data variable's chunk keys, taken from the cube (its encoder knows them).
struct CubeKeys {
    keys: Vec<Vec<Vec<String>>>,
}

impl CubeKeys {
    fn of(cube: &Cube) -> CubeKeys {
        let l = cube.layout();
        let cs = l.chunk_size;
        let (ncy, ncx) = (l.geobox.shape.ny.div_ceil(cs), l.geobox.shape.nx.div_ceil(cs));
        let keys = (0..l.times.len())
            .map(|t| (0..ncy).map(|iy| (0..ncx).map(|ix| cube.chunk_key(t, iy, ix)).collect()).collect())
            .collect();
        CubeKeys { keys }
    }

    fn get(&self, t: usize, iy: usize, ix: usize) -> Option<&str> {
        self.keys.get(t)?.get(iy)?.get(ix).map(String::as_str)
    }
}

/// What every tile task needs.
struct Ctx {
    cube_store: Arc<dyn CubeStore>,
    layout: CubeLayout,
    cube_keys: CubeKeys,
    enc: Arc<Encoders>,
    location: String,
    /// Level 0: cube chunks decoded lately, at most [`RECENT_BYTES`], the oldest dropped first
    /// (a cube chunk of 1200 px overlaps about 11 tiles, taken in row-major order, so the
    /// neighbours of a tile in work share its chunks).
    recent: Fifo<String, Arc<Option<Vec<u16>>>>,
    tally: Arc<Tally>,
}

/// Bytes of decoded cube chunks kept for the next tiles of level 0.
const RECENT_BYTES: usize = 256 << 20;

/// A decoded cube chunk's size in bytes (`None`: fill, nothing stored).
fn chunk_bytes(v: &Option<Vec<u16>>) -> usize {
    v.as_ref().map_or(0, |c| c.len() * 2)
}

impl Ctx {
    async fn read(&self, key: &str, n: usize) -> Result<Option<Vec<u16>>> {
        let Some(bytes) = self.cube_store.read(key).await? else { return Ok(None) };
        let key = key.to_string();
        let location = self.location.clone();
        // Decoding is CPU work: off the async threads.
        let v = tokio::task::spawn_blocking(move || decode_u16(&bytes, n))
            .await
            .map_err(|e| PyramidError::Task { location: location.clone(), reason: e.to_string() })?
            .map_err(|reason| PyramidError::BadChunk { location, key, reason })?;
        Ok(Some(v))
    }

    /// Reads the tile's inputs, averages or re-tiles them per band, writes the band chunks.
    async fn run(self: Arc<Self>, tile: Tile) -> Result<()> {
        let nb = self.layout.bands.len();
        let bands: Vec<Option<Vec<u16>>> =
            if tile.level == 0 { self.level0(tile).await? } else { self.above(tile).await? };
        let me = self.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            let idx = [tile.t as u64, tile.ty as u64, tile.tx as u64];
            let mut out = Vec::with_capacity(nb);
            for (b, data) in bands.into_iter().enumerate() {
                match data {
                    Some(d) => out.push(me.enc.encode(tile.level, b, idx, d)?),
                    None => out.push((me.enc.key(tile.level, b, idx).ok_or("no such band")?, None)),
                }
            }
            Ok::<_, String>(out)
        })
        .await
        .map_err(|e| PyramidError::Task { location: self.location.clone(), reason: e.to_string() })?
        .map_err(|reason| PyramidError::Documents { location: self.location.clone(), reason })?;
        let tally = &self.tally;
        for (_, b) in &encoded {
            match b {
                Some(b) => {
                    tally.written.fetch_add(1, Ordering::Relaxed);
                    tally.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
                None => {
                    tally.empty.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.cube_store.write_derived(encoded).await?;
        Ok(())
    }

    /// Level 0: the cube's chunks that overlap the tile, cut into one TILE x TILE buffer per
    /// band (padded with fill past the grid's edge); `None` for a band with no data.
    async fn level0(&self, tile: Tile) -> Result<Vec<Option<Vec<u16>>>> {
        let l = &self.layout;
        let (cs, nb) = (l.chunk_size, l.bands.len());
        let Shape { ny, nx } = l.geobox.shape;
        let (r0, c0) = (tile.ty * TILE, tile.tx * TILE);
        let (r1, c1) = ((r0 + TILE).min(ny), (c0 + TILE).min(nx));
        let mut out: Vec<Vec<u16>> = vec![vec![0u16; TILE * TILE]; nb];
        let mut any = vec![false; nb];
        for iy in r0 / cs..=(r1 - 1) / cs {
            for ix in c0 / cs..=(c1 - 1) / cs {
                let Some(key) = self.cube_keys.get(tile.t, iy, ix) else { continue };
                let cached = self.recent.get(key);
                let chunk = match cached {
                    Some(c) => c,
                    None => {
                        let c = Arc::new(self.read(key, cs * cs * nb).await?);
                        self.recent.put(key.to_string(), c.clone(), chunk_bytes(&c));
                        c
                    }
                };
                let Some(chunk) = chunk.as_ref() else { continue };
                let (ry0, ry1) = (r0.max(iy * cs), r1.min((iy + 1) * cs));
                let (cx0, cx1) = (c0.max(ix * cs), c1.min((ix + 1) * cs));
                for r in ry0..ry1 {
                    let src_row = (r - iy * cs) * cs;
                    let dst_row = (r - r0) * TILE;
                    for c in cx0..cx1 {
                        let s = (src_row + c - ix * cs) * nb;
                        let d = dst_row + c - c0;
                        for (b, o) in out.iter_mut().enumerate() {
                            let v = chunk[s + b];
                            if v != 0 {
                                o[d] = v;
                                any[b] = true;
                            }
                        }
                    }
                }
            }
        }
        Ok(out.into_iter().zip(any).map(|(v, a)| a.then_some(v)).collect())
    }

    /// Level L > 0: per band, the 2x2 tiles of level L-1 below the tile, averaged.
    async fn above(&self, tile: Tile) -> Result<Vec<Option<Vec<u16>>>> {
        let nb = self.layout.bands.len();
        let below = tile.level.saturating_sub(1);
        let mut out = Vec::with_capacity(nb);
        for b in 0..nb {
            let mut mosaic: Option<Vec<u16>> = None;
            for dy in 0..2 {
                for dx in 0..2 {
                    let idx = [tile.t as u64, (tile.ty * 2 + dy) as u64, (tile.tx * 2 + dx) as u64];
                    let Some(key) = self.enc.key(below, b, idx) else { continue };
                    let Some(src) = self.read(&key, TILE * TILE).await? else { continue };
                    let m = mosaic.get_or_insert_with(|| vec![0u16; 4 * TILE * TILE]);
                    for r in 0..TILE {
                        let d = (dy * TILE + r) * 2 * TILE + dx * TILE;
                        m[d..d + TILE].copy_from_slice(&src[r * TILE..(r + 1) * TILE]);
                    }
                }
            }
            out.push(match mosaic {
                Some(m) => {
                    let avg = tokio::task::spawn_blocking(move || downsample(&m, 2 * TILE, 2 * TILE))
                        .await
                        .map_err(|e| PyramidError::Task { location: self.location.clone(), reason: e.to_string() })?;
                    avg.iter().any(|&v| v != 0).then_some(avg)
                }
                None => None,
            });
        }
        Ok(out)
    }
}

/// `eocube overviews`: writes the pyramid of the finished cube at `loc` (on `branch` of an
/// Icechunk repository) and makes it visible: plain Zarr rewrites the consolidated metadata,
/// Icechunk commits once on the branch. An unfinished cube is refused.
pub async fn overviews(loc: &OutLocation, branch: &str, opts: &PyramidOptions) -> Result<PyramidSummary> {
    let view = Cube::open_branch(loc, branch, true).await?;
    if !view.is_consolidated().await? {
        return Err(PyramidError::Unfinished { location: loc.to_string() });
    }
    let cube = match loc {
        OutLocation::Icechunk(_) => {
            let store = crate::store::icechunk::IcechunkStore::open_update(loc, branch).await?;
            Cube::from_store(Arc::new(store)).await?
        }
        _ => view,
    };
    let summary = write(&cube, opts).await?;
    let props = json!({
        "kind": "overviews",
        "levels": summary.levels,
        "chunks_written": summary.chunks_written,
        "eocube_version": env!("CARGO_PKG_VERSION"),
    });
    let message = format!("eocube overviews: {} levels, {} chunks", summary.levels, summary.chunks_written);
    cube.store().publish_derived(cube.layout(), &message, props).await?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{Affine, Crs};

    fn geobox(ny: usize, nx: usize) -> GeoBox {
        GeoBox::new(Crs::wgs84(), Affine::north_up(10.0, 50.0, 0.001, 0.001), Shape { ny, nx })
    }

    fn layout(ny: usize, nx: usize, format: ZarrFormat) -> CubeLayout {
        CubeLayout {
            geobox: geobox(ny, nx),
            chunk_size: 300,
            times: vec![19478, 19509],
            bands: vec!["red".into(), "green".into()],
            variable: "rgb_median".into(),
            zarr_format: format,
            attrs: json!({}),
            values: DataValues::default(),
        }
    }

    #[test]
    fn kernel_averages_valid_pixels_only() {
        // 2x2 blocks: all valid; one fill; all fill; one valid.
        #[rustfmt::skip]
        let src = [
            1, 2,   0, 5,   0, 0,   0, 0,
            3, 4,   7, 9,   0, 0,   0, 6,
        ];
        assert_eq!(downsample(&src, 2, 8), vec![3, 7, 0, 6]);
    }

    #[test]
    fn kernel_rounds_half_up() {
        assert_eq!(downsample(&[1, 2, 0, 0], 2, 2), vec![2]); // 1.5 -> 2
        assert_eq!(downsample(&[1, 1, 2, 0], 2, 2), vec![1]); // 1.33 -> 1
        assert_eq!(downsample(&[2, 2, 2, 3], 2, 2), vec![2]); // 2.25 -> 2
        assert_eq!(downsample(&[65535; 4], 2, 2), vec![65535]);
    }

    #[test]
    fn kernel_odd_edges_average_what_is_there() {
        // 3 x 3: the last row and column are half blocks.
        let src = [10, 20, 30, 40, 50, 60, 70, 80, 90];
        assert_eq!(downsample(&src, 3, 3), vec![30, 45, 75, 90]);
        assert_eq!(downsample(&[7], 1, 1), vec![7]);
        assert_eq!(downsample(&[0; 9], 3, 3), vec![0; 4]);
    }

    #[test]
    fn kernel_one_valid_pixel_survives_every_level() {
        let mut v = vec![0u16; 16 * 16];
        v[5 * 16 + 9] = 1234;
        let (mut rows, mut cols) = (16, 16);
        while rows > 1 {
            v = downsample(&v, rows, cols);
            rows = rows.div_ceil(2);
            cols = cols.div_ceil(2);
            assert_eq!(v.iter().filter(|&&x| x != 0).collect::<Vec<_>>(), vec![&1234]);
        }
    }

    #[test]
    fn levels_halve_until_one_tile() {
        let l = level_geoboxes(&geobox(1000, 2049));
        let shapes: Vec<_> = l.iter().map(|g| (g.shape.ny, g.shape.nx)).collect();
        assert_eq!(shapes, vec![(1000, 2049), (500, 1025), (250, 513), (125, 257)]);
        assert_eq!(l[3].affine, Affine::north_up(10.0, 50.0, 0.008, 0.008));
        assert_eq!(level_geoboxes(&geobox(512, 100)).len(), 1);
        assert_eq!(level_geoboxes(&geobox(513, 1)).len(), 2);
        assert_eq!(tile_grid(Shape { ny: 1000, nx: 2049 }), (2, 5));
    }

    #[test]
    fn group_attributes_follow_the_conventions() {
        let a = group_attrs(&layout(1000, 1100, ZarrFormat::V3));
        let uuids: Vec<&str> =
            a["zarr_conventions"].as_array().unwrap().iter().map(|c| c["uuid"].as_str().unwrap()).collect();
        assert_eq!(uuids, [MULTISCALES_UUID, PROJ_UUID, SPATIAL_UUID]);
        for c in a["zarr_conventions"].as_array().unwrap() {
            for k in ["name", "schema_url", "spec_url", "description"] {
                assert!(c[k].is_string(), "{k} of {c}");
            }
        }
        let layout_ = a["multiscales"]["layout"].as_array().unwrap();
        assert_eq!(layout_.len(), 3);
        assert_eq!(layout_[0]["asset"], "0");
        assert!(layout_[0].get("derived_from").is_none());
        assert_eq!(layout_[2]["derived_from"], "1");
        assert_eq!(layout_[2]["transform"]["scale"], json!([2.0, 2.0]));
        assert_eq!(layout_[2]["spatial:shape"], json!([250, 275]));
        assert_eq!(layout_[2]["spatial:transform"], json!([0.004, 0.0, 10.0, 0.0, -0.004, 50.0]));
        assert_eq!(a["proj:code"], "EPSG:4326");
        assert_eq!(a["spatial:dimensions"], json!(["latitude", "longitude"]));
        assert_eq!(a["spatial:bbox"], json!([10.0, 49.0, 11.1, 50.0]));
    }

    #[test]
    fn level_documents_v3() {
        let l = layout(1000, 1100, ZarrFormat::V3);
        let g = &level_geoboxes(&l.geobox)[1];
        let (objects, members) = level_objects(&l, 1, g, "cube.zarr").unwrap();
        let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
        for k in [
            "pyramid/1/red/zarr.json",
            "pyramid/1/green/zarr.json",
            "pyramid/1/time/zarr.json",
            "pyramid/1/time/c/0",
            "pyramid/1/latitude/c/0",
            "pyramid/1/longitude/zarr.json",
            "pyramid/1/spatial_ref/zarr.json",
            "pyramid/1/zarr.json",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert!(!keys.iter().any(|k| k.contains("band") || k.contains("rgb_median")), "{keys:?}");
        assert_eq!(*keys.last().unwrap(), "pyramid/1/zarr.json");
        let doc =
            |k: &str| -> Value { serde_json::from_slice(&objects.iter().find(|(o, _)| o == k).unwrap().1).unwrap() };
        let red = doc("pyramid/1/red/zarr.json");
        assert_eq!(red["shape"], json!([2, 500, 550]));
        assert_eq!(red["chunk_grid"]["configuration"]["chunk_shape"], json!([1, 512, 512]));
        assert_eq!(red["dimension_names"], json!(["time", "latitude", "longitude"]));
        assert_eq!(red["attributes"]["scale_factor"], json!(meta::SCALE_FACTOR));
        assert_eq!(red["attributes"]["grid_mapping"], "spatial_ref");
        assert_eq!(red["attributes"]["_FillValue"], 0);
        assert_eq!(red["codecs"][1]["configuration"]["level"], json!(meta::ZSTD_LEVEL));
        let sr = doc("pyramid/1/spatial_ref/zarr.json");
        assert_eq!(sr["attributes"]["GeoTransform"], "10 0.002 0 50 0 -0.002");
        let group = doc("pyramid/1/zarr.json");
        assert_eq!(group["attributes"]["proj:code"], "EPSG:4326");
        assert_eq!(group["attributes"]["spatial:shape"], json!([500, 550]));
        assert_eq!(group["attributes"]["spatial:transform"], json!([0.002, 0.0, 10.0, 0.0, -0.002, 50.0]));
        let listed = group["consolidated_metadata"]["metadata"].as_object().unwrap();
        let mut names: Vec<&String> = listed.keys().collect();
        names.sort();
        assert_eq!(names, ["green", "latitude", "longitude", "red", "spatial_ref", "time"]);
        assert_eq!(members[0].path, "1");
        assert!(members.iter().any(|m| m.path == "1/red"));
        let p = pyramid_group_objects(&l, &members, "cube.zarr").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "pyramid/zarr.json");
    }

    #[test]
    fn level_documents_v2() {
        let l = layout(600, 700, ZarrFormat::V2);
        let g = &level_geoboxes(&l.geobox)[0];
        let (objects, members) = level_objects(&l, 0, g, "cube.zarr").unwrap();
        let doc =
            |k: &str| -> Value { serde_json::from_slice(&objects.iter().find(|(o, _)| o == k).unwrap().1).unwrap() };
        let red = doc("pyramid/0/red/.zarray");
        assert_eq!(red["chunks"], json!([1, 512, 512]));
        assert_eq!(red["compressor"]["id"], "zstd");
        let attrs = doc("pyramid/0/red/.zattrs");
        assert_eq!(attrs["_ARRAY_DIMENSIONS"], json!(["time", "latitude", "longitude"]));
        assert!(attrs.get("_FillValue").is_none(), "v2 masks its fill_value already");
        assert_eq!(doc("pyramid/0/.zattrs")["spatial:shape"], json!([600, 700]));
        let listing = doc("pyramid/0/.zmetadata");
        assert!(listing["metadata"]["red/.zarray"].is_object());
        assert!(listing["metadata"]["time/.zattrs"]["_ARRAY_DIMENSIONS"].is_array());
        let p = pyramid_group_objects(&l, &members, "cube.zarr").unwrap();
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["pyramid/.zgroup", "pyramid/.zattrs", "pyramid/.zmetadata"]);
        let listing: Value = serde_json::from_slice(&p[2].1).unwrap();
        assert!(listing["metadata"]["0/.zgroup"].is_object());
        assert!(listing["metadata"]["0/red/.zarray"].is_object());
    }

    #[test]
    fn chunks_round_trip_through_the_encoder() {
        let l = layout(600, 700, ZarrFormat::V3);
        let levels = level_geoboxes(&l.geobox);
        let enc = Encoders::new(&l, &levels, "cube.zarr").unwrap();
        let data: Vec<u16> = (0..TILE * TILE).map(|i| (i % 5000) as u16).collect();
        let (key, bytes) = enc.encode(1, 1, [1, 0, 0], data.clone()).unwrap();
        assert_eq!(key, "pyramid/1/green/c/1/0/0");
        assert_eq!(decode_u16(&bytes.unwrap(), TILE * TILE).unwrap(), data);
        assert_eq!(enc.encode(0, 0, [0, 1, 1], vec![0; TILE * TILE]).unwrap().1, None);
        let v2 = Encoders::new(&layout(600, 700, ZarrFormat::V2), &levels, "c").unwrap();
        assert_eq!(v2.key(0, 0, [0, 1, 0]).unwrap(), "pyramid/0/red/0.1.0");
        assert!(decode_u16(b"not zstd", 4).is_err());
    }

    fn tile(level: usize, ty: usize, tx: usize) -> Tile {
        Tile { level, t: 0, ty, tx }
    }

    #[test]
    fn a_tile_waits_for_the_chunks_below_it_and_then_for_the_tiles_below_it() {
        // 1200 x 1200 px in 600-px chunks (2 x 2), one time step: level 0 has 3 x 3 tiles,
        // level 1 (600 px) 2 x 2, level 2 (300 px) one.
        let mut l = layout(1200, 1200, ZarrFormat::V3);
        (l.chunk_size, l.times) = (600, vec![19478]);
        let levels = level_geoboxes(&l.geobox);
        let chunk = |iy, ix| Job { t: 0, iy, ix };
        let pending = [chunk(0, 0), chunk(0, 1), chunk(1, 0), chunk(1, 1)];
        let (mut d, ready) = Deps::new(&l, &levels, &pending);
        assert!(ready.is_empty(), "{ready:?}");
        assert_eq!(d.total(), 9 + 4 + 1);
        let mut r = vec![];
        d.chunk_final(chunk(0, 0), &mut r);
        assert_eq!(r, [tile(0, 0, 0)], "only rows and columns 0..512 lie on chunk (0, 0) alone");
        d.chunk_final(chunk(0, 0), &mut r);
        assert_eq!(r.len(), 1, "a chunk told twice counts once");
        r.clear();
        d.chunk_final(chunk(0, 1), &mut r);
        assert_eq!(r, [tile(0, 0, 1), tile(0, 0, 2)]);
        r.clear();
        d.chunk_final(chunk(1, 0), &mut r);
        assert_eq!(r, [tile(0, 1, 0), tile(0, 2, 0)]);
        r.clear();
        d.chunk_final(Job { t: 5, iy: 0, ix: 0 }, &mut r);
        d.chunk_final(chunk(7, 7), &mut r);
        assert!(r.is_empty(), "jobs outside the cube change nothing");
        d.chunk_final(chunk(1, 1), &mut r);
        assert_eq!(r, [tile(0, 1, 1), tile(0, 1, 2), tile(0, 2, 1), tile(0, 2, 2)]);
        // Level 1 (1, 1) has one tile below it, (0, 1) two, (0, 0) four.
        assert_eq!(d.built(tile(0, 2, 2)), Some(tile(1, 1, 1)));
        assert_eq!(d.built(tile(0, 0, 2)), None);
        assert_eq!(d.built(tile(0, 1, 2)), Some(tile(1, 0, 1)));
        for (ty, tx) in [(0, 0), (0, 1), (1, 0)] {
            assert_eq!(d.built(tile(0, ty, tx)), None);
        }
        assert_eq!(d.built(tile(0, 1, 1)), Some(tile(1, 0, 0)));
        assert_eq!(d.built(tile(1, 0, 0)), None);
        assert_eq!(d.built(tile(1, 0, 1)), None);
        assert_eq!(d.built(tile(1, 1, 1)), None);
        for (ty, tx) in [(2, 0), (2, 1)] {
            d.built(tile(0, ty, tx));
        }
        assert_eq!(d.built(tile(1, 1, 0)), Some(tile(2, 0, 0)));
        assert_eq!(d.built(tile(2, 0, 0)), None, "the top has nothing above it");
        assert_eq!(d.built(tile(1, 1, 0)), None, "a tile is handed out once");
    }

    /// Runs the whole cascade with the chunks made final in `order`: every tile comes out
    /// exactly once, a level-0 tile only once every chunk below it is final, a tile above only
    /// once the tiles below it are built.
    fn cascade(l: &CubeLayout, order: &[Job], finish_after: usize) {
        let levels = level_geoboxes(&l.geobox);
        let (mut d, mut ready) = Deps::new(l, &levels, order);
        let mut final_: std::collections::HashSet<Job> = Default::default();
        let mut built: std::collections::HashSet<(usize, usize, usize, usize)> = Default::default();
        let cs = l.chunk_size;
        let check = |t: &Tile, final_: &std::collections::HashSet<Job>, built: &std::collections::HashSet<_>| {
            if t.level == 0 {
                let (r1, c1) = (((t.ty + 1) * TILE).min(l.geobox.shape.ny), ((t.tx + 1) * TILE).min(l.geobox.shape.nx));
                for iy in t.ty * TILE / cs..=(r1 - 1) / cs {
                    for ix in t.tx * TILE / cs..=(c1 - 1) / cs {
                        let j = Job { t: t.t, iy, ix };
                        assert!(!order.contains(&j) || final_.contains(&j), "{t:?} before chunk {j:?}");
                    }
                }
            } else {
                let (rows, cols) = tile_grid(levels[t.level - 1].shape);
                for ty in (2 * t.ty..2 * t.ty + 2).filter(|&r| r < rows) {
                    for tx in (2 * t.tx..2 * t.tx + 2).filter(|&c| c < cols) {
                        assert!(built.contains(&(t.level - 1, t.t, ty, tx)), "{t:?} before the tile below");
                    }
                }
            }
        };
        let drain = |d: &mut Deps, ready: &mut Vec<Tile>, final_: &_, built: &mut std::collections::HashSet<_>| {
            while let Some(t) = ready.pop() {
                check(&t, final_, built);
                assert!(built.insert((t.level, t.t, t.ty, t.tx)), "{t:?} twice");
                ready.extend(d.built(t));
            }
        };
        drain(&mut d, &mut ready, &final_, &mut built);
        for &j in &order[..finish_after] {
            final_.insert(j);
            d.chunk_final(j, &mut ready);
            drain(&mut d, &mut ready, &final_, &mut built);
        }
        final_.extend(order.iter().copied());
        d.all_final(&mut ready);
        drain(&mut d, &mut ready, &final_, &mut built);
        assert_eq!(built.len(), d.total());
    }

    #[test]
    fn every_tile_is_built_once_and_after_what_it_reads_whatever_the_order() {
        for (ny, nx, cs) in [(741, 1236, 300), (1200, 1200, 1200), (1100, 530, 100), (512, 512, 512), (3000, 40, 7)] {
            let mut l = layout(ny, nx, ZarrFormat::V3);
            l.chunk_size = cs;
            let jobs: Vec<Job> = (0..l.times.len())
                .flat_map(|t| {
                    (0..ny.div_ceil(cs)).flat_map(move |iy| (0..nx.div_ceil(cs)).map(move |ix| Job { t, iy, ix }))
                })
                .collect();
            // Row-major, reversed, every other one missing (not land, or done before), and a
            // build that stops telling halfway (`all_final` covers the rest).
            let mut reversed = jobs.clone();
            reversed.reverse();
            let sparse: Vec<Job> = jobs.iter().copied().step_by(2).collect();
            cascade(&l, &jobs, jobs.len());
            cascade(&l, &reversed, reversed.len());
            cascade(&l, &sparse, sparse.len());
            cascade(&l, &jobs, jobs.len() / 2);
            cascade(&l, &[], 0);
        }
    }
}
