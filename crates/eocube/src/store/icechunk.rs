//! Cubes in Icechunk repositories (`icechunk:///path`, `icechunk+s3://bucket/prefix`): the
//! Icechunk [`CubeStore`], with all-or-nothing builds.
//!
//! **Branches.** A build never writes to the target branch (`--branch`, default `main`) until it
//! is finished. It works on a build branch `eocube.<build-id>`, where the build id is a hash of
//! the spec identity ([`crate::spec::CubeSpec::identity_json`], as stored in the cube) and the
//! target branch, so a rerun of the same build finds its branch again:
//!
//! ```text
//! main  ── S0 ───────────────────────────────────────────────▶ (reset to F, guarded by S0)
//!            \
//! eocube.<id> └─ start/template ─ checkpoint ─ checkpoint ─ … ─ F (final build commit)
//! ```
//!
//! 1. The build branch is created at the target's tip `S0`; its first commit holds the template
//!    (group, arrays, coordinates) when the target has no cube yet, and records `S0` (`base`).
//! 2. Each job writes its chunk in its own **fork** of the build branch's session (forked from a
//!    clean copy at the last commit: forking a session with changes would commit them first). The
//!    chunk object is uploaded by the job; the fork, the job's change set, is handed back when the
//!    job is recorded done ([`CubeStore::record`], with the job's [`Receipt`]) and merged into the
//!    coordinator's session. A job
//!    that fails or times out after writing leaves nothing there. Every `commit_every_jobs` done
//!    jobs, or `commit_every` elapsed, the coordinator commits; the commit properties list the
//!    jobs done since the previous commit with their ledger records and report lines. **The build
//!    branch's history is the resume ledger**: reopening it walks its ancestry and collects them.
//!    Receipts are serialized sessions, so a remote worker hands its change sets back the same
//!    way: it starts from [`CubeStore::worker_base`] (a serialized fork, stored with the run) and
//!    writes through [`IcechunkWorkerStore`].
//! 3. When every job is done, a final commit on the build branch carries a message and
//!    properties describing the build (spec, counts, eocube version); then the target branch is
//!    reset to it *only if it still points at `S0`* (`reset_branch` with the expected snapshot: a
//!    concurrent change makes the build fail with [`StoreError::BranchMoved`], never a mixed
//!    cube), `--tag` tags it, and the build branch is deleted.
//!
//! 4. `eocube extend` ([`Cube::begin_extend`]) starts a build branch whose first commit grows the time
//!    axis and carries the done jobs of the cube on the target over; the longer cube is then
//!    built on it as above, so the target moves once: one new version.
//!
//! A failed or killed build leaves the target branch exactly as it was; `eocube abort` deletes
//! the build branch. Two builds at once: of different cubes, the first to finish moves the
//! target and the other is refused at its final step; of the same cube, they share the build
//! branch and a commit overtaken by the other's is refused (so no commit mixes their work). The ledger and the run report live in commit properties (property `eocube`):
//! a repository accepts Zarr keys only. Runs (`_eocube/runs/`) are plain objects beside the
//! repository's own prefixes, which Icechunk ignores.
//!
//! **Credentials.** A serialized session carries its storage settings. Keys from the environment
//! are left to each process's environment (`FromEnv`), so none travel in a receipt or a run;
//! keys read from an AWS profile are static in the session, so [`CubeStore::worker_base`]
//! refuses to hand such a session to remote workers.
//!
//! **Format.** New repositories are created with Icechunk format version 1, which icechunk-python
//! 1.x (Python 3.11) and 2.x both read; an existing repository is used in its own format. Zarr v3
//! only. Chunk bytes are encoded by zarrs exactly as for the other back ends.
//!

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use icechunk::format::SnapshotId;
use icechunk::format::snapshot::SnapshotProperties;
use icechunk::repository::VersionInfo;
use icechunk::session::Session;
use icechunk::store::StoreErrorKind;
use icechunk::{Repository, Store};
use serde_json::{Value, json};

use super::location::{IcechunkRepo, OutLocation};
use super::object::{Files, ObjectBackend};
use super::view::Resolved;
use super::{Cube, CubeLayout, CubeStore, Finished, Job, Receipt, StoreError, ZarrFormat};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Prefix of build branches.
/// Icechunk refuses `/` in branch names, so not `eocube/<id>`.
pub const BUILD_BRANCH_PREFIX: &str = "eocube.";
/// Name of the commit property holding eocube's records.
const PROP: &str = "eocube";

/// How a build uses a repository (the `eocube build` flags `--branch`, `--tag`, `--commit-every`).
#[derive(Debug, Clone, PartialEq)]
pub struct IcechunkOptions {
    /// The branch that receives the finished cube.
    pub branch: String,
    /// Tag the finished cube with this name.
    pub tag: Option<String>,
    /// Commit to the build branch after this many done jobs...
    pub commit_every_jobs: usize,
    /// ...or when this much time has passed since the last commit, whichever comes first.
    pub commit_every: Duration,
}

impl Default for IcechunkOptions {
    fn default() -> Self {
        IcechunkOptions {
            branch: "main".into(),
            tag: None,
            commit_every_jobs: 100,
            commit_every: Duration::from_secs(120),
        }
    }
}

/// One version of a branch, for `eocube log`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Version {
    pub snapshot: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub message: String,
    /// eocube's commit properties (kind, done jobs, report lines, build description).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<Value>,
}

/// What the coordinator has not committed yet, and the ledger read back from the branch.
#[derive(Default)]
struct State {
    ledger: BTreeMap<Job, Value>,
    pending_done: Vec<(Job, Value)>,
    pending_report: Vec<Value>,
    last_commit: Option<Instant>,
    /// Message and wall seconds of every commit this run made, for the build's description.
    commits: Vec<Value>,
    /// The build branch holds something the target does not (template or chunks).
    changed: bool,
}

#[derive(Clone)]
struct BuildBranch {
    name: String,
    id: String,
    /// The target's tip when the build branch was created.
    base: SnapshotId,
}

/// A cube's repository and session (see the module docs).
pub struct IcechunkStore {
    location: OutLocation,
    /// `icechunk://...`, for messages.
    loc: String,
    repo: Arc<Repository>,
    store: Store,
    opts: IcechunkOptions,
    /// The build branch, when building; `None` for a read-only view of the target branch.
    build: Option<BuildBranch>,
    state: Mutex<State>,
    /// A clean writable session at the build branch's last commit: each job forks it (module
    /// docs, 2). `None` for a read-only view.
    fork_base: Mutex<Option<Session>>,
    /// The repository's root as plain objects, for eocube's run files.
    files: Files,
    /// The session holds static keys from an AWS profile (see the module docs, Credentials).
    profile_keys: bool,
    /// A writable session on the target branch itself ([`IcechunkStore::open_update`]): derived
    /// objects (the overview pyramid) are committed straight to the branch, once.
    update: bool,
}

