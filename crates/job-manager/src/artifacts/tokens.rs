//! Download tokens: what lets the pods of one job on a Kubernetes target download that
//! job's JAR from the artifact store, and nothing else.
//!
//! - The Kubernetes provider issues one when it starts a job whose jarUri is in the store
//!   ([`for_job`]): 32 random bytes in hex behind [`TOKEN_PREFIX`], valid for
//!   `kubernetes.artifact_token_ttl` (default 1 h), put into the job's Secret; the init
//!   container presents it as `Authorization: Bearer`.
//! - Only its SHA-256 is stored, with its scope ([`DownloadGrant`]): in the job's record
//!   (`status.cluster.kubernetes.artifactToken`), so a restarted manager and every replica
//!   know it. Until that record is written, the issuing process holds the grant, and the
//!   token itself in memory so that a retried start re-applies the same token (pods may
//!   already have read it); both go at expiry or teardown.
//! - While the job's cluster exists the provider renews it ([`renewal`]) once less than half
//!   of `kubernetes.artifact_token_ttl` remains: a new token (held here like a new one at
//!   start) goes into the Secret, then its grant into the record. The replaced token stays
//!   valid in this process until its own expiry (a pod that read the Secret just before
//!   still downloads); teardown forgets both.
//! - [`verify`] accepts it only for exactly that namespace and artifact, before it expires,
//!   while the job's cluster exists: a job that ended (its cluster torn down) revokes it.
//!   The refusal names why, never the token.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, OnceLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use common::Secret;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    domain::tokens::hash_secret,
    kubernetes::{fetch::store_artifact_name, ArtifactStore},
    model::Job,
};

/// How download tokens start (API tokens start with `jm_`), so the API tells them apart.
pub const TOKEN_PREFIX: &str = "jmdl_";

/// What a download token allows, and until when. Holds the token's hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadGrant {
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// The namespace of the artifact (the deployment's).
    pub namespace: String,
    /// The artifact's file name in that namespace's store.
    pub artifact: String,
    /// The job whose pods use it.
    pub job_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// Why a download token is refused. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the download token is not known: it was never issued, or a newer one replaced it")]
    Unknown,
    #[error("the download token expired at {at} (kubernetes.artifact_token_ttl)")]
    Expired { at: DateTime<Utc> },
    #[error("the download token was revoked: job {job} ended and its cluster was torn down")]
    Revoked { job: Uuid },
    #[error("the download token allows only GET of artifact {artifact} in namespace {namespace}")]
    OtherArtifact { namespace: String, artifact: String },
}

impl Refusal {
    /// 401 for a token that does not (or no longer) authenticate, 403 for one used beyond
    /// its scope.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::OtherArtifact { .. } => 403,
            _ => 401,
        }
    }
}

/// Why a job's pods cannot be given access to its artifact.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spec.template.spec.artifact.jarUri {uri:?} is in job-manager's artifact store, which pods on Kubernetes targets download from over HTTP: set kubernetes.manager_url in the manager's configuration to its URL as pods reach it (e.g. http://job-manager.flink-suite.svc:8080), or use an http(s):// jarUri")]
    NoManagerUrl { uri: String },
}

/// A token issued by this process whose job record may not hold the grant yet.
struct Pending {
    token: Secret,
    grant: DownloadGrant,
}

fn pending() -> &'static Mutex<HashMap<Uuid, Pending>> {
    static PENDING: OnceLock<Mutex<HashMap<Uuid, Pending>>> = OnceLock::new();
    PENDING.get_or_init(Mutex::default)
}

/// Grants replaced by a renewal, valid (in this process) until their own expiry.
fn superseded() -> &'static Mutex<HashMap<Uuid, Vec<DownloadGrant>>> {
    static SUPERSEDED: OnceLock<Mutex<HashMap<Uuid, Vec<DownloadGrant>>>> = OnceLock::new();
    SUPERSEDED.get_or_init(Mutex::default)
}

fn mint(
    namespace: &str,
    artifact: &str,
    job_id: Uuid,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Pending {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = Secret::new(format!("{TOKEN_PREFIX}{}", hex::encode(raw)));
    let grant = DownloadGrant {
        sha256: hash_secret(token.expose()),
        namespace: namespace.to_string(),
        artifact: artifact.to_string(),
        job_id,
        expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1)),
    };
    Pending { token, grant }
}

