//! The HTTP layer: the routes of the contract over axum, the cubes named on the command line,
//! their views (opened once, pinned versions too) and the safety bounds of every request.
//!
//! Owns: routing, the cube registry (ids are looked up, never joined to paths), version
//! resolution and caching headers, the token, CORS, the time and pixel bounds, and the JSON
//! error answers. Must not touch: tile maths (`tms`), pixels (`render`), images (`encode`),
//! documents (`docs`), the pages (`pages`, helper W's) or how chunks are read (`store::view`).
//!
//! ```text
//! request ─▶ guard (token, CORS, timeout, panic → 500) ─▶ route ─▶ Cube::view(version)
//!   tile: plan (tms) ─▶ CubeView::read per band ─▶ sample + render + encode (blocking pool)
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{FutureExt, StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::docs::{self, TMS_ID, TileSetInfo};
use super::encode::{self, Format};
use super::pages;
use super::params::{self, ParamError, Query};
use super::render::{self, DEFAULT_RESCALE, Style};
use super::tms::{self, CubeFrame, TILE_SIZE, TileError, TileId};
use crate::grid::{Crs, GeoBox, PixelWindow, Transformer};
use crate::store::view::{ChunkCache, CubeView, Resolved, VersionRef};
use crate::store::{OutLocation, StoreError};

/// How the server runs; the defaults are the safe ones (`eocube serve --help` says each).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// `Access-Control-Allow-Origin` to send; `None`: no CORS headers (browsers refuse
    /// cross-origin reads).
    pub cors: Option<String>,
    /// Required as `Authorization: Bearer T` or `?token=T` on every request but `/assets/`.
    pub token: Option<String>,
    /// Bound of the decoded-chunk cache, in bytes.
    pub cache_bytes: usize,
    /// Level pixels one tile (or thumbnail) may read, per band.
    pub max_pixels: usize,
    /// Time one request may take before it is answered 503.
    pub timeout: Duration,
    /// How long a branch (or tag) stays resolved to one snapshot before it is looked up again.
    pub branch_ttl: Duration,
    /// Tiles rendered at once (each holds its windows in memory).
    pub concurrency: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cors: None,
            token: None,
            cache_bytes: 512 << 20,
            max_pixels: tms::DEFAULT_MAX_PIXELS,
            timeout: Duration::from_secs(30),
            branch_ttl: Duration::from_secs(10),
            concurrency: 8,
        }
    }
}

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cube {arg:?}: {reason}")]
    BadCube { arg: String, reason: String },
    #[error("cube id {id:?} is given twice; give each cube its own id with ID=LOCATION")]
    DuplicateId { id: String },
    #[error("no cube to serve; name one or more, e.g. eocube serve vermont.zarr")]
    NoCubes,
    #[error("cube {id} ({location}): {source}")]
    Open { id: String, location: String, source: Box<StoreError> },
    #[error("cannot listen on {addr}: {source}; choose another --addr (port 0 picks a free one)")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A cube named on the command line: its id and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CubeArg {
    pub id: String,
    pub location: OutLocation,
}

/// Longest cube id.
const MAX_ID_LEN: usize = 64;

/// Whether `s` may be a cube id: letters, digits, `.`, `_`, `-`, not starting with `.`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Parses `ID=LOCATION` or `LOCATION` for each argument; a derived id is the last path
/// component without `.zarr` (other characters become `-`), made unique with `-2`, `-3`...
pub fn cube_args(args: &[String]) -> Result<Vec<CubeArg>, ServeError> {
    if args.is_empty() {
        return Err(ServeError::NoCubes);
    }
    let mut out: Vec<CubeArg> = Vec::new();
    for arg in args {
        let (explicit, loc) = match arg.split_once('=') {
            Some((id, rest)) if !id.contains('/') && !id.contains(':') && !rest.is_empty() => (Some(id), rest),
            _ => (None, arg.as_str()),
        };
        let location =
            OutLocation::parse(loc).map_err(|e| ServeError::BadCube { arg: arg.clone(), reason: e.to_string() })?;
        let id = match explicit {
            Some(id) if valid_id(id) => id.to_string(),
            Some(id) => {
                return Err(ServeError::BadCube {
                    arg: arg.clone(),
                    reason: format!(
                        "{id:?} is not a valid id: use letters, digits, '.', '_' and '-' (at most {MAX_ID_LEN}, not starting with '.')"
                    ),
                });
            }
            None => {
                let base = derived_id(loc);
                let mut id = base.clone();
                let mut n = 2;
                while out.iter().any(|c| c.id == id) {
                    id = format!("{base}-{n}");
                    n += 1;
                }
                id
            }
        };
        if out.iter().any(|c| c.id == id) {
            return Err(ServeError::DuplicateId { id });
        }
        out.push(CubeArg { id, location });
    }
    Ok(out)
}

fn derived_id(loc: &str) -> String {
    let last = loc.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let stem = last.strip_suffix(".zarr").unwrap_or(last);
    let mut id: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' { c } else { '-' })
        .collect();
    id = id.trim_start_matches('.').chars().take(MAX_ID_LEN).collect();
    if id.is_empty() { "cube".into() } else { id }
}

/// A cube view with what every request needs of it, computed once.
struct Opened {
    view: CubeView,
    levels: Vec<GeoBox>,
    frame: CubeFrame,
    zooms: (u32, u32),
    at: Instant,
    thumbnail: tokio::sync::OnceCell<Vec<u8>>,
}

