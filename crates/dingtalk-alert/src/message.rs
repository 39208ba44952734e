//! Turning a rendered message into a DingTalk robot request body: message type, keyword,
//! @-mentions, and the size cap (truncation with a note of what was cut).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// DingTalk robot message types this gateway sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageType {
    /// `msgtype: markdown` (title + markdown text).
    #[default]
    #[serde(rename = "markdown")]
    Markdown,
    /// `msgtype: text` (plain text).
    #[serde(rename = "text")]
    Text,
    /// `msgtype: actionCard` (markdown text with one button to Alertmanager).
    #[serde(rename = "actionCard")]
    ActionCard,
}

/// @-mentions for a target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Mentions {
    /// Mobile numbers to @ (`atMobiles`; `@<mobile>` is added to the text so it notifies).
    pub mobiles: Vec<String>,
    /// DingTalk user ids to @ (`atUserIds`).
    pub user_ids: Vec<String>,
    /// @ everyone (`isAtAll`).
    pub all: bool,
    /// Also mention on messages that only carry resolved alerts.
    pub on_resolved: bool,
}

/// A rendered message before it becomes a DingTalk body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Title (markdown/actionCard; the notification preview).
    pub title: String,
    /// Body text.
    pub text: String,
}

/// What a message looks like on one target: its type, keyword and mentions.
#[derive(Debug, Clone, Copy)]
pub struct Style<'a> {
    /// Message type.
    pub message_type: MessageType,
    /// Keyword the robot requires, if any.
    pub keyword: Option<&'a str>,
    /// Mentions.
    pub mentions: &'a Mentions,
}

/// A request body ready to send.
#[derive(Debug, Clone)]
pub struct Body {
    /// The JSON bytes.
    pub bytes: Vec<u8>,
    /// Whether text had to be cut to fit the size cap.
    pub truncated: bool,
}

impl Body {
    /// The body as JSON (for previews).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

/// How a message is dressed: mentions and link, independent of its text.
#[derive(Debug, Clone, Copy)]
pub struct Dress<'a> {
    /// Whether any alert fires (mentions go out on firing messages).
    pub firing: bool,
    /// Button link for actionCard messages (Alertmanager's URL).
    pub link: &'a str,
}

fn mention_suffix(target: Style<'_>, firing: bool) -> (String, Value) {
    let m = target.mentions;
    if !(firing || m.on_resolved) || target.message_type == MessageType::ActionCard {
        return (String::new(), Value::Null);
    }
    if m.mobiles.is_empty() && m.user_ids.is_empty() && !m.all {
        return (String::new(), Value::Null);
    }
    // DingTalk only notifies a mobile / user id that also appears as `@…` in the text.
    let mut words: Vec<String> = m.mobiles.iter().map(|x| format!("@{x}")).collect();
    words.extend(m.user_ids.iter().map(|x| format!("@{x}")));
    let suffix = if words.is_empty() {
        String::new()
    } else {
        format!("\n\n{}", words.join(" "))
    };
    let at = json!({
        "atMobiles": m.mobiles,
        "atUserIds": m.user_ids,
        "isAtAll": m.all,
    });
    (suffix, at)
}

