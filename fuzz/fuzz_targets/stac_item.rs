//! Arbitrary bytes as a STAC item, item array or FeatureCollection: parsed into scenes and
//! searched as `--items` does (`eocube::fuzz::stac_item`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eocube::fuzz::stac_item(data));
