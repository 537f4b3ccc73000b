//! The plan: the target grid, the time bins, the chunks worth computing and the jobs, derived
//! only from a [`CubeSpec`] and the land mask (DESIGN section 1). Deterministic, no network.
//!
//! Owns: which chunks are kept (land test on each chunk's lon/lat footprint buffered by 0.01
//! degree, or every chunk with `all_chunks`), job numbering and the size estimate. Must not touch:
//! scenes, pixels or the store.

use serde::Serialize;

use crate::grid::{Chunk, ChunkGrid, Crs, GeoBox, GridError, Shape};
use crate::spec::{CubeSpec, SpecError};
use crate::time::{TimeBin, TimeError, time_bins};

/// DESIGN section 9: a chunk is planned if its footprint, buffered by this, touches land.
pub const LAND_BUFFER_DEG: f64 = 0.01;
/// Points per chunk side when taking its footprint to lon/lat.
const FOOTPRINT_POINTS_PER_SIDE: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Grid(#[from] GridError),
    #[error(transparent)]
    Time(#[from] TimeError),
    #[error("the land mask cannot be used: {0}; rerun with `all-chunks` to plan every chunk")]
    Land(String),
}

/// Whether a closed lon/lat ring, buffered by the given degrees, touches land.
pub type IsLand = Box<dyn Fn(&[(f64, f64)], f64) -> bool + Send + Sync>;

/// Opens the land test of one planning ([`Plan::new`]), which drops it once the plan is made: a
/// land mask is large (the embedded one holds 13 MB) and a build has no use for it afterwards.
/// An error (a corrupt mask) fails the plan.
pub type LandTest<'a> = &'a dyn Fn() -> Result<IsLand, String>;

/// One unit of work: time bin `t` of chunk `(iy, ix)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Job {
    pub t: usize,
    pub iy: usize,
    pub ix: usize,
}

/// Everything derived from the spec before any work starts.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: CubeSpec,
    pub geobox: GeoBox,
    pub chunks: ChunkGrid,
    pub bins: Vec<TimeBin>,
    /// Chunks kept, row-major.
    pub kept: Vec<(usize, usize)>,
}

/// The numbers `eocube plan` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanSummary {
    pub crs: String,
    pub grid: Shape,
    pub chunk_size: usize,
    pub chunk_grid: Shape,
    pub chunks_total: usize,
    pub chunks_kept: usize,
    pub time_bins: usize,
    pub first_bin: String,
    pub last_bin: String,
    pub bands: usize,
    pub jobs: usize,
    /// Upper bound of the data written: kept chunks x bins x bands x 2 bytes, before compression.
    pub bytes_uncompressed: u64,
}

impl Plan {
    /// The plan for `spec`. `land` opens the test of which chunks touch land; it is not opened
    /// with `all_chunks`.
    pub fn new(spec: &CubeSpec, land: LandTest<'_>) -> Result<Plan, PlanError> {
        let geobox = spec.geobox()?;
        let chunks = geobox.chunks(spec.chunk_size)?;
        let bins = time_bins(spec.start, spec.end, spec.time_step)?;
        let wgs84 = Crs::wgs84();
        let is_land = if spec.all_chunks { None } else { Some(land().map_err(PlanError::Land)?) };
        let mut kept = Vec::new();
        for chunk in chunks.iter() {
            if is_land.as_ref().is_none_or(|is_land| chunk_on_land(&chunk, &wgs84, is_land)) {
                kept.push((chunk.iy, chunk.ix));
            }
        }
        Ok(Plan { spec: spec.clone(), geobox, chunks, bins, kept })
    }

