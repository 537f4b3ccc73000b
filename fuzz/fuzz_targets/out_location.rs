//! Arbitrary bytes as an `--out` argument; a parsed location must print as a string that parses
//! back to it (`eocube::fuzz::out_location`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eocube::fuzz::out_location(data));
