//! The documents that describe the tiles: TileJSON 3.0.0, OGC API - Tiles (landing page,
//! conformance, tilesets list, tileset, the WebMercatorQuad tile matrix set) and WMTS 1.0.0
//! capabilities for desktop GIS (QGIS, GDAL).
//!
//! Owns: the shape of those documents. Pure functions of a [`TileSetInfo`]; must not touch I/O,
//! the cube or HTTP (the server hands in its base URL and the query string to carry on).

use serde_json::{Value, json};

use super::encode::Format;
use super::tms::{self, MAX_ZOOM, ORIGIN_SHIFT, TILE_SIZE, TileId};
use crate::grid::Bbox;

/// The OGC name of the tile matrix set.
pub const TMS_ID: &str = "WebMercatorQuad";
const TMS_URI: &str = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad";
const CRS_3857: &str = "http://www.opengis.net/def/crs/EPSG/0/3857";
const REL_TILING_SCHEME: &str = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme";

/// The conformance classes this server implements.
pub const CONFORMANCE: &[&str] = &[
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/png",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/jpeg",
    "http://www.opengis.net/spec/tms/2.0/conf/tilematrixset",
    "http://www.opengis.net/spec/tms/2.0/conf/json-tilematrixset",
    "http://www.opengis.net/spec/tms/2.0/conf/tilesetmetadata",
    "http://www.opengis.net/spec/tms/2.0/conf/json-tilesetmetadata",
];

/// What the documents of one cube's tiles say.
#[derive(Debug, Clone)]
pub struct TileSetInfo {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// The cube id as in its URLs (`demo` or `demo@v1`).
    pub id: String,
    pub title: String,
    pub description: String,
    /// Extent in degrees.
    pub lonlat: Bbox,
    pub minzoom: u32,
    pub maxzoom: u32,
    /// Query string carried into tile URLs (`bands=...&rescale=...`), without `?`; may be empty.
    pub query: String,
}

impl TileSetInfo {
    fn cube_url(&self) -> String {
        format!("{}/cubes/{}", self.base, self.id)
    }

    fn with_query(&self, url: String) -> String {
        if self.query.is_empty() { url } else { format!("{url}?{}", self.query) }
    }

    /// The tile URL template with `{z}/{x}/{y}` (TileJSON's and MapLibre's form).
    pub fn tile_template(&self, format: Format) -> String {
        self.with_query(format!("{}/tiles/{TMS_ID}/{{z}}/{{x}}/{{y}}.{}", self.cube_url(), format.extension()))
    }

    /// The extent clamped to what Web Mercator shows.
    fn clamped(&self) -> Bbox {
        let b = self.lonlat;
        Bbox {
            west: b.west.max(-180.0),
            south: b.south.max(-tms::MAX_LATITUDE),
            east: b.east.min(180.0),
            north: b.north.min(tms::MAX_LATITUDE),
        }
    }

    /// A zoom at which the whole extent fits in a few tiles, within the zoom range.
    fn center_zoom(&self) -> u32 {
        let b = self.clamped();
        let span = b.width().max(b.height()).max(1e-9);
        let fit = (360.0 / span).log2().floor().clamp(0.0, f64::from(MAX_ZOOM)) as u32;
        fit.clamp(self.minzoom, self.maxzoom.max(self.minzoom))
    }

    /// Rows and columns of the tiles covering the extent at zoom `z`.
    fn limits(&self, z: u32) -> (TileId, TileId) {
        let b = self.clamped();
        (TileId::containing(b.west, b.north, z), TileId::containing(b.east, b.south, z))
    }
}

/// TileJSON 3.0.0 of one cube.
pub fn tilejson(info: &TileSetInfo, format: Format) -> Value {
    let b = info.clamped();
    json!({
        "tilejson": "3.0.0",
        "name": info.title,
        "description": info.description,
        "version": "1.0.0",
        "scheme": "xyz",
        "tiles": [info.tile_template(format)],
        // Raster tiles have no vector layers; the schema of the spec lists the key as required.
        "vector_layers": [],
        "minzoom": info.minzoom,
        "maxzoom": info.maxzoom,
        "bounds": [b.west, b.south, b.east, b.north],
        "center": [(b.west + b.east) / 2.0, (b.south + b.north) / 2.0, info.center_zoom()],
    })
}

fn link(href: String, rel: &str, kind: &str, title: &str) -> Value {
    json!({"href": href, "rel": rel, "type": kind, "title": title})
}

