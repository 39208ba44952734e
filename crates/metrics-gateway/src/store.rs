//! The group store: every pushed group, the consistency check that keeps `/metrics` valid,
//! group expiry, deletion by grouping key or by matcher, and the limits.
//!
//! # Hooks for the rule evaluator (and anything else that consumes pushes)
//!
//! - [`PushObserver`]: register with [`Store::add_observer`]. After every accepted change
//!   to a group (successful push, failed push that updates `push_failure_time_seconds`,
//!   delete, wipe, delete by matcher, expiry) the store calls
//!   [`PushObserver::group_changed`] with the group's grouping key and the group's full
//!   current set of float samples, each with its complete label set including `__name__`,
//!   histograms and summaries expanded into `_bucket`/`_sum`/`_count`/quantile series as the
//!   exposition shows them, `push_time_seconds` and `push_failure_time_seconds` included.
//!   A removed group is reported with an empty slice. On registration the observer is told
//!   about every group already held (e.g. restored from the persistence file). The call is
//!   made with the store's lock held, so calls for one group arrive in commit order: keep
//!   the observer quick (copy the samples into your own structure) and never call back into
//!   the store from it.
//! - [`crate::render::ExpositionSource`]: extra text appended to `GET /metrics` (ALERTS,
//!   recording-rule series); register with [`crate::api::AppState::add_exposition_source`].
//! - [`crate::run`] builds the [`Store`] and [`crate::api::AppState`] in
//!   [`crate::build`] before serving, so a rule evaluator can be started beside the HTTP
//!   server with the same `Arc<Store>`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use prometheus::Registry;

pub use crate::limits::{LimitError, Limits};

use crate::{
    grouping::GroupKey,
    limits::{describe, LabelLimits},
    model::{
        expand_samples, go_metric_order, is_valid_label_name, is_valid_metric_name, label_block,
        parse_label_block, render_block, series_identity, Family, Metric, MetricType, Value,
    },
};

/// Name of the per-group gauge of the last successful change.
pub const PUSH_TIME: &str = "push_time_seconds";
/// Name of the per-group gauge of the last failed change.
pub const PUSH_FAILURE_TIME: &str = "push_failure_time_seconds";
/// HELP of [`PUSH_TIME`], as the Pushgateway writes it.
pub const PUSH_TIME_HELP: &str =
    "Last Unix time when changing this group in the Pushgateway succeeded.";
/// HELP of [`PUSH_FAILURE_TIME`].
pub const PUSH_FAILURE_TIME_HELP: &str =
    "Last Unix time when changing this group in the Pushgateway failed.";

/// One float sample with its complete label set (incl. `__name__`).
pub type Sample = (Vec<(String, String)>, f64);

/// Told about every accepted change to a group; see the module documentation.
pub trait PushObserver: Send + Sync {
    /// `samples` is the group's full current set of float samples; empty when the group was
    /// deleted or expired.
    fn group_changed(&self, at: SystemTime, group: &GroupKey, samples: &[Sample]);

    /// `histograms` is the group's full current set of native histograms (labels with
    /// `__name__`), told right after [`PushObserver::group_changed`]; observers that keep
    /// floats only ignore it.
    fn group_histograms(
        &self,
        _at: SystemTime,
        _group: &GroupKey,
        _histograms: &[HistogramSample],
    ) {
    }
}

/// One native-histogram series of a group: full label set (with `__name__`) and value.
pub type HistogramSample = (Vec<(String, String)>, Arc<promql_engine::FloatHistogram>);

/// Why a push was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PushError {
    /// The pushed metrics are invalid or would make the exposition invalid.
    #[error("pushed metrics are invalid or inconsistent with existing metrics: {0}")]
    Inconsistent(String),
    /// A limit would be exceeded.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

/// One metric as stored: where its canonical label block (grouping labels included, see
/// [`crate::model::label_block`]) lies in its family's arena, and its value.
#[derive(Debug, Clone)]
pub struct StoredMetric {
    start: u32,
    len: u32,
    pub value: Value,
}

/// One family of a group, as stored: metrics in exposition order with compact labels.
#[derive(Debug, Clone)]
pub struct StoredFamily {
    pub name: String,
    pub help: Option<String>,
    pub kind: MetricType,
    pub metrics: Vec<StoredMetric>,
    /// Every metric's label block, back to back: two allocations per family instead of one
    /// per metric keeps the heap compact.
    blocks: String,
    /// When this family was last pushed.
    pub pushed_at: SystemTime,
}

