//! Arbitrary bytes as a whole TIFF file: the header parser must return `Ok` or a typed error,
//! never panic, loop or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = eocube::cog::parse_header_bytes(data);
});
