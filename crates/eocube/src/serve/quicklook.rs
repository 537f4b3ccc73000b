//! The quicklook figure (`eocube preview`): a map of one time step in the cube's own CRS with a
//! title, coordinate ticks and labels on two axes, a scale bar and, for one band or an
//! expression, a colour bar; as a PNG, no Python (the seed drew its Atacama figure with
//! matplotlib).
//!
//! Owns: the figure's layout (where the map, ticks, labels and bars go). Must not touch: reading
//! the cube (that is `store::view`) or how pixels get their colours (that is `render`).

use super::canvas::{self, BLACK, Canvas, Rgb, WHITE};
use super::encode::{self, Format};
use super::params::{self, ParamError, Query};
use super::render::{DnScale, Style};
use crate::grid::{Bbox, Crs, GeoBox, PixelWindow, Shape, Transformer};
use crate::store::StoreError;
use crate::store::view::CubeView;

/// Most source pixels per band a preview reads; past it the answer is to build a pyramid or to
/// give a smaller bbox.
pub const MAX_READ_PX: usize = 8192 * 8192;

/// Why a preview cannot be drawn; each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("the bbox {bbox} does not overlap the cube, which covers {extent} (lon/lat); give a bbox inside it")]
    Outside { bbox: String, extent: String },
    #[error(
        "the preview would read {px} pixels per band at the finest level that fits; run `eocube overviews` on the cube first, or give a smaller bbox"
    )]
    TooLarge { px: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Encode(String),
}

/// What to draw: the query language of `eocube serve` (`time`, `bands`, `rescale`,
/// `colormap`, `expression`), an optional lon/lat bbox and the longest side of the map.
pub struct PreviewRequest {
    pub query: Query,
    pub bbox: Option<Bbox>,
    pub max_px: usize,
}

/// The cube's extent in lon/lat.
fn lonlat_extent(g: &GeoBox) -> Bbox {
    g.footprint(&Crs::wgs84(), 16).ok().and_then(|p| p.bbox()).unwrap_or_else(|| g.bbox())
}

fn show(b: &Bbox) -> String {
    format!("{:.4} {:.4} {:.4} {:.4}", b.west, b.south, b.east, b.north)
}

/// The level-0 pixel window covering `bbox` (lon/lat), clipped to the grid.
fn window_of(g: &GeoBox, bbox: &Bbox) -> Result<PixelWindow, PreviewError> {
    let outside = || PreviewError::Outside { bbox: show(bbox), extent: show(&lonlat_extent(g)) };
    let t = Transformer::new(&Crs::wgs84(), &g.crs);
    let n = 16;
    let mut pts = Vec::new();
    for i in 0..=n {
        let f = i as f64 / n as f64;
        let x = bbox.west + f * (bbox.east - bbox.west);
        let y = bbox.south + f * (bbox.north - bbox.south);
        pts.extend([(x, bbox.south), (x, bbox.north), (bbox.west, y), (bbox.east, y)]);
    }
    t.transform_many(&mut pts).map_err(|_| outside())?;
    let inv = g.affine.inverse().map_err(|_| outside())?;
    let px = Bbox::from_points(pts.into_iter().map(|(x, y)| inv.apply(x, y))).ok_or_else(outside)?;
    let (c0, c1) = (px.west.floor() as i64, px.east.ceil() as i64);
    let (r0, r1) = (px.south.floor() as i64, px.north.ceil() as i64);
    PixelWindow { row: r0, col: c0, height: (r1 - r0).max(0) as usize, width: (c1 - c0).max(0) as usize }
        .clip(g.shape)
        .ok_or_else(outside)
}

