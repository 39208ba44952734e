//! How the JAR reaches the pods: an init container downloads it with `curl` into the
//! `usrlib` volume shared with the Flink container, from an `http(s)://` URI or from
//! job-manager's artifact store (with a read-only download token).
//!
//! Nothing secret is ever in the container's command or arguments, neither in the pod spec
//! nor in the processes the container runs: the init container runs one fixed script
//! ([`FETCH_SCRIPT`]) that reads the URL, the output path and the token from its
//! environment and hands URL and token to `curl` on standard input (`--config -`). The
//! download token, and an `http(s)` URI that carries credentials (`user:password@` or a
//! query, as pre-signed OSS/S3 URLs do), come from the job's Secret
//! ([`super::ArtifactStore::token_secret_name`]) by `secretKeyRef`; a URI without them is a
//! plain value, readable in the pod spec.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Container, EnvVar, EnvVarSource, ResourceRequirements, Secret, SecretKeySelector,
        VolumeMount,
    },
    apimachinery::pkg::api::resource::Quantity,
    ByteString,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{objects::USRLIB_DIR, ArtifactStore, Error, JobRequest, Result, Settings};

/// The environment variable holding the download token (from the job's Secret).
pub const TOKEN_ENV: &str = "JOB_MANAGER_ARTIFACT_TOKEN";
/// The environment variable holding the JAR's URL (from the Secret when it carries
/// credentials).
pub const URL_ENV: &str = "JOB_MANAGER_JAR_URL";
/// The environment variable holding where the JAR is written.
pub const PATH_ENV: &str = "JOB_MANAGER_JAR_PATH";
/// The key of the download token in the job's Secret.
pub const SECRET_TOKEN_KEY: &str = "token";
/// The key of a URL with credentials in the job's Secret.
pub const SECRET_URL_KEY: &str = "jar-url";
/// The init container's name.
pub const FETCH_CONTAINER: &str = "fetch-jar";

/// The init container's script (`sh -c`). URL and token reach `curl` through a here-document
/// on its standard input, so they never appear in a process's arguments. `curl` retries
/// every error a few times (the manager may be restarting, the token's record may still be
/// on its way to another replica), then the init container fails with curl's message.
pub const FETCH_SCRIPT: &str = r#"set -eu
auth=""
if [ -n "${JOB_MANAGER_ARTIFACT_TOKEN:-}" ]; then
  auth="header = \"Authorization: Bearer ${JOB_MANAGER_ARTIFACT_TOKEN}\""
fi
curl --config - --fail --silent --show-error --location --retry 10 --retry-delay 2 \
  --retry-all-errors --output "${JOB_MANAGER_JAR_PATH}" <<EOF
url = "${JOB_MANAGER_JAR_URL}"
${auth}
EOF
"#;

const FIELD: &str = "spec.template.spec.artifact.jarUri";

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid {
        field: FIELD.into(),
        message: message.into(),
    }
}

/// Where the init container gets the JAR.
#[derive(Clone)]
pub(super) struct JarSource {
    /// The full URL (with its credentials, if any).
    url: String,
    /// The file name in `usrlib`.
    file: String,
    /// The URL carries credentials: it goes into the Secret.
    url_in_secret: bool,
    /// The download is authorised by the manager's token (artifact store).
    token: bool,
    /// The Secret's name.
    secret: String,
}

impl std::fmt::Debug for JarSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JarSource")
            .field("url", &without_credentials(&self.url))
            .field("file", &self.file)
            .field("url_in_secret", &self.url_in_secret)
            .field("token", &self.token)
            .finish()
    }
}

/// Characters escaped in a query value.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The artifact name of a jarUri that names a file of the manager's artifact store
/// (`file://…/<name>` or an absolute path); `None` for any other URI.
pub fn store_artifact_name(uri: &str) -> Option<&str> {
    let uri = uri.trim();
    let path = uri
        .strip_prefix("file://")
        .or_else(|| uri.strip_prefix("file:"))
        .or(uri.starts_with('/').then_some(uri))?;
    Some(path.rsplit('/').next().unwrap_or_default())
}

/// The file name the JAR gets in `usrlib`.
fn file_of(path: &str) -> String {
    let last = path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let clean: String = last
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        "job.jar".to_string()
    } else {
        clean
    }
}

/// Whether an `http(s)` URI carries credentials: user info, or a query (pre-signed URLs
/// carry their signature there).
fn has_credentials(uri: &str) -> bool {
    match url::Url::parse(uri) {
        Ok(u) => !u.username().is_empty() || u.password().is_some() || u.query().is_some(),
        // Unparseable: treat it as secret, it is never shown anyway.
        Err(_) => true,
    }
}

