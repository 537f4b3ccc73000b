//! A fault-injecting HTTP/1.1 proxy for the tests: it stands in front of one server (nginx with
//! the COGs, a STAC API, moto, Azurite) and answers a seeded random share of the requests with
//! a fault instead of, or on top of, the server's answer. eocube is pointed at the proxy's URL
//! and must build the same cube as without it (docs/testing.md, "Faults and kills").
//!
//! Owns: the faults and when each is served. Must not touch: what the server answers otherwise
//! (bodies are passed through, except for the plain string replacements a [`FaultPlan`] asks
//! for), or what the client does about a fault (that is what the tests look at).
//!
//! ```text
//! client ──▶ proxy: read request ─▶ decide (seed, request, occurrence) ─┬─ none ─▶ upstream ─▶ answer
//!                                                                       ├─ 503 / 429: answered here
//!                                                                       └─ reset, short, stall,
//!                                                                          trickle: upstream, then
//!                                                                          the answer is spoiled
//! ```
//!
//! **Which requests.** A request's key is its method, target, `Range` header and body; the n-th
//! time a key is seen, it is faulted when `hash(seed, key, n)` falls under the rate, and the kind
//! comes from the same hash. A retry is a new occurrence with a fresh draw, so nothing is
//! faulted for ever; and the draw does not depend on the order in which concurrent requests
//! arrive, only on how often each was sent, so a seed replays the same faults.
//!
//! **The faults.** `503` (S3's `SlowDown` body) and `429` with `Retry-After` never reach the
//! server. The others are served after the server did the work, as on a real network, where a
//! client cannot tell whether its write happened: `reset` sends the head and half the body, then
//! a TCP reset; `short` does the same with an orderly close, leaving the body short of its
//! `Content-Length`; `stall` goes silent (before the head or mid-body) for [`FaultPlan::stall`],
//! then closes; `trickle` sends the head, then the body in 20 pieces spread over
//! [`FaultPlan::trickle`] (the first at once, the last at its end), so it is slow but never
//! silent for long. An empty body is cut in the head instead (a trickle passes it on as it is).
//!
//! The proxy reads each request and answer whole (bodies de-chunked, resent with a
//! `Content-Length`), opens one upstream connection per request and keeps client connections
//! alive; it is made for test servers on loopback, not for production traffic.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Largest request or answer head the proxy reads.
const MAX_HEAD: usize = 64 << 10;
/// Largest body it reads (a cube chunk, a COG window or a catalog page is far smaller).
const MAX_BODY: usize = 512 << 20;
/// Pieces of a trickled answer.
const TRICKLE_PIECES: u32 = 20;
/// How long the proxy waits for the upstream server to answer a request.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// `503 Service Unavailable` with S3's `SlowDown` error body; the server never sees the request.
    Unavailable,
    /// `429 Too Many Requests` with `Retry-After` ([`FaultPlan::retry_after`]).
    Throttled,
    /// The head and half the body, then a TCP reset (RST).
    Reset,
    /// The head and half the body, then an orderly close: the body is short of its length.
    Short,
    /// Silence (before the head, or after half the body) for [`FaultPlan::stall`], then a close.
    Stall,
    /// The head at once, then the body slowly: 20 pieces over [`FaultPlan::trickle`]. An
    /// answer without a body is passed on untouched (and not counted).
    Trickle,
}

impl Fault {
    /// Every kind, in the order of the docs.
    pub const ALL: [Fault; 6] =
        [Fault::Unavailable, Fault::Throttled, Fault::Reset, Fault::Short, Fault::Stall, Fault::Trickle];

    /// `503`, `429`, `reset`, `short`, `stall`, `trickle`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Unavailable => "503",
            Fault::Throttled => "429",
            Fault::Reset => "reset",
            Fault::Short => "short",
            Fault::Stall => "stall",
            Fault::Trickle => "trickle",
        }
    }
}

