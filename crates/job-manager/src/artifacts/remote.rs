//! Remote jarUris (`http://`, `https://`): refused unless an operator allowed the scheme and
//! the host in `artifacts.remote`. When a JAR is fetched the host name is resolved, **every**
//! address it resolves to is checked (loopback, link-local, unspecified, multicast and the
//! cloud metadata addresses are refused unless the address itself is listed), and the
//! connection goes to exactly those checked addresses: no proxy, no redirects, a time limit
//! and the artifact size limit.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use reqwest::{redirect, Url};
use sha2::{Digest, Sha256};

use crate::config::{ArtifactsConfig, RemoteArtifactsConfig};

/// Alibaba Cloud's instance metadata service.
pub const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);
/// AWS, GCP, Azure, OpenStack instance metadata (inside 169.254.0.0/16).
pub const LINK_LOCAL_METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// AWS's IPv6 instance metadata service.
pub const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Why a remote jarUri is refused or could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{uri:?} is refused: remote jarUris are disabled; an operator allows them with artifacts.remote.allowed_schemes and artifacts.remote.allowed_hosts (or upload the JAR to the namespace's artifact store)")]
    Disabled { uri: String },
    #[error("{uri:?} is not a valid URL: {message}")]
    InvalidUrl { uri: String, message: String },
    #[error("{uri:?} is refused: scheme {scheme} is not in artifacts.remote.allowed_schemes")]
    SchemeNotAllowed { uri: String, scheme: String },
    #[error("{uri:?} is refused: a jarUri must not carry credentials (user:password@)")]
    Credentials { uri: String },
    #[error("{uri:?} is refused: host {host} is not in artifacts.remote.allowed_hosts")]
    HostNotAllowed { uri: String, host: String },
    #[error("{uri:?} is refused: host {host} resolves to {class} address {ip}, which is never fetched unless the address itself is listed in artifacts.remote.allowed_hosts")]
    ForbiddenAddress {
        uri: String,
        host: String,
        ip: IpAddr,
        class: &'static str,
    },
    #[error("{uri:?}: cannot resolve host {host}: {message}")]
    Resolve {
        uri: String,
        host: String,
        message: String,
    },
    #[error("{uri:?}: the server answered a redirect ({status}); redirects are not followed, use the final URL")]
    Redirect { uri: String, status: u16 },
    #[error("{uri:?}: the server answered HTTP {status}")]
    Status { uri: String, status: u16 },
    #[error("{uri:?}: the download exceeds the artifact size limit of {limit} bytes (artifacts.max_upload_bytes)")]
    TooLarge { uri: String, limit: u64 },
    #[error("{uri:?}: the download did not finish within {after:?} (artifacts.remote.timeout)")]
    Timeout { uri: String, after: Duration },
    #[error("{uri:?}: download failed: {message}")]
    Download { uri: String, message: String },
    #[error("cannot store the downloaded JAR: {0}")]
    Store(#[from] crate::store::Error),
}

/// Checks an `allowed_hosts` entry: a host name, `*.domain` or an IP address.
pub fn check_host_pattern(p: &str) -> Result<(), String> {
    if parse_ip(p).is_some() {
        return Ok(());
    }
    let name = p.strip_prefix("*.").unwrap_or(p);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{p:?} is not a host name, *.domain or IP address"))
    }
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
}

/// The addresses listed literally in `allowed_hosts`.
fn listed_ips(cfg: &RemoteArtifactsConfig) -> Vec<IpAddr> {
    cfg.allowed_hosts
        .iter()
        .filter_map(|h| parse_ip(h))
        .collect()
}

/// Why an address is never fetched from (unless listed), if it is such an address.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                return Some("loopback");
            }
            if v6.is_unspecified() {
                return Some("unspecified");
            }
            if v6 == AWS_METADATA_V6 {
                return Some("cloud metadata");
            }
            if v6.is_multicast() {
                return Some("multicast");
            }
            let s = v6.segments();
            if s[0] & 0xffc0 == 0xfe80 {
                return Some("link-local");
            }
            // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64
            // (64:ff9b::a.b.c.d) addresses reach the embedded IPv4 address.
            let embedded = v6.to_ipv4_mapped().or_else(|| {
                let compat = s[..6].iter().all(|x| *x == 0);
                let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|x| *x == 0);
                (compat || nat64).then(|| {
                    let o = v6.octets();
                    Ipv4Addr::new(o[12], o[13], o[14], o[15])
                })
            });
            embedded.and_then(forbidden_v4)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("loopback")
    } else if ip == LINK_LOCAL_METADATA || ip == ALIBABA_METADATA {
        Some("cloud metadata")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_unspecified() || ip.octets()[0] == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

fn host_allowed(host: &url::Host<&str>, cfg: &RemoteArtifactsConfig) -> bool {
    cfg.allowed_hosts.iter().any(|p| match host {
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            let p = p.to_ascii_lowercase();
            match p.strip_prefix("*.") {
                Some(suffix) => d.ends_with(&format!(".{suffix}")),
                None => d == p,
            }
        }
        url::Host::Ipv4(ip) => parse_ip(p) == Some(IpAddr::V4(*ip)),
        url::Host::Ipv6(ip) => parse_ip(p) == Some(IpAddr::V6(*ip)),
    })
}

