//! A [`SamplePlan`]: which source pixel every pixel of a work grid samples, listed in the order
//! that reads the source window front to back.
//!
//! Why an order: a chunk in lon/lat over a UTM scene is rotated against it by the meridian
//! convergence (about 2° at 3° from the central meridian at 45° N), so one target row walks down
//! some fifty source rows, a cache line or two on each. Read in target order, every source line is
//! a cache miss the hardware prefetcher cannot foresee, and a gather costs 3-9 ns a pixel on this
//! project's machines; read in source order the same gather streams at under 1 ns a pixel. So the
//! plan sorts the target pixels of each block of target rows by the source row they fall in
//! (ties in target order), once per (source grid, work grid), and every band and scene on that
//! grid reuses it.
//!
//! By row, not by pixel: the pixels a block takes from one source row lie within a few kilobytes
//! of each window, which stay in the cache while that row is read, so sorting them by column too
//! bought the gather nothing. It cost a second counting sort, and left the pixels of one target
//! row scattered where row order keeps them in runs, which the writes into the day prefer (one
//! pass: a nearest chunk-month 6 % less CPU, docs/bench.md).
//!
//! Blocks of target rows keep the writes local (a block of the output stays in the cache while its
//! pixels arrive in source order) and give the parallel loops their unit of work.

use rayon::prelude::*;

use crate::grid::{GeoBox, Shape};

use super::kernels::{Pixel, SourceImage};
use super::map::{EDGE_EPSILON, OUTSIDE, PixelMap, Sampling};
use super::{DEFAULT_TOLERANCE, WarpError};

/// Target rows per block: 32 rows of a 1200 px chunk is 38,400 pixels, 77 KB of a u16 band,
/// and 38 blocks to share between the cores.
const ROWS_PER_BLOCK: usize = 32;

/// The source pixel (row-major index) containing the point `(x, y)` of a source of shape
/// `source`: the nearest-neighbour pick, with [`PixelMap::nearest_index`]'s edge rule.
#[inline]
fn containing_pixel(x: f64, y: f64, source: Shape) -> Option<usize> {
    let (x, y) = (x + EDGE_EPSILON, y + EDGE_EPSILON);
    (x >= 0.0 && y >= 0.0 && x < source.nx as f64 && y < source.ny as f64).then(|| y as usize * source.nx + x as usize)
}

/// One target pixel of a [`SamplePlan`] block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The source pixel (row-major index in the source window) containing the target pixel
    /// centre: the nearest-neighbour pick. [`OUTSIDE`] for a centre that only bilinear
    /// resampling counts as inside (within `EDGE_EPSILON` of the far edge).
    pub source: u32,
    /// The target pixel, as an offset from the block's first pixel.
    pub target: u32,
}

/// How the pixels of a work grid sample one source grid (pixel centres), in source row order per
/// block of target rows. Build it once per (source grid, work grid) with [`SamplePlan::new`].
#[derive(Debug, Clone)]
pub struct SamplePlan {
    map: PixelMap,
    source: Shape,
    target: Shape,
    /// Per block of [`ROWS_PER_BLOCK`] target rows, the target pixels with a source pixel,
    /// sorted by its row.
    blocks: Vec<Vec<Sample>>,
}

/// The samples of a block (pushed in target order, each with the source row it falls in) sorted
/// by that row, ties in target order: a stable counting sort (a block spans a few hundred source
/// rows, so this is linear where a comparison sort was 5 % of a job).
fn sort_by_source_row(samples: Vec<(u32, Sample)>) -> Vec<Sample> {
    let Some((lo, hi)) = samples.iter().map(|&(row, _)| (row, row)).reduce(|(lo, hi), (r, _)| (lo.min(r), hi.max(r)))
    else {
        return Vec::new();
    };
    let mut start = vec![0usize; (hi - lo) as usize + 2];
    for &(row, _) in &samples {
        start[(row - lo) as usize + 1] += 1;
    }
    for b in 1..start.len() {
        start[b] += start[b - 1];
    }
    let mut out = vec![Sample { source: 0, target: 0 }; samples.len()];
    for (row, sample) in samples {
        let b = (row - lo) as usize;
        out[start[b]] = sample;
        start[b] += 1;
    }
    out
}

impl SamplePlan {
    /// The plan of the target pixel centres of `dst` on the pixels of `src`.
    pub fn new(src: &GeoBox, dst: &GeoBox) -> Result<SamplePlan, WarpError> {
        let map = PixelMap::new(src, dst, Sampling::Centres, DEFAULT_TOLERANCE)?;
        Ok(SamplePlan::from_map(map, src.shape))
    }