/// Which requests may be faulted: all of them unless narrowed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Only {
    /// The method (`PUT`), any when `None`.
    pub method: Option<String>,
    /// A substring of the request target (path and query).
    pub target_contains: Option<String>,
}

/// What the proxy does to the requests it sees.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    pub seed: u64,
    /// Share of the (matching) requests that are faulted, 0 to 1.
    pub rate: f64,
    /// The kinds drawn from, each equally likely.
    pub kinds: Vec<Fault>,
    /// How long a stall is silent before the proxy closes the connection.
    pub stall: Duration,
    /// How long a trickled answer takes in all.
    pub trickle: Duration,
    /// The `Retry-After` of a 429, in seconds.
    pub retry_after: u32,
    pub only: Only,
    /// At most this many faults; `None`: no limit.
    pub budget: Option<u64>,
    /// Replace `from` with `to` in every answer body (e.g. a file server's URL in a catalog's
    /// hrefs by that of the proxy in front of it).
    pub rewrite: Vec<(String, String)>,
}

impl FaultPlan {
    /// Every request passed through untouched.
    pub fn none() -> FaultPlan {
        FaultPlan {
            seed: 0,
            rate: 0.0,
            kinds: Fault::ALL.to_vec(),
            stall: Duration::from_secs(20),
            trickle: Duration::from_secs(3),
            retry_after: 1,
            only: Only::default(),
            budget: None,
            rewrite: Vec::new(),
        }
    }

    /// `rate` of the requests faulted with every kind, drawn with `seed`.
    pub fn random(seed: u64, rate: f64) -> FaultPlan {
        FaultPlan { seed, rate, ..FaultPlan::none() }
    }
}

/// What the proxy saw and did since it started (or since [`FaultProxy::reset_stats`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultStats {
    /// Requests read from clients.
    pub requests: u64,
    /// Faults served, by [`Fault::name`].
    pub faults: BTreeMap<&'static str, u64>,
    /// Stalls the client gave up on (closed its end) before the proxy ended them, and the
    /// longest time a client waited before giving up.
    pub stalls_abandoned: u64,
    pub longest_abandoned_stall: Duration,
    /// Trickled answers sent to the end, and those the client cut off.
    pub trickles_completed: u64,
    pub trickles_cut: u64,
    /// Requests the upstream server did not answer (the proxy answered 502).
    pub upstream_errors: u64,
}

impl FaultStats {
    /// Faults served of all kinds.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// A running proxy. Dropping it stops accepting connections.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// The runtime of a proxy started with [`FaultProxy::spawn`] (none inside a caller's runtime).
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("addr", &self.addr).field("upstream", &self.shared.upstream).finish()
    }
}

struct Shared {
    /// `host:port` of the server behind the proxy.
    upstream: String,
    plan: RwLock<FaultPlan>,
    /// Times each request key was seen.
    seen: Mutex<HashMap<u64, u64>>,
    stats: Mutex<FaultStats>,
    faults_served: AtomicU64,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`http://host:port`; a path is ignored) on
    /// `127.0.0.1` at a port the system picks. Must be called inside a tokio runtime.
    pub async fn start(upstream: &str, plan: FaultPlan) -> std::io::Result<FaultProxy> {
        let authority = upstream_authority(upstream)?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: authority,
            plan: RwLock::new(plan),
            seen: Mutex::new(HashMap::new()),
            stats: Mutex::new(FaultStats::default()),
            faults_served: AtomicU64::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&shared), stopped));
        Ok(FaultProxy { addr, shared, stop, runtime: None })
    }

    /// [`FaultProxy::start`] on a runtime of its own (two threads), for callers without one
    /// (the integration tests); the runtime lives as long as the proxy.
    pub fn spawn(upstream: &str, plan: FaultPlan) -> std::io::Result<FaultProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()?;
        let mut proxy = runtime.block_on(FaultProxy::start(upstream, plan))?;
        proxy.runtime = Some(runtime);
        Ok(proxy)
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Faults requests from now on as `plan` says (occurrence counts are kept).
    pub fn set_plan(&self, plan: FaultPlan) {
        *self.shared.plan.write().unwrap_or_else(|p| p.into_inner()) = plan;
    }

    pub fn plan(&self) -> FaultPlan {
        self.shared.plan()
    }

    pub fn stats(&self) -> FaultStats {
        self.shared.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Zeroes the statistics and the fault budget's count.
    pub fn reset_stats(&self) {
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = FaultStats::default();
        self.shared.faults_served.store(0, Ordering::Relaxed);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.runtime.take() {
            // Connections may sit in a stall: do not wait for them.
            rt.shutdown_background();
        }
    }
}

