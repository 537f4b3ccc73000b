//! Unit tests of the TIFF parser on hand-made headers, and the TIFF writer other COG tests use.

use super::*;

/// IFD entries of [`TiffBuilder`]: `(tag, type, values)`.
pub(crate) type Entries = Vec<(u16, u16, Vec<u64>)>;

/// A minimal TIFF writer for tests: classic or BigTIFF, either byte order; entries
/// `(tag, type, values)` with values as u64 written at the type's size (RATIONAL: `v/1`).
pub(crate) struct TiffBuilder {
    pub big_endian: bool,
    pub bigtiff: bool,
    /// Bytes between the file header and the first IFD (GDAL's COG "ghost" header goes there).
    pub ghost: Vec<u8>,
    pub ifds: Vec<Entries>,
    pub tail: Vec<u8>,
}

impl TiffBuilder {
    pub(crate) fn new(big_endian: bool) -> Self {
        TiffBuilder { big_endian, bigtiff: false, ghost: vec![], ifds: vec![], tail: vec![] }
    }

    fn put(&self, out: &mut Vec<u8>, v: u64, size: usize) {
        let b = v.to_be_bytes();
        let be = &b[8 - size..];
        if self.big_endian {
            out.extend_from_slice(be);
        } else {
            out.extend(be.iter().rev());
        }
    }

    /// Serialises: header, ghost bytes, then each IFD followed by its out-of-line values, then
    /// `tail`. Returns the bytes and the offset where `tail` starts.
    pub(crate) fn build(&self) -> (Vec<u8>, usize) {
        let (word, count, entry) = if self.bigtiff { (8, 8, 20) } else { (4, 2, 12) };
        let mut out = if self.big_endian { b"MM".to_vec() } else { b"II".to_vec() };
        if self.bigtiff {
            self.put(&mut out, 43, 2);
            self.put(&mut out, 8, 2);
            self.put(&mut out, 0, 2);
        } else {
            self.put(&mut out, 42, 2);
        }
        let mut ifd_ptr_pos = out.len();
        self.put(&mut out, 0, word);
        out.extend_from_slice(&self.ghost);
        for ifd in &self.ifds {
            let at = out.len();
            let mut tmp = vec![];
            self.put(&mut tmp, at as u64, word);
            out[ifd_ptr_pos..ifd_ptr_pos + word].copy_from_slice(&tmp);
            self.put(&mut out, ifd.len() as u64, count);
            let values_at = at + count + entry * ifd.len() + word;
            let mut values = vec![];
            for (tag, typ, vals) in ifd {
                let size = type_size(*typ).unwrap_or(2) as usize;
                self.put(&mut out, *tag as u64, 2);
                self.put(&mut out, *typ as u64, 2);
                self.put(&mut out, vals.len() as u64, word);
                let mut bytes = vec![];
                for &v in vals {
                    if *typ == 5 {
                        self.put(&mut bytes, v, 4);
                        self.put(&mut bytes, 1, 4);
                    } else {
                        self.put(&mut bytes, v, size);
                    }
                }
                if bytes.len() <= word {
                    bytes.resize(word, 0);
                    out.extend_from_slice(&bytes);
                } else {
                    self.put(&mut out, (values_at + values.len()) as u64, word);
                    values.extend_from_slice(&bytes);
                    if values.len() % 2 == 1 {
                        values.push(0);
                    }
                }
            }
            ifd_ptr_pos = out.len();
            self.put(&mut out, 0, word);
            out.extend_from_slice(&values);
        }
        let tail_at = out.len();
        out.extend_from_slice(&self.tail);
        (out, tail_at)
    }
}

