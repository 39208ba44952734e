//! Durable file replacement: the one way the suite writes state files.
//!
//! [`write_atomic`] writes to a temporary file next to the destination, `sync_all`s it,
//! renames it over the destination and syncs the directory, so a crash or power loss leaves
//! either the old contents or the new ones, never a mix or an empty file. Temporary names
//! are `.{name}.{pid}.{n}.tmp`: unique per process and call, so concurrent writers of the
//! same destination never share one, and easy to recognise (and remove) at start-up.
//! [`write_new`] is the same for a name that must not exist yet (uploads without overwrite).

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Why a file could not be replaced; names the path that failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    /// The file (temporary or final) the failing step worked on.
    pub path: PathBuf,
    /// What the operating system said.
    #[source]
    pub source: std::io::Error,
}

impl From<WriteError> for std::io::Error {
    fn from(e: WriteError) -> Self {
        std::io::Error::new(e.source.kind(), e.to_string())
    }
}

/// Whether `name` is a temporary file [`write_atomic`] leaves behind after a crash.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Replaces `path` with `bytes` atomically and durably; creates the parent directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_atomic_with(path, bytes, None)
}

/// [`write_atomic`] with Unix permission bits for the new file (e.g. `0o600` for a token).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    write_atomic_with(path, bytes, Some(mode))
}

/// Like [`write_atomic`], but never replaces: when `path` exists the write fails with
/// [`std::io::ErrorKind::AlreadyExists`] and the file is left as it was. Of concurrent
/// writers of one new name exactly one succeeds (the temporary file is hard-linked into
/// place, which is atomic and never replaces a name).
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let (dir, tmp) = write_temp(path, bytes, None)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(|source| WriteError {
        path: path.to_path_buf(),
        source,
    })?;
    sync_dir(dir);
    Ok(())
}

fn write_atomic_with(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<(), WriteError> {
    let (dir, tmp) = write_temp(path, bytes, mode)?;
    if let Err(source) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError {
            path: path.to_path_buf(),
            source,
        });
    }
    sync_dir(dir);
    Ok(())
}

/// Writes `bytes` to a fresh, synced temporary file beside `path`; returns the directory
/// and the temporary file.
fn write_temp<'a>(
    path: &'a Path,
    bytes: &[u8],
    mode: Option<u32>,
) -> Result<(&'a Path, PathBuf), WriteError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| WriteError {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        })?;
    std::fs::create_dir_all(dir).map_err(|source| WriteError {
        path: dir.to_path_buf(),
        source,
    })?;
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(WriteError { path: tmp, source });
    }
    Ok((dir, tmp))
}

/// Makes a rename or link in `dir` durable (the directory entry itself).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_contents_creates_the_directory_and_leaves_no_temp_file() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/b/state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn concurrent_writers_of_one_file_never_clash() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("shared");
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomic(path, &[i; 64]).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 64);
        assert!(
            got.iter().all(|b| *b == got[0]),
            "a mix of writers: {got:?}"
        );
    }

    #[test]
    fn write_new_never_replaces_and_one_of_many_concurrent_writers_wins() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("d/new.bin");
        write_new(&path, b"first").unwrap();
        let e = write_new(&path, b"second").unwrap_err();
        assert_eq!(e.source.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("new.bin"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let race = root.path().join("race");
        let won = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let (race, won) = (&race, &won);
                s.spawn(move || {
                    if write_new(race, &[i; 16]).is_ok() {
                        won.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(won.into_inner(), 1);
        let names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !is_temp_name(n)), "{names:?}");
    }

    #[cfg(unix)]
    #[test]
    fn mode_is_applied_and_errors_name_the_path() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("token");
        write_atomic_mode(&path, b"t", 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A directory where the file should go: the rename fails, naming the destination.
        let blocked = root.path().join("dir");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        let e = write_atomic(&blocked, b"x").unwrap_err();
        assert!(e.to_string().contains("dir"), "{e}");
        assert!(is_temp_name(".token.1.2.tmp") && !is_temp_name("token"));
    }
}
