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
//! bounding box touches it; a cell with none is wholly land or wholly ocean, decided once at load
//! time, so most footprints are answered from a handful of cells and only coastal ones look at
//! segments. Point containment casts a ray east along a row of cells and stops at the first empty
//! cell, whose state is known.
//!
//! Antimeridian: footprints are rings with longitudes in [-180, 180]; a footprint that crosses the
//! antimeridian must be given as two rings (one per side) and the answers ORed. Land polygons that
//! cross it were cut at build time.

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

/// Natural Earth land rings with a grid index. Immutable and `Sync`: share one across threads.
pub struct LandMask {
    /// All rings, each stored closed; segment `s` runs from `vertices[s]` to `vertices[s + 1]`.
    vertices: Vec<Pt>,
    ring_starts: Vec<u32>,
    polygons: usize,
    /// CSR lists: cell `c` holds segments `cell_segs[cell_offsets[c]..cell_offsets[c + 1]]`.
    cell_offsets: Vec<u32>,
    cell_segs: Vec<u32>,
    /// Meaningful for cells without segments only: the whole cell is land.
    cell_land: Vec<bool>,
}

fn col(lon: f64) -> usize {
    ((lon + 180.0) * CELLS_PER_DEG).floor().clamp(0.0, (NX - 1) as f64) as usize
}

fn row(lat: f64) -> usize {
    ((lat + 90.0) * CELLS_PER_DEG).floor().clamp(0.0, (NY - 1) as f64) as usize
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
        let segments = || {
            ring_starts
                .windows(2)
                .flat_map(|w| (w[0] as usize)..(w[1] as usize - 1))
                .map(|s| (s, Box2::of_points([vertices[s], vertices[s + 1]])))
        };
        let cells_of = |b: Box2| {
            (row(b.min[1])..=row(b.max[1]))
                .flat_map(move |iy| (col(b.min[0])..=col(b.max[0])).map(move |ix| iy * NX + ix))
        };
        // Two passes (count, fill) build compact CSR lists without a Vec per cell.
        let mut cell_offsets = vec![0u32; NX * NY + 1];
        for (_, b) in segments() {
            for c in cells_of(b) {
                cell_offsets[c + 1] += 1;
            }
        }
        for c in 0..NX * NY {
            cell_offsets[c + 1] += cell_offsets[c];
        }
        let mut fill: Vec<u32> = cell_offsets[..NX * NY].to_vec();
        let mut cell_segs = vec![0u32; cell_offsets[NX * NY] as usize];
        for (s, b) in segments() {
            for c in cells_of(b) {
                cell_segs[fill[c] as usize] = s as u32;
                fill[c] += 1;
            }
        }
        let mut mask =
            LandMask { vertices, ring_starts, polygons, cell_offsets, cell_segs, cell_land: vec![false; NX * NY] };
        // East to west per row, so the ray from an empty cell's centre stops at the next empty
        // cell to its east, whose state is already known: linear in the number of segments.
        for iy in 0..NY {
            let y = (iy as f64 + 0.5) / CELLS_PER_DEG - 90.0;
            for ix in (0..NX).rev() {
                if mask.cell(iy * NX + ix).is_empty() {
                    let x = (ix as f64 + 0.5) / CELLS_PER_DEG - 180.0;
                    mask.cell_land[iy * NX + ix] = mask.walk_east([x, y], iy, ix + 1);
                }
            }
        }
        mask
    }

    pub fn stats(&self) -> LandMaskStats {
        let rings = self.ring_starts.len() - 1;
        LandMaskStats {
            polygons: self.polygons,
            rings,
            vertices: self.vertices.len() - rings,
            index_entries: self.cell_segs.len(),
        }
    }

    fn cell(&self, c: usize) -> &[u32] {
        &self.cell_segs[self.cell_offsets[c] as usize..self.cell_offsets[c + 1] as usize]
    }

    fn segment(&self, s: u32) -> (Pt, Pt) {
        (self.vertices[s as usize], self.vertices[s as usize + 1])
    }

    /// Even-odd parity of the ray from `p` east, over cells `from_ix..` of row `iy`, stopping at
    /// the first empty cell. A crossing is counted only in the cell whose column contains it, so a
    /// segment listed in several cells is counted once.
    fn walk_east(&self, p: Pt, iy: usize, from_ix: usize) -> bool {
        let mut inside = false;
        for ix in from_ix..NX {
            let c = iy * NX + ix;
            let segs = self.cell(c);
            if segs.is_empty() {
                return inside ^ self.cell_land[c];
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
        let (ix, iy) = (col(lon), row(lat));
        let c = iy * NX + ix;
        if self.cell(c).is_empty() { self.cell_land[c] } else { self.walk_east([lon, lat], iy, ix) }
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
        let cells = || (iy0..=iy1).flat_map(move |iy| (ix0..=ix1).map(move |ix| iy * NX + ix));

        // Fast path: no coastline near the footprint's box, so the box is uniformly land or ocean.
        let (mut any_segments, mut any_land, mut any_ocean) = (false, false, false);
        for c in cells() {
            if !self.cell(c).is_empty() {
                any_segments = true;
                break;
            }
            if self.cell_land[c] { any_land = true } else { any_ocean = true }
        }
        // (Land and ocean cells side by side without a coast between them cannot happen, but
        // would simply fall through to the exact test.)
        if !any_segments && any_land != any_ocean {
            return any_land;
        }

        let d2 = buffer_deg * buffer_deg;
        let n = ring.len();
        for c in cells() {
            for &s in self.cell(c) {
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
        for c in cells() {
            for &s in self.cell(c) {
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

/// The footprint as points, or `None` when it cannot be judged (non-finite input).
fn prepare(footprint: &[(f64, f64)], buffer_deg: f64) -> Option<Vec<Pt>> {
    if !(buffer_deg.is_finite() && buffer_deg >= 0.0) {
        return None;
    }
    footprint.iter().map(|&(x, y)| (x.is_finite() && y.is_finite()).then_some([x, y])).collect()
}
