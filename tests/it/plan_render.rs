//! What `plan` and `plan --json` print for a small fixed scenario, as snapshots: a synced
//! company whose next HR file brings a changed name, a changed login, a departure, a leaver
//! marked inactive, two new hires (one with a line break in a name) and a rejected row. The
//! temporary directory is replaced by `[dir]`, so the snapshots hold no machine's paths.

use super::harness::{Rig, code, text};

const DAY1: &[&str] = &[
    "E1,ana@example.com,ana@example.com,Ana,,Lee,true,US,USD,en_US,,R&D,",
    "E2,bo@example.com,bo@example.com,Bo,,Smith,true,US,USD,en_US,,Sales,E1",
    "E3,cy@example.com,cy@example.com,Cy,,Ng,true,US,USD,en_US,,Ops,E1",
    "E4,di@example.com,di@example.com,Di,,Ray,true,US,USD,en_US,,Ops,E1",
    "E5,ed@example.com,ed@example.com,Ed,,Ito,true,US,USD,en_US,,Ops,E1",
];

const DAY2: &[&str] = &[
    "E1,ana@example.com,ana@example.com,Ana,,Lee,true,US,USD,en_US,,R&D,",
    "E2,bo@example.com,bo@example.com,Bo,,Smith-Jones,true,US,USD,en_US,,Sales & Marketing,E1",
    "E4,di@example.com,di@example.com,Di,,Ray,false,US,USD,en_US,,Ops,E1",
    "E5,edward@example.com,edward@example.com,Edward,,Ito,true,US,USD,en_US,,Ops,E1",
    "E6,fay@example.com,fay@example.com,Fay,Q,Oduya,true,GB,GBP,en_GB,,Finance <EMEA>,E1",
    "E7,gil@example.com,gil@example.com,\"Gil\nBert\",,Moreau,true,FR,EUR,fr_FR,,Ops,E2",
    "E8,not-an-email,not-an-email,Hal,,Vance,true,US,USD,en_US,,Ops,E1",
];

/// A rig synced with day 1 and holding day 2 in its HR file.
async fn day_two() -> Rig {
    let rig = Rig::start().await;
    rig.write_hr(&DAY1.iter().map(ToString::to_string).collect::<Vec<_>>());
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    rig.write_hr(&DAY2.iter().map(ToString::to_string).collect::<Vec<_>>());
    rig
}

/// `plan` with `args`: its standard output, the temporary directory replaced by `[dir]`.
async fn plan(rig: &Rig, args: &[&str]) -> String {
    let out = rig.run(args).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let dir = rig.dir.path().display().to_string();
    String::from_utf8(out.stdout)
        .unwrap()
        .replace(&dir, "[dir]")
}

#[tokio::test]
async fn plan_json_lists_every_operation_rejection_and_warning() {
    let rig = day_two().await;
    insta::assert_snapshot!(plan(&rig, &["plan", "--json"]).await);
}

#[tokio::test]
async fn plan_text_shows_each_change_and_the_summary() {
    let rig = day_two().await;
    insta::assert_snapshot!(plan(&rig, &["plan"]).await);
}

#[tokio::test]
async fn plan_prints_the_same_plan_twice_and_changes_nothing() {
    let rig = day_two().await;
    let first = plan(&rig, &["plan", "--json"]).await;
    let second = plan(&rig, &["plan", "--json"]).await;
    assert_eq!(first, second);
    let status = rig.status().await;
    assert_eq!(status["users"]["managed"], 5, "{status}");
    assert_eq!(status["outbox"]["pending"], 0, "{status}");
}