impl Shared {
    fn plan(&self) -> FaultPlan {
        self.plan.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn stats(&self, f: impl FnOnce(&mut FaultStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The fault for this occurrence of `req`, if any; counts the request.
    fn decide(&self, req: &Request, plan: &FaultPlan) -> Option<(Fault, u64)> {
        self.stats(|s| s.requests += 1);
        let matches = plan.only.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
            && plan.only.target_contains.as_deref().is_none_or(|t| req.target.contains(t));
        if !matches || plan.kinds.is_empty() || plan.rate <= 0.0 {
            return None;
        }
        let key = req.key();
        let n = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let n = seen.entry(key).or_insert(0);
            *n += 1;
            *n - 1
        };
        let h = mix(mix(plan.seed ^ key) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        if u >= plan.rate {
            return None;
        }
        if let Some(budget) = plan.budget
            && self.faults_served.fetch_add(1, Ordering::Relaxed) >= budget
        {
            return None;
        }
        let h2 = mix(h);
        Some((plan.kinds[(h2 % plan.kinds.len() as u64) as usize], h2))
    }

    /// One fault served.
    fn served(&self, kind: Fault) {
        self.stats(|s| *s.faults.entry(kind.name()).or_insert(0) += 1);
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a over `parts`, each followed by a separator byte.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn upstream_authority(upstream: &str) -> std::io::Result<String> {
    let rest = upstream.strip_prefix("http://").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{upstream}: the proxy speaks plain http:// only"),
        )
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{upstream}: no host")));
    }
    Ok(authority.to_string())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
}

/// An HTTP message as read: the head's parts and the whole body.
struct Request {
    method: String,
    target: String,
    /// Header names and values as sent.
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// The client asked to close the connection after this exchange.
    close: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&[u8]> {
        header(&self.headers, name)
    }

    /// What identifies a request across its retries.
    fn key(&self) -> u64 {
        let range = self.header("range").unwrap_or_default();
        fnv(&[self.method.as_bytes(), self.target.as_bytes(), range, &self.body])
    }
}

struct Answer {
    status: u16,
    reason: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// The answer to a HEAD: no body, the server's `Content-Length` kept.
    head_only: bool,
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
}

fn has_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    header(headers, name)
        .is_some_and(|v| String::from_utf8_lossy(v).split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Headers that belong to one connection, not to the message.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "expect"
    )
}

fn invalid(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

/// A buffered reader over one connection.
struct Reader<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
}

impl Reader<'_> {
    /// Reads more; `false` at the end of the stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// The bytes up to and including the blank line ending a head; `None` at a clean end of
    /// the stream before any byte of it.
    async fn head(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(Some(self.buf.drain(..end + 4).collect()));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("head too large"));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() { Ok(None) } else { Err(invalid("the head was cut short")) };
            }
        }
    }

    async fn exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        if n > MAX_BODY {
            return Err(invalid("body too large"));
        }
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(invalid("the body was cut short"));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn line(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Ok(line[..end].to_vec());
            }
            if self.buf.len() > MAX_HEAD || !self.fill().await? {
                return Err(invalid("a chunk line was cut short"));
            }
        }
    }

    /// A `Transfer-Encoding: chunked` body, de-chunked (trailers dropped).
    async fn chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line().await?;
            let size = String::from_utf8_lossy(&line);
            let size = size.split(';').next().unwrap_or_default().trim();
            let n = usize::from_str_radix(size, 16).map_err(|_| invalid(format!("bad chunk size {size:?}")))?;
            if n == 0 {
                while !self.line().await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + n > MAX_BODY {
                return Err(invalid("body too large"));
            }
            body.extend(self.exact(n).await?);
            self.exact(2).await?;
        }
    }

    /// Everything until the end of the stream.
    async fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        while self.fill().await? {
            if self.buf.len() > MAX_BODY {
                return Err(invalid("body too large"));
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// The body of a message with `headers`: chunked, of a `Content-Length`, or none.
    async fn body(&mut self, headers: &[(String, Vec<u8>)], to_end: bool) -> std::io::Result<Vec<u8>> {
        if has_token(headers, "transfer-encoding", "chunked") {
            return self.chunked().await;
        }
        match header(headers, "content-length") {
            Some(v) => {
                let n: usize = String::from_utf8_lossy(v).trim().parse().map_err(|_| invalid("bad Content-Length"))?;
                self.exact(n).await
            }
            None if to_end => self.read_to_end().await,
            None => Ok(Vec::new()),
        }
    }
}

fn parsed_headers(raw: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    raw.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect()
}

async fn read_request(reader: &mut Reader<'_>) -> std::io::Result<Option<Request>> {
    let Some(head) = reader.head().await? else { return Ok(None) };
    let mut raw = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut raw);
    if !req.parse(&head).map_err(|e| invalid(e.to_string()))?.is_complete() {
        return Err(invalid("incomplete request head"));
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    let http10 = req.version == Some(0);
    let headers = parsed_headers(req.headers);
    if has_token(&headers, "expect", "100-continue") {
        reader.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let body = reader.body(&headers, false).await?;
    let close =
        has_token(&headers, "connection", "close") || (http10 && !has_token(&headers, "connection", "keep-alive"));
    Ok(Some(Request { method, target, headers, body, close }))
}

/// Sends `req` to the upstream server on a connection of its own and reads the whole answer.
async fn forward(upstream: &str, req: &Request) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(upstream).await?;
    let _ = stream.set_nodelay(true);
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target).into_bytes();
    for (k, v) in &req.headers {
        if hop_by_hop(k) || k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        head.extend_from_slice(k.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v);
        head.extend_from_slice(b"\r\n");
    }
    let had_body = req.header("content-length").is_some() || has_token(&req.headers, "transfer-encoding", "chunked");
    if had_body || !req.body.is_empty() {
        head.extend_from_slice(format!("Content-Length: {}\r\n", req.body.len()).as_bytes());
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    stream.write_all(&head).await?;
    stream.write_all(&req.body).await?;
    let mut reader = Reader { stream: &mut stream, buf: Vec::new() };
    loop {
        let head = reader.head().await?.ok_or_else(|| invalid("the server closed without answering"))?;
        let mut raw = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut raw);
        if !resp.parse(&head).map_err(|e| invalid(e.to_string()))?.is_complete() {
            return Err(invalid("incomplete answer head"));
        }
        let status = resp.code.unwrap_or(502);
        let reason = resp.reason.unwrap_or_default().to_string();
        let headers = parsed_headers(resp.headers);
        if (100..200).contains(&status) {
            continue;
        }
        let head_only = req.method.eq_ignore_ascii_case("HEAD");
        let body =
            if head_only || status == 204 || status == 304 { Vec::new() } else { reader.body(&headers, true).await? };
        return Ok(Answer { status, reason, headers, body, head_only });
    }
}

