//! Joining the lines of one event (a Java stack trace under its log line) and parsing
//! Flink's log4j layout into fields.
//!
//! A [`Joiner`] per stream buffers the event being assembled. A line that *starts* an event
//! (by default: begins with a log4j timestamp `yyyy-MM-dd HH:mm:ss`) closes the previous
//! one; other lines (`\tat ...`, `Caused by: ...`, `\t... 12 more`) are appended to it. An
//! event is also closed when no line arrived for the flush timeout, when it grows past its
//! size limits, and when its file changes (rotation).

use std::{sync::Arc, time::Instant};

use serde::{Deserialize, Serialize};

use crate::tailer::Line;

/// How lines are grouped into events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A line starting with a log4j timestamp (`2024-01-01 00:00:00`) starts an event; other
    /// lines continue it. Right for Flink's `*.log`.
    #[default]
    Log4jTimestamp,
    /// Java continuation lines (tab/space-indented `at`, `Caused by:`, `Suppressed:`,
    /// `... N more`) continue the event; any other line starts one. Right for `*.out`.
    JavaStackTrace,
    /// Every line is an event.
    None,
}

/// Whether `line` begins with `yyyy-MM-dd HH:mm:ss` (or `T` between date and time).
pub fn starts_with_timestamp(line: &[u8]) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-dd dd:dd:dd";
    line.len() >= SHAPE.len()
        && SHAPE.iter().zip(line).all(|(s, c)| match s {
            b'd' => c.is_ascii_digit(),
            b' ' => *c == b' ' || *c == b'T',
            other => c == other,
        })
}

/// Whether `line` continues a Java stack trace.
pub fn is_java_continuation(line: &[u8]) -> bool {
    let trimmed = line
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .map(|i| &line[i..])
        .unwrap_or(&[]);
    let indented = trimmed.len() < line.len();
    (indented && (trimmed.starts_with(b"at ") || trimmed.starts_with(b"...")))
        || trimmed.starts_with(b"Caused by:")
        || (indented && trimmed.starts_with(b"Suppressed:"))
}

impl Mode {
    fn starts_event(self, line: &[u8]) -> bool {
        match self {
            Mode::Log4jTimestamp => starts_with_timestamp(line),
            Mode::JavaStackTrace => !is_java_continuation(line),
            Mode::None => true,
        }
    }
}

/// One log event: one or more complete lines of one physical file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The stream (input path).
    pub stream: Arc<str>,
    /// Serial of the physical file.
    pub file: u64,
    /// Offset just past the event in that file.
    pub end: u64,
    /// The raw bytes, newlines included.
    pub data: Vec<u8>,
}

/// Limits of one event.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Lines per event at most.
    pub max_lines: usize,
    /// Bytes per event at most.
    pub max_bytes: usize,
    /// An event with no new line for this long is closed.
    pub timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_lines: 1000,
            max_bytes: 1 << 20,
            timeout: std::time::Duration::from_secs(1),
        }
    }
}

/// Assembles the events of one stream.
#[derive(Debug)]
pub struct Joiner {
    mode: Mode,
    limits: Limits,
    pending: Option<(Event, usize, Instant)>,
    /// Lines are in the CRI log format (`<time> <stream> <P|F> <message>`).
    cri: bool,
    /// Partial (`P`) CRI messages waiting for their final (`F`) part.
    partial: Vec<u8>,
}

/// Splits a CRI log line (`2024-01-01T00:00:00.000000001Z stdout F message\n`, as kubelet
/// writes container logs) into its tag (`P` partial or `F` full) and message. A partial
/// message loses its line end (it continues in the next line); a full one keeps it.
pub fn parse_cri(line: &[u8]) -> Option<(u8, &[u8])> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let msg = parts.next().unwrap_or(b"");
    if time.len() < 20
        || !time.first()?.is_ascii_digit()
        || !matches!(stream, b"stdout" | b"stderr")
    {
        return None;
    }
    match tag {
        b"P" => Some((b'P', msg.strip_suffix(b"\n").unwrap_or(msg))),
        // A tag may carry more flags after `:` in later CRI versions; the first is P/F.
        t if t.first() == Some(&b'F') => Some((b'F', msg)),
        t if t.first() == Some(&b'P') => Some((b'P', msg.strip_suffix(b"\n").unwrap_or(msg))),
        _ => None,
    }
}

impl Joiner {
    /// A joiner for one stream.
    pub fn new(mode: Mode, limits: Limits) -> Self {
        Self {
            mode,
            limits,
            pending: None,
            cri: false,
            partial: Vec::new(),
        }
    }

    /// The same for a CRI-format container log: the CRI prefix is stripped and partial
    /// lines are joined with their final part before multiline grouping.
    pub fn cri(mut self) -> Self {
        self.cri = true;
        self
    }

