//! A small kustomize renderer for the deploy test: enough of kustomize to build
//! deploy/kubernetes/overlays/* without a cluster or the kustomize binary, and strict about
//! the rest (a field or patch form it does not model is an error, never silently skipped).
//!
//! Modelled: `resources` (files and kustomization folders), `configMapGenerator` /
//! `secretGenerator` (`files`, `literals`, `envs`; names without hash suffix only),
//! `generatorOptions` (`labels`, `disableNameSuffixHash`), `patches` (strategic merge or
//! JSON 6902 `add`/`remove`/`replace`/`test`, from `path` or inline `patch`, with or
//! without `target`) and `images`. When kubectl is installed the test compares this
//! renderer's output with `kubectl kustomize`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

/// One rendered object and the file (or generator) it came from, for messages.
#[derive(Debug, Clone)]
pub struct Object {
    pub doc: Value,
    pub source: String,
}

impl Object {
    pub fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or("")
    }
    pub fn namespace(&self) -> &str {
        self.doc["metadata"]["namespace"].as_str().unwrap_or("")
    }
    /// `Kind namespace/name (source)`, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{} {}/{} ({})",
            self.kind(),
            self.namespace(),
            self.name(),
            self.source
        )
    }
}

/// The output of one kustomization: its objects and every file it read.
#[derive(Debug, Default)]
pub struct Render {
    pub objects: Vec<Object>,
    pub files: Vec<PathBuf>,
}

type Result<T> = std::result::Result<T, String>;

const KNOWN_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "patches",
    "images",
];

