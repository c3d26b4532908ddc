//! User v1 and User Password wire format: pure encoders and tolerant decoders, no IO.
//!
//! Sending is strict: the documented element names and casing, in the order of the element
//! table (`super::fields`), only present fields. Reading is tolerant: element names match case-insensitively with namespaces and
//! prefixes ignored, both documented spellings are accepted (`UsersDetails`/`UserDetails`,
//! `message`/`Message`), and unclosed elements are closed at the end of the document (the
//! password response example in the docs lacks `</UserPasswordStatusList>`).
//!
//! Text that XML 1.0 cannot carry (C0 control characters other than tab, newline and carriage
//! return; U+FFFE, U+FFFF) is replaced by U+FFFD, so the encoder never emits a document Concur
//! must reject as malformed; rejecting such values belongs to validation upstream. A carriage
//! return is sent as `&#13;` so that XML end-of-line normalization does not turn it into `\n`.

use std::fmt::Write as _;

use super::fields::PROFILE;
use crate::concur::body::{Node, non_empty, parse_tree};
use crate::concur::error::ConcurError;
use crate::model::{Field, Secret, User};

/// Default namespace of every User v1 and User Password document.
pub const USER_NAMESPACE: &str = "http://www.concursolutions.com/api/user/2011/02";

/// Concur's limit of records per User v1 or User Password batch.
pub const MAX_BATCH: usize = 500;

/// One user of a User v1 batch. For a rename, `LoginId`/`EmpId` carry the old values Concur knows
/// and `NewLoginID`/`NewEmployeeID` carry `user`'s.
#[derive(Clone, Copy, Debug)]
pub struct BatchRecord<'a> {
    pub user: &'a User,
    pub password: Option<&'a Secret>,
    pub old_login_id: Option<&'a str>,
    pub old_employee_id: Option<&'a str>,
}

impl<'a> BatchRecord<'a> {
    /// A plain upsert: no password, no rename.
    pub fn new(user: &'a User) -> Self {
        BatchRecord {
            user,
            password: None,
            old_login_id: None,
            old_employee_id: None,
        }
    }

    /// The `EmpId` sent: the old id when renaming, else the user's.
    pub fn sent_employee_id(&self) -> &'a str {
        match self.old_employee_id {
            Some(old) if !old.is_empty() => old,
            _ => self.user.employee_id(),
        }
    }

    /// The `NewEmployeeID` sent, if this record changes the employee id.
    pub fn new_employee_id(&self) -> Option<&'a str> {
        let new = self.user.employee_id();
        match self.old_employee_id {
            Some(old) if !old.is_empty() && old != new && !new.is_empty() => Some(new),
            _ => None,
        }
    }

    fn sent_login_id(&self) -> Option<&'a str> {
        match self.old_login_id {
            Some(old) if !old.is_empty() => Some(old),
            _ => self.user.get(Field::LOGIN_ID),
        }
    }

    fn new_login_id(&self) -> Option<&'a str> {
        let new = self.user.login_id();
        match self.old_login_id {
            Some(old) if !old.is_empty() && old != new && !new.is_empty() => Some(new),
            _ => None,
        }
    }
}