    /// Adds a line; closed events go to `out`.
    pub fn push(&mut self, mut line: Line, now: Instant, out: &mut Vec<Event>) {
        if self.cri {
            if line.new_file {
                self.partial.clear();
            }
            match parse_cri(&line.data) {
                Some((b'P', msg)) => {
                    if self.partial.len() + msg.len() <= self.limits.max_bytes {
                        self.partial.extend_from_slice(msg);
                    }
                    return;
                }
                Some((_, msg)) => {
                    let mut data = std::mem::take(&mut self.partial);
                    data.extend_from_slice(msg);
                    line.data = data;
                }
                None => {
                    // Not CRI (a runtime writing something else): shipped as it is.
                }
            }
        }
        let starts = self.mode.starts_event(&line.data);
        if let Some((ev, lines, last)) = &mut self.pending {
            let fits = *lines < self.limits.max_lines
                && ev.data.len() + line.data.len() <= self.limits.max_bytes;
            if !starts && !line.new_file && ev.file == line.file && fits {
                ev.data.extend_from_slice(&line.data);
                ev.end = line.end;
                *lines += 1;
                *last = now;
                return;
            }
        }
        if let Some((ev, _, _)) = self.pending.take() {
            out.push(ev);
        }
        let ev = Event {
            stream: line.stream,
            file: line.file,
            end: line.end,
            data: line.data,
        };
        if self.mode == Mode::None {
            out.push(ev);
        } else {
            self.pending = Some((ev, 1, now));
        }
    }

    /// Closes the pending event if no line arrived for the timeout (or `force`).
    pub fn flush(&mut self, now: Instant, force: bool, out: &mut Vec<Event>) {
        let expired = self
            .pending
            .as_ref()
            .is_some_and(|(_, _, t)| force || now.duration_since(*t) >= self.limits.timeout);
        if expired {
            if let Some((ev, _, _)) = self.pending.take() {
                out.push(ev);
            }
        }
    }

    /// Whether an event (or a partial CRI line) is being assembled.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some() || !self.partial.is_empty()
    }
}

/// The fields of a line in Flink's log4j layout
/// `%d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log4jFields<'a> {
    /// `2024-01-01 00:00:00,123`.
    pub time: &'a str,
    /// `INFO`, `WARN`, ...
    pub level: &'a str,
    /// The logger (class) name.
    pub logger: &'a str,
    /// The nested diagnostic context (`%x`), usually empty.
    pub ndc: &'a str,
    /// The message, with any following lines of the event (stack trace) and without the
    /// final newline.
    pub message: &'a str,
}

const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

/// Parses an event in Flink's log4j layout; `None` when it does not match.
pub fn parse_log4j(text: &str) -> Option<Log4jFields<'_>> {
    if !starts_with_timestamp(text.as_bytes()) || text.len() < 24 {
        return None;
    }
    let time = text.get(..23)?;
    let b = time.as_bytes();
    if b[19] != b',' || !b[20..23].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let rest = text.get(23..)?.strip_prefix(' ')?;
    let (level, rest) = rest.split_once(' ')?;
    if !LEVELS.contains(&level) {
        return None;
    }
    let rest = rest.trim_start_matches(' ');
    let (logger, rest) = rest.split_once(' ')?;
    let (ndc, message) = rest.split_once("- ")?;
    let message = message.strip_suffix('\n').unwrap_or(message);
    let message = message.strip_suffix('\r').unwrap_or(message);
    Some(Log4jFields {
        time,
        level,
        logger,
        ndc: ndc.trim(),
        message,
    })
}

