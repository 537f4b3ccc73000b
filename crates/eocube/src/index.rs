//! Spectral indices (`--index ndvi,nbr` or `--index 'evi=2.5*(nir-red)/(nir+6*red-7.5*blue+1)'`):
//! their names, the built-in formulas, how an index is computed from one masked observation and
//! how its values are stored as uint16 (docs/indices.md).
//!
//! An index is a [`crate::expr`] expression over reflectance (`DN * scale_factor + add_offset`
//! of the cube's bands, by their canonical names: `red`, `nir`, `swir22`, ...). A job computes it
//! per observation (solar day), after masking and before the reducer, so the reducer sees one
//! value per observation like any band: a fill input, a zero denominator or any other `NaN` make
//! the index fill (0) for that observation.
//!
//! Stored values ([`encode`]): `round_half_up(index * 10000) + 32768`, clipped to [1, 65535], so
//! `index = stored * 0.0001 - 3.2768` ([`SCALE_FACTOR`], [`ADD_OFFSET`]), 0 stays fill, and the
//! encoding is monotonic: median, min, max and quantiles of the stored values are those of the
//! index, and a mean or spread is in index units times 10000.
//!
//! Owns: the built-in table, the `name=expression` syntax and its checks, the encoding. Must not
//! touch: the grammar (that is `expr`), reading or masking the bands (`job`, `mask`), reducing
//! (`reduce`) or the store's metadata (`store::meta` takes the constants from here).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::expr::{Expr, ExprError};
use crate::sensor::SENTINEL2_L2A;

/// CF `scale_factor` of a stored index.
pub const SCALE_FACTOR: f64 = 0.0001;
/// The stored value of an index of 0.
pub const ZERO: u16 = 32768;
/// CF `add_offset` of a stored index: `-ZERO * SCALE_FACTOR`.
pub const ADD_OFFSET: f64 = -3.2768;
/// The smallest and largest index a uint16 holds: [-3.2767, 3.2767]; beyond, values are clipped.
pub const VALID_RANGE: [u16; 2] = [1, u16::MAX];
/// Most indices in one cube (each is a data variable as large as one band of the cube).
pub const MAX_INDICES: usize = 16;

/// The built-in indices: name, formula, what it is.
pub const BUILT_INS: [(&str, &str, &str); 6] = [
    ("ndvi", "(nir-red)/(nir+red)", "normalized difference vegetation index"),
    ("ndwi", "(green-nir)/(green+nir)", "normalized difference water index (McFeeters 1996)"),
    ("nbr", "(nir-swir22)/(nir+swir22)", "normalized burn ratio"),
    ("ndmi", "(nir-swir16)/(nir+swir16)", "normalized difference moisture index"),
    ("ndbi", "(swir16-nir)/(swir16+nir)", "normalized difference built-up index"),
    ("savi", "1.5*(nir-red)/(nir+red+0.5)", "soil-adjusted vegetation index (L = 0.5)"),
];

/// Why an index cannot be used; each message says what would be valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    #[error(
        "unknown index {given:?}; the built-in indices are {}, or give your own as name=expression, e.g. evi=2.5*(nir-red)/(nir+6*red-7.5*blue+1)",
        built_in_names()
    )]
    Unknown { given: String },
    #[error(
        "{name:?} is not a usable index name; give letters, digits and _ (starting with a letter), e.g. evi=2.5*(nir-red)/(nir+6*red-7.5*blue+1)"
    )]
    BadName { name: String },
    #[error(
        "index {name}: {source}; an expression is reflectance band names, numbers, + - * / ( ) and abs, sqrt, min, max"
    )]
    Expression { name: String, source: ExprError },
    #[error("index {name} is given twice; give each index once")]
    Duplicate { name: String },
    #[error("{given:?} names no index; give e.g. ndvi,nbr")]
    Empty { given: String },
    #[error("{count} indices given; at most {MAX_INDICES} fit in one cube")]
    TooMany { count: usize },
}

fn built_in_names() -> String {
    BUILT_INS.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
}

/// The bands an expression may name: every reflectance band of the Sentinel-2 profile by its
/// canonical name (not the quality band, not the `visual` composite).
pub fn band_names() -> Vec<String> {
    let quality = SENTINEL2_L2A.quality.band.name;
    SENTINEL2_L2A.bands.iter().map(|b| b.name).filter(|n| *n != quality && *n != "visual").map(String::from).collect()
}