/// Renders the kustomization in `dir`.
pub fn build(dir: &Path) -> Result<Render> {
    let file = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .ok_or_else(|| format!("{}: no kustomization.yaml", dir.display()))?;
    let text = read(&file)?;
    let k: Value = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let map = k
        .as_mapping()
        .ok_or_else(|| format!("{}: not a mapping", file.display()))?;
    for key in map.keys() {
        let key = key.as_str().unwrap_or("?");
        if !KNOWN_FIELDS.contains(&key) {
            return Err(format!(
                "{}: field `{key}` is not modelled by the test's renderer",
                file.display()
            ));
        }
    }
    let mut out = Render {
        files: vec![file.clone()],
        ..Default::default()
    };

    for r in seq(&k["resources"]) {
        let rel = r
            .as_str()
            .ok_or_else(|| format!("{}: resources entry {r:?}", file.display()))?;
        let path = dir.join(rel);
        if path.is_dir() {
            let sub = build(&path)?;
            out.files.extend(sub.files);
            out.objects.extend(sub.objects);
        } else {
            out.files.push(path.clone());
            out.objects.extend(read_objects(&path)?);
        }
    }

    let options = &k["generatorOptions"];
    for (kind, field) in [
        ("ConfigMap", "configMapGenerator"),
        ("Secret", "secretGenerator"),
    ] {
        for g in seq(&k[field]) {
            let obj = generate(dir, &file, kind, g, options, &mut out.files)?;
            out.objects.push(obj);
        }
    }

    for (i, p) in seq(&k["patches"]).iter().enumerate() {
        let where_ = format!("{} patches[{i}]", file.display());
        let body = match (p["path"].as_str(), p["patch"].as_str()) {
            (Some(rel), None) => {
                let path = dir.join(rel);
                out.files.push(path.clone());
                read(&path)?
            }
            (None, Some(inline)) => inline.to_string(),
            _ => return Err(format!("{where_}: needs exactly one of `path` and `patch`")),
        };
        apply_patch(&mut out.objects, &body, &p["target"], &where_)?;
    }

    for (i, img) in seq(&k["images"]).iter().enumerate() {
        let name = img["name"]
            .as_str()
            .ok_or_else(|| format!("{} images[{i}]: no name", file.display()))?;
        for o in &mut out.objects {
            for c in containers_mut(&mut o.doc) {
                let Some(image) = c["image"].as_str() else {
                    continue;
                };
                let (img_name, tag) = split_image(image);
                if img_name != name {
                    continue;
                }
                let new_name = img["newName"].as_str().unwrap_or(img_name).to_string();
                let new_tag = match img["newTag"].as_str() {
                    Some(t) => Some(t.to_string()),
                    None => tag.map(str::to_string),
                };
                let new = match new_tag {
                    Some(t) => format!("{new_name}:{t}"),
                    None => new_name,
                };
                c["image"] = Value::String(new);
            }
        }
    }

    let mut seen = BTreeMap::new();
    for o in &out.objects {
        let key = (
            o.kind().to_string(),
            o.namespace().to_string(),
            o.name().to_string(),
        );
        if let Some(first) = seen.insert(key, o.source.clone()) {
            return Err(format!(
                "{} is defined twice (also in {first})",
                o.describe()
            ));
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn seq(v: &Value) -> Vec<Value> {
    v.as_sequence().cloned().unwrap_or_default()
}

/// Every YAML document of a manifest file (empty documents skipped).
pub fn read_objects(path: &Path) -> Result<Vec<Object>> {
    let text = read(path)?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).map_err(|e| format!("{}: {e}", path.display()))?;
        if v.is_null() {
            continue;
        }
        if !v["kind"].is_string() || !v["apiVersion"].is_string() {
            return Err(format!(
                "{}: a document without kind/apiVersion",
                path.display()
            ));
        }
        out.push(Object {
            doc: v,
            source: path.display().to_string(),
        });
    }
    Ok(out)
}

fn generate(
    dir: &Path,
    file: &Path,
    kind: &str,
    g: Value,
    options: &Value,
    files: &mut Vec<PathBuf>,
) -> Result<Object> {
    let name = g["name"]
        .as_str()
        .ok_or_else(|| format!("{}: a {kind} generator without name", file.display()))?;
    let where_ = format!("{} {kind} generator {name}", file.display());
    for key in g.as_mapping().into_iter().flat_map(|m| m.keys()) {
        let key = key.as_str().unwrap_or("?");
        if ![
            "name",
            "namespace",
            "files",
            "literals",
            "envs",
            "options",
            "type",
        ]
        .contains(&key)
        {
            return Err(format!("{where_}: field `{key}` is not modelled"));
        }
    }
    let no_hash = g["options"]["disableNameSuffixHash"]
        .as_bool()
        .or(options["disableNameSuffixHash"].as_bool())
        .unwrap_or(false);
    if !no_hash {
        return Err(format!(
            "{where_}: names with a hash suffix are not modelled (set disableNameSuffixHash)"
        ));
    }
    let mut data = Mapping::new();
    for f in seq(&g["files"]) {
        let spec = f.as_str().ok_or_else(|| format!("{where_}: files entry"))?;
        let (key, rel) = match spec.split_once('=') {
            Some((k, p)) => (k.to_string(), p),
            None => (
                Path::new(spec)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| format!("{where_}: {spec}"))?
                    .to_string(),
                spec,
            ),
        };
        let path = dir.join(rel);
        files.push(path.clone());
        data.insert(Value::String(key), Value::String(read(&path)?));
    }
    for l in seq(&g["literals"]) {
        let spec = l
            .as_str()
            .ok_or_else(|| format!("{where_}: literals entry"))?;
        let (k, v) = spec
            .split_once('=')
            .ok_or_else(|| format!("{where_}: literal {spec:?} has no `=`"))?;
        data.insert(Value::String(k.into()), Value::String(v.into()));
    }
    for e in seq(&g["envs"]) {
        let rel = e.as_str().ok_or_else(|| format!("{where_}: envs entry"))?;
        let path = dir.join(rel);
        files.push(path.clone());
        for (n, line) in read(&path)?.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("{}:{}: no `=`", path.display(), n + 1))?;
            data.insert(Value::String(k.into()), Value::String(v.into()));
        }
    }
    let mut labels = Mapping::new();
    for src in [&options["labels"], &g["options"]["labels"]] {
        if let Some(m) = src.as_mapping() {
            labels.extend(m.clone());
        }
    }
    let mut metadata = Mapping::new();
    metadata.insert("name".into(), Value::String(name.into()));
    if let Some(ns) = g["namespace"].as_str() {
        metadata.insert("namespace".into(), Value::String(ns.into()));
    }
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Mapping(labels));
    }
    let mut doc = Mapping::new();
    doc.insert("apiVersion".into(), "v1".into());
    doc.insert("kind".into(), Value::String(kind.into()));
    doc.insert("metadata".into(), Value::Mapping(metadata));
    if kind == "Secret" {
        doc.insert(
            "type".into(),
            Value::String(g["type"].as_str().unwrap_or("Opaque").into()),
        );
        // Kept as plain strings (kustomize writes base64 `data`).
        doc.insert("stringData".into(), Value::Mapping(data));
    } else {
        doc.insert("data".into(), Value::Mapping(data));
    }
    Ok(Object {
        doc: Value::Mapping(doc),
        source: where_,
    })
}