/// The quicklook PNG of one time step of `view`.
pub async fn preview(view: &CubeView, req: &PreviewRequest) -> Result<Vec<u8>, PreviewError> {
    let layout = view.layout();
    let style = params::style(&req.query, &layout.bands)?;
    let t = params::time_index(&req.query, &layout.times)?;
    let g0 = &layout.geobox;
    let w0 = match &req.bbox {
        Some(b) => window_of(g0, b)?,
        None => PixelWindow { row: 0, col: 0, height: g0.shape.ny, width: g0.shape.nx },
    };
    let max_px = req.max_px.max(16);
    // The finest level at which the window fits in `max_px`, else the coarsest, subsampled.
    let levels = view.levels();
    let at = |l: usize| {
        let f = 1i64 << l;
        let (r0, c0) = (w0.row.div_euclid(f), w0.col.div_euclid(f));
        let r1 = (w0.row + w0.height as i64 + f - 1).div_euclid(f);
        let c1 = (w0.col + w0.width as i64 + f - 1).div_euclid(f);
        PixelWindow { row: r0, col: c0, height: (r1 - r0) as usize, width: (c1 - c0) as usize }
    };
    let level = (0..levels.len()).find(|&l| at(l).height.max(at(l).width) <= max_px).unwrap_or(levels.len() - 1);
    let w = at(level);
    if w.height * w.width > MAX_READ_PX {
        return Err(PreviewError::TooLarge { px: w.height * w.width });
    }
    let step = w.height.max(w.width).div_ceil(max_px).max(1);
    let (oh, ow) = (w.height.div_ceil(step), w.width.div_ceil(step));
    let mut values = Vec::new();
    for band in style.bands() {
        let full = view.read(level, t, band, w).await?;
        let mut sub = Vec::with_capacity(oh * ow);
        for r in (0..w.height).step_by(step) {
            sub.extend(full[r * w.width..(r + 1) * w.width].iter().step_by(step));
        }
        values.push(sub);
    }
    let rgba = style.render(&values, oh * ow, DnScale::of(&layout.values));
    let lg = levels[level].geobox.window(&w);
    let geobox = GeoBox::new(lg.crs.clone(), lg.affine.scaled(step as f64, step as f64), Shape { ny: oh, nx: ow });
    let date = crate::time::date_of_days(layout.times[t])
        .map_or_else(|| "?".to_string(), |d| d.format("%Y-%m-%d").to_string());
    let (what, legend) = match &style {
        Style::Rgb { bands, .. } => {
            (bands.iter().map(|&b| layout.bands[b].as_str()).collect::<Vec<_>>().join(","), None)
        }
        Style::Band { band, stretch, colormap } => (layout.bands[*band].clone(), Some(Legend::of(stretch, colormap))),
        Style::Expression { stretch, colormap, .. } => {
            (req.query.get("expression").unwrap_or_default().to_string(), Some(Legend::of(stretch, colormap)))
        }
    };
    let title = format!("{} | {date} | {what}", layout.variable);
    let canvas = compose(&Figure { map: &rgba, geobox: &geobox, title, legend });
    encode::encode(&canvas.rgba, canvas.width, canvas.height, Format::Png)
        .map_err(|e| PreviewError::Encode(e.to_string()))
}

/// Mean earth radius of the scale bar's distances on a geographic grid (metres).
const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Where the map is fill: light grey, so fill is told apart from bright cloud or white paper.
pub const FILL: Rgb = [224, 224, 224];
const LEFT: usize = 84;
// Room for half of the last x label.
const RIGHT: usize = 44;
const TOP: usize = 34;
const BOTTOM: usize = 46;
const TICK: usize = 5;
const COLORBAR_WIDTH: usize = 14;
const COLORBAR_SPACE: usize = 90;

/// A colour bar: the colours from low to high and the value at each end.
pub struct Legend {
    pub colors: Vec<Rgb>,
    pub lo: f64,
    pub hi: f64,
    pub label: String,
}

impl Legend {
    /// The colour bar of a stretch through a colormap.
    fn of(stretch: &super::render::Stretch, colormap: &super::colormap::Colormap) -> Legend {
        Legend {
            colors: (0..=255).map(|i| colormap.at(i as f32 / 255.0)).collect(),
            lo: stretch.lo as f64,
            hi: stretch.hi as f64,
            label: String::new(),
        }
    }
}

/// What a figure shows: the map pixels (straight-alpha RGBA, `geobox.shape`), their grid, a
/// title and an optional colour bar.
pub struct Figure<'a> {
    pub map: &'a [u8],
    pub geobox: &'a GeoBox,
    pub title: String,
    pub legend: Option<Legend>,
}

/// Up to about `target` round values (1, 2 or 5 times a power of ten apart) inside `lo..=hi`.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) || target == 0 {
        return (Vec::new(), 0.0);
    }
    let step = nice_step(span / target as f64);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    ((first..=last).map(|k| k as f64 * step).collect(), step)
}

/// The smallest of 1, 2, 5 x 10^k that is at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|s| *s >= raw * (1.0 - 1e-9)).unwrap_or(10.0 * p)
}

