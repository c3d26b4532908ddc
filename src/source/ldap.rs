//! The live LDAP directory source (`source.kind = "ldap"`). Its configuration `[source.ldap]`
//! (`config::LdapConfig`, which also compiles and checks the attribute mapping) lives in
//! `config`; the mapping also applies to LDIF exports (see [`super::ldap_map`]).
//!
//! One read is one bind and one paged subtree search (RFC 2696), so a directory with more
//! entries than the server's size limit is read whole with an ordinary account. Anything short
//! of a complete, successful search (bind refused, connection lost mid-paging, size or time
//! limit, timeout) is a [`SourceError`]: the cycle fails before any write, so nobody is
//! deactivated because the directory could not be read.

use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use super::ldap_map::{Entry, Mapper, Mapping};
use super::{Opened, Records, SourceError, records_digest};
use crate::config::{LdapConfig, SearchScope};
use crate::model::Secret;

/// The bind password, inline or from `bind_password_file`.
fn password(l: &LdapConfig) -> Result<Option<Secret>, SourceError> {
    if let Some(s) = &l.bind_password {
        return Ok(Some(s.clone()));
    }
    let Some(path) = &l.bind_password_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|error| SourceError::Open {
        file: path.display().to_string(),
        error,
    })?;
    Ok(Some(Secret::new(text.trim_end_matches(['\r', '\n']))))
}

/// What was read, for logs and the cycle history; never a credential.
fn label(l: &LdapConfig) -> String {
    format!("{}/{}?{}", l.url.trim_end_matches('/'), l.base_dn, l.filter)
}

fn tls_config(path: &std::path::Path) -> Result<rustls::ClientConfig, SourceError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |message: String| SourceError::Ldap {
        url: format!("source.ldap.ca_file {}", path.display()),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Converts one search result, keeping binary values (objectGUID) as bytes.
fn entry_of(se: SearchEntry) -> Entry {
    let mut values = Vec::new();
    for (attr, vals) in se.attrs {
        let attr = attr.to_ascii_lowercase();
        values.extend(vals.into_iter().map(|v| (attr.clone(), v.into_bytes())));
    }
    for (attr, vals) in se.bin_attrs {
        let attr = attr.to_ascii_lowercase();
        values.extend(vals.into_iter().map(|v| (attr.clone(), v)));
    }
    Entry {
        origin: se.dn.clone(),
        dn: se.dn,
        values,
        problems: Vec::new(),
    }
}

/// Reads every matching entry of the directory `[source.ldap]` names, mapping each as it
/// arrives (the entries themselves are not kept); ordered by DN.
pub async fn read(l: &LdapConfig) -> Result<Opened, SourceError> {
    let mapping = Mapping::from_config(l)?;
    let mut mapper = Mapper::new(&mapping);
    search(l, &mapping.requested_attributes(), |e| mapper.push(&e)).await?;
    let items = mapper.finish(true);
    Ok(Opened {
        digest: records_digest(&items),
        records: Records::Items(items),
        complete: true,
        label: label(l),
        watermark: None,
    })
}

/// Binds and runs the paged search, handing every entry to `each` as it arrives; how many
/// there were, or an error.
pub async fn search(
    l: &LdapConfig,
    attrs: &[String],
    mut each: impl FnMut(Entry),
) -> Result<usize, SourceError> {
    let fail = |message: String| SourceError::Ldap {
        url: l.url.clone(),
        message,
    };
    let op_timeout = Duration::from_secs_f64(l.timeout_seconds);
    let connect_timeout = Duration::from_secs_f64(l.connect_timeout_seconds);
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(connect_timeout)
        .set_starttls(l.starttls);
    if let Some(ca) = &l.ca_file {
        settings = settings.set_config(Arc::new(tls_config(ca)?));
    }
    let started = std::time::Instant::now();
    let (conn, mut ldap) = tokio::time::timeout(
        connect_timeout,
        LdapConnAsync::with_settings(settings, &l.url),
    )
    .await
    .map_err(|_| {
        fail(format!(
            "no connection within {} s",
            l.connect_timeout_seconds
        ))
    })?
    .map_err(|e| fail(format!("cannot connect: {e}")))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(error = %e, "LDAP connection ended");
        }
    });

    let password = password(l)?;
    let bind_dn = l.bind_dn.clone().unwrap_or_default();
    let bind = ldap
        .with_timeout(op_timeout)
        .simple_bind(
            &bind_dn,
            password.as_ref().map(Secret::expose).unwrap_or_default(),
        )
        .await
        .map_err(|e| fail(format!("bind as {bind_dn:?} failed: {e}")))?;
    if bind.rc != 0 {
        return Err(fail(format!(
            "bind as {bind_dn:?} refused: rc={} {}",
            bind.rc,
            result_text(&bind)
        )));
    }

    let scope = match l.scope {
        SearchScope::Base => Scope::Base,
        SearchScope::One => Scope::OneLevel,
        SearchScope::Sub => Scope::Subtree,
    };
    let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(l.page_size as i32)),
    ];
    let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
    let mut stream = ldap
        .with_timeout(op_timeout)
        .streaming_search_with(adapters, &l.base_dn, scope, &l.filter, attrs)
        .await
        .map_err(|e| fail(format!("search of {:?} failed: {e}", l.base_dn)))?;
    let mut entries = 0usize;
    loop {
        let next = tokio::time::timeout(op_timeout, stream.next())
            .await
            .map_err(|_| {
                fail(format!(
                    "no answer within {} s after {} entries of {:?}; nothing was changed",
                    l.timeout_seconds, entries, l.base_dn
                ))
            })?
            .map_err(|e| {
                fail(format!(
                    "search of {:?} broke off after {} entries: {e}; nothing was changed",
                    l.base_dn, entries
                ))
            })?;
        match next {
            Some(re) => {
                entries += 1;
                each(entry_of(SearchEntry::construct(re)));
            }
            None => break,
        }
    }
    let res = stream.finish().await;
    match res.rc {
        0 => {}
        4 => {
            return Err(fail(format!(
                "the server stopped the search of {:?} at its size limit after {} entries \
                 (rc=4 sizeLimitExceeded{}); the bind account must be allowed to page through \
                 every entry (OpenLDAP: limits … size.prtotal=unlimited); nothing was changed",
                l.base_dn,
                entries,
                text_suffix(&res)
            )));
        }
        3 => {
            return Err(fail(format!(
                "the server stopped the search of {:?} at its time limit after {} entries \
                 (rc=3 timeLimitExceeded{}); nothing was changed",
                l.base_dn,
                entries,
                text_suffix(&res)
            )));
        }
        rc => {
            return Err(fail(format!(
                "search of {:?} ended with rc={rc} after {} entries{}; nothing was changed",
                l.base_dn,
                entries,
                text_suffix(&res)
            )));
        }
    }
    let _ = ldap.unbind().await;
    driver.abort();
    tracing::info!(
        url = %l.url,
        base_dn = %l.base_dn,
        entries,
        ms = started.elapsed().as_millis() as u64,
        "read the directory"
    );
    Ok(entries)
}

fn result_text(r: &ldap3::LdapResult) -> String {
    if r.text.is_empty() {
        ldap3::LdapError::from(r.clone()).to_string()
    } else {
        r.text.clone()
    }
}

fn text_suffix(r: &ldap3::LdapResult) -> String {
    if r.text.is_empty() {
        String::new()
    } else {
        format!(": {}", r.text)
    }
}
