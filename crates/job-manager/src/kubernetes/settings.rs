//! What the Kubernetes target is configured with: the Flink image per Flink version, the
//! default Flink version and the image of the JAR-fetching init container.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::flink_conf::FlinkVersion;
use crate::model::Artifact;

/// The Flink version of a deployment that names none.
pub const DEFAULT_FLINK_VERSION: &str = "1.20";
/// The repository of the default Flink images (Docker Hub's official `flink`).
pub const DEFAULT_FLINK_REPOSITORY: &str = "flink";
/// The image of the init container that downloads the job's JAR (it runs `curl`).
pub const DEFAULT_FETCHER_IMAGE: &str = "curlimages/curl:8.11.1";

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
    /// Image of the init container that downloads the JAR (needs `curl`).
    pub fetcher_image: String,
    /// Base of the default savepoint and checkpoint directories of jobs on Kubernetes
    /// targets, e.g. `oss://bucket/flink-savepoints`: a deployment gets
    /// `<base>/<namespace>/<deploymentId>` (checkpoints under `.../checkpoints`). Unset:
    /// `file:///flink-data/savepoints/<namespace>/<deploymentId>` (only useful with a
    /// shared volume mounted at `/flink-data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_base: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            images: BTreeMap::new(),
            default_repository: DEFAULT_FLINK_REPOSITORY.into(),
            default_flink_version: DEFAULT_FLINK_VERSION.into(),
            fetcher_image: DEFAULT_FETCHER_IMAGE.into(),
            savepoint_base: None,
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
        assert!(
            serde_yaml::from_str::<Settings>("image: x\n").is_err(),
            "unknown fields are errors"
        );
    }
}
