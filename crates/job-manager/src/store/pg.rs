//! The PostgreSQL backend of the store (`--store.url postgres://USER@HOST:PORT/DB`).
//!
//! One table per kind, the record as `jsonb` next to the columns the API filters on
//! (namespace, deployment), with indexes on them. Migrations run at start under an advisory
//! lock, so managers starting together migrate once. Every [`Backend::commit`] is one
//! transaction; a deployment, deployment target or namespace is only written over the
//! `resource_version` the change was computed from (`UPDATE … WHERE resource_version = $n`,
//! `INSERT … ON CONFLICT DO NOTHING`), so of two replicas changing one record from the same
//! version exactly one succeeds and the other gets [`Error::Conflict`]. A namespace's
//! deployment defaults keep their version inside the document (`metadata.resourceVersion`),
//! and are checked the same way on it.
//!
//! The client is synchronous and lives on a dedicated thread: the store is called from
//! async code and from plain threads alike, and blocks on the reply like it blocks on fsync.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{mpsc, Mutex},
};

use postgres::{Client, NoTls, Transaction};

pub mod tls;
use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

use super::{
    Backend, DeploymentRecord, Error, Result, StoredToken, Tables, Write1,
    MAX_EVENTS_PER_DEPLOYMENT,
};
use crate::model::{DeploymentTarget, Event, Job, Namespace, Savepoint};

/// Schema versions, applied in order; an applied one is never changed.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE deployments (
    id uuid PRIMARY KEY,
    namespace text NOT NULL,
    name text NOT NULL,
    resource_version bigint NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX deployments_namespace_name ON deployments (namespace, name);
