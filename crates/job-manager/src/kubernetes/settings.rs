//! What the Kubernetes target is configured with: the Flink image per Flink version, the
//! default Flink version, the image of the JAR-fetching init container, and how pods reach
//! the manager's artifact store (its URL, the download token's lifetime).

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use super::flink_conf::FlinkVersion;
use crate::model::Artifact;

/// The Flink version of a deployment that names none.
pub const DEFAULT_FLINK_VERSION: &str = "1.20";
/// The repository of the default Flink images (Docker Hub's official `flink`).
pub const DEFAULT_FLINK_REPOSITORY: &str = "flink";
/// The image of the init container that downloads the job's JAR (it runs `curl`).
pub const DEFAULT_FETCHER_IMAGE: &str = "curlimages/curl:8.11.1";
/// How long a job's artifact download token is valid by default.
pub const DEFAULT_ARTIFACT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The longest download token lifetime accepted.
pub const MAX_ARTIFACT_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long a start waits for a pod condition that may pass (Unschedulable, CrashLoopBackOff,
/// a transient image pull error) before it fails: the Flink Kubernetes Operator's
/// `kubernetes.operator.deployment.readiness.timeout` default, long enough for a cluster
/// autoscaler to add a node.
pub const DEFAULT_POD_CONDITION_TIMEOUT: Duration = Duration::from_secs(300);

/// Settings of the Kubernetes target (the `kubernetes:` section of the manager's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Flink version → image, for deployments without `flinkImageRegistry`,
    /// `flinkImageRepository` or `flinkImageTag`. Keys are `1.20` or `1.20.1` (the exact
    /// version wins over `major.minor`). Versions not in the map get
    /// `<default_repository>:<major.minor>-scala_2.12-java11` (java17 from Flink 1.19 on).
    pub images: BTreeMap<String, String>,
    /// Repository of the images not in `images`.
    pub default_repository: String,
    /// Flink version of deployments whose artifact names none.
    pub default_flink_version: String,
    /// Image of the init container that downloads the JAR (needs `sh` and `curl` 7.71 or
    /// newer).
    pub fetcher_image: String,
    /// job-manager's base URL as the pods reach it, e.g.
    /// `http://job-manager.flink-suite.svc:8080`: jobs whose jarUri is in the artifact store
    /// download their JAR from there. Unset: such a job fails to start, naming this setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_url: Option<String>,
    /// How long the download token of a job (artifact-store JARs) is valid, e.g. `1h`. Pods
    /// created after it expired (a TaskManager rescheduled later) cannot download the JAR.
    #[serde(with = "humantime_serde")]
    pub artifact_token_ttl: Duration,
    /// Base of the default savepoint and checkpoint directories of jobs on Kubernetes
    /// targets, e.g. `oss://bucket/flink-savepoints`: a deployment gets
    /// `<base>/<namespace>/<deploymentId>` (checkpoints under `.../checkpoints`). Unset:
    /// `file:///flink-data/savepoints/<namespace>/<deploymentId>` (only useful with a
    /// shared volume mounted at `/flink-data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_base: Option<String>,
    /// How long a start waits for a pod condition that may pass (Unschedulable while a
    /// cluster autoscaler adds a node, CrashLoopBackOff, an image pull that may succeed
    /// later) before it fails, e.g. `5m`; a target's `spec.kubernetes.podConditionTimeout`
    /// wins. `0s` fails at once.
    #[serde(with = "humantime_serde")]
    pub pod_condition_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            images: BTreeMap::new(),
            default_repository: DEFAULT_FLINK_REPOSITORY.into(),
            default_flink_version: DEFAULT_FLINK_VERSION.into(),
            fetcher_image: DEFAULT_FETCHER_IMAGE.into(),
            manager_url: None,
            artifact_token_ttl: DEFAULT_ARTIFACT_TOKEN_TTL,
            savepoint_base: None,
            pod_condition_timeout: DEFAULT_POD_CONDITION_TIMEOUT,
        }
    }
}