    /// The plan over a map built with [`Sampling::Centres`] onto a source of shape `source`.
    pub fn from_map(map: PixelMap, source: Shape) -> SamplePlan {
        let target = Shape { ny: map.height(), nx: map.width() };
        let (nx, ny) = (target.nx, target.ny);
        let (w, h) = (source.nx as f64, source.ny as f64);
        let blocks = if nx == 0 || source.len() >= OUTSIDE as usize {
            Vec::new()
        } else {
            (0..ny.div_ceil(ROWS_PER_BLOCK))
                .into_par_iter()
                .map(|b| {
                    let (mut sx, mut sy) = (vec![0.0; nx], vec![0.0; nx]);
                    let first = b * ROWS_PER_BLOCK;
                    // (the source row the centre falls in, the sample): the first is the sort
                    // key, also where the centre is only inside for bilinear.
                    let mut samples: Vec<(u32, Sample)> = Vec::with_capacity(ROWS_PER_BLOCK * nx);
                    for i in first..(first + ROWS_PER_BLOCK).min(ny) {
                        map.row(i, &mut sx, &mut sy);
                        for (j, (&x, &y)) in sx.iter().zip(&sy).enumerate() {
                            // Bilinear's inside test (`x < w`) admits a sliver nearest's
                            // (`x + EDGE_EPSILON < w`) does not: keep it, marked OUTSIDE.
                            if !(x + EDGE_EPSILON >= 0.0 && y + EDGE_EPSILON >= 0.0 && x < w && y < h) {
                                continue;
                            }
                            let nearest = containing_pixel(x, y, source).map_or(OUTSIDE, |p| p as u32);
                            let ye = y + EDGE_EPSILON;
                            let row = (ye as usize).min(source.ny - 1) as u32;
                            samples.push((row, Sample { source: nearest, target: ((i - first) * nx + j) as u32 }));
                        }
                    }
                    sort_by_source_row(samples)
                })
                .collect()
        };
        SamplePlan { map, source, target, blocks }
    }

    /// The coordinate map the plan was built from.
    pub fn map(&self) -> &PixelMap {
        &self.map
    }

    /// Shape of the source window the plan samples.
    pub fn source_shape(&self) -> Shape {
        self.source
    }

    /// Shape of the work grid the plan fills.
    pub fn target_shape(&self) -> Shape {
        self.target
    }

    /// Target pixels per block (the last block may hold fewer).
    pub fn block_len(&self) -> usize {
        ROWS_PER_BLOCK * self.target.nx
    }

    /// The blocks, in target order: block `b` covers target pixels from `b * block_len()`.
    pub fn blocks(&self) -> &[Vec<Sample>] {
        &self.blocks
    }

    /// Nearest resampling of `src` (on the plan's source grid) into `out` (the work grid): the
    /// source pixel containing each target centre, or `fill` where there is none or it is
    /// missing. Returns the number of pixels that got a value.
    pub fn gather<T: Pixel>(&self, src: &SourceImage<'_, T>, fill: T, out: &mut [T]) -> Result<usize, WarpError> {
        self.check(src.data.len(), out.len())?;
        Ok(self.for_blocks(out, fill, |samples, out| {
            let mut count = 0;
            for s in samples {
                if s.source == OUTSIDE {
                    continue;
                }
                let v = src.data[s.source as usize];
                if src.is_valid(v) {
                    out[s.target as usize] = v;
                    count += 1;
                }
            }
            count
        }))
    }

    /// Bilinear resampling of `src` into `out`: [`super::warp_with_map`] on the plan's map (in
    /// row order: a pixel's coordinates come from its row, which source order would scatter).
    pub fn bilinear<T: Pixel>(&self, src: &SourceImage<'_, T>, fill: T, out: &mut [T]) -> Result<usize, WarpError> {
        self.check(src.data.len(), out.len())?;
        super::warp_with_map(src, &self.map, super::Resampling::Bilinear, fill, out)
    }

    fn check(&self, source: usize, target: usize) -> Result<(), WarpError> {
        if source != self.source.len() {
            return Err(WarpError::BufferSize { what: "source", expected: self.source.len(), got: source });
        }
        if target != self.target.len() {
            return Err(WarpError::BufferSize { what: "target", expected: self.target.len(), got: target });
        }
        Ok(())
    }

