//! EPSG CRSs through `proj4rs` (pure Rust) and point transforms between them.

use std::fmt;
use std::sync::Arc;

use proj4rs::Proj;

use super::GridError;

/// A coordinate reference system known by its EPSG code.
#[derive(Clone)]
pub struct Crs {
    epsg: u32,
    proj: Arc<Proj>,
}

impl Crs {
    /// The CRS for an EPSG code known to the embedded definitions.
    pub fn from_epsg(epsg: u32) -> Result<Crs, GridError> {
        let unknown = |reason: String| GridError::UnknownCrs { given: format!("EPSG:{epsg}"), reason };
        let code = u16::try_from(epsg)
            .map_err(|_| unknown("EPSG codes above 65535 are not in the embedded database".into()))?;
        let proj =
            Proj::from_epsg_code(code).map_err(|e| unknown(format!("not in the embedded EPSG database ({e})")))?;
        Ok(Crs { epsg, proj: Arc::new(proj) })
    }

    /// WGS 84 longitude/latitude.
    pub fn wgs84() -> Crs {
        // 4326 is in every build of the definitions; a failure here is a packaging bug.
        #[allow(clippy::expect_used)]
        Crs::from_epsg(4326).expect("EPSG:4326 is always defined")
    }

    /// Parse `EPSG:32618`, `epsg:4326` or a bare `4326`.
    pub fn parse(s: &str) -> Result<Crs, GridError> {
        let t = s.trim();
        let digits = t.strip_prefix("EPSG:").or_else(|| t.strip_prefix("epsg:")).unwrap_or(t);
        let code: u32 = digits.parse().map_err(|_| GridError::UnknownCrs {
            given: s.to_string(),
            reason: "not of the form EPSG:<code>".into(),
        })?;
        Crs::from_epsg(code)
    }

    pub fn epsg(&self) -> u32 {
        self.epsg
    }

    /// True for longitude/latitude CRSs (coordinates in degrees).
    pub fn is_geographic(&self) -> bool {
        self.proj.is_latlong()
    }

    /// Units of the coordinates: `"degree"` or the projection's linear unit (usually `"m"`).
    pub fn units(&self) -> &'static str {
        if self.is_geographic() { "degree" } else { self.proj.units() }
    }

    /// OGC WKT of the CRS (from the same embedded EPSG database), for `crs_wkt` attributes.
    pub fn wkt(&self) -> &'static str {
        u16::try_from(self.epsg).ok().and_then(crs_definitions::from_code).map_or("", |d| d.wkt)
    }

    pub(crate) fn proj(&self) -> &Proj {
        &self.proj
    }
}

impl PartialEq for Crs {
    fn eq(&self, other: &Self) -> bool {
        self.epsg == other.epsg
    }
}

impl fmt::Debug for Crs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EPSG:{}", self.epsg)
    }
}

impl fmt::Display for Crs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EPSG:{}", self.epsg)
    }
}

/// Transforms points from one CRS to another; the identity when both are the same.
#[derive(Clone, Debug)]
pub struct Transformer {
    src: Crs,
    dst: Crs,
}

impl Transformer {
    pub fn new(src: &Crs, dst: &Crs) -> Transformer {
        Transformer { src: src.clone(), dst: dst.clone() }
    }

    pub fn src(&self) -> &Crs {
        &self.src
    }

    pub fn dst(&self) -> &Crs {
        &self.dst
    }

    /// Transform one point `(x, y)`; geographic coordinates are in degrees on both sides.
    #[inline]
    pub fn transform(&self, x: f64, y: f64) -> Result<(f64, f64), GridError> {
        if self.src.epsg == self.dst.epsg {
            return Ok((x, y));
        }
        let (mut px, mut py) = (x, y);
        if self.src.is_geographic() {
            px = px.to_radians();
            py = py.to_radians();
        }
        let (mut ox, mut oy) = proj4rs::adaptors::transform_xy(self.src.proj(), self.dst.proj(), px, py)
            .map_err(|e| self.error(x, y, e.to_string()))?;
        if self.dst.is_geographic() {
            ox = ox.to_degrees();
            oy = oy.to_degrees();
        }
        if !(ox.is_finite() && oy.is_finite()) {
            return Err(self.error(x, y, "result is not finite".into()));
        }
        Ok((ox, oy))
    }

    /// Transform many points in place; the first failure is returned.
    pub fn transform_many(&self, points: &mut [(f64, f64)]) -> Result<(), GridError> {
        for p in points.iter_mut() {
            *p = self.transform(p.0, p.1)?;
        }
        Ok(())
    }

    fn error(&self, x: f64, y: f64, reason: String) -> GridError {
        GridError::Transform { from: self.src.to_string(), to: self.dst.to_string(), x, y, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epsg_forms() {
        assert_eq!(Crs::parse("EPSG:32618").map(|c| c.epsg()), Ok(32618));
        assert_eq!(Crs::parse("epsg:4326").map(|c| c.epsg()), Ok(4326));
        assert_eq!(Crs::parse(" 3857 ").map(|c| c.epsg()), Ok(3857));
        assert!(Crs::parse("4326").is_ok_and(|c| c.is_geographic()));
        assert!(Crs::parse("EPSG:32618").is_ok_and(|c| !c.is_geographic() && c.units() == "m"));
    }

    #[test]
    fn wkt_names_the_crs() {
        assert!(Crs::from_epsg(32618).unwrap().wkt().contains("UTM zone 18N"));
        assert!(Crs::wgs84().wkt().contains("WGS 84"));
    }

    #[test]
    fn unknown_crs_is_a_clear_error() {
        for bad in ["EPSG:999999", "EPSG:1", "WGS84", "", "EPSG:"] {
            let err = Crs::parse(bad).expect_err(bad);
            let msg = err.to_string();
            assert!(msg.contains("unknown CRS") && msg.contains("EPSG:4326"), "{msg}");
        }
    }

    #[test]
    fn utm_round_trip_matches_known_point() {
        // GDAL 3.10 (rasterio.warp.transform): lon -72, lat 44 → E 740526.321052491, N 4876249.126962001
        let t = Transformer::new(&Crs::wgs84(), &Crs::from_epsg(32618).unwrap());
        let (e, n) = t.transform(-72.0, 44.0).unwrap();
        assert!((e - 740_526.321_052_491).abs() < 1e-6, "{e}");
        assert!((n - 4_876_249.126_962_001).abs() < 1e-6, "{n}");
        let back = Transformer::new(&Crs::from_epsg(32618).unwrap(), &Crs::wgs84());
        let (lon, lat) = back.transform(e, n).unwrap();
        assert!((lon + 72.0).abs() < 1e-9 && (lat - 44.0).abs() < 1e-9);
    }

    #[test]
    fn southern_utm_has_false_northing() {
        let t = Transformer::new(&Crs::wgs84(), &Crs::from_epsg(32720).unwrap());
        let (e, n) = t.transform(-63.0, -30.0).unwrap();
        assert!((e - 500_000.0).abs() < 1e-6, "{e}");
        assert!((n - 6_681_214.647_418_793).abs() < 1e-6, "{n}");
    }
}
