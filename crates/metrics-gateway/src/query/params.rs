//! Request parameters of the query API as Prometheus reads them: from the URL query and,
//! for `POST` with `Content-Type: application/x-www-form-urlencoded`, from the body (body
//! values first, as Go's `Request.Form`); timestamps as RFC 3339 or Unix seconds with a
//! fraction; durations as Prometheus durations (`5m`, `1h30m`) or seconds with a fraction.

use promql_engine::labels::Matcher;

use super::response::ApiError;

impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let query = req.uri().query().map(str::to_owned);
        let is_form = req.method() == axum::http::Method::POST
            && req
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body = if is_form {
            let b = axum::body::Bytes::from_request(req, state)
                .await
                .map_err(|e| {
                    ApiError::new(
                        super::response::ErrorType::BadData,
                        format!("error parsing form: {e}"),
                    )
                })?;
            Some(b)
        } else {
            None
        };
        Ok(Self::from_parts(query.as_deref(), body.as_deref()))
    }
}

/// Decoded form values in order (repeated keys such as `match[]` keep every value).
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Values from the body (when it is a form) followed by those of the URL query.
    pub fn from_parts(uri_query: Option<&str>, form_body: Option<&[u8]>) -> Self {
        let mut v: Vec<(String, String)> = Vec::new();
        if let Some(b) = form_body {
            v.extend(url::form_urlencoded::parse(b).into_owned());
        }
        if let Some(q) = uri_query {
            v.extend(url::form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Self(v)
    }

    /// The first value of `name`; an empty value counts as absent (as Go's `FormValue`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// An optional timestamp parameter in ms, `default` when absent (`time` of
    /// `/api/v1/query`, `start`/`end` of the metadata endpoints; Prometheus words their
    /// errors with an extra "Invalid time value for" that `query_range` does not use).
    pub fn time(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(s) => parse_time(s).map_err(|e| {
                ApiError::bad_param(name, format!("Invalid time value for '{name}': {e}"))
            }),
        }
    }

    /// A duration parameter in ms, if present.
    pub fn duration(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|s| parse_duration(s).map_err(|e| ApiError::bad_param(name, e)))
            .transpose()
    }

    /// A non-negative integer parameter (`limit`), 0 when absent.
    pub fn limit(&self, name: &str) -> Result<usize, ApiError> {
        match self.get(name) {
            None => Ok(0),
            Some(s) => match s.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(n as usize),
                Ok(_) => Err(ApiError::bad_param(
                    name,
                    "limit must be non-negative".into(),
                )),
                Err(_) => Err(ApiError::bad_param(
                    name,
                    format!("cannot parse {s:?} to a valid limit"),
                )),
            },
        }
    }

    /// The `match[]` selectors, each parsed into matchers.
    pub fn matchers(&self) -> Result<Vec<Vec<Matcher>>, ApiError> {
        let mut out = Vec::new();
        for s in self.all("match[]") {
            let ms = promql_engine::parse_series_selector(s)
                .map_err(|e| ApiError::bad_param("match[]", parse_message(&e)))?;
            if ms.iter().all(|m| m.matches_empty()) {
                return Err(ApiError::bad_param(
                    "match[]",
                    "match[] must contain at least one non-empty matcher".into(),
                ));
            }
            out.push(ms);
        }
        Ok(out)
    }
}

/// The text of an engine error as Prometheus writes it in API errors.
pub fn parse_message(e: &promql_engine::Error) -> String {
    match e {
        promql_engine::Error::Parse(m) => {
            // promql-parser's messages carry neither Prometheus's `parse error:` prefix
            // nor a position (so none is made up here).
            if m.contains("parse error") {
                m.clone()
            } else {
                format!("parse error: {m}")
            }
        }
        other => other.to_string(),
    }
}

/// Parses a timestamp: Unix seconds (with a fraction) or RFC 3339; returns ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() && f.abs() < 9.2e15 {
            return Ok((f * 1000.0).round() as i64);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    Err(format!("cannot parse {s:?} to a valid timestamp"))
}

/// Parses a duration: seconds (with a fraction) or a Prometheus duration; returns ms.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            let ms = f * 1000.0;
            if ms.abs() >= 9.2e18 {
                return Err(format!(
                    "cannot parse {s:?} to a valid duration. It overflows int64"
                ));
            }
            return Ok(ms.round() as i64);
        }
    }
    promql_engine::rules::file::parse_prom_duration(s)
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_as_prometheus_reads_them() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451"), Ok(1_435_781_451_000));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51.781+02:00"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("yesterday"),
            Err("cannot parse \"yesterday\" to a valid timestamp".into())
        );
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert!(parse_duration("5 minutes").is_err());
    }

    #[test]
    fn body_values_come_before_query_values_and_repeat() {
        let p = Params::from_parts(
            Some("match[]=up&query=a&time="),
            Some(b"match[]=%7Bjob%3D%22x%22%7D&query=b+c"),
        );
        assert_eq!(p.get("query"), Some("b c"));
        assert_eq!(p.all("match[]"), vec!["{job=\"x\"}", "up"]);
        assert_eq!(p.get("time"), None);
        assert_eq!(p.time("time", 7).ok(), Some(7));
    }
}
