//! The SCIM 2.0 endpoint identity providers provision into (`source.kind = "scim_push"`):
//! Entra ID (through its provisioning agent) and Okta push users to it, and the directory they
//! push is the source a cycle reads.
//!
//! The daemon starts the listener ([`serve`]); each accepted change is committed to the state
//! database before its answer (`store`), and a burst of pushes schedules one cycle a short
//! debounce later. A cycle, in the daemon or `sync`, reads the stored directory ([`read`],
//! `mapping`) like any other complete source, so a deleted or deactivated user is deactivated
//! in Concur through the same planner and guards. `filter` parses SCIM filters and PATCH paths,
//! `patch` applies PATCH operations, `resource` smooths the clients' habits and checks what is
//! stored, `discovery` holds the discovery documents, and `routes` is the HTTP side.

mod discovery;
mod filter;
mod mapping;
mod patch;
mod projection;
mod resource;
mod routes;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ScimPushConfig;

pub use mapping::{history_label, nothing_pushed_yet, read};

/// Starts the endpoint `[source.scim_push]` configures; `changed` is called (debounced by
/// `debounce_seconds`) after pushes changed users. Returns the task serving it and the address
/// it listens on; it stops when `cancel` fires.
pub async fn serve(
    cfg: &ScimPushConfig,
    cancel: CancellationToken,
    changed: impl Fn() + Send + Sync + 'static,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, SocketAddr)> {
    let token = cfg.resolve_token()?;
    let mapping = mapping::mapping(cfg)?;
    let store = store::PushStore::open(&cfg.state_path).map_err(|e| {
        anyhow::anyhow!(
            "state.path {}: cannot open for the SCIM endpoint: {e}",
            cfg.state_path.display()
        )
    })?;
    let tls = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let listener = TcpListener::bind(&cfg.listen).await.map_err(|e| {
        anyhow::anyhow!("source.scim_push.listen {}: cannot listen: {e}", cfg.listen)
    })?;
    let addr = listener.local_addr()?;

    // Pushes come in bursts: each wakes the debouncer, which waits `debounce_seconds` after the
    // first and then schedules one cycle for all of them.
    let wake = Arc::new(tokio::sync::Notify::new());
    let debounce = Duration::from_secs_f64(cfg.debounce_seconds);
    {
        let wake = wake.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = wake.notified() => {}
                }
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(debounce) => {}
                }
                changed();
            }
        });
    }
    let state = Arc::new(routes::PushState {
        store: Mutex::new(store),
        token,
        mapping,
        scheme: if tls.is_some() { "https" } else { "http" },
        changed: Box::new(move || wake.notify_one()),
    });
    let app = routes::router(state);
    tracing::info!(listen = %addr, tls = tls.is_some(), "SCIM endpoint listening (/scim/v2)");
    let task = tokio::spawn(async move {
        let stop = async move { cancel.cancelled().await };
        let served = match tls {
            Some(acceptor) => {
                axum::serve(TlsListener::start(listener, acceptor), app)
                    .with_graceful_shutdown(stop)
                    .await
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            }
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "the SCIM endpoint stopped");
        }
    });
    Ok((task, addr))
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| anyhow::anyhow!("source.scim_push.tls_cert_file {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "source.scim_push.tls_cert_file {}: no certificate in the file",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("source.scim_push.tls_key_file {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("source.scim_push.tls_cert_file: the certificate and key do not make a TLS configuration: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A listener whose connections are TLS: handshakes run in tasks of their own (a slow client
/// holds up no one), and only finished ones reach the server.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    addr: SocketAddr,
}

impl TlsListener {
    fn start(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> TlsListener {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "SCIM endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "SCIM endpoint: TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(peer = %peer, "SCIM endpoint: TLS handshake timed out");
                        }
                    }
                });
            }
        });
        TlsListener { ready, addr }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
