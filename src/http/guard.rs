//! Who may talk to the HTTP face: Host/Origin validation against DNS rebinding (as the MCP
//! spec requires of local servers) and an optional bearer token.
//!
//! Both apply to `/run` and `/mcp` alike: a web page that rebinds its name to 127.0.0.1
//! must not be able to use either. `/healthz` stays open for probes.

use super::{ErrorBody, ErrorKind};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Names that always reach a loopback listener.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Host names (or `host:port`) accepted in `Host` and `Origin`; `*` accepts any.
    allowed_hosts: Vec<String>,
    /// SHA-256 of the bearer token, if one is required. Comparing digests keeps the compare
    /// constant-time without leaking the token's length.
    token_digest: Option<[u8; 32]>,
}

impl Guard {
    /// `extra_hosts` add to the loopback names; `token` turns on bearer authentication.
    pub fn new(extra_hosts: &[String], token: Option<&str>) -> Guard {
        let mut allowed_hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        allowed_hosts.extend(
            extra_hosts
                .iter()
                .map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase()),
        );
        Guard {
            allowed_hosts,
            token_digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    pub fn requires_token(&self) -> bool {
        self.token_digest.is_some()
    }

    fn host_allowed(&self, authority: &str) -> bool {
        if self.allowed_hosts.iter().any(|h| h == "*") {
            return true;
        }
        let authority = authority.to_ascii_lowercase();
        let host = split_host(&authority);
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed == host || *allowed == authority)
    }

    fn check(&self, headers: &HeaderMap, uri_host: Option<&str>) -> Result<(), Refusal> {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or(uri_host)
            .ok_or(Refusal::Forbidden("missing Host header"))?;
        if !self.host_allowed(host) {
            return Err(Refusal::Forbidden("Host not allowed (see --allowed-host)"));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            // Browsers send Origin on cross-site requests; a page served from another name
            // must not drive the sandbox even if its name resolves to us.
            let origin = origin
                .to_str()
                .map_err(|_| Refusal::Forbidden("malformed Origin header"))?;
            let authority = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
            if origin == "null" || authority.is_empty() || !self.host_allowed(authority) {
                return Err(Refusal::Forbidden(
                    "Origin not allowed (see --allowed-host)",
                ));
            }
        }
        if let Some(expected) = &self.token_digest {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(Refusal::Unauthorized("missing bearer token"))?;
            let digest: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
            if !bool::from(digest.ct_eq(expected)) {
                return Err(Refusal::Unauthorized("invalid bearer token"));
            }
        }
        Ok(())
    }
}

/// `host` of `host:port`, `[v6]:port` or a bare host.
fn split_host(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

enum Refusal {
    Forbidden(&'static str),
    Unauthorized(&'static str),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, kind, message) = match self {
            Refusal::Forbidden(m) => (StatusCode::FORBIDDEN, ErrorKind::Forbidden, m),
            Refusal::Unauthorized(m) => (StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized, m),
        };
        crate::metrics::refused(match self {
            Refusal::Forbidden(_) => "host",
            Refusal::Unauthorized(_) => "unauthorized",
        });
        let body = ErrorBody {
            error: message.to_string(),
            kind,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Middleware: refuse requests from unexpected hosts/origins or without the token.
pub async fn enforce(
    State(guard): State<std::sync::Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    match guard.check(request.headers(), request.uri().host()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn loopback_hosts_pass_and_others_do_not() {
        let guard = Guard::new(&[], None);
        assert!(
            guard
                .check(&headers(&[("host", "127.0.0.1:8000")]), None)
                .is_ok()
        );
        assert!(
            guard
                .check(&headers(&[("host", "localhost")]), None)
                .is_ok()
        );
        assert!(guard.check(&headers(&[("host", "[::1]:80")]), None).is_ok());
        assert!(
            guard
                .check(&headers(&[("host", "evil.example")]), None)
                .is_err()
        );
        assert!(
            guard
                .check(
                    &headers(&[("host", "localhost:1"), ("origin", "http://evil.example")]),
                    None
                )
                .is_err()
        );
        assert!(
            guard
                .check(
                    &headers(&[("host", "localhost:1"), ("origin", "http://localhost:3000")]),
                    None
                )
                .is_ok()
        );
    }

    #[test]
    fn extra_hosts_and_tokens() {
        let guard = Guard::new(&["sandbox.internal".into()], Some("s3cret"));
        let ok = headers(&[
            ("host", "sandbox.internal:8000"),
            ("authorization", "Bearer s3cret"),
        ]);
        assert!(guard.check(&ok, None).is_ok());
        let wrong = headers(&[
            ("host", "sandbox.internal"),
            ("authorization", "Bearer nope"),
        ]);
        assert!(matches!(
            guard.check(&wrong, None),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            guard.check(&headers(&[("host", "localhost")]), None),
            Err(Refusal::Unauthorized(_))
        ));
    }
}
