//! Hardening of the network, secrets, configuration and deployment edges, at the boundary: the
//! real binary with a hostile token endpoint, broken configurations, the `probe` command, and the
//! modes of the files it creates.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;

use super::harness::{Rig, code, free_port, rows, run_bin, spawn_daemon, text};

const CLIENT_SECRET: &str = "it-client-secret-7f3a";

/// A listener that only counts the connections it gets: nothing may ever reach it.
async fn hostile_listener() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (base, hits)
}

/// A token endpoint that answers every request with a token whose `geolocation` is `geo`;
/// returns its base URL and the paths it was asked for.
async fn token_server(geo: String) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let (log, geo) = (log.clone(), geo.clone());
        async move {
            log.lock().unwrap().push(uri.path().to_owned());
            (
                [("content-type", "application/json")],
                format!(
                    r#"{{"access_token":"A","refresh_token":"R","expires_in":3600,"token_type":"Bearer","geolocation":"{geo}"}}"#
                ),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, seen)
}

/// Points the rig's config at `base` instead of the simulator.
fn use_base_url(rig: &Rig, base: &str) {
    let cfg = std::fs::read_to_string(&rig.config).unwrap();
    let cfg = cfg.replace(&rig.sim.base_url(), base);
    std::fs::write(&rig.config, cfg).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_answer_with_a_foreign_geolocation_is_refused_and_nothing_is_sent_there() {
    let (hostile, hits) = hostile_listener().await;
    let (login, seen) = token_server(format!("{hostile}/")).await;
    let rig = Rig::start().await;
    use_base_url(&rig, &login);
    rig.write_hr(&rows(0..3));

    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the geolocation"), "{stderr}");
    assert!(stderr.contains(&hostile), "the value is named: {stderr}");
    assert!(!stderr.contains(CLIENT_SECRET), "{stderr}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a request reached the hostile host"
    );
    let paths = seen.lock().unwrap().clone();
    assert!(paths.iter().all(|p| p == "/oauth2/v0/token"), "{paths:?}");
    // Nothing was written: the three users are still to be created.
    let st = rig.status().await;
    assert_eq!(st["users"]["managed"], 0, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_geolocation_stored_by_an_earlier_version_is_refused_then_forgotten() {
    let (hostile, hits) = hostile_listener().await;
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..3));
    {
        let store = concur_sync::store::Store::open(&rig.state_path(), None).unwrap();
        store
            .save_token(
                &concur_sync::model::Secret::new("old-refresh-token"),
                Some(&hostile),
                None,
            )
            .unwrap();
    }
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused the geolocation"), "{stderr}");
    assert!(stderr.contains(&hostile), "{stderr}");
    assert!(stderr.contains("the state database"), "{stderr}");

    // The next run goes to concur.base_url (the simulator).
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.sim.users().len(), 3);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a request reached the hostile host"
    );
}