impl Opened {
    async fn open(
        loc: &OutLocation,
        version: &VersionRef,
        cache: Arc<ChunkCache>,
        max_pixels: usize,
    ) -> Result<Opened, StoreError> {
        let view = CubeView::open(loc, version, cache).await?;
        let levels: Vec<GeoBox> = view.levels().iter().map(|l| l.geobox.clone()).collect();
        let for_zooms = levels.clone();
        // 25 tiles' worth of transforms: off the async threads.
        let (frame, zooms) = tokio::task::spawn_blocking(move || {
            let frame = CubeFrame::new(&for_zooms[0]);
            let zooms = tms::zoom_range(&frame, &for_zooms, max_pixels);
            (frame, zooms)
        })
        .await
        .map_err(|e| StoreError::Unsupported {
            location: loc.to_string(),
            what: format!("opening the view failed: {e}"),
        })?;
        Ok(Opened { view, levels, frame, zooms, at: Instant::now(), thumbnail: tokio::sync::OnceCell::new() })
    }

    /// Whether this view may be used as it is: a snapshot always, a branch or tag within the TTL.
    fn fresh(&self, ttl: Duration) -> bool {
        match self.view.resolved() {
            Resolved::Snapshot { .. } | Resolved::Plain => true,
            Resolved::Branch { .. } | Resolved::Tag { .. } => self.at.elapsed() < ttl,
        }
    }
}

/// Most pinned versions kept open per cube (more are opened again when asked for).
const MAX_PINNED: usize = 32;

struct Cube {
    id: String,
    location: OutLocation,
    default: tokio::sync::RwLock<Arc<Opened>>,
    pinned: Mutex<HashMap<String, Arc<Opened>>>,
    /// One refresh or open at a time per cube: concurrent requests wait for it instead of all
    /// opening the same version.
    opening: tokio::sync::Mutex<()>,
}

struct App {
    cubes: Vec<Arc<Cube>>,
    cache: Arc<ChunkCache>,
    opts: ServeOptions,
    renders: tokio::sync::Semaphore,
}

/// The server, its cubes opened, not yet listening.
pub struct Server {
    app: Arc<App>,
}

/// A listening server.
pub struct Listening {
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl Server {
    /// Opens every cube's default version (a cube that cannot be opened stops the start).
    pub async fn open(cubes: Vec<CubeArg>, opts: ServeOptions) -> Result<Server, ServeError> {
        if cubes.is_empty() {
            return Err(ServeError::NoCubes);
        }
        let cache = ChunkCache::new(opts.cache_bytes);
        let mut out = Vec::new();
        for c in cubes {
            let opened = Opened::open(&c.location, &VersionRef::Default, cache.clone(), opts.max_pixels)
                .await
                .map_err(|source| ServeError::Open {
                    id: c.id.clone(),
                    location: c.location.to_string(),
                    source: Box::new(source),
                })?;
            out.push(Arc::new(Cube {
                id: c.id,
                location: c.location,
                default: tokio::sync::RwLock::new(Arc::new(opened)),
                pinned: Mutex::new(HashMap::new()),
                opening: tokio::sync::Mutex::new(()),
            }));
        }
        let renders = tokio::sync::Semaphore::new(opts.concurrency.max(1));
        Ok(Server { app: Arc::new(App { cubes: out, cache, opts, renders }) })
    }

    /// The ids of the cubes served, in the order given.
    pub fn ids(&self) -> Vec<String> {
        self.app.cubes.iter().map(|c| c.id.clone()).collect()
    }

    pub async fn bind(self) -> Result<Listening, ServeError> {
        let addr = self.app.opts.addr;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
        Ok(Listening { app: self.app, listener, addr })
    }
}

impl Listening {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn serve_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let router = router(self.app);
        axum::serve(self.listener, router).with_graceful_shutdown(shutdown).await
    }
}

fn router(app: Arc<App>) -> Router {
    let cube = Router::new()
        .route("/", get(catalog_page))
        .route("/conformance", get(conformance))
        .route("/tileMatrixSets", get(tile_matrix_sets))
        .route("/tileMatrixSets/{tms}", get(tile_matrix_set))
        .route("/cubes", get(list_cubes))
        .route("/cubes/{id}", get(cube_detail))
        .route("/cubes/{id}/map", get(map_page))
        .route("/cubes/{id}/thumbnail.png", get(thumbnail))
        .route("/cubes/{id}/WMTSCapabilities.xml", get(wmts))
        .route("/cubes/{id}/point/{lonlat}", get(point))
        .route("/cubes/{id}/tiles", get(tilesets))
        .route("/cubes/{id}/tiles/{tms}", get(tileset))
        .route("/cubes/{id}/tiles/{tms}/tilejson.json", get(tilejson))
        .route("/cubes/{id}/tiles/{tms}/{z}/{x}/{file}", get(tile))
        .route("/assets/{name}", get(asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app.clone());
    cube.layer(middleware::from_fn_with_state(app, guard))
}

// ---------------------------------------------------------------------------------------------
// Errors and responses
// ---------------------------------------------------------------------------------------------

/// An error answer: status and a message that says what to do.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message }).to_string();
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

type ApiResult = Result<Response, ApiError>;

fn store_error(cube: &str, e: &StoreError) -> ApiError {
    let msg = format!("cube {cube}: {}", crate::error_chain(e));
    match e {
        StoreError::Icechunk { op: "open version", .. } | StoreError::NotFound { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, msg)
        }
        StoreError::Unsupported { .. } => ApiError::new(StatusCode::BAD_REQUEST, msg),
        e if e.is_transient() => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("{msg}; try again")),
        _ => {
            eprintln!("serve: {msg}");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg)
        }
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such page {}; the API is /cubes, /cubes/ID, /cubes/ID/tiles/WebMercatorQuad/Z/X/Y.png, /cubes/ID/point/LON,LAT (docs/serve.md)",
            short(req.uri().path())
        ),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this server is read-only: use GET")
}

