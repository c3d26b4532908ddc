//! `POST /oauth2/v0/token`: password (company `authtoken` or user `password`) and refresh grants.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::http_util::parse_form;
use super::state::{AccessToken, Principal, Shared, new_token};

/// Refresh tokens live six months.
const REFRESH_TTL_SECS: i64 = 183 * 24 * 3600;

fn token_error(status: StatusCode, error: &str, description: &str, code: u32) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description, "code": code})),
    )
        .into_response()
}

fn bad_credentials() -> Response {
    token_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "Incorrect Credentials. Please Retry",
        5,
    )
}

fn pinned_ok(pinned: &Option<String>, given: Option<&String>) -> bool {
    match pinned {
        None => true,
        Some(p) => given.is_some_and(|g| g == p),
    }
}

pub(crate) async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let form = parse_form(&body);
    if !pinned_ok(&shared.client_id, form.get("client_id"))
        || !pinned_ok(&shared.client_secret, form.get("client_secret"))
    {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client credentials",
            1,
        );
    }
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    let principal = match grant {
        "password" => {
            let username = form.get("username").cloned().unwrap_or_default();
            let password = form.get("password").cloned().unwrap_or_default();
            let credtype = form
                .get("credtype")
                .map(|c| c.to_ascii_lowercase())
                .unwrap_or_else(|| "password".to_string());
            match credtype.as_str() {
                "authtoken" => {
                    if username.is_empty()
                        || password.is_empty()
                        || !pinned_ok(&shared.company_id, Some(&username))
                        || !pinned_ok(&shared.request_token, Some(&password))
                    {
                        return bad_credentials();
                    }
                    Principal::Company(username)
                }
                "password" => {
                    let inner = shared.lock();
                    let ok = inner.user_by_login(&username).is_some_and(|i| {
                        inner.users[i]
                            .password
                            .as_ref()
                            .is_some_and(|h| h.matches(&password))
                    });
                    if !ok {
                        return bad_credentials();
                    }
                    Principal::User(username)
                }
                _ => {
                    return token_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "Invalid credtype",
                        120,
                    );
                }
            }
        }
        "refresh_token" => {
            let given = form.get("refresh_token").cloned().unwrap_or_default();
            match shared.lock().refresh_tokens.remove(&given) {
                Some(p) => p,
                None => {
                    return token_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Refresh token is invalid or expired",
                        108,
                    );
                }
            }
        }
        _ => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant type",
                2,
            );
        }
    };
    issue(&shared, principal)
}

fn issue(shared: &Shared, principal: Principal) -> Response {
    let access = new_token();
    let refresh = uuid::Uuid::new_v4().to_string();
    {
        let mut inner = shared.lock();
        inner.access_tokens.insert(
            access.clone(),
            AccessToken {
                principal: principal.clone(),
                expires: Instant::now() + shared.token_ttl,
            },
        );
        inner.refresh_tokens.insert(refresh.clone(), principal);
        inner.issued_tokens.push(access.clone());
        inner.issued_tokens.push(refresh.clone());
    }
    let refresh_expires = chrono::Utc::now().timestamp() + REFRESH_TTL_SECS;
    let body = json!({
        "expires_in": shared.token_ttl.as_secs(),
        "scope": "user.read user.write attendee.read attendee.write LIST USER",
        "token_type": "Bearer",
        "access_token": access,
        "refresh_token": refresh,
        "refresh_expires_in": refresh_expires,
        "geolocation": shared.base_url,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
