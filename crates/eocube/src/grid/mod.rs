//! The target grid and everything spatial that is not pixels: [`Bbox`], [`Affine`], [`Crs`],
//! [`Transformer`], [`GeoBox`] and its chunk tiling ([`ChunkGrid`], [`Chunk`]).
//!
//! Owns: the odc-geo conventions of DESIGN section 2 (edge-anchored `from_bbox`, pixel-centre
//! coordinates, write offsets `index * chunk_size`) and the one place where coordinates cross
//! between CRSs. Must not touch: pixel data, I/O, or resampling (that is `warp`).
//!
//! Coordinates are always `(x, y)` in the CRS's "traditional GIS order": easting/northing for
//! projected CRSs, longitude/latitude in degrees for geographic ones, whatever the EPSG axis order.

mod crs;
mod geobox;

pub use crs::{Crs, Transformer};
pub use geobox::{Chunk, ChunkGrid, GeoBox, PixelWindow, Polygon, Shape};

/// What can go wrong with grid parameters or coordinate transforms.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GridError {
    #[error(
        "invalid bbox (west {west}, south {south}, east {east}, north {north}): {reason}; give it as W S E N with W < E and S < N"
    )]
    InvalidBbox { west: f64, south: f64, east: f64, north: f64, reason: &'static str },
    #[error("unknown CRS {given:?}: {reason}; give an EPSG code such as EPSG:4326 or EPSG:32618")]
    UnknownCrs { given: String, reason: String },
    #[error("invalid resolution {resolution}: it must be a finite number greater than 0")]
    InvalidResolution { resolution: f64 },
    #[error("invalid chunk size {chunk_size}: it must be a positive integer")]
    InvalidChunkSize { chunk_size: usize },
    #[error("chunk ({iy}, {ix}) is outside the chunk grid of {ny} x {nx} chunks")]
    ChunkOutOfRange { iy: usize, ix: usize, ny: usize, nx: usize },
    #[error("grid of {ny} x {nx} pixels is empty or too large; check the bbox and resolution")]
    BadShape { ny: f64, nx: f64 },
    #[error("cannot transform ({x}, {y}) from {from} to {to}: {reason}")]
    Transform { from: String, to: String, x: f64, y: f64, reason: String },
    #[error("affine transform {0:?} is not invertible")]
    Singular([f64; 6]),
}

/// A rectangle `{west, south, east, north}` in the units of some CRS (the caller knows which).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bbox {
    pub west: f64,
    pub south: f64,
    pub east: f64,
    pub north: f64,
}

impl Bbox {
    /// A validated bbox: finite, `west < east`, `south < north`.
    pub fn new(west: f64, south: f64, east: f64, north: f64) -> Result<Self, GridError> {
        let bad = |reason| Err(GridError::InvalidBbox { west, south, east, north, reason });
        if ![west, south, east, north].iter().all(|v| v.is_finite()) {
            return bad("every value must be a finite number");
        }
        if west >= east {
            return bad("west must be less than east");
        }
        if south >= north {
            return bad("south must be less than north");
        }
        Ok(Bbox { west, south, east, north })
    }

    /// A lon/lat bbox: also checks the values are on the globe.
    pub fn new_lonlat(west: f64, south: f64, east: f64, north: f64) -> Result<Self, GridError> {
        let b = Bbox::new(west, south, east, north)?;
        if west < -180.0 || east > 180.0 {
            return Err(GridError::InvalidBbox {
                west,
                south,
                east,
                north,
                reason: "longitudes must lie in [-180, 180]",
            });
        }
        if south < -90.0 || north > 90.0 {
            return Err(GridError::InvalidBbox { west, south, east, north, reason: "latitudes must lie in [-90, 90]" });
        }
        Ok(b)
    }

    pub fn width(&self) -> f64 {
        self.east - self.west
    }

    pub fn height(&self) -> f64 {
        self.north - self.south
    }

    pub fn intersects(&self, other: &Bbox) -> bool {
        self.west < other.east && other.west < self.east && self.south < other.north && other.south < self.north
    }

