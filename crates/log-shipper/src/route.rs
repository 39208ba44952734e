//! One sink's pipeline: discover → tail → multiline → batch → send → checkpoint.
//!
//! Every sink has its own route, with its own tailer offsets, batching, outage buffer and
//! checkpoint file (`{data_dir}/checkpoints/{sink}.json`), so a slow or failing sink never
//! holds back another and the files themselves are the shared source.
//!
//! Order of durability for one batch: the sink acknowledges (or the batch is spilled to the
//! outage buffer and fsynced) → the offsets are committed in the tailer → the checkpoint is
//! stored, at most once per `checkpoint_interval` (at once when files were opened, rotated,
//! closed or forgotten, after a buffered batch was sent, and when the route stops). A crash
//! therefore re-sends at most the batches acknowledged since the last checkpoint plus the one
//! in flight, and loses none.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio_util::sync::CancellationToken;

use crate::{
    buffer::DiskBuffer,
    checkpoint::{self, Checkpoint, State},
    config::{Batch, Buffer},
    metrics::Metrics,
    multiline::{Event, Joiner, Limits, Mode},
    record::{LabelSource, Record, StreamInfo},
    sinks::{backoff, Retry, SendError, Sink},
    tailer::{FileEvent, Line, Tailer},
};

/// One input glob.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// The glob.
    pub glob: String,
    /// Multiline mode; `None` = by file extension.
    pub mode: Option<Mode>,
}

impl InputSpec {
    /// The fixed directory part of the glob (outputs are named relative to it).
    pub fn base(&self) -> PathBuf {
        let mut base = PathBuf::new();
        for c in Path::new(&self.glob).components() {
            let s = c.as_os_str().to_string_lossy();
            if s.contains(['*', '?', '[', '{']) {
                break;
            }
            base.push(c);
        }
        if base.as_os_str() == self.glob.as_str() {
            // No wildcard: the file itself; its parent is the base.
            base.pop();
        }
        base
    }

    fn matches(&self, path: &Path) -> bool {
        glob::Pattern::new(&self.glob)
            .map(|p| p.matches_path(path))
            .unwrap_or(false)
    }
}

/// The mode for a file: configured, or `java_stack_trace` for `*.out`, else log4j.
pub fn mode_for(path: &Path, configured: Option<Mode>) -> Mode {
    configured.unwrap_or_else(|| {
        if path.extension().is_some_and(|e| e == "out") {
            Mode::JavaStackTrace
        } else {
            Mode::Log4jTimestamp
        }
    })
}

/// What a route needs.
pub struct RouteConfig {
    /// Inputs.
    pub inputs: Vec<InputSpec>,
    /// Multiline limits.
    pub limits: Limits,
    /// Batching.
    pub batch: Batch,
    /// Outage buffer.
    pub buffer: Buffer,
    /// Poll interval.
    pub poll_interval: Duration,
    /// At most how often the checkpoint is stored after acknowledged batches (zero: after
    /// every batch).
    pub checkpoint_interval: Duration,
    /// Where checkpoints and the outage buffer live.
    pub data_dir: PathBuf,
    /// Labels per file.
    pub labels: Arc<dyn LabelSource>,
}

/// Why a route could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The checkpoint is unreadable.
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::Error),
    /// The outage buffer directory is unusable.
    #[error("outage buffer {path}: {source}")]
    Buffer {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The sink could not be brought back to the checkpoint.
    #[error("sink {sink}: {source}")]
    Recover {
        sink: &'static str,
        source: SendError,
    },
}

/// A running sink pipeline.
pub struct Route {
    name: &'static str,
    sink: Sink,
    cfg: RouteConfig,
    tailer: Tailer,
    joiners: HashMap<Arc<str>, Joiner>,
    streams: HashMap<Arc<str>, Arc<StreamInfo>>,
    checkpoint: Checkpoint,
    state: State,
    dirty: bool,
    /// A change that must be stored at once (file opened, rotated, closed or forgotten).
    urgent: bool,
    stored_at: Instant,
    buffer: DiskBuffer,
    metrics: Metrics,
    attempt: u32,
    retry_at: Option<Instant>,
}