/// The OGC API landing page (`/?f=json`): links to the conformance, the tile matrix sets and
/// every cube's tilesets.
pub fn landing(base: &str, cubes: &[(String, String)]) -> Value {
    let mut links = vec![
        link(format!("{base}/?f=json"), "self", "application/json", "this document"),
        link(format!("{base}/"), "alternate", "text/html", "the catalog page"),
        link(format!("{base}/conformance"), "conformance", "application/json", "conformance classes"),
        link(
            format!("{base}/conformance"),
            "http://www.opengis.net/def/rel/ogc/1.0/conformance",
            "application/json",
            "conformance classes",
        ),
        link(
            format!("{base}/tileMatrixSets"),
            "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes",
            "application/json",
            "tile matrix sets",
        ),
        link(format!("{base}/cubes"), "data", "application/json", "the cubes"),
    ];
    for (id, title) in cubes {
        links.push(link(
            format!("{base}/cubes/{id}/tiles"),
            "http://www.opengis.net/def/rel/ogc/1.0/tilesets-map",
            "application/json",
            title,
        ));
    }
    json!({
        "title": "eocube serve",
        "description": "Map tiles of eocube datacubes",
        "links": links,
    })
}

pub fn conformance() -> Value {
    json!({ "conformsTo": CONFORMANCE })
}

fn tileset_links(info: &TileSetInfo) -> Vec<Value> {
    let cube = info.cube_url();
    vec![
        link(info.with_query(format!("{cube}/tiles/{TMS_ID}")), "self", "application/json", "this tileset"),
        link(
            format!("{}/tileMatrixSets/{TMS_ID}", info.base),
            REL_TILING_SCHEME,
            "application/json",
            "the tile matrix set",
        ),
        link(
            info.with_query(format!("{cube}/tiles/{TMS_ID}/tilejson.json")),
            "alternate",
            "application/json",
            "TileJSON",
        ),
        link(cube, "http://www.opengis.net/def/rel/ogc/1.0/geodata", "application/json", &info.title),
    ]
}

/// The tilesets list of one cube (`/cubes/{id}/tiles`): WebMercatorQuad only.
pub fn tilesets_list(info: &TileSetInfo) -> Value {
    json!({
        "tilesets": [{
            "title": info.title,
            "dataType": "map",
            "crs": CRS_3857,
            "tileMatrixSetURI": TMS_URI,
            "links": tileset_links(info),
        }]
    })
}

/// The tileset of one cube (`/cubes/{id}/tiles/WebMercatorQuad`).
pub fn tileset(info: &TileSetInfo) -> Value {
    let mut links = tileset_links(info);
    for format in [Format::Png, Format::Webp, Format::Jpeg] {
        let mut l = link(
            info.with_query(format!(
                "{}/tiles/{TMS_ID}/{{tileMatrix}}/{{tileCol}}/{{tileRow}}.{}",
                info.cube_url(),
                format.extension()
            )),
            "item",
            format.content_type(),
            "a tile",
        );
        l["templated"] = json!(true);
        links.push(l);
    }
    let limits: Vec<Value> = (info.minzoom..=info.maxzoom)
        .map(|z| {
            let (a, b) = info.limits(z);
            json!({"tileMatrix": z.to_string(), "minTileRow": a.y, "maxTileRow": b.y, "minTileCol": a.x, "maxTileCol": b.x})
        })
        .collect();
    let b = info.clamped();
    let (x0, y0) = tms::lonlat_to_mercator(b.west, b.south);
    let (x1, y1) = tms::lonlat_to_mercator(b.east, b.north);
    let (cx, cy) = tms::lonlat_to_mercator((b.west + b.east) / 2.0, (b.south + b.north) / 2.0);
    let cz = info.center_zoom();
    json!({
        "title": info.title,
        "description": info.description,
        "dataType": "map",
        "crs": CRS_3857,
        "tileMatrixSetURI": TMS_URI,
        "mediaTypes": ["image/png", "image/webp", "image/jpeg"],
        "tileMatrixSetLimits": limits,
        "boundingBox": {"lowerLeft": [x0, y0], "upperRight": [x1, y1], "crs": CRS_3857},
        "centerPoint": {"coordinates": [cx, cy], "crs": CRS_3857, "tileMatrix": cz.to_string(),
                        "scaleDenominator": tms::scale_denominator(cz), "cellSize": tms::resolution(cz)},
        "links": links,
    })
}

/// The tile matrix sets list (`/tileMatrixSets`).
pub fn tile_matrix_sets(base: &str) -> Value {
    json!({"tileMatrixSets": [{
        "id": TMS_ID,
        "title": "Google Maps Compatible for the World",
        "uri": TMS_URI,
        "links": [link(format!("{base}/tileMatrixSets/{TMS_ID}"), "self", "application/json", TMS_ID)],
    }]})
}

