//! Reducing: the observations (solar days) of one time bin to values per pixel and band.
//! [`Reducer`] is the user's choice (`median`, `mean`, `min`, `max`, `std`, `count`,
//! `quantiles:Q,...`, `geomedian`); [`Reducer::reduce_bands`] applies it to every band of one
//! chunk; [`median_u16`], [`quantile_linear`] and [`geomedian`] are the rules on their own.
//!
//! Owns: the reduction rules of DESIGN section 7 and docs/job.md ("Reducers"): median of the
//! valid observations (even counts take `floor((a + b) / 2)` of the two middle values), the
//! other statistics and how each is stored as a uint16 (rounding, offsets), and that no valid
//! observation gives the fill value 0.
//! Must not touch: masks (it takes them ready-made from `mask`), radiometry (values arrive already
//! harmonized by `fuse`), or the store (it only says how many values per band it makes).
//!
//! The value 0 is the fill value everywhere in eocube (nodata in the scenes, `_FillValue` in the
//! cube), so a 0 is never an observation, even where the mask says valid: the reducer skips it.

use std::fmt;
use std::str::FromStr;

mod network;
mod stack;
pub use stack::{Reduced, STRIP, Stack};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The fill value of the cube, and the result when a pixel has no valid observation.
pub const FILL: u16 = 0;

/// Pixels per parallel task: big enough that rayon's overhead vanishes, small enough that a
/// 1200 x 1200 chunk still splits into a few hundred tasks.
const BLOCK: usize = 4096;

/// Geometric median: the Weiszfeld iteration stops when a step moves the estimate by less than
/// this, in digital numbers (Euclidean norm over the bands). hdstats' `nangeomedian_pcm` (which
/// odc-algo's `geomedian_with_mads` calls) stops at `eps = 1e-4` on the same norm of reflectance
/// (DN x 0.0001), which is 1 DN here.
pub const GEOMEDIAN_EPS_DN: f64 = 1.0;
/// Geometric median: the iteration cap, hdstats' `MAXITERS`.
pub const GEOMEDIAN_MAX_ITERS: usize = 10_000;
/// At most this many quantiles in `quantiles:...` (each is a full copy of the bands in the cube).
pub const MAX_QUANTILES: usize = 16;

/// What can go wrong when reducing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReduceError {
    #[error(
        "observation {index} has {len} pixels but the output has {expected}; every observation must be on the chunk grid"
    )]
    ObservationLength { index: usize, len: usize, expected: usize },
    #[error("{masks} validity masks for {observations} observations; give one mask per observation")]
    MaskCount { masks: usize, observations: usize },
    #[error("validity mask {index} has {len} pixels but the output has {expected}")]
    MaskLength { index: usize, len: usize, expected: usize },
    #[error("observation {index} has {bands} bands but the reducer was given {expected}")]
    BandCount { index: usize, bands: usize, expected: usize },
    #[error("the output holds {len} values, expected {expected} (pixels x bands x values per band)")]
    OutputLength { len: usize, expected: usize },
    #[error(
        "unknown reducer {given:?}; valid reducers: median, mean, min, max, std, count, geomedian, quantiles:Q1,Q2,... (e.g. quantiles:0.1,0.5,0.9)"
    )]
    UnknownReducer { given: String },
    #[error("{given:?}: {reason}; give quantiles between 0 and 1 in increasing order, e.g. quantiles:0.1,0.5,0.9")]
    BadQuantiles { given: String, reason: String },
}

/// How the observations of a time bin become values. Serialized as its text form (`"median"`,
/// `"quantiles:0.1,0.5,0.9"`), the same as on the CLI and in TOML, so a spec's identity holds the
/// reducer's parameters and cubes made before there was a choice (`"median"`) still resume.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Reducer {
    /// Per-pixel, per-band median of the valid observations (DESIGN section 7).
    #[default]
    Median,
    /// Arithmetic mean, rounded half up to a digital number.
    Mean,
    Min,
    Max,
    /// Population standard deviation (numpy's default `ddof=0`), in digital numbers, rounded
    /// half up, stored plus 1 so that 0 stays the fill value (a std of 0 is stored as 1).
    Std,
    /// The number of valid observations.
    Count,
    /// Quantiles by linear interpolation (numpy's default `method="linear"`), rounded half up;
    /// strictly increasing, each in [0, 1].
    Quantiles(Vec<f64>),
    /// Geometric median across the bands (Weiszfeld, as hdstats), rounded half up per band.
    Geomedian,
}

/// How a reducer's values are stored in the cube's uint16 data variable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Encoding {
    /// Reflectance digital numbers: `scale_factor = 0.0001`, `add_offset = -0.1`.
    Reflectance,
    /// A spread of reflectance, stored plus 1: `scale_factor = 0.0001`, `add_offset = -0.0001`.
    Spread,
    /// A plain count, no scaling.
    Count,
}

