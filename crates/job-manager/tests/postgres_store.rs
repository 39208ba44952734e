//! The PostgreSQL store against a real PostgreSQL (Debian's `postgresql` package): a
//! throwaway cluster in a temporary directory on a free 127.0.0.1 port. Skips with a message
//! when `initdb` is not installed. As root (CI), the server runs as the `postgres` user.

mod pg_support;
mod support;

use std::{path::Path, process::Command};

use pg_support::Pg;

use job_manager::store::{DeploymentRecord, Error, Store, Write1};
use serde_json::{json, Value};
use support::Manager;
use uuid::Uuid;

fn deployment(name: &str, jar: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"state": "CANCELLED", "template": {"spec": {"artifact": {"jarUri": jar, "entryClass": "x.Main"}}}}
    })
}

const DEPS: &str = "/api/v1/namespaces/default/deployments";

async fn create(m: &Manager, name: &str) -> (String, Value) {
    let (s, v) = m
        .upload("default", &format!("{name}.jar"), b"PK\x03\x04 job")
        .await;
    assert_eq!(s, 201, "{v}");
    let jar = v["data"]["uri"].as_str().unwrap().to_string();
    let (s, v) = m.call("POST", DEPS, Some(deployment(name, &jar))).await;
    assert_eq!(s, 201, "{v}");
    let id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
    (id, v["data"].clone())
}

