//! Scratch directories for unit tests: unique per process and name, removed when dropped (a
//! test that panics cleans up too), so test runs do not pile files up in the temp directory.

use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system temp directory, deleted with everything in it on
/// drop. Derefs to its [`Path`].
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `eocube-<name>-<pid>`, emptied if a crashed run left it behind.
    pub(crate) fn new(name: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("eocube-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create the scratch directory {}: {e}", dir.display());
        }
        ScratchDir(dir)
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for ScratchDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_dir_is_empty_and_gone_after_drop() {
        let path = {
            let d = ScratchDir::new("scratch-self-test");
            std::fs::write(d.join("f"), b"x").unwrap();
            assert_eq!(std::fs::read_dir(&*d).unwrap().count(), 1);
            d.to_path_buf()
        };
        assert!(!path.exists());
        let again = ScratchDir::new("scratch-self-test");
        assert_eq!(std::fs::read_dir(&*again).unwrap().count(), 0);
    }
}