CREATE TABLE jobs (
    id uuid PRIMARY KEY,
    namespace text NOT NULL,
    deployment_id uuid NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX jobs_deployment ON jobs (deployment_id);
CREATE INDEX jobs_namespace ON jobs (namespace);
CREATE TABLE savepoints (
    id uuid PRIMARY KEY,
    namespace text NOT NULL,
    deployment_id uuid NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX savepoints_deployment ON savepoints (deployment_id);
CREATE INDEX savepoints_namespace ON savepoints (namespace);
CREATE TABLE deployment_targets (
    namespace text NOT NULL,
    name text NOT NULL,
    resource_version bigint NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE deployment_defaults (
    namespace text PRIMARY KEY,
    data jsonb NOT NULL
);
CREATE TABLE namespaces (
    name text PRIMARY KEY,
    resource_version bigint NOT NULL,
    data jsonb NOT NULL
);
CREATE TABLE api_tokens (
    namespace text NOT NULL,
    name text NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE events (
    seq bigserial PRIMARY KEY,
    id uuid NOT NULL,
    namespace text NOT NULL,
    deployment_id uuid NOT NULL,
    data jsonb NOT NULL
);
CREATE INDEX events_deployment_seq ON events (deployment_id, seq);
CREATE INDEX events_namespace ON events (namespace);
"#];

/// Arbitrary, fixed: serialises migrations of managers starting together.
const MIGRATION_LOCK: i64 = 0x6a6f_625f_6d67_7231;

/// How to reach the database.
#[derive(Clone)]
pub struct PgLocation {
    config: postgres::Config,
    tls: tls::Tls,
    /// `host:port/db` for messages (never the password).
    display: String,
}

impl PgLocation {
    /// Parses `postgres://USER@HOST:PORT/DB`; `password`, if given, replaces one in the URL.
    pub fn parse(url: &str, password: Option<&str>) -> Result<PgLocation> {
        let mut parsed = url::Url::parse(url).map_err(|e| Error::Database {
            message: format!("store.url is not a URL: {e}"),
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(Error::Database {
                message: format!(
                    "store.url has scheme {:?}; only postgres:// is supported",
                    parsed.scheme()
                ),
            });
        }
        if !parsed.password().unwrap_or_default().is_empty() {
            return Err(Error::Database {
                message: "store.url must not carry a password (it would show in /-/config and the process list): put it in the file store.password_file names".into(),
            });
        }
        let display = format!(
            "{}:{}{}",
            parsed.host_str().unwrap_or("localhost"),
            parsed.port().unwrap_or(5432),
            parsed.path()
        );
        let tls = tls::Tls::from_url(&mut parsed)?;
        let mut config: postgres::Config =
            parsed.as_str().parse().map_err(|e| Error::Database {
                message: format!("store.url ({display}): {e}"),
            })?;
        config.ssl_mode(tls.pg_mode());
        if let Some(p) = password {
            config.password(p);
        }
        config.application_name("job-manager");
        Ok(PgLocation {
            config,
            tls,
            display,
        })
    }

    /// A new session, over TLS as `sslmode` says.
    fn connect(&self) -> std::result::Result<Client, postgres::Error> {
        match &self.tls.connector {
            None => self.config.connect(NoTls),
            Some(c) => self.config.connect(c.clone()),
        }
    }

    /// `host:port/db`.
    pub fn display(&self) -> &str {
        &self.display
    }
}

type Call = Box<dyn FnOnce(&mut Conn) + Send>;

struct Conn {
    location: PgLocation,
    client: Option<Client>,
}

impl Conn {
    /// The connection, (re)connected if it was lost.
    fn client(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let client = self
                .location
                .connect()
                .map_err(|e| db(&self.location.display, e))?;
            self.client = Some(client);
        }
        self.client.as_mut().ok_or_else(|| Error::Database {
            message: "no connection".into(),
        })
    }
}

fn db(display: &str, e: postgres::Error) -> Error {
    // postgres::Error never includes the connection parameters; its source has the detail.
    let detail = match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => match std::error::Error::source(&e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    };
    Error::Database {
        message: format!("PostgreSQL at {display}: {detail}"),
    }
}

/// The PostgreSQL backend.
pub struct PgBackend {
    calls: Mutex<mpsc::Sender<Call>>,
    display: String,
    leader: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The advisory lock whose holder reconciles (arbitrary, fixed).
const LEADER_LOCK: i64 = 0x6a6f_625f_6c65_6164;

/// How often leadership is tried for, and held leadership checked.
const LEADER_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Holds the leader lock on a connection of its own: a session lock is released when the
/// session ends, so a killed leader's lock goes with its connection. Runs until `stop`.
fn elect(
    location: PgLocation,
    leader: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: mpsc::Receiver<()>,
) {
    use std::sync::atomic::Ordering;
    let mut conn: Option<Client> = None;
    loop {
        let held = (|| -> std::result::Result<bool, postgres::Error> {
            if conn.as_ref().is_none_or(Client::is_closed) {
                conn = Some(location.connect()?);
                leader.store(false, Ordering::SeqCst);
            }
            let Some(c) = conn.as_mut() else {
                return Ok(false);
            };
            if leader.load(Ordering::SeqCst) {
                // Still our session, so still our lock.
                c.simple_query("SELECT 1")?;
                return Ok(true);
            }
            let row = c.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])?;
            Ok(row.get(0))
        })();
        let now = match held {
            Ok(h) => h,
            Err(e) => {
                if leader.load(Ordering::SeqCst) {
                    tracing::warn!(
                        "Lost the leader lock at {}: {}",
                        location.display,
                        db(&location.display, e)
                    );
                }
                conn = None;
                false
            }
        };
        if now != leader.swap(now, Ordering::SeqCst) {
            tracing::info!(
                "{} at {}.",
                if now {
                    "Leader: this replica reconciles"
                } else {
                    "Follower: another replica reconciles"
                },
                location.display
            );
        }
        match stop.recv_timeout(LEADER_CHECK) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

impl PgBackend {
    /// Connects, runs the migrations and starts the connection's thread and the election
    /// by advisory lock.
    pub fn connect(location: PgLocation) -> Result<PgBackend> {
        PgBackend::connect_with(location, true)
    }

    /// [`PgBackend::connect`]; without `advisory_election` no lock is taken (and
    /// [`Backend::is_leader`] stays false: leadership is decided elsewhere).
    pub fn connect_with(location: PgLocation, advisory_election: bool) -> Result<PgBackend> {
        let display = location.display.clone();
        let leader = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        if advisory_election {
            let location = location.clone();
            let leader = leader.clone();
            std::thread::Builder::new()
                .name("job-manager-leader".into())
                .spawn(move || elect(location, leader, stop_rx))
                .map_err(|e| Error::Database {
                    message: format!("cannot start the leader election thread: {e}"),
                })?;
        }
        let (tx, rx) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("job-manager-pg".into())
            .spawn(move || {
                let mut conn = Conn {
                    location,
                    client: None,
                };
                while let Ok(call) = rx.recv() {
                    call(&mut conn);
                }
                // The store is gone: so is the election (and with it the lock).
                drop(stop_tx);
            })
            .map_err(|e| Error::Database {
                message: format!("cannot start the database thread: {e}"),
            })?;
        let backend = PgBackend {
            calls: Mutex::new(tx),
            display,
            leader,
        };
        backend.call(migrate)?;
        Ok(backend)
    }

    /// Runs `f` with the connection on its thread and waits for the result.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client, &str) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (rtx, rrx) = mpsc::sync_channel(1);
        let call: Call = Box::new(move |conn: &mut Conn| {
            let display = conn.location.display.clone();
            let r = conn.client().and_then(|c| f(c, &display));
            let _ = rtx.send(r);
        });
        let gone = || Error::Database {
            message: format!(
                "PostgreSQL at {}: the connection thread stopped",
                self.display
            ),
        };
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(call)
            .map_err(|_| gone())?;
        rrx.recv().map_err(|_| gone())?
    }
}

fn migrate(c: &mut Client, place: &str) -> Result<()> {
    let e = |e| db(place, e);
    let mut tx = c.transaction().map_err(e)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(e)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS job_manager_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .map_err(e)?;
    let done: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM job_manager_migrations",
            &[],
        )
        .map_err(e)?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        if version <= done {
            continue;
        }
        tx.batch_execute(sql).map_err(e)?;
        tx.execute(
            "INSERT INTO job_manager_migrations (version) VALUES ($1)",
            &[&version],
        )
        .map_err(e)?;
        tracing::info!("Store database {place}: applied schema version {version}.");
    }
    tx.commit().map_err(e)
}

fn decode<T: DeserializeOwned>(table: &str, key: &str, v: serde_json::Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::Corrupt {
        path: PathBuf::from(format!("postgres:{table}/{key}")),
        message: e.to_string(),
    })
}

fn encode<T: Serialize>(what: &str, v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|source| Error::Encode {
        what: what.into(),
        source,
    })
}