impl StoredFamily {
    /// Sorts the metrics in exposition order and compacts their labels.
    pub fn new(mut family: Family, pushed_at: SystemTime) -> Self {
        family
            .metrics
            .sort_by(|a, b| go_metric_order(&a.labels, &b.labels));
        let mut blocks = String::new();
        let mut metrics = Vec::with_capacity(family.metrics.len());
        for m in family.metrics {
            let start = blocks.len();
            blocks.push_str(&label_block(&m.labels));
            metrics.push(StoredMetric {
                start: start as u32,
                len: (blocks.len() - start) as u32,
                value: m.value,
            });
        }
        blocks.shrink_to_fit();
        Self {
            name: family.name,
            help: family.help,
            kind: family.kind,
            metrics,
            blocks,
            pushed_at,
        }
    }

    /// The label block of one of this family's metrics.
    pub fn block(&self, m: &StoredMetric) -> &str {
        let start = m.start as usize;
        self.blocks
            .get(start..start + m.len as usize)
            .unwrap_or_default()
    }

    /// Appends the family's sample lines (no HELP/TYPE) to `out`.
    pub fn render_samples(&self, out: &mut String) {
        for m in &self.metrics {
            render_block(&self.name, self.block(m), &m.value, out);
        }
    }
}

/// A group: the metrics pushed under one grouping key.
#[derive(Debug, Clone)]
pub struct Group {
    pub key: GroupKey,
    pub families: BTreeMap<String, StoredFamily>,
    /// Unix seconds of the last successful change (0 if none).
    pub push_time: f64,
    /// Unix seconds of the last failed change (0 if none).
    pub push_failure_time: f64,
    pub last_push_successful: bool,
    /// The group expires this long after its last change; `None` = never.
    pub ttl: Option<Duration>,
    /// Series held (histogram/summary metrics count once).
    pub series: usize,
    /// Labels of the group's own `push_time_seconds` series.
    pub time_labels: Vec<(String, String)>,
}

impl Group {
    fn new(key: GroupKey) -> Self {
        let mut time_labels: Vec<(String, String)> =
            key.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if !key.contains_key("instance") {
            time_labels.push(("instance".into(), String::new()));
            time_labels.sort();
        }
        Self {
            key,
            families: BTreeMap::new(),
            push_time: 0.0,
            push_failure_time: 0.0,
            last_push_successful: true,
            ttl: None,
            series: 0,
            time_labels,
        }
    }

    /// Unix seconds of the last change, failed or not.
    pub fn last_change(&self) -> f64 {
        self.push_time.max(self.push_failure_time)
    }

    /// Whether the group has expired at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.ttl
            .is_some_and(|ttl| unix(now) >= self.last_change() + ttl.as_secs_f64())
    }

    /// The group's native histograms (see [`PushObserver::group_histograms`]).
    pub fn native_histograms(&self) -> Vec<HistogramSample> {
        let mut out = Vec::new();
        for f in self.families.values() {
            for m in &f.metrics {
                if let Value::Histogram {
                    native: Some(n), ..
                } = &m.value
                {
                    let mut labels = vec![("__name__".to_owned(), f.name.clone())];
                    labels.extend(parse_label_block(f.block(m)));
                    labels.sort();
                    out.push((labels, Arc::new((**n).clone())));
                }
            }
        }
        out
    }

    /// The group's float samples (see [`PushObserver`]).
    pub fn samples(&self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.series + 2);
        for f in self.families.values() {
            for m in &f.metrics {
                let metric = Metric {
                    labels: parse_label_block(f.block(m)),
                    value: m.value.clone(),
                    timestamp_ms: None,
                };
                expand_samples(&f.name, &metric, &mut out);
            }
        }
        for (name, v) in [
            (PUSH_TIME, self.push_time),
            (PUSH_FAILURE_TIME, self.push_failure_time),
        ] {
            let mut labels = vec![("__name__".to_owned(), name.to_owned())];
            labels.extend(self.time_labels.iter().cloned());
            out.push((labels, v));
        }
        out
    }

    /// Whether a series could be in both this group and `other` (no grouping label with
    /// different values in the two keys).
    fn compatible(&self, other: &GroupKey) -> bool {
        self.key
            .iter()
            .all(|(k, v)| other.get(k).is_none_or(|w| w == v))
    }
}

/// Unix seconds of a time.
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The time of Unix seconds, if it is one: finite, not negative, representable (never
/// panics, whatever a persistence file or a TTL holds).
pub fn from_unix(secs: f64) -> Option<SystemTime> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| UNIX_EPOCH.checked_add(d))
}

#[derive(Debug, Default)]
struct Inner {
    groups: BTreeMap<GroupKey, Group>,
    /// Family name → (type, number of groups holding it).
    index: BTreeMap<String, (MetricType, usize)>,
    total_series: usize,
    /// Bumped on every change; persistence writes when it moved.
    generation: u64,
}

/// What a successful change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub groups: usize,
    pub series: usize,
}

/// Family name → type of the gateway's own metrics.
type OwnMap = Arc<HashMap<String, MetricType>>;

/// How the gateway's own metric names are known (for the consistency check).
struct OwnNames {
    registry: Option<Registry>,
    cache: Mutex<(Option<Instant>, OwnMap)>,
}