/// A client-given string cut for messages.
fn short(s: &str) -> String {
    let mut t: String = s.chars().take(80).filter(|c| !c.is_control()).collect();
    if s.chars().count() > 80 {
        t.push_str("...");
    }
    t
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, format!("malformed path: {e}; percent-encode UTF-8 only"))
}

fn json_response(v: &Value, cache: &CacheHeaders) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    cache.apply(r.headers_mut());
    r
}

fn bytes_response(bytes: Vec<u8>, content_type: &'static str, cache: &CacheHeaders) -> Response {
    let mut r = Response::new(Body::from(bytes));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    cache.apply(r.headers_mut());
    r
}

/// `Cache-Control` and `ETag` of an answer from one view.
struct CacheHeaders {
    control: String,
    etag: Option<String>,
}

impl CacheHeaders {
    fn of(resolved: &Resolved, ttl: Duration) -> CacheHeaders {
        let short = format!("public, max-age={}", ttl.as_secs());
        match resolved {
            // A snapshot never changes: its URL may be cached for ever.
            Resolved::Snapshot { snapshot } => CacheHeaders {
                control: "public, max-age=31536000, immutable".into(),
                etag: Some(format!("\"{snapshot}\"")),
            },
            Resolved::Branch { snapshot, .. } | Resolved::Tag { snapshot, .. } => {
                CacheHeaders { control: short, etag: Some(format!("\"{snapshot}\"")) }
            }
            Resolved::Plain => CacheHeaders { control: short, etag: None },
        }
    }

    fn none() -> CacheHeaders {
        CacheHeaders { control: "no-cache".into(), etag: None }
    }

    fn apply(&self, h: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.control) {
            h.insert(header::CACHE_CONTROL, v);
        }
        if let Some(etag) = self.etag.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
            h.insert(header::ETAG, etag);
        }
    }

    /// The 304 answer when the client already has this version.
    fn not_modified(&self, req: &HeaderMap) -> Option<Response> {
        let etag = self.etag.as_deref()?;
        let inm = req.get(header::IF_NONE_MATCH)?.to_str().ok()?;
        if inm.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            self.apply(r.headers_mut());
            return Some(r);
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// The guard: token, CORS, time bound, panics
// ---------------------------------------------------------------------------------------------

async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let cors = app.opts.cors.clone();
    if req.method() == Method::OPTIONS {
        let mut r = if cors.is_some() {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        } else {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "cross-origin requests are off; start the server with --cors ORIGIN",
            )
            .into_response()
        };
        add_cors(r.headers_mut(), cors.as_deref(), true);
        return r;
    }
    if let Some(token) = app.opts.token.as_deref()
        && !req.uri().path().starts_with("/assets/")
        && !authorized(&req, token)
    {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this server needs its token: send the header Authorization: Bearer TOKEN or add ?token=TOKEN to the URL",
        )
        .into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        add_cors(r.headers_mut(), cors.as_deref(), false);
        return r;
    }
    let path = short(req.uri().path());
    let run = AssertUnwindSafe(next.run(req)).catch_unwind();
    let mut r = match tokio::time::timeout(app.opts.timeout, run).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => {
            eprintln!("serve: a request to {path} panicked");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error (an eocube bug, please report it)").into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{path} took longer than {} s; try again (the chunks read so far are cached), zoom in, or build overviews with `eocube overviews`",
                app.opts.timeout.as_secs_f64()
            ),
        )
        .into_response(),
    };
    add_cors(r.headers_mut(), cors.as_deref(), false);
    r
}

fn add_cors(h: &mut HeaderMap, origin: Option<&str>, preflight: bool) {
    let Some(v) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else { return };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("ETag"));
    if preflight {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, If-None-Match"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
}

