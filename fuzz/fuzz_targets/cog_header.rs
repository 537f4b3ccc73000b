//! Arbitrary bytes as a whole TIFF file: the header parser must return `Ok` or a typed error,
//! never panic, loop or allocate without bound, and parse a growing prefix as `Fetcher::open`
//! does to the same answer (`eocube::fuzz::cog_header`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eocube::fuzz::cog_header(data));
