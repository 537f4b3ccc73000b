//! # landmask: does a chunk touch land?
//!
//! Owns the embedded Natural Earth 1:10m land polygons (`assets/land-10m.bin`, public domain,
//! built from npm `world-atlas` by `scripts/build-landmask.sh`; see `docs/landmask.md`) and the
//! one question the planner asks of them: does this chunk footprint, buffered by 0.01 degree
//! (DESIGN §9 "Ocean"), intersect land? It does not know about grids, CRSs or plans: the caller
//! hands it a footprint ring already in lon/lat, and decides what to do with the answer.
//!
//! ```text
//! assets/land-10m.bin ──format::decode──▶ rings (lon/lat) ──index──▶ LandMask::intersects(footprint, buffer)
//! ```
//!
//! The test is exact on the polygon data, not a raster: the buffered footprint intersects land iff
//! some land edge lies within `buffer` of a footprint edge, or some land ring lies inside the
//! footprint, or the footprint lies inside land. So a one-pixel island inside a chunk keeps it.
//! Containment is even-odd over all rings in the lon/lat plane; distances are planar degrees.
//!
//! Speed comes from a uniform 0.25° grid over the globe. Each cell lists the land segments whose
//! bounding box touches it; a cell with none is wholly land or wholly ocean, decided when its row
//! is indexed, so most footprints are answered from a handful of cells and only coastal ones look
//! at segments. Point containment casts a ray east along a row of cells and stops at the first
//! empty cell, whose state is known. A row is indexed the first time a question reaches it: a
//! build asks about a few rows, and indexing all 720 was most of a small build's start-up.
//!
//! Antimeridian: footprints are rings with longitudes in [-180, 180]; a footprint that crosses the
//! antimeridian must be given as two rings (one per side) and the answers ORed. Land polygons that
//! cross it were cut at build time.

use std::sync::OnceLock;

mod format;
mod geom;
#[cfg(test)]
mod tests;

use geom::{Box2, Pt, horizontal_crossing, ring_contains, segment_dist2};

/// The compact land mask compiled into the binary.
pub static EMBEDDED_ASSET: &[u8] = include_bytes!("../../assets/land-10m.bin");

/// The buffer DESIGN §9 applies around every chunk footprint, in degrees.
pub const DEFAULT_BUFFER_DEG: f64 = 0.01;

/// Index cells are a power-of-two fraction of a degree so every cell edge is exact in binary.
const CELLS_PER_DEG: f64 = 4.0;
const NX: usize = 360 * 4;
const NY: usize = 180 * 4;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum LandMaskError {
    /// The asset bytes are not a valid land mask. Planning refuses to guess which chunks are land.
    #[error(
        "the land mask asset is corrupt ({reason}); rebuild assets/land-10m.bin with \
         scripts/build-landmask.sh, or plan with --all-chunks to skip the land test"
    )]
    Corrupt { reason: String },
}

/// Sizes of the decoded mask, for logs and docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LandMaskStats {
    pub polygons: usize,
    pub rings: usize,
    /// Distinct vertices (rings counted open).
    pub vertices: usize,
    /// Segment references held by the grid index.
    pub index_entries: usize,
}

/// Natural Earth land rings with a grid index. `Sync`: share one across threads (a row's index
/// is built once, by whichever thread first needs it).
pub struct LandMask {
    /// All rings, each stored closed; segment `s` runs from `vertices[s]` to `vertices[s + 1]`.
    vertices: Vec<Pt>,
    ring_starts: Vec<u32>,
    polygons: usize,
    /// CSR lists: index row `iy` may meet segments `row_segs[row_offsets[iy]..row_offsets[iy + 1]]`
    /// (those whose bounding box reaches into it), in segment order.
    row_offsets: Vec<u32>,
    row_segs: Vec<u32>,
    /// The cells of each row, indexed on first use.
    rows: Vec<OnceLock<Row>>,
}

/// The cells of one index row.
struct Row {
    /// CSR lists: cell `ix` holds segments `segs[offsets[ix]..offsets[ix + 1]]`.
    offsets: Vec<u32>,
    segs: Vec<u32>,
    /// Meaningful for cells without segments only: the whole cell is land.
    land: Vec<bool>,
}

impl Row {
    fn cell(&self, ix: usize) -> &[u32] {
        &self.segs[self.offsets[ix] as usize..self.offsets[ix + 1] as usize]
    }
}

