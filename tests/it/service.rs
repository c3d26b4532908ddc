//! `concur-sync run` end to end: the real binary as a daemon against the simulator, fed through
//! its drop folder, probed through its admin endpoint, stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use concur_sync::simulator::{self, SimConfig, SimHandle};

use super::harness::{code, free_port, hr_csv, row, rows, run_bin, spawn_daemon, text};

struct Daemon {
    sim: SimHandle,
    dir: tempfile::TempDir,
    config: PathBuf,
    inbox: PathBuf,
    admin: String,
    child: Option<tokio::process::Child>,
}

impl Daemon {
    async fn new() -> Daemon {
        let sim = simulator::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        let admin = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[state]\npath = {state:?}\n[source]\nkind = \"csv\"\npath = {inbox:?}\nsettle_seconds = 2\n\
                 [defaults]\nledger = \"DEFAULT\"\n[concur]\napi = \"v1\"\nbase_url = \"{base}\"\nclient_id = \"c\"\n\
                 client_secret = \"s\"\ncompany_id = \"co\"\nrequest_token = \"t\"\nrequests_per_second = 0\n\
                 [sync]\nschedule = \"0 0 0 1 1 *\"\nmax_deactivations = \"5%\"\n[admin]\nlisten = \"{admin}\"\n\
                 [service]\nshutdown_timeout = 10\npoll_seconds = 0.3\n",
                state = dir.path().join("state.db").display().to_string(),
                inbox = inbox.display().to_string(),
                base = sim.base_url(),
            ),
        )
        .unwrap();
        Daemon {
            sim,
            dir,
            config,
            inbox,
            admin,
            child: None,
        }
    }

    async fn start(&mut self) {
        let child = spawn_daemon(&self.config, &self.dir.path().join("daemon.log"));
        self.child = Some(child);
        let url = format!("http://{}/healthz", self.admin);
        wait_until(
            "the admin endpoint answers",
            Duration::from_secs(20),
            || async { reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) },
        )
        .await;
    }

    /// SIGTERM; returns the exit code and how long the stop took.
    async fn stop(&mut self) -> (i32, Duration) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().unwrap() as i32;
        let t = Instant::now();
        // SAFETY: sending a signal to our own child process.
        unsafe { libc_kill(pid, 15) };
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("daemon did not stop")
            .unwrap();
        (status.code().unwrap_or(-1), t.elapsed())
    }

    /// Drops a file the way HR systems should: write under a temporary name, then rename.
    fn drop_file(&self, name: &str, rows: &[String]) {
        let tmp = self.inbox.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, hr_csv(rows)).unwrap();
        std::fs::rename(&tmp, self.inbox.join(name)).unwrap();
    }

    fn active_ids(&self) -> Vec<String> {
        self.sim
            .users()
            .into_iter()
            .filter(simulator::SimUser::active)
            .map(|u| u.emp_id().to_owned())
            .collect()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}{path}", self.admin))
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status").await.1).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
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

