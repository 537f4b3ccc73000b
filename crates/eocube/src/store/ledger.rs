//! Names of the ledger files under `_eocube/ledger/`: one small file per done job, so workers on
//! different machines never write the same file and a resume is one listing.

use super::{BOOKKEEPING_DIR, Job};

/// `_eocube/ledger/t{t}_y{iy}_x{ix}.json`
pub fn key(job: Job) -> String {
    format!("{BOOKKEEPING_DIR}/ledger/t{}_y{}_x{}.json", job.t, job.iy, job.ix)
}

/// The job named by a ledger key (or bare file name); `None` for anything else (e.g. temp files).
pub fn parse_key(key: &str) -> Option<Job> {
    let name = key.rsplit('/').next()?.strip_prefix('t')?.strip_suffix(".json")?;
    let mut parts = name.split('_');
    let t = parts.next()?.parse().ok()?;
    let iy = parts.next()?.strip_prefix('y')?.parse().ok()?;
    let ix = parts.next()?.strip_prefix('x')?.parse().ok()?;
    parts.next().is_none().then_some(Job { t, iy, ix })
}
