//! The embedded, durable store under `--data-dir`.
//!
//! Every resource is one JSON file `<data-dir>/store/<kind>/<key>.json` holding a versioned
//! envelope (`{"version": "1", "data": …}`). Writes go to a temporary file, are `fsync`ed,
//! then renamed into place and the directory is synced: a crash (kill -9) leaves either the
//! old or the new version, never a torn one. Events are append-only JSON lines per
//! deployment (a torn last line is skipped on load). Everything is also held in memory;
//! reads never touch the disk.
//!
//! Persistence sits behind [`Backend`]: the files above ([`FileBackend`], the default) or
//! PostgreSQL ([`postgres::PgBackend`], `--store.url postgres://…`). Either way the tables
//! are held in memory and every write goes to the backend first (one database transaction
//! per multi-record change); PostgreSQL also enforces `resourceVersion`, so a replica whose
//! memory is stale is refused ([`Error::Conflict`]) and reloads.
//!
//! The store publishes which deployments changed ([`Store::take_changed`],
//! [`Store::changed`]): a user's write through [`Store::transact`] marks the deployments it
//! touches, and the controller subscribes; nobody else wakes the controller.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{RwLock, RwLockReadGuard},
};

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::model::{
    ApiToken, Control, Deployment, DeploymentTarget, Event, Job, Namespace, Savepoint,
};

pub mod pg;

/// Why the store could not read or write.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists")]
    Exists { path: PathBuf },
    #[error("corrupt store file {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: String,
        source: serde_json::Error,
    },
    /// The database holds another version than the one this change was based on (another
    /// replica changed it first).
    #[error("{what} was changed concurrently (by another job-manager replica); reload and retry")]
    Conflict { what: String },
    /// The database refused or could not be reached; the message never carries the password.
    #[error("store database error: {message}")]
    Database { message: String },
}

/// Where the store keeps its records underneath the in-memory tables.
pub trait Backend: Send + Sync {
    /// Loads everything (at most `max_events` events per deployment, the newest).
    fn load(&self, max_events: usize) -> Result<Tables>;
    /// Persists `writes` all or nothing where the backend can (PostgreSQL: one
    /// transaction); `current` is the memory they were computed from (for the
    /// resourceVersion check).
    /// Events among `writes` are appended to their deployment's list, keeping at most
    /// `max_events`.
    fn commit(&self, current: &Tables, writes: &[Write1], max_events: usize) -> Result<()>;
    /// Appends an event to deployment's list `current` (memory before the append).
    fn append_event(&self, current: &[Event], event: &Event, max_events: usize) -> Result<()>;
    /// Drops a deployment's events.
    fn remove_events(&self, deployment: Uuid) -> Result<()>;
    /// Whether this replica may reconcile (only one of those sharing a database does).
    fn is_leader(&self) -> bool {
        true
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The on-disk envelope; new versions become new variants with a migration on load.
#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum Versioned<T> {
    #[serde(rename = "1")]
    V1 { data: T },
}

/// A deployment plus the controller's private progress record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub deployment: Deployment,
    #[serde(default)]
    pub control: Control,
}

/// An API token with the hash of its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredToken {
    pub token: ApiToken,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
}

/// Everything the store holds, in memory.
#[derive(Default)]
pub struct Tables {
    pub deployments: BTreeMap<Uuid, DeploymentRecord>,
    pub jobs: BTreeMap<Uuid, Job>,
    pub savepoints: BTreeMap<Uuid, Savepoint>,
    /// Keyed by (namespace, name).
    pub targets: BTreeMap<(String, String), DeploymentTarget>,
    /// Deployment defaults per namespace (a partial deployment).
    pub defaults: BTreeMap<String, serde_json::Value>,
    pub namespaces: BTreeMap<String, Namespace>,
    /// Keyed by (namespace, name); the bootstrap token lives in namespace `*`.
    pub tokens: BTreeMap<(String, String), StoredToken>,
    /// Per deployment, oldest first.
    pub events: BTreeMap<Uuid, Vec<Event>>,
}

