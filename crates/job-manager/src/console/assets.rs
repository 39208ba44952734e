//! The console's files, embedded in the binary: `GET /` is the page, `GET
//! /console/assets/{file}` its style sheet and ES modules. Hand-written, no build step and no
//! third-party code.
//!
//! Every answer carries a Content-Security-Policy that allows only this origin's scripts,
//! styles and API (no inline script, no framing).

use axum::{
    extract::Path,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

/// Largest total size of the embedded files (bytes); a test keeps them under it.
pub const SIZE_BUDGET: usize = 96 * 1024;

/// `(name, content type, bytes)` of every file under `/console/assets/`.
pub const FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/api.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/i18n.js"),
    ),
    (
        "views.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/views.js"),
    ),
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/admin.js"),
    ),
    (
        "yaml.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/yaml.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("assets/favicon.svg"),
    ),
];

/// The page.
pub const INDEX: &str = include_str!("assets/index.html");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Bytes of the page and all its files.
pub fn total_bytes() -> usize {
    INDEX.len() + FILES.iter().map(|(_, _, b)| b.len()).sum::<usize>()
}

/// `GET /` and `GET /console/assets/{file}`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/console/assets/{file}", get(asset))
}

fn with_headers(content_type: &'static str, body: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files, changed with each release: revalidate rather than risk a stale script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn index() -> Response {
    with_headers("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == file) {
        Some((_, ct, body)) => with_headers(ct, body),
        None => (
            StatusCode::NOT_FOUND,
            format!("no console asset named {file:?}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_stay_within_the_size_budget() {
        let total = total_bytes();
        assert!(
            total <= SIZE_BUDGET,
            "console assets are {total} bytes, over the budget of {SIZE_BUDGET}"
        );
    }

    /// The keys of `const <name> = { … };` in i18n.js.
    fn catalogue(name: &str) -> std::collections::BTreeSet<String> {
        let src = FILES
            .iter()
            .find(|(n, _, _)| *n == "i18n.js")
            .map(|(_, _, b)| *b)
            .unwrap_or_default();
        let start = src
            .find(&format!("const {name} = {{"))
            .expect("catalogue present");
        let block = &src[start..];
        let block = &block[..block.find("\n};").expect("catalogue closed")];
        let unescaped = block.replace("\\\"", "'");
        let parts: Vec<&str> = unescaped.split('"').collect();
        parts
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .filter(|(i, _)| parts.get(i + 1).is_some_and(|n| n.starts_with(':')))
            .map(|(_, k)| k.to_string())
            .collect()
    }

    #[test]
    fn both_catalogues_hold_every_text_the_scripts_use() {
        let en = catalogue("en");
        let zh = catalogue("zh");
        assert!(en.len() > 100, "{}", en.len());
        assert_eq!(
            en.symmetric_difference(&zh).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "keys in only one catalogue"
        );
        for (name, _, body) in FILES {
            for (at, _) in body.match_indices("t(\"") {
                // `t(` itself, not the end of another name (`DateTimeFormat(`).
                if body[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                {
                    continue;
                }
                let key = body[at + 3..].split('"').next().unwrap_or("");
                if key.ends_with('.') {
                    continue; // built at run time, e.g. "state." + state
                }
                assert!(
                    en.contains(key),
                    "{name} uses {key:?}, missing from i18n.js"
                );
            }
        }
        for dynamic in [
            "state.RUNNING",
            "state.SUSPENDED",
            "state.CANCELLED",
            "state.TRANSITIONING",
            "state.FAILED",
            "state.FINISHED",
            "role.viewer",
            "role.editor",
            "role.owner",
            "tab.overview",
            "tab.configure",
            "tab.events",
            "tab.jobs",
            "tab.savepoints",
            "tab.metrics",
            "tab.logs",
        ] {
            assert!(en.contains(dynamic), "{dynamic}");
        }
        // Chart titles and series names come from the server's panels.
        for p in crate::console::metrics::PANELS {
            assert!(en.contains(&format!("metrics.{}", p.name)), "{}", p.name);
            for (s, _) in p.series {
                assert!(en.contains(&format!("metrics.series.{s}")), "{s}");
            }
        }
    }

    #[test]
    fn every_module_the_page_imports_is_embedded() {
        // Each `./x.js` import in a module names an embedded file.
        for (name, _, body) in FILES {
            for part in body.split("from \"./").skip(1) {
                let target = part.split('"').next().unwrap_or("");
                assert!(
                    FILES.iter().any(|(n, _, _)| *n == target),
                    "{name} imports {target}, which is not embedded"
                );
            }
        }
        assert!(INDEX.contains("/console/assets/app.js"));
    }
}
