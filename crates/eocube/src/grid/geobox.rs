//! `GeoBox`: a CRS, an affine transform and a shape; chunk tiling and footprints.

use super::{Affine, Bbox, Crs, GridError, Transformer};

/// Rows and columns of a raster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    pub ny: usize,
    pub nx: usize,
}

impl Shape {
    pub fn len(&self) -> usize {
        self.ny * self.nx
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A pixel grid: CRS, pixel-to-CRS affine transform, shape. Same meaning as odc-geo's `GeoBox`.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoBox {
    pub crs: Crs,
    pub affine: Affine,
    pub shape: Shape,
}

/// Pixels within 1% of a pixel edge snap to it, as odc-geo's tolerance does.
const SNAP_TOLERANCE_PX: f64 = 0.01;
/// Refuse grids larger than this many pixels per axis: a typo in the resolution, not a cube.
const MAX_AXIS_PX: f64 = 100_000_000.0;

impl GeoBox {
    pub fn new(crs: Crs, affine: Affine, shape: Shape) -> GeoBox {
        GeoBox { crs, affine, shape }
    }

    /// The north-up grid covering `bbox` (in `crs` units) with pixel edges on integer multiples
    /// of `resolution` (odc-geo `GeoBox.from_bbox` with edge anchoring).
    pub fn from_bbox(bbox: &Bbox, crs: &Crs, resolution: f64) -> Result<GeoBox, GridError> {
        if !(resolution.is_finite() && resolution > 0.0) {
            return Err(GridError::InvalidResolution { resolution });
        }
        let Bbox { west, south, east, north } = *bbox;
        let i0x = (west / resolution + SNAP_TOLERANCE_PX).floor();
        let i1x = (east / resolution - SNAP_TOLERANCE_PX).ceil();
        let i0y = (south / resolution + SNAP_TOLERANCE_PX).floor();
        let i1y = (north / resolution - SNAP_TOLERANCE_PX).ceil();
        let (nx, ny) = ((i1x - i0x).max(1.0), (i1y - i0y).max(1.0));
        if !(nx.is_finite() && ny.is_finite()) || nx > MAX_AXIS_PX || ny > MAX_AXIS_PX {
            return Err(GridError::BadShape { ny, nx });
        }
        let affine = Affine::north_up(i0x * resolution, i1y * resolution, resolution, resolution);
        Ok(GeoBox { crs: crs.clone(), affine, shape: Shape { ny: ny as usize, nx: nx as usize } })
    }

    pub fn width(&self) -> usize {
        self.shape.nx
    }

    pub fn height(&self) -> usize {
        self.shape.ny
    }

    /// Pixel-centre x coordinates of each column (rectilinear grids).
    pub fn x_coords(&self) -> Vec<f64> {
        (0..self.shape.nx).map(|j| self.affine.apply(j as f64 + 0.5, 0.5).0).collect()
    }

    /// Pixel-centre y coordinates of each row (rectilinear grids; descending when north-up).
    pub fn y_coords(&self) -> Vec<f64> {
        (0..self.shape.ny).map(|i| self.affine.apply(0.5, i as f64 + 0.5).1).collect()
    }

    /// The outer edges of the grid in its own CRS.
    pub fn bbox(&self) -> Bbox {
        let (w, h) = (self.shape.nx as f64, self.shape.ny as f64);
        let corners = [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h)].map(|(c, r)| self.affine.apply(c, r));
        // Four finite corners always make a bbox.
        Bbox::from_points(corners).unwrap_or(Bbox { west: 0.0, south: 0.0, east: 0.0, north: 0.0 })
    }

    /// The sub-grid of `window` (rows and columns of this grid; may extend past its edges).
    pub fn window(&self, window: &PixelWindow) -> GeoBox {
        GeoBox {
            crs: self.crs.clone(),
            affine: self.affine.shifted(window.col as f64, window.row as f64),
            shape: Shape { ny: window.height, nx: window.width },
        }
    }

    /// The chunk tiling of this grid with square chunks of `chunk_size` pixels.
    pub fn chunks(&self, chunk_size: usize) -> Result<ChunkGrid, GridError> {
        if chunk_size == 0 {
            return Err(GridError::InvalidChunkSize { chunk_size });
        }
        Ok(ChunkGrid { geobox: self.clone(), chunk_size })
    }

