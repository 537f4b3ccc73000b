//! The deployable zip of the function: one file, `bootstrap` (this binary, mode 0755), as the
//! `provided.al2023` runtime wants it.
//!
//! Owns: checking that a binary can run there (an ELF executable for the chosen architecture
//! that needs no newer glibc than Amazon Linux 2023's) and writing the zip. Must not touch:
//! building the binary (cargo does) or deploying it (the AWS CLI does; [`create_function_command`]
//! prints how).
//!
//! The zip is reproducible: the same binary gives the same bytes (a fixed 1980-01-01 time).

use std::path::{Path, PathBuf};

/// The glibc of Amazon Linux 2023, the OS of `provided.al2023`.
pub const AL2023_GLIBC: (u32, u32) = (2, 34);
/// Lambda's bound on a function's unzipped code (250 MB).
pub const LAMBDA_UNZIPPED_MAX: usize = 250 * 1024 * 1024;
/// Lambda's bound on a zip uploaded with the request (`--zip-file`); larger ones go through S3.
pub const LAMBDA_DIRECT_ZIP_MAX: u64 = 50 * 1024 * 1024;

/// Lambda's two architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    /// `e_machine` of an ELF file for this architecture.
    fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Arm64 => 183,
        }
    }

    /// As `aws lambda create-function --architectures` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target that builds a static binary for it.
    pub fn musl_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Arm64 => "aarch64-unknown-linux-musl",
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Arch, String> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(format!("{other:?} is not a Lambda architecture; give x86_64 or arm64")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {}: {reason}", path.display())]
    Write { path: PathBuf, reason: String },
    #[error("{} is not a 64-bit little-endian ELF executable; give the eocube binary built for Linux", path.display())]
    NotElf { path: PathBuf },
    #[error(
        "{} is built for another machine (ELF machine {found}), not {}; build it with `cargo build --release --target {}`",
        path.display(), arch.name(), arch.musl_target()
    )]
    WrongArch { path: PathBuf, arch: Arch, found: u16 },
    #[error(
        "{} needs glibc {}.{}, and provided.al2023 has {}.{}: it would not start on Lambda. Build a static \
         binary (`rustup target add {target}`, Debian's musl-tools, `cargo build --release --target {target}`) \
         or one against an older glibc (`cargo lambda build --release`), then package it with --binary",
        path.display(), needs.0, needs.1, AL2023_GLIBC.0, AL2023_GLIBC.1
    )]
    GlibcTooNew { path: PathBuf, needs: (u32, u32), target: &'static str },
    #[error(
        "{} is {:.0} MB, more than Lambda's 250 MB of unzipped code: strip it (`strip {}`, or build with \
         `--config profile.release.strip=true`; the debug information is most of it)",
        path.display(), *size as f64 / 1e6, path.display()
    )]
    TooLarge { path: PathBuf, size: usize },
}

/// What a packaged binary needs, from its ELF header and version needs.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryInfo {
    pub machine: u16,
    /// The newest `GLIBC_x.y` symbol version it asks for; `None`: static, or not glibc.
    pub glibc: Option<(u32, u32)>,
}

/// Reads what [`package`] checks from an ELF file's bytes.
pub fn inspect(bytes: &[u8]) -> Option<BinaryInfo> {
    // e_ident: magic, ELFCLASS64 (2), ELFDATA2LSB (1); e_type ET_EXEC (2) or ET_DYN (3, PIE).
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    if !matches!(u16_at(16), 2 | 3) {
        return None;
    }
    Some(BinaryInfo { machine: u16_at(18), glibc: newest_glibc(bytes) })
}

/// The newest `GLIBC_x.y` version string in the file: version needs are stored as such strings
/// in the dynamic string table, and nothing else in a Rust binary spells them.
fn newest_glibc(bytes: &[u8]) -> Option<(u32, u32)> {
    const TAG: &[u8] = b"GLIBC_";
    let mut newest = None;
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(TAG.len()).position(|w| w == TAG) {
        let start = i + at + TAG.len();
        let end =
            bytes[start..].iter().position(|&b| !(b.is_ascii_digit() || b == b'.')).map_or(bytes.len(), |n| start + n);
        let text = std::str::from_utf8(&bytes[start..end]).unwrap_or("");
        let mut parts = text.split('.').map(|p| p.parse::<u32>());
        // Only a string ending there (NUL) is a version name, not a prefix of other text.
        if let (Some(Ok(major)), Some(Ok(minor)), Some(&0)) = (parts.next(), parts.next(), bytes.get(end)) {
            newest = newest.max(Some((major, minor)));
        }
        i = end.max(start);
    }
    newest
}

