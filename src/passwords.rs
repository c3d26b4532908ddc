//! `concur-sync passwords --file FILE`: one-off password resets for HR.
//!
//! Reads a CSV with the columns `login_id,password` (a header row naming them, in any order;
//! `-` reads standard input), sends the passwords through the User Password endpoint in batches
//! of at most 500, prints one outcome per user and stores nothing but an audit record that
//! names the file and the counts. Passwords are never stored, logged or printed. Exit codes:
//! 0 every password set, 2 some were refused or not sent, 1 the input or Concur is unusable.
//!
//! Under `concur.api = "v4"` the command is refused before the file is read (exit 1): v4 has
//! no password attribute, and users sign in through single sign-on.

use std::io::Read;
use std::ops::Range;
use std::path::Path;

use crate::concur::{PasswordOutcome, RecordOutcome, UserTarget};
use crate::config::Config;
use crate::error::SyncError;
use crate::model::Secret;
use crate::store::{Store, StoreError, lock::WriterLock};
use crate::wiring;
use crate::writer::{self, PasswordLedger, WhenUnsent};

/// The User Password endpoint takes at most this many users per request.
const PASSWORD_BATCH: usize = 500;

/// Why the password file could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum PasswordsError {
    #[error("{file}: cannot read: {error}")]
    Read {
        file: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Input {
        file: String,
        line: u64,
        message: String,
    },
    #[error(transparent)]
    Sync(#[from] SyncError),
}

/// One row of the password file.
struct Row {
    login_id: String,
    password: Secret,
}

/// What happened to one row.
struct RowOutcome {
    login_id: String,
    result: Result<(), String>,
}

/// Reads `login_id,password` rows. Rows with an empty login or password, or a login given
/// twice, come back as refused outcomes and are not sent.
fn read_rows(label: &str, bytes: &[u8]) -> Result<(Vec<Row>, Vec<RowOutcome>), PasswordsError> {
    let input = |line: u64, message: String| PasswordsError::Input {
        file: label.to_owned(),
        line,
        message,
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|e| input(0, format!("not UTF-8 text ({e}); save the file as UTF-8")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| input(1, format!("malformed CSV header: {e}")))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let (Some(login_col), Some(pw_col)) = (col("login_id"), col("password")) else {
        return Err(input(
            1,
            format!(
                "the header must name the columns login_id and password (found: {})",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut refused: Vec<RowOutcome> = Vec::new();
    let mut seen = std::collections::HashMap::<String, u64>::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = rdr.position().line();
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line, csv::Position::line);
                // The error text of the csv crate never quotes field content.
                return Err(input(line, format!("malformed CSV: {}", csv_reason(&e))));
            }
        }
        let line = record
            .position()
            .map_or(line, |p| line_at(text, p.byte() as usize));
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let login_id = record.get(login_col).unwrap_or("").trim().to_owned();
        let password = record.get(pw_col).unwrap_or("");
        let problem = if login_id.is_empty() {
            Some("login_id is empty".to_owned())
        } else if password.is_empty() {
            Some("password is empty".to_owned())
        } else {
            seen.get(&login_id.to_lowercase())
                .map(|first| format!("login_id given twice (first on line {first}); not sent"))
        };
        match problem {
            Some(message) => refused.push(RowOutcome {
                login_id: if login_id.is_empty() {
                    format!("{label}:{line}")
                } else {
                    login_id
                },
                result: Err(format!("{label}:{line}: {message}")),
            }),
            None => {
                seen.insert(login_id.to_lowercase(), line);
                rows.push(Row {
                    login_id,
                    password: Secret::new(password),
                });
            }
        }
    }
    Ok((rows, refused))
}

/// The 1-based line of the first character at or after `byte` that is not a line break (the
/// csv crate's own line counter lags behind CRLF headers and blank lines).
fn line_at(text: &str, byte: usize) -> u64 {
    let bytes = text.as_bytes();
    let mut at = byte.min(bytes.len());
    while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
        at += 1;
    }
    1 + bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_owned(),
        csv::ErrorKind::Io(e) => e.to_string(),
        _ => "unreadable row".to_owned(),
    }
}

fn read_input(file: &Path) -> Result<(String, Vec<u8>), PasswordsError> {
    let mut bytes = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|error| PasswordsError::Read {
                file: "<stdin>".into(),
                error,
            })?;
        Ok(("<stdin>".into(), bytes))
    } else {
        let label = file.display().to_string();
        bytes = std::fs::read(file).map_err(|error| PasswordsError::Read {
            file: label.clone(),
            error,
        })?;
        Ok((label, bytes))
    }
}

/// What became of each row sent, in order: the command's report is its only record.
struct Report<'a> {
    rows: &'a [Row],
    outcomes: Vec<RowOutcome>,
}

