//! The observation stack of one chunk: its masked solar days, kept packed (one validity bit per
//! pixel and the values of the valid pixels only) until the reducer reads them strip by strip.
//!
//! Why packed: a job holds every observation of its time bin until it reduces, and much of a
//! day is invalid (clouds, shadows, the edge of a swath). In the chunk-month benchmark 45 % of
//! the pixels of its 13 days were valid, so full bands held 112 MB where packed ones hold 52 MB.
//! The reducers still see full bands: [`Stack::for_each_strip`] unpacks one strip of pixels of
//! every day at a time into small buffers, invalid pixels as [`FILL`], so every reducer runs
//! unchanged and gives the same values.
//!
//! Owns: packing and unpacking. Must not touch: masking (the caller says which pixels are valid)
//! or the reduction rules (the caller applies them to each strip).

use std::ops::Range;

use rayon::prelude::*;

use super::{FILL, ReduceError, Reducer, count_valid};

/// Pixels per strip: a multiple of 64, so a strip starts on a word of the validity bits, and
/// small enough that a strip of 13 days of 3 bands (640 KB) stays in the cache between being
/// unpacked and being reduced.
pub const STRIP: usize = 1 << 13;

/// The masked observations of one chunk, one per solar day, in the order they were pushed.
#[derive(Debug, Clone)]
pub struct Stack {
    pixels: usize,
    bands: usize,
    days: Vec<Packed>,
}

/// What a job's reducer made of a [`Stack`]: the data variable's values in (row, col, band,
/// value) order and, with `with-count`, the `valid_count` of each pixel.
pub struct Reduced {
    pub data: Vec<u16>,
    pub count: Option<Vec<u16>>,
    /// Per index variable, its values in (row, col, value) order.
    pub indices: Vec<Vec<u16>>,
}

/// One packed day.
#[derive(Debug, Clone)]
struct Packed {
    /// Bit `p % 64` of word `p / 64`: pixel `p` is valid.
    valid: Vec<u64>,
    /// Per strip, the index in `values` of its first valid pixel.
    starts: Vec<usize>,
    /// Per band, the values of the valid pixels in pixel order.
    values: Vec<Vec<u16>>,
}

impl Stack {
    /// An empty stack of days of `bands` bands of `pixels` pixels.
    pub fn new(pixels: usize, bands: usize) -> Stack {
        Stack { pixels, bands, days: Vec::new() }
    }

