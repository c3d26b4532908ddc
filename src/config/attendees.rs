//! `[attendees]`: the Attendees v4 job's source (a file or a drop folder, with its timings) and
//! page size, and the attendee columns a header may be mapped to, with their checks.

use std::path::PathBuf;

use serde::Deserialize;

use super::source::{default_archive_days, default_settle};
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
    /// A CSV file, or a drop folder that hands over its complete files oldest first (the last
    /// one processed is the current list).
    pub path: PathBuf,
    /// Like `source.settle_seconds`: a dropped file is complete once unchanged this long
    /// (or renamed into place, or announced by `NAME.done`).
    #[serde(default = "default_settle")]
    pub settle_seconds: f64,
    /// Like `source.archive_days`: days processed files stay in the drop folder's `archive/`.
    #[serde(default = "default_archive_days")]
    pub archive_days: u64,
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
        if self.source.settle_seconds.is_nan() || self.source.settle_seconds < 0.0 {
            return Err(ConfigError::invalid(
                "attendees.source.settle_seconds",
                "must be ≥ 0",
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

/// A canonical attendee column: its name in files and messages, its v4 field and the longest
/// value v4 takes (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttendeeColumn {
    pub name: &'static str,
    pub field: &'static str,
    pub max_len: usize,
}

const fn col(name: &'static str, field: &'static str, max_len: usize) -> AttendeeColumn {
    AttendeeColumn {
        name,
        field,
        max_len,
    }
}

impl AttendeeColumn {
    pub const EXTERNAL_ID: AttendeeColumn = col("external_id", "externalId", 48);
    pub const TYPE_CODE: AttendeeColumn = col("attendee_type_code", "attendeeTypeCode", 8);
    pub const LAST_NAME: AttendeeColumn = col("last_name", "lastName", 132);
    pub const CURRENCY: AttendeeColumn = col("currency", "currencyCode", 3);
}

/// The canonical attendee column `name` (trimmed, any case) stands for.
pub fn attendee_column(name: &str) -> Option<AttendeeColumn> {
    const FIXED: [AttendeeColumn; 9] = [
        AttendeeColumn::EXTERNAL_ID,
        AttendeeColumn::TYPE_CODE,
        col("first_name", "firstName", 50),
        col("middle_initial", "middleInitial", 1),
        AttendeeColumn::LAST_NAME,
        col("suffix", "suffix", 32),
        col("company", "company", 150),
        col("title", "title", 32),
        AttendeeColumn::CURRENCY,
    ];
    const CUSTOM: [&str; 25] = [
        "custom1", "custom2", "custom3", "custom4", "custom5", "custom6", "custom7", "custom8",
        "custom9", "custom10", "custom11", "custom12", "custom13", "custom14", "custom15",
        "custom16", "custom17", "custom18", "custom19", "custom20", "custom21", "custom22",
        "custom23", "custom24", "custom25",
    ];
    let name = name.trim().to_ascii_lowercase();
    if let Some(c) = FIXED.iter().find(|c| c.name == name) {
        return Some(*c);
    }
    let i = CUSTOM.iter().position(|c| *c == name)?;
    Some(col(CUSTOM[i], CUSTOM[i], if i < 20 { 100 } else { 48 }))
}
