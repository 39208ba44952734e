//! Attacks on what every service shares, against a real server on 127.0.0.1: each is
//! refused or made harmless, and the server keeps answering.

use std::{sync::Arc, time::Duration};

use axum::{routing::get, Router};
use common::{
    config::ServiceConfig,
    lifecycle::Lifecycle,
    reload::ConfigHandle,
    server::{self, Endpoints},
    telemetry,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Cfg {}
impl ServiceConfig for Cfg {}

/// One raw HTTP/1.1 request; returns the status code and the body.
async fn raw(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (code, body.to_string())
}

#[tokio::test]
async fn invented_http_methods_are_counted_as_other_not_as_new_label_values() {
    let registry = telemetry::new_registry("svc");
    let handle =
        ConfigHandle::<Cfg>::with_loader("svc", &registry, Arc::new(|| Ok(Cfg::default())))
            .unwrap();
    let endpoints = Endpoints::new("svc", registry, Arc::new(handle));
    let app = Router::new().route("/x", get(|| async { "x\n" }));
    let listener = server::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lifecycle = Lifecycle::new();
    let server = tokio::spawn(server::serve(listener, app, endpoints, lifecycle.clone()));

    // The attack: methods nobody uses, one of them 60,000 characters long.
    let long = "X".repeat(60_000);
    for m in [long.as_str(), "FOO", "BREW", "get"] {
        let (code, _) = raw(addr, m, "/x").await;
        assert!(code >= 400 || code == 200, "{m:.20}: {code}");
    }
    // Standard methods keep their names.
    assert_eq!(raw(addr, "GET", "/x").await.0, 200);
    assert_eq!(raw(addr, "PATCH", "/x").await.0, 405);

    let (code, metrics) = raw(addr, "GET", "/metrics").await;
    assert_eq!(code, 200, "the server is alive");
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("svc_http_requests_total{"))
        .collect();
    assert!(!metrics.contains("XXXXXXXX"), "long method stored");
    for invented in ["FOO", "BREW", "\"get\""] {
        assert!(
            !series.iter().any(|l| l.contains(invented)),
            "{invented} became a label value: {series:?}"
        );
    }
    let other: f64 = series
        .iter()
        .filter(|l| l.contains(r#"handler="/x""#) && l.contains(r#"method="other""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(other, 4.0, "{series:?}");
    assert!(
        series
            .iter()
            .any(|l| l.contains(r#"method="GET""#) && l.contains(r#"handler="/x""#)),
        "{series:?}"
    );
    assert!(
        series.iter().any(|l| l.contains(r#"method="PATCH""#)),
        "{series:?}"
    );

    lifecycle.request_shutdown();
    server.await.unwrap().unwrap();
}

#[test]
fn method_labels_are_a_closed_set() {
    use axum::http::Method;
    for m in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ] {
        assert_eq!(
            server::method_label(&Method::from_bytes(m.as_bytes()).unwrap()),
            m
        );
    }
    for m in ["PROPFIND", "get", "X-Y", "Z"] {
        assert_eq!(
            server::method_label(&Method::from_bytes(m.as_bytes()).unwrap()),
            "other"
        );
    }
}
