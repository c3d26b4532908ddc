//! `concur-sync check`: whether the configuration, the files it names, the token, Profile v1
//! and the company's FormFields work together, and whether the mapping fills every field the
//! company requires. Reports problems instead of failing on the first one; nothing is written
//! to Concur (the FormFields answer is cached).
//!
//! Under `concur.api = "v4"` the Concur part is the v4 one: the token, UPS discovery
//! (`ServiceProviderConfig`, `Schemas`), the company UUID (the enterprise `companyId` of the
//! first Identity v4.1 user, or Profile v1's `companyUUID` while the company has no user), and
//! every scope the configuration needs. A 403 names the scope and says that the company's SAP
//! Concur representative must grant it. Write scopes are probed by a PATCH of a user that
//! cannot exist (nothing is written); the write-only attribute scopes cannot be probed at all
//! and are listed as a note.

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use crate::concur::readback::{self as wire, FormField};
use crate::concur::v4::read as v4;
use crate::concur::{ConcurClient, ConcurError};
use crate::config::{ConcurApi, Config, SourceKind};
use crate::cycle::input::{self, Preview};
use crate::model::Field;
use crate::readback::form_field_row;
use crate::source::csv::{Column, CsvOptions, CsvReader};
use crate::store::Store;
use crate::store::readback::FormFieldRow;
use crate::validate::Normalizer;
use crate::wiring;

/// The outcome of `check`, printed as a report.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub ok: Vec<String>,
    pub notes: Vec<String>,
    pub problems: Vec<String>,
    pub principal: Option<wire::Principal>,
    pub form_fields: Vec<FormField>,
}

impl CheckReport {
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        use crate::escape::escape;
        for l in &self.ok {
            o.push_str(&format!("ok       {}\n", escape(l)));
        }
        for l in &self.notes {
            o.push_str(&format!("note     {}\n", escape(l)));
        }
        for l in &self.problems {
            o.push_str(&format!("PROBLEM  {}\n", escape(l)));
        }
        if self.problems.is_empty() {
            o.push_str("check passed\n");
        } else {
            o.push_str(&format!(
                "check failed: {} problem(s)\n",
                self.problems.len()
            ));
        }
        o
    }
}

fn readable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return std::fs::read_dir(path)
            .map(|_| ())
            .map_err(|e| format!("{}: cannot list: {e}", path.display()));
    }
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

