//! The user's choices: [`SpecInput`] (raw values from flags and a TOML file) validated once into a
//! [`CubeSpec`] that the rest of eocube trusts.
//!
//! Owns: the names of the settings (the TOML keys; the CLI's flags are the same words with `--`),
//! their defaults, and every check on their values, with messages that name the setting and
//! what would be valid. Messages say `bbox`, never `--bbox`: how a setting is spelled on a
//! command line is the CLI's business.
//! Must not touch: the network, the land mask or the grid arithmetic (that is `plan`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::preset::{CatalogPreset, PLANETARY_COMPUTER_TOKEN_URL};
use crate::grid::{Bbox, Crs, GeoBox};
use crate::index::SpectralIndex;
use crate::mask::MaskSpec;
use crate::reduce::Reducer;
use crate::time::{Date, TimeStep, time_bins};
use crate::warp::Resampling;

/// Earth Search v1, the default catalog.
pub const DEFAULT_STAC_URL: &str = "https://earth-search.aws.element84.com/v1";
pub const DEFAULT_COLLECTION: &str = "sentinel-2-c1-l2a";
pub const DEFAULT_CHUNK_SIZE: usize = 1200;
/// 1/3600 degree (about 30 m) for geographic grids; projected grids default to 30 CRS units.
pub const DEFAULT_RESOLUTION_DEG: f64 = 1.0 / 3600.0;
pub const DEFAULT_RESOLUTION_PROJECTED: f64 = 30.0;

/// A setting that is not valid, named as the user wrote it. The message starts with the
/// setting's name (`bbox -73 45 -71: ...`), so that a front end can show it in its own spelling.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{setting} {value}: {reason}")]
pub struct SpecError {
    /// The setting's name (TOML key), e.g. `bbox`, `chunk-size`.
    pub setting: &'static str,
    pub value: String,
    /// What is wrong and what would be valid.
    pub reason: String,
}

fn bad(setting: &'static str, value: impl std::fmt::Display, reason: impl Into<String>) -> SpecError {
    SpecError { setting, value: value.to_string(), reason: reason.into() }
}

/// A resolution given as a number or as a fraction such as `"1/3600"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ResolutionRepr")]
pub struct Resolution(pub f64);

#[derive(Deserialize)]
#[serde(untagged)]
enum ResolutionRepr {
    Number(f64),
    Text(String),
}

impl TryFrom<ResolutionRepr> for Resolution {
    type Error = String;
    fn try_from(r: ResolutionRepr) -> Result<Self, String> {
        match r {
            ResolutionRepr::Number(v) => Ok(Resolution(v)),
            ResolutionRepr::Text(s) => s.parse(),
        }
    }
}

impl std::str::FromStr for Resolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let num = |x: &str| x.trim().parse::<f64>().ok();
        let v = match t.split_once('/') {
            Some((a, b)) => num(a).zip(num(b)).map(|(a, b)| a / b),
            None => num(t),
        };
        v.map(Resolution).ok_or_else(|| format!("{s:?} is not a number or a fraction such as 1/3600"))
    }
}

/// Every setting as given, none required yet: from a TOML file (`--config`) and from flags.
/// Keys are the flag names with `_` for `-`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecInput {
    pub bbox: Option<Vec<f64>>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub time_step: Option<String>,
    pub crs: Option<String>,
    pub resolution: Option<Resolution>,
    pub chunk_size: Option<i64>,
    pub bands: Option<Vec<String>>,
    pub collection: Option<String>,
    /// A catalog eocube knows by name (`earth-search`, `earth-search-v0`, `cdse`,
    /// `planetary-computer`): the defaults of `stac-url` and `collection`, and signing.
    pub catalog: Option<String>,
    pub stac_url: Option<String>,
    /// The SAS token API of a `planetary-computer` catalog (a stand-in for tests, a mirror).
    pub sas_token_url: Option<String>,
    pub items: Option<PathBuf>,
    pub cloud_cover_max: Option<f64>,
    pub mask: Option<String>,
    pub mask_dilation: Option<u32>,
    pub resampling: Option<String>,
    /// `median` (default), `mean`, `min`, `max`, `std`, `count`, `geomedian` or
    /// `quantiles:0.1,0.5,0.9` ([`Reducer`]).
    pub reducer: Option<String>,
    /// Also store `valid_count`, the number of valid observations per pixel.
    pub with_count: Option<bool>,
    /// Spectral indices computed per observation, each its own variable (`ndvi`, `nbr`, or
    /// `name=expression`; [`crate::index`]).
    pub index: Option<Vec<String>>,
    pub variable: Option<String>,
    pub zarr_format: Option<u8>,
    pub out: Option<String>,
    pub workers: Option<usize>,
    /// Seconds a request may receive nothing before it is abandoned and retried.
    pub request_timeout: Option<f64>,
    pub all_chunks: Option<bool>,
    /// Publish a cube of fill when no scene is found (a run setting, not part of the spec).
    pub allow_empty: Option<bool>,
}

