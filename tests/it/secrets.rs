//! No secret leaks: full cycles with source passwords, a client secret, a request token and
//! rotating tokens at the most verbose log level; then every byte the binary wrote (stdout,
//! stderr, the state DB and its WAL) is scanned for every secret.

use std::time::Duration;

use super::harness::{HEADER, Rig, code, row, run_bin, text};
use concur_sync::simulator::SimConfig;

const CLIENT_SECRET: &str = "it-client-secret-7f3a";
const REQUEST_TOKEN: &str = "it-request-token-91bc";

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_the_output_or_the_state_database() {
    let sim = SimConfig {
        client_id: Some("it-client".into()),
        client_secret: Some(CLIENT_SECRET.into()),
        company_id: Some("it-company".into()),
        request_token: Some(REQUEST_TOKEN.into()),
        // Short tokens: cycles refresh (and rotate the refresh token) proactively.
        token_ttl: Duration::from_secs(2),
        ..SimConfig::default()
    };
    // The last round changes every user's name: not a mistake to hold here.
    let rig = Rig::with(
        sim,
        "requests_per_second = 4\nbatch_size = 100\n[sync]\nmax_identity_changes = \"100%\"",
    )
    .await;
    let header = format!("{HEADER},password");
    let passwords = |round: usize| -> Vec<String> {
        (0..30)
            .map(|i| {
                if i % 2 == 0 {
                    format!("PlainPw{round}x{i:02}")
                } else {
                    format!("Pw-{round}-{i:02}-<&>\"é'")
                }
            })
            .collect()
    };
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.into(), REQUEST_TOKEN.into()];
    let mut output: Vec<u8> = Vec::new();
    let env: &[(&str, &str)] = &[("RUST_LOG", "trace")];

    for round in 0..3 {
        let pws = passwords(round);
        secrets.extend(pws.iter().cloned());
        let rows: Vec<String> = (0..300)
            .map(|i| {
                let pw = if i < 30 {
                    super::harness::q(&pws[i])
                } else {
                    String::new()
                };
                format!("{},{pw}", row(i, ""))
            })
            .collect();
        rig.write_csv(&header, &rows);
        if round == 1 {
            // An expired token mid-run: the 403 path and a forced refresh.
            rig.sim.expire_tokens();
        }
        // The middle round logs as JSON.
        let json_log: &[(&str, &str)] =
            &[("RUST_LOG", "trace"), ("CONCUR_SYNC__LOG__FORMAT", "json")];
        let out = run_bin(
            &rig.config,
            &["sync"],
            if round == 1 { json_log } else { env },
        )
        .await;
        assert_eq!(code(&out), 0, "{}", text(&out));
        output.extend(&out.stdout);
        output.extend(&out.stderr);
        let out = run_bin(&rig.config, &["plan", "--json"], env).await;
        output.extend(&out.stdout);
        output.extend(&out.stderr);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(rig.sim.password_matches("E00003", &passwords(2)[3]));

    // A one-off reset, and a batch Concur refuses (its error path logs the response).
    let reset = "Reset-Only-Once-9x!";
    secrets.push(reset.into());
    let file = rig.dir.path().join("resets.csv");
    std::fs::write(
        &file,
        format!("login_id,password\nuser40@example.com,{reset}\nnobody@example.com,{reset}x\n"),
    )
    .unwrap();
    let out = run_bin(
        &rig.config,
        &["passwords", "--file", file.to_str().unwrap()],
        env,
    )
    .await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    output.extend(&out.stdout);
    output.extend(&out.stderr);
    let out = run_bin(&rig.config, &["status", "--json"], env).await;
    output.extend(&out.stdout);
    output.extend(&out.stderr);
    std::fs::remove_file(&file).unwrap();

    // A last cycle killed with requests in flight leaves its write-ahead log behind.
    let pws = passwords(3);
    secrets.extend(pws.iter().cloned());
    let rows: Vec<String> = (0..300)
        .map(|i| {
            let pw = if i < 30 {
                super::harness::q(&pws[i])
            } else {
                String::new()
            };
            format!("{},{pw}", row(i, " II"))
        })
        .collect();
    rig.write_csv(&header, &rows);
    rig.sim.set_faults(concur_sync::simulator::Faults {
        latency_ms: 300,
        ..Default::default()
    });
    let seen = rig.sim.requests().len();
    let mut child = super::harness::spawn_bin(&rig.config, &["sync"], env);
    while rig.sim.requests().len() < seen + 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(!out.status.success());
    output.extend(&out.stdout);
    output.extend(&out.stderr);
    let mut wal = rig.state_path().into_os_string();
    wal.push("-wal");
    assert!(std::path::Path::new(&wal).exists(), "a WAL to scan");

    let tokens = rig.sim.issued_tokens();
    assert!(
        tokens.len() >= 8,
        "several access and refresh tokens were issued: {}",
        tokens.len()
    );
    secrets.extend(tokens);
    assert!(
        contains(&output, " TRACE ") && contains(&output, "\"level\":\"TRACE\""),
        "trace logging was on, as text and as JSON"
    );

    let mut files: Vec<(String, Vec<u8>)> = vec![("output".into(), output)];
    for entry in std::fs::read_dir(rig.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "config.toml" || name == "hr.csv" {
            continue; // the inputs that hold them on purpose
        }
        files.push((name, std::fs::read(&path).unwrap()));
    }
    assert!(files.iter().any(|(n, _)| n == "state.db"));
    let mut found = Vec::new();
    for (name, bytes) in &files {
        for s in &secrets {
            if contains(bytes, s) {
                found.push(format!("{s} in {name}"));
            }
        }
    }
    assert!(found.is_empty(), "secrets found: {found:#?}");
}