/// A connected repository.
struct Connected {
    repo: Arc<Repository>,
    files: Files,
    profile_keys: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Icechunk errors carry their context chain: keep more of them than of an S3 error body.
fn one_line(s: &str) -> String {
    super::one_line(s, 600)
}

/// A failed repository operation; the message says how to go on.
fn ic_err(location: &str, op: &'static str, e: impl std::fmt::Display) -> StoreError {
    let reason = format!(
        "{} failed; check the location and its credentials, then run the same command again (jobs committed to \
         the build branch are kept; `eocube abort` starts over)",
        one_line(&e.to_string())
    );
    StoreError::Icechunk { location: location.to_string(), op, reason, transient: false }
}

/// A failed Zarr-level request of a session: transient unless icechunk's own kind says the
/// request itself was wrong.
fn session_err(location: &str, op: &'static str, e: icechunk::store::StoreError) -> StoreError {
    let transient = !matches!(
        e.kind,
        StoreErrorKind::InvalidKey { .. }
            | StoreErrorKind::InvalidIndex { .. }
            | StoreErrorKind::NotAllowed(_)
            | StoreErrorKind::NotFound(_)
            | StoreErrorKind::BadMetadata(_)
            | StoreErrorKind::NotOnBranch
    );
    match ic_err(location, op, e) {
        StoreError::Icechunk { location, op, reason, .. } => StoreError::Icechunk { location, op, reason, transient },
        other => other,
    }
}

/// The build branch of a spec identity and target branch: `eocube.<16 hex digits>` (FNV-1a, stable
/// across Rust versions and machines).
pub fn build_branch(identity: &Value, target: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.to_string().bytes().chain(std::iter::once(b'\n')).chain(target.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{BUILD_BRANCH_PREFIX}{h:016x}")
}

/// The repository's root as plain objects.
fn files_of(repo: &IcechunkRepo, location: &str) -> Result<Files> {
    let objects = match repo {
        IcechunkRepo::Local(path) => ObjectBackend::local(path, location.to_string())?,
        IcechunkRepo::S3 { bucket, prefix } => {
            ObjectBackend::new(&OutLocation::S3 { bucket: bucket.clone(), prefix: prefix.clone() })?
        }
    };
    Ok(Files::new(objects))
}

/// Open the repository at `repo`, or create it (format 1) if `create` and nothing is there.
async fn connect(repo: &IcechunkRepo, location: &str, create: bool) -> Result<Connected> {
    let loc = location.to_string();
    let mut profile_keys = false;
    let storage = match repo {
        IcechunkRepo::Local(path) => {
            if !create && !path.exists() {
                return Err(StoreError::NotFound { path: PathBuf::from(&loc) });
            }
            icechunk::new_local_filesystem_storage(path).await.map_err(|e| classify(&loc, "connect", e.to_string()))?
        }
        IcechunkRepo::S3 { bucket, prefix } => {
            // A profile error is a credentials problem the user must fix (as for plain S3).
            let s = crate::cloud::aws::S3Settings::from_env()
                .map_err(|e| StoreError::Config { location: loc.clone(), reason: e.to_string() })?;
            let mut opts = icechunk::storage::S3Options::default();
            opts.region = s.region.clone().or_else(|| Some("us-east-1".into()));
            opts.allow_http = s.allow_http;
            opts.force_path_style = s.path_style;
            opts.endpoint_url = s.endpoint.clone();
            opts.anonymous = s.anonymous;
            // As for plain S3: unsigned, keys from the environment (left there: see the module
            // docs), keys of a profile, or object_store's own chain (web identity, ECS, roles).
            let from_profile = matches!(s.credential_source, Some(crate::cloud::aws::CredentialSource::Profile { .. }));
            let creds = match (&s.credentials, s.anonymous) {
                (_, true) => icechunk::storage::S3Credentials::Anonymous,
                (Some(c), false) if from_profile => {
                    profile_keys = true;
                    icechunk::storage::S3Credentials::Static(icechunk::storage::S3StaticCredentials {
                        access_key_id: c.key_id.clone(),
                        secret_access_key: c.secret.clone(),
                        session_token: c.token.clone(),
                        expires_after: None,
                    })
                }
                _ => icechunk::storage::S3Credentials::FromEnv,
            };
            icechunk::new_s3_object_store_storage(
                opts,
                bucket.clone(),
                Some(prefix.clone()),
                Some(creds),
                Vec::new(),
                Vec::new(),
            )
            .await
            .map_err(|e| classify(&loc, "connect", e.to_string()))?
        }
    };
    let exists = Repository::exists(storage.clone(), None).await.map_err(|e| classify(&loc, "open", e.to_string()))?;
    let repository = if exists {
        Repository::open(storage).execute().await.map_err(|e| classify(&loc, "open", e.to_string()))?
    } else if create {
        let made = Repository::create(storage.clone())
            .spec_version(icechunk::format::format_constants::SpecVersionBin::V1)
            .execute()
            .await;
        match made {
            Ok(r) => r,
            // Two builds started at once on a new repository: the other one created it, or is
            // creating it (the prefix is no longer clean, but the repository is not there yet):
            // wait a little for it to appear.
            Err(e) => {
                let mut appeared = false;
                for _ in 0..CREATE_RACE_POLLS {
                    if Repository::exists(storage.clone(), None).await.unwrap_or(false) {
                        appeared = true;
                        break;
                    }
                    tokio::time::sleep(CREATE_RACE_POLL).await;
                }
                if appeared {
                    Repository::open(storage).execute().await.map_err(|e| classify(&loc, "open", e.to_string()))?
                } else if interrupted_creation(storage.as_ref()).await.unwrap_or(false) {
                    // A build killed while it created the repository: write the first commit
                    // (the same bytes) and the `main` branch again.
                    Repository::create(storage.clone())
                        .spec_version(icechunk::format::format_constants::SpecVersionBin::V1)
                        .check_clean_root(false)
                        .execute()
                        .await
                        .map_err(|e| classify(&loc, "create", e.to_string()))?
                } else {
                    return Err(classify(&loc, "create", e.to_string()));
                }
            }
        }
    } else {
        return Err(StoreError::NotFound { path: PathBuf::from(&loc) });
    };
    Ok(Connected { repo: Arc::new(repository), files: files_of(repo, location)?, profile_keys })
}

/// Whether the prefix holds exactly what a killed creation of a format 1 repository leaves: the
/// initial snapshot, written before the `main` branch that makes the repository exist, and
/// nothing else. Such a prefix holds no data, so creating the repository over it loses nothing;
/// anything more is someone else's and is left alone.
async fn interrupted_creation(storage: &dyn icechunk::Storage) -> std::result::Result<bool, icechunk::StorageError> {
    use futures::StreamExt;
    let settings = storage.default_settings().await?;
    let ctx = icechunk::storage::StorageContext::unattributed(&settings);
    let initial = format!("snapshots/{}", icechunk::format::snapshot::Snapshot::INITIAL_SNAPSHOT_ID);
    let mut listing = storage.list_objects(&ctx, "").await?;
    let mut seen = false;
    while let Some(object) = listing.next().await {
        if object?.id != initial {
            return Ok(false);
        }
        seen = true;
    }
    Ok(seen)
}

/// How long a build waits for a repository that another process is creating: polls of
/// [`CREATE_RACE_POLL`] (creation writes a handful of small objects, well under a second).
const CREATE_RACE_POLLS: u32 = 50;
const CREATE_RACE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Sort a connection error into the refusals a user can act on (as for plain S3).
fn classify(location: &str, op: &'static str, reason: String) -> StoreError {
    let reason = one_line(&reason);
    let has = |needles: &[&str]| needles.iter().any(|n| reason.contains(n));
    if has(&["NoSuchBucket", "bucket does not exist"]) {
        let bucket = location.trim_start_matches("icechunk+s3://").split('/').next().unwrap_or_default().to_string();
        return StoreError::NoBucket { location: location.into(), bucket, cloud: super::Cloud::S3 };
    }
    if has(&["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403 Forbidden"]) {
        return StoreError::Denied { location: location.into(), reason, cloud: super::Cloud::S3 };
    }
    if has(&["error sending request", "onnection refused", "dns error", "timed out", "tcp connect"]) {
        return StoreError::Unreachable { location: location.into(), reason, cloud: super::Cloud::S3 };
    }
    ic_err(location, op, reason)
}

type Ancestry = Vec<(icechunk::format::snapshot::SnapshotInfo, Option<Value>)>;

/// Every snapshot along `branch`, newest first, with its `eocube` property.
async fn ancestry(repo: &Repository, location: &str, branch: &str) -> Result<Ancestry> {
    let s = repo
        .ancestry(&VersionInfo::BranchTipRef(branch.to_string()))
        .await
        .map_err(|e| ic_err(location, "history", e))?;
    let v: Vec<_> = s.try_collect().await.map_err(|e| ic_err(location, "history", e))?;
    Ok(v.into_iter()
        .map(|info| {
            let p = info.metadata.get(PROP).cloned();
            (info, p)
        })
        .collect())
}

async fn branches(repo: &Repository, location: &str) -> Result<Vec<String>> {
    repo.list_branches().await.map(|b| b.into_iter().collect()).map_err(|e| ic_err(location, "list branches", e))
}

async fn branch_tip(repo: &Repository, location: &str, branch: &str) -> Result<Option<SnapshotId>> {
    if !branches(repo, location).await?.iter().any(|b| b == branch) {
        return Ok(None);
    }
    repo.lookup_branch(branch).await.map(Some).map_err(|e| ic_err(location, "read branch", e))
}

/// The tip of `branch`, or a refusal saying it does not exist and `fix`.
async fn require_branch(repo: &Repository, location: &str, branch: &str, fix: &str) -> Result<SnapshotId> {
    branch_tip(repo, location, branch).await?.ok_or_else(|| StoreError::Icechunk {
        location: location.to_string(),
        op: "open branch",
        reason: format!("the branch {branch:?} does not exist; {fix}"),
        transient: false,
    })
}

async fn session_store(repo: &Repository, location: &str, branch: &str, writable: bool) -> Result<Store> {
    let session = if writable {
        repo.writable_session(branch).await
    } else {
        repo.readonly_session(&VersionInfo::BranchTipRef(branch.to_string())).await
    }
    .map_err(|e| ic_err(location, "open session", e))?;
    Ok(Store::from_session(Arc::new(tokio::sync::RwLock::new(session))).await)
}

/// The first commit of a build branch: `template` (new cube), `start` (the target holds this
/// cube already) or `extend` (`eocube extend`: the time axis grows).
fn is_start(props: &Value) -> bool {
    matches!(props.get("kind").and_then(Value::as_str), Some("template" | "start" | "extend"))
}

/// The ledger of build `id` along `hist`: the done jobs its commits recorded.
fn ledger_of(hist: &Ancestry, id: &str) -> BTreeMap<Job, Value> {
    let mut ledger = BTreeMap::new();
    for p in hist.iter().filter_map(|(_, p)| p.as_ref()) {
        if p.get("build_id").and_then(Value::as_str) == Some(id) {
            read_ledger(p, &mut ledger);
        }
    }
    ledger
}

fn read_ledger(p: &Value, into: &mut BTreeMap<Job, Value>) {
    for e in p.get("ledger").and_then(Value::as_array).into_iter().flatten() {
        let job: Option<(usize, usize, usize)> = e.get("job").and_then(|j| serde_json::from_value(j.clone()).ok());
        if let Some((t, iy, ix)) = job {
            into.entry(Job { t, iy, ix }).or_insert_with(|| e.get("record").cloned().unwrap_or(Value::Null));
        }
    }
}

impl IcechunkStore {
    fn new(
        location: &OutLocation,
        c: Connected,
        store: Store,
        opts: &IcechunkOptions,
        build: Option<BuildBranch>,
    ) -> Self {
        IcechunkStore {
            location: location.clone(),
            loc: location.to_string(),
            repo: c.repo,
            store,
            opts: opts.clone(),
            build,
            state: Mutex::new(State::default()),
            fork_base: Mutex::new(None),
            files: c.files,
            profile_keys: c.profile_keys,
            update: false,
        }
    }

    /// The finished cube on `branch`, writable in place, for objects derived from it (`eocube
    /// overviews`): [`CubeStore::publish_derived`] commits them to the branch in one commit,
    /// refused if the branch moved meanwhile. No build branch: nothing a job computes changes.
    pub async fn open_update(loc: &OutLocation, branch: &str) -> Result<IcechunkStore> {
        let OutLocation::Icechunk(repo_loc) = loc else {
            return Err(StoreError::Unsupported { location: loc.to_string(), what: "not an Icechunk location".into() });
        };
        let location = loc.to_string();
        let c = connect(repo_loc, &location, false).await?;
        require_branch(&c.repo, &location, branch, "give the branch holding the cube (`branch`)").await?;
        let store = session_store(&c.repo, &location, branch, true).await?;
        let opts = IcechunkOptions { branch: branch.to_string(), ..Default::default() };
        let mut ic = IcechunkStore::new(loc, c, store, &opts, None);
        ic.update = true;
        Ok(ic)
    }

    fn err(&self, op: &'static str, e: impl std::fmt::Display) -> StoreError {
        ic_err(&self.loc, op, e)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// A clean copy of the build session for the next jobs to fork.
    async fn reset_fork_base(&self) {
        let base = self.store.session().read().await.clone();
        *lock(&self.fork_base) = Some(base);
    }

    async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.store.set(key, bytes).await.map_err(|e| session_err(&self.loc, "write", e))
    }

    /// Create the cube in the repository at `loc` (creating the repository if missing) on a build
    /// branch, or resume that build branch; a target branch holding this very cube is reused
    /// (its done jobs are read from its history). Anything else is refused without writing.
    pub async fn create_or_open(
        loc: &OutLocation,
        layout: &CubeLayout,
        opts: &IcechunkOptions,
    ) -> Result<(Cube, bool)> {
        let OutLocation::Icechunk(repo_loc) = loc else {
            return Err(StoreError::Unsupported { location: loc.to_string(), what: "not an Icechunk location".into() });
        };
        let location = loc.to_string();
        if layout.zarr_format == ZarrFormat::V2 {
            return Err(StoreError::InvalidLayout {
                path: PathBuf::from(&location),
                reason: "Icechunk stores Zarr v3 only; drop `zarr-format` 2 (or write v2 to a plain path)".into(),
            });
        }
        let c = connect(repo_loc, &location, true).await?;
        let repo = c.repo.clone();
        let target = opts.branch.clone();
        let target_tip = require_branch(&repo, &location, &target, "create it first or give another `branch`").await?;
        if let Some(tag) = &opts.tag {
            let tags = repo.list_tags().await.map_err(|e| ic_err(&location, "list tags", e))?;
            if tags.contains(tag) {
                return Err(StoreError::Icechunk {
                    location,
                    op: "tag",
                    reason: format!("the tag {tag:?} exists already; give another `tag` (tags never move)"),
                    transient: false,
                });
            }
        }
        let name = build_branch(&layout.attrs, &target);
        let id = name.trim_start_matches(BUILD_BRANCH_PREFIX).to_string();

        // A build branch at the target's tip has no commit of its own: its creator was killed
        // before its first commit, or another process is making that commit right now. Take it
        // over (should the other one commit first, this one's commit is refused).
        let build_tip = branch_tip(&repo, &location, &name).await?;
        let unstarted = build_tip.as_ref() == Some(&target_tip);
        // Resume: the build branch exists.
        if build_tip.is_some() && !unstarted {
            let hist = ancestry(&repo, &location, &name).await?;
            let mut base = None;
            let mut st = State::default();
            for (_, p) in &hist {
                let Some(p) = p.as_ref().filter(|p| p.get("build_id").and_then(Value::as_str) == Some(&id)) else {
                    continue;
                };
                read_ledger(p, &mut st.ledger);
                match p.get("kind").and_then(Value::as_str) {
                    Some("checkpoint") if base.is_none() => {
                        st.changed |= p.get("ledger").is_some_and(|l| l != &json!([]))
                    }
                    Some(kind @ ("template" | "start" | "extend")) if base.is_none() => {
                        st.changed |= kind != "start";
                        base = p.get("base").and_then(Value::as_str).and_then(|s| SnapshotId::try_from(s).ok());
                    }
                    _ => {}
                }
            }
            let Some(base) = base else {
                return Err(StoreError::NotACube {
                    path: PathBuf::from(&location),
                    reason: format!("the branch {name} has no eocube start commit; delete it with `eocube abort`"),
                });
            };
            let store = session_store(&repo, &location, &name, true).await?;
            let ic = IcechunkStore::new(loc, c, store, opts, Some(BuildBranch { name, id, base }));
            ic.reset_fork_base().await;
            {
                let mut s = ic.state();
                s.ledger = st.ledger;
                s.changed = st.changed;
                s.last_commit = Some(Instant::now());
            }
            let cube = Cube::from_store(Arc::new(ic)).await?;
            return Ok((Cube::check_matching(cube, layout)?, true));
        }

        // The target holds a cube already: it must be this one (checked before writing).
        let target_store = session_store(&repo, &location, &target, false).await?;
        let has_cube = target_store.exists("zarr.json").await.unwrap_or(false);
        let mut ledger_before = BTreeMap::new();
        if has_cube {
            let view = IcechunkStore::new(
                loc,
                Connected { repo: repo.clone(), files: c.files.clone(), profile_keys: c.profile_keys },
                target_store,
                opts,
                None,
            );
            Cube::check_matching(Cube::from_store(Arc::new(view)).await?, layout)?;
            ledger_before = ledger_of(&ancestry(&repo, &location, &target).await?, &id);
        } else {
            let listed = target_store.list_prefix("").await.map_err(|e| session_err(&location, "list", e))?;
            let keys: Vec<String> = listed.try_collect().await.map_err(|e| session_err(&location, "list", e))?;
            if !keys.is_empty() {
                return Err(StoreError::NotACube {
                    path: PathBuf::from(&location),
                    reason: format!("the branch {target:?} holds other data (no root group); give another `branch`"),
                });
            }
        }

        // A new build branch at the target's tip.
        if !unstarted && let Err(e) = repo.create_branch(&name, &target_tip).await {
            return Err(if branch_tip(&repo, &location, &name).await.ok().flatten().is_some() {
                StoreError::Icechunk {
                    location: location.clone(),
                    op: "create branch",
                    reason: format!(
                        "another eocube process started the same build (branch {name}) a moment ago; let it \
                         finish, or stop it and run this command again to resume its build"
                    ),
                    transient: false,
                }
            } else {
                ic_err(&location, "create branch", e)
            });
        }
        let store = session_store(&repo, &location, &name, true).await?;
        let build = BuildBranch { name, id: id.clone(), base: target_tip.clone() };
        let ic = IcechunkStore::new(loc, c, store, opts, Some(build));
        let kind = if has_cube { "start" } else { "template" };
        if !has_cube {
            let objects = super::template_objects(&loc.as_path_buf(), layout)?;
            ic.write_template(layout, objects).await?;
        }
        ic.commit(
            format!("eocube: {kind} of build {id} for branch {target}"),
            json!({"kind": kind, "build_id": id, "base": target_tip.to_string(), "target": target}),
        )
        .await?;
        {
            let mut s = ic.state();
            s.ledger = ledger_before;
            s.changed = !has_cube;
            s.last_commit = Some(Instant::now());
        }
        let ic = Arc::new(ic);
        let cube = if has_cube { Cube::from_store(ic).await? } else { Cube::with_store(ic, layout.clone())? };
        Ok((cube, has_cube))
    }

    /// A read-only view for `eocube status` and `extend`: with `unfinished`, the build branch of
    /// `branch` if one exists (unfinished build), else the branch itself.
    pub async fn open_view(loc: &OutLocation, branch: &str, unfinished: bool) -> Result<IcechunkStore> {
        let OutLocation::Icechunk(repo_loc) = loc else {
            return Err(StoreError::Unsupported { location: loc.to_string(), what: "not an Icechunk location".into() });
        };
        let location = loc.to_string();
        let c = connect(repo_loc, &location, false).await?;
        let repo = c.repo.clone();
        let opts = IcechunkOptions { branch: branch.to_string(), ..Default::default() };
        let candidates = if unfinished { branches(&repo, &location).await? } else { Vec::new() };
        for name in candidates.into_iter().filter(|b| b.starts_with(BUILD_BRANCH_PREFIX)) {
            let hist = ancestry(&repo, &location, &name).await?;
            let start = hist
                .iter()
                .filter_map(|(_, p)| p.as_ref())
                .find(|p| is_start(p) && p.get("target").and_then(Value::as_str) == Some(branch));
            let Some(start) = start else { continue };
            let id = start.get("build_id").and_then(Value::as_str).unwrap_or_default().to_string();
            let Some(base) = start.get("base").and_then(Value::as_str).and_then(|s| SnapshotId::try_from(s).ok())
            else {
                continue;
            };
            let ledger = ledger_of(&hist, &id);
            let store = session_store(&repo, &location, &name, false).await?;
            let ic = IcechunkStore::new(loc, c, store, &opts, Some(BuildBranch { name, id, base }));
            ic.state().ledger = ledger;
            return Ok(ic);
        }
        if branch_tip(&repo, &location, branch).await?.is_none() {
            return Err(StoreError::NotFound { path: PathBuf::from(&location) });
        }
        let store = session_store(&repo, &location, branch, false).await?;
        // Finished: the jobs of the newest build along the branch (an extend carries the older
        // ones over) are done.
        let hist = ancestry(&repo, &location, branch).await?;
        let last_build = hist
            .iter()
            .filter_map(|(_, p)| p.as_ref())
            .find(|p| p.get("kind").and_then(Value::as_str) == Some("build"));
        let ledger = match last_build.and_then(|p| p.get("build_id")).and_then(Value::as_str) {
            Some(id) => ledger_of(&hist, id),
            None => BTreeMap::new(),
        };
        let ic = IcechunkStore::new(loc, c, store, &opts, None);
        ic.state().ledger = ledger;
        Ok(ic)
    }

    /// A store for a remote worker of a run: chunks go into copies of the serialized fork
    /// `base` ([`CubeStore::worker_base`]); nothing is committed.
    pub fn for_worker(loc: &OutLocation, base: &[u8]) -> Result<IcechunkWorkerStore> {
        let OutLocation::Icechunk(repo_loc) = loc else {
            return Err(StoreError::Unsupported { location: loc.to_string(), what: "not an Icechunk location".into() });
        };
        let location = loc.to_string();
        let base = Session::from_bytes(base).map_err(|e| ic_err(&location, "read the run's session", e))?;
        Ok(IcechunkWorkerStore { location: loc.clone(), files: files_of(repo_loc, &location)?, base })
    }

    /// A bookkeeping file (`_eocube/<key>`) of the repository at `loc`, read without opening
    /// the repository: how a worker finds its run's fork before it has a session.
    pub async fn read_file(loc: &OutLocation, key: &str) -> Result<Option<Bytes>> {
        let OutLocation::Icechunk(repo_loc) = loc else {
            return Err(StoreError::Unsupported { location: loc.to_string(), what: "not an Icechunk location".into() });
        };
        files_of(repo_loc, &loc.to_string())?.get(key).await
    }

    fn maybe_checkpoint_due(&self) -> bool {
        let st = self.state();
        st.pending_done.len() >= self.opts.commit_every_jobs.max(1)
            || st.last_commit.is_some_and(|t| t.elapsed() >= self.opts.commit_every)
    }

    async fn commit(&self, message: String, props: Value) -> Result<SnapshotId> {
        let t0 = Instant::now();
        let label = message.clone();
        let session = self.store.session();
        let mut properties = SnapshotProperties::new();
        properties.insert(PROP.into(), props);
        let id = {
            let mut s = session.write().await;
            let id = s
                .commit(message)
                .properties(properties)
                .allow_empty(true)
                .execute()
                .await
                .map_err(|e| self.commit_err(e.to_string()));
            let id = match id {
                Ok(id) => id,
                Err(e) => return Err(e.await),
            };
            // A committed session turns read-only: go on in a new one at the new tip, under the
            // same lock, so that writers never see the read-only one. Its clean copy is the new
            // fork base (forking a session with changes would commit them anonymously first).
            if let Some(b) = &self.build {
                *s = self.repo.writable_session(&b.name).await.map_err(|e| self.err("open session", e))?;
                *lock(&self.fork_base) = Some(s.clone());
            }
            id
        };
        let seconds = (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        self.state().commits.push(json!({"message": label, "seconds": seconds}));
        Ok(id)
    }

    /// A failed commit. A conflict means that another process committed to the same build
    /// branch meanwhile: the same build running twice.
    async fn commit_err(&self, reason: String) -> StoreError {
        let conflict = ["Conflict", "conflict", "branch tip", "rebase"].iter().any(|n| reason.contains(n));
        if let Some(b) = &self.build
            && branch_tip(&self.repo, &self.loc, &b.name).await.is_ok_and(|t| t.is_none())
        {
            return StoreError::Icechunk {
                location: self.loc.clone(),
                op: "commit",
                reason: format!(
                    "the build branch {} was removed meanwhile (another process finished the same build, or \
                     `eocube abort` ran); run the command again to see what is left to do",
                    b.name
                ),
                transient: false,
            };
        }
        match (&self.build, conflict) {
            (Some(b), true) => StoreError::Icechunk {
                location: self.loc.clone(),
                op: "commit",
                reason: format!(
                    "another process committed to the build branch {} meanwhile: the same build is running twice. \
                     Let the other one finish (this one's jobs are not committed; run again afterwards to check) \
                     ({})",
                    b.name,
                    one_line(&reason)
                ),
                transient: false,
            },
            _ => self.err("commit", reason),
        }
    }

    /// The `eocube` property of every commit along `branch`'s ancestry, newest first.
    async fn ancestry_props(&self, branch: &str) -> Result<Vec<Value>> {
        Ok(ancestry(&self.repo, &self.loc, branch).await?.into_iter().filter_map(|(_, p)| p).collect())
    }

    async fn tag(&self, tag: &str, at: &SnapshotId) -> Result<()> {
        self.repo.create_tag(tag, at).await.map(|_| ()).map_err(|e| self.err("tag", e))
    }
}

#[async_trait]
impl CubeStore for IcechunkStore {
    fn location(&self) -> &OutLocation {
        &self.location
    }

    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        match self.store.get(key, &icechunk::format::ByteRange::ALL).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if matches!(e.kind, StoreErrorKind::NotFound(_)) => Ok(None),
            Err(e) => Err(session_err(&self.loc, "read", e)),
        }
    }

    async fn write_template(&self, _layout: &CubeLayout, objects: Vec<(String, Bytes)>) -> Result<()> {
        // No plan document: the layout is in the group attributes, and the commit is atomic.
        for (k, v) in objects {
            self.put(&k, v).await?;
        }
        Ok(())
    }

    /// The chunk goes into a fork of the build branch's session; its reference stays in the
    /// fork, handed back as the receipt, so a job that fails after writing leaves nothing in the
    /// coordinator's session.
    async fn write_chunks(&self, _job: Job, chunks: Vec<(String, Option<Bytes>)>) -> Result<Receipt> {
        let Some(base) = lock(&self.fork_base).clone() else {
            return Err(StoreError::Unsupported {
                location: self.loc.clone(),
                what: "the cube is open read-only (no build branch)".into(),
            });
        };
        let fork = base.fork().await.map_err(|e| self.err("fork", e))?;
        write_in_session(&self.loc, fork, chunks).await
    }

    async fn record(&self, batch: Vec<Finished>) -> Result<()> {
        if self.build.is_none() {
            return Err(StoreError::Unsupported {
                location: self.loc.clone(),
                what: "the cube is open read-only".into(),
            });
        }
        for f in batch {
            if let Some(receipt) = &f.receipt {
                if let Receipt::ChangeSet(bytes) = receipt {
                    let fork = Session::from_bytes(bytes).map_err(|e| self.err("read a job's change set", e))?;
                    let session = self.store.session();
                    session.write().await.merge(fork).await.map_err(|e| self.err("merge", e))?;
                }
                let mut st = self.state();
                st.ledger.insert(f.job, f.record.clone());
                st.pending_done.push((f.job, f.record.clone()));
                st.changed = true;
            }
            self.state().pending_report.push(f.record);
        }
        if self.maybe_checkpoint_due() { self.checkpoint().await } else { Ok(()) }
    }

    /// Commit the session to the build branch with the pending ledger and report records.
    async fn checkpoint(&self) -> Result<()> {
        let Some(b) = &self.build else { return Ok(()) };
        let (done, report) = {
            let mut st = self.state();
            (std::mem::take(&mut st.pending_done), std::mem::take(&mut st.pending_report))
        };
        let ledger: Vec<Value> = done.iter().map(|(j, r)| json!({"job": [j.t, j.iy, j.ix], "record": r})).collect();
        let n = ledger.len();
        let report_back = report.clone();
        let props = json!({"kind": "checkpoint", "build_id": b.id, "ledger": ledger, "report": report});
        match self.commit(format!("eocube: checkpoint, {n} jobs done"), props).await {
            Ok(_) => {
                self.state().last_commit = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                // Keep the records for the next attempt.
                let mut st = self.state();
                st.pending_done.extend(done);
                st.pending_report.splice(0..0, report_back);
                Err(e)
            }
        }
    }

    /// The final step (module docs, 3): build commit, guarded reset of the target, tag, delete
    /// the build branch.
    async fn publish(&self, layout: &CubeLayout) -> Result<()> {
        let Some(b) = self.build.clone() else { return Ok(()) };
        // Only with records pending: uncommitted changes without any are derived objects (the
        // overview pyramid), which belong in the final commit with the cube.
        let pending = {
            let st = self.state();
            !st.pending_done.is_empty() || !st.pending_report.is_empty()
        };
        if pending {
            self.checkpoint().await?;
        }
        let (changed, jobs, scenes, commits) = {
            let st = self.state();
            let scenes: u64 = st.ledger.values().filter_map(|r| r.get("scenes").and_then(Value::as_u64)).sum();
            (st.changed, st.ledger.len(), scenes, st.commits.clone())
        };
        let target = self.opts.branch.clone();
        if changed {
            let props = json!({
                "kind": "build",
                "build_id": b.id,
                "spec": layout.attrs,
                "eocube_version": env!("CARGO_PKG_VERSION"),
                "jobs_done": jobs,
                "scenes": scenes,
                "time_bins": layout.times.len(),
                "variable": layout.variable,
                "commits_before": commits,
            });
            let id =
                self.commit(format!("eocube build: {} ({jobs} jobs, {scenes} scenes)", layout.variable), props).await?;
            if let Err(e) = self.repo.reset_branch(&target, &id, Some(&b.base)).await {
                return Err(StoreError::BranchMoved {
                    location: self.loc.clone(),
                    branch: target,
                    build_branch: b.name.clone(),
                    reason: e.to_string(),
                });
            }
            if let Some(tag) = &self.opts.tag {
                self.tag(tag, &id).await?;
            }
        } else if let Some(tag) = &self.opts.tag {
            // Nothing new: tag the target's tip, which is this cube.
            self.tag(tag, &b.base).await?;
        }
        self.repo.delete_branch(&b.name).await.map_err(|e| self.err("delete branch", e))
    }

    /// Whether the cube is finished: a read-only view of the target branch (no build branch).
    async fn is_published(&self) -> Result<bool> {
        Ok(self.build.is_none())
    }

    async fn done_jobs(&self) -> Result<BTreeSet<Job>> {
        Ok(self.state().ledger.keys().copied().collect())
    }

    async fn ledger_record(&self, job: Job) -> Result<Option<Value>> {
        Ok(self.state().ledger.get(&job).cloned())
    }

    /// The report records committed on the branch (oldest first) and the pending ones.
    async fn report(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        // A build: its own commits. A view of a branch: every build that made its versions.
        let (branch, build_id) = match &self.build {
            Some(b) => (b.name.as_str(), Some(b.id.as_str())),
            None => (self.opts.branch.as_str(), None),
        };
        let mut commits = self.ancestry_props(branch).await?;
        commits.reverse();
        for p in commits {
            if build_id.is_none_or(|id| p.get("build_id").and_then(Value::as_str) == Some(id)) {
                out.extend(p.get("report").and_then(Value::as_array).cloned().unwrap_or_default());
            }
        }
        out.extend(self.state().pending_report.iter().cloned());
        Ok(out)
    }

    /// `eocube extend` into a repository (module docs, 4), called on the finished cube of the
    /// target branch: a build branch at the target's tip whose first commit (`extend`) grows the
    /// time axis to `layout`'s and carries over the done jobs of the cube's last build but those
    /// `redo` names. The build of `layout` (same build branch: same spec and target) then resumes
    /// from it and its final step moves the target once: one new version. When the build branch
    /// exists already (an interrupted extend), nothing is done here: the build resumes it.
    async fn begin_extend(
        &self,
        layout: &CubeLayout,
        objects: Vec<(String, Bytes)>,
        redo: &(dyn Fn(Job) -> bool + Sync),
    ) -> Result<()> {
        let (repo, location) = (self.repo.clone(), self.loc.clone());
        let target = self.opts.branch.clone();
        let tip = require_branch(&repo, &location, &target, "give the branch holding the cube (`branch`)").await?;
        let name = build_branch(&layout.attrs, &target);
        let existing = branch_tip(&repo, &location, &name).await?;
        // A build branch with commits of its own is resumed by the build; one without (its
        // creator was killed before the extend commit) is taken over here.
        if existing.as_ref().is_some_and(|t| t != &tip) {
            return Ok(());
        }
        let id = name.trim_start_matches(BUILD_BRANCH_PREFIX).to_string();
        let carried: Vec<Value> =
            self.state().ledger.keys().filter(|&&j| !redo(j)).map(|j| json!({"job": [j.t, j.iy, j.ix]})).collect();
        if existing.is_none() {
            repo.create_branch(&name, &tip).await.map_err(|e| ic_err(&location, "create branch", e))?;
        }
        let written = async {
            let store = session_store(&repo, &location, &name, true).await?;
            let build = BuildBranch { name: name.clone(), id: id.clone(), base: tip.clone() };
            let c = Connected { repo: repo.clone(), files: self.files.clone(), profile_keys: self.profile_keys };
            let ic = IcechunkStore::new(&self.location, c, store, &self.opts, Some(build));
            ic.write_template(layout, objects).await?;
            let n = carried.len();
            ic.commit(
                format!(
                    "eocube: extend of build {id} for branch {target} to {} time bins ({n} jobs kept)",
                    layout.times.len()
                ),
                json!({"kind": "extend", "build_id": id, "base": tip.to_string(), "target": target, "ledger": carried}),
            )
            .await
            .map(|_| ())
        }
        .await;
        if written.is_err() {
            // Leave no half-made build branch behind (best effort: the target is untouched anyway).
            let _ = repo.delete_branch(&name).await;
        }
        written
    }

    fn files(&self) -> &Files {
        &self.files
    }

    async fn worker_base(&self) -> Result<Option<Vec<u8>>> {
        if self.profile_keys {
            return Err(StoreError::Config {
                location: self.loc.clone(),
                reason: "the repository's S3 keys come from an AWS profile, and a serialized session would carry \
                         them to every worker; give workers credentials of their own (AWS_ACCESS_KEY_ID / \
                         AWS_SECRET_ACCESS_KEY in the environment, or a role) and run again"
                    .into(),
            });
        }
        let Some(base) = lock(&self.fork_base).clone() else {
            return Err(StoreError::Unsupported {
                location: self.loc.clone(),
                what: "the cube is open read-only (no build branch)".into(),
            });
        };
        let fork = base.fork().await.map_err(|e| self.err("fork", e))?;
        fork.as_bytes().map(Some).map_err(|e| self.err("serialize the session", e))
    }

    /// Into the coordinator's session (a build: its publish commits them with the cube) or the
    /// branch's (opened for update).
    async fn write_derived(&self, objects: Vec<(String, Option<Bytes>)>) -> Result<()> {
        if self.build.is_none() && !self.update {
            return Err(StoreError::Unsupported {
                location: self.loc.clone(),
                what: "the cube is open read-only".into(),
            });
        }
        for (key, bytes) in objects {
            match bytes {
                Some(b) => self.put(&key, b).await?,
                None => match self.store.delete(&key).await {
                    Ok(()) => {}
                    Err(e) if matches!(e.kind, StoreErrorKind::NotFound(_)) => {}
                    Err(e) => return Err(session_err(&self.loc, "write", e)),
                },
            }
        }
        if self.build.is_some() {
            // The build's final commit must happen even when no job ran (a finished cube
            // built again with overviews).
            self.state().changed = true;
        }
        Ok(())
    }

    async fn publish_derived(&self, _layout: &CubeLayout, message: &str, props: Value) -> Result<()> {
        if !self.update {
            return Ok(());
        }
        self.commit(message.to_string(), props).await.map(|_| ())
    }
}

/// Write (or, with `None`, erase) `key` in `session` and hand the session back serialized.
async fn write_in_session(location: &str, session: Session, chunks: Vec<(String, Option<Bytes>)>) -> Result<Receipt> {
    let cell = Arc::new(tokio::sync::RwLock::new(session));
    let store = Store::from_session(Arc::clone(&cell)).await;
    // One session for every chunk of the job: one change set, merged (or not) as a whole.
    for (key, bytes) in chunks {
        match bytes {
            Some(v) => store.set(&key, v).await.map_err(|e| session_err(location, "write", e))?,
            None => match store.delete(&key).await {
                Ok(()) => {}
                Err(e) if matches!(e.kind, StoreErrorKind::NotFound(_)) => {}
                Err(e) => return Err(session_err(location, "write", e)),
            },
        }
    }
    drop(store);
    let session = cell.read().await;
    session.as_bytes().map(Receipt::ChangeSet).map_err(|e| ic_err(location, "serialize the change set", e))
}

/// A remote worker's side of an Icechunk run: writes chunks into copies of the run's fork and
/// hands their change sets back; everything a coordinator does is refused.
pub struct IcechunkWorkerStore {
    location: OutLocation,
    files: Files,
    base: Session,
}

impl IcechunkWorkerStore {
    fn refused(&self, what: &str) -> StoreError {
        StoreError::Unsupported {
            location: self.location.to_string(),
            what: format!("{what} is the coordinator's (`eocube collect`), not a worker's"),
        }
    }
}

#[async_trait]
impl CubeStore for IcechunkWorkerStore {
    fn location(&self) -> &OutLocation {
        &self.location
    }

    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        let cell = Arc::new(tokio::sync::RwLock::new(self.base.clone()));
        let store = Store::from_session(cell).await;
        let loc = self.location.to_string();
        match store.get(key, &icechunk::format::ByteRange::ALL).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if matches!(e.kind, StoreErrorKind::NotFound(_)) => Ok(None),
            Err(e) => Err(session_err(&loc, "read", e)),
        }
    }

    async fn write_template(&self, _layout: &CubeLayout, _objects: Vec<(String, Bytes)>) -> Result<()> {
        Err(self.refused("writing the template"))
    }

    async fn write_chunks(&self, _job: Job, chunks: Vec<(String, Option<Bytes>)>) -> Result<Receipt> {
        write_in_session(&self.location.to_string(), self.base.clone(), chunks).await
    }

    async fn record(&self, _batch: Vec<Finished>) -> Result<()> {
        Err(self.refused("recording jobs"))
    }

    async fn checkpoint(&self) -> Result<()> {
        Err(self.refused("committing"))
    }

    async fn publish(&self, _layout: &CubeLayout) -> Result<()> {
        Err(self.refused("publishing"))
    }

    async fn is_published(&self) -> Result<bool> {
        Ok(false)
    }

    async fn done_jobs(&self) -> Result<BTreeSet<Job>> {
        Ok(BTreeSet::new())
    }

    async fn ledger_record(&self, _job: Job) -> Result<Option<Value>> {
        Ok(None)
    }

    async fn report(&self) -> Result<Vec<Value>> {
        Ok(Vec::new())
    }

    async fn begin_extend(
        &self,
        _layout: &CubeLayout,
        _objects: Vec<(String, Bytes)>,
        _redo: &(dyn Fn(Job) -> bool + Sync),
    ) -> Result<()> {
        Err(self.refused("extending"))
    }

    fn files(&self) -> &Files {
        &self.files
    }

    async fn worker_base(&self) -> Result<Option<Vec<u8>>> {
        self.base.as_bytes().map(Some).map_err(|e| ic_err(&self.location.to_string(), "serialize the session", e))
    }
}