    /// Whether `other` lies wholly inside (edges may touch).
    pub fn contains(&self, other: &Bbox) -> bool {
        self.west <= other.west && other.east <= self.east && self.south <= other.south && other.north <= self.north
    }

    /// The smallest bbox holding every point, or `None` for no (finite) points.
    pub fn from_points(points: impl IntoIterator<Item = (f64, f64)>) -> Option<Bbox> {
        let mut it = points.into_iter().filter(|(x, y)| x.is_finite() && y.is_finite());
        let (x0, y0) = it.next()?;
        let mut b = Bbox { west: x0, south: y0, east: x0, north: y0 };
        for (x, y) in it {
            b.west = b.west.min(x);
            b.east = b.east.max(x);
            b.south = b.south.min(y);
            b.north = b.north.max(y);
        }
        Some(b)
    }

    /// Grown by `d` on every side.
    pub fn buffered(&self, d: f64) -> Bbox {
        Bbox { west: self.west - d, south: self.south - d, east: self.east + d, north: self.north + d }
    }
}

/// A 2-D affine transform from pixel (col, row) to CRS (x, y), in rasterio/`affine` order:
/// `x = a*col + b*row + c`, `y = d*col + e*row + f`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Affine {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub d: f64,
    pub e: f64,
    pub f: f64,
}

impl Affine {
    pub const fn new(a: f64, b: f64, c: f64, d: f64, e: f64, f: f64) -> Self {
        Affine { a, b, c, d, e, f }
    }

    /// North-up transform with square pixels of size `res` and top-left corner `(x0, y0)`.
    pub fn north_up(x0: f64, y0: f64, res_x: f64, res_y: f64) -> Self {
        Affine::new(res_x, 0.0, x0, 0.0, -res_y, y0)
    }

    /// From GDAL's GeoTransform order `(c, a, b, f, d, e)`.
    pub fn from_gdal(gt: [f64; 6]) -> Self {
        Affine::new(gt[1], gt[2], gt[0], gt[4], gt[5], gt[3])
    }

    /// GDAL's GeoTransform order `(c, a, b, f, d, e)`.
    pub fn to_gdal(&self) -> [f64; 6] {
        [self.c, self.a, self.b, self.f, self.d, self.e]
    }

    pub fn to_array(&self) -> [f64; 6] {
        [self.a, self.b, self.c, self.d, self.e, self.f]
    }

    /// Pixel (col, row), fractional allowed, to CRS (x, y).
    #[inline]
    pub fn apply(&self, col: f64, row: f64) -> (f64, f64) {
        (self.a * col + self.b * row + self.c, self.d * col + self.e * row + self.f)
    }

    pub fn inverse(&self) -> Result<Affine, GridError> {
        let det = self.a * self.e - self.b * self.d;
        if det == 0.0 || !det.is_finite() {
            return Err(GridError::Singular(self.to_array()));
        }
        let (ia, ib, id, ie) = (self.e / det, -self.b / det, -self.d / det, self.a / det);
        Ok(Affine::new(ia, ib, -(ia * self.c + ib * self.f), id, ie, -(id * self.c + ie * self.f)))
    }

    /// The transform of the pixel grid shifted by `(col, row)` pixels (a window's origin).
    pub fn shifted(&self, col: f64, row: f64) -> Affine {
        let (c, f) = self.apply(col, row);
        Affine { c, f, ..*self }
    }

    /// The transform of the grid whose pixels are `fx` x `fy` times larger (an overview).
    pub fn scaled(&self, fx: f64, fy: f64) -> Affine {
        Affine::new(self.a * fx, self.b * fy, self.c, self.d * fx, self.e * fy, self.f)
    }

    /// True when there is no rotation or shear.
    pub fn is_rectilinear(&self) -> bool {
        self.b == 0.0 && self.d == 0.0
    }

    /// Pixel size along x and y (lengths of the column and row vectors).
    pub fn resolution(&self) -> (f64, f64) {
        (self.a.hypot(self.d), self.b.hypot(self.e))
    }
}
