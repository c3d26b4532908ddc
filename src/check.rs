//! `concur-sync check`: whether the configuration, the files it names, the token, Profile v1
//! and the company's FormFields work together, and whether the mapping fills every field the
//! company requires. Reports problems instead of failing on the first one; nothing is written
//! to Concur (the FormFields answer is cached).

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use crate::concur::readback::{self as wire, FormField};
use crate::config::{Config, SourceKind};
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
