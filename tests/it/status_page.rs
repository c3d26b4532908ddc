//! The admin endpoint's status page and its token: the real daemon over a state database the
//! real binary built against the simulator; the page loaded in a real headless Chromium and
//! checked on the DOM it rendered; a non-loopback endpoint with a token answering 401 to
//! requests that lack it (without one it does not start: `config_hardening.rs`).
//!
//! The browser test needs Debian's `chromium` and `chromium-driver` (`.ci/install-browser.sh`);
//! it skips when they are missing unless `CI` or `CONCUR_SYNC_REQUIRE_PEERS` is set. It saves a
//! screenshot of the page under the target directory and prints its path.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::harness::{Rig, code, csv_fields, free_port, q, row, rows, run_bin, spawn_daemon, text};

const TOKEN: &str = "it-admin-token-4f9c2e7a1b";
const HOSTILE: &str = "<script>alert(1)</script>";

/// Appends `[sync]` (a schedule that never fires during the test) and `[admin]` to the rig's
/// configuration.
fn admin_config(rig: &Rig, admin: &str) {
    let mut text = std::fs::read_to_string(&rig.config).unwrap();
    text.push_str(&format!(
        "\n[sync]\nschedule = \"0 0 0 1 1 *\"\n[admin]\n{admin}\n[service]\nshutdown_timeout = 5\n"
    ));
    std::fs::write(&rig.config, text).unwrap();
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_the_admin_token_guards_all_but_probes_and_metrics() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..5));
    let port = free_port();
    // (Without a token it does not start: config_hardening.rs.)
    admin_config(
        &rig,
        &format!("listen = \"0.0.0.0:{port}\"\ntoken = \"{TOKEN}\""),
    );
    let log = rig.dir.path().join("daemon.log");
    let _daemon = spawn_daemon(&rig.config, &log);
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let http = reqwest::Client::new();
    wait_until("the daemon is ready", Duration::from_secs(30), || async {
        http.get(url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // Its first cycle has run (an empty database is ready too).
    let t = Instant::now();
    loop {
        let st: Value = http
            .get(url("/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if st["last_cycle"]["outcome"] == "success" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no cycle ran: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = http.get(url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} without the token");
    }
    for (path, content) in [("/", "Cycles over time"), ("/status", "\"managed\":")] {
        let r = http.get(url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without the token");
        let challenges: Vec<String> = r
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(
            challenges.iter().any(|c| c.starts_with("Bearer")),
            "{challenges:?}"
        );
        let body = r.text().await.unwrap();
        assert!(!body.contains(content), "{body}");
        let r = http
            .get(url(path))
            .bearer_auth("it-admin-token-4f9c2e7a1X")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let r = http.get(url(path)).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} with the token");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body = r.text().await.unwrap();
        assert!(body.contains(content), "{path}: {body}");
        // A browser asks for it as a password (any user name).
        let r = http
            .get(url(path))
            .basic_auth("operator", Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with the token as a password");
    }
    let st: Value = http
        .get(url("/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["users"]["managed"], 5, "{st}");

    // The container probes keep working: `probe` asks the health paths, on loopback.
    for args in [vec!["probe"], vec!["probe", "--url", &url("/healthz")]] {
        let out = run_bin(&rig.config, &args, &[]).await;
        assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
    }
    let out = run_bin(&rig.config, &["probe", "--url", &url("/status")], &[]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains(TOKEN), "the token was logged: {logged}");
}

/// A WebDriver session of a headless Chromium, driven over HTTP by `chromedriver`.
struct Browser {
    http: reqwest::Client,
    url: String,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/lib/chromium".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Chromium and its driver, when installed; otherwise skips (or fails in CI).
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let chromium = tool("chromium").or_else(|| tool("chromium-browser"));
    let driver = tool("chromedriver");
    if let (Some(c), Some(d)) = (&chromium, &driver) {
        return Some((c.clone(), d.clone()));
    }
    assert!(
        !(std::env::var_os("CI").is_some()
            || std::env::var_os("CONCUR_SYNC_REQUIRE_PEERS").is_some()),
        "chromium or chromedriver missing; run .ci/install-browser.sh"
    );
    eprintln!("skipping: chromium or chromedriver missing; run .ci/install-browser.sh");
    None
}

impl Browser {
    async fn start(chromium: &Path, driver: &Path) -> Browser {
        let port = free_port();
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        wait_until("chromedriver answers", Duration::from_secs(30), || async {
            http.get(format!("{base}/status"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        Browser {
            http,
            url: format!("{base}/session/{session}"),
            _driver: child,
            _profile: profile,
        }
    }

    /// One WebDriver command; its `value`.
    async fn cmd(&self, path: &str, body: Option<Value>) -> Value {
        let req = match body {
            Some(b) => self.http.post(format!("{}{path}", self.url)).json(&b),
            None => self.http.get(format!("{}{path}", self.url)),
        };
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(
            r["value"]["error"].is_null(),
            "WebDriver {path}: {}",
            r["value"]
        );
        r["value"].clone()
    }

    /// Runs `script` in the page (a function body) and returns what it returns.
    async fn eval(&self, script: &str) -> Value {
        self.cmd("/execute/sync", Some(json!({"script": script, "args": []})))
            .await
    }

    async fn close(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_cycles_failures_and_held_plans_in_a_browser() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    // A state database with several cycles, a failure, a rejected row and a held plan.
    let rig = Rig::start().await;
    let port = free_port();
    admin_config(
        &rig,
        &format!("listen = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\""),
    );
    rig.write_hr(&rows(0..40));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    // Seven moves to another department (updates), new hires, one refused by Concur, and a
    // row that breaks the rules.
    let mut second: Vec<String> = (0..45)
        .map(|i| {
            let mut f = csv_fields(&row(i, ""));
            if (5..12).contains(&i) {
                f[11] = "Procurement".into();
            }
            f.iter().map(|v| q(v)).collect::<Vec<_>>().join(",")
        })
        .collect();
    second[44] = "E00044,broken,,Bad,,Row,true,US,USD,en_US,,R&D,E00000".into();
    rig.sim
        .reject(&["E00042"], &format!("{HOSTILE} Invalid Input: Custom3"));
    rig.write_hr(&second);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    // Three of 43 managed users leave: more than 5%, held.
    let third: Vec<String> = second
        .iter()
        .enumerate()
        .filter(|(i, _)| !(37..40).contains(i))
        .map(|(_, r)| r.clone())
        .collect();
    rig.write_hr(&third);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 3, "{}", text(&out));

    // The daemon runs a cycle at once (held again: the source is the same), then serves.
    let log = rig.dir.path().join("daemon.log");
    let _daemon = spawn_daemon(&rig.config, &log);
    let http = reqwest::Client::new();
    let status_url = format!("http://127.0.0.1:{port}/status");
    let t = Instant::now();
    let mut st = Value::Null;
    loop {
        if let Ok(r) = http.get(&status_url).bearer_auth(TOKEN).send().await
            && let Ok(v) = r.json::<Value>().await
        {
            st = v;
        }
        if st["last_cycle"]["id"] == 4 && st["last_cycle"]["outcome"] == "held" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the daemon's first cycle did not end held: {st:#}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held_cycle = st["last_cycle"]["id"].as_i64().unwrap();
    assert_eq!(st["outbox"]["held"], 3, "{st}");

    // The page in Chromium, the token sent the way a proxy in front of it would.
    let browser = Browser::start(&chromium, &driver).await;
    browser
        .cmd(
            "/goog/cdp/execute",
            Some(json!({"cmd": "Network.enable", "params": {}})),
        )
        .await;
    browser
        .cmd(
            "/goog/cdp/execute",
            Some(json!({"cmd": "Network.setExtraHTTPHeaders", "params": {
                "headers": {"Authorization": format!("Bearer {TOKEN}")}
            }})),
        )
        .await;
    browser
        .cmd(
            "/url",
            Some(json!({"url": format!("http://127.0.0.1:{port}/")})),
        )
        .await;
    let dom = browser
        .eval(
            r"
            const all = (root, sel) => [...root.querySelectorAll(sel)];
            const cells = tr => [...tr.cells].map(c => c.innerText.trim());
            return {
              title: document.title,
              scripts: all(document, 'script').length,
              forms: all(document, 'form, input, button').length,
              chart: all(document, 'svg.chart g.cycle').map(g => ({
                cycle: Number(g.dataset.cycle),
                outcome: g.dataset.outcome,
                bars: all(g, 'rect.bar').map(r => ({
                  op: r.getAttribute('class').replace('bar op-', ''),
                  count: Number(r.dataset.count),
                  height: r.getBoundingClientRect().height,
                })),
                mark: all(g, 'circle.outcome-mark').length,
              })),
              chartWidth: document.querySelector('svg.chart').getBoundingClientRect().width,
              held: all(document, '#held tr.held-plan').map(cells),
              approve: all(document, '#held code.approve').map(e => e.innerText),
              reject: all(document, '#held code.reject').map(e => e.innerText),
              failures: all(document, '#failures tr.failure').map(cells),
              rejections: all(document, '#rejections tr.finding').map(cells),
              cycles: all(document, '#cycles tr.cycle-row').map(cells),
              lastCycle: document.querySelector('#last-cycle dd').innerText,
              outbox: document.querySelector('#outbox dd').innerText,
              height: document.documentElement.scrollHeight,
            };
            ",
        )
        .await;

    // Save the screenshot first: it is the artefact to look at when an assertion fails.
    let height = dom["height"].as_u64().unwrap_or(1000).clamp(600, 4000);
    browser
        .cmd(
            "/window/rect",
            Some(json!({"width": 1280, "height": height + 140})),
        )
        .await;
    let png = browser.cmd("/screenshot", None).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&shot, &png).unwrap();
    println!("status page screenshot: {}", shot.display());
    browser.close().await;

    assert_eq!(dom["title"], "concur-sync status", "{dom:#}");
    // The hostile message is text, not markup: no script element, no form of any kind.
    assert_eq!(dom["scripts"], 0, "{dom:#}");
    assert_eq!(dom["forms"], 0, "{dom:#}");

    // The chart: a bar group per cycle, oldest first, with each operation drawn to scale.
    let chart = dom["chart"].as_array().unwrap();
    let ids: Vec<i64> = chart.iter().map(|g| g["cycle"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, held_cycle], "{dom:#}");
    let outcomes: Vec<&str> = chart
        .iter()
        .map(|g| g["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["success", "partial", "held", "held"], "{dom:#}");
    assert!(chart.iter().all(|g| g["mark"] == 1), "{dom:#}");
    let bar = |cycle: usize, op: &str| -> (u64, f64) {
        chart[cycle]["bars"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["op"] == op)
            .map(|b| (b["count"].as_u64().unwrap(), b["height"].as_f64().unwrap()))
            .unwrap_or_else(|| panic!("cycle {cycle}: no {op} bar: {dom:#}"))
    };
    let (created, created_px) = bar(0, "create");
    assert_eq!(created, 40, "{dom:#}");
    let (updated, updated_px) = bar(1, "update");
    assert_eq!(updated, 7, "{dom:#}");
    assert_eq!(bar(1, "create").0, 3, "{dom:#}");
    assert_eq!(bar(1, "failed").0, 1, "{dom:#}");
    assert_eq!(bar(1, "rejected").0, 1, "{dom:#}");
    assert!(
        updated_px > 1.0 && (created_px / updated_px - 40.0 / 7.0).abs() < 0.2,
        "bars not drawn to scale: {created_px} px for 40, {updated_px} px for 7"
    );
    assert!(dom["chartWidth"].as_f64().unwrap() > 300.0, "{dom:#}");

    // The held plan with the exact commands.
    assert_eq!(
        dom["approve"],
        json!([format!("concur-sync approve {held_cycle}")]),
        "{dom:#}"
    );
    assert_eq!(
        dom["reject"],
        json!([format!("concur-sync reject {held_cycle}")]),
        "{dom:#}"
    );
    let held = &dom["held"][0];
    assert!(
        held[1].as_str().unwrap().starts_with("3 (3 deactivate)"),
        "{dom:#}"
    );
    assert_eq!(
        held[4], "E00037 (deactivate), E00038 (deactivate), E00039 (deactivate)",
        "{dom:#}"
    );
    assert!(
        dom["outbox"].as_str().unwrap().contains("3 held"),
        "{dom:#}"
    );
    assert!(
        dom["lastCycle"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{held_cycle} held")),
        "{dom:#}"
    );

    // Failures and rejections with their reasons, the hostile text shown as text.
    let failures = dom["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{dom:#}");
    assert_eq!(failures[0][0], "E00042", "{dom:#}");
    assert_eq!(failures[0][1], "create", "{dom:#}");
    assert_eq!(
        failures[0][2],
        format!("{HOSTILE} Invalid Input: Custom3"),
        "{dom:#}"
    );
    let rejections = dom["rejections"].as_array().unwrap();
    assert_eq!(rejections.len(), 1, "{dom:#}");
    assert!(
        rejections[0][0].as_str().unwrap().ends_with("hr.csv:43"),
        "{dom:#}"
    );
    assert_eq!(rejections[0][1], "E00044", "{dom:#}");
    assert_eq!(dom["cycles"].as_array().unwrap().len(), 4, "{dom:#}");

    // The page's own HTML, as served, holds the message escaped.
    let served = http
        .get(format!("http://127.0.0.1:{port}/"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(
        served.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
}
