//! Shared test rig: the bundled simulator on 127.0.0.1:0, a temporary state directory, a config
//! file pointing at both, and the real `concur-sync` binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use concur_sync::simulator::{self, RequestRecord, SimConfig, SimHandle};

pub const HEADER: &str = "employee_id,login_id,email,first_name,middle_initial,last_name,active,country,currency,locale,ledger,org_unit1,manager_employee_id";

pub struct Rig {
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub hr: PathBuf,
}

impl Rig {
    pub async fn start() -> Rig {
        Rig::with(SimConfig::default(), "").await
    }

    /// `extra` is appended to the `[concur]` table, e.g. `requests_per_second = 2`.
    pub async fn with(sim_config: SimConfig, extra: &str) -> Rig {
        let sim = simulator::start("127.0.0.1:0".parse().unwrap(), sim_config)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let hr = dir.path().join("hr.csv");
        let config = dir.path().join("config.toml");
        let rps = if extra.contains("requests_per_second") {
            ""
        } else {
            "requests_per_second = 0\n"
        };
        // User v1 unless `extra` chooses the API.
        let api = if extra.contains("api =") {
            ""
        } else {
            "api = \"v1\"\n"
        };
        std::fs::write(
            &config,
            format!(
                "[state]\npath = {state:?}\n[source]\nkind = \"csv\"\npath = {hr:?}\n[defaults]\nledger = \"DEFAULT\"\n\
                 [concur]\nbase_url = \"{base}\"\nclient_id = \"it-client\"\nclient_secret = \"it-client-secret-7f3a\"\n\
                 company_id = \"it-company\"\nrequest_token = \"it-request-token-91bc\"\n{api}{rps}{extra}\n",
                state = dir.path().join("state.db").display().to_string(),
                hr = hr.display().to_string(),
                base = sim.base_url(),
            ),
        )
        .unwrap();
        Rig {
            sim,
            dir,
            config,
            hr,
        }
    }

    pub fn write_hr(&self, rows: &[String]) {
        std::fs::write(&self.hr, hr_csv(rows)).unwrap();
    }

    /// Runs the real binary with this rig's config.
    pub async fn run(&self, args: &[&str]) -> Output {
        run_bin(&self.config, args, &[]).await
    }

    pub async fn status(&self) -> serde_json::Value {
        let out = self.run(&["status", "--json"]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }
}

pub async fn run_bin(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_concur-sync"));
    cmd.arg("--config").arg(config).args(args);
    cmd.env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A CSV field, quoted when it needs to be.
pub fn q(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

const FIRST: &[&str] = &[
    "Zoë", "José", "Bjørn", "Chloé", "由紀", "Łukasz", "Ana", "Søren", "Müller", "Renée", "Nuño",
    "Олег",
];
const LAST: &[&str] = &[
    "O'Brien & <Sons>",
    "García",
    "Sørensen",
    "Dubois",
    "田中",
    "Wójcik",
    "Smith \"Jr\"",
    "Ångström",
    "Øster, Jr",
    "Lee",
];

/// One row of a generated population: employee `i` reports to `(i - 1) / 10` (0 is the root).
pub fn row(i: usize, last_suffix: &str) -> String {
    let id = format!("E{i:05}");
    let login = format!("user{i}@example.com");
    let mgr = if i == 0 {
        String::new()
    } else {
        format!("E{:05}", (i - 1) / 10)
    };
    let first = FIRST[i % FIRST.len()];
    let last = format!("{}{}", LAST[i % LAST.len()], last_suffix);
    let ou = ["R&D", "Sales & Marketing", "Finance <EMEA>", "Ops"][i % 4];
    [
        id.as_str(),
        &login,
        &login,
        first,
        "",
        &last,
        "true",
        "US",
        "USD",
        "en_US",
        "",
        ou,
        &mgr,
    ]
    .iter()
    .map(|s| q(s))
    .collect::<Vec<_>>()
    .join(",")
}

pub fn rows(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| row(i, "")).collect()
}

impl Rig {
    /// Rewrites this rig's config with `source` (TOML from `[source]` on, e.g. kind `ldap` with a
    /// `[source.ldap]` table, or kind `ldif`) in place of the CSV source.
    pub fn write_source_config(&self, source: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let start = text.find("[source]\n").unwrap();
        let end = text.find("[defaults]\n").unwrap();
        let mut out = String::from(&text[..start]);
        out.push_str(source.trim_end());
        out.push('\n');
        out.push_str(&text[end..]);
        std::fs::write(&self.config, out).unwrap();
    }

    /// Switches this rig to `source.kind = "scim"` with `table` as the `[source.scim]` table;
    /// calling it again replaces the table.
    pub fn use_scim(&self, table: &str) {
        const MARK: &str = "\n[source.scim]\n";
        let text = std::fs::read_to_string(&self.config).unwrap();
        let base = text
            .split(MARK)
            .next()
            .unwrap()
            .replace("[source]\nkind = \"csv\"", "[source]\nkind = \"scim\"");
        std::fs::write(&self.config, format!("{base}{MARK}{table}\n")).unwrap();
    }

    /// Writes the HR file with its own header (e.g. with `password` or `previous_employee_id`).
    pub fn write_csv(&self, header: &str, rows: &[String]) {
        let mut s = String::from(header);
        s.push('\n');
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        std::fs::write(&self.hr, s).unwrap();
    }

    /// Runs the real binary with `stdin` as its standard input.
    pub async fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_concur-sync"));
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.env_remove("RUST_LOG");
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).await.unwrap();
        drop(input);
        child.wait_with_output().await.unwrap()
    }

