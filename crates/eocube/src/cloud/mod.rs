//! Every object_store client eocube makes, built in one place with one set of settings: S3,
//! GCS, Azure and plain HTTP(S), for the COG reader (inputs), the plain-Zarr store and the
//! Icechunk repositories' run files (outputs). The STAC client takes its timeouts from the same
//! [`ClientConfig`] (`catalog::ApiOptions::default`).
//!
//! Owns: the client options (timeouts, retries), the builders of each cloud from the standard
//! environment ([`aws`] for S3 and the AWS profiles), whether plain HTTP is allowed, and the
//! count of failed request attempts and the whole-answer reading that makes a broken body retryable ([`retries`]). Must not touch: what is read or written, or
//! how errors are classified (each caller maps object_store's typed errors to its own).
//!
//! Defaults ([`ClientConfig::default`], the policy and its reasons: docs/robustness.md): a
//! request whose server sends nothing for 5 s ([`DEFAULT_REQUEST_TIMEOUT`], `--request-timeout`;
//! a STAC search gets four times that) is abandoned and retried; that is a bound on silence, not on the whole request, so a slow but
//! progressing read is never cut (a whole request is only bounded by [`DEFAULT_TOTAL_TIMEOUT`],
//! 5 minutes, and a job by the job timeout). Connect within 5 s; 5 retries of a transient
//! failure (5xx, 429, timeouts, resets, bodies cut short) with backoff from 100 ms doubling to
//! 5 s, none started 2 minutes after the first attempt ([`DEFAULT_RETRY_TIMEOUT`]: a 30 s
//! bound let a GET through a faulty proxy retry one 20 s stall and no second). Anything longer
//! is the job-level retry's.
//!
//! A front end sets the settings of its process once ([`ClientConfig::make_current`], the CLI
//! from `--request-timeout`); every client made afterwards uses them ([`ClientConfig::current`]).

pub(crate) mod aws;
pub mod retries;
pub mod sign;

use std::sync::RwLock;
use std::time::Duration;

use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use aws::S3Settings;

/// How long a request may go without receiving a byte before it is abandoned and retried.
/// S3 advises retrying a small GET or PUT that has not answered in 2 s; 5 s leaves room for a
/// loaded server and still makes a stalled answer cost seconds (through 10 % faults with 20 s
/// stalls, 20 s made a build take 27-90 s instead of 10-15 s: docs/robustness.md). An upload
/// must be sent within it too: a 5 MB chunk needs 1 MB/s, so on a slow uplink raise it.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Backstop on one whole request, however steadily it progresses: 5 minutes is 20 MB (a
/// coalesced row of Sentinel-2 tiles) at 70 KB/s.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(300);
/// No retry of a request starts later than this after its first attempt (or than 4 request
/// timeouts, when longer): room for a few stalls in a row, each cut at the request timeout.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(120);

/// How a client talks to its cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    /// The silence bound: a request is abandoned (and retried, as a timeout) when no byte of its
    /// answer arrives for this long, counted from the request's start to the answer's head and
    /// then between pieces of the body. An upload must therefore be sent within it too.
    pub request_timeout: Duration,
    /// Bound on a whole request, from connect to the last byte of the body.
    pub total_timeout: Duration,
    /// Retries of one request after a transient failure.
    pub max_retries: usize,
    /// First backoff; doubles each retry, with jitter (object_store's policy).
    pub init_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_retries: 5,
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
        }
    }
}

/// The settings [`ClientConfig::make_current`] installed; `None`: the defaults.
static CURRENT: RwLock<Option<ClientConfig>> = RwLock::new(None);

impl ClientConfig {
    /// The settings of this process: the defaults unless [`ClientConfig::make_current`] set
    /// others. Every client made from now on uses them.
    pub fn current() -> ClientConfig {
        CURRENT.read().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
    }

    /// Makes `self` the settings of this process ([`ClientConfig::current`]). Clients made
    /// before keep theirs: call this before the first store or catalog is opened.
    pub fn make_current(self) {
        *CURRENT.write().unwrap_or_else(|p| p.into_inner()) = Some(self);
    }

    /// This configuration with the silence bound `request_timeout` (and room for retries
    /// after stalls that long: [`DEFAULT_RETRY_TIMEOUT`]).
    pub fn with_request_timeout(self, request_timeout: Duration) -> ClientConfig {
        let retry_timeout = self.retry_timeout.max(request_timeout.saturating_mul(4));
        ClientConfig { request_timeout, retry_timeout, ..self }
    }

    pub fn options(&self, allow_http: bool) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(self.total_timeout)
            .with_read_timeout(self.request_timeout)
            .with_connect_timeout(self.connect_timeout)
            .with_allow_http(allow_http)
    }

    pub fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig { init_backoff: self.init_backoff, max_backoff: self.max_backoff, base: 2.0 },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }
}

/// Where an S3 client without static keys finds credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unkeyed {
    /// object_store's chain: web identity, ECS, EC2 instance role (outputs: a cube is written
    /// with the machine's role).
    Chain,
    /// Unsigned requests (inputs: public archives such as Sentinel-2 on AWS).
    Unsigned,
}