macro_rules! overlay {
    ($base:ident, $top:ident, $($f:ident),*) => { $( if $top.$f.is_some() { $base.$f = $top.$f; } )* };
}

impl SpecInput {
    /// Read a TOML file whose keys are the flag names.
    pub fn from_toml_file(path: &Path) -> Result<SpecInput, SpecError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| bad("config", &shown, format!("cannot read it: {e}")))?;
        Self::from_toml_str(&text, &shown)
    }

    /// Parse the text of a config file; `shown` names the file in errors.
    pub fn from_toml_str(text: &str, shown: &str) -> Result<SpecInput, SpecError> {
        toml::from_str(text)
            .map_err(|e| bad("config", shown, format!("not a valid eocube config: {}", e.to_string().trim_end())))
    }

    /// `self` with every setting that `flags` gives replaced (flags override the file).
    pub fn overridden_by(mut self, flags: SpecInput) -> SpecInput {
        overlay!(
            self,
            flags,
            bbox,
            start,
            end,
            time_step,
            crs,
            resolution,
            chunk_size,
            bands,
            collection,
            catalog,
            stac_url,
            sas_token_url,
            items,
            cloud_cover_max,
            mask,
            mask_dilation,
            resampling,
            reducer,
            with_count,
            index,
            variable,
            zarr_format,
            out,
            workers,
            request_timeout,
            all_chunks,
            allow_empty
        );
        self
    }

    /// Where the build writes, how many jobs run at once, how long a request may be silent and
    /// whether the build may be empty, checked (`out`, `workers`, `request-timeout`,
    /// `allow-empty`).
    pub fn run_settings(&self) -> Result<RunSettings, SpecError> {
        let workers = self.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        if workers == 0 {
            return Err(bad("workers", 0, "must be at least 1"));
        }
        let request_timeout = match self.request_timeout {
            None => crate::cloud::DEFAULT_REQUEST_TIMEOUT,
            Some(t) => {
                std::time::Duration::try_from_secs_f64(t).ok().filter(|d| !d.is_zero() && t <= 3600.0).ok_or_else(
                    || bad("request-timeout", t, "must be a number of seconds above 0 and at most 3600, e.g. 5"),
                )?
            }
        };
        Ok(RunSettings {
            out: self.out.clone(),
            workers,
            request_timeout,
            allow_empty: self.allow_empty.unwrap_or(false),
        })
    }

    /// Check every value and fill in the defaults: the cube's spec. The run settings in the
    /// input are checked too ([`SpecInput::run_settings`] returns them).
    pub fn validate(self) -> Result<CubeSpec, SpecError> {
        let bbox = match &self.bbox {
            None => {
                return Err(bad(
                    "bbox",
                    "(missing)",
                    "give the region as W S E N in degrees, e.g. -73.43 42.72 -71.47 45.02",
                ));
            }
            Some(v) if v.len() != 4 => {
                return Err(bad("bbox", format!("{v:?}"), "needs exactly four numbers: W S E N (degrees)"));
            }
            Some(v) => Bbox::new_lonlat(v[0], v[1], v[2], v[3])
                .map_err(|e| bad("bbox", format!("{} {} {} {}", v[0], v[1], v[2], v[3]), e.to_string()))?,
        };
        let date = |setting: &'static str, v: &Option<String>| -> Result<Date, SpecError> {
            let s = v.as_deref().ok_or_else(|| bad(setting, "(missing)", "give a date as YYYY-MM-DD"))?;
            Date::parse_from_str(s.trim(), "%Y-%m-%d")
                .map_err(|_| bad(setting, s, "not a date; give it as YYYY-MM-DD, e.g. 2020-01-31"))
        };
        let start = date("start", &self.start)?;
        let end = date("end", &self.end)?;
        if start > end {
            return Err(bad("start", start, format!("is after the end {end}; the start must be on or before the end")));
        }
        let time_step: TimeStep = match &self.time_step {
            None => TimeStep::default(),
            Some(s) => s.parse().map_err(|e: crate::time::TimeError| bad("time-step", s, e.to_string()))?,
        };
        let crs_text = self.crs.clone().unwrap_or_else(|| "EPSG:4326".to_string());
        let crs = Crs::parse(&crs_text).map_err(|e| bad("crs", &crs_text, e.to_string()))?;
        let resolution = match self.resolution {
            Some(Resolution(r)) => r,
            None if crs.is_geographic() => DEFAULT_RESOLUTION_DEG,
            None => DEFAULT_RESOLUTION_PROJECTED,
        };
        if !(resolution.is_finite() && resolution > 0.0) {
            return Err(bad("resolution", resolution, format!("must be a number greater than 0, in {}", crs.units())));
        }
        let chunk_size = match self.chunk_size {
            None => DEFAULT_CHUNK_SIZE,
            Some(c) if (1..=16384).contains(&c) => c as usize,
            Some(c) => {
                return Err(bad(
                    "chunk-size",
                    c,
                    "must be a positive integer number of pixels, at most 16384 (default 1200)",
                ));
            }
        };
        let bands = self.bands.clone().unwrap_or_else(|| vec!["red".into(), "green".into(), "blue".into()]);
        if bands.is_empty() {
            return Err(bad("bands", "(empty)", "give at least one band, e.g. red,green,blue"));
        }
        // The sensor is the collection's (presets default to Sentinel-2 collections).
        let profile = crate::sensor::profile_for(self.collection.as_deref().unwrap_or(DEFAULT_COLLECTION));
        for b in &bands {
            if profile.band(b).is_none() || profile.is_quality(b) {
                return Err(bad("bands", b, format!("unknown band; {}", profile.band_help())));
            }
        }
        let quantity = profile.cube_quantity(&bands).map_err(|why| bad("bands", bands.join(","), why))?;
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = bands.iter().find(|b| !seen.insert(profile.aliases(b)[0].clone())) {
            return Err(bad("bands", dup, "is listed twice"));
        }
        // `catalog` names the defaults; without it a known `stac-url` names them (so that
        // `--stac-url https://planetarycomputer.microsoft.com/api/stac/v1` alone signs and
        // searches `sentinel-2-l2a`, as odc-stac users expect from that catalog).
        let preset = match &self.catalog {
            Some(c) => Some(c.parse::<CatalogPreset>().map_err(|reason| bad("catalog", c, reason))?),
            None => self.stac_url.as_deref().and_then(CatalogPreset::detect),
        };
        let collection = self
            .collection
            .clone()
            .unwrap_or_else(|| preset.map_or(DEFAULT_COLLECTION, CatalogPreset::collection).to_string());
        if collection.trim().is_empty() {
            return Err(bad("collection", "(empty)", format!("give a STAC collection id, e.g. {DEFAULT_COLLECTION}")));
        }
        let stac_url = self
            .stac_url
            .clone()
            .unwrap_or_else(|| preset.map_or(DEFAULT_STAC_URL, CatalogPreset::stac_url).to_string());
        match url::Url::parse(&stac_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(bad(
                    "stac-url",
                    &stac_url,
                    "must be an http(s):// URL of a STAC API, e.g. https://earth-search.aws.element84.com/v1",
                ));
            }
        }
        let sas_token_url = match (&self.sas_token_url, preset.and_then(CatalogPreset::token_url)) {
            (None, default) => default.map(str::to_string),
            (Some(given), Some(_)) => match url::Url::parse(given) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Some(given.clone()),
                _ => {
                    return Err(bad(
                        "sas-token-url",
                        given,
                        format!("must be an http(s):// URL of a SAS token API, e.g. {PLANETARY_COMPUTER_TOKEN_URL}"),
                    ));
                }
            },
            (Some(given), None) => {
                return Err(bad(
                    "sas-token-url",
                    given,
                    "only the planetary-computer catalog signs its assets; give `catalog planetary-computer` with it",
                ));
            }
        };
        if let Some(c) = self.cloud_cover_max
            && !(0.0..=100.0).contains(&c)
        {
            return Err(bad("cloud-cover-max", c, "must be a percentage between 0 and 100"));
        }
        let mask_text = self.mask.clone().unwrap_or_else(|| "default".to_string());
        let mut mask: MaskSpec =
            mask_text.parse().map_err(|e: crate::mask::MaskError| bad("mask", &mask_text, e.to_string()))?;
        if let Some(d) = self.mask_dilation.filter(|&d| d > 0) {
            mask = mask.with_dilation_for(d, profile).map_err(|e| bad("mask-dilation", d, e.to_string()))?;
        }
        mask.resolve(profile).map_err(|e| bad("mask", &mask_text, e.to_string()))?;
        let resampling: Resampling = match &self.resampling {
            None => Resampling::default(),
            Some(s) => s.parse().map_err(|e: crate::warp::WarpError| bad("resampling", s, e.to_string()))?,
        };
        let reducer: Reducer = match self.reducer.as_deref() {
            None => Reducer::default(),
            Some(s) => s.parse().map_err(|e: crate::reduce::ReduceError| bad("reducer", s, e.to_string()))?,
        };
        let variable = match &self.variable {
            Some(v) => v.clone(),
            None if is_rgb(&bands) => format!("rgb_{}", reducer.name()),
            None => reducer.name().to_string(),
        };
        if variable.is_empty()
            || !variable.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || variable.starts_with(|c: char| c.is_ascii_digit())
            || RESERVED_NAMES.contains(&variable.as_str())
        {
            return Err(bad(
                "variable",
                &variable,
                "must be a name of letters, digits and _ (not starting with a digit) that is not a coordinate name",
            ));
        }
        let index = self.indices(&reducer, &variable, profile)?;
        if let (crate::sensor::CubeQuantity::Other(q), Some(first)) = (quantity, index.first()) {
            // A job harmonizes every band it reads as the cube's bands are: reflectance bands
            // read beside a quantity would miss the BOA offset rule.
            return Err(bad(
                "index",
                first.to_string(),
                format!(
                    "indices are formulas of reflectance, and this cube holds the {}; build the indices in a cube of reflectance bands",
                    q.what
                ),
            ));
        }
        let zarr_format = self.zarr_format.unwrap_or(3);
        if !matches!(zarr_format, 2 | 3) {
            return Err(bad("zarr-format", zarr_format, "must be 2 or 3"));
        }
        self.run_settings()?;
        let spec = CubeSpec {
            bbox,
            start,
            end,
            time_step,
            crs: format!("EPSG:{}", crs.epsg()),
            resolution,
            chunk_size,
            bands,
            collection,
            stac_url,
            sas_token_url,
            items: self.items.clone(),
            cloud_cover_max: self.cloud_cover_max,
            mask,
            resampling,
            reducer,
            with_count: self.with_count.unwrap_or(false),
            index,
            variable,
            zarr_format,
            all_chunks: self.all_chunks.unwrap_or(false),
        };
        // The grid must be buildable in the chosen CRS (catches a bbox outside a projection).
        spec.geobox()?;
        time_bins(start, end, time_step).map_err(|e| bad("time-step", time_step, e.to_string()))?;
        Ok(spec)
    }
}

