//! A scene archive on 127.0.0.1: a STAC API (item search) over a fixed set of items, and the
//! files those items point at, served with byte ranges. `eocube demo` runs one over a synthetic
//! archive so that the real pipeline (catalog client, COG reader over HTTP) runs with no network.
//!
//! Owns: the HTTP server (hyper 1, HTTP/1.1 only, one tokio task per connection, graceful
//! shutdown), the routes below, the meaning of a search on the server side (DESIGN section 4
//! read from the other end) and range-capable file serving.
//!
//! Must not touch: the items' content beyond asset hrefs and links (the caller writes them, e.g.
//! `synth`), pixels, the catalog client (`catalog` is this server's client, not its library:
//! the search semantics are re-implemented here so that the client is tested against an
//! independent server).
//!
//! ```text
//! GET  /                                  landing page (conformsTo, links: self, search, data)
//! GET  /conformance
//! GET  /collections, /collections/{id}, /collections/{id}/items[/{item}]
//! GET  /search?collections=&bbox=&intersects=&datetime=&ids=&limit=&filter=&token=
//! POST /search  {"collections", "bbox" | "intersects", "datetime", "ids", "limit", "filter", "token"}
//! GET|HEAD /files/<path under root>       Range: bytes=a-b | a- | -n  → 206, 416; ETag, Last-Modified
//! GET  /token/{collection}                with a SAS gate only (`sas`): a Planetary Computer token,
//!                                         and /files/ then wants its `sig` (403 otherwise)
//! ```
//!
//! Answers are sorted by (datetime, id); pages of `limit` items (default 10, at most 10000) link
//! to the next page (GET: a `token` query parameter; POST: `body: {token}`, `merge: true`).
//! Every bad request gets a 4xx with `{"code", "description"}`; nothing from a client can panic.

mod files;
mod query;
pub mod sas;
mod stac;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use stac::{Catalog, Origin, Search};

/// Largest `POST /search` body accepted (an `intersects` polygon of a few thousand vertices fits).
const MAX_BODY: usize = 4 << 20;
/// How long [`ArchiveServer::shutdown`] lets requests in flight finish.
const GRACE: Duration = Duration::from_secs(5);
/// A client that opens a connection and sends no complete header within this is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot serve the archive root {path}: {reason}; give an existing directory")]
    Root { path: PathBuf, reason: String },
    #[error("cannot listen on {addr}: {source}; pick another port (0 lets the system choose)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("STAC item {item} {reason}; fix the item given to the archive server")]
    InvalidItem { item: String, reason: String },
    #[error("invalid STAC collection: {reason}")]
    InvalidCollection { reason: String },
}

/// A running archive server. Dropping it stops accepting connections and closes idle ones
/// (in the background); [`ArchiveServer::shutdown`] does the same and waits for it.
#[derive(Debug)]
pub struct ArchiveServer {
    addr: SocketAddr,
    url: String,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    sas: Option<Arc<sas::SasState>>,
}

impl ArchiveServer {
    /// Serves `root` and `items` on `127.0.0.1` at a port the system picks.
    ///
    /// Asset hrefs in `items` are paths relative to `root` (`sentinel-2-c1-l2a/ID/red.tif`);
    /// answers carry them as `{url}/files/<path>`. Absolute URLs are left alone. `collections`
    /// are full STAC collection documents; a collection that items name but that is not given
    /// gets a minimal document with the items' extent. Must be called inside a tokio runtime.
    pub async fn start(root: PathBuf, items: Vec<Value>, collections: Vec<Value>) -> Result<Self, ServeError> {
        Self::start_on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0), root, items, collections).await
    }

    /// As [`ArchiveServer::start`], standing in for the Planetary Computer too: it hands out SAS
    /// tokens at `{url}/token/{collection}` and serves files only to requests signed with a good
    /// one ([`sas::SasGate`]). [`ArchiveServer::sas_stats`] says what it saw.
    pub async fn start_with_sas(
        root: PathBuf,
        items: Vec<Value>,
        collections: Vec<Value>,
        gate: sas::SasGate,
    ) -> Result<Self, ServeError> {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        Self::start_inner(addr, root, items, collections, Some(gate)).await
    }

    /// What the SAS stand-in saw (`None` without one).
    pub fn sas_stats(&self) -> Option<sas::SasStats> {
        self.sas.as_ref().map(|s| s.stats())
    }

    /// As [`ArchiveServer::start`], on `addr` (e.g. `127.0.0.1:8080`).
    pub async fn start_on(
        addr: SocketAddr,
        root: PathBuf,
        items: Vec<Value>,
        collections: Vec<Value>,
    ) -> Result<Self, ServeError> {
        Self::start_inner(addr, root, items, collections, None).await
    }

    async fn start_inner(
        addr: SocketAddr,
        root: PathBuf,
        items: Vec<Value>,
        collections: Vec<Value>,
        gate: Option<sas::SasGate>,
    ) -> Result<Self, ServeError> {
        let root_err = |reason: String| ServeError::Root { path: root.clone(), reason };
        let canon = std::fs::canonicalize(&root).map_err(|e| root_err(e.to_string()))?;
        if !canon.is_dir() {
            return Err(root_err("not a directory".into()));
        }
        let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let mut local = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
        // A server on 0.0.0.0 is still reached through loopback by the links it hands out.
        if local.ip().is_unspecified() {
            local.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let url = format!("http://{local}");
        let catalog = Catalog::new(&url, items, collections)?;
        let sas = gate.map(|g| Arc::new(sas::SasState::new(g)));
        let state = Arc::new(State { root: canon, catalog, sas: sas.clone() });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, state, stopped));
        Ok(ArchiveServer { addr: local, url, stop, task: Some(task), sas })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash: the STAC API root, and `{url}/files/…`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets requests in flight finish (up to 5 s), and waits.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves until `signal` completes (e.g. Ctrl-C in a CLI command), then shuts down.
    pub async fn serve_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}