/// One index of a cube: its name (the data variable is `<name>_<reducer>`) and its formula.
/// Stored in the spec as `name=expression`, so a cube's identity holds the formula.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct SpectralIndex {
    pub name: String,
    pub expression: String,
}

impl SpectralIndex {
    /// The canonical names of the bands the formula reads, in the profile's band order.
    pub fn bands(&self) -> Vec<String> {
        let names = band_names();
        match Expr::parse(&self.expression, &names) {
            Ok(e) => e.bands().iter().filter_map(|&i| names.get(i).cloned()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// What the index is, for the variable's `long_name`.
    pub fn long_name(&self) -> String {
        match BUILT_INS.iter().find(|b| b.0 == self.name && b.1 == self.expression) {
            Some(b) => b.2.to_string(),
            None => format!("index {}", self.name),
        }
    }
}

impl fmt::Display for SpectralIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.expression)
    }
}

impl From<SpectralIndex> for String {
    fn from(i: SpectralIndex) -> String {
        i.to_string()
    }
}

impl TryFrom<String> for SpectralIndex {
    type Error = IndexError;
    fn try_from(s: String) -> Result<Self, IndexError> {
        s.parse()
    }
}

impl FromStr for SpectralIndex {
    type Err = IndexError;
    /// `ndvi` (a built-in, any case) or `name=expression`.
    fn from_str(s: &str) -> Result<Self, IndexError> {
        let s = s.trim();
        let Some((name, expression)) = s.split_once('=') else {
            let lower = s.to_ascii_lowercase();
            return match BUILT_INS.iter().find(|b| b.0 == lower) {
                Some(b) => Ok(SpectralIndex { name: b.0.into(), expression: b.1.into() }),
                None if s.is_empty() => Err(IndexError::Empty { given: s.into() }),
                None => Err(IndexError::Unknown { given: s.into() }),
            };
        };
        let (name, expression) = (name.trim(), expression.trim());
        let ok_name = name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_name {
            return Err(IndexError::BadName { name: name.into() });
        }
        Expr::parse(expression, &band_names())
            .map_err(|source| IndexError::Expression { name: name.into(), source })?;
        Ok(SpectralIndex { name: name.into(), expression: expression.into() })
    }
}

/// The indices of `items` (each one or more, separated by commas outside parentheses, so
/// `max(a,b)` stays whole): parsed, no name twice.
pub fn parse_list(items: &[String]) -> Result<Vec<SpectralIndex>, IndexError> {
    let mut out: Vec<SpectralIndex> = Vec::new();
    for item in items {
        for part in split_top_level(item) {
            let index: SpectralIndex = part.parse()?;
            if out.iter().any(|i| i.name == index.name) {
                return Err(IndexError::Duplicate { name: index.name });
            }
            out.push(index);
        }
    }
    if out.len() > MAX_INDICES {
        return Err(IndexError::TooMany { count: out.len() });
    }
    Ok(out)
}

/// `a, b=max(c,d)` → `["a", "b=max(c,d)"]`.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The formulas of `indices` over the bands a job reads (`read`, canonical names, in the order
/// of the observation's bands). An error names a band the job does not read.
pub fn compile(indices: &[SpectralIndex], read: &[String]) -> Result<Vec<Expr>, IndexError> {
    indices
        .iter()
        .map(|i| {
            Expr::parse(&i.expression, read).map_err(|source| IndexError::Expression { name: i.name.clone(), source })
        })
        .collect()
}

/// An index value as stored: see the module docs. `NaN` (no data) is the fill value 0.
pub fn encode(v: f32) -> u16 {
    if v.is_nan() {
        return 0;
    }
    let stored = (f64::from(v) * 1e4 + 0.5).floor() + f64::from(ZERO);
    stored.clamp(f64::from(VALID_RANGE[0]), f64::from(VALID_RANGE[1])) as u16
}

