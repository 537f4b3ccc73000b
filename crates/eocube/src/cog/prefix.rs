//! Running sums of integer runs, wrapping: what undoing TIFF's horizontal differencing
//! (predictor 2) computes for every decoded row.
//!
//! The plain loop is a chain of one add per pixel. On x86-64 eight u16 (or sixteen u8) are summed
//! at once in an SSE2 register, by three (or four) shifted adds, and the register's last lane
//! carries into the next eight: 2.5 times the plain loop's speed on rows in cache. (Decoding a
//! window gains less, about 2 %: writing the window is bound by memory.) SSE2 is part of the
//! x86-64 baseline, so every CPU this code runs on has it; other targets take the loop.
//!
//! Owns: only this arithmetic. Must not touch: TIFF layout or byte order (callers hand over
//! native values) and where a row goes.

use super::decode::Sample;

/// `out[i] = acc + src[0] + .. + src[i]` (wrapping), for `i` below the shorter length.
pub(crate) fn running_sum_u16(out: &mut [u16], src: &[u16], acc: u16) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the function only needs SSE2, which every x86-64 CPU has (the target's baseline).
    unsafe {
        sse2::running_sum_u16(out, src, acc)
    }
    #[cfg(not(target_arch = "x86_64"))]
    scalar(out, src, acc)
}

/// [`running_sum_u16`] of u8 values.
pub(crate) fn running_sum_u8(out: &mut [u8], src: &[u8], acc: u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as in `running_sum_u16`.
    unsafe {
        sse2::running_sum_u8(out, src, acc)
    }
    #[cfg(not(target_arch = "x86_64"))]
    scalar(out, src, acc)
}

/// The plain loop, for any sample type: the reference, the other targets' way and the tail of
/// the vector versions.
#[inline]
pub(crate) fn scalar<T: Sample>(out: &mut [T], src: &[T], mut acc: T) {
    for (d, &v) in out.iter_mut().zip(src) {
        acc = acc.wrapping_add(v);
        *d = acc;
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_add_epi16, _mm_shuffle_epi32, _mm_shufflehi_epi16, _mm_slli_si128, _mm_unpackhi_epi8,
    };

    use super::Sample;

    #[target_feature(enable = "sse2")]
    pub(super) fn running_sum_u16(out: &mut [u16], src: &[u16], acc: u16) {
        scan::<u16, 8>(
            out,
            src,
            acc,
            |a, b| _mm_add_epi16(a, b),
            |x| {
                // After the shift by k lanes, each lane holds the sum of the 2k lanes up to it.
                let x = _mm_add_epi16(x, _mm_slli_si128::<2>(x));
                let x = _mm_add_epi16(x, _mm_slli_si128::<4>(x));
                let x = _mm_add_epi16(x, _mm_slli_si128::<8>(x));
                // The last lane into every lane: into lanes 4-7, then 32-bit lane 3 into all.
                (x, _mm_shuffle_epi32::<0xFF>(_mm_shufflehi_epi16::<0xFF>(x)))
            },
        );
    }

    #[target_feature(enable = "sse2")]
    pub(super) fn running_sum_u8(out: &mut [u8], src: &[u8], acc: u8) {
        scan::<u8, 16>(
            out,
            src,
            acc,
            |a, b| _mm_add_epi8(a, b),
            |x| {
                let x = _mm_add_epi8(x, _mm_slli_si128::<1>(x));
                let x = _mm_add_epi8(x, _mm_slli_si128::<2>(x));
                let x = _mm_add_epi8(x, _mm_slli_si128::<4>(x));
                let x = _mm_add_epi8(x, _mm_slli_si128::<8>(x));
                // Byte 15 into both bytes of 16-bit lane 7, then as for u16.
                let pairs = _mm_unpackhi_epi8(x, x);
                (x, _mm_shuffle_epi32::<0xFF>(_mm_shufflehi_epi16::<0xFF>(pairs)))
            },
        );
    }

    /// The loop of both widths, `N` values of `T` a register: `sums(x)` gives the running sums
    /// within the register and its last lane in every lane; `add` adds lane by lane, to carry
    /// the sum so far into each register.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn scan<T: Sample, const N: usize>(
        out: &mut [T],
        src: &[T],
        acc: T,
        add: impl Fn(__m128i, __m128i) -> __m128i,
        sums: impl Fn(__m128i) -> (__m128i, __m128i),
    ) where
        [T; N]: bytemuck::Pod,
    {
        let n = out.len().min(src.len());
        let (mut out, mut src) = (out[..n].chunks_exact_mut(N), src[..n].chunks_exact(N));
        // Every lane holds the running sum so far.
        let mut carry: __m128i = bytemuck::cast([acc; N]);
        for (o, s) in (&mut out).zip(&mut src) {
            let mut lanes = [acc; N];
            lanes.copy_from_slice(s);
            let (x, last) = sums(bytemuck::cast(lanes));
            o.copy_from_slice(&bytemuck::cast::<__m128i, [T; N]>(add(x, carry)));
            carry = add(last, carry);
        }
        let acc = bytemuck::cast::<__m128i, [T; N]>(carry)[0];
        super::scalar(out.into_remainder(), src.remainder(), acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift: values that use every bit, so wrapping happens all the time.
    fn values(n: usize, seed: u32) -> Vec<u16> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u16
            })
            .collect()
    }

    #[test]
    fn equals_the_plain_loop_for_every_length_and_start() {
        for n in 0..70 {
            for (seed, acc) in [(1, 0u16), (7, 1), (99, 65535), (1234, 40000)] {
                let src = values(n, seed);
                let (mut want, mut got) = (vec![0u16; n], vec![0u16; n]);
                scalar(&mut want, &src, acc);
                running_sum_u16(&mut got, &src, acc);
                assert_eq!(got, want, "u16, {n} values from {acc}");

                let src8: Vec<u8> = src.iter().map(|&v| (v >> 3) as u8).collect();
                let (mut want, mut got) = (vec![0u8; n], vec![0u8; n]);
                scalar(&mut want, &src8, acc as u8);
                running_sum_u8(&mut got, &src8, acc as u8);
                assert_eq!(got, want, "u8, {n} values from {}", acc as u8);
            }
        }
    }

    #[test]
    fn stops_at_the_shorter_slice() {
        let src = values(40, 5);
        let mut out = vec![7u16; 25];
        running_sum_u16(&mut out, &src, 3);
        let mut want = vec![0u16; 25];
        scalar(&mut want, &src[..25], 3);
        assert_eq!(out, want);

        let mut long = vec![7u16; 40];
        running_sum_u16(&mut long, &src[..17], 3);
        scalar(&mut want[..17], &src[..17], 3);
        assert_eq!(long[..17], want[..17]);
        assert!(long[17..].iter().all(|&v| v == 7), "nothing past the source is written");
    }
}