impl Route {
    /// Loads the checkpoint, re-opens checkpointed files and recovers the sink.
    pub fn new(mut sink: Sink, cfg: RouteConfig, metrics: Metrics) -> Result<Self, Error> {
        let name = sink.name();
        let checkpoint = Checkpoint::new(
            cfg.data_dir
                .join("checkpoints")
                .join(format!("{name}.json")),
        );
        let loaded = checkpoint.load()?;
        let had = loaded.is_some();
        let mut state = loaded.unwrap_or_default();
        sink.recover(&mut state.sink, had)
            .map_err(|source| Error::Recover { sink: name, source })?;
        let buf_dir = cfg.data_dir.join("buffer").join(name);
        let buffer = DiskBuffer::open(buf_dir.clone(), cfg.buffer.max_bytes, cfg.buffer.when_full)
            .map_err(|source| Error::Buffer {
                path: buf_dir,
                source,
            })?;
        let mut tailer = Tailer::new();
        tailer.restore(&state.files);
        checkpoint.store(&state)?;
        let mut route = Self {
            name,
            sink,
            cfg,
            tailer,
            joiners: HashMap::new(),
            streams: HashMap::new(),
            checkpoint,
            state,
            dirty: false,
            urgent: false,
            stored_at: Instant::now(),
            buffer,
            metrics,
            attempt: 0,
            retry_at: None,
        };
        let restored: Vec<Arc<str>> = route.tailer.streams().cloned().collect();
        for s in restored {
            route.register(&s);
        }
        route.file_events();
        Ok(route)
    }

