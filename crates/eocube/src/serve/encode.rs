//! Tile images: PNG (RGBA), WebP (lossless, RGBA) and JPEG (RGB).
//!
//! Owns: the image formats and their settings. JPEG has no alpha channel: fill, transparent in
//! PNG and WebP, is black there. Must not touch: what the pixels are (that is `render`).

use std::str::FromStr;

/// JPEG quality: 85 keeps reflectance texture without visible blocks at a third of PNG's size.
const JPEG_QUALITY: u8 = 85;

/// An image format a tile can be asked for (the extension of the tile URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Png,
    Webp,
    Jpeg,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Jpeg => "image/jpeg",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Jpeg => "jpg",
        }
    }
}

impl FromStr for Format {
    type Err = ();

    fn from_str(s: &str) -> Result<Format, ()> {
        match s.to_ascii_lowercase().as_str() {
            "png" => Ok(Format::Png),
            "webp" => Ok(Format::Webp),
            "jpg" | "jpeg" => Ok(Format::Jpeg),
            _ => Err(()),
        }
    }
}

/// Why an image could not be encoded (an eocube bug: the pixels are made here).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode a {width} x {height} {format:?} image: {reason}")]
pub struct EncodeError {
    pub format: Format,
    pub width: usize,
    pub height: usize,
    pub reason: String,
}

/// Encodes `rgba` (`width * height * 4` bytes, row-major) as `format`.
pub fn encode(rgba: &[u8], width: usize, height: usize, format: Format) -> Result<Vec<u8>, EncodeError> {
    let err = |reason: String| EncodeError { format, width, height, reason };
    if rgba.len() != width * height * 4 || width == 0 || height == 0 {
        return Err(err(format!("{} bytes of pixels, not {}", rgba.len(), width * height * 4)));
    }
    let (w32, h32) =
        (u32::try_from(width).map_err(|e| err(e.to_string()))?, u32::try_from(height).map_err(|e| err(e.to_string()))?);
    let mut out = Vec::with_capacity(width * height);
    match format {
        Format::Png => {
            let mut enc = png::Encoder::new(&mut out, w32, h32);
            enc.set_color(png::ColorType::Rgba);
            enc.set_depth(png::BitDepth::Eight);
            // fdeflate's mode: several times faster than the default for a few percent of size.
            enc.set_compression(png::Compression::Fast);
            let mut writer = enc.write_header().map_err(|e| err(e.to_string()))?;
            writer.write_image_data(rgba).map_err(|e| err(e.to_string()))?;
            writer.finish().map_err(|e| err(e.to_string()))?;
        }
        Format::Webp => {
            image_webp::WebPEncoder::new(&mut out)
                .encode(rgba, w32, h32, image_webp::ColorType::Rgba8)
                .map_err(|e| err(e.to_string()))?;
        }
        Format::Jpeg => {
            let (w16, h16) = (
                u16::try_from(width).map_err(|e| err(e.to_string()))?,
                u16::try_from(height).map_err(|e| err(e.to_string()))?,
            );
            // Transparent pixels are black: their colour bytes are 0 already (render leaves them so).
            let rgb: Vec<u8> =
                rgba.chunks_exact(4).flat_map(|p| if p[3] == 0 { [0, 0, 0] } else { [p[0], p[1], p[2]] }).collect();
            jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY)
                .encode(&rgb, w16, h16, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| err(e.to_string()))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<u8> {
        let mut px = Vec::new();
        for r in 0..16u8 {
            for c in 0..16u8 {
                px.extend_from_slice(&if (r + c) % 5 == 0 { [9, 9, 9, 0] } else { [r * 16, c * 16, 100, 255] });
            }
        }
        px
    }

    #[test]
    fn png_round_trips_with_alpha() {
        let px = image();
        let bytes = encode(&px, 16, 16, Format::Png).unwrap();
        let mut dec = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
        let mut buf = vec![0; dec.output_buffer_size().unwrap()];
        let info = dec.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height, info.color_type), (16, 16, png::ColorType::Rgba));
        assert_eq!(buf, px);
    }

    #[test]
    fn webp_is_lossless_with_alpha() {
        let px = image();
        let bytes = encode(&px, 16, 16, Format::Webp).unwrap();
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(&bytes[8..16], b"WEBPVP8L");
        let mut dec = image_webp::WebPDecoder::new(std::io::Cursor::new(bytes)).unwrap();
        assert!(dec.has_alpha());
        let mut buf = vec![0; dec.output_buffer_size().unwrap()];
        dec.read_image(&mut buf).unwrap();
        // lossless: every opaque pixel is exact, every transparent one has alpha 0
        for (a, b) in buf.chunks_exact(4).zip(px.chunks_exact(4)) {
            assert_eq!(a[3], b[3]);
            if b[3] == 255 {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn jpeg_has_no_alpha_and_fill_is_black() {
        let mut px = vec![0u8; 64 * 64 * 4];
        for p in px.chunks_exact_mut(4).take(32 * 64) {
            p.copy_from_slice(&[200, 200, 200, 255]);
        }
        let bytes = encode(&px, 64, 64, Format::Jpeg).unwrap();
        assert_eq!(&bytes[0..2], &[0xff, 0xd8]);
        assert!(bytes.len() < 64 * 64 * 3);
    }

    #[test]
    fn wrong_sizes_are_errors_not_panics() {
        assert!(encode(&[0; 10], 16, 16, Format::Webp).is_err());
        assert!(encode(&[], 0, 0, Format::Png).is_err());
        assert!(encode(&vec![0; 70_000 * 4], 70_000, 1, Format::Jpeg).is_err());
        assert_eq!("JPG".parse::<Format>(), Ok(Format::Jpeg));
        assert!("gif".parse::<Format>().is_err());
    }
}
