//! PLACEHOLDER until helper W's pages land (W owns `serve/pages/` and replaces this file): the
//! API the server routes to, with minimal pages so that `eocube serve` works on its own.

/// The catalog page (`/`).
pub const CATALOG_HTML: &str = "<!doctype html><meta charset=utf-8><title>eocube</title>\
<h1>eocube serve</h1><p>The cubes are listed at <a href=\"/cubes\">/cubes</a>.</p>";

/// The map page of one cube (`/cubes/{id}/map`).
pub const MAP_HTML: &str = "<!doctype html><meta charset=utf-8><title>eocube map</title>\
<h1>eocube map</h1><p>The map page is not built in yet; the tiles are at \
<code>tiles/WebMercatorQuad/{z}/{x}/{y}.png</code>.</p>";

/// A static asset by name: its content type and bytes.
pub fn asset(name: &str) -> Option<(&'static str, &'static [u8])> {
    match name {
        "style.css" => Some(("text/css; charset=utf-8", b"body{font-family:sans-serif}")),
        _ => None,
    }
}
