//! Prometheus alerting and recording rules: rule files, templates, evaluation, the alert
//! state machine, notifiers, and promtool-compatible `check rules` / `test rules`.

pub mod file;
pub mod manager;
pub mod notifier;
pub mod runtime;
pub mod schedule;
pub mod template;
pub mod unittest;
