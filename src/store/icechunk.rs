//! Cubes in Icechunk repositories (`icechunk:///path`, `icechunk+s3://bucket/prefix`): the
//! [`super::Backend::Icechunk`] side of the store, with all-or-nothing builds.
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
//!    job is recorded done ([`Cube::mark_done`]) and merged into the coordinator's session. A job
//!    that fails or times out after writing leaves nothing there. Every `commit_every_jobs` done
//!    jobs, or `commit_every` elapsed, the coordinator commits; the commit properties list the
//!    jobs done since the previous commit with their ledger records and report lines. **The build
//!    branch's history is the resume ledger**: reopening it walks its ancestry and collects them.
//!    (Forks serialise, so remote workers can hand theirs back the same way.)
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
//! branch and a commit overtaken by the other's is refused (so no commit mixes their work). eocube's `_eocube/` bookkeeping cannot live in a repository as plain keys
//! (Icechunk accepts Zarr keys only): the plan is not stored (the layout is in the group
//! attributes), the ledger and the run report live in commit properties (property `eocube`).
//!
//! **Format.** New repositories are created with Icechunk format version 1, which icechunk-python
//! 1.x (Python 3.11) and 2.x both read; an existing repository is used in its own format. Zarr v3
//! only. Chunk bytes are encoded by zarrs exactly as for the other back ends.
//!
//! **Blocking bridge.** The [`super::Cube`] API is synchronous and called from rayon threads and
//! async tasks; icechunk is async only. As in [`super::object`], every call runs on the store's
//! own runtime (`eocube-store-io`) and the caller waits on a channel (`object::block`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use icechunk::format::SnapshotId;
use icechunk::format::snapshot::SnapshotProperties;
use icechunk::repository::VersionInfo;
use icechunk::session::Session;
use icechunk::{Repository, Store};
use serde_json::{Value, json};

use super::location::{IcechunkRepo, OutLocation};
use super::object::block;
use super::{Backend, Cube, CubeLayout, JobId, StoreError, ZarrFormat, ledger};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Prefix of build branches.
/// Icechunk refuses `/` in branch names, so not `eocube.<id>`.
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
    ledger: BTreeMap<JobId, Value>,
    pending_done: Vec<(JobId, Value)>,
    pending_report: Vec<Value>,
    last_commit: Option<Instant>,
    /// Message and wall seconds of every commit this run made, for the build's description.
    commits: Vec<Value>,
    /// The build branch holds something the target does not (template or chunks).
    changed: bool,
}

/// A cube's repository and session (see the module docs).
pub struct IcechunkBackend {
    /// `icechunk://...`, for messages.
    location: String,
    repo: Arc<Repository>,
    store: Store,
    opts: IcechunkOptions,
    /// The build branch, when building; `None` for a read-only view of the target branch.
    build: Option<BuildBranch>,
    state: Mutex<State>,
    /// A clean writable session at the build branch's last commit: each job forks it (module
    /// docs, 2). `None` for a read-only view.
    fork_base: Mutex<Option<Session>>,
    /// Each job's fork, holding its chunk, until the job is recorded done and its changes are
    /// merged into the coordinator's session.
    forks: Mutex<HashMap<JobId, Session>>,
}

#[derive(Clone)]
struct BuildBranch {
    name: String,
    id: String,
    /// The target's tip when the build branch was created.
    base: SnapshotId,
}

