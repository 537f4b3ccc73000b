//! Bytes from local files, http(s), s3, gs and az through one abstraction, object_store: href
//! parsing, one cached store per (scheme, host or bucket), bounded retries, request counting, and
//! the coalescing of nearby byte ranges.
//!
//! Clients come from [`crate::cloud`], as for outputs: S3 settings from the environment and AWS
//! profiles (the `s3_*` fields of [`FetchConfig`] override them), GCS and Azure from their
//! builders' `from_env`. One difference from outputs: an S3 input without static keys is read
//! unsigned (public archives such as Sentinel-2 on AWS), not through the instance-role chain.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use super::{CogError, RequestStats};
use crate::cloud::aws::S3Settings;
use crate::cloud::sign::Signer;
use crate::cloud::{self, ClientConfig, Unkeyed};

/// How the COG reader talks to storage. `Default` is what production wants; [`FetchConfig::from_env`]
/// adds the standard AWS variables.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchConfig {
    /// Retries of one request after a transient failure (5xx, 429, timeouts, resets); default
    /// five with backoff from 100 ms, which rides out a few seconds of throttling; the job-level
    /// retry (DESIGN section 9) handles anything longer. Defaults: [`crate::cloud`].
    pub max_retries: usize,
    /// First backoff; doubles each retry, with jitter (object_store's policy).
    pub init_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
    /// Silence bound: a request that receives nothing for this long is abandoned and retried
    /// ([`ClientConfig::request_timeout`]; `--request-timeout`).
    pub request_timeout: Duration,
    /// Bound on one whole request, however steadily it progresses.
    pub total_timeout: Duration,
    pub connect_timeout: Duration,
    /// Byte ranges closer than this are fetched as one request. 1 MiB: one extra request costs
    /// 20-60 ms of latency on S3, the time to receive 1-5 MB; and within a COG the tiles of a
    /// tile row are contiguous, so a window's tiles coalesce into one request per tile row while
    /// the rows (separated by the tiles outside the window, several MB for Sentinel-2) do not.
    pub coalesce_gap: u64,
    /// Requests in flight at once for one window.
    pub max_concurrent_requests: usize,
    /// Bytes read up front for the header. GDAL's COG layout puts every IFD first; for a
    /// Sentinel-2 band (10980 px, 1024 px tiles, 4 overviews) that is a few KiB, so 16 KiB
    /// opens it in one request; larger headers cost one or two more (read-ahead doubles).
    pub header_bytes: u64,
    /// S3: custom endpoint (MinIO, moto, Ceph...). Also `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`,
    /// else the AWS profile's `endpoint_url`.
    pub s3_endpoint: Option<String>,
    /// S3: region; default `AWS_REGION`, `AWS_DEFAULT_REGION`, the AWS profile's `region`, else
    /// us-west-2 (Earth Search).
    pub s3_region: Option<String>,
    /// S3: allow plain http to the endpoint; default: when the endpoint starts with `http://`.
    pub s3_allow_http: Option<bool>,
    /// S3: `Some(true)` never signs (also `AWS_NO_SIGN_REQUEST=YES`); default: sign when
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are set or the AWS profile has static keys,
    /// else unsigned.
    pub s3_unsigned: Option<bool>,
    /// http(s): sign every request with this (the Planetary Computer's SAS tokens); `None`:
    /// requests go as the hrefs say.
    pub signer: Option<Signer>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        // Timeouts and retries: the settings of every client of this process (crate::cloud).
        let c = ClientConfig::current();
        FetchConfig {
            max_retries: c.max_retries,
            init_backoff: c.init_backoff,
            max_backoff: c.max_backoff,
            retry_timeout: c.retry_timeout,
            request_timeout: c.request_timeout,
            total_timeout: c.total_timeout,
            connect_timeout: c.connect_timeout,
            coalesce_gap: 1 << 20,
            max_concurrent_requests: 8,
            header_bytes: 16 << 10,
            s3_endpoint: None,
            s3_region: None,
            s3_allow_http: None,
            s3_unsigned: None,
            signer: None,
        }
    }
}

