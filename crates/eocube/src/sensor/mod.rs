//! Sensor profiles: everything eocube knows about one sensor's products, in one place, so that
//! a third sensor is one module (issue 14, item 4).
//!
//! A [`SensorProfile`] knows the collection ids it serves, its bands (a canonical name, the
//! other names a band goes by, its native resolution) and how each catalog layout spells them
//! as asset keys ([`AssetLayout`]), its quality band and how to decode it into valid / invalid
//! ([`QualityDecoding`]), and the radiometric convention the cube is stored in
//! ([`Harmonization`]). Two profiles: [`SENTINEL2_L2A`] ([`sentinel2`]) and
//! [`LANDSAT_C2_L2`] ([`landsat`]: a `QA_PIXEL` quality band decoded bit by bit,
//! [`QualityDecoding::Bits`], and its own scale and offset). [`profile_for`] picks one by the
//! cube's collection id; every stage asks it rather than naming a sensor.
//!
//! Owns: the sensor constants (band tables, asset-key spellings, quality classes, the BOA offset
//! rule's facts). Must not touch: STAC parsing (`catalog` asks the profile for keys), pixels
//! (`mask` and `fuse` apply what the profile says), or the network.

pub mod landsat;
pub mod sentinel2;

use serde_json::{Map, Value};

pub use landsat::LANDSAT_C2_L2;
pub use sentinel2::SENTINEL2_L2A;

/// How one catalog family names a sensor's assets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetLayout {
    /// Earth Search v1 common names: `red`, `nir08`, `scl`.
    CommonName,
    /// Band numbers as in the SAFE format: `B04`, `B8A`, `SCL` (Earth Search v0, Planetary
    /// Computer, many older catalogs).
    BandNumber,
    /// Band number and resolution: `B04_10m`, `SCL_20m` (Copernicus Data Space Ecosystem).
    BandNumberResolution,
}

/// Every layout, in the order keys are tried when an item's layout is not known.
pub const LAYOUTS: [AssetLayout; 3] =
    [AssetLayout::CommonName, AssetLayout::BandNumber, AssetLayout::BandNumberResolution];

/// One band of a sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandInfo {
    /// The canonical name (Earth Search v1 asset key), e.g. `red`.
    pub name: &'static str,
    /// The band-number name, e.g. `B04`.
    pub number: &'static str,
    /// The native ground sample distance in metres.
    pub resolution_m: u32,
    /// The resolutions a `BandNumberResolution` catalog offers the band at, finest first.
    pub resolutions_m: &'static [u32],
}

impl BandInfo {
    /// The asset keys of this band in `layout`, most wanted first: for per-resolution layouts the
    /// native resolution, then finer, then coarser ones (a coarser copy is a resampled product).
    pub fn keys(&self, layout: AssetLayout) -> Vec<String> {
        match layout {
            AssetLayout::CommonName => vec![self.name.to_string()],
            AssetLayout::BandNumber => vec![self.number.to_string()],
            AssetLayout::BandNumberResolution => {
                let mut res: Vec<u32> = self.resolutions_m.to_vec();
                res.sort_by_key(|&r| (r != self.resolution_m, r));
                res.into_iter().map(|r| format!("{}_{r}m", self.number)).collect()
            }
        }
    }
}

/// How the quality band's values become valid / invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QualityDecoding {
    /// Each value is a class (Sentinel-2 SCL): a mask is a set of valid classes. `no_data` is
    /// never valid and is absence of data rather than a bad pixel.
    Classes { no_data: u8, max: u8, default_valid: &'static [u8] },
    /// Each bit (or bit pair) is a flag (Landsat `QA_PIXEL`): a mask is a set of tests
    /// ([`landsat::QaTest`]), and the band is decoded into valid / invalid / no data when it is
    /// read ([`landsat::QaDecoder`]). A pixel with `fill_bit` set is no data.
    Bits { fill_bit: u8 },
}

/// The band that says which pixels are usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualityBand {
    /// The band as the pipeline asks for it (a key of [`SensorProfile::bands`]).
    pub band: BandInfo,
    pub decoding: QualityDecoding,
}

/// How digital numbers are brought to the one convention the cube stores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Harmonization {
    /// Sentinel-2 L2A: Collection-1 digital numbers with the BOA offset `offset` included
    /// (`scale_factor`, `add_offset` as CF attributes); see [`sentinel2::offset_rule`].
    BoaOffset { offset: u16, scale_factor: f64, add_offset: f64 },
    /// Digital numbers stored as delivered, with the product's CF scale and offset (Landsat).
    Scale { scale_factor: f64, add_offset: f64 },
}