fn rv(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A write with everything it needs, encoded on the caller's side.
enum Op {
    /// A versioned row: written only over `expected` (None: must not exist yet).
    Versioned {
        table: &'static str,
        key: Key,
        expected: Option<i64>,
        version: i64,
        data: serde_json::Value,
    },
    /// A namespace's deployment defaults, whose version is inside the document
    /// (`metadata.resourceVersion`; a document without one is version 1): written only over
    /// `expected` (None: nothing stored yet).
    Defaults {
        namespace: String,
        expected: Option<i64>,
        data: serde_json::Value,
    },
    Upsert {
        table: &'static str,
        key: Key,
        data: serde_json::Value,
    },
    Delete {
        table: &'static str,
        key: Key,
    },
    /// An event, appended.
    Event {
        id: Uuid,
        namespace: String,
        deployment: Uuid,
        data: serde_json::Value,
    },
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    /// A uuid row with its namespace and deployment (deployments: name in place of it).
    Id {
        id: Uuid,
        namespace: String,
        other: Option<Uuid>,
        name: String,
    },
    Pair(String, String),
    One(String),
}

impl Key {
    fn id(id: Uuid) -> Key {
        Key::Id {
            id,
            namespace: String::new(),
            other: None,
            name: String::new(),
        }
    }
    fn describe(&self) -> String {
        match self {
            Key::Id { id, .. } => id.to_string(),
            Key::Pair(a, b) => format!("{a}/{b}"),
            Key::One(a) => a.clone(),
        }
    }
    /// The key without its non-key columns (for tracking versions within one commit).
    fn ident(&self) -> Key {
        match self {
            Key::Id { id, .. } => Key::id(*id),
            k => k.clone(),
        }
    }
}

fn ops(current: &Tables, writes: &[Write1]) -> Result<Vec<Op>> {
    // Versions written earlier in this same commit take the place of memory's.
    let mut seen: HashMap<(&'static str, Key), Option<i64>> = HashMap::new();
    let mut defaults_seen: HashMap<String, Option<i64>> = HashMap::new();
    let mut out = Vec::with_capacity(writes.len());
    let mut versioned = |table: &'static str,
                         key: Key,
                         in_memory: Option<u64>,
                         version: u64,
                         data: serde_json::Value| {
        let slot = seen
            .entry((table, key.ident()))
            .or_insert(in_memory.map(rv));
        let expected = *slot;
        *slot = Some(rv(version));
        Op::Versioned {
            table,
            key,
            expected,
            version: rv(version),
            data,
        }
    };
    for w in writes {
        out.push(match w {
            Write1::Deployment(r) => {
                let d = &r.deployment;
                let id = d.id();
                versioned(
                    "deployments",
                    Key::Id {
                        id,
                        namespace: d.metadata.namespace.clone(),
                        other: None,
                        name: d.metadata.name.clone(),
                    },
                    current
                        .deployments
                        .get(&id)
                        .map(|r| r.deployment.metadata.resource_version),
                    d.metadata.resource_version,
                    encode("deployment", r)?,
                )
            }
            Write1::Target(t) => {
                let key = (t.metadata.namespace.clone(), t.metadata.name.clone());
                versioned(
                    "deployment_targets",
                    Key::Pair(key.0.clone(), key.1.clone()),
                    current
                        .targets
                        .get(&key)
                        .map(|t| t.metadata.resource_version),
                    t.metadata.resource_version,
                    encode("deployment target", t)?,
                )
            }
            Write1::Namespace(n) => versioned(
                "namespaces",
                Key::One(n.metadata.name.clone()),
                current
                    .namespaces
                    .get(&n.metadata.name)
                    .map(|n| n.metadata.resource_version),
                n.metadata.resource_version,
                encode("namespace", n)?,
            ),
            Write1::Job(j) => Op::Upsert {
                table: "jobs",
                key: Key::Id {
                    id: j.metadata.id,
                    namespace: j.metadata.namespace.clone(),
                    other: Some(j.metadata.deployment_id),
                    name: String::new(),
                },
                data: encode("job", j)?,
            },
            Write1::Savepoint(s) => Op::Upsert {
                table: "savepoints",
                key: Key::Id {
                    id: s.metadata.id,
                    namespace: s.metadata.namespace.clone(),
                    other: Some(s.metadata.deployment_id),
                    name: String::new(),
                },
                data: encode("savepoint", s)?,
            },
            Write1::Defaults(ns, v) => {
                // The version lives inside the document; an earlier write to the same
                // namespace in this commit takes the place of memory's.
                let in_memory = current
                    .defaults
                    .get(ns)
                    .map(|d| crate::api::defaults::stored_version(Some(d)));
                let slot = defaults_seen.entry(ns.clone()).or_insert(in_memory.map(rv));
                let expected = *slot;
                *slot = Some(rv(crate::api::defaults::stored_version(Some(v))));
                Op::Defaults {
                    namespace: ns.clone(),
                    expected,
                    data: v.clone(),
                }
            }
            Write1::Token(k) => Op::Upsert {
                table: "api_tokens",
                key: Key::Pair(k.token.namespace.clone(), k.token.name.clone()),
                data: encode("api token", k)?,
            },
            Write1::RemoveDeployment(id) => Op::Delete {
                table: "deployments",
                key: Key::id(*id),
            },
            Write1::RemoveJob(id) => Op::Delete {
                table: "jobs",
                key: Key::id(*id),
            },
            Write1::RemoveSavepoint(id) => Op::Delete {
                table: "savepoints",
                key: Key::id(*id),
            },
            Write1::RemoveTarget(ns, n) => Op::Delete {
                table: "deployment_targets",
                key: Key::Pair(ns.clone(), n.clone()),
            },
            Write1::RemoveToken(ns, n) => Op::Delete {
                table: "api_tokens",
                key: Key::Pair(ns.clone(), n.clone()),
            },
            Write1::RemoveNamespace(n) => Op::Delete {
                table: "namespaces",
                key: Key::One(n.clone()),
            },
            Write1::RemoveDefaults(n) => Op::Delete {
                table: "deployment_defaults",
                key: Key::One(n.clone()),
            },
            Write1::Event(ev) => Op::Event {
                id: ev.metadata.id,
                namespace: ev.metadata.namespace.clone(),
                deployment: ev.metadata.deployment_id,
                data: encode("event", ev)?,
            },
        });
    }
    Ok(out)
}

fn singular(table: &str) -> &str {
    match table {
        "deployments" => "deployment",
        "deployment_targets" => "deployment target",
        "namespaces" => "namespace",
        other => other,
    }
}

fn apply_op(tx: &mut Transaction<'_>, op: &Op, display: &str) -> Result<()> {
    let e = |e| db(display, e);
    match op {
        Op::Versioned {
            table,
            key,
            expected,
            version,
            data,
        } => {
            let n = match (key, expected) {
                (
                    Key::Id {
                        id,
                        namespace,
                        name,
                        ..
                    },
                    Some(old),
                ) => tx.execute(
                    "UPDATE deployments SET namespace = $2, name = $3, resource_version = $4, data = $5 WHERE id = $1 AND resource_version = $6",
                    &[id, namespace, name, version, data, old],
                ),
                (
                    Key::Id {
                        id,
                        namespace,
                        name,
                        ..
                    },
                    None,
                ) => tx.execute(
                    "INSERT INTO deployments (id, namespace, name, resource_version, data) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                    &[id, namespace, name, version, data],
                ),
                (Key::Pair(ns, name), Some(old)) => tx.execute(
                    "UPDATE deployment_targets SET resource_version = $3, data = $4 WHERE namespace = $1 AND name = $2 AND resource_version = $5",
                    &[ns, name, version, data, old],
                ),
                (Key::Pair(ns, name), None) => tx.execute(
                    "INSERT INTO deployment_targets (namespace, name, resource_version, data) VALUES ($1, $2, $3, $4) ON CONFLICT (namespace, name) DO NOTHING",
                    &[ns, name, version, data],
                ),
                (Key::One(name), Some(old)) => tx.execute(
                    "UPDATE namespaces SET resource_version = $2, data = $3 WHERE name = $1 AND resource_version = $4",
                    &[name, version, data, old],
                ),
                (Key::One(name), None) => tx.execute(
                    "INSERT INTO namespaces (name, resource_version, data) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                    &[name, version, data],
                ),
            }
            .map_err(e)?;
            if n != 1 {
                return Err(Error::Conflict {
                    what: format!("{} {}", singular(table), key.describe()),
                });
            }
            Ok(())
        }
        Op::Defaults {
            namespace,
            expected,
            data,
        } => {
            let n = match expected {
                Some(old) => tx.execute(
                    "UPDATE deployment_defaults SET data = $2 WHERE namespace = $1 AND COALESCE(data->'metadata'->>'resourceVersion', '1') = $3",
                    &[namespace, data, &old.to_string()],
                ),
                None => tx.execute(
                    "INSERT INTO deployment_defaults (namespace, data) VALUES ($1, $2) ON CONFLICT (namespace) DO NOTHING",
                    &[namespace, data],
                ),
            }
            .map_err(e)?;
            if n != 1 {
                return Err(Error::Conflict {
                    what: format!("the deployment defaults of namespace {namespace}"),
                });
            }
            Ok(())
        }
        Op::Upsert { table, key, data } => {
            match key {
                Key::Id {
                    id,
                    namespace,
                    other,
                    ..
                } => {
                    let dep = other.unwrap_or(Uuid::nil());
                    let sql = format!(
                        "INSERT INTO {table} (id, namespace, deployment_id, data) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET namespace = $2, deployment_id = $3, data = $4"
                    );
                    tx.execute(&sql, &[id, namespace, &dep, data])
                }
                Key::Pair(a, b) => {
                    let sql = format!(
                        "INSERT INTO {table} (namespace, name, data) VALUES ($1, $2, $3) ON CONFLICT (namespace, name) DO UPDATE SET data = $3"
                    );
                    tx.execute(&sql, &[a, b, data])
                }
                Key::One(a) => {
                    let sql = format!(
                        "INSERT INTO {table} (namespace, data) VALUES ($1, $2) ON CONFLICT (namespace) DO UPDATE SET data = $2"
                    );
                    tx.execute(&sql, &[a, data])
                }
            }
            .map_err(e)?;
            Ok(())
        }
        Op::Event {
            id,
            namespace,
            deployment,
            data,
        } => {
            tx.execute(INSERT_EVENT, &[id, namespace, deployment, data])
                .map_err(e)?;
            Ok(())
        }
        Op::Delete { table, key } => {
            match key {
                Key::Id { id, .. } => {
                    tx.execute(&format!("DELETE FROM {table} WHERE id = $1"), &[id])
                }
                Key::Pair(a, b) => tx.execute(
                    &format!("DELETE FROM {table} WHERE namespace = $1 AND name = $2"),
                    &[a, b],
                ),
                Key::One(a) => {
                    let col = if *table == "namespaces" {
                        "name"
                    } else {
                        "namespace"
                    };
                    tx.execute(&format!("DELETE FROM {table} WHERE {col} = $1"), &[a])
                }
            }
            .map_err(e)?;
            Ok(())
        }
    }
}

const INSERT_EVENT: &str =
    "INSERT INTO events (id, namespace, deployment_id, data) VALUES ($1, $2, $3, $4)";

/// Deletes all but the newest `$2` events of deployment `$1`.
const TRIM_EVENTS: &str = "DELETE FROM events WHERE deployment_id = $1 AND seq <= (SELECT seq FROM events WHERE deployment_id = $1 ORDER BY seq DESC OFFSET $2 LIMIT 1)";

fn load_all(c: &mut Client, display: &str, max_events: usize) -> Result<Tables> {
    let e = |e| db(display, e);
    // One snapshot for all tables.
    let mut tx = c
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(e)?;
    let mut t = Tables::default();
    for row in tx
        .query("SELECT id, data FROM deployments", &[])
        .map_err(e)?
    {
        let id: Uuid = row.get(0);
        let r: DeploymentRecord = decode("deployments", &id.to_string(), row.get(1))?;
        t.deployments.insert(id, r);
    }
    for row in tx.query("SELECT id, data FROM jobs", &[]).map_err(e)? {
        let id: Uuid = row.get(0);
        let j: Job = decode("jobs", &id.to_string(), row.get(1))?;
        t.jobs.insert(id, j);
    }
    for row in tx
        .query("SELECT id, data FROM savepoints", &[])
        .map_err(e)?
    {
        let id: Uuid = row.get(0);
        let s: Savepoint = decode("savepoints", &id.to_string(), row.get(1))?;
        t.savepoints.insert(id, s);
    }
    for row in tx
        .query("SELECT namespace, name, data FROM deployment_targets", &[])
        .map_err(e)?
    {
        let key: (String, String) = (row.get(0), row.get(1));
        let d: DeploymentTarget = decode(
            "deployment_targets",
            &format!("{}/{}", key.0, key.1),
            row.get(2),
        )?;
        t.targets.insert(key, d);
    }
    for row in tx
        .query("SELECT namespace, data FROM deployment_defaults", &[])
        .map_err(e)?
    {
        t.defaults.insert(row.get(0), row.get(1));
    }
    for row in tx
        .query("SELECT name, data FROM namespaces", &[])
        .map_err(e)?
    {
        let name: String = row.get(0);
        let n: Namespace = decode("namespaces", &name, row.get(1))?;
        t.namespaces.insert(name, n);
    }
    for row in tx
        .query("SELECT namespace, name, data FROM api_tokens", &[])
        .map_err(e)?
    {
        let key: (String, String) = (row.get(0), row.get(1));
        let k: StoredToken = decode("api_tokens", &format!("{}/{}", key.0, key.1), row.get(2))?;
        t.tokens.insert(key, k);
    }
    let max = i64::try_from(max_events).unwrap_or(i64::MAX);
    for row in tx
        .query(
            "SELECT deployment_id, data FROM (SELECT deployment_id, data, seq, row_number() OVER (PARTITION BY deployment_id ORDER BY seq DESC) AS n FROM events) e WHERE n <= $1 ORDER BY seq",
            &[&max],
        )
        .map_err(e)?
    {
        let id: Uuid = row.get(0);
        // Like a torn line in the event file, an unreadable event is skipped.
        if let Ok(ev) = serde_json::from_value::<Event>(row.get(1)) {
            t.events.entry(id).or_default().push(ev);
        }
    }
    tx.commit().map_err(e)?;
    Ok(t)
}

impl Backend for PgBackend {
    fn is_leader(&self) -> bool {
        self.leader.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn load(&self, max_events: usize) -> Result<Tables> {
        self.call(move |c, d| load_all(c, d, max_events))
    }

    fn commit(&self, current: &Tables, writes: &[Write1], max_events: usize) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let ops = ops(current, writes)?;
        // Deployments whose event list outgrows `max_events` with this commit.
        let mut added: HashMap<Uuid, usize> = HashMap::new();
        for w in writes {
            if let Write1::Event(e) = w {
                *added.entry(e.metadata.deployment_id).or_default() += 1;
            }
        }
        let trim: Vec<Uuid> = added
            .into_iter()
            .filter(|(id, n)| current.events.get(id).map_or(0, Vec::len) + n > max_events)
            .map(|(id, _)| id)
            .collect();
        let keep = i64::try_from(max_events).unwrap_or(i64::MAX);
        self.call(move |c, d| {
            let mut tx = c.transaction().map_err(|e| db(d, e))?;
            for op in &ops {
                // Dropping the transaction on error rolls everything back.
                apply_op(&mut tx, op, d)?;
            }
            for id in &trim {
                tx.execute(TRIM_EVENTS, &[id, &keep])
                    .map_err(|e| db(d, e))?;
            }
            tx.commit().map_err(|e| db(d, e))
        })
    }

    fn append_event(&self, current: &[Event], event: &Event, max_events: usize) -> Result<()> {
        let data = encode("event", event)?;
        let id = event.metadata.id;
        let ns = event.metadata.namespace.clone();
        let dep = event.metadata.deployment_id;
        let trim = current.len() >= max_events.min(MAX_EVENTS_PER_DEPLOYMENT);
        let keep = i64::try_from(max_events).unwrap_or(i64::MAX);
        self.call(move |c, d| {
            let e = |e| db(d, e);
            c.execute(INSERT_EVENT, &[&id, &ns, &dep, &data])
                .map_err(e)?;
            if trim {
                c.execute(TRIM_EVENTS, &[&dep, &keep]).map_err(e)?;
            }
            Ok(())
        })
    }

    fn remove_events(&self, deployment: Uuid) -> Result<()> {
        self.call(move |c, d| {
            c.execute(
                "DELETE FROM events WHERE deployment_id = $1",
                &[&deployment],
            )
            .map_err(|e| db(d, e))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_url_is_refused_without_echoing_it() {
        let err = PgLocation::parse("postgres://jm:hunter2-secret@db:5432/jm", None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("store.password_file"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = PgLocation::parse("mysql://db/jm", None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("only postgres://"), "{err}");
        let ok = PgLocation::parse("postgres://jm@db:6543/flink", Some("pw")).unwrap();
        assert_eq!(ok.display(), "db:6543/flink");
    }
}
