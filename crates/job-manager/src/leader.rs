//! Leader election: which of the replicas sharing a PostgreSQL store reconciles.
//!
//! Two ways, chosen at start:
//! - a PostgreSQL session advisory lock (the default with `--store.url`, in
//!   [`crate::store::pg`]): whoever holds it leads, and a dead replica's lock goes with its
//!   session;
//! - a Kubernetes `coordination.k8s.io/v1` Lease (`--leader-election.lease NAME`, or
//!   `leader_election.lease` in the config file), the way Kubernetes' own controllers elect:
//!   the holder renews `spec.renewTime` every `retry_period`; a replica that has seen the
//!   record unchanged for `lease_duration` (by its own clock, so clock skew between nodes
//!   does not matter) takes it over; every write names the `resourceVersion` it read, so of
//!   two replicas taking an expired lease exactly one succeeds. A leader that cannot renew
//!   for `renew_deadline` (shorter than the lease) stops leading before anyone else may
//!   start. On shutdown the leader releases the lease, so a rolling update hands over at
//!   once instead of after `lease_duration`.
//!
//! Either way the outcome is one flag, [`Leadership`], that the store reports through
//! [`crate::store::Store::is_leader`] and the controller reads before every pass.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Where the in-cluster namespace of the pod is.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// `leader_election` in the config file (read at start; a reload cannot change it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// Name of the `coordination.k8s.io/v1` Lease to elect the leader with; unset: the
    /// PostgreSQL advisory lock. `--leader-election.lease` overrides it.
    pub lease: Option<String>,
    /// Namespace of the Lease; unset: `POD_NAMESPACE`, else the pod's own namespace.
    pub namespace: Option<String>,
    /// How long a lease not renewed stays with its holder.
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// How long a leader keeps leading without a successful renewal (less than
    /// `lease_duration`).
    #[serde(with = "humantime_serde")]
    pub renew_deadline: Duration,
    /// How often the lease is renewed or tried for.
    #[serde(with = "humantime_serde")]
    pub retry_period: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            lease: None,
            namespace: None,
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }
}

