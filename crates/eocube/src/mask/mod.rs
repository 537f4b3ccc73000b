//! Masking: which pixels of one fused observation are valid, from its quality band: Sentinel-2's
//! scene classification (SCL), or Landsat's `QA_PIXEL` decoded at read time into valid / invalid
//! / no data ([`crate::sensor::landsat`]). [`MaskSpec`] is the user's choice (`--mask default |
//! seed | 4,5,6` for Sentinel-2, `default | cloud,cloud_shadow:medium` for Landsat),
//! [`MaskSpec::resolve`] checks it against the cube's sensor and gives the [`Mask`] that
//! [`Mask::valid`] applies, [`MaskSpec::halo`] says how many pixels of context it needs.
//!
//! Owns: the SCL classes and the mask rules of DESIGN section 6, and binary morphology with a disk
//! ([`dilate`], [`erode`], [`close`], [`open`]). Must not touch: reading or warping (the caller hands
//! over an SCL array on the chunk grid, grown by the halo), reflectance values, or reducing.
//!
//! ## Rules
//! - A pixel is *bad* when its class is not in the valid set. SCL 0 (no data) is not an observation
//!   at all: it is never valid, and it is **not bad** for the morphology, because it is absence
//!   of data rather than a cloud; buffering it would shave valid pixels off every swath edge.
//! - `seed` cleans the bad mask with a closing of radius 5, then an opening of radius 5; a class
//!   list may dilate it by `dilation` pixels. Valid = not bad (after morphology) and SCL != 0. So an
//!   opening can make a small speck of class 8 valid again: that is its purpose (SCL's false
//!   clouds on bright roofs), and it is why `seed` exists.
//! - The structuring element is the disk `dx² + dy² <= r²` (as `skimage.morphology.disk(r)`).
//! - Outside the array nothing is known. Dilation takes its maximum and erosion its minimum over the
//!   part of the disk inside the array: the outside neither spreads badness nor eats into it.
//!   Closing stays extensive and opening anti-extensive right up to the array edge.
//! - Halo: with a halo of [`MaskSpec::halo`] pixels (the sum of the radii of every elementary
//!   dilation and erosion) around a chunk, the chunk's interior is identical to what the whole image
//!   gives, whatever the halo's outer edge holds. A unit test checks it on a random image.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::grid::Shape;
use crate::sensor::landsat::{self, QaDecoder, QaTest};
use crate::sensor::{QualityDecoding, SENTINEL2_L2A, SensorProfile};

mod morphology;

use morphology::Bits;
#[cfg(test)]
use morphology::disk_half_widths;
pub use morphology::{close, dilate, erode, open};

// The SCL classes and the default valid set are the Sentinel-2 profile's (`sensor`); the
// mask rules that use them are this module's.
pub use crate::sensor::sentinel2::{DEFAULT_VALID, scl};
/// The valid classes of the `seed` preset.
pub const SEED_VALID: [u8; 2] = [4, 5];
/// The closing and opening radius of the `seed` preset, in pixels.
pub const SEED_RADIUS: u32 = 5;
/// The largest dilation accepted. The caller reads a halo this wide around every chunk; beyond
/// this it costs more I/O than it could be worth at Sentinel-2 resolutions.
pub const MAX_DILATION: u32 = 100;

/// What can go wrong with a mask specification or its input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskError {
    #[error(
        "invalid mask {given:?}: {reason}; give \"default\" (valid SCL classes 2,4,5,6,7,11), \"seed\" (4,5 plus \
         morphological cleanup) or a comma-separated list of valid SCL classes from 1 to 11, e.g. \"4,5,6,7,11\""
    )]
    InvalidSpec { given: String, reason: String },
    #[error("invalid mask dilation {dilation} px: {reason}")]
    InvalidDilation { dilation: u32, reason: &'static str },
    #[error("SCL array has {len} values but the shape {ny} x {nx} needs {expected}")]
    ShapeMismatch { len: usize, ny: usize, nx: usize, expected: usize },
    #[error(
        "mask {given:?} is made of Sentinel-2 SCL classes, but a {sensor} cube is masked by its QA_PIXEL flags; \
         give \"default\" (invalid: fill, dilated_cloud, cirrus, cloud, cloud_shadow) or the flags that make a pixel \
         invalid, e.g. \"fill,dilated_cloud,cirrus,cloud,cloud_shadow:medium\" (flags: {flags}; `:low`, `:medium` or \
         `:high` tests a confidence pair)"
    )]
    ClassesOnBits { given: String, sensor: &'static str, flags: String },
    #[error(
        "mask {given:?} is made of Landsat QA_PIXEL flags, but a {sensor} cube is masked by SCL classes; give \
         \"default\", \"seed\" or a list of valid SCL classes, e.g. \"4,5,6,7,11\""
    )]
    FlagsOnClasses { given: String, sensor: &'static str },
}

