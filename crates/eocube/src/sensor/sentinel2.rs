//! The Sentinel-2 L2A profile: bands and their asset keys in Earth Search v1 / v0, Planetary
//! Computer and Copernicus Data Space layouts, the scene classification (SCL) classes, and the
//! BOA offset rule that brings every processing baseline to the Collection-1 convention
//! (DESIGN sections 6 and 7).
//!
//! Owns: these facts and [`offset_rule`]. Must not touch: pixels (`fuse` adds what the rule
//! says, `mask` applies the classes) or STAC parsing.

use super::{BandInfo, Harmonization, QualityBand, QualityDecoding, Quantity, SensorProfile};

const fn band(name: &'static str, number: &'static str, resolution_m: u32, resolutions_m: &'static [u32]) -> BandInfo {
    BandInfo { name, number, resolution_m, resolutions_m }
}

/// Earth Search v1 asset keys, their band-number names (SAFE format, Earth Search v0, Planetary
/// Computer) and native resolutions; the per-resolution copies Copernicus Data Space offers.
/// `visual` is the true-colour image, `TCI` in the SAFE format. B10 (cirrus) is not in L2A
/// products but keeps its name for L1C-style catalogs.
const BANDS: [BandInfo; 17] = [
    band("coastal", "B01", 60, &[20, 60]),
    band("blue", "B02", 10, &[10, 20, 60]),
    band("green", "B03", 10, &[10, 20, 60]),
    band("red", "B04", 10, &[10, 20, 60]),
    band("rededge1", "B05", 20, &[20, 60]),
    band("rededge2", "B06", 20, &[20, 60]),
    band("rededge3", "B07", 20, &[20, 60]),
    band("nir", "B08", 10, &[10]),
    band("nir08", "B8A", 20, &[20, 60]),
    band("nir09", "B09", 60, &[60]),
    band("cirrus", "B10", 60, &[60]),
    band("swir16", "B11", 20, &[20, 60]),
    band("swir22", "B12", 20, &[20, 60]),
    SCL,
    band("aot", "AOT", 10, &[10, 20, 60]),
    band("wvp", "WVP", 10, &[10, 20, 60]),
    band("visual", "TCI", 10, &[10, 20, 60]),
];

const SCL: BandInfo = band("scl", "SCL", 20, &[20, 60]);

/// The Sentinel-2 L2A scene classification classes (the values of the SCL band).
pub mod scl {
    pub const NO_DATA: u8 = 0;
    pub const SATURATED_OR_DEFECTIVE: u8 = 1;
    pub const DARK_AREA: u8 = 2;
    pub const CLOUD_SHADOW: u8 = 3;
    pub const VEGETATION: u8 = 4;
    pub const NOT_VEGETATED: u8 = 5;
    pub const WATER: u8 = 6;
    pub const UNCLASSIFIED: u8 = 7;
    pub const CLOUD_MEDIUM_PROBABILITY: u8 = 8;
    pub const CLOUD_HIGH_PROBABILITY: u8 = 9;
    pub const THIN_CIRRUS: u8 = 10;
    pub const SNOW_OR_ICE: u8 = 11;
    /// The largest class value.
    pub const MAX: u8 = SNOW_OR_ICE;

    /// The ESA name of class `c`, or `None` for values above [`MAX`].
    pub fn name(c: u8) -> Option<&'static str> {
        const NAMES: [&str; 12] = [
            "no data",
            "saturated or defective",
            "dark area pixels",
            "cloud shadows",
            "vegetation",
            "not vegetated",
            "water",
            "unclassified",
            "cloud medium probability",
            "cloud high probability",
            "thin cirrus",
            "snow or ice",
        ];
        NAMES.get(usize::from(c)).copied()
    }
}

/// The valid classes of the `default` mask: dark area, vegetation, not vegetated, water,
/// unclassified, snow (invalid: no data, saturated, cloud shadow, clouds, cirrus).
pub const DEFAULT_VALID: [u8; 6] = [2, 4, 5, 6, 7, 11];

/// The Collection-1 BOA offset in digital numbers (`add_offset = -0.1` at `scale_factor = 0.0001`).
pub const BOA_OFFSET: u16 = 1000;

/// Sentinel-2 Level-2A surface reflectance.
pub const SENTINEL2_L2A: SensorProfile = SensorProfile {
    name: "Sentinel-2 L2A",
    collections: &[
        // Earth Search v1 (Collection 1, and the older collection), Earth Search v0
        "sentinel-2-c1-l2a",
        "sentinel-2-l2a",
        "sentinel-s2-l2a-cogs",
    ],
    bands: &BANDS,
    quality: QualityBand {
        band: SCL,
        decoding: QualityDecoding::Classes { no_data: scl::NO_DATA, max: scl::MAX, default_valid: &DEFAULT_VALID },
    },
    harmonization: Harmonization::BoaOffset { offset: BOA_OFFSET, scale_factor: 0.0001, add_offset: -0.1 },
    // Their DNs are / 1000 with no BOA offset (ESA's L2A product format; Earth Search's
    // `raster:bands` scale 0.001), so neither the reflectance scale nor the offset rule fits.
    quantities: &[
        Quantity { band: "aot", what: "aerosol optical thickness", scale_factor: 0.001, add_offset: 0.0 },
        Quantity { band: "wvp", what: "water vapour column in cm", scale_factor: 0.001, add_offset: 0.0 },
    ],
};