/// A decoded `user-batch-result`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchResult {
    pub records_succeeded: u32,
    pub records_failed: Option<u32>,
    /// The listed errors; Concur lists at most the first ten.
    pub errors: Vec<BatchItemError>,
    pub successes: Vec<BatchItemSuccess>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchItemError {
    pub employee_id: Option<String>,
    pub feed_record_number: Option<u32>,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchItemSuccess {
    pub employee_id: Option<String>,
    pub feed_record_number: Option<u32>,
    pub status: String,
}

impl BatchItemSuccess {
    /// Concur's documented rule: the status of a success "always contains the word SUCCESS".
    pub fn is_success(&self) -> bool {
        self.status.to_ascii_uppercase().contains("SUCCESS")
    }
}

/// A decoded password `BatchResult`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PasswordBatchResult {
    pub records_succeeded: Option<u32>,
    pub records_failed: Option<u32>,
    pub statuses: Vec<PasswordStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordStatus {
    pub login_id: String,
    /// `Status` was `Success` (any casing).
    pub success: bool,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Encodes a User v1 `batch`: one `UserProfile` per record, `FeedRecordNumber` = 1-based position.
pub fn encode_user_batch(records: &[BatchRecord<'_>]) -> String {
    let mut out = String::with_capacity(128 + records.len() * 512);
    let _ = writeln!(out, "<batch xmlns=\"{USER_NAMESPACE}\">");
    for (i, record) in records.iter().enumerate() {
        out.push_str("  <UserProfile>\n");
        element(&mut out, "EmpId", record.sent_employee_id());
        element(&mut out, "FeedRecordNumber", &(i + 1).to_string());
        if let Some(login) = record.sent_login_id() {
            element(&mut out, "LoginId", login);
        }
        // The profile after the keys, in element-table order, the password after `Active`.
        for &(field, name) in &PROFILE {
            if matches!(field, Field::EMPLOYEE_ID | Field::LOGIN_ID) {
                continue;
            }
            if let Some(v) = record.user.get(field) {
                element(&mut out, name, v);
            }
            if field == Field::ACTIVE
                && let Some(p) = record.password.filter(|p| !p.is_empty())
            {
                element(&mut out, "Password", p.expose());
            }
        }
        if let Some(new) = record.new_login_id() {
            element(&mut out, "NewLoginID", new);
        }
        if let Some(new) = record.new_employee_id() {
            element(&mut out, "NewEmployeeID", new);
        }
        out.push_str("  </UserProfile>\n");
    }
    out.push_str("</batch>\n");
    out
}

/// Encodes a User Password `UserBatch` of `(login id, new password)` pairs.
pub fn encode_password_batch(users: &[(&str, &Secret)]) -> String {
    let mut out = String::with_capacity(128 + users.len() * 128);
    let _ = writeln!(out, "<UserBatch xmlns=\"{USER_NAMESPACE}\">");
    for (login, password) in users {
        out.push_str("  <User>\n");
        element(&mut out, "LoginID", login);
        element(&mut out, "Password", password.expose());
        out.push_str("  </User>\n");
    }
    out.push_str("</UserBatch>\n");
    out
}

fn element(out: &mut String, name: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    out.push_str("    <");
    out.push_str(name);
    out.push('>');
    escape_into(out, value);
    out.push_str("</");
    out.push_str(name);
    out.push_str(">\n");
}

/// Escapes text content; see the module docs for characters XML 1.0 cannot carry.
pub fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn parse_count(node: &Node, names: &[&str]) -> Result<Option<u32>, ConcurError> {
    match node.text_of(names) {
        None => Ok(None),
        Some(t) if t.is_empty() => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| ConcurError::Decode(format!("{} is not a count: {t:?}", names[0]))),
    }
}

pub fn decode_user_batch_result(xml: &str) -> Result<BatchResult, ConcurError> {
    let root = parse_tree(xml)?;
    match root.name.as_str() {
        "user-batch-result" => {}
        "error" => {
            return Err(ConcurError::Batch(
                root.text_of(&["message"]).unwrap_or_default(),
            ));
        }
        other => {
            return Err(ConcurError::Decode(format!(
                "expected user-batch-result, found {other}"
            )));
        }
    }
    let mut result = BatchResult {
        records_succeeded: parse_count(&root, &["records-succeeded", "recordssucceeded"])?
            .unwrap_or(0),
        records_failed: parse_count(&root, &["records-failed", "recordsfailed"])?,
        ..BatchResult::default()
    };
    let mut errors = Vec::new();
    root.descendants("error", &mut errors);
    for e in errors {
        result.errors.push(BatchItemError {
            employee_id: non_empty(e.text_of(&["employeeid", "empid"])),
            feed_record_number: e
                .text_of(&["feedrecordnumber"])
                .and_then(|t| t.parse().ok()),
            message: e.text_of(&["message"]).unwrap_or_default(),
        });
    }
    let mut infos = Vec::new();
    root.descendants("userinfo", &mut infos);
    for s in infos {
        result.successes.push(BatchItemSuccess {
            employee_id: non_empty(s.text_of(&["employeeid", "empid"])),
            feed_record_number: s
                .text_of(&["feedrecordnumber"])
                .and_then(|t| t.parse().ok()),
            status: s.text_of(&["status"]).unwrap_or_default(),
        });
    }
    Ok(result)
}

/// Decodes a User Password `BatchResult`.
pub fn decode_password_result(xml: &str) -> Result<PasswordBatchResult, ConcurError> {
    let root = parse_tree(xml)?;
    match root.name.as_str() {
        "batchresult" => {}
        "error" => {
            return Err(ConcurError::Batch(
                root.text_of(&["message"]).unwrap_or_default(),
            ));
        }
        other => {
            return Err(ConcurError::Decode(format!(
                "expected BatchResult, found {other}"
            )));
        }
    }
    let mut result = PasswordBatchResult {
        records_succeeded: parse_count(&root, &["recordssucceeded", "records-succeeded"])?,
        records_failed: parse_count(&root, &["recordsfailed", "records-failed"])?,
        statuses: Vec::new(),
    };
    let mut items = Vec::new();
    root.descendants("userpasswordstatus", &mut items);
    for item in items {
        result.statuses.push(PasswordStatus {
            login_id: item.text_of(&["loginid"]).unwrap_or_default(),
            success: item
                .text_of(&["status"])
                .is_some_and(|s| s.eq_ignore_ascii_case("success")),
            message: item.text_of(&["message"]).unwrap_or_default(),
        });
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn squash(xml: &str) -> String {
        // Whitespace between tags is insignificant for these documents.
        let mut out = String::new();
        let mut pending = String::new();
        let mut after_tag = false;
        for c in xml.chars() {
            if after_tag && c.is_whitespace() {
                pending.push(c);
                continue;
            }
            if c != '<' {
                out.push_str(&pending);
            }
            pending.clear();
            out.push(c);
            after_tag = c == '>';
        }
        out
    }

    fn user(pairs: &[(Field, &str)]) -> User {
        let mut u = User::new();
        for (f, v) in pairs {
            u.set(*f, *v);
        }
        u
    }

    fn terry() -> User {
        user(&[
            (Field::EMPLOYEE_ID, "345678"),
            (Field::LOGIN_ID, "tb@example.com"),
            (Field::LOCALE, "en_US"),
            (Field::ACTIVE, "Y"),
            (Field::FIRST_NAME, "Terry"),
            (Field::LAST_NAME, "Brown"),
            (Field::MIDDLE_INITIAL, "L"),
            (Field::EMAIL, "tb@example.com"),
            (Field::LEDGER, "DEFAULT"),
            (Field::ORG_UNIT1, "R&D"),
            (Field::CUSTOM1, "Redmond"),
            (Field::COUNTRY, "US"),
            (Field::CURRENCY, "USD"),
            (Field::COUNTRY_SUBDIVISION, "US-WA"),
            (Field::EXPENSE_USER, "Y"),
            (Field::EXPENSE_APPROVER, "Y"),
            (Field::TRIP_USER, "Y"),
            (Field::INVOICE_USER, "N"),
            (Field::INVOICE_APPROVER, "N"),
        ])
    }

    const WIRE_REQUEST: &str = r#"<batch xmlns="http://www.concursolutions.com/api/user/2011/02">
  <UserProfile>
    <EmpId>345678</EmpId><FeedRecordNumber>1</FeedRecordNumber>
    <LoginId>tb@example.com</LoginId><LocaleName>en_US</LocaleName>
    <Active>Y</Active><Password>Welcome1!</Password>
    <FirstName>Terry</FirstName><LastName>Brown</LastName><Mi>L</Mi>
    <EmailAddress>tb@example.com</EmailAddress><LedgerKey>DEFAULT</LedgerKey>
    <OrgUnit1>R&amp;D</OrgUnit1><Custom1>Redmond</Custom1>
    <CtryCode>US</CtryCode><CrnKey>USD</CrnKey><CtrySubCode>US-WA</CtrySubCode>
    <ExpenseUser>Y</ExpenseUser><ExpenseApprover>Y</ExpenseApprover><TripUser>Y</TripUser>
    <InvoiceUser>N</InvoiceUser><InvoiceApprover>N</InvoiceApprover>
  </UserProfile>
  <UserProfile>
    <EmpId>456789</EmpId><FeedRecordNumber>2</FeedRecordNumber>
    <LoginId>cm@example.com</LoginId><Active>N</Active>
  </UserProfile>
</batch>"#;

    #[test]
    fn encodes_the_documented_request() {
        let terry = terry();
        let chris = user(&[
            (Field::ACTIVE, "N"),
            (Field::LOGIN_ID, "cm@example.com"),
            (Field::EMPLOYEE_ID, "456789"),
        ]);
        let pw = Secret::new("Welcome1!");
        let records = [
            BatchRecord {
                password: Some(&pw),
                ..BatchRecord::new(&terry)
            },
            BatchRecord::new(&chris),
        ];
        let xml = encode_user_batch(&records);
        assert_eq!(squash(&xml), squash(WIRE_REQUEST));
        insta::assert_snapshot!(xml);
    }

    #[test]
    fn encodes_renames_with_old_keys_first() {
        let u = user(&[
            (Field::EMPLOYEE_ID, "E2"),
            (Field::LOGIN_ID, "new@example.com"),
            (Field::LAST_NAME, "Brown"),
        ]);
        let record = BatchRecord {
            old_login_id: Some("old@example.com"),
            old_employee_id: Some("E1"),
            ..BatchRecord::new(&u)
        };
        let xml = squash(&encode_user_batch(&[record]));
        assert!(xml.contains(
            "<UserProfile><EmpId>E1</EmpId><FeedRecordNumber>1</FeedRecordNumber>\
             <LoginId>old@example.com</LoginId><LastName>Brown</LastName>\
             <NewLoginID>new@example.com</NewLoginID><NewEmployeeID>E2</NewEmployeeID></UserProfile>"
        ), "{xml}");
        // An "old" value equal to the new one is not a rename.
        let same = BatchRecord {
            old_login_id: Some("new@example.com"),
            ..BatchRecord::new(&u)
        };
        assert!(!encode_user_batch(&[same]).contains("NewLoginID"));
    }

    #[test]
    fn hostile_text_round_trips_and_stays_well_formed() {
        for (input, expected) in [
            ("O'Brien & <Sons>", "O'Brien & <Sons>"),
            ("Zoë Łukasz 山田 😀", "Zoë Łukasz 山田 😀"),
            ("a]]>b\"c", "a]]>b\"c"),
            ("tab\there\nline\r\nend", "tab\there\nline\r\nend"),
            (
                "bell\u{7}nul\u{0}esc\u{1b}",
                "bell\u{FFFD}nul\u{FFFD}esc\u{FFFD}",
            ),
            ("\u{FFFF}x", "\u{FFFD}x"),
        ] {
            let u = user(&[
                (Field::EMPLOYEE_ID, "1"),
                (Field::LOGIN_ID, "a@b"),
                (Field::LAST_NAME, input),
            ]);
            let xml = encode_user_batch(&[BatchRecord::new(&u)]);
            assert!(
                !xml.chars()
                    .any(|c| (c as u32) < 0x20 && !"\t\n".contains(c))
            );
            let root = parse_tree(&xml).expect("well-formed");
            let profile = root.child("userprofile").expect("profile");
            assert_eq!(profile.child("lastname").expect("lastname").text, expected);
        }
    }

    #[test]
    fn encodes_password_batch() {
        let pw = Secret::new("1234password!");
        let amp = Secret::new("p&<ss");
        let xml = encode_password_batch(&[("tb@example.com", &pw), ("cm@example.com", &amp)]);
        insta::assert_snapshot!(xml);
        let back = parse_tree(&xml).expect("well-formed");
        assert_eq!(back.name, "userbatch");
        assert_eq!(
            back.children[1].text_of(&["password"]).as_deref(),
            Some("p&<ss")
        );
    }

    const WIRE_RESPONSE: &str = r#"<user-batch-result xmlns="http://www.concursolutions.com/api/user/2011/02" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
  <records-succeeded>1</records-succeeded>
  <records-failed>1</records-failed>
  <errors>
    <error><EmployeeID>456789</EmployeeID><FeedRecordNumber>2</FeedRecordNumber><message>Missing Required Field: Password</message></error>
  </errors>
  <UsersDetails>
    <UserInfo><EmployeeID>345678</EmployeeID><FeedRecordNumber>1</FeedRecordNumber><Status>SUCCESS</Status></UserInfo>
  </UsersDetails>
</user-batch-result>"#;

    fn wire_result() -> BatchResult {
        BatchResult {
            records_succeeded: 1,
            records_failed: Some(1),
            errors: vec![BatchItemError {
                employee_id: Some("456789".into()),
                feed_record_number: Some(2),
                message: "Missing Required Field: Password".into(),
            }],
            successes: vec![BatchItemSuccess {
                employee_id: Some("345678".into()),
                feed_record_number: Some(1),
                status: "SUCCESS".into(),
            }],
        }
    }

    #[test]
    fn decodes_batch_result_variants() {
        let docs_spelling = WIRE_RESPONSE
            .replace("UsersDetails", "UserDetails")
            .replace("message>", "Message>");
        let mixed_case = WIRE_RESPONSE
            .replace("records-succeeded", "Records-Succeeded")
            .replace("<error>", "<ERROR>")
            .replace("</error>", "</Error>")
            .replace("EmployeeID", "employeeId")
            .replace("Status>", "STATUS>");
        let prefixed = WIRE_RESPONSE
            .replace("<user-batch-result xmlns=", "<u:user-batch-result xmlns:u=")
            .replace("</user-batch-result>", "</u:user-batch-result>")
            .replace("<UserInfo>", "<u:UserInfo>")
            .replace("</UserInfo>", "</u:UserInfo>");
        let with_decl =
            format!("\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\n{WIRE_RESPONSE}");
        for doc in [
            WIRE_RESPONSE.to_owned(),
            docs_spelling,
            mixed_case,
            prefixed,
            with_decl,
        ] {
            assert_eq!(
                decode_user_batch_result(&doc).expect(&doc),
                wire_result(),
                "{doc}"
            );
        }
    }

    #[test]
    fn decodes_empty_containers_and_batch_errors() {
        let ok = r#"<user-batch-result xmlns="http://www.concursolutions.com/api/user/2011/02"><records-succeeded>3</records-succeeded><records-failed>0</records-failed><errors/><UsersDetails/></user-batch-result>"#;
        let r = decode_user_batch_result(ok).expect("decodes");
        assert_eq!((r.records_succeeded, r.records_failed), (3, Some(0)));
        assert!(r.errors.is_empty() && r.successes.is_empty());

        let refused = "<Error><Message>Maximum User Records per Batch Exceeded</Message><Server-Time>2017-06-22T16:51:37</Server-Time></Error>";
        match decode_user_batch_result(refused) {
            Err(ConcurError::Batch(m)) => assert_eq!(m, "Maximum User Records per Batch Exceeded"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decode_user_batch_result("<html>oops"),
            Err(ConcurError::Decode(_))
        ));
        assert!(matches!(
            decode_user_batch_result(
                "<user-batch-result><records-succeeded>x</records-succeeded></user-batch-result>"
            ),
            Err(ConcurError::Decode(_))
        ));
    }

    #[test]
    fn decodes_password_result_even_without_closing_list() {
        // Verbatim shape of the docs' example, which lacks </UserPasswordStatusList>.
        let docs = r#"<BatchResult xmlns="http://www.concursolutions.com/api/user/2011/02" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
    <RecordsSucceeded>1</RecordsSucceeded>
    <RecordsFailed>1</RecordsFailed>
    <UserPasswordStatusList>
        <UserPasswordStatus>
            <LoginID>tb@example.com</LoginID>
            <Status>Success</Status>
            <Message>Password Updated.</Message>
        </UserPasswordStatus>
        <UserPasswordStatus>
            <LoginID>cm@example.com</LoginID>
            <Status>Failed</Status>
            <Message>This employee doesn't have an Employee ID. To update the password, the user must have an Employee ID.</Message>
        </UserPasswordStatus>
</BatchResult>"#;
        let fixed = docs.replace("</BatchResult>", "</UserPasswordStatusList></BatchResult>");
        let lower = fixed.to_lowercase();
        for doc in [docs.to_owned(), fixed] {
            let r = decode_password_result(&doc).expect("decodes");
            assert_eq!(r.records_succeeded, Some(1));
            assert_eq!(r.records_failed, Some(1));
            assert_eq!(r.statuses.len(), 2);
            assert_eq!(
                r.statuses[0],
                PasswordStatus {
                    login_id: "tb@example.com".into(),
                    success: true,
                    message: "Password Updated.".into()
                }
            );
            assert!(!r.statuses[1].success);
            assert!(r.statuses[1].message.starts_with("This employee doesn't"));
        }
        let r = decode_password_result(&lower).expect("lower-case decodes");
        assert_eq!(r.statuses.len(), 2);
        assert!(r.statuses[0].success);
    }
}