impl LeaderElectionConfig {
    /// The timing rules, as `(field, message)` of the first one broken.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.retry_period.is_zero() {
            return Err(("retry_period", "must be greater than zero".into()));
        }
        if self.renew_deadline <= self.retry_period {
            return Err((
                "renew_deadline",
                "must be longer than retry_period (a leader gets more than one try to renew)"
                    .into(),
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err((
                "lease_duration",
                "must be longer than renew_deadline (a leader stops before another may start)"
                    .into(),
            ));
        }
        if self.lease_duration.as_secs() > i32::MAX as u64 || self.lease_duration.as_secs() == 0 {
            return Err(("lease_duration", "must be at least 1s".into()));
        }
        if let Some(name) = &self.lease {
            if !is_dns_subdomain(name) {
                return Err((
                    "lease",
                    format!("{name:?} is not a valid object name (lowercase letters, digits, '-' and '.')"),
                ));
            }
        }
        Ok(())
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Why leader election could not start or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("leader_election.lease needs a store shared by the replicas (--store.url postgres://…); the embedded store serves one replica, which always leads")]
    NeedsSharedStore,
    #[error("leader_election.namespace is not set, POD_NAMESPACE is not set and {SERVICE_ACCOUNT_NAMESPACE} cannot be read: set one of them")]
    NoNamespace,
    #[error("leader_election.{field} (or --leader-election.lease): {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("cannot reach the Kubernetes API for the leader Lease: {0}")]
    Client(String),
    #[error("Lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether this replica leads; shared between the elector and the store. Leadership
/// lapses on its own `renew_deadline` after the last successful renewal was sent, so a
/// leader whose renewals hang (an API server that does not answer) stops leading before
/// another replica may take the lease.
#[derive(Debug, Clone, Default)]
pub struct Leadership(Arc<Mutex<Option<Instant>>>);

impl Leadership {
    pub fn get(&self) -> bool {
        self.until().is_some_and(|t| Instant::now() < t)
    }

    fn until(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leads until `until` (None: not at all); true if whether it leads changed.
    fn set(&self, until: Option<Instant>) -> bool {
        let was = self.get();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = until;
        was != self.get()
    }
}

/// Timing of a [`LeaseElector`].
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl From<&LeaderElectionConfig> for Timing {
    fn from(c: &LeaderElectionConfig) -> Self {
        Timing {
            lease_duration: c.lease_duration,
            renew_deadline: c.renew_deadline,
            retry_period: c.retry_period,
        }
    }
}

/// The namespace of the Lease: configured, else `POD_NAMESPACE`, else the pod's own.
pub fn namespace(config: &LeaderElectionConfig) -> Result<String> {
    if let Some(ns) = &config.namespace {
        return Ok(ns.clone());
    }
    if let Some(ns) = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
    {
        return Ok(ns);
    }
    std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or(Error::NoNamespace)
}

/// This process's identity in the Lease: the pod (host) name and a random suffix, so a
/// restarted pod never mistakes its predecessor's lease for its own.
pub fn identity() -> String {
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "job-manager".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}_{}", &suffix[..8])
}

/// Elects over one Lease. [`LeaseElector::step`] makes one attempt (tests drive it);
/// [`LeaseElector::run`] repeats it every `retry_period` until shutdown.
pub struct LeaseElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timing: Timing,
    leadership: Leadership,
    /// The lease's resourceVersion as last seen, and when it was first seen (this clock).
    observed: Option<(String, Instant)>,
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl LeaseElector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            leadership: Leadership::default(),
            observed: None,
        }
    }

    /// The flag this elector sets.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn api_error(&self, source: kube::Error) -> Error {
        Error::Api {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// Records the outcome of a write sent at `sent`: leading (until `renew_deadline`
    /// after it) or not.
    fn lead(&mut self, sent: Option<Instant>) {
        let until = sent.map(|at| at + self.timing.renew_deadline);
        if self.leadership.set(until) {
            tracing::info!(
                lease = %format!("{}/{}", self.namespace, self.name),
                identity = %self.identity,
                "{}",
                if until.is_some() {
                    "Leader: this replica holds the lease and reconciles."
                } else {
                    "Follower: another replica holds the lease."
                }
            );
        }
    }

    /// One attempt to acquire or renew the lease; whether this replica leads afterwards.
    pub async fn step(&mut self) -> Result<bool> {
        let sent = Instant::now();
        let current = match self.api.get_opt(&self.name).await {
            Ok(l) => l,
            // A failed renewal does not end leadership at once: it lapses at its deadline.
            Err(e) => return Err(self.api_error(e)),
        };
        let Some(mut lease) = current else {
            return self.create(sent).await;
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != rv) {
            self.observed = Some((rv, Instant::now()));
        }
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.timing.lease_duration);
        let unchanged_for = self
            .observed
            .as_ref()
            .map(|(_, at)| at.elapsed())
            .unwrap_or_default();
        let now = now_micro();
        if holder == self.identity {
            spec.renew_time = Some(now);
        } else if holder.is_empty() || unchanged_for >= duration {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(self.duration_seconds());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        } else {
            self.lead(None);
            return Ok(false);
        }
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observed = written
                    .metadata
                    .resource_version
                    .map(|rv| (rv, Instant::now()));
                self.lead(Some(sent));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                // Someone else wrote the lease since it was read: whoever it is, it is not
                // this replica's any more (or not yet). Read again next time.
                self.lead(None);
                Ok(false)
            }
            Err(e) => Err(self.api_error(e)),
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.timing.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    async fn create(&mut self, sent: Instant) -> Result<bool> {
        let now = now_micro();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(written) => {
                self.observed = written
                    .metadata
                    .resource_version
                    .map(|rv| (rv, Instant::now()));
                self.lead(Some(sent));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => {
                self.lead(None);
                Ok(false)
            }
            Err(e) => Err(self.api_error(e)),
        }
    }

    /// Gives the lease up if this replica holds it (empty holder), so another replica takes
    /// it at its next try.
    pub async fn release(&mut self) -> Result<()> {
        if !self.leadership.get() {
            return Ok(());
        }
        self.lead(None);
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.api_error(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| self.api_error(e))?;
        tracing::info!(lease = %format!("{}/{}", self.namespace, self.name), "Released the leader lease.");
        Ok(())
    }

    /// Tries or renews every `retry_period` until `shutdown`, then releases the lease.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.step().await {
                tracing::warn!(error = %e, "Leader election step failed; retrying.");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.timing.retry_period) => {}
            }
        }
        if let Err(e) = self.release().await {
            tracing::warn!(error = %e, "Cannot release the leader lease; it expires on its own.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_and_names_are_checked_by_field() {
        let ok = LeaderElectionConfig {
            lease: Some("job-manager-leader".into()),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        let mut c = ok.clone();
        c.renew_deadline = c.lease_duration;
        assert_eq!(c.validate().unwrap_err().0, "lease_duration");
        let mut c = ok.clone();
        c.retry_period = c.renew_deadline;
        assert_eq!(c.validate().unwrap_err().0, "renew_deadline");
        let mut c = ok.clone();
        c.lease = Some("Job_Manager".into());
        let (field, message) = c.validate().unwrap_err();
        assert_eq!(field, "lease");
        assert!(message.contains("Job_Manager"), "{message}");
    }
}
