//! Solar-day fusion and radiometric harmonization: the scenes of one solar day, already warped onto
//! the chunk grid, become one observation ([`fuse`]); every scene's values are first brought to the
//! Collection-1 convention ([`harmonize`], [`offset_to_add`]).
//!
//! Owns: the grouping and fusion order of DESIGN section 3 ([`group_by_solar_day`], [`fuse`]) and
//! applying the harmonization of section 7; the rule itself (what to add to which item) is the
//! sensor profile's ([`crate::sensor::sentinel2::offset_rule`], re-exported here). Must not
//! touch: STAC parsing (the caller hands over the item properties [`offset_rule`] needs),
//! warping, masking, or reducing.
//!
//! Order of a job: warp each scene → group by solar day → `fuse` (which harmonizes each scene with
//! its own [`Radiometry`] while copying) → mask → reduce. Harmonizing per scene, not per group,
//! matters because two scenes of one solar day can come from different processing baselines.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::grid::Shape;
// The rule and its facts belong to the sensor profile; re-exported where callers found them.
pub use crate::sensor::sentinel2::{BOA_OFFSET, OffsetDecision, OffsetSource, is_collection_1, offset_rule};
use crate::time::{Date, solar_day};
use crate::warp::{OUTSIDE, PreparedTaps, Resampling, Sample, SamplePlan, SourceImage, Taps};

/// The nodata value of Sentinel-2 L2A reflectance bands and the fill value of the cube.
pub const NODATA: u16 = 0;
/// What can go wrong when fusing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FuseError {
    #[error("no scenes to fuse; a solar day with no scene has no observation, so skip it instead")]
    NoScenes,
    #[error(
        "scene {id:?} has {bands} bands but scene {first_id:?} has {expected}; every scene must carry the cube's bands in the same order"
    )]
    BandCount { id: String, bands: usize, first_id: String, expected: usize },
    #[error(
        "scene {id:?}: {what} has {len} pixels but the chunk grid has {expected}; warp every band onto the same grid"
    )]
    PixelCount { id: String, what: String, len: usize, expected: usize },
    #[error("scene {id:?}: {resampling} resampling is not done while fusing; warp its bands onto the chunk grid first")]
    NotSampled { id: String, resampling: Resampling },
}

/// How to bring one item's digital numbers to the Collection-1 convention: add `add` to every
/// non-nodata value (saturating). `add` is [`offset_to_add`] of the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Radiometry {
    pub add: u16,
}

/// The digital number to add to an item's reflectance so it follows the Collection-1 convention
/// (BOA offset +1000 included), decided from its STAC properties (DESIGN section 7). Shorthand for
/// [`offset_rule`]`(..).add`; see there for the rule.
pub fn offset_to_add(processing_baseline: Option<&str>, boa_offset_applied: Option<bool>, collection: &str) -> u16 {
    offset_rule(processing_baseline, boa_offset_applied, collection).add
}

/// Adds `radiometry.add` to every non-nodata value, saturating at 65535. Nodata (0) stays 0.
pub fn harmonize(values: &mut [u16], radiometry: Radiometry) {
    if radiometry.add == 0 {
        return;
    }
    for v in values.iter_mut() {
        *v = harmonized(*v, radiometry);
    }
}

/// One value of [`harmonize`].
#[inline]
fn harmonized(v: u16, radiometry: Radiometry) -> u16 {
    if v == NODATA { NODATA } else { v.saturating_add(radiometry.add) }
}

/// One scene warped onto the chunk grid: `bands[b][p]` in the cube's band order, `scl[p]`, all of
/// the same pixel count, and the radiometry of its item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarpedScene {
    pub id: String,
    pub datetime: DateTime<Utc>,
    pub radiometry: Radiometry,
    pub bands: Vec<Vec<u16>>,
    pub scl: Vec<u8>,
}

/// One observation (one solar day) on the chunk grid: harmonized bands and the SCL of the scene
/// each pixel came from. Pixels no scene covered are 0 everywhere (SCL 0 = no data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub bands: Vec<Vec<u16>>,
    pub scl: Vec<u8>,
}