/// Checks `binary` for Lambda on `arch` and writes the zip to `out`; returns the zip's size.
pub fn package(binary: &Path, arch: Arch, out: &Path) -> Result<u64, PackageError> {
    let bytes = std::fs::read(binary).map_err(|e| PackageError::Read { path: binary.into(), reason: e.to_string() })?;
    let info = inspect(&bytes).ok_or_else(|| PackageError::NotElf { path: binary.into() })?;
    if info.machine != arch.elf_machine() {
        return Err(PackageError::WrongArch { path: binary.into(), arch, found: info.machine });
    }
    if let Some(needs) = info.glibc.filter(|&v| v > AL2023_GLIBC) {
        return Err(PackageError::GlibcTooNew { path: binary.into(), needs, target: arch.musl_target() });
    }
    if bytes.len() > LAMBDA_UNZIPPED_MAX {
        return Err(PackageError::TooLarge { path: binary.into(), size: bytes.len() });
    }
    let zip = zip_one("bootstrap", 0o100755, &bytes);
    // Written beside and renamed: a failed write never leaves half a zip under the name.
    let tmp = out.with_extension("zip.tmp");
    let write = |e: std::io::Error| PackageError::Write { path: out.into(), reason: e.to_string() };
    std::fs::write(&tmp, &zip).map_err(write)?;
    std::fs::rename(&tmp, out).map_err(write)?;
    Ok(zip.len() as u64)
}

/// A zip archive of one deflated file `name` with Unix mode `mode`.
fn zip_one(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
    let mut compressor = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let mut deflated = vec![0; compressor.deflate_compress_bound(data.len())];
    // The bound is enough by construction; an empty result would only make the zip store 0 bytes.
    let n = compressor.deflate_compress(data, &mut deflated).unwrap_or(0);
    deflated.truncate(n);
    let mut crc = libdeflater::Crc::new();
    crc.update(data);
    let crc = crc.sum();
    // DOS time 00:00:00, date 1980-01-01.
    let (time, date) = (0u16, (1 << 5) | 1u16);
    let (csize, usize_) = (deflated.len() as u32, data.len() as u32);
    let mut z = Vec::with_capacity(deflated.len() + 200);
    let put16 = |z: &mut Vec<u8>, v: u16| z.extend_from_slice(&v.to_le_bytes());
    let put32 = |z: &mut Vec<u8>, v: u32| z.extend_from_slice(&v.to_le_bytes());
    // Local file header.
    put32(&mut z, 0x0403_4b50);
    for v in [20, 0, 8, time, date] {
        put16(&mut z, v);
    }
    for v in [crc, csize, usize_] {
        put32(&mut z, v);
    }
    put16(&mut z, name.len() as u16);
    put16(&mut z, 0);
    z.extend_from_slice(name.as_bytes());
    z.extend_from_slice(&deflated);
    // Central directory: made by Unix (3), so the mode in the external attributes counts.
    let central = z.len() as u32;
    put32(&mut z, 0x0201_4b50);
    for v in [(3 << 8) | 20, 20, 0, 8, time, date] {
        put16(&mut z, v);
    }
    for v in [crc, csize, usize_] {
        put32(&mut z, v);
    }
    for v in [name.len() as u16, 0, 0, 0, 0] {
        put16(&mut z, v);
    }
    put32(&mut z, mode << 16);
    put32(&mut z, 0);
    z.extend_from_slice(name.as_bytes());
    let central_size = z.len() as u32 - central;
    // End of central directory.
    put32(&mut z, 0x0605_4b50);
    for v in [0, 0, 1, 1] {
        put16(&mut z, v);
    }
    put32(&mut z, central_size);
    put32(&mut z, central);
    put16(&mut z, 0);
    z
}