/// The head the client gets for `answer` (its body de-chunked, so with a `Content-Length`).
fn answer_head(answer: &Answer, close: bool) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", answer.status, answer.reason).into_bytes();
    let mut length = None;
    for (k, v) in &answer.headers {
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.clone());
            continue;
        }
        if hop_by_hop(k) {
            continue;
        }
        head.extend_from_slice(k.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v);
        head.extend_from_slice(b"\r\n");
    }
    match (answer.head_only, length) {
        (true, Some(v)) => {
            head.extend_from_slice(b"Content-Length: ");
            head.extend_from_slice(&v);
            head.extend_from_slice(b"\r\n");
        }
        (true, None) => {}
        (false, _) => head.extend_from_slice(format!("Content-Length: {}\r\n", answer.body.len()).as_bytes()),
    }
    if close {
        head.extend_from_slice(b"Connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

fn local_answer(status: u16, reason: &str, extra: &[(&str, String)], body: &str) -> Answer {
    let mut headers = vec![("Content-Type".to_string(), b"application/xml".to_vec())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone().into_bytes())));
    Answer { status, reason: reason.into(), headers, body: body.as_bytes().to_vec(), head_only: false }
}

fn rewrite(answer: &mut Answer, rules: &[(String, String)]) {
    if rules.is_empty() || answer.body.is_empty() {
        return;
    }
    if let Ok(text) = std::str::from_utf8(&answer.body) {
        let mut text = text.to_string();
        for (from, to) in rules {
            text = text.replace(from.as_str(), to);
        }
        answer.body = text.into_bytes();
    }
}