impl FetchConfig {
    /// Defaults plus `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_REGION` /
    /// `AWS_DEFAULT_REGION`, `AWS_NO_SIGN_REQUEST=YES`, and `EOCUBE_FETCH_MAX_RETRIES`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut c = FetchConfig {
            s3_endpoint: var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")),
            s3_region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            ..FetchConfig::default()
        };
        if var("AWS_NO_SIGN_REQUEST").is_some_and(|v| v.eq_ignore_ascii_case("yes") || v == "1" || v == "true") {
            c.s3_unsigned = Some(true);
        }
        if let Some(n) = var("EOCUBE_FETCH_MAX_RETRIES").and_then(|v| v.parse().ok()) {
            c.max_retries = n;
        }
        c
    }

    /// Whether the AWS settings of the environment can be used for `s3://` inputs: `Err` with
    /// the message (a profile named in `AWS_PROFILE` that does not exist, a role-only profile, an
    /// unreadable or malformed `~/.aws` file). For a build's up-front checks: otherwise the
    /// first `s3://` href of each job fails with it (a permanent error, which
    /// `--skip-bad-scenes` would turn into skipped scenes).
    pub fn check_s3_settings(&self) -> Result<(), String> {
        S3Settings::from_env().map(|_| ()).map_err(|e| e.to_string())
    }

    /// The client settings of every store the reader makes.
    pub fn client(&self) -> ClientConfig {
        ClientConfig {
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            total_timeout: self.total_timeout,
            max_retries: self.max_retries,
            init_backoff: self.init_backoff,
            max_backoff: self.max_backoff,
            retry_timeout: self.retry_timeout,
        }
    }
}

/// Where an href points: a store and a path in it.
#[derive(Clone)]
pub(crate) struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
}

/// Stores shared by every [`super::Cog`] opened through one fetcher, so connections are reused.
pub(crate) struct Stores {
    pub cfg: FetchConfig,
    cache: Mutex<HashMap<(String, String), Arc<dyn ObjectStore>>>,
}

impl Stores {
    pub(crate) fn new(cfg: FetchConfig) -> Self {
        Stores { cfg, cache: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn resolve(&self, href: &str) -> Result<Location, CogError> {
        let bad = |reason: String| CogError::InvalidHref { href: href.to_string(), reason };
        let looks_like_url = href.contains("://");
        let url = if looks_like_url { Some(url::Url::parse(href).map_err(|e| bad(e.to_string()))?) } else { None };
        match url.as_ref().map(|u| u.scheme()) {
            None | Some("file") => {
                let fs_path = match &url {
                    Some(u) => u.to_file_path().map_err(|_| bad("not a local file URL".into()))?,
                    None => std::path::PathBuf::from(href),
                };
                let abs = std::fs::canonicalize(&fs_path).map_err(|e| CogError::NotFound {
                    href: href.to_string(),
                    reason: format!("no such local file ({e})"),
                })?;
                if !abs.is_file() {
                    return Err(CogError::NotFound { href: href.to_string(), reason: "not a regular file".into() });
                }
                let path = Path::from_absolute_path(&abs).map_err(|e| bad(e.to_string()))?;
                let store = self.cached("file", "", || Ok(Arc::new(object_store::local::LocalFileSystem::new())))?;
                Ok(Location { store, path })
            }
            Some(scheme @ ("http" | "https")) => {
                let u = url.as_ref().ok_or_else(|| bad("unparsable URL".into()))?;
                let host = u.host_str().ok_or_else(|| bad("URL without a host".into()))?;
                let authority = match u.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_string(),
                };
                let base = format!("{scheme}://{authority}");
                let path = Path::from_url_path(u.path()).map_err(|e| bad(e.to_string()))?;
                let client = self.cfg.client();
                let store = self.cached(scheme, &authority, || match &self.cfg.signer {
                    Some(signer) => Ok(Arc::new(
                        cloud::http_signed(&base, &client, signer.clone()).map_err(|e| bad(e.to_string()))?,
                    )),
                    None => Ok(Arc::new(cloud::http(&base, &client).map_err(|e| bad(e.to_string()))?)),
                })?;
                Ok(Location { store, path })
            }
            Some("s3") => {
                let u = url.as_ref().ok_or_else(|| bad("unparsable URL".into()))?;
                let bucket =
                    u.host_str().filter(|b| !b.is_empty()).ok_or_else(|| bad("s3 URL without a bucket".into()))?;
                let path = Path::from_url_path(u.path()).map_err(|e| bad(e.to_string()))?;
                let store = self.cached("s3", bucket, || Ok(Arc::new(self.s3(bucket).map_err(bad)?)))?;
                Ok(Location { store, path })
            }
            Some(scheme @ ("gs" | "gcs" | "az" | "azure")) => {
                let u = url.as_ref().ok_or_else(|| bad("unparsable URL".into()))?;
                let bucket = u
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad(format!("{scheme} URL without a bucket or container")))?;
                let path = Path::from_url_path(u.path()).map_err(|e| bad(e.to_string()))?;
                let client = self.cfg.client();
                let store = if scheme.starts_with('g') {
                    self.cached("gs", bucket, || {
                        Ok(Arc::new(cloud::gcs(bucket, &client).map_err(|e| bad(e.to_string()))?))
                    })?
                } else {
                    self.cached("az", bucket, || {
                        Ok(Arc::new(cloud::azure(None, bucket, &client).map_err(|e| bad(e.to_string()))?))
                    })?
                };
                Ok(Location { store, path })
            }
            Some(other) => Err(bad(format!("unsupported scheme {other:?}"))),
        }
    }

