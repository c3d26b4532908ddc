//! `[attendees]`: the Attendees v4 job's source and page size, and the attendee columns a
//! header may be mapped to, with their checks.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, CsvConfig};

/// Most attendees one v4 lookup returns (the Attendees v4 maximum).
pub const MAX_PAGE_SIZE: usize = 100;

/// `[attendees]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttendeesConfig {
    pub source: AttendeeSourceConfig,
    /// Attendees per page when looking them up (1..=100).
    #[serde(default = "default_page_size")]
    pub page_size: usize,
}

fn default_page_size() -> usize {
    MAX_PAGE_SIZE
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttendeeSourceKind {
    Csv,
}

/// `[attendees.source]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttendeeSourceConfig {
    pub kind: AttendeeSourceKind,
    /// A CSV file, or a drop folder whose newest `*.csv` file is the current list.
    pub path: PathBuf,
    /// Delimiter and header mapping (file header → canonical attendee column).
    #[serde(default)]
    pub csv: CsvConfig,
}

impl AttendeesConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.source.path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "attendees.source.path",
                "missing: the attendee CSV file or drop folder",
            ));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return Err(ConfigError::invalid(
                "attendees.page_size",
                "must be between 1 and 100 (the Attendees v4 maximum)",
            ));
        }
        self.delimiter()?;
        for (header, target) in &self.source.csv.columns {
            if attendee_column(target).is_none() {
                return Err(ConfigError::invalid(
                    &format!("attendees.source.csv.columns.{header}"),
                    format!(
                        "\"{target}\" is not an attendee column (external_id, attendee_type_code, first_name, middle_initial, last_name, suffix, company, title, currency, custom1 … custom25)"
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn delimiter(&self) -> Result<u8, ConfigError> {
        self.source
            .csv
            .delimiter_byte("attendees.source.csv.delimiter")
    }
}

/// A canonical attendee column: its v4 field name and maximum length.
pub fn attendee_column(name: &str) -> Option<(&'static str, usize)> {
    const FIXED: [(&str, &str, usize); 9] = [
        ("external_id", "externalId", 48),
        ("attendee_type_code", "attendeeTypeCode", 8),
        ("first_name", "firstName", 50),
        ("middle_initial", "middleInitial", 1),
        ("last_name", "lastName", 132),
        ("suffix", "suffix", 32),
        ("company", "company", 150),
        ("title", "title", 32),
        ("currency", "currencyCode", 3),
    ];
    const CUSTOM: [&str; 25] = [
        "custom1", "custom2", "custom3", "custom4", "custom5", "custom6", "custom7", "custom8",
        "custom9", "custom10", "custom11", "custom12", "custom13", "custom14", "custom15",
        "custom16", "custom17", "custom18", "custom19", "custom20", "custom21", "custom22",
        "custom23", "custom24", "custom25",
    ];
    let name = name.trim().to_ascii_lowercase();
    if let Some((_, v4, max)) = FIXED.iter().find(|(c, _, _)| *c == name) {
        return Some((v4, *max));
    }
    let i = CUSTOM.iter().position(|c| *c == name)?;
    Some((CUSTOM[i], if i < 20 { 100 } else { 48 }))
}
