//! Pixels of a tile: nearest sampling of a level window, DN to reflectance, stretch, colormaps
//! and expressions, into RGBA.
//!
//! Owns: what a tile looks like for a [`Style`] (DN 0 is fill and transparent; a pixel with any
//! band at fill is transparent; a `NaN` expression result is transparent). Must not touch: I/O,
//! tile geometry (that is `tms`) or image encoding (that is `encode`).

use super::colormap::Colormap;
use super::expr::Expr;
use super::tms::{OUTSIDE, SampleMap};
use crate::store::DataValues;

/// Default stretch of reflectance bands (what `default_rescale` in the cube summary says).
pub const DEFAULT_RESCALE: (f32, f32) = (0.0, 0.3);
/// Default stretch of an expression (normalized differences such as NDVI span -1..1).
pub const DEFAULT_EXPRESSION_RESCALE: (f32, f32) = (-1.0, 1.0);

/// A linear stretch of values `lo..hi` onto 0..255 (`lo > hi` inverts it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stretch {
    pub lo: f32,
    pub hi: f32,
}

impl Stretch {
    pub fn new((lo, hi): (f32, f32)) -> Stretch {
        Stretch { lo, hi }
    }

    /// `v` in 0..1 (clamped).
    #[inline]
    pub fn unit(&self, v: f32) -> f32 {
        ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)
    }

    #[inline]
    fn byte(&self, v: f32) -> u8 {
        (self.unit(v) * 255.0 + 0.5) as u8
    }
}

/// How a tile is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Style {
    /// Three bands as red, green and blue, each with its own stretch.
    Rgb { bands: [usize; 3], stretch: [Stretch; 3] },
    /// One band through a colormap.
    Band { band: usize, stretch: Stretch, colormap: Colormap },
    /// Band maths through a colormap.
    Expression { expr: Expr, stretch: Stretch, colormap: Colormap },
}

impl Style {
    /// The cube's band indices this style reads, in the order [`Style::render`] takes them.
    pub fn bands(&self) -> Vec<usize> {
        match self {
            Style::Rgb { bands, .. } => bands.to_vec(),
            Style::Band { band, .. } => vec![*band],
            Style::Expression { expr, .. } => expr.bands().to_vec(),
        }
    }

    /// RGBA of `n` pixels from the DNs of [`Style::bands`] (`values[i]` holds `n` DNs of the
    /// i-th of them), read as reflectance with the cube's `scale`.
    pub fn render(&self, values: &[Vec<u16>], n: usize, scale: DnScale) -> Vec<u8> {
        let mut out = vec![0u8; n * 4];
        if values.iter().any(|v| v.len() != n) {
            return out;
        }
        match self {
            Style::Rgb { stretch, .. } => {
                let [r, g, b] = [&values[0], &values[1], &values[2]];
                for (i, px) in out.chunks_exact_mut(4).enumerate() {
                    let dn = [r[i], g[i], b[i]];
                    if dn.contains(&0) {
                        continue;
                    }
                    for k in 0..3 {
                        px[k] = stretch[k].byte(scale.reflectance(dn[k]));
                    }
                    px[3] = 255;
                }
            }
            Style::Band { stretch, colormap, .. } => {
                for (px, &dn) in out.chunks_exact_mut(4).zip(&values[0]) {
                    if dn == 0 {
                        continue;
                    }
                    px[..3].copy_from_slice(&colormap.at(stretch.unit(scale.reflectance(dn))));
                    px[3] = 255;
                }
            }
            Style::Expression { expr, stretch, colormap } => {
                let refl: Vec<Vec<f32>> =
                    values.iter().map(|v| v.iter().map(|&d| scale.reflectance_or_nan(d)).collect()).collect();
                let used = expr.bands();
                let lookup = |band: usize| -> &[f32] {
                    used.iter().position(|&b| b == band).and_then(|i| refl.get(i)).map_or(&[][..], |v| &v[..])
                };
                let result = expr.eval(n, &lookup);
                for (px, v) in out.chunks_exact_mut(4).zip(result) {
                    if !v.is_finite() {
                        continue;
                    }
                    px[..3].copy_from_slice(&colormap.at(stretch.unit(v)));
                    px[3] = 255;
                }
            }
        }
        out
    }
}

/// A cube's CF `scale_factor` and `add_offset` (its sensor's: Sentinel-2 and Landsat differ).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DnScale {
    pub scale_factor: f64,
    pub add_offset: f64,
}

impl DnScale {
    /// The scale of a cube's values.
    pub fn of(values: &DataValues) -> DnScale {
        DnScale { scale_factor: values.scale_factor, add_offset: values.add_offset }
    }

    /// Reflectance of a DN.
    #[inline]
    pub fn reflectance(&self, dn: u16) -> f32 {
        (f64::from(dn) * self.scale_factor + self.add_offset) as f32
    }