/// The indices of one observation: `bands[b]` is read band `b` (digital numbers, 0 = fill),
/// reflectance is `dn * scale + offset` computed in f64 and evaluated in f32. One stored vector
/// per expression.
pub fn compute(exprs: &[Expr], bands: &[Vec<u16>], scale: f64, offset: f64) -> Vec<Vec<u16>> {
    let n = bands.first().map_or(0, Vec::len);
    let mut used: Vec<usize> = exprs.iter().flat_map(|e| e.bands().iter().copied()).collect();
    used.sort_unstable();
    used.dedup();
    let mut reflectance: Vec<Vec<f32>> = vec![Vec::new(); bands.len()];
    for b in used {
        if let Some(dn) = bands.get(b) {
            reflectance[b] =
                dn.iter().map(|&d| if d == 0 { f32::NAN } else { (f64::from(d) * scale + offset) as f32 }).collect();
        }
    }
    exprs.iter().map(|e| e.eval(n, &|b| &reflectance[b][..]).into_iter().map(encode).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Result<Vec<SpectralIndex>, IndexError> {
        parse_list(&[s.to_string()])
    }

    #[test]
    fn built_ins_and_named_expressions_parse() {
        let l = list("NDVI, nbr,evi=2.5*(nir-red)/(nir+6*red-7.5*blue+1),m=max(red,green)").unwrap();
        let names: Vec<&str> = l.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["ndvi", "nbr", "evi", "m"]);
        assert_eq!(l[0].to_string(), "ndvi=(nir-red)/(nir+red)");
        assert_eq!(l[1].bands(), ["nir", "swir22"]);
        assert_eq!(l[2].bands(), ["blue", "red", "nir"]);
        let back: SpectralIndex = l[2].to_string().parse().unwrap();
        assert_eq!(back, l[2]);
        assert_eq!(l[0].long_name(), "normalized difference vegetation index");
    }

    #[test]
    fn bad_inputs_say_what_to_do() {
        let e = list("ndvi,foo").unwrap_err();
        assert!(matches!(e, IndexError::Unknown { .. }) && e.to_string().contains("ndvi, ndwi, nbr"), "{e}");
        let e = list("x=(nir-rde)/2").unwrap_err();
        assert!(e.to_string().contains("unknown band \"rde\"") && e.to_string().contains("at character"), "{e}");
        let e = list("x=(nir-red").unwrap_err();
        assert!(e.to_string().contains("expected a closing ')'"), "{e}");
        assert!(matches!(list("ndvi,NDVI").unwrap_err(), IndexError::Duplicate { .. }));
        assert_eq!(list("ndvi=nir").unwrap()[0].expression, "nir", "a custom index may take a free built-in name");
        assert!(matches!(list("1x=nir").unwrap_err(), IndexError::BadName { .. }));
        assert!(matches!(list("ndvi,,nbr").unwrap_err(), IndexError::Empty { .. }));
        assert!(matches!(list("scl_x=scl*2").unwrap_err(), IndexError::Expression { .. }), "SCL is no reflectance");
    }

    #[test]
    fn encoding_keeps_zero_as_fill_and_clips() {
        assert_eq!(encode(f32::NAN), 0);
        assert_eq!(encode(0.0), ZERO);
        assert_eq!(encode(0.5), 37768);
        assert_eq!(encode(-1.0), 22768);
        assert_eq!(encode(-0.00005), 32768, "half up");
        assert_eq!(encode(100.0), 65535);
        assert_eq!(encode(-100.0), 1);
        let decoded = f64::from(encode(0.4321)) * SCALE_FACTOR + ADD_OFFSET;
        assert!((decoded - 0.4321).abs() < 1e-9);
    }

    #[test]
    fn computed_per_pixel_with_fill_and_zero_denominators() {
        let read: Vec<String> = ["red", "nir", "swir22"].map(String::from).to_vec();
        let exprs = compile(&list("ndvi,nbr,z=red/(nir-nir)").unwrap(), &read).unwrap();
        // red, nir, swir22 as DN with the +1000 offset: reflectance = dn * 1e-4 - 0.1
        let bands = vec![vec![2000, 0, 2000, 3000], vec![4000, 5000, 0, 3000], vec![1500, 1500, 1500, 1000]];
        let out = compute(&exprs, &bands, 1e-4, -0.1);
        let r = |d: u16| (f64::from(d) * 1e-4 - 0.1) as f32;
        let ndvi = (r(4000) - r(2000)) / (r(4000) + r(2000));
        assert_eq!(out[0], [encode(ndvi), 0, 0, ZERO], "a fill input gives fill; equal bands give 0");
        let nbr = (r(4000) - r(1500)) / (r(4000) + r(1500));
        assert_eq!(
            out[1],
            [
                encode(nbr),
                encode((r(5000) - r(1500)) / (r(5000) + r(1500))),
                0,
                encode((r(3000) - r(1000)) / (r(3000) + r(1000)))
            ]
        );
        assert_eq!(out[2], [0, 0, 0, 0], "a zero denominator is fill");
        let e = compile(&list("nbr").unwrap(), &read[..2]).unwrap_err();
        assert!(e.to_string().contains("unknown band \"swir22\""), "{e}");
    }
}