/// The user's mask choice (DESIGN section 6).
///
/// CLI form ([`FromStr`]): `default`, `seed`, or valid classes such as `4,5,6,7,11`; a dilation
/// is added with [`with_dilation`](Self::with_dilation). Serialized form (TOML): `"default"`,
/// `"seed"`, `"4,5,6"`, or `{ classes = [4, 5, 6], dilation = 2 }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "MaskSpecRepr", into = "MaskSpecRepr")]
pub enum MaskSpec {
    /// Valid classes {2, 4, 5, 6, 7, 11}; no morphology.
    #[default]
    Default,
    /// Valid classes {4, 5}; bad mask closed then opened with a disk of radius 5.
    Seed,
    /// Valid classes (sorted, unique, each in 1..=11) and a dilation of the bad mask in pixels.
    Classes { valid: Vec<u8>, dilation: u32 },
    /// Landsat: the `QA_PIXEL` tests that make a pixel invalid (sorted, unique) and a dilation.
    Flags { invalid: Vec<QaTest>, dilation: u32 },
}

impl MaskSpec {
    /// A class list with a dilation, validated as the CLI form is.
    pub fn classes(valid: &[u8], dilation: u32) -> Result<Self, MaskError> {
        let given = || valid.iter().map(u8::to_string).collect::<Vec<_>>().join(",");
        let bad = |reason: String| MaskError::InvalidSpec { given: given(), reason };
        if valid.is_empty() {
            return Err(bad("the class list is empty".into()));
        }
        for &c in valid {
            if c == scl::NO_DATA {
                return Err(bad("class 0 is no data and can never be valid".into()));
            }
            if c > scl::MAX {
                return Err(bad(format!("class {c} does not exist (SCL classes are 0 to 11)")));
            }
        }
        check_dilation(dilation)?;
        let valid: BTreeSet<u8> = valid.iter().copied().collect();
        Ok(Self::Classes { valid: valid.into_iter().collect(), dilation })
    }

    /// Landsat `QA_PIXEL` tests with a dilation.
    pub fn flags(invalid: &[QaTest], dilation: u32) -> Result<Self, MaskError> {
        check_dilation(dilation)?;
        let invalid: BTreeSet<QaTest> = invalid.iter().copied().collect();
        Ok(Self::Flags { invalid: invalid.into_iter().collect(), dilation })
    }

    /// This spec with the bad mask dilated by `dilation` pixels, for a Sentinel-2 cube (see
    /// [`with_dilation_for`](Self::with_dilation_for)).
    pub fn with_dilation(self, dilation: u32) -> Result<Self, MaskError> {
        self.with_dilation_for(dilation, &SENTINEL2_L2A)
    }

    /// This spec with the bad mask dilated by `dilation` pixels. `default` becomes the sensor's
    /// default list with the dilation; `seed` refuses, because its own morphology is the point of
    /// the preset.
    pub fn with_dilation_for(self, dilation: u32, profile: &SensorProfile) -> Result<Self, MaskError> {
        match self {
            Self::Default => match profile.quality.decoding {
                QualityDecoding::Classes { .. } => Self::classes(&DEFAULT_VALID, dilation),
                QualityDecoding::Bits { .. } => Self::flags(&landsat::DEFAULT_INVALID, dilation),
            },
            Self::Classes { valid, .. } => Self::classes(&valid, dilation),
            Self::Flags { invalid, .. } => Self::flags(&invalid, dilation),
            Self::Seed if dilation == 0 => Ok(Self::Seed),
            Self::Seed => Err(MaskError::InvalidDilation {
                dilation,
                reason: "the seed preset has its own morphology; give a class list (e.g. 4,5) to dilate instead",
            }),
        }
    }

    /// The valid SCL classes (none for a Landsat flag list).
    pub fn valid_classes(&self) -> &[u8] {
        match self {
            Self::Default => &DEFAULT_VALID,
            Self::Seed => &SEED_VALID,
            Self::Classes { valid, .. } => valid,
            Self::Flags { .. } => &[],
        }
    }