    /// Every job in a stable order: chunk-major (all bins of one chunk together, so a worker
    /// reuses headers and the footprint), then time.
    pub fn jobs(&self) -> impl Iterator<Item = Job> + '_ {
        self.kept.iter().flat_map(move |&(iy, ix)| (0..self.bins.len()).map(move |t| Job { t, iy, ix }))
    }

    pub fn job_count(&self) -> usize {
        self.kept.len() * self.bins.len()
    }

    pub fn summary(&self) -> PlanSummary {
        let cs = self.spec.chunk_size as u64;
        // Edge chunks are smaller, but they are written as whole chunks of the array only up to
        // the grid edge; the bound counts full chunks.
        let bytes = self.kept.len() as u64 * self.bins.len() as u64 * cs * cs * self.spec.bands.len() as u64 * 2;
        let label = |b: Option<&TimeBin>| b.map_or(String::new(), |b| b.label().to_string());
        PlanSummary {
            crs: self.spec.crs.clone(),
            grid: self.geobox.shape,
            chunk_size: self.spec.chunk_size,
            chunk_grid: self.chunks.shape(),
            chunks_total: self.chunks.shape().len(),
            chunks_kept: self.kept.len(),
            time_bins: self.bins.len(),
            first_bin: label(self.bins.first()),
            last_bin: label(self.bins.last()),
            bands: self.spec.bands.len(),
            jobs: self.job_count(),
            bytes_uncompressed: bytes,
        }
    }
}

fn chunk_on_land(chunk: &Chunk, wgs84: &Crs, is_land: &IsLand) -> bool {
    // A chunk whose footprint cannot be taken to lon/lat (outside its projection's domain) is
    // kept: planning a chunk too many costs one empty search, dropping land costs data.
    match chunk.geobox.footprint(wgs84, FOOTPRINT_POINTS_PER_SIDE) {
        Ok(fp) => is_land(&fp.ring, LAND_BUFFER_DEG),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SpecInput;

    fn spec(all_chunks: bool) -> CubeSpec {
        SpecInput {
            bbox: Some(vec![-73.43, 42.72, -71.47, 45.02]),
            start: Some("2020-01-15".into()),
            end: Some("2020-06-30".into()),
            all_chunks: Some(all_chunks),
            ..Default::default()
        }
        .validate()
        .unwrap()
    }

    /// Land west of -72.5 degrees: a stand-in for the embedded mask in these unit tests.
    fn west_is_land() -> Result<IsLand, String> {
        Ok(Box::new(|ring, buffer| ring.iter().any(|&(lon, _)| lon - buffer < -72.5)))
    }

    #[test]
    fn vermont_plan() {
        let plan = Plan::new(&spec(true), &west_is_land).unwrap();
        let s = plan.summary();
        assert_eq!(s.grid, Shape { ny: 8280, nx: 7056 });
        assert_eq!(s.chunk_grid, Shape { ny: 7, nx: 6 });
        assert_eq!((s.chunks_total, s.chunks_kept, s.time_bins), (42, 42, 6));
        assert_eq!((s.first_bin.as_str(), s.last_bin.as_str()), ("2020-01-01", "2020-06-01"));
        assert_eq!(s.jobs, 252);
        assert_eq!(s.bytes_uncompressed, 252 * 1200 * 1200 * 3 * 2);
        assert_eq!(plan.jobs().count(), 252);
        assert_eq!(plan.jobs().next(), Some(Job { t: 0, iy: 0, ix: 0 }));
    }

    #[test]
    fn land_test_drops_chunks_and_all_chunks_keeps_them() {
        let plan = Plan::new(&spec(false), &west_is_land).unwrap();
        // columns 0..=2 start west of -72.5 (chunk 2 spans -72.77..-72.43)
        assert!(plan.kept.iter().all(|&(_, ix)| ix <= 2), "{:?}", plan.kept);
        assert_eq!(plan.kept.len(), 7 * 3);
        let corrupt = || Err("corrupt".to_string());
        let e = Plan::new(&spec(false), &corrupt).unwrap_err();
        assert!(e.to_string().contains("`all-chunks`"), "{e}");
        assert_eq!(Plan::new(&spec(true), &corrupt).unwrap().kept.len(), 42, "all-chunks opens no land test");
    }
}
