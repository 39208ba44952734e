//! Test support shared by log-shipper's integration tests.

pub mod fake_kube;