/// `eocube abort`: delete the build branches that target `branch`; returns their names.
pub async fn abort(out: &OutLocation, branch: &str) -> Result<Vec<String>> {
    let OutLocation::Icechunk(repo_loc) = out else {
        return Err(StoreError::Icechunk {
            location: out.to_string(),
            op: "abort",
            reason: "only Icechunk repositories have build branches (icechunk:///path or icechunk+s3://bucket/prefix)"
                .into(),
            transient: false,
        });
    };
    let location = out.to_string();
    let repo = connect(repo_loc, &location, false).await?.repo;
    let mut deleted = Vec::new();
    for name in branches(&repo, &location).await?.into_iter().filter(|b| b.starts_with(BUILD_BRANCH_PREFIX)) {
        let targets = ancestry(&repo, &location, &name)
            .await?
            .into_iter()
            .filter_map(|(_, p)| p)
            .any(|p| is_start(&p) && p.get("target").and_then(Value::as_str) == Some(branch));
        if targets {
            repo.delete_branch(&name).await.map_err(|e| ic_err(&location, "delete branch", e))?;
            deleted.push(name);
        }
    }
    Ok(deleted)
}

/// `eocube log`: the versions of `branch`, newest first: the snapshots the branch pointed at
/// (builds, extends and commits made by other tools). With `all`, also the commits a build
/// made on its build branch on the way (template, checkpoints), which readers of the branch never
/// saw.
pub async fn log(out: &OutLocation, branch: &str, all: bool) -> Result<Vec<Version>> {
    let OutLocation::Icechunk(repo_loc) = out else {
        return Err(StoreError::Icechunk {
            location: out.to_string(),
            op: "log",
            reason: "only Icechunk repositories keep versions (icechunk:///path or icechunk+s3://bucket/prefix)".into(),
            transient: false,
        });
    };
    let location = out.to_string();
    let repo = connect(repo_loc, &location, false).await?.repo;
    if branch_tip(&repo, &location, branch).await?.is_none() {
        return Err(StoreError::Icechunk {
            location,
            op: "log",
            reason: format!("no branch {branch:?}; give an existing `branch`"),
            transient: false,
        });
    }
    let on_the_way = |p: &Option<Value>| {
        p.as_ref()
            .and_then(|p| p.get("kind"))
            .and_then(Value::as_str)
            .is_some_and(|k| !matches!(k, "build" | "overviews"))
    };
    Ok(ancestry(&repo, &location, branch)
        .await?
        .into_iter()
        .filter(|(_, p)| all || !on_the_way(p))
        .map(|(info, properties)| Version {
            snapshot: info.id.to_string(),
            time: info.flushed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            message: info.message,
            properties,
        })
        .collect())
}