impl Harmonization {
    /// The cube's CF `(scale_factor, add_offset)`.
    pub fn scale(&self) -> (f64, f64) {
        match *self {
            Harmonization::BoaOffset { scale_factor, add_offset, .. }
            | Harmonization::Scale { scale_factor, add_offset } => (scale_factor, add_offset),
        }
    }

    /// The DN to add to an item's values (Sentinel-2's BOA offset rule; nothing for a product
    /// delivered in the cube's convention).
    pub fn offset_to_add(
        &self,
        processing_baseline: Option<&str>,
        boa_offset_applied: Option<bool>,
        collection: &str,
    ) -> u16 {
        match self {
            Harmonization::BoaOffset { .. } => {
                sentinel2::offset_rule(processing_baseline, boa_offset_applied, collection).add
            }
            Harmonization::Scale { .. } => 0,
        }
    }
}

/// Everything eocube knows about one sensor's products.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensorProfile {
    /// A short name for messages, e.g. `Sentinel-2 L2A`.
    pub name: &'static str,
    /// Collection ids of the catalogs eocube knows that serve this product.
    pub collections: &'static [&'static str],
    /// Every band, the quality band included.
    pub bands: &'static [BandInfo],
    pub quality: QualityBand,
    pub harmonization: Harmonization,
    /// Bands that are not surface reflectance: each has its own CF scale and offset and no
    /// harmonization, so a cube holds them only with bands of the same scale.
    pub quantities: &'static [Quantity],
}

/// A band that is not surface reflectance (Sentinel-2's aerosol optical thickness, Landsat's
/// surface temperature): stored as delivered, decoded by its own `scale_factor` and `add_offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    /// The band's canonical name.
    pub band: &'static str,
    /// What it is, for messages and the variable's `long_name`, e.g. `aerosol optical thickness`.
    pub what: &'static str,
    pub scale_factor: f64,
    pub add_offset: f64,
}

/// What the bands of one cube are: reflectance (the sensor's harmonized DNs) or one scale of
/// non-reflectance quantities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CubeQuantity {
    Reflectance,
    Other(&'static Quantity),
}