    /// Reflectance, or `NaN` for fill (DN 0).
    #[inline]
    pub fn reflectance_or_nan(&self, dn: u16) -> f32 {
        if dn == 0 { f32::NAN } else { self.reflectance(dn) }
    }

    /// Decimals that show one DN step (4 for 0.0001, 5 for Landsat's 0.0000275).
    pub fn decimals(&self) -> i32 {
        (-self.scale_factor.abs().log10()).ceil().clamp(0.0, 12.0) as i32
    }
}

/// The DNs a sample map takes from a window read (`window` row-major, as the map's window);
/// pixels outside the level are fill.
pub fn sample(map: &SampleMap, window: &[u16]) -> Vec<u16> {
    map.index.iter().map(|&i| if i == OUTSIDE { 0 } else { window.get(i as usize).copied().unwrap_or(0) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::PixelWindow;

    const S2: DnScale = DnScale { scale_factor: 0.0001, add_offset: -0.1 };

    fn dn(refl: f32) -> u16 {
        ((f64::from(refl) - S2.add_offset) / S2.scale_factor).round() as u16
    }

    #[test]
    fn dn_to_reflectance_is_the_cf_decoding() {
        assert!((S2.reflectance(1000) - 0.0).abs() < 1e-7);
        assert!((S2.reflectance(4000) - 0.3).abs() < 1e-6);
        assert!(S2.reflectance_or_nan(0).is_nan());
        assert_eq!(dn(0.3), 4000);
        assert_eq!(S2.decimals(), 4);
        // Landsat Collection 2: DN 7273 (0.2 / 0.0000275 = 7272.7) is reflectance 0
        let landsat = DnScale::of(
            &DataValues::of(&crate::reduce::Reducer::Median, false).of_sensor("landsat-c2-l2", &["red".to_string()]),
        );
        assert!(landsat.reflectance(7273).abs() < 1e-4 && (landsat.reflectance(18182) - 0.3).abs() < 1e-4);
        assert_eq!(landsat.decimals(), 5);
    }

    #[test]
    fn rgb_stretches_each_band_and_fill_is_transparent() {
        let s = Stretch::new(DEFAULT_RESCALE);
        let style = Style::Rgb { bands: [0, 1, 2], stretch: [s, s, Stretch::new((0.0, 0.6))] };
        let r = vec![dn(0.0), dn(0.15), dn(0.3), 0, dn(0.5)];
        let g = vec![dn(0.3), dn(0.15), dn(0.0), dn(0.1), dn(-0.05)];
        let b = vec![dn(0.3), dn(0.3), dn(0.6), dn(0.1), dn(0.0)];
        let px = style.render(&[r, g, b], 5, S2);
        assert_eq!(&px[0..4], &[0, 255, 128, 255]);
        assert_eq!(&px[4..8], &[128, 128, 128, 255]);
        assert_eq!(&px[8..12], &[255, 0, 255, 255]);
        assert_eq!(&px[12..16], &[0, 0, 0, 0], "one band at fill: transparent");
        assert_eq!(&px[16..20], &[255, 0, 0, 255], "clamped at both ends");
    }

    #[test]
    fn one_band_goes_through_the_colormap() {
        let cm = Colormap::named("viridis").unwrap();
        let style = Style::Band { band: 3, stretch: Stretch::new((0.0, 0.5)), colormap: cm.clone() };
        let px = style.render(&[vec![dn(0.0), dn(0.5), 0]], 3, S2);
        assert_eq!(&px[0..3], &cm.at(0.0));
        assert_eq!(&px[4..7], &cm.at(1.0));
        assert_eq!(px[11], 0);
    }

    #[test]
    fn expression_ndvi_and_its_no_data() {
        let bands: Vec<String> = ["red", "green", "blue", "nir"].map(String::from).to_vec();
        let expr = Expr::parse("(nir-red)/(nir+red)", &bands).unwrap();
        let style =
            Style::Expression { expr, stretch: Stretch::new(DEFAULT_EXPRESSION_RESCALE), colormap: Colormap::gray() };
        assert_eq!(style.bands(), vec![0, 3]);
        // red, nir: ndvi 0.6 -> (0.6+1)/2 = 0.8 -> 204; nir+red = 0 -> no data; fill -> no data
        let red = vec![dn(0.1), dn(0.0), 0];
        let nir = vec![dn(0.4), dn(0.0), dn(0.4)];
        let px = style.render(&[red, nir], 3, S2);
        assert_eq!(&px[0..4], &[204, 204, 204, 255]);
        assert_eq!(px[7], 0, "division by zero is transparent");
        assert_eq!(px[11], 0, "fill is transparent");
    }

    #[test]
    fn sampling_takes_the_mapped_pixel_or_fill() {
        let map = SampleMap {
            level: 0,
            window: PixelWindow { row: 10, col: 20, height: 2, width: 2 },
            index: vec![3, OUTSIDE, 0, 1, 2, 99],
        };
        assert_eq!(sample(&map, &[11, 12, 13, 14]), vec![14, 0, 11, 12, 13, 0]);
    }
}