/// The largest of 1, 2, 5 x 10^k that is at most `raw`.
fn nice_floor(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    [5.0, 2.0, 1.0].into_iter().map(|m| m * p).find(|s| *s <= raw * (1.0 + 1e-9)).unwrap_or(p)
}

/// Decimals enough to tell ticks `step` apart.
fn decimals(step: f64) -> usize {
    if step >= 1.0 { 0 } else { (-step.log10().floor()) as usize }
}

/// A tick label: degrees with a hemisphere for a geographic grid, kilometres otherwise.
fn label(v: f64, step: f64, geographic: bool, is_x: bool) -> String {
    if geographic {
        let d = decimals(step);
        let hemi = match (is_x, v < 0.0) {
            _ if v == 0.0 => "",
            (true, true) => "W",
            (true, false) => "E",
            (false, true) => "S",
            (false, false) => "N",
        };
        format!("{:.*}°{hemi}", d, v.abs())
    } else {
        format!("{:.*}", decimals(step / 1000.0), v / 1000.0)
    }
}

/// A distance for the scale bar.
fn distance(m: f64) -> String {
    if m >= 1000.0 { format!("{} km", m / 1000.0) } else { format!("{m} m") }
}

/// Metres per pixel along x at the map's centre.
fn metres_per_px(g: &GeoBox) -> f64 {
    let (rx, _) = g.affine.resolution();
    if g.crs.is_geographic() {
        let (_, lat) = g.affine.apply(g.shape.nx as f64 / 2.0, g.shape.ny as f64 / 2.0);
        rx.abs().to_radians() * EARTH_RADIUS_M * lat.to_radians().cos()
    } else {
        rx.abs()
    }
}