/// Parses the log4j timestamp (local time of the writer, taken as UTC plus
/// `utc_offset_seconds`) into Unix seconds and nanoseconds.
pub fn parse_time(time: &str, utc_offset_seconds: i32) -> Option<(i64, u32)> {
    // `yyyy-MM-dd HH:mm:ss,SSS`, by hand: this runs once per event.
    let b = time.as_bytes();
    if b.len() != 23 || !starts_with_timestamp(b) || b[19] != b',' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let t = date.and_hms_milli_opt(num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?)?;
    let utc = t.and_utc().timestamp() - i64::from(utc_offset_seconds);
    Some((utc, t.and_utc().timestamp_subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str, end: u64) -> Line {
        Line {
            stream: Arc::from("s"),
            file: 1,
            end,
            data: s.as_bytes().to_vec(),
            new_file: false,
        }
    }

    const TRACE: &str = "2024-01-01 00:00:01,000 ERROR org.apache.flink.runtime.taskmanager.Task            [] - failed\n\
java.lang.RuntimeException: boom\n\
\tat a.B.c(B.java:1)\n\
Caused by: java.io.IOException: disk\n\
\t... 12 more\n";

    #[test]
    fn stack_trace_is_joined_to_its_log_line() {
        let now = Instant::now();
        let mut j = Joiner::new(Mode::Log4jTimestamp, Limits::default());
        let mut out = Vec::new();
        let mut end = 0;
        for l in TRACE.split_inclusive('\n') {
            end += l.len() as u64;
            j.push(line(l, end), now, &mut out);
        }
        assert!(out.is_empty(), "event still open");
        j.push(
            line("2024-01-01 00:00:02,000 INFO  x [] - next\n", end + 40),
            now,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(String::from_utf8_lossy(&out[0].data), TRACE);
        assert_eq!(out[0].end, end);
        j.flush(now + Limits::default().timeout, false, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn java_mode_for_stdout_files() {
        let now = Instant::now();
        let mut j = Joiner::new(Mode::JavaStackTrace, Limits::default());
        let mut out = Vec::new();
        for (i, l) in [
            "hello\n",
            "Exception in thread \"main\" java.lang.Error: x\n",
            "\tat a.b(C.java:1)\n",
            "Caused by: y\n",
            "    ... 3 more\n",
            "bye\n",
        ]
        .iter()
        .enumerate()
        {
            j.push(line(l, i as u64), now, &mut out);
        }
        j.flush(now, true, &mut out);
        let texts: Vec<String> = out
            .iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(texts[1].starts_with("Exception") && texts[1].ends_with("3 more\n"));
    }

    #[test]
    fn log4j_layout_is_parsed_and_other_text_is_not() {
        let f = parse_log4j(TRACE).unwrap();
        assert_eq!(f.time, "2024-01-01 00:00:01,000");
        assert_eq!(f.level, "ERROR");
        assert_eq!(f.logger, "org.apache.flink.runtime.taskmanager.Task");
        assert_eq!(f.ndc, "[]");
        assert!(f.message.starts_with("failed\njava.lang.RuntimeException"));
        assert!(f.message.ends_with("12 more"));
        let padded = format!(
            "2024-01-01 00:00:00,123 INFO  {:<60}  - Job started\n",
            "org.apache.flink.runtime.jobmaster.JobMaster"
        );
        let f = parse_log4j(&padded).unwrap();
        assert_eq!(
            (f.level, f.logger, f.ndc, f.message),
            (
                "INFO",
                "org.apache.flink.runtime.jobmaster.JobMaster",
                "",
                "Job started"
            )
        );
        assert_eq!(parse_time(f.time, 0), Some((1_704_067_200, 123_000_000)));
        assert_eq!(parse_log4j("Starting taskexecutor daemon\n"), None);
        assert_eq!(
            parse_log4j("2024-01-01 00:00:00,123 NOTALEVEL x - y\n"),
            None
        );
    }

    #[test]
    fn limits_split_a_runaway_event() {
        let now = Instant::now();
        let limits = Limits {
            max_lines: 3,
            ..Limits::default()
        };
        let mut j = Joiner::new(Mode::Log4jTimestamp, limits);
        let mut out = Vec::new();
        j.push(line("2024-01-01 00:00:00 start\n", 1), now, &mut out);
        for i in 0..5 {
            j.push(line("\tat x\n", 2 + i), now, &mut out);
        }
        j.flush(now, true, &mut out);
        assert_eq!(out.len(), 2);
        let total: usize = out.iter().map(|e| e.data.len()).sum();
        assert_eq!(total, "2024-01-01 00:00:00 start\n".len() + 5 * 6);
    }

    #[test]
    fn cri_prefix_is_stripped_and_partial_lines_joined() {
        assert_eq!(
            parse_cri(b"2024-01-01T00:00:00.000000001Z stdout P part\n"),
            Some((b'P', &b"part"[..]))
        );
        assert_eq!(
            parse_cri(b"2024-01-01T00:00:00.000000001Z stderr F end\n"),
            Some((b'F', &b"end\n"[..]))
        );
        assert_eq!(parse_cri(b"plain text line\n"), None);
        let limits = Limits {
            max_lines: 100,
            max_bytes: 1 << 20,
            timeout: std::time::Duration::from_secs(1),
        };
        let mut j = Joiner::new(Mode::JavaStackTrace, limits).cri();
        let now = Instant::now();
        let mut out = Vec::new();
        for (i, l) in [
            "2024-01-01T00:00:00.1Z stdout P java.lang.Runtime",
            "2024-01-01T00:00:00.2Z stdout F Exception: boom",
            "2024-01-01T00:00:00.3Z stdout F \tat a.B.c(B.java:1)",
        ]
        .iter()
        .enumerate()
        {
            j.push(line(&format!("{l}\n"), i as u64 + 1), now, &mut out);
            if i == 0 {
                assert!(j.is_pending(), "a partial line is pending");
            }
        }
        j.flush(now, true, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            String::from_utf8_lossy(&out[0].data),
            "java.lang.RuntimeException: boom\n\tat a.B.c(B.java:1)\n"
        );
        assert_eq!(out[0].end, 3);
    }
}
