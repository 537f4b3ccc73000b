//! Arbitrary bytes as a STAC API item search answer: page, `next` link, next request, scenes
//! (`eocube::fuzz::stac_page`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eocube::fuzz::stac_page(data));
