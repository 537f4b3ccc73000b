//! Colormaps for one band or an expression, as small tables of control points interpolated
//! linearly into 256-entry lookup tables.
//!
//! Owns: the names and colours of the colormaps. Must not touch: how values are scaled to 0..1
//! (that is `render`).

/// The colormaps offered, for messages and docs.
pub const NAMES: &[&str] = &["gray", "greys", "viridis", "magma", "rdylgn", "ndvi"];

/// Control points `(position in 0..1, 0xRRGGBB)`, in increasing position.
fn control_points(name: &str) -> Option<&'static [(f32, u32)]> {
    // viridis and magma: matplotlib's, sampled at ten evenly spaced points.
    const VIRIDIS: &[(f32, u32)] = &[
        (0.0, 0x440154),
        (1.0 / 9.0, 0x482878),
        (2.0 / 9.0, 0x3e4a89),
        (3.0 / 9.0, 0x31688e),
        (4.0 / 9.0, 0x26828e),
        (5.0 / 9.0, 0x1f9e89),
        (6.0 / 9.0, 0x35b779),
        (7.0 / 9.0, 0x6dcd59),
        (8.0 / 9.0, 0xb4de2c),
        (1.0, 0xfde725),
    ];
    const MAGMA: &[(f32, u32)] = &[
        (0.0, 0x000004),
        (1.0 / 9.0, 0x180f3e),
        (2.0 / 9.0, 0x451077),
        (3.0 / 9.0, 0x721f81),
        (4.0 / 9.0, 0x9f2f7f),
        (5.0 / 9.0, 0xcd4071),
        (6.0 / 9.0, 0xf1605d),
        (7.0 / 9.0, 0xfd9567),
        (8.0 / 9.0, 0xfec98d),
        (1.0, 0xfcfdbf),
    ];
    // ColorBrewer RdYlGn, 11 classes.
    const RDYLGN: &[(f32, u32)] = &[
        (0.0, 0xa50026),
        (0.1, 0xd73027),
        (0.2, 0xf46d43),
        (0.3, 0xfdae61),
        (0.4, 0xfee08b),
        (0.5, 0xffffbf),
        (0.6, 0xd9ef8b),
        (0.7, 0xa6d96a),
        (0.8, 0x66bd63),
        (0.9, 0x1a9850),
        (1.0, 0x006837),
    ];
    // For NDVI over the default expression stretch -1..1: water blue below 0, bare soil beige
    // at 0 to 0.2, then greens to dense vegetation.
    const NDVI: &[(f32, u32)] = &[
        (0.0, 0x2166ac),
        (0.45, 0x92c5de),
        (0.5, 0xc8b68e),
        (0.6, 0xe6dca0),
        (0.7, 0xa6d96a),
        (0.8, 0x4daf4a),
        (1.0, 0x00441b),
    ];
    const GRAY: &[(f32, u32)] = &[(0.0, 0x000000), (1.0, 0xffffff)];
    // matplotlib's Greys runs from white to black.
    const GREYS: &[(f32, u32)] = &[(0.0, 0xffffff), (1.0, 0x000000)];
    Some(match name {
        "gray" | "grey" => GRAY,
        "greys" => GREYS,
        "viridis" => VIRIDIS,
        "magma" => MAGMA,
        "rdylgn" => RDYLGN,
        "ndvi" => NDVI,
        _ => return None,
    })
}

/// A colormap as a lookup table: entry `i` is the colour of `i / 255`.
#[derive(Clone, PartialEq, Eq)]
pub struct Colormap {
    pub name: String,
    pub lut: [[u8; 3]; 256],
}

impl std::fmt::Debug for Colormap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Colormap({})", self.name)
    }
}

impl Colormap {
    /// The colormap called `name` (case-insensitive; a `_r` suffix reverses it).
    pub fn named(name: &str) -> Option<Colormap> {
        let lower = name.trim().to_ascii_lowercase();
        let (base, reversed) = match lower.strip_suffix("_r") {
            Some(b) => (b, true),
            None => (lower.as_str(), false),
        };
        let points = control_points(base)?;
        let mut lut = [[0u8; 3]; 256];
        for (i, entry) in lut.iter_mut().enumerate() {
            let t = i as f32 / 255.0;
            *entry = interpolate(points, if reversed { 1.0 - t } else { t });
        }
        Some(Colormap { name: lower, lut })
    }

    pub fn gray() -> Colormap {
        let mut lut = [[0u8; 3]; 256];
        for (i, e) in lut.iter_mut().enumerate() {
            *e = [i as u8; 3];
        }
        Colormap { name: "gray".into(), lut }
    }

    /// The colour of `t` in 0..1 (clamped).
    #[inline]
    pub fn at(&self, t: f32) -> [u8; 3] {
        self.lut[(t.clamp(0.0, 1.0) * 255.0 + 0.5) as usize]
    }
}

fn interpolate(points: &[(f32, u32)], t: f32) -> [u8; 3] {
    let rgb = |c: u32| [(c >> 16) as f32, ((c >> 8) & 0xff) as f32, (c & 0xff) as f32];
    let mut lo = points[0];
    for &hi in &points[1..] {
        if t <= hi.0 {
            let span = (hi.0 - lo.0).max(f32::EPSILON);
            let f = ((t - lo.0) / span).clamp(0.0, 1.0);
            let (a, b) = (rgb(lo.1), rgb(hi.1));
            return [0, 1, 2].map(|k| (a[k] + (b[k] - a[k]) * f).round() as u8);
        }
        lo = hi;
    }
    rgb(lo.1).map(|v| v as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_midpoints_are_the_control_points() {
        for name in NAMES {
            assert!(Colormap::named(name).is_some(), "{name}");
        }
        let v = Colormap::named("viridis").unwrap();
        assert_eq!(v.at(0.0), [0x44, 0x01, 0x54]);
        assert_eq!(v.at(1.0), [0xfd, 0xe7, 0x25]);
        assert_eq!(v.at(2.0), v.at(1.0));
        assert_eq!(v.at(f32::NAN), v.at(0.0), "NaN is never indexed out of the table");
        let g = Colormap::named("GRAY").unwrap();
        assert_eq!(g.lut, Colormap::gray().lut);
        assert_eq!(g.at(0.5), [128, 128, 128]);
        let r = Colormap::named("rdylgn").unwrap();
        // entry 128 is 0.502, a hair past the middle control point
        let mid = r.at(0.5);
        assert!(mid.iter().zip([0xff, 0xff, 0xbf]).all(|(a, b)| (i32::from(*a) - b).abs() <= 2), "{mid:?}");
        let rr = Colormap::named("rdylgn_r").unwrap();
        assert_eq!(rr.at(0.0), r.at(1.0));
        assert_eq!(Colormap::named("greys").unwrap().at(0.0), [255, 255, 255]);
        assert!(Colormap::named("jet").is_none());
    }
}
