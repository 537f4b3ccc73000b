//! Binary morphology with the disk `dx² + dy² <= r²` (as `skimage.morphology.disk(r)`), outside
//! the array counting as unknown (see the rules in the module above): [`Bits`] and the `Vec<bool>`
//! forms [`dilate`], [`erode`], [`close`], [`open`].
//!
//! Owns: the packed representation and the disk. Must not touch: what a mask means (the caller
//! decides which pixels are bad).

use crate::grid::Shape;

/// A binary image packed 64 pixels to a word, each row padded to whole words with bits that are
/// always 0: a `seed` mask (two dilations and two erosions of a 1240 x 1240 chunk) costs a
/// fraction of a millisecond this way, where a byte per pixel cost milliseconds per pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
    per_row: usize,
    shape: Shape,
}

impl Bits {
    /// Packs a row-major mask of `shape`; `mask.len()` must be `shape.len()` (extra pixels are
    /// ignored, missing ones are `false`).
    pub fn pack(mask: &[bool], shape: Shape) -> Bits {
        let per_row = shape.nx.div_ceil(64);
        let mut words = vec![0u64; per_row * shape.ny];
        if per_row > 0 {
            for (row_words, row) in words.chunks_exact_mut(per_row).zip(mask.chunks(shape.nx)) {
                for (w, pixels) in row_words.iter_mut().zip(row.chunks(64)) {
                    *w = pixels.iter().enumerate().fold(0, |w, (j, &b)| w | (u64::from(b) << j));
                }
            }
        }
        Bits { words, per_row, shape }
    }

    /// The mask, row-major, one `bool` per pixel.
    pub fn unpack(&self) -> Vec<bool> {
        let nx = self.shape.nx;
        let mut out = Vec::with_capacity(self.shape.len());
        if self.per_row > 0 {
            for row in self.words.chunks_exact(self.per_row) {
                out.extend((0..nx).map(|x| (row[x / 64] >> (x % 64)) & 1 != 0));
            }
        }
        out
    }

    /// The complement inside the image (the padding stays 0).
    fn not(&self) -> Bits {
        let mut words: Vec<u64> = self.words.iter().map(|w| !w).collect();
        let last = self.last_word_mask();
        if self.per_row > 0 {
            for row in words.chunks_exact_mut(self.per_row) {
                row[self.per_row - 1] &= last;
            }
        }
        Bits { words, per_row: self.per_row, shape: self.shape }
    }

    /// The bits of a row's last word that are pixels.
    fn last_word_mask(&self) -> u64 {
        match self.shape.nx % 64 {
            0 => u64::MAX,
            used => (1u64 << used) - 1,
        }
    }

    /// Dilation with the disk of radius `r`; outside the array counts as `false`.
    ///
    /// Row `y` of the result is the OR, over `dy` in `-r..=r`, of row `y + dy` dilated along
    /// the row by the disk's half-width at `dy`. The half-widths grow as `|dy|` falls, so one
    /// buffer dilated a pixel at a time, from `dy = r` down to 0, serves every `dy`.
    pub fn dilate(&self, r: u32) -> Bits {
        let Shape { ny, nx } = self.shape;
        // A disk wider than the array reaches no further than the array.
        let r = (r as usize).min(ny + nx);
        if r == 0 || self.words.is_empty() {
            return self.clone();
        }
        let half = disk_half_widths(r as u32);
        let last = self.last_word_mask();
        let per_row = self.per_row;
        let mut grown = self.clone();
        let mut width = 0;
        let mut out = vec![0u64; self.words.len()];
        for dy in (0..=r).rev() {
            while width < half[dy] {
                for row in grown.words.chunks_exact_mut(per_row) {
                    grow_row(row, last);
                }
                width += 1;
            }
            for y in 0..ny {
                let out_row = &mut out[y * per_row..(y + 1) * per_row];
                let sources = [y.checked_sub(dy), (dy > 0 && y + dy < ny).then_some(y + dy)];
                for yy in sources.into_iter().flatten() {
                    let src = &grown.words[yy * per_row..(yy + 1) * per_row];
                    for (o, s) in out_row.iter_mut().zip(src) {
                        *o |= s;
                    }
                }
            }
        }
        Bits { words: out, per_row, shape: self.shape }
    }

    /// Erosion with the disk of radius `r`; outside the array counts as `true` (the dual of
    /// [`Bits::dilate`]: erosion does not eat into a region from outside the array).
    pub fn erode(&self, r: u32) -> Bits {
        self.not().dilate(r).not()
    }

    /// Closing (dilation, then erosion): fills gaps narrower than the disk.
    pub fn close(&self, r: u32) -> Bits {
        self.dilate(r).erode(r)
    }

    /// Opening (erosion, then dilation): removes specks smaller than the disk.
    pub fn open(&self, r: u32) -> Bits {
        self.erode(r).dilate(r)
    }
}

/// Dilates one packed row by one pixel east and west; `last` keeps the padding of the row's last
/// word at 0.
fn grow_row(row: &mut [u64], last: u64) {
    let mut west = 0u64;
    for i in 0..row.len() {
        let cur = row[i];
        let east = row.get(i + 1).copied().unwrap_or(0);
        row[i] = cur | (cur << 1) | (west >> 63) | (cur >> 1) | (east << 63);
        west = cur;
    }
    if let Some(w) = row.last_mut() {
        *w &= last;
    }
}

/// `floor(sqrt(r² - dy²))` for `dy` in `0..=r`: the half-width of the disk's row at `dy`.
pub(super) fn disk_half_widths(r: u32) -> Vec<usize> {
    let r = u64::from(r);
    (0..=r)
        .map(|dy| {
            let rem = r * r - dy * dy;
            // Integer square root: start from the float estimate and correct it, so rounding never
            // moves a pixel in or out of the disk.
            let mut w = (rem as f64).sqrt() as u64;
            while w * w > rem {
                w -= 1;
            }
            while (w + 1) * (w + 1) <= rem {
                w += 1;
            }
            w as usize
        })
        .collect()
}

/// Binary dilation of `mask` (row-major, `shape`) with the disk of radius `r` ([`Bits::dilate`]).
pub fn dilate(mask: &[bool], shape: Shape, r: u32) -> Vec<bool> {
    Bits::pack(mask, shape).dilate(r).unpack()
}

/// Binary erosion with the disk of radius `r` ([`Bits::erode`]).
pub fn erode(mask: &[bool], shape: Shape, r: u32) -> Vec<bool> {
    Bits::pack(mask, shape).erode(r).unpack()
}

/// Closing with the disk of radius `r` ([`Bits::close`]).
pub fn close(mask: &[bool], shape: Shape, r: u32) -> Vec<bool> {
    Bits::pack(mask, shape).close(r).unpack()
}

/// Opening with the disk of radius `r` ([`Bits::open`]).
pub fn open(mask: &[bool], shape: Shape, r: u32) -> Vec<bool> {
    Bits::pack(mask, shape).open(r).unpack()
}
