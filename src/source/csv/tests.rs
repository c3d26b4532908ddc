use super::*;
use crate::validate::Normalizer;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/csv")
        .join(name)
}

fn opts(delimiter: u8, columns: &[(&str, &str)]) -> CsvOptions {
    CsvOptions {
        delimiter,
        columns: columns
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..CsvOptions::default()
    }
}

fn render_raw(raw: &RawRecord) -> String {
    let mut out = raw.origin.clone();
    for (f, v) in &raw.values {
        out.push_str(&format!(" {f}={}", v.escape_debug()));
    }
    if let Some(p) = &raw.password {
        out.push_str(&format!(" password={}", p.expose()));
    }
    if let Some(p) = &raw.previous_employee_id {
        out.push_str(&format!(" previous_employee_id={p}"));
    }
    out
}

/// Reads a whole file: `open: …` if it cannot be opened, else one line per item.
fn read_all(path: &Path, opts: &CsvOptions) -> Vec<String> {
    match CsvReader::open(path, opts) {
        Err(e) => vec![format!("open: {e}")],
        Ok(rdr) => rdr
            .map(|item| match item {
                Ok(raw) => render_raw(&raw),
                Err(RowIssue::Rejected(r)) => r.to_string(),
                Err(RowIssue::Fatal(e)) => format!("fatal: {e}"),
            })
            .collect(),
    }
}

/// Writes `input` to `t.csv` in a temporary directory and reads it with `opts`.
fn check_with(opts: &CsvOptions, input: &[u8], expected: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.csv");
    std::fs::write(&path, input).expect("write");
    assert_eq!(
        read_all(&path, opts),
        expected,
        "input {:?}",
        String::from_utf8_lossy(&input[..input.len().min(200)])
    );
}

fn read_all_with(input: &[u8], opts: &CsvOptions) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.csv");
    std::fs::write(&path, input).expect("write");
    read_all(&path, opts)
}

fn check(input: &[u8], expected: &[&str]) {
    check_with(&CsvOptions::default(), input, expected);
}

#[test]
fn bom_crlf_quotes_whitespace_and_blank_lines() {
    let path = fixture("bom_crlf.csv");
    let rdr = CsvReader::open(&path, &CsvOptions::default()).expect("open");
    assert_eq!(
        rdr.headers(),
        [
            "Employee_ID",
            "LOGIN_ID",
            "first_name",
            "last_name",
            "Active",
            "Password",
            "Department"
        ]
    );
    assert_eq!(rdr.unknown_columns(), ["Department"]);
    assert_eq!(
        read_all(&path, &CsvOptions::default()),
        [
            "bom_crlf.csv:2 employee_id=E1 login_id=jdoe@example.com first_name=Jane \
             last_name=Doe, Jr. active=yes password=s3cret",
            "bom_crlf.csv:4 employee_id=E2 login_id=zoë@example.com first_name=Zoë \
             last_name=Müller-Łódź active=N",
            "bom_crlf.csv:6 employee_id=E3 login_id=o.brien@example.com first_name=Seán \
             last_name=O\\'Brien & <Sons>",
            "bom_crlf.csv:7 employee_id=E4 login_id=ann@example.com \
             first_name=Ann \\\"Annie\\\" last_name=Lee active=1",
        ]
    );
}

#[test]
fn line_numbers() {
    // Blank and whitespace-only lines, a row of empty fields, no final line break.
    check(
        b"employee_id,login_id\n\n  \n,\nE1,a@x\n\n\nE2,b@x",
        &[
            "t.csv:5 employee_id=E1 login_id=a@x",
            "t.csv:8 employee_id=E2 login_id=b@x",
        ],
    );
    // A record spanning lines; the quoted last field of a CRLF row.
    check(
        b"employee_id,login_id,last_name\r\nE1,\"a@x\",\"A\r\nB\"\r\nE2,b@x,\"C\"\r\n",
        &[
            "t.csv:2 employee_id=E1 login_id=a@x last_name=A\\r\\nB",
            "t.csv:4 employee_id=E2 login_id=b@x last_name=C",
        ],
    );
    check(
        b"\n\nemployee_id,login_id\nE1,a@x\n",
        &["t.csv:4 employee_id=E1 login_id=a@x"],
    );
    check(b"employee_id,login_id\n", &[]);
    check(b"employee_id,login_id", &[]);
}