    /// This spec for a cube of `profile`: a Sentinel-2 cube takes presets and SCL classes, a
    /// Landsat cube `default` and `QA_PIXEL` flags; the other kind is refused, naming the fix.
    pub fn resolve(&self, profile: &SensorProfile) -> Result<Mask, MaskError> {
        let given = || self.to_string();
        match (profile.quality.decoding, self) {
            (QualityDecoding::Classes { .. }, Self::Flags { .. }) => {
                Err(MaskError::FlagsOnClasses { given: given(), sensor: profile.name })
            }
            (QualityDecoding::Classes { .. }, _) => {
                Ok(Mask { spec: self.clone(), table: self.valid_table(), qa: None })
            }
            (QualityDecoding::Bits { .. }, Self::Default | Self::Flags { .. }) => {
                let tests = match self {
                    Self::Flags { invalid, .. } => invalid.as_slice(),
                    _ => &landsat::DEFAULT_INVALID,
                };
                let mut table = [false; 256];
                table[usize::from(landsat::code::VALID)] = true;
                Ok(Mask { spec: self.clone(), table, qa: Some(QaDecoder::new(tests)) })
            }
            (QualityDecoding::Bits { .. }, Self::Seed | Self::Classes { .. }) => Err(MaskError::ClassesOnBits {
                given: given(),
                sensor: profile.name,
                flags: landsat::QaFlag::ALL.map(landsat::QaFlag::name).join(", "),
            }),
        }
    }

    /// The halo in pixels the caller must read around a chunk so that [`valid_mask`] on the
    /// chunk-plus-halo equals, inside the chunk, the mask of the whole image. It is the sum of the
    /// radii of the elementary dilations and erosions: a closing then an opening of radius r is
    /// four of them (4r = 20 for `seed`).
    pub fn halo(&self) -> usize {
        match self {
            Self::Default => 0,
            Self::Seed => 4 * SEED_RADIUS as usize,
            Self::Classes { dilation, .. } | Self::Flags { dilation, .. } => *dilation as usize,
        }
    }

    fn valid_table(&self) -> [bool; 256] {
        let mut table = [false; 256];
        for &c in self.valid_classes() {
            table[usize::from(c)] = true;
        }
        // No data is never valid, whatever a hand-built spec says.
        table[usize::from(scl::NO_DATA)] = false;
        table
    }
}

fn check_dilation(dilation: u32) -> Result<(), MaskError> {
    if dilation > MAX_DILATION {
        return Err(MaskError::InvalidDilation { dilation, reason: "it must be at most 100 px" });
    }
    Ok(())
}

impl FromStr for MaskSpec {
    type Err = MaskError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("default") {
            return Ok(Self::Default);
        }
        if t.eq_ignore_ascii_case("seed") {
            return Ok(Self::Seed);
        }
        let bad = |reason: String| MaskError::InvalidSpec { given: s.to_string(), reason };
        if t.is_empty() {
            return Err(bad("it is empty".into()));
        }
        // Landsat flags are words, SCL classes numbers: a list starting with a letter is flags.
        if t.starts_with(|c: char| c.is_ascii_alphabetic()) {
            let mut tests = Vec::new();
            for part in t.split(',') {
                let test = part.parse::<QaTest>().map_err(|why| {
                    bad(format!(
                        "{:?} is not a preset name, a class number or a Landsat QA flag ({why}; flags: {})",
                        part.trim(),
                        landsat::QaFlag::ALL.map(landsat::QaFlag::name).join(", ")
                    ))
                })?;
                tests.push(test);
            }
            return Self::flags(&tests, 0);
        }
        let mut classes = Vec::new();
        for part in t.split(',') {
            let p = part.trim();
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("{p:?} is not a preset name or a class number")));
            }
            let c: u8 = p.parse().map_err(|_| bad(format!("class {p} does not exist (SCL classes are 0 to 11)")))?;
            classes.push(c);
        }
        Self::classes(&classes, 0).map_err(|e| match e {
            MaskError::InvalidSpec { reason, .. } => bad(reason),
            other => other,
        })
    }
}

