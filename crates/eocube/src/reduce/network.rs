//! The median of masked observations, [`LANES`] pixels at a time: the hot path of every build.
//!
//! Sorting each pixel's few values apart (insertion sort) branches on the data, and on values in
//! no particular order those branches mispredict often. Here the observations of [`LANES`] neighbouring
//! pixels are sorted together by one sorting network (Batcher's odd-even merge sort, pruned to
//! the number of solar days): a fixed list of compare-exchanges, each a lane-wise min and max the
//! compiler turns into vector instructions, with no branch on the values. The fill value sorts
//! last (values are taken minus one, wrapping, so 0 becomes the largest), and each pixel then reads
//! its middle values at its own count of observations. Days with no observation in any of the
//! group's pixels are left out, so the network is as long as the group's days with data. The
//! result is [`super::median_u16`]'s, bit for bit.
//!
//! Owns: only this way of computing the median. Must not touch: which values are observations (the
//! caller's mask made invalid pixels the fill value) or the rule for the median itself.

use rayon::prelude::*;

use super::{BLOCK, FILL, median_u16};

/// Pixels sorted together: 32 bytes of u16, two SSE2 registers.
const LANES: usize = 16;

/// Up to this many observations the network is used; a network grows as n log² n compare-
/// exchanges, so long bins (a year of solar days) take the selection of [`median_u16`] instead.
pub(super) const MAX_OBSERVATIONS: usize = 32;

/// `out[p]` = [`median_u16`] of the non-fill values of `observations[k][p]`, every `k`. The
/// observations are all `out.len()` long (the caller checked), and at most [`MAX_OBSERVATIONS`].
pub(super) fn median_masked(observations: &[&[u16]], out: &mut [u16]) {
    let k = observations.len();
    let networks = networks();
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(b, block)| {
        let first = b * BLOCK;
        let len = block.len();
        let mut rows = vec![[0u16; LANES]; k];
        let mut groups = block.chunks_exact_mut(LANES);
        for (g, o) in (&mut groups).enumerate() {
            let p = first + g * LANES;
            let mut counts = [0u16; LANES];
            let mut used = 0;
            for obs in observations {
                let values = &obs[p..p + LANES];
                if values.iter().all(|&v| v == FILL) {
                    continue;
                }
                for ((r, c), &v) in rows[used].iter_mut().zip(&mut counts).zip(values) {
                    *c += u16::from(v != FILL);
                    *r = v.wrapping_sub(1);
                }
                used += 1;
            }
            for &(i, j) in &networks[used] {
                let (a, b) = (rows[i], rows[j]);
                for l in 0..LANES {
                    rows[i][l] = a[l].min(b[l]);
                    rows[j][l] = a[l].max(b[l]);
                }
            }
            for (l, (o, &n)) in o.iter_mut().zip(&counts).enumerate() {
                let n = usize::from(n);
                *o = if n == 0 {
                    FILL
                } else {
                    // Undo the minus one; the floor of the mean of the two middle values, as
                    // `median_u16` (equal for an odd count).
                    let (lo, hi) = (u32::from(rows[(n - 1) / 2][l]) + 1, u32::from(rows[n / 2][l]) + 1);
                    ((lo + hi) / 2) as u16
                };
            }
        }
        // The last pixels of the block, fewer than a group, one at a time.
        let tail = groups.into_remainder();
        let done = len - tail.len();
        let mut values = Vec::with_capacity(k);
        for (i, o) in tail.iter_mut().enumerate() {
            let p = first + done + i;
            values.clear();
            values.extend(observations.iter().map(|obs| obs[p]).filter(|&v| v != FILL));
            *o = median_u16(&mut values);
        }
    });
}

/// The network of every count up to [`MAX_OBSERVATIONS`], made once per process (a job calls
/// [`median_masked`] per band and strip of pixels). A network per count, because a group's days
/// with no observation at all are left out (clouds and swath edges come in patches).
fn networks() -> &'static [Vec<(usize, usize)>] {
    static NETWORKS: std::sync::OnceLock<Vec<Vec<(usize, usize)>>> = std::sync::OnceLock::new();
    NETWORKS.get_or_init(|| (0..=MAX_OBSERVATIONS).map(odd_even_merge_sort).collect())
}