/// The token of `job_id` for `namespace`/`artifact`: the one issued before when it is still
/// valid for at least half its lifetime (a retried start re-applies the same Secret), else
/// a new one, which replaces it.
pub fn issue(
    namespace: &str,
    artifact: &str,
    job_id: Uuid,
    ttl: Duration,
    now: DateTime<Utc>,
) -> (Secret, DownloadGrant) {
    let mut p = pending().lock().unwrap_or_else(|e| e.into_inner());
    p.retain(|_, t| t.grant.expires_at > now);
    let half = chrono::Duration::from_std(ttl / 2).unwrap_or_default();
    let reusable = p.get(&job_id).filter(|t| {
        t.grant.namespace == namespace
            && t.grant.artifact == artifact
            && t.grant.expires_at - now >= half
    });
    if let Some(t) = reusable {
        return (t.token.clone(), t.grant.clone());
    }
    let t = mint(namespace, artifact, job_id, ttl, now);
    let out = (t.token.clone(), t.grant.clone());
    p.insert(job_id, t);
    out
}

/// The renewal of a job's token whose recorded grant is `current`, once less than half of
/// `ttl` remains of it (`None` before): a new token of the same artifact with its grant to
/// record after the Secret holds it. A renewal minted earlier and not recorded yet is given
/// again while it is valid for at least half its lifetime (a retried apply writes the same
/// value). `current`, and such an earlier renewal when it is replaced, stay valid here
/// until their own expiry.
pub fn renewal(
    current: &DownloadGrant,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Option<(Secret, DownloadGrant)> {
    let half = chrono::Duration::from_std(ttl / 2).unwrap_or_default();
    if current.expires_at - now >= half {
        return None;
    }
    let mut p = pending().lock().unwrap_or_else(|e| e.into_inner());
    p.retain(|_, t| t.grant.expires_at > now);
    let reusable = p.get(&current.job_id).filter(|t| {
        t.grant.sha256 != current.sha256
            && t.grant.namespace == current.namespace
            && t.grant.artifact == current.artifact
            && t.grant.expires_at - now >= half
    });
    if let Some(t) = reusable {
        return Some((t.token.clone(), t.grant.clone()));
    }
    let t = mint(
        &current.namespace,
        &current.artifact,
        current.job_id,
        ttl,
        now,
    );
    let out = (t.token.clone(), t.grant.clone());
    let replaced = p.insert(current.job_id, t);
    drop(p);
    let mut s = superseded().lock().unwrap_or_else(|e| e.into_inner());
    s.retain(|_, gs| {
        gs.retain(|g| g.expires_at > now);
        !gs.is_empty()
    });
    let old = s.entry(current.job_id).or_default();
    old.push(current.clone());
    // A renewal applied to the Secret whose record was never written: pods may hold it.
    old.extend(
        replaced
            .map(|r| r.grant)
            .filter(|g| g.sha256 != current.sha256 && g.expires_at > now),
    );
    Some(out)
}

/// Forgets what this process holds of a job's tokens (its cluster is torn down).
pub fn revoke_job(job_id: Uuid) {
    pending()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&job_id);
    superseded()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&job_id);
}

/// What a job on a Kubernetes target needs to fetch its JAR from the artifact store: the
/// manager's URL and a token of exactly that artifact, with the grant to record. `None`
/// when the jarUri is not in the store.
pub fn for_job(
    jar_uri: &str,
    namespace: &str,
    job_id: Uuid,
    settings: &crate::kubernetes::Settings,
    now: DateTime<Utc>,
) -> Result<Option<(ArtifactStore, DownloadGrant)>, Error> {
    let lower = jar_uri.trim().to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(None);
    }
    let Some(artifact) = store_artifact_name(jar_uri) else {
        return Ok(None);
    };
    let Some(base_url) = settings.manager_url.clone() else {
        return Err(Error::NoManagerUrl {
            uri: jar_uri.trim().to_string(),
        });
    };
    let (token, grant) = issue(
        namespace,
        artifact,
        job_id,
        settings.artifact_token_ttl,
        now,
    );
    Ok(Some((
        ArtifactStore {
            base_url,
            token: Some(token),
        },
        grant,
    )))
}