    /// Chunk `(iy, ix)` of the tiling with `chunk_size`; see [`ChunkGrid::chunk`].
    pub fn chunk(&self, chunk_size: usize, iy: usize, ix: usize) -> Result<Chunk, GridError> {
        self.chunks(chunk_size)?.chunk(iy, ix)
    }

    /// The outline of this grid in `dst`, with `per_side` points on each edge (corners included
    /// once): a closed ring in `dst` coordinates, counter-clockwise for north-up grids.
    pub fn footprint(&self, dst: &Crs, per_side: usize) -> Result<Polygon, GridError> {
        let n = per_side.max(1);
        let (w, h) = (self.shape.nx as f64, self.shape.ny as f64);
        let mut ring = Vec::with_capacity(4 * n + 1);
        // bottom-left → bottom-right → top-right → top-left in pixel space (row grows south)
        for k in 0..n {
            ring.push((w * k as f64 / n as f64, h));
        }
        for k in 0..n {
            ring.push((w, h - h * k as f64 / n as f64));
        }
        for k in 0..n {
            ring.push((w - w * k as f64 / n as f64, 0.0));
        }
        for k in 0..n {
            ring.push((0.0, h * k as f64 / n as f64));
        }
        let t = Transformer::new(&self.crs, dst);
        let mut points = Vec::with_capacity(ring.len() + 1);
        for (c, r) in ring {
            let (x, y) = self.affine.apply(c, r);
            points.push(t.transform(x, y)?);
        }
        if let Some(&first) = points.first() {
            points.push(first);
        }
        Ok(Polygon { crs: dst.clone(), ring: points })
    }
}

/// A closed ring of points in one CRS (first point repeated last).
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    pub crs: Crs,
    pub ring: Vec<(f64, f64)>,
}

impl Polygon {
    pub fn bbox(&self) -> Option<Bbox> {
        Bbox::from_points(self.ring.iter().copied())
    }

    /// As a GeoJSON geometry object (the STAC `intersects` parameter).
    pub fn to_geojson(&self) -> serde_json::Value {
        let coords: Vec<[f64; 2]> = self.ring.iter().map(|&(x, y)| [x, y]).collect();
        serde_json::json!({ "type": "Polygon", "coordinates": [coords] })
    }
}

/// A rectangle of pixels: `height` rows from `row`, `width` columns from `col`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelWindow {
    pub row: i64,
    pub col: i64,
    pub height: usize,
    pub width: usize,
}

impl PixelWindow {
    pub fn is_empty(&self) -> bool {
        self.height == 0 || self.width == 0
    }

    /// The part of this window inside `0..ny, 0..nx`, or `None` if they do not overlap.
    pub fn clip(&self, shape: Shape) -> Option<PixelWindow> {
        let r0 = self.row.max(0);
        let c0 = self.col.max(0);
        let r1 = (self.row + self.height as i64).min(shape.ny as i64);
        let c1 = (self.col + self.width as i64).min(shape.nx as i64);
        (r1 > r0 && c1 > c0).then(|| PixelWindow {
            row: r0,
            col: c0,
            height: (r1 - r0) as usize,
            width: (c1 - c0) as usize,
        })
    }
}

/// A grid cut into square chunks of `chunk_size` pixels (the last row/column may be smaller).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkGrid {
    pub geobox: GeoBox,
    pub chunk_size: usize,
}

impl ChunkGrid {
    /// Number of chunk rows and columns.
    pub fn shape(&self) -> Shape {
        Shape { ny: self.geobox.shape.ny.div_ceil(self.chunk_size), nx: self.geobox.shape.nx.div_ceil(self.chunk_size) }
    }

    /// Chunk `(iy, ix)`: rows `iy*cs .. min((iy+1)*cs, ny)`, columns likewise. Its write offset is
    /// always `(iy*cs, ix*cs)`: never derived from the clipped size of another chunk.
    pub fn chunk(&self, iy: usize, ix: usize) -> Result<Chunk, GridError> {
        let Shape { ny, nx } = self.shape();
        if iy >= ny || ix >= nx {
            return Err(GridError::ChunkOutOfRange { iy, ix, ny, nx });
        }
        let cs = self.chunk_size;
        let (row, col) = (iy * cs, ix * cs);
        let height = cs.min(self.geobox.shape.ny - row);
        let width = cs.min(self.geobox.shape.nx - col);
        let window = PixelWindow { row: row as i64, col: col as i64, height, width };
        Ok(Chunk { iy, ix, row_offset: row, col_offset: col, geobox: self.geobox.window(&window) })
    }