fn assemble(target: Style<'_>, title: &str, text: &str, at: &Value, link: &str) -> Value {
    let mut body = match target.message_type {
        MessageType::Markdown => json!({
            "msgtype": "markdown",
            "markdown": {"title": title, "text": text},
        }),
        MessageType::Text => json!({
            "msgtype": "text",
            "text": {"content": text},
        }),
        MessageType::ActionCard => {
            let mut card = json!({"title": title, "text": text, "btnOrientation": "0"});
            if !link.is_empty() {
                card["singleTitle"] = json!("Open Alertmanager");
                card["singleURL"] = json!(link);
            }
            json!({"msgtype": "actionCard", "actionCard": card})
        }
    };
    if !at.is_null() {
        body["at"] = at.clone();
    }
    body
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The largest char boundary of `s` that is `<= n`.
fn floor_boundary(s: &str, n: usize) -> usize {
    let mut n = n.min(s.len());
    while n > 0 && !s.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// Builds the body for `rendered`, keeping it within `max_bytes` by cutting the end of the
/// text (the mentions and keyword stay) and saying how much was cut.
/// Title and text with the keyword added where it is missing.
fn dressed_text(target: Style<'_>, rendered: &Rendered) -> (String, String) {
    let mut title = if rendered.title.is_empty() {
        "Alert".to_string()
    } else {
        rendered.title.clone()
    };
    let mut text = rendered.text.clone();
    if let Some(kw) = target.keyword {
        if !text.contains(kw) {
            text = format!("{kw}\n\n{text}");
        }
        if !title.contains(kw) {
            title = format!("{kw} {title}");
        }
    }
    (title, text)
}

/// The size of the body for `rendered` before any truncation: what decides whether it fits.
pub fn untruncated_len(target: Style<'_>, rendered: &Rendered, dress: Dress<'_>) -> usize {
    let (title, text) = dressed_text(target, rendered);
    let (suffix, at) = mention_suffix(target, dress.firing);
    to_bytes(&assemble(
        target,
        &title,
        &format!("{text}{suffix}"),
        &at,
        dress.link,
    ))
    .len()
}

/// Builds the body for `rendered`, keeping it within `max_bytes` by cutting the end of the
/// text (the mentions and keyword stay) and saying how much was cut.
pub fn build(target: Style<'_>, rendered: &Rendered, dress: Dress<'_>, max_bytes: usize) -> Body {
    let (mut title, text) = dressed_text(target, rendered);
    let (suffix, at) = mention_suffix(target, dress.firing);
    let full = assemble(target, &title, &format!("{text}{suffix}"), &at, dress.link);
    let bytes = to_bytes(&full);
    if bytes.len() <= max_bytes {
        return Body {
            bytes,
            truncated: false,
        };
    }
    // Titles are short in practice; cap a runaway one first.
    if title.len() > 256 {
        let end = floor_boundary(&title, 250);
        title = format!("{}…", &title[..end]);
    }
    let total = text.len();
    let note = |cut: usize| {
        format!(
            "\n\n…(truncated: {cut} of {total} bytes of this message were cut to fit DingTalk's {max_bytes}-byte limit; see Alertmanager for the rest)"
        )
    };
    let fits = |keep: usize| {
        let end = floor_boundary(&text, keep);
        let t = format!("{}{}{suffix}", &text[..end], note(total - end));
        let b = to_bytes(&assemble(target, &title, &t, &at, dress.link));
        (b.len() <= max_bytes).then_some(b)
    };
    // Binary search the longest prefix that fits (JSON escaping makes sizes non-linear).
    let (mut lo, mut hi) = (0usize, total);
    let mut best = fits(0);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        match fits(mid) {
            Some(b) => {
                best = Some(b);
                lo = mid;
            }
            None => hi = mid - 1,
        }
    }
    let bytes = best.unwrap_or_else(|| {
        // Even the note alone does not fit (absurd mention lists): send the note only.
        to_bytes(&assemble(target, "Alert", &note(total), &Value::Null, ""))
    });
    Body {
        bytes,
        truncated: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Target {
        message_type: MessageType,
        keyword: Option<String>,
        mentions: Mentions,
    }

    impl Target {
        fn style(&self) -> Style<'_> {
            Style {
                message_type: self.message_type,
                keyword: self.keyword.as_deref(),
                mentions: &self.mentions,
            }
        }
    }

    fn target(kind: MessageType, mentions: Mentions, keyword: Option<&str>) -> Target {
        Target {
            keyword: keyword.map(String::from),
            message_type: kind,
            mentions,
        }
    }

    fn rendered(text: &str) -> Rendered {
        Rendered {
            title: "[FIRING:1] X".into(),
            text: text.into(),
        }
    }

    const FIRING: Dress<'static> = Dress {
        firing: true,
        link: "http://am:9093",
    };

    #[test]
    fn message_types_have_dingtalks_shape() {
        let m = Mentions::default();
        let md = build(
            target(MessageType::Markdown, m.clone(), None).style(),
            &rendered("hi"),
            FIRING,
            20_000,
        )
        .json();
        assert_eq!(
            md,
            json!({"msgtype":"markdown","markdown":{"title":"[FIRING:1] X","text":"hi"}})
        );
        let tx = build(
            target(MessageType::Text, m.clone(), None).style(),
            &rendered("hi"),
            FIRING,
            20_000,
        )
        .json();
        assert_eq!(tx, json!({"msgtype":"text","text":{"content":"hi"}}));
        let ac = build(
            target(MessageType::ActionCard, m, None).style(),
            &rendered("hi"),
            FIRING,
            20_000,
        )
        .json();
        assert_eq!(ac["actionCard"]["singleURL"], "http://am:9093");
        assert_eq!(ac["actionCard"]["title"], "[FIRING:1] X");
    }

    #[test]
    fn mentions_put_at_and_the_at_text_so_they_notify() {
        let m = Mentions {
            mobiles: vec!["13800000000".into()],
            user_ids: vec!["u42".into()],
            ..Mentions::default()
        };
        let t = target(MessageType::Markdown, m, None);
        let b = build(t.style(), &rendered("body"), FIRING, 20_000).json();
        assert_eq!(b["at"]["atMobiles"], json!(["13800000000"]));
        assert_eq!(b["at"]["atUserIds"], json!(["u42"]));
        assert_eq!(b["at"]["isAtAll"], json!(false));
        assert!(b["markdown"]["text"]
            .as_str()
            .unwrap()
            .ends_with("@13800000000 @u42"));
        // Resolved-only messages do not page anyone by default.
        let quiet = build(
            t.style(),
            &rendered("body"),
            Dress {
                firing: false,
                link: "",
            },
            20_000,
        )
        .json();
        assert!(quiet.get("at").is_none(), "{quiet}");
    }

    #[test]
    fn keyword_is_always_present() {
        let t = target(MessageType::Text, Mentions::default(), Some("告警"));
        let b = build(t.style(), &rendered("disk full"), FIRING, 20_000).json();
        assert_eq!(b["text"]["content"], "告警\n\ndisk full");
        let b = build(t.style(), &rendered("已有告警"), FIRING, 20_000).json();
        assert_eq!(b["text"]["content"], "已有告警");
    }

    #[test]
    fn long_bodies_are_cut_to_the_cap_with_a_note_and_keep_mentions() {
        let m = Mentions {
            mobiles: vec!["13800000000".into()],
            ..Mentions::default()
        };
        let t = target(MessageType::Markdown, m, Some("alert"));
        // Multi-byte text and characters JSON escapes, to exercise both.
        let text = "磁盘\"满\"\n".repeat(5_000);
        let b = build(t.style(), &rendered(&text), FIRING, 20_000);
        assert!(b.truncated);
        assert!(b.bytes.len() <= 20_000, "{}", b.bytes.len());
        assert!(
            b.bytes.len() > 19_000,
            "cut no more than needed: {}",
            b.bytes.len()
        );
        let v = b.json();
        let out = v["markdown"]["text"].as_str().unwrap();
        assert!(out.starts_with("alert\n\n磁盘"), "{}", &out[..40]);
        assert!(out.contains("bytes of this message were cut"), "{out}");
        assert!(out.ends_with("@13800000000"));
        assert!(!build(t.style(), &rendered("short"), FIRING, 20_000).truncated);
    }
}
