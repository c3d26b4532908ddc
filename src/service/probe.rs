//! `concur-sync probe`: one GET of the local admin endpoint, for container probes that run
//! inside the pod (`exec`), where the endpoint listens on loopback only and the image has no
//! shell or curl. Exit 0 on a 2xx answer, 1 otherwise.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Duration;

use crate::config::Config;

/// The URL probed when none is given: `/readyz` on `admin.listen`, asked on loopback when the
/// endpoint listens on every interface.
pub fn default_url(cfg: &Config) -> String {
    let url = |host: String, port: u16| format!("http://{host}:{port}/readyz");
    match cfg.admin.listen.parse::<std::net::SocketAddr>() {
        Ok(std::net::SocketAddr::V4(a)) if a.ip().is_unspecified() => {
            url("127.0.0.1".into(), a.port())
        }
        Ok(std::net::SocketAddr::V6(a)) if a.ip().is_unspecified() => url("[::1]".into(), a.port()),
        Ok(a) => format!("http://{a}/readyz"),
        Err(_) => format!("http://{}/readyz", cfg.admin.listen),
    }
}

/// GETs `url`; prints the outcome and returns the exit code (0 for a 2xx answer, else 1).
pub async fn run(url: &str, timeout: Duration) -> u8 {
    let client = match reqwest::Client::builder().timeout(timeout).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("concur-sync probe: cannot build an HTTP client: {e}");
            return 1;
        }
    };
    match client.get(url).send().await {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
            let body: String = body.chars().take(300).collect();
            if status.is_success() {
                println!("{url}: {status}");
                0
            } else {
                eprintln!("concur-sync probe: {url}: {status} {body}");
                1
            }
        }
        Err(e) => {
            eprintln!("concur-sync probe: {url}: {}", e.without_url());
            1
        }
    }
}