impl SensorProfile {
    /// The band `name` goes by (canonical name or band number in any case, `B4` for `B04`).
    pub fn band(&self, name: &str) -> Option<&'static BandInfo> {
        let lower = name.trim().to_ascii_lowercase();
        // `b4` → `b04`, so a one-digit band number finds its two-digit alias
        let padded = match lower.strip_prefix('b') {
            Some(d) if d.len() == 1 && d.chars().all(|c| c.is_ascii_digit()) => format!("b0{d}"),
            _ => lower.clone(),
        };
        self.bands.iter().find(|b| lower == b.name || padded == b.number.to_ascii_lowercase())
    }

    /// The names a band may go by: the canonical name and the band-number key, e.g. `B04` →
    /// `["red", "B04"]`. Unknown names map to themselves only.
    pub fn aliases(&self, band: &str) -> Vec<String> {
        match self.band(band) {
            Some(b) => vec![b.name.to_string(), b.number.to_string()],
            None => vec![band.trim().to_string()],
        }
    }

    /// Every asset key `band` may have in any layout, most wanted first; an unknown band only
    /// itself.
    pub fn asset_keys(&self, band: &str) -> Vec<String> {
        match self.band(band) {
            Some(b) => LAYOUTS.iter().flat_map(|l| b.keys(*l)).collect(),
            None => vec![band.trim().to_string()],
        }
    }

    /// The asset key of `assets` that holds `band`, or `None`. The canonical and band-number
    /// keys are tried first, exact spelling before case-insensitive, then the per-resolution
    /// keys (`B04_10m`). `-jp2` assets (JPEG 2000 copies in Earth Search's older collection)
    /// are never picked, since only the COGs can be read by window.
    pub fn resolve_asset_key<'a>(&self, assets: &'a Map<String, Value>, band: &str) -> Option<&'a str> {
        let usable = |k: &&String| !k.to_ascii_lowercase().ends_with("-jp2");
        let names = self.aliases(band);
        let exact_then_folded = |names: &[String]| -> Option<&'a str> {
            for name in names {
                if let Some((k, _)) = assets.get_key_value(name.as_str())
                    && usable(&k)
                {
                    return Some(k.as_str());
                }
            }
            for name in names {
                if let Some(k) = assets.keys().filter(usable).find(|k| k.eq_ignore_ascii_case(name)) {
                    return Some(k.as_str());
                }
            }
            None
        };
        if let Some(k) = exact_then_folded(&names) {
            return Some(k);
        }
        let per_resolution = self.band(band)?.keys(AssetLayout::BandNumberResolution);
        exact_then_folded(&per_resolution)
    }

    /// The non-reflectance quantity band `name` is, if it is one.
    pub fn quantity(&self, name: &str) -> Option<&'static Quantity> {
        let band = self.band(name)?;
        self.quantities.iter().find(|q| q.band == band.name)
    }

    /// What a cube of `bands` holds: reflectance, or quantities sharing one scale and offset. A
    /// mix is refused with what each band is and the fix (a cube has one scale).
    pub fn cube_quantity(&self, bands: &[String]) -> Result<CubeQuantity, String> {
        let kinds: Vec<(&String, Option<&'static Quantity>)> = bands.iter().map(|b| (b, self.quantity(b))).collect();
        let Some((_, first)) = kinds.first() else { return Ok(CubeQuantity::Reflectance) };
        let scale = |q: Option<&Quantity>| q.map(|q| (q.scale_factor, q.add_offset));
        if let Some((band, q)) = kinds.iter().find(|(_, q)| scale(*q) != scale(*first)) {
            let (one, other) = match (q, first) {
                (Some(q), _) => (q, &bands[0]),
                (None, Some(q)) => (q, *band),
                (None, None) => return Ok(CubeQuantity::Reflectance),
            };
            return Err(format!(
                "{} is the {} (value = DN * {} + {}), which cannot share a cube with {other} (a cube has one \
                 scale_factor and add_offset); build it in a cube of its own, e.g. --bands {}",
                one.band, one.what, one.scale_factor, one.add_offset, one.band
            ));
        }
        Ok(first.map_or(CubeQuantity::Reflectance, CubeQuantity::Other))
    }

    /// The CF `(scale_factor, add_offset)` of a cube of `bands` (reflectance's for a mix, which
    /// the spec refuses).
    pub fn scale_of(&self, bands: &[String]) -> (f64, f64) {
        match self.cube_quantity(bands) {
            Ok(CubeQuantity::Other(q)) => (q.scale_factor, q.add_offset),
            _ => self.harmonization.scale(),
        }
    }

    /// Whether `name` is the quality band (read for the mask, never a cube band).
    pub fn is_quality(&self, name: &str) -> bool {
        self.band(name).is_some_and(|b| b.name == self.quality.band.name)
    }

    /// The bands a cube of this profile may hold, for messages: `coastal (SR_B1), blue ...`.
    pub fn band_help(&self) -> String {
        let names: Vec<String> = self
            .bands
            .iter()
            .filter(|b| !self.is_quality(b.name))
            .map(|b| format!("{} ({})", b.name, b.number))
            .collect();
        format!(
            "use {} band names or numbers: {}; {} is read for the mask automatically",
            self.name,
            names.join(", "),
            self.quality.band.number
        )
    }

    /// The asset keys this profile understands for `bands`, in every layout, for messages.
    pub fn describe_keys(&self, band: &str) -> String {
        self.asset_keys(band).iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" or ")
    }
}

/// Every profile eocube knows; a new sensor is a module and an entry here.
pub const PROFILES: [&SensorProfile; 2] = [&SENTINEL2_L2A, &LANDSAT_C2_L2];