/// The AWS CLI command that creates the function from the zip of `zip_size` bytes (uploaded with
/// the request up to 50 MB, else from S3).
pub fn create_function_command(zip: &Path, zip_size: u64, arch: Arch, memory_mb: u32, timeout_s: u32) -> String {
    let code = if zip_size <= LAMBDA_DIRECT_ZIP_MAX {
        format!("--zip-file fileb://{}", zip.display())
    } else {
        let name = zip.file_name().map_or_else(|| "eocube-lambda.zip".into(), |n| n.to_string_lossy());
        format!(
            "--code S3Bucket=BUCKET,S3Key={name}  (more than 50 MB: first `aws s3 cp {} s3://BUCKET/{name}`)",
            zip.display()
        )
    };
    format!(
        "aws lambda create-function --function-name eocube --runtime provided.al2023 --handler bootstrap \
         --architectures {} --memory-size {memory_mb} --timeout {timeout_s} --role \
         arn:aws:iam::ACCOUNT_ID:role/eocube-lambda {code}",
        arch.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF header: 64-bit, little-endian, PIE, `machine`, then `tail`.
    fn elf(machine: u16, tail: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[16..18].copy_from_slice(&3u16.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b.extend_from_slice(tail);
        b
    }

    #[test]
    fn the_newest_glibc_version_need_is_found() {
        let b = elf(62, b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0xGLIBC_2.99x\0");
        assert_eq!(inspect(&b), Some(BinaryInfo { machine: 62, glibc: Some((2, 34)) }));
        assert_eq!(inspect(&elf(183, b"static")), Some(BinaryInfo { machine: 183, glibc: None }));
        assert_eq!(inspect(b"#!/bin/sh\n"), None);
        assert_eq!(inspect(&[]), None);
        let mut exe32 = elf(62, b"");
        exe32[4] = 1;
        assert_eq!(inspect(&exe32), None);
    }

    #[test]
    fn binaries_lambda_cannot_run_are_refused() {
        let dir = crate::scratch::ScratchDir::new("package");
        let new = dir.join("new");
        std::fs::write(&new, elf(62, b"\0GLIBC_2.35\0")).unwrap();
        let out = dir.join("f.zip");
        let e = package(&new, Arch::X86_64, &out).unwrap_err();
        assert!(matches!(e, PackageError::GlibcTooNew { needs: (2, 35), .. }), "{e}");
        assert!(e.to_string().contains("x86_64-unknown-linux-musl"), "{e}");
        let e = package(&new, Arch::Arm64, &out).unwrap_err();
        assert!(matches!(e, PackageError::WrongArch { found: 62, .. }), "{e}");
        std::fs::write(&new, "not a binary").unwrap();
        assert!(matches!(package(&new, Arch::X86_64, &out), Err(PackageError::NotElf { .. })));
        assert!(!out.exists(), "nothing is written for a refused binary");
        let big = dir.join("big");
        // Sparse: the size counts, not the disk it takes.
        std::fs::write(&big, elf(62, b"\0GLIBC_2.17\0")).unwrap();
        std::fs::File::options().write(true).open(&big).unwrap().set_len(LAMBDA_UNZIPPED_MAX as u64 + 1).unwrap();
        let e = package(&big, Arch::X86_64, &out).unwrap_err();
        assert!(matches!(e, PackageError::TooLarge { .. }) && e.to_string().contains("strip"), "{e}");
        assert!(!out.exists());
        assert!(create_function_command(&out, 1 << 20, Arch::Arm64, 2048, 300).contains("--zip-file fileb://"));
        assert!(create_function_command(&out, 60 << 20, Arch::Arm64, 2048, 300).contains("--code S3Bucket="));
    }

    #[test]
    fn the_zip_holds_bootstrap_executable_and_is_reproducible() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let z = zip_one("bootstrap", 0o100755, &data);
        assert_eq!(&z[..4], b"PK\x03\x04");
        assert_eq!(z, zip_one("bootstrap", 0o100755, &data));
        assert!(z.len() < data.len() / 2, "deflated");
        // End of central directory: one entry; the central header carries the mode.
        let eocd = z.len() - 22;
        assert_eq!(&z[eocd..eocd + 4], b"PK\x05\x06");
        let central = u32::from_le_bytes(z[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
        let attrs = u32::from_le_bytes(z[central + 38..central + 42].try_into().unwrap());
        assert_eq!(attrs >> 16, 0o100755);
    }
}
