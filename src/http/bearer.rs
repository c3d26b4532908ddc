//! Whether a request carries a configured secret token: `Authorization: Bearer TOKEN`, or HTTP
//! Basic with the token as the password (which lets a browser ask for it). The comparison takes
//! the same time whatever the token sent. Used by every endpoint concur-sync serves (the admin
//! endpoint, the SCIM endpoint).

use axum::http::{HeaderMap, header};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::Secret;

/// Whether the request's `Authorization` header carries `token`: as a bearer token, or as the
/// password of HTTP Basic (any user name).
pub fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    let offered: Option<String> = if scheme.eq_ignore_ascii_case("bearer") {
        Some(credentials.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(_, password)| password.to_owned())
            })
    } else {
        None
    };
    offered.is_some_and(|offered| same_token(&offered, token.expose()))
}

/// Compares digests, so that neither the content nor the length of the token sent changes how
/// long the comparison takes.
fn same_token(offered: &str, token: &str) -> bool {
    let a = Sha256::digest(offered.as_bytes());
    let b = Sha256::digest(token.as_bytes());
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}