/// The figure as a canvas.
pub fn compose(fig: &Figure) -> Canvas {
    let g = fig.geobox;
    let (mw, mh) = (g.shape.nx, g.shape.ny);
    let right = RIGHT + if fig.legend.is_some() { COLORBAR_SPACE } else { 0 };
    let mut c = Canvas::new(LEFT + mw + right, TOP + mh + BOTTOM, WHITE);
    let (x0, y0) = (LEFT as i64, TOP as i64);
    c.fill(x0, y0, mw, mh, FILL);
    c.draw_image(x0, y0, mw, mh, fig.map);
    c.frame(x0 - 1, y0 - 1, mw + 2, mh + 2, BLACK);
    let lh = canvas::line_height() as i64;
    c.text(x0, (TOP as i64 - lh) / 2, &fig.title, BLACK);

    let geographic = g.crs.is_geographic();
    let (west, north) = g.affine.apply(0.0, 0.0);
    let (east, south) = g.affine.apply(mw as f64, mh as f64);
    // x ticks below the map, y ticks left of it, at ~1 per 120 px.
    let (xs, xstep) = nice_ticks(west, east, (mw / 120).max(2));
    for v in xs {
        let px = x0 + ((v - west) / (east - west) * mw as f64).round() as i64;
        c.fill(px, y0 + mh as i64, 1, TICK, BLACK);
        let s = label(v, xstep, geographic, true);
        c.text(px - canvas::text_width(&s) as i64 / 2, y0 + (mh + TICK + 2) as i64, &s, BLACK);
    }
    let (ys, ystep) = nice_ticks(south, north, (mh / 60).max(3));
    for v in ys {
        let py = y0 + ((north - v) / (north - south) * mh as f64).round() as i64;
        c.fill(x0 - TICK as i64 - 1, py, TICK, 1, BLACK);
        let s = label(v, ystep, geographic, false);
        c.text(x0 - TICK as i64 - 4 - canvas::text_width(&s) as i64, py - lh / 2, &s, BLACK);
    }
    let units = if geographic { String::new() } else { format!("km, EPSG:{}", g.crs.epsg()) };
    if !units.is_empty() {
        let y = y0 + (mh + TICK + 2) as i64 + lh;
        c.text(x0 + mw as i64 - canvas::text_width(&units) as i64, y, &units, BLACK);
    }

    // Scale bar: a round distance of at most a quarter of the map's width, bottom left inside.
    let mpp = metres_per_px(g);
    if mpp.is_finite() && mpp > 0.0 && mw >= 40 {
        let metres = nice_floor(mw as f64 / 4.0 * mpp);
        let len = (metres / mpp).round() as usize;
        let (bx, by) = (x0 + 10, y0 + mh as i64 - 16);
        let text = distance(metres);
        c.fill(bx - 4, by - lh - 4, len.max(canvas::text_width(&text)) + 8, lh as usize + 14, WHITE);
        c.fill(bx, by, len, 4, BLACK);
        c.fill(bx, by - 3, 1, 7, BLACK);
        c.fill(bx + len as i64 - 1, by - 3, 1, 7, BLACK);
        c.text(bx, by - lh - 1, &text, BLACK);
    }

    if let Some(l) = &fig.legend {
        let bx = x0 + mw as i64 + 16;
        let n = mh.max(1);
        for i in 0..n {
            let k = (n - 1 - i) * l.colors.len().saturating_sub(1) / n.saturating_sub(1).max(1);
            let color = l.colors.get(k).copied().unwrap_or(BLACK);
            c.fill(bx, y0 + i as i64, COLORBAR_WIDTH, 1, color);
        }
        c.frame(bx - 1, y0 - 1, COLORBAR_WIDTH + 2, mh + 2, BLACK);
        let tx = bx + COLORBAR_WIDTH as i64 + 4;
        c.text(tx, y0, &format!("{:.2}", l.hi), BLACK);
        c.text(tx, y0 + mh as i64 - lh, &format!("{:.2}", l.lo), BLACK);
        c.text(tx, y0 + mh as i64 / 2 - lh / 2, &l.label, BLACK);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{Affine, Crs, Shape};

    #[test]
    fn ticks_are_round_and_inside() {
        let (t, step) = nice_ticks(-70.53, -69.81, 4);
        assert_eq!(step, 0.2);
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(t.iter().all(|v| (-70.53..=-69.81).contains(v)));
        assert!((t[0] + 70.4).abs() < 1e-9);
        assert_eq!(nice_ticks(1.0, 1.0, 5).0, Vec::<f64>::new());
        assert_eq!(nice_ticks(0.0, f64::NAN, 5).0, Vec::<f64>::new());
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_floor(3.0), 2.0);
        assert_eq!(nice_floor(7300.0), 5000.0);
    }

    #[test]
    fn labels_name_the_hemisphere_or_the_kilometre() {
        assert_eq!(label(-70.4, 0.2, true, true), "70.4°W");
        assert_eq!(label(-23.25, 0.05, true, false), "23.25°S");
        assert_eq!(label(0.0, 1.0, true, true), "0°");
        assert_eq!(label(586_000.0, 2000.0, false, true), "586");
        assert_eq!(label(586_500.0, 500.0, false, true), "586.5");
        assert_eq!(distance(5000.0), "5 km");
        assert_eq!(distance(200.0), "200 m");
    }

    #[test]
    fn the_scale_bar_uses_metres_on_the_ground() {
        // 1/3600 degree at the equator is ~30.9 m; at 60 degrees half of that.
        let r = 1.0 / 3600.0;
        let g = GeoBox::new(Crs::wgs84(), Affine::north_up(0.0, 0.5, r, r), Shape { ny: 3600, nx: 3600 });
        assert!((metres_per_px(&g) - 30.88).abs() < 0.05, "{}", metres_per_px(&g));
        let g = GeoBox::new(Crs::wgs84(), Affine::north_up(0.0, 60.5, r, r), Shape { ny: 3600, nx: 3600 });
        assert!((metres_per_px(&g) - 15.44).abs() < 0.05);
        let utm = GeoBox::new(
            Crs::from_epsg(32618).unwrap(),
            Affine::north_up(5e5, 4.5e6, 10.0, 10.0),
            Shape { ny: 9, nx: 9 },
        );
        assert_eq!(metres_per_px(&utm), 10.0);
    }

    #[test]
    fn the_figure_frames_the_map_with_margins() {
        let r = 1.0 / 3600.0;
        let g = GeoBox::new(Crs::wgs84(), Affine::north_up(-70.5, -23.0, r, r), Shape { ny: 200, nx: 300 });
        let map = vec![255u8; 300 * 200 * 4];
        let fig = Figure { map: &map, geobox: &g, title: "t".into(), legend: None };
        let c = compose(&fig);
        assert_eq!((c.width, c.height), (LEFT + 300 + RIGHT, TOP + 200 + BOTTOM));
        let legend = Legend { colors: vec![[0, 0, 0], [255, 255, 255]], lo: -1.0, hi: 1.0, label: "ndvi".into() };
        let c = compose(&Figure { map: &map, geobox: &g, title: "t".into(), legend: Some(legend) });
        assert_eq!(c.width, LEFT + 300 + RIGHT + COLORBAR_SPACE);
    }
}