impl OwnNames {
    fn get(&self) -> OwnMap {
        let Some(registry) = &self.registry else {
            return Arc::default();
        };
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if cache
            .0
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            let map = registry
                .gather()
                .iter()
                .map(|mf| {
                    let kind = match mf.get_field_type() {
                        prometheus::proto::MetricType::COUNTER => MetricType::Counter,
                        prometheus::proto::MetricType::GAUGE => MetricType::Gauge,
                        prometheus::proto::MetricType::SUMMARY => MetricType::Summary,
                        prometheus::proto::MetricType::HISTOGRAM => MetricType::Histogram,
                        _ => MetricType::Untyped,
                    };
                    (mf.name().to_owned(), kind)
                })
                .collect();
            *cache = (Some(Instant::now()), Arc::new(map));
        }
        cache.1.clone()
    }
}

/// All groups, behind one lock.
pub struct Store {
    inner: RwLock<Inner>,
    observers: RwLock<Vec<Arc<dyn PushObserver>>>,
    own: OwnNames,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(None)
    }
}

/// A push: what to apply to which group.
#[derive(Debug, Clone)]
pub struct Push {
    pub key: GroupKey,
    pub families: Vec<Family>,
    /// PUT (true) replaces the whole group; POST (false) only the pushed families.
    pub replace: bool,
    /// The TTL the group gets (None = never expires).
    pub ttl: Option<Duration>,
    /// The limits this push is checked against (those in effect when it arrived).
    pub limits: Limits,
}

fn inconsistent(msg: String) -> PushError {
    PushError::Inconsistent(msg)
}

/// Applies the grouping key to pushed families and checks them on their own (valid names,
/// no timestamps, no duplicate series, no reserved labels, the label limits). Families
/// named like the per-group time gauges are dropped: the store owns those. Every check is
/// linear (or `n log n`) in the labels of a series, however many it has.
pub fn prepare(
    key: &GroupKey,
    families: Vec<Family>,
    now: SystemTime,
    limits: LabelLimits,
) -> Result<Vec<StoredFamily>, PushError> {
    // The grouping labels (and `instance`) are labels of every series of the group.
    limits.check(PUSH_TIME, &Group::new(key.clone()).time_labels)?;
    let mut merged: Vec<Family> = Vec::with_capacity(families.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for mut fam in families {
        if fam.name == PUSH_TIME || fam.name == PUSH_FAILURE_TIME {
            continue;
        }
        if !is_valid_metric_name(&fam.name) {
            return Err(inconsistent(format!(
                "metric family name {:?} is not a valid metric name",
                fam.name
            )));
        }
        for m in &mut fam.metrics {
            if m.timestamp_ms.is_some() {
                return Err(inconsistent(
                    "pushed metrics must not have timestamps".into(),
                ));
            }
            limits.check(&fam.name, &m.labels)?;
            // Sorted by name, duplicate names are neighbours.
            m.labels.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some(w) = m.labels.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(inconsistent(format!(
                    "metric {} has two or more labels with the same name: {}",
                    describe(&fam.name, &m.labels),
                    w[0].0
                )));
            }
            for (k, _) in &m.labels {
                if !is_valid_label_name(k) || k.starts_with("__") {
                    return Err(inconsistent(format!(
                        "metric {} has a label with an invalid name: {k}",
                        describe(&fam.name, &m.labels)
                    )));
                }
                let reserved = match fam.kind {
                    MetricType::Histogram => k == "le",
                    MetricType::Summary => k == "quantile",
                    _ => false,
                };
                if reserved {
                    return Err(inconsistent(format!(
                        "{} metric {} must not have an explicit {k:?} label",
                        fam.kind.as_text(),
                        describe(&fam.name, &m.labels)
                    )));
                }
            }
            apply_key(key, &mut m.labels);
            limits.check_count(&fam.name, &m.labels)?;
        }
        // A family may appear twice in a protobuf stream; merge like one gather would.
        if let Some(&i) = seen.get(&fam.name) {
            let prev: &mut Family = &mut merged[i];
            if prev.kind != fam.kind {
                return Err(inconsistent(format!(
                    "metric family {:?} appears twice in the push, as {} and as {}",
                    fam.name,
                    prev.kind.as_upper(),
                    fam.kind.as_upper()
                )));
            }
            prev.metrics.extend(fam.metrics);
        } else {
            seen.insert(fam.name.clone(), merged.len());
            merged.push(fam);
        }
    }
    let out: Vec<StoredFamily> = merged
        .into_iter()
        .map(|f| StoredFamily::new(f, now))
        .collect();
    for f in &out {
        let mut seen = HashSet::with_capacity(f.metrics.len());
        for m in &f.metrics {
            if !seen.insert(series_identity(f.block(m))) {
                return Err(inconsistent(format!(
                    "metric {}{{{}}} was pushed twice with the same name and label values (an empty label counts as absent)",
                    f.name,
                    f.block(m)
                )));
            }
        }
    }
    Ok(out)
}