/// `concur-sync check`: configuration, files, token, Profile v1, FormFields and whether the
/// mapping fills every field the company requires.
pub async fn check(cfg: &Config) -> CheckReport {
    let mut r = CheckReport::default();
    r.ok.push("configuration: every key known and valid".into());
    // Files.
    let c = &cfg.concur;
    for (key, path) in [
        ("concur.client_secret_file", &c.client_secret_file),
        ("concur.request_token_file", &c.request_token_file),
    ] {
        if let Some(p) = path {
            match readable(p) {
                Ok(()) => r.ok.push(format!("{key}: {} readable", p.display())),
                Err(e) => r.problems.push(format!("{key}: {e}")),
            }
        }
    }
    if let Err(e) = cfg.secrets() {
        r.problems.push(e.to_string());
    }
    if let Some(k) = &cfg.state.key_file
        && k.exists()
        && let Err(e) = readable(k)
    {
        r.problems.push(format!("state.key_file: {e}"));
    }
    if let Some(a) = &cfg.attendees {
        match readable(&a.source.path) {
            Ok(()) => r.ok.push(format!(
                "attendees.source.path: {} readable",
                a.source.path.display()
            )),
            Err(e) => r.problems.push(format!("attendees.source.path: {e}")),
        }
    }
    // A drop folder: check the file the next cycle would take, else the current one.
    let previewed;
    let mut cfg = cfg;
    let mut nothing_waiting = false;
    if let Ok(store) = Store::open(&cfg.state.path, cfg.state.key_file.as_deref()) {
        match input::preview(cfg, &store) {
            Ok(None) => {}
            Ok(Some((preview, c))) => {
                match &preview {
                    Preview::Next(p) => r.notes.push(format!(
                        "source.path: drop folder {}; checking the next file {} (not moved)",
                        cfg.source.path.display(),
                        p.display()
                    )),
                    Preview::Current(p) => r.notes.push(format!(
                        "source.path: drop folder {}; no new file waiting; checking the current file {}",
                        cfg.source.path.display(),
                        p.display()
                    )),
                    Preview::Nothing => {
                        nothing_waiting = true;
                        r.ok.push(format!(
                            "source.path: drop folder {}: no file waiting",
                            cfg.source.path.display()
                        ));
                    }
                }
                previewed = c;
                cfg = &previewed;
            }
            Err(e) => r.problems.push(format!("source.path: {e}")),
        }
    }
    // What the source fills.
    let mut filled: Option<HashSet<Field>> = None;
    if cfg.source.kind == SourceKind::Csv && !nothing_waiting {
        let opts = CsvOptions::from_config(&cfg.source).unwrap_or_default();
        match CsvReader::open(&cfg.source.path, &opts) {
            Ok(reader) => {
                r.ok.push(format!(
                    "source.path: {} readable, header has employee_id and login_id",
                    cfg.source.path.display()
                ));
                filled = Some(
                    reader
                        .columns()
                        .iter()
                        .filter_map(|c| match c {
                            Column::Field(f) => Some(*f),
                            _ => None,
                        })
                        .collect(),
                );
            }
            Err(e) => r.problems.push(format!("source.path: {e}")),
        }
    } else if matches!(cfg.source.kind, SourceKind::Ldif)
        && let Err(e) = readable(&cfg.source.path)
    {
        r.problems.push(format!("source.path: {e}"));
    }
    // Connection.
    let store = match Store::open(&cfg.state.path, cfg.state.key_file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            r.problems.push(format!("state.path: {e}"));
            return r;
        }
    };
    let mut store = store;
    let client = match wiring::client(cfg, &store) {
        Ok(c) => c,
        Err(e) => {
            r.problems.push(e.to_string());
            return r;
        }
    };
    if let Err(e) = client.authenticate().await {
        r.problems.push(format!("token: {e}"));
        return r;
    }
    r.ok.push(format!("token: obtained from {}", c.base_url));
    if c.api == ConcurApi::V4 {
        check_v4(cfg, &client, &mut r).await;
        return r;
    }
    match wire::profile_me(&client).await {
        Ok(p) => {
            r.ok.push(format!(
                "profile: signed in as {} {:?} (id {}, company {})",
                if p.user_type.is_empty() {
                    "principal"
                } else {
                    p.user_type.as_str()
                },
                p.display_name,
                p.id,
                if p.company_uuid.is_empty() {
                    "?"
                } else {
                    p.company_uuid.as_str()
                }
            ));
            r.principal = Some(p);
        }
        Err(e) => r
            .problems
            .push(format!("profile: GET {}: {e}", wire::PROFILE_PATH)),
    }
    let fields = match wire::form_fields(&client).await {
        Ok(f) => f,
        Err(e) => {
            r.problems
                .push(format!("FormFields: GET {}: {e}", wire::FORM_FIELDS_PATH));
            return r;
        }
    };
    let rows: Vec<FormFieldRow> = fields.iter().map(form_field_row).collect();
    if let Err(e) = store.replace_form_fields(&rows) {
        r.notes.push(format!("FormFields: not cached: {e}"));
    }
    let required: Vec<&FormField> = fields.iter().filter(|f| f.required).collect();
    r.ok.push(format!(
        "FormFields: {} fields, {} required ({}), {} custom",
        fields.len(),
        required.len(),
        required
            .iter()
            .map(|f| f.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        fields.iter().filter(|f| f.custom).count()
    ));
    let normalizer = Normalizer::new(&cfg.defaults).ok();
    for f in &required {
        if f.id.eq_ignore_ascii_case("Password") {
            continue; // the source's password column or a generated one
        }
        let Some(field) = wire::canonical_field(&f.id) else {
            r.problems.push(format!(
                "FormFields: the company requires {} ({:?}), which concur-sync does not send",
                f.id, f.label
            ));
            continue;
        };
        if matches!(field, Field::EMPLOYEE_ID | Field::LOGIN_ID | Field::ACTIVE) {
            continue;
        }
        let default = normalizer.as_ref().and_then(|n| n.default_for(field));
        match (&filled, default) {
            (_, Some(d)) => r.ok.push(format!(
                "required {} ({}): [defaults] {} = {d:?}",
                f.id,
                field.name(),
                field.name()
            )),
            (Some(cols), None) if cols.contains(&field) => r.ok.push(format!(
                "required {} ({}): a source column",
                f.id,
                field.name()
            )),
            (Some(_), None) => r.problems.push(format!(
                "required field {} ({:?}) is not filled: no source column maps to {} and [defaults] has no {}; records would be rejected",
                f.id,
                f.label,
                field.name(),
                field.name()
            )),
            (None, None) => r.notes.push(format!(
                "required {} ({}): cannot tell whether the {:?} source fills it; records lacking it are rejected",
                f.id,
                field.name(),
                cfg.source.kind
            )),
        }
    }
    // Defaults longer than the company allows.
    let rules =
        crate::rules::company_rules(rows.iter().map(FormFieldRow::rule), wire::canonical_field);
    for (field, max, form_name) in rules.max_len {
        if let Some(d) = normalizer.as_ref().and_then(|n| n.default_for(field))
            && d.chars().count() > max
        {
            r.problems.push(format!(
                "[defaults] {}: {d:?} is longer than the company's {} MaxLength {max}",
                field.name(),
                form_name
            ));
        }
    }
    r.form_fields = fields;
    r
}

/// What a company representative is asked for, after a 403.
fn missing_scope(scope: &str, what: &str, e: &ConcurError) -> String {
    format!(
        "scope {scope} missing: {what} answered {e}; the company's SAP Concur representative must grant {scope} to this app's company token"
    )
}

/// A 403 names the scope; any other failure is reported as it is.
fn scope_problem(r: &mut CheckReport, scope: &str, what: &str, e: &ConcurError) {
    if e.status() == Some(403) {
        r.problems.push(missing_scope(scope, what, e));
    } else {
        r.problems.push(format!("{what}: {e}"));
    }
}