/// Kinds of stored files.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Deployment,
    Job,
    Savepoint,
    Target,
    Defaults,
    Namespace,
    Token,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments",
            Kind::Job => "jobs",
            Kind::Savepoint => "savepoints",
            Kind::Target => "deployment-targets",
            Kind::Defaults => "deployment-defaults",
            Kind::Namespace => "namespaces",
            Kind::Token => "apitokens",
        }
    }
}

/// Events kept per deployment. Older ones are dropped from memory at once and from the
/// file when it holds twice as many lines (it is then rewritten atomically).
pub const MAX_EVENTS_PER_DEPLOYMENT: usize = 1000;

/// The store.
pub struct Store {
    backend: Box<dyn Backend>,
    tables: RwLock<Tables>,
    /// Serialises writers so the file and the memory always agree.
    writer: std::sync::Mutex<()>,
    /// Events kept per deployment.
    max_events: usize,
    /// Deployments changed since the subscriber last took them.
    changes: std::sync::Mutex<BTreeSet<Uuid>>,
    changed: Notify,
    /// Set when leadership is decided outside the backend (a Kubernetes Lease).
    leadership: Option<crate::leader::Leadership>,
}

/// A change to apply atomically (memory and disk).
pub enum Write1 {
    Deployment(DeploymentRecord),
    Job(Job),
    Savepoint(Savepoint),
    Target(DeploymentTarget),
    Defaults(String, serde_json::Value),
    Namespace(Namespace),
    Token(StoredToken),
    RemoveDeployment(Uuid),
    RemoveJob(Uuid),
    RemoveSavepoint(Uuid),
    RemoveTarget(String, String),
    RemoveToken(String, String),
    RemoveNamespace(String),
    RemoveDefaults(String),
    /// An event recorded together with the change it reports (one transaction with
    /// PostgreSQL; appended after the other writes with the embedded files).
    Event(Event),
}

impl Write1 {
    /// The deployment a write belongs to, if any.
    fn deployment(&self) -> Option<Uuid> {
        match self {
            Write1::Deployment(r) => Some(r.deployment.id()),
            Write1::Job(j) => Some(j.metadata.deployment_id),
            Write1::Savepoint(s) => Some(s.metadata.deployment_id),
            Write1::RemoveDeployment(id) => Some(*id),
            // An event does not change what the controller works towards.
            _ => None,
        }
    }
}

impl Store {
    /// Opens (or creates) the store under `data_dir/store`, loading everything.
    pub fn open(data_dir: &Path) -> Result<Store> {
        Store::with_backend(Box::new(FileBackend::new(data_dir.join("store"))))
    }

    /// Opens the store `url` names (PostgreSQL, with the password from `password_file`
    /// if given), or the embedded one under `data_dir` when there is no URL.
    pub fn open_at(
        data_dir: &Path,
        url: Option<&str>,
        password_file: Option<&Path>,
    ) -> Result<Store> {
        Store::open_with(data_dir, url, password_file, true)
    }