/// A w x h uint16 image in `tile` px tiles, EPSG:32633, 10 m pixels at (500000, 4000000).
pub(crate) fn minimal_ifd(w: u64, h: u64, tile: u64, offsets: Vec<u64>, counts: Vec<u64>) -> Entries {
    vec![
        (256, 3, vec![w]),
        (257, 3, vec![h]),
        (258, 3, vec![16]),
        (259, 3, vec![1]),
        (262, 3, vec![1]),
        (277, 3, vec![1]),
        (322, 3, vec![tile]),
        (323, 3, vec![tile]),
        (324, 4, offsets),
        (325, 4, counts),
        (339, 3, vec![1]),
        (33550, 12, vec![10f64.to_bits(), 10f64.to_bits(), 0]),
        (33922, 12, vec![0, 0, 0, 500000f64.to_bits(), 4000000f64.to_bits(), 0]),
        (34735, 3, vec![1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32633]),
    ]
}

/// ASCII values of a string, NUL-terminated, for [`Entries`].
pub(crate) fn ascii(s: &str) -> Vec<u64> {
    s.bytes().chain([0]).map(u64::from).collect()
}

fn one(edit: impl Fn(&mut Entries), big_endian: bool, bigtiff: bool) -> Vec<u8> {
    let mut ifd = minimal_ifd(20, 20, 16, vec![0; 4], vec![0; 4]);
    edit(&mut ifd);
    ifd.sort_by_key(|e| e.0);
    let mut b = TiffBuilder::new(big_endian);
    b.bigtiff = bigtiff;
    b.ifds.push(ifd);
    b.build().0
}

fn parse_all(buf: &[u8]) -> Result<Header, TiffError> {
    match parse(buf, buf.len() as u64)? {
        Parse::Done(h) => Ok(h),
        Parse::NeedMore { end } => panic!("need more up to {end} with the whole file"),
    }
}

/// Parses `buf` the way `Fetcher::open` does: from a prefix, growing it as asked.
fn parse_growing(buf: &[u8], first: usize) -> (Header, Vec<u64>) {
    let mut have = first.min(buf.len());
    let mut asked = vec![];
    loop {
        match parse(&buf[..have], buf.len() as u64).unwrap() {
            Parse::Done(h) => return (h, asked),
            Parse::NeedMore { end } => {
                assert!(end as usize > have && end as usize <= buf.len(), "asked for {end} with {have}");
                asked.push(end);
                have = end as usize;
            }
        }
    }
}

#[test]
fn parses_classic_and_bigtiff_in_both_byte_orders() {
    for bigtiff in [false, true] {
        for be in [false, true] {
            let buf = one(
                |i| {
                    i.push((42113, 2, ascii("-9999")));
                    // ModelType 1, RasterType 2 (PixelIsPoint), ProjectedCSType 32633
                    i.retain(|e| e.0 != 34735);
                    i.push((34735, 3, vec![1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 2, 3072, 0, 1, 32633]));
                },
                be,
                bigtiff,
            );
            let h = parse_all(&buf).unwrap();
            assert_eq!((h.big_endian, h.bigtiff, h.ifds.len()), (be, bigtiff, 1));
            let ifd = &h.ifds[0];
            assert_eq!((ifd.image_width, ifd.image_height, ifd.bits_per_sample, ifd.sample_format), (20, 20, 16, 1));
            assert_eq!((ifd.tile_width, ifd.tile_height), (Some(16), Some(16)));
            assert_eq!(ifd.tile_offsets.as_deref(), Some(&[0u64; 4][..]));
            assert_eq!(ifd.strip_offsets, None);
            assert_eq!(ifd.gdal_nodata.as_deref(), Some("-9999"));
            assert_eq!(ifd.model_pixel_scale.as_deref(), Some(&[10.0, 10.0, 0.0][..]));
            assert_eq!(ifd.model_tiepoint.as_deref(), Some(&[0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0][..]));
            let keys = GeoKeys { projected_type: Some(32633), geographic_type: None, raster_type: Some(2) };
            assert_eq!(ifd.geo_keys, Some(keys));
            // From a 10-byte prefix, as the fetcher grows it: the same header.
            let (grown, asked) = parse_growing(&buf, 10);
            assert_eq!(grown, h, "bigtiff {bigtiff} be {be}");
            assert!(!asked.is_empty());
        }
    }
}