/// The S3 client of `bucket` with `settings` ([`S3Settings::from_env`]); `default_region` where
/// neither the environment nor the profile names one.
pub(crate) fn s3(
    bucket: &str,
    settings: &S3Settings,
    cfg: &ClientConfig,
    unkeyed: Unkeyed,
    default_region: &str,
) -> object_store::Result<object_store::aws::AmazonS3> {
    let b = match unkeyed {
        // `from_env` keeps the variables of the web-identity, ECS and EC2 credential providers.
        Unkeyed::Chain => object_store::aws::AmazonS3Builder::from_env(),
        Unkeyed::Unsigned => object_store::aws::AmazonS3Builder::new(),
    };
    let b = b
        .with_bucket_name(bucket)
        .with_client_options(cfg.options(settings.allow_http))
        .with_retry(cfg.retry())
        .with_http_connector(retries::Connector);
    settings.configure(b, default_region).build()
}

/// The GCS client of `bucket`: credentials from `GOOGLE_SERVICE_ACCOUNT` /
/// `GOOGLE_SERVICE_ACCOUNT_PATH` / `GOOGLE_APPLICATION_CREDENTIALS` (a service-account or
/// authorized-user JSON; one with `"gcs_base_url"` and `"disable_oauth": true` points at an
/// emulator), else the metadata server. Plain HTTP only for an `http://` base URL.
pub fn gcs(bucket: &str, cfg: &ClientConfig) -> object_store::Result<object_store::gcp::GoogleCloudStorage> {
    object_store::gcp::GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_client_options(cfg.options(gcs_allow_http()))
        .with_retry(cfg.retry())
        .with_http_connector(retries::Connector)
        .build()
}

/// The Azure client of `container`: `MicrosoftAzureBuilder::from_env` (account name and key,
/// SAS, service principal, managed identity, `AZURE_STORAGE_USE_EMULATOR`,
/// `AZURE_STORAGE_ENDPOINT`); `account` (from an `abfs` URL) wins over
/// `AZURE_STORAGE_ACCOUNT_NAME`. Plain HTTP for the emulator, `AZURE_ALLOW_HTTP` or an `http://`
/// endpoint.
pub fn azure(
    account: Option<&str>,
    container: &str,
    cfg: &ClientConfig,
) -> object_store::Result<object_store::azure::MicrosoftAzure> {
    let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .with_client_options(cfg.options(azure_allow_http()))
        .with_retry(cfg.retry())
        .with_http_connector(retries::Connector);
    if let Some(a) = account {
        b = b.with_account(a);
    }
    b.build()
}

/// The HTTP(S) client of one server, `base` = `scheme://host[:port]`.
pub fn http(base: &str, cfg: &ClientConfig) -> object_store::Result<object_store::http::HttpStore> {
    object_store::http::HttpBuilder::new()
        .with_url(base)
        .with_client_options(cfg.options(base.starts_with("http://")))
        .with_retry(cfg.retry())
        .with_http_connector(retries::Connector)
        .build()
}

/// [`http`] with every request signed by `signer` (a SAS token in the query string).
pub fn http_signed(
    base: &str,
    cfg: &ClientConfig,
    signer: sign::Signer,
) -> object_store::Result<object_store::http::HttpStore> {
    object_store::http::HttpBuilder::new()
        .with_url(base)
        .with_client_options(cfg.options(base.starts_with("http://")))
        .with_retry(cfg.retry())
        .with_http_connector(sign::Connector { signer })
        .build()
}

/// Whether GCS requests may use plain HTTP: only when the service-account JSON of the
/// environment (`GOOGLE_SERVICE_ACCOUNT_KEY`, or the file named by `GOOGLE_SERVICE_ACCOUNT`,
/// `GOOGLE_SERVICE_ACCOUNT_PATH`, `GOOGLE_APPLICATION_CREDENTIALS`) points at an `http://`
/// emulator through `"gcs_base_url"`. (`ClientOptions` replace what `from_env` read, so callers
/// decide this themselves.)
pub fn gcs_allow_http() -> bool {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let text = env("GOOGLE_SERVICE_ACCOUNT_KEY").or_else(|| {
        let path = env("GOOGLE_SERVICE_ACCOUNT")
            .or_else(|| env("GOOGLE_SERVICE_ACCOUNT_PATH"))
            .or_else(|| env("GOOGLE_APPLICATION_CREDENTIALS"))?;
        std::fs::read_to_string(path).ok()
    });
    text.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|d| d.get("gcs_base_url").and_then(|v| v.as_str()).map(|u| u.starts_with("http://")))
        .unwrap_or(false)
}

/// Whether Azure requests may use plain HTTP: `AZURE_ALLOW_HTTP`, or an `http://`
/// `AZURE_STORAGE_ENDPOINT` (the emulator, `AZURE_STORAGE_USE_EMULATOR`, allows it by itself).
pub fn azure_allow_http() -> bool {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    env("AZURE_ALLOW_HTTP").is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        || env("AZURE_STORAGE_ENDPOINT").or_else(|| env("AZURE_ENDPOINT")).is_some_and(|e| e.starts_with("http://"))
}