    /// [`Store::open_at`]; with `advisory_election` false, PostgreSQL's advisory lock does
    /// not elect the leader (a Lease does, see [`Store::with_leadership`]).
    pub fn open_with(
        data_dir: &Path,
        url: Option<&str>,
        password_file: Option<&Path>,
        advisory_election: bool,
    ) -> Result<Store> {
        let Some(url) = url else {
            return Store::open(data_dir);
        };
        let password = match password_file {
            Some(path) => Some(
                fs::read_to_string(path)
                    .map_err(|source| Error::Io {
                        path: path.to_path_buf(),
                        source,
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            None => None,
        };
        let location = pg::PgLocation::parse(url, password.as_deref())?;
        tracing::info!("Store: PostgreSQL at {}.", location.display());
        Store::with_backend(Box::new(pg::PgBackend::connect_with(
            location,
            advisory_election,
        )?))
    }

    /// Opens a store over `backend`, loading everything.
    pub fn with_backend(backend: Box<dyn Backend>) -> Result<Store> {
        let tables = backend.load(MAX_EVENTS_PER_DEPLOYMENT)?;
        Ok(Store {
            backend,
            tables: RwLock::new(tables),
            writer: std::sync::Mutex::new(()),
            max_events: MAX_EVENTS_PER_DEPLOYMENT,
            changes: Default::default(),
            changed: Notify::new(),
            leadership: None,
        })
    }

    /// Persists `writes` and applies them to memory (the writer lock is held). After a
    /// conflict the memory is reloaded from the backend, so the next attempt sees the
    /// other replica's change.
    fn commit_and_apply(&self, writes: Vec<Write1>) -> Result<()> {
        let committed = {
            let t = self.read();
            self.backend.commit(&t, &writes, self.max_events)
        };
        if let Err(e) = committed {
            if matches!(e, Error::Conflict { .. }) {
                match self.backend.load(self.max_events) {
                    Ok(fresh) => {
                        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                    }
                    Err(reload) => {
                        tracing::warn!("Cannot reload the store after a conflict: {reload}")
                    }
                }
            }
            return Err(e);
        }
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        for w in writes {
            apply(&mut t, w, self.max_events);
        }
        Ok(())
    }

    /// Whether this replica leads (reconciles): as `leadership` says if set (a Lease),
    /// else as the backend says (always with the embedded store).
    pub fn is_leader(&self) -> bool {
        match &self.leadership {
            Some(l) => l.get(),
            None => self.backend.is_leader(),
        }
    }

    /// Leadership decided by `leadership` from now on instead of by the backend.
    pub fn with_leadership(mut self, leadership: crate::leader::Leadership) -> Self {
        self.leadership = Some(leadership);
        self
    }

    /// Replaces the memory with what the backend holds (a new leader's first step: another
    /// replica wrote while this one followed).
    pub fn reload(&self) -> Result<()> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = self.backend.load(self.max_events)?;
        *self.tables.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// Keeps at most `n` events per deployment (default [`MAX_EVENTS_PER_DEPLOYMENT`]).
    pub fn with_max_events(mut self, n: usize) -> Self {
        self.max_events = n.max(1);
        self
    }

    /// Read access to everything.
    pub fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `f` to the tables under the writer lock; `f` returns the writes to persist
    /// (and a value) or the caller's own error. Nothing changes in memory unless every write
    /// reached the disk. The deployments the writes touch are published as changed.
    pub fn transact<R, E: From<Error>>(
        &self,
        f: impl FnOnce(&Tables) -> std::result::Result<(Vec<Write1>, R), E>,
    ) -> std::result::Result<R, E> {
        let touched = {
            let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            let (writes, out) = {
                let t = self.read();
                f(&t)?
            };
            let touched: Vec<Uuid> = writes.iter().filter_map(Write1::deployment).collect();
            self.commit_and_apply(writes)?;
            (touched, out)
        };
        let (ids, out) = touched;
        for id in ids {
            self.notify(id);
        }
        Ok(out)
    }

    /// Publishes that deployment `id` changed (and wakes the subscriber).
    pub fn notify(&self, id: Uuid) {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        self.changed.notify_one();
    }

    /// The deployments changed since the last call.
    pub fn take_changed(&self) -> BTreeSet<Uuid> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Completes when something was published since the last wait (a change published
    /// while nobody waits is not lost).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Persists and applies writes that cannot fail validation (the controller's).
    pub fn write(&self, writes: Vec<Write1>) -> Result<()> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.commit_and_apply(writes)
    }

    /// Applies `f` to the current version of a deployment record (the controller changes
    /// status and control only, so a concurrent user change of the spec is kept) and
    /// persists it together with the extra writes `f` returns. `None` if it is gone.
    pub fn modify(
        &self,
        id: Uuid,
        f: impl FnOnce(&mut DeploymentRecord) -> Vec<Write1>,
    ) -> Result<Option<DeploymentRecord>> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut rec) = self.read().deployments.get(&id).cloned() else {
            return Ok(None);
        };
        let mut writes = f(&mut rec);
        writes.push(Write1::Deployment(rec.clone()));
        self.commit_and_apply(writes)?;
        Ok(Some(rec))
    }

    /// Appends an event (durably) and keeps it in memory.
    pub fn append_event(&self, event: Event) -> Result<()> {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let id = event.metadata.deployment_id;
        {
            let t = self.read();
            let current = t.events.get(&id).map(Vec::as_slice).unwrap_or(&[]);
            self.backend
                .append_event(current, &event, self.max_events)?;
        }
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        let list = t.events.entry(id).or_default();
        list.push(event);
        if list.len() > self.max_events {
            let excess = list.len() - self.max_events;
            list.drain(..excess);
        }
        Ok(())
    }

    /// Drops the events of a deleted deployment.
    pub fn remove_events(&self, deployment: Uuid) {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = self.backend.remove_events(deployment) {
            tracing::warn!("Cannot remove the events of deployment {deployment}: {e}");
        }
        let mut t = self.tables.write().unwrap_or_else(|e| e.into_inner());
        t.events.remove(&deployment);
    }

    /// Drops every event recorded in namespace `ns` (when the namespace is deleted).
    pub fn remove_namespace_events(&self, ns: &str) {
        let ids: Vec<Uuid> = self
            .read()
            .events
            .iter()
            .filter(|(_, l)| l.iter().any(|e| e.metadata.namespace == ns))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.remove_events(id);
        }
    }
}

