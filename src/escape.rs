//! Escaping for text output: file names, source values and messages received from Concur reach
//! `status`, `plan`, `check` and text-mode logs through [`escape`], so that none of them can
//! forge a log line, move the cursor or reorder what a terminal shows. JSON output is escaped
//! by serde and does not pass through here.

use std::borrow::Cow;
use std::fmt::Write;

/// Is `c` shown as an escape: control characters (C0, DEL, C1, so ESC and line breaks too),
/// the Unicode bidirectional controls and the line and paragraph separators.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with line breaks and tabs as `\n`, `\r`, `\t` and every other control, bidi control and
/// line separator as `\u{…}`; borrowed when nothing needs escaping.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A path for text output: its lossy UTF-8 form, escaped.
pub fn path(p: &std::path::Path) -> String {
    escape(&p.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_what_could_forge_lines_or_move_the_terminal() {
        for (input, expected) in [
            ("hr.csv", "hr.csv"),
            ("Zoë Müller-Łódź 田中", "Zoë Müller-Łódź 田中"),
            (
                "a.csv\n2026-11-28T10:00:00Z INFO forged",
                "a.csv\\n2026-11-28T10:00:00Z INFO forged",
            ),
            ("x\r\ty", "x\\r\\ty"),
            ("\u{1b}[31mred\u{1b}[0m", "\\u{1b}[31mred\\u{1b}[0m"),
            ("invoice\u{202e}fdp.csv", "invoice\\u{202e}fdp.csv"),
            ("\u{85}\u{7f}\u{2028}", "\\u{85}\\u{7f}\\u{2028}"),
        ] {
            assert_eq!(escape(input), expected, "{input:?}");
        }
    }
}