/// The bytes of an answer a cut-off fault sends before it breaks the connection: the head and
/// half the body, or half the head when there is no body.
fn cut(head: &[u8], body: &[u8]) -> Vec<u8> {
    if body.len() >= 2 {
        let mut out = head.to_vec();
        out.extend_from_slice(&body[..body.len() / 2]);
        out
    } else {
        head[..head.len() / 2].to_vec()
    }
}

async fn serve_connection(mut client: TcpStream, shared: Arc<Shared>) {
    let mut pending = Vec::new();
    loop {
        let mut reader = Reader { stream: &mut client, buf: std::mem::take(&mut pending) };
        let req = match read_request(&mut reader).await {
            Ok(Some(r)) => r,
            _ => return,
        };
        pending = std::mem::take(&mut reader.buf);
        let plan = shared.plan();
        let fault = shared.decide(&req, &plan);
        let mut answer = match fault {
            Some((Fault::Unavailable, _)) => local_answer(
                503,
                "Service Unavailable",
                &[],
                "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>injected by the fault proxy</Message></Error>",
            ),
            Some((Fault::Throttled, _)) => local_answer(
                429,
                "Too Many Requests",
                &[("Retry-After", plan.retry_after.to_string())],
                "<?xml version=\"1.0\"?><Error><Code>TooManyRequests</Code><Message>injected by the fault proxy</Message></Error>",
            ),
            _ => match tokio::time::timeout(UPSTREAM_TIMEOUT, forward(&shared.upstream, &req)).await {
                Ok(Ok(a)) => a,
                _ => {
                    shared.stats(|s| s.upstream_errors += 1);
                    local_answer(502, "Bad Gateway", &[], "the fault proxy could not reach its upstream server")
                }
            },
        };
        rewrite(&mut answer, &plan.rewrite);
        let close = req.close;
        let head = answer_head(&answer, close);
        let body: &[u8] = if answer.head_only { &[] } else { &answer.body };
        // A trickle slows a body; an answer without one is passed on as it is.
        let fault = fault.filter(|(kind, _)| *kind != Fault::Trickle || !body.is_empty());
        if let Some((kind, _)) = fault {
            shared.served(kind);
        }
        match fault {
            None | Some((Fault::Unavailable | Fault::Throttled, _)) => {
                let mut all = head;
                all.extend_from_slice(body);
                if client.write_all(&all).await.is_err() || close {
                    return;
                }
            }
            Some((Fault::Reset, _)) => {
                let _ = client.write_all(&cut(&head, body)).await;
                let _ = client.set_zero_linger();
                return;
            }
            Some((Fault::Short, _)) => {
                let _ = client.write_all(&cut(&head, body)).await;
                let _ = client.shutdown().await;
                return;
            }
            Some((Fault::Stall, h)) => {
                // Half the stalls are silent from the start, half after part of the answer.
                if h & 0x100 != 0 {
                    let _ = client.write_all(&cut(&head, body)).await;
                }
                stall(&mut client, &shared, plan.stall).await;
                let _ = client.shutdown().await;
                return;
            }
            Some((Fault::Trickle, _)) => {
                if client.write_all(&head).await.is_err() {
                    shared.stats(|s| s.trickles_cut += 1);
                    return;
                }
                if trickle(&mut client, body, plan.trickle).await {
                    shared.stats(|s| s.trickles_completed += 1);
                    if close {
                        return;
                    }
                } else {
                    shared.stats(|s| s.trickles_cut += 1);
                    return;
                }
            }
        }
    }
}

