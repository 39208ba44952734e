//! Who is calling and what they may do.
//!
//! A request carries `Authorization: Bearer <secret>` (the bootstrap owner token, or an API
//! token of one namespace), or, when a trusted auth proxy is configured, a user header
//! naming `UID`; the user's role comes from the namespace's role bindings (`user:UID`).
//! Roles are ordered: viewer (read) < editor (change deployments, artifacts, targets,
//! defaults) < owner (also tokens and members). The bootstrap token is owner everywhere and
//! the only one that may create or delete namespaces.

use axum::{extract::FromRequestParts, http::request::Parts, http::StatusCode};

use super::{ApiError, AppState};
use crate::model::Role;

/// Namespace under which the bootstrap token is stored.
pub use crate::domain::tokens::ADMIN_NAMESPACE;

/// The caller of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// The bootstrap owner token.
    Admin,
    /// An API token of one namespace.
    Token {
        namespace: String,
        name: String,
        role: Role,
    },
    /// A user authenticated by the trusted proxy.
    User(String),
}

/// Extractor: the authenticated caller (401 if none).
pub struct Caller {
    pub principal: Principal,
    state: AppState,
}

pub use crate::domain::tokens::hash_secret;

/// Validates a member string: exactly `user:UID`.
pub fn check_member(field: &str, m: &str) -> Result<(), ApiError> {
    let uid = m.strip_prefix("user:").unwrap_or("");
    let ok = !uid.is_empty()
        && uid.len() <= 256
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field} {m:?} is invalid: members are written user:UID (no space after the colon; UID of letters, digits and ._@-+)"
        )))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = |m: &str| {
            state.metrics.auth_denied.inc();
            ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", m)
        };
        if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) {
            let v = h.to_str().unwrap_or("");
            let Some(secret) = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
            else {
                return Err(unauthorized(
                    "the Authorization header must be `Bearer <token>`",
                ));
            };
            let hash = hash_secret(secret.trim());
            let t = state.store.read();
            let found = t.tokens.values().find(|k| k.secret_hash == hash);
            return match found {
                Some(k) if k.token.namespace == ADMIN_NAMESPACE => Ok(Caller {
                    principal: Principal::Admin,
                    state: state.clone(),
                }),
                Some(k) => Ok(Caller {
                    principal: Principal::Token {
                        namespace: k.token.namespace.clone(),
                        name: k.token.name.clone(),
                        role: k.token.role,
                    },
                    state: state.clone(),
                }),
                // A job's download token opens nothing but its artifact's download.
                None if secret
                    .trim()
                    .starts_with(crate::artifacts::tokens::TOKEN_PREFIX) =>
                {
                    state.metrics.auth_denied.inc();
                    Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "Forbidden",
                        "a job's download token allows only GET of its artifact (/artifacts/v1/namespaces/{ns}/artifacts:download)",
                    ))
                }
                None => Err(unauthorized("invalid or revoked API token")),
            };
        }
        if let Some(header) = state.proxy_user_header() {
            if let Some(uid) = parts
                .headers
                .get(header.as_str())
                .and_then(|v| v.to_str().ok())
            {
                let uid = uid.trim();
                if !uid.is_empty() {
                    return Ok(Caller {
                        principal: Principal::User(uid.to_string()),
                        state: state.clone(),
                    });
                }
            }
        }
        Err(unauthorized(
            "authentication required: send `Authorization: Bearer <token>`",
        ))
    }
}

impl Caller {
    /// The caller's role in `ns`, if any.
    pub fn role_in(&self, ns: &str) -> Option<Role> {
        match &self.principal {
            Principal::Admin => Some(Role::Owner),
            Principal::Token {
                namespace, role, ..
            } => (namespace == ns).then_some(*role),
            Principal::User(uid) => {
                let member = format!("user:{uid}");
                let t = self.state.store.read();
                t.namespaces.get(ns).and_then(|n| {
                    n.spec
                        .role_bindings
                        .iter()
                        .filter(|b| b.members.contains(&member))
                        .map(|b| b.role)
                        .max()
                })
            }
        }
    }

    /// Requires at least `min` in namespace `ns` (403 otherwise; 404 for an unknown
    /// namespace once the caller may know).
    pub fn require(&self, ns: &str, min: Role) -> Result<(), ApiError> {
        let role = self.role_in(ns);
        match role {
            Some(r) if r >= min => {
                if !self.state.store.read().namespaces.contains_key(ns) {
                    return Err(ApiError::not_found(format!(
                        "namespace {ns} does not exist"
                    )));
                }
                Ok(())
            }
            Some(r) => {
                self.state.metrics.auth_denied.inc();
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "role {} or higher required in namespace {ns}; the caller is {}",
                        min.as_str(),
                        r.as_str()
                    ),
                ))
            }
            None => {
                self.state.metrics.auth_denied.inc();
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!("the caller has no role in namespace {ns}"),
                ))
            }
        }
    }

    /// Requires the bootstrap token.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.principal == Principal::Admin {
            Ok(())
        } else {
            self.state.metrics.auth_denied.inc();
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "only the bootstrap owner token may create or delete namespaces",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_must_be_exactly_user_colon_uid() {
        assert!(check_member("m", "user:alice").is_ok());
        assert!(check_member("m", "user:a.b@corp-1").is_ok());
        for bad in [
            "user: alice",
            "alice",
            "user:",
            "group:x",
            "User:alice",
            "user:a b",
        ] {
            let e = check_member("spec.roleBindings[0].members[0]", bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(
                e.message.contains("spec.roleBindings[0].members[0]"),
                "{}",
                e.message
            );
        }
    }
}