impl Drop for ArchiveServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

struct State {
    /// Canonical: file paths are checked against it after their symlinks are resolved.
    root: PathBuf,
    catalog: Catalog,
    sas: Option<Arc<sas::SasState>>,
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    while !*stopped.borrow() {
        tokio::select! {
            // an error means the ArchiveServer is gone: stop as well
            _ = stopped.changed() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    conns.spawn(serve_connection(stream, state.clone(), stopped.clone()));
                }
                // e.g. out of file descriptors: wait for connections to close rather than spin
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, async { while conns.join_next().await.is_some() {} }).await;
}

async fn serve_connection(stream: TcpStream, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        // connection errors (client gone, malformed request answered by hyper) end only this connection
        _ = conn.as_mut() => return,
        _ = stopped.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

pub(crate) type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// An error answer: `{"code", "description"}` with its status.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        ApiError { status, code, description: description.into() }
    }
    pub(crate) fn bad_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", d)
    }
    pub(crate) fn not_found(d: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", d)
    }
    pub(crate) fn internal(d: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", d)
    }

    fn into_response(self) -> Response<Body> {
        let body = json!({"code": self.code, "description": self.description});
        json_response(self.status, "application/json", &body)
    }
}

fn json_response(status: StatusCode, content_type: &'static str, v: &Value) -> Response<Body> {
    let mut res = Response::new(full(v.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    match route(state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn method_not_allowed(allow: &'static str) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("this path takes {allow}"))
}

async fn route(state: &State, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if let Some(rel) = path.strip_prefix("/files/") {
        if method != Method::GET && method != Method::HEAD {
            return Err(method_not_allowed("GET, HEAD"));
        }
        if let Some(sas) = &state.sas {
            sas.check(req.uri().query())?;
        }
        let file = files::resolve(&state.root, rel)?;
        return files::serve_file(&method, req.headers(), &file).await;
    }
    let cat = &state.catalog;
    let trimmed = if path.len() > 1 { path.trim_end_matches('/') } else { path.as_str() };
    let segs: Vec<String> = trimmed
        .split('/')
        .skip(1)
        .map(|s| files::percent_decode(s).ok_or_else(|| ApiError::not_found(format!("no such path {path}"))))
        .collect::<Result<_, _>>()?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let query = || -> Vec<(String, String)> {
        let q = req.uri().query().unwrap_or("");
        url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    };
    let json_ok = |v: Value| Ok(json_response(StatusCode::OK, "application/json", &v));
    let geojson_ok = |v: Value| Ok(json_response(StatusCode::OK, "application/geo+json", &v));
    let is_get = method == Method::GET || method == Method::HEAD;
    if let (Some(sas), ["token", collection]) = (&state.sas, segs.as_slice()) {
        return json_ok(sas.issue(collection));
    }
    match segs.as_slice() {
        ["search"] if method == Method::POST => {
            let body = Limited::new(req.into_body(), MAX_BODY).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "PayloadTooLarge",
                        format!("bodies are limited to {MAX_BODY} bytes"),
                    )
                } else {
                    ApiError::bad_request(format!("reading the request body: {e}"))
                }
            })?;
            let s = Search::from_body(&body.to_bytes())?;
            geojson_ok(cat.search(&s, Origin::Post)?)
        }
        ["search"] if is_get => {
            let q = query();
            let s = Search::from_query(&q)?;
            geojson_ok(cat.search(&s, Origin::Get { path: "/search", query: q })?)
        }
        ["search"] => Err(method_not_allowed("GET, POST")),
        _ if !is_get => Err(method_not_allowed("GET")),
        [""] => json_ok(cat.landing()),
        ["conformance"] => json_ok(cat.conformance()),
        ["collections"] => json_ok(cat.collections()),
        ["collections", id] => json_ok(cat.collection(id)?),
        ["collections", id, "items"] => {
            cat.collection(id)?;
            let q = query();
            let mut s = Search::from_query(&q)?;
            s.collections = Some(vec![id.to_string()]);
            geojson_ok(cat.search(&s, Origin::Get { path: &path, query: q })?)
        }
        ["collections", id, "items", item] => geojson_ok(cat.item(id, item)?),
        _ => Err(ApiError::not_found(format!(
            "no such path {path}; this server has /, /conformance, /collections, /search and /files/"
        ))),
    }
}
