//! How the JAR reaches the pods: an init container (`curl`) downloads it into the `usrlib`
//! volume shared with the Flink container, from an `http(s)://` URI or from job-manager's
//! artifact store (with a read-only token kept in a Secret).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Container, EnvVar, EnvVarSource, ResourceRequirements, SecretKeySelector, VolumeMount,
    },
    apimachinery::pkg::api::resource::Quantity,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{objects::USRLIB_DIR, Error, JobRequest, Result, Settings};

/// The environment variable the fetcher reads the artifact token from.
pub const TOKEN_ENV: &str = "JOB_MANAGER_ARTIFACT_TOKEN";

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// How the init container gets the JAR.
#[derive(Debug, Clone)]
pub(super) struct JarSource {
    url: String,
    file: String,
    token: Option<SecretKeySelector>,
}

/// Characters escaped in a query value.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(super) fn jar_source(req: &JobRequest<'_>, namespace: &str) -> Result<JarSource> {
    const FIELD: &str = "spec.template.spec.artifact.jarUri";
    let uri = req.deployment.spec.template.spec.artifact.jar_uri.trim();
    if uri.is_empty() {
        return Err(invalid(FIELD, "must not be empty"));
    }
    let file_of = |path: &str| {
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
    };
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Ok(JarSource {
            url: uri.to_string(),
            file: file_of(uri),
            token: None,
        });
    }
    if let Some(path) = uri
        .strip_prefix("file://")
        .or(uri.starts_with('/').then_some(uri))
    {
        let Some(store) = &req.artifact_store else {
            return Err(invalid(
                FIELD,
                format!(
                    "{uri:?} is in job-manager's artifact store: the pods download it from the manager, whose URL is needed (job-manager render: --manager-url URL), or use an http(s):// URI"
                ),
            ));
        };
        let name = path.rsplit('/').next().unwrap_or_default();
        if name.is_empty() {
            return Err(invalid(FIELD, format!("{uri:?} names no file")));
        }
        let url = format!(
            "{}/artifacts/v1/namespaces/{}/artifacts:download?filename={}",
            store.base_url.trim_end_matches('/'),
            utf8_percent_encode(namespace, QUERY),
            utf8_percent_encode(name, QUERY)
        );
        return Ok(JarSource {
            url,
            file: file_of(name),
            token: Some(SecretKeySelector {
                name: store.token_secret.clone(),
                key: store.token_key.clone(),
                optional: None,
            }),
        });
    }
    Err(invalid(
        FIELD,
        format!(
            "{:?} cannot be fetched by the pods of a Kubernetes target: use http:// or https://, or upload the JAR to job-manager",
            without_credentials(uri)
        ),
    ))
}

/// A URI for messages: without user info and query (pre-signed URLs carry their signature
/// there).
fn without_credentials(uri: &str) -> String {
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

/// The init container that downloads the JAR into the shared `usrlib` volume.
pub(super) fn fetcher(jar: &JarSource, settings: &Settings) -> Container {
    // Kubernetes expands `$(VAR)` in args: escape the URL's own.
    let url = jar.url.replace("$(", "$$(");
    let mut args: Vec<String> = [
        "--fail",
        "--silent",
        "--show-error",
        "--location",
        "--retry",
        "5",
        "--retry-delay",
        "2",
        "--output",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("{USRLIB_DIR}/{}", jar.file));
    let mut env = None;
    if let Some(secret) = &jar.token {
        args.extend([
            "--header".to_string(),
            format!("Authorization: Bearer $({TOKEN_ENV})"),
        ]);
        env = Some(vec![EnvVar {
            name: TOKEN_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(secret.clone()),
                ..Default::default()
            }),
        }]);
    }
    args.push(url);
    let small = BTreeMap::from([
        ("cpu".to_string(), Quantity("200m".into())),
        ("memory".to_string(), Quantity("128Mi".into())),
    ]);
    Container {
        name: "fetch-jar".into(),
        image: Some(settings.fetcher_image.clone()),
        command: Some(vec!["curl".into()]),
        args: Some(args),
        env,
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
}
