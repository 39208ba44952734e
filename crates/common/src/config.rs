//! Strict YAML configuration loading.
//!
//! Every service's config is a serde struct with `#[serde(deny_unknown_fields)]`, defaults
//! for every field, and a [`ServiceConfig::validate`] that names the bad field. An empty or
//! absent file means "all defaults".

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

/// Why a configuration could not be loaded. Messages name the file, the field and, where
/// the parser knows it, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid YAML for this service (syntax, unknown field, wrong type).
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A field has a value outside what is allowed.
    #[error("invalid config: `{field}` {message}")]
    Invalid { field: String, message: String },
    /// Something the config refers to (a rule file, a template) is invalid.
    #[error("invalid config: {0}")]
    Other(String),
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A field that the running service cannot change without a restart was changed in a
    /// reload: the reload is refused so that it never reports success and keeps the old
    /// value.
    pub fn restart_required(field: impl Into<String>) -> Self {
        Self::invalid(
            field,
            "cannot change on reload; restart the service to apply it (the running value stays in effect)",
        )
    }
}

/// Refuses a reload that changes `field` (compared with `==`; values are never printed, as
/// they may be secrets).
pub fn unchanged<T: PartialEq + ?Sized>(
    field: &str,
    running: &T,
    reloaded: &T,
) -> Result<(), ConfigError> {
    if running == reloaded {
        Ok(())
    } else {
        Err(ConfigError::restart_required(field))
    }
}

/// A service configuration: deserialisable with defaults, validated after loading.
pub trait ServiceConfig:
    DeserializeOwned + Serialize + Default + Clone + Send + Sync + 'static
{
    /// Checks cross-field constraints and value ranges. Errors name the field
    /// (`sinks.sls.endpoint`).
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// Called on reload with the running config (`self`) and the newly loaded, valid one:
    /// refuses fields that only take effect at start-up (name them with
    /// [`ConfigError::restart_required`] or [`unchanged`]). By default everything may change.
    fn check_reload(&self, reloaded: &Self) -> Result<(), ConfigError> {
        let _ = reloaded;
        Ok(())
    }
}

/// Parses YAML text into a validated config. `origin` names the source in errors.
pub fn from_yaml_str<C: ServiceConfig>(text: &str, origin: &Path) -> Result<C, ConfigError> {
    let config: C = if text.trim().is_empty() {
        C::default()
    } else {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = if path.is_empty() || path == "." {
                inner.to_string()
            } else {
                format!("field `{path}`: {inner}")
            };
            ConfigError::Parse {
                path: origin.to_path_buf(),
                message,
            }
        })?
    };
    config.validate()?;
    Ok(config)
}

/// Loads the config from `path`, or the validated defaults when `path` is `None`.
pub fn load<C: ServiceConfig>(path: Option<&Path>) -> Result<C, ConfigError> {
    match path {
        None => {
            let config = C::default();
            config.validate()?;
            Ok(config)
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            from_yaml_str(&text, path)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        name: String,
        limits: Limits,
    }

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Limits {
        max_bytes: u64,
    }

    impl Default for Limits {
        fn default() -> Self {
            Self { max_bytes: 10 }
        }
    }

    impl ServiceConfig for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.limits.max_bytes == 0 {
                return Err(ConfigError::invalid(
                    "limits.max_bytes",
                    "must be greater than zero",
                ));
            }
            Ok(())
        }
    }

    #[test]
    fn empty_text_means_defaults() {
        let c: Sample = from_yaml_str("  \n", Path::new("x.yml")).unwrap();
        assert_eq!(c, Sample::default());
    }

    #[test]
    fn unknown_nested_field_is_named_with_its_path_and_line() {
        let err = from_yaml_str::<Sample>("name: a\nlimits:\n  max_bytez: 3\n", Path::new("c.yml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.yml"), "{err}");
        assert!(err.contains("limits"), "{err}");
        assert!(err.contains("max_bytez"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let err = from_yaml_str::<Sample>("limits: {max_bytes: 0}\n", Path::new("c.yml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid config: `limits.max_bytes` must be greater than zero"
        );
    }

    #[test]
    fn missing_file_is_a_read_error_naming_the_path() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/x.yml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.yml"));
    }
}