/// Grouping labels override body labels; `instance=""` is added when absent. `labels` must
/// be sorted by name with unique names (as [`prepare`] leaves them); the result is too.
fn apply_key(key: &GroupKey, labels: &mut Vec<(String, String)>) {
    let body = labels.len();
    let find = |labels: &[(String, String)], k: &str| {
        labels[..body].binary_search_by(|(n, _)| n.as_str().cmp(k))
    };
    for (k, v) in key {
        match find(labels, k) {
            Ok(i) => labels[i].1.clone_from(v),
            Err(_) => labels.push((k.clone(), v.clone())),
        }
    }
    if find(labels, "instance").is_err() && !key.contains_key("instance") {
        labels.push(("instance".into(), String::new()));
    }
    labels.sort();
}

fn series_of(f: &StoredFamily) -> usize {
    f.metrics.len()
}

impl Store {
    /// An empty store. `own_registry` holds the gateway's own metrics, which pushes may not
    /// clash with.
    pub fn new(own_registry: Option<Registry>) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            observers: RwLock::new(Vec::new()),
            own: OwnNames {
                registry: own_registry,
                cache: Mutex::new((None, Arc::default())),
            },
        }
    }

    /// Registers an observer of group changes (see the module documentation). The observer
    /// is first told about every group already held (e.g. loaded from the persistence
    /// file), so it starts from the same state as `/metrics`.
    pub fn add_observer(&self, observer: Arc<dyn PushObserver>) {
        let inner = self.read();
        let now = SystemTime::now();
        for (key, group) in &inner.groups {
            observer.group_changed(now, key, &group.samples());
            observer.group_histograms(now, key, &group.native_histograms());
        }
        // Registered while the read lock is held: no change can slip in between.
        match self.observers.write() {
            Ok(mut o) => o.push(observer),
            Err(p) => p.into_inner().push(observer),
        }
        drop(inner);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        match self.inner.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn notify(&self, at: SystemTime, key: &GroupKey, group: Option<&Group>) {
        let observers = match self.observers.read() {
            Ok(o) => o,
            Err(p) => p.into_inner(),
        };
        if observers.is_empty() {
            return;
        }
        let samples = group.map(Group::samples).unwrap_or_default();
        let histograms = group.map(Group::native_histograms).unwrap_or_default();
        for o in observers.iter() {
            o.group_changed(at, key, &samples);
            o.group_histograms(at, key, &histograms);
        }
    }

    /// Applies a push at `now`: checks it against the rest of the store and commits it, or
    /// records the failure in the group's `push_failure_time_seconds` and changes nothing
    /// else.
    pub fn push(&self, push: Push, now: SystemTime) -> Result<Stats, PushError> {
        let prepared = prepare(&push.key, push.families, now, push.limits.labels);
        let own = self.own.get();
        let limits = push.limits;
        let mut inner = self.write();
        let result = prepared.and_then(|fams| {
            let check = Self::check(&inner, &push.key, &fams, push.replace, &own, limits);
            check.map(|new_series| (fams, new_series))
        });
        let inner = &mut *inner;
        inner.generation += 1;
        match result {
            Ok((fams, series)) => {
                let group = inner
                    .groups
                    .entry(push.key.clone())
                    .or_insert_with(|| Group::new(push.key.clone()));
                if push.replace {
                    for name in group.families.keys() {
                        unindex(&mut inner.index, name);
                    }
                    group.families.clear();
                } else {
                    for f in &fams {
                        if group.families.contains_key(&f.name) {
                            unindex(&mut inner.index, &f.name);
                        }
                    }
                }
                for f in fams {
                    let e = inner.index.entry(f.name.clone()).or_insert((f.kind, 0));
                    e.0 = f.kind;
                    e.1 += 1;
                    group.families.insert(f.name.clone(), f);
                }
                inner.total_series = inner.total_series - group.series + series;
                group.series = series;
                group.push_time = unix(now);
                group.last_push_successful = true;
                group.ttl = push.ttl;
                self.notify(now, &push.key, Some(group));
                Ok(Stats {
                    groups: inner.groups.len(),
                    series: inner.total_series,
                })
            }
            Err(e) => {
                // A refused push to a new group creates it to hold the failure time, unless
                // its time gauges would duplicate another group's series (the Pushgateway
                // creates it anyway and its /metrics then fails for everyone) or it broke a
                // label limit (the grouping key itself may be what is over it).
                let label_limit = matches!(
                    &e,
                    PushError::Limit(
                        LimitError::LabelsPerSeries { .. }
                            | LimitError::LabelNameLength { .. }
                            | LimitError::LabelValueLength { .. }
                    )
                );
                if !inner.groups.contains_key(&push.key)
                    && (label_limit || Self::time_series_taken(inner, &push.key))
                {
                    return Err(e);
                }
                let group = inner
                    .groups
                    .entry(push.key.clone())
                    .or_insert_with(|| Group::new(push.key.clone()));
                group.push_failure_time = unix(now);
                group.last_push_successful = false;
                if group.families.is_empty() && group.push_time == 0.0 {
                    group.ttl = push.ttl;
                }
                self.notify(now, &push.key, Some(group));
                Err(e)
            }
        }
    }

    /// Whether another group already exposes the `push_time_seconds` series a group with
    /// `key` would.
    fn time_series_taken(inner: &Inner, key: &GroupKey) -> bool {
        let probe = Group::new(key.clone());
        let mine = label_block(&probe.time_labels);
        let mine = series_identity(&mine);
        inner.groups.iter().any(|(k, g)| {
            k != key && probe.compatible(k) && series_identity(&label_block(&g.time_labels)) == mine
        })
    }

    /// The consistency check: returns the group's series count after the push.
    fn check(
        inner: &Inner,
        key: &GroupKey,
        fams: &[StoredFamily],
        replace: bool,
        own: &HashMap<String, MetricType>,
        limits: Limits,
    ) -> Result<usize, PushError> {
        let old = inner.groups.get(key);
        // The group's families after the push: name → (kind, family).
        let mut after: BTreeMap<&str, &StoredFamily> = BTreeMap::new();
        if let (Some(old), false) = (old, replace) {
            for (n, f) in &old.families {
                after.insert(n, f);
            }
        }
        for f in fams {
            after.insert(&f.name, f);
        }
        let in_old = |name: &str| old.is_some_and(|g| g.families.contains_key(name));
        // Type of `name` held by groups other than this one.
        let elsewhere = |name: &str| -> Option<MetricType> {
            let (kind, count) = inner.index.get(name)?;
            let others = count - usize::from(in_old(name));
            (others > 0).then_some(*kind)
        };
        let kind_of = |name: &str| -> Option<MetricType> {
            after.get(name).map(|f| f.kind).or_else(|| elsewhere(name))
        };
        for f in fams {
            let name = f.name.as_str();
            if let Some(kind) = own.get(name) {
                return Err(inconsistent(format!(
                    "metric family {name:?} ({}) collides with the gateway's own {} metric of that name",
                    f.kind.as_upper(),
                    kind.as_upper()
                )));
            }
            if let Some(kind) = elsewhere(name) {
                if kind != f.kind {
                    return Err(inconsistent(format!(
                        "metric family {name:?} is pushed as {} but other groups have it as {}",
                        f.kind.as_upper(),
                        kind.as_upper()
                    )));
                }
            }
            let suffixes: &[&str] = match f.kind {
                MetricType::Histogram => &["_bucket", "_count", "_sum"],
                MetricType::Summary => &["_count", "_sum"],
                _ => &[],
            };
            for s in suffixes {
                let other = format!("{name}{s}");
                if kind_of(&other).is_some() || own.contains_key(&other) {
                    return Err(inconsistent(format!(
                        "{} {name:?} collides with metric {other:?} (its {s} series would clash)",
                        f.kind.as_text()
                    )));
                }
            }
            for (s, kinds) in [
                ("_count", &[MetricType::Histogram, MetricType::Summary][..]),
                ("_sum", &[MetricType::Histogram, MetricType::Summary][..]),
                ("_bucket", &[MetricType::Histogram][..]),
            ] {
                if let Some(base) = name.strip_suffix(s) {
                    let base_kind = kind_of(base).or_else(|| own.get(base).copied());
                    if let Some(k) = base_kind.filter(|k| kinds.contains(k)) {
                        return Err(inconsistent(format!(
                            "metric {name:?} collides with the {} {base:?} (whose {s} series it would duplicate)",
                            k.as_text()
                        )));
                    }
                }
            }
        }
        let series: usize = after.values().map(|f| series_of(f)).sum();
        if limits.max_series_per_group > 0 && series > limits.max_series_per_group {
            return Err(LimitError::SeriesPerGroup {
                series,
                limit: limits.max_series_per_group,
            }
            .into());
        }
        let old_series = old.map_or(0, |g| g.series);
        let total = inner.total_series - old_series + series;
        if limits.max_total_series > 0 && total > limits.max_total_series && series > old_series {
            return Err(LimitError::TotalSeries {
                total,
                limit: limits.max_total_series,
            }
            .into());
        }
        // Duplicate series across groups: only groups whose keys do not disagree on a label
        // can share a series.
        let probe = Group::new(key.clone());
        for (other_key, other) in &inner.groups {
            if other_key == key || !probe.compatible(other_key) {
                continue;
            }
            let (a, b) = (
                label_block(&other.time_labels),
                label_block(&probe.time_labels),
            );
            if series_identity(&a) == series_identity(&b) {
                return Err(inconsistent(format!(
                    "metric {} was collected before with the same name and label values (group {} yields the same series)",
                    describe(PUSH_TIME, &probe.time_labels),
                    crate::grouping::to_path(other_key)
                )));
            }
            for f in fams {
                let Some(theirs) = other.families.get(&f.name) else {
                    continue;
                };
                let set: HashSet<_> = theirs
                    .metrics
                    .iter()
                    .map(|m| series_identity(theirs.block(m)))
                    .collect();
                if let Some(m) = f
                    .metrics
                    .iter()
                    .find(|m| set.contains(&series_identity(f.block(m))))
                {
                    return Err(inconsistent(format!(
                        "metric {}{{{}}} was collected before with the same name and label values (in group {})",
                        f.name,
                        f.block(m),
                        crate::grouping::to_path(other_key)
                    )));
                }
            }
        }
        Ok(series)
    }

    /// Removes a group (no error if absent). Returns whether it existed.
    pub fn delete(&self, key: &GroupKey, now: SystemTime) -> bool {
        let mut inner = self.write();
        let removed = Self::remove(&mut inner, key);
        if removed {
            self.notify(now, key, None);
        }
        removed
    }

    fn remove(inner: &mut Inner, key: &GroupKey) -> bool {
        let Some(group) = inner.groups.remove(key) else {
            return false;
        };
        for name in group.families.keys() {
            unindex(&mut inner.index, name);
        }
        inner.total_series -= group.series;
        inner.generation += 1;
        true
    }

    /// Removes every group whose key satisfies `pred`; returns how many.
    pub fn delete_where(&self, now: SystemTime, pred: impl Fn(&Group) -> bool) -> usize {
        let mut inner = self.write();
        let doomed: Vec<GroupKey> = inner
            .groups
            .values()
            .filter(|g| pred(g))
            .map(|g| g.key.clone())
            .collect();
        for key in &doomed {
            Self::remove(&mut inner, key);
            self.notify(now, key, None);
        }
        doomed.len()
    }

    /// Removes every group.
    pub fn wipe(&self, now: SystemTime) -> usize {
        self.delete_where(now, |_| true)
    }

    /// Removes the groups whose TTL has run out at `now`; returns how many.
    pub fn expire(&self, now: SystemTime) -> usize {
        {
            let inner = self.read();
            if !inner.groups.values().any(|g| g.expired(now)) {
                return 0;
            }
        }
        self.delete_where(now, |g| g.expired(now))
    }

    /// Reads the store: groups in key order and the family index.
    pub fn with_groups<R>(
        &self,
        f: impl FnOnce(&BTreeMap<GroupKey, Group>, &BTreeMap<String, (MetricType, usize)>) -> R,
    ) -> R {
        let inner = self.read();
        f(&inner.groups, &inner.index)
    }

    /// Number of groups and series.
    pub fn stats(&self) -> Stats {
        let inner = self.read();
        Stats {
            groups: inner.groups.len(),
            series: inner.total_series,
        }
    }

    /// The change counter (persistence writes when it moved).
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Puts groups loaded from disk back, without checks (they were checked when pushed)
    /// and without notifying observers.
    pub fn restore(&self, groups: Vec<Group>) {
        let mut inner = self.write();
        for mut g in groups {
            g.series = g.families.values().map(series_of).sum();
            if let Some(old) = inner.groups.get(&g.key).cloned() {
                Self::remove(&mut inner, &old.key);
            }
            for f in g.families.values() {
                let e = inner.index.entry(f.name.clone()).or_insert((f.kind, 0));
                e.1 += 1;
            }
            inner.total_series += g.series;
            inner.groups.insert(g.key.clone(), g);
        }
    }

    /// Builds a group for [`Store::restore`].
    pub fn restored_group(
        key: GroupKey,
        families: Vec<StoredFamily>,
        push_time: f64,
        push_failure_time: f64,
        last_push_successful: bool,
        ttl: Option<Duration>,
    ) -> Group {
        let mut g = Group::new(key);
        for f in families {
            g.families.insert(f.name.clone(), f);
        }
        g.push_time = push_time;
        g.push_failure_time = push_failure_time;
        g.last_push_successful = last_push_successful;
        g.ttl = ttl;
        g
    }
}