    fn cached(
        &self,
        scheme: &str,
        key: &str,
        make: impl FnOnce() -> Result<Arc<dyn ObjectStore>, CogError>,
    ) -> Result<Arc<dyn ObjectStore>, CogError> {
        let k = (scheme.to_string(), key.to_string());
        // A poisoned lock only means another thread panicked while inserting; the map is fine.
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = cache.get(&k) {
            return Ok(s.clone());
        }
        let s = make()?;
        cache.insert(k, s.clone());
        Ok(s)
    }

    fn s3(&self, bucket: &str) -> Result<object_store::aws::AmazonS3, String> {
        let cfg = &self.cfg;
        // Environment and AWS profile; a bad profile fails the href with the profile's message.
        let mut settings = S3Settings::from_env().map_err(|e| e.to_string())?;
        // The config's own fields (FetchConfig::from_env fills them from the environment) win.
        if let Some(ep) = &cfg.s3_endpoint {
            settings.endpoint = Some(ep.clone());
            settings.path_style = true;
        }
        if let Some(r) = &cfg.s3_region {
            settings.region = Some(r.clone());
        }
        settings.allow_http = cfg.s3_allow_http.unwrap_or_else(|| {
            settings.allow_http || settings.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"))
        });
        // Public buckets (Sentinel-2 on AWS) need no signature; without static keys, object_store
        // would otherwise go looking for instance credentials.
        settings.anonymous = cfg.s3_unsigned == Some(true) || settings.anonymous || settings.credentials.is_none();
        cloud::s3(bucket, &settings, &cfg.client(), Unkeyed::Unsigned, "us-west-2").map_err(|e| e.to_string())
    }
}

/// Request and byte counters (per `Cog`, shared by its clones).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn add(&self, requests: u64, bytes: u64) {
        self.requests.fetch_add(requests, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> RequestStats {
        RequestStats { requests: self.requests.load(Ordering::Relaxed), bytes: self.bytes.load(Ordering::Relaxed) }
    }
}

/// Maps an object_store error to ours, keeping the reason.
pub(crate) fn map_store_error(href: &str, e: object_store::Error) -> CogError {
    let href = href.to_string();
    match e {
        object_store::Error::NotFound { .. } => {
            CogError::NotFound { href, reason: format!("the server answered 404 / no such key or bucket ({e})") }
        }
        e => {
            let reason = crate::error_chain(&e);
            // Error bodies (HTML pages, S3 XML) are long and multi-line: one line, and only the
            // start, which has the status.
            let mut reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
            if reason.len() > 300 {
                let cut = (0..=300).rev().find(|&i| reason.is_char_boundary(i)).unwrap_or(0);
                reason.truncate(cut);
                reason.push_str("...");
            }
            CogError::Fetch { href, reason }
        }
    }
}

/// The first bytes of a file (up to `n`) and the file's size, in one request.
pub(crate) async fn fetch_head(loc: &Location, href: &str, n: u64) -> Result<(Bytes, u64), CogError> {
    let opts = GetOptions { range: Some(GetRange::Bounded(0..n.max(1))), ..Default::default() };
    let res = loc.store.get_opts(&loc.path, opts).await.map_err(|e| empty_or(href, e))?;
    let size = res.meta.size;
    let bytes = res.bytes().await.map_err(|e| map_store_error(href, e))?;
    Ok((bytes, size))
}

/// An empty file makes every range invalid (local store) or unsatisfiable (HTTP 416).
fn empty_or(href: &str, e: object_store::Error) -> CogError {
    let s = e.to_string();
    if s.contains("Requested range was invalid") || s.contains("416") || s.contains("Range Not Satisfiable") {
        CogError::Truncated { href: href.to_string(), reason: format!("the file is empty ({s})") }
    } else {
        map_store_error(href, e)
    }
}

/// One range, checked for length.
pub(crate) async fn fetch_range(loc: &Location, href: &str, r: Range<u64>) -> Result<Bytes, CogError> {
    let want = r.end - r.start;
    let b = loc.store.get_range(&loc.path, r.clone()).await.map_err(|e| map_store_error(href, e))?;
    if b.len() as u64 != want {
        return Err(CogError::Truncated {
            href: href.to_string(),
            reason: format!("asked for bytes {}..{} and received {} bytes", r.start, r.end, b.len()),
        });
    }
    Ok(b)
}