/// The profile of the products in `collection` (case-insensitive). An unknown id gets
/// [`SENTINEL2_L2A`]: catalogs name their Sentinel-2 collections in many ways, and a build from
/// an unknown collection has always been read as Sentinel-2.
pub fn profile_for(collection: &str) -> &'static SensorProfile {
    let c = collection.trim();
    PROFILES.iter().copied().find(|p| p.collections.iter().any(|k| k.eq_ignore_ascii_case(c))).unwrap_or(&SENTINEL2_L2A)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aliases_match_the_band_table_in_every_spelling() {
        let s2 = &SENTINEL2_L2A;
        assert_eq!(s2.aliases("B04"), ["red", "B04"]);
        assert_eq!(s2.aliases("b4"), ["red", "B04"]);
        assert_eq!(s2.aliases("NIR08"), ["nir08", "B8A"]);
        assert_eq!(s2.aliases("scl"), ["scl", "SCL"]);
        assert_eq!(s2.aliases("thumbnail"), ["thumbnail"]);
        assert_eq!(s2.band("red").map(|b| b.resolution_m), Some(10));
        assert_eq!(s2.band("scl").map(|b| b.resolution_m), Some(20));
        assert_eq!(s2.band("coastal").map(|b| b.resolution_m), Some(60));
    }

    #[test]
    fn per_resolution_keys_prefer_the_native_resolution() {
        let s2 = &SENTINEL2_L2A;
        let keys = |b: &str| s2.band(b).map(|b| b.keys(AssetLayout::BandNumberResolution)).unwrap_or_default();
        assert_eq!(keys("red"), ["B04_10m", "B04_20m", "B04_60m"]);
        assert_eq!(keys("scl"), ["SCL_20m", "SCL_60m"]);
        assert_eq!(keys("coastal"), ["B01_60m", "B01_20m"]);
        assert_eq!(keys("nir"), ["B08_10m"]);
    }

    #[test]
    fn resolve_tries_common_names_then_numbers_then_per_resolution_keys() {
        let s2 = &SENTINEL2_L2A;
        let assets = |keys: &[&str]| -> Map<String, Value> {
            keys.iter().map(|k| (k.to_string(), json!({"href": format!("{k}.tif")}))).collect()
        };
        let es = assets(&["red", "scl", "red-jp2"]);
        assert_eq!(s2.resolve_asset_key(&es, "B04"), Some("red"));
        let v0 = assets(&["B04", "SCL", "visual"]);
        assert_eq!(s2.resolve_asset_key(&v0, "red"), Some("B04"));
        let cdse = assets(&["B04_20m", "B04_10m", "SCL_60m", "SCL_20m", "TCI_10m"]);
        assert_eq!(s2.resolve_asset_key(&cdse, "red"), Some("B04_10m"));
        assert_eq!(s2.resolve_asset_key(&cdse, "scl"), Some("SCL_20m"));
        assert_eq!(s2.resolve_asset_key(&cdse, "visual"), Some("TCI_10m"));
        assert_eq!(s2.resolve_asset_key(&cdse, "nir"), None);
        let jp2_only = assets(&["red-jp2"]);
        assert_eq!(s2.resolve_asset_key(&jp2_only, "red"), None);
    }

    #[test]
    fn the_profile_is_chosen_by_collection() {
        for c in ["sentinel-2-c1-l2a", "sentinel-2-l2a", "sentinel-s2-l2a-cogs", "anything", ""] {
            assert_eq!(profile_for(c).name, "Sentinel-2 L2A", "{c}");
        }
        for c in ["landsat-c2-l2", "Landsat-C2-L2 "] {
            assert_eq!(profile_for(c).name, "Landsat Collection 2 Level-2", "{c}");
        }
        assert_eq!(profile_for("landsat-c2-l2").quality.band.name, "qa_pixel");
        assert_eq!(profile_for("sentinel-2-l2a").quality.band.name, "scl");
        // each profile's harmonization: S2 adds its BOA offset by rule, Landsat never
        let (s2, ls) = (profile_for("sentinel-2-l2a"), profile_for("landsat-c2-l2"));
        assert_eq!(s2.harmonization.scale(), (0.0001, -0.1));
        assert_eq!(s2.harmonization.offset_to_add(Some("02.14"), None, "sentinel-2-l2a"), 1000);
        assert_eq!(ls.harmonization.offset_to_add(Some("02.14"), None, "landsat-c2-l2"), 0);
    }

    #[test]
    fn landsat_items_resolve_common_names_and_file_band_names() {
        let ls = &LANDSAT_C2_L2;
        let assets = |keys: &[&str]| -> Map<String, Value> {
            keys.iter().map(|k| (k.to_string(), json!({"href": format!("{k}.tif")}))).collect()
        };
        let es = assets(&["red", "nir08", "qa_pixel", "qa_radsat", "thumbnail"]);
        assert_eq!(ls.resolve_asset_key(&es, "red"), Some("red"));
        assert_eq!(ls.resolve_asset_key(&es, "SR_B5"), Some("nir08"));
        assert_eq!(ls.resolve_asset_key(&es, "qa_pixel"), Some("qa_pixel"));
        let files = assets(&["SR_B4", "QA_PIXEL"]);
        assert_eq!(ls.resolve_asset_key(&files, "red"), Some("SR_B4"));
        assert_eq!(ls.resolve_asset_key(&files, "qa_pixel"), Some("QA_PIXEL"));
        assert!(ls.is_quality("QA_PIXEL") && !ls.is_quality("red"));
        assert!(ls.band_help().contains("nir08 (SR_B5)") && ls.band_help().contains("lwir11"));
    }
}