/// The embedded backend: one file per record under `root` (see the module doc).
pub struct FileBackend {
    root: PathBuf,
    /// Lines in each deployment's event file (to know when to compact it).
    event_lines: std::sync::Mutex<BTreeMap<Uuid, usize>>,
}

impl FileBackend {
    /// The files under `root` (`<data-dir>/store`).
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            event_lines: Default::default(),
        }
    }

    fn persist(&self, w: &Write1) -> Result<()> {
        match w {
            Write1::Deployment(r) => self.put(Kind::Deployment, &r.deployment.id().to_string(), r),
            Write1::Job(j) => self.put(Kind::Job, &j.metadata.id.to_string(), j),
            Write1::Savepoint(s) => self.put(Kind::Savepoint, &s.metadata.id.to_string(), s),
            Write1::Target(d) => self.put(
                Kind::Target,
                &key2(&d.metadata.namespace, &d.metadata.name),
                d,
            ),
            Write1::Defaults(ns, v) => self.put(Kind::Defaults, ns, &(ns, v)),
            Write1::Namespace(n) => self.put(Kind::Namespace, &n.metadata.name, n),
            Write1::Token(k) => self.put(Kind::Token, &key2(&k.token.namespace, &k.token.name), k),
            Write1::RemoveDeployment(id) => self.remove(Kind::Deployment, &id.to_string()),
            Write1::RemoveJob(id) => self.remove(Kind::Job, &id.to_string()),
            Write1::RemoveSavepoint(id) => self.remove(Kind::Savepoint, &id.to_string()),
            Write1::RemoveTarget(ns, n) => self.remove(Kind::Target, &key2(ns, n)),
            Write1::RemoveToken(ns, n) => self.remove(Kind::Token, &key2(ns, n)),
            Write1::RemoveNamespace(n) => self.remove(Kind::Namespace, n),
            Write1::RemoveDefaults(n) => self.remove(Kind::Defaults, n),
            // Appended by `commit`, which knows the deployment's list.
            Write1::Event(_) => Ok(()),
        }
    }

    fn put<T: Serialize>(&self, kind: Kind, key: &str, value: &T) -> Result<()> {
        let dir = self.root.join(kind.dir());
        let bytes =
            serde_json::to_vec(&Versioned::V1 { data: value }).map_err(|source| Error::Encode {
                what: format!("{} {key}", kind.dir()),
                source,
            })?;
        write_atomic(&dir, &format!("{key}.json"), &bytes)
    }

    fn remove(&self, kind: Kind, key: &str) -> Result<()> {
        let path = self.root.join(kind.dir()).join(format!("{key}.json"));
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io { path, source }),
        }
    }
}

