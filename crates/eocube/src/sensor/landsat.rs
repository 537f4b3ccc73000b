//! The Landsat Collection 2 Level-2 profile (Landsat 8 and 9 OLI, Landsat 7 ETM+ read the same
//! way): bands and their asset keys in Earth Search v1 and Planetary Computer (`landsat-c2-l2`),
//! the `QA_PIXEL` bit layout, the quality tests a mask is made of ([`QaTest`]) and the surface
//! reflectance scale and offset.
//!
//! ## How `QA_PIXEL` reaches the mask
//! The pipeline's quality path is one u8 per pixel (Sentinel-2's SCL classes): it is read,
//! warped with nearest, fused per solar day and masked with a table of valid values, with
//! morphology on the bad pixels. `QA_PIXEL` is 16 bits, so it is decoded into that path when it
//! is read ([`QaDecoder::code`]): every source pixel becomes [`code::NO_DATA`] (fill),
//! [`code::VALID`] or [`code::INVALID`] under the cube's mask. The decoding is a function of
//! one pixel, and nearest resampling and fusion only copy pixels, so decoding before them gives
//! what decoding after them would; bilinear is never used on quality bands. The alternative, a
//! u16 quality band through warp and fusion, would double the quality path's memory and make
//! `fuse` and `mask` generic in a type for no pixel of difference. What the decoded band cannot
//! do is change its mask after the read: a cube has one mask, so that costs nothing.
//!
//! ## Bits (USGS Landsat 8-9 Collection 2 Level 2 Science Product Guide, `QA_PIXEL`)
//! Bit 0 fill, 1 dilated cloud, 2 cirrus (high confidence), 3 cloud (high confidence), 4 cloud
//! shadow (high confidence), 5 snow (high confidence), 6 clear (neither cloud nor dilated
//! cloud), 7 water; confidence pairs (0 none, 1 low, 2 medium, 3 high): bits 8-9 cloud, 10-11
//! cloud shadow, 12-13 snow/ice, 14-15 cirrus. The single-bit flags are the high-confidence
//! answers, which the guide (and USGS's LandsatLook quality images) use; so the default mask
//! ([`DEFAULT_INVALID`]) is fill, dilated cloud, cirrus, cloud and cloud shadow by their bits.
//! Snow stays valid, as in the Sentinel-2 default.
//!
//! Owns: these facts and the bit decoding. Must not touch: pixels beyond one value at a time
//! (`mask` builds the mask, `job` decodes windows), STAC parsing, or the network.

use std::fmt;
use std::str::FromStr;

use super::{BandInfo, Harmonization, QualityBand, QualityDecoding, Quantity, SensorProfile};

const fn band(name: &'static str, number: &'static str) -> BandInfo {
    BandInfo { name, number, resolution_m: 30, resolutions_m: &[30] }
}

/// Earth Search v1 and Planetary Computer asset keys with the Landsat 8-9 file band names
/// (`SR_B4`), all on the 30 m grid. The band numbers are OLI's: Landsat 7 ETM+ numbers its
/// bands differently (red is `SR_B3`), so an ETM+ item is only read by its common-name keys,
/// which both catalogs give.
const BANDS: [BandInfo; 9] = [
    band("coastal", "SR_B1"),
    band("blue", "SR_B2"),
    band("green", "SR_B3"),
    band("red", "SR_B4"),
    band("nir08", "SR_B5"),
    band("swir16", "SR_B6"),
    band("swir22", "SR_B7"),
    band("lwir11", "ST_B10"),
    QA_PIXEL,
];

const QA_PIXEL: BandInfo = band("qa_pixel", "QA_PIXEL");

/// Surface reflectance = DN * 0.0000275 - 0.2 (Collection 2 Level-2, every Landsat).
pub const SCALE_FACTOR: f64 = 0.0000275;
pub const ADD_OFFSET: f64 = -0.2;

/// The quality codes `QA_PIXEL` is decoded into (see the module doc).
pub mod code {
    /// Fill (bit 0), or no pixel at all: absence of data, never valid, never buffered.
    pub const NO_DATA: u8 = 0;
    /// None of the mask's tests is true.
    pub const VALID: u8 = 1;
    /// At least one of the mask's tests is true.
    pub const INVALID: u8 = 2;
}

