//! What a DingTalk answer means: delivered, worth retrying, or a failure retrying cannot fix.
//!
//! DingTalk answers HTTP 200 for most failures and puts the reason in `errcode`:
//! 0 ok; 310000 security check failed (signature, timestamp outside the hour, keyword
//! missing, IP not whitelisted); 130101 / 410100 too fast (over 20 per minute; the robot is
//! then limited for 10 minutes); 460101 message too long; 300001 and 4001xx bad or disabled
//! token; -1 system busy.

use crate::transport::{Reply, TransportError};

/// Classification of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// DingTalk accepted the message.
    Delivered,
    /// Try again later; `too_fast` means DingTalk's rate limit answered.
    Retry {
        /// Metric label.
        reason: &'static str,
        /// What happened, for the log.
        detail: String,
        /// DingTalk said "too fast".
        too_fast: bool,
    },
    /// DingTalk found the body too long (460101): send it again, smaller.
    TooLong {
        /// What happened, for the log.
        detail: String,
    },
    /// Retrying will not help.
    Fatal {
        /// Metric label.
        reason: &'static str,
        /// What happened, for the log.
        detail: String,
    },
}

#[derive(serde::Deserialize)]
struct DingTalkAnswer {
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: String,
}

/// Classifies a transport result.
pub fn classify(result: &Result<Reply, TransportError>) -> Outcome {
    let reply = match result {
        Err(TransportError::Timeout(d)) => {
            return Outcome::Retry {
                reason: "timeout",
                detail: format!("no answer within {d:?}"),
                too_fast: false,
            }
        }
        Err(TransportError::Network(e)) => {
            return Outcome::Retry {
                reason: "network",
                detail: e.clone(),
                too_fast: false,
            }
        }
        Ok(r) => r,
    };
    let snippet = || {
        let s = String::from_utf8_lossy(&reply.body);
        s.chars().take(200).collect::<String>()
    };
    match reply.status {
        200..=299 => {}
        408 | 429 | 500..=599 => {
            return Outcome::Retry {
                reason: match reply.status {
                    408 => "http_408",
                    429 => "http_429",
                    _ => "http_5xx",
                },
                detail: format!("HTTP {}: {}", reply.status, snippet()),
                too_fast: reply.status == 429,
            }
        }
        s => {
            return Outcome::Fatal {
                reason: "http_4xx",
                detail: format!("HTTP {s}: {}", snippet()),
            }
        }
    }
    let answer: DingTalkAnswer = match serde_json::from_slice(&reply.body) {
        Ok(a) => a,
        Err(_) => {
            return Outcome::Fatal {
                reason: "bad_response",
                detail: format!("answer is not DingTalk's JSON: {}", snippet()),
            }
        }
    };
    let Some(code) = answer.errcode else {
        return Outcome::Fatal {
            reason: "bad_response",
            detail: format!("answer has no errcode: {}", snippet()),
        };
    };
    let detail = format!("errcode {code}: {}", answer.errmsg);
    match code {
        0 => Outcome::Delivered,
        130101 | 410100 => Outcome::Retry {
            reason: "too_fast",
            detail,
            too_fast: true,
        },
        -1 => Outcome::Retry {
            reason: "busy",
            detail,
            too_fast: false,
        },
        310000 => {
            let m = answer.errmsg.to_ascii_lowercase();
            let reason = if m.contains("keyword") || answer.errmsg.contains("关键词") {
                "keyword"
            } else if m.contains("ip") && m.contains("whitelist") || answer.errmsg.contains("IP") {
                "ip_not_allowed"
            } else {
                // "sign not match", "invalid timestamp", 签名不匹配.
                "sign"
            };
            Outcome::Fatal { reason, detail }
        }
        460101 => Outcome::TooLong { detail },
        300001 | 400100..=400199 => Outcome::Fatal {
            reason: "bad_token",
            detail,
        },
        _ => Outcome::Fatal {
            reason: "errcode",
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ok(body: &str) -> Result<Reply, TransportError> {
        Ok(Reply {
            status: 200,
            body: body.as_bytes().to_vec(),
        })
    }

    fn reason(o: Outcome) -> (&'static str, bool) {
        match o {
            Outcome::Delivered => ("delivered", false),
            Outcome::Retry { reason, .. } => (reason, true),
            Outcome::TooLong { .. } => ("too_long", true),
            Outcome::Fatal { reason, .. } => (reason, false),
        }
    }

    #[test]
    fn dingtalk_answers_are_told_apart() {
        let cases = [
            (r#"{"errcode":0,"errmsg":"ok"}"#, ("delivered", false)),
            (
                r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#,
                ("too_fast", true),
            ),
            (
                r#"{"errcode":410100,"errmsg":"发送速度太快而限流"}"#,
                ("too_fast", true),
            ),
            (r#"{"errcode":-1,"errmsg":"系统繁忙"}"#, ("busy", true)),
            (
                r#"{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}"#,
                ("sign", false),
            ),
            (
                r#"{"errcode":310000,"errmsg":"invalid timestamp, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}"#,
                ("sign", false),
            ),
            (
                r#"{"errcode":310000,"errmsg":"keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}"#,
                ("keyword", false),
            ),
            (
                r#"{"errcode":310000,"errmsg":"ip 1.2.3.4 not in whitelist"}"#,
                ("ip_not_allowed", false),
            ),
            (
                r#"{"errcode":460101,"errmsg":"message too long, exceed 20000 bytes"}"#,
                ("too_long", true),
            ),
            (
                r#"{"errcode":300001,"errmsg":"token is not exist"}"#,
                ("bad_token", false),
            ),
            (
                r#"{"errcode":400102,"errmsg":"robot is disabled"}"#,
                ("bad_token", false),
            ),
            (
                r#"{"errcode":40035,"errmsg":"missing parameter"}"#,
                ("errcode", false),
            ),
            ("<html>hi</html>", ("bad_response", false)),
        ];
        for (body, want) in cases {
            assert_eq!(reason(classify(&ok(body))), want, "{body}");
        }
    }

    #[test]
    fn http_status_and_transport_errors() {
        let http = |status| {
            Ok(Reply {
                status,
                body: b"x".to_vec(),
            })
        };
        assert_eq!(reason(classify(&http(502))), ("http_5xx", true));
        assert_eq!(reason(classify(&http(429))), ("http_429", true));
        assert_eq!(reason(classify(&http(408))), ("http_408", true));
        assert_eq!(reason(classify(&http(404))), ("http_4xx", false));
        assert_eq!(
            reason(classify(&Err(TransportError::Timeout(
                Duration::from_secs(1)
            )))),
            ("timeout", true)
        );
        assert_eq!(
            reason(classify(&Err(TransportError::Network("refused".into())))),
            ("network", true)
        );
    }
}