/// WebMercatorQuad as an OGC Two Dimensional Tile Matrix Set 2.0 JSON document.
pub fn tile_matrix_set() -> Value {
    let matrices: Vec<Value> = (0..=MAX_ZOOM)
        .map(|z| {
            let n = 1u64 << z;
            json!({
                "id": z.to_string(),
                "scaleDenominator": tms::scale_denominator(z),
                "cellSize": tms::resolution(z),
                "cornerOfOrigin": "topLeft",
                "pointOfOrigin": [-ORIGIN_SHIFT, ORIGIN_SHIFT],
                "tileWidth": TILE_SIZE,
                "tileHeight": TILE_SIZE,
                "matrixWidth": n,
                "matrixHeight": n,
            })
        })
        .collect();
    json!({
        "id": TMS_ID,
        "title": "Google Maps Compatible for the World",
        "uri": TMS_URI,
        "crs": CRS_3857,
        "orderedAxes": ["X", "Y"],
        "wellKnownScaleSet": "http://www.opengis.net/def/wkss/OGC/1.0/GoogleMapsCompatible",
        "boundingBox": {"lowerLeft": [-ORIGIN_SHIFT, -ORIGIN_SHIFT], "upperRight": [ORIGIN_SHIFT, ORIGIN_SHIFT], "crs": CRS_3857},
        "tileMatrices": matrices,
    })
}