pub(super) fn jar_source(req: &JobRequest<'_>, namespace: &str) -> Result<JarSource> {
    let uri = req.deployment.spec.template.spec.artifact.jar_uri.trim();
    if uri.is_empty() {
        return Err(invalid("must not be empty"));
    }
    let secret = ArtifactStore::token_secret_name(req.job_id);
    let lower = uri.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        // curl reads the URL from a quoted config line: these cannot be in it, and a valid
        // URL has them percent-encoded anyway.
        if uri
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_whitespace() || c.is_control())
        {
            return Err(invalid(format!(
                "{:?} contains a quote, backslash, space or control character: percent-encode it",
                without_credentials(uri)
            )));
        }
        return Ok(JarSource {
            url: uri.to_string(),
            file: file_of(uri),
            url_in_secret: has_credentials(uri),
            token: false,
            secret,
        });
    }
    if let Some(name) = store_artifact_name(uri) {
        let Some(store) = &req.artifact_store else {
            return Err(invalid(format!(
                "{uri:?} is in job-manager's artifact store: the pods download it from the manager, whose URL is needed (the manager's kubernetes.manager_url setting; job-manager render: --manager-url URL), or use an http(s):// URI"
            )));
        };
        if crate::artifacts::check_filename(name).is_err() {
            return Err(invalid(format!(
                "{uri:?} does not name an artifact of the store (names are letters, digits and ._-+)"
            )));
        }
        let url = format!(
            "{}/artifacts/v1/namespaces/{}/artifacts:download?filename={}",
            store.base_url.trim().trim_end_matches('/'),
            utf8_percent_encode(namespace, QUERY),
            utf8_percent_encode(name, QUERY)
        );
        return Ok(JarSource {
            url,
            file: file_of(name),
            url_in_secret: false,
            token: true,
            secret,
        });
    }
    Err(invalid(format!(
        "{:?} cannot be fetched by the pods of a Kubernetes target: use http:// or https://, or upload the JAR to job-manager",
        without_credentials(uri)
    )))
}

/// A URI for messages: without user info and query (pre-signed URLs carry their signature
/// there).
pub fn without_credentials(uri: &str) -> String {
    let uri = uri.split(['?', '#']).next().unwrap_or_default();
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}{path}")
        }
        None => uri.to_string(),
    }
}

/// The job's Secret, when the download needs one: the artifact store's token (its value
/// when known: `job-manager render` has none to show) or the URL with its credentials.
pub(super) fn secret(
    jar: &JarSource,
    store: Option<&ArtifactStore>,
    namespace: &str,
    labels: BTreeMap<String, String>,
) -> Option<Secret> {
    let data = if jar.token {
        store.and_then(|s| s.token.as_ref()).map(|t| {
            BTreeMap::from([(
                SECRET_TOKEN_KEY.to_string(),
                ByteString(t.expose().as_bytes().to_vec()),
            )])
        })
    } else if jar.url_in_secret {
        Some(BTreeMap::from([(
            SECRET_URL_KEY.to_string(),
            ByteString(jar.url.as_bytes().to_vec()),
        )]))
    } else {
        return None;
    };
    Some(Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(jar.secret.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data,
        ..Default::default()
    })
}

fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: None,
            }),
            ..Default::default()
        }),
    }
}

fn plain(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        // Kubernetes expands `$(VAR)` in values: escape the value's own.
        value: Some(value.replace("$(", "$$(")),
        value_from: None,
    }
}

/// The init container that downloads the JAR into the shared `usrlib` volume.
pub(super) fn fetcher(jar: &JarSource, settings: &Settings) -> Container {
    let mut env = vec![
        if jar.url_in_secret {
            from_secret(URL_ENV, &jar.secret, SECRET_URL_KEY)
        } else {
            plain(URL_ENV, &jar.url)
        },
        plain(PATH_ENV, &format!("{USRLIB_DIR}/{}", jar.file)),
    ];
    if jar.token {
        env.push(from_secret(TOKEN_ENV, &jar.secret, SECRET_TOKEN_KEY));
    }
    let small = BTreeMap::from([
        ("cpu".to_string(), Quantity("200m".into())),
        ("memory".to_string(), Quantity("128Mi".into())),
    ]);
    Container {
        name: FETCH_CONTAINER.into(),
        image: Some(settings.fetcher_image.clone()),
        command: Some(vec!["sh".into(), "-c".into()]),
        args: Some(vec![FETCH_SCRIPT.into()]),
        env: Some(env),
        resources: Some(ResourceRequirements {
            requests: Some(small.clone()),
            limits: Some(small),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "flink-usrlib".into(),
            mount_path: USRLIB_DIR.into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_show_uris_without_credentials() {
        assert_eq!(
            without_credentials("oss://ak:sk@bucket/jobs/a.jar?Expires=1&Signature=abc"),
            "oss://bucket/jobs/a.jar"
        );
        assert_eq!(without_credentials("s3://bucket"), "s3://bucket");
        assert_eq!(without_credentials("weird"), "weird");
    }

    #[test]
    fn credentials_are_user_info_or_a_query() {
        assert!(has_credentials("https://u:p@repo.example.com/a.jar"));
        assert!(has_credentials("https://token@repo.example.com/a.jar"));
        assert!(has_credentials(
            "https://bucket.oss-cn-hangzhou.aliyuncs.com/a.jar?Expires=1&Signature=x"
        ));
        assert!(!has_credentials("https://repo.example.com/a.jar"));
        assert_eq!(
            store_artifact_name("file:///data/artifacts/ns/a.jar"),
            Some("a.jar")
        );
        assert_eq!(
            store_artifact_name("/data/artifacts/ns/a.jar"),
            Some("a.jar")
        );
        assert_eq!(store_artifact_name("https://x/a.jar"), None);
    }

    #[test]
    fn the_script_leaves_nothing_for_kubernetes_to_expand() {
        // `$(VAR)` in args would be replaced by Kubernetes with the variable's value.
        assert!(!FETCH_SCRIPT.contains("$("), "{FETCH_SCRIPT}");
        for var in [TOKEN_ENV, URL_ENV, PATH_ENV] {
            assert!(FETCH_SCRIPT.contains(var), "{var}");
        }
    }
}