fn check_ip(
    uri: &str,
    host: &str,
    ip: IpAddr,
    cfg: &RemoteArtifactsConfig,
) -> Result<(), RemoteError> {
    match forbidden_class(ip) {
        Some(class) if !listed_ips(cfg).contains(&ip) => Err(RemoteError::ForbiddenAddress {
            uri: uri.to_string(),
            host: host.to_string(),
            ip,
            class,
        }),
        _ => Ok(()),
    }
}

/// Checks a remote jarUri against the policy without network I/O: scheme, no credentials,
/// host listed, and an IP-literal host's address class.
pub fn check_uri(uri: &str, cfg: &RemoteArtifactsConfig) -> Result<Url, RemoteError> {
    if cfg.allowed_schemes.is_empty() || cfg.allowed_hosts.is_empty() {
        return Err(RemoteError::Disabled {
            uri: uri.to_string(),
        });
    }
    let url = Url::parse(uri).map_err(|e| RemoteError::InvalidUrl {
        uri: uri.to_string(),
        message: e.to_string(),
    })?;
    if !cfg
        .allowed_schemes
        .iter()
        .any(|s| s.eq_ignore_ascii_case(url.scheme()))
    {
        return Err(RemoteError::SchemeNotAllowed {
            uri: uri.to_string(),
            scheme: url.scheme().to_string(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RemoteError::Credentials {
            uri: uri.to_string(),
        });
    }
    let Some(host) = url.host() else {
        return Err(RemoteError::InvalidUrl {
            uri: uri.to_string(),
            message: "no host".into(),
        });
    };
    if !host_allowed(&host, cfg) {
        return Err(RemoteError::HostNotAllowed {
            uri: uri.to_string(),
            host: host.to_string(),
        });
    }
    match host {
        url::Host::Ipv4(ip) => check_ip(uri, &host.to_string(), IpAddr::V4(ip), cfg)?,
        url::Host::Ipv6(ip) => check_ip(uri, &host.to_string(), IpAddr::V6(ip), cfg)?,
        url::Host::Domain(_) => {}
    }
    Ok(url)
}

/// Downloads an allowed remote JAR into `cache_dir` (once per URI) and returns its path.
/// The policy is checked again, every resolved address is checked and the connection goes
/// only to those; the body is capped at `cfg.max_upload_bytes` and the whole download at
/// `cfg.remote.timeout`.
pub async fn fetch(
    uri: &str,
    cfg: &ArtifactsConfig,
    cache_dir: &Path,
) -> Result<PathBuf, RemoteError> {
    let url = check_uri(uri, &cfg.remote)?;
    let name = format!(
        "{}.jar",
        hex::encode(Sha256::digest(url.as_str().as_bytes()))
    );
    let path = cache_dir.join(&name);
    if path.is_file() {
        return Ok(path);
    }
    let timeout = cfg.remote.timeout;
    let work = async {
        let addrs = resolve(uri, &url, &cfg.remote).await?;
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)));
        if let Some(url::Host::Domain(d)) = url.host() {
            builder = builder.resolve_to_addrs(d, &addrs);
        }
        let client = builder.build().map_err(|e| RemoteError::Download {
            uri: uri.to_string(),
            message: e.to_string(),
        })?;
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                RemoteError::Timeout {
                    uri: uri.to_string(),
                    after: timeout,
                }
            } else {
                RemoteError::Download {
                    uri: uri.to_string(),
                    message: e.without_url().to_string(),
                }
            }
        };
        let mut resp = client.get(url.clone()).send().await.map_err(failed)?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(RemoteError::Redirect {
                uri: uri.to_string(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(RemoteError::Status {
                uri: uri.to_string(),
                status: status.as_u16(),
            });
        }
        let limit = cfg.max_upload_bytes;
        let too_large = || RemoteError::TooLarge {
            uri: uri.to_string(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| RemoteError::Timeout {
            uri: uri.to_string(),
            after: timeout,
        })??;
    crate::store::write_atomic(cache_dir, &name, &body)?;
    Ok(path)
}

/// The checked socket addresses of the URL's host.
async fn resolve(
    uri: &str,
    url: &Url,
    cfg: &RemoteArtifactsConfig,
) -> Result<Vec<SocketAddr>, RemoteError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let host = url.host().ok_or_else(|| RemoteError::InvalidUrl {
        uri: uri.to_string(),
        message: "no host".into(),
    })?;
    let host_s = host.to_string();
    let addrs: Vec<SocketAddr> = match host {
        url::Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        url::Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        url::Host::Domain(d) => tokio::net::lookup_host((d, port))
            .await
            .map_err(|e| RemoteError::Resolve {
                uri: uri.to_string(),
                host: host_s.clone(),
                message: e.to_string(),
            })?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(RemoteError::Resolve {
            uri: uri.to_string(),
            host: host_s,
            message: "no addresses".into(),
        });
    }
    // Every address, not just the first: the client may pick any of them.
    for a in &addrs {
        check_ip(uri, &host_s, a.ip(), cfg)?;
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(schemes: &[&str], hosts: &[&str]) -> RemoteArtifactsConfig {
        RemoteArtifactsConfig {
            allowed_schemes: schemes.iter().map(|s| s.to_string()).collect(),
            allowed_hosts: hosts.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn address_classes() {
        for (ip, class) in [
            ("127.0.0.1", "loopback"),
            ("127.9.9.9", "loopback"),
            ("::1", "loopback"),
            ("169.254.169.254", "cloud metadata"),
            ("100.100.100.200", "cloud metadata"),
            ("fd00:ec2::254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("64:ff9b::a9fe:a9fe", "cloud metadata"),
            ("224.0.0.1", "multicast"),
        ] {
            assert_eq!(forbidden_class(ip.parse().unwrap()), Some(class), "{ip}");
        }
        for ok in ["10.0.0.7", "192.168.1.1", "8.8.8.8", "2001:db8::1"] {
            assert_eq!(forbidden_class(ok.parse().unwrap()), None, "{ok}");
        }
    }

    #[test]
    fn policy_checks_scheme_host_credentials_and_literal_addresses() {
        let none = cfg(&[], &[]);
        assert!(matches!(
            check_uri("https://repo.example.com/a.jar", &none),
            Err(RemoteError::Disabled { .. })
        ));
        let c = cfg(
            &["https"],
            &["repo.example.com", "*.corp.example", "10.0.0.7"],
        );
        assert!(check_uri("https://repo.example.com/a.jar", &c).is_ok());
        assert!(check_uri("https://REPO.example.com./a.jar", &c).is_ok());
        assert!(check_uri("https://m.corp.example/a.jar", &c).is_ok());
        assert!(check_uri("https://10.0.0.7/a.jar", &c).is_ok());
        assert!(matches!(
            check_uri("http://repo.example.com/a.jar", &c),
            Err(RemoteError::SchemeNotAllowed { .. })
        ));
        assert!(matches!(
            check_uri("https://corp.example.evil.com/a.jar", &c),
            Err(RemoteError::HostNotAllowed { .. })
        ));
        assert!(matches!(
            check_uri("https://u:p@repo.example.com/a.jar", &c),
            Err(RemoteError::Credentials { .. })
        ));
        // 0x7f.1 is 127.0.0.1 spelled differently: not listed.
        assert!(matches!(
            check_uri("https://0x7f.1/a.jar", &c),
            Err(RemoteError::HostNotAllowed { .. })
        ));
        // A listed loopback address is an explicit choice.
        let lo = cfg(&["http"], &["127.0.0.1"]);
        assert!(check_uri("http://127.0.0.1:8080/a.jar", &lo).is_ok());
        assert!(check_host_pattern("*.example.com").is_ok());
        assert!(check_host_pattern("[::1]").is_ok());
        assert!(check_host_pattern("http://x").is_err());
        assert!(check_host_pattern("").is_err());
    }

    #[tokio::test]
    async fn a_listed_name_resolving_to_loopback_is_refused_before_connecting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let c = ArtifactsConfig {
            max_upload_bytes: 1024,
            remote: cfg(&["http"], &["localhost"]),
        };
        let dir = tempfile::tempdir().unwrap();
        let e = fetch(&format!("http://localhost:{port}/a.jar"), &c, dir.path())
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                RemoteError::ForbiddenAddress {
                    class: "loopback",
                    ..
                }
            ),
            "{e}"
        );
        // Nobody connected.
        assert!(listener.accept().is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
