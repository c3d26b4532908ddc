use std::path::Path;

use super::folder::{Input, Taken};
use super::read::read_file;
use super::*;
use crate::config::{AttendeeSourceConfig, AttendeeSourceKind, CsvConfig};

fn config(path: &Path, columns: &[(&str, &str)]) -> AttendeesConfig {
    AttendeesConfig {
        source: AttendeeSourceConfig {
            kind: AttendeeSourceKind::Csv,
            path: path.to_path_buf(),
            settle_seconds: 0.0,
            archive_days: 30,
            csv: CsvConfig {
                delimiter: Some(";".into()),
                columns: columns
                    .iter()
                    .map(|(h, c)| (h.to_string(), c.to_string()))
                    .collect(),
            },
        },
        page_size: 100,
    }
}

fn read_source(cfg: &AttendeesConfig) -> Result<read::AttendeeRead, SyncError> {
    read_file(&cfg.source.path, cfg, false)
}

#[test]
fn reads_a_mapped_file_and_rejects_bad_rows_naming_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.csv");
    std::fs::write(
        &f,
        "\u{feff}Guest ID;attendee_type_code;Surname;currency;custom22\n\
         G1;busguest;Tree;usd;x\n\
         G2;BUSGUEST;;USD;\n\
         G3;BUSGUEST;Long;EUR;{long}\n\
         G4;BUSGUEST;Dup;;\n\
         G4;busguest;Dup again;;\n\
         G,5;BUSGUEST;Comma;;\n\
         G6;BUSGUEST;Money;ABC;\n"
            .replace("{long}", &"y".repeat(49)),
    )
    .unwrap();
    let cfg = config(&f, &[("Guest ID", "external_id"), ("surname", "last_name")]);
    cfg.validate().unwrap();
    let read = read_source(&cfg).unwrap();
    assert_eq!(
        read.records.len(),
        1,
        "{:?} {:?}",
        read.records,
        read.rejections
    );
    let g1 = &read.records[0];
    assert_eq!(g1.key, ("G1".to_owned(), "BUSGUEST".to_owned()));
    assert_eq!(g1.fields["currencyCode"], "USD");
    assert_eq!(g1.fields["custom22"], "x");
    let got: Vec<String> = read.rejections.iter().map(rejection_text).collect();
    assert_eq!(
        got,
        [
            "a.csv:3: attendee G2: field last_name: is missing; it is required",
            "a.csv:4: attendee G3: field custom22: is 49 characters long; Attendees v4 allows at most 48",
            "a.csv:7: attendee G,5: field external_id: contains a comma, which Attendees v4 lookups cannot carry",
            "a.csv:8: attendee G6: field currency: \"ABC\" is not an ISO 4217 currency code",
            "a.csv:5: attendee G4: field external_id: external_id \"G4\" with type BUSGUEST appears 2 times; every such row rejected",
            "a.csv:6: attendee G4: field external_id: external_id \"G4\" with type BUSGUEST appears 2 times; every such row rejected",
        ]
    );
}

#[test]
fn a_file_without_key_columns_or_not_utf8_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.csv");
    std::fs::write(&f, "external_id;last_name\nA;B\n").unwrap();
    let e = read_source(&config(&f, &[])).unwrap_err().to_string();
    assert!(
        e.contains("attendee_type_code") && e.contains("a.csv"),
        "{e}"
    );
    std::fs::write(&f, b"external_id;attendee_type_code;last_name\nA;X;\xff\n").unwrap();
    let e = read_source(&config(&f, &[])).unwrap_err().to_string();
    assert!(e.contains("UTF-8") && e.contains(":2"), "{e}");
}

#[test]
fn rows_are_read_by_the_user_source_rules() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.csv");
    // A row short of fields is rejected naming its attendee, which it still keeps from being
    // gone; a quote left open that swallows rows fails the file.
    std::fs::write(
        &f,
        "external_id;attendee_type_code;last_name\r\nA1;X;Ann\r\nA2;X\r\n\r\n\"A3\";x;\"Lee\"\r\n",
    )
    .unwrap();
    let read = read_source(&config(&f, &[])).unwrap();
    assert_eq!(read.records.len(), 2, "{:?}", read.rejections);
    assert_eq!(read.records[1].key, ("A3".to_owned(), "X".to_owned()));
    assert_eq!(
        read.rejections
            .iter()
            .map(rejection_text)
            .collect::<Vec<_>>(),
        ["a.csv:3: attendee A2: field row: 2 fields where the header has 3"]
    );
    assert_eq!(read.rejections[0].identity.0, ["A2"]);
    std::fs::write(
        &f,
        "external_id;attendee_type_code;last_name\nA1;X;\"Ann\nA2;X;Bo\nA3\";X\n",
    )
    .unwrap();
    let e = read_source(&config(&f, &[])).unwrap_err().to_string();
    assert!(
        e.contains("a.csv:2: malformed CSV") && e.contains("swallowed rows"),
        "{e}"
    );
    std::fs::write(&f, "external_id;attendee_type_code;last_name;Last_Name\n").unwrap();
    let e = read_source(&config(&f, &[])).unwrap_err().to_string();
    assert!(e.contains("column Last_Name appears twice"), "{e}");
}