/// Constant-time comparison: the time of a refusal says nothing of the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(req: &Request, token: &str) -> bool {
    if let Some(v) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(t) = v.strip_prefix("Bearer ")
        && same(t.trim().as_bytes(), token.as_bytes())
    {
        return true;
    }
    let query = req.uri().query().unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "token" && same(v.as_bytes(), token.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Cubes and versions
// ---------------------------------------------------------------------------------------------

/// Longest version name (snapshot ids are 20 characters, branch and tag names short).
const MAX_VERSION_LEN: usize = 128;

impl App {
    /// The cube and version of a path segment `{id}` or `{id}@{version}`.
    fn cube(&self, seg: &str) -> Result<(Arc<Cube>, VersionRef), ApiError> {
        let (id, version) = match seg.split_once('@') {
            Some((id, v)) => (id, Some(v)),
            None => (seg, None),
        };
        let cube = self.cubes.iter().find(|c| c.id == id).cloned().ok_or_else(|| {
            let ids: Vec<&str> = self.cubes.iter().map(|c| c.id.as_str()).collect();
            ApiError::new(StatusCode::NOT_FOUND, format!("no cube {:?}; this server has {}", short(id), ids.join(", ")))
        })?;
        let version = match version {
            None => VersionRef::Default,
            Some(v) if v.is_empty() || v.len() > MAX_VERSION_LEN || v.chars().any(|c| c.is_control()) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "version {:?}: give a snapshot id, tag or branch after '@' (at most {MAX_VERSION_LEN} characters)",
                        short(v)
                    ),
                ));
            }
            Some(v) => VersionRef::Named(v.to_string()),
        };
        Ok((cube, version))
    }

    /// The view of `cube` at `version`, opened once and shared; a branch is looked up again
    /// after the TTL.
    async fn view(&self, cube: &Cube, version: &VersionRef) -> Result<Arc<Opened>, ApiError> {
        let ttl = self.opts.branch_ttl;
        let open = |v: VersionRef| {
            let (loc, cache, max) = (cube.location.clone(), self.cache.clone(), self.opts.max_pixels);
            async move { Opened::open(&loc, &v, cache, max).await }
        };
        match version {
            VersionRef::Default => {
                let current = cube.default.read().await.clone();
                if current.fresh(ttl) {
                    return Ok(current);
                }
                let _one = cube.opening.lock().await;
                let current = cube.default.read().await.clone();
                if current.fresh(ttl) {
                    return Ok(current);
                }
                match open(VersionRef::Default).await {
                    Ok(new) => {
                        let new = Arc::new(new);
                        *cube.default.write().await = new.clone();
                        Ok(new)
                    }
                    // The branch cannot be looked up now: keep answering from what was read.
                    Err(e) => {
                        eprintln!(
                            "serve: cube {}: cannot refresh the default branch: {}",
                            cube.id,
                            crate::error_chain(&e)
                        );
                        Ok(current)
                    }
                }
            }
            VersionRef::Named(name) => {
                let cached =
                    |cube: &Cube| cube.pinned.lock().ok().and_then(|m| m.get(name).cloned()).filter(|o| o.fresh(ttl));
                if let Some(o) = cached(cube) {
                    return Ok(o);
                }
                let _one = cube.opening.lock().await;
                if let Some(o) = cached(cube) {
                    return Ok(o);
                }
                let opened = Arc::new(open(version.clone()).await.map_err(|e| store_error(&cube.id, &e))?);
                if let Ok(mut m) = cube.pinned.lock() {
                    if m.len() >= MAX_PINNED {
                        // Drop the stale ones first, then the oldest.
                        m.retain(|_, o| o.fresh(ttl));
                        if m.len() >= MAX_PINNED
                            && let Some(oldest) = m.iter().min_by_key(|(_, o)| o.at).map(|(k, _)| k.clone())
                        {
                            m.remove(&oldest);
                        }
                    }
                    m.insert(name.clone(), opened.clone());
                }
                Ok(opened)
            }
        }
    }
}

/// `http://host:port` of the request (its `Host` when that is a plain host name), for links.
fn base_url(app: &App, headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| {
        h.len() <= 255 && !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    });
    match host {
        Some(h) => format!("http://{h}"),
        None => format!("http://{}", app.opts.addr),
    }
}

// ---------------------------------------------------------------------------------------------
// Pages and static documents
// ---------------------------------------------------------------------------------------------

fn html(body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn catalog_page(State(app): State<Arc<App>>, RawQuery(q): RawQuery, headers: HeaderMap) -> ApiResult {
    let q = Query::parse(q.as_deref())?;
    let wants_json = q.get("f") == Some("json")
        || headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.starts_with("application/json"));
    if wants_json {
        let cubes: Vec<(String, String)> = app.cubes.iter().map(|c| (c.id.clone(), c.id.clone())).collect();
        return Ok(json_response(&docs::landing(&base_url(&app, &headers), &cubes), &CacheHeaders::none()));
    }
    Ok(html(pages::CATALOG_HTML))
}

async fn map_page(State(app): State<Arc<App>>, path: Result<Path<String>, PathRejection>) -> ApiResult {
    let Path(id) = path.map_err(path_error)?;
    app.cube(&id)?;
    Ok(html(pages::MAP_HTML))
}

async fn asset(path: Result<Path<String>, PathRejection>) -> ApiResult {
    let Path(name) = path.map_err(path_error)?;
    let (kind, bytes) = pages::asset(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no asset {:?}", short(&name))))?;
    let mut r = Response::new(Body::from(bytes));
    if let Ok(v) = HeaderValue::from_str(kind) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    // Built into the binary: the same for as long as this binary runs.
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    Ok(r)
}

async fn conformance() -> Response {
    json_response(&docs::conformance(), &CacheHeaders::none())
}

async fn tile_matrix_sets(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    json_response(&docs::tile_matrix_sets(&base_url(&app, &headers)), &CacheHeaders::none())
}

fn check_tms(tms: &str) -> Result<(), ApiError> {
    if tms == TMS_ID {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no tile matrix set {:?}; this server has {TMS_ID}", short(tms)),
        ))
    }
}

async fn tile_matrix_set(path: Result<Path<String>, PathRejection>) -> ApiResult {
    let Path(tms) = path.map_err(path_error)?;
    check_tms(&tms)?;
    Ok(json_response(&docs::tile_matrix_set(), &CacheHeaders { control: "public, max-age=86400".into(), etag: None }))
}

// ---------------------------------------------------------------------------------------------
// Cube documents
// ---------------------------------------------------------------------------------------------