impl IcechunkBackend {
    fn err(&self, op: &'static str, e: impl std::fmt::Display) -> StoreError {
        ic_err(&self.location, op, e)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Write (or, with `None`, erase) the data chunk `key` of `job` in a fork of the build
    /// branch's session. The chunk object is uploaded now; the reference to it stays in the fork
    /// until [`Cube::mark_done`] hands the fork back ([`IcechunkBackend::put`] merges it), so a
    /// job that fails after writing leaves nothing in the coordinator's session.
    pub(crate) fn write_job_chunk(&self, job: JobId, key: &str, bytes: Option<&[u8]>) -> Result<()> {
        let Some(base) = lock(&self.fork_base).clone() else {
            return Err(self.err("write", "the cube is open read-only (no build branch)"));
        };
        let (k, v) = (key.to_string(), bytes.map(Bytes::copy_from_slice));
        let fork = block(async move {
            let fork = base.fork().await.map_err(|e| e.to_string())?;
            let cell = Arc::new(tokio::sync::RwLock::new(fork));
            let store = Store::from_session(Arc::clone(&cell)).await;
            match v {
                Some(v) => store.set(&k, v).await.map_err(|e| e.to_string())?,
                None => match store.delete(&k).await {
                    Ok(()) => {}
                    Err(e) if matches!(e.kind, icechunk::store::StoreErrorKind::NotFound(_)) => {}
                    Err(e) => return Err(e.to_string()),
                },
            }
            drop(store);
            Ok(match Arc::try_unwrap(cell) {
                Ok(lock) => lock.into_inner(),
                Err(cell) => cell.read().await.clone(),
            })
        })
        .map_err(|e| self.err("write", e))?
        .map_err(|e| self.err("write", e))?;
        lock(&self.forks).insert(job, fork);
        Ok(())
    }

    /// Merge the fork of `job` (if it wrote anything) into the coordinator's session.
    fn merge_fork(&self, job: JobId) -> Result<()> {
        let Some(fork) = lock(&self.forks).remove(&job) else { return Ok(()) };
        let session = self.store.session();
        block(async move { session.write().await.merge(fork).await.map_err(|e| e.to_string()) })
            .map_err(|e| self.err("merge", e))?
            .map_err(|e| self.err("merge", e))
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        if let Some(job) = bookkeeping_job(key) {
            return Ok(self.state().ledger.get(&job).map(|v| v.to_string().into_bytes()));
        }
        if key.starts_with(super::BOOKKEEPING_DIR) {
            return Ok(None);
        }
        let (store, k) = (self.store.clone(), key.to_string());
        let got = block(async move {
            match store.get(&k, &icechunk::format::ByteRange::ALL).await {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(e) if matches!(e.kind, icechunk::store::StoreErrorKind::NotFound(_)) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        });
        got.map_err(|e| self.err("read", e))?.map_err(|e| self.err("read", e))
    }

    /// Write a Zarr key into the session, or take a bookkeeping record (see the module docs).
    pub(crate) fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        if let Some(job) = bookkeeping_job(key) {
            self.merge_fork(job)?;
            let record = serde_json::from_slice(bytes).unwrap_or(Value::Null);
            {
                let mut st = self.state();
                st.ledger.insert(job, record.clone());
                st.pending_done.push((job, record));
                st.changed = true;
            }
            return self.maybe_checkpoint();
        }
        if key.starts_with(super::BOOKKEEPING_DIR) {
            // The plan: the layout is in the group attributes already.
            return Ok(());
        }
        let (store, k, v) = (self.store.clone(), key.to_string(), Bytes::copy_from_slice(bytes));
        block(async move { store.set(&k, v).await.map_err(|e| e.to_string()) })
            .map_err(|e| self.err("write", e))?
            .map_err(|e| self.err("write", e))
    }

    pub(crate) fn delete(&self, key: &str) -> Result<()> {
        if key.starts_with(super::BOOKKEEPING_DIR) {
            return Ok(());
        }
        let (store, k) = (self.store.clone(), key.to_string());
        block(async move {
            match store.delete(&k).await {
                Ok(()) => Ok(()),
                Err(e) if matches!(e.kind, icechunk::store::StoreErrorKind::NotFound(_)) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .map_err(|e| self.err("delete", e))?
        .map_err(|e| self.err("delete", e))
    }

    pub(crate) fn list_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        if prefix == format!("{}/ledger/", super::BOOKKEEPING_DIR) {
            return Ok(self.state().ledger.keys().map(|&j| ledger::key(j)).collect());
        }
        if prefix.starts_with(super::BOOKKEEPING_DIR) {
            return Ok(Vec::new());
        }
        let (store, p) = (self.store.clone(), prefix.to_string());
        block(async move {
            let s = store.list_prefix(&p).await.map_err(|e| e.to_string())?;
            s.try_collect::<Vec<String>>().await.map_err(|e| e.to_string())
        })
        .map_err(|e| self.err("list", e))?
        .map_err(|e| self.err("list", e))
    }

    /// One report record: kept for the next commit's properties.
    pub(crate) fn append_report(&self, line: &str) -> Result<()> {
        let v = serde_json::from_str(line).unwrap_or_else(|_| Value::String(line.to_string()));
        self.state().pending_report.push(v);
        Ok(())
    }

    /// The report records committed on the branch (oldest first) and the pending ones.
    pub(crate) fn report(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        if let Some(b) = &self.build {
            let mut commits = self.ancestry_props(&b.name)?;
            commits.reverse();
            for p in commits.into_iter().filter(|p| p.get("build_id").and_then(Value::as_str) == Some(&b.id)) {
                out.extend(p.get("report").and_then(Value::as_array).cloned().unwrap_or_default());
            }
        }
        out.extend(self.state().pending_report.iter().cloned());
        Ok(out)
    }

    /// Whether the cube is finished: a read-only view of the target branch (no build branch).
    pub(crate) fn is_complete(&self) -> bool {
        self.build.is_none()
    }

    fn maybe_checkpoint(&self) -> Result<()> {
        let due = {
            let st = self.state();
            st.pending_done.len() >= self.opts.commit_every_jobs.max(1)
                || st.last_commit.is_some_and(|t| t.elapsed() >= self.opts.commit_every)
        };
        if due { self.checkpoint() } else { Ok(()) }
    }

    /// Commit the session to the build branch with the pending ledger and report records.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        let Some(b) = &self.build else { return Ok(()) };
        let (done, report) = {
            let mut st = self.state();
            (std::mem::take(&mut st.pending_done), std::mem::take(&mut st.pending_report))
        };
        let ledger: Vec<Value> = done.iter().map(|((t, iy, ix), r)| json!({"job": [t, iy, ix], "record": r})).collect();
        let n = ledger.len();
        let report_back = report.clone();
        let props = json!({"kind": "checkpoint", "build_id": b.id, "ledger": ledger, "report": report});
        let result = self.commit(format!("eocube: checkpoint, {n} jobs done"), props);
        match result {
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

    fn commit(&self, message: String, props: Value) -> Result<SnapshotId> {
        let t0 = Instant::now();
        let label = message.clone();
        let session = self.store.session();
        let mut properties = SnapshotProperties::new();
        properties.insert(PROP.into(), props);
        let (repo, branch) = (self.repo.clone(), self.build.as_ref().map(|b| b.name.clone()));
        let (id, base) = block(async move {
            let mut s = session.write().await;
            let id = s
                .commit(message)
                .properties(properties)
                .allow_empty(true)
                .execute()
                .await
                .map_err(|e| e.to_string())?;
            // A committed session turns read-only: go on in a new one at the new tip, under the
            // same lock, so that writers never see the read-only one. Its clean copy is the new
            // fork base (forking a session with changes would commit them anonymously first).
            let mut base = None;
            if let Some(b) = branch {
                *s = repo.writable_session(&b).await.map_err(|e| e.to_string())?;
                base = Some(s.clone());
            }
            Ok::<_, String>((id, base))
        })
        .map_err(|e| self.err("commit", e))?
        .map_err(|e| self.commit_err(e))?;
        if base.is_some() {
            *lock(&self.fork_base) = base;
        }
        let seconds = (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        self.state().commits.push(json!({"message": label, "seconds": seconds}));
        Ok(id)
    }

    /// A failed commit. A conflict means that another process committed to the same build
    /// branch meanwhile: the same build running twice.
    fn commit_err(&self, reason: String) -> StoreError {
        let conflict = ["Conflict", "conflict", "branch tip", "rebase"].iter().any(|n| reason.contains(n));
        if let Some(b) = &self.build
            && branch_tip(&self.repo, &self.location, &b.name).is_ok_and(|t| t.is_none())
        {
            return StoreError::Icechunk {
                location: self.location.clone(),
                op: "commit",
                reason: format!(
                    "the build branch {} was removed meanwhile (another process finished the same build, or \
                     `eocube abort` ran); run the command again to see what is left to do",
                    b.name
                ),
            };
        }
        match (&self.build, conflict) {
            (Some(b), true) => StoreError::Icechunk {
                location: self.location.clone(),
                op: "commit",
                reason: format!(
                    "another process committed to the build branch {} meanwhile: the same build is running twice. \
                     Let the other one finish (this one's jobs are not committed; run again afterwards to check) \
                     ({})",
                    b.name,
                    one_line(&reason)
                ),
            },
            _ => self.err("commit", reason),
        }
    }

    /// The `eocube` property of every commit along `branch`'s ancestry, newest first.
    fn ancestry_props(&self, branch: &str) -> Result<Vec<Value>> {
        Ok(ancestry(&self.repo, &self.location, branch)?.into_iter().filter_map(|(_, p)| p).collect())
    }

    /// The final step (module docs, 3): build commit, guarded reset of the target, tag, delete
    /// the build branch.
    pub(crate) fn publish(&self, layout: &CubeLayout) -> Result<()> {
        let Some(b) = self.build.clone() else { return Ok(()) };
        self.checkpoint()?;
        let (changed, jobs, scenes, commits) = {
            let st = self.state();
            let scenes: u64 = st.ledger.values().filter_map(|r| r.get("scenes").and_then(Value::as_u64)).sum();
            (st.changed, st.ledger.len(), scenes, st.commits.clone())
        };
        let repo = self.repo.clone();
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
            let id = self.commit(format!("eocube build: {} ({jobs} jobs, {scenes} scenes)", layout.variable), props)?;
            let (r, t, base, to) = (repo.clone(), target.clone(), b.base.clone(), id.clone());
            let moved = block(async move { r.reset_branch(&t, &to, Some(&base)).await.map_err(|e| e.to_string()) })
                .map_err(|e| self.err("update branch", e))?;
            if let Err(reason) = moved {
                return Err(StoreError::BranchMoved {
                    location: self.location.clone(),
                    branch: target,
                    build_branch: b.name.clone(),
                    reason,
                });
            }
            if let Some(tag) = self.opts.tag.clone() {
                let r = repo.clone();
                block(async move { r.create_tag(&tag, &id).await.map_err(|e| e.to_string()) })
                    .map_err(|e| self.err("tag", e))?
                    .map_err(|e| self.err("tag", e))?;
            }
        } else if let Some(tag) = self.opts.tag.clone() {
            // Nothing new: tag the target's tip, which is this cube.
            let (r, base) = (repo.clone(), b.base.clone());
            block(async move { r.create_tag(&tag, &base).await.map_err(|e| e.to_string()) })
                .map_err(|e| self.err("tag", e))?
                .map_err(|e| self.err("tag", e))?;
        }
        let name = b.name.clone();
        block(async move { repo.delete_branch(&name).await.map_err(|e| e.to_string()) })
            .map_err(|e| self.err("delete branch", e))?
            .map_err(|e| self.err("delete branch", e))
    }
}

/// A failed repository operation; the message says how to go on.
fn ic_err(location: &str, op: &'static str, e: impl std::fmt::Display) -> StoreError {
    let reason = format!(
        "{} failed; check the location and its credentials, then run the same command again (jobs committed to \
         the build branch are kept; `eocube abort` starts over)",
        one_line(&e.to_string())
    );
    StoreError::Icechunk { location: location.to_string(), op, reason }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Icechunk errors carry their context chain: keep more of them than of an S3 error body.
fn one_line(s: &str) -> String {
    super::one_line(s, 600)
}

/// The job of a ledger key under `_eocube/ledger/`.
fn bookkeeping_job(key: &str) -> Option<JobId> {
    key.strip_prefix(super::BOOKKEEPING_DIR)?.strip_prefix("/ledger/").and_then(ledger::parse_key)
}

/// The build branch of a spec identity and target branch: `eocube/<16 hex digits>` (FNV-1a, stable
/// across Rust versions and machines).
pub fn build_branch(identity: &Value, target: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in identity.to_string().bytes().chain(std::iter::once(b'\n')).chain(target.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{BUILD_BRANCH_PREFIX}{h:016x}")
}

/// Open the repository at `repo`, or create it (format 1) if `create` and nothing is there.
fn connect(repo: &IcechunkRepo, location: &str, create: bool) -> Result<Repository> {
    let repo = repo.clone();
    let loc = location.to_string();
    // A profile error is a credentials problem the user must fix (as for plain S3).
    let settings = match &repo {
        IcechunkRepo::S3 { .. } => Some(
            super::aws::S3Settings::from_env()
                .map_err(|e| StoreError::Config { location: loc.clone(), reason: e.to_string() })?,
        ),
        IcechunkRepo::Local(_) => None,
    };
    let got = block(async move {
        let storage = match &repo {
            IcechunkRepo::Local(path) => {
                icechunk::new_local_filesystem_storage(path).await.map_err(|e| ("connect", e.to_string()))?
            }
            IcechunkRepo::S3 { bucket, prefix } => {
                let s = settings.as_ref().ok_or(("configure", "no S3 settings (an eocube bug)".to_string()))?;
                let mut opts = icechunk::storage::S3Options::default();
                opts.region = s.region.clone().or_else(|| Some("us-east-1".into()));
                opts.allow_http = s.allow_http;
                opts.force_path_style = s.path_style;
                opts.endpoint_url = s.endpoint.clone();
                opts.anonymous = s.anonymous;
                // As for plain S3: unsigned, the resolved keys (environment or profile), or
                // object_store's own chain (web identity, ECS, instance role).
                let creds = match (&s.credentials, s.anonymous) {
                    (_, true) => icechunk::storage::S3Credentials::Anonymous,
                    (Some(c), false) => {
                        icechunk::storage::S3Credentials::Static(icechunk::storage::S3StaticCredentials {
                            access_key_id: c.key_id.clone(),
                            secret_access_key: c.secret.clone(),
                            session_token: c.token.clone(),
                            expires_after: None,
                        })
                    }
                    (None, false) => icechunk::storage::S3Credentials::FromEnv,
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
                .map_err(|e| ("connect", e.to_string()))?
            }
        };
        let exists = Repository::exists(storage.clone(), None).await.map_err(|e| ("open", e.to_string()))?;
        if exists {
            Repository::open(storage).execute().await.map(Some).map_err(|e| ("open", e.to_string()))
        } else if create {
            let made = Repository::create(storage.clone())
                .spec_version(icechunk::format::format_constants::SpecVersionBin::V1)
                .execute()
                .await;
            match made {
                Ok(r) => Ok(Some(r)),
                // Two builds started at once on a new repository: the other one created it.
                Err(e) => match Repository::exists(storage.clone(), None).await {
                    Ok(true) => {
                        Repository::open(storage).execute().await.map(Some).map_err(|e| ("open", e.to_string()))
                    }
                    _ => Err(("create", e.to_string())),
                },
            }
        } else {
            Ok(None)
        }
    });
    match got.map_err(|e| ic_err(&loc, "connect", e))? {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(StoreError::NotFound { path: PathBuf::from(&loc) }),
        Err((op, reason)) => Err(classify(&loc, op, reason)),
    }
}

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
fn ancestry(repo: &Arc<Repository>, location: &str, branch: &str) -> Result<Ancestry> {
    let (r, b) = (repo.clone(), branch.to_string());
    block(async move {
        let s = r.ancestry(&VersionInfo::BranchTipRef(b)).await.map_err(|e| e.to_string())?;
        s.map_err(|e| e.to_string()).try_collect::<Vec<_>>().await
    })
    .map_err(|e| ic_err(location, "history", e))?
    .map_err(|e| ic_err(location, "history", e))
    .map(|v| {
        v.into_iter()
            .map(|info| {
                let p = info.metadata.get(PROP).cloned();
                (info, p)
            })
            .collect()
    })
}

fn branches(repo: &Arc<Repository>, location: &str) -> Result<Vec<String>> {
    let r = repo.clone();
    block(async move { r.list_branches().await.map_err(|e| e.to_string()) })
        .map_err(|e| ic_err(location, "list branches", e))?
        .map_err(|e| ic_err(location, "list branches", e))
        .map(|b| b.into_iter().collect())
}

fn branch_tip(repo: &Arc<Repository>, location: &str, branch: &str) -> Result<Option<SnapshotId>> {
    if !branches(repo, location)?.iter().any(|b| b == branch) {
        return Ok(None);
    }
    let (r, b) = (repo.clone(), branch.to_string());
    block(async move { r.lookup_branch(&b).await.map_err(|e| e.to_string()) })
        .map_err(|e| ic_err(location, "read branch", e))?
        .map_err(|e| ic_err(location, "read branch", e))
        .map(Some)
}

/// The tip of `branch`, or a refusal saying it does not exist and `fix`.
fn require_branch(repo: &Arc<Repository>, location: &str, branch: &str, fix: &str) -> Result<SnapshotId> {
    branch_tip(repo, location, branch)?.ok_or_else(|| StoreError::Icechunk {
        location: location.to_string(),
        op: "open branch",
        reason: format!("the branch {branch:?} does not exist; {fix}"),
    })
}

fn session_store(repo: &Arc<Repository>, location: &str, branch: &str, writable: bool) -> Result<Store> {
    let (r, b) = (repo.clone(), branch.to_string());
    block(async move {
        let session = if writable {
            r.writable_session(&b).await
        } else {
            r.readonly_session(&VersionInfo::BranchTipRef(b)).await
        }
        .map_err(|e| e.to_string())?;
        Ok::<_, String>(Store::from_session(Arc::new(tokio::sync::RwLock::new(session))).await)
    })
    .map_err(|e| ic_err(location, "open session", e))?
    .map_err(|e| ic_err(location, "open session", e))
}

fn backend(
    location: &str,
    repo: Arc<Repository>,
    store: Store,
    opts: &IcechunkOptions,
    build: Option<BuildBranch>,
) -> Backend {
    let ic = IcechunkBackend {
        location: location.to_string(),
        repo,
        store,
        opts: opts.clone(),
        build,
        state: Mutex::new(State::default()),
        fork_base: Mutex::new(None),
        forks: Mutex::new(HashMap::new()),
    };
    Backend::Icechunk { root: PathBuf::from(location), store: Arc::new(ic) }
}

/// The Icechunk builds of [`Cube`]; see the module docs.
impl Cube {
    /// Commit the done jobs not committed yet to the build branch (Icechunk); a no-op elsewhere,
    /// where each job's ledger entry is written when it ends.
    pub fn checkpoint(&self) -> Result<()> {
        match &self.backend {
            Backend::Icechunk { store, .. } => store.checkpoint(),
            _ => Ok(()),
        }
    }

    /// Create the cube in the repository at `loc` (creating the repository if missing) on a build
    /// branch, or resume that build branch; a target branch holding this very cube is reused
    /// (its done jobs are read from its history). Anything else is refused without writing.
    pub fn create_or_open_icechunk(
        loc: &OutLocation,
        layout: &CubeLayout,
        opts: &IcechunkOptions,
    ) -> Result<(Cube, bool)> {
        let OutLocation::Icechunk(repo_loc) = loc else {
            return Cube::create_or_open_matching(loc, layout);
        };
        let location = loc.to_string();
        if layout.zarr_format == ZarrFormat::V2 {
            return Err(StoreError::InvalidLayout {
                path: PathBuf::from(&location),
                reason: "Icechunk stores Zarr v3 only; drop --zarr-format 2 (or write v2 to a plain path)".into(),
            });
        }
        super::validate(&loc.as_path_buf(), layout)?;
        let repo = Arc::new(connect(repo_loc, &location, true)?);
        let target = opts.branch.clone();
        let target_tip = require_branch(&repo, &location, &target, "create it first or give another --branch")?;
        if let Some(tag) = &opts.tag {
            let r = repo.clone();
            let tags = block(async move { r.list_tags().await.map_err(|e| e.to_string()) })
                .map_err(|e| ic_err(&location, "list tags", e))?
                .map_err(|e| ic_err(&location, "list tags", e))?;
            if tags.contains(tag) {
                return Err(StoreError::Icechunk {
                    location,
                    op: "tag",
                    reason: format!("the tag {tag:?} exists already; give another --tag (tags never move)"),
                });
            }
        }
        let name = build_branch(&layout.attrs, &target);
        let id = name.trim_start_matches(BUILD_BRANCH_PREFIX).to_string();

        // A build branch at the target's tip has no commit of its own: its creator was killed
        // before its first commit, or another process is making that commit right now. Take it
        // over (should the other one commit first, this one's commit is refused).
        let build_tip = branch_tip(&repo, &location, &name)?;
        let unstarted = build_tip.as_ref() == Some(&target_tip);
        // Resume: the build branch exists.
        if build_tip.is_some() && !unstarted {
            let hist = ancestry(&repo, &location, &name)?;
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
            let store = session_store(&repo, &location, &name, true)?;
            let b = backend(&location, repo, store, opts, Some(BuildBranch { name, id, base }));
            let cube = Cube::open_with_backend(loc, b)?;
            let cube = Cube::check_matching(cube, layout)?;
            if let Backend::Icechunk { store, .. } = &cube.backend {
                let base = store.store.session();
                let base = block(async move { base.read().await.clone() }).map_err(|e| store.err("fork", e))?;
                *lock(&store.fork_base) = Some(base);
                let mut s = store.state();
                s.ledger = st.ledger;
                s.changed = st.changed;
                s.last_commit = Some(Instant::now());
            }
            return Ok((cube, true));
        }

        // The target holds a cube already: it must be this one (checked before writing).
        let target_store = session_store(&repo, &location, &target, false)?;
        let has_cube = block({
            let s = target_store.clone();
            async move { s.exists("zarr.json").await.unwrap_or(false) }
        })
        .map_err(|e| ic_err(&location, "read", e))?;
        let mut ledger_before = BTreeMap::new();
        if has_cube {
            let view = backend(&location, repo.clone(), target_store, opts, None);
            Cube::check_matching(Cube::open_with_backend(loc, view)?, layout)?;
            ledger_before = ledger_of(&ancestry(&repo, &location, &target)?, &id);
        } else {
            let keys = block({
                let s = target_store.clone();
                async move {
                    let l = s.list_prefix("").await.map_err(|e| e.to_string())?;
                    l.try_collect::<Vec<String>>().await.map_err(|e| e.to_string())
                }
            })
            .map_err(|e| ic_err(&location, "list", e))?
            .map_err(|e| ic_err(&location, "list", e))?;
            if !keys.is_empty() {
                return Err(StoreError::NotACube {
                    path: PathBuf::from(&location),
                    reason: format!("the branch {target:?} holds other data (no root group); give another --branch"),
                });
            }
        }

        // A new build branch at the target's tip.
        let (r, n, tip) = (repo.clone(), name.clone(), target_tip.clone());
        let create = async move {
            if unstarted { Ok(()) } else { r.create_branch(&n, &tip).await.map(|_| ()).map_err(|e| e.to_string()) }
        };
        block(create).map_err(|e| ic_err(&location, "create branch", e))?.map_err(|e| {
            if branch_tip(&repo, &location, &name).ok().flatten().is_some() {
                StoreError::Icechunk {
                    location: location.clone(),
                    op: "create branch",
                    reason: format!(
                        "another eocube process started the same build (branch {name}) a moment ago; let it \
                             finish, or stop it and run this command again to resume its build"
                    ),
                }
            } else {
                ic_err(&location, "create branch", e)
            }
        })?;
        let store = session_store(&repo, &location, &name, true)?;
        let build = BuildBranch { name, id: id.clone(), base: target_tip.clone() };
        let b = backend(&location, repo, store, opts, Some(build));
        let kind = if has_cube { "start" } else { "template" };
        if !has_cube {
            super::write_template(&b, &loc.as_path_buf(), layout)?;
        }
        let Backend::Icechunk { store: ic, .. } = &b else {
            return Err(ic_err(&location, "open", "not an Icechunk back end (an eocube bug)"));
        };
        ic.commit(
            format!("eocube: {kind} of build {id} for branch {target}"),
            json!({"kind": kind, "build_id": id, "base": target_tip.to_string(), "target": target}),
        )?;
        {
            let mut s = ic.state();
            s.ledger = ledger_before;
            s.changed = !has_cube;
            s.last_commit = Some(Instant::now());
        }
        let cube = if has_cube {
            Cube::open_with_backend(loc, b)?
        } else {
            Cube::with_backend(loc.clone(), b, layout.clone())?
        };
        Ok((cube, has_cube))
    }
}

/// The first commit of a build branch: `template` (new cube), `start` (the target holds this
/// cube already) or `extend` (`eocube extend`: the time axis grows).
fn is_start(props: &Value) -> bool {
    matches!(props.get("kind").and_then(Value::as_str), Some("template" | "start" | "extend"))
}

/// The ledger of build `id` along `hist`: the done jobs its commits recorded.
fn ledger_of(hist: &Ancestry, id: &str) -> BTreeMap<JobId, Value> {
    let mut ledger = BTreeMap::new();
    for p in hist.iter().filter_map(|(_, p)| p.as_ref()) {
        if p.get("build_id").and_then(Value::as_str) == Some(id) {
            read_ledger(p, &mut ledger);
        }
    }
    ledger
}

impl Cube {
    /// `eocube extend` into a repository (module docs, 4), called on the finished cube of the
    /// target branch ([`Cube::open_branch`] without `unfinished`): a build branch at the target's
    /// tip whose first commit (`extend`) grows the time axis to `layout`'s and carries over the
    /// done jobs of the cube's last build but those `redo` names. The build of `layout` (same
    /// build branch: same spec and target) then resumes from it and its final step moves the
    /// target once: one new version. When the build branch exists already (an interrupted
    /// extend), nothing is done here: the build resumes it.
    pub fn begin_extend(
        &self,
        layout: &CubeLayout,
        opts: &IcechunkOptions,
        redo: &dyn Fn(JobId) -> bool,
    ) -> Result<()> {
        let Backend::Icechunk { store: view, .. } = &self.backend else {
            return Err(ic_err(&self.location.to_string(), "extend", "not an Icechunk repository (an eocube bug)"));
        };
        let (repo, location) = (view.repo.clone(), view.location.clone());
        let target = opts.branch.clone();
        let tip = require_branch(&repo, &location, &target, "give the branch holding the cube with --branch")?;
        let name = build_branch(&layout.attrs, &target);
        let existing = branch_tip(&repo, &location, &name)?;
        // A build branch with commits of its own is resumed by the build; one without (its
        // creator was killed before the extend commit) is taken over here.
        if existing.as_ref().is_some_and(|t| t != &tip) {
            return Ok(());
        }
        let id = name.trim_start_matches(BUILD_BRANCH_PREFIX).to_string();
        // Checked on the target, before anything is written.
        self.check_extends(layout)?;
        let carried: Vec<Value> =
            view.state().ledger.keys().filter(|&&j| !redo(j)).map(|(t, iy, ix)| json!({"job": [t, iy, ix]})).collect();

        if existing.is_none() {
            let (r, n, at) = (repo.clone(), name.clone(), tip.clone());
            block(async move { r.create_branch(&n, &at).await.map_err(|e| e.to_string()) })
                .map_err(|e| ic_err(&location, "create branch", e))?
                .map_err(|e| ic_err(&location, "create branch", e))?;
        }
        let written = (|| {
            let store = session_store(&repo, &location, &name, true)?;
            let build = BuildBranch { name: name.clone(), id: id.clone(), base: tip.clone() };
            let b = backend(&location, repo.clone(), store, opts, Some(build));
            super::write_template(&b, &self.location.as_path_buf(), layout)?;
            let Backend::Icechunk { store: ic, .. } = &b else {
                return Err(ic_err(&location, "open", "not an Icechunk back end (an eocube bug)"));
            };
            let n = carried.len();
            ic.commit(
                format!(
                    "eocube: extend of build {id} for branch {target} to {} time bins ({n} jobs kept)",
                    layout.times.len()
                ),
                json!({"kind": "extend", "build_id": id, "base": tip.to_string(), "target": target, "ledger": carried}),
            )
            .map(|_| ())
        })();
        if written.is_err() {
            // Leave no half-made build branch behind (best effort: the target is untouched anyway).
            let (r, n) = (repo.clone(), name.clone());
            let _ = block(async move { r.delete_branch(&n).await });
        }
        written
    }
}

fn read_ledger(p: &Value, into: &mut BTreeMap<JobId, Value>) {
    for e in p.get("ledger").and_then(Value::as_array).into_iter().flatten() {
        let job: Option<JobId> = e.get("job").and_then(|j| serde_json::from_value(j.clone()).ok());
        if let Some(job) = job {
            into.entry(job).or_insert_with(|| e.get("record").cloned().unwrap_or(Value::Null));
        }
    }
}

/// A read-only view for `eocube status`: the build branch of `branch` if one exists (unfinished
/// build), else the branch itself.
pub(crate) fn open_view(loc: &OutLocation, repo_loc: &IcechunkRepo, branch: &str, unfinished: bool) -> Result<Backend> {
    let location = loc.to_string();
    let repo = Arc::new(connect(repo_loc, &location, false)?);
    let opts = IcechunkOptions { branch: branch.to_string(), ..Default::default() };
    let candidates = if unfinished { branches(&repo, &location)? } else { Vec::new() };
    for name in candidates.into_iter().filter(|b| b.starts_with(BUILD_BRANCH_PREFIX)) {
        let hist = ancestry(&repo, &location, &name)?;
        let start = hist
            .iter()
            .filter_map(|(_, p)| p.as_ref())
            .find(|p| is_start(p) && p.get("target").and_then(Value::as_str) == Some(branch));
        let Some(start) = start else { continue };
        let id = start.get("build_id").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(base) = start.get("base").and_then(Value::as_str).and_then(|s| SnapshotId::try_from(s).ok()) else {
            continue;
        };
        let ledger = ledger_of(&hist, &id);
        let store = session_store(&repo, &location, &name, false)?;
        let b = backend(&location, repo, store, &opts, Some(BuildBranch { name, id, base }));
        if let Backend::Icechunk { store, .. } = &b {
            store.state().ledger = ledger;
        }
        return Ok(b);
    }
    if branch_tip(&repo, &location, branch)?.is_none() {
        return Err(StoreError::NotFound { path: PathBuf::from(&location) });
    }
    let store = session_store(&repo, &location, branch, false)?;
    let b = backend(&location, repo.clone(), store, &opts, None);
    // Finished: the jobs of the newest build along the branch (an extend carries the older
    // ones over) are done.
    let hist = ancestry(&repo, &location, branch)?;
    let last_build =
        hist.iter().filter_map(|(_, p)| p.as_ref()).find(|p| p.get("kind").and_then(Value::as_str) == Some("build"));
    let ledger = match last_build.and_then(|p| p.get("build_id")).and_then(Value::as_str) {
        Some(id) => ledger_of(&hist, id),
        None => BTreeMap::new(),
    };
    if let Backend::Icechunk { store, .. } = &b {
        store.state().ledger = ledger;
    }
    Ok(b)
}

/// `eocube abort`: delete the build branches that target `branch`; returns their names.
pub fn abort(out: &OutLocation, branch: &str) -> Result<Vec<String>> {
    let OutLocation::Icechunk(repo_loc) = out else {
        return Err(StoreError::Icechunk {
            location: out.to_string(),
            op: "abort",
            reason: "only Icechunk repositories have build branches (icechunk:///path or icechunk+s3://bucket/prefix)"
                .into(),
        });
    };
    let location = out.to_string();
    let repo = Arc::new(connect(repo_loc, &location, false)?);
    let mut deleted = Vec::new();
    for name in branches(&repo, &location)?.into_iter().filter(|b| b.starts_with(BUILD_BRANCH_PREFIX)) {
        let targets = ancestry(&repo, &location, &name)?
            .into_iter()
            .filter_map(|(_, p)| p)
            .any(|p| is_start(&p) && p.get("target").and_then(Value::as_str) == Some(branch));
        if targets {
            let (r, n) = (repo.clone(), name.clone());
            block(async move { r.delete_branch(&n).await.map_err(|e| e.to_string()) })
                .map_err(|e| ic_err(&location, "delete branch", e))?
                .map_err(|e| ic_err(&location, "delete branch", e))?;
            deleted.push(name);
        }
    }
    Ok(deleted)
}

/// `eocube log`: the versions of `branch`, newest first: the snapshots the branch pointed at
/// (builds, extends and commits made by other tools). With `all`, also the commits a build
/// made on its build branch on the way (template, checkpoints), which readers of the branch never
/// saw.
pub fn log(out: &OutLocation, branch: &str, all: bool) -> Result<Vec<Version>> {
    let OutLocation::Icechunk(repo_loc) = out else {
        return Err(StoreError::Icechunk {
            location: out.to_string(),
            op: "log",
            reason: "only Icechunk repositories keep versions (icechunk:///path or icechunk+s3://bucket/prefix)".into(),
        });
    };
    let location = out.to_string();
    let repo = Arc::new(connect(repo_loc, &location, false)?);
    if branch_tip(&repo, &location, branch)?.is_none() {
        return Err(StoreError::Icechunk {
            location,
            op: "log",
            reason: format!("no branch {branch:?}; give an existing --branch"),
        });
    }
    let on_the_way = |p: &Option<Value>| {
        p.as_ref().and_then(|p| p.get("kind")).and_then(Value::as_str).is_some_and(|k| k != "build")
    };
    Ok(ancestry(&repo, &location, branch)?
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