impl Backend for FileBackend {
    fn load(&self, max_events: usize) -> Result<Tables> {
        let root = &self.root;
        let mut t = Tables::default();
        for r in load::<DeploymentRecord>(root, Kind::Deployment)? {
            t.deployments.insert(r.deployment.id(), r);
        }
        for j in load::<Job>(root, Kind::Job)? {
            t.jobs.insert(j.metadata.id, j);
        }
        for s in load::<Savepoint>(root, Kind::Savepoint)? {
            t.savepoints.insert(s.metadata.id, s);
        }
        for d in load::<DeploymentTarget>(root, Kind::Target)? {
            t.targets
                .insert((d.metadata.namespace.clone(), d.metadata.name.clone()), d);
        }
        for (ns, v) in load::<(String, serde_json::Value)>(root, Kind::Defaults)? {
            t.defaults.insert(ns, v);
        }
        for n in load::<Namespace>(root, Kind::Namespace)? {
            t.namespaces.insert(n.metadata.name.clone(), n);
        }
        for k in load::<StoredToken>(root, Kind::Token)? {
            t.tokens
                .insert((k.token.namespace.clone(), k.token.name.clone()), k);
        }
        let events_dir = root.join("events");
        mkdir(&events_dir)?;
        let mut lines = self.event_lines.lock().unwrap_or_else(|e| e.into_inner());
        for entry in read_dir(&events_dir)? {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| Uuid::parse_str(n).ok())
            else {
                continue;
            };
            let path = entry.path();
            let text = fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let mut list: Vec<Event> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            lines.insert(id, text.lines().count());
            if list.len() > max_events {
                list.drain(..list.len() - max_events);
            }
            t.events.insert(id, list);
        }
        Ok(t)
    }

    fn commit(&self, current: &Tables, writes: &[Write1], max_events: usize) -> Result<()> {
        // Files cannot be changed together: the records first, then the events reporting
        // them (an event never tells of a change that did not reach the disk).
        for w in writes {
            self.persist(w)?;
        }
        let mut appended: BTreeMap<Uuid, Vec<Event>> = BTreeMap::new();
        for w in writes {
            if let Write1::Event(e) = w {
                let id = e.metadata.deployment_id;
                let stored = current.events.get(&id).map(Vec::as_slice).unwrap_or(&[]);
                let before = appended.entry(id).or_default();
                if before.is_empty() {
                    self.append_event(stored, e, max_events)?;
                } else {
                    let list: Vec<Event> = stored.iter().chain(before.iter()).cloned().collect();
                    self.append_event(&list, e, max_events)?;
                }
                before.push(e.clone());
            }
        }
        Ok(())
    }

    fn append_event(&self, current: &[Event], event: &Event, max_events: usize) -> Result<()> {
        let id = event.metadata.deployment_id;
        let path = self.root.join("events").join(format!("{id}.jsonl"));
        let mut line = serde_json::to_string(event).map_err(|source| Error::Encode {
            what: "event".into(),
            source,
        })?;
        line.push('\n');
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        let mut lines = self.event_lines.lock().unwrap_or_else(|e| e.into_inner());
        let n = lines.entry(id).or_insert(0);
        *n += 1;
        if *n > 2 * max_events {
            let all = current.len() + 1;
            let skip = all.saturating_sub(max_events);
            let mut text = String::new();
            for e in current.iter().chain(std::iter::once(event)).skip(skip) {
                if let Ok(l) = serde_json::to_string(e) {
                    text.push_str(&l);
                    text.push('\n');
                }
            }
            write_atomic(
                &self.root.join("events"),
                &format!("{id}.jsonl"),
                text.as_bytes(),
            )?;
            lines.insert(id, all - skip);
        }
        Ok(())
    }

    fn remove_events(&self, deployment: Uuid) -> Result<()> {
        let path = self.root.join("events").join(format!("{deployment}.jsonl"));
        self.event_lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&deployment);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io { path, source }),
        }
    }
}