    /// Every chunk in row-major order.
    pub fn iter(&self) -> impl Iterator<Item = Chunk> + '_ {
        let Shape { ny, nx } = self.shape();
        (0..ny).flat_map(move |iy| (0..nx).filter_map(move |ix| self.chunk(iy, ix).ok()))
    }
}

/// One chunk of a [`ChunkGrid`]: its index, where it is written, and its own grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub iy: usize,
    pub ix: usize,
    /// First row of this chunk in the full grid (`iy * chunk_size`).
    pub row_offset: usize,
    /// First column of this chunk in the full grid (`ix * chunk_size`).
    pub col_offset: usize,
    pub geobox: GeoBox,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wgs84() -> Crs {
        Crs::wgs84()
    }

    #[test]
    fn a_bbox_contains_itself_and_what_lies_inside_not_what_crosses_an_edge() {
        let outer = Bbox::new(-72.5, 44.0, -71.0, 45.5).unwrap();
        assert!(outer.contains(&outer));
        assert!(outer.contains(&Bbox::new(-72.2, 44.5, -71.9, 44.8).unwrap()));
        for crossing in [
            Bbox::new(-72.6, 44.5, -71.9, 44.8).unwrap(),
            Bbox::new(-72.2, 43.9, -71.9, 44.8).unwrap(),
            Bbox::new(-72.2, 44.5, -70.9, 44.8).unwrap(),
            Bbox::new(-72.2, 44.5, -71.9, 45.6).unwrap(),
        ] {
            assert!(!outer.contains(&crossing), "{crossing:?}");
            assert!(outer.intersects(&crossing));
        }
    }

    #[test]
    fn from_bbox_is_edge_anchored() {
        let r = 1.0 / 3600.0;
        let bbox = Bbox::new(-73.43, 42.72, -71.47, 45.02).unwrap();
        let gb = GeoBox::from_bbox(&bbox, &wgs84(), r).unwrap();
        // floor(-73.43*3600) = -264348, ceil(-71.47*3600) = -257292
        assert_eq!(gb.shape, Shape { ny: 8280, nx: 7056 });
        assert!((gb.affine.c - (-264_348.0 * r)).abs() < 1e-12);
        assert!((gb.affine.f - (162_072.0 * r)).abs() < 1e-12);
        assert_eq!(gb.affine.e, -r);
        // every edge on a multiple of r
        let b = gb.bbox();
        for v in [b.west, b.east, b.south, b.north] {
            assert!(((v / r) - (v / r).round()).abs() < 1e-6, "{v}");
        }
        let eps = 1e-9;
        assert!(
            b.west <= bbox.west + eps
                && b.east >= bbox.east - eps
                && b.south <= bbox.south + eps
                && b.north >= bbox.north - eps
        );
    }

    #[test]
    fn from_bbox_snaps_within_tolerance() {
        // 10.004 px from the origin snaps down to 10; 10.02 does not
        let crs = Crs::from_epsg(32618).unwrap();
        let gb = GeoBox::from_bbox(&Bbox::new(100.04, 0.0, 200.0, 100.0).unwrap(), &crs, 10.0).unwrap();
        assert_eq!((gb.affine.c, gb.shape.nx), (100.0, 10));
        let gb = GeoBox::from_bbox(&Bbox::new(100.2, 0.0, 200.0, 100.0).unwrap(), &crs, 10.0).unwrap();
        assert_eq!((gb.affine.c, gb.shape.nx), (100.0, 10));
        let gb = GeoBox::from_bbox(&Bbox::new(100.0, 0.0, 200.2, 100.0).unwrap(), &crs, 10.0).unwrap();
        assert_eq!(gb.shape.nx, 11);
        let gb = GeoBox::from_bbox(&Bbox::new(100.0, 0.0, 200.05, 100.0).unwrap(), &crs, 10.0).unwrap();
        assert_eq!(gb.shape.nx, 10);
    }

    #[test]
    fn coordinates_are_pixel_centres_latitude_descending() {
        let gb = GeoBox::from_bbox(&Bbox::new(10.0, 20.0, 11.0, 21.0).unwrap(), &wgs84(), 0.25).unwrap();
        assert_eq!(gb.x_coords(), vec![10.125, 10.375, 10.625, 10.875]);
        assert_eq!(gb.y_coords(), vec![20.875, 20.625, 20.375, 20.125]);
    }

    #[test]
    fn chunk_offsets_are_index_times_size_even_at_edges() {
        let gb =
            GeoBox::from_bbox(&Bbox::new(0.0, 0.0, 25.0, 17.0).unwrap(), &Crs::from_epsg(32631).unwrap(), 1.0).unwrap();
        let grid = gb.chunks(10).unwrap();
        assert_eq!(grid.shape(), Shape { ny: 2, nx: 3 });
        let last = grid.chunk(1, 2).unwrap();
        assert_eq!((last.row_offset, last.col_offset), (10, 20));
        assert_eq!(last.geobox.shape, Shape { ny: 7, nx: 5 });
        // the chunk's own grid is the parent grid shifted by the offsets
        assert_eq!(last.geobox.affine.apply(0.0, 0.0), gb.affine.apply(20.0, 10.0));
        assert_eq!(grid.iter().count(), 6);
        assert_eq!(grid.iter().map(|c| c.geobox.shape.len()).sum::<usize>(), gb.shape.len());
        assert!(matches!(grid.chunk(2, 0), Err(GridError::ChunkOutOfRange { .. })));
        assert!(matches!(gb.chunks(0), Err(GridError::InvalidChunkSize { .. })));
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(Bbox::new(1.0, 0.0, 0.0, 1.0).is_err());
        assert!(Bbox::new(0.0, 1.0, 1.0, 0.0).is_err());
        assert!(Bbox::new(f64::NAN, 0.0, 1.0, 1.0).is_err());
        assert!(Bbox::new_lonlat(-181.0, 0.0, 1.0, 1.0).is_err());
        assert!(Bbox::new_lonlat(0.0, -91.0, 1.0, 1.0).is_err());
        let b = Bbox::new(0.0, 0.0, 1.0, 1.0).unwrap();
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(GeoBox::from_bbox(&b, &wgs84(), r), Err(GridError::InvalidResolution { .. })));
        }
        assert!(matches!(GeoBox::from_bbox(&b, &wgs84(), 1e-12), Err(GridError::BadShape { .. })));
        let msg = Bbox::new(1.0, 0.0, 0.0, 1.0).unwrap_err().to_string();
        assert!(msg.contains("west must be less than east"), "{msg}");
    }

    #[test]
    fn footprint_in_utm_is_densified_and_closed() {
        let gb = GeoBox::from_bbox(&Bbox::new(-72.1, 44.0, -71.9, 44.1).unwrap(), &wgs84(), 1.0 / 3600.0).unwrap();
        let fp = gb.footprint(&Crs::from_epsg(32619).unwrap(), 8).unwrap();
        assert_eq!(fp.ring.len(), 33);
        assert_eq!(fp.ring.first(), fp.ring.last());
        let b = fp.bbox().unwrap();
        // ~16 km wide, ~11 km tall in UTM 19N near the zone's west edge
        assert!(b.width() > 15_000.0 && b.width() < 17_000.0, "{b:?}");
        assert!(b.height() > 10_500.0 && b.height() < 11_700.0, "{b:?}");
        // round trip back to lon/lat lands on the grid's edges
        let back = gb.footprint(&wgs84(), 2).unwrap().bbox().unwrap();
        assert!((back.west + 72.1).abs() < 1e-9 && (back.north - 44.1).abs() < 1e-9);
    }

    #[test]
    fn window_clip() {
        let w = PixelWindow { row: -5, col: 8, height: 10, width: 10 };
        assert_eq!(w.clip(Shape { ny: 20, nx: 12 }), Some(PixelWindow { row: 0, col: 8, height: 5, width: 4 }));
        assert_eq!(w.clip(Shape { ny: 20, nx: 8 }), None);
    }
}
