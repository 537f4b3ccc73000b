//! S3 settings resolved once from the environment and the AWS shared config files, for every S3
//! client eocube makes (through [`super::s3`]: cube outputs and COG inputs; and Icechunk
//! repositories, which map [`S3Settings`] onto their own options).
//!
//! Owns: reading `~/.aws/credentials` and `~/.aws/config` (a small INI reader, [`Ini`]), choosing
//! the profile, and the precedence between environment and profile, as the AWS CLI does:
//!
//! - profile: `AWS_PROFILE`, else `AWS_DEFAULT_PROFILE`, else `default`; files:
//!   `AWS_SHARED_CREDENTIALS_FILE` (else `~/.aws/credentials`, sections `[name]`) and
//!   `AWS_CONFIG_FILE` (else `~/.aws/config`, sections `[profile name]` and `[default]`); the
//!   credentials file wins where both set a key. A profile named in the environment that is in
//!   neither file is an error; a missing `default` is not.
//! - credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`) beat the
//!   profile's `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`. A profile that
//!   gets credentials some other way (`role_arn`, `source_profile`, `credential_process`, `sso_*`,
//!   `web_identity_token_file`) is refused with the fix: eocube reads static keys only, and would
//!   otherwise sign as somebody else or not at all. With neither, object_store's own chain applies
//!   (web identity, ECS, EC2 instance role).
//! - region: `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's `region`.
//! - endpoint: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, then the profile's `s3 = endpoint_url`
//!   sub-section, then its `endpoint_url`. A custom endpoint means path-style requests (MinIO,
//!   moto, Ceph) unless the profile's `s3 = addressing_style = virtual` says otherwise.
//! - `AWS_ALLOW_HTTP` (or an `http://` endpoint) allows plain HTTP; `AWS_NO_SIGN_REQUEST=true`
//!   sends unsigned requests and ignores every credential.
//!
//! Credentials are never printed: [`StaticCredentials`]' `Debug` redacts them and no error
//! message quotes a value from the files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Keys that make the AWS CLI get credentials from somewhere other than the profile's keys.
const INDIRECT_KEYS: &[&str] = &[
    "role_arn",
    "source_profile",
    "credential_source",
    "credential_process",
    "web_identity_token_file",
    "sso_session",
    "sso_start_url",
    "sso_account_id",
    "sso_role_name",
    "sso_region",
];

/// Why the AWS settings cannot be used. Each message names the profile, the files and the fix.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AwsConfigError {
    #[error(
        "{var} names the AWS profile {profile:?}, which is in neither {} nor {} (profiles there: {}); set {var} to one of them, or unset it",
        credentials.display(), config.display(), list(available)
    )]
    ProfileNotFound {
        var: &'static str,
        profile: String,
        credentials: PathBuf,
        config: PathBuf,
        available: Vec<String>,
    },
    #[error(
        "the AWS profile {profile:?} ({}) gets its credentials through {}, which eocube does not support: eocube reads static keys (aws_access_key_id, aws_secret_access_key, aws_session_token) from profiles; export the credentials first, e.g. `eval \"$(aws configure export-credentials --profile {profile} --format env)\"`",
        file.display(), keys.join(", ")
    )]
    Indirect { profile: String, file: PathBuf, keys: Vec<String> },
    #[error(
        "the AWS profile {profile:?} ({}) has {has} but no {missing}; add it, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        file.display()
    )]
    IncompleteKeys { profile: String, file: PathBuf, has: &'static str, missing: &'static str },
    #[error("cannot read the AWS file {}: {source}; fix its permissions, or point {var} elsewhere", path.display())]
    Unreadable { path: PathBuf, var: &'static str, source: std::io::Error },
    #[error("the AWS file {} is malformed at line {line}: {reason}", path.display())]
    Malformed { path: PathBuf, line: usize, reason: String },
}