/// A time step's label as the cube's time step names it (`2024`, `2024-05` or `2024-05-17`).
fn time_labels(view: &CubeView) -> Vec<(String, String)> {
    let layout = view.layout();
    let step = layout.attrs.get("time_step").and_then(Value::as_str).unwrap_or("").to_ascii_uppercase();
    let epoch = crate::time::Date::default();
    layout
        .times
        .iter()
        .map(|&d| {
            let date = epoch.checked_add_signed(chrono::TimeDelta::days(d)).unwrap_or(epoch);
            let iso = date.format("%Y-%m-%d").to_string();
            let label = if step.ends_with('Y') {
                date.format("%Y").to_string()
            } else if step.ends_with('M') {
                date.format("%Y-%m").to_string()
            } else {
                iso.clone()
            };
            (label, iso)
        })
        .collect()
}

fn cube_title(cube: &Cube, view: &CubeView) -> String {
    view.layout().attrs.get("title").and_then(Value::as_str).map_or_else(|| cube.id.clone(), str::to_string)
}

/// The id as it appears in URLs of this answer.
fn url_id(cube: &Cube, version: &VersionRef) -> String {
    match version {
        VersionRef::Default => cube.id.clone(),
        VersionRef::Named(v) => {
            format!("{}@{}", cube.id, url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>())
        }
    }
}

fn summary(cube: &Cube, version: &VersionRef, o: &Opened, base: &str) -> Value {
    let layout = o.view.layout();
    let id = url_id(cube, version);
    let times: Vec<Value> =
        time_labels(&o.view).into_iter().map(|(label, date)| json!({"label": label, "date": date})).collect();
    let levels: Vec<Value> = o
        .levels
        .iter()
        .enumerate()
        .map(|(i, g)| json!({"level": i, "shape": [g.shape.ny, g.shape.nx], "resolution": g.affine.resolution().0}))
        .collect();
    let b = o.frame.lonlat;
    let resolved = match o.view.resolved() {
        Resolved::Plain => Value::Null,
        Resolved::Branch { name, snapshot } => json!({"kind": "branch", "name": name, "snapshot": snapshot}),
        Resolved::Tag { name, snapshot } => json!({"kind": "tag", "name": name, "snapshot": snapshot}),
        Resolved::Snapshot { snapshot } => json!({"kind": "snapshot", "name": snapshot, "snapshot": snapshot}),
    };
    let cube_url = format!("{base}/cubes/{id}");
    json!({
        "id": id,
        "title": cube_title(cube, &o.view),
        "location": cube.location.to_string(),
        "variable": layout.variable,
        "bands": layout.bands,
        "crs": format!("EPSG:{}", layout.geobox.crs.epsg()),
        "bbox": [b.west, b.south, b.east, b.north],
        "times": times,
        "levels": levels,
        "pyramid": o.view.has_pyramid(),
        "icechunk": matches!(cube.location, OutLocation::Icechunk(_)),
        "version": resolved,
        "minzoom": o.zooms.0,
        "maxzoom": o.zooms.1,
        "scale_factor": layout.values.scale_factor,
        "add_offset": layout.values.add_offset,
        "default_rescale": [DEFAULT_RESCALE.0, DEFAULT_RESCALE.1],
        "links": {
            "self": cube_url,
            "map": format!("{cube_url}/map"),
            "tilejson": format!("{cube_url}/tiles/{TMS_ID}/tilejson.json"),
            "tiles": format!("{cube_url}/tiles/{TMS_ID}/{{z}}/{{x}}/{{y}}.png"),
            "thumbnail": format!("{cube_url}/thumbnail.png"),
            "wmts": format!("{cube_url}/WMTSCapabilities.xml"),
        },
    })
}

async fn list_cubes(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    let base = base_url(&app, &headers);
    let mut out = Vec::new();
    for cube in &app.cubes {
        let o = app.view(cube, &VersionRef::Default).await?;
        out.push(summary(cube, &VersionRef::Default, &o, &base));
    }
    let ttl = format!("public, max-age={}", app.opts.branch_ttl.as_secs());
    Ok(json_response(&json!({ "cubes": out }), &CacheHeaders { control: ttl, etag: None }))
}

async fn cube_detail(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let Path(seg) = path.map_err(path_error)?;
    let (cube, version) = app.cube(&seg)?;
    let o = app.view(&cube, &version).await?;
    let mut cache = CacheHeaders::of(o.view.resolved(), app.opts.branch_ttl);
    // The versions list grows with every build: never immutable, even at a snapshot.
    cache.control = format!("public, max-age={}", app.opts.branch_ttl.as_secs());
    cache.etag = None;
    let mut doc = summary(&cube, &version, &o, &base_url(&app, &headers));
    let versions = crate::store::view::versions(&cube.location).await.map_err(|e| store_error(&cube.id, &e))?;
    doc["versions"] = match versions {
        None => Value::Null,
        Some(v) => json!({
            "branches": v.branches.iter().map(|(n, s)| json!({"name": n, "snapshot": s})).collect::<Vec<_>>(),
            "tags": v.tags.iter().map(|(n, s)| json!({"name": n, "snapshot": s})).collect::<Vec<_>>(),
            "snapshots": v.snapshots.iter().map(|s| json!({"id": s.snapshot, "time": s.time, "message": s.message})).collect::<Vec<_>>(),
        }),
    };
    Ok(json_response(&doc, &cache))
}

