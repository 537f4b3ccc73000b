//! The pages of `eocube serve`: the catalog (`/`) and the map (`/cubes/{id}/map`), their
//! scripts and style, and MapLibre GL JS, all embedded in the binary at build time so the pages
//! work offline and the build needs no network (`vendor/` is written by
//! `scripts/vendor-maplibre.sh`, which records the version, checksums and licence).
//!
//! The pages are static: they fetch the JSON API and the tiles (the HTTP API of `serve`) and
//! carry a `?token=` of the page's URL on to every request they make, assets included. The only
//! address off this server is the optional OpenStreetMap basemap of the map page, off by default.
//!
//! This module owns the bytes and their content types; routing them (`/assets/{name}`) is the
//! server's. [`asset`] matches whole names only, so no request path ever reaches a file system.

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The catalog page, served at `/`.
pub const CATALOG_HTML: &str = include_str!("catalog.html");
/// The map page, served at `/cubes/{id}/map` (it reads the id from its own URL).
pub const MAP_HTML: &str = include_str!("map.html");

/// Every asset: (name under `/assets/`, content type, bytes).
const ASSETS: [(&str, &str, &[u8]); 5] = [
    ("maplibre-gl.js", JS, include_bytes!("vendor/maplibre-gl.js")),
    ("maplibre-gl.css", CSS, include_bytes!("vendor/maplibre-gl.css")),
    ("map.js", JS, include_bytes!("map.js")),
    ("catalog.js", JS, include_bytes!("catalog.js")),
    ("style.css", CSS, include_bytes!("style.css")),
];

/// The content type and bytes of the asset called `name` (as in `/assets/{name}`), or `None`
/// for any other name.
pub fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS.iter().find(|(n, _, _)| *n == name).map(|&(_, ty, bytes)| (ty, bytes))
}