impl Reducer {
    /// The reducer's kind as a word (no parameters): the default variable name is made of it.
    pub fn name(&self) -> &'static str {
        match self {
            Reducer::Median => "median",
            Reducer::Mean => "mean",
            Reducer::Min => "min",
            Reducer::Max => "max",
            Reducer::Std => "std",
            Reducer::Count => "count",
            Reducer::Quantiles(_) => "quantiles",
            Reducer::Geomedian => "geomedian",
        }
    }

    /// The quantiles of a `quantiles` reducer (the cube's `quantile` coordinate), else empty.
    pub fn quantiles(&self) -> &[f64] {
        match self {
            Reducer::Quantiles(q) => q,
            _ => &[],
        }
    }

    /// Values per pixel and band: the number of quantiles, 1 for the others.
    pub fn values_per_band(&self) -> usize {
        self.quantiles().len().max(1)
    }

    /// How the values are stored (the data variable's CF attributes follow from it).
    pub fn encoding(&self) -> Encoding {
        match self {
            Reducer::Std => Encoding::Spread,
            Reducer::Count => Encoding::Count,
            _ => Encoding::Reflectance,
        }
    }

    /// Reduces one band of a chunk: `observations[k][p]` is the value of pixel `p` on solar day
    /// `k`, `valid[k][p]` whether the mask keeps it. Writes [`Reducer::values_per_band`] values
    /// per pixel into `out` (pixel-major). Not for `geomedian`, which needs every band at once:
    /// one band alone gives its per-band median there.
    pub fn reduce_band(&self, observations: &[&[u16]], valid: &[&[bool]], out: &mut [u16]) -> Result<(), ReduceError> {
        let n = out.len() / self.values_per_band();
        if valid.len() != observations.len() {
            return Err(ReduceError::MaskCount { masks: valid.len(), observations: observations.len() });
        }
        check_lengths(observations, n)?;
        for (index, v) in valid.iter().enumerate() {
            if v.len() != n {
                return Err(ReduceError::MaskLength { index, len: v.len(), expected: n });
            }
        }
        self.reduce_with(observations, out, |k, p| valid[k][p]);
        Ok(())
    }

    /// [`Reducer::reduce_band`] of observations already masked: an invalid pixel holds the fill
    /// value, which is never an observation anyway. What a job calls (its masks are applied when
    /// each solar day is fused), so no mask is read.
    pub fn reduce_masked(&self, observations: &[&[u16]], out: &mut [u16]) -> Result<(), ReduceError> {
        let nv = self.values_per_band();
        if !out.len().is_multiple_of(nv) {
            return Err(ReduceError::OutputLength { len: out.len(), expected: out.len() / nv * nv });
        }
        check_lengths(observations, out.len() / nv)?;
        if matches!(self, Reducer::Median | Reducer::Geomedian) && observations.len() <= network::MAX_OBSERVATIONS {
            network::median_masked(observations, out);
        } else {
            self.reduce_with(observations, out, |_, _| true);
        }
        Ok(())
    }

    /// Reduces every band of a chunk of masked observations: `observations[k][b]` is band `b` of
    /// solar day `k` (invalid pixels hold the fill value). `out` is in (pixel, band, value)
    /// order: `n * nb * values_per_band` values. Per-band reducers run band by band through
    /// [`Reducer::reduce_masked`] (for `median` this is the loop a job always ran); `geomedian`
    /// takes every band of a pixel together.
    pub fn reduce_bands(&self, observations: &[Vec<&[u16]>], nb: usize, out: &mut [u16]) -> Result<(), ReduceError> {
        for (index, o) in observations.iter().enumerate() {
            if o.len() != nb {
                return Err(ReduceError::BandCount { index, bands: o.len(), expected: nb });
            }
        }
        let nv = self.values_per_band();
        if nb == 0 || !out.len().is_multiple_of(nb * nv) {
            return Err(ReduceError::OutputLength { len: out.len(), expected: out.len() / (nb * nv).max(1) * nb * nv });
        }
        let n = out.len() / (nb * nv);
        if let Reducer::Geomedian = self {
            for o in observations {
                check_lengths(o, n)?;
            }
            reduce_geomedian(observations, nb, out);
            return Ok(());
        }
        let mut band_out = vec![0u16; n * nv];
        for b in 0..nb {
            let obs: Vec<&[u16]> = observations.iter().map(|o| o[b]).collect();
            self.reduce_masked(&obs, &mut band_out)?;
            if nv == 1 {
                for (p, v) in band_out.iter().enumerate() {
                    out[p * nb + b] = *v;
                }
            } else {
                for (p, vs) in band_out.chunks_exact(nv).enumerate() {
                    out[(p * nb + b) * nv..(p * nb + b + 1) * nv].copy_from_slice(vs);
                }
            }
        }
        Ok(())
    }

    /// Runs in parallel over blocks of pixels; each block gathers a pixel's valid values into
    /// one small buffer, so nothing is allocated per pixel.
    fn reduce_with(&self, observations: &[&[u16]], out: &mut [u16], keep: impl Fn(usize, usize) -> bool + Sync) {
        let nv = self.values_per_band();
        match self {
            // Median (and geomedian given one band): the default and the hot path of every build.
            Reducer::Median | Reducer::Geomedian => {
                for_each_pixel(observations, out, 1, &keep, |v, o| o[0] = median_u16(v));
            }
            Reducer::Mean => for_each_pixel(observations, out, nv, &keep, |v, o| o[0] = mean_u16(v)),
            Reducer::Min => {
                for_each_pixel(observations, out, nv, &keep, |v, o| o[0] = v.iter().copied().min().unwrap_or(FILL));
            }
            Reducer::Max => {
                for_each_pixel(observations, out, nv, &keep, |v, o| o[0] = v.iter().copied().max().unwrap_or(FILL));
            }
            Reducer::Std => for_each_pixel(observations, out, nv, &keep, |v, o| o[0] = std_u16(v)),
            Reducer::Count => {
                for_each_pixel(observations, out, nv, &keep, |v, o| o[0] = u16::try_from(v.len()).unwrap_or(u16::MAX));
            }
            Reducer::Quantiles(_) => {
                let q = self.quantiles();
                for_each_pixel(observations, out, nv, &keep, |v, o| quantiles_u16(v, q, o));
            }
        }
    }
}