/// Keeps the connection silent for `silence`, noting whether the client gives up first.
async fn stall(client: &mut TcpStream, shared: &Shared, silence: Duration) {
    let t0 = Instant::now();
    let mut byte = [0u8; 1];
    let gave_up = async {
        loop {
            match client.read(&mut byte).await {
                // The client closed or reset its end: it abandoned the request.
                Ok(0) | Err(_) => return,
                // A pipelined request (never sent by the clients under test): ignore it.
                Ok(_) => {}
            }
        }
    };
    if tokio::time::timeout(silence, gave_up).await.is_ok() {
        let waited = t0.elapsed();
        shared.stats(|s| {
            s.stalls_abandoned += 1;
            s.longest_abandoned_stall = s.longest_abandoned_stall.max(waited);
        });
    }
}

/// Sends `bytes` in pieces, the first at once and the last `over` later; false if the client
/// went away first.
async fn trickle(client: &mut TcpStream, bytes: &[u8], over: Duration) -> bool {
    let pieces = TRICKLE_PIECES as usize;
    let size = bytes.len().div_ceil(pieces).max(1);
    let gap = over / (TRICKLE_PIECES - 1);
    for (i, piece) in bytes.chunks(size).enumerate() {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        if client.write_all(piece).await.is_err() || client.flush().await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny upstream: answers every request with `200` and a body naming its method and target
    /// (chunked for `/chunked`), and records the bodies it received.
    async fn upstream() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&got);
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let mut r = Reader { stream: &mut s, buf: Vec::new() };
                    let Ok(Some(req)) = read_request(&mut r).await else { return };
                    seen.lock().unwrap().push(req.body.clone());
                    let body = format!("{} {} {}", req.method, req.target, "x".repeat(1000));
                    let out = if req.target == "/chunked" {
                        format!(
                            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                            body.len()
                        )
                    } else {
                        format!("HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    };
                    let _ = s.write_all(out.as_bytes()).await;
                });
            }
        });
        (format!("http://{addr}"), got)
    }

    /// A minimal HTTP/1.1 GET over one connection (the test kit has no HTTP client).
    async fn get(url: &str) -> std::io::Result<(u16, String)> {
        let rest = url.strip_prefix("http://").unwrap();
        let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap();
        let mut s = TcpStream::connect(authority).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut r = Reader { stream: &mut s, buf: Vec::new() };
        let head = r.head().await?.ok_or_else(|| invalid("no answer"))?;
        let mut raw = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut raw);
        resp.parse(&head).unwrap();
        let headers = parsed_headers(resp.headers);
        let body = r.body(&headers, true).await?;
        Ok((resp.code.unwrap(), String::from_utf8(body).unwrap()))
    }

    #[tokio::test]
    async fn passes_answers_through_and_dechunks() {
        let (up, _) = upstream().await;
        let p = FaultProxy::start(&up, FaultPlan::none()).await.unwrap();
        let (status, body) = get(&format!("{}/a/b?c=1", p.url())).await.unwrap();
        assert_eq!(status, 200);
        assert!(body.starts_with("GET /a/b?c=1 "), "{body}");
        let (status, body) = get(&format!("{}/chunked", p.url())).await.unwrap();
        assert_eq!((status, body.len()), (200, "GET /chunked ".len() + 1000));
        assert_eq!(p.stats().requests, 2);
        assert_eq!(p.stats().total_faults(), 0);
    }

    #[tokio::test]
    async fn every_kind_is_served_and_spoils_the_answer() {
        let (up, _) = upstream().await;
        for kind in Fault::ALL {
            let plan = FaultPlan {
                rate: 1.0,
                kinds: vec![kind],
                stall: Duration::from_millis(300),
                trickle: Duration::from_millis(200),
                ..FaultPlan::none()
            };
            let p = FaultProxy::start(&up, plan).await.unwrap();
            let r = get(&format!("{}/x", p.url())).await;
            match kind {
                Fault::Unavailable => assert_eq!(r.unwrap().0, 503),
                Fault::Throttled => assert_eq!(r.unwrap().0, 429),
                Fault::Reset | Fault::Short | Fault::Stall => assert!(r.is_err(), "{kind:?}: {r:?}"),
                Fault::Trickle => assert_eq!(r.unwrap().0, 200),
            }
            assert_eq!(p.stats().faults.get(kind.name()), Some(&1), "{kind:?}");
        }
    }

    #[tokio::test]
    async fn the_same_seed_faults_the_same_occurrences_and_the_budget_holds() {
        let (up, _) = upstream().await;
        let plan = FaultPlan { rate: 0.3, kinds: vec![Fault::Unavailable], ..FaultPlan::random(7, 0.3) };
        let mut runs = Vec::new();
        for _ in 0..2 {
            let p = FaultProxy::start(&up, plan.clone()).await.unwrap();
            let mut statuses = Vec::new();
            for i in 0..40 {
                statuses.push(get(&format!("{}/f{}", p.url(), i % 10)).await.unwrap().0);
            }
            runs.push(statuses);
        }
        assert_eq!(runs[0], runs[1]);
        let faulted = runs[0].iter().filter(|&&s| s == 503).count();
        assert!((4..=20).contains(&faulted), "{faulted} of 40 at rate 0.3");

        let p = FaultProxy::start(&up, FaultPlan { rate: 1.0, budget: Some(3), ..plan }).await.unwrap();
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(get(&format!("{}/g", p.url())).await.unwrap().0);
        }
        assert_eq!(statuses, [503, 503, 503, 200, 200, 200]);
    }

    #[tokio::test]
    async fn an_abandoned_stall_is_noticed() {
        let (up, _) = upstream().await;
        let plan =
            FaultPlan { rate: 1.0, kinds: vec![Fault::Stall], stall: Duration::from_secs(30), ..FaultPlan::none() };
        let p = FaultProxy::start(&up, plan).await.unwrap();
        let url = format!("{}/s", p.url());
        assert!(tokio::time::timeout(Duration::from_millis(300), get(&url)).await.is_err());
        let t0 = Instant::now();
        while p.stats().stalls_abandoned == 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "the proxy did not notice");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(p.stats().longest_abandoned_stall < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn bodies_are_forwarded_and_answers_rewritten() {
        let (up, seen) = upstream().await;
        let plan = FaultPlan { rewrite: vec![("GET".into(), "got".into())], ..FaultPlan::none() };
        let p = FaultProxy::start(&up, plan).await.unwrap();
        let (_, body) = get(&format!("{}/r", p.url())).await.unwrap();
        assert!(body.starts_with("got /r"), "{body}");
        // A chunked PUT arrives upstream whole, with a length.
        let mut s = TcpStream::connect(p.local_addr()).await.unwrap();
        s.write_all(b"PUT /w HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert!(out.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out));
        assert!(seen.lock().unwrap().iter().any(|b| b == b"abcde"));
    }
}