/// A condition `QA_PIXEL` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QaFlag {
    Fill,
    DilatedCloud,
    Cirrus,
    Cloud,
    CloudShadow,
    Snow,
    Clear,
    Water,
}

impl QaFlag {
    /// Every flag, in bit order (the flag's bit is its index).
    pub const ALL: [QaFlag; 8] = [
        QaFlag::Fill,
        QaFlag::DilatedCloud,
        QaFlag::Cirrus,
        QaFlag::Cloud,
        QaFlag::CloudShadow,
        QaFlag::Snow,
        QaFlag::Clear,
        QaFlag::Water,
    ];

    /// The flag's bit in `QA_PIXEL`.
    pub fn bit(self) -> u8 {
        self as u8
    }

    /// The first bit of the flag's confidence pair, for the four flags that have one.
    pub fn confidence_bit(self) -> Option<u8> {
        match self {
            QaFlag::Cloud => Some(8),
            QaFlag::CloudShadow => Some(10),
            QaFlag::Snow => Some(12),
            QaFlag::Cirrus => Some(14),
            _ => None,
        }
    }

    /// The name in masks, e.g. `cloud_shadow`.
    pub fn name(self) -> &'static str {
        match self {
            QaFlag::Fill => "fill",
            QaFlag::DilatedCloud => "dilated_cloud",
            QaFlag::Cirrus => "cirrus",
            QaFlag::Cloud => "cloud",
            QaFlag::CloudShadow => "cloud_shadow",
            QaFlag::Snow => "snow",
            QaFlag::Clear => "clear",
            QaFlag::Water => "water",
        }
    }

    /// A flag by name: as [`name`](Self::name) says, `-` for `_`, any case, and `shadow`,
    /// `dilated` and `snow_ice` for short.
    pub fn parse(s: &str) -> Option<QaFlag> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        match s.as_str() {
            "shadow" => Some(QaFlag::CloudShadow),
            "dilated" => Some(QaFlag::DilatedCloud),
            "snow_ice" | "ice" => Some(QaFlag::Snow),
            _ => QaFlag::ALL.into_iter().find(|f| f.name() == s),
        }
    }
}

/// A confidence level of a `QA_PIXEL` pair: the pair's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Confidence {
    Low = 1,
    Medium = 2,
    High = 3,
}

impl Confidence {
    pub fn name(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }

    fn parse(s: &str) -> Option<Confidence> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Confidence::Low),
            "medium" | "med" => Some(Confidence::Medium),
            "high" => Some(Confidence::High),
            _ => None,
        }
    }
}

/// One test a pixel fails the mask by: a flag's bit is set (`cloud`), or its confidence pair is
/// at least a level (`cloud:medium`, for the four flags with a pair).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QaTest {
    pub flag: QaFlag,
    pub at_least: Option<Confidence>,
}

impl QaTest {
    pub const fn bit(flag: QaFlag) -> QaTest {
        QaTest { flag, at_least: None }
    }

    /// Whether `qa` passes this test (the condition is there).
    pub fn holds(self, qa: u16) -> bool {
        match (self.at_least, self.flag.confidence_bit()) {
            (Some(level), Some(first)) => (qa >> first) & 0b11 >= level as u16,
            _ => qa & (1 << self.flag.bit()) != 0,
        }
    }
}

impl fmt::Display for QaTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag.name())?;
        if let Some(level) = self.at_least {
            write!(f, ":{}", level.name())?;
        }
        Ok(())
    }
}

impl FromStr for QaTest {
    type Err = String;

    /// `cloud`, `cloud_shadow:medium`, ... The error is the reason, for the mask's message.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        let flag = QaFlag::parse(name).ok_or_else(|| format!("{:?} is not a Landsat QA flag", name.trim()))?;
        let at_least = match level {
            None => None,
            Some(l) => {
                let level = Confidence::parse(l)
                    .ok_or_else(|| format!("{:?} is not a confidence level (low, medium or high)", l.trim()))?;
                if flag.confidence_bit().is_none() {
                    return Err(format!(
                        "{} has no confidence bits (only cloud, cloud_shadow, snow and cirrus have)",
                        flag.name()
                    ));
                }
                Some(level)
            }
        };
        Ok(QaTest { flag, at_least })
    }
}

