//! Reading Concur back through the APIs of the User v1 era: who the token belongs to (Profile
//! v1), the company's employee form (User v1 FormFields, whose field ids are `UserProfile`
//! element names) and every user (Bulk User v3.1). Decoders are tolerant: field names are
//! matched ignoring case, missing or null values are empty, numbers may arrive as strings.

use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::Value;

use crate::concur::body::{error_message, get_ci, text};
use crate::concur::client::ConcurClient;
use crate::concur::error::ConcurError;
use crate::model::Field;

pub const PROFILE_PATH: &str = "/profile/v1/me?schema=compact";
pub const FORM_FIELDS_PATH: &str = "/api/user/v1.0/FormFields";
pub const BULK_USERS_PATH: &str = "/users/";
/// Bulk User v3.1 documents a maximum of 100 users per page (its swagger says 1000).
pub const BULK_PAGE_SIZE: usize = 100;

/// What Profile v1 says about the token's principal.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    pub id: String,
    /// `Company` for a company token, `Enterprise` for a user.
    pub user_type: String,
    pub display_name: String,
    pub company_uuid: String,
    pub company_id: String,
}

/// One field of the company's Global employee form (its `id` is a `UserProfile` element).
pub use crate::rules::FormField;

/// One user as Bulk User v3.1 lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConcurUser {
    pub id: String,
    pub employee_id: String,
    pub login_id: String,
    pub active: bool,
    pub first_name: String,
    pub middle_name: String,
    pub last_name: String,
    pub email: String,
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "y" | "yes" | "1"
        ),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        // Concur's default for a user is active.
        None | Some(Value::Null) => true,
        _ => false,
    }
}

fn json(path: &str, body: &str) -> Result<Value, ConcurError> {
    serde_json::from_str(body.trim_start_matches('\u{feff}'))
        .map_err(|e| ConcurError::Decode(format!("{path}: not the expected JSON: {e}")))
}

/// `GET /profile/v1/me?schema=compact`.
pub async fn profile_me(client: &ConcurClient) -> Result<Principal, ConcurError> {
    let body = client.get(PROFILE_PATH).await?;
    decode_profile(&json("/profile/v1/me", &body)?)
}

fn decode_profile(v: &Value) -> Result<Principal, ConcurError> {
    if !v.is_object() {
        return Err(ConcurError::Decode(
            "/profile/v1/me: the answer is not a JSON object".into(),
        ));
    }
    let employee = get_ci(v, "com:concur:Employee:1.0");
    let emp = |k: &str| text(employee.and_then(|e| get_ci(e, k)));
    let meta_type = text(get_ci(v, "meta").and_then(|m| get_ci(m, "principalType")));
    let mut user_type = text(get_ci(v, "userType"));
    if user_type.is_empty() {
        user_type = meta_type;
    }
    let display_name = [text(get_ci(v, "displayName")), text(get_ci(v, "userName"))]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    Ok(Principal {
        id: text(get_ci(v, "id")),
        user_type,
        display_name,
        company_uuid: emp("companyUUID"),
        company_id: emp("companyId"),
    })
}

/// `GET /api/user/v1.0/FormFields`: the company's Global employee form.
pub async fn form_fields(client: &ConcurClient) -> Result<Vec<FormField>, ConcurError> {
    let body = client.get(FORM_FIELDS_PATH).await?;
    decode_form_fields(&body)
}

/// The canonical field a FormFields `Id` stands for (the ids are `UserProfile` element names,
/// matched ignoring case); `None` for a field concur-sync does not send.
pub fn canonical_field(id: &str) -> Option<Field> {
    super::fields::field(id)
}

