//! Minimal XML tree reader and writer helpers for the simulator's own wire handling.

use quick_xml::XmlVersion;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// One element: local name (namespace prefix dropped), children, concatenated text.
#[derive(Debug, Default, Clone)]
pub(crate) struct Element {
    pub name: String,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// Children whose local name matches `name` case-insensitively.
    pub fn children_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a Element> + use<'a, 'n> {
        self.children
            .iter()
            .filter(move |c| c.name.eq_ignore_ascii_case(name))
    }

    /// Text of the first child named `name` (case-insensitive).
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.children_named(name).next().map(|c| c.text.as_str())
    }
}

/// Parses a complete document into its root element. `None` when the document is not well formed.
pub(crate) fn parse(body: &[u8]) -> Option<Element> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().ok()?;
        match event {
            Event::Start(e) => {
                if root.is_some() {
                    return None;
                }
                stack.push(Element {
                    name: e.local_name().as_ref().to_string(),
                    ..Element::default()
                });
            }
            Event::Empty(e) => {
                if root.is_some() {
                    return None;
                }
                let el = Element {
                    name: e.local_name().as_ref().to_string(),
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(e) => {
                let el = stack.pop()?;
                if el.name != e.local_name().as_ref() {
                    return None;
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let content = t.xml_content(XmlVersion::Implicit1_0);
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&content),
                    None => {
                        if !content.trim().is_empty() {
                            return None;
                        }
                    }
                }
            }
            Event::CData(t) => {
                let content = t.xml_content(XmlVersion::Implicit1_0);
                stack.last_mut()?.text.push_str(&content);
            }
            Event::GeneralRef(r) => {
                let el = stack.last_mut()?;
                if r.is_char_ref() {
                    el.text.push(r.resolve_char_ref().ok()??);
                } else {
                    let name = r.xml_content(XmlVersion::Implicit1_0);
                    let ch = match name.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => return None,
                    };
                    el.text.push(ch);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return None;
    }
    root
}

/// Escapes text for element content.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// Appends `<name>value</name>` (escaped) to `out`.
pub(crate) fn push_el(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entities_namespaces_and_rejects_broken() {
        let doc = br#"<?xml version="1.0"?><a:batch xmlns:a="x"><a:U><N>R&amp;D &#233;&lt;</N><E/></a:U></a:batch>"#;
        let root = parse(doc).expect("well formed");
        assert_eq!(root.name, "batch");
        let u = root.children_named("u").next().expect("child");
        assert_eq!(u.child_text("n"), Some("R&D é<"));
        assert_eq!(u.child_text("E"), Some(""));
        assert!(parse(b"<a><b></a>").is_none());
        assert!(parse(b"<a><b>").is_none());
        assert!(parse(b"not xml").is_none());
        assert!(parse(b"").is_none());
    }
}