/// Per kind of record: how many and a SHA-256 over them (in key order, as JSON), to
/// compare two stores.
pub fn summary(t: &Tables) -> Result<Vec<(&'static str, usize, String)>> {
    fn digest<K, V: Serialize>(
        kind: &'static str,
        m: &BTreeMap<K, V>,
    ) -> Result<(&'static str, usize, String)> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for v in m.values() {
            let bytes = serde_json::to_vec(v).map_err(|source| Error::Encode {
                what: kind.into(),
                source,
            })?;
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(&bytes);
        }
        Ok((kind, m.len(), hex::encode(h.finalize())))
    }
    let events: BTreeMap<(Uuid, usize), &Event> = t
        .events
        .iter()
        .flat_map(|(id, l)| l.iter().enumerate().map(move |(i, e)| ((*id, i), e)))
        .collect();
    Ok(vec![
        digest("deployments", &t.deployments)?,
        digest("jobs", &t.jobs)?,
        digest("savepoints", &t.savepoints)?,
        digest("deployment-targets", &t.targets)?,
        digest("deployment-defaults", &t.defaults)?,
        digest("namespaces", &t.namespaces)?,
        digest("apitokens", &t.tokens)?,
        digest("events", &events)?,
    ])
}

/// Copies everything in `from` into the empty store `to` (records in one transaction, then
/// the events) and returns the [`summary`] of both; the caller compares them.
#[allow(clippy::type_complexity)]
pub fn copy_into(
    from: &Store,
    to: &Store,
) -> Result<(
    Vec<(&'static str, usize, String)>,
    Vec<(&'static str, usize, String)>,
)> {
    {
        let t = to.read();
        if !(t.deployments.is_empty()
            && t.jobs.is_empty()
            && t.savepoints.is_empty()
            && t.targets.is_empty()
            && t.namespaces.is_empty()
            && t.tokens.is_empty()
            && t.events.is_empty())
        {
            return Err(Error::Exists {
                path: PathBuf::from(
                    "the target store (it is not empty; migrate into an empty database)",
                ),
            });
        }
    }
    let t = from.read();
    let mut writes = vec![];
    writes.extend(t.namespaces.values().cloned().map(Write1::Namespace));
    writes.extend(t.targets.values().cloned().map(Write1::Target));
    writes.extend(
        t.defaults
            .iter()
            .map(|(ns, v)| Write1::Defaults(ns.clone(), v.clone())),
    );
    writes.extend(t.tokens.values().cloned().map(Write1::Token));
    writes.extend(t.deployments.values().cloned().map(Write1::Deployment));
    writes.extend(t.jobs.values().cloned().map(Write1::Job));
    writes.extend(t.savepoints.values().cloned().map(Write1::Savepoint));
    to.write(writes)?;
    for list in t.events.values() {
        for e in list {
            to.append_event(e.clone())?;
        }
    }
    Ok((summary(&t)?, summary(&to.read())?))
}

fn key2(a: &str, b: &str) -> String {
    // Namespaces and names are DNS labels, so `~` cannot occur in either; `*` is the
    // bootstrap namespace.
    format!("{}~{b}", a.replace('*', "_all_"))
}

fn apply(t: &mut Tables, w: Write1, max_events: usize) {
    match w {
        Write1::Event(e) => {
            let list = t.events.entry(e.metadata.deployment_id).or_default();
            list.push(e);
            if list.len() > max_events {
                let excess = list.len() - max_events;
                list.drain(..excess);
            }
        }
        Write1::Deployment(r) => {
            t.deployments.insert(r.deployment.id(), r);
        }
        Write1::Job(j) => {
            t.jobs.insert(j.metadata.id, j);
        }
        Write1::Savepoint(s) => {
            t.savepoints.insert(s.metadata.id, s);
        }
        Write1::Target(d) => {
            t.targets
                .insert((d.metadata.namespace.clone(), d.metadata.name.clone()), d);
        }
        Write1::Defaults(ns, v) => {
            t.defaults.insert(ns, v);
        }
        Write1::Namespace(n) => {
            t.namespaces.insert(n.metadata.name.clone(), n);
        }
        Write1::Token(k) => {
            t.tokens
                .insert((k.token.namespace.clone(), k.token.name.clone()), k);
        }
        Write1::RemoveDeployment(id) => {
            t.deployments.remove(&id);
        }
        Write1::RemoveJob(id) => {
            t.jobs.remove(&id);
        }
        Write1::RemoveSavepoint(id) => {
            t.savepoints.remove(&id);
        }
        Write1::RemoveTarget(ns, n) => {
            t.targets.remove(&(ns, n));
        }
        Write1::RemoveToken(ns, n) => {
            t.tokens.remove(&(ns, n));
        }
        Write1::RemoveNamespace(n) => {
            t.namespaces.remove(&n);
        }
        Write1::RemoveDefaults(n) => {
            t.defaults.remove(&n);
        }
    }
}

fn mkdir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    let rd = fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(rd.filter_map(|e| e.ok()).collect())
}

fn load<T: DeserializeOwned>(root: &Path, kind: Kind) -> Result<Vec<T>> {
    let dir = root.join(kind.dir());
    mkdir(&dir)?;
    let mut out = Vec::new();
    for entry in read_dir(&dir)? {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if common::fs::is_temp_name(&name) {
            // A write interrupted before its rename: the old version is still in place.
            let _ = fs::remove_file(&path);
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let v: Versioned<T> = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let Versioned::V1 { data } = v;
        out.push(data);
    }
    Ok(out)
}

/// Writes `bytes` to `dir/name` atomically with [`common::fs::write_atomic`] (temp file,
/// fsync, rename, fsync of the directory).
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    common::fs::write_atomic(&dir.join(name), bytes).map_err(io_error)
}

/// Like [`write_atomic`], but refuses ([`Error::Exists`]) when `dir/name` exists; of
/// concurrent writers of one name exactly one succeeds ([`common::fs::write_new`]).
pub fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    common::fs::write_new(&dir.join(name), bytes).map_err(|e| {
        if e.source.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Exists { path: e.path }
        } else {
            io_error(e)
        }
    })
}

