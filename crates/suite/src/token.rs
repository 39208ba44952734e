//! The local suite's job-manager owner token.

use std::path::{Path, PathBuf};

/// The owner token of the local suite: `<dir>/bootstrap-token`, created on first start with
/// 32 random bytes (hex) and mode 0600, so that the job-manager API is usable out of the
/// box. Written with [`common::fs::write_atomic_mode`], so a crash never leaves a partial
/// token. Only the path is logged, never the token.
pub fn local_bootstrap_token(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Read;
    let path = dir.join("bootstrap-token");
    if path.exists() {
        return Ok(path);
    }
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom: {e}"))?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    common::fs::write_atomic_mode(&path, token.as_bytes(), 0o600)?;
    tracing::info!(path = %path.display(), "Created the job-manager bootstrap owner token; send it as `Authorization: Bearer $(cat FILE)`.");
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_kept_across_starts() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("job-manager");
        let path = local_bootstrap_token(&dir).unwrap();
        assert_eq!(path, dir.join("bootstrap-token"));
        let token = std::fs::read_to_string(&path).unwrap();
        assert_eq!(token.len(), 64, "{token}");
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second start keeps the token the operator may already use.
        assert_eq!(local_bootstrap_token(&dir).unwrap(), path);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), token);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["bootstrap-token"], "no temporary file left behind");
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        // A file where the directory should be.
        let blocker = root.path().join("not-a-dir");
        std::fs::write(&blocker, b"x").unwrap();
        let e = local_bootstrap_token(&blocker.join("job-manager")).unwrap_err();
        assert!(e.to_string().contains("not-a-dir"), "{e}");
    }
}
