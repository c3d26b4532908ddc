//! Reading Concur's answers tolerantly, whatever the API: a forgiving XML tree (element names
//! matched case-insensitively with namespaces and prefixes ignored, unclosed elements closed at
//! the end of the document), JSON fields looked up ignoring case, and the message of any error
//! body Concur sends (legacy XML and JSON, the token endpoint, v4). No IO.

use quick_xml::events::Event;
use quick_xml::reader::Reader;
use serde_json::Value;

use super::error::ConcurError;

/// The message of an error body: the legacy XML `<Error><Message>`, the legacy JSON
/// `{"Error":{"Message":…}}`, the token endpoint's `error_description`, or the v4
/// `errorMessage` / `error.message`. `None` when the body has none of these.
pub fn error_message(body: &str) -> Option<String> {
    let trimmed = body.trim_start_matches('\u{feff}').trim();
    if trimmed.starts_with('{') {
        let value: Value = serde_json::from_str(trimmed).ok()?;
        return json_message(&value);
    }
    if trimmed.starts_with('<') {
        let root = parse_tree(trimmed).ok()?;
        if root.name == "error" {
            return non_empty(root.text_of(&["message"]));
        }
    }
    None
}

fn json_message(value: &Value) -> Option<String> {
    for key in ["message", "errorMessage", "error_description", "detail"] {
        if let Some(s) = get_ci(value, key).and_then(Value::as_str)
            && !s.is_empty()
        {
            return Some(s.to_owned());
        }
    }
    match get_ci(value, "error")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        nested @ Value::Object(_) => json_message(nested),
        _ => None,
    }
}

/// A parsed element: local name lower-cased, concatenated text, children.
#[derive(Debug, Default)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Node>,
}

impl Node {
    pub(crate) fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    fn child_any(&self, names: &[&str]) -> Option<&Node> {
        names.iter().find_map(|n| self.child(n))
    }
    pub(crate) fn text_of(&self, names: &[&str]) -> Option<String> {
        self.child_any(names).map(|c| c.text.trim().to_owned())
    }
    /// Every descendant named `name`, in document order, not descending into matches.
    pub(crate) fn descendants<'a>(&'a self, name: &str, out: &mut Vec<&'a Node>) {
        for c in &self.children {
            if c.name == name {
                out.push(c);
            } else {
                c.descendants(name, out);
            }
        }
    }
}

fn local_lower(raw: &str) -> String {
    match raw.rsplit_once(':') {
        Some((_, local)) => local.to_ascii_lowercase(),
        None => raw.to_ascii_lowercase(),
    }
}

fn resolve_entity(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "apos" => Some('\''),
        "quot" => Some('"'),
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// Parses a document into its root element, closing unclosed elements at the end and ignoring
/// end tags that match nothing open.
pub(crate) fn parse_tree(xml: &str) -> Result<Node, ConcurError> {
    let mut reader = Reader::from_str(xml.trim_start_matches('\u{feff}'));
    reader.config_mut().check_end_names = false;
    let mut stack: Vec<Node> = vec![Node::default()]; // a synthetic document node
    fn close(stack: &mut Vec<Node>) {
        if stack.len() > 1
            && let Some(node) = stack.pop()
            && let Some(parent) = stack.last_mut()
        {
            parent.children.push(node);
        }
    }
    loop {
        let event = reader
            .read_event()
            .map_err(|e| ConcurError::Decode(format!("malformed XML: {e}")))?;
        match event {
            Event::Start(e) => stack.push(Node {
                name: local_lower(e.name().as_ref()),
                ..Node::default()
            }),
            Event::Empty(e) => {
                let node = Node {
                    name: local_lower(e.name().as_ref()),
                    ..Node::default()
                };
                if let Some(top) = stack.last_mut() {
                    top.children.push(node);
                }
            }
            Event::End(e) => {
                let name = local_lower(e.name().as_ref());
                if let Some(pos) = stack.iter().skip(1).rposition(|n| n.name == name) {
                    while stack.len() > pos + 1 {
                        close(&mut stack);
                    }
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    match resolve_entity(&r) {
                        Some(c) => top.text.push(c),
                        None => {
                            top.text.push('&');
                            top.text.push_str(&r);
                            top.text.push(';');
                        }
                    }
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    stack
        .pop()
        .and_then(|doc| doc.children.into_iter().next())
        .ok_or_else(|| ConcurError::Decode("empty document".into()))
}

pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// A field of a JSON object, its name matched ignoring case.
pub(crate) fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// A JSON value as text: strings as they are, numbers and booleans printed, null empty.
pub(crate) fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_error_messages() {
        for (body, expected) in [
            (
                "<Error><Message>There is an error in XML document (1, 147).</Message><Server-Time>2017-06-22T16:51:37</Server-Time><Id>3BDBC49E</Id></Error>",
                Some("There is an error in XML document (1, 147)."),
            ),
            (
                r#"{"Error":{"Message":"Forbidden Request","Server-Time":"x","Id":"y"}}"#,
                Some("Forbidden Request"),
            ),
            (
                r#"{"error":"invalid_grant","error_description":"Incorrect Credentials. Please Retry","code":5}"#,
                Some("Incorrect Credentials. Please Retry"),
            ),
            (
                r#"{"timestamp":"t","httpStatus":"429 - Too Many Requests","error":{"id":"security.rate.limit.reached","message":"Too many requests"}}"#,
                Some("Too many requests"),
            ),
            ("plain text", None),
            ("<user-batch-result/>", None),
        ] {
            assert_eq!(error_message(body).as_deref(), expected, "{body}");
        }
    }
}