/// XML text with `& < > " '` escaped.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// WMTS 1.0.0 capabilities with one layer (the cube) in PNG, WebP and JPEG, over the tile
/// matrices `minzoom..=maxzoom` of WebMercatorQuad (identifiers are the zooms).
pub fn wmts_capabilities(info: &TileSetInfo) -> String {
    let e = xml_escape;
    let b = info.clamped();
    let tms_name = TMS_ID;
    let mut s = String::new();
    s.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>
<Capabilities xmlns="http://www.opengis.net/wmts/1.0" xmlns:ows="http://www.opengis.net/ows/1.1" xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.opengis.net/wmts/1.0 http://schemas.opengis.net/wmts/1.0/wmtsGetCapabilities_response.xsd" version="1.0.0">
  <ows:ServiceIdentification>
    <ows:Title>eocube serve</ows:Title>
    <ows:ServiceType>OGC WMTS</ows:ServiceType>
    <ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion>
  </ows:ServiceIdentification>
  <Contents>
    <Layer>
"#);
    s.push_str(&format!("      <ows:Title>{}</ows:Title>\n", e(&info.title)));
    s.push_str(&format!("      <ows:Abstract>{}</ows:Abstract>\n", e(&info.description)));
    s.push_str(&format!(
        "      <ows:WGS84BoundingBox>\n        <ows:LowerCorner>{} {}</ows:LowerCorner>\n        <ows:UpperCorner>{} {}</ows:UpperCorner>\n      </ows:WGS84BoundingBox>\n",
        b.west, b.south, b.east, b.north
    ));
    s.push_str(&format!("      <ows:Identifier>{}</ows:Identifier>\n", e(&info.id)));
    s.push_str("      <Style isDefault=\"true\">\n        <ows:Identifier>default</ows:Identifier>\n      </Style>\n");
    for f in [Format::Png, Format::Webp, Format::Jpeg] {
        s.push_str(&format!("      <Format>{}</Format>\n", f.content_type()));
    }
    s.push_str(&format!(
        "      <TileMatrixSetLink>\n        <TileMatrixSet>{tms_name}</TileMatrixSet>\n        <TileMatrixSetLimits>\n"
    ));
    for z in info.minzoom..=info.maxzoom {
        let (a, c) = info.limits(z);
        s.push_str(&format!(
            "          <TileMatrixLimits>\n            <TileMatrix>{z}</TileMatrix>\n            <MinTileRow>{}</MinTileRow>\n            <MaxTileRow>{}</MaxTileRow>\n            <MinTileCol>{}</MinTileCol>\n            <MaxTileCol>{}</MaxTileCol>\n          </TileMatrixLimits>\n",
            a.y, c.y, a.x, c.x
        ));
    }
    s.push_str("        </TileMatrixSetLimits>\n      </TileMatrixSetLink>\n");
    for f in [Format::Png, Format::Webp, Format::Jpeg] {
        let template = info.with_query(format!(
            "{}/tiles/{TMS_ID}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.{}",
            info.cube_url(),
            f.extension()
        ));
        s.push_str(&format!(
            "      <ResourceURL format=\"{}\" resourceType=\"tile\" template=\"{}\"/>\n",
            f.content_type(),
            e(&template)
        ));
    }
    s.push_str("    </Layer>\n    <TileMatrixSet>\n");
    s.push_str(&format!("      <ows:Identifier>{tms_name}</ows:Identifier>\n"));
    s.push_str("      <ows:SupportedCRS>urn:ogc:def:crs:EPSG::3857</ows:SupportedCRS>\n");
    s.push_str("      <WellKnownScaleSet>urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible</WellKnownScaleSet>\n");
    for z in 0..=info.maxzoom.min(MAX_ZOOM) {
        let n = 1u64 << z;
        s.push_str(&format!(
            "      <TileMatrix>\n        <ows:Identifier>{z}</ows:Identifier>\n        <ScaleDenominator>{}</ScaleDenominator>\n        <TopLeftCorner>{} {}</TopLeftCorner>\n        <TileWidth>{TILE_SIZE}</TileWidth>\n        <TileHeight>{TILE_SIZE}</TileHeight>\n        <MatrixWidth>{n}</MatrixWidth>\n        <MatrixHeight>{n}</MatrixHeight>\n      </TileMatrix>\n",
            tms::scale_denominator(z),
            -ORIGIN_SHIFT,
            ORIGIN_SHIFT
        ));
    }
    s.push_str("    </TileMatrixSet>\n  </Contents>\n</Capabilities>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> TileSetInfo {
        TileSetInfo {
            base: "http://127.0.0.1:8080".into(),
            id: "demo@main".into(),
            title: "demo <cube> & co".into(),
            description: "rgb_median".into(),
            lonlat: Bbox { west: -72.05, south: 44.0, east: -71.95, north: 44.06 },
            minzoom: 9,
            maxzoom: 14,
            query: "bands=red,green,blue&rescale=0,0.3".into(),
        }
    }

    #[test]
    fn tilejson_carries_the_query_and_the_extent() {
        let t = tilejson(&info(), Format::Png);
        assert_eq!(t["tilejson"], "3.0.0");
        assert_eq!(
            t["tiles"][0],
            "http://127.0.0.1:8080/cubes/demo@main/tiles/WebMercatorQuad/{z}/{x}/{y}.png?bands=red,green,blue&rescale=0,0.3"
        );
        assert_eq!(t["bounds"], json!([-72.05, 44.0, -71.95, 44.06]));
        assert_eq!((t["minzoom"].as_u64(), t["maxzoom"].as_u64()), (Some(9), Some(14)));
        let cz = t["center"][2].as_u64().unwrap();
        assert!((9..=14).contains(&cz), "{cz}");
    }

    #[test]
    fn tileset_limits_cover_the_extent() {
        let t = tileset(&info());
        let limits = t["tileMatrixSetLimits"].as_array().unwrap();
        assert_eq!(limits.len(), 6);
        // z 12 around (-72, 44.03): columns 1228..1229, rows 1489..1490
        let z12 = &limits[3];
        assert_eq!(z12["tileMatrix"], "12");
        let col = TileId::containing(-72.0, 44.03, 12);
        assert!(z12["minTileCol"].as_u64().unwrap() <= col.x && col.x <= z12["maxTileCol"].as_u64().unwrap());
        assert!(z12["minTileRow"].as_u64().unwrap() <= col.y && col.y <= z12["maxTileRow"].as_u64().unwrap());
        let items: Vec<&Value> = t["links"].as_array().unwrap().iter().filter(|l| l["rel"] == "item").collect();
        assert_eq!(items.len(), 3);
        assert!(
            items[0]["href"]
                .as_str()
                .unwrap()
                .ends_with("/{tileMatrix}/{tileCol}/{tileRow}.png?bands=red,green,blue&rescale=0,0.3")
        );
    }

    #[test]
    fn tile_matrix_set_is_web_mercator_quad() {
        let t = tile_matrix_set();
        let m = t["tileMatrices"].as_array().unwrap();
        assert_eq!(m.len(), 25);
        assert_eq!(m[0]["matrixWidth"], 1);
        assert_eq!(m[24]["matrixHeight"], 1u64 << 24);
        assert!((m[0]["scaleDenominator"].as_f64().unwrap() - 559_082_264.028_717_8).abs() < 1e-3);
    }

    #[test]
    fn wmts_is_escaped_xml_with_the_zoom_range() {
        let x = wmts_capabilities(&info());
        assert!(x.contains("<ows:Title>demo &lt;cube&gt; &amp; co</ows:Title>"));
        assert!(x.contains("template=\"http://127.0.0.1:8080/cubes/demo@main/tiles/WebMercatorQuad/{TileMatrix}/{TileCol}/{TileRow}.png?bands=red,green,blue&amp;rescale=0,0.3\""));
        assert_eq!(x.matches("<TileMatrixLimits>").count(), 6);
        assert_eq!(x.matches("<TileMatrix>\n").count(), 15);
        assert!(!x.contains(" & "));
    }
}