/// The names of every asset, for the server's listing or tests.
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(n, _, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our own text: the two pages, their scripts and style (not the vendored MapLibre).
    fn own_texts() -> Vec<(&'static str, &'static str)> {
        let text = |n: &'static str| (n, std::str::from_utf8(asset(n).expect(n).1).expect("utf-8"));
        vec![
            ("catalog.html", CATALOG_HTML),
            ("map.html", MAP_HTML),
            text("map.js"),
            text("catalog.js"),
            text("style.css"),
        ]
    }

    #[test]
    fn every_asset_is_served_with_its_type_and_unknown_names_are_not() {
        for name in asset_names() {
            let (ty, bytes) = asset(name).unwrap_or_else(|| panic!("{name} not served"));
            assert!(!bytes.is_empty(), "{name} is empty");
            let want = if name.ends_with(".js") { JS } else { CSS };
            assert_eq!(ty, want, "{name}");
        }
        assert_eq!(asset_names().count(), 5);
        for name in [
            "",
            "map",
            "MAP.JS",
            "map.js/",
            "/map.js",
            "./map.js",
            "../pages/map.js",
            "vendor/maplibre-gl.js",
            "mod.rs",
            "map.html",
            "map.js\0",
        ] {
            assert!(asset(name).is_none(), "{name:?} must not be served");
        }
    }

    #[test]
    fn every_asset_the_pages_reference_exists() {
        let mut referenced = Vec::new();
        for (file, text) in own_texts() {
            for piece in text.split("/assets/").skip(1) {
                let name: String =
                    piece.chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect();
                assert!(asset(&name).is_some(), "{file} references /assets/{name}, which is not served");
                referenced.push(name);
            }
        }
        // Each page loads what it needs: both style sheets and MapLibre for the map.
        for (page, needs) in [
            (MAP_HTML, &["maplibre-gl.js", "maplibre-gl.css", "map.js", "style.css"][..]),
            (CATALOG_HTML, &["catalog.js", "style.css"][..]),
        ] {
            for n in needs {
                assert!(page.contains(&format!("\"/assets/{n}\"")), "a page does not load {n}");
            }
        }
        assert!(referenced.len() >= 6, "{referenced:?}");
    }

    #[test]
    fn the_pages_ask_nothing_off_this_server_but_the_optional_basemap() {
        // The SVG namespace is an identifier, never fetched; OpenStreetMap is the basemap
        // (off by default) and its attribution link.
        let allowed = [
            "http://www.w3.org/2000/svg",
            "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
            "https://www.openstreetmap.org/copyright",
        ];
        for (file, text) in own_texts() {
            for scheme in ["http://", "https://", "ws://", "wss://"] {
                for (at, _) in text.match_indices(scheme) {
                    let url: String = text[at..].chars().take_while(|c| !"\"'` )<>".contains(*c)).collect();
                    assert!(allowed.contains(&url.as_str()), "{file} asks for {url}");
                }
            }
            // Protocol-relative addresses (`//host/...`) in attributes or strings.
            for quote in ["\"//", "'//", "`//", "(//"] {
                assert!(!text.contains(quote), "{file} has a protocol-relative address");
            }
            assert!(!text.contains("@import"), "{file} imports a style sheet");
        }
        let map_js = own_texts().into_iter().find(|(f, _)| *f == "map.js").expect("map.js").1;
        assert!(
            MAP_HTML.contains(r#"<input type="checkbox" id="basemap">"#),
            "the basemap box is unchecked by default"
        );
        assert_eq!(map_js.matches("tile.openstreetmap.org").count(), 1, "one place asks OpenStreetMap");
        assert!(map_js.contains(r#"setBasemap($("basemap").checked)"#), "the basemap follows the box");
    }

    #[test]
    fn the_scripts_find_the_elements_they_drive() {
        for (script, page) in [("map.js", MAP_HTML), ("catalog.js", CATALOG_HTML)] {
            let text = std::str::from_utf8(asset(script).expect(script).1).expect("utf-8");
            let mut ids = Vec::new();
            for call in ["$(\"", "getElementById(\""] {
                for piece in text.split(call).skip(1) {
                    ids.push(piece.split('"').next().expect("an id").to_string());
                }
            }
            // Made by the script itself (the inspector's chart).
            ids.retain(|id| !id.starts_with("series") && !id.contains('$'));
            assert!(ids.len() >= 2, "{script}: {ids:?}");
            for id in &ids {
                assert!(page.contains(&format!("id=\"{id}\"")), "{script} drives #{id}, which its page lacks");
            }
        }
    }

    #[test]
    fn the_vendored_files_are_those_the_vendor_script_recorded() {
        let readme = include_str!("vendor/README.md");
        assert!(readme.contains("maplibre-gl@") && readme.contains("BSD-3-Clause"), "{readme}");
        for name in ["maplibre-gl.js", "maplibre-gl.css"] {
            let (_, bytes) = asset(name).expect(name);
            assert!(
                readme.contains(&format!("`{name}`: {} bytes, sha256", bytes.len())),
                "{name} differs from vendor/README.md"
            );
            assert!(bytes.len() < 2 << 20, "{name} is {} bytes", bytes.len());
        }
        // The UMD build defines the global that map.js uses.
        let js = std::str::from_utf8(asset("maplibre-gl.js").expect("js").1).expect("utf-8");
        assert!(js.contains("maplibregl"));
    }

    #[test]
    fn the_token_is_carried_on_from_the_page_url() {
        for page in [CATALOG_HTML, MAP_HTML] {
            assert!(page.contains(r#"new URLSearchParams(location.search).get("token")"#));
            assert!(page.contains("\"?token=\" + encodeURIComponent(t)"));
        }
        let map_js = std::str::from_utf8(asset("map.js").expect("map.js").1).expect("utf-8");
        // Only to this server: never to the basemap.
        assert!(map_js.contains(r#"if (token && sameOrigin(path)) p.set("token", token);"#));
    }
}