/// The tests of the `default` mask: fill, dilated cloud, cirrus, cloud and cloud shadow, each
/// by its bit (high confidence, as the USGS guide defines the bits).
pub const DEFAULT_INVALID: [QaTest; 5] = [
    QaTest::bit(QaFlag::Fill),
    QaTest::bit(QaFlag::DilatedCloud),
    QaTest::bit(QaFlag::Cirrus),
    QaTest::bit(QaFlag::Cloud),
    QaTest::bit(QaFlag::CloudShadow),
];

/// A mask's tests compiled for one pass over the pixels: bits that invalidate a pixel when set,
/// and per confidence pair (cloud, shadow, snow, cirrus) the lowest level that does (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QaDecoder {
    any_bits: u16,
    /// `(first bit, lowest invalid level)` of each pair tested.
    pairs: [(u8, u8); 4],
}

impl QaDecoder {
    /// The decoder of `tests` (fill is always no data, whether listed or not).
    pub fn new(tests: &[QaTest]) -> QaDecoder {
        let mut d = QaDecoder { any_bits: 0, pairs: [(8, 0), (10, 0), (12, 0), (14, 0)] };
        for t in tests {
            match (t.at_least, t.flag.confidence_bit()) {
                (Some(level), Some(first)) => {
                    for pair in &mut d.pairs {
                        if pair.0 == first && (pair.1 == 0 || level as u8 <= pair.1) {
                            pair.1 = level as u8;
                        }
                    }
                }
                _ => d.any_bits |= 1 << t.flag.bit(),
            }
        }
        d
    }

    /// The quality code ([`code`]) of one `QA_PIXEL` value.
    #[inline]
    pub fn code(&self, qa: u16) -> u8 {
        if qa & 1 != 0 {
            return code::NO_DATA;
        }
        let by_pair = self.pairs.iter().any(|&(first, level)| level > 0 && ((qa >> first) & 0b11) as u8 >= level);
        if qa & self.any_bits != 0 || by_pair { code::INVALID } else { code::VALID }
    }
}

/// Landsat Collection 2 Level-2 surface reflectance (Landsat 4-9; eocube reads 7, 8 and 9).
pub const LANDSAT_C2_L2: SensorProfile = SensorProfile {
    name: "Landsat Collection 2 Level-2",
    // Earth Search v1 and Planetary Computer both call it this.
    collections: &["landsat-c2-l2"],
    bands: &BANDS,
    quality: QualityBand { band: QA_PIXEL, decoding: QualityDecoding::Bits { fill_bit: 0 } },
    harmonization: Harmonization::Scale { scale_factor: SCALE_FACTOR, add_offset: ADD_OFFSET },
    // Collection 2 Level-2 surface temperature (the USGS product guide's ST_B10 scale).
    quantities: &[Quantity {
        band: "lwir11",
        what: "surface temperature in kelvin",
        scale_factor: 0.00341802,
        add_offset: 149.0,
    }],
};

#[cfg(test)]
mod tests {
    use super::*;

    /// `QA_PIXEL` with `bits` set and the four pairs at `cloud`, `shadow`, `snow`, `cirrus`.
    fn qa(bits: &[u8], cloud: u16, shadow: u16, snow: u16, cirrus: u16) -> u16 {
        bits.iter().fold(0u16, |q, b| q | 1 << b) | cloud << 8 | shadow << 10 | snow << 12 | cirrus << 14
    }

    #[test]
    fn each_flag_is_its_bit() {
        for flag in QaFlag::ALL {
            let t = QaTest::bit(flag);
            assert!(t.holds(1 << flag.bit()), "{flag:?}");
            assert!(!t.holds(!(1u16 << flag.bit())), "{flag:?} sees only its bit");
        }
        assert_eq!(QaFlag::ALL.map(QaFlag::bit), [0, 1, 2, 3, 4, 5, 6, 7]);
        // USGS examples: 21824 clear land (bits 6, 8, 10, 12, 14), 21952 clear water (+ bit 7),
        // 22280 high-confidence cloud (bits 3, 8, 9), 1 fill.
        assert!(QaTest::bit(QaFlag::Clear).holds(21824) && !QaTest::bit(QaFlag::Water).holds(21824));
        assert!(QaTest::bit(QaFlag::Water).holds(21952));
        assert!(QaTest::bit(QaFlag::Cloud).holds(22280));
        assert!(QaTest::bit(QaFlag::Fill).holds(1));
    }