/// The Concur half of `check` under v4 (after the token).
async fn check_v4(cfg: &Config, client: &ConcurClient, r: &mut CheckReport) {
    let expected = cfg.concur.company_uuid.as_deref().unwrap_or("").trim();
    // Discovery (user.provision.read).
    match v4::discover(client, v4::SERVICE_PROVIDER_CONFIG_PATH).await {
        Ok(spc) => {
            let bulk = &spc["bulk"];
            r.ok.push(format!(
                "ServiceProviderConfig: Bulk {} (at most {} operations, {} bytes); password change {}",
                if bulk["supported"].as_bool() == Some(true) {
                    "supported"
                } else {
                    "not supported"
                },
                bulk["maxOperations"],
                bulk["maxPayloadSize"],
                if spc["changePassword"]["supported"].as_bool() == Some(true) {
                    "supported"
                } else {
                    "not supported (passwords go through single sign-on)"
                }
            ));
            r.ok.push("scope user.provision.read: granted".into());
        }
        Err(e) => scope_problem(
            r,
            "user.provision.read",
            &format!("GET {}", v4::SERVICE_PROVIDER_CONFIG_PATH),
            &e,
        ),
    }
    match v4::discover(client, v4::SCHEMAS_PATH).await {
        Ok(schemas) => {
            let ids: Vec<&str> = schemas["Resources"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["id"].as_str()).collect())
                .unwrap_or_default();
            r.ok.push(format!(
                "Schemas: {} schemas ({})",
                ids.len(),
                ids.join(", ")
            ));
        }
        Err(e) if e.status() == Some(403) => {} // reported with ServiceProviderConfig
        Err(e) => r
            .problems
            .push(format!("Schemas: GET {}: {e}", v4::SCHEMAS_PATH)),
    }
    // Identity reads and the company UUID.
    let identity_what = "GET /profile/identity/v4.1/Users";
    match v4::first_identity(client).await {
        Ok(Some(user)) => {
            r.ok.push("scope identity.user.core.read: granted".into());
            match v4::company_id(&user) {
                Some(company) => {
                    r.ok.push("scope identity.user.enterprise.read: granted".into());
                    company_matches(r, expected, company, "the enterprise companyId of the first Identity v4.1 user");
                }
                None => r.problems.push(format!(
                    "scope identity.user.enterprise.read missing: {identity_what} returns users without the enterprise extension (employeeNumber, companyId), so users cannot be matched by employee id; the company's SAP Concur representative must grant identity.user.enterprise.read to this app's company token"
                )),
            }
            if user.get("emails").is_none() {
                r.notes.push("e-mail addresses are not returned (scope identity.user.coresensitive.read); drift of e-mail addresses is not detected".into());
            }
        }
        Ok(None) => {
            r.ok.push("scope identity.user.core.read: granted".into());
            match wire::profile_me(client).await {
                Ok(p) if !p.company_uuid.is_empty() => {
                    company_matches(r, expected, &p.company_uuid, "Profile v1's companyUUID");
                }
                _ => r.notes.push(format!(
                    "concur.company_uuid {expected} not verified: the company has no users yet and Profile v1 does not say"
                )),
            }
        }
        Err(e) => scope_problem(r, "identity.user.core.read", identity_what, &e),
    }
    // Spend reads.
    let spend_what = "GET /profile/spend/v4.1/Users";
    match v4::first_spend(client).await {
        Ok(_) => r.ok.push("scope spend.user.general.read: granted".into()),
        Err(e) => scope_problem(r, "spend.user.general.read", spend_what, &e),
    }
    // Writes: a PATCH of a user that cannot exist needs the scope and changes nothing.
    let probe = format!(
        "PATCH /profile/v4/Users/{} (a user that does not exist)",
        v4::PROBE_UUID
    );
    match v4::write_probe(client).await {
        Ok((403, message)) => {
            let e = ConcurError::Http {
                status: 403,
                path: "/profile/v4/Users".into(),
                message,
            };
            r.problems.push(missing_scope("user.provision.write", &probe, &e));
        }
        Ok(_) => r.ok.push(
            "scope user.provision.write: granted (a PATCH of a user that does not exist was not refused; nothing was written)".into(),
        ),
        Err(e) => r.problems.push(format!("{probe}: {e}")),
    }
    r.notes.push(
        "scopes identity.user.coreenterprise.writeonly, spend.user.general.writeonly and identity.user.ids.read cannot be verified without writing; make sure the company's SAP Concur representative granted them (docs/v4.md lists every scope)".into(),
    );
}

fn company_matches(r: &mut CheckReport, expected: &str, reported: &str, source: &str) {
    if reported.eq_ignore_ascii_case(expected) {
        r.ok.push(format!(
            "concur.company_uuid: {expected} is the company Concur reports ({source})"
        ));
    } else {
        r.problems.push(format!(
            "concur.company_uuid is {expected:?} but Concur reports the company {reported} ({source}); set concur.company_uuid = \"{reported}\""
        ));
    }
}