/// Names no data variable may take: the coordinates and `valid_count`.
const RESERVED_NAMES: [&str; 9] =
    ["time", "latitude", "longitude", "x", "y", "band", "spatial_ref", "quantile", "valid_count"];

impl SpecInput {
    /// The `index` setting, checked: known names or valid expressions, each once, a reducer that
    /// works per index, and variable names (`<index>_<reducer>`) that clash with nothing.
    fn indices(
        &self,
        reducer: &Reducer,
        variable: &str,
        profile: &crate::sensor::SensorProfile,
    ) -> Result<Vec<SpectralIndex>, SpecError> {
        let Some(items) = &self.index else { return Ok(Vec::new()) };
        let shown = items.join(",");
        let index = crate::index::parse_list(items).map_err(|e| bad("index", &shown, e.to_string()))?;
        if !index.is_empty() && *reducer == Reducer::Geomedian {
            return Err(bad(
                "index",
                &shown,
                "the geomedian reducer takes the bands of a pixel together and has no per-index form; \
                 build the indices with another reducer (e.g. median) in a cube of their own",
            ));
        }
        for i in &index {
            // Formulas name Sentinel-2's bands; another sensor may lack one (Landsat has `nir08`
            // but no `nir`).
            let missing = i.bands().into_iter().find(|b| {
                profile
                    .band(b)
                    .is_none_or(|info| profile.is_quality(info.name) || profile.quantity(info.name).is_some())
            });
            if let Some(band) = missing {
                return Err(bad(
                    "index",
                    i.to_string(),
                    format!(
                        "it reads `{band}`, which is not a reflectance band of {}; give the formula with its bands \
                         as name=expression, e.g. ndvi=(nir08-red)/(nir08+red)",
                        profile.name
                    ),
                ));
            }
            let name = index_variable(i, reducer);
            if name == variable || RESERVED_NAMES.contains(&name.as_str()) {
                return Err(bad(
                    "index",
                    &i.name,
                    format!(
                        "its variable {name} clashes with the data variable or a coordinate; rename the index or give another `variable`"
                    ),
                ));
            }
        }
        Ok(index)
    }
}

