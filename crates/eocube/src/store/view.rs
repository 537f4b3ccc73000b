//! The read side of a finished cube, for looking at it (`eocube serve`, `eocube preview`, the
//! pyramid builder): a [`CubeView`] opened once per cube and version, its levels (the data
//! variable, or the pyramid of `docs/cube.md` when there is one), and windows of one band at one
//! level and time step, decoded through a [`ChunkCache`] shared by every view.
//!
//! Owns: locating and decoding chunks for reading, the version a view reads (Icechunk
//! snapshots, tags and branches) and the cache of decoded chunks. Must not touch: writing (the
//! rest of `store`), rendering or HTTP (`serve`).
//!
//! ```text
//!   CubeView::open(loc, version) ── reads zarr.json (+ pyramid/zarr.json) once
//!   read(level, t, band, window) ─▶ chunks under the window ─▶ ChunkCache ─(miss)─▶ store.read(key) ─▶ zstd ─▶ u16
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;

use super::codec::decode_u16;
use super::{Cube, CubeLayout, CubeStore, OutLocation, StoreError, ZarrFormat, icechunk, zarr};
use crate::grid::{Affine, GeoBox, PixelWindow, Shape};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Name of the pyramid group at the cube's root (`docs/cube.md`, "Pyramid").
pub const PYRAMID_GROUP: &str = "pyramid";

/// Which version of a cube to read: the default (a plain Zarr cube, or `main` of an Icechunk
/// repository) or a name (an Icechunk snapshot id, tag or branch).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionRef {
    Default,
    Named(String),
}

/// What a view reads: a plain Zarr cube, or one snapshot of an Icechunk repository and the name
/// that led to it (a branch moves, a tag may be moved, a snapshot never changes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Plain,
    Branch { name: String, snapshot: String },
    Tag { name: String, snapshot: String },
    Snapshot { snapshot: String },
}

impl Resolved {
    /// The snapshot read, for an Icechunk cube.
    pub fn snapshot(&self) -> Option<&str> {
        match self {
            Resolved::Plain => None,
            Resolved::Branch { snapshot, .. } | Resolved::Tag { snapshot, .. } | Resolved::Snapshot { snapshot } => {
                Some(snapshot)
            }
        }
    }
}

pub use icechunk::{Version, Versions};

/// The versions of the repository at `loc`; `None` for a plain Zarr cube, which has one.
pub async fn versions(loc: &OutLocation) -> Result<Option<Versions>> {
    match loc {
        OutLocation::Icechunk(_) => icechunk::versions(loc).await.map(Some),
        _ => Ok(None),
    }
}

/// One resolution of the cube: its grid and the edge of its square chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub geobox: GeoBox,
    pub tile: usize,
}

/// Where a level's chunks are and how they are laid out.
#[derive(Debug, Clone)]
enum Source {
    /// The data variable: chunks `(1, cs, cs, nbands)`, bands interleaved.
    Data,
    /// A pyramid level group: one `(time, y, x)` array per band, chunks `(1, tile, tile)`.
    Pyramid { level: usize },
}

/// A decoded chunk plane of one band: `tile * tile` values, or `None` when the chunk is not
/// stored (all fill).
type Plane = Option<Arc<Vec<u16>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    view: u64,
    level: usize,
    t: usize,
    band: usize,
    ty: usize,
    tx: usize,
}

