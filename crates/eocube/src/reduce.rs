//! Reducing: the observations (solar days) of one time bin to one value per pixel and band.
//! [`Reducer`] is the user's choice (today only `median`); [`Reducer::reduce_band`] applies it to
//! one band of one chunk; [`median_u16`] is the median rule on its own.
//!
//! Owns: the reduction rules of DESIGN section 7 (median of the valid observations, even counts
//! take `floor((a + b) / 2)` of the two middle values, no valid observation gives the fill value 0).
//! Must not touch: masks (it takes them ready-made from `mask`), radiometry (values arrive already
//! harmonized by `fuse`), or the store.
//!
//! The value 0 is the fill value everywhere in eocube (nodata in the scenes, `_FillValue` in the
//! cube), so a 0 is never an observation, even where the mask says valid: the reducer skips it.

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The fill value of the cube, and the result when a pixel has no valid observation.
pub const FILL: u16 = 0;

/// Pixels per parallel task: big enough that rayon's overhead vanishes, small enough that a
/// 1200 x 1200 chunk still splits into a few hundred tasks.
const BLOCK: usize = 4096;

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
    #[error("unknown reducer {given:?}; valid reducers: median")]
    UnknownReducer { given: String },
}

/// How the observations of a time bin become one value. Serialized by name (`"median"`); more
/// reducers (quantiles, geomedian) are new variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reducer {
    /// Per-pixel, per-band median of the valid observations (DESIGN section 7).
    #[default]
    Median,
}

impl Reducer {
    /// The name used on the CLI, in TOML and in the cube's attributes.
    pub fn name(&self) -> &'static str {
        match self {
            Reducer::Median => "median",
        }
    }

    /// Reduces one band of a chunk: `observations[k][p]` is the value of pixel `p` on solar day
    /// `k`, `valid[k][p]` whether the mask keeps it. Writes one value per pixel into `out`.
    pub fn reduce_band(&self, observations: &[&[u16]], valid: &[&[bool]], out: &mut [u16]) -> Result<(), ReduceError> {
        let n = out.len();
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
        check_lengths(observations, out.len())?;
        self.reduce_with(observations, out, |_, _| true);
        Ok(())
    }

    /// Runs in parallel over blocks of pixels; each block gathers a pixel's valid values into
    /// one small buffer, so nothing is allocated per pixel.
    fn reduce_with(&self, observations: &[&[u16]], out: &mut [u16], keep: impl Fn(usize, usize) -> bool + Sync) {
        match self {
            Reducer::Median => out.par_chunks_mut(BLOCK).enumerate().for_each(|(b, block)| {
                let mut scratch = Vec::with_capacity(observations.len());
                let offset = b * BLOCK;
                for (i, o) in block.iter_mut().enumerate() {
                    let p = offset + i;
                    scratch.clear();
                    for (k, obs) in observations.iter().enumerate() {
                        let x = obs[p];
                        if x != FILL && keep(k, p) {
                            scratch.push(x);
                        }
                    }
                    *o = median_u16(&mut scratch);
                }
            }),
        }
    }
}

fn check_lengths(observations: &[&[u16]], n: usize) -> Result<(), ReduceError> {
    for (index, o) in observations.iter().enumerate() {
        if o.len() != n {
            return Err(ReduceError::ObservationLength { index, len: o.len(), expected: n });
        }
    }
    Ok(())
}

impl fmt::Display for Reducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Reducer {
    type Err = ReduceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "median" => Ok(Reducer::Median),
            _ => Err(ReduceError::UnknownReducer { given: s.to_string() }),
        }
    }
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
        let err = "mean".parse::<Reducer>().unwrap_err().to_string();
        assert!(err.contains("\"mean\"") && err.contains("median"), "{err}");
    }
}