// The cell of a coordinate, clamped to the grid. A float-to-integer cast truncates, which is the
// floor for the non-negative values that matter, and saturates below 0 (and NaN) at 0: the same
// as flooring and clamping, without a call into libm per coordinate.
fn col(lon: f64) -> usize {
    (((lon + 180.0) * CELLS_PER_DEG) as usize).min(NX - 1)
}

fn row(lat: f64) -> usize {
    (((lat + 90.0) * CELLS_PER_DEG) as usize).min(NY - 1)
}

impl LandMask {
    /// The embedded mask, decoded (about 0.1 s). Not cached: the mask is 13 MB and a build only
    /// needs it while planning, so the caller holds it as long as it needs it.
    ///
    /// A corrupt asset is a build defect; it is reported as a typed error rather than panicking
    /// or silently treating everything as land.
    pub fn embedded() -> Result<LandMask, LandMaskError> {
        LandMask::from_bytes(EMBEDDED_ASSET)
    }

    /// Decode an asset in the `land-10m.bin` format and build the index.
    pub fn from_bytes(bytes: &[u8]) -> Result<LandMask, LandMaskError> {
        let rings = format::decode(bytes)?;
        Ok(Self::index(rings))
    }

    fn index(rings: format::Rings) -> LandMask {
        let format::Rings { vertices, ring_starts, polygons } = rings;
        // A segment's bounding box spans the rows between its ends' rows (`row` never decreases).
        let vertex_rows: Vec<u16> = vertices.iter().map(|v| row(v[1]) as u16).collect();
        let mut pairs: Vec<(usize, u32)> = Vec::with_capacity(vertices.len() + vertices.len() / 8);
        for w in ring_starts.windows(2) {
            for s in w[0]..w[1] - 1 {
                let (a, b) = (vertex_rows[s as usize], vertex_rows[s as usize + 1]);
                pairs.extend((a.min(b)..=a.max(b)).map(|iy| (iy as usize, s)));
            }
        }
        let (row_offsets, row_segs) = csr(NY, &pairs);
        let rows = (0..NY).map(|_| OnceLock::new()).collect();
        LandMask { vertices, ring_starts, polygons, row_offsets, row_segs, rows }
    }

    /// Row `iy`'s cells, indexed the first time they are asked for.
    fn row(&self, iy: usize) -> &Row {
        self.rows[iy].get_or_init(|| self.index_row(iy))
    }

    fn index_row(&self, iy: usize) -> Row {
        let segs = &self.row_segs[self.row_offsets[iy] as usize..self.row_offsets[iy + 1] as usize];
        let mut pairs = Vec::with_capacity(segs.len() + segs.len() / 8);
        for &s in segs {
            let (a, b) = self.segment(s);
            let (a, b) = (col(a[0]), col(b[0]));
            pairs.extend((a.min(b)..=a.max(b)).map(|ix| (ix, s)));
        }
        let (offsets, segs) = csr(NX, &pairs);
        let mut row = Row { offsets, segs, land: vec![false; NX] };
        // East to west, so the ray from an empty cell's centre stops at the next empty cell to
        // its east, whose state is already known: linear in the number of segments.
        let y = (iy as f64 + 0.5) / CELLS_PER_DEG - 90.0;
        for ix in (0..NX).rev() {
            if row.cell(ix).is_empty() {
                let x = (ix as f64 + 0.5) / CELLS_PER_DEG - 180.0;
                row.land[ix] = self.walk_east(&row, [x, y], ix + 1);
            }
        }
        row
    }

    pub fn stats(&self) -> LandMaskStats {
        let rings = self.ring_starts.len() - 1;
        LandMaskStats {
            polygons: self.polygons,
            rings,
            vertices: self.vertices.len() - rings,
            index_entries: (0..NY).map(|iy| self.row(iy).segs.len()).sum(),
        }
    }

    fn segment(&self, s: u32) -> (Pt, Pt) {
        (self.vertices[s as usize], self.vertices[s as usize + 1])
    }

    /// Even-odd parity of the ray from `p` east, over cells `from_ix..` of `row` (the row of
    /// `p`), stopping at the first empty cell. A crossing is counted only in the cell whose column
    /// contains it, so a segment listed in several cells is counted once.
    fn walk_east(&self, row: &Row, p: Pt, from_ix: usize) -> bool {
        let mut inside = false;
        for ix in from_ix..NX {
            let segs = row.cell(ix);
            if segs.is_empty() {
                return inside ^ row.land[ix];
            }
            for &s in segs {
                let (a, b) = self.segment(s);
                if let Some(x) = horizontal_crossing(a, b, p[1])
                    && x > p[0]
                    && col(x) == ix
                {
                    inside = !inside;
                }
            }
        }
        inside
    }