    /// The days pushed.
    pub fn days(&self) -> usize {
        self.days.len()
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// Adds a solar day: `bands[b][p]` is band `b` of pixel `p`, `valid[p]` whether the mask
    /// keeps it. The values of invalid pixels are not kept: they read back as [`FILL`].
    pub fn push(&mut self, bands: &[Vec<u16>], valid: &[bool]) -> Result<(), ReduceError> {
        let index = self.days.len();
        if bands.len() != self.bands {
            return Err(ReduceError::BandCount { index, bands: bands.len(), expected: self.bands });
        }
        if valid.len() != self.pixels {
            return Err(ReduceError::MaskLength { index, len: valid.len(), expected: self.pixels });
        }
        if let Some(band) = bands.iter().find(|b| b.len() != self.pixels) {
            return Err(ReduceError::ObservationLength { index, len: band.len(), expected: self.pixels });
        }
        let words: Vec<u64> = valid
            .chunks(64)
            .map(|bits| bits.iter().enumerate().fold(0u64, |w, (i, &v)| w | (u64::from(v) << i)))
            .collect();
        let mut starts = Vec::with_capacity(self.pixels.div_ceil(STRIP));
        let mut kept = 0;
        for strip in words.chunks(STRIP / 64) {
            starts.push(kept);
            kept += strip.iter().map(|w| w.count_ones() as usize).sum::<usize>();
        }
        let values = bands
            .par_iter()
            .map(|band| {
                // Word by word, as `unpack` reads them back: clouds and swath edges come in
                // runs, so most words are all valid (one copy) or all invalid (nothing).
                let mut v = Vec::with_capacity(kept);
                for (pixels, &word) in band.chunks(64).zip(&words) {
                    if word == u64::MAX && pixels.len() == 64 {
                        v.extend_from_slice(pixels);
                        continue;
                    }
                    let mut bits = word;
                    while bits != 0 {
                        v.push(pixels[bits.trailing_zeros() as usize]);
                        bits &= bits - 1;
                    }
                }
                v
            })
            .collect();
        self.days.push(Packed { valid: words, starts, values });
        Ok(())
    }

    /// Reduces the stack with `reducer`: its first `bands` bands are the cube's (reduced
    /// together, as [`Reducer::reduce_bands`] does, and counted with `with_count`), the rest
    /// are index variables, each reduced on its own.
    pub fn reduce(&self, reducer: &Reducer, bands: usize, with_count: bool) -> Result<Reduced, ReduceError> {
        let (n, nv, nb) = (self.pixels, reducer.values_per_band(), bands.min(self.bands));
        let mut data = vec![FILL; n * nb * nv];
        let mut count = with_count.then(|| vec![FILL; n]);
        let mut indices = vec![vec![FILL; n * nv]; self.bands - nb];
        // Each strip of pixels writes its own part of every output.
        let mut index_parts: Vec<std::slice::ChunksMut<'_, u16>> =
            indices.iter_mut().map(|i| i.chunks_mut(STRIP * nv)).collect();
        let mut count_parts = count.as_mut().map(|c| c.chunks_mut(STRIP));
        let parts: Vec<_> = data
            .chunks_mut(STRIP * nb.max(1) * nv)
            .map(|data| {
                let count = count_parts.as_mut().and_then(Iterator::next);
                (data, count, index_parts.iter_mut().filter_map(Iterator::next).collect::<Vec<_>>())
            })
            .collect();
        self.for_each_strip(parts, |_, days, (data, count, indices)| {
            let cube: Vec<Vec<&[u16]>> = days.iter().map(|d| d[..nb].to_vec()).collect();
            reducer.reduce_bands(&cube, nb, data)?;
            if let Some(count) = count {
                count_valid(&cube, count)?;
            }
            // Each index is one more band to the reducer (geomedian is refused with indices).
            for (i, reduced) in indices.into_iter().enumerate() {
                let values: Vec<&[u16]> = days.iter().map(|d| d[nb + i]).collect();
                reducer.reduce_masked(&values, reduced)?;
            }
            Ok(())
        })?;
        Ok(Reduced { data, count, indices })
    }

    /// The strips [`Stack::for_each_strip`] goes over: consecutive ranges of [`STRIP`] pixels
    /// (the last one shorter).
    pub fn strips(&self) -> impl Iterator<Item = Range<usize>> + use<> {
        let pixels = self.pixels;
        (0..pixels).step_by(STRIP).map(move |first| first..(first + STRIP).min(pixels))
    }

    /// Calls `f(pixels, days, out)` on every strip of pixels in parallel, with `outputs[s]` as the
    /// `out` of strip `s` (one per strip of [`Stack::strips`]): `days[k][b]` is band `b` of day
    /// `k` over the pixel range `pixels`, invalid pixels as [`FILL`]. Returns one of `f`'s errors
    /// if any. Panics unless there is one output per strip.
    pub fn for_each_strip<T: Send, E: Send>(
        &self,
        outputs: Vec<T>,
        f: impl Fn(Range<usize>, &[Vec<&[u16]>], T) -> Result<(), E> + Sync,
    ) -> Result<(), E> {
        let buffers = || -> Vec<Vec<Vec<u16>>> {
            self.days.iter().map(|_| vec![vec![FILL; STRIP.min(self.pixels)]; self.bands]).collect()
        };
        let strips: Vec<(usize, Range<usize>)> = self.strips().enumerate().collect();
        // A caller's bug, never input: a strip without an output would go unreduced.
        assert_eq!(outputs.len(), strips.len(), "one output per strip");
        strips.into_par_iter().zip(outputs).try_for_each_init(buffers, |buffers, ((s, range), out)| {
            let (first, len) = (range.start, range.len());
            for (bufs, day) in buffers.iter_mut().zip(&self.days) {
                let words = &day.valid[first / 64..range.end.div_ceil(64)];
                for (buf, values) in bufs.iter_mut().zip(&day.values) {
                    unpack(words, &values[day.starts[s]..], &mut buf[..len]);
                }
            }
            let views: Vec<Vec<&[u16]>> = buffers.iter().map(|bufs| bufs.iter().map(|b| &b[..len]).collect()).collect();
            f(range, &views, out)
        })
    }
}

/// Writes the pixels of `out` (one bit each in `words`, from bit 0 of the first) as the next of
/// `values` where valid and [`FILL`] where not.
fn unpack(words: &[u64], values: &[u16], out: &mut [u16]) {
    let mut next = 0;
    for (chunk, &word) in out.chunks_mut(64).zip(words) {
        if word == u64::MAX && chunk.len() == 64 {
            chunk.copy_from_slice(&values[next..next + 64]);
            next += 64;
            continue;
        }
        chunk.fill(FILL);
        let mut bits = word;
        while bits != 0 {
            chunk[bits.trailing_zeros() as usize] = values[next];
            next += 1;
            bits &= bits - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pixel of every day reads back as pushed where valid and as fill where not, on a
    /// length that is not a multiple of a strip or a word, with empty, full and mixed words.
    #[test]
    fn days_read_back_strip_by_strip_as_pushed_with_fill_where_invalid() {
        let pixels = 5 * STRIP + 100;
        let mut stack = Stack::new(pixels, 2);
        let mut pushed = Vec::new();
        for day in 0..4usize {
            let valid: Vec<bool> = (0..pixels)
                .map(|p| match day {
                    0 => true,
                    1 => false,
                    2 => (p / 64) % 3 != 1 && (p * 7 + 3) % 5 != 0,
                    _ => p % 2 == 0 || p > STRIP,
                })
                .collect();
            let bands: Vec<Vec<u16>> =
                (0..2).map(|b| (0..pixels).map(|p| ((p * 31 + day * 7 + b) % 65_000) as u16 + 1).collect()).collect();
            stack.push(&bands, &valid).unwrap();
            pushed.push((bands, valid));
        }
        assert_eq!(stack.days(), 4);
        let strips: Vec<Range<usize>> = stack.strips().collect();
        assert_eq!(strips.first().map(|r| r.start), Some(0));
        assert_eq!(strips.last().map(|r| r.end), Some(pixels));
        assert!(strips.windows(2).all(|w| w[0].end == w[1].start), "strips are back to back");
        let seen = std::sync::atomic::AtomicUsize::new(0);
        stack
            .for_each_strip(strips.clone(), |range, days, given| -> Result<(), ()> {
                assert_eq!(range, given, "each strip gets its own output");
                seen.fetch_add(range.len(), std::sync::atomic::Ordering::Relaxed);
                for (k, (bands, valid)) in pushed.iter().enumerate() {
                    for (b, band) in bands.iter().enumerate() {
                        let want: Vec<u16> = range.clone().map(|p| if valid[p] { band[p] } else { FILL }).collect();
                        assert_eq!(days[k][b], want.as_slice(), "day {k} band {b} pixels {range:?}");
                    }
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(seen.into_inner(), pixels, "every pixel once");
    }

    /// Reducing the stack equals reducing the full bands it was made of: the cube's bands
    /// together (median, quantiles), their valid count, and an index band on its own.
    #[test]
    fn reducing_the_stack_equals_reducing_the_full_bands() {
        let pixels = 2 * STRIP + 77;
        let (nb, days) = (2, 5usize);
        let mut stack = Stack::new(pixels, nb + 1);
        let mut full: Vec<Vec<Vec<u16>>> = Vec::new();
        for k in 0..days {
            let valid: Vec<bool> = (0..pixels).map(|p| (p * 13 + k * 5) % 7 < 4).collect();
            let bands: Vec<Vec<u16>> = (0..=nb)
                .map(|b| {
                    (0..pixels)
                        .map(|p| if valid[p] { ((p * 17 + k * 29 + b * 3) % 9000) as u16 + 1 } else { 0 })
                        .collect()
                })
                .collect();
            stack.push(&bands, &valid).unwrap();
            full.push(bands);
        }
        for reducer in [Reducer::Median, "quantiles:0.1,0.9".parse().unwrap()] {
            let got = stack.reduce(&reducer, nb, true).unwrap();
            let nv = reducer.values_per_band();
            let cube: Vec<Vec<&[u16]>> = full.iter().map(|d| d[..nb].iter().map(Vec::as_slice).collect()).collect();
            let mut data = vec![0; pixels * nb * nv];
            reducer.reduce_bands(&cube, nb, &mut data).unwrap();
            let mut count = vec![0; pixels];
            count_valid(&cube, &mut count).unwrap();
            let index: Vec<&[u16]> = full.iter().map(|d| d[nb].as_slice()).collect();
            let mut reduced = vec![0; pixels * nv];
            reducer.reduce_masked(&index, &mut reduced).unwrap();
            assert!(got.data == data, "{reducer:?}: data");
            assert_eq!(got.count, Some(count), "{reducer:?}: count");
            assert!(got.indices == vec![reduced], "{reducer:?}: index");
        }
    }

    #[test]
    fn a_day_of_the_wrong_shape_is_refused_and_an_error_stops_the_strips() {
        let mut stack = Stack::new(10, 2);
        assert!(matches!(
            stack.push(&[vec![1; 10]], &[true; 10]),
            Err(ReduceError::BandCount { bands: 1, expected: 2, .. })
        ));
        assert!(matches!(stack.push(&[vec![1; 10], vec![1; 10]], &[true; 9]), Err(ReduceError::MaskLength { .. })));
        assert!(matches!(
            stack.push(&[vec![1; 10], vec![1; 9]], &[true; 10]),
            Err(ReduceError::ObservationLength { len: 9, .. })
        ));
        assert!(stack.is_empty());
        stack.push(&[vec![1; 10], vec![2; 10]], &[true; 10]).unwrap();
        assert_eq!(stack.for_each_strip(vec![()], |_, _, _| Err("stop")), Err("stop"));
    }
}