impl PasswordLedger for Report<'_> {
    fn sending(&mut self, _: Range<usize>) -> Result<(), StoreError> {
        Ok(())
    }
    fn settled(
        &mut self,
        _: Range<usize>,
        outcomes: Vec<PasswordOutcome>,
    ) -> Result<(), StoreError> {
        self.outcomes
            .extend(outcomes.into_iter().map(|o| RowOutcome {
                login_id: o.login_id,
                result: match o.outcome {
                    RecordOutcome::Acknowledged => Ok(()),
                    RecordOutcome::Failed(m) => Err(m),
                },
            }));
        Ok(())
    }
    fn unsent(&mut self, at: Range<usize>, message: &str) -> Result<(), StoreError> {
        self.outcomes
            .extend(self.rows[at].iter().map(|r| RowOutcome {
                login_id: r.login_id.clone(),
                result: Err(message.to_owned()),
            }));
        Ok(())
    }
}

/// Sends the rows in batches; a batch that gets no answer after its retries fails its users and
/// the next batch is tried. A credential Concur refuses stops everything.
async fn send(target: &impl UserTarget, rows: &[Row]) -> Result<Vec<RowOutcome>, SyncError> {
    let items: Vec<(&str, &Secret)> = rows
        .iter()
        .map(|r| (r.login_id.as_str(), &r.password))
        .collect();
    let mut report = Report {
        rows,
        outcomes: Vec::with_capacity(rows.len()),
    };
    writer::send_passwords(
        target,
        &items,
        PASSWORD_BATCH,
        None,
        WhenUnsent::NextBatch,
        &mut report,
    )
    .await?;
    Ok(report.outcomes)
}

/// Why `passwords` is refused under v4.
pub const V4_REFUSAL: &str = "concur-sync passwords is not available with concur.api = \"v4\": the User Provisioning Service v4 has no password attribute, so Concur cannot be given passwords. Users sign in through single sign-on (SAP Cloud Identity Services or the company's identity provider); nothing was read, sent or stored";

/// `concur-sync passwords --file FILE`.
pub async fn run(cfg: &Config, file: &Path) -> Result<u8, PasswordsError> {
    if cfg.concur.api == crate::config::ConcurApi::V4 {
        return Err(SyncError::Refused(V4_REFUSAL.into()).into());
    }
    let (label, bytes) = read_input(file)?;
    let (rows, mut refused) = read_rows(&label, &bytes)?;
    drop(bytes);
    let _lock = WriterLock::acquire(&cfg.state.path).map_err(SyncError::from)?;
    let store =
        Store::open(&cfg.state.path, cfg.state.key_file.as_deref()).map_err(SyncError::from)?;
    let mut outcomes = if rows.is_empty() {
        Vec::new()
    } else {
        let client = wiring::client(cfg, &store)?;
        send(&client, &rows).await?
    };
    outcomes.append(&mut refused);
    let failed: Vec<&RowOutcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    let ok = outcomes.len() - failed.len();
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        for o in &outcomes {
            let _ = match &o.result {
                Ok(()) => writeln!(stdout, "ok      {}", o.login_id),
                Err(m) => writeln!(stdout, "failed  {}: {m}", o.login_id),
            };
        }
        let _ = writeln!(
            stdout,
            "passwords: {ok} set, {} failed ({} rows from {label})",
            failed.len(),
            outcomes.len()
        );
    }
    let mut detail = format!("{ok} passwords set, {} failed, from {label}", failed.len());
    if !failed.is_empty() {
        let mut logins: Vec<&str> = failed.iter().map(|o| o.login_id.as_str()).collect();
        logins.sort_unstable();
        detail.push_str("; failed: ");
        detail.push_str(&logins.join(", "));
    }
    store.audit("passwords", &detail).map_err(SyncError::from)?;
    Ok(if failed.is_empty() { 0 } else { 2 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_by_header_name_and_bad_rows_refused() {
        let text = "\u{feff}password,Login_ID\r\nS3cret!,a@example.com\n,b@example.com\nx,\n\nother,A@example.com\n";
        let (rows, refused) = read_rows("pw.csv", text.as_bytes()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].login_id, "a@example.com");
        assert_eq!(rows[0].password.expose(), "S3cret!");
        let msgs: Vec<String> = refused
            .iter()
            .map(|r| r.result.clone().unwrap_err())
            .collect();
        assert_eq!(
            msgs,
            [
                "pw.csv:3: password is empty",
                "pw.csv:4: login_id is empty",
                "pw.csv:6: login_id given twice (first on line 2); not sent"
            ]
        );
        assert!(
            !msgs
                .iter()
                .any(|m| m.contains("other") || m.contains("S3cret"))
        );
    }

    #[test]
    fn a_header_without_the_columns_is_refused() {
        let e = read_rows("pw.csv", b"user,pass\na@b,c\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("pw.csv:1") && e.contains("login_id and password"),
            "{e}"
        );
    }
}