    /// Sends a request to the simulator's `/_sim/` control API; returns the status.
    pub async fn sim_control(&self, method: &str, path: &str, body: serde_json::Value) -> u16 {
        let url = format!("{}{path}", self.sim.base_url());
        let client = reqwest::Client::new();
        let req = match method {
            "PUT" => client.put(&url).json(&body),
            "POST" => client.post(&url).json(&body),
            "DELETE" => client.delete(&url),
            _ => client.get(&url),
        };
        req.send().await.unwrap().status().as_u16()
    }

    /// The simulator's log of requests whose path ends with `suffix` (case-insensitive).
    pub fn sim_requests_to(&self, suffix: &str) -> Vec<RequestRecord> {
        let suffix = suffix.to_ascii_lowercase();
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.path.to_ascii_lowercase().ends_with(&suffix))
            .collect()
    }
}

/// An HR CSV file's text: [`HEADER`] and `rows`.
pub fn hr_csv(rows: &[String]) -> String {
    let mut s = format!("{HEADER}\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

/// Starts `concur-sync run` with `config`, its log (stderr) written to `log`; killed on drop.
pub fn spawn_daemon(config: &Path, log: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_concur-sync"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Starts the real binary without waiting for it (stdout and stderr piped; killed on drop).
pub fn spawn_bin(config: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_concur-sync"));
    cmd.arg("--config").arg(config).args(args);
    cmd.env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

/// A loopback port free at the moment of asking (for an admin endpoint the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The simulator's users: employee id → fields.
pub fn sim_users(rig: &Rig) -> BTreeMap<String, BTreeMap<String, String>> {
    rig.sim
        .users()
        .into_iter()
        .map(|u| (u.emp_id().to_owned(), u.fields))
        .collect()
}

/// The User v1 batch writes the simulator received, in order.
pub fn user_v1_writes(rig: &Rig) -> Vec<RequestRecord> {
    rig.sim
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST"
                && r.path
                    .to_ascii_lowercase()
                    .ends_with("/api/user/v1.0/users")
        })
        .collect()
}

/// The simulator's company token request (password grant with the company request token).
pub fn company_token_request(http: &reqwest::Client, sim: &SimHandle) -> reqwest::RequestBuilder {
    http.post(format!("{}/oauth2/v0/token", sim.base_url()))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "cid"),
            ("client_secret", "secret"),
            ("username", "company-1"),
            ("password", "request-token"),
            ("credtype", "authtoken"),
        ])
}

/// The fields of a CSV line, unquoted.
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}