/// The documents' view of one cube, with the query carried into tile URLs (minus the token
/// unless the server has one: then links must carry it to work).
fn tileset_info(
    app: &App,
    cube: &Cube,
    version: &VersionRef,
    o: &Opened,
    headers: &HeaderMap,
    q: &Query,
) -> TileSetInfo {
    let carried =
        if app.opts.token.is_some() { q.without(&["f", "format"]) } else { q.without(&["f", "format", "token"]) };
    TileSetInfo {
        base: base_url(app, headers),
        id: url_id(cube, version),
        title: cube_title(cube, &o.view),
        description: format!(
            "{} of the eocube cube {} ({})",
            o.view.layout().variable,
            cube.id,
            o.view.layout().bands.join(", ")
        ),
        lonlat: o.frame.lonlat,
        minzoom: o.zooms.0,
        maxzoom: o.zooms.1,
        query: carried,
    }
}

/// Cube, version, view, query and cache headers of a request: the common start of handlers.
async fn start(
    app: &App,
    seg: &str,
    q: Option<&str>,
) -> Result<(Arc<Cube>, VersionRef, Arc<Opened>, Query, CacheHeaders), ApiError> {
    let q = Query::parse(q)?;
    let (cube, version) = app.cube(seg)?;
    let o = app.view(&cube, &version).await?;
    let cache = CacheHeaders::of(o.view.resolved(), app.opts.branch_ttl);
    Ok((cube, version, o, q, cache))
}

async fn tilesets(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let Path(seg) = path.map_err(path_error)?;
    let (cube, version, o, q, cache) = start(&app, &seg, q.as_deref()).await?;
    Ok(json_response(&docs::tilesets_list(&tileset_info(&app, &cube, &version, &o, &headers, &q)), &cache))
}

async fn tileset(
    State(app): State<Arc<App>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let Path((seg, tms)) = path.map_err(path_error)?;
    check_tms(&tms)?;
    let (cube, version, o, q, cache) = start(&app, &seg, q.as_deref()).await?;
    Ok(json_response(&docs::tileset(&tileset_info(&app, &cube, &version, &o, &headers, &q)), &cache))
}

async fn tilejson(
    State(app): State<Arc<App>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let Path((seg, tms)) = path.map_err(path_error)?;
    check_tms(&tms)?;
    let (cube, version, o, q, cache) = start(&app, &seg, q.as_deref()).await?;
    // The style is checked here so that a map fails at its TileJSON, with the reason.
    params::style(&q, &o.view.layout().bands)?;
    let format = match q.get("format") {
        None => Format::Png,
        Some(f) => f.parse().map_err(|()| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("format={:?}: give png, webp or jpg", short(f)))
        })?,
    };
    let info = tileset_info(&app, &cube, &version, &o, &headers, &q);
    Ok(json_response(&docs::tilejson(&info, format), &cache))
}

async fn wmts(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let Path(seg) = path.map_err(path_error)?;
    let (cube, version, o, q, cache) = start(&app, &seg, q.as_deref()).await?;
    params::style(&q, &o.view.layout().bands)?;
    // GDAL and QGIS add their own SERVICE/REQUEST parameters: not carried into tile URLs.
    let q = Query::parse(Some(&q.without(&["SERVICE", "REQUEST", "VERSION", "service", "request", "version"])))?;
    let xml = docs::wmts_capabilities(&tileset_info(&app, &cube, &version, &o, &headers, &q));
    let mut r = bytes_response(xml.into_bytes(), "application/xml", &cache);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml; charset=utf-8"));
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Tiles, thumbnails and points
// ---------------------------------------------------------------------------------------------

fn parse_index(name: &'static str, s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{name} {:?} is not a tile index; give a whole number, e.g. /tiles/WebMercatorQuad/12/1228/1490.png",
                short(s)
            ),
        )
    })
}

fn tile_error(e: TileError, cube: &Cube) -> ApiError {
    match e {
        TileError::TooManyPixels { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{e}; zoom in, or build the cube's overviews: eocube overviews {}", cube.location),
        ),
        // Outside the tile matrix set: the tile does not exist (OGC API - Tiles answers 404).
        _ => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// Reads the windows of `bands` at `level`, time `t`, concurrently.
async fn read_bands(
    cube: &Cube,
    o: &Opened,
    level: usize,
    t: usize,
    bands: &[usize],
    window: PixelWindow,
) -> Result<Vec<Vec<u16>>, ApiError> {
    futures::stream::iter(bands.iter().copied())
        .map(|b| async move { o.view.read(level, t, b, window).await })
        .buffered(4)
        .try_collect()
        .await
        .map_err(|e| store_error(&cube.id, &e))
}

/// Runs CPU work on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        eprintln!("serve: a rendering task failed: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error while rendering (an eocube bug, please report it)",
        )
    })
}

/// The encoded fully transparent tile of each format (tiles off the cube).
fn blank(format: Format) -> Result<Vec<u8>, ApiError> {
    static BLANKS: OnceLock<HashMap<Format, Vec<u8>>> = OnceLock::new();
    let blanks = BLANKS.get_or_init(|| {
        let px = vec![0u8; TILE_SIZE * TILE_SIZE * 4];
        [Format::Png, Format::Webp, Format::Jpeg]
            .into_iter()
            .filter_map(|f| encode::encode(&px, TILE_SIZE, TILE_SIZE, f).ok().map(|b| (f, b)))
            .collect()
    });
    blanks
        .get(&format)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode an empty tile"))
}

