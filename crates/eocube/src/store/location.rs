//! Where a cube lives: the `--out` of `eocube build` (and the argument of `eocube status`), parsed
//! once into an [`OutLocation`].
//!
//! Accepted: a local path (`cube.zarr`, `/data/cube.zarr`), `file:///abs/path`,
//! `s3://bucket/prefix` (plain Zarr on S3 or an S3-compatible server), `gs://bucket/prefix`
//! (Google Cloud Storage), `az://container/prefix` (Azure Blob Storage; also `azure://`, and
//! `abfs[s]://container@account.dfs.core.windows.net/prefix`, which names the account), and
//! Icechunk repositories `icechunk:///absolute/path` (local disk) and
//! `icechunk+s3://bucket/prefix` (S3; the prefix may not be empty). Recognised but refused for now
//! with [`LocationError::NotSupportedYet`]: `icechunk+gs://`, `icechunk+az://` (the icechunk
//! crate's GCS/Azure back ends would bring their cloud SDKs into the build) and `http(s)://`. Any
//! other `scheme://` is refused with [`LocationError::UnknownScheme`], which names `--out` and the
//! valid forms.
//!
//! Store options never appear in the URL: they come from the environment, as for inputs
//! (`src/cog/source.rs`). S3: [`crate::cloud::aws::S3Settings`] (`AWS_*` variables and the shared
//! config/credentials profiles, then object_store's chain: web identity, ECS and EC2 instance
//! roles). GCS: `GoogleCloudStorageBuilder::from_env` (`GOOGLE_SERVICE_ACCOUNT` /
//! `GOOGLE_APPLICATION_CREDENTIALS`, else application default credentials or the metadata
//! server). Azure: `MicrosoftAzureBuilder::from_env` (`AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`, a service principal, managed identity,
//! `AZURE_STORAGE_USE_EMULATOR`). Credentials are never printed: [`OutLocation`]'s `Display` is
//! the URL, which holds none.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// The valid forms of `--out`, for error messages.
pub const VALID_FORMS: &str = "a local path (cube.zarr), file:///absolute/path, s3://bucket/prefix, \
     gs://bucket/prefix, az://container/prefix, icechunk:///absolute/path or icechunk+s3://bucket/prefix";

/// A parsed output location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutLocation {
    /// A directory on local disk (a plain path or a `file://` URL).
    Local(PathBuf),
    /// `s3://bucket/prefix`: `prefix` has no leading or trailing `/` and may be empty (the
    /// bucket's root).
    S3 { bucket: String, prefix: String },
    /// `gs://bucket/prefix` (also `gcs://`): Google Cloud Storage; `prefix` as for S3.
    Gcs { bucket: String, prefix: String },
    /// `az://container/prefix` (also `azure://`, `abfs[s]://container@account.dfs.core.windows.net/prefix`):
    /// Azure Blob Storage. `account` is the storage account named in an `abfs` URL; `None`: from
    /// the environment (`AZURE_STORAGE_ACCOUNT_NAME`). `prefix` as for S3.
    Azure { account: Option<String>, container: String, prefix: String },
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

/// Why the `out` setting cannot be used. Every message starts with the setting's name, then
/// names the location and the valid forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("out {out}: unknown scheme {scheme:?}; give {VALID_FORMS}")]
    UnknownScheme { out: String, scheme: String },
    #[error("out {out}: {what} is not supported yet; give {VALID_FORMS}")]
    NotSupportedYet { out: String, what: &'static str },
    #[error("out {out}: {reason}; give {VALID_FORMS}")]
    Invalid { out: String, reason: String },
}

impl LocationError {
    /// The setting every location error is about; its message starts with this name.
    pub fn setting(&self) -> &'static str {
        "out"
    }
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
            "gs" | "gcs" => {
                let (bucket, prefix) = split_bucket(rest, "gs://bucket/prefix", valid_bucket, &invalid)?;
                Ok(OutLocation::Gcs { bucket, prefix })
            }
            "az" | "azure" => {
                let (container, prefix) = split_bucket(rest, "az://container/prefix", valid_container, &invalid)?;
                Ok(OutLocation::Azure { account: None, container, prefix })
            }
            "abfs" | "abfss" => {
                // container@account.dfs.core.windows.net/prefix (the form Spark and fsspec use)
                let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                let form = "abfss://container@account.dfs.core.windows.net/prefix";
                let (container, account) = host
                    .split_once('@')
                    .and_then(|(c, h)| {
                        let account = h
                            .strip_suffix(".dfs.core.windows.net")
                            .or_else(|| h.strip_suffix(".blob.core.windows.net"))?;
                        Some((c, account))
                    })
                    .filter(|(_, a)| !a.is_empty() && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
                    .ok_or_else(|| {
                        invalid(&format!(
                            "an abfs URL is {form}, or use az://container/prefix with AZURE_STORAGE_ACCOUNT_NAME"
                        ))
                    })?;
                let (container, prefix) =
                    split_bucket(&format!("{container}/{path}"), form, valid_container, &invalid)?;
                Ok(OutLocation::Azure { account: Some(account.to_string()), container, prefix })
            }
            "icechunk+gs" | "icechunk+gcs" | "icechunk+az" | "icechunk+azure" => Err(not_yet(
                "an Icechunk repository on Google Cloud Storage or Azure (icechunk+gs://, icechunk+az://: the icechunk crate's GCS and Azure back ends are not built in)",
            )),
            "http" | "https" => Err(not_yet("writing a cube over plain HTTP (http://, https://)")),
            _ => Err(LocationError::UnknownScheme { out: s.to_string(), scheme: scheme.to_string() }),
        }
    }

    /// The local directory, if the cube is on local disk.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            OutLocation::Local(p) => Some(p),
            OutLocation::S3 { .. } | OutLocation::Gcs { .. } | OutLocation::Azure { .. } | OutLocation::Icechunk(_) => {
                None
            }
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
            OutLocation::Gcs { bucket, prefix } if prefix.is_empty() => write!(f, "gs://{bucket}"),
            OutLocation::Gcs { bucket, prefix } => write!(f, "gs://{bucket}/{prefix}"),
            OutLocation::Azure { account: None, container, prefix } if prefix.is_empty() => {
                write!(f, "az://{container}")
            }
            OutLocation::Azure { account: None, container, prefix } => write!(f, "az://{container}/{prefix}"),
            OutLocation::Azure { account: Some(a), container, prefix } => {
                write!(f, "abfss://{container}@{a}.dfs.core.windows.net/{prefix}")
            }
            OutLocation::Icechunk(IcechunkRepo::Local(p)) => write!(f, "icechunk://{}", p.display()),
            OutLocation::Icechunk(IcechunkRepo::S3 { bucket, prefix }) => write!(f, "icechunk+s3://{bucket}/{prefix}"),
        }
    }
}

