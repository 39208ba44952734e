//! The service's configuration file.

use common::{ConfigError, ServiceConfig};
use serde::{Deserialize, Serialize};

/// The YAML configuration of metrics-gateway. Every field has a default, so an empty file (or none)
/// is valid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {}

impl ServiceConfig for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