/// Batcher's odd-even merge sort of `n` values as compare-exchanges `(i, j)`, `i < j`: after
/// each in turn puts the smaller of positions `i` and `j` at `i`, the values are sorted. Made for
/// the next power of two, without the pairs that reach past `n`: those would compare a value with
/// one of the imagined infinite values past the end, which never moves either.
fn odd_even_merge_sort(n: usize) -> Vec<(usize, usize)> {
    let size = n.next_power_of_two();
    let mut pairs = Vec::new();
    let mut p = 1;
    while p < size {
        let mut k = p;
        while k >= 1 {
            for j in (k % p..size - k).step_by(2 * k) {
                for i in 0..k.min(size - j - k) {
                    let (a, b) = (i + j, i + j + k);
                    // Only within one merged pair of sorted runs of length p.
                    if a / (2 * p) == b / (2 * p) && b < n {
                        pairs.push((a, b));
                    }
                }
            }
            k /= 2;
        }
        p *= 2;
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(network: &[(usize, usize)], v: &mut [u16]) {
        for &(i, j) in network {
            if v[i] > v[j] {
                v.swap(i, j);
            }
        }
    }

    /// By the 0-1 principle, a network that sorts every sequence of zeros and ones sorts
    /// everything: checked exhaustively up to 16 values, on random values beyond.
    #[test]
    fn the_network_sorts_every_count() {
        for n in 0..=16usize {
            let network = odd_even_merge_sort(n);
            assert!(network.iter().all(|&(i, j)| i < j && j < n), "{n}: {network:?}");
            for bits in 0..1u32 << n {
                let mut v: Vec<u16> = (0..n).map(|i| ((bits >> i) & 1) as u16).collect();
                run(&network, &mut v);
                assert!(v.is_sorted(), "{n} values, input {bits:b}: {v:?}");
            }
        }
        let mut x = 0x2545_f491u32;
        for n in 17..=MAX_OBSERVATIONS + 8 {
            let network = odd_even_merge_sort(n);
            for _ in 0..200 {
                let mut v: Vec<u16> = (0..n)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        (x % 50) as u16
                    })
                    .collect();
                run(&network, &mut v);
                assert!(v.is_sorted(), "{n} values: {v:?}");
            }
        }
    }

    /// Every count of observations, fills anywhere (also all fill, and days without data over
    /// whole groups), values at both ends of the range (1 and 65535), a pixel count that is
    /// neither a multiple of the lanes nor of a block: the same medians as `median_u16` pixel by
    /// pixel.
    #[test]
    fn equals_median_u16_pixel_by_pixel() {
        let pixels = BLOCK + 3 * LANES + 5;
        let mut x = 0x9e37_79b9u32;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for k in 0..=MAX_OBSERVATIONS {
            let days: Vec<Vec<u16>> = (0..k)
                .map(|d| {
                    (0..pixels)
                        .map(|p| match (p % 7, next() % 10) {
                            // Whole groups without data on some days, as under a cloud.
                            _ if d % 3 == 1 && !(p / LANES).is_multiple_of(4) => FILL,
                            (0, _) => FILL,
                            (1, r) if r < 5 => 65535,
                            (2, r) if r < 5 => 1,
                            (_, 0..=2) => FILL,
                            _ => (next() % 4000) as u16 + 1,
                        })
                        .collect()
                })
                .collect();
            let observations: Vec<&[u16]> = days.iter().map(Vec::as_slice).collect();
            let mut got = vec![7u16; pixels];
            median_masked(&observations, &mut got);
            for (p, &g) in got.iter().enumerate() {
                let mut values: Vec<u16> = days.iter().map(|d| d[p]).filter(|&v| v != FILL).collect();
                assert_eq!(g, median_u16(&mut values), "{k} observations, pixel {p}");
            }
        }
    }
}
