//! STAC API item search over HTTP: POST with a GET fallback, `next`-link paging, retries.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde_json::{Map, Value};
use url::Url;

use super::{CatalogError, Scene, SearchRequest, scenes_from_items};
use crate::cloud::{ClientConfig, retries};

/// How the first search request is sent. Next links say their own method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchMethod {
    /// POST a JSON body; if the server answers 404 or 405 to that, use GET. POST first because
    /// an `intersects` polygon in a query string can exceed URL length limits.
    #[default]
    Auto,
    Post,
    Get,
}

/// Retries of transient failures: 429, 5xx, timeouts, refused / reset connections, bodies cut
/// short. Other 4xx answers are the request's fault and are never retried.
///
/// Defaults: 5 retries, delays of about 0.2, 0.4, 0.8, 1.6, 3.2 s (each between half and all of
/// `base * 2^n`, randomised so that many workers hitting one throttled catalog do not retry in
/// lock-step): a dead endpoint fails after 3 to 6 s of waiting in all, while a catalog that
/// throttles for a few seconds is ridden out. A `Retry-After` header lengthens the wait (up to 2 minutes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    /// Ceiling of one computed delay (before `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 5, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(30) }
    }
}

/// Longest `Retry-After` honoured: a server asking for more is treated as asking for this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Options of an [`ApiClient`].
#[derive(Debug, Clone, PartialEq)]
pub struct ApiOptions {
    pub method: SearchMethod,
    pub retry: RetryPolicy,
    /// Runaway-paging guard: a search needing more pages fails with
    /// [`CatalogError::TooManyPages`] rather than silently returning part of the answer.
    pub max_pages: usize,
    /// Silence bound: a request that receives nothing for this long (no answer head, or a
    /// pause in the body) is abandoned and retried. A search computes its whole answer before
    /// it sends the first byte, so this must exceed the catalog's slowest search: pgstac
    /// searches with CQL2 filters over large collections can take tens of seconds.
    /// Default: [`SEARCH_SILENCE_FACTOR`] times every client's ([`ClientConfig::current`],
    /// `--request-timeout`).
    pub request_timeout: Duration,
    /// Bound on a whole request, however steadily it progresses.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Sent with every request (e.g. an API key); next links may add their own.
    pub headers: Vec<(String, String)>,
}

/// A search's silence bound in silence bounds of the other requests: a STAC API computes the
/// whole page before it sends its first byte, a COG or store answer starts at once.
pub const SEARCH_SILENCE_FACTOR: u32 = 4;

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions::from_client(&ClientConfig::current())
    }
}

impl ApiOptions {
    /// The defaults with the timeouts of the object store clients (`client`), so that the
    /// catalog and the COG reader give up on a silent server alike.
    pub fn from_client(client: &ClientConfig) -> Self {
        ApiOptions {
            method: SearchMethod::Auto,
            retry: RetryPolicy::default(),
            max_pages: 1000,
            request_timeout: client.request_timeout.saturating_mul(SEARCH_SILENCE_FACTOR),
            timeout: client.total_timeout,
            connect_timeout: client.connect_timeout,
            headers: Vec::new(),
        }
    }
}

/// A STAC API endpoint. Cheap to clone (the HTTP connection pool is shared).
#[derive(Debug, Clone)]
pub struct ApiClient {
    root: Url,
    http: reqwest::Client,
    options: ApiOptions,
}

/// One page request; equality is what the paging-loop guard compares.
#[derive(Debug, Clone, PartialEq)]
enum PageRequest {
    Get { url: Url, headers: Vec<(String, String)> },
    Post { url: Url, body: Value, headers: Vec<(String, String)> },
}

impl PageRequest {
    fn url(&self) -> &Url {
        match self {
            PageRequest::Get { url, .. } | PageRequest::Post { url, .. } => url,
        }
    }

    fn headers(&self) -> &[(String, String)] {
        match self {
            PageRequest::Get { headers, .. } | PageRequest::Post { headers, .. } => headers,
        }
    }

    /// Identity for loop detection (serde_json objects print their keys in a fixed order).
    fn key(&self) -> String {
        match self {
            PageRequest::Get { url, headers } => format!("GET {url} {headers:?}"),
            PageRequest::Post { url, body, headers } => format!("POST {url} {body} {headers:?}"),
        }
    }
}