fn io_error(e: common::fs::WriteError) -> Error {
    Error::Io {
        path: e.path,
        source: e.source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leftover_temp_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store").join("namespaces");
        fs::create_dir_all(&store_dir).unwrap();
        // A crash between create and rename leaves a temp file behind.
        fs::write(store_dir.join(".x.json.1.tmp"), b"{garbage").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "team-a"}
        }))
        .unwrap();
        store.write(vec![Write1::Namespace(ns.clone())]).unwrap();
        drop(store);
        assert!(!store_dir.join(".x.json.1.tmp").exists());
        let text = fs::read_to_string(store_dir.join("team-a.json")).unwrap();
        assert!(text.contains(r#""version":"1""#), "{text}");
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.read().namespaces.get("team-a"), Some(&ns));
    }

    #[test]
    fn event_files_are_compacted_and_a_torn_last_line_is_skipped() {
        use crate::model::{EventMetadata, EventSpec};
        let dir = tempfile::tempdir().unwrap();
        let max = 10;
        let store = Store::open(dir.path()).unwrap().with_max_events(max);
        let dep = Uuid::new_v4();
        let ev = |i: usize| Event {
            kind: "Event".into(),
            api_version: "v1".into(),
            metadata: EventMetadata {
                id: Uuid::new_v4(),
                namespace: "default".into(),
                deployment_id: dep,
                job_id: None,
                created_at: chrono::Utc::now(),
            },
            spec: EventSpec {
                name: "E".into(),
                message: format!("event {i}"),
            },
        };
        let n = 2 * max + 5;
        for i in 0..n {
            store.append_event(ev(i)).unwrap();
        }
        let path = dir.path().join(format!("store/events/{dep}.jsonl"));
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert!(
            lines <= MAX_EVENTS_PER_DEPLOYMENT + 5,
            "compacted: {lines} lines"
        );
        // A crash mid-append leaves a torn line; loading skips it and keeps the rest.
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"kind\":\"Ev").unwrap();
        drop(store);
        let again = Store::open(dir.path()).unwrap();
        let t = again.read();
        let list = &t.events[&dep];
        assert_eq!(
            list.len(),
            lines,
            "every complete line kept, the torn one skipped"
        );
        assert_eq!(list[0].spec.message, format!("event {}", n - lines));
        assert_eq!(
            list.last().unwrap().spec.message,
            format!("event {}", n - 1)
        );
    }

    #[test]
    fn concurrent_writers_of_one_name_never_share_a_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                let d = d.clone();
                std::thread::spawn(move || {
                    let bytes = vec![i; 256 * 1024];
                    for _ in 0..10 {
                        write_atomic(&d, "same.jar", &bytes).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        // The file holds exactly one writer's bytes, and no temp file is left behind.
        let got = fs::read(d.join("same.jar")).unwrap();
        assert_eq!(got.len(), 256 * 1024);
        assert!(got.iter().all(|b| *b == got[0]));
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("same.jar")]);
        // write_new refuses an existing name and leaves it as it was.
        let e = write_new(&d, "same.jar", b"other").unwrap_err();
        assert!(matches!(e, Error::Exists { .. }), "{e}");
        assert_eq!(fs::read(d.join("same.jar")).unwrap(), got);
        write_new(&d, "new.jar", b"new").unwrap();
        assert_eq!(fs::read(d.join("new.jar")).unwrap(), b"new");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 2);
    }

    #[tokio::test]
    async fn transact_publishes_the_deployments_it_touches_and_errors_publish_nothing() {
        use crate::model::{Deployment, DeploymentMetadata};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        let d = Deployment {
            metadata: DeploymentMetadata {
                id: Some(id),
                name: "d".into(),
                namespace: "default".into(),
                ..Default::default()
            },
            ..serde_json::from_value(serde_json::json!({})).unwrap()
        };
        let rec = DeploymentRecord {
            deployment: d,
            control: Default::default(),
        };
        // A failed transaction writes and publishes nothing.
        let err = store
            .transact::<(), Error>(|_| {
                Err(Error::Corrupt {
                    path: "x".into(),
                    message: "refused".into(),
                })
            })
            .unwrap_err();
        assert!(err.to_string().contains("refused"));
        assert!(store.take_changed().is_empty());
        store
            .transact::<_, Error>(|_| Ok((vec![Write1::Deployment(rec.clone())], ())))
            .unwrap();
        // The subscriber is woken (the wake-up is kept until someone waits) and learns which.
        tokio::time::timeout(std::time::Duration::from_secs(1), store.changed())
            .await
            .expect("woken");
        assert_eq!(store.take_changed(), BTreeSet::from([id]));
        assert!(store.take_changed().is_empty(), "taken once");
        // The controller's own writes do not publish (it wakes itself where it means to).
        store.write(vec![Write1::Deployment(rec)]).unwrap();
        assert!(store.take_changed().is_empty());
    }

    #[test]
    fn corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("store").join("jobs");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("bad.json"), b"{\"version\":\"1\",\"data\":{}}").unwrap();
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("bad.json"), "{err}");
    }
}