    /// Fills `out` with `fill`, then runs `f(samples, block of out)` over the blocks in
    /// parallel; sums what `f` returns.
    fn for_blocks<T: Pixel>(&self, out: &mut [T], fill: T, f: impl Fn(&[Sample], &mut [T]) -> usize + Sync) -> usize {
        if self.blocks.is_empty() {
            out.fill(fill);
            return 0;
        }
        out.par_chunks_mut(self.block_len())
            .zip(self.blocks.par_iter())
            .map(|(out, samples)| {
                out.fill(fill);
                f(samples, out)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{Affine, Bbox, Crs};
    use crate::warp::{Resampling, warp_with_map};

    /// A UTM 18N window and a lon/lat chunk over it, rotated against it by about 2 degrees.
    fn grids(ny: usize, nx: usize) -> (GeoBox, GeoBox) {
        let src = GeoBox::new(
            Crs::from_epsg(32618).unwrap(),
            Affine::north_up(680_000.0, 4_960_000.0, 20.0, 20.0),
            Shape { ny: 700, nx: 600 },
        );
        let r = 1.0 / 3600.0;
        let dst = GeoBox::from_bbox(
            &Bbox::new(-72.72, 44.65, -72.72 + nx as f64 * r, 44.65 + ny as f64 * r).unwrap(),
            &Crs::wgs84(),
            r,
        )
        .unwrap();
        (src, dst)
    }

    fn noise(n: usize, seed: u64) -> Vec<u16> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // One value in 16 is nodata.
                if s.is_multiple_of(16) { 0 } else { (s % 5000) as u16 + 1 }
            })
            .collect()
    }

    #[test]
    fn gather_and_bilinear_equal_the_row_kernels_on_a_rotated_grid() {
        let (src_g, dst_g) = grids(300, 350);
        let plan = SamplePlan::new(&src_g, &dst_g).unwrap();
        let data = noise(src_g.shape.len(), 7);
        let src = SourceImage { data: &data, geobox: &src_g, nodata: Some(0) };
        for (resampling, fill) in [(Resampling::Nearest, 0u16), (Resampling::Bilinear, 9)] {
            let mut want = vec![0u16; dst_g.shape.len()];
            let n_want = warp_with_map(&src, plan.map(), resampling, fill, &mut want).unwrap();
            let mut got = vec![1u16; dst_g.shape.len()];
            let n_got = match resampling {
                Resampling::Nearest => plan.gather(&src, fill, &mut got),
                _ => plan.bilinear(&src, fill, &mut got),
            }
            .unwrap();
            assert_eq!((n_got, &got), (n_want, &want), "{resampling}");
            assert!(n_got > dst_g.shape.len() / 2, "{resampling}: the case must cover the chunk ({n_got})");
        }
    }

    #[test]
    fn each_block_lists_its_pixels_once_in_source_row_order() {
        let (src_g, dst_g) = grids(100, 90);
        let plan = SamplePlan::new(&src_g, &dst_g).unwrap();
        let nx = src_g.shape.nx as u32;
        assert_eq!(plan.blocks().len(), 100usize.div_ceil(ROWS_PER_BLOCK));
        for (b, samples) in plan.blocks().iter().enumerate() {
            let rows = ROWS_PER_BLOCK.min(100 - b * ROWS_PER_BLOCK);
            let mut seen = vec![false; rows * 90];
            for s in samples {
                assert!(!std::mem::replace(&mut seen[s.target as usize], true), "block {b}: pixel twice");
            }
            let rows: Vec<u32> = samples.iter().map(|s| s.source).filter(|&s| s != OUTSIDE).map(|s| s / nx).collect();
            assert!(rows.windows(2).all(|w| w[0] <= w[1]), "block {b}: not in source row order");
            // Ties in target order: the pixels of one source row and one target row in a run.
            let keys: Vec<(u32, u32)> =
                samples.iter().filter(|s| s.source != OUTSIDE).map(|s| (s.source / nx, s.target)).collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "block {b}: a tie not in target order");
        }
    }

    #[test]
    fn the_counting_sort_equals_a_stable_comparison_sort() {
        let mut state = 0x2545f4914f6cdd1d_u64;
        let samples: Vec<(u32, Sample)> = (0..5000u32)
            .map(|t| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let source = (state % 40_000) as u32;
                (source / 137 + 20, Sample { source, target: t })
            })
            .collect();
        let mut want = samples.clone();
        want.sort_by_key(|&(row, _)| row);
        let want: Vec<Sample> = want.into_iter().map(|(_, s)| s).collect();
        assert_eq!(sort_by_source_row(samples), want);
        assert!(sort_by_source_row(Vec::new()).is_empty());
    }

    #[test]
    fn a_target_outside_the_source_gets_fill() {
        let (src_g, _) = grids(1, 1);
        // A grid north of the window: nothing to sample.
        let far =
            GeoBox::from_bbox(&Bbox::new(-72.72, 60.0, -72.7, 60.02).unwrap(), &Crs::wgs84(), 1.0 / 3600.0).unwrap();
        let plan = SamplePlan::new(&src_g, &far).unwrap();
        let data = vec![5u16; src_g.shape.len()];
        let mut out = vec![1u16; far.shape.len()];
        let n = plan.gather(&SourceImage { data: &data, geobox: &src_g, nodata: None }, 0, &mut out).unwrap();
        assert_eq!(n, 0);
        assert!(out.iter().all(|&v| v == 0));
        assert!(plan.gather(&SourceImage { data: &data[1..], geobox: &src_g, nodata: None }, 0, &mut out).is_err());
    }
}