/// Checks a presented download token for a GET of `namespace`/`artifact` against the jobs'
/// records (and the grants this process issued whose record is not written yet, or that a
/// renewal replaced).
pub fn verify(
    token: &str,
    namespace: &str,
    artifact: &str,
    jobs: &BTreeMap<Uuid, Job>,
    now: DateTime<Utc>,
) -> Result<DownloadGrant, Refusal> {
    let hash = hash_secret(token.trim());
    let recorded = jobs.values().find_map(|j| {
        j.status
            .cluster
            .as_ref()
            .and_then(|c| c.kubernetes.as_ref())
            .and_then(|k| k.artifact_token.as_ref())
            .filter(|g| g.sha256 == hash)
            .cloned()
    });
    let grant = match recorded {
        Some(g) => g,
        None => pending()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|t| t.grant.sha256 == hash)
            .map(|t| t.grant.clone())
            .or_else(|| {
                superseded()
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .flatten()
                    .find(|g| g.sha256 == hash)
                    .cloned()
            })
            .ok_or(Refusal::Unknown)?,
    };
    let live = jobs
        .get(&grant.job_id)
        .is_some_and(|j| !j.status.state.is_terminal() && j.status.ended_at.is_none());
    if !live {
        return Err(Refusal::Revoked { job: grant.job_id });
    }
    if now >= grant.expires_at {
        return Err(Refusal::Expired {
            at: grant.expires_at,
        });
    }
    if grant.namespace != namespace || grant.artifact != artifact {
        return Err(Refusal::OtherArtifact {
            namespace: grant.namespace,
            artifact: grant.artifact,
        });
    }
    Ok(grant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        ClusterRef, DeploymentSpec, JobMetadata, JobSpec, JobState, JobStatus, KubernetesClusterRef,
    };

    fn job(id: Uuid, grant: Option<DownloadGrant>) -> Job {
        let mut j = Job {
            kind: "Job".into(),
            api_version: "v1".into(),
            metadata: JobMetadata {
                id,
                namespace: "team-a".into(),
                deployment_id: Uuid::new_v4(),
                deployment_name: "orders".into(),
                created_at: Utc::now(),
                annotations: BTreeMap::new(),
            },
            spec: JobSpec {
                deployment_spec: DeploymentSpec::default(),
                restored_from: None,
                restored_savepoint_id: None,
                allow_non_restored_state: false,
                deployment_target_name: "ack".into(),
            },
            status: JobStatus {
                state: JobState::Starting,
                flink_job_id: "0".repeat(32),
                submission_attempts: 0,
                submitted: false,
                cluster: None,
                started_at: None,
                ended_at: None,
                observed_flink_job_status: None,
                num_restarts: 0,
                failure: None,
            },
        };
        j.status.cluster = Some(ClusterRef {
            rest_url: "http://x".into(),
            local_dir: None,
            log_dir: None,
            // From its stored form: fields added by others default.
            kubernetes: Some(
                serde_json::from_value::<KubernetesClusterRef>(serde_json::json!({
                    "namespace": "flink-jobs",
                    "jobId": id,
                    "artifactToken": grant,
                }))
                .expect("a cluster record"),
            ),
        });
        j
    }

    #[test]
    fn a_token_downloads_its_artifact_until_it_expires_or_its_job_ends() {
        let now: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
        let id = Uuid::new_v4();
        let (token, grant) = issue("team-a", "orders.jar", id, Duration::from_secs(3600), now);
        assert!(token.expose().starts_with(TOKEN_PREFIX));
        assert_ne!(grant.sha256, token.expose());
        assert!(!format!("{grant:?}").contains(token.expose()));
        let t = token.expose();
        // Before the record is written: the issuing process knows it.
        let none = BTreeMap::from([(id, job(id, None))]);
        assert_eq!(
            verify(t, "team-a", "orders.jar", &none, now),
            Ok(grant.clone())
        );
        let mut jobs = BTreeMap::from([(id, job(id, Some(grant.clone())))]);
        revoke_job(id);
        assert_eq!(
            verify(t, "team-a", "orders.jar", &jobs, now),
            Ok(grant.clone())
        );
        let other = |ns: &str, a: &str| verify(t, ns, a, &jobs, now).unwrap_err();
        for e in [other("team-a", "other.jar"), other("team-b", "orders.jar")] {
            assert_eq!(e.status(), 403);
            assert_eq!(
                e.to_string(),
                "the download token allows only GET of artifact orders.jar in namespace team-a"
            );
        }
        let later = now + chrono::Duration::seconds(3600);
        let e = verify(t, "team-a", "orders.jar", &jobs, later).unwrap_err();
        assert_eq!(e, Refusal::Expired { at: later });
        assert_eq!(e.status(), 401);
        assert_eq!(
            verify("jmdl_guess", "team-a", "orders.jar", &jobs, now),
            Err(Refusal::Unknown)
        );
        if let Some(j) = jobs.get_mut(&id) {
            j.status.state = JobState::Cancelled;
        }
        assert_eq!(
            verify(t, "team-a", "orders.jar", &jobs, now),
            Err(Refusal::Revoked { job: id })
        );
        // The deployment and its jobs deleted: nothing knows the token any more.
        jobs.clear();
        assert_eq!(
            verify(t, "team-a", "orders.jar", &jobs, now),
            Err(Refusal::Unknown)
        );
    }

    #[test]
    fn a_retried_start_gets_the_same_token_and_a_late_one_a_new_one() {
        let now: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
        let id = Uuid::new_v4();
        let ttl = Duration::from_secs(3600);
        let (a, _) = issue("ns", "a.jar", id, ttl, now);
        let (b, _) = issue("ns", "a.jar", id, ttl, now + chrono::Duration::minutes(10));
        assert_eq!(a, b);
        let (c, g) = issue("ns", "a.jar", id, ttl, now + chrono::Duration::minutes(40));
        assert_ne!(a, c);
        // The replaced token is unknown now.
        let jobs = BTreeMap::from([(id, job(id, None))]);
        let at = now + chrono::Duration::minutes(41);
        assert_eq!(
            verify(a.expose(), "ns", "a.jar", &jobs, at),
            Err(Refusal::Unknown)
        );
        assert_eq!(verify(c.expose(), "ns", "a.jar", &jobs, at), Ok(g));
        revoke_job(id);
        assert_eq!(
            verify(c.expose(), "ns", "a.jar", &jobs, at),
            Err(Refusal::Unknown)
        );
    }

    #[test]
    fn a_renewal_is_due_at_half_the_lifetime_and_the_old_token_lasts_until_its_expiry() {
        let now: DateTime<Utc> = "2026-01-01T12:00:00Z".parse().unwrap();
        let id = Uuid::new_v4();
        let ttl = Duration::from_secs(3600);
        let (old, g0) = issue("ns", "a.jar", id, ttl, now);
        let mut jobs = BTreeMap::from([(id, job(id, Some(g0.clone())))]);
        assert!(renewal(&g0, ttl, now + chrono::Duration::minutes(29)).is_none());
        let at = now + chrono::Duration::minutes(31);
        let (new, g1) = renewal(&g0, ttl, at).expect("due");
        assert_ne!(old, new);
        assert_eq!(g1.expires_at, at + chrono::Duration::hours(1));
        assert_eq!(
            (g1.namespace.as_str(), g1.artifact.as_str()),
            ("ns", "a.jar")
        );
        // Retried before the record holds it: the same token again.
        let (again, _) = renewal(&g0, ttl, at + chrono::Duration::minutes(1)).expect("due");
        assert_eq!(again, new);
        // Both work before the record changes and after.
        for t in [&old, &new] {
            assert!(verify(t.expose(), "ns", "a.jar", &jobs, at).is_ok());
        }
        let k = jobs.get_mut(&id).unwrap().status.cluster.as_mut().unwrap();
        k.kubernetes.as_mut().unwrap().artifact_token = Some(g1.clone());
        for t in [&old, &new] {
            assert!(verify(t.expose(), "ns", "a.jar", &jobs, at).is_ok());
        }
        // The old one ends at its own expiry; the new one goes on.
        let later = g0.expires_at;
        assert_eq!(
            verify(old.expose(), "ns", "a.jar", &jobs, later),
            Err(Refusal::Expired { at: g0.expires_at })
        );
        assert_eq!(verify(new.expose(), "ns", "a.jar", &jobs, later), Ok(g1));
        revoke_job(id);
        jobs.get_mut(&id).unwrap().status.state = JobState::Cancelled;
        for t in [&old, &new] {
            assert!(verify(t.expose(), "ns", "a.jar", &jobs, at).is_err());
        }
    }

    #[test]
    fn only_store_uris_need_the_manager_url() {
        let now = Utc::now();
        let mut s = crate::kubernetes::Settings::default();
        let id = Uuid::new_v4();
        assert!(for_job("https://repo/a.jar", "ns", id, &s, now)
            .unwrap()
            .is_none());
        let e = for_job("file:///data/artifacts/ns/a.jar", "ns", id, &s, now).unwrap_err();
        assert!(e.to_string().contains("kubernetes.manager_url"), "{e}");
        s.manager_url = Some("http://job-manager.flink-suite.svc:8080".into());
        let (store, grant) = for_job("file:///data/artifacts/ns/a.jar", "ns", id, &s, now)
            .unwrap()
            .unwrap();
        assert_eq!(store.base_url, "http://job-manager.flink-suite.svc:8080");
        assert_eq!(grant.artifact, "a.jar");
        assert_eq!(grant.namespace, "ns");
        assert_eq!(grant.expires_at, now + chrono::Duration::hours(1));
        revoke_job(id);
    }
}