    /// Is the point (lon, lat) on land (even-odd; points exactly on a coastline may go either way)?
    pub fn contains_point(&self, lon: f64, lat: f64) -> bool {
        let (ix, r) = (col(lon), self.row(row(lat)));
        if r.cell(ix).is_empty() { r.land[ix] } else { self.walk_east(r, [lon, lat], ix) }
    }

    /// Does the footprint ring (lon/lat vertices, closed or not), buffered by `buffer_deg` degrees,
    /// intersect land? Pass [`DEFAULT_BUFFER_DEG`] for the planner's rule.
    ///
    /// An empty footprint touches nothing. A footprint with a non-finite coordinate, or a negative
    /// or non-finite buffer, answers `true`: the planner keeps a chunk it cannot judge rather than
    /// silently dropping data.
    pub fn intersects(&self, footprint: &[(f64, f64)], buffer_deg: f64) -> bool {
        let Some(ring) = prepare(footprint, buffer_deg) else { return !footprint.is_empty() };
        if ring.is_empty() {
            return false;
        }
        let fbox = Box2::of_points(ring.iter().copied());
        let bbox = fbox.expand(buffer_deg);
        if bbox.max[0] < -180.0 || bbox.min[0] > 180.0 || bbox.max[1] < -90.5 || bbox.min[1] > 90.5 {
            return false;
        }
        let (ix0, ix1, iy0, iy1) = (col(bbox.min[0]), col(bbox.max[0]), row(bbox.min[1]), row(bbox.max[1]));
        let cells = || (iy0..=iy1).map(|iy| self.row(iy)).flat_map(move |r| (ix0..=ix1).map(move |ix| (r, ix)));

        // Fast path: no coastline near the footprint's box, so the box is uniformly land or ocean.
        let (mut any_segments, mut any_land, mut any_ocean) = (false, false, false);
        for (r, ix) in cells() {
            if !r.cell(ix).is_empty() {
                any_segments = true;
                break;
            }
            if r.land[ix] { any_land = true } else { any_ocean = true }
        }
        // (Land and ocean cells side by side without a coast between them cannot happen, but
        // would simply fall through to the exact test.)
        if !any_segments && any_land != any_ocean {
            return any_land;
        }

        let d2 = buffer_deg * buffer_deg;
        let n = ring.len();
        for (r, ix) in cells() {
            for &s in r.cell(ix) {
                let (a, b) = self.segment(s);
                if bbox.overlaps_segment(a, b) && (0..n).any(|i| segment_dist2(ring[i], ring[(i + 1) % n], a, b) <= d2)
                {
                    return true;
                }
            }
        }
        // No coast within the buffer: either a whole land ring sits inside the footprint (an
        // islet; all its vertices then lie in these cells), or the footprint is wholly land or
        // wholly ocean and any one of its points decides.
        for (r, ix) in cells() {
            for &s in r.cell(ix) {
                let a = self.vertices[s as usize];
                if fbox.contains(a) && ring_contains(&ring, a) {
                    return true;
                }
            }
        }
        self.contains_point(ring[0][0], ring[0][1])
    }

    /// [`LandMask::intersects`] for a lon/lat box `west, south, east, north` (a chunk of an
    /// EPSG:4326 grid), `west <= east`.
    pub fn intersects_box(&self, west: f64, south: f64, east: f64, north: f64, buffer_deg: f64) -> bool {
        self.intersects(&[(west, south), (east, south), (east, north), (west, north)], buffer_deg)
    }
}

/// Compressed lists of `n` buckets from `(bucket, value)` pairs, values in the order given:
/// `(offsets, values)`, bucket `i` holding `values[offsets[i]..offsets[i + 1]]`.
fn csr(n: usize, pairs: &[(usize, u32)]) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; n + 1];
    for &(i, _) in pairs {
        offsets[i + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill: Vec<u32> = offsets[..n].to_vec();
    let mut values = vec![0u32; pairs.len()];
    for &(i, v) in pairs {
        values[fill[i] as usize] = v;
        fill[i] += 1;
    }
    (offsets, values)
}

/// The footprint as points, or `None` when it cannot be judged (non-finite input).
fn prepare(footprint: &[(f64, f64)], buffer_deg: f64) -> Option<Vec<Pt>> {
    if !(buffer_deg.is_finite() && buffer_deg >= 0.0) {
        return None;
    }
    footprint.iter().map(|&(x, y)| (x.is_finite() && y.is_finite()).then_some([x, y])).collect()
}