impl Settings {
    /// Checks the settings; `Err((field, message))` names the field below `kubernetes.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if FlinkVersion::parse(&self.default_flink_version).is_none() {
            return Err((
                "default_flink_version".into(),
                format!(
                    "{:?} is not a Flink version (e.g. 1.20)",
                    self.default_flink_version
                ),
            ));
        }
        for (field, value) in [
            ("default_repository", &self.default_repository),
            ("fetcher_image", &self.fetcher_image),
        ] {
            if value.trim().is_empty() || value.contains(char::is_whitespace) {
                return Err((field.into(), "must be an image name without spaces".into()));
            }
        }
        if let Some(url) = &self.manager_url {
            let parsed = url::Url::parse(url.trim()).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.query().is_none()
            });
            if parsed.is_none() {
                return Err((
                    "manager_url".into(),
                    format!("{url:?} must be an http:// or https:// URL with a host and without credentials or query (e.g. http://job-manager.flink-suite.svc:8080)"),
                ));
            }
        }
        if self.artifact_token_ttl < Duration::from_secs(1)
            || self.artifact_token_ttl > MAX_ARTIFACT_TOKEN_TTL
        {
            return Err((
                "artifact_token_ttl".into(),
                format!("{:?} must be between 1s and 7days", self.artifact_token_ttl),
            ));
        }
        for (version, image) in &self.images {
            if FlinkVersion::parse(version).is_none() {
                return Err((
                    format!("images[{version:?}]"),
                    "the key must be a Flink version (e.g. 1.20 or 1.20.1)".into(),
                ));
            }
            if image.trim().is_empty() || image.contains(char::is_whitespace) {
                return Err((
                    format!("images[{version:?}]"),
                    format!("{image:?} is not an image name"),
                ));
            }
        }
        Ok(())
    }

    /// The Flink image of an artifact. `flinkImageRegistry`/`flinkImageRepository`/
    /// `flinkImageTag` win (missing parts come from the default image of the version);
    /// a tag starting with `sha256:` is a digest.
    pub fn image(&self, artifact: &Artifact, version: FlinkVersion, version_text: &str) -> String {
        let explicit = artifact.flink_image_registry.is_some()
            || artifact.flink_image_repository.is_some()
            || artifact.flink_image_tag.is_some();
        if !explicit {
            if let Some(image) = self
                .images
                .get(version_text)
                .or_else(|| self.images.get(&version.to_string()))
            {
                return image.clone();
            }
        }
        let repository = artifact
            .flink_image_repository
            .clone()
            .unwrap_or_else(|| self.default_repository.clone());
        let tag = artifact
            .flink_image_tag
            .clone()
            .unwrap_or_else(|| default_tag(version));
        let name = match &artifact.flink_image_registry {
            Some(registry) => format!("{}/{repository}", registry.trim_end_matches('/')),
            None => repository,
        };
        if tag.starts_with("sha256:") {
            format!("{name}@{tag}")
        } else {
            format!("{name}:{tag}")
        }
    }
}

/// `1.17-scala_2.12-java11`, `1.20-scala_2.12-java17`, `2.1-scala_2.12-java17`.
fn default_tag(version: FlinkVersion) -> String {
    let java = if version >= FlinkVersion::new(1, 19) {
        17
    } else {
        11
    };
    format!("{version}-scala_2.12-java{java}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact() -> Artifact {
        Artifact::default()
    }

    #[test]
    fn images_follow_the_version_the_map_and_the_explicit_fields() {
        let s = Settings::default();
        let v = |t: &str| FlinkVersion::parse(t).unwrap();
        assert_eq!(
            s.image(&artifact(), v("1.17"), "1.17"),
            "flink:1.17-scala_2.12-java11"
        );
        assert_eq!(
            s.image(&artifact(), v("2.1.0"), "2.1.0"),
            "flink:2.1-scala_2.12-java17"
        );
        let mut s2 = s.clone();
        s2.images.insert(
            "1.20".into(),
            "registry.example.com/flink:1.20.1-ops".into(),
        );
        assert_eq!(
            s2.image(&artifact(), v("1.20.1"), "1.20.1"),
            "registry.example.com/flink:1.20.1-ops"
        );
        let mut a = artifact();
        a.flink_image_registry = Some("registry.cn-hangzhou.aliyuncs.com/".into());
        a.flink_image_repository = Some("team/flink".into());
        assert_eq!(
            s2.image(&a, v("1.20"), "1.20"),
            "registry.cn-hangzhou.aliyuncs.com/team/flink:1.20-scala_2.12-java17"
        );
        a.flink_image_tag = Some("sha256:abc".into());
        assert_eq!(
            s2.image(&a, v("1.20"), "1.20"),
            "registry.cn-hangzhou.aliyuncs.com/team/flink@sha256:abc"
        );
    }

    #[test]
    fn invalid_settings_are_named() {
        Settings::default().validate().unwrap();
        let s: Settings =
            serde_yaml::from_str("images: {\"1.17\": registry.example.com/flink:1.17.2}\n")
                .unwrap();
        s.validate().unwrap();
        let s: Settings = serde_yaml::from_str("images: {latest: flink:latest}\n").unwrap();
        assert_eq!(s.validate().unwrap_err().0, "images[\"latest\"]");
        let s: Settings = serde_yaml::from_str("default_flink_version: one\n").unwrap();
        assert_eq!(s.validate().unwrap_err().0, "default_flink_version");
        let s: Settings = serde_yaml::from_str(
            "manager_url: http://job-manager.flink-suite.svc:8080\nartifact_token_ttl: 15m\n",
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.artifact_token_ttl, Duration::from_secs(900));
        for bad in [
            "manager_url: job-manager:8080\n",
            "manager_url: http://u:p@job-manager:8080\n",
            "manager_url: ftp://job-manager\n",
        ] {
            let s: Settings = serde_yaml::from_str(bad).unwrap();
            assert_eq!(s.validate().unwrap_err().0, "manager_url", "{bad}");
        }
        let s: Settings = serde_yaml::from_str("artifact_token_ttl: 30days\n").unwrap();
        assert_eq!(s.validate().unwrap_err().0, "artifact_token_ttl");
        assert!(
            serde_yaml::from_str::<Settings>("image: x\n").is_err(),
            "unknown fields are errors"
        );
    }
}