impl fmt::Display for MaskSpec {
    /// The CLI form; a dilation, which has no CLI form of its own, is written as ` (dilation N px)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Seed => f.write_str("seed"),
            Self::Classes { valid, dilation } => {
                let list: Vec<String> = valid.iter().map(u8::to_string).collect();
                write_list(f, &list, *dilation)
            }
            Self::Flags { invalid, dilation } => {
                let list: Vec<String> = invalid.iter().map(QaTest::to_string).collect();
                write_list(f, &list, *dilation)
            }
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, list: &[String], dilation: u32) -> fmt::Result {
    f.write_str(&list.join(","))?;
    if dilation > 0 {
        write!(f, " (dilation {dilation} px)")?;
    }
    Ok(())
}

/// The serialized form of [`MaskSpec`]: a string in the CLI form, or a table with a dilation.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum MaskSpecRepr {
    Name(String),
    Classes {
        classes: Vec<u8>,
        #[serde(default)]
        dilation: u32,
    },
    Flags {
        flags: String,
        #[serde(default)]
        dilation: u32,
    },
}

impl TryFrom<MaskSpecRepr> for MaskSpec {
    type Error = MaskError;
    fn try_from(r: MaskSpecRepr) -> Result<Self, Self::Error> {
        match r {
            MaskSpecRepr::Name(s) => s.parse(),
            MaskSpecRepr::Classes { classes, dilation } => Self::classes(&classes, dilation),
            MaskSpecRepr::Flags { flags, dilation } => match flags.parse::<MaskSpec>()? {
                MaskSpec::Flags { invalid, .. } => Self::flags(&invalid, dilation),
                _ => {
                    Err(MaskError::InvalidSpec { given: flags, reason: "it is not a list of Landsat QA flags".into() })
                }
            },
        }
    }
}

impl From<MaskSpec> for MaskSpecRepr {
    fn from(m: MaskSpec) -> Self {
        match m {
            MaskSpec::Classes { valid, dilation } if dilation > 0 => Self::Classes { classes: valid, dilation },
            MaskSpec::Flags { invalid, dilation } if dilation > 0 => {
                Self::Flags { flags: invalid.iter().map(QaTest::to_string).collect::<Vec<_>>().join(","), dilation }
            }
            other => Self::Name(other.to_string()),
        }
    }
}

/// A [`MaskSpec`] resolved for one sensor ([`MaskSpec::resolve`]): the valid values of the
/// quality band as the pipeline carries it, the morphology, and for `QA_PIXEL` the decoder that
/// turns it into that band when it is read. Value 0 is no data for every sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    spec: MaskSpec,
    table: [bool; 256],
    qa: Option<QaDecoder>,
}

impl Mask {
    /// How `QA_PIXEL` values become the quality band (`None`: the band is read as it is).
    pub fn qa_decoder(&self) -> Option<QaDecoder> {
        self.qa
    }

    /// The valid-pixel mask (row-major, `true` = use this observation) of a quality array of
    /// `shape`.
    ///
    /// For a chunk, pass the quality of the chunk grown by [`MaskSpec::halo`] pixels on every
    /// side and keep the interior of the result.
    pub fn valid(&self, quality: &[u8], shape: Shape) -> Result<Vec<bool>, MaskError> {
        if quality.len() != shape.len() {
            return Err(MaskError::ShapeMismatch {
                len: quality.len(),
                ny: shape.ny,
                nx: shape.nx,
                expected: shape.len(),
            });
        }
        let table = &self.table;
        let is_bad = |c: u8| c != scl::NO_DATA && !table[usize::from(c)];
        let bad: Vec<bool> = quality.iter().map(|&c| is_bad(c)).collect();
        let bad = match &self.spec {
            MaskSpec::Default => bad,
            MaskSpec::Seed => Bits::pack(&bad, shape).close(SEED_RADIUS).open(SEED_RADIUS).unpack(),
            MaskSpec::Classes { dilation, .. } | MaskSpec::Flags { dilation, .. } => dilate(&bad, shape, *dilation),
        };
        Ok(quality.iter().zip(&bad).map(|(&c, &b)| c != scl::NO_DATA && !b).collect())
    }
}