/// Groups scenes by their [`solar_day`] at the chunk centre's longitude, in date order, each group
/// sorted by `(datetime, id)`: the fusion order. `key` gives a scene's datetime and id.
pub fn group_by_solar_day<T, F>(scenes: Vec<T>, lon_center: f64, key: F) -> Vec<(Date, Vec<T>)>
where
    F: Fn(&T) -> (DateTime<Utc>, &str),
{
    let mut groups: BTreeMap<Date, Vec<T>> = BTreeMap::new();
    for s in scenes {
        groups.entry(solar_day(key(&s).0, lon_center)).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|(day, mut group)| {
            group.sort_by(|a, b| key(a).cmp(&key(b)));
            (day, group)
        })
        .collect()
}

/// Fuses the scenes of one solar day into one observation. Per pixel, scenes are taken in
/// `(datetime, id)` order (whatever order they are given in) and the first one *with data* there
/// wins: SCL != 0 and every band != 0. The winner's bands and SCL are copied together, so a pixel
/// never mixes scenes; its bands are harmonized with the winner's [`Radiometry`]. A [`Day`] fed
/// the scenes in that order.
pub fn fuse(scenes: Vec<WarpedScene>) -> Result<Observation, FuseError> {
    let first = scenes.first().ok_or(FuseError::NoScenes)?;
    let mut day = Day::new(first.scl.len(), first.bands.len());
    let mut order = scenes;
    order.sort_by(|a, b| (a.datetime, &a.id).cmp(&(b.datetime, &b.id)));
    for scene in &order {
        day.add_warped(scene)?;
    }
    Ok(day.into_observation())
}

/// One solar day being fused: scenes are added in fusion order (`(datetime, id)`), each filling
/// the pixels no earlier scene filled (see [`fuse`] for the rule). A pixel is filled once its SCL
/// is not 0 (a winner always has SCL != 0), so the SCL is the record of what is still open and a
/// later scene touches only those pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    obs: Observation,
    /// The id of the first scene added, for error messages.
    first_id: Option<String>,
}

/// A scene whose bands (SCL included) are all windows of one source grid, sampled while it is
/// fused: nothing of it is warped into a buffer of its own.
#[derive(Debug, Clone)]
pub struct SampledScene<'a> {
    pub id: &'a str,
    pub radiometry: Radiometry,
    /// How the work grid samples the windows' grid.
    pub plan: &'a SamplePlan,
    /// Of the reflectance bands: [`Resampling::Nearest`] or [`Resampling::Bilinear`]; SCL is
    /// always nearest.
    pub resampling: Resampling,
    pub bands: Vec<SourceImage<'a, u16>>,
    pub scl: SourceImage<'a, u8>,
}

impl Day {
    /// An empty day of `pixels` pixels and `bands` bands: every pixel open.
    pub fn new(pixels: usize, bands: usize) -> Day {
        // One zeroed allocation per band: `vec![vec![..]; bands]` would copy the first band's
        // zeros into every other, a pass over memory a fresh allocation does not need.
        let bands = (0..bands).map(|_| vec![NODATA; pixels]).collect();
        Day { obs: Observation { bands, scl: vec![0; pixels] }, first_id: None }
    }

    /// The day's observation.
    pub fn into_observation(self) -> Observation {
        self.obs
    }

    fn check_bands(&mut self, id: &str, bands: usize) -> Result<(), FuseError> {
        let first_id = self.first_id.get_or_insert_with(|| id.to_string());
        if bands != self.obs.bands.len() {
            return Err(FuseError::BandCount {
                id: id.to_string(),
                bands,
                first_id: first_id.clone(),
                expected: self.obs.bands.len(),
            });
        }
        Ok(())
    }