#[test]
fn row_issues() {
    check(
        b"employee_id,login_id,first_name\nE1,a@x\nE2,b@x,Bob\nE3,c@x,Cy,extra\n,d@x\n",
        &[
            "t.csv:2: employee E1: field row: 2 fields where the header has 3",
            "t.csv:3 employee_id=E2 login_id=b@x first_name=Bob",
            "t.csv:4: employee E3: field row: 4 fields where the header has 3",
            "t.csv:5: field row: 2 fields where the header has 3",
        ],
    );
    // A quote left open swallows the rest of the file: fatal at the end.
    check(
        b"employee_id,login_id,last_name\nE1,a@x,Smith\nE2,b@x,\"Unclosed\nE3,c@x,Lee\n",
        &[
            "t.csv:2 employee_id=E1 login_id=a@x last_name=Smith",
            "fatal: t.csv:3: malformed CSV: a quoted field is never closed",
        ],
    );
    let mut long = b"employee_id,login_id,last_name\nE1,a@x,\"".to_vec();
    long.extend(b"x\n".repeat(150));
    long.extend(b"\"\nE2,b@x,Lee\n");
    check(
        &long,
        &[
            "fatal: t.csv:2: malformed CSV: a record spans 151 lines; a quote is probably \
           not closed",
        ],
    );
}

#[test]
fn unusable_files() {
    check(b"", &["open: t.csv: empty: no header row"]);
    check(
        b"\xef\xbb\xbf\r\n \n\n",
        &["open: t.csv: empty: no header row"],
    );
    check(
        b"employee_id,email\nE1,a@x\n",
        &[
            "open: t.csv:1: missing mandatory column login_id (the header has: \
           \"employee_id\", \"email\")",
        ],
    );
    check(
        b"employee_id;login_id\nE1;a@x\n",
        &[
            "open: t.csv:1: missing mandatory column employee_id (the header has: \
           \"employee_id;login_id\"; is the delimiter right?)",
        ],
    );
    check(
        b"employee_id,login_id,Email,EMAIL \n",
        &["open: t.csv:1: column EMAIL appears twice (columns 3 and 4)"],
    );
    check(
        b"employee_id,login_id,x,X\n",
        &["open: t.csv:1: column X appears twice (columns 3 and 4)"],
    );
    check_with(
        &opts(b',', &[("Mail", "email")]),
        b"employee_id,login_id,mail,email\n",
        &["open: t.csv:1: column email appears twice (columns 3 and 4)"],
    );
    check_with(
        &opts(b',', &[("Mail", "e-mail")]),
        b"employee_id,login_id,Mail\n",
        &[
            "open: t.csv: [source.csv.columns] maps \"Mail\" to \"e-mail\", which is not a \
           canonical field name",
        ],
    );
    check_with(
        &opts(b'"', &[]),
        b"employee_id,login_id\n",
        &["open: t.csv: [source.csv] delimiter '\"' cannot separate fields"],
    );
    check(
        b"employee_id,login_id\rE1,a@x\r",
        &[
            "open: t.csv:1: malformed CSV: a header name spans lines (are lines ended by CR \
           alone?)",
        ],
    );
    check(
        b"employee_id,login_id\x00\n",
        &["open: t.csv:1: binary content (NUL byte): not a text file"],
    );
    check(
        b"employee_id,l\xf6gin_id\n",
        &["open: t.csv:1: not UTF-8 text (column #2); save the file as UTF-8"],
    );
    let missing = read_all(Path::new("/nonexistent/hr.csv"), &CsvOptions::default());
    assert!(
        missing[0].starts_with("open: hr.csv: cannot open: "),
        "{missing:?}"
    );
}

#[test]
fn invalid_utf8_mid_file_is_fatal() {
    assert_eq!(
        read_all(&fixture("bad_utf8.csv"), &CsvOptions::default()),
        [
            "bad_utf8.csv:2 employee_id=E1 login_id=a@example.com last_name=Smith",
            "bad_utf8.csv:3 employee_id=E2 login_id=b@example.com last_name=Two\\nLines",
            "fatal: bad_utf8.csv:5: not UTF-8 text (column last_name); save the file as UTF-8",
        ]
    );
    // The bad byte on the second line of a record that spans lines.
    check(
        b"employee_id,login_id,last_name\nE1,a@x,\"A\nB\xff\"\n",
        &["fatal: t.csv:3: not UTF-8 text (column last_name); save the file as UTF-8"],
    );
}

