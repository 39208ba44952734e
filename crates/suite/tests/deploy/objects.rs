//! Reading the rendered objects: lookups, a container's mounts (what a path inside it
//! resolves to, and the files laid out as the kubelet would), references to in-cluster
//! Services in free text, and running the checkers.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_yaml::Value;

use crate::kustomize::{pod_spec, Object};

pub fn find<'a>(objs: &'a [Object], kind: &str, ns: &str, name: &str) -> Option<&'a Object> {
    objs.iter()
        .find(|o| o.kind() == kind && o.name() == name && (ns.is_empty() || o.namespace() == ns))
}

pub fn seq(v: &Value) -> Vec<Value> {
    v.as_sequence().cloned().unwrap_or_default()
}

pub fn strings(v: &Value) -> Vec<String> {
    seq(v)
        .iter()
        .map(|a| {
            a.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| panic!("not a string: {a:?}"))
        })
        .collect()
}

/// Keys of a ConfigMap's `data`/`binaryData` or a Secret's `data`/`stringData`.
pub fn keys(o: &Object) -> BTreeSet<String> {
    ["data", "stringData", "binaryData"]
        .iter()
        .filter_map(|f| o.doc[*f].as_mapping())
        .flat_map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_string)))
        .collect()
}

pub fn data<'a>(o: &'a Object, key: &str) -> &'a str {
    o.doc["data"][key]
        .as_str()
        .or(o.doc["stringData"][key].as_str())
        .unwrap_or_else(|| panic!("{}: no key {key}", o.describe()))
}

/// All containers (and init containers) of a pod spec.
pub fn containers(spec: &Value) -> Vec<Value> {
    let mut v = seq(&spec["initContainers"]);
    v.extend(seq(&spec["containers"]));
    v
}

pub fn workloads(objs: &[Object]) -> Vec<(&Object, &Value)> {
    objs.iter()
        .filter_map(|o| pod_spec(&o.doc).map(|s| (o, s)))
        .collect()
}

/// `--flag=value` → value.
pub fn flag<'a>(args: &'a [String], name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}=");
    args.iter()
        .filter_map(|a| a.strip_prefix(&prefix))
        .collect()
}

/// `*` wildcard match of one file name.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|i| wildcard(tail, &name[head.len() + i..]))
        }
    }
}

/// What a path inside a container resolves to.
#[derive(Debug)]
pub enum Mounted<'a> {
    /// A file of a ConfigMap or Secret volume: the object and key.
    Key(&'a Object, String),
    /// A writable volume (emptyDir, PVC, hostPath).
    Writable,
    /// Not under any volume mount (the image's own file system).
    Image,
}

pub fn resolve<'a>(
    objs: &'a [Object],
    ns: &str,
    spec: &Value,
    c: &Value,
    path: &str,
) -> Mounted<'a> {
    let best = seq(&c["volumeMounts"])
        .into_iter()
        .filter(|m| {
            let mp = m["mountPath"].as_str().unwrap_or("");
            path == mp || path.starts_with(&format!("{}/", mp.trim_end_matches('/')))
        })
        .max_by_key(|m| m["mountPath"].as_str().unwrap_or("").len());
    let Some(m) = best else {
        return Mounted::Image;
    };
    let mp = m["mountPath"].as_str().unwrap_or("");
    let rel = path[mp.len()..].trim_start_matches('/').to_string();
    let vol = seq(&spec["volumes"])
        .into_iter()
        .find(|v| v["name"] == m["name"])
        .unwrap_or_else(|| panic!("volumeMount {:?} has no volume", m["name"]));
    let lookup = |kind: &str, name: &Value| {
        let name = name.as_str().unwrap_or("");
        find(objs, kind, ns, name).unwrap_or_else(|| panic!("{kind} {ns}/{name} is not defined"))
    };
    if !vol["configMap"].is_null() {
        Mounted::Key(lookup("ConfigMap", &vol["configMap"]["name"]), rel)
    } else if !vol["secret"].is_null() {
        Mounted::Key(lookup("Secret", &vol["secret"]["secretName"]), rel)
    } else {
        Mounted::Writable
    }
}

/// Writes the ConfigMap/Secret volumes of a container under `root` + mountPath, as the
/// kubelet lays them out, so real tools can read the files where the pod reads them.
pub fn materialize(objs: &[Object], ns: &str, spec: &Value, c: &Value, root: &Path) {
    for m in seq(&c["volumeMounts"]) {
        let mp = m["mountPath"].as_str().unwrap_or("");
        let dir = root.join(mp.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        if let Mounted::Key(o, _) = resolve(objs, ns, spec, c, mp) {
            for k in keys(o) {
                std::fs::write(dir.join(&k), data(o, &k)).unwrap();
            }
        }
    }
}

/// `host:port` references to in-cluster Services in a text (args, env values, config files):
/// `name`, `name.namespace`, `name.namespace.svc[.cluster.local]`, with or without a scheme.
/// Hosts in other domains and IP addresses are not ours to check.
pub fn service_refs(
    text: &str,
    own_ns: &str,
    namespaces: &BTreeSet<&str>,
) -> Vec<(String, String, u16)> {
    let mut out = Vec::new();
    let token_char = |c: char| c.is_ascii_alphanumeric() || "-.:/_".contains(c);
    for token in text.split(|c: char| !token_char(c)) {
        let t = token
            .strip_prefix("http://")
            .or(token.strip_prefix("https://"))
            .unwrap_or(token);
        let hostport = t.split('/').next().unwrap_or("");
        let Some((host, port)) = hostport.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if !host.starts_with(|c: char| c.is_ascii_lowercase()) || host == "localhost" {
            continue;
        }
        let parts: Vec<&str> = host.split('.').collect();
        let ns = match parts.as_slice() {
            [_] => own_ns,
            [_, ns] | [_, ns, "svc"] | [_, ns, "svc", "cluster", "local"]
                if namespaces.contains(ns) =>
            {
                ns
            }
            _ => continue,
        };
        out.push((parts[0].to_string(), ns.to_string(), port));
    }
    out
}

pub fn check_service_ref(objs: &[Object], w: &str, name: &str, ns: &str, port: u16) {
    let svc = find(objs, "Service", ns, name).unwrap_or_else(|| {
        panic!("{w}: refers to {name}:{port} but Service {ns}/{name} is not defined")
    });
    let ports: Vec<u64> = seq(&svc.doc["spec"]["ports"])
        .iter()
        .filter_map(|p| p["port"].as_u64())
        .collect();
    assert!(
        ports.contains(&u64::from(port)),
        "{w}: refers to {name}:{port} but Service {ns}/{name} has ports {ports:?}"
    );
}

/// `100m` → bytes (NGINX sizes: k, m, g; no suffix = bytes).
pub fn nginx_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (&s[..], 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

pub fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The pod spec and first container of a workload.
pub fn workload<'a>(objs: &'a [Object], name: &str) -> (&'a Object, &'a Value, Value) {
    let (o, spec) = workloads(objs)
        .into_iter()
        .find(|(o, _)| o.name() == name)
        .unwrap_or_else(|| panic!("no workload {name}"));
    (o, spec, spec["containers"][0].clone())
}
