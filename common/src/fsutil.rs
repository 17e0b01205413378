//! Files that hold secrets or state.
//!
//! - [`write_private`] writes through a temp file in the same directory, fsyncs it,
//!   renames it into place and fsyncs the directory, so a crash leaves either the old
//!   or the new file, never a torn one. The file is created 0600 from the start.
//! - [`read_private`] refuses a file that group or others can read (as ssh does) and
//!   says how to fix it.
//! - [`create_private_dir`] creates a 0700 directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What went wrong with a private file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// An I/O error, with the path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file's mode lets others read it.
    #[error("{} is readable by group or others (mode {mode:04o}); run: chmod 0600 {}", path.display(), path.display())]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Larger than the caller allows.
    #[error("{} is larger than {max} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError::Io { path: path.to_owned(), source }
}

/// Creates `dir` (and parents) with mode 0700 if missing; tightens an existing one to 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
}

/// Atomically writes `bytes` to `path` with mode `mode` (0600 for secrets).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        crate::process::pause_point(&format!("before-rename:{name}"));
        fs::rename(&tmp, path).map_err(io_err(path))?;
        crate::process::pause_point(&format!("after-rename:{name}"));
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Atomically writes a secret file with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic(path, bytes, 0o600)
}

/// Reads a secret file, refusing one that group or others can read, and one larger than `max`.
pub fn read_private(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let f = File::open(path).map_err(io_err(path))?;
    let meta = f.metadata().map_err(io_err(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FileError::TooOpen { path: path.to_owned(), mode });
    }
    read_capped(f, path, meta.len(), max)
}

/// Reads a non-secret file of at most `max` bytes.
pub fn read_capped_file(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let f = File::open(path).map_err(io_err(path))?;
    let len = f.metadata().map_err(io_err(path))?.len();
    read_capped(f, path, len, max)
}

fn read_capped(f: File, path: &Path, len: u64, max: u64) -> Result<Vec<u8>, FileError> {
    if len > max {
        return Err(FileError::TooLarge { path: path.to_owned(), max });
    }
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(max + 1).read_to_end(&mut out).map_err(io_err(path))?;
    if out.len() as u64 > max {
        return Err(FileError::TooLarge { path: path.to_owned(), max });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_created_0600_and_open_ones_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("key");
        write_private(&p, b"secret").expect("write");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_private(&p, 100).expect("read"), b"secret");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = read_private(&p, 100).expect_err("group-readable must be refused");
        assert!(matches!(err, FileError::TooOpen { mode: 0o640, .. }), "{err}");
        assert!(err.to_string().contains("chmod 0600"), "{err}");
    }

    #[test]
    fn oversized_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("big");
        write_private(&p, &[0u8; 10]).expect("write");
        assert!(matches!(read_private(&p, 9), Err(FileError::TooLarge { .. })));
    }
}