/// The data variable of an index: `<index>_<reducer>`, e.g. `ndvi_max`.
pub fn index_variable(index: &SpectralIndex, reducer: &Reducer) -> String {
    format!("{}_{}", index.name, reducer.name())
}

fn is_rgb(bands: &[String]) -> bool {
    let canon: Vec<String> = bands.iter().map(|b| crate::catalog::band_aliases(b)[0].clone()).collect();
    canon == ["red", "green", "blue"]
}

/// What a build runs with but the cube does not depend on: set per run, never stored in the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// `--out`: where the cube goes.
    pub out: Option<String>,
    /// `--workers`: jobs at once on this machine.
    pub workers: usize,
    /// `--request-timeout`: how long a request may receive nothing before it is abandoned and
    /// retried ([`crate::cloud::ClientConfig::request_timeout`]).
    pub request_timeout: std::time::Duration,
    /// `--allow-empty`: a build whose jobs find nothing publishes its cube of fill.
    pub allow_empty: bool,
}

/// What the user chose that decides the cube's bytes, validated (DESIGN section 1): serialized
/// into the cube's attributes and compared on resume. Specs stored by eocube before run settings
/// were split off also carry `out` and `workers`; those keys are ignored when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CubeSpec {
    /// Region in lon/lat degrees.
    pub bbox: Bbox,
    pub start: Date,
    pub end: Date,
    pub time_step: TimeStep,
    /// Canonical `EPSG:<code>`.
    pub crs: String,
    /// In units of the CRS.
    pub resolution: f64,
    pub chunk_size: usize,
    pub bands: Vec<String>,
    pub collection: String,
    pub stac_url: String,
    /// Where COG requests get their SAS token (`GET {this}/{collection}`): set for the
    /// Planetary Computer only, and absent from the stored spec otherwise, so cubes of other
    /// catalogs are stored exactly as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_token_url: Option<String>,
    pub items: Option<PathBuf>,
    pub cloud_cover_max: Option<f64>,
    pub mask: MaskSpec,
    pub resampling: Resampling,
    /// Stored by its text form (`"median"`, `"quantiles:0.1,0.9"`): parameters are part of the
    /// identity, and the specs of median-only cubes read and compare as before.
    pub reducer: Reducer,
    /// Absent from the stored spec when false, so cubes made before it keep their identity.
    #[serde(default, skip_serializing_if = "is_false")]
    pub with_count: bool,
    /// Absent from the stored spec when empty, so cubes made before indices keep their identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index: Vec<SpectralIndex>,
    pub variable: String,
    pub zarr_format: u8,
    pub all_chunks: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl CubeSpec {
    /// The bands a job reads: the cube's, then (by canonical name) those only its indices need.
    pub fn read_bands(&self) -> Vec<String> {
        let mut read = self.bands.clone();
        let profile = crate::sensor::profile_for(&self.collection);
        let mut canonical: Vec<String> = self.bands.iter().map(|b| profile.aliases(b)[0].clone()).collect();
        for band in self.index.iter().flat_map(SpectralIndex::bands) {
            if !canonical.contains(&band) {
                canonical.push(band.clone());
                read.push(band);
            }
        }
        read
    }

    /// The canonical names of [`CubeSpec::read_bands`]: what index expressions name.
    pub fn read_band_names(&self) -> Vec<String> {
        let profile = crate::sensor::profile_for(&self.collection);
        self.read_bands().iter().map(|b| profile.aliases(b)[0].clone()).collect()
    }

    /// The data variables of the indices, in the order given.
    pub fn index_variables(&self) -> Vec<String> {
        self.index.iter().map(|i| index_variable(i, &self.reducer)).collect()
    }

    /// The spec as stored in the cube and compared on resume.
    pub fn identity_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    pub fn crs(&self) -> Result<Crs, SpecError> {
        Crs::parse(&self.crs).map_err(|e| bad("crs", &self.crs, e.to_string()))
    }

    /// The target grid: the lon/lat bbox taken into the CRS (densified footprint) and snapped.
    pub fn geobox(&self) -> Result<GeoBox, SpecError> {
        let crs = self.crs()?;
        let b = self.bbox;
        let shown = format!("{} {} {} {}", b.west, b.south, b.east, b.north);
        let bbox = if crs.is_geographic() {
            b
        } else {
            let lonlat = GeoBox::from_bbox(&b, &Crs::wgs84(), b.width().max(b.height()) / 64.0)
                .map_err(|e| bad("bbox", &shown, e.to_string()))?;
            let fp = lonlat.footprint(&crs, 64).map_err(|e| {
                bad(
                    "crs",
                    &self.crs,
                    format!("the bbox cannot be projected into it ({e}); choose a CRS that covers the region"),
                )
            })?;
            fp.bbox().ok_or_else(|| bad("bbox", &shown, "has no extent in the CRS"))?
        };
        GeoBox::from_bbox(&bbox, &crs, self.resolution).map_err(|e| bad("resolution", self.resolution, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vermont() -> SpecInput {
        SpecInput {
            bbox: Some(vec![-73.43, 42.72, -71.47, 45.02]),
            start: Some("2020-01-01".into()),
            end: Some("2023-12-31".into()),
            ..Default::default()
        }
    }

    fn err(input: SpecInput) -> SpecError {
        input.validate().expect_err("should be refused")
    }

    #[test]
    fn catalog_presets_set_the_url_collection_and_signing() {
        let pc = SpecInput { catalog: Some("planetary-computer".into()), ..vermont() }.validate().unwrap();
        assert_eq!(pc.stac_url, "https://planetarycomputer.microsoft.com/api/stac/v1");
        assert_eq!(pc.collection, "sentinel-2-l2a");
        assert_eq!(pc.sas_token_url.as_deref(), Some(PLANETARY_COMPUTER_TOKEN_URL));
        let detected = SpecInput { stac_url: Some("https://earth-search.aws.element84.com/v0".into()), ..vermont() };
        assert_eq!(detected.validate().unwrap().collection, "sentinel-s2-l2a-cogs");
        let cdse = SpecInput { catalog: Some("cdse".into()), collection: Some("x".into()), ..vermont() };
        let cdse = cdse.validate().unwrap();
        assert_eq!(
            (cdse.stac_url.as_str(), cdse.collection.as_str()),
            ("https://stac.dataspace.copernicus.eu/v1", "x")
        );
        assert_eq!(cdse.sas_token_url, None);
        // a stand-in API with a stand-in token service
        let local = SpecInput {
            catalog: Some("planetary-computer".into()),
            stac_url: Some("http://127.0.0.1:9/".into()),
            sas_token_url: Some("http://127.0.0.1:9/token".into()),
            ..vermont()
        };
        assert_eq!(local.validate().unwrap().sas_token_url.as_deref(), Some("http://127.0.0.1:9/token"));
        // other catalogs store the spec as before: no new key
        let es = vermont().validate().unwrap().identity_json();
        assert!(es.get("sas_token_url").is_none(), "{es}");
    }

    #[test]
    fn bad_catalog_settings_name_the_fix() {
        let e = err(SpecInput { catalog: Some("usgs".into()), ..vermont() });
        assert!(e.to_string().starts_with("catalog usgs: unknown catalog; give one of earth-search"), "{e}");
        let e = err(SpecInput { sas_token_url: Some("http://x/token".into()), ..vermont() });
        assert!(e.to_string().contains("give `catalog planetary-computer`"), "{e}");
        let e = err(SpecInput {
            catalog: Some("planetary-computer".into()),
            sas_token_url: Some("token".into()),
            ..vermont()
        });
        assert_eq!(e.setting, "sas-token-url");
    }

    #[test]
    fn defaults_are_the_original_demo() {
        let s = vermont().validate().unwrap();
        assert_eq!(s.crs, "EPSG:4326");
        assert_eq!(s.resolution, 1.0 / 3600.0);
        assert_eq!(s.chunk_size, 1200);
        assert_eq!(s.bands, ["red", "green", "blue"]);
        assert_eq!(s.variable, "rgb_median");
        assert_eq!((s.collection.as_str(), s.stac_url.as_str()), (DEFAULT_COLLECTION, DEFAULT_STAC_URL));
        assert_eq!((s.zarr_format, s.resampling, s.mask.clone()), (3, Resampling::Bilinear, MaskSpec::Default));
        assert_eq!(s.time_step.to_string(), "1M");
        assert_eq!(s.geobox().unwrap().shape, crate::grid::Shape { ny: 8280, nx: 7056 });
    }

    #[test]
    fn variable_name_follows_the_bands() {
        let mut i = vermont();
        i.bands = Some(vec!["nir".into(), "B04".into()]);
        assert_eq!(i.clone().validate().unwrap().variable, "median");
        i.variable = Some("ndvi_inputs".into());
        assert_eq!(i.validate().unwrap().variable, "ndvi_inputs");
        let mut i = vermont();
        i.bands = Some(vec!["B04".into(), "B03".into(), "B02".into()]);
        assert_eq!(i.validate().unwrap().variable, "rgb_median");
    }

    #[test]
    fn every_invalid_value_names_its_setting() {
        let cases: Vec<(SpecInput, &str, &str)> = vec![
            (
                SpecInput { bbox: Some(vec![-73.0, 45.0, -71.0, 44.0]), ..vermont() },
                "bbox",
                "south must be less than north",
            ),
            (SpecInput { bbox: Some(vec![-73.0, 45.0, -71.0]), ..vermont() }, "bbox", "four numbers"),
            (SpecInput { bbox: None, ..vermont() }, "bbox", "W S E N"),
            (SpecInput { start: Some("2024-01-01".into()), ..vermont() }, "start", "after the end"),
            (SpecInput { start: Some("2024-13-01".into()), ..vermont() }, "start", "YYYY-MM-DD"),
            (SpecInput { end: None, ..vermont() }, "end", "YYYY-MM-DD"),
            (
                SpecInput { bands: Some(vec!["red".into(), "ultraviolet".into()]), ..vermont() },
                "bands ultraviolet",
                "unknown band",
            ),
            (SpecInput { bands: Some(vec!["red".into(), "B04".into()]), ..vermont() }, "bands B04", "twice"),
            (SpecInput { crs: Some("EPSG:999999".into()), ..vermont() }, "crs", "unknown CRS"),
            (SpecInput { resolution: Some(Resolution(0.0)), ..vermont() }, "resolution", "greater than 0"),
            (SpecInput { resolution: Some(Resolution(-1.0)), ..vermont() }, "resolution", "greater than 0"),
            (SpecInput { chunk_size: Some(0), ..vermont() }, "chunk-size", "positive integer"),
            (SpecInput { chunk_size: Some(-5), ..vermont() }, "chunk-size", "positive integer"),
            (SpecInput { time_step: Some("2W".into()), ..vermont() }, "time-step", "2W"),
            (SpecInput { mask: Some("4,5,12".into()), ..vermont() }, "mask", "12"),
            (SpecInput { resampling: Some("cubic".into()), ..vermont() }, "resampling", "nearest, bilinear or average"),
            (SpecInput { zarr_format: Some(4), ..vermont() }, "zarr-format", "2 or 3"),
            (SpecInput { cloud_cover_max: Some(120.0), ..vermont() }, "cloud-cover-max", "0 and 100"),
            (SpecInput { stac_url: Some("earth-search".into()), ..vermont() }, "stac-url", "http(s)://"),
            (SpecInput { variable: Some("latitude".into()), ..vermont() }, "variable", "coordinate name"),
            (SpecInput { workers: Some(0), ..vermont() }, "workers", "at least 1"),
            (SpecInput { reducer: Some("foo".into()), ..vermont() }, "reducer foo", "valid reducers: median, mean"),
            (
                SpecInput { reducer: Some("quantiles:1.5".into()), ..vermont() },
                "reducer quantiles:1.5",
                "outside [0, 1]",
            ),
            (SpecInput { variable: Some("valid_count".into()), ..vermont() }, "variable", "coordinate name"),
            (SpecInput { request_timeout: Some(0.0), ..vermont() }, "request-timeout", "above 0"),
            (SpecInput { request_timeout: Some(-2.0), ..vermont() }, "request-timeout", "above 0"),
            (SpecInput { request_timeout: Some(f64::NAN), ..vermont() }, "request-timeout", "above 0"),
        ];
        for (input, flag, words) in cases {
            let msg = err(input).to_string();
            assert!(msg.starts_with(flag), "{msg:?} should start with {flag}");
            assert!(msg.contains(words), "{msg:?} should say {words:?}");
        }
    }

    #[test]
    fn run_settings_stay_out_of_the_spec_and_old_specs_still_read() {
        let input = SpecInput { out: Some("v.zarr".into()), workers: Some(3), request_timeout: Some(2.5), ..vermont() };
        let run = input.run_settings().unwrap();
        let request_timeout = std::time::Duration::from_millis(2500);
        assert_eq!(run, RunSettings { out: Some("v.zarr".into()), workers: 3, request_timeout, allow_empty: false });
        let spec = input.validate().unwrap();
        let stored = spec.identity_json();
        for key in ["out", "workers", "request_timeout"] {
            assert!(stored.get(key).is_none(), "{key} in {stored}");
        }
        // A spec stored before the split carries both keys: it reads as the same spec.
        let mut old = stored.clone();
        old["out"] = serde_json::json!("elsewhere.zarr");
        old["workers"] = serde_json::json!(8);
        let back: CubeSpec = serde_json::from_value(old).unwrap();
        assert_eq!(back, spec);
        assert_eq!(back.identity_json(), stored);
    }

    #[test]
    fn flags_override_the_file_and_toml_uses_flag_names() {
        let file: SpecInput = toml::from_str(
            "bbox = [-73.43, 42.72, -71.47, 45.02]\nstart = \"2020-01-01\"\nend = \"2020-12-31\"\nresolution = \"1/3600\"\nchunk_size = 600\nmask = \"seed\"\n",
        )
        .unwrap();
        let flags = SpecInput { chunk_size: Some(900), ..Default::default() };
        let s = file.overridden_by(flags).validate().unwrap();
        assert_eq!((s.chunk_size, s.resolution, s.mask), (900, 1.0 / 3600.0, MaskSpec::Seed));
        let e = toml::from_str::<SpecInput>("chunksize = 3").unwrap_err().to_string();
        assert!(e.contains("chunksize"), "{e}");
    }

    #[test]
    fn indices_are_checked_and_read_the_bands_they_need() {
        let with = |index: &[&str], reducer: Option<&str>| SpecInput {
            index: Some(index.iter().map(|s| s.to_string()).collect()),
            reducer: reducer.map(String::from),
            bands: Some(vec!["B04".into(), "nir".into()]),
            ..vermont()
        };
        let s = with(&["ndvi,nbr", "evi=2.5*(nir-red)/(nir+6*red-7.5*blue+1)"], Some("max")).validate().unwrap();
        assert_eq!(s.index_variables(), ["ndvi_max", "nbr_max", "evi_max"]);
        assert_eq!(s.read_bands(), ["B04", "nir", "swir22", "blue"]);
        assert_eq!(s.read_band_names(), ["red", "nir", "swir22", "blue"]);
        let stored = s.identity_json();
        assert_eq!(stored["index"][0], "ndvi=(nir-red)/(nir+red)");
        assert!(vermont().validate().unwrap().identity_json().get("index").is_none(), "no key without indices");
        let back: CubeSpec = serde_json::from_value(stored).unwrap();
        assert_eq!(back, s);
        let e = err(with(&["ndvi"], Some("geomedian")));
        assert!(e.to_string().starts_with("index ndvi: the geomedian reducer"), "{e}");
        let e = err(with(&["ndvi,ndvi"], None));
        assert!(e.to_string().contains("given twice"), "{e}");
        let e = err(with(&["valid=nir"], Some("count")));
        assert!(e.to_string().contains("clashes"), "{e}");
        let e = err(SpecInput { variable: Some("ndvi_median".into()), ..with(&["ndvi"], None) });
        assert!(e.to_string().contains("clashes"), "{e}");
    }

    #[test]
    fn quantities_get_a_cube_of_their_own_scale_and_never_share_one_with_reflectance() {
        let with =
            |bands: &[&str]| SpecInput { bands: Some(bands.iter().map(|b| b.to_string()).collect()), ..vermont() };
        for (band, what) in [("aot", "aerosol optical thickness"), ("WVP", "water vapour")] {
            let e = err(with(&["red", band]));
            let text = e.to_string();
            assert!(text.contains(what) && text.contains("cannot share a cube with red"), "{e}");
            assert!(text.contains(&format!("--bands {}", band.to_ascii_lowercase())), "{e}");
        }
        let s = with(&["aot", "wvp"]).validate().unwrap();
        let profile = crate::sensor::profile_for(&s.collection);
        assert_eq!(profile.scale_of(&s.bands), (0.001, 0.0));
        assert_eq!(profile.scale_of(&["red".to_string()]), (0.0001, -0.1));
        let e = err(SpecInput { index: Some(vec!["ndvi".into()]), ..with(&["aot"]) });
        assert!(e.to_string().contains("indices are formulas of reflectance"), "{e}");
        let s =
            SpecInput { bands: Some(["coastal", "rededge1", "nir09", "B12"].map(String::from).to_vec()), ..vermont() };
        assert!(s.validate().is_ok(), "every reflectance band at 20 and 60 m is a band");
    }

    #[test]
    fn landsat_indices_read_landsat_bands_and_a_sentinel_2_formula_is_refused() {
        let landsat = |index: &str| SpecInput {
            collection: Some("landsat-c2-l2".into()),
            index: Some(vec![index.into()]),
            bands: Some(vec!["red".into()]),
            ..vermont()
        };
        let e = err(landsat("ndvi"));
        assert!(e.to_string().contains("reads `nir`, which is not a reflectance band of Landsat"), "{e}");
        assert!(e.to_string().contains("ndvi=(nir08-red)/(nir08+red)"), "{e}");
        let s = landsat("ndvi=(nir08-red)/(nir08+red)").validate().unwrap();
        assert_eq!(s.read_bands(), ["red", "nir08"]);
        assert_eq!(s.read_band_names(), ["red", "nir08"]);
        let e = err(landsat("t=lwir11"));
        assert!(e.to_string().contains("lwir11"), "{e}");
        let temperature = SpecInput { index: None, bands: Some(vec!["lwir11".into()]), ..landsat("ndvi") };
        let s = temperature.validate().unwrap();
        assert_eq!(crate::sensor::profile_for(&s.collection).scale_of(&s.bands), (0.00341802, 149.0));
    }

    #[test]
    fn reducer_and_with_count_from_toml_and_flags() {
        let file: SpecInput = toml::from_str(
            "bbox = [-73.43, 42.72, -71.47, 45.02]\nstart = \"2020-01-01\"\nend = \"2020-12-31\"\nreducer = \"quantiles:0.1,0.5,0.9\"\nwith_count = true\n",
        )
        .unwrap();
        let s = file.clone().validate().unwrap();
        assert_eq!((s.reducer.clone(), s.with_count), (Reducer::Quantiles(vec![0.1, 0.5, 0.9]), true));
        assert_eq!(s.variable, "rgb_quantiles");
        let stored = s.identity_json();
        assert_eq!(
            (stored["reducer"].as_str(), stored["with_count"].as_bool()),
            (Some("quantiles:0.1,0.5,0.9"), Some(true))
        );
        let back: CubeSpec = serde_json::from_value(stored).unwrap();
        assert_eq!(back, s);
        // Flags override the file.
        let s = file
            .overridden_by(SpecInput { reducer: Some("geomedian".into()), ..Default::default() })
            .validate()
            .unwrap();
        assert_eq!((s.reducer, s.variable.as_str()), (Reducer::Geomedian, "rgb_geomedian"));
    }

    #[test]
    fn projected_grids_cover_the_bbox() {
        let s = SpecInput { crs: Some("EPSG:32618".into()), ..vermont() }.validate().unwrap();
        assert_eq!(s.resolution, 30.0);
        let g = s.geobox().unwrap();
        // about 160 km x 256 km at 30 m, plus the curvature of the reprojected footprint
        assert!(g.shape.nx > 5000 && g.shape.nx < 6000 && g.shape.ny > 8500 && g.shape.ny < 9000, "{:?}", g.shape);
    }

    #[test]
    fn spec_round_trips_through_json() {
        let s = vermont().validate().unwrap();
        let back: CubeSpec = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