/// An LRU of decoded chunk planes, bounded in bytes, shared by the views of a process.
///
/// Loads are single-flight: concurrent misses on the same stored chunk (the tiles of one
/// viewport share chunks) wait for one read and decode instead of each doing it.
pub struct ChunkCache {
    inner: Mutex<CacheInner>,
    /// One gate per stored chunk being loaded now; removed when its last waiter is done.
    inflight: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct CacheInner {
    lru: lru::LruCache<Key, Plane>,
    bytes: usize,
}

fn plane_bytes(p: &Plane) -> usize {
    // An absent chunk still costs its entry.
    64 + p.as_ref().map_or(0, |v| v.len() * 2)
}

impl ChunkCache {
    /// A cache holding at most `max_bytes` of decoded values.
    pub fn new(max_bytes: usize) -> Arc<ChunkCache> {
        Arc::new(ChunkCache {
            inner: Mutex::new(CacheInner { lru: lru::LruCache::unbounded(), bytes: 0 }),
            inflight: Mutex::new(HashMap::new()),
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until no other task is loading the stored chunk `load`; the loader holds the
    /// returned guard while it reads, decodes and puts.
    async fn gate(self: &Arc<Self>, load: Key) -> Gate {
        let gate = {
            let mut m = self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            m.entry(load).or_default().clone()
        };
        let guard = gate.clone().lock_owned().await;
        Gate { cache: self.clone(), load, gate, guard: Some(guard) }
    }

    /// Like [`ChunkCache::get`] without counting: the second look after waiting at a gate.
    fn peek(&self, key: &Key) -> Option<Plane> {
        self.lock().lru.get(key).cloned()
    }

    fn get(&self, key: &Key) -> Option<Plane> {
        let found = self.lock().lru.get(key).cloned();
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn put(&self, key: Key, plane: Plane) {
        let size = plane_bytes(&plane);
        if size > self.max_bytes {
            return;
        }
        let mut c = self.lock();
        if let Some(old) = c.lru.put(key, plane) {
            c.bytes -= plane_bytes(&old);
        }
        c.bytes += size;
        while c.bytes > self.max_bytes {
            match c.lru.pop_lru() {
                Some((_, old)) => c.bytes -= plane_bytes(&old),
                None => break,
            }
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Lookups answered from the cache and those that were not, since it was made.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}

/// The right to load one stored chunk; dropping it lets the next waiter in and forgets the
/// gate once nobody else holds it.
struct Gate {
    cache: Arc<ChunkCache>,
    load: Key,
    gate: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.guard = None;
        let mut m = self.cache.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Two holders left: the map and this gate, so no task waits on it.
        if Arc::strong_count(&self.gate) == 2 {
            m.remove(&self.load);
        }
    }
}

/// A finished cube opened for reading at one version.
pub struct CubeView {
    cube: Cube,
    levels: Vec<(Level, Source)>,
    pyramid: bool,
    resolved: Resolved,
    cache: Arc<ChunkCache>,
    /// Distinguishes this view's chunks in the shared cache.
    id: u64,
}

impl std::fmt::Debug for CubeView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CubeView")
            .field("location", &self.cube.location().to_string())
            .field("levels", &self.levels.len())
            .field("resolved", &self.resolved)
            .finish()
    }
}

impl CubeView {
    /// Opens the cube at `loc` at `version` and reads its metadata (once: a view never rereads
    /// it). A named version needs an Icechunk repository.
    pub async fn open(loc: &OutLocation, version: &VersionRef, cache: Arc<ChunkCache>) -> Result<CubeView> {
        let (store, resolved): (Arc<dyn CubeStore>, Resolved) = match (loc, version) {
            (OutLocation::Icechunk(_), v) => {
                let name = match v {
                    VersionRef::Default => None,
                    VersionRef::Named(n) => Some(n.as_str()),
                };
                let (store, resolved) = icechunk::open_pinned(loc, name).await?;
                (Arc::new(store), resolved)
            }
            (_, VersionRef::Default) => (Arc::new(zarr::ZarrStore::open(loc).await?), Resolved::Plain),
            (_, VersionRef::Named(n)) => {
                return Err(StoreError::Unsupported {
                    location: loc.to_string(),
                    what: format!(
                        "version {n:?} asked of a plain Zarr cube, which has one version; versions are Icechunk's (icechunk:///path)"
                    ),
                });
            }
        };
        let cube = Cube::from_store(store).await?;
        if !cube.is_consolidated().await? {
            return Err(StoreError::NotACube {
                path: cube.path(),
                reason: "its build has not finished (no consolidated metadata); finish it with the same `eocube build` first".into(),
            });
        }
        check_codecs(&cube, &data_array_doc(&cube).await?, &cube.layout().variable)?;
        let layout = cube.layout();
        if !layout.values.quantiles.is_empty() {
            // Views read one value per band and pixel; a quantile cube has several.
            return Err(StoreError::Unsupported {
                location: loc.to_string(),
                what: format!(
                    "viewing a cube with a quantile dimension ({}); serve a cube of one value per band (e.g. `--reducer median`)",
                    layout.values.reducer
                ),
            });
        }
        let mut levels = read_pyramid(&cube).await?.unwrap_or_default();
        let pyramid = !levels.is_empty();
        if !pyramid {
            levels.push((Level { geobox: layout.geobox.clone(), tile: layout.chunk_size }, Source::Data));
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Ok(CubeView { cube, levels, pyramid, resolved, cache, id: NEXT.fetch_add(1, Ordering::Relaxed) })
    }

    pub fn layout(&self) -> &CubeLayout {
        self.cube.layout()
    }

    /// Where the cube lives.
    pub fn location(&self) -> &OutLocation {
        self.cube.location()
    }

    /// The levels, finest first: `[0]` is the full resolution; more when there is a pyramid.
    pub fn levels(&self) -> Vec<Level> {
        self.levels.iter().map(|(l, _)| l.clone()).collect()
    }

    /// Level `level`, if the cube has it.
    pub fn level(&self, level: usize) -> Option<&Level> {
        self.levels.get(level).map(|(l, _)| l)
    }

    pub fn has_pyramid(&self) -> bool {
        self.pyramid
    }

    /// What this view reads.
    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    /// `window` of band `band` at `level` and time step `t`, row-major; fill (0) where the
    /// window leaves the level's grid or a chunk is not stored.
    pub async fn read(&self, level: usize, t: usize, band: usize, window: PixelWindow) -> Result<Vec<u16>> {
        let path = self.cube.path();
        let layout = self.cube.layout();
        let Some((lvl, _)) = self.levels.get(level) else {
            return Err(StoreError::InvalidLayout {
                path,
                reason: format!("no level {level} (the cube has {})", self.levels.len()),
            });
        };
        if t >= layout.times.len() || band >= layout.bands.len() {
            return Err(StoreError::InvalidLayout {
                path,
                reason: format!(
                    "time index {t} or band index {band} out of range ({} time steps, {} bands)",
                    layout.times.len(),
                    layout.bands.len()
                ),
            });
        }
        let mut out = vec![0u16; window.height * window.width];
        let Some(clip) = window.clip(lvl.geobox.shape) else { return Ok(out) };
        let tile = lvl.tile;
        let (ty0, ty1) = (clip.row as usize / tile, (clip.row as usize + clip.height - 1) / tile);
        let (tx0, tx1) = (clip.col as usize / tile, (clip.col as usize + clip.width - 1) / tile);
        let tiles: Vec<(usize, usize)> = (ty0..=ty1).flat_map(|ty| (tx0..=tx1).map(move |tx| (ty, tx))).collect();
        let planes =
            futures::future::try_join_all(tiles.iter().map(|&(ty, tx)| self.plane(level, t, band, ty, tx))).await?;
        for (&(ty, tx), plane) in tiles.iter().zip(planes) {
            let Some(plane) = plane else { continue };
            // The part of the clipped window inside this chunk, in level pixels.
            let r0 = (clip.row as usize).max(ty * tile);
            let r1 = (clip.row as usize + clip.height).min((ty + 1) * tile);
            let c0 = (clip.col as usize).max(tx * tile);
            let c1 = (clip.col as usize + clip.width).min((tx + 1) * tile);
            for r in r0..r1 {
                let src = (r - ty * tile) * tile + (c0 - tx * tile);
                let dst = (r as i64 - window.row) as usize * window.width + (c0 as i64 - window.col) as usize;
                out[dst..dst + (c1 - c0)].copy_from_slice(&plane[src..src + (c1 - c0)]);
            }
        }
        Ok(out)
    }

    /// One band's plane of chunk `(ty, tx)`, from the cache or the store.
    async fn plane(&self, level: usize, t: usize, band: usize, ty: usize, tx: usize) -> Result<Plane> {
        let key = Key { view: self.id, level, t, band, ty, tx };
        if let Some(p) = self.cache.get(&key) {
            return Ok(p);
        }
        let (lvl, source) = &self.levels[level];
        let tile = lvl.tile;
        let layout = self.cube.layout();
        let nb = layout.bands.len();
        // A stored level-0 chunk holds every band, so its loads are shared across bands.
        let load = match source {
            Source::Data => Key { band: 0, ..key },
            Source::Pyramid { .. } => key,
        };
        let _gate = self.cache.gate(load).await;
        if let Some(p) = self.cache.peek(&key) {
            return Ok(p);
        }
        match source {
            Source::Data => {
                // One stored chunk holds every band: decode once, cache each band's plane.
                let bytes = self.cube.store().read(&self.cube.chunk_key(t, ty, tx)).await?;
                let planes = match bytes {
                    None => vec![None; nb],
                    Some(b) => {
                        let values = self.decode(b, tile * tile * nb, &layout.variable).await?;
                        (0..nb).map(|k| Some(Arc::new(values.iter().skip(k).step_by(nb).copied().collect()))).collect()
                    }
                };
                for (k, p) in planes.iter().enumerate() {
                    self.cache.put(Key { band: k, ..key }, p.clone());
                }
                Ok(planes.into_iter().nth(band).flatten())
            }
            Source::Pyramid { level: l } => {
                let name = &layout.bands[band];
                let key_path = match layout.zarr_format {
                    ZarrFormat::V3 => format!("{PYRAMID_GROUP}/{l}/{name}/c/{t}/{ty}/{tx}"),
                    ZarrFormat::V2 => format!("{PYRAMID_GROUP}/{l}/{name}/{t}.{ty}.{tx}"),
                };
                let plane = match self.cube.store().read(&key_path).await? {
                    None => None,
                    Some(b) => Some(Arc::new(self.decode(b, tile * tile, &key_path).await?)),
                };
                self.cache.put(key, plane.clone());
                Ok(plane)
            }
        }
    }

    /// zstd-compressed little-endian u16 (the cube's one codec chain, checked at open) of
    /// exactly `len` values, decoded off the async threads.
    async fn decode(&self, bytes: Bytes, len: usize, what: &str) -> Result<Vec<u16>> {
        let path = self.cube.path();
        let what = what.to_string();
        let bad = move |reason: String| StoreError::NotACube {
            path: path.clone(),
            reason: format!("chunk of {what}: {reason}"),
        };
        let decoded = tokio::task::spawn_blocking(move || decode_u16(&bytes, len))
            .await
            .map_err(|e| bad(format!("decoding stopped: {e}")))?;
        decoded.map_err(bad)
    }
}

/// The metadata document of the data variable (v3 `zarr.json`, v2 `.zarray`).
async fn data_array_doc(cube: &Cube) -> Result<Value> {
    let var = &cube.layout().variable;
    let key = match cube.layout().zarr_format {
        ZarrFormat::V3 => format!("{var}/zarr.json"),
        ZarrFormat::V2 => format!("{var}/.zarray"),
    };
    read_json(cube, &key)
        .await?
        .ok_or_else(|| StoreError::NotACube { path: cube.path(), reason: format!("{key} is missing") })
}

async fn read_json(cube: &Cube, key: &str) -> Result<Option<Value>> {
    let Some(bytes) = cube.store().read(key).await? else { return Ok(None) };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::NotACube { path: cube.path(), reason: format!("{key} is not JSON: {e}") })
}

/// Refuses an array whose codecs are not the ones eocube writes (uint16, little-endian bytes,
/// zstd): `decode_u16` reads nothing else.
fn check_codecs(cube: &Cube, doc: &Value, what: &str) -> Result<()> {
    let ok = match cube.layout().zarr_format {
        ZarrFormat::V3 => {
            let names: Vec<&str> = doc
                .get("codecs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect();
            doc.get("data_type").and_then(Value::as_str) == Some("uint16")
                && names == ["bytes", "zstd"]
                && doc.pointer("/codecs/0/configuration/endian").and_then(Value::as_str) != Some("big")
        }
        ZarrFormat::V2 => {
            doc.get("dtype").and_then(Value::as_str) == Some("<u2")
                && doc.pointer("/compressor/id").and_then(Value::as_str) == Some("zstd")
                && doc.get("filters").is_none_or(Value::is_null)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::NotACube {
            path: cube.path(),
            reason: format!("{what} is not uint16 with the zstd codec eocube writes; rebuild it with this eocube"),
        })
    }
}

/// The levels of the cube's pyramid (`docs/cube.md`), or `None` when it has none.
async fn read_pyramid(cube: &Cube) -> Result<Option<Vec<(Level, Source)>>> {
    let layout = cube.layout();
    let attrs = match layout.zarr_format {
        ZarrFormat::V3 => {
            read_json(cube, &format!("{PYRAMID_GROUP}/zarr.json")).await?.and_then(|d| d.get("attributes").cloned())
        }
        ZarrFormat::V2 => read_json(cube, &format!("{PYRAMID_GROUP}/.zattrs")).await?,
    };
    let Some(attrs) = attrs else { return Ok(None) };
    let bad = |reason: String| StoreError::NotACube {
        path: cube.path(),
        reason: format!("{PYRAMID_GROUP}: {reason}; rebuild it with `eocube overviews`"),
    };
    let entries = attrs
        .pointer("/multiscales/layout")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `multiscales.layout`".into()))?;
    let mut by_asset: HashMap<usize, (Shape, Affine)> = HashMap::new();
    for e in entries {
        let asset = e.get("asset").and_then(Value::as_str).and_then(|a| a.parse::<usize>().ok());
        let shape: Option<[usize; 2]> = e.get("spatial:shape").and_then(|v| serde_json::from_value(v.clone()).ok());
        let gt: Option<[f64; 6]> = e.get("spatial:transform").and_then(|v| serde_json::from_value(v.clone()).ok());
        match (asset, shape, gt) {
            (Some(a), Some([ny, nx]), Some(gt)) if ny > 0 && nx > 0 => {
                // The spatial convention orders the transform as rasterio does, [a, b, c, d, e, f].
                by_asset.insert(a, (Shape { ny, nx }, Affine::new(gt[0], gt[1], gt[2], gt[3], gt[4], gt[5])));
            }
            _ => {
                return Err(bad(format!(
                    "a layout entry without a numeric `asset`, `spatial:shape` or `spatial:transform`: {e}"
                )));
            }
        }
    }
    let mut levels = Vec::new();
    for l in 0..by_asset.len() {
        let (shape, affine) =
            by_asset.get(&l).copied().ok_or_else(|| bad(format!("levels are not 0..{}", by_asset.len())))?;
        let band = layout.bands.first().ok_or_else(|| bad("the cube has no bands".into()))?;
        let key = match layout.zarr_format {
            ZarrFormat::V3 => format!("{PYRAMID_GROUP}/{l}/{band}/zarr.json"),
            ZarrFormat::V2 => format!("{PYRAMID_GROUP}/{l}/{band}/.zarray"),
        };
        let doc = read_json(cube, &key).await?.ok_or_else(|| bad(format!("{key} is missing")))?;
        check_codecs(cube, &doc, &key)?;
        let chunks: Option<Vec<usize>> = match layout.zarr_format {
            ZarrFormat::V3 => doc.pointer("/chunk_grid/configuration/chunk_shape"),
            ZarrFormat::V2 => doc.get("chunks"),
        }
        .and_then(|v| serde_json::from_value(v.clone()).ok());
        let tile = match chunks.as_deref() {
            Some([1, a, b]) if a == b && *a > 0 => *a,
            _ => return Err(bad(format!("{key}: chunks are not (1, n, n)"))),
        };
        let geobox = GeoBox::new(layout.geobox.crs.clone(), affine, shape);
        levels.push((Level { geobox, tile }, Source::Pyramid { level: l }));
    }
    if levels.is_empty() {
        return Err(bad("no levels".into()));
    }
    if levels[0].0.geobox.shape != layout.geobox.shape {
        return Err(bad("level 0 does not have the cube's shape".into()));
    }
    Ok(Some(levels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_checks_the_length_and_the_frame() {
        let values: Vec<u16> = (0..100).collect();
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let z = zstd::encode_all(&raw[..], 5).unwrap();
        assert_eq!(decode_u16(&z, 100).unwrap(), values);
        assert!(decode_u16(&z, 99).unwrap_err().contains("at most 198 bytes"));
        assert!(decode_u16(&z, 101).unwrap_err().contains("expected 202"));
        assert!(decode_u16(b"not zstd at all", 10).is_err());
    }

    #[test]
    fn the_cache_stays_within_its_bound_and_evicts_the_least_recent() {
        let cache = ChunkCache::new(3 * (64 + 200));
        let key = |tx| Key { view: 0, level: 0, t: 0, band: 0, ty: 0, tx };
        for tx in 0..3 {
            cache.put(key(tx), Some(Arc::new(vec![0; 100])));
        }
        assert!(cache.get(&key(0)).is_some());
        cache.put(key(3), Some(Arc::new(vec![0; 100])));
        assert!(cache.bytes() <= 3 * 264);
        assert!(cache.get(&key(1)).is_none(), "the least recently used went first");
        assert!(cache.get(&key(0)).is_some() && cache.get(&key(3)).is_some());
        // A plane larger than the whole cache is not kept.
        cache.put(key(9), Some(Arc::new(vec![0; 10_000])));
        assert!(cache.get(&key(9)).is_none());
        let (hits, misses) = cache.stats();
        assert_eq!((hits, misses), (3, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_on_one_chunk_load_it_once() {
        let cache = ChunkCache::new(1 << 20);
        let loads = Arc::new(AtomicU64::new(0));
        let key = |band| Key { view: 7, level: 0, t: 0, band, ty: 1, tx: 2 };
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (cache, loads) = (cache.clone(), loads.clone());
                tokio::spawn(async move {
                    let k = key(i % 3);
                    if cache.get(&k).is_some() {
                        return;
                    }
                    let _gate = cache.gate(key(0)).await;
                    if cache.peek(&k).is_some() {
                        return;
                    }
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    for b in 0..3 {
                        cache.put(key(b), Some(Arc::new(vec![b as u16; 10])));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for sixteen concurrent misses");
        assert!(cache.inflight.lock().unwrap().is_empty(), "the gate is forgotten when its waiters are done");
    }
}
