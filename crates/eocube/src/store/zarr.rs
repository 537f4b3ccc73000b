//! Plain Zarr cubes through object_store: a directory on local disk (`LocalFileSystem`),
//! `s3://`, `gs://` or `az://` prefixes. One implementation of [`CubeStore`] for all of them.
//!
//! Owns: where plain-Zarr bookkeeping lives and when it is written. The ledger is one object per
//! done job (`_eocube/ledger/t{t}_y{iy}_x{ix}.json`), written after the job's chunk, so it never
//! claims a chunk that is not there; the run report is one object per recorded batch
//! (`_eocube/report/<time>-<pid>-<n>.jsonl`, names sorting in time order), because object stores
//! cannot append; the consolidated metadata is written last, by [`CubeStore::publish`]. Cubes
//! made before the batched report kept it in `_eocube/report.jsonl`, which is still read.
//! Must not touch: the encoding of chunks or the layout documents (`super`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use super::object::{Files, ObjectBackend};
use super::{
    BOOKKEEPING_DIR, Cube, CubeLayout, CubeStore, Finished, Job, OutLocation, Receipt, Result, StoreError, ZarrFormat,
    ledger, plan_document, template_objects, to_json_bytes,
};

/// The run report of cubes made before batched reports.
const LEGACY_REPORT: &str = "_eocube/report.jsonl";
/// The run report: one object per recorded batch.
const REPORT_PARTS: &str = "_eocube/report/";

/// A plain Zarr cube at a local path or an object-store prefix.
pub struct ZarrStore {
    location: OutLocation,
    objects: ObjectBackend,
    /// `objects` seen from `_eocube/`.
    files: Files,
}

impl ZarrStore {
    /// The store at `loc` without creating anything: on object storage one listing shows the
    /// bucket, the endpoint and the credentials work.
    async fn connect(loc: &OutLocation) -> Result<ZarrStore> {
        let objects = match loc {
            OutLocation::Local(path) => {
                if path.is_file() {
                    return Err(StoreError::NotACube {
                        path: path.to_path_buf(),
                        reason: "it is a file, not a directory".into(),
                    });
                }
                ObjectBackend::local(path, loc.to_string())?
            }
            _ => {
                let b = ObjectBackend::new(loc)?;
                b.check().await?;
                b
            }
        };
        Ok(ZarrStore { location: loc.clone(), files: Files::new(objects.clone()), objects })
    }

    /// Whether nothing is at `loc` yet (a missing local directory is empty).
    async fn is_empty_at(loc: &OutLocation) -> Result<bool> {
        match loc {
            OutLocation::Local(path) if path.is_file() => Ok(false),
            OutLocation::Local(path) if !path.exists() => Ok(true),
            OutLocation::Local(path) => {
                let at = path.clone();
                tokio::task::spawn_blocking(move || holds_no_object(&at))
                    .await
                    .map_err(|e| StoreError::Io { path: path.clone(), source: std::io::Error::other(e) })?
                    .map_err(|source| StoreError::Io { path: path.clone(), source })
            }
            _ => {
                let b = ObjectBackend::new(loc)?;
                b.check().await?;
                b.is_empty().await
            }
        }
    }

    /// Creates the cube at `loc` and writes its template; refuses a location holding anything.
    pub async fn create(loc: &OutLocation, layout: &CubeLayout) -> Result<Cube> {
        if !ZarrStore::is_empty_at(loc).await? {
            return Err(StoreError::AlreadyExists { path: loc.as_path_buf() });
        }
        let store = ZarrStore::connect(loc).await?;
        let objects = template_objects(&loc.as_path_buf(), layout)?;
        store.write_template(layout, objects).await?;
        Cube::with_store(std::sync::Arc::new(store), layout.clone())
    }

    /// Opens the cube at `loc` (only reads): a missing location is [`StoreError::NotFound`].
    pub async fn open(loc: &OutLocation) -> Result<ZarrStore> {
        if let OutLocation::Local(path) = loc
            && !path.exists()
        {
            return Err(StoreError::NotFound { path: path.to_path_buf() });
        }
        let store = ZarrStore::connect(loc).await?;
        if !matches!(loc, OutLocation::Local(_)) && store.objects.is_empty().await? {
            return Err(StoreError::NotFound { path: loc.as_path_buf() });
        }
        Ok(store)
    }