fn store_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("store/deployments"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_over_postgres_creates_patches_and_keeps_everything_across_restarts() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.database("keep");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a");
    let m = pg.manager(&data, &url);
    let (id, created) = create(&m, "kept").await;
    assert_eq!(created["metadata"]["resourceVersion"], 1);
    let (s, v) = m
        .call(
            "PATCH",
            &format!("{DEPS}/{id}"),
            Some(json!({"metadata": {"resourceVersion": 1, "labels": {"team": "a"}}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 2);
    assert_eq!(
        store_files(&data),
        0,
        "nothing in the embedded store: the deployment is in PostgreSQL"
    );
    // The database holds it, with its version in the column the check uses.
    let uuid = Uuid::parse_str(&id).unwrap();
    let rows = pg.query(
        &url,
        "SELECT namespace, name, resource_version FROM deployments",
        &[],
    );
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, i64>(2)
        ),
        ("default".into(), "kept".into(), 2)
    );
    m.kill9();

    // A restart on another data directory (another node) finds everything.
    let m = pg.manager(&dir.path().join("b"), &url);
    let d = m.deployment(&id).await;
    assert_eq!(d["metadata"]["name"], "kept");
    assert_eq!(d["metadata"]["labels"]["team"], "a");
    assert_eq!(d["metadata"]["resourceVersion"], 2);
    let (s, v) = m.call("GET", DEPS, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["items"].as_array().unwrap().len(), 1);
    // The bootstrap token came from the database too (the call above was authorised) and
    // the migrations ran exactly once.
    let n: i64 = pg.query(&url, "SELECT count(*) FROM job_manager_migrations", &[])[0].get(0);
    assert_eq!(n, 1);
    let n: i64 = pg.query(
        &url,
        "SELECT count(*) FROM deployments WHERE id = $1",
        &[&uuid],
    )[0]
    .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_stale_resource_version_is_refused_by_the_database() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.database("stale");
    let dir = tempfile::tempdir().unwrap();
    // B leads (so it never reloads on its own: only a conflict makes it); A follows.
    let b = pg.manager(&dir.path().join("b"), &url);
    support::eventually("b leads", std::time::Duration::from_secs(10), || async {
        (leader_gauge(&b).await == Some(1)).then_some(())
    })
    .await;
    let a = pg.manager(&dir.path().join("a"), &url);
    let (id, _) = create(&b, "shared").await;
    // A sees the deployment at version 1.
    support::eventually("a sees it", std::time::Duration::from_secs(5), || async {
        let (s, v) = a.call("GET", &format!("{DEPS}/{id}"), None).await;
        (s == 200 && v["data"]["metadata"]["resourceVersion"] == 1).then_some(())
    })
    .await;
    let (s, v) = a
        .call(
            "PATCH",
            &format!("{DEPS}/{id}"),
            Some(json!({"metadata": {"resourceVersion": 1, "labels": {"by": "a"}}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // B still believes version 1, so its own check passes; the database refuses.
    let (s, v) = b
        .call(
            "PATCH",
            &format!("{DEPS}/{id}"),
            Some(json!({"metadata": {"resourceVersion": 1, "labels": {"by": "b"}}})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("changed concurrently"),
        "{v}"
    );
    // B reloaded: it now shows A's change, and a PATCH over it succeeds.
    let d = b.deployment(&id).await;
    assert_eq!(d["metadata"]["labels"]["by"], "a");
    assert_eq!(d["metadata"]["resourceVersion"], 2);
    let (s, v) = b
        .call(
            "PATCH",
            &format!("{DEPS}/{id}"),
            Some(json!({"metadata": {"resourceVersion": 2, "labels": {"by": "b"}}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let uuid = Uuid::parse_str(&id).unwrap();
    let data: Value =
        pg.query(&url, "SELECT data FROM deployments WHERE id = $1", &[&uuid])[0].get(0);
    assert_eq!(data["deployment"]["metadata"]["labels"]["by"], "b");
    assert_eq!(data["deployment"]["metadata"]["resourceVersion"], 3);
}

fn record(name: &str, version: u64) -> DeploymentRecord {
    serde_json::from_value(json!({
        "deployment": {
            "metadata": {"id": Uuid::new_v4(), "name": name, "namespace": "default", "resourceVersion": version},
            "spec": {"template": {"spec": {"artifact": {"jarUri": "file:///x.jar"}}}}
        }
    }))
    .unwrap()
}

#[test]
fn a_failed_multi_record_change_leaves_nothing_in_the_database() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.database("atomic");
    let dir = tempfile::tempdir().unwrap();
    let pw = pg.password_file();
    // A wrong password is refused with the server's reason, the password never echoed.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password-77\n").unwrap();
    let err = Store::open_at(dir.path(), Some(&url), Some(&wrong))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("not-the-password-77"), "{err}");
    let one = Store::open_at(dir.path(), Some(&url), Some(&pw)).unwrap();
    let existing = record("existing", 1);
    let eid = existing.deployment.id();
    one.write(vec![Write1::Deployment(existing.clone())])
        .unwrap();
    // A second replica moves it to version 2.
    let two = Store::open_at(dir.path(), Some(&url), Some(&pw)).unwrap();
    let mut newer = existing.clone();
    newer.deployment.metadata.resource_version = 2;
    two.write(vec![Write1::Deployment(newer)]).unwrap();

    // The first replica's change creates a deployment and writes the stale one: the
    // second write fails, so the first must not persist either.
    let fresh = record("fresh", 1);
    let fid = fresh.deployment.id();
    let mut stale = existing.clone();
    stale.deployment.metadata.resource_version = 2;
    let err = one
        .transact::<(), Error>(|_| {
            Ok((
                vec![Write1::Deployment(fresh.clone()), Write1::Deployment(stale)],
                (),
            ))
        })
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(err.to_string().contains(&eid.to_string()), "{err}");
    let n: i64 = pg.query(
        &url,
        "SELECT count(*) FROM deployments WHERE id = $1",
        &[&fid],
    )[0]
    .get(0);
    assert_eq!(n, 0, "the created deployment was rolled back");
    // Memory agrees with the database: reloaded after the conflict, without `fresh`.
    assert!(!one.read().deployments.contains_key(&fid));
    assert_eq!(
        one.read().deployments[&eid]
            .deployment
            .metadata
            .resource_version,
        2
    );
    let reopened = Store::open_at(dir.path(), Some(&url), Some(&pw)).unwrap();
    assert_eq!(reopened.read().deployments.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_every_kind_of_record_verified_by_counts_and_checksums() {
    use job_manager::{flink::fake::FakeFlink, testing::Harness, Config};
    let Some(pg) = Pg::start() else { return };
    let url = pg.database("migrated");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("embedded");
    // An embedded store with every kind: namespace, target, defaults, token, a running
    // deployment with its job, a savepoint and events.
    let deployment_id = {
        let h = Harness::open(
            &data,
            std::sync::Arc::new(FakeFlink::new()),
            Config::default(),
        );
        h.fake_target().await;
        for (m, p, b) in [
            (
                "POST",
                "/namespaces/v1/namespaces",
                json!({"metadata": {"name": "team-b"}}),
            ),
            (
                "PATCH",
                "/api/v1/namespaces/default/deployment-defaults",
                json!({"spec": {"maxJobCreationAttempts": 2}}),
            ),
            (
                "POST",
                "/apitokens/v1/namespaces/default/apitokens",
                json!({"name": "ci", "role": "editor"}),
            ),
        ] {
            let (s, v) = h.call(m, p, Some(b)).await;
            assert!(s == 200 || s == 201, "{m} {p}: {s} {v}");
        }
        let (s, v) = h
            .call(
                "POST",
                DEPS,
                Some(json!({
                    "metadata": {"name": "moved"},
                    "spec": {"state": "RUNNING", "deploymentTargetName": "fake",
                             "template": {"spec": {"artifact": {"jarUri": h.jar_uri}}}}
                })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let id = v["data"]["metadata"]["id"].as_str().unwrap().to_string();
        h.settle(20).await;
        let (s, v) = h
            .call(
                "POST",
                "/api/v1/namespaces/default/savepoints",
                Some(json!({"metadata": {"deploymentId": id}})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        h.settle(10).await;
        let t = h.state.store.read();
        assert!(!t.jobs.is_empty() && !t.savepoints.is_empty() && !t.events.is_empty());
        assert!(!t.targets.is_empty() && !t.defaults.is_empty() && t.tokens.len() >= 2);
        id
    };
    let migrate = |to: &str| {
        let out = Command::new(support::BIN)
            .arg("migrate")
            .arg("--from")
            .arg(&data)
            .args(["--to", to, "--password-file"])
            .arg(pg.password_file())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = migrate(&url);
    assert!(ok, "{out}{err}");
    for kind in [
        "deployments",
        "jobs",
        "savepoints",
        "deployment-targets",
        "deployment-defaults",
        "namespaces",
        "apitokens",
        "events",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("{kind} in {out}"));
        assert!(line.ends_with(" ok"), "{line}");
        let count: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(count >= 1, "{line}");
    }
    // A second run refuses: the database is not empty any more.
    let (ok, _, err) = migrate(&url);
    assert!(!ok);
    assert!(err.contains("not empty"), "{err}");
    // A manager over the database serves what the embedded store held.
    let m = pg.manager(&dir.path().join("after"), &url);
    let d = m.deployment(&deployment_id).await;
    assert_eq!(d["metadata"]["name"], "moved");
    assert_eq!(m.savepoints(&deployment_id).await.len(), 1);
    assert!(!m.jobs(&deployment_id).await.is_empty());
    assert!(!m.events(&deployment_id).await.is_empty());
}

async fn leader_gauge(m: &Manager) -> Option<i64> {
    let text = m
        .http
        .get(format!("{}/metrics", m.base))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("job_manager_leader "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_another_takes_over_with_what_the_first_wrote() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.database("leader");
    let dir = tempfile::tempdir().unwrap();
    let a = pg.manager(&dir.path().join("a"), &url);
    support::eventually("a leads", std::time::Duration::from_secs(10), || async {
        (leader_gauge(&a).await == Some(1)).then_some(())
    })
    .await;
    let b = pg.manager(&dir.path().join("b"), &url);
    // B follows (A holds the lock), yet is ready and serves the API.
    support::eventually(
        "b reports 0",
        std::time::Duration::from_secs(10),
        || async { (leader_gauge(&b).await == Some(0)).then_some(()) },
    )
    .await;
    for m in [&a, &b] {
        let s = m
            .http
            .get(format!("{}/-/ready", m.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 200);
    }
    assert_eq!(leader_gauge(&a).await, Some(1));
    // A writes after B loaded; the follower's API shows it soon (it reloads), then A dies.
    let (id, _) = create(&a, "written-by-a").await;
    support::eventually(
        "b's API shows a's write",
        std::time::Duration::from_secs(5),
        || async {
            let (s, _) = b.call("GET", &format!("{DEPS}/{id}"), None).await;
            (s == 200).then_some(())
        },
    )
    .await;
    let (id2, _) = create(&a, "just-before-death").await;
    a.kill9();
    // B takes the lock (the dead session's lock is released) and reloads A's writes.
    support::eventually("b leads", std::time::Duration::from_secs(15), || async {
        (leader_gauge(&b).await == Some(1)).then_some(())
    })
    .await;
    let d = support::eventually("b reloaded", std::time::Duration::from_secs(10), || async {
        let (s, v) = b.call("GET", &format!("{DEPS}/{id}"), None).await;
        (s == 200).then_some(v)
    })
    .await;
    assert_eq!(d["data"]["metadata"]["name"], "written-by-a");
    let d = b.deployment(&id2).await;
    assert_eq!(d["metadata"]["name"], "just-before-death");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_always_leads() {
    let dir = tempfile::tempdir().unwrap();
    let m = Manager::start(dir.path(), &[]);
    let got = support::eventually("gauge", std::time::Duration::from_secs(10), || async {
        leader_gauge(&m).await
    })
    .await;
    assert_eq!(got, 1);
}

fn job_of(rec: &DeploymentRecord) -> job_manager::model::Job {
    serde_json::from_value(json!({
        "kind": "Job",
        "apiVersion": "v1",
        "metadata": {
            "id": Uuid::new_v4(), "namespace": "default", "deploymentId": rec.deployment.id(),
            "deploymentName": rec.deployment.metadata.name, "createdAt": "2026-01-01T00:00:00Z"
        },
        "spec": {
            "deploymentSpec": rec.deployment.spec, "allowNonRestoredState": false,
            "deploymentTargetName": "fake"
        },
        "status": {"state": "STARTED", "flinkJobId": "f1"}
    }))
    .unwrap()
}

fn event_of(rec: &DeploymentRecord, job: Uuid, name: &str) -> job_manager::model::Event {
    serde_json::from_value(json!({
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {
            "id": Uuid::new_v4(), "namespace": "default", "deploymentId": rec.deployment.id(),
            "jobId": job, "createdAt": "2026-01-01T00:00:00Z"
        },
        "spec": {"name": name, "message": "Job is RUNNING."}
    }))
    .unwrap()
}

#[test]
fn a_deployment_its_job_and_the_event_reporting_them_persist_together_or_not_at_all() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.database("with_events");
    let dir = tempfile::tempdir().unwrap();
    let pw = pg.password_file();
    let one = Store::open_at(dir.path(), Some(&url), Some(&pw)).unwrap();
    let rec = record("evented", 1);
    let id = rec.deployment.id();
    one.write(vec![Write1::Deployment(rec.clone())]).unwrap();
    // Another replica changes the deployment: `one`'s next change is computed from version 1.
    let two = Store::open_at(dir.path(), Some(&url), Some(&pw)).unwrap();
    let mut moved = rec.clone();
    moved.deployment.metadata.resource_version = 2;
    two.write(vec![Write1::Deployment(moved)]).unwrap();

    let count = |table: &str| -> i64 {
        pg.query(
            &url,
            &format!(
                "SELECT count(*) FROM {table} WHERE {} = $1",
                if table == "deployments" {
                    "id"
                } else {
                    "deployment_id"
                }
            ),
            &[&id],
        )[0]
        .get(0)
    };
    let job = job_of(&rec);
    let err = one
        .modify(id, |r| {
            r.deployment.metadata.resource_version = 2;
            vec![
                Write1::Job(job.clone()),
                Write1::Event(event_of(r, job.metadata.id, "JobRunning")),
            ]
        })
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(
        count("jobs"),
        0,
        "the job was rolled back with the deployment"
    );
    assert_eq!(count("events"), 0, "so was the event reporting it");
    {
        let t = one.read();
        assert!(t.jobs.is_empty(), "memory agrees");
        assert!(!t.events.contains_key(&id), "memory agrees");
    }

    // Over the current version all three persist, in one transaction, and show in memory.
    one.modify(id, |r| {
        r.deployment.metadata.resource_version = 3;
        vec![
            Write1::Job(job.clone()),
            Write1::Event(event_of(r, job.metadata.id, "JobRunning")),
        ]
    })
    .unwrap()
    .unwrap();
    assert_eq!(
        (count("deployments"), count("jobs"), count("events")),
        (1, 1, 1)
    );
    assert_eq!(one.read().events[&id][0].spec.name, "JobRunning");
    let reopened = Store::open_at(dir.path(), Some(&url), Some(&pw)).unwrap();
    let t = reopened.read();
    assert_eq!(t.deployments[&id].deployment.metadata.resource_version, 3);
    assert_eq!(t.events[&id].len(), 1);
    assert!(t.jobs.contains_key(&job.metadata.id));
}

const DEFAULTS: &str = "/api/v1/namespaces/default/deployment-defaults";

fn defaults_body(version: u64, parallelism: u64) -> Value {
    json!({
        "metadata": {"resourceVersion": version},
        "spec": {"template": {"spec": {"parallelism": parallelism}}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_saving_the_defaults_from_one_version_one_wins_one_is_refused() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.database("defaults_race");
    let dir = tempfile::tempdir().unwrap();
    // B leads (it never reloads on its own); A follows. Both see nothing stored (version 0).
    let b = pg.manager(&dir.path().join("b"), &url);
    support::eventually("b leads", std::time::Duration::from_secs(10), || async {
        (leader_gauge(&b).await == Some(1)).then_some(())
    })
    .await;
    let a = pg.manager(&dir.path().join("a"), &url);
    for m in [&a, &b] {
        let (s, v) = m.call("GET", DEFAULTS, None).await;
        assert_eq!(
            (s, &v["data"]["metadata"]["resourceVersion"]),
            (200, &json!(0)),
            "{v}"
        );
    }
    let (s, v) = a.call("PUT", DEFAULTS, Some(defaults_body(0, 3))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 1, "{v}");
    // B's memory still says 0, so its own check passes: the database refuses.
    let (s, v) = b.call("PUT", DEFAULTS, Some(defaults_body(0, 7))).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("changed concurrently"),
        "{v}"
    );
    // B reloaded: it shows A's save, and saving over version 1 works (an update).
    let (s, v) = b.call("GET", DEFAULTS, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["metadata"]["resourceVersion"], 1, "{v}");
    assert_eq!(
        v["data"]["spec"]["template"]["spec"]["parallelism"], 3,
        "{v}"
    );
    let (s, v) = b.call("PUT", DEFAULTS, Some(defaults_body(1, 7))).await;
    assert_eq!(s, 200, "{v}");
    let data: Value = pg.query(
        &url,
        "SELECT data FROM deployment_defaults WHERE namespace = 'default'",
        &[],
    )[0]
    .get(0);
    assert_eq!(data["metadata"]["resourceVersion"], 2, "{data}");
    assert_eq!(data["spec"]["template"]["spec"]["parallelism"], 7, "{data}");
}

fn stored_defaults(version: Option<u64>, parallelism: u64) -> Value {
    let mut v = json!({"spec": {"template": {"spec": {"parallelism": parallelism}}}});
    if let Some(version) = version {
        v["metadata"] = json!({"resourceVersion": version});
    }
    v
}

#[test]
fn a_stale_defaults_update_is_refused_by_the_database_and_an_unversioned_one_counts_as_1() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.database("defaults_update");
    let dir = tempfile::tempdir().unwrap();
    let pw = pg.password_file();
    let one = Store::open_at(dir.path(), Some(&url), Some(&pw)).unwrap();
    // A document from before versions existed: version 1.
    one.write(vec![Write1::Defaults(
        "default".into(),
        stored_defaults(None, 2),
    )])
    .unwrap();
    let two = Store::open_at(dir.path(), Some(&url), Some(&pw)).unwrap();
    // Both hold version 1; one moves it to 2, then two's save computed from 1 is refused.
    one.write(vec![Write1::Defaults(
        "default".into(),
        stored_defaults(Some(2), 4),
    )])
    .unwrap();
    let err = two
        .write(vec![Write1::Defaults(
            "default".into(),
            stored_defaults(Some(2), 9),
        )])
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("namespace default"), "{err}");
    let data: Value = pg.query(
        &url,
        "SELECT data FROM deployment_defaults WHERE namespace = 'default'",
        &[],
    )[0]
    .get(0);
    assert_eq!(data, stored_defaults(Some(2), 4), "the winner's save stays");
    // Two reloaded after the conflict and now saves over version 2.
    assert_eq!(two.read().defaults["default"], stored_defaults(Some(2), 4));
    two.write(vec![Write1::Defaults(
        "default".into(),
        stored_defaults(Some(3), 9),
    )])
    .unwrap();
}