/// Calls `rule` on every pixel's valid values (not the fill value, kept by `keep(k, p)`) with its
/// `nv` outputs, in parallel over blocks of pixels. Generic in `rule`, so each reducer's loop is
/// compiled with its rule inlined.
fn for_each_pixel<K, R>(observations: &[&[u16]], out: &mut [u16], nv: usize, keep: &K, rule: R)
where
    K: Fn(usize, usize) -> bool + Sync,
    R: Fn(&mut Vec<u16>, &mut [u16]) + Sync,
{
    out.par_chunks_mut(BLOCK * nv).enumerate().for_each(|(b, block)| {
        let mut scratch = Vec::with_capacity(observations.len());
        let offset = b * BLOCK;
        for (i, o) in block.chunks_exact_mut(nv).enumerate() {
            let p = offset + i;
            scratch.clear();
            for (k, obs) in observations.iter().enumerate() {
                let x = obs[p];
                if x != FILL && keep(k, p) {
                    scratch.push(x);
                }
            }
            rule(&mut scratch, o);
        }
    });
}

/// The number of valid observations of each pixel (`observations[k][b]` as in
/// [`Reducer::reduce_bands`]): the solar days where the pixel holds data in every band (fusion
/// and masking set all bands of a pixel to the fill value together, so "every band" is "any
/// band" in a job). The `valid_count` variable of `with-count`.
pub fn count_valid(observations: &[Vec<&[u16]>], out: &mut [u16]) -> Result<(), ReduceError> {
    let n = out.len();
    for o in observations {
        check_lengths(o, n)?;
    }
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(b, block)| {
        let offset = b * BLOCK;
        for (i, o) in block.iter_mut().enumerate() {
            let p = offset + i;
            let c = observations.iter().filter(|day| !day.is_empty() && day.iter().all(|band| band[p] != FILL)).count();
            *o = u16::try_from(c).unwrap_or(u16::MAX);
        }
    });
    Ok(())
}

fn check_lengths(observations: &[&[u16]], n: usize) -> Result<(), ReduceError> {
    for (index, o) in observations.iter().enumerate() {
        if o.len() != n {
            return Err(ReduceError::ObservationLength { index, len: o.len(), expected: n });
        }
    }
    Ok(())
}

/// `floor(x + 0.5)` as a uint16 (saturating): "rounded half up" everywhere in this module.
fn round_half_up(x: f64) -> u16 {
    // `as` saturates a float to the integer range (NaN gives 0, the fill value).
    (x + 0.5).floor() as u16
}

/// Mean of the values rounded half up, [`FILL`] for none. The values are >= 1, so the mean of
/// any is too and never reads as fill.
fn mean_u16(values: &[u16]) -> u16 {
    if values.is_empty() {
        return FILL;
    }
    let sum: u64 = values.iter().map(|&v| u64::from(v)).sum();
    let n = values.len() as u64;
    // floor(sum / n + 1/2) in integers: no float rounding at the half.
    u16::try_from((2 * sum + n) / (2 * n)).unwrap_or(u16::MAX)
}