    /// Adds a scene already warped onto the work grid; returns the pixels it filled.
    pub fn add_warped(&mut self, scene: &WarpedScene) -> Result<usize, FuseError> {
        self.check_bands(&scene.id, scene.bands.len())?;
        let n = self.obs.scl.len();
        let pixels = |what: String, len| FuseError::PixelCount { id: scene.id.clone(), what, len, expected: n };
        if scene.scl.len() != n {
            return Err(pixels("SCL".into(), scene.scl.len()));
        }
        if let Some((b, band)) = scene.bands.iter().enumerate().find(|(_, band)| band.len() != n) {
            return Err(pixels(format!("band {b}"), band.len()));
        }
        Ok(for_blocks(&mut self.obs, FUSE_BLOCK, |offset, scl, bands| {
            let mut filled = 0;
            for (i, s) in scl.iter_mut().enumerate() {
                let p = offset + i;
                if *s != 0 || scene.scl[p] == 0 || scene.bands.iter().any(|b| b[p] == NODATA) {
                    continue;
                }
                *s = scene.scl[p];
                for (o, band) in bands.iter_mut().zip(&scene.bands) {
                    o[i] = harmonized(band[p], scene.radiometry);
                }
                filled += 1;
            }
            filled
        }))
    }

    /// Adds a scene sampled from its windows through `scene.plan` (in the plan's source order:
    /// the windows are read front to back); returns the pixels it filled. The values are those
    /// warping each band with the same plan and then [`Day::add_warped`] would give.
    pub fn add_sampled(&mut self, scene: &SampledScene<'_>) -> Result<usize, FuseError> {
        self.check_bands(scene.id, scene.bands.len())?;
        let n = self.obs.scl.len();
        let plan = scene.plan;
        let bad = |what: String, len, expected| FuseError::PixelCount { id: scene.id.to_string(), what, len, expected };
        if plan.target_shape().len() != n {
            return Err(bad("the sampling plan".into(), plan.target_shape().len(), n));
        }
        let source = plan.source_shape();
        if scene.scl.data.len() != source.len() {
            return Err(bad("the SCL window".into(), scene.scl.data.len(), source.len()));
        }
        if let Some((b, band)) = scene.bands.iter().enumerate().find(|(_, b)| b.data.len() != source.len()) {
            return Err(bad(format!("the window of band {b}"), band.data.len(), source.len()));
        }
        if !matches!(scene.resampling, Resampling::Nearest | Resampling::Bilinear) {
            return Err(FuseError::NotSampled { id: scene.id.to_string(), resampling: scene.resampling });
        }
        let block_len = plan.block_len();
        let nx = plan.target_shape().nx;
        Ok(for_blocks(&mut self.obs, block_len, |offset, scl, out| {
            let Some(samples) = plan.blocks().get(offset / block_len) else { return 0 };
            let block = Block { scene, samples, scl, out };
            // In the plan's source order: every window is read front to back.
            match scene.resampling {
                Resampling::Nearest => block.fill(&Nearest),
                _ => {
                    // The block's coordinates row by row first (the map interpolates along rows),
                    // then read in source order from this small buffer.
                    let (mut xs, mut ys) = (vec![0.0; block.scl.len()], vec![0.0; block.scl.len()]);
                    for ((r, x), y) in xs.chunks_mut(nx.max(1)).enumerate().zip(ys.chunks_mut(nx.max(1))) {
                        plan.map().row(offset / nx.max(1) + r, x, y);
                    }
                    block.fill(&Bilinear { xs: &xs, ys: &ys, source })
                }
            }
        }))
    }
}

/// How [`Day::add_sampled`] reads a band's value for a target pixel: `prepare` the work the bands
/// share (`None`: no data there), then `value` per band (`None`: no valid value).
trait Kernel {
    type Prepared;
    fn prepare(&self, target: usize) -> Option<Self::Prepared>;
    fn value(&self, prepared: &Self::Prepared, source: usize, band: &SourceImage<'_, u16>) -> Option<u16>;
}

/// The sample's own source pixel.
struct Nearest;

impl Kernel for Nearest {
    type Prepared = ();
    #[inline(always)]
    fn prepare(&self, _: usize) -> Option<()> {
        Some(())
    }
    #[inline(always)]
    fn value(&self, _: &(), source: usize, band: &SourceImage<'_, u16>) -> Option<u16> {
        Some(band.data[source]).filter(|&v| band.is_valid(v))
    }
}

/// The 2 x 2 source pixels around the target pixel's centre, at `(xs[t], ys[t])` in the windows'
/// pixel coordinates (`t` the pixel's offset in the block).
struct Bilinear<'b> {
    xs: &'b [f64],
    ys: &'b [f64],
    source: Shape,
}