/// Earth Search v0's L2A collection. Its COGs are the objects Earth Search v1's `sentinel-2-l2a`
/// items point at (the `sentinel-cogs` bucket, `sentinel-s2-l2a-cogs/` prefix), and those items
/// say `earthsearch:boa_offset_applied: true` for baselines >= 04.00: Element 84 removed the
/// offset when converting to COG. v0 items do not say so themselves, so the collection does.
pub const EARTH_SEARCH_V0_COLLECTION: &str = "sentinel-s2-l2a-cogs";

/// Which fact decided an item's [`OffsetDecision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSource {
    /// `earthsearch:boa_offset_applied: true`.
    BoaOffsetApplied,
    /// `s2:processing_baseline`, compared with 04.00.
    ProcessingBaseline,
    /// No usable baseline, but a Collection-1 collection, where the offset is always included.
    Collection1,
    /// Earth Search v0's collection, whose data never carries the offset
    /// ([`EARTH_SEARCH_V0_COLLECTION`]).
    OffsetRemovedCollection,
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
/// 2. Earth Search v0's `sentinel-s2-l2a-cogs` item that does not say (its later items carry
///    `sentinel:boa_offset_applied`, read as rule 1's field): the same objects as rule 1, offset
///    removed or (before 04.00) never there: 1000 whatever the baseline.
/// 3. `s2:processing_baseline` < 04.00: the data never had the offset (ESA introduced it with
///    baseline 04.00 in January 2022): 1000. A baseline >= 04.00: ESA's data as delivered, offset
///    included: 0. Baselines are compared as numbers `major.minor` (`"05.11"`, `"4.0"`).
/// 4. no usable baseline in a Collection-1 collection (an id with a `c1` part, e.g.
///    `sentinel-2-c1-l2a`): the whole archive was reprocessed with the offset: 0.
/// 5. otherwise nothing is known: 0, marked [`OffsetSource::Unknown`].
pub fn offset_rule(
    processing_baseline: Option<&str>,
    boa_offset_applied: Option<bool>,
    collection: &str,
) -> OffsetDecision {
    let decide = |add, source| OffsetDecision { add, source };
    if boa_offset_applied == Some(true) {
        return decide(BOA_OFFSET, OffsetSource::BoaOffsetApplied);
    }
    if collection == EARTH_SEARCH_V0_COLLECTION && boa_offset_applied.is_none() {
        return decide(BOA_OFFSET, OffsetSource::OffsetRemovedCollection);
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
pub(crate) fn parse_baseline(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.trim().split_once('.')?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The item properties that state the processing baseline, in the order they are read:
/// `s2:processing_baseline` (STAC sentinel-2 extension: Earth Search v1, Planetary Computer),
/// `processing:version` (STAC processing extension: Copernicus Data Space) and
/// `sentinel:processing_baseline` (Earth Search v0).
pub const BASELINE_PROPERTIES: [&str; 3] =
    ["s2:processing_baseline", "processing:version", "sentinel:processing_baseline"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earth_search_v0_data_always_gets_the_offset_back() {
        for baseline in [Some("02.14"), Some("04.00"), Some("05.09"), None] {
            let d = offset_rule(baseline, None, EARTH_SEARCH_V0_COLLECTION);
            assert_eq!(d, OffsetDecision { add: 1000, source: OffsetSource::OffsetRemovedCollection });
        }
        // an item that says it was not removed follows its baseline
        assert_eq!(offset_rule(Some("04.00"), Some(false), EARTH_SEARCH_V0_COLLECTION).add, 0);
        // ...and the same baselines elsewhere follow rule 3
        assert_eq!(offset_rule(Some("05.09"), None, "sentinel-2-l2a").add, 0);
    }

    #[test]
    fn the_profile_holds_the_scl_band_and_classes() {
        assert_eq!(SENTINEL2_L2A.quality.band.name, "scl");
        match SENTINEL2_L2A.quality.decoding {
            QualityDecoding::Classes { no_data, max, default_valid } => {
                assert_eq!((no_data, max, default_valid), (0, 11, &DEFAULT_VALID[..]));
            }
            other => panic!("S2 decodes classes, not {other:?}"),
        }
        assert_eq!(scl::name(8), Some("cloud medium probability"));
    }
}