/// Population standard deviation rounded half up, plus 1 ([`Encoding::Spread`]); [`FILL`] for none.
fn std_u16(values: &[u16]) -> u16 {
    if values.is_empty() {
        return FILL;
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    round_half_up(var.sqrt()).saturating_add(1)
}

/// Writes one value per quantile into `out`: [`quantile_linear`] of the sorted values, rounded
/// half up; [`FILL`] for no value.
fn quantiles_u16(values: &mut [u16], qs: &[f64], out: &mut [u16]) {
    if values.is_empty() {
        out.fill(FILL);
        return;
    }
    insertion_or_unstable_sort(values);
    for (o, &q) in out.iter_mut().zip(qs) {
        // Between two values >= 1, so >= 1 after rounding: never the fill value.
        *o = round_half_up(quantile_linear(values, q));
    }
}

/// The `q` quantile of `sorted` (ascending, not empty) by linear interpolation, computed as
/// numpy's `np.quantile(x, q)` (default `method="linear"`) computes it, float for float:
/// virtual index `h = (n - 1) q`, `a = x[floor(h)]`, `b = x[floor(h) + 1]`, `t = h - floor(h)`,
/// and `a + (b - a) t`, or `b - (b - a)(1 - t)` when `t >= 0.5` (numpy's `_lerp`).
pub fn quantile_linear(sorted: &[u16], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * q;
    let lo = (h.floor().max(0.0) as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let t = h - lo as f64;
    let (a, b) = (f64::from(sorted[lo]), f64::from(sorted[hi]));
    let d = b - a;
    if t >= 0.5 { b - d * (1.0 - t) } else { a + d * t }
}

fn insertion_or_unstable_sort(v: &mut [u16]) {
    if v.len() <= SMALL { insertion_sort(v) } else { v.sort_unstable() }
}

/// The geometric median of the points `x` (`n` points of `p` coordinates, point-major) by
/// Weiszfeld's iteration as hdstats' `nangeomedian_pcm` runs it: start at the mean; each step
/// weighs the points by the inverse of their distance to the estimate; when the estimate sits
/// on data points, the step is Vardi and Zhang's (pulled toward the estimate by the number of
/// such points); stop after a step shorter than `eps` or `max_iters` steps. `None` for no point.
/// One departure from hdstats: when every point sits on the estimate (one point, or all equal),
/// hdstats returns zeros; this returns that point.
pub fn geomedian(x: &[f64], p: usize, eps: f64, max_iters: usize, y: &mut [f64]) -> Option<()> {
    let n = x.len().checked_div(p).unwrap_or(0);
    if n == 0 || y.len() != p {
        return None;
    }
    for (j, yj) in y.iter_mut().enumerate() {
        *yj = (0..n).map(|i| x[i * p + j]).sum::<f64>() / n as f64;
    }
    // Two small buffers per call (p = the bands, a handful); a pixel's call is microseconds.
    let mut t = vec![0.0; p];
    let mut y1 = vec![0.0; p];
    for _ in 0..max_iters {
        let mut dinv_sum = 0.0;
        let mut zeros = 0usize;
        t.fill(0.0);
        for i in 0..n {
            let xi = &x[i * p..(i + 1) * p];
            let d = xi.iter().zip(y.iter()).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            if d > 0.0 {
                let w = 1.0 / d;
                dinv_sum += w;
                for (tj, xj) in t.iter_mut().zip(xi) {
                    *tj += w * xj;
                }
            } else {
                zeros += 1;
            }
        }
        if zeros == n {
            break;
        }
        for tj in &mut t {
            *tj /= dinv_sum;
        }
        if zeros == 0 {
            y1.copy_from_slice(&t);
        } else {
            let r = t.iter().zip(y.iter()).map(|(tj, yj)| ((tj - yj) * dinv_sum).powi(2)).sum::<f64>().sqrt();
            let rinv = if r > 0.0 { zeros as f64 / r } else { 0.0 };
            for j in 0..p {
                y1[j] = (1.0 - rinv).max(0.0) * t[j] + rinv.min(1.0) * y[j];
            }
        }
        let step = y.iter().zip(&y1).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
        y.copy_from_slice(&y1);
        if step < eps {
            break;
        }
    }
    Some(())
}

/// [`geomedian`] per pixel over the solar days where the pixel has data (all bands non-zero),
/// each band rounded half up; [`FILL`] in every band for none.
fn reduce_geomedian(observations: &[Vec<&[u16]>], nb: usize, out: &mut [u16]) {
    out.par_chunks_mut(BLOCK * nb).enumerate().for_each(|(b, block)| {
        let mut points = Vec::with_capacity(observations.len() * nb);
        let mut y = vec![0.0; nb];
        let offset = b * BLOCK;
        for (i, o) in block.chunks_exact_mut(nb).enumerate() {
            let p = offset + i;
            points.clear();
            for day in observations {
                if day.iter().all(|band| band[p] != FILL) {
                    points.extend(day.iter().map(|band| f64::from(band[p])));
                }
            }
            match geomedian(&points, nb, GEOMEDIAN_EPS_DN, GEOMEDIAN_MAX_ITERS, &mut y) {
                // Inside the points' convex hull, so every band >= 1 and rounds to >= 1.
                Some(()) => o.iter_mut().zip(&y).for_each(|(v, yj)| *v = round_half_up(*yj)),
                None => o.fill(FILL),
            }
        }
    });
}

impl fmt::Display for Reducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reducer::Quantiles(qs) => {
                let list: Vec<String> = qs.iter().map(|q| q.to_string()).collect();
                write!(f, "quantiles:{}", list.join(","))
            }
            other => f.write_str(other.name()),
        }
    }
}