/// The valid-pixel mask of a Sentinel-2 SCL array of `shape` ([`Mask::valid`] of `spec` resolved
/// for Sentinel-2).
pub fn valid_mask(scl: &[u8], shape: Shape, spec: &MaskSpec) -> Result<Vec<bool>, MaskError> {
    spec.resolve(&SENTINEL2_L2A)?.valid(scl, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(ny: usize, nx: usize) -> Shape {
        Shape { ny, nx }
    }

    /// A tiny deterministic generator (xorshift), so the tests need no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A cloudy SCL image: mostly vegetation and bare soil with some water, dark and unclassified
    /// pixels, random disks of cloud, shadow, water and no data (with clear holes in them), and
    /// scattered one-pixel specks, so every morphological operator has something to do.
    fn random_scl(ny: usize, nx: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng(seed);
        let mut scl: Vec<u8> = (0..ny * nx).map(|_| [4, 5][rng.below(2) as usize]).collect();
        for _ in 0..(ny * nx / 1500) {
            let (cy, cx) = (rng.below(ny as u64) as i64, rng.below(nx as u64) as i64);
            let rad = 1 + rng.below(14) as i64;
            let class = [3, 8, 9, 10, 1, 0, 6, 9, 8, 2, 7, 11][rng.below(12) as usize];
            for y in (cy - rad).max(0)..(cy + rad + 1).min(ny as i64) {
                for x in (cx - rad).max(0)..(cx + rad + 1).min(nx as i64) {
                    if (y - cy).pow(2) + (x - cx).pow(2) <= rad * rad && rng.below(20) != 0 {
                        scl[y as usize * nx + x as usize] = class;
                    }
                }
            }
        }
        for _ in 0..(ny * nx / 300) {
            scl[rng.below((ny * nx) as u64) as usize] = [8, 9, 3, 0, 6, 2][rng.below(6) as usize];
        }
        scl
    }

    /// Brute-force dilation with the disk offsets, the reference for the span algorithm.
    fn dilate_naive(mask: &[bool], s: Shape, r: u32) -> Vec<bool> {
        let r = r as i64;
        let mut out = vec![false; s.len()];
        for y in 0..s.ny as i64 {
            for x in 0..s.nx as i64 {
                let mut any = false;
                for dy in -r..=r {
                    for dx in -r..=r {
                        let (yy, xx) = (y + dy, x + dx);
                        if dy * dy + dx * dx <= r * r
                            && (0..s.ny as i64).contains(&yy)
                            && (0..s.nx as i64).contains(&xx)
                            && mask[yy as usize * s.nx + xx as usize]
                        {
                            any = true;
                        }
                    }
                }
                out[y as usize * s.nx + x as usize] = any;
            }
        }
        out
    }

    fn crop<T: Copy>(a: &[T], s: Shape, y0: usize, x0: usize, ny: usize, nx: usize) -> Vec<T> {
        (y0..y0 + ny).flat_map(|y| a[y * s.nx + x0..y * s.nx + x0 + nx].iter().copied()).collect()
    }

    #[test]
    fn parses_presets_and_class_lists() {
        assert_eq!("default".parse::<MaskSpec>().unwrap(), MaskSpec::Default);
        assert_eq!(" Seed ".parse::<MaskSpec>().unwrap(), MaskSpec::Seed);
        assert_eq!(
            "11, 4,5,6,7,4".parse::<MaskSpec>().unwrap(),
            MaskSpec::Classes { valid: vec![4, 5, 6, 7, 11], dilation: 0 }
        );
        assert_eq!("4,5,6,7,11".parse::<MaskSpec>().unwrap().to_string(), "4,5,6,7,11");
        assert_eq!(MaskSpec::default(), MaskSpec::Default);
    }

    #[test]
    fn refuses_bad_masks_naming_the_input_and_the_valid_forms() {
        for (s, why) in [
            ("", "empty"),
            ("4,12", "class 12 does not exist"),
            ("4,300", "class 300 does not exist"),
            ("0,4", "class 0 is no data"),
            ("4,,5", "not a preset name"),
            ("cloudy", "not a preset name"),
            ("4;5", "not a preset name"),
            ("-1", "not a preset name"),
        ] {
            let msg = s.parse::<MaskSpec>().unwrap_err().to_string();
            assert!(msg.contains(&format!("{s:?}")) && msg.contains(why), "{s}: {msg}");
            assert!(msg.contains("\"default\"") && msg.contains("\"seed\"") && msg.contains("1 to 11"), "{msg}");
        }
    }

    #[test]
    fn dilation_applies_to_class_lists_and_default_but_not_seed() {
        let m = MaskSpec::Default.with_dilation(3).unwrap();
        assert_eq!(m, MaskSpec::Classes { valid: DEFAULT_VALID.to_vec(), dilation: 3 });
        assert_eq!(m.halo(), 3);
        assert!(MaskSpec::Seed.with_dilation(2).is_err());
        assert_eq!(MaskSpec::Seed.with_dilation(0).unwrap(), MaskSpec::Seed);
        let err = MaskSpec::Default.with_dilation(101).unwrap_err();
        assert!(err.to_string().contains("101 px"), "{err}");
        assert_eq!(MaskSpec::Default.halo(), 0);
        assert_eq!(MaskSpec::Seed.halo(), 20);
    }

    #[test]
    fn mask_spec_serializes_as_string_or_table() {
        let seed: MaskSpec = serde_json::from_str("\"seed\"").unwrap();
        assert_eq!(seed, MaskSpec::Seed);
        assert_eq!(serde_json::to_string(&seed).unwrap(), "\"seed\"");
        let m: MaskSpec = serde_json::from_str(r#"{"classes":[5,4],"dilation":2}"#).unwrap();
        assert_eq!(m, MaskSpec::Classes { valid: vec![4, 5], dilation: 2 });
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"classes":[4,5],"dilation":2}"#);
        let m: MaskSpec = serde_json::from_str("\"4,5\"").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"4,5\"");
        assert!(serde_json::from_str::<MaskSpec>(r#"{"classes":[12]}"#).is_err());
    }

    #[test]
    fn default_mask_follows_the_class_table() {
        let scl: Vec<u8> = (0..=11).collect();
        let valid = valid_mask(&scl, shape(3, 4), &MaskSpec::Default).unwrap();
        let expected: Vec<bool> = (0..=11).map(|c| DEFAULT_VALID.contains(&c)).collect();
        assert_eq!(valid, expected);
        // Classes {4,5}: water is now bad.
        let valid = valid_mask(&scl, shape(3, 4), &"4,5".parse().unwrap()).unwrap();
        assert_eq!(valid.iter().filter(|&&v| v).count(), 2);
        assert!(valid[4] && valid[5]);
    }

    #[test]
    fn landsat_masks_parse_resolve_and_refuse_scl_classes() {
        use crate::sensor::LANDSAT_C2_L2;
        let m: MaskSpec = "cloud_shadow:medium, cloud ,fill".parse().unwrap();
        assert_eq!(m.to_string(), "fill,cloud,cloud_shadow:medium");
        assert_eq!(m.to_string().parse::<MaskSpec>().unwrap(), m);
        let dilated = MaskSpec::Default.with_dilation_for(2, &LANDSAT_C2_L2).unwrap();
        assert_eq!(dilated, MaskSpec::flags(&landsat::DEFAULT_INVALID, 2).unwrap());
        assert_eq!(dilated.halo(), 2);
        let json = serde_json::to_string(&dilated).unwrap();
        assert_eq!(serde_json::from_str::<MaskSpec>(&json).unwrap(), dilated, "{json}");
        // S2 classes and presets on a Landsat cube, flags on a Sentinel-2 cube: refused with the fix
        for spec in [MaskSpec::Seed, "4,5".parse().unwrap()] {
            let msg = spec.resolve(&LANDSAT_C2_L2).unwrap_err().to_string();
            assert!(msg.contains("Sentinel-2 SCL classes") && msg.contains("cloud_shadow:medium"), "{msg}");
        }
        let msg = m.resolve(&SENTINEL2_L2A).unwrap_err().to_string();
        assert!(msg.contains("Landsat QA_PIXEL flags") && msg.contains("4,5,6,7,11"), "{msg}");
        let msg = "cloud,4".parse::<MaskSpec>().unwrap_err().to_string();
        assert!(msg.contains("\"4\" is not a preset name"), "{msg}");
        // the decoded band: 0 no data, 1 valid, 2 invalid; the dilation grows the invalid pixels
        let mask = dilated.resolve(&LANDSAT_C2_L2).unwrap();
        assert!(mask.qa_decoder().is_some());
        let q = [1, 1, 1, 1, 2, 0, 1, 1, 1];
        assert_eq!(
            mask.valid(&q, shape(1, 9)).unwrap(),
            [true, true, false, false, false, false, false, true, true],
            "2 px either side of the invalid pixel; no data does not grow"
        );
        let plain = MaskSpec::Default.resolve(&LANDSAT_C2_L2).unwrap();
        assert_eq!(plain.valid(&q, shape(1, 9)).unwrap(), q.map(|c| c == 1));
        assert!(MaskSpec::Default.resolve(&SENTINEL2_L2A).unwrap().qa_decoder().is_none());
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let err = valid_mask(&[4; 10], shape(3, 4), &MaskSpec::Default).unwrap_err();
        assert_eq!(err, MaskError::ShapeMismatch { len: 10, ny: 3, nx: 4, expected: 12 });
    }

    #[test]
    fn disk_matches_skimage() {
        // skimage.morphology.disk(5).sum() == 81, disk(1) is the plus sign, disk(2) has 13 pixels.
        let count = |r: u32| -> usize {
            disk_half_widths(r)
                .iter()
                .enumerate()
                .map(|(dy, w)| if dy == 0 { 2 * w + 1 } else { 2 * (2 * w + 1) })
                .sum()
        };
        assert_eq!(count(1), 5);
        assert_eq!(count(2), 13);
        assert_eq!(count(5), 81);
        assert_eq!(count(20), 1257);
        // One pixel dilated is exactly the disk.
        let s = shape(11, 11);
        let mut m = vec![false; 121];
        m[5 * 11 + 5] = true;
        assert_eq!(dilate(&m, s, 5).iter().filter(|&&b| b).count(), 81);
    }

    #[test]
    fn dilation_equals_brute_force_for_several_radii() {
        // Rows of one word, of several (the carry between words), of whole words (no padding),
        // of one pixel, a single row.
        for s in [shape(37, 53), shape(29, 150), shape(17, 128), shape(23, 1), shape(1, 70)] {
            let mut rng = Rng(7);
            let m: Vec<bool> = (0..s.len()).map(|_| rng.below(23) == 0).collect();
            for r in [0, 1, 2, 3, 5, 8, 30] {
                assert_eq!(dilate(&m, s, r), dilate_naive(&m, s, r), "{s:?}, r = {r}");
                let inv: Vec<bool> = m.iter().map(|b| !b).collect();
                let eroded_naive: Vec<bool> = dilate_naive(&inv, s, r).into_iter().map(|b| !b).collect();
                assert_eq!(erode(&m, s, r), eroded_naive, "{s:?}, r = {r}");
            }
        }
        // Radii beyond the array (and beyond u8/u16 distances) are clamped, not wrapped.
        let s = shape(6, 9);
        let mut m = vec![false; s.len()];
        m[3] = true;
        for r in [14, 15, 300, 70_000] {
            assert_eq!(dilate(&m, s, r), dilate_naive(&m, s, r.min(20)), "r = {r}");
        }
    }

    #[test]
    fn closing_is_extensive_and_opening_anti_extensive_up_to_the_edge() {
        let s = shape(64, 80);
        let mut rng = Rng(3);
        let m: Vec<bool> = (0..s.len()).map(|_| rng.below(3) == 0).collect();
        let c = close(&m, s, 5);
        let o = open(&m, s, 5);
        assert!(m.iter().zip(&c).all(|(&a, &b)| !a || b));
        assert!(m.iter().zip(&o).all(|(&a, &b)| !b || a));
        // A full bad mask stays full under closing: the outside does not erode it.
        let full = vec![true; s.len()];
        assert_eq!(close(&full, s, 5), full);
        assert_eq!(open(&full, s, 5), full);
    }

    #[test]
    fn seed_fills_small_holes_and_removes_small_specks() {
        let s = shape(60, 60);
        let mut scl = vec![4u8; s.len()];
        // A big cloud (radius 15) with a 2-pixel clear hole in it: the closing fills the hole.
        for y in 0..30 {
            for x in 0..30 {
                if (y as i64 - 15).pow(2) + (x as i64 - 15).pow(2) <= 225 {
                    scl[y * 60 + x] = 9;
                }
            }
        }
        scl[15 * 60 + 15] = 4;
        scl[15 * 60 + 16] = 4;
        // A 3x3 speck of cloud far away: the opening removes it (a radius-5 disk does not fit).
        for y in 45..48 {
            for x in 45..48 {
                scl[y * 60 + x] = 8;
            }
        }
        // A no-data pixel is never valid, even where the morphology leaves it alone.
        scl[50 * 60 + 10] = 0;
        let valid = valid_mask(&scl, s, &MaskSpec::Seed).unwrap();
        assert!(!valid[15 * 60 + 15] && !valid[15 * 60 + 16], "hole in the cloud is filled");
        assert!(valid[46 * 60 + 46], "speck is opened away");
        assert!(!valid[50 * 60 + 10], "no data stays invalid");
        assert!(valid[50 * 60 + 11]);
        // Under the default mask the hole is valid and the speck is not.
        let valid = valid_mask(&scl, s, &MaskSpec::Default).unwrap();
        assert!(valid[15 * 60 + 15] && !valid[46 * 60 + 46]);
    }

    #[test]
    fn no_data_does_not_grow_under_dilation() {
        let s = shape(5, 9);
        let mut scl = vec![4u8; s.len()];
        scl[2 * 9] = 0;
        scl[2 * 9 + 8] = 9;
        let valid = valid_mask(&scl, s, &"4".parse::<MaskSpec>().unwrap().with_dilation(2).unwrap()).unwrap();
        assert!(!valid[2 * 9] && valid[2 * 9 + 1], "no data is invalid but does not spread");
        assert!(!valid[2 * 9 + 6] && valid[2 * 9 + 5], "cloud spreads by 2");
    }

    /// The property the halo exists for: a chunk computed with `halo()` pixels of context equals
    /// the whole image's result on the chunk, including chunks at the image edges (where the halo
    /// is cut by the image) and whatever the halo's own edge holds.
    #[test]
    fn chunk_with_halo_equals_whole_image_in_the_interior() {
        let (ny, nx) = (300, 340);
        let s = shape(ny, nx);
        let scl = random_scl(ny, nx, 42);
        let specs = [
            MaskSpec::Default,
            MaskSpec::Seed,
            MaskSpec::classes(&[4, 5, 6], 3).unwrap(),
            MaskSpec::classes(&[4, 5], 9).unwrap(),
        ];
        for spec in &specs {
            let whole = valid_mask(&scl, s, spec).unwrap();
            // The image must exercise the mask: neither all valid nor all invalid.
            let valid_fraction = whole.iter().filter(|&&v| v).count() as f64 / whole.len() as f64;
            assert!((0.25..0.95).contains(&valid_fraction), "{spec}: {valid_fraction}");
            let h = spec.halo();
            let cs = 64;
            for (cy, cx) in [(0, 0), (64, 128), (128, 64), (256, 320), (192, 0), (100, 37)] {
                let (cny, cnx) = (cs.min(ny - cy), cs.min(nx - cx));
                let (y0, x0) = (cy.saturating_sub(h), cx.saturating_sub(h));
                let (y1, x1) = ((cy + cny + h).min(ny), (cx + cnx + h).min(nx));
                let hs = shape(y1 - y0, x1 - x0);
                let part = valid_mask(&crop(&scl, s, y0, x0, hs.ny, hs.nx), hs, spec).unwrap();
                let got = crop(&part, hs, cy - y0, cx - x0, cny, cnx);
                let want = crop(&whole, s, cy, cx, cny, cnx);
                assert_eq!(got, want, "{spec} chunk at ({cy}, {cx}) with halo {h}");
            }
        }
        // And the halo is needed. A dilation by d needs exactly d. For seed, 4r = 20 is what the
        // composition of four radius-5 operators guarantees; this image already needs more than
        // 2r - 1 = 9 (a worst case for the full 20 takes a contrived image).
        for (spec, short) in [(&specs[1], 9), (&specs[2], 2), (&specs[3], 8)] {
            let whole = valid_mask(&scl, s, spec).unwrap();
            let h = short;
            let differs = (0..30).any(|k| {
                let (cy, cx) = (20 + 7 * k, 20 + 9 * k);
                let hs = shape(48 + 2 * h, 48 + 2 * h);
                let part = valid_mask(&crop(&scl, s, cy - h, cx - h, hs.ny, hs.nx), hs, spec).unwrap();
                crop(&part, hs, h, h, 48, 48) != crop(&whole, s, cy, cx, 48, 48)
            });
            assert!(differs, "{spec}: a halo of {h} should not be enough on this image");
        }
    }

    #[test]
    fn seed_on_a_full_chunk_with_halo_is_fast() {
        let n = 1200 + 2 * MaskSpec::Seed.halo();
        let s = shape(n, n);
        let scl = random_scl(n, n, 1);
        let t = std::time::Instant::now();
        let valid = valid_mask(&scl, s, &MaskSpec::Seed).unwrap();
        let took = t.elapsed();
        assert_eq!(valid.len(), n * n);
        eprintln!("seed mask on {n} x {n}: {took:?}");
        // Generous for debug builds on a loaded 2-core CI machine; release is ~20x faster.
        assert!(took.as_secs_f64() < 10.0, "{took:?}");
    }
}
