//! The LDIF export source (`source.kind = "ldif"`, RFC 2849): `slapcat`, `ldapsearch -LLL` and
//! Active Directory `ldifde` output.
//!
//! Handled: a leading `version: 1`, comments, folded lines (a line starting with one space
//! continues the previous one), base64 values (`attr:: …`), multi-valued attributes, attribute
//! options (`cn;lang-de`), CRLF line ends, a UTF-8 byte-order mark and `ldifde -u` (UTF-16)
//! files. `changetype: add` records (as `ldifde` writes every entry) are entries; other change
//! records (`modify`, `delete`, `modrdn`) and `attr:< URL` values are rejected, naming the line;
//! so is an entry with a malformed line (naming its DN and line), and the other entries still
//! sync. The attribute mapping is the one of `[source.ldap]` (see [`super::ldap_map`]).

use std::path::Path;

use base64::Engine;

use super::ldap_filter::matches;
use super::ldap_map::{Entry, Mapping, map_entries, normalize_dn};
use super::{FileLimits, Opened, Records, SourceError, bytes_digest};
use crate::config::{LdapConfig, LdapFilter};

/// Reads the LDIF file at `path` with the mapping and filter of `[source.ldap]`. Its digest is
/// the one of the bytes read ([`super::file_digest`]).
pub fn read(path: &Path, l: &LdapConfig, limits: FileLimits) -> Result<Opened, SourceError> {
    let mapping = Mapping::from_config(l)?;
    let filter = LdapFilter::parse(&l.filter).map_err(|m| SourceError::Ldif {
        file: "source.ldap.filter".into(),
        line: 0,
        reason: m,
    })?;
    check_sizes(path, limits)?;
    let file = path.display().to_string();
    let bytes = read_bytes(path, limits.no_follow)?;
    let all = parse(&file, &bytes)?;
    let read = all.len();
    let entries = select(all, &filter, &l.base_dn);
    tracing::info!(file = %path.display(), entries = read, selected = entries.len(), "read the LDIF file");
    Ok(Opened {
        records: Records::Items(map_entries(&entries, &mapping)),
        complete: true,
        label: file,
        digest: bytes_digest(&bytes),
        watermark: None,
    })
}

/// The entries a search of `base_dn` (subtree; everything when empty) with `filter` would
/// return. Entries with problems are always kept, so that they are reported.
pub fn select(entries: Vec<Entry>, filter: &LdapFilter, base_dn: &str) -> Vec<Entry> {
    let base = normalize_dn(base_dn);
    entries
        .into_iter()
        .filter(|e| {
            if !e.problems.is_empty() {
                return true;
            }
            let dn = normalize_dn(&e.dn);
            let in_base =
                base_dn.trim().is_empty() || dn == base || dn.ends_with(&format!(",{base}"));
            in_base && matches(filter, e)
        })
        .collect()
}

