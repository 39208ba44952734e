// A small YAML writer and reader for deployment documents: block mappings and sequences,
// plain and quoted scalars, flow collections of scalars ({a: b}, [x, y]) and comments.
// The server parses YAML itself; this is only for the views to share one document.

const PLAIN_SAFE = /^[A-Za-z0-9_./+-][A-Za-z0-9_ ./@+=:,()-]*$/;
const RESERVED = /^(true|false|null|yes|no|on|off|~|[-+]?[0-9][0-9_.eE+-]*|\.inf|\.nan)$/i;

function scalar(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  const s = String(v);
  if (s !== "" && PLAIN_SAFE.test(s) && !RESERVED.test(s) && !/: |:$| #|\s$|^-( |$)/.test(s)) return s;
  return JSON.stringify(s);
}

function key(k) {
  return PLAIN_SAFE.test(k) && !RESERVED.test(k) && !/: |:$/.test(k) ? k : JSON.stringify(k);
}

export function dump(v, indent = "") {
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    return v
      .map((x) => {
        if (x && typeof x === "object" && Object.keys(x).length) {
          const inner = dump(x, indent + "  ");
          return indent + "- " + inner.slice(indent.length + 2);
        }
        return indent + "- " + (x && typeof x === "object" ? dump(x) : scalar(x));
      })
      .join("\n");
  }
  if (v && typeof v === "object") {
    const ks = Object.keys(v);
    if (ks.length === 0) return "{}";
    return ks
      .map((k) => {
        const x = v[k];
        if (x && typeof x === "object" && Object.keys(x).length) {
          return indent + key(k) + ":\n" + dump(x, indent + "  ");
        }
        return indent + key(k) + ": " + (x && typeof x === "object" ? dump(x) : scalar(x));
      })
      .join("\n");
  }
  return indent + scalar(v);
}

export class YamlError extends Error {
  constructor(line, message) {
    super("line " + line + ": " + message);
    this.line = line;
  }
}

function stripComment(s) {
  let q = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (q) {
      if (c === "\\" && q === '"') i++;
      else if (c === q) q = null;
    } else if (c === '"' || c === "'") q = c;
    else if (c === "#" && (i === 0 || /\s/.test(s[i - 1]))) return s.slice(0, i);
  }
  return s;
}

function parseScalar(s, line) {
  s = s.trim();
  if (s === "" || s === "~" || s === "null") return null;
  if (s === "true") return true;
  if (s === "false") return false;
  if (s.startsWith('"')) {
    try {
      return JSON.parse(s);
    } catch (_) {
      throw new YamlError(line, "unterminated or invalid double-quoted string");
    }
  }
  if (s.startsWith("'")) {
    if (!s.endsWith("'") || s.length < 2) throw new YamlError(line, "unterminated single-quoted string");
    return s.slice(1, -1).replace(/''/g, "'");
  }
  if (s.startsWith("{") || s.startsWith("[")) return parseFlow(s, line);
  if (/^[-+]?(0|[1-9][0-9]*)$/.test(s)) return Number(s);
  if (/^[-+]?[0-9]*\.[0-9]+([eE][-+]?[0-9]+)?$/.test(s)) return Number(s);
  if (s.startsWith("&") || s.startsWith("*") || s.startsWith("|") || s.startsWith(">"))
    throw new YamlError(line, "anchors, aliases and block scalars are not supported here; use quotes");
  return s;
}

function splitFlow(s, line) {
  const out = [];
  let depth = 0, q = null, cur = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (q) {
      cur += c;
      if (c === "\\" && q === '"') cur += s[++i] || "";
      else if (c === q) q = null;
      continue;
    }
    if (c === '"' || c === "'") q = c;
    if (c === "{" || c === "[") depth++;
    if (c === "}" || c === "]") depth--;
    if (c === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  if (q || depth !== 0) throw new YamlError(line, "unbalanced brackets or quotes");
  if (cur.trim() !== "") out.push(cur);
  return out;
}

function parseFlow(s, line) {
  const open = s[0], close = open === "{" ? "}" : "]";
  if (!s.endsWith(close)) throw new YamlError(line, "flow collection not closed with " + close);
  const parts = splitFlow(s.slice(1, -1), line);
  if (open === "[") return parts.map((p) => parseScalar(p, line));
  const o = {};
  for (const p of parts) {
    const m = p.match(/^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^:]+?)\s*:(\s+(.*))?$/);
    if (!m) throw new YamlError(line, "expected key: value in " + p.trim());
    o[parseScalar(m[1], line)] = parseScalar(m[3] || "", line);
  }
  return o;
}

export function parse(text) {
  const lines = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (/^\s*---\s*$/.test(raw) && lines.length === 0) return;
    if (raw.includes("\t") && /^\s*\t/.test(raw)) throw new YamlError(i + 1, "tabs are not allowed for indentation");
    const s = stripComment(raw);
    if (s.trim() === "") return;
    lines.push({ n: i + 1, ind: s.match(/^ */)[0].length, text: s.trim() });
  });
  let pos = 0;
  function block(ind) {
    const first = lines[pos];
    if (first.text.startsWith("- ") || first.text === "-") {
      const arr = [];
      while (pos < lines.length && lines[pos].ind === ind && (lines[pos].text.startsWith("- ") || lines[pos].text === "-")) {
        const l = lines[pos];
        const rest = l.text.slice(1).trim();
        if (rest === "") {
          pos++;
          arr.push(pos < lines.length && lines[pos].ind > ind ? block(lines[pos].ind) : null);
        } else if (/^("[^"]*"|'[^']*'|[^{\["'][^:]*?):(\s|$)/.test(rest)) {
          // "- key: value" starts a mapping whose keys align two columns in.
          lines[pos] = { n: l.n, ind: ind + 2, text: rest };
          arr.push(block(ind + 2));
        } else {
          pos++;
          arr.push(parseScalar(rest, l.n));
        }
      }
      return arr;
    }
    const obj = {};
    while (pos < lines.length && lines[pos].ind === ind) {
      const l = lines[pos];
      const m = l.text.match(/^("(?:[^"\\]|\\.)*"|'[^']*'|[^:]+?)\s*:(\s+(.*)|$)/);
      if (!m) throw new YamlError(l.n, "expected `key: value`");
      const k = parseScalar(m[1], l.n);
      const v = (m[3] || "").trim();
      pos++;
      if (v !== "") obj[k] = parseScalar(v, l.n);
      else if (pos < lines.length && lines[pos].ind > ind) obj[k] = block(lines[pos].ind);
      else if (pos < lines.length && lines[pos].ind === ind && lines[pos].text.startsWith("-")) obj[k] = block(ind);
      else obj[k] = null;
    }
    if (pos < lines.length && lines[pos].ind > ind) throw new YamlError(lines[pos].n, "unexpected indentation");
    return obj;
  }
  if (lines.length === 0) return {};
  const v = block(lines[0].ind);
  if (pos < lines.length) throw new YamlError(lines[pos].n, "unexpected indentation");
  return v;
}