fn matches_target(o: &Object, target: &Value) -> Result<bool> {
    if let Some(m) = target.as_mapping() {
        for k in m.keys() {
            let k = k.as_str().unwrap_or("?");
            if !["kind", "name", "namespace", "group", "version"].contains(&k) {
                return Err(format!("patch target field `{k}` is not modelled"));
            }
        }
    }
    let api = o.doc["apiVersion"].as_str().unwrap_or("");
    let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
    Ok(target["kind"].as_str().is_none_or(|k| k == o.kind())
        && target["name"].as_str().is_none_or(|n| n == o.name())
        && target["namespace"]
            .as_str()
            .is_none_or(|n| n == o.namespace())
        && target["group"].as_str().is_none_or(|g| g == group)
        && target["version"].as_str().is_none_or(|v| v == version))
}

fn apply_patch(objects: &mut [Object], body: &str, target: &Value, where_: &str) -> Result<()> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(body) {
        let v = Value::deserialize(doc).map_err(|e| format!("{where_}: {e}"))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    for patch in docs {
        let mut hits = 0;
        for o in objects.iter_mut() {
            let selected = if target.is_null() {
                // A strategic merge patch without target applies to the object it names.
                o.kind() == patch["kind"].as_str().unwrap_or("")
                    && o.name() == patch["metadata"]["name"].as_str().unwrap_or("")
                    && patch["metadata"]["namespace"]
                        .as_str()
                        .is_none_or(|n| n == o.namespace())
            } else {
                matches_target(o, target).map_err(|e| format!("{where_}: {e}"))?
            };
            if !selected {
                continue;
            }
            hits += 1;
            match &patch {
                Value::Sequence(ops) => json6902(&mut o.doc, ops)
                    .map_err(|e| format!("{where_} on {}: {e}", o.describe()))?,
                Value::Mapping(_) => {
                    let mut p = patch.clone();
                    if !target.is_null() {
                        // With a target, the patch's own name does not select anything.
                        if let Some(md) = p["metadata"].as_mapping_mut() {
                            md.remove("name");
                            md.remove("namespace");
                        }
                    }
                    strategic_merge(&mut o.doc, &p, "")
                        .map_err(|e| format!("{where_} on {}: {e}", o.describe()))?
                }
                _ => return Err(format!("{where_}: a patch must be a mapping or a list")),
            }
        }
        if hits == 0 {
            return Err(format!("{where_}: the patch matches no object"));
        }
    }
    Ok(())
}

/// The key a strategic merge matches list items by, for the lists our manifests patch.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "volumes" | "env" | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" if items.iter().any(|i| !i["containerPort"].is_null()) => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

