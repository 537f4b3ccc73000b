"""Rasterize the quicklook font: DejaVu Sans Mono (Bitstream Vera licence, free to embed) at one
pixel size into `crates/eocube/assets/font-mono.bin`, read by `serve::quicklook`.

Format: b"EOFONT1\n", then u8 cell width, u8 cell height, u8 baseline, u8 glyph count, then per
glyph a u32 LE code point and width*height u8 coverage values (0 = empty, 255 = ink), row-major.
Run: .venv/bin/python scripts/make-font.py  (Debian's fonts-dejavu-core provides the TTF)
"""
import struct
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

TTF = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
SIZE = 13
CHARS = [chr(c) for c in range(0x20, 0x7F)] + ["°", "µ", "×"]

font = ImageFont.truetype(TTF, SIZE)
ascent, descent = font.getmetrics()
width = max(int(round(font.getlength(c))) for c in CHARS)
height = ascent + descent
out = bytearray(b"EOFONT1\n")
out += struct.pack("<BBBB", width, height, ascent, len(CHARS))
for c in CHARS:
    img = Image.new("L", (width, height), 0)
    ImageDraw.Draw(img).text((0, 0), c, font=font, fill=255)
    out += struct.pack("<I", ord(c)) + img.tobytes()
dst = Path(sys.argv[1] if len(sys.argv) > 1 else "crates/eocube/assets/font-mono.bin")
dst.write_bytes(bytes(out))
print(f"{dst}: {len(CHARS)} glyphs of {width}x{height} px, {len(out)} bytes")