impl Kernel for Bilinear<'_> {
    type Prepared = PreparedTaps;
    #[inline(always)]
    fn prepare(&self, t: usize) -> Option<PreparedTaps> {
        Taps::at(self.xs[t], self.ys[t], self.source.nx, self.source.ny).map(|taps| taps.prepare())
    }
    #[inline(always)]
    fn value(&self, taps: &PreparedTaps, _: usize, band: &SourceImage<'_, u16>) -> Option<u16> {
        taps.apply(band)
    }
}

/// One block of target pixels of [`Day::add_sampled`]: the scene, the block's samples (in source
/// order) and the block's slices of the day's SCL and bands.
struct Block<'s, 'a, 'o, 'b> {
    scene: &'s SampledScene<'a>,
    samples: &'s [Sample],
    scl: &'o mut [u8],
    out: &'o mut [&'b mut [u16]],
}

impl Block<'_, '_, '_, '_> {
    /// Takes every open target pixel of the block from the scene where the scene has data there:
    /// its SCL (nearest: the sample's source pixel) not 0 and valid, then every band's value (by
    /// `kernel`) not 0 and valid. Returns the pixels taken. The usual band counts run as arrays,
    /// the per-pixel work straight code: this pass is most of a job's CPU after the inflate.
    fn fill<K: Kernel>(self, kernel: &K) -> usize {
        match self.scene.bands.len() {
            1 => self.fill_with(kernel, &mut [NODATA; 1]),
            2 => self.fill_with(kernel, &mut [NODATA; 2]),
            3 => self.fill_with(kernel, &mut [NODATA; 3]),
            4 => self.fill_with(kernel, &mut [NODATA; 4]),
            n => self.fill_with(kernel, &mut vec![NODATA; n]),
        }
    }

    /// [`Block::fill`] with `values`, one per band, as scratch. Inlined into each arm above, so
    /// for an array the band count is a constant and the loops over the bands are straight code.
    #[inline(always)]
    fn fill_with<K: Kernel>(self, kernel: &K, values: &mut [u16]) -> usize {
        let Block { scene, samples, scl, out } = self;
        let n = values.len();
        let (Some(bands), Some(out)) = (scene.bands.get(..n), out.get_mut(..n)) else { return 0 };
        let mut filled = 0;
        'samples: for smp in samples {
            let Some((t, src, class)) = open_with_data(scene, scl, smp) else { continue };
            let Some(p) = kernel.prepare(t) else { continue };
            for (v, band) in values.iter_mut().zip(bands) {
                match kernel.value(&p, src, band) {
                    Some(x) if x != NODATA => *v = x,
                    _ => continue 'samples,
                }
            }
            scl[t] = class;
            for (o, &v) in out.iter_mut().zip(values.iter()) {
                o[t] = harmonized(v, scene.radiometry);
            }
            filled += 1;
        }
        filled
    }
}

/// The target pixel, source pixel and SCL class of a sample whose target pixel is still open and
/// whose source pixel has a valid SCL class: the test every scene pixel passes first, before any
/// band is read.
#[inline(always)]
fn open_with_data(scene: &SampledScene<'_>, scl: &[u8], smp: &Sample) -> Option<(usize, usize, u8)> {
    let t = smp.target as usize;
    if smp.source == OUTSIDE || scl[t] != 0 {
        return None;
    }
    let src = smp.source as usize;
    let class = scene.scl.data[src];
    (class != 0 && scene.scl.is_valid(class)).then_some((t, src, class))
}

/// Pixels per parallel block of [`Day::add_warped`].
const FUSE_BLOCK: usize = 1 << 14;