/// Kubernetes' strategic merge, for what our patches use: maps merge, `null` deletes, the
/// lists of [`merge_key`] merge by key (patch items first), other lists are replaced.
pub fn strategic_merge(base: &mut Value, patch: &Value, field: &str) -> Result<()> {
    match (base, patch) {
        (Value::Mapping(b), Value::Mapping(p)) => {
            for (k, v) in p {
                let key = k.as_str().unwrap_or("");
                if key.starts_with('$') {
                    return Err(format!("directive {key} is not modelled"));
                }
                if v.is_null() {
                    b.remove(k);
                } else if let Some(existing) = b.get_mut(k) {
                    strategic_merge(existing, v, key)?;
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(p)) => match merge_key(field, b) {
            Some(key) => {
                // The patch's items come first, in its order (merged into the base's item of
                // the same key), then the items only the base has, in its order: what
                // `kubectl kustomize` gives for the lists our overlays patch (the general
                // interleaving of the two orders is not modelled).
                let mut out = Vec::with_capacity(b.len() + p.len());
                for item in p {
                    match b.iter().position(|x| x[key] == item[key]) {
                        Some(i) => {
                            let mut existing = b.remove(i);
                            strategic_merge(&mut existing, item, "")?;
                            out.push(existing);
                        }
                        None => out.push(item.clone()),
                    }
                }
                out.append(b);
                *b = out;
            }
            None => *b = p.clone(),
        },
        (b, p) => *b = p.clone(),
    }
    Ok(())
}

fn pointer(path: &str) -> Result<Vec<String>> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| format!("path {path:?} must start with /"))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn child<'a>(v: &'a mut Value, key: &str) -> Result<&'a mut Value> {
    match v {
        Value::Mapping(m) => m.get_mut(key).ok_or_else(|| format!("no field {key:?}")),
        Value::Sequence(s) => {
            let i: usize = key.parse().map_err(|_| format!("bad index {key:?}"))?;
            let len = s.len();
            s.get_mut(i)
                .ok_or_else(|| format!("index {i} out of range ({len})"))
        }
        _ => Err(format!("cannot descend into {key:?}")),
    }
}

/// JSON patch (RFC 6902) `add`, `remove`, `replace` and `test`.
pub fn json6902(doc: &mut Value, ops: &[Value]) -> Result<()> {
    for op in ops {
        let kind = op["op"].as_str().unwrap_or("");
        let path = pointer(op["path"].as_str().unwrap_or(""))?;
        let (last, parents) = path.split_last().ok_or("empty path")?;
        let mut parent = &mut *doc;
        for p in parents {
            parent = child(parent, p)?;
        }
        let value = op["value"].clone();
        match (kind, parent) {
            ("test", parent) => {
                let current = child(parent, last)?;
                if *current != value {
                    return Err(format!(
                        "test failed at {}: found {current:?}, expected {value:?}",
                        op["path"].as_str().unwrap_or("")
                    ));
                }
            }
            ("add", Value::Mapping(m)) => {
                m.insert(Value::String(last.clone()), value);
            }
            ("add", Value::Sequence(s)) => {
                if last == "-" {
                    s.push(value);
                } else {
                    let i: usize = last.parse().map_err(|_| format!("bad index {last:?}"))?;
                    if i > s.len() {
                        return Err(format!("index {i} out of range"));
                    }
                    s.insert(i, value);
                }
            }
            ("replace", parent) => {
                *child(parent, last)? = value;
            }
            ("remove", Value::Mapping(m)) => {
                m.remove(last.as_str())
                    .ok_or_else(|| format!("remove: no field {last:?}"))?;
            }
            ("remove", Value::Sequence(s)) => {
                let i: usize = last.parse().map_err(|_| format!("bad index {last:?}"))?;
                if i >= s.len() {
                    return Err(format!("remove: index {i} out of range"));
                }
                s.remove(i);
            }
            (other, _) => return Err(format!("op {other:?} is not modelled here")),
        }
    }
    Ok(())
}

/// `registry/path/name:tag` → (`registry/path/name`, `tag`).
pub fn split_image(image: &str) -> (&str, Option<&str>) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (image, None),
    }
}

/// The pod template spec of a workload.
pub fn pod_spec(doc: &Value) -> Option<&Value> {
    match doc["kind"].as_str()? {
        "Deployment" | "DaemonSet" | "StatefulSet" | "Job" | "ReplicaSet" => {
            Some(&doc["spec"]["template"]["spec"])
        }
        "CronJob" => Some(&doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        "Pod" => Some(&doc["spec"]),
        _ => None,
    }
}

fn containers_mut(doc: &mut Value) -> Vec<&mut Value> {
    let spec = match doc["kind"].as_str() {
        Some("Deployment" | "DaemonSet" | "StatefulSet" | "Job" | "ReplicaSet") => {
            &mut doc["spec"]["template"]["spec"]
        }
        _ => return Vec::new(),
    };
    let Value::Mapping(spec) = spec else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in spec.iter_mut() {
        if matches!(k.as_str(), Some("containers" | "initContainers")) {
            if let Value::Sequence(cs) = v {
                out.extend(cs.iter_mut());
            }
        }
    }
    out
}