impl From<Reducer> for String {
    fn from(r: Reducer) -> String {
        r.to_string()
    }
}

impl TryFrom<String> for Reducer {
    type Error = ReduceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for Reducer {
    type Err = ReduceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        if let Some(list) = t.strip_prefix("quantiles:").or_else(|| t.strip_prefix("quantile:")) {
            return parse_quantiles(s, list).map(Reducer::Quantiles);
        }
        Ok(match t.as_str() {
            "median" => Reducer::Median,
            "mean" => Reducer::Mean,
            "min" => Reducer::Min,
            "max" => Reducer::Max,
            "std" => Reducer::Std,
            "count" => Reducer::Count,
            "geomedian" => Reducer::Geomedian,
            "quantiles" | "quantile" => {
                return Err(ReduceError::BadQuantiles { given: s.to_string(), reason: "no quantiles given".into() });
            }
            _ => return Err(ReduceError::UnknownReducer { given: s.to_string() }),
        })
    }
}

fn parse_quantiles(given: &str, list: &str) -> Result<Vec<f64>, ReduceError> {
    let bad = |reason: String| ReduceError::BadQuantiles { given: given.to_string(), reason };
    let mut qs = Vec::new();
    for part in list.split(',') {
        let part = part.trim();
        let q: f64 = part.parse().map_err(|_| bad(format!("{part:?} is not a number")))?;
        if !(0.0..=1.0).contains(&q) {
            return Err(bad(format!("{part} is outside [0, 1]")));
        }
        if qs.last().is_some_and(|&last| q <= last) {
            return Err(bad(format!("{part} does not come after {}", qs.last().copied().unwrap_or(q))));
        }
        qs.push(q);
    }
    if qs.len() > MAX_QUANTILES {
        return Err(bad(format!("{} quantiles; at most {MAX_QUANTILES}", qs.len())));
    }
    Ok(qs)
}

/// The median of `values` by the rule of DESIGN section 7: the middle value for an odd count,
/// `floor((a + b) / 2)` of the two middle values `a <= b` for an even count, [`FILL`] (0) for none.
/// Reorders `values` (partial selection, O(n)); does not allocate.
pub fn median_u16(values: &mut [u16]) -> u16 {
    let n = values.len();
    if n == 0 {
        return FILL;
    }
    let (a, upper) = if n <= SMALL {
        // A time bin has a handful of solar days: sorting them in place beats a selection.
        insertion_sort(values);
        (values[(n - 1) / 2], values[n / 2])
    } else {
        let (lower, &mut upper, _) = values.select_nth_unstable(n / 2);
        // After the selection every value left of n/2 is <= upper, so the lower middle is their max.
        (if n % 2 == 1 { upper } else { lower.iter().copied().max().unwrap_or(upper) }, upper)
    };
    // In u32 the sum cannot overflow; the floor of the mean of two u16 is a u16 (and for an odd
    // count `a == upper`).
    ((u32::from(a) + u32::from(upper)) / 2) as u16
}

/// Counts up to this are sorted by insertion (a monthly bin has at most about 15 solar days).
const SMALL: usize = 24;