#[test]
fn nul_bytes_are_fatal() {
    assert_eq!(
        read_all(&fixture("nul.csv"), &CsvOptions::default()),
        [
            "nul.csv:2 employee_id=E1 login_id=a@example.com",
            "fatal: nul.csv:3: binary content (NUL byte): not a text file",
        ]
    );
}

/// Reads a file and normalizes every record: one line per record or rejection.
fn pipeline(path: &Path, opts: &CsvOptions, defaults: &[(&str, &str)]) -> Vec<String> {
    let defaults = defaults
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let n = Normalizer::new(&defaults).expect("defaults");
    let mut out = Vec::new();
    for item in CsvReader::open(path, opts).expect("open") {
        match item.map(|raw| n.normalize(raw)) {
            Ok(Ok(rec)) => out.push(format!("{} {:?}", rec.origin, rec.user)),
            Ok(Err(rejections)) => {
                out.extend(rejections.iter().map(ToString::to_string));
            }
            Err(issue) => out.push(issue.to_string()),
        }
    }
    out
}

#[test]
fn mapped_headers_and_defaults() {
    let opts = opts(
        b';',
        &[
            ("personalnummer", "employee_id"),
            ("Mail", "login_id"),
            ("Vorname", "first_name"),
            ("Nachname", "last_name"),
            ("Kostenstelle", "org_unit1"),
            ("Land", " Country "),
            ("Alte Nummer", "previous_employee_id"),
            ("Nicht da", "custom1"),
        ],
    );
    let path = fixture("mapped.csv");
    let rdr = CsvReader::open(&path, &opts).expect("open");
    assert_eq!(rdr.unknown_columns(), ["Geburtstag"]);
    assert_eq!(rdr.columns()[6], Column::PreviousEmployeeId);
    assert_eq!(
        read_all(&path, &opts)[1],
        "mapped.csv:3 employee_id=1002 login_id=bernd@example.de first_name=Bernd \
         last_name=Weiß org_unit1=KS-20 country=AT previous_employee_id=0999"
    );
    assert_eq!(
        pipeline(
            &path,
            &opts,
            &[
                ("ledger", "DEFAULT"),
                ("currency", "eur"),
                ("locale", "de-DE")
            ]
        ),
        [
            "mapped.csv:2 {\"employee_id\": \"1001\", \"login_id\": \"anna@example.de\", \
             \"locale\": \"de_DE\", \"active\": \"Y\", \"first_name\": \"Anna\", \
             \"last_name\": \"Schmidt\", \"ledger\": \"DEFAULT\", \"org_unit1\": \"KS-10\", \
             \"country\": \"DE\", \"currency\": \"EUR\"}",
            "mapped.csv:3 {\"employee_id\": \"1002\", \"login_id\": \"bernd@example.de\", \
             \"locale\": \"de_DE\", \"active\": \"Y\", \"first_name\": \"Bernd\", \
             \"last_name\": \"Weiß\", \"ledger\": \"DEFAULT\", \"org_unit1\": \"KS-20\", \
             \"country\": \"AT\", \"currency\": \"EUR\"}",
        ]
    );
}

#[test]
fn a_field_past_the_field_limit_rejects_its_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.csv");
    let mut data = b"employee_id,login_id,last_name\nE1,a@x,\"".to_vec();
    data.extend(std::iter::repeat_n(b'A', 512 << 10));
    data.extend(b"\"\nE2,b@x,<Lee & Sons>\n");
    std::fs::write(&path, data).expect("write");
    assert_eq!(
        pipeline(&path, &CsvOptions::default(), &[]),
        [
            "big.csv:2: employee E1: field last_name: 524288 bytes, longer than \
             source.max_field_bytes = 65536",
            "big.csv:3 {\"employee_id\": \"E2\", \"login_id\": \"b@x\", \"active\": \"Y\", \
             \"last_name\": \"<Lee & Sons>\"}",
        ]
    );
}