/// A `rel: next` link, validated.
#[derive(Debug)]
struct NextLink {
    href: Url,
    post: bool,
    body: Option<Map<String, Value>>,
    merge: bool,
    headers: Vec<(String, String)>,
}

/// Why one attempt failed, and whether trying again may help.
enum Failure {
    /// 429, 5xx, a timeout, a reset, an answer cut short.
    Transient {
        err: CatalogError,
        retry_after: Option<Duration>,
    },
    /// No connection could be made (refused, no route, unknown host): transient for a search,
    /// but the landing-page check reports it at once.
    Unconnected(CatalogError),
    Permanent(CatalogError),
}

impl ApiClient {
    /// A client for the STAC API whose root (landing page) is `url`; searches go to `{url}/search`.
    pub fn new(url: &str, options: ApiOptions) -> Result<Self, CatalogError> {
        let bad = |reason: String| CatalogError::InvalidRequest { field: "stac_url".into(), reason };
        let mut root = Url::parse(url.trim()).map_err(|e| {
            bad(format!("{url:?} is not a URL ({e}); give e.g. https://earth-search.aws.element84.com/v1"))
        })?;
        if !matches!(root.scheme(), "http" | "https") {
            return Err(bad(format!("{url:?} is not an http(s) URL")));
        }
        // `Url::join` drops the last path segment unless the path ends with '/': `…/v1` → `…/v1/`
        if !root.path().ends_with('/') {
            let p = format!("{}/", root.path());
            root.set_path(&p);
        }
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .read_timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            .user_agent(concat!("eocube/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CatalogError::Unreachable { url: root.to_string(), reason: crate::error_chain(&e) })?;
        Ok(ApiClient { root, http, options })
    }

    /// The API root, with a trailing slash.
    pub fn url(&self) -> &Url {
        &self.root
    }

    pub fn options(&self) -> &ApiOptions {
        &self.options
    }

    fn search_url(&self) -> Result<Url, CatalogError> {
        self.root.join("search").map_err(|e| CatalogError::InvalidRequest {
            field: "stac_url".into(),
            reason: format!("{} cannot take a /search path ({e})", self.root),
        })
    }

    fn get_request(&self, req: &SearchRequest) -> Result<PageRequest, CatalogError> {
        let mut url = self.search_url()?;
        url.query_pairs_mut().extend_pairs(req.to_query());
        Ok(PageRequest::Get { url, headers: self.options.headers.clone() })
    }

    /// The landing page: the check `eocube build` makes before any work. A wrong or dead
    /// --stac-url (no connection, a 404, not a STAC API) fails at once, in seconds rather than
    /// after the first job's retries; a catalog that answers with a transient failure (503,
    /// 429, a stall, a reset) is retried as a search is.
    pub async fn landing(&self) -> Result<Value, CatalogError> {
        let req = PageRequest::Get { url: self.root.clone(), headers: self.options.headers.clone() };
        let page = self.fetch_with(&req, false).await?;
        let bad = |reason: &str| CatalogError::InvalidJson { url: self.root.to_string(), reason: reason.into() };
        if !page.is_object() {
            return Err(bad("the landing page is not a JSON object"));
        }
        let links =
            page.get("links").and_then(Value::as_array).ok_or_else(|| bad("the landing page has no `links`"))?;
        let searchable = links.iter().any(|l| l.get("rel").and_then(Value::as_str) == Some("search"))
            || page
                .get("conformsTo")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().filter_map(Value::as_str).any(|c| c.contains("item-search")));
        if !searchable {
            return Err(bad(
                "the landing page offers no item search (no `search` link, no item-search conformance class)",
            ));
        }
        Ok(page)
    }

    /// Every scene matching `req`, with the assets of `bands`, sorted by (datetime, id).
    pub async fn search(&self, req: &SearchRequest, bands: &[String]) -> Result<Vec<Scene>, CatalogError> {
        scenes_from_items(&self.search_items(req).await?, bands)
    }

    /// Every item matching `req` as raw JSON, all pages, in the server's order.
    pub async fn search_items(&self, req: &SearchRequest) -> Result<Vec<Value>, CatalogError> {
        req.validate()?;
        let mut current = match self.options.method {
            SearchMethod::Get => self.get_request(req)?,
            SearchMethod::Auto | SearchMethod::Post => PageRequest::Post {
                url: self.search_url()?,
                body: req.to_body(),
                headers: self.options.headers.clone(),
            },
        };
        let mut seen = HashSet::from([current.key()]);
        let mut items = Vec::new();
        let mut pages = 0usize;
        loop {
            let page = match self.fetch(&current).await {
                // servers without POST search answer 405 (or 404 for an unknown route)
                Err(CatalogError::Http { status: 404 | 405, .. })
                    if pages == 0
                        && self.options.method == SearchMethod::Auto
                        && matches!(current, PageRequest::Post { .. }) =>
                {
                    current = self.get_request(req)?;
                    seen.insert(current.key());
                    self.fetch(&current).await?
                }
                r => r?,
            };
            pages += 1;
            let url = current.url().to_string();
            let (features, next) = parse_page(current.url(), page)?;
            if let Some((item, collection)) = features.iter().find_map(|f| {
                let c = f.get("collection")?.as_str()?;
                (!req.collections.iter().any(|r| r == c))
                    .then(|| (f.get("id").and_then(Value::as_str).unwrap_or("<no id>").to_string(), c.to_string()))
            }) {
                return Err(CatalogError::UnexpectedCollection {
                    url,
                    item,
                    collection,
                    requested: req.collections.clone(),
                });
            }
            // an empty page ends the search even with a next link (some servers always link one)
            if features.is_empty() {
                break;
            }
            items.extend(features);
            let Some(link) = next else { break };
            let next = self.next_request(req, &current, link);
            if !seen.insert(next.key()) {
                return Err(CatalogError::PagingLoop { url: next.url().to_string() });
            }
            if pages >= self.options.max_pages {
                return Err(CatalogError::TooManyPages { url, max_pages: self.options.max_pages });
            }
            current = next;
        }
        Ok(items)
    }

    /// The request a next link asks for (STAC API item search, "Paging"): GET its href, or POST
    /// to it with its `body` (merged into the current body when `merge` is true, replacing it
    /// otherwise) and `headers` (likewise).
    fn next_request(&self, req: &SearchRequest, current: &PageRequest, link: NextLink) -> PageRequest {
        let mut headers = if link.merge { current.headers().to_vec() } else { self.options.headers.clone() };
        for (k, v) in link.headers {
            headers.retain(|(h, _)| !h.eq_ignore_ascii_case(&k));
            headers.push((k, v));
        }
        if !link.post {
            return PageRequest::Get { url: link.href, headers };
        }
        let current_body = match current {
            PageRequest::Post { body, .. } => body.clone(),
            // after the GET fallback, the body a POST link merges into is the search itself
            PageRequest::Get { .. } => req.to_body(),
        };
        let body = match (link.body, link.merge) {
            (Some(b), true) => {
                let mut merged = current_body.as_object().cloned().unwrap_or_default();
                merged.extend(b);
                Value::Object(merged)
            }
            (Some(b), false) => Value::Object(b),
            // no body at all: nothing to replace with, so resend the current one
            (None, _) => current_body,
        };
        PageRequest::Post { url: link.href, body, headers }
    }

    /// One request, retried per the policy; the JSON answer or the last failure.
    async fn fetch(&self, r: &PageRequest) -> Result<Value, CatalogError> {
        self.fetch_with(r, true).await
    }

    /// [`ApiClient::fetch`]; `retry_unconnected`: whether a failure to connect is retried.
    async fn fetch_with(&self, r: &PageRequest, retry_unconnected: bool) -> Result<Value, CatalogError> {
        let policy = self.options.retry;
        let mut attempt = 0u32;
        loop {
            let failure = match self.try_once(r).await {
                Ok(v) => return Ok(v),
                Err(Failure::Unconnected(err)) if retry_unconnected => Failure::Transient { err, retry_after: None },
                Err(f) => f,
            };
            match failure {
                Failure::Permanent(e) | Failure::Unconnected(e) => return Err(e),
                Failure::Transient { err, retry_after } => {
                    retries::note();
                    if attempt >= policy.max_retries {
                        return Err(err);
                    }
                    tokio::time::sleep(backoff(&policy, attempt, retry_after)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// A failed request's reason; a timeout names the bounds and the setting that moves them.
    fn describe(&self, e: &reqwest::Error) -> String {
        // reqwest's own message is terse ("error sending request"); its sources say why.
        let msg = crate::error_chain(e);
        if !e.is_timeout() {
            return msg;
        }
        let o = &self.options;
        format!(
            "timed out: nothing received for {} s, or the whole request took over {} s; raise `request-timeout` if \
             the catalog is slow rather than stuck ({msg})",
            o.request_timeout.as_secs_f64(),
            o.timeout.as_secs_f64()
        )
    }

    async fn try_once(&self, r: &PageRequest) -> Result<Value, Failure> {
        let url = r.url().to_string();
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/geo+json, application/json"));
        for (k, v) in r.headers() {
            let (Ok(name), Ok(value)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) else {
                return Err(Failure::Permanent(CatalogError::InvalidJson {
                    url,
                    reason: format!("header {k:?}: {v:?} (from options or a next link) is not a valid HTTP header"),
                }));
            };
            headers.insert(name, value);
        }
        let builder = match r {
            PageRequest::Get { url, .. } => self.http.get(url.clone()),
            PageRequest::Post { url, body, .. } => {
                self.http.post(url.clone()).header(CONTENT_TYPE, "application/json").body(body.to_string())
            }
        };
        let resp = builder.headers(headers).send().await.map_err(|e| {
            let err = CatalogError::Unreachable { url: url.clone(), reason: self.describe(&e) };
            if e.is_builder() {
                Failure::Permanent(err)
            } else if e.is_connect() {
                Failure::Unconnected(err)
            } else {
                Failure::Transient { err, retry_after: None }
            }
        })?;
        let status = resp.status();
        let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let bytes = resp.bytes().await.map_err(|e| Failure::Transient {
            err: CatalogError::Unreachable {
                url: url.clone(),
                reason: format!("the answer was cut short ({})", self.describe(&e)),
            },
            retry_after: None,
        })?;
        if !status.is_success() {
            let err = CatalogError::Http {
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            };
            return Err(if status.as_u16() == 429 || status.is_server_error() {
                Failure::Transient { err, retry_after }
            } else {
                Failure::Permanent(err)
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Failure::Permanent(CatalogError::InvalidJson { url, reason: e.to_string() }))
    }
}

/// The look a build takes before any job (`catalog::probe`): kept apart from the paging above.
impl ApiClient {
    /// The first page of the search `req` (POST, or GET where POST is not offered) and whether
    /// the server links a next one. Items of a collection the search did not ask for are refused
    /// as in [`ApiClient::search_items`].
    pub async fn first_page(&self, req: &SearchRequest) -> Result<(Vec<Value>, bool), CatalogError> {
        req.validate()?;
        let first = match self.options.method {
            SearchMethod::Get => self.get_request(req)?,
            SearchMethod::Auto | SearchMethod::Post => PageRequest::Post {
                url: self.search_url()?,
                body: req.to_body(),
                headers: self.options.headers.clone(),
            },
        };
        let (page, url) = match self.fetch(&first).await {
            Err(CatalogError::Http { status: 404 | 405, .. })
                if self.options.method == SearchMethod::Auto && matches!(first, PageRequest::Post { .. }) =>
            {
                let get = self.get_request(req)?;
                (self.fetch(&get).await?, get.url().clone())
            }
            r => (r?, first.url().clone()),
        };
        let (features, next) = parse_page(&url, page)?;
        for f in &features {
            if let Some(c) = f.get("collection").and_then(Value::as_str)
                && !req.collections.iter().any(|r| r == c)
            {
                return Err(CatalogError::UnexpectedCollection {
                    url: url.to_string(),
                    item: f.get("id").and_then(Value::as_str).unwrap_or("<no id>").to_string(),
                    collection: c.to_string(),
                    requested: req.collections.clone(),
                });
            }
        }
        Ok((features, next.is_some()))
    }

    /// The JSON document at `path` under the root (e.g. `collections/x`), retried as a search
    /// page is; `None` when the server answers 404 (it has no such document).
    pub async fn get_json(&self, path: &str) -> Result<Option<Value>, CatalogError> {
        let url = self.root.join(path).map_err(|e| CatalogError::InvalidRequest {
            field: "stac_url".into(),
            reason: format!("{} cannot take the path {path:?} ({e})", self.root),
        })?;
        match self.fetch(&PageRequest::Get { url, headers: self.options.headers.clone() }).await {
            Ok(v) => Ok(Some(v)),
            Err(CatalogError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The features and the next link of one search answer.
fn parse_page(url: &Url, page: Value) -> Result<(Vec<Value>, Option<NextLink>), CatalogError> {
    let bad = |reason: String| CatalogError::InvalidJson { url: url.to_string(), reason };
    let Value::Object(mut page) = page else {
        return Err(bad("the answer is not a JSON object (an item search answers a FeatureCollection)".into()));
    };
    let features = match page.remove("features") {
        Some(Value::Array(f)) => f,
        _ => return Err(bad("the answer has no `features` array; is this a STAC API item search endpoint?".into())),
    };
    let links = match page.get("links") {
        None | Some(Value::Null) => return Ok((features, None)),
        Some(Value::Array(l)) => l,
        Some(_) => return Err(bad("`links` is not an array".into())),
    };
    let Some(link) = links.iter().find(|l| l.get("rel").and_then(Value::as_str) == Some("next")) else {
        return Ok((features, None));
    };
    let href = link
        .get("href")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("the next link {link} has no `href` string")))?;
    let href = url.join(href).map_err(|e| bad(format!("the next link href {href:?} is not a URL ({e})")))?;
    let post = match link.get("method") {
        None | Some(Value::Null) => false,
        Some(Value::String(m)) if m.eq_ignore_ascii_case("GET") => false,
        Some(Value::String(m)) if m.eq_ignore_ascii_case("POST") => true,
        Some(m) => return Err(bad(format!("the next link method {m} is neither GET nor POST"))),
    };
    let body = match link.get("body") {
        None | Some(Value::Null) => None,
        Some(Value::Object(b)) => Some(b.clone()),
        Some(b) => return Err(bad(format!("the next link body {b} is not a JSON object"))),
    };
    let merge = match link.get("merge") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(m)) => *m,
        Some(m) => return Err(bad(format!("the next link `merge` {m} is not true or false"))),
    };
    let headers = match link.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(h)) => h
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                // a header may be given as an array of values; HTTP joins them with commas
                Value::Array(a) if a.iter().all(Value::is_string) => {
                    Ok((k.clone(), a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")))
                }
                _ => Err(bad(format!("the next link header {k:?} is {v}, not a string"))),
            })
            .collect::<Result<_, _>>()?,
        Some(h) => return Err(bad(format!("the next link headers {h} are not a JSON object"))),
    };
    Ok((features, Some(NextLink { href, post, body, merge, headers })))
}

/// One search answer handled as [`ApiClient::search_items`] handles it, without the network:
/// the body decoded, the page parsed, its `next` link turned into the next request (after a POST
/// search, or after the GET fallback when the body's length is odd) and the features into
/// scenes. For the `stac_page` fuzz target (`crate::fuzz`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn page_step(body: &[u8], bands: &[String]) -> Result<(), CatalogError> {
    static CLIENT: std::sync::OnceLock<Option<ApiClient>> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| ApiClient::new("https://stac.example/v1", ApiOptions::default()).ok());
    let Some(client) = client else { return Ok(()) };
    let req = SearchRequest::new(&["sentinel-2-c1-l2a"], DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
    let current = if body.len().is_multiple_of(2) {
        PageRequest::Post { url: client.search_url()?, body: req.to_body(), headers: client.options.headers.clone() }
    } else {
        client.get_request(&req)?
    };
    let page = serde_json::from_slice(body)
        .map_err(|e| CatalogError::InvalidJson { url: current.url().to_string(), reason: e.to_string() })?;
    let (features, next) = parse_page(current.url(), page)?;
    if let Some(link) = next {
        let _ = client.next_request(&req, &current, link).key();
    }
    scenes_from_items(&features, bands).map(|_| ())
}

/// The wait before retry number `attempt + 1`: `base * 2^attempt`, capped at `max_delay`, then
/// jittered to between half and all of that; at least `Retry-After` when the server sent one.
fn backoff(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = policy.base_delay.saturating_mul(2u32.saturating_pow(attempt.min(20))).min(policy.max_delay);
    let jittered = exp.mul_f64(0.5 + 0.5 * crate::unit_random());
    match retry_after {
        Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 section 10.2.3).
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    let now: DateTime<Utc> = SystemTime::now().into();
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_honours_retry_after() {
        let p = RetryPolicy::default();
        for attempt in 0..5 {
            let full = Duration::from_millis(200 * (1 << attempt));
            for _ in 0..20 {
                let d = backoff(&p, attempt, None);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        assert!(backoff(&p, 30, None) <= p.max_delay);
        assert_eq!(backoff(&p, 0, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(backoff(&p, 0, Some(Duration::from_secs(3600))), MAX_RETRY_AFTER);
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn root_url_gets_a_trailing_slash_so_search_joins_under_it() {
        let c = ApiClient::new("https://earth-search.aws.element84.com/v1", ApiOptions::default()).unwrap();
        assert_eq!(c.search_url().unwrap().as_str(), "https://earth-search.aws.element84.com/v1/search");
        assert!(matches!(
            ApiClient::new("ftp://example.com", ApiOptions::default()),
            Err(CatalogError::InvalidRequest { .. })
        ));
        assert!(matches!(ApiClient::new("not a url", ApiOptions::default()), Err(CatalogError::InvalidRequest { .. })));
    }

    #[test]
    fn earth_search_page_next_link_is_a_post_without_merge() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/stac/earthsearch_v1_search_page1_cql2_filter_cloud_lte40.json"
        ))
        .unwrap();
        let url = Url::parse("https://earth-search.aws.element84.com/v1/search").unwrap();
        let (features, next) = parse_page(&url, serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(features.len(), 10);
        let next = next.unwrap();
        assert!(next.post);
        assert!(!next.merge);
        assert_eq!(next.href.as_str(), "https://earth-search.aws.element84.com/v1/search");
        let body = next.body.clone().unwrap();
        assert_eq!(body["next"], "2025-07-31T13:03:25.899000Z,S2B_T24MVV_20250731T130245_L2A,sentinel-2-c1-l2a");

        // merge: false replaces the body (STAC API spec); merge: true would keep the search
        let c = ApiClient::new("https://earth-search.aws.element84.com/v1", ApiOptions::default()).unwrap();
        let req = SearchRequest::new(&["sentinel-2-c1-l2a"], DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        let current = PageRequest::Post { url: url.clone(), body: req.to_body(), headers: vec![] };
        match c.next_request(&req, &current, next) {
            PageRequest::Post { body, .. } => assert_eq!(body, Value::Object(body_only_next(&body))),
            other => panic!("expected a POST, got {other:?}"),
        }
        let merged = NextLink { href: url.clone(), post: true, body: Some(body), merge: true, headers: vec![] };
        match c.next_request(&req, &current, merged) {
            PageRequest::Post { body, .. } => {
                assert_eq!(body["collections"][0], "sentinel-2-c1-l2a");
                assert!(body["next"].is_string());
            }
            other => panic!("expected a POST, got {other:?}"),
        }
    }

    fn body_only_next(b: &Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("next".into(), b["next"].clone());
        m
    }

    #[test]
    fn relative_next_links_resolve_and_bad_links_are_typed_errors() {
        let url = Url::parse("http://h/api/search?x=1").unwrap();
        let page = serde_json::json!({"features": [], "links": [{"rel": "next", "href": "search?token=2"}]});
        let (_, next) = parse_page(&url, page).unwrap();
        assert_eq!(next.unwrap().href.as_str(), "http://h/api/search?token=2");
        for bad in [
            serde_json::json!({"type": "FeatureCollection"}),
            serde_json::json!([1, 2]),
            serde_json::json!({"features": [], "links": [{"rel": "next"}]}),
            serde_json::json!({"features": [], "links": [{"rel": "next", "href": "x", "method": "PUT"}]}),
            serde_json::json!({"features": [], "links": [{"rel": "next", "href": "x", "body": [1]}]}),
            serde_json::json!({"features": [], "links": [{"rel": "next", "href": "x", "merge": "yes"}]}),
            serde_json::json!({"features": [], "links": "none"}),
        ] {
            match parse_page(&url, bad.clone()) {
                Err(CatalogError::InvalidJson { url: u, .. }) => assert_eq!(u, url.to_string()),
                other => panic!("{bad}: expected InvalidJson, got {other:?}"),
            }
        }
    }
}
