//! The catalogs eocube knows by name (`catalog = "planetary-computer"`): each one's STAC API
//! root, its Sentinel-2 L2A collection, and whether its assets must be signed.
//!
//! Owns: those defaults and the detection of a known catalog from its `stac-url`. Must not
//! touch: searching (the client is the same for every catalog) or asset keys (the sensor
//! profile resolves every layout, whatever the catalog).

use std::fmt;
use std::str::FromStr;

/// A catalog eocube knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogPreset {
    /// Element 84 Earth Search v1 (the default).
    EarthSearch,
    /// Element 84 Earth Search v0 (band-number asset keys; older, kept for existing workflows).
    EarthSearchV0,
    /// Copernicus Data Space Ecosystem STAC (STAC 1.1, `B04_10m`-style keys).
    Cdse,
    /// Microsoft Planetary Computer (assets signed with SAS tokens).
    PlanetaryComputer,
}

/// The Planetary Computer's SAS token API; `GET {this}/{collection}` answers a token.
pub const PLANETARY_COMPUTER_TOKEN_URL: &str = "https://planetarycomputer.microsoft.com/api/sas/v1/token";

impl CatalogPreset {
    pub const ALL: [CatalogPreset; 4] = [
        CatalogPreset::EarthSearch,
        CatalogPreset::EarthSearchV0,
        CatalogPreset::Cdse,
        CatalogPreset::PlanetaryComputer,
    ];

    /// The name the `catalog` setting takes.
    pub fn name(self) -> &'static str {
        match self {
            CatalogPreset::EarthSearch => "earth-search",
            CatalogPreset::EarthSearchV0 => "earth-search-v0",
            CatalogPreset::Cdse => "cdse",
            CatalogPreset::PlanetaryComputer => "planetary-computer",
        }
    }

    /// The STAC API root.
    pub fn stac_url(self) -> &'static str {
        match self {
            CatalogPreset::EarthSearch => "https://earth-search.aws.element84.com/v1",
            CatalogPreset::EarthSearchV0 => "https://earth-search.aws.element84.com/v0",
            CatalogPreset::Cdse => "https://stac.dataspace.copernicus.eu/v1",
            CatalogPreset::PlanetaryComputer => "https://planetarycomputer.microsoft.com/api/stac/v1",
        }
    }

    /// The Sentinel-2 L2A collection of this catalog, the one an odc-stac user would load.
    pub fn collection(self) -> &'static str {
        match self {
            CatalogPreset::EarthSearch => "sentinel-2-c1-l2a",
            CatalogPreset::EarthSearchV0 => "sentinel-s2-l2a-cogs",
            CatalogPreset::Cdse | CatalogPreset::PlanetaryComputer => "sentinel-2-l2a",
        }
    }

    /// The SAS token API when the catalog's assets must be signed.
    pub fn token_url(self) -> Option<&'static str> {
        match self {
            CatalogPreset::PlanetaryComputer => Some(PLANETARY_COMPUTER_TOKEN_URL),
            _ => None,
        }
    }

    /// The known catalog whose API root `stac_url` is (host and first path segment compared,
    /// trailing slashes ignored), or `None` for any other URL.
    pub fn detect(stac_url: &str) -> Option<CatalogPreset> {
        let norm = |u: &str| {
            let u = url::Url::parse(u.trim()).ok()?;
            let host = u.host_str()?.to_ascii_lowercase();
            Some(format!("{host}{}", u.path().trim_end_matches('/')))
        };
        let given = norm(stac_url)?;
        CatalogPreset::ALL.into_iter().find(|p| norm(p.stac_url()).as_deref() == Some(given.as_str()))
    }

    fn names() -> String {
        CatalogPreset::ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for CatalogPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CatalogPreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        CatalogPreset::ALL
            .into_iter()
            .find(|p| p.name() == t)
            .ok_or_else(|| format!("unknown catalog; give one of {}, or a `stac-url`", CatalogPreset::names()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for p in CatalogPreset::ALL {
            assert_eq!(p.name().parse::<CatalogPreset>(), Ok(p));
            assert_eq!(CatalogPreset::detect(p.stac_url()), Some(p));
        }
        let e = "usgs".parse::<CatalogPreset>().unwrap_err();
        assert!(e.contains("earth-search, earth-search-v0, cdse, planetary-computer"), "{e}");
    }

    #[test]
    fn detection_ignores_trailing_slashes_and_case_of_the_host() {
        assert_eq!(
            CatalogPreset::detect("https://PlanetaryComputer.microsoft.com/api/stac/v1/"),
            Some(CatalogPreset::PlanetaryComputer)
        );
        assert_eq!(
            CatalogPreset::detect("https://earth-search.aws.element84.com/v0"),
            Some(CatalogPreset::EarthSearchV0)
        );
        assert_eq!(CatalogPreset::detect("http://127.0.0.1:8080/"), None);
        assert_eq!(CatalogPreset::detect("not a url"), None);
    }

    #[test]
    fn only_the_planetary_computer_signs() {
        assert_eq!(CatalogPreset::PlanetaryComputer.token_url(), Some(PLANETARY_COMPUTER_TOKEN_URL));
        assert!(CatalogPreset::ALL.iter().filter(|p| p.token_url().is_some()).count() == 1);
        assert_eq!(CatalogPreset::EarthSearch.collection(), crate::spec::DEFAULT_COLLECTION);
        assert_eq!(CatalogPreset::EarthSearch.stac_url(), crate::spec::DEFAULT_STAC_URL);
    }
}
