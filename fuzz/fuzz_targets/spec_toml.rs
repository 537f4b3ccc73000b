//! Arbitrary bytes as a `--config` TOML file, through the spec's validation; a valid spec must
//! read back from its stored form unchanged (`eocube::fuzz::spec_toml`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| eocube::fuzz::spec_toml(data));
