//! An RGBA canvas for the quicklook (`eocube preview`): images composited over it, rectangles,
//! and text in one embedded monospace font (DejaVu Sans Mono rasterized at 13 px by
//! `scripts/make-font.py`; its licence lets it be embedded), so a figure needs no Python.
//!
//! Owns: pixels and glyphs. Must not touch: what is drawn where (that is `quicklook`).

use std::collections::HashMap;
use std::sync::OnceLock;

/// An opaque colour.
pub type Rgb = [u8; 3];

pub const BLACK: Rgb = [0, 0, 0];
pub const WHITE: Rgb = [255, 255, 255];

/// One rasterized glyph cell: `width * height` coverage values.
struct Font {
    width: usize,
    height: usize,
    glyphs: HashMap<char, Vec<u8>>,
}

static FONT_BYTES: &[u8] = include_bytes!("../../assets/font-mono.bin");

/// The embedded font, parsed once. Its bytes are part of the binary and checked by a unit test,
/// so a parse failure can only be a build made from a corrupt checkout: it then draws no text.
fn font() -> &'static Font {
    static FONT: OnceLock<Font> = OnceLock::new();
    FONT.get_or_init(|| parse_font(FONT_BYTES).unwrap_or(Font { width: 8, height: 17, glyphs: HashMap::new() }))
}

fn parse_font(b: &[u8]) -> Option<Font> {
    let rest = b.strip_prefix(b"EOFONT1\n")?;
    let (&[w, h, _baseline, n], mut rest) = rest.split_first_chunk::<4>()?;
    let (width, height) = (w as usize, h as usize);
    let mut glyphs = HashMap::new();
    for _ in 0..n {
        let (code, r) = rest.split_first_chunk::<4>()?;
        let c = char::from_u32(u32::from_le_bytes(*code))?;
        let cells = r.get(..width * height)?;
        glyphs.insert(c, cells.to_vec());
        rest = &r[width * height..];
    }
    Some(Font { width, height, glyphs })
}

/// Height of a line of text, in pixels.
pub fn line_height() -> usize {
    font().height
}

/// Width of `s` in pixels.
pub fn text_width(s: &str) -> usize {
    s.chars().count() * font().width
}

/// An RGBA image.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<u8>,
}

impl Canvas {
    /// A canvas filled with `background`, opaque.
    pub fn new(width: usize, height: usize, background: Rgb) -> Canvas {
        let mut rgba = Vec::with_capacity(width * height * 4);
        for _ in 0..width * height {
            rgba.extend_from_slice(&[background[0], background[1], background[2], 255]);
        }
        Canvas { width, height, rgba }
    }

    /// Blends `color` at `alpha` (0..=255) into pixel (x, y); outside the canvas nothing happens.
    fn blend(&mut self, x: i64, y: i64, color: Rgb, alpha: u8) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 || alpha == 0 {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 4;
        let a = alpha as u32;
        for (d, &s) in self.rgba[i..i + 3].iter_mut().zip(&color) {
            *d = ((s as u32 * a + *d as u32 * (255 - a) + 127) / 255) as u8;
        }
    }

    /// Fills the rectangle at (x, y) of `w` x `h` pixels.
    pub fn fill(&mut self, x: i64, y: i64, w: usize, h: usize, color: Rgb) {
        for yy in y..y + h as i64 {
            for xx in x..x + w as i64 {
                self.blend(xx, yy, color, 255);
            }
        }
    }

    /// The outline of the rectangle at (x, y) of `w` x `h` pixels, one pixel wide.
    pub fn frame(&mut self, x: i64, y: i64, w: usize, h: usize, color: Rgb) {
        self.fill(x, y, w, 1, color);
        self.fill(x, y + h as i64 - 1, w, 1, color);
        self.fill(x, y, 1, h, color);
        self.fill(x + w as i64 - 1, y, 1, h, color);
    }

    /// Composites `rgba` (`w` x `h`, straight alpha) with its top-left corner at (x, y).
    pub fn draw_image(&mut self, x: i64, y: i64, w: usize, h: usize, rgba: &[u8]) {
        for (i, px) in rgba.chunks_exact(4).take(w * h).enumerate() {
            self.blend(x + (i % w) as i64, y + (i / w) as i64, [px[0], px[1], px[2]], px[3]);
        }
    }

    /// Draws `s` with its top-left corner at (x, y). Characters the font lacks draw as `?`.
    pub fn text(&mut self, x: i64, y: i64, s: &str, color: Rgb) {
        let f = font();
        for (k, c) in s.chars().enumerate() {
            let Some(cells) = f.glyphs.get(&c).or_else(|| f.glyphs.get(&'?')) else { continue };
            let x0 = x + (k * f.width) as i64;
            for (i, &a) in cells.iter().enumerate() {
                self.blend(x0 + (i % f.width) as i64, y + (i / f.width) as i64, color, a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_parses_and_covers_the_labels() {
        let f = parse_font(FONT_BYTES).unwrap();
        assert_eq!((f.width, f.height), (8, 17));
        for c in "0123456789.-°NSEW kmxy()|,:ABCZabcz".chars() {
            let g = &f.glyphs[&c];
            assert_eq!(g.len(), 8 * 17);
            assert_eq!(g.iter().any(|&a| a > 0), c != ' ', "{c:?} has ink");
        }
        assert!(parse_font(&FONT_BYTES[..100]).is_none(), "a cut file is refused");
        assert!(parse_font(b"EOFONT2\n").is_none());
    }

    #[test]
    fn text_and_images_blend_onto_the_canvas() {
        let mut c = Canvas::new(40, 20, WHITE);
        c.text(0, 0, "N", BLACK);
        assert!(c.rgba.chunks_exact(4).any(|p| p[0] < 100), "the glyph left ink");
        assert_eq!(text_width("12°"), 24);
        let mut c = Canvas::new(4, 4, WHITE);
        // A transparent pixel leaves the background; an opaque one replaces it.
        c.draw_image(1, 1, 2, 1, &[10, 20, 30, 0, 10, 20, 30, 255]);
        assert_eq!(&c.rgba[(4 + 1) * 4..(4 + 1) * 4 + 4], &[255, 255, 255, 255]);
        assert_eq!(&c.rgba[(4 + 2) * 4..(4 + 2) * 4 + 4], &[10, 20, 30, 255]);
        // Drawing past the edges is clipped, not a panic.
        c.fill(-5, -5, 100, 2, BLACK);
        c.text(3, 3, "far outside", BLACK);
        c.frame(0, 0, 4, 4, BLACK);
    }
}