fn unindex(index: &mut BTreeMap<String, (MetricType, usize)>, name: &str) {
    if let Some(e) = index.get_mut(name) {
        e.1 -= 1;
        if e.1 == 0 {
            index.remove(name);
        }
    }
}

/// A family value for tests and for building pushes in code.
pub fn simple_family(name: &str, kind: MetricType, metrics: &[(&[(&str, &str)], f64)]) -> Family {
    Family {
        name: name.into(),
        help: None,
        kind,
        metrics: metrics
            .iter()
            .map(|(labels, v)| Metric {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                value: Value::Simple(*v),
                timestamp_ms: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pairs: &[(&str, &str)]) -> GroupKey {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn push(key: GroupKey, families: Vec<Family>) -> Push {
        Push {
            key,
            families,
            replace: true,
            ttl: None,
            limits: Limits::default(),
        }
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(GroupKey, Vec<Sample>)>>);
    impl PushObserver for Recorder {
        fn group_changed(&self, _at: SystemTime, group: &GroupKey, samples: &[Sample]) {
            self.0
                .lock()
                .unwrap()
                .push((group.clone(), samples.to_vec()));
        }
    }

    #[test]
    fn type_clash_is_rejected_and_only_failure_time_changes() {
        let store = Store::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1000);
        let t1 = UNIX_EPOCH + Duration::from_secs(2000);
        store
            .push(
                push(
                    key(&[("job", "a")]),
                    vec![simple_family("foo", MetricType::Counter, &[(&[], 1.0)])],
                ),
                t0,
            )
            .unwrap();
        store
            .push(
                push(
                    key(&[("job", "b")]),
                    vec![simple_family("bar", MetricType::Gauge, &[(&[], 1.0)])],
                ),
                t0,
            )
            .unwrap();
        let err = store
            .push(
                push(
                    key(&[("job", "b")]),
                    vec![simple_family("foo", MetricType::Gauge, &[(&[], 2.0)])],
                ),
                t1,
            )
            .unwrap_err();
        assert!(err.to_string().contains("\"foo\""), "{err}");
        assert!(err.to_string().contains("COUNTER"), "{err}");
        store.with_groups(|groups, _| {
            let b = &groups[&key(&[("job", "b")])];
            assert!(b.families.contains_key("bar"), "old state kept");
            assert!(!b.families.contains_key("foo"));
            assert_eq!(b.push_time, 1000.0);
            assert_eq!(b.push_failure_time, 2000.0);
            assert!(!b.last_push_successful);
        });
    }

    #[test]
    fn duplicate_series_across_groups_and_suffix_clashes_are_rejected() {
        let store = Store::default();
        let now = SystemTime::now();
        store
            .push(
                push(
                    key(&[("job", "a"), ("b", "x")]),
                    vec![simple_family("y", MetricType::Untyped, &[(&[], 1.0)])],
                ),
                now,
            )
            .unwrap();
        // Body label b="x" under {job=a} yields the same series as group {job=a,b=x}.
        let err = store
            .push(
                push(
                    key(&[("job", "a")]),
                    vec![simple_family(
                        "y",
                        MetricType::Untyped,
                        &[(&[("b", "x")], 1.0)],
                    )],
                ),
                now,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("same name and label values"),
            "{err}"
        );
        // {job=a,instance=""} yields the same push_time_seconds series as {job=a}.
        store.push(push(key(&[("job", "c")]), vec![]), now).unwrap();
        let err = store
            .push(push(key(&[("job", "c"), ("instance", "")]), vec![]), now)
            .unwrap_err();
        assert!(err.to_string().contains(PUSH_TIME), "{err}");
        // {job=c,e=""} is {job=c} to a scraper: an empty label is an absent one.
        let err = store
            .push(push(key(&[("job", "c"), ("e", "")]), vec![]), now)
            .unwrap_err();
        assert!(err.to_string().contains(PUSH_TIME), "{err}");
        // Neither refused push left a group behind whose time gauges would clash.
        store.with_groups(|groups, _| {
            assert!(!groups.contains_key(&key(&[("job", "c"), ("instance", "")])));
            assert!(!groups.contains_key(&key(&[("job", "c"), ("e", "")])));
        });

        let mut h = simple_family("h", MetricType::Histogram, &[]);
        h.metrics.push(Metric {
            labels: vec![],
            value: Value::Histogram {
                count: 1.0,
                sum: 1.0,
                buckets: vec![],
                native: None,
            },
            timestamp_ms: None,
        });
        store
            .push(push(key(&[("job", "h")]), vec![h]), now)
            .unwrap();
        let err = store
            .push(
                push(
                    key(&[("job", "g")]),
                    vec![simple_family("h_count", MetricType::Gauge, &[(&[], 1.0)])],
                ),
                now,
            )
            .unwrap_err();
        assert!(err.to_string().contains("h_count"), "{err}");
    }

    #[test]
    fn observers_see_full_samples_and_deletions_and_ttl_expires() {
        let store = Store::default();
        let rec = Arc::new(Recorder::default());
        store.add_observer(rec.clone());
        let t0 = UNIX_EPOCH + Duration::from_secs(100);
        let k = key(&[("job", "a")]);
        store
            .push(
                Push {
                    ttl: Some(Duration::from_secs(60)),
                    ..push(
                        k.clone(),
                        vec![simple_family("x", MetricType::Gauge, &[(&[], 5.0)])],
                    )
                },
                t0,
            )
            .unwrap();
        {
            let seen = rec.0.lock().unwrap();
            let (_, samples) = &seen[0];
            let names: Vec<String> = samples.iter().map(|(l, _)| l[0].1.clone()).collect();
            assert_eq!(names, vec!["x", PUSH_TIME, PUSH_FAILURE_TIME]);
            assert_eq!(
                samples[0].0,
                vec![
                    ("__name__".to_owned(), "x".to_owned()),
                    ("instance".to_owned(), String::new()),
                    ("job".to_owned(), "a".to_owned())
                ]
            );
            assert_eq!(samples[1].1, 100.0);
        }
        // A late observer is told about the groups already held.
        let late = Arc::new(Recorder::default());
        store.add_observer(late.clone());
        assert_eq!(late.0.lock().unwrap().len(), 1);
        assert_eq!(late.0.lock().unwrap()[0].1.len(), 3);
        assert_eq!(store.expire(t0 + Duration::from_secs(59)), 0);
        assert_eq!(store.expire(t0 + Duration::from_secs(60)), 1);
        assert_eq!(store.stats().groups, 0);
        let seen = rec.0.lock().unwrap();
        assert!(seen.last().unwrap().1.is_empty(), "deletion reported empty");
    }

    #[test]
    fn limits_reject_and_keep_state() {
        let store = Store::default();
        let limits = Limits {
            max_series_per_group: 2,
            max_total_series: 3,
            ..Limits::default()
        };
        let limited = |key, families| Push {
            limits,
            ..push(key, families)
        };
        let now = SystemTime::now();
        let three = simple_family(
            "x",
            MetricType::Gauge,
            &[
                (&[("a", "1")], 1.0),
                (&[("a", "2")], 1.0),
                (&[("a", "3")], 1.0),
            ],
        );
        let err = store
            .push(limited(key(&[("job", "a")]), vec![three]), now)
            .unwrap_err();
        assert_eq!(
            err,
            PushError::Limit(LimitError::SeriesPerGroup {
                series: 3,
                limit: 2
            })
        );
        let two = simple_family(
            "x",
            MetricType::Gauge,
            &[(&[("a", "1")], 1.0), (&[("a", "2")], 1.0)],
        );
        store
            .push(limited(key(&[("job", "a")]), vec![two.clone()]), now)
            .unwrap();
        let err = store
            .push(limited(key(&[("job", "b")]), vec![two.clone()]), now)
            .unwrap_err();
        assert_eq!(
            err,
            PushError::Limit(LimitError::TotalSeries { total: 4, limit: 3 })
        );
        // Replacing a group with the same size is fine even at the limit.
        store
            .push(limited(key(&[("job", "a")]), vec![two]), now)
            .unwrap();
        assert_eq!(store.stats().series, 2);
    }

    #[test]
    fn label_limits_count_the_grouping_key_and_duplicates_are_found_among_many_labels() {
        let store = Store::default();
        let now = SystemTime::now();
        let limits = Limits {
            labels: LabelLimits {
                max_labels_per_series: 3,
                ..LabelLimits::NONE
            },
            ..Limits::default()
        };
        let x =
            |labels: &[(&str, &str)]| vec![simple_family("x", MetricType::Gauge, &[(labels, 1.0)])];
        // a, b + job + instance = 4 labels.
        let err = store
            .push(
                Push {
                    limits,
                    ..push(key(&[("job", "j")]), x(&[("a", "1"), ("b", "2")]))
                },
                now,
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                PushError::Limit(LimitError::LabelsPerSeries { count: 4, .. })
            ),
            "{err:?}"
        );
        assert_eq!(store.stats().series, 0);
        // A grouping key over the limit on its own: refused, and no group holds its failure.
        let wide_key = key(&[("job", "j"), ("a", "1"), ("b", "2")]);
        let err = store
            .push(
                Push {
                    limits,
                    ..push(wide_key, vec![])
                },
                now,
            )
            .unwrap_err();
        assert!(err.to_string().contains("push_time_seconds{"), "{err}");
        assert_eq!(
            store.stats(),
            Stats {
                groups: 0,
                series: 0
            }
        );
        // Without limits, 80,000 labels with one duplicate name are refused by name.
        let mut labels: Vec<(String, String)> = (0..80_000)
            .map(|i| (format!("l{i}"), String::new()))
            .collect();
        labels.push(("l79999".into(), "again".into()));
        let fam = Family {
            name: "y".into(),
            help: None,
            kind: MetricType::Gauge,
            metrics: vec![Metric {
                labels,
                value: Value::Simple(1.0),
                timestamp_ms: None,
            }],
        };
        let err = store
            .push(push(key(&[("job", "j")]), vec![fam]), now)
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("same name: l79999"), "{msg}");
        assert!(msg.len() < 400, "the message stays short: {msg}");
    }
}