/// Sorts `ranges` and merges those that overlap or are at most `gap` bytes apart.
pub(crate) fn coalesce(ranges: &[Range<u64>], gap: u64) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.iter().filter(|r| r.end > r.start).cloned().collect();
    sorted.sort_by_key(|r| (r.start, r.end));
    let mut out: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Fetches `ranges` with few requests: coalesced, issued concurrently (at most `concurrency` at
/// once), then sliced back in the order asked. Returns the bytes and the stats of this call.
pub(crate) async fn fetch_ranges(
    loc: &Location,
    href: &str,
    ranges: &[Range<u64>],
    gap: u64,
    concurrency: usize,
) -> Result<(Vec<Bytes>, RequestStats), CogError> {
    let merged = coalesce(ranges, gap);
    let fetched: Vec<Bytes> = futures::stream::iter(merged.iter().cloned().map(|r| fetch_range(loc, href, r)))
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    let stats = RequestStats { requests: merged.len() as u64, bytes: fetched.iter().map(|b| b.len() as u64).sum() };
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        if r.end <= r.start {
            out.push(Bytes::new());
            continue;
        }
        // The merged range holding r: the last one starting at or before r.start.
        let i = merged.partition_point(|m| m.start <= r.start).saturating_sub(1);
        match (merged.get(i), fetched.get(i)) {
            (Some(m), Some(b)) if m.start <= r.start && r.end <= m.end => {
                out.push(b.slice((r.start - m.start) as usize..(r.end - m.start) as usize));
            }
            _ => {
                return Err(CogError::Fetch {
                    href: href.to_string(),
                    reason: format!("range {r:?} lost in coalescing"),
                });
            }
        }
    }
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescing_merges_near_ranges_only() {
        let r = coalesce(&[50..60, 0..10, 12..20, 100..110, 5..8, 70..70], 2);
        assert_eq!(r, vec![0..20, 50..60, 100..110]);
        let r = coalesce(&[0..10, 30..40], 20);
        assert_eq!(r, vec![0..40]);
        assert_eq!(coalesce(&[], 5), Vec::<Range<u64>>::new());
        // Gap 0 still merges touching ranges.
        assert_eq!(coalesce(&[0..10, 10..20, 21..30], 0), vec![0..20, 21..30]);
    }

    #[tokio::test]
    async fn fetch_ranges_slices_back_in_order_and_counts() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let path = Path::from("a/b.tif");
        store.put(&path, data.clone().into()).await.unwrap();
        let loc = Location { store, path };
        let ranges = [9000..9100, 0..10, 20..30, 5000..5010, 7..12];
        let (got, stats) = fetch_ranges(&loc, "mem://a/b.tif", &ranges, 100, 4).await.unwrap();
        for (r, b) in ranges.iter().zip(&got) {
            assert_eq!(&b[..], &data[r.start as usize..r.end as usize]);
        }
        assert_eq!(stats.requests, 3);
        assert_eq!(stats.bytes, 30 + 10 + 100);
        let past_end = 9990..10_010;
        let err = fetch_ranges(&loc, "mem://a/b.tif", std::slice::from_ref(&past_end), 0, 1).await.unwrap_err();
        assert!(err.to_string().contains("mem://a/b.tif"), "{err}");
    }

    #[test]
    fn hrefs_resolve_to_stores_and_bad_ones_are_typed() {
        let s = Stores::new(FetchConfig::default());
        let a = s.resolve("https://example.com/a/b.tif").unwrap();
        let b = s.resolve("https://example.com/c.tif").unwrap();
        assert!(Arc::ptr_eq(&a.store, &b.store), "same host shares one store");
        assert_eq!(a.path.as_ref(), "a/b.tif");
        let c = s.resolve("s3://bucket/key/x.tif").unwrap();
        assert_eq!(c.path.as_ref(), "key/x.tif");
        assert!(matches!(s.resolve("ftp://x/y"), Err(CogError::InvalidHref { .. })));
        // gs:// and az:// go to their cloud's store, one per bucket or container.
        let g = s.resolve("gs://bucket/tiles/x.tif").unwrap();
        assert_eq!(g.path.as_ref(), "tiles/x.tif");
        assert!(Arc::ptr_eq(&g.store, &s.resolve("gs://bucket/y.tif").unwrap().store));
        assert!(!Arc::ptr_eq(&g.store, &s.resolve("gs://other/y.tif").unwrap().store));
        assert!(matches!(s.resolve("gs:///x.tif"), Err(CogError::InvalidHref { .. })));
        assert!(matches!(s.resolve("az:///x.tif"), Err(CogError::InvalidHref { .. })));
        assert!(matches!(s.resolve("/definitely/not/here.tif"), Err(CogError::NotFound { .. })));
    }
}