fn list(names: &[String]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

/// Static keys from the environment or a profile. `Debug` shows none of them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StaticCredentials {
    pub(crate) key_id: String,
    pub(crate) secret: String,
    pub(crate) token: Option<String>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticCredentials { .. }")
    }
}

/// Where [`S3Settings::credentials`] came from, for messages (never the values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CredentialSource {
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    Env,
    /// A profile of the shared files.
    Profile { name: String, file: PathBuf },
}

/// Everything an S3 client needs to know, resolved from the environment and the profile (see
/// the module docs for the precedence). Options the caller does not set keep object_store's
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct S3Settings {
    /// `AWS_REGION` / `AWS_DEFAULT_REGION` / the profile's `region`; `None`: the caller's default.
    pub(crate) region: Option<String>,
    /// A custom endpoint (`http://127.0.0.1:9000`); `None`: AWS.
    pub(crate) endpoint: Option<String>,
    /// Plain HTTP allowed: `AWS_ALLOW_HTTP` or an `http://` endpoint.
    pub(crate) allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`): true with a custom endpoint unless the profile
    /// says `addressing_style = virtual`; false (virtual-hosted) on AWS.
    pub(crate) path_style: bool,
    /// `AWS_NO_SIGN_REQUEST`: unsigned requests; `credentials` is then `None`.
    pub(crate) anonymous: bool,
    /// Static keys; `None` (and not anonymous): object_store's chain (web identity, ECS, EC2).
    pub(crate) credentials: Option<StaticCredentials>,
    /// Where `credentials` came from.
    pub(crate) credential_source: Option<CredentialSource>,
    /// The profile whose settings were read, if one was found.
    pub(crate) profile: Option<String>,
}

impl S3Settings {
    /// The settings of this process's environment and the shared files it points at.
    pub(crate) fn from_env() -> Result<S3Settings, AwsConfigError> {
        S3Settings::resolve(&|k: &str| std::env::var(k).ok())
    }

    /// [`S3Settings::from_env`] with the environment as a function (tests pass a map).
    pub(crate) fn resolve(var: &dyn Fn(&str) -> Option<String>) -> Result<S3Settings, AwsConfigError> {
        let env = |k: &str| var(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let truthy = |k: &str| env(k).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
        let home = env("HOME").map(PathBuf::from);
        let file = |var: &str, rel: &str| -> Option<PathBuf> {
            match env(var) {
                Some(p) => Some(expand_home(&p, home.as_deref())),
                None => home.as_ref().map(|h| h.join(".aws").join(rel)),
            }
        };
        let cred_path = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let conf_path = file("AWS_CONFIG_FILE", "config");
        let creds_ini = read_ini(cred_path.as_deref(), "AWS_SHARED_CREDENTIALS_FILE")?;
        let conf_ini = read_ini(conf_path.as_deref(), "AWS_CONFIG_FILE")?;

        let (profile_name, named_by) = match (env("AWS_PROFILE"), env("AWS_DEFAULT_PROFILE")) {
            (Some(p), _) => (p, Some("AWS_PROFILE")),
            (None, Some(p)) => (p, Some("AWS_DEFAULT_PROFILE")),
            (None, None) => ("default".to_string(), None),
        };
        let from_creds = creds_ini.as_ref().and_then(|i| i.section(&profile_name));
        let from_conf = conf_ini.as_ref().and_then(|i| {
            i.section(&config_section(&profile_name)).or_else(|| {
                // `[default]` is also accepted in the config file (the AWS CLI writes it so).
                (profile_name == "default").then(|| i.section("default")).flatten()
            })
        });
        if from_creds.is_none()
            && from_conf.is_none()
            && let Some(var) = named_by
        {
            let mut available: Vec<String> = creds_ini.iter().flat_map(|i| i.names()).map(str::to_string).collect();
            if let Some(c) = &conf_ini {
                available.extend(c.names().filter_map(|n| {
                    n.strip_prefix("profile ")
                        .map(|p| p.trim().to_string())
                        .or_else(|| (n == "default").then(|| n.to_string()))
                }));
            }
            available.sort();
            available.dedup();
            return Err(AwsConfigError::ProfileNotFound {
                var,
                profile: profile_name,
                credentials: cred_path.unwrap_or_else(|| PathBuf::from("~/.aws/credentials")),
                config: conf_path.unwrap_or_else(|| PathBuf::from("~/.aws/config")),
                available,
            });
        }
        // One view of the profile: the credentials file wins over the config file.
        let get = |k: &str| -> Option<(String, PathBuf)> {
            let pick = |s: Option<&Section>, p: &Option<PathBuf>| {
                s.and_then(|s| s.get(k)).map(|v| (v.to_string(), p.clone().unwrap_or_default()))
            };
            pick(from_creds, &cred_path).or_else(|| pick(from_conf, &conf_path))
        };
        let s3_sub = |k: &str| -> Option<String> {
            [from_creds, from_conf].into_iter().flatten().find_map(|s| s.sub("s3", k)).map(str::to_string)
        };
        let has_profile = from_creds.is_some() || from_conf.is_some();

        let anonymous = truthy("AWS_NO_SIGN_REQUEST");
        let env_keys = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"));
        let (credentials, credential_source) = if anonymous {
            (None, None)
        } else if let (Some(key_id), Some(secret)) = env_keys {
            (Some(StaticCredentials { key_id, secret, token: env("AWS_SESSION_TOKEN") }), Some(CredentialSource::Env))
        } else {
            let section_file = |k: &str| get(k).map(|(_, f)| f);
            let indirect: Vec<String> =
                INDIRECT_KEYS.iter().filter(|k| get(k).is_some()).map(|k| k.to_string()).collect();
            if !indirect.is_empty() {
                // role_arn wins over keys in the AWS CLI: using the keys would sign as another identity.
                let file = section_file(&indirect[0]).unwrap_or_default();
                return Err(AwsConfigError::Indirect { profile: profile_name, file, keys: indirect });
            }
            match (get("aws_access_key_id"), get("aws_secret_access_key")) {
                (Some((key_id, file)), Some((secret, _))) => {
                    let token = get("aws_session_token").map(|(t, _)| t);
                    let source = CredentialSource::Profile { name: profile_name.clone(), file };
                    (Some(StaticCredentials { key_id, secret, token }), Some(source))
                }
                (Some((_, file)), None) => {
                    return Err(AwsConfigError::IncompleteKeys {
                        profile: profile_name,
                        file,
                        has: "aws_access_key_id",
                        missing: "aws_secret_access_key",
                    });
                }
                (None, Some((_, file))) => {
                    return Err(AwsConfigError::IncompleteKeys {
                        profile: profile_name,
                        file,
                        has: "aws_secret_access_key",
                        missing: "aws_access_key_id",
                    });
                }
                (None, None) => (None, None),
            }
        };

        let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).or_else(|| get("region").map(|(v, _)| v));
        let endpoint = env("AWS_ENDPOINT_URL_S3")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| s3_sub("endpoint_url"))
            .or_else(|| get("endpoint_url").map(|(v, _)| v));
        let allow_http = truthy("AWS_ALLOW_HTTP") || endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
        let virtual_asked = s3_sub("addressing_style").is_some_and(|s| s.eq_ignore_ascii_case("virtual"));
        let path_style = endpoint.is_some() && !virtual_asked;
        Ok(S3Settings {
            region,
            endpoint,
            allow_http,
            path_style,
            anonymous,
            credentials,
            credential_source,
            profile: has_profile.then_some(profile_name),
        })
    }

    /// Apply the settings to `b` (from `AmazonS3Builder::from_env()` or `new()`): region (else
    /// `default_region`), endpoint and addressing, plain HTTP, and unsigned requests or static
    /// keys. Without static keys nothing is set, so `from_env`'s credential chain stays in charge.
    pub(crate) fn configure(
        &self,
        mut b: object_store::aws::AmazonS3Builder,
        default_region: &str,
    ) -> object_store::aws::AmazonS3Builder {
        b = b.with_region(self.region.as_deref().unwrap_or(default_region)).with_allow_http(self.allow_http);
        if let Some(ep) = &self.endpoint {
            b = b.with_endpoint(ep).with_virtual_hosted_style_request(!self.path_style);
        }
        if self.anonymous {
            return b.with_skip_signature(true);
        }
        if let Some(c) = &self.credentials {
            b = b.with_access_key_id(&c.key_id).with_secret_access_key(&c.secret);
            if let Some(t) = &c.token {
                b = b.with_token(t);
            }
        }
        b
    }
}

/// `~/x` and `~` with `$HOME`, as the AWS CLI expands its file variables.
fn expand_home(p: &str, home: Option<&Path>) -> PathBuf {
    match (p.strip_prefix("~"), home) {
        (Some(rest), Some(h)) if rest.is_empty() || rest.starts_with('/') => h.join(rest.trim_start_matches('/')),
        _ => PathBuf::from(p),
    }
}

/// The config file's section name of a profile.
fn config_section(profile: &str) -> String {
    format!("profile {profile}")
}

/// A missing file (or none configured) is no file; any other read error is reported.
fn read_ini(path: Option<&Path>, var: &'static str) -> Result<Option<Ini>, AwsConfigError> {
    let Some(path) = path else { return Ok(None) };
    match std::fs::read_to_string(path) {
        Ok(text) => Ini::parse(&text).map(Some).map_err(|(line, reason)| AwsConfigError::Malformed {
            path: path.to_path_buf(),
            line,
            reason,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || path.is_dir() => Ok(None),
        Err(source) => Err(AwsConfigError::Unreadable { path: path.to_path_buf(), var, source }),
    }
}

/// One `[section]` of an AWS INI file: `key = value` lines and nested sub-sections
/// (`s3 =` followed by indented `key = value` lines). Keys are lower-cased, as the AWS CLI does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Section {
    values: BTreeMap<String, String>,
    subs: BTreeMap<String, BTreeMap<String, String>>,
}

impl Section {
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// `key` of the sub-section `sub` (`s3 =\n  endpoint_url = ...`).
    pub(crate) fn sub(&self, sub: &str, key: &str) -> Option<&str> {
        self.subs.get(sub).and_then(|s| s.get(key)).map(String::as_str)
    }
}

/// An AWS shared config or credentials file: sections in file order; a section repeated later
/// adds to (and overrides keys of) the earlier one, as Python's configparser would refuse but the
/// AWS CLI's reader merges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Ini {
    sections: Vec<(String, Section)>,
}

impl Ini {
    /// Parse the text; `Err((line, reason))` (1-based line) for a line that is neither a section
    /// header, a `key = value`, a comment (`#`, `;`) nor a continuation.
    pub(crate) fn parse(text: &str) -> Result<Ini, (usize, String)> {
        let mut ini = Ini::default();
        // The current section, and the key whose indented lines follow (a sub-section when its
        // value was empty, else a continuation of the value).
        let mut current: Option<usize> = None;
        let mut open_key: Option<(String, bool)> = None;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let indented = line.starts_with([' ', '\t']);
            if indented && let (Some(sec), Some((key, is_sub))) = (current, open_key.as_ref()) {
                let section = &mut ini.sections[sec].1;
                if *is_sub {
                    let (k, v) = trimmed
                        .split_once('=')
                        .ok_or_else(|| (line_no, format!("expected `key = value` inside `{key} =`")))?;
                    section.subs.entry(key.clone()).or_default().insert(k.trim().to_ascii_lowercase(), v.trim().into());
                } else if let Some(v) = section.values.get_mut(key) {
                    v.push('\n');
                    v.push_str(trimmed);
                }
                continue;
            }
            if let Some(name) = trimmed.strip_prefix('[') {
                let name = name
                    .strip_suffix(']')
                    .ok_or_else(|| (line_no, "a section header needs a closing `]`".to_string()))?
                    .trim();
                if name.is_empty() {
                    return Err((line_no, "empty section name".into()));
                }
                let idx = match ini.sections.iter().position(|(n, _)| n == name) {
                    Some(idx) => idx,
                    None => {
                        ini.sections.push((name.to_string(), Section::default()));
                        ini.sections.len() - 1
                    }
                };
                current = Some(idx);
                open_key = None;
                continue;
            }
            let (k, v) = trimmed.split_once('=').ok_or_else(|| (line_no, "expected `key = value`".to_string()))?;
            let Some(sec) = current else {
                return Err((line_no, "a `key = value` line before any [section]".into()));
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k.is_empty() {
                return Err((line_no, "a `= value` line without a key".into()));
            }
            let section = &mut ini.sections[sec].1;
            if v.is_empty() {
                section.subs.entry(k.clone()).or_default();
            }
            section.values.insert(k.clone(), v.to_string());
            open_key = Some((k, v.is_empty()));
        }
        Ok(ini)
    }

    /// The section named exactly `name`.
    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// Section names in file order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ini_sections_keys_comments_and_sub_sections() {
        let text = "# comment\n; another\n[default]\nregion = eu-west-1\nAWS_Access_Key_ID=AKIA1\n\n\
                    [profile dev]\ns3 =\n  endpoint_url = http://127.0.0.1:9000\n  addressing_style = path\n\
                    region=us-east-2\n[default]\noutput = json\r\n";
        let ini = Ini::parse(text).unwrap();
        assert_eq!(ini.names().collect::<Vec<_>>(), ["default", "profile dev"]);
        let d = ini.section("default").unwrap();
        assert_eq!(d.get("region"), Some("eu-west-1"));
        assert_eq!(d.get("aws_access_key_id"), Some("AKIA1"), "keys are lower-cased");
        assert_eq!(d.get("output"), Some("json"), "a repeated section merges; CR is dropped");
        let dev = ini.section("profile dev").unwrap();
        assert_eq!(dev.sub("s3", "endpoint_url"), Some("http://127.0.0.1:9000"));
        assert_eq!(dev.sub("s3", "addressing_style"), Some("path"));
        assert_eq!(dev.get("region"), Some("us-east-2"), "a key after a sub-section is the section's");
        assert_eq!(dev.get("endpoint_url"), None);
        assert!(ini.section("dev").is_none());
    }

    #[test]
    fn ini_values_keep_inner_equals_and_continuations() {
        let ini = Ini::parse("[a]\naws_session_token = abc==\nnote = one\n  two\n").unwrap();
        let a = ini.section("a").unwrap();
        assert_eq!(a.get("aws_session_token"), Some("abc=="));
        assert_eq!(a.get("note"), Some("one\ntwo"));
    }

    #[test]
    fn ini_malformed_lines_name_the_line() {
        for (text, line, want) in [
            ("key = v\n", 1, "before any [section]"),
            ("[a]\nno equals here\n", 2, "key = value"),
            ("[a\n", 1, "closing"),
            ("[]\n", 1, "empty section"),
            ("[a]\n= v\n", 2, "without a key"),
            ("[a]\ns3 =\n  oops\n", 3, "inside `s3 =`"),
        ] {
            let (l, reason) = Ini::parse(text).unwrap_err();
            assert_eq!(l, line, "{text:?}");
            assert!(reason.contains(want), "{text:?}: {reason}");
        }
    }

    /// A temp directory with the two files, and an environment map pointing at them.
    struct Fixture {
        dir: PathBuf,
        vars: HashMap<String, String>,
    }

    impl Fixture {
        fn new(name: &str, credentials: Option<&str>, config: Option<&str>) -> Fixture {
            let dir = std::env::temp_dir().join(format!("eocube-aws-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join(".aws")).unwrap();
            if let Some(c) = credentials {
                std::fs::write(dir.join(".aws/credentials"), c).unwrap();
            }
            if let Some(c) = config {
                std::fs::write(dir.join(".aws/config"), c).unwrap();
            }
            let vars = HashMap::from([("HOME".to_string(), dir.display().to_string())]);
            Fixture { dir, vars }
        }

        fn with(mut self, k: &str, v: &str) -> Fixture {
            self.vars.insert(k.into(), v.into());
            self
        }

        fn resolve(&self) -> Result<S3Settings, AwsConfigError> {
            S3Settings::resolve(&|k: &str| self.vars.get(k).cloned())
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const CREDS: &str = "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = sdefault\n\
                         [dev]\naws_access_key_id = AKIADEV\naws_secret_access_key = sdev\naws_session_token = tdev\n";
    const CONFIG: &str = "[default]\nregion = eu-west-1\n[profile dev]\nregion = us-east-2\n\
                          endpoint_url = http://127.0.0.1:9000\n[profile roles]\nrole_arn = arn:aws:iam::1:role/x\n\
                          source_profile = dev\n[profile sso]\nsso_session = corp\n[profile onlyid]\n\
                          aws_access_key_id = AKIAONLY\n[profile virt]\ns3 =\n  endpoint_url = https://s3.example.com\n\
                          \x20 addressing_style = virtual\n";

    #[test]
    fn default_profile_from_home() {
        let f = Fixture::new("default", Some(CREDS), Some(CONFIG));
        let s = f.resolve().unwrap();
        let c = s.credentials.as_ref().unwrap();
        assert_eq!((c.key_id.as_str(), c.secret.as_str(), c.token.as_deref()), ("AKIADEFAULT", "sdefault", None));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"), "[default] in the config file");
        assert_eq!((s.endpoint.as_deref(), s.path_style, s.allow_http, s.anonymous), (None, false, false, false));
        assert_eq!(s.profile.as_deref(), Some("default"));
        assert!(matches!(s.credential_source, Some(CredentialSource::Profile { ref name, .. }) if name == "default"));
    }

    #[test]
    fn named_profile_merges_both_files() {
        let f = Fixture::new("named", Some(CREDS), Some(CONFIG)).with("AWS_PROFILE", "dev");
        let s = f.resolve().unwrap();
        let c = s.credentials.as_ref().unwrap();
        assert_eq!((c.key_id.as_str(), c.token.as_deref()), ("AKIADEV", Some("tdev")));
        assert_eq!(s.region.as_deref(), Some("us-east-2"));
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.path_style && s.allow_http, "custom http endpoint: path-style, plain HTTP allowed");
        // AWS_DEFAULT_PROFILE is the fallback name; AWS_PROFILE wins over it.
        let f = f.with("AWS_DEFAULT_PROFILE", "nope");
        assert_eq!(f.resolve().unwrap().profile.as_deref(), Some("dev"));
        let f = Fixture::new("named2", Some(CREDS), Some(CONFIG)).with("AWS_DEFAULT_PROFILE", "dev");
        assert_eq!(f.resolve().unwrap().credentials.unwrap().key_id, "AKIADEV");
    }

    #[test]
    fn environment_beats_the_profile() {
        let f = Fixture::new("env", Some(CREDS), Some(CONFIG))
            .with("AWS_PROFILE", "dev")
            .with("AWS_ACCESS_KEY_ID", "AKIAENV")
            .with("AWS_SECRET_ACCESS_KEY", "senv")
            .with("AWS_REGION", "ap-south-1")
            .with("AWS_ENDPOINT_URL", "https://minio.example.com");
        let s = f.resolve().unwrap();
        let c = s.credentials.as_ref().unwrap();
        assert_eq!((c.key_id.as_str(), c.token.as_deref()), ("AKIAENV", None), "no token from the profile either");
        assert_eq!(s.credential_source, Some(CredentialSource::Env));
        assert_eq!(s.region.as_deref(), Some("ap-south-1"));
        assert_eq!(s.endpoint.as_deref(), Some("https://minio.example.com"));
        assert!(s.path_style && !s.allow_http);
        let s = f.with("AWS_ENDPOINT_URL_S3", "http://s3only:1").resolve().unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://s3only:1"));
    }

    #[test]
    fn explicit_file_variables_and_tilde() {
        let f = Fixture::new("files", None, None);
        std::fs::write(f.dir.join("c.ini"), "[x]\naws_access_key_id=A\naws_secret_access_key=B\n").unwrap();
        std::fs::write(f.dir.join("conf.ini"), "[profile x]\ns3 =\n  endpoint_url = http://h:1\n").unwrap();
        let conf = f.dir.join("conf.ini").display().to_string();
        let f =
            f.with("AWS_SHARED_CREDENTIALS_FILE", "~/c.ini").with("AWS_CONFIG_FILE", &conf).with("AWS_PROFILE", "x");
        let s = f.resolve().unwrap();
        assert_eq!(s.credentials.unwrap().key_id, "A");
        assert_eq!(s.endpoint.as_deref(), Some("http://h:1"), "endpoint from the s3 sub-section");
    }

    #[test]
    fn a_missing_named_profile_is_an_error_naming_it_and_the_files() {
        let f = Fixture::new("missing", Some(CREDS), Some(CONFIG)).with("AWS_PROFILE", "prod");
        let e = f.resolve().unwrap_err().to_string();
        assert!(e.contains("\"prod\"") && e.contains("AWS_PROFILE"), "{e}");
        assert!(e.contains(".aws/credentials") && e.contains(".aws/config"), "{e}");
        assert!(e.contains("default, dev, onlyid, roles, sso, virt"), "{e}");
        // Env keys do not excuse a wrong profile name (the AWS CLI refuses it too).
        let f = f.with("AWS_ACCESS_KEY_ID", "A").with("AWS_SECRET_ACCESS_KEY", "B");
        assert!(matches!(f.resolve(), Err(AwsConfigError::ProfileNotFound { .. })));
        // No files at all: the named profile is missing as well.
        let f = Fixture::new("nofiles", None, None).with("AWS_DEFAULT_PROFILE", "x");
        let e = f.resolve().unwrap_err().to_string();
        assert!(e.contains("AWS_DEFAULT_PROFILE") && e.contains("profiles there: none"), "{e}");
    }

    #[test]
    fn no_files_and_no_keys_leave_the_chain_to_object_store() {
        let f = Fixture::new("chain", None, None);
        let s = f.resolve().unwrap();
        assert_eq!(s, S3Settings::default());
        // A default profile with settings but no keys: its region, and still the chain.
        let f = Fixture::new("chain2", None, Some("[default]\nregion = eu-north-1\n"));
        let s = f.resolve().unwrap();
        assert_eq!((s.region.as_deref(), s.credentials.is_none()), (Some("eu-north-1"), true));
        // No HOME at all.
        assert_eq!(S3Settings::resolve(&|_: &str| None).unwrap(), S3Settings::default());
    }

    #[test]
    fn role_and_sso_profiles_are_refused_with_the_fix() {
        for (name, key) in [("roles", "role_arn, source_profile"), ("sso", "sso_session")] {
            let f = Fixture::new(&format!("indirect-{name}"), Some(CREDS), Some(CONFIG)).with("AWS_PROFILE", name);
            let e = f.resolve().unwrap_err();
            assert!(matches!(e, AwsConfigError::Indirect { .. }), "{e}");
            let e = e.to_string();
            assert!(e.contains(key) && e.contains(&format!("\"{name}\"")), "{e}");
            assert!(e.contains("aws configure export-credentials") && e.contains("static keys"), "{e}");
            // Env keys or anonymous access need no profile credentials: no refusal then.
            let f = f.with("AWS_NO_SIGN_REQUEST", "true");
            assert!(f.resolve().unwrap().anonymous);
            let f = f.with("AWS_NO_SIGN_REQUEST", "").with("AWS_ACCESS_KEY_ID", "A").with("AWS_SECRET_ACCESS_KEY", "B");
            assert_eq!(f.resolve().unwrap().credential_source, Some(CredentialSource::Env));
        }
    }

    #[test]
    fn half_a_key_pair_is_refused() {
        let f = Fixture::new("half", Some(CREDS), Some(CONFIG)).with("AWS_PROFILE", "onlyid");
        let e = f.resolve().unwrap_err().to_string();
        assert!(e.contains("no aws_secret_access_key") && e.contains("onlyid"), "{e}");
    }

    #[test]
    fn anonymous_ignores_every_credential() {
        let f = Fixture::new("anon", Some(CREDS), None)
            .with("AWS_ACCESS_KEY_ID", "A")
            .with("AWS_SECRET_ACCESS_KEY", "B")
            .with("AWS_NO_SIGN_REQUEST", "YES");
        let s = f.resolve().unwrap();
        assert!(s.anonymous && s.credentials.is_none());
    }

    #[test]
    fn virtual_addressing_can_be_asked_for() {
        let f = Fixture::new("virt", None, Some(CONFIG)).with("AWS_PROFILE", "virt");
        let s = f.resolve().unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("https://s3.example.com"));
        assert!(!s.path_style && !s.allow_http);
    }

    #[test]
    fn unreadable_and_malformed_files_are_errors() {
        let f = Fixture::new("bad", Some("[a]\nthis is not ini\n"), None);
        let e = f.resolve().unwrap_err().to_string();
        assert!(e.contains("malformed at line 2") && e.contains("credentials"), "{e}");
        // A directory where the file should be counts as no file.
        let f = Fixture::new("dir", None, None);
        std::fs::create_dir_all(f.dir.join(".aws/credentials")).unwrap();
        assert!(f.resolve().is_ok());
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let f = Fixture::new("debug", Some(CREDS), None).with("AWS_PROFILE", "dev");
        let s = f.resolve().unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("sdev") && !shown.contains("tdev") && !shown.contains("AKIADEV"), "{shown}");
    }

    #[test]
    fn configure_builds_a_client() {
        let f = Fixture::new("configure", Some(CREDS), Some(CONFIG)).with("AWS_PROFILE", "dev");
        let s = f.resolve().unwrap();
        let b = s.configure(object_store::aws::AmazonS3Builder::new().with_bucket_name("b"), "us-east-1");
        use object_store::aws::AmazonS3ConfigKey as K;
        assert_eq!(b.get_config_value(&K::Region).as_deref(), Some("us-east-2"));
        assert_eq!(b.get_config_value(&K::Endpoint).as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(b.get_config_value(&K::VirtualHostedStyleRequest).as_deref(), Some("false"));
        assert_eq!(b.get_config_value(&K::AccessKeyId).as_deref(), Some("AKIADEV"));
        assert_eq!(b.get_config_value(&K::Token).as_deref(), Some("tdev"));
        assert!(b.build().is_ok());
        let anon = S3Settings { anonymous: true, ..S3Settings::default() };
        let b = anon.configure(object_store::aws::AmazonS3Builder::new().with_bucket_name("b"), "us-west-2");
        assert_eq!(b.get_config_value(&K::SkipSignature).as_deref(), Some("true"));
        assert_eq!(b.get_config_value(&K::Region).as_deref(), Some("us-west-2"));
    }
}