fn taken_ids(cfg: &AttendeesConfig, t: &Taken) -> Vec<String> {
    read_file(&t.path, cfg, t.no_follow)
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.key.0)
        .collect()
}

#[test]
fn a_drop_folder_hands_over_complete_files_oldest_first_and_keeps_the_last_as_current() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let header = "external_id;attendee_type_code;last_name\n";
    std::fs::write(inbox.join("2024-01-01.csv"), format!("{header}OLD;X;Y\n")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(inbox.join("2024-01-02.csv"), format!("{header}NEW;X;Y\n")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(inbox.join("notes.txt"), "not an attendee list").unwrap();
    let outside = dir.path().join("outside.csv");
    std::fs::write(&outside, format!("{header}SECRET;X;Y\n")).unwrap();
    std::os::unix::fs::symlink(&outside, inbox.join("link.csv")).unwrap();
    let cfg = config(&inbox, &[]);
    let store = Store::open(&dir.path().join("state.db"), None).unwrap();
    let mut input = Input::new(&cfg.source);
    let applied: Result<(), SyncError> = Ok(());

    let t = input.take(&store).unwrap();
    assert_eq!(taken_ids(&cfg, &t), ["OLD"]);
    input.put_away(&store, &t, &applied).unwrap();
    // The link was set aside, never read.
    assert!(!inbox.join("link.csv").exists());
    assert_eq!(
        std::fs::read_dir(inbox.join("rejected")).unwrap().count(),
        2
    );
    let t = input.take(&store).unwrap();
    assert_eq!(taken_ids(&cfg, &t), ["NEW"]);
    input.put_away(&store, &t, &applied).unwrap();
    // A file that cannot be read goes to rejected/ with its reason.
    let t = input.take(&store).unwrap();
    assert!(t.path.ends_with("notes.txt"));
    let unusable = read_file(&t.path, &cfg, t.no_follow).map(|_| ());
    input.put_away(&store, &t, &unusable).unwrap();
    // Nothing new: the last file processed is the current list, read from archive/.
    let t = input.take(&store).unwrap();
    assert!(t.path.starts_with(inbox.join("archive")), "{t:?}");
    assert_eq!(taken_ids(&cfg, &t), ["NEW"]);
    input.put_away(&store, &t, &applied).unwrap();
    assert_eq!(std::fs::read_dir(inbox.join("archive")).unwrap().count(), 2);
    let last = store.last_processed_attendee_file().unwrap().unwrap();
    assert_eq!(last.name, "2024-01-02.csv");
    // The user source's file history is its own.
    assert_eq!(store.last_processed_file().unwrap(), None);
    let alerts: Vec<String> = store
        .recent_alerts()
        .unwrap()
        .into_iter()
        .map(|a| format!("{}: {}", a.file, a.message))
        .collect();
    assert!(
        alerts
            .iter()
            .any(|a| a.starts_with("notes.txt: moved to rejected/: ")
                && a.contains("missing mandatory column external_id")),
        "{alerts:?}"
    );
    assert!(
        alerts
            .iter()
            .any(|a| a.starts_with("link.csv: moved to rejected/: a symbolic link")),
        "{alerts:?}"
    );
    assert!(outside.exists());
}

#[test]
fn config_names_a_bad_column_and_page_size() {
    let mut cfg = config(Path::new("/x.csv"), &[("Who", "name")]);
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("attendees.source.csv.columns.Who"), "{e}");
    cfg.source.csv.columns.clear();
    cfg.page_size = 101;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("attendees.page_size")
    );
    cfg.page_size = 100;
    cfg.source.settle_seconds = -1.0;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("attendees.source.settle_seconds")
    );
}