#[test]
fn a_record_past_the_record_limit_fails_the_file() {
    let small = CsvOptions {
        max_record_bytes: 64,
        max_field_bytes: 16,
        ..CsvOptions::default()
    };
    // A long unquoted row, a quote left open over many short rows, a long header.
    let mut long_row = b"employee_id,login_id\nE1,a@x\nE2,".to_vec();
    long_row.extend(b"b".repeat(100));
    long_row.extend(b"@x\nE3,c@x\n");
    check_with(
        &small,
        &long_row,
        &[
            "t.csv:2 employee_id=E1 login_id=a@x",
            "fatal: t.csv:3: malformed CSV: a record is longer than source.max_record_bytes \
             = 64 bytes; is a quote left open, or is this not a CSV file? Nothing from this \
             file was applied",
        ],
    );
    let mut open_quote = b"employee_id,login_id\nE1,\"a@x\n".to_vec();
    open_quote.extend(b"x\n".repeat(100));
    check_with(
        &small,
        &open_quote,
        &[
            "fatal: t.csv:2: malformed CSV: a record is longer than source.max_record_bytes \
             = 64 bytes; is a quote left open, or is this not a CSV file? Nothing from this \
             file was applied",
        ],
    );
    check_with(
        &small,
        &b"x".repeat(1000),
        &[
            "open: t.csv:1: malformed CSV: a record is longer than source.max_record_bytes = \
           64 bytes; is a quote left open, or is this not a CSV file? Nothing from this file \
           was applied",
        ],
    );
    // Quotes inside unquoted values do not open a field: rows are still counted apart.
    let mut many = b"employee_id,login_id,last_name\n".to_vec();
    for i in 0..50 {
        many.extend(format!("E{i},u{i}@x,O\"Brien\n").as_bytes());
    }
    let out = read_all_with(&many, &small);
    assert_eq!(out.len(), 50, "{out:?}");
}

#[test]
fn a_quote_that_swallows_rows_fails_the_file() {
    // The quote opened on line 3 is closed by the quote on line 5: rows 4 and 5 vanish
    // into one value.
    check(
        b"employee_id,login_id,last_name\nE1,a@x,Smith\nE2,b@x,\"Unclosed\nE3,c@x,Lee\n\
          E4,d@x,\"Quoted\"\nE5,e@x,Ng\n",
        &[
            "t.csv:2 employee_id=E1 login_id=a@x last_name=Smith",
            "fatal: t.csv:3: malformed CSV: a quoted field (column last_name) opened on line 3 \
             runs over line 4, which looks like a row of its own: a quote is probably not \
             closed and swallowed rows. Nothing from this file was applied",
        ],
    );
    // Fewer delimiters than the header needs, but an id and a login where they belong.
    check(
        b"employee_id,login_id,first_name,last_name\nE1,a@x,\"Ann\nE2,b@x\n\",Lee\n",
        &[
            "fatal: t.csv:2: malformed CSV: a quoted field (column first_name) opened on line \
           2 runs over line 3, which looks like a row of its own: a quote is probably not \
           closed and swallowed rows. Nothing from this file was applied",
        ],
    );
    // A real multi-line value (an address with a comma) is not taken for a row.
    check(
        b"employee_id,login_id,first_name,last_name\nE1,a@x,\"12 Main St,\nSpringfield\",Lee\n",
        &[
            "t.csv:2 employee_id=E1 login_id=a@x first_name=12 Main St,\\nSpringfield \
           last_name=Lee",
        ],
    );
}

#[test]
fn many_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("many.csv");
    std::fs::write(&path, generate(20_000)).expect("write");
    let n = Normalizer::new(&BTreeMap::from([(
        "ledger".to_owned(),
        "DEFAULT".to_owned(),
    )]))
    .expect("defaults");
    let mut count = 0;
    let mut last = String::new();
    for item in CsvReader::open(&path, &CsvOptions::default()).expect("open") {
        let rec = n.normalize(item.expect("row")).expect("valid");
        count += 1;
        last = rec.origin;
    }
    assert_eq!((count, last.as_str()), (20_000, "many.csv:20001"));
}

/// A realistic HR file of `rows` rows, about 150 bytes a row.
pub(crate) fn generate(rows: usize) -> Vec<u8> {
    let mut out = b"employee_id,login_id,email,first_name,last_name,active,country,\
                    currency,org_unit1,manager_employee_id,custom1\n"
        .to_vec();
    for i in 0..rows {
        out.extend(
            format!(
                "E{i:07},user{i}@example.com,user{i}@example.com,Firstname,Lastname-{i},\
                 {},US,USD,Engineering Department,E{:07},Cost center {}\n",
                if i % 10 == 0 { "N" } else { "Y" },
                if i == 0 { 1 } else { i / 10 },
                i % 97
            )
            .as_bytes(),
        );
    }
    out
}
