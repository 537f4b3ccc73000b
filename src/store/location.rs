//! Where a cube lives: the `--out` of `eocube build` (and the argument of `eocube status`), parsed
//! once into an [`OutLocation`].
//!
//! Accepted: a local path (`cube.zarr`, `/data/cube.zarr`), `file:///abs/path`,
//! `s3://bucket/prefix` (plain Zarr on S3 or an S3-compatible server), and Icechunk repositories
//! `icechunk:///absolute/path` (local disk) and `icechunk+s3://bucket/prefix` (S3; the prefix may
//! not be empty). Recognised but refused for now with [`LocationError::NotSupportedYet`]: `gs://`,
//! `az://` (and `azure://`, `abfs://`), `icechunk+gs://`, `icechunk+az://`. Any other `scheme://` is refused with
//! [`LocationError::UnknownScheme`], which names `--out` and the valid forms.
//!
//! S3 options never appear in the URL: they come from the environment, as for inputs
//! (`src/cog/source.rs`): `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (a custom endpoint, then
//! path-style requests), `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ALLOW_HTTP` (or an `http://`
//! endpoint), `AWS_NO_SIGN_REQUEST=true` (anonymous), and credentials from object_store's chain
//! ([`object_store::aws::AmazonS3Builder::from_env`]: `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, web identity, ECS and EC2 instance roles).
//! Credentials are never printed: [`OutLocation`]'s `Display` is the URL, which holds none.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// The valid forms of `--out`, for error messages.
pub const VALID_FORMS: &str = "a local path (cube.zarr), file:///absolute/path, s3://bucket/prefix, \
     icechunk:///absolute/path or icechunk+s3://bucket/prefix";

/// A parsed output location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutLocation {
    /// A directory on local disk (a plain path or a `file://` URL).
    Local(PathBuf),
    /// `s3://bucket/prefix`: `prefix` has no leading or trailing `/` and may be empty (the
    /// bucket's root).
    S3 { bucket: String, prefix: String },
    /// An Icechunk repository (`icechunk://` or `icechunk+s3://`); the branch is not part of the
    /// location (`--branch`).
    Icechunk(IcechunkRepo),
}

/// Where an Icechunk repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcechunkRepo {
    /// `icechunk:///absolute/path`: a directory on local disk.
    Local(PathBuf),
    /// `icechunk+s3://bucket/prefix`: `prefix` is not empty, without leading or trailing `/`.
    S3 { bucket: String, prefix: String },
}

/// Why `--out` cannot be used. Every message names the location and the valid forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("--out {out}: unknown scheme {scheme:?}; give {VALID_FORMS}")]
    UnknownScheme { out: String, scheme: String },
    #[error("--out {out}: {what} is not supported yet; give {VALID_FORMS}")]
    NotSupportedYet { out: String, what: &'static str },
    #[error("--out {out}: {reason}; give {VALID_FORMS}")]
    Invalid { out: String, reason: String },
}

impl OutLocation {
    /// Parse `--out`. A string without `scheme://` is a local path, relative or absolute.
    pub fn parse(out: impl AsRef<OsStr>) -> Result<OutLocation, LocationError> {
        let os = out.as_ref();
        // A path that is not UTF-8 cannot be a URL.
        let Some(s) = os.to_str() else {
            return Ok(OutLocation::Local(PathBuf::from(os)));
        };
        let invalid = |reason: &str| LocationError::Invalid { out: s.to_string(), reason: reason.into() };
        if s.trim().is_empty() {
            return Err(invalid("the location is empty"));
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Ok(OutLocation::Local(PathBuf::from(os)));
        };
        // "dir/a://b" is a (strange) relative path, not a URL: a scheme is letters, digits, + - .
        let is_scheme = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !is_scheme {
            return Ok(OutLocation::Local(PathBuf::from(os)));
        }
        let not_yet = |what| LocationError::NotSupportedYet { out: s.to_string(), what };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let url = url::Url::parse(s).map_err(|e| invalid(&format!("not a valid file URL ({e})")))?;
                let path = url
                    .to_file_path()
                    .map_err(|_| invalid("a file URL needs an absolute path and no host (file:///data/cube.zarr)"))?;
                Ok(OutLocation::Local(path))
            }
            "s3" | "s3a" => {
                let (bucket, prefix) = parse_s3(rest, &invalid)?;
                Ok(OutLocation::S3 { bucket, prefix })
            }
            "icechunk" => {
                let path = PathBuf::from(rest);
                if rest.contains(['?', '#']) || !path.is_absolute() {
                    return Err(invalid(
                        "an Icechunk repository on local disk is icechunk:///absolute/path (three slashes, no host)",
                    ));
                }
                Ok(OutLocation::Icechunk(IcechunkRepo::Local(path)))
            }
            "icechunk+s3" => {
                let (bucket, prefix) = parse_s3(rest, &invalid)?;
                if prefix.is_empty() {
                    return Err(invalid("an Icechunk repository needs a prefix (icechunk+s3://bucket/prefix)"));
                }
                Ok(OutLocation::Icechunk(IcechunkRepo::S3 { bucket, prefix }))
            }
            "gs" | "gcs" => Err(not_yet("Google Cloud Storage (gs://)")),
            "az" | "azure" | "abfs" | "abfss" => Err(not_yet("Azure Blob Storage (az://)")),
            "icechunk+gs" | "icechunk+az" => Err(not_yet("an Icechunk repository in the cloud")),
            "http" | "https" => Err(not_yet("writing a cube over plain HTTP (http://, https://)")),
            _ => Err(LocationError::UnknownScheme { out: s.to_string(), scheme: scheme.to_string() }),
        }
    }

    /// The local directory, if the cube is on local disk.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            OutLocation::Local(p) => Some(p),
            OutLocation::S3 { .. } | OutLocation::Icechunk(_) => None,
        }
    }

    /// The location as a path-like value for error variants that carry a `PathBuf`: the local
    /// path itself, or the URL (`s3://bucket/prefix`) as an opaque path.
    pub fn as_path_buf(&self) -> PathBuf {
        match self {
            OutLocation::Local(p) => p.clone(),
            other => PathBuf::from(other.to_string()),
        }
    }
}

impl fmt::Display for OutLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutLocation::Local(p) => write!(f, "{}", p.display()),
            OutLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            OutLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            OutLocation::Icechunk(IcechunkRepo::Local(p)) => write!(f, "icechunk://{}", p.display()),
            OutLocation::Icechunk(IcechunkRepo::S3 { bucket, prefix }) => write!(f, "icechunk+s3://{bucket}/{prefix}"),
        }
    }
}

/// `bucket/prefix` of an `s3://` (or `icechunk+s3://`) URL, checked; the prefix may be empty.
fn parse_s3(rest: &str, invalid: &dyn Fn(&str) -> LocationError) -> Result<(String, String), LocationError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(invalid("no bucket name (s3://bucket/prefix)"));
    }
    if !valid_bucket(bucket) {
        return Err(invalid(&format!(
            "{bucket:?} is not a valid S3 bucket name (3 to 63 lowercase letters, digits, '.' and '-')"
        )));
    }
    if rest.contains(['?', '#']) {
        return Err(invalid(
            "query strings and fragments are not allowed; S3 options come from the environment (AWS_ENDPOINT_URL, AWS_REGION, ...)",
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p.is_empty() && !prefix.is_empty() || p == "." || p == "..") {
        return Err(invalid("the prefix has an empty, '.' or '..' path segment"));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// S3's bucket naming rules, loosely (path-style servers accept a little more; AWS less).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' || c == '_')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric())
}