/// `bucket/prefix` of an `s3://` (or `icechunk+s3://`) URL, checked; the prefix may be empty.
fn parse_s3(rest: &str, invalid: &dyn Fn(&str) -> LocationError) -> Result<(String, String), LocationError> {
    split_bucket(rest, "s3://bucket/prefix", valid_bucket, invalid)
}

/// `bucket/prefix` (or `container/prefix`) after the scheme, checked with `valid` (`form` is the
/// URL's shape, for messages); the prefix may be empty.
fn split_bucket(
    rest: &str,
    form: &str,
    valid: fn(&str) -> bool,
    invalid: &dyn Fn(&str) -> LocationError,
) -> Result<(String, String), LocationError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let (what, rules) = if form.starts_with("az") || form.starts_with("abfs") {
        ("Azure container", "3 to 63 lowercase letters, digits and single '-', starting with a letter or digit")
    } else if form.starts_with("gs") {
        ("GCS bucket", "3 to 63 lowercase letters, digits, '.', '-' and '_'")
    } else {
        ("S3 bucket", "3 to 63 lowercase letters, digits, '.' and '-'")
    };
    if bucket.is_empty() {
        return Err(invalid(&format!("no {} name ({form})", what.rsplit(' ').next().unwrap_or(what))));
    }
    if !valid(bucket) {
        return Err(invalid(&format!("{bucket:?} is not a valid {what} name ({rules})")));
    }
    if rest.contains(['?', '#']) {
        return Err(invalid(
            "query strings and fragments are not allowed; store options come from the environment (AWS_ENDPOINT_URL, AWS_REGION, GOOGLE_SERVICE_ACCOUNT, AZURE_STORAGE_ACCOUNT_NAME, ...)",
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

/// Azure's container naming rules: 3 to 63 lowercase letters, digits and single hyphens, not
/// starting or ending with a hyphen.
fn valid_container(c: &str) -> bool {
    (3..=63).contains(&c.len())
        && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcs_and_azure_urls_parse_and_print_back() {
        let p = |s: &str| OutLocation::parse(s).unwrap();
        assert_eq!(
            p("gs://my_bucket.x/a/cube.zarr/"),
            OutLocation::Gcs { bucket: "my_bucket.x".into(), prefix: "a/cube.zarr".into() }
        );
        assert_eq!(p("gcs://bkt").to_string(), "gs://bkt");
        let az = OutLocation::Azure { account: None, container: "cubes".into(), prefix: "v1/c.zarr".into() };
        assert_eq!(p("az://cubes/v1/c.zarr"), az);
        assert_eq!(p("azure://cubes/v1/c.zarr"), az);
        assert_eq!(p("AZ://cubes").to_string(), "az://cubes");
        let abfs = p("abfss://cubes@acct1.dfs.core.windows.net/v1/c.zarr");
        assert_eq!(
            abfs,
            OutLocation::Azure { account: Some("acct1".into()), container: "cubes".into(), prefix: "v1/c.zarr".into() }
        );
        assert_eq!(p("abfs://cubes@acct1.blob.core.windows.net/v1/c.zarr"), abfs);
        for s in ["gs://b-1/x", "az://cubes/v1/c.zarr", "abfss://cubes@acct1.dfs.core.windows.net/v1/c.zarr"] {
            assert_eq!(p(&p(s).to_string()), p(s), "{s} prints back to itself");
            assert!(p(s).local_path().is_none());
        }
    }

    #[test]
    fn bad_gcs_and_azure_urls_are_refused_with_the_form() {
        for (out, want) in [
            ("gs:///x", "no bucket name (gs://bucket/prefix)"),
            ("gs://B/x", "not a valid GCS bucket"),
            ("gs://b-1/a/../c", "'..'"),
            ("gs://b-1/c?x=1", "query strings"),
            ("az:///x", "no container name (az://container/prefix)"),
            ("az://my_container/x", "not a valid Azure container"),
            ("az://a--b/x", "not a valid Azure container"),
            ("abfss://cubes/x", "abfss://container@account.dfs.core.windows.net/prefix"),
            ("abfss://cubes@acct.example.com/x", "abfss://container@account"),
            ("icechunk+gs://b/repo", "not supported yet"),
            ("icechunk+az://c/repo", "not supported yet"),
        ] {
            let e = OutLocation::parse(out).expect_err(out).to_string();
            assert!(e.contains(want) && e.contains(out), "{out}: {e}");
            assert!(e.contains("gs://bucket/prefix") && e.contains("az://container/prefix"), "{out}: {e}");
        }
    }
}