#[test]
fn bigtiff_offsets_above_4_gib_are_read_as_long8() {
    let big = 5u64 << 32;
    let buf = one(
        |i| i.iter_mut().filter(|e| e.0 == 324).for_each(|e| *e = (324, 16, vec![big, big + 7, 0, 1])),
        false,
        true,
    );
    let h = parse_all(&buf).unwrap();
    assert_eq!(h.ifds[0].tile_offsets.as_deref(), Some(&[big, big + 7, 0, 1][..]));
    // In a classic TIFF a LONG8 value is as much a field type as any (GDAL never writes one).
    let classic = one(|i| i.iter_mut().filter(|e| e.0 == 324).for_each(|e| *e = (324, 16, vec![big; 4])), true, false);
    assert_eq!(parse_all(&classic).unwrap().ifds[0].tile_offsets.as_deref(), Some(&[big; 4][..]));
}

#[test]
fn gdal_ghost_header_between_the_file_header_and_the_first_ifd() {
    // What GDAL's COG driver writes after the 8-byte header (LAYOUT=COG).
    let ghost = b"GDAL_STRUCTURAL_METADATA_SIZE=000140 bytes\nLAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\n\
BLOCK_LEADER=SIZE_AS_UINT4\nBLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n  ";
    for bigtiff in [false, true] {
        let mut b = TiffBuilder::new(false);
        b.bigtiff = bigtiff;
        b.ghost = ghost.to_vec();
        b.ifds.push(minimal_ifd(20, 20, 16, vec![0; 4], vec![0; 4]));
        let (buf, _) = b.build();
        let h = parse_all(&buf).unwrap();
        assert_eq!(h.ifds[0].offset, if bigtiff { 16 } else { 8 } + ghost.len() as u64);
        assert_eq!(h.ifds[0].image_width, 20);
    }
}

#[test]
fn masks_and_overviews_are_classified_by_subfile_type_and_photometric() {
    let mut b = TiffBuilder::new(false);
    b.ifds.push(minimal_ifd(40, 20, 16, vec![0; 6], vec![0; 6]));
    for (subfile, photometric) in [(4, 4), (1, 1), (5, 4), (0, 4)] {
        let mut ifd = minimal_ifd(20, 10, 16, vec![0; 2], vec![0; 2]);
        ifd.retain(|e| e.0 < 33550);
        ifd.iter_mut().find(|e| e.0 == 262).unwrap().2 = vec![photometric];
        ifd.push((254, 4, vec![subfile]));
        ifd.sort_by_key(|e| e.0);
        b.ifds.push(ifd);
    }
    let h = parse_all(&b.build().0).unwrap();
    let kinds: Vec<_> = h.ifds.iter().map(|i| (i.is_reduced(), i.is_mask())).collect();
    assert_eq!(kinds, [(false, false), (false, true), (true, false), (true, true), (false, true)]);
    assert_eq!(h.ifds[1].new_subfile_type, 4);
    assert_eq!(h.ifds[1].geo_keys, None);
}

#[test]
fn asks_for_more_bytes_up_to_the_values_and_the_next_ifd() {
    let mut b = TiffBuilder::new(false);
    b.ifds.push(minimal_ifd(20, 20, 16, vec![0; 4], vec![0; 4]));
    b.ifds.push(minimal_ifd(10, 10, 16, vec![0], vec![0]));
    let (buf, _) = b.build();
    assert!(matches!(parse(&buf[..4], buf.len() as u64), Ok(Parse::NeedMore { end: 16 })));
    assert!(matches!(parse(&buf[..8], buf.len() as u64), Ok(Parse::NeedMore { end: 10 })));
    // count at 8, 14 entries of 12 bytes, next pointer: the IFD ends at 8 + 2 + 168 + 4.
    assert!(matches!(parse(&buf[..10], buf.len() as u64), Ok(Parse::NeedMore { end: 182 })));
    let (h, asked) = parse_growing(&buf, 182);
    assert_eq!(h.ifds.len(), 2);
    assert_eq!(asked.len(), 4, "values of IFD 0, count of IFD 1, IFD 1, values of IFD 1: {asked:?}");
}