/// The named versions of a repository: branches and tags with their snapshots, and the
/// published versions of `main` (newest first).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Versions {
    pub branches: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub snapshots: Vec<Version>,
}

/// A read-only view of the repository at `loc` at `version`: a snapshot id, else a tag, else a
/// branch (in that order, so a snapshot URL can never be taken over by a branch of that name).
/// `None` reads `main`. Unfinished builds (`eocube.*` branches) cannot be pinned.
pub async fn open_pinned(loc: &OutLocation, version: Option<&str>) -> Result<(IcechunkStore, Resolved)> {
    let OutLocation::Icechunk(repo_loc) = loc else {
        return Err(StoreError::Unsupported { location: loc.to_string(), what: "not an Icechunk location".into() });
    };
    let location = loc.to_string();
    let c = connect(repo_loc, &location, false).await?;
    let repo = c.repo.clone();
    let name = version.unwrap_or("main");
    let mut pinned = None;
    if let Ok(id) = SnapshotId::try_from(name)
        && repo.lookup_snapshot(&id).await.is_ok()
    {
        pinned = Some((VersionInfo::SnapshotId(id), Resolved::Snapshot { snapshot: name.to_string() }));
    }
    if pinned.is_none() {
        let tags = repo.list_tags().await.map_err(|e| ic_err(&location, "list tags", e))?;
        if tags.contains(name) {
            let id = repo.lookup_tag(name).await.map_err(|e| ic_err(&location, "read tag", e))?;
            pinned = Some((
                VersionInfo::SnapshotId(id.clone()),
                Resolved::Tag { name: name.into(), snapshot: id.to_string() },
            ));
        } else if !name.starts_with(BUILD_BRANCH_PREFIX)
            && let Some(id) = branch_tip(&repo, &location, name).await?
        {
            // Read the snapshot the branch points at now, not its moving tip: the answer's
            // ETag names exactly what was read.
            pinned = Some((
                VersionInfo::SnapshotId(id.clone()),
                Resolved::Branch { name: name.into(), snapshot: id.to_string() },
            ));
        } else {
            let branches: Vec<String> =
                branches(&repo, &location).await?.into_iter().filter(|b| !b.starts_with(BUILD_BRANCH_PREFIX)).collect();
            return Err(StoreError::Icechunk {
                location,
                op: "open version",
                reason: format!(
                    "no snapshot, tag or branch {name:?}; the repository has the branches [{}] and the tags [{}] (`eocube log` lists the snapshots)",
                    branches.join(", "),
                    tags.into_iter().collect::<Vec<_>>().join(", ")
                ),
                transient: false,
            });
        }
    }
    let Some((info, pinned)) = pinned else {
        return Err(StoreError::NotFound { path: PathBuf::from(&location) });
    };
    let session = repo.readonly_session(&info).await.map_err(|e| ic_err(&location, "open session", e))?;
    let store = Store::from_session(Arc::new(tokio::sync::RwLock::new(session))).await;
    let opts = IcechunkOptions { branch: name.to_string(), ..Default::default() };
    Ok((IcechunkStore::new(loc, c, store, &opts, None), pinned))
}

/// The branches (without unfinished builds), tags and published versions of `main`.
pub async fn versions(loc: &OutLocation) -> Result<Versions> {
    let OutLocation::Icechunk(repo_loc) = loc else {
        return Err(StoreError::Unsupported { location: loc.to_string(), what: "not an Icechunk location".into() });
    };
    let location = loc.to_string();
    let repo = connect(repo_loc, &location, false).await?.repo;
    let mut out = Versions { branches: Vec::new(), tags: Vec::new(), snapshots: Vec::new() };
    for b in branches(&repo, &location).await?.into_iter().filter(|b| !b.starts_with(BUILD_BRANCH_PREFIX)) {
        let id = repo.lookup_branch(&b).await.map_err(|e| ic_err(&location, "read branch", e))?;
        out.branches.push((b, id.to_string()));
    }
    for t in repo.list_tags().await.map_err(|e| ic_err(&location, "list tags", e))? {
        let id = repo.lookup_tag(&t).await.map_err(|e| ic_err(&location, "read tag", e))?;
        out.tags.push((t, id.to_string()));
    }
    if out.branches.iter().any(|(b, _)| b == "main") {
        out.snapshots = log(loc, "main", false).await?;
    }
    Ok(out)
}
