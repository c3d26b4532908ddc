//! Identifiers are exact: the rules an employee id or login must pass beyond length and control
//! characters, and the look-alike key by which a rejected row protects the users it could name.
//!
//! An identifier must not hide an invisible or format character (zero-width, bidi controls, a
//! BOM inside it), mix scripts within one part (Latin with Cyrillic look-alikes), or spell an
//! ASCII-looking value in look-alike letters of another script. The Unicode data (UTS #39
//! identifier types, confusables and script sets) comes from `unicode-security`; nothing here
//! keeps its own character tables. No IO.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_script::{Script, UnicodeScript};
use unicode_security::general_security_profile::IdentifierType;
use unicode_security::{GeneralSecurityProfile, MixedScript, skeleton};

/// Invisible or format characters: Default_Ignorable code points (zero-width space and joiners,
/// bidi controls, BOM, variation selectors, fillers) and general category Cf.
pub fn is_invisible(c: char) -> bool {
    !c.is_ascii()
        && (c.identifier_type() == Some(IdentifierType::Default_Ignorable)
            || c.general_category() == GeneralCategory::Format)
}

/// The first identifier rule `v` breaks, in plain words; `None` when it passes. ASCII values
/// always pass.
pub fn identifier_rule(v: &str) -> Option<String> {
    if v.is_ascii() {
        return None;
    }
    if let Some((pos, c)) = v.chars().enumerate().find(|&(_, c)| is_invisible(c)) {
        return Some(format!(
            "contains an invisible format character U+{:04X} at character {}; identifiers must be exactly what people see",
            c as u32,
            pos + 1
        ));
    }
    // Scripts are compared within each part (`local@domain.tld`, `dept-123`), so an IDN domain
    // beside a Latin local part is fine while a Cyrillic "а" inside a Latin word is not.
    for part in v.split(|c: char| c.is_ascii_punctuation() || c.is_whitespace()) {
        if !part.is_single_script() {
            return Some(format!(
                "mixes {} letters in {part:?}; a look-alike identifier would be a different user",
                names(&scripts(part))
            ));
        }
    }
    // Every non-ASCII character stands in for an ASCII one: "Е100" with a Cyrillic Е.
    let mut looks_like = String::with_capacity(v.len());
    for c in v.chars() {
        if c.is_ascii() {
            looks_like.push(c);
        } else {
            looks_like.extend(skeleton(c.encode_utf8(&mut [0; 4])));
        }
    }
    if looks_like.is_ascii() {
        let (pos, c) = v
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii())
            .unwrap_or((0, ' '));
        return Some(format!(
            "looks like {looks_like:?} but is written with look-alike characters (U+{:04X}, {} script, at character {})",
            c as u32,
            c.script().full_name(),
            pos + 1
        ));
    }
    None
}

/// The scripts of `s` in order of appearance, without Common and Inherited (digits, `@`,
/// combining marks).
fn scripts(s: &str) -> Vec<Script> {
    let mut out = Vec::new();
    for c in s.chars() {
        let sc = c.script();
        if !matches!(sc, Script::Common | Script::Inherited | Script::Unknown) && !out.contains(&sc)
        {
            out.push(sc);
        }
    }
    out
}

fn names(scripts: &[Script]) -> String {
    let names: Vec<&str> = scripts.iter().map(|s| s.full_name()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_owned(),
        None => "several scripts'".to_owned(),
    }
}

/// The form in which two identifiers a person could not tell apart compare equal: spaces and
/// invisible characters dropped, case folded, confusables mapped to their prototype (UTS #39
/// skeleton). Used only to protect users from deactivation, where matching too much is safe.
pub fn lookalike_key(v: &str) -> String {
    let visible: String = v
        .chars()
        .filter(|&c| !is_invisible(c) && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    skeleton(&visible).flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_rules_name_the_character_or_the_scripts() {
        assert_eq!(identifier_rule("E100"), None);
        assert_eq!(identifier_rule("jöhn.müller@example.com"), None);
        assert_eq!(identifier_rule("иван@пример.рф"), None);
        assert_eq!(identifier_rule("ivan@пример.рф"), None);
        assert_eq!(identifier_rule("田中たろう"), None);
        let zw = identifier_rule("E1\u{200B}00").unwrap();
        assert!(zw.contains("invisible format character U+200B"), "{zw}");
        let bidi = identifier_rule("j\u{202E}oe@x.com").unwrap();
        assert!(bidi.contains("U+202E"), "{bidi}");
        assert!(identifier_rule("E1\u{FEFF}").unwrap().contains("U+FEFF"));
        let mixed = identifier_rule("j.smith@ex\u{0430}mple.com").unwrap();
        assert!(
            mixed.contains("mixes Latin and Cyrillic letters"),
            "{mixed}"
        );
        let whole = identifier_rule("\u{0415}100").unwrap();
        assert!(whole.contains("looks like \"E100\""), "{whole}");
        assert!(whole.contains("Cyrillic"), "{whole}");
    }

    #[test]
    fn lookalike_keys_match_what_people_cannot_tell_apart() {
        let k = lookalike_key("E100");
        assert_eq!(lookalike_key("\u{0415}100"), k);
        assert_eq!(lookalike_key("E1\u{200B}00"), k);
        assert_eq!(lookalike_key("e100"), k);
        assert_ne!(lookalike_key("E101"), k);
        assert_eq!(
            lookalike_key("J.Smith@Example.com"),
            lookalike_key("j.smith@ex\u{0430}mple.com")
        );
    }
}
