//! Which hosts the client may talk to besides `concur.base_url`: the `geolocation` Concur
//! returns with a token (or with a code-16 "user lives elsewhere" refusal, or stored in the
//! state DB by an earlier run) is followed only when it is an `https://` origin on one of
//! Concur's domains, or exactly the configured base URL's origin when that is loopback (the
//! bundled simulator). Everything after the token request — client secret, refresh token,
//! bearer token, user data — goes to the geolocation, so an untrusted one is never followed.

use url::{Host, Url};

/// Concur's API domains (`C:src/platform/base-uris.markdown`): the data centres
/// `us`, `us2`, `emea`, `eu`, `eu2`, `usg`, `apj1`, `glz`, their `www-` twins and `-impl`
/// hosts under `api.concursolutions.com`, the legacy `www.`/`eu1.`/`implementation.` hosts,
/// and China's `cn.api.concurcdc.cn`. A geolocation must be one of these domains or a host
/// under one of them, compared label by label.
pub const CONCUR_DOMAINS: &[&str] = &["concursolutions.com", "concurcdc.cn"];

/// Why a geolocation was not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    /// The value as received, cut and escaped for messages.
    pub value: String,
    pub reason: String,
}

pub use crate::config::is_loopback;

/// Whether `host` is one of [`CONCUR_DOMAINS`] or a host under one (on a label boundary:
/// `evilconcursolutions.com` is not).
pub fn is_concur_host(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return false;
    }
    CONCUR_DOMAINS.iter().any(|domain| {
        let tail: Vec<&str> = domain.split('.').collect();
        labels.len() >= tail.len()
            && labels[labels.len() - tail.len()..]
                .iter()
                .zip(&tail)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    })
}

/// `value` for an error message: at most 120 characters, quoted, with control and bidi
/// characters escaped.
pub fn escaped(value: &str) -> String {
    let cut: String = value.chars().take(120).collect();
    let more = if value.chars().count() > 120 {
        "…"
    } else {
        ""
    };
    format!("\"{}\"{more}", crate::escape::escape(&cut))
}

/// The origin to send requests to if `value` may be trusted as the company's geolocation,
/// given the configured base URL. `extra` lists further trusted origins (tests only).
pub fn trusted_origin(
    value: &str,
    configured: &str,
    extra: &[String],
) -> Result<String, Untrusted> {
    let refuse = |reason: &str| Untrusted {
        value: escaped(value),
        reason: reason.to_owned(),
    };
    let trimmed = value.trim();
    let url = Url::parse(trimmed).map_err(|_| refuse("not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("it carries user information"));
    }
    if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
        return Err(refuse("it is not a bare scheme://host"));
    }
    let origin = url.origin().ascii_serialization();
    if let Ok(base) = Url::parse(configured.trim())
        && base.host().as_ref().is_some_and(is_loopback)
        && base.origin() == url.origin()
    {
        return Ok(origin);
    }
    if extra.contains(&origin) {
        return Ok(origin);
    }
    if url.scheme() != "https" {
        return Err(refuse("only https:// geolocations are followed"));
    }
    if url.port().is_some() {
        return Err(refuse("only the default https port is followed"));
    }
    match url.host() {
        Some(Host::Domain(d)) if is_concur_host(d) => Ok(origin),
        _ => Err(refuse(&format!(
            "the host is not under Concur's domains ({})",
            CONCUR_DOMAINS.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIGURED: &str = "https://us.api.concursolutions.com";

    fn check(value: &str, configured: &str, expected: Option<&str>) {
        let got = trusted_origin(value, configured, &[]);
        match expected {
            Some(origin) => assert_eq!(got.as_deref().ok(), Some(origin), "{value}: {got:?}"),
            None => assert!(got.is_err(), "{value} was trusted: {got:?}"),
        }
    }

    #[test]
    fn concur_hosts_over_https_are_trusted() {
        for (value, origin) in [
            (
                "https://us2.api.concursolutions.com",
                "https://us2.api.concursolutions.com",
            ),
            (
                "https://EMEA.api.concursolutions.com/",
                "https://emea.api.concursolutions.com",
            ),
            (
                "https://www-us.api.concursolutions.com",
                "https://www-us.api.concursolutions.com",
            ),
            ("https://concursolutions.com", "https://concursolutions.com"),
            ("https://cn.api.concurcdc.cn", "https://cn.api.concurcdc.cn"),
            (
                "https://us2.api.concursolutions.com:443",
                "https://us2.api.concursolutions.com",
            ),
        ] {
            check(value, CONFIGURED, Some(origin));
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for value in [
            "http://us2.api.concursolutions.com",
            "https://evilconcursolutions.com",
            "https://concursolutions.com.evil.example",
            "https://us2.api.concursolutions.com.",
            "https://us2.api.concursolutions.com:8443",
            "https://user:pw@us2.api.concursolutions.com",
            "https://attacker@us2.api.concursolutions.com",
            "https://us2.api.concursolutions.com/elsewhere",
            "https://us2.api.concursolutions.com?x=1",
            "https://10.0.0.1",
            "https://evil.example",
            "http://127.0.0.1:9000",
            "us2.api.concursolutions.com",
            "",
        ] {
            check(value, CONFIGURED, None);
        }
    }

    #[test]
    fn loopback_is_trusted_only_as_the_configured_origin() {
        let sim = "http://127.0.0.1:8080";
        check("http://127.0.0.1:8080", sim, Some(sim));
        check("http://127.0.0.1:8080/", sim, Some(sim));
        check("http://127.0.0.1:8081", sim, None);
        check("http://localhost:8080", sim, None);
        check("https://127.0.0.1:8080", sim, None);
        check(sim, "http://10.0.0.1:8080", None);
    }

    #[test]
    fn the_refused_value_is_escaped() {
        let e = trusted_origin("http://evil\n\u{1b}[31m\u{202e}", CONFIGURED, &[]).unwrap_err();
        assert!(
            !e.value.contains('\n') && !e.value.contains('\u{1b}') && !e.value.contains('\u{202e}'),
            "{e:?}"
        );
    }
}
