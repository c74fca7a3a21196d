//! What an assembler writes into `output_dir`: a plain file name (nothing can land outside
//! the directory), built under a temporary name and renamed into place, so a failure leaves
//! nothing behind.

use std::path::{Path, PathBuf};

use crate::args::invalid;
use crate::AssemblerError;

/// Rejects anything but a plain file name: empty, `.`, `..`, a `/` or a NUL byte.
pub fn check_filename(name: &str) -> Result<(), AssemblerError> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name == "." || name == ".." {
        "must not be \".\" or \"..\""
    } else if name.contains('/') {
        "must be a plain file name without \"/\" (the archive is written into output_dir)"
    } else if name.contains('\0') {
        "must not contain a NUL byte"
    } else {
        return Ok(());
    };
    Err(invalid("filename", format!("{name:?} {reason}")))
}

/// A file under construction: removed on drop unless kept or renamed into place.
#[derive(Debug)]
pub struct TempFile(Option<PathBuf>);

impl TempFile {
    /// Owns `path` (which need not exist yet).
    pub fn new(path: PathBuf) -> Self {
        TempFile(Some(path))
    }

    /// Creates `path` as a sparse file of `size` bytes and owns it.
    pub fn sized(path: PathBuf, size: u64) -> std::io::Result<Self> {
        let file = TempFile::new(path);
        std::fs::File::create(file.path())?.set_len(size)?;
        Ok(file)
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// Renames the file to `to`, which then stays.
    pub fn persist(mut self, to: &Path) -> Result<(), AssemblerError> {
        std::fs::rename(self.path(), to)
            .map_err(|e| AssemblerError::Tool(format!("renaming the image: {e}")))?;
        self.0 = None;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temp_file_goes_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        drop(TempFile::sized(gone.clone(), 1024).unwrap());
        assert!(!gone.exists());
        let kept = TempFile::sized(dir.path().join(".part"), 512).unwrap();
        kept.persist(&dir.path().join("kept")).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("kept")).unwrap().len(),
            512
        );
        assert!(!dir.path().join(".part").exists());
    }
}