/// Decodes a `FormFieldsList`. Element names are matched ignoring case and namespace; empty
/// elements (`<MaxLength />`) are absent values.
pub fn decode_form_fields(xml: &str) -> Result<Vec<FormField>, ConcurError> {
    let mut reader = Reader::from_str(xml.trim_start_matches('\u{feff}'));
    reader.config_mut().check_end_names = false;
    let mut out = Vec::new();
    let mut current: Option<FormField> = None;
    let mut element = String::new();
    let mut value = String::new();
    let mut saw_root = false;
    let mut closed_root = false;
    let local = |raw: &str| -> String { raw.rsplit(':').next().unwrap_or("").to_ascii_lowercase() };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| ConcurError::Decode(format!("FormFields: malformed XML: {e}")))?;
        match event {
            Event::Start(e) => {
                let name = local(e.name().as_ref());
                if name == "formfieldslist" {
                    saw_root = true;
                } else if name == "error" && !saw_root {
                    return Err(ConcurError::Decode(format!(
                        "FormFields: Concur answered an error: {}",
                        error_message(xml).unwrap_or_default()
                    )));
                } else if name == "formfield" {
                    current = Some(FormField::default());
                } else if current.is_some() {
                    element = name;
                    value.clear();
                }
            }
            Event::Text(t) if current.is_some() && !element.is_empty() => {
                value.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) if current.is_some() && !element.is_empty() => {
                value.push_str(match &*r {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                });
            }
            Event::End(e) => {
                let name = local(e.name().as_ref());
                if name == "formfieldslist" {
                    closed_root = true;
                } else if name == "formfield" {
                    if let Some(f) = current.take().filter(|f| !f.id.is_empty()) {
                        out.push(f);
                    }
                } else if let Some(f) = current.as_mut()
                    && name == element
                {
                    let v = value.trim();
                    let yes = v.eq_ignore_ascii_case("y") || v.eq_ignore_ascii_case("true");
                    match name.as_str() {
                        "id" => f.id = v.to_owned(),
                        "label" => f.label = v.to_owned(),
                        "controltype" => f.control_type = v.to_owned(),
                        "datatype" => f.data_type = v.to_owned(),
                        "maxlength" => f.max_length = v.parse().ok().filter(|n| *n > 0),
                        "required" => f.required = yes,
                        "custom" => f.custom = yes,
                        "sequence" => f.sequence = v.parse().ok(),
                        _ => {}
                    }
                    element.clear();
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    // A cut-off or empty answer must never read as "the company has no fields".
    if !saw_root {
        return Err(ConcurError::Decode(if xml.trim().is_empty() {
            "FormFields: the answer is empty".into()
        } else {
            "FormFields: the answer is not a FormFieldsList".into()
        }));
    }
    if !closed_root {
        return Err(ConcurError::Decode(
            "FormFields: the answer is truncated (FormFieldsList is not closed)".into(),
        ));
    }
    if out.is_empty() {
        return Err(ConcurError::Decode(
            "FormFields: the answer lists no fields (the employee form always has some)".into(),
        ));
    }
    out.sort_by(|a, b| a.sequence.cmp(&b.sequence).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}

/// Every user of the company, paging `GET /users/?offset=&limit=100` until `total`.
pub async fn all_users(client: &ConcurClient) -> Result<Vec<ConcurUser>, ConcurError> {
    let mut out: Vec<ConcurUser> = Vec::new();
    let mut offset = 0usize;
    loop {
        let body = client
            .get(&format!(
                "{BULK_USERS_PATH}?offset={offset}&limit={BULK_PAGE_SIZE}"
            ))
            .await?;
        let page = json(BULK_USERS_PATH, &body)?;
        let items = get_ci(&page, "Items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let total = match get_ci(&page, "total") {
            Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        let n = items.len();
        out.extend(items.iter().map(decode_bulk_user));
        offset += n;
        tracing::debug!(offset, total, page = n, "read a page of Concur users");
        match total {
            _ if n == 0 => break,
            Some(total) if offset >= total => break,
            _ => {}
        }
    }
    out.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
    out.dedup_by(|a, b| !a.id.is_empty() && a.id == b.id);
    Ok(out)
}

fn decode_bulk_user(v: &Value) -> ConcurUser {
    let t = |k: &str| text(get_ci(v, k));
    ConcurUser {
        id: t("ID"),
        employee_id: t("EmployeeID"),
        login_id: t("LoginID"),
        active: truthy(get_ci(v, "Active")),
        first_name: t("FirstName"),
        middle_name: t("MiddleName"),
        last_name: t("LastName"),
        email: t("PrimaryEmail"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_decode_tolerantly() {
        let xml = r#"<FormFieldsList xmlns="http://www.concursolutions.com/api/user/2011/02" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
  <FormField><Id>LoginId</Id><Label>LogonID</Label><ControlType>edit</ControlType><DataType>VARCHAR</DataType><MaxLength>128</MaxLength><Required>Y</Required><Cols>32</Cols><Access>RW</Access><Width>32</Width><Custom>N</Custom><Sequence>5</Sequence></FormField>
  <FormField><Id>Custom21</Id><Label>Employee &amp; Group</Label><ControlType>picklist</ControlType><DataType>LIST</DataType><MaxLength /><Required>Y</Required><Cols/><Custom>Y</Custom><ListName>Employee Groups</ListName><HierLevel/><Sequence>1</Sequence></FormField>
</FormFieldsList>"#;
        let f = decode_form_fields(xml).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].id, "Custom21");
        assert_eq!(f[0].label, "Employee & Group");
        assert_eq!(f[0].max_length, None);
        assert!(f[0].custom && f[0].required);
        assert_eq!(f[1].max_length, Some(128));
        assert!(decode_form_fields("<Error><Message>no</Message></Error>").is_err());
        // Cut off, empty or listing nothing: an error, never "no required fields".
        let cut = &xml[..xml.find("</FormFieldsList>").unwrap()];
        for bad in [
            cut,
            "",
            "  ",
            "<FormFieldsList/>",
            "<FormFieldsList></FormFieldsList>",
        ] {
            assert!(decode_form_fields(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bulk_users_and_profile_decode_tolerantly() {
        let u = decode_bulk_user(&serde_json::json!({
            "active": "false", "employeeid": 42, "LoginID": "a@x", "FirstName": null
        }));
        assert_eq!(u.employee_id, "42");
        assert!(!u.active);
        assert_eq!(u.first_name, "");
        let p = decode_profile(&serde_json::json!({
            "id": "c1", "userType": "Company", "displayName": "ACME",
            "com:concur:Employee:1.0": {"companyUUID": "u-1"}
        }))
        .unwrap();
        assert_eq!(p.company_uuid, "u-1");
        assert_eq!(p.display_name, "ACME");
    }
}