#[test]
fn not_a_tiff_truncated_cycles_and_chains() {
    assert!(matches!(parse(b"GIF89a\0\0\0\0\0\0", 12), Err(TiffError::ByteOrder { .. })));
    assert!(matches!(parse(b"II*\0", 4), Err(TiffError::PastEnd { part: Part::Header, end: 8, file_size: 4 })));
    // Never more than the file holds: a 12-byte file is asked for 12 bytes, not 16.
    assert!(matches!(parse(b"II*\0", 12), Ok(Parse::NeedMore { end: 12 })));
    assert!(matches!(parse(b"II\x2b\0\x08\0\0\0", 100), Ok(Parse::NeedMore { end: 16 })));
    assert!(matches!(parse(b"II\x2b\0\x08\0\0\0", 12), Err(TiffError::PastEnd { part: Part::Header, .. })));
    assert!(matches!(parse(b"II\x2b\0\x04\0\0\0\0\0\0\0\0\0\0\0", 16), Err(TiffError::BigTiffHeader { size: 4, .. })));
    assert!(matches!(parse(b"II\x2c\0\x08\0\0\0", 8), Err(TiffError::Version(44))));
    assert!(matches!(parse(b"MM\0\x2a\0\0\0\0", 8), Err(TiffError::NoImage)));
    assert!(matches!(parse(b"MM\0\x2a\0\0\0\x04", 8), Err(TiffError::IfdInHeader(4))));
    // An IFD offset near 2^64: the sums overflow, the answer is still an error.
    assert!(parse(b"II\x2b\0\x08\0\0\0\xf8\xff\xff\xff\xff\xff\xff\xff", 1 << 40).is_err());

    let mut b = TiffBuilder::new(false);
    b.ifds.push(minimal_ifd(20, 20, 16, vec![0; 4], vec![0; 4]));
    let (buf, _) = b.build();
    // Cut in the middle of the IFD: the file is truncated.
    assert!(matches!(parse(&buf[..30], 30), Err(TiffError::PastEnd { part: Part::Ifd { offset: 8 }, .. })));
    // Cut before the last out-of-line value.
    let cut = buf.len() - 10;
    assert!(matches!(parse(&buf[..cut], cut as u64), Err(TiffError::PastEnd { part: Part::Value { .. }, .. })));

    // Next-IFD pointers: 8 -> 8, and 8 -> second -> 8.
    let mut looped = buf.clone();
    let p = 8 + 2 + 12 * 14;
    looped[p..p + 4].copy_from_slice(&8u32.to_le_bytes());
    assert!(matches!(parse_all(&looped), Err(TiffError::Cycle(8))));
    let mut b2 = TiffBuilder::new(false);
    b2.ifds = vec![minimal_ifd(20, 20, 16, vec![0; 4], vec![0; 4]), minimal_ifd(10, 10, 16, vec![0], vec![0])];
    let (mut two, _) = b2.build();
    let second = u32::from_le_bytes(two[p..p + 4].try_into().unwrap()) as usize;
    let q = second + 2 + 12 * 14;
    two[q..q + 4].copy_from_slice(&8u32.to_le_bytes());
    assert!(matches!(parse_all(&two), Err(TiffError::Cycle(8))));

    let mut many = TiffBuilder::new(true);
    many.ifds = vec![vec![(256, 3, vec![1]), (257, 3, vec![1])]; MAX_IFDS + 1];
    assert!(matches!(parse_all(&many.build().0), Err(TiffError::TooManyIfds)));
}