/// Reads and parses an LDIF file into entries (with per-entry problems).
/// Streams the file once before it is read whole: an entry longer than
/// `source.max_record_bytes` or a line longer than `source.max_field_bytes` (a file without
/// line breaks, a huge value) fails it in constant memory. Drop-folder files are opened without
/// following links.
fn check_sizes(path: &Path, limits: FileLimits) -> Result<(), SourceError> {
    use std::io::Read;
    let file = path.display().to_string();
    let f = super::csv::open_file(path, limits.no_follow).map_err(|error| SourceError::Open {
        file: file.clone(),
        error,
    })?;
    let (max_entry, max_line) = (limits.max_record_bytes, limits.max_field_bytes);
    let mut reader = std::io::BufReader::with_capacity(64 << 10, f);
    let mut buf = vec![0u8; 64 << 10];
    let (mut line, mut entry_line) = (1u64, 1u64);
    let (mut line_bytes, mut entry_bytes) = (0u64, 0u64);
    // UTF-16 files (ldifde) hold two bytes a character.
    let mut factor = 1;
    let mut first = true;
    loop {
        let n = reader.read(&mut buf).map_err(|error| SourceError::Read {
            file: file.clone(),
            line,
            error,
        })?;
        if n == 0 {
            return Ok(());
        }
        if first {
            first = false;
            if buf[..n].starts_with(&[0xFF, 0xFE]) {
                factor = 2;
            }
        }
        for &b in &buf[..n] {
            if b == b'\n' {
                // A blank line (only CR or UTF-16 zero bytes) ends an entry.
                if line_bytes <= 1 + factor {
                    entry_bytes = 0;
                    entry_line = line + 1;
                }
                line += 1;
                line_bytes = 0;
                continue;
            }
            line_bytes += 1;
            entry_bytes += 1;
            if line_bytes > max_line.saturating_mul(factor) {
                return Err(SourceError::Ldif {
                    file,
                    line,
                    reason: format!(
                        "a line is longer than source.max_field_bytes = {max_line} bytes; nothing from this file was applied"
                    ),
                });
            }
            if entry_bytes > max_entry.saturating_mul(factor) {
                return Err(SourceError::Ldif {
                    file,
                    line: entry_line,
                    reason: format!(
                        "an entry is longer than source.max_record_bytes = {max_entry} bytes; nothing from this file was applied"
                    ),
                });
            }
        }
    }
}

pub fn read_file(path: &Path) -> Result<Vec<Entry>, SourceError> {
    parse(&path.display().to_string(), &read_bytes(path, false)?)
}

/// The whole file; with `no_follow`, a symbolic link is refused.
fn read_bytes(path: &Path, no_follow: bool) -> Result<Vec<u8>, SourceError> {
    use std::io::Read;
    let open_error = |error| SourceError::Open {
        file: path.display().to_string(),
        error,
    };
    let mut bytes = Vec::new();
    super::csv::open_file(path, no_follow)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(open_error)?;
    Ok(bytes)
}

/// Parses LDIF content; `file` names it in origins and errors.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Vec<Entry>, SourceError> {
    let utf16;
    let text: &[u8] = if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        utf16 = decode_utf16(file, rest)?;
        utf16.as_bytes()
    } else {
        bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
    };
    if let Some(pos) = text.iter().position(|&b| b == 0) {
        let line = text[..pos].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        return Err(SourceError::Binary {
            file: file.to_owned(),
            line,
        });
    }
    let mut parser = Parser {
        file,
        entries: Vec::new(),
        cur: None,
        first_record: true,
    };
    // Logical lines: physical lines with their continuations joined, numbered by their first
    // physical line.
    let mut logical: Option<(u64, Vec<u8>)> = None;
    let mut in_comment = false;
    for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line_no = n as u64 + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if let Some(cont) = line.strip_prefix(b" ") {
            if in_comment {
                continue;
            }
            if let Some((_, buf)) = logical.as_mut() {
                buf.extend_from_slice(cont);
                continue;
            }
            // A continuation with nothing to continue: kept as a line of its own, which the
            // parser then reports.
        }
        if let Some((at, buf)) = logical.take() {
            parser.line(at, &buf)?;
        }
        in_comment = false;
        if line.is_empty() {
            parser.end_record();
        } else if line.starts_with(b"#") {
            in_comment = true;
        } else {
            logical = Some((line_no, line.to_vec()));
        }
    }
    if let Some((at, buf)) = logical.take() {
        parser.line(at, &buf)?;
    }
    parser.end_record();
    Ok(parser.entries)
}

fn decode_utf16(file: &str, b: &[u8]) -> Result<String, SourceError> {
    let units: Vec<u16> = b
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    String::from_utf16(&units).map_err(|_| SourceError::NotUtf8 {
        file: file.to_owned(),
        line: 0,
        column: "UTF-16 (ldifde -u)".into(),
    })
}

struct Parser<'a> {
    file: &'a str,
    entries: Vec<Entry>,
    cur: Option<Entry>,
    first_record: bool,
}