fn archived(inbox: &Path) -> usize {
    std::fs::read_dir(inbox.join("archive"))
        .map(Iterator::count)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_takes_complete_files_guards_deactivations_and_stops_cleanly() {
    let mut d = Daemon::new().await;
    d.start().await;

    // A file renamed into the folder is applied and archived.
    d.drop_file("hr-1.csv", &rows(0..100));
    wait_until(
        "100 users reach Concur",
        Duration::from_secs(20),
        || async { d.sim.users().len() == 100 },
    )
    .await;
    wait_until("the file is archived", Duration::from_secs(10), || async {
        archived(&d.inbox) == 1 && !d.inbox.join("hr-1.csv").exists()
    })
    .await;

    // A half-written file (still growing, no marker) is not taken.
    let growing = d.inbox.join("hr-2.csv");
    let full = hr_csv(&rows(0..101));
    let (a, b) = full.split_at(full.len() / 2);
    std::fs::write(&growing, a).unwrap();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&growing)
            .unwrap();
        std::io::Write::write_all(&mut f, b"").unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
        assert!(growing.exists(), "a growing file was taken");
        assert_eq!(d.sim.users().len(), 100);
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&growing)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b.as_bytes()))
        .unwrap();
    wait_until(
        "the settled file is taken",
        Duration::from_secs(20),
        || async { d.sim.users().len() == 101 },
    )
    .await;

    // A file cut in the middle of a row, and a 60%-smaller file, deactivate nobody.
    // Cut mid-row about three rows before the end: three users vanish, which the deactivation
    // limit alone would allow; the short last row gives the truncation away.
    let mut cut = hr_csv(&rows(0..101));
    let at = cut[..cut.len() * 97 / 100].rfind('\n').unwrap() + 12;
    cut.truncate(at);
    let tmp = d.inbox.join(".cut.tmp");
    std::fs::write(&tmp, &cut).unwrap();
    std::fs::rename(&tmp, d.inbox.join("hr-3.csv")).unwrap();
    wait_until(
        "the truncated file is processed",
        Duration::from_secs(20),
        || async { archived(&d.inbox) == 3 },
    )
    .await;
    assert_eq!(
        d.active_ids().len(),
        101,
        "a truncated file deactivated someone"
    );
    assert_eq!(d.status().await["last_cycle"]["outcome"], "degraded");
    d.drop_file("hr-4.csv", &rows(0..40));
    wait_until(
        "the small file is processed",
        Duration::from_secs(20),
        || async { archived(&d.inbox) == 4 },
    )
    .await;
    assert_eq!(
        d.active_ids().len(),
        101,
        "a shrunken file deactivated someone"
    );
    assert_eq!(d.status().await["last_cycle"]["outcome"], "degraded");

    // Ten departures of 101 (over 5%) are held whole; approve applies exactly them.
    d.drop_file("hr-5.csv", &rows(0..91));
    wait_until("the plan is held", Duration::from_secs(20), || async {
        d.status().await["last_cycle"]["outcome"] == "held"
    })
    .await;
    assert_eq!(d.active_ids().len(), 101);
    let st = d.status().await;
    let held_cycle = st["last_cycle"]["id"].as_i64().unwrap();
    assert_eq!(st["outbox"]["held"], 10);
    let (code_ready, ready) = d.get("/readyz").await;
    assert_eq!(code_ready, 200, "{ready}");
    assert!(
        ready.contains(&format!("concur-sync approve {held_cycle}")),
        "{ready}"
    );
    let (_, metrics) = d.get("/metrics").await;
    assert!(metrics.contains("concur_sync_held_plans 10"), "{metrics}");
    assert!(
        metrics.contains("concur_sync_cycles_total{outcome=\"held\"} 1"),
        "{metrics}"
    );
    let out = run_bin(&d.config, &["approve", &held_cycle.to_string()], &[]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    wait_until(
        "the approved deactivations reach Concur",
        Duration::from_secs(20),
        || async { d.active_ids().len() == 91 },
    )
    .await;
    let active = d.active_ids();
    assert!(active.iter().all(|id| id.as_str() < "E00091"), "{active:?}");

    // Idle, the worker only wakes for its polling interval (0.3 s here): scanning the folder
    // must not wake it again through its own file events.
    let wakeups = |m: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix("concur_sync_worker_wakeups_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let before = wakeups(&d.get("/metrics").await.1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = wakeups(&d.get("/metrics").await.1) - before;
    assert!(idle <= 20, "the idle worker woke {idle} times in 3 s");

    // SIGTERM: exit 0 inside the timeout.
    let (exit, took) = d.stop().await;
    assert_eq!(exit, 0, "{}", d.log());
    assert!(took < Duration::from_secs(10), "stop took {took:?}");

    // A file dropped while stopped is taken after a restart.
    let mut back = rows(0..91);
    back.push(row(95, ""));
    d.drop_file("hr-6.csv", &back);
    d.start().await;
    wait_until(
        "the restarted daemon applies the waiting file",
        Duration::from_secs(20),
        || async { d.active_ids().len() == 92 },
    )
    .await;
    let (exit, _) = d.stop().await;
    assert_eq!(exit, 0, "{}", d.log());
}