fn insertion_sort(v: &mut [u16]) {
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && v[j - 1] > x {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule written the slow, obvious way.
    fn median_reference(values: &[u16]) -> u16 {
        let mut v = values.to_vec();
        v.sort_unstable();
        match v.len() {
            0 => 0,
            n if n % 2 == 1 => v[n / 2],
            n => ((v[n / 2 - 1] as u32 + v[n / 2] as u32) / 2) as u16,
        }
    }

    #[test]
    fn median_of_odd_even_single_and_empty() {
        assert_eq!(median_u16(&mut []), 0);
        assert_eq!(median_u16(&mut [1234]), 1234);
        assert_eq!(median_u16(&mut [3, 1, 2]), 2);
        // Even: floor((2 + 3) / 2) = 2, not 2.5 rounded up.
        assert_eq!(median_u16(&mut [4, 1, 3, 2]), 2);
        assert_eq!(median_u16(&mut [10, 20]), 15);
        assert_eq!(median_u16(&mut [10, 21]), 15);
    }

    #[test]
    fn median_with_ties() {
        assert_eq!(median_u16(&mut [7, 7, 7, 7]), 7);
        assert_eq!(median_u16(&mut [5, 7, 7, 9]), 7);
        assert_eq!(median_u16(&mut [7, 7, 9, 9]), 8);
        assert_eq!(median_u16(&mut [1, 9, 9, 9, 1, 1]), 5);
        assert_eq!(median_u16(&mut [2, 2, 1]), 2);
    }

    #[test]
    fn median_does_not_overflow_at_the_top_of_the_range() {
        assert_eq!(median_u16(&mut [u16::MAX, u16::MAX]), u16::MAX);
        assert_eq!(median_u16(&mut [u16::MAX, u16::MAX - 1]), u16::MAX - 1);
    }

    #[test]
    fn median_equals_the_sorting_reference() {
        let mut state = 0x9e3779b97f4a7c15_u64;
        for len in 0..40 {
            for _ in 0..50 {
                let v: Vec<u16> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        // Few distinct values, so ties are common.
                        (state % 9) as u16 * 1000 + 1
                    })
                    .collect();
                let mut w = v.clone();
                assert_eq!(median_u16(&mut w), median_reference(&v), "{v:?}");
            }
        }
    }

    #[test]
    fn reduce_band_uses_only_valid_non_fill_observations() {
        // Four pixels, four solar days.
        let obs: [&[u16]; 4] = [&[100, 100, 5, 1], &[200, 300, 0, 2], &[300, 0, 0, 3], &[400, 999, 0, 4]];
        let valid: [&[bool]; 4] = [
            &[true, true, false, true],
            &[true, true, true, true],
            &[true, true, true, true],
            &[true, false, true, false],
        ];
        let mut out = [9u16; 4];
        Reducer::Median.reduce_band(&obs, &valid, &mut out).unwrap();
        // p0: 100,200,300,400 (even) -> 250. p1: 100,300 (0 is fill, 999 masked) -> 200.
        // p2: only masked or fill values -> 0. p3: 1,2,3 -> 2.
        assert_eq!(out, [250, 200, 0, 2]);
    }

    #[test]
    fn reduce_band_with_a_single_observation_and_with_none() {
        let mut out = [9u16; 3];
        Reducer::Median.reduce_band(&[&[5, 0, 7]], &[&[true, true, false]], &mut out).unwrap();
        assert_eq!(out, [5, 0, 0]);
        Reducer::Median.reduce_band(&[], &[], &mut out).unwrap();
        assert_eq!(out, [0, 0, 0]);
    }

    #[test]
    fn reduce_band_all_invalid_pixels_give_the_fill_value() {
        let n = 3 * BLOCK + 17;
        let a = vec![1000u16; n];
        let b = vec![2000u16; n];
        let none = vec![false; n];
        let mut out = vec![9u16; n];
        Reducer::Median.reduce_band(&[&a, &b], &[&none, &none], &mut out).unwrap();
        assert!(out.iter().all(|&v| v == FILL));
    }

    #[test]
    fn reduce_band_matches_per_pixel_median_across_blocks() {
        let (n, k) = (2 * BLOCK + 123, 7);
        let obs: Vec<Vec<u16>> = (0..k).map(|j| (0..n).map(|p| ((p * 31 + j * 17) % 50) as u16).collect()).collect();
        let valid: Vec<Vec<bool>> = (0..k).map(|j| (0..n).map(|p| (p + j) % 3 != 0).collect()).collect();
        let obs_refs: Vec<&[u16]> = obs.iter().map(Vec::as_slice).collect();
        let valid_refs: Vec<&[bool]> = valid.iter().map(Vec::as_slice).collect();
        let mut out = vec![0u16; n];
        Reducer::Median.reduce_band(&obs_refs, &valid_refs, &mut out).unwrap();
        for p in 0..n {
            let v: Vec<u16> = (0..k).filter(|&j| valid[j][p] && obs[j][p] != 0).map(|j| obs[j][p]).collect();
            assert_eq!(out[p], median_reference(&v), "pixel {p}");
        }
    }

    #[test]
    fn reduce_band_on_a_full_chunk() {
        // A 1200 x 1200 chunk with 12 solar days, a third of them masked per pixel: the masked
        // and the mask-free entry points agree with the reference (speed: benches/core.rs).
        let (n, k) = (1200 * 1200, 12);
        let obs: Vec<Vec<u16>> =
            (0..k).map(|j| (0..n).map(|p| 1000 + ((p * 7919 + j * 104_729) % 3000) as u16).collect()).collect();
        let valid: Vec<Vec<bool>> = (0..k).map(|j| (0..n).map(|p| (p * 31 + j * 7) % 3 != 0).collect()).collect();
        let obs_refs: Vec<&[u16]> = obs.iter().map(Vec::as_slice).collect();
        let valid_refs: Vec<&[bool]> = valid.iter().map(Vec::as_slice).collect();
        let mut out = vec![0u16; n];
        Reducer::Median.reduce_band(&obs_refs, &valid_refs, &mut out).unwrap();
        let masked: Vec<Vec<u16>> =
            (0..k).map(|j| (0..n).map(|p| if valid[j][p] { obs[j][p] } else { FILL }).collect()).collect();
        let masked_refs: Vec<&[u16]> = masked.iter().map(Vec::as_slice).collect();
        let mut out_masked = vec![0u16; n];
        Reducer::Median.reduce_masked(&masked_refs, &mut out_masked).unwrap();
        assert_eq!(out, out_masked);
        for p in (0..n).step_by(997) {
            let v: Vec<u16> = (0..k).filter(|&j| valid[j][p]).map(|j| obs[j][p]).collect();
            assert_eq!(out[p], median_reference(&v), "pixel {p}");
        }
    }

    #[test]
    fn reduce_band_refuses_mismatched_inputs() {
        let mut out = [0u16; 2];
        assert_eq!(
            Reducer::Median.reduce_band(&[&[1, 2]], &[], &mut out),
            Err(ReduceError::MaskCount { masks: 0, observations: 1 })
        );
        assert_eq!(
            Reducer::Median.reduce_band(&[&[1, 2], &[1]], &[&[true; 2], &[true; 1]], &mut out),
            Err(ReduceError::ObservationLength { index: 1, len: 1, expected: 2 })
        );
        assert_eq!(
            Reducer::Median.reduce_band(&[&[1, 2]], &[&[true; 3]], &mut out),
            Err(ReduceError::MaskLength { index: 0, len: 3, expected: 2 })
        );
    }

    #[test]
    fn reducer_names() {
        assert_eq!(serde_json::to_string(&Reducer::Median).unwrap(), "\"median\"");
        assert_eq!(serde_json::from_str::<Reducer>("\"median\"").unwrap(), Reducer::Median);
        assert_eq!("Median".parse::<Reducer>().unwrap(), Reducer::Median);
        for name in ["median", "mean", "min", "max", "std", "count", "geomedian"] {
            let r: Reducer = name.parse().unwrap();
            assert_eq!(r.to_string(), name);
            assert_eq!(serde_json::from_value::<Reducer>(serde_json::to_value(&r).unwrap()).unwrap(), r);
        }
        let q: Reducer = "quantiles: 0.1, 0.5,0.9".parse().unwrap();
        assert_eq!(q, Reducer::Quantiles(vec![0.1, 0.5, 0.9]));
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"quantiles:0.1,0.5,0.9\"");
        assert_eq!((q.values_per_band(), q.name()), (3, "quantiles"));
        let err = "foo".parse::<Reducer>().unwrap_err().to_string();
        assert!(err.contains("\"foo\"") && err.contains("median") && err.contains("quantiles:0.1"), "{err}");
    }

    #[test]
    fn bad_quantiles_are_refused_with_the_reason() {
        for (given, words) in [
            ("quantiles:1.5", "outside [0, 1]"),
            ("quantiles:-0.1", "outside [0, 1]"),
            ("quantiles:0.5,0.1", "does not come after"),
            ("quantiles:0.5,0.5", "does not come after"),
            ("quantiles:abc", "not a number"),
            ("quantiles:", "not a number"),
            ("quantiles", "no quantiles"),
        ] {
            let err = given.parse::<Reducer>().unwrap_err().to_string();
            assert!(err.contains(words) && err.contains("quantiles:0.1,0.5,0.9"), "{given}: {err}");
        }
        let many = format!("quantiles:{}", (1..=17).map(|i| format!("0.{i:02}")).collect::<Vec<_>>().join(","));
        assert!(many.parse::<Reducer>().unwrap_err().to_string().contains("at most 16"));
    }

    /// Runs `r` on one band of `k` observations of one pixel each.
    fn one_pixel(r: &Reducer, values: &[u16]) -> Vec<u16> {
        let obs: Vec<&[u16]> = values.iter().map(std::slice::from_ref).collect();
        let mut out = vec![9u16; r.values_per_band()];
        r.reduce_masked(&obs, &mut out).unwrap();
        out
    }

    #[test]
    fn known_answers_of_every_per_band_reducer() {
        // 0 is fill, never an observation.
        let v = [1000, 0, 1003, 1001, 1001, 0];
        assert_eq!(one_pixel(&Reducer::Median, &v), [1001]);
        // (1000 + 1003 + 1001 + 1001) / 4 = 1001.25 -> 1001
        assert_eq!(one_pixel(&Reducer::Mean, &v), [1001]);
        assert_eq!(one_pixel(&Reducer::Mean, &[1000, 1001]), [1001], "1000.5 rounds half up");
        assert_eq!(one_pixel(&Reducer::Min, &v), [1000]);
        assert_eq!(one_pixel(&Reducer::Max, &v), [1003]);
        assert_eq!(one_pixel(&Reducer::Count, &v), [4]);
        // population std of 1000, 1003, 1001, 1001: sqrt(1.1875) = 1.09 -> 1, stored + 1
        assert_eq!(one_pixel(&Reducer::Std, &v), [2]);
        // ties: a std of 0 is stored as 1, never as the fill value
        assert_eq!(one_pixel(&Reducer::Std, &[1500, 1500, 1500]), [1]);
        let q = Reducer::Quantiles(vec![0.0, 0.25, 0.5, 0.9, 1.0]);
        // sorted 1000, 1001, 1001, 1003: h = 3q -> 0, 0.75, 1.5, 2.7, 3
        // 1000, 1000.75 -> 1001, 1001, 1001 + 0.7 * 2 = 1002.4 -> 1002, 1003
        assert_eq!(one_pixel(&q, &v), [1000, 1001, 1001, 1002, 1003]);
    }

    #[test]
    fn one_observation_and_none() {
        let q = Reducer::Quantiles(vec![0.1, 0.9]);
        for (r, one, none) in [
            (Reducer::Median, vec![1234], vec![0]),
            (Reducer::Mean, vec![1234], vec![0]),
            (Reducer::Min, vec![1234], vec![0]),
            (Reducer::Max, vec![1234], vec![0]),
            (Reducer::Std, vec![1], vec![0]),
            (Reducer::Count, vec![1], vec![0]),
            (q, vec![1234, 1234], vec![0, 0]),
        ] {
            assert_eq!(one_pixel(&r, &[0, 1234, 0]), one, "{r}");
            assert_eq!(one_pixel(&r, &[0, 0]), none, "{r}");
            assert_eq!(one_pixel(&r, &[]), none, "{r}");
        }
    }

    #[test]
    fn quantile_matches_numpy_linear_on_known_values() {
        // np.quantile([1, 2, 3, 4], [0.1, 0.5, 0.9]) = [1.3, 2.5, 3.7]
        let x = [1u16, 2, 3, 4];
        for (q, want) in [(0.1, 1.3), (0.5, 2.5), (0.9, 3.7)] {
            assert!((quantile_linear(&x, q) - want).abs() < 1e-12, "{q}");
        }
        assert_eq!(quantile_linear(&[7], 0.3), 7.0);
    }

    #[test]
    fn reduce_bands_lays_out_pixel_band_value() {
        // Two days, two bands, two pixels; quantiles 0 and 1 are min and max.
        let d0: Vec<&[u16]> = vec![&[10, 0], &[20, 0]];
        let d1: Vec<&[u16]> = vec![&[30, 5], &[40, 6]];
        let r = Reducer::Quantiles(vec![0.0, 1.0]);
        let mut out = vec![9u16; 2 * 2 * 2];
        r.reduce_bands(&[d0.clone(), d1.clone()], 2, &mut out).unwrap();
        assert_eq!(out, [10, 30, 20, 40, 5, 5, 6, 6]);
        let mut med = vec![9u16; 4];
        Reducer::Median.reduce_bands(&[d0.clone(), d1.clone()], 2, &mut med).unwrap();
        assert_eq!(med, [20, 30, 5, 6]);
        let mut count = vec![9u16; 2];
        count_valid(&[d0.clone(), d1.clone()], &mut count).unwrap();
        assert_eq!(count, [2, 1]);
        assert_eq!(
            Reducer::Median.reduce_bands(&[d0, vec![&[1, 2]]], 2, &mut med),
            Err(ReduceError::BandCount { index: 1, bands: 1, expected: 2 })
        );
    }

    #[test]
    fn geomedian_known_answers() {
        let mut y = [0.0; 2];
        // One point, or all equal: that point (hdstats gives zeros there).
        geomedian(&[3.0, 4.0], 2, 1e-9, 100, &mut y).unwrap();
        assert_eq!(y, [3.0, 4.0]);
        geomedian(&[3.0, 4.0, 3.0, 4.0, 3.0, 4.0], 2, 1e-9, 100, &mut y).unwrap();
        assert_eq!(y, [3.0, 4.0]);
        // Three corners of a square and the centre: the centre point is the geometric median
        // (approached slowly, as Weiszfeld approaches a data point: within 1e-4 of it here).
        geomedian(&[0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 1.0, 1.0], 2, 1e-9, 10_000, &mut y).unwrap();
        assert!((y[0] - 1.0).abs() < 1e-3 && (y[1] - 1.0).abs() < 1e-3, "{y:?}");
        // Four corners of a square: its centre (by symmetry).
        geomedian(&[0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 2.0, 2.0], 2, 1e-9, 10_000, &mut y).unwrap();
        assert!((y[0] - 1.0).abs() < 1e-6 && (y[1] - 1.0).abs() < 1e-6, "{y:?}");
        // In one dimension it is the median (odd count), not the mean.
        let mut y1 = [0.0];
        geomedian(&[1.0, 2.0, 100.0], 1, 1e-9, 10_000, &mut y1).unwrap();
        assert!((y1[0] - 2.0).abs() < 1e-3, "{y1:?}");
        assert!(geomedian(&[], 2, 1e-9, 10, &mut y).is_none());
    }

    #[test]
    fn geomedian_reducer_skips_fill_and_gives_fill_for_none() {
        // Pixel 0: five days, one of them far off (the mean would be pulled 800 DN toward it);
        // pixel 1: no data.
        let days: Vec<Vec<&[u16]>> = vec![
            vec![&[1000, 0], &[2000, 0]],
            vec![&[1010, 0], &[2030, 0]],
            vec![&[5000, 0], &[6000, 0]],
            vec![&[1030, 0], &[2010, 0]],
            vec![&[1020, 0], &[2020, 0]],
        ];
        let mut out = vec![9u16; 4];
        Reducer::Geomedian.reduce_bands(&days, 2, &mut out).unwrap();
        assert!((1000..=1035).contains(&out[0]) && (2000..=2035).contains(&out[1]), "{out:?}");
        assert_eq!(&out[2..], [0, 0]);
    }
}