/// `{id}`, `{tms}`, `{z}`, `{x}` and `{y}.{format}` of a tile URL.
type TilePath = (String, String, String, String, String);

async fn tile(
    State(app): State<Arc<App>>,
    path: Result<Path<TilePath>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let Path((seg, tms_id, z, x, file)) = path.map_err(path_error)?;
    check_tms(&tms_id)?;
    let (y, ext) = file.rsplit_once('.').ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("tile {:?} has no format; end it with .png, .webp or .jpg", short(&file)),
        )
    })?;
    let format: Format = ext.parse().map_err(|()| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("tile format {:?}: give .png, .webp or .jpg", short(ext)))
    })?;
    let (z, x, y) = (parse_index("z", &z)?, parse_index("x", &x)?, parse_index("y", y)?);
    let (cube, _version, o, q, cache) = start(&app, &seg, q.as_deref()).await?;
    let tile = TileId::new(z, x, y).map_err(|e| tile_error(e, &cube))?;
    let style = params::style(&q, &o.view.layout().bands)?;
    let t = params::time_index(&q, &o.view.layout().times)?;
    if let Some(r) = cache.not_modified(&headers) {
        return Ok(r);
    }
    let _permit = app
        .renders
        .acquire()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"))?;
    let (frame, levels, max) = (o.frame.clone(), o.levels.clone(), app.opts.max_pixels);
    let plan =
        blocking(move || tms::plan_tile(&frame, &tile, &levels, max)).await?.map_err(|e| tile_error(e, &cube))?;
    let Some(map) = plan else {
        return Ok(bytes_response(blank(format)?, format.content_type(), &cache));
    };
    let bands = style.bands();
    let windows = read_bands(&cube, &o, map.level, t, &bands, map.window).await?;
    let scale = render::DnScale::of(&o.view.layout().values);
    let bytes = blocking(move || {
        let values: Vec<Vec<u16>> = windows.iter().map(|w| render::sample(&map, w)).collect();
        let rgba = style.render(&values, TILE_SIZE * TILE_SIZE, scale);
        encode::encode(&rgba, TILE_SIZE, TILE_SIZE, format)
    })
    .await?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(bytes_response(bytes, format.content_type(), &cache))
}

/// Longest side of a thumbnail.
const THUMBNAIL_PX: usize = 256;

async fn thumbnail(
    State(app): State<Arc<App>>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let Path(seg) = path.map_err(path_error)?;
    let (cube, _version, o, q, cache) = start(&app, &seg, q.as_deref()).await?;
    let style = params::style(&q, &o.view.layout().bands)?;
    let t = params::time_index(&q, &o.view.layout().times)?;
    if let Some(r) = cache.not_modified(&headers) {
        return Ok(r);
    }
    let default = q.get("time").is_none()
        && q.get("bands").is_none()
        && q.get("rescale").is_none()
        && q.get("expression").is_none()
        && q.get("colormap").is_none();
    let make = || async {
        let _permit = app
            .renders
            .acquire()
            .await
            .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"))?;
        render_thumbnail(&app, &cube, &o, &style, t).await
    };
    let bytes = if default { o.thumbnail.get_or_try_init(make).await?.clone() } else { make().await? };
    Ok(bytes_response(bytes, "image/png", &cache))
}

async fn render_thumbnail(app: &App, cube: &Cube, o: &Opened, style: &Style, t: usize) -> Result<Vec<u8>, ApiError> {
    let full = &o.levels[0].shape;
    let long = full.ny.max(full.nx).max(1);
    let out_long = THUMBNAIL_PX.min(long);
    let (oh, ow) = ((full.ny * out_long).div_ceil(long).max(1), (full.nx * out_long).div_ceil(long).max(1));
    // The coarsest level still at least as large as the thumbnail.
    let level = o.levels.iter().rposition(|g| g.shape.ny >= oh && g.shape.nx >= ow).unwrap_or(0);
    let shape = o.levels[level].shape;
    if shape.len() > app.opts.max_pixels {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the thumbnail would read {} x {} pixels, more than the {} one request may; build the cube's overviews: eocube overviews {}",
                shape.nx, shape.ny, app.opts.max_pixels, cube.location
            ),
        ));
    }
    let window = PixelWindow { row: 0, col: 0, height: shape.ny, width: shape.nx };
    let windows = read_bands(cube, o, level, t, &style.bands(), window).await?;
    let style = style.clone();
    let scale = render::DnScale::of(&o.view.layout().values);
    blocking(move || {
        let index: Vec<u32> = (0..oh * ow)
            .map(|i| {
                let (r, c) = (i / ow, i % ow);
                let sr = ((r as f64 + 0.5) * shape.ny as f64 / oh as f64) as usize;
                let sc = ((c as f64 + 0.5) * shape.nx as f64 / ow as f64) as usize;
                (sr.min(shape.ny - 1) * shape.nx + sc.min(shape.nx - 1)) as u32
            })
            .collect();
        let map = tms::SampleMap { level, window, index };
        let values: Vec<Vec<u16>> = windows.iter().map(|w| render::sample(&map, w)).collect();
        encode::encode(&style.render(&values, oh * ow, scale), ow, oh, Format::Png)
    })
    .await?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Reflectance rounded to the DN step (1e-4 for Sentinel-2), so JSON shows 0.0734, not
