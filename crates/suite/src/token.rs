//! The local suite's job-manager owner token.

use std::path::{Path, PathBuf};

/// The owner token of the local suite: `<dir>/bootstrap-token`, created on first start with
/// 32 random bytes (hex) and mode 0600, so that the job-manager API is usable out of the
/// box. Only the path is logged, never the token.
pub fn local_bootstrap_token(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::{io::Read, io::Write, os::unix::fs::OpenOptionsExt};
    let path = dir.join("bootstrap-token");
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom: {e}"))?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join("bootstrap-token.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(token.as_bytes())
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "Created the job-manager bootstrap owner token; send it as `Authorization: Bearer $(cat FILE)`.");
    Ok(path)
}
