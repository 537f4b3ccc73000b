//! Planar geometry on lon/lat degrees: the few predicates the land test needs.

pub(crate) type Pt = [f64; 2];

/// Axis-aligned box `[min_lon, min_lat, max_lon, max_lat]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Box2 {
    pub min: Pt,
    pub max: Pt,
}

impl Box2 {
    pub fn of_points(pts: impl IntoIterator<Item = Pt>) -> Self {
        let mut b = Box2 { min: [f64::INFINITY; 2], max: [f64::NEG_INFINITY; 2] };
        for p in pts {
            b.min = [b.min[0].min(p[0]), b.min[1].min(p[1])];
            b.max = [b.max[0].max(p[0]), b.max[1].max(p[1])];
        }
        b
    }

    pub fn expand(self, d: f64) -> Self {
        Box2 { min: [self.min[0] - d, self.min[1] - d], max: [self.max[0] + d, self.max[1] + d] }
    }

    pub fn overlaps_segment(&self, a: Pt, b: Pt) -> bool {
        a[0].min(b[0]) <= self.max[0]
            && a[0].max(b[0]) >= self.min[0]
            && a[1].min(b[1]) <= self.max[1]
            && a[1].max(b[1]) >= self.min[1]
    }

    pub fn contains(&self, p: Pt) -> bool {
        p[0] >= self.min[0] && p[0] <= self.max[0] && p[1] >= self.min[1] && p[1] <= self.max[1]
    }
}

fn orient(a: Pt, b: Pt, c: Pt) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

fn point_segment_dist2(p: Pt, a: Pt, b: Pt) -> f64 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 { (((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
    let (ex, ey) = (a[0] + t * dx - p[0], a[1] + t * dy - p[1]);
    ex * ex + ey * ey
}

/// Squared distance between segments pq and ab (0 when they cross).
pub(crate) fn segment_dist2(p: Pt, q: Pt, a: Pt, b: Pt) -> f64 {
    let (o1, o2) = (orient(p, q, a), orient(p, q, b));
    let (o3, o4) = (orient(a, b, p), orient(a, b, q));
    // Proper crossings only; touching and collinear cases give 0 through the endpoint distances.
    if ((o1 > 0.0 && o2 < 0.0) || (o1 < 0.0 && o2 > 0.0)) && ((o3 > 0.0 && o4 < 0.0) || (o3 < 0.0 && o4 > 0.0)) {
        return 0.0;
    }
    point_segment_dist2(p, a, b)
        .min(point_segment_dist2(q, a, b))
        .min(point_segment_dist2(a, p, q))
        .min(point_segment_dist2(b, p, q))
}

/// Where segment ab crosses the horizontal line at `y`, under the half-open rule (an endpoint
/// exactly on the line counts as above it) so that a ray through a vertex counts it once.
#[inline]
pub(crate) fn horizontal_crossing(a: Pt, b: Pt, y: f64) -> Option<f64> {
    if (a[1] > y) != (b[1] > y) { Some(a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1])) } else { None }
}

/// Even-odd containment of `p` in a ring given as a vertex list (closed or not).
pub(crate) fn ring_contains(ring: &[Pt], p: Pt) -> bool {
    let mut inside = false;
    let n = ring.len();
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        if let Some(x) = horizontal_crossing(a, b, p[1])
            && x > p[0]
        {
            inside = !inside;
        }
    }
    inside
}