    /// The sink's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn register(&mut self, stream: &Arc<str>) -> Arc<StreamInfo> {
        if let Some(i) = self.streams.get(stream) {
            return i.clone();
        }
        let path = PathBuf::from(stream.as_ref());
        let input = self.cfg.inputs.iter().find(|i| i.matches(&path));
        let relative = (self.cfg.labels.output_name(&path).map(PathBuf::from))
            .or_else(|| input.and_then(|i| path.strip_prefix(i.base()).ok().map(Path::to_path_buf)))
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(path.file_name().unwrap_or_default()));
        let mut relative = relative.to_string_lossy().into_owned();
        if self.streams.values().any(|s| s.relative == relative) {
            // Two inputs with the same name below their globs' directories (`a/*.log` and
            // `b/*.log` both holding `app.log`): the later one is named by its full path.
            let qualified = stream.trim_start_matches('/').to_string();
            tracing::warn!(sink = self.name, file = %stream, output = %qualified,
                "Another input already ships under this name; using the full path.");
            relative = qualified;
        }
        let info = Arc::new(StreamInfo {
            path: stream.to_string(),
            file_name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            relative,
            labels: self.cfg.labels.labels_for(&path),
        });
        let mode = mode_for(&path, input.and_then(|i| i.mode));
        let mut joiner = Joiner::new(mode, self.cfg.limits);
        if self.cfg.labels.cri(&path) {
            joiner = joiner.cri();
        }
        self.joiners.insert(stream.clone(), joiner);
        self.streams.insert(stream.clone(), info.clone());
        info
    }

    fn discover(&mut self) {
        // Files whose writer is gone for good (a deleted pod) are let go once every byte of
        // them is read, shipped and acknowledged.
        let lag = self.tailer.lag();
        let done: Vec<Arc<str>> = lag
            .into_iter()
            .filter(|(name, lag)| {
                *lag == 0
                    && !self.joiners.get(name).is_some_and(Joiner::is_pending)
                    && self.cfg.labels.gone(Path::new(name.as_ref()))
            })
            .map(|(name, _)| name)
            .collect();
        for name in done {
            self.tailer.unwatch(&name);
            self.joiners.remove(&name);
            self.streams.remove(&name);
            self.dirty = true;
            self.urgent = true;
            tracing::info!(sink = self.name, file = %name, "Writer gone and file fully shipped; no longer watched.");
        }
        let globs: Vec<String> = self.cfg.inputs.iter().map(|i| i.glob.clone()).collect();
        for g in globs {
            let Ok(paths) = glob::glob(&g) else { continue };
            for p in paths.flatten() {
                if !p.is_file() {
                    continue;
                }
                let name: Arc<str> = Arc::from(p.to_string_lossy().as_ref());
                if !self.streams.contains_key(&name) && self.cfg.labels.accepts(&p) {
                    let s = self.tailer.watch(&p);
                    self.register(&s);
                    tracing::info!(sink = self.name, file = %p.display(), "Watching file.");
                }
            }
        }
    }

    fn file_events(&mut self) {
        for e in self.tailer.take_events() {
            let (kind, stream) = match &e {
                FileEvent::Opened { stream } => ("opened", stream),
                FileEvent::Rotated { stream } => ("rotated", stream),
                FileEvent::Truncated { stream, .. } => ("truncated", stream),
                FileEvent::Lost { stream, .. } => ("lost", stream),
                FileEvent::Identified { .. } => {
                    self.dirty = true;
                    self.urgent = true;
                    continue;
                }
            };
            match &e {
                FileEvent::Lost { unread_from, .. } => {
                    tracing::warn!(sink = self.name, file = %stream, offset = unread_from,
                    "A checkpointed file is gone; lines after the offset were not shipped.")
                }
                FileEvent::Truncated { copy_found, .. } => {
                    tracing::info!(sink = self.name, file = %stream, copy_found,
                    "File truncated in place (copytruncate).")
                }
                _ => tracing::debug!(sink = self.name, file = %stream, event = kind, "File event."),
            }
            self.metrics
                .file_events
                .with_label_values(&[kind, self.name])
                .inc();
            // Record new and replaced files at once, so that a crash before their first
            // acknowledgement still finds them (by inode) wherever rotation moves them.
            self.dirty = true;
            self.urgent = true;
        }
    }

    fn commit(&mut self, batch: &[Record]) {
        let mut ends: BTreeMap<(Arc<str>, u64), u64> = BTreeMap::new();
        for r in batch {
            let e = ends
                .entry((r.event.stream.clone(), r.event.file))
                .or_insert(0);
            *e = (*e).max(r.event.end);
        }
        for ((stream, file), end) in ends {
            // A drained file closed: store at once, so that a restart does not look for it.
            self.urgent |= self.tailer.commit(&stream, file, end);
        }
        self.dirty = true;
    }

    /// Stores the checkpoint when something changed and it is due: at once for urgent
    /// changes, else when `checkpoint_interval` has passed since the last store.
    fn store(&mut self) {
        if self.dirty && (self.urgent || self.stored_at.elapsed() >= self.cfg.checkpoint_interval) {
            self.store_now();
        }
    }

    /// Stores the checkpoint now if anything changed.
    fn store_now(&mut self) {
        if !self.dirty {
            return;
        }
        self.state.files = self.tailer.positions();
        match self.checkpoint.store(&self.state) {
            Ok(()) => {
                self.dirty = false;
                self.urgent = false;
                self.stored_at = Instant::now();
            }
            Err(error) => tracing::error!(sink = self.name, %error, "Cannot store the checkpoint."),
        }
    }

    fn shipped(&self, batch: &[Record]) {
        self.metrics
            .events_shipped
            .with_label_values(&[self.name])
            .inc_by(batch.len() as u64);
        let bytes: usize = batch.iter().map(|r| r.event.data.len()).sum();
        self.metrics
            .bytes_shipped
            .with_label_values(&[self.name])
            .inc_by(bytes as u64);
    }

    fn failed(&mut self, batch: &[Record], e: &SendError) {
        self.metrics
            .events_failed
            .with_label_values(&[self.name])
            .inc_by(batch.len() as u64);
        self.metrics
            .send_errors
            .with_label_values(&[self.name, &e.code])
            .inc();
        let wait = backoff(e.retry, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        self.retry_at = Some(Instant::now() + wait);
        if e.retry == Retry::Fatal {
            tracing::error!(sink = self.name, error = %e, retry_in = ?wait, "Send rejected; fix the configuration. Events are kept.");
        } else {
            tracing::warn!(sink = self.name, error = %e, retry_in = ?wait, "Send failed; will retry.");
        }
    }

    fn buffer_metrics(&self) {
        self.metrics
            .buffer_events
            .with_label_values(&[self.name])
            .set(self.buffer.events() as i64);
        self.metrics
            .buffer_bytes
            .with_label_values(&[self.name])
            .set(self.buffer.bytes() as i64);
    }

    /// Sends a fresh batch, or spills it when the sink is down or others wait before it.
    async fn dispatch(&mut self, batch: Vec<Record>) {
        if self.buffer.is_empty() {
            match self.sink.send(&batch, &mut self.state.sink).await {
                Ok(()) => {
                    self.attempt = 0;
                    self.shipped(&batch);
                    self.commit(&batch);
                    self.store();
                    return;
                }
                Err(e) => self.failed(&batch, &e),
            }
        }
        loop {
            match self.buffer.push(&batch) {
                Ok(dropped) => {
                    if dropped > 0 {
                        tracing::warn!(
                            sink = self.name,
                            events = dropped,
                            "Outage buffer full; dropped the oldest events."
                        );
                        self.metrics
                            .buffer_dropped
                            .with_label_values(&[self.name])
                            .inc_by(dropped as u64);
                    }
                    self.commit(&batch);
                    self.store();
                    self.buffer_metrics();
                    return;
                }
                Err(error) => {
                    // Cannot spill: keep the batch in memory and retry the sink itself.
                    tracing::error!(sink = self.name, %error, "Cannot write the outage buffer.");
                    tokio::time::sleep(backoff(Retry::Backoff, self.attempt)).await;
                    if self.sink.send(&batch, &mut self.state.sink).await.is_ok() {
                        self.attempt = 0;
                        self.shipped(&batch);
                        self.commit(&batch);
                        self.store();
                        return;
                    }
                    self.attempt = self.attempt.saturating_add(1);
                }
            }
        }
    }

    /// Retries the oldest buffered batch when its backoff has passed.
    async fn drain_buffer(&mut self) {
        while !self.buffer.is_empty() && self.retry_at.is_none_or(|t| Instant::now() >= t) {
            let mut streams = std::mem::take(&mut self.streams);
            let labels = self.cfg.labels.clone();
            let inputs = self.cfg.inputs.clone();
            let head = self.buffer.head(&mut |path: &str| {
                streams
                    .get(path)
                    .cloned()
                    .unwrap_or_else(|| orphan_info(path, &inputs, labels.as_ref()))
            });
            self.streams = std::mem::take(&mut streams);
            let batch = match head {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(sink = self.name, %error, "Unreadable outage buffer batch; skipping it.");
                    let _ = self.buffer.pop();
                    continue;
                }
            };
            match self.sink.send(&batch, &mut self.state.sink).await {
                Ok(()) => {
                    self.attempt = 0;
                    self.retry_at = None;
                    self.shipped(&batch);
                    // The sink's new state must be durable before the batch is forgotten.
                    self.dirty = true;
                    self.store_now();
                    if let Err(error) = self.buffer.pop() {
                        tracing::error!(sink = self.name, %error, "Cannot delete a sent buffer batch.");
                    }
                    self.buffer_metrics();
                }
                Err(e) => {
                    self.failed(&batch, &e);
                    return;
                }
            }
        }
    }

    fn lag_metrics(&self) {
        for (file, lag) in self.tailer.lag() {
            self.metrics
                .checkpoint_lag
                .with_label_values(&[&file, self.name])
                .set(lag as i64);
        }
        self.metrics
            .open_files
            .with_label_values(&[self.name])
            .set(self.tailer.open_files() as i64);
    }

    /// Runs until `stop` is cancelled, then ships what was read (or spills it) and stores
    /// the checkpoint.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut lines: Vec<Line> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        let mut pending: Vec<Record> = Vec::new();
        let mut oldest: Option<Instant> = None;
        let mut next_discover = Instant::now();
        let mut next_lag = Instant::now();
        self.buffer_metrics();
        loop {
            let stopping = stop.is_cancelled();
            let now = Instant::now();
            if now >= next_discover {
                self.discover();
                next_discover = now + Duration::from_secs(1);
            }
            let mut read_any = false;
            if !self.buffer.blocked() && pending.len() < self.cfg.batch.max_events {
                self.tailer.poll(now, &mut lines);
                self.file_events();
                self.store();
                read_any = !lines.is_empty();
                let read_at = SystemTime::now();
                let mut per_file: HashMap<Arc<str>, (u64, u64)> = HashMap::new();
                for line in lines.drain(..) {
                    let c = per_file.entry(line.stream.clone()).or_default();
                    c.0 += 1;
                    c.1 += line.data.len() as u64;
                    if !self.joiners.contains_key(&line.stream) {
                        let s = line.stream.clone();
                        self.register(&s);
                    }
                    if let Some(j) = self.joiners.get_mut(&line.stream) {
                        j.push(line, now, &mut events);
                    }
                }
                for (file, (n, b)) in per_file {
                    self.metrics
                        .read_lines
                        .with_label_values(&[&file, self.name])
                        .inc_by(n);
                    self.metrics
                        .read_bytes
                        .with_label_values(&[&file, self.name])
                        .inc_by(b);
                }
                for e in events.drain(..) {
                    let stream = self.register(&e.stream);
                    pending.push(Record {
                        stream,
                        event: e,
                        read_at,
                    });
                }
            }
            for j in self.joiners.values_mut() {
                j.flush(now, stopping, &mut events);
            }
            let read_at = SystemTime::now();
            for e in events.drain(..) {
                let stream = self.register(&e.stream);
                pending.push(Record {
                    stream,
                    event: e,
                    read_at,
                });
            }
            if !pending.is_empty() && oldest.is_none() {
                oldest = Some(now);
            }
            while !pending.is_empty()
                && (pending.len() >= self.cfg.batch.max_events
                    || stopping
                    || oldest.is_some_and(|t| now.duration_since(t) >= self.cfg.batch.timeout))
            {
                let n = pending.len().min(self.cfg.batch.max_events);
                let batch: Vec<Record> = pending.drain(..n).collect();
                oldest = if pending.is_empty() { None } else { Some(now) };
                self.dispatch(batch).await;
            }
            if !stopping {
                self.drain_buffer().await;
            }
            if now >= next_lag {
                self.lag_metrics();
                next_lag = now + Duration::from_secs(1);
            }
            self.store();
            if stopping && pending.is_empty() {
                self.store_now();
                tracing::info!(sink = self.name, "Route stopped; checkpoint stored.");
                return;
            }
            if !read_any {
                tokio::select! {
                    _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                    _ = stop.cancelled(), if !stopping => {}
                }
            } else {
                tokio::task::yield_now().await;
            }
        }
    }
}

fn orphan_info(path: &str, inputs: &[InputSpec], labels: &dyn LabelSource) -> Arc<StreamInfo> {
    let p = Path::new(path);
    let relative = (labels.output_name(p).map(PathBuf::from))
        .or_else(|| {
            inputs
                .iter()
                .find(|i| i.matches(p))
                .and_then(|i| p.strip_prefix(i.base()).ok().map(Path::to_path_buf))
        })
        .unwrap_or_else(|| PathBuf::from(p.file_name().unwrap_or_default()));
    Arc::new(StreamInfo {
        path: path.to_string(),
        file_name: p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        relative: relative.to_string_lossy().into_owned(),
        labels: labels.labels_for(p),
    })
}