/// Runs `f(offset, scl, bands)` over blocks of `block_len` pixels of an observation in parallel,
/// `offset` the block's first pixel, `scl` and each of `bands` that block's slice; sums what `f`
/// returns.
fn for_blocks(
    obs: &mut Observation,
    block_len: usize,
    f: impl Fn(usize, &mut [u8], &mut [&mut [u16]]) -> usize + Sync,
) -> usize {
    use rayon::prelude::*;
    let block_len = block_len.max(1);
    let mut band_blocks: Vec<std::slice::ChunksMut<'_, u16>> =
        obs.bands.iter_mut().map(|b| b.chunks_mut(block_len)).collect();
    type Block<'a> = (usize, &'a mut [u8], Vec<&'a mut [u16]>);
    let blocks: Vec<Block<'_>> = obs
        .scl
        .chunks_mut(block_len)
        .enumerate()
        .map(|(k, scl)| (k * block_len, scl, band_blocks.iter_mut().filter_map(Iterator::next).collect()))
        .collect();
    blocks.into_par_iter().map(|(offset, scl, mut bands)| f(offset, scl, &mut bands)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn scene(id: &str, datetime: &str, add: u16, bands: Vec<Vec<u16>>, scl: Vec<u8>) -> WarpedScene {
        WarpedScene { id: id.into(), datetime: dt(datetime), radiometry: Radiometry { add }, bands, scl }
    }

    #[test]
    fn offset_rule_on_the_earth_search_fixtures() {
        // tests/data/stac/sentinel-2-l2a__S2A_13TDE_20231008_0_L2A.json: older collection,
        // baseline 05.09, `earthsearch:boa_offset_applied: true`.
        assert_eq!(offset_to_add(Some("05.09"), Some(true), "sentinel-2-l2a"), 1000);
        // sentinel-2-l2a__S2B_20EPT_20250731_0_L2A.json: same, baseline 05.11.
        assert_eq!(offset_to_add(Some("05.11"), Some(true), "sentinel-2-l2a"), 1000);
        // sentinel-2-c1-l2a__S2B_T20EPT_20250731T131905_L2A.json: Collection 1, baseline 05.11,
        // no boa flag: the offset is included.
        assert_eq!(offset_to_add(Some("05.11"), None, "sentinel-2-c1-l2a"), 0);
        // The 13TDE item collection: baseline 05.10.
        assert_eq!(offset_to_add(Some("05.10"), None, "sentinel-2-c1-l2a"), 0);
    }

    #[test]
    fn offset_rule_by_processing_baseline() {
        assert_eq!(offset_to_add(Some("03.01"), None, "sentinel-2-l2a"), 1000);
        assert_eq!(offset_to_add(Some("02.14"), Some(false), "sentinel-2-l2a"), 1000);
        assert_eq!(offset_to_add(Some("03.99"), None, "sentinel-2-l2a"), 1000);
        assert_eq!(offset_to_add(Some("04.00"), None, "sentinel-2-l2a"), 0);
        assert_eq!(offset_to_add(Some("4.0"), Some(false), "sentinel-2-l2a"), 0);
        assert_eq!(offset_to_add(Some("05.11"), Some(false), "sentinel-2-l2a"), 0);
        // The flag wins over the baseline.
        assert_eq!(offset_to_add(Some("03.01"), Some(true), "sentinel-2-l2a"), 1000);
        // No usable baseline: certain for Collection 1, a guess elsewhere (and said so).
        let c1 = OffsetDecision { add: 0, source: OffsetSource::Collection1 };
        let unknown = OffsetDecision { add: 0, source: OffsetSource::Unknown };
        assert_eq!(offset_rule(None, None, "sentinel-2-c1-l2a"), c1);
        assert_eq!(offset_rule(Some("N/A"), None, "sentinel-2-l2a"), unknown);
        assert_eq!(offset_rule(Some(""), Some(false), "sentinel-2-l2a"), unknown);
        assert_eq!(offset_rule(Some("05"), None, "sentinel-2-l2a"), unknown);
        assert_eq!(offset_rule(Some("05.11"), None, "x").source, OffsetSource::ProcessingBaseline);
        assert_eq!(offset_rule(Some("05.11"), Some(true), "x").source, OffsetSource::BoaOffsetApplied);
        assert!(is_collection_1("sentinel-2-c1-l2a") && !is_collection_1("sentinel-2-l2a"));
    }

    /// The same rule read from the real items in `tests/data/stac` (copies of the Earth Search
    /// fixtures), so a change in how those properties are spelled breaks here first.
    #[test]
    fn offset_rule_on_the_real_items() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/stac");
        for (file, expected) in [
            ("sentinel-2-l2a__S2A_13TDE_20231008_0_L2A.json", 1000),
            ("sentinel-2-l2a__S2B_20EPT_20250731_0_L2A.json", 1000),
            ("sentinel-2-c1-l2a__S2B_T20EPT_20250731T131905_L2A.json", 0),
            ("sentinel-2-c1-l2a__S2B_T24MWV_20250731T130245_L2A.json", 0),
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let item: serde_json::Value = serde_json::from_str(&text).unwrap();
            let props = &item["properties"];
            let add = offset_to_add(
                props["s2:processing_baseline"].as_str(),
                props["earthsearch:boa_offset_applied"].as_bool(),
                item["collection"].as_str().unwrap(),
            );
            assert_eq!(add, expected, "{file}");
        }
    }

    #[test]
    fn harmonize_adds_to_data_only_and_saturates() {
        let mut v = [0, 1, 500, 64_000, 65_000, u16::MAX];
        harmonize(&mut v, Radiometry { add: 1000 });
        assert_eq!(v, [0, 1001, 1500, 65_000, u16::MAX, u16::MAX]);
        let mut v = [0, 7];
        harmonize(&mut v, Radiometry::default());
        assert_eq!(v, [0, 7]);
    }

    #[test]
    fn first_scene_with_data_wins_in_datetime_then_id_order() {
        // Given in the wrong order on purpose: b (10:00), a (10:00), c (09:00).
        let scenes = [
            scene("b", "2024-04-01T10:00:00Z", 0, vec![vec![20, 20, 20, 20]], vec![4, 4, 4, 4]),
            scene("a", "2024-04-01T10:00:00Z", 0, vec![vec![10, 10, 0, 10]], vec![4, 0, 4, 4]),
            scene("c", "2024-04-01T09:00:00Z", 0, vec![vec![30, 0, 0, 0]], vec![9, 0, 0, 0]),
        ];
        let obs = fuse(scenes.to_vec()).unwrap();
        // p0: c is first (earliest) and has data, cloud or not: the mask decides later.
        // p1: c no data, a has SCL 0 -> b. p2: c none, a reflectance 0 -> b. p3: c none -> a.
        assert_eq!(obs.bands, vec![vec![30, 20, 20, 10]]);
        assert_eq!(obs.scl, vec![9, 4, 4, 4]);
    }

    #[test]
    fn a_pixel_never_mixes_scenes_across_bands() {
        let scenes = [
            scene("a", "2024-04-01T10:00:00Z", 0, vec![vec![11, 12], vec![0, 14]], vec![4, 4]),
            scene("b", "2024-04-01T10:00:05Z", 0, vec![vec![21, 22], vec![23, 24]], vec![5, 5]),
        ];
        let obs = fuse(scenes.to_vec()).unwrap();
        assert_eq!(obs.bands, vec![vec![21, 12], vec![23, 14]]);
        assert_eq!(obs.scl, vec![5, 4]);
    }

    #[test]
    fn uncovered_pixels_are_no_data_and_radiometry_is_per_scene() {
        let scenes = [
            scene("old", "2021-06-01T10:00:00Z", 1000, vec![vec![500, 0, 0]], vec![4, 0, 0]),
            scene("c1", "2021-06-01T10:00:10Z", 0, vec![vec![1700, 1800, 0]], vec![4, 5, 0]),
        ];
        let obs = fuse(scenes.to_vec()).unwrap();
        assert_eq!(obs.bands, vec![vec![1500, 1800, 0]]);
        assert_eq!(obs.scl, vec![4, 5, 0]);
        // A single scene is its own observation.
        let one = fuse(scenes[1..].to_vec()).unwrap();
        assert_eq!(one.bands, vec![vec![1700, 1800, 0]]);
    }

    /// The rule of [`fuse`] written per pixel, the slow way.
    fn fuse_reference(scenes: &[WarpedScene]) -> Observation {
        let mut order: Vec<&WarpedScene> = scenes.iter().collect();
        order.sort_by(|a, b| (a.datetime, &a.id).cmp(&(b.datetime, &b.id)));
        let (nb, n) = (scenes[0].bands.len(), scenes[0].scl.len());
        let mut out = Observation { bands: vec![vec![0; n]; nb], scl: vec![0; n] };
        for p in 0..n {
            if let Some(s) = order.iter().find(|s| s.scl[p] != 0 && s.bands.iter().all(|b| b[p] != 0)) {
                out.scl[p] = s.scl[p];
                for b in 0..nb {
                    out.bands[b][p] = harmonized(s.bands[b][p], s.radiometry);
                }
            }
        }
        out
    }

    #[test]
    fn fuse_equals_the_per_pixel_rule_across_blocks() {
        let n = 3 * FUSE_BLOCK + 5;
        let mut state = 0x2545f4914f6cdd1d_u64;
        let mut next = move |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        for nscenes in 1..4 {
            let scenes: Vec<WarpedScene> = (0..nscenes)
                .map(|k| {
                    let bands = (0..3).map(|_| (0..n).map(|_| next(4) as u16 * 700).collect()).collect();
                    let scl = (0..n).map(|_| next(3) as u8 * 4).collect();
                    let t = format!("2024-04-01T10:00:0{}Z", 3 - k);
                    scene(&format!("s{k}"), &t, [0, 1000, 0][k], bands, scl)
                })
                .collect();
            assert_eq!(fuse(scenes.clone()).unwrap(), fuse_reference(&scenes), "{nscenes} scenes");
        }
    }

    /// Two scenes of one solar day sampled from their windows while fused give the day that
    /// warping each band first and fusing the warped scenes gives, for nearest and bilinear, for
    /// a band count of the array path (3) and of the general one (5).
    #[test]
    fn sampling_while_fusing_equals_warping_then_fusing() {
        use crate::grid::{Affine, Bbox, Crs, GeoBox, Shape};
        let src_g = GeoBox::new(
            Crs::from_epsg(32618).unwrap(),
            Affine::north_up(680_000.0, 4_960_000.0, 20.0, 20.0),
            Shape { ny: 400, nx: 380 },
        );
        let r = 1.0 / 3600.0;
        // Partly off the window, so some pixels stay open.
        let work = GeoBox::from_bbox(
            &Bbox::new(-72.72, 44.65, -72.72 + 300.0 * r, 44.65 + 250.0 * r).unwrap(),
            &Crs::wgs84(),
            r,
        )
        .unwrap();
        let plan = SamplePlan::new(&src_g, &work).unwrap();
        let mut state = 0x853c49e6748fea9b_u64;
        let mut next = move |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        let n_src = src_g.shape.len();
        for (nbands, resampling) in
            [3, 5].into_iter().flat_map(|n| [(n, Resampling::Nearest), (n, Resampling::Bilinear)])
        {
            // Per scene: the bands (one value in 20 is 0, some are the nodata 7) and SCL (0 a tenth).
            let windows: Vec<(Vec<Vec<u16>>, Vec<u8>)> = (0..2)
                .map(|_| {
                    let bands = (0..nbands)
                        .map(|_| (0..n_src).map(|_| if next(20) == 0 { 0 } else { next(4000) as u16 + 1 }).collect())
                        .collect();
                    let scl = (0..n_src).map(|_| if next(10) == 0 { 0 } else { next(11) as u8 + 1 }).collect();
                    (bands, scl)
                })
                .collect();
            let (mut sampled, mut warped) = (Day::new(work.shape.len(), nbands), Day::new(work.shape.len(), nbands));
            for (k, (bands, scl)) in windows.iter().enumerate() {
                let radiometry = Radiometry { add: [1000, 0][k] };
                fn image<'a>(b: &'a [u16], g: &'a GeoBox) -> SourceImage<'a, u16> {
                    SourceImage { data: b, geobox: g, nodata: Some(7) }
                }
                let scl_image = SourceImage { data: scl.as_slice(), geobox: &src_g, nodata: None };
                let id = format!("s{k}");
                let a = sampled
                    .add_sampled(&SampledScene {
                        id: &id,
                        radiometry,
                        plan: &plan,
                        resampling,
                        bands: bands.iter().map(|b| image(b, &src_g)).collect(),
                        scl: scl_image,
                    })
                    .unwrap();
                let mut out_bands = Vec::new();
                for b in bands {
                    let mut out = vec![0u16; work.shape.len()];
                    match resampling {
                        Resampling::Nearest => plan.gather(&image(b, &src_g), 0, &mut out),
                        _ => plan.bilinear(&image(b, &src_g), 0, &mut out),
                    }
                    .unwrap();
                    out_bands.push(out);
                }
                let mut out_scl = vec![0u8; work.shape.len()];
                plan.gather(&scl_image, 0, &mut out_scl).unwrap();
                let scene = WarpedScene {
                    id,
                    datetime: dt("2024-04-01T10:00:00Z"),
                    radiometry,
                    bands: out_bands,
                    scl: out_scl,
                };
                let b = warped.add_warped(&scene).unwrap();
                assert_eq!(a, b, "{resampling}, {nbands} bands: pixels filled by scene {k}");
                assert!(a > 0, "{resampling}, {nbands} bands: scene {k} fills something");
            }
            assert_eq!(sampled, warped, "{resampling}, {nbands} bands");
            let obs = sampled.into_observation();
            assert!(obs.scl.contains(&0), "{resampling}, {nbands} bands: some pixels stay open");
        }
    }

    #[test]
    fn fuse_refuses_empty_and_mismatched_input() {
        assert_eq!(fuse(Vec::new()), Err(FuseError::NoScenes));
        let a = scene("a", "2024-04-01T10:00:00Z", 0, vec![vec![1, 2]], vec![4, 4]);
        let b = scene("b", "2024-04-01T10:00:00Z", 0, vec![vec![1, 2], vec![3, 4]], vec![4, 4]);
        let err = fuse(vec![a.clone(), b]).unwrap_err();
        assert!(matches!(err, FuseError::BandCount { bands: 2, expected: 1, .. }), "{err}");
        let c = scene("c", "2024-04-01T10:00:00Z", 0, vec![vec![1, 2, 3]], vec![4, 4]);
        let err = fuse(vec![a, c]).unwrap_err();
        assert!(err.to_string().contains("\"c\": band 0 has 3 pixels but the chunk grid has 2"), "{err}");
    }

    #[test]
    fn groups_by_solar_day_in_fusion_order() {
        // At lon 170 (+11 h), 23:30 UTC on Jan 31 is Feb 1 like 00:30 UTC on Feb 1.
        let items = vec![
            ("z", dt("2020-02-01T00:30:00Z")),
            ("b", dt("2020-01-31T23:30:00Z")),
            ("a", dt("2020-01-31T23:30:00Z")),
            ("x", dt("2020-01-30T23:30:00Z")),
        ];
        let groups = group_by_solar_day(items, 170.0, |(id, t)| (*t, *id));
        let ids: Vec<(Date, Vec<&str>)> =
            groups.into_iter().map(|(d, g)| (d, g.into_iter().map(|(id, _)| id).collect())).collect();
        let d = |m, day| Date::from_ymd_opt(2020, m, day).unwrap();
        assert_eq!(ids, vec![(d(1, 31), vec!["x"]), (d(2, 1), vec!["a", "b", "z"])]);
    }
}