    #[test]
    fn each_confidence_level_of_each_pair() {
        for (flag, shift) in [(QaFlag::Cloud, 8), (QaFlag::CloudShadow, 10), (QaFlag::Snow, 12), (QaFlag::Cirrus, 14)] {
            assert_eq!(flag.confidence_bit(), Some(shift));
            for level in [Confidence::Low, Confidence::Medium, Confidence::High] {
                let t = QaTest { flag, at_least: Some(level) };
                for value in 0u16..4 {
                    assert_eq!(t.holds(value << shift), value >= level as u16, "{t} at {value}");
                }
                // other pairs at high do not count
                assert!(!t.holds(!(0b11 << shift)), "{t}");
            }
        }
        for flag in [QaFlag::Fill, QaFlag::DilatedCloud, QaFlag::Clear, QaFlag::Water] {
            assert_eq!(flag.confidence_bit(), None);
        }
    }

    #[test]
    fn tests_parse_and_print() {
        assert_eq!("cloud".parse::<QaTest>(), Ok(QaTest::bit(QaFlag::Cloud)));
        assert_eq!(
            " Cloud-Shadow:Medium ".parse::<QaTest>(),
            Ok(QaTest { flag: QaFlag::CloudShadow, at_least: Some(Confidence::Medium) })
        );
        assert_eq!("shadow".parse::<QaTest>(), Ok(QaTest::bit(QaFlag::CloudShadow)));
        assert_eq!("cirrus:high".parse::<QaTest>().map(|t| t.to_string()), Ok("cirrus:high".into()));
        assert!("cloudy".parse::<QaTest>().unwrap_err().contains("not a Landsat QA flag"));
        assert!("cloud:sure".parse::<QaTest>().unwrap_err().contains("not a confidence level"));
        assert!("water:high".parse::<QaTest>().unwrap_err().contains("no confidence bits"));
    }

    #[test]
    fn the_decoder_codes_fill_valid_and_invalid() {
        let d = QaDecoder::new(&DEFAULT_INVALID);
        assert_eq!(d.code(1), code::NO_DATA);
        assert_eq!(d.code(1 | 1 << 3), code::NO_DATA, "fill wins over every flag");
        assert_eq!(d.code(21824), code::VALID);
        assert_eq!(d.code(21952), code::VALID, "water is valid");
        assert_eq!(d.code(qa(&[5, 6], 1, 1, 3, 1)), code::VALID, "snow is valid by default");
        for bit in [1, 2, 3, 4] {
            assert_eq!(d.code(1 << bit), code::INVALID, "bit {bit}");
        }
        // a medium-confidence cloud has no cloud bit: valid by default, invalid at `cloud:medium`
        let medium = qa(&[6], 2, 1, 1, 1);
        assert_eq!(d.code(medium), code::VALID);
        let strict = QaDecoder::new(&["cloud:medium".parse().unwrap()]);
        assert_eq!(strict.code(medium), code::INVALID);
        assert_eq!(strict.code(qa(&[6], 1, 3, 3, 3)), code::VALID, "low cloud, other pairs high");
        assert_eq!(strict.code(1 << 3), code::VALID, "only the pair is tested");
        // the lowest level given wins when a pair is listed twice
        let both = QaDecoder::new(&["snow:high".parse().unwrap(), "snow:low".parse().unwrap()]);
        assert_eq!(both.code(qa(&[], 0, 0, 1, 0)), code::INVALID);
        // nothing listed: only fill is no data
        assert_eq!(QaDecoder::new(&[]).code(0xFFFE), code::VALID);
    }

    #[test]
    fn the_profile_holds_the_scale_and_bands() {
        let p = &LANDSAT_C2_L2;
        assert_eq!(p.quality.band.name, "qa_pixel");
        assert_eq!(p.harmonization.scale(), (0.0000275, -0.2));
        assert_eq!(p.aliases("SR_B4"), ["red", "SR_B4"]);
        assert_eq!(p.aliases("QA_PIXEL"), ["qa_pixel", "QA_PIXEL"]);
        assert!(p.bands.iter().all(|b| b.resolution_m == 30));
    }
}