impl Parser<'_> {
    fn end_record(&mut self) {
        if let Some(e) = self.cur.take() {
            self.entries.push(e);
        }
    }

    fn problem(&mut self, line: u64, field: &str, message: String) {
        if let Some(e) = self.cur.as_mut() {
            e.problems
                .push((field.to_owned(), format!("line {line}: {message}")));
        }
    }

    fn line(&mut self, at: u64, buf: &[u8]) -> Result<(), SourceError> {
        let Some(colon) = buf.iter().position(|&b| b == b':') else {
            let shown = String::from_utf8_lossy(&buf[..buf.len().min(40)]).into_owned();
            if self.cur.is_none() {
                self.start_unnamed(at);
            }
            self.problem(
                at,
                "line",
                format!("not an LDIF line (no \"attribute:\"): {shown:?}"),
            );
            return Ok(());
        };
        let attr = String::from_utf8_lossy(&buf[..colon]).trim().to_owned();
        let rest = &buf[colon + 1..];
        let (kind, value) = match rest.first() {
            Some(b':') => (Kind::Base64, trim_fill(&rest[1..])),
            Some(b'<') => (Kind::Url, trim_fill(&rest[1..])),
            _ => (Kind::Plain, trim_fill(rest)),
        };
        let lower = attr.to_ascii_lowercase();

        if self.cur.is_none() {
            if self.first_record && lower == "version" {
                self.first_record = false;
                if value != b"1" {
                    return Err(SourceError::Ldif {
                        file: self.file.to_owned(),
                        line: at,
                        reason: format!(
                            "LDIF version {:?}; only version 1 exists",
                            String::from_utf8_lossy(value)
                        ),
                    });
                }
                return Ok(());
            }
            self.first_record = false;
            if lower != "dn" {
                self.start_unnamed(at);
                self.problem(
                    at,
                    "dn",
                    format!("a record must start with \"dn:\", found {attr:?}"),
                );
                return Ok(());
            }
            let dn = match kind {
                Kind::Plain => String::from_utf8(value.to_vec()).ok(),
                Kind::Base64 => b64(value).and_then(|v| String::from_utf8(v).ok()),
                Kind::Url => None,
            };
            let (dn, bad) = match dn {
                Some(dn) => (dn, None),
                None => (
                    String::from_utf8_lossy(value).into_owned(),
                    Some("the DN is not valid (UTF-8 text or base64 of it)".to_owned()),
                ),
            };
            self.cur = Some(Entry {
                origin: format!("{}:{at} ({dn})", self.file),
                dn,
                values: Vec::new(),
                problems: Vec::new(),
            });
            if let Some(m) = bad {
                self.problem(at, "dn", m);
            }
            return Ok(());
        }

        if attr.is_empty() || !valid_description(&attr) {
            self.problem(
                at,
                "line",
                format!("{attr:?} is not an attribute description"),
            );
            return Ok(());
        }
        match lower.as_str() {
            // `ldifde` writes every exported entry as an add record: that is the entry itself.
            "changetype" if value.eq_ignore_ascii_case(b"add") => return Ok(()),
            "changetype" => {
                self.problem(
                    at,
                    "changetype",
                    format!(
                        "a change record (changetype: {}) is not an entry; export entries (slapcat, ldapsearch -LLL, ldifde) instead",
                        String::from_utf8_lossy(value)
                    ),
                );
                return Ok(());
            }
            "control" => {
                self.problem(
                    at,
                    "control",
                    "controls belong to change records, which are not read".into(),
                );
                return Ok(());
            }
            _ => {}
        }
        match kind {
            Kind::Plain => {
                let v = value.to_vec();
                self.push(lower, v);
            }
            Kind::Base64 => match b64(value) {
                Some(v) => self.push(lower, v),
                None => self.problem(
                    at,
                    &attr,
                    format!("attribute {attr}: the base64 value is not valid base64"),
                ),
            },
            Kind::Url => self.problem(
                at,
                &attr,
                format!(
                    "attribute {attr}: values given by URL (\"{attr}:< {}\") are not read; export the value inline",
                    String::from_utf8_lossy(value)
                ),
            ),
        }
        Ok(())
    }

    fn start_unnamed(&mut self, at: u64) {
        self.cur = Some(Entry {
            dn: String::new(),
            origin: format!("{}:{at}", self.file),
            values: Vec::new(),
            problems: Vec::new(),
        });
    }

    fn push(&mut self, attr: String, value: Vec<u8>) {
        if let Some(e) = self.cur.as_mut() {
            e.values.push((attr, value));
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Base64,
    Url,
}

/// The value after the separator, without the leading FILL spaces.
fn trim_fill(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ').unwrap_or(v.len());
    &v[start..]
}

fn b64(v: &[u8]) -> Option<Vec<u8>> {
    let compact: Vec<u8> = v.iter().copied().filter(|b| *b != b' ').collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

/// `attr[;option…]`: a name or OID, options of letters, digits and hyphens.
fn valid_description(d: &str) -> bool {
    d.split(';').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LdapConfig;
    use crate::source::SourceItem;
    use crate::test_support::{fields, rejection};

    fn items(text: &str) -> Vec<SourceItem> {
        let entries = parse("t.ldif", text.as_bytes()).unwrap();
        map_entries(
            &entries,
            &Mapping::from_config(&LdapConfig::default()).unwrap(),
        )
    }

    #[test]
    fn folding_base64_options_comments_crlf_and_multiple_values() {
        // "Zoë" and "Ångström" base64-encoded, a folded DN and a folded comment, CRLF ends.
        let text = "version: 1\r\n\
            # a comment\r\n  that continues\r\n\
            dn: uid=zoe,ou=peo\r\n ple,dc=example,dc=com\r\n\
            objectClass: inetOrgPerson\r\n\
            employeeNumber: E1\r\n\
            givenName:: Wm/Dqw==\r\n\
            sn:: w4VuZ3N0csO2bQ==\r\n\
            cn;lang-de: Zoë Ångström\r\n\
            mail: zoe@exam\r\n ple.com\r\n\
            mail: zoe.alias@example.com\r\n\
            \r\n\
            \r\n\
            dn: uid=bo,ou=people,dc=example,dc=com\r\n\
            employeeNumber:E2\r\n\
            mail: bo@example.com\r\n";
        let entries = parse("t.ldif", text.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].dn, "uid=zoe,ou=people,dc=example,dc=com");
        assert_eq!(
            entries[0].origin,
            "t.ldif:4 (uid=zoe,ou=people,dc=example,dc=com)"
        );
        assert_eq!(
            entries[0].first("cn;lang-de").unwrap(),
            "Zoë Ångström".as_bytes()
        );
        assert_eq!(entries[0].first("cn"), None, "options are part of the name");
        assert_eq!(entries[0].all("mail").count(), 2);
        let items = items(text);
        let f = fields(&items[0]);
        assert_eq!(f["first_name"], "Zoë");
        assert_eq!(f["last_name"], "Ångström");
        assert_eq!(f["login_id"], "zoe@example.com");
        assert_eq!(fields(&items[1])["employee_id"], "E2");
    }

    #[test]
    fn change_records_url_values_and_malformed_lines_reject_their_entry_only() {
        let text = "dn: uid=a,dc=x\nchangetype: modify\nreplace: mail\nmail: a@x.com\n\n\
                    dn: uid=b,dc=x\nemployeeNumber: E2\njpegPhoto:< file:///tmp/b.jpg\n\n\
                    dn: uid=c,dc=x\nemployeeNumber: E3\nthis line has no colon\n\n\
                    dn: uid=d,dc=x\nemployeeNumber: E4\nsn:: %%%\n\n\
                    dn: uid=e,dc=x\nemployeeNumber: E5\nmail: e@x.com\n";
        let items = items(text);
        assert_eq!(items.len(), 5);
        let r = rejection(&items[0]);
        assert_eq!(r.field, "changetype");
        assert!(r.message.contains("line 2"), "{}", r.message);
        assert_eq!(r.source, "t.ldif:1 (uid=a,dc=x)");
        let r = rejection(&items[1]);
        assert!(
            r.message.contains("line 8") && r.message.contains("URL"),
            "{}",
            r.message
        );
        assert_eq!(r.employee_id.as_deref(), Some("E2"), "protects the user");
        let r = rejection(&items[2]);
        assert!(r.message.contains("line 12"), "{}", r.message);
        assert_eq!(r.source, "t.ldif:10 (uid=c,dc=x)");
        let r = rejection(&items[3]);
        assert!(r.message.contains("base64"), "{}", r.message);
        assert_eq!(fields(&items[4])["employee_id"], "E5");
    }

    #[test]
    fn a_record_without_dn_and_a_bad_version_are_reported() {
        let items = items("employeeNumber: E1\nmail: x@y.com\n");
        let r = rejection(&items[0]);
        assert_eq!(r.field, "dn");
        assert_eq!(r.source, "t.ldif:1");
        let e = parse("t.ldif", b"version: 2\n\ndn: cn=x\n").unwrap_err();
        assert!(e.to_string().contains("t.ldif:1"), "{e}");
        let e = parse("t.ldif", b"dn: cn=x\ncn: a\0b\n").unwrap_err();
        assert!(matches!(e, SourceError::Binary { line: 2, .. }), "{e}");
    }

    #[test]
    fn utf16_ldifde_output_and_a_bom_are_read() {
        let text = "dn: CN=Jörg,DC=ad\r\nemployeeNumber: 9\r\n";
        let mut bytes = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let e = parse("u.ldf", &bytes).unwrap();
        assert_eq!(e[0].dn, "CN=Jörg,DC=ad");
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(text.as_bytes());
        assert_eq!(parse("b.ldf", &bom).unwrap()[0].dn, "CN=Jörg,DC=ad");
    }
    #[test]
    fn active_directory_ldifde_export_with_the_documented_mapping() {
        let cfg: LdapConfig = serde_json::from_value(serde_json::json!({
            "attributes": {
                "employeeID": "employee_id",
                "userPrincipalName": "login_id",
                "department": "org_unit1",
                "ou": ""
            },
            "inactive_when": {"attribute": "userAccountControl", "bitmask": 2}
        }))
        .unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ldap/ad-ldifde.ldf");
        let entries = read_file(Path::new(path)).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(
            entries[0].stable_id().unwrap(),
            "objectGUID=00112233-4455-6677-8899-aabbccddeeff"
        );
        let documented =
            LdapFilter::parse("(&(objectClass=user)(objectCategory=person)(employeeID=*))")
                .unwrap();
        let staff = select(entries.clone(), &documented, "dc=CORP,dc=example,dc=com");
        assert_eq!(staff.len(), 3, "the service account has no employeeID");
        let items = map_entries(&entries, &Mapping::from_config(&cfg).unwrap());
        let boss = fields(&items[0]);
        assert_eq!(boss["employee_id"], "1001");
        assert_eq!(boss["first_name"], "Jörg");
        assert_eq!(boss["last_name"], "Müller");
        assert_eq!(boss["login_id"], "jmueller@corp.example.com");
        assert_eq!(boss["email"], "joerg.mueller@example.com");
        assert_eq!(boss["org_unit1"], "Finance");
        let ann = fields(&items[1]);
        assert_eq!(
            ann["manager_employee_id"], "1001",
            "escaped comma in the manager DN"
        );
        assert!(
            !ann.contains_key("active"),
            "66048 has no ACCOUNTDISABLE bit"
        );
        let old = fields(&items[2]);
        assert_eq!(old["active"], "N", "514 = 512 | ACCOUNTDISABLE");
        assert_eq!(old["manager_employee_id"], "1002");
        let svc = rejection(&items[3]);
        assert_eq!(svc.field, "employee_id");
        assert!(svc.source.contains("CN=Service Account"), "{}", svc.source);
    }
}