#[test]
fn every_defect_is_a_typed_error_naming_ifd_and_tag() {
    use GeoKeyDefect as G;
    type Edit = Box<dyn Fn(&mut Entries)>;
    let set = |tag: u16, typ: u16, v: Vec<u64>| -> Edit {
        Box::new(move |i: &mut Entries| {
            i.retain(|e| e.0 != tag);
            i.push((tag, typ, v.clone()));
        })
    };
    type Case = (&'static str, Edit, fn(&TiffError) -> bool);
    let cases: Vec<Case> = vec![
        ("unknown type on a read tag", Box::new(|i| i[0].1 = 99), |e| {
            matches!(e, TiffError::FieldType { ifd: 8, tag: Tag(256), typ: 99 })
        }),
        ("missing width", Box::new(|i| i.retain(|e| e.0 != 256)), |e| {
            matches!(e, TiffError::Missing { tag: Tag(256), .. })
        }),
        ("two widths", set(256, 3, vec![20, 20]), |e| matches!(e, TiffError::Count { tag: Tag(256), count: 2, .. })),
        ("width as DOUBLE", set(256, 12, vec![20f64.to_bits()]), |e| {
            matches!(e, TiffError::Type { tag: Tag(256), typ: 12, .. })
        }),
        ("compression above u16", set(259, 4, vec![70000]), |e| {
            matches!(e, TiffError::Range { tag: Tag(259), value: 70000, .. })
        }),
        ("empty BitsPerSample", set(258, 3, vec![]), |e| matches!(e, TiffError::Count { tag: Tag(258), count: 0, .. })),
        ("nodata as SHORT", set(42113, 3, vec![0]), |e| matches!(e, TiffError::Type { tag: Tag(42113), .. })),
        ("nodata not ASCII", set(42113, 2, vec![0xff, 0xfe, 0x41, 0]), |e| {
            matches!(e, TiffError::Text { tag: Tag(42113), .. })
        }),
        ("scale as FLOAT", set(33550, 11, vec![0, 0, 0]), |e| matches!(e, TiffError::Type { tag: Tag(33550), .. })),
        ("geokeys short", set(34735, 3, vec![1, 1, 0]), |e| {
            matches!(e, TiffError::GeoKeys { defect: G::Short(3), .. })
        }),
        ("geokeys version", set(34735, 3, vec![2, 1, 0, 0]), |e| {
            matches!(e, TiffError::GeoKeys { defect: G::Version { version: 2, revision: 1 }, .. })
        }),
        ("geokeys count", set(34735, 3, vec![1, 1, 0, 9, 1024, 0, 1, 1]), |e| {
            matches!(e, TiffError::GeoKeys { defect: G::KeyCount { announced: 9, room: 1 }, .. })
        }),
        ("geokeys as LONG above u16", set(34735, 4, vec![1, 1, 0, 1, 3072, 0, 1, 70000]), |e| {
            matches!(e, TiffError::Range { tag: Tag(34735), .. })
        }),
        ("geo ascii missing", set(34735, 3, vec![1, 1, 0, 1, 1026, 34737, 5, 0]), |e| {
            matches!(e, TiffError::GeoKeys { defect: G::OutOfRange { key: 1026, len: 0, .. }, .. })
        }),
        ("geo double outside", set(34735, 3, vec![1, 1, 0, 1, 2057, 34736, 1, 3]), |e| {
            matches!(e, TiffError::GeoKeys { defect: G::OutOfRange { key: 2057, start: 3, end: 4, .. }, .. })
        }),
        (
            "projected type in GeoDoubleParams",
            Box::new(|i| {
                i.retain(|e| e.0 != 34735);
                i.push((34735, 3, vec![1, 1, 0, 1, 3072, 34736, 1, 0]));
                i.push((34736, 12, vec![32633f64.to_bits()]));
            }),
            |e| matches!(e, TiffError::GeoKeys { defect: G::NotInline { key: 3072, .. }, .. }),
        ),
        ("absurd count", set(324, 4, vec![0; 4]), |_| true), // patched below
    ];
    for (name, edit, want) in cases {
        let mut buf = one(&edit, false, false);
        if name == "absurd count" {
            // TileOffsets' count field: 2^30 LONGs are 4 GiB.
            let n = u16::from_le_bytes([buf[8], buf[9]]) as usize;
            let e = (0..n).map(|k| 10 + 12 * k).find(|&e| buf[e..e + 2] == 324u16.to_le_bytes()).unwrap();
            buf[e + 4..e + 8].copy_from_slice(&(1u32 << 30).to_le_bytes());
            let r = parse_all(&buf);
            assert!(matches!(r, Err(TiffError::AbsurdCount { tag: Tag(324), count: 1073741824, .. })), "{r:?}");
            continue;
        }
        let r = parse_all(&buf);
        match &r {
            Err(e) if want(e) => {
                let msg = e.to_string();
                assert!(msg.contains("IFD at offset 8"), "{name}: {msg}");
                assert_eq!(e.kind(), Kind::Malformed, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn what_is_tolerated() {
    // An unknown field type on a tag eocube does not read: skipped (libtiff does the same).
    let h = parse_all(&one(|i| i.push((50000, 77, vec![1, 2, 3])), false, false)).unwrap();
    assert_eq!(h.ifds[0].image_width, 20);
    // An ASCII value without its terminating NUL, and a one-byte empty string.
    let h = parse_all(&one(|i| i.push((42113, 2, vec![b'1' as u64, b'5' as u64])), true, false)).unwrap();
    assert_eq!(h.ifds[0].gdal_nodata.as_deref(), Some("15"));
    let h = parse_all(&one(|i| i.push((42113, 2, vec![0])), false, false)).unwrap();
    assert_eq!(h.ifds[0].gdal_nodata.as_deref(), Some(""));
    // A repeated tag: the last one counts.
    let h = parse_all(&one(|i| i.push((256, 3, vec![21])), false, false)).unwrap();
    assert_eq!(h.ifds[0].image_width, 21);
    // Absent optional tags take the TIFF defaults.
    let h = parse_all(&one(|i| i.retain(|e| !matches!(e.0, 258 | 259 | 262 | 277 | 339)), false, true)).unwrap();
    let i = &h.ifds[0];
    assert_eq!((i.bits_per_sample, i.compression, i.samples_per_pixel, i.sample_format), (1, 1, 1, 1));
    assert_eq!((i.photometric, i.predictor, i.planar_configuration, i.new_subfile_type), (None, 1, 1, 0));
    // SHORT, LONG and BYTE all serve as unsigned integers.
    let h = parse_all(&one(|i| i.iter_mut().filter(|e| e.0 == 256).for_each(|e| e.1 = 4), false, false)).unwrap();
    assert_eq!(h.ifds[0].image_width, 20);
}

#[test]
fn a_tag_value_past_the_end_of_the_file_is_truncation_even_when_not_read() {
    let mut buf = one(|i| i.push((50001, 1, vec![7; 40])), false, false);
    let n = u16::from_le_bytes([buf[8], buf[9]]) as usize;
    let e = (0..n).map(|k| 10 + 12 * k).find(|&e| buf[e..e + 2] == 50001u16.to_le_bytes()).unwrap();
    let past = buf.len() as u32;
    buf[e + 8..e + 12].copy_from_slice(&past.to_le_bytes());
    let r = parse_all(&buf);
    assert!(matches!(&r, Err(TiffError::PastEnd { part: Part::Value { tag: Tag(50001), .. }, .. })), "{r:?}");
    assert_eq!(r.unwrap_err().kind(), Kind::Truncated);
}