    /// Creates the cube, or reopens it when it holds exactly `layout` (the flag: resumed).
    ///
    /// A build killed while writing the template is resumed too: before the group metadata (only
    /// the plan, written first, says whose template it was) the template is written again; after
    /// it, an unfinished cube gets the rest of its template again, since a kill may have left out
    /// an array or a coordinate. The same bytes: the template is deterministic, but for the group's
    /// `created`, which is not rewritten once there (tests/faults.rs, the kill seeds).
    pub async fn create_or_open(loc: &OutLocation, layout: &CubeLayout) -> Result<(Cube, bool)> {
        if ZarrStore::is_empty_at(loc).await? {
            if let OutLocation::Local(root) = loc
                && root.exists()
            {
                remove_staging_files(root.clone()).await?;
            }
            return Ok((ZarrStore::create(loc, layout).await?, false));
        }
        let store = std::sync::Arc::new(ZarrStore::open(loc).await?);
        if let OutLocation::Local(root) = loc {
            remove_staging_files(root.clone()).await?;
        }
        let objects = template_objects(&loc.as_path_buf(), layout)?;
        let cube = match Cube::from_store(store.clone()).await {
            Ok(cube) => Cube::check_matching(cube, layout)?,
            Err(e @ StoreError::NotACube { .. }) => {
                if !store.holds_plan_of(layout).await? || store.has_unreadable_group_metadata().await? {
                    return Err(e);
                }
                store.write_template(layout, objects).await?;
                return Ok((Cube::with_store(store, layout.clone())?, true));
            }
            Err(e) => return Err(e),
        };
        if !store.is_published().await? {
            let rest = objects.into_iter().filter(|(k, _)| !is_group_key(k)).collect();
            store.objects.put_many(rest).await?;
        }
        Ok((cube, true))
    }

