// The JSON API with the caller's token. Every answer is the envelope
// {success, httpCode, message, reason, data} (+ warnings); failures reject with an ApiError.

const TOKEN_KEY = "jm.token";

export class ApiError extends Error {
  constructor(status, reason, message) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

async function envelope(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch (_) {
    body = null;
  }
  if (!resp.ok || (body && body.success === false)) {
    const msg = (body && body.message) || resp.statusText || "request failed";
    throw new ApiError(resp.status, body && body.reason, msg);
  }
  const data = body ? body.data : null;
  // Settings with no effect on the target: a hidden property, so documents stay as sent.
  if (body && body.warnings && data && typeof data === "object") Object.defineProperty(data, "warnings", { value: body.warnings });
  return data;
}

// method, path, and a JSON value or {yaml: "text"} as body.
export async function call(method, path, body) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    if (body && typeof body.yaml === "string") {
      init.headers["Content-Type"] = "application/yaml";
      init.body = body.yaml;
    } else {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  return envelope(await fetch(path, init));
}

export const get = (p) => call("GET", p);

// Multipart upload with progress (XMLHttpRequest reports upload progress; fetch does not).
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const h = headers();
    for (const k of Object.keys(h)) xhr.setRequestHeader(k, h[k]);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_) {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && body && body.success !== false) resolve(body.data);
      else reject(new ApiError(xhr.status, body && body.reason, (body && body.message) || xhr.statusText));
    };
    xhr.onerror = () => reject(new ApiError(0, "Network", "network error"));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

// Exchanges the token for the Flink UI proxy's cookie (HttpOnly, Path=/flink/).
export async function openFlinkSession() {
  try {
    await fetch("/flink/-/session", { method: "POST", headers: headers() });
  } catch (_) {
    /* the proxy link then asks to sign in again */
  }
}

export async function closeFlinkSession() {
  try {
    await fetch("/flink/-/session", { method: "DELETE" });
  } catch (_) {
    /* nothing to undo */
  }
}

export const enc = encodeURIComponent;
