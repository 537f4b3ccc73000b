//! The fuzz targets on the stable toolchain, in seconds: every committed corpus file, then
//! fixed-seed mutations of them (the kinds libFuzzer starts with: bit flips, interesting
//! integers, inserted, deleted and repeated bytes, splices, dictionary tokens) through the same
//! entry functions. A panic names the target, the mutation and the input, so that it can be
//! saved as a regression file under `fuzz/corpus/<target>/`.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;

/// Mutations per target: with the corpus replay, about a second per target in a debug build.
const MUTATIONS: usize = 20_000;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// Tokens spliced into inputs: the target's dictionary for libFuzzer (`fuzz/dict/`).
fn dictionary(target: &str) -> Vec<Vec<u8>> {
    let file = match target {
        "cog_header" => "tiff.dict",
        "stac_item" | "stac_page" => "stac.dict",
        "spec_toml" => "toml.dict",
        _ => "location.dict",
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/dict").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().filter_map(dict_token).collect()
}

/// One libFuzzer dictionary line (`name="value"` or `"value"`, with `\\`, `\"` and `\xNN`).
fn dict_token(line: &str) -> Option<Vec<u8>> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    let quoted = line.get(line.find('"')? + 1..line.rfind('"')?)?;
    let mut out = Vec::new();
    let mut bytes = quoted.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next()? {
            b'x' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// xorshift64: the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u64; 10] = [0, 1, 2, 8, 16, 0x7f, 0x80, 0xff, 0x7fff_ffff, u64::MAX];

fn mutate(rng: &mut Rng, seeds: &[(String, Vec<u8>)], dict: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].1.clone();
    for _ in 0..1 + rng.below(6) {
        let len = b.len();
        let at = rng.below(len + 1);
        match rng.below(8) {
            0 if len > 0 => b[at.min(len - 1)] ^= 1 << rng.below(8),
            1 => {
                // An interesting integer, 1 to 8 bytes, either byte order.
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let n = [1, 2, 4, 8][rng.below(4)];
                let bytes = if rng.below(2) == 0 { v.to_le_bytes() } else { v.to_be_bytes() };
                for (k, &x) in bytes.iter().take(n).enumerate() {
                    if let Some(slot) = b.get_mut(at + k) {
                        *slot = x;
                    }
                }
            }
            2 => b.insert(at, rng.next() as u8),
            3 => {
                let end = (at + 1 + rng.below(16)).min(len);
                b.drain(at.min(end)..end);
            }
            4 => b.truncate(at),
            5 if len > 0 => {
                // Repeat a short range (grows counts, nests JSON).
                let start = at.min(len - 1);
                let piece = b[start..(start + 1 + rng.below(32)).min(len)].to_vec();
                b.splice(start..start, piece);
            }
            6 => {
                // Splice: our head, another seed's tail.
                let other = &seeds[rng.below(seeds.len())].1;
                let from = rng.below(other.len() + 1);
                b.truncate(at);
                b.extend_from_slice(&other[from..]);
            }
            _ if !dict.is_empty() => {
                let token = &dict[rng.below(dict.len())];
                if rng.below(2) == 0 {
                    b.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    b.splice(at..end, token.iter().copied());
                }
            }
            _ => {}
        }
    }
    b
}

fn run(target: &str, entry: fn(&[u8]), seed: u64) {
    let seeds = corpus(target);
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} is empty");
    let dict = dictionary(target);
    let attempt = |what: &str, input: &[u8]| {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| entry(input))) {
            eprintln!("{target}: {what} panicked; input ({} bytes): {:?}", input.len(), String::from_utf8_lossy(input));
            eprintln!("hex: {}", input.iter().map(|b| format!("{b:02x}")).collect::<String>());
            resume_unwind(p);
        }
    };
    for (name, bytes) in &seeds {
        attempt(name, bytes);
    }
    let mut rng = Rng(seed);
    for i in 0..MUTATIONS {
        let input = mutate(&mut rng, &seeds, &dict);
        attempt(&format!("mutation {i}"), &input);
    }
}

#[test]
fn cog_header_corpus_and_mutations() {
    run("cog_header", super::cog_header, 0x9e37_79b9_7f4a_7c15);
}

#[test]
fn stac_item_corpus_and_mutations() {
    run("stac_item", super::stac_item, 0x2545_f491_4f6c_dd1d);
}

#[test]
fn stac_page_corpus_and_mutations() {
    run("stac_page", super::stac_page, 0x5851_f42d_4c95_7f2d);
}

#[test]
fn spec_toml_corpus_and_mutations() {
    run("spec_toml", super::spec_toml, 0x1405_7b7e_f767_814f);
}

#[test]
fn out_location_corpus_and_mutations() {
    run("out_location", super::out_location, 0xda94_2042_e4dd_58b5);
}

#[test]
fn dictionary_lines_decode_escapes() {
    assert_eq!(dict_token(r#"kw="\"next\"""#), Some(b"\"next\"".to_vec()));
    assert_eq!(dict_token(r#""\x2a\x00\\""#), Some(vec![0x2a, 0, b'\\']));
    assert_eq!(dict_token("# comment"), None);
}