/// Runs `status` with the rig's config edited by `edit`; returns (exit code, stderr).
async fn with_config(
    rig: &Rig,
    edit: impl Fn(&str) -> String,
    env: &[(&str, &str)],
) -> (i32, String) {
    let original = std::fs::read_to_string(&rig.config).unwrap();
    let path = rig.dir.path().join("edited.toml");
    std::fs::write(&path, edit(&original)).unwrap();
    let out = run_bin(&path, &["status", "--json"], env).await;
    (
        code(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A configuration error: exit 1 and stderr naming every one of `names`.
async fn check_config_error(
    rig: &Rig,
    edit: impl Fn(&str) -> String,
    env: &[(&str, &str)],
    names: &[&str],
) {
    let (code, stderr) = with_config(rig, edit, env).await;
    assert_eq!(code, 1, "{stderr}");
    for name in names {
        assert!(stderr.contains(name), "{name} not in: {stderr}");
    }
}

#[tokio::test]
async fn plain_http_to_a_remote_concur_is_a_config_error() {
    let rig = Rig::start().await;
    let sim = rig.sim.base_url();
    for base in [
        "http://us.api.concursolutions.com",
        "http://10.1.2.3:8080",
        "http://[::2]:80",
    ] {
        check_config_error(
            &rig,
            |c| c.replace(&sim, base),
            &[],
            &["concur.base_url", "loopback"],
        )
        .await;
    }
    for base in ["http://localhost:1", "http://127.0.0.2:1", "http://[::1]:1"] {
        let (code, stderr) = with_config(&rig, |c| c.replace(&sim, base), &[]).await;
        assert_eq!(code, 0, "{base}: {stderr}");
    }
}

#[tokio::test]
async fn a_toml_syntax_error_names_line_and_key_but_never_prints_the_line() {
    let rig = Rig::start().await;
    let (code, stderr) = with_config(
        &rig,
        |c| {
            c.replace(
                &format!("client_secret = \"{CLIENT_SECRET}\""),
                &format!("client_secret = \"{CLIENT_SECRET}"),
            )
        },
        &[],
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        !stderr.contains(CLIENT_SECRET),
        "the secret was printed: {stderr}"
    );
    assert!(stderr.contains("edited.toml"), "{stderr}");
    assert!(stderr.contains("line 11, column"), "{stderr}");
    assert!(stderr.contains("concur.client_secret"), "{stderr}");
}

#[tokio::test]
async fn empty_secrets_are_config_errors() {
    let rig = Rig::start().await;
    let secret = format!("client_secret = \"{CLIENT_SECRET}\"");
    for (replacement, key) in [
        ("client_secret = \"\"".to_owned(), "concur.client_secret"),
        (
            "client_secret = \"  \\t \"".to_owned(),
            "concur.client_secret",
        ),
        (
            "client_secret_file = \"\"".to_owned(),
            "concur.client_secret_file",
        ),
    ] {
        check_config_error(&rig, |c| c.replace(&secret, &replacement), &[], &[key]).await;
    }
    check_config_error(
        &rig,
        |c| {
            c.replace(
                "request_token = \"it-request-token-91bc\"",
                "request_token = \" \"",
            )
        },
        &[],
        &["concur.request_token"],
    )
    .await;
    // A secret file holding only whitespace is refused when it is read.
    let blank = rig.dir.path().join("blank");
    std::fs::write(&blank, " \n").unwrap();
    let cfg = std::fs::read_to_string(&rig.config).unwrap().replace(
        &secret,
        &format!("client_secret_file = {:?}", blank.display().to_string()),
    );
    std::fs::write(&rig.config, cfg).unwrap();
    rig.write_hr(&rows(0..1));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("concur.client_secret_file"),
        "{}",
        text(&out)
    );
    assert!(rig.sim_requests_to("/oauth2/v0/token").is_empty());
}

#[tokio::test]
async fn log_filters_that_do_not_parse_are_config_errors() {
    let rig = Rig::start().await;
    for level in ["inof", "concur_sync=verbose", "info,,warnn"] {
        check_config_error(
            &rig,
            |c| format!("{c}[log]\nlevel = {level:?}\n"),
            &[],
            &["log.level", level],
        )
        .await;
    }
    check_config_error(
        &rig,
        ToOwned::to_owned,
        &[("RUST_LOG", "debgu")],
        &["RUST_LOG", "debgu"],
    )
    .await;
    check_config_error(
        &rig,
        ToOwned::to_owned,
        &[("RUST_LOG", "x=[[")],
        &["RUST_LOG"],
    )
    .await;
    for ok in ["warn", "info,concur_sync=debug", "concur_sync::sync=trace"] {
        let (code, stderr) = with_config(
            &rig,
            |c| format!("{c}[log]\nlevel = {ok:?}\n"),
            &[("RUST_LOG", ok)],
        )
        .await;
        assert_eq!(code, 0, "{ok}: {stderr}");
    }
}

/// Starts `run` with `[admin] listen = listen`; returns the child (killed on drop) and the
/// stderr log path.
async fn start_daemon(rig: &Rig, listen: &str) -> (tokio::process::Child, std::path::PathBuf) {
    let cfg = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        format!("{cfg}[sync]\nschedule = \"0 0 0 1 1 *\"\n[admin]\nlisten = \"{listen}\"\n"),
    )
    .unwrap();
    let log = rig.dir.path().join("daemon.log");
    let child = spawn_daemon(&rig.config, &log);
    (child, log)
}

async fn probe(args: &[&str], config: &Path) -> std::process::Output {
    run_bin(config, &[&["probe"], args].concat(), &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_checks_the_loopback_admin_endpoint_from_inside() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..2));
    let port = free_port();
    let (_child, _log) = start_daemon(&rig, &format!("127.0.0.1:{port}")).await;
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = probe(&["--url", &healthz], &rig.config).await;
        if code(&out) == 0 {
            break;
        }
        assert_eq!(code(&out), 1, "{}", text(&out));
        assert!(tokio::time::Instant::now() < deadline, "{}", text(&out));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Without --url: /readyz on admin.listen from the configuration.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = probe(&[], &rig.config).await;
        if code(&out) == 0 {
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("/readyz"),
                "{}",
                text(&out)
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", text(&out));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing listening, or an error status: exit 1.
    let out = probe(
        &[
            "--url",
            &format!("http://127.0.0.1:{}/healthz", free_port()),
        ],
        &rig.config,
    )
    .await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let out = probe(
        &["--url", &format!("http://127.0.0.1:{port}/no-such-page")],
        &rig.config,
    )
    .await;
    assert_eq!(code(&out), 1, "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_endpoint_beyond_loopback_is_refused_without_a_token() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..2));
    let port = free_port();
    let (mut child, log) = start_daemon(&rig, &format!("0.0.0.0:{port}")).await;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("run without an admin token did not exit")
        .unwrap();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{logged}");
    assert!(
        logged.contains("admin.token")
            && logged.contains("admin.token_file")
            && logged.contains("not a loopback address"),
        "{logged}"
    );
    assert!(!logged.contains("admin endpoint listening"), "{logged}");
    assert!(rig.sim.requests().is_empty(), "it ran before refusing");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_files_are_private_under_a_permissive_umask() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..3));
    // A daemon-like run holds the DB open while we look: `run` keeps the WAL and SHM files.
    let port = free_port();
    let cfg = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        format!(
            "{cfg}[sync]\nschedule = \"0 0 0 1 1 *\"\n[admin]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let script = "umask 000; exec \"$0\" --config \"$1\" run";
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_concur-sync"))
        .arg(&rig.config)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let db = rig.state_path();
    let side = |suffix: &str| {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ![".key", "-wal", "-shm", ".lock"]
        .iter()
        .all(|s| side(s).exists())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemon did not open its state"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in [
        db.clone(),
        side(".key"),
        side("-wal"),
        side("-shm"),
        side(".lock"),
    ] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    child.kill().await.unwrap();

    // `sync` under the same umask, in a fresh directory.
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..3));
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" --config \"$1\" sync")
        .arg(env!("CARGO_BIN_EXE_concur-sync"))
        .arg(&rig.config)
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let db = rig.state_path();
    for suffix in ["", ".key", ".lock", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let p = std::path::PathBuf::from(p);
        if suffix.is_empty() || suffix == ".key" || p.exists() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}

#[tokio::test]
async fn a_key_file_readable_by_others_is_warned_about() {
    let rig = Rig::start().await;
    let st = rig.status().await;
    assert_eq!(st["users"]["managed"], 0);
    let mut key = rig.state_path().into_os_string();
    key.push(".key");
    let out = rig.run(&["plan"]).await;
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("key file"),
        "{}",
        text(&out)
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    // The key is read by every command that opens the database for writing (the plan itself
    // fails here: the rig has no source file).
    let out = rig.run(&["plan"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARN") && stderr.contains("state key file") && stderr.contains("0644"),
        "{stderr}"
    );
}