/// 0.07340000000000001.
fn rounded(dn: u16, scale: render::DnScale) -> Value {
    if dn == 0 {
        return Value::Null;
    }
    let v = f64::from(dn) * scale.scale_factor + scale.add_offset;
    let k = 10f64.powi(scale.decimals());
    json!((v * k).round() / k)
}

async fn point(
    State(app): State<Arc<App>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let Path((seg, lonlat)) = path.map_err(path_error)?;
    let fix = "give the point as LON,LAT in degrees, e.g. /point/-72.0,44.03";
    let (lon, lat) = lonlat
        .split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)))
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("point {:?}: {fix}", short(&lonlat))))?;
    if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("point {lon},{lat} is off the globe: {fix}")));
    }
    let (cube, _version, o, _q, cache) = start(&app, &seg, q.as_deref()).await?;
    let g = &o.levels[0];
    let outside = || {
        let b = o.frame.lonlat;
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "point {lon},{lat} is outside cube {} (lon {} to {}, lat {} to {})",
                cube.id, b.west, b.east, b.south, b.north
            ),
        )
    };
    let (x, y) = Transformer::new(&Crs::wgs84(), &g.crs).transform(lon, lat).map_err(|_| outside())?;
    let (c, r) = g.affine.inverse().map_err(|_| outside())?.apply(x, y);
    let (c, r) = (c.floor(), r.floor());
    if !(c >= 0.0 && r >= 0.0 && c < g.shape.nx as f64 && r < g.shape.ny as f64) {
        return Err(outside());
    }
    let (row, col) = (r as i64, c as i64);
    let layout = o.view.layout();
    let (nt, nb) = (layout.times.len(), layout.bands.len());
    let window = PixelWindow { row, col, height: 1, width: 1 };
    let view = &o.view;
    let values: Vec<u16> = futures::stream::iter((0..nt).flat_map(|t| (0..nb).map(move |b| (t, b))))
        .map(|(t, b)| async move { view.read(0, t, b, window).await.map(|v| v.first().copied().unwrap_or(0)) })
        .buffered(8)
        .try_collect()
        .await
        .map_err(|e| store_error(&cube.id, &e))?;
    let series: Vec<Value> = time_labels(view)
        .into_iter()
        .enumerate()
        .map(|(t, (label, date))| {
            let vals: serde_json::Map<String, Value> = layout
                .bands
                .iter()
                .enumerate()
                .map(|(b, name)| (name.clone(), rounded(values[t * nb + b], render::DnScale::of(&layout.values))))
                .collect();
            json!({"label": label, "date": date, "values": vals})
        })
        .collect();
    Ok(json_response(
        &json!({"lon": lon, "lat": lat, "row": row, "col": col, "bands": layout.bands, "series": series}),
        &cache,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_derived_or_given_and_unique() {
        let args: Vec<String> = [
            "/data/vermont.zarr",
            "s3://bucket/x/vermont.zarr/",
            "demo=/tmp/c.zarr",
            "icechunk:///data/repo",
            "/data/a b",
        ]
        .map(String::from)
        .to_vec();
        let ids: Vec<String> = cube_args(&args).unwrap().into_iter().map(|c| c.id).collect();
        assert_eq!(ids, vec!["vermont", "vermont-2", "demo", "repo", "a-b"]);
        assert!(matches!(cube_args(&["x=/a".into(), "x=/b".into()]), Err(ServeError::DuplicateId { .. })));
        assert!(matches!(cube_args(&["..=/a".into()]), Err(ServeError::BadCube { .. })));
        assert!(matches!(cube_args(&["a@b=/a".into()]), Err(ServeError::BadCube { .. })));
        assert!(matches!(cube_args(&[]), Err(ServeError::NoCubes)));
        assert!(matches!(cube_args(&["ftp://x/y".into()]), Err(ServeError::BadCube { .. })));
        assert!(!valid_id("../etc") && !valid_id(".hidden") && !valid_id("") && valid_id("cube-1.v2"));
    }

    #[test]
    fn tokens_compare_in_constant_time() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }

    #[test]
    fn snapshot_urls_are_immutable_and_branches_short_lived() {
        let ttl = Duration::from_secs(10);
        let c = CacheHeaders::of(&Resolved::Snapshot { snapshot: "ABC".into() }, ttl);
        assert_eq!(c.control, "public, max-age=31536000, immutable");
        assert_eq!(c.etag.as_deref(), Some("\"ABC\""));
        let c = CacheHeaders::of(&Resolved::Branch { name: "main".into(), snapshot: "XYZ".into() }, ttl);
        assert_eq!(c.control, "public, max-age=10");
        assert_eq!(c.etag.as_deref(), Some("\"XYZ\""));
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"old\", \"XYZ\""));
        assert_eq!(c.not_modified(&h).map(|r| r.status()), Some(StatusCode::NOT_MODIFIED));
        assert!(CacheHeaders::of(&Resolved::Plain, ttl).not_modified(&h).is_none());
    }

    #[test]
    fn reflectance_is_rounded_to_the_dn_step() {
        let s2 = render::DnScale { scale_factor: 0.0001, add_offset: -0.1 };
        assert_eq!(rounded(1734, s2), json!(0.0734));
        assert_eq!(rounded(0, s2), Value::Null);
        let landsat = render::DnScale { scale_factor: 0.0000275, add_offset: -0.2 };
        assert_eq!(rounded(10000, landsat), json!(0.075));
    }
}
