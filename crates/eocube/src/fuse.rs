//! Solar-day fusion and radiometric harmonization: the scenes of one solar day, already warped onto
//! the chunk grid, become one observation ([`fuse`]); every scene's values are first brought to the
//! Collection-1 convention ([`harmonize`], [`offset_to_add`]).
//!
//! Owns: the grouping and fusion order of DESIGN section 3 ([`group_by_solar_day`], [`fuse`]) and
//! the harmonization rule of section 7. Must not touch: STAC parsing (the caller hands over the
//! item properties [`offset_rule`] needs), warping, masking, or reducing.
//!
//! Order of a job: warp each scene → group by solar day → `fuse` (which harmonizes each scene with
//! its own [`Radiometry`] while copying) → mask → reduce. Harmonizing per scene, not per group,
//! matters because two scenes of one solar day can come from different processing baselines.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::time::{Date, solar_day};

/// The nodata value of Sentinel-2 L2A reflectance bands and the fill value of the cube.
pub const NODATA: u16 = 0;
/// The Collection-1 BOA offset in digital numbers (`add_offset = -0.1` at `scale_factor = 0.0001`).
pub const BOA_OFFSET: u16 = 1000;

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

/// Which fact decided an item's [`OffsetDecision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSource {
    /// `earthsearch:boa_offset_applied: true`.
    BoaOffsetApplied,
    /// `s2:processing_baseline`, compared with 04.00.
    ProcessingBaseline,
    /// No usable baseline, but a Collection-1 collection, where the offset is always included.
    Collection1,
    /// No usable baseline and no Collection-1 collection: the item is trusted as it is. Callers
    /// should report such items (they are guesses).
    Unknown,
}

/// What to add to an item's values and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffsetDecision {
    pub add: u16,
    pub source: OffsetSource,
}

/// The harmonization rule, first match wins:
///
/// 1. `earthsearch:boa_offset_applied: true`: Earth Search subtracted the offset from the data
///    (its older `sentinel-2-l2a` collection, baseline >= 04.00), so add it back: 1000.
///    `false` says only "not removed" and falls through.
/// 2. `s2:processing_baseline` < 04.00: the data never had the offset (ESA introduced it with
///    baseline 04.00 in January 2022): 1000. A baseline >= 04.00: ESA's data as delivered, offset
///    included: 0. Baselines are compared as numbers `major.minor` (`"05.11"`, `"4.0"`).
/// 3. no usable baseline in a Collection-1 collection (an id with a `c1` part, e.g.
///    `sentinel-2-c1-l2a`): the whole archive was reprocessed with the offset: 0.
/// 4. otherwise nothing is known: 0, marked [`OffsetSource::Unknown`].
pub fn offset_rule(
    processing_baseline: Option<&str>,
    boa_offset_applied: Option<bool>,
    collection: &str,
) -> OffsetDecision {
    let decide = |add, source| OffsetDecision { add, source };
    if boa_offset_applied == Some(true) {
        return decide(BOA_OFFSET, OffsetSource::BoaOffsetApplied);
    }
    match processing_baseline.and_then(parse_baseline) {
        Some(baseline) if baseline < (4, 0) => decide(BOA_OFFSET, OffsetSource::ProcessingBaseline),
        Some(_) => decide(0, OffsetSource::ProcessingBaseline),
        None if is_collection_1(collection) => decide(0, OffsetSource::Collection1),
        None => decide(0, OffsetSource::Unknown),
    }
}

/// Whether a collection id names a Collection-1 archive (offset always included), e.g. Earth
/// Search's `sentinel-2-c1-l2a`.
pub fn is_collection_1(collection: &str) -> bool {
    collection.to_ascii_lowercase().split(['-', '_']).any(|part| part == "c1")
}

/// `"05.11"` → `(5, 11)`; `"4.0"` → `(4, 0)`; anything else → `None`.
fn parse_baseline(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.trim().split_once('.')?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
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
/// never mixes scenes; its bands are harmonized with the winner's [`Radiometry`].
pub fn fuse(scenes: &[WarpedScene]) -> Result<Observation, FuseError> {
    let first = scenes.first().ok_or(FuseError::NoScenes)?;
    let (nbands, n) = (first.bands.len(), first.scl.len());
    for s in scenes {
        if s.bands.len() != nbands {
            return Err(FuseError::BandCount {
                id: s.id.clone(),
                bands: s.bands.len(),
                first_id: first.id.clone(),
                expected: nbands,
            });
        }
        let pixels = |what: String, len| FuseError::PixelCount { id: s.id.clone(), what, len, expected: n };
        if s.scl.len() != n {
            return Err(pixels("SCL".into(), s.scl.len()));
        }
        if let Some((b, band)) = s.bands.iter().enumerate().find(|(_, band)| band.len() != n) {
            return Err(pixels(format!("band {b}"), band.len()));
        }
    }
    let mut order: Vec<&WarpedScene> = scenes.iter().collect();
    order.sort_by(|a, b| (a.datetime, &a.id).cmp(&(b.datetime, &b.id)));

    let mut out = Observation { bands: vec![vec![NODATA; n]; nbands], scl: vec![0; n] };
    let mut filled = vec![false; n];
    let mut remaining = n;
    for scene in order {
        if remaining == 0 {
            break;
        }
        for p in 0..n {
            if filled[p] || scene.scl[p] == 0 || scene.bands.iter().any(|band| band[p] == NODATA) {
                continue;
            }
            filled[p] = true;
            remaining -= 1;
            out.scl[p] = scene.scl[p];
            for (o, band) in out.bands.iter_mut().zip(&scene.bands) {
                o[p] = harmonized(band[p], scene.radiometry);
            }
        }
    }
    Ok(out)
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
        let obs = fuse(&scenes).unwrap();
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
        let obs = fuse(&scenes).unwrap();
        assert_eq!(obs.bands, vec![vec![21, 12], vec![23, 14]]);
        assert_eq!(obs.scl, vec![5, 4]);
    }

    #[test]
    fn uncovered_pixels_are_no_data_and_radiometry_is_per_scene() {
        let scenes = [
            scene("old", "2021-06-01T10:00:00Z", 1000, vec![vec![500, 0, 0]], vec![4, 0, 0]),
            scene("c1", "2021-06-01T10:00:10Z", 0, vec![vec![1700, 1800, 0]], vec![4, 5, 0]),
        ];
        let obs = fuse(&scenes).unwrap();
        assert_eq!(obs.bands, vec![vec![1500, 1800, 0]]);
        assert_eq!(obs.scl, vec![4, 5, 0]);
        // A single scene is its own observation.
        let one = fuse(&scenes[1..]).unwrap();
        assert_eq!(one.bands, vec![vec![1700, 1800, 0]]);
    }

    #[test]
    fn fuse_refuses_empty_and_mismatched_input() {
        assert_eq!(fuse(&[]), Err(FuseError::NoScenes));
        let a = scene("a", "2024-04-01T10:00:00Z", 0, vec![vec![1, 2]], vec![4, 4]);
        let b = scene("b", "2024-04-01T10:00:00Z", 0, vec![vec![1, 2], vec![3, 4]], vec![4, 4]);
        let err = fuse(&[a.clone(), b]).unwrap_err();
        assert!(matches!(err, FuseError::BandCount { bands: 2, expected: 1, .. }), "{err}");
        let c = scene("c", "2024-04-01T10:00:00Z", 0, vec![vec![1, 2, 3]], vec![4, 4]);
        let err = fuse(&[a, c]).unwrap_err();
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