    /// Whether a root group metadata object is there but not JSON. A kill cannot leave that
    /// (every object is written whole), so it is someone else's damage: refused, not rewritten.
    async fn has_unreadable_group_metadata(&self) -> Result<bool> {
        for key in ["zarr.json", ".zgroup", ".zattrs"] {
            if let Some(bytes) = self.objects.get(key).await?
                && serde_json::from_slice::<Value>(&bytes).is_err()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `_eocube/plan.json` is the plan of `layout`: the first object of its template.
    async fn holds_plan_of(&self, layout: &CubeLayout) -> Result<bool> {
        Ok(self
            .files
            .get("plan.json")
            .await?
            .is_some_and(|b| serde_json::from_slice::<Value>(&b).is_ok_and(|v| v == plan_document(layout))))
    }

    /// A name for the next report object: the time first, so names sort in time order; the
    /// process and a counter keep concurrent writers apart.
    fn report_part_name() -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        format!(
            "{REPORT_PARTS}{nanos:020}-{:07}-{:08}.jsonl",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Deletes what a killed write left in a local cube: object_store's local backend writes `KEY`
/// to `KEY#N` and renames it, so a kill between the two leaves `KEY#N` behind, and the next write
/// of `KEY` stages to `KEY#N+1` around it. Readers ignore such names, but they are no part of the
/// cube. Run when a build resumes, before any job of it writes.
async fn remove_staging_files(root: PathBuf) -> Result<()> {
    fn walk(dir: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&entry.path())?;
            } else if kind.is_file() && entry.file_name().to_str().is_some_and(is_staging_name) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
    let at = root.clone();
    tokio::task::spawn_blocking(move || walk(&at))
        .await
        .map_err(|e| StoreError::Io { path: root.clone(), source: std::io::Error::other(e) })?
        .map_err(|source| StoreError::Io { path: root, source })
}

/// Whether a local tree holds no object: only directories and staging files, which is all a
/// build killed before its first object was in place leaves (object_store's local backend makes
/// the parent directories, then writes `KEY#N` and renames it). As on an object store, where a
/// prefix without objects is empty, such a tree is made a cube again rather than refused.
fn holds_no_object(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let empty = if kind.is_dir() {
            holds_no_object(&entry.path())?
        } else {
            kind.is_file() && entry.file_name().to_str().is_some_and(is_staging_name)
        };
        if !empty {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `KEY#N`: a staging file of object_store's local backend. No key eocube writes has a `#`.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(key, n)| !key.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The root group's metadata objects (v3, v2).
fn is_group_key(key: &str) -> bool {
    matches!(key, "zarr.json" | ".zgroup" | ".zattrs")
}

#[async_trait]
impl CubeStore for ZarrStore {
    fn location(&self) -> &OutLocation {
        &self.location
    }

    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
        self.objects.get(key).await
    }

    async fn write_template(&self, layout: &CubeLayout, objects: Vec<(String, Bytes)>) -> Result<()> {
        // The plan first: a half-written template is still recognisable and refused by `create`.
        let plan = to_json_bytes(&self.location, "the plan", &plan_document(layout))?;
        self.files.put("plan.json", plan).await?;
        // The group metadata before the arrays, as a reader expects; the rest in any order.
        let (group, rest): (Vec<_>, Vec<_>) = objects.into_iter().partition(|(k, _)| is_group_key(k));
        self.objects.put_many(group).await?;
        self.objects.put_many(rest).await
    }

    async fn write_chunks(&self, _job: Job, chunks: Vec<(String, Option<Bytes>)>) -> Result<Receipt> {
        for (key, bytes) in chunks {
            match bytes {
                Some(b) => self.objects.put(&key, b).await?,
                None => self.objects.delete(&key).await?,
            }
        }
        Ok(Receipt::Stored)
    }

    async fn record(&self, batch: Vec<Finished>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut ledger = Vec::new();
        let mut lines = String::new();
        for f in &batch {
            let line = serde_json::to_string(&f.record).map_err(|e| StoreError::Record {
                location: self.location.to_string(),
                what: format!("the report line of job {:?}", f.job),
                reason: e.to_string(),
            })?;
            lines.push_str(&line);
            lines.push('\n');
            if f.receipt.is_some() {
                ledger.push((ledger::key(f.job), to_json_bytes(&self.location, "a ledger record", &f.record)?));
            }
        }
        self.objects.put_many(ledger).await?;
        self.objects.put(&ZarrStore::report_part_name(), Bytes::from(lines)).await
    }

    async fn checkpoint(&self) -> Result<()> {
        Ok(())
    }

    async fn publish(&self, layout: &CubeLayout) -> Result<()> {
        let (key, doc) = super::consolidated(self, layout).await?;
        self.objects.put(key, doc).await
    }

    async fn is_published(&self) -> Result<bool> {
        if let Some(b) = self.objects.get("zarr.json").await? {
            return Ok(serde_json::from_slice::<Value>(&b).is_ok_and(|v| v.get("consolidated_metadata").is_some()));
        }
        Ok(self.objects.get(".zmetadata").await?.is_some())
    }

    async fn done_jobs(&self) -> Result<BTreeSet<Job>> {
        let keys = self.objects.list_prefix(&format!("{BOOKKEEPING_DIR}/ledger/")).await?;
        Ok(keys.iter().filter_map(|k| ledger::parse_key(k)).collect())
    }

    async fn ledger_record(&self, job: Job) -> Result<Option<Value>> {
        let key = ledger::key(job);
        match self.objects.get(&key).await? {
            Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| StoreError::NotACube {
                path: self.location.as_path_buf(),
                reason: format!("{key} is not JSON ({e})"),
            }),
            None => Ok(None),
        }
    }

    async fn report(&self) -> Result<Vec<Value>> {
        let mut texts = Vec::new();
        if let Some(b) = self.objects.get(LEGACY_REPORT).await? {
            texts.push(b);
        }
        let mut parts = self.objects.list_prefix(REPORT_PARTS).await?;
        parts.sort();
        texts.extend(self.objects.get_many(&parts).await?.into_iter().flatten());
        // A line cut short by a killed process is skipped.
        let mut records = Vec::new();
        for text in &texts {
            for line in String::from_utf8_lossy(text).lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    records.push(v);
                }
            }
        }
        Ok(records)
    }

    async fn begin_extend(
        &self,
        layout: &CubeLayout,
        objects: Vec<(String, Bytes)>,
        redo: &(dyn Fn(Job) -> bool + Sync),
    ) -> Result<()> {
        for job in self.done_jobs().await?.into_iter().filter(|&j| redo(j)) {
            self.objects.delete(&ledger::key(job)).await?;
        }
        // v3: the template's root zarr.json has no `consolidated_metadata`.
        if layout.zarr_format == ZarrFormat::V2 {
            self.objects.delete(".zmetadata").await?;
        }
        self.write_template(layout, objects).await
    }

    fn files(&self) -> &Files {
        &self.files
    }

    async fn worker_base(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    async fn write_derived(&self, objects: Vec<(String, Option<Bytes>)>) -> Result<()> {
        let (puts, deletes): (Vec<_>, Vec<_>) = objects.into_iter().partition(|(_, b)| b.is_some());
        self.objects.put_many(puts.into_iter().filter_map(|(k, b)| b.map(|b| (k, b))).collect()).await?;
        for (k, _) in deletes {
            self.objects.delete(&k).await?;
        }
        Ok(())
    }

    /// A finished cube: the consolidated metadata again, now listing what was derived. During a
    /// build the build's own publish writes it.
    async fn publish_derived(&self, layout: &CubeLayout, _message: &str, _props: Value) -> Result<()> {
        if self.is_published().await? { self.publish(layout).await } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::is_staging_name;

    #[test]
    fn only_object_stores_staging_names_are_staging_files() {
        for name in ["0#1", "zarr.json#12", ".zattrs#3"] {
            assert!(is_staging_name(name), "{name}");
        }
        for name in ["0", "zarr.json", "#1", "0#", "0#x", "0#1a"] {
            assert!(!is_staging_name(name), "{name}");
        }
    }
}
