//! An upstream tool as a Python function: a valid identifier for its name and for each of
//! its arguments, annotations from its JSON Schema, and a docstring from its description.
//!
//! The host writes each function's source once per tool list; the guest `exec`s it into
//! the `tools` module (so `help()` and `inspect.signature` read real annotations), and
//! `list_tools` / `GET /tools` show the same source with `...` as the body: one text, the
//! API the model codes against and the one the guest runs.

use serde_json::{Map, Value};

/// Python's keywords and soft keywords: an identifier equal to one gets a trailing `_`.
const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield", "match", "case", "type", "_",
];

/// Names the generated code uses itself, which an argument must not shadow.
const RESERVED: &[&str] = &["_call", "Any", "Literal"];

/// A Python identifier for `name`: characters outside `[A-Za-z0-9_]` become `_`, a leading
/// digit gets a `_` before it, a keyword a `_` after it. `taken` holds names already given
/// out in the same scope; a clash gets `_2`, `_3`...
pub fn identifier(name: &str, taken: &[String]) -> String {
    let mut id: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if id.is_empty() {
        id.push_str("unnamed");
    }
    if id.starts_with(|c: char| c.is_ascii_digit()) {
        id.insert(0, '_');
    }
    if KEYWORDS.contains(&id.as_str()) || RESERVED.contains(&id.as_str()) || id.starts_with("__") {
        id.push('_');
    }
    if !taken.contains(&id) {
        return id;
    }
    (2..)
        .map(|n| format!("{id}_{n}"))
        .find(|candidate| !taken.contains(candidate))
        .expect("some suffix is free")
}

/// One argument of a tool's function.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Param {
    /// The JSON name the upstream expects.
    pub name: String,
    /// The Python parameter name.
    pub py_name: String,
    pub annotation: String,
    pub required: bool,
    pub doc: Option<String>,
}

/// A tool as a Python function.
#[derive(Debug, Clone)]
pub struct Function {
    pub py_name: String,
    pub params: Vec<Param>,
    pub returns: String,
    pub doc: String,
}

impl Function {
    /// Build from a tool's listing. `server` is the configured server name (for the doc).
    pub fn new(
        py_name: String,
        tool: &str,
        server: &str,
        description: Option<&str>,
        input: &Map<String, Value>,
        output: Option<&Map<String, Value>>,
    ) -> Function {
        let required: Vec<&str> = input
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut params: Vec<Param> = Vec::new();
        if let Some(props) = input.get("properties").and_then(Value::as_object) {
            let mut taken: Vec<String> = Vec::new();
            for (name, schema) in props {
                let py_name = identifier(name, &taken);
                taken.push(py_name.clone());
                params.push(Param {
                    name: name.clone(),
                    py_name,
                    annotation: annotation(schema, input, 0),
                    required: required.contains(&name.as_str()),
                    doc: schema
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                });
            }
        }
        // Required arguments first, each group in the schema's order (a stable sort).
        params.sort_by_key(|p| !p.required);
        let returns = match output {
            Some(schema) => annotation(&Value::Object(schema.clone()), schema, 0),
            None => "Any".into(),
        };
        let mut doc = description.unwrap_or("").trim().to_string();
        if doc.is_empty() {
            doc = format!("The tool {tool:?} of the server {server:?}.");
        }
        if !params.is_empty() {
            doc.push_str("\n\nArgs:");
            for p in &params {
                let need = if p.required { "required" } else { "optional" };
                doc.push_str(&format!("\n    {} ({}, {need})", p.py_name, p.annotation));
                if let Some(text) = &p.doc {
                    doc.push_str(": ");
                    doc.push_str(&one_line(text));
                }
            }
        }
        doc.push_str(&format!(
            "\n\nReturns the tool's structured content as data when it has some, else its \
             text.\nRaises tools.ToolError with the tool's message if it fails.\nUpstream: \
             server {server:?}, tool {tool:?}."
        ));
        Function {
            py_name,
            params,
            returns,
            doc,
        }
    }

    /// `name(a: int, b: str | None = None) -> dict`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| {
                if p.required {
                    format!("{}: {}", p.py_name, p.annotation)
                } else if p.annotation.split(" | ").any(|part| part == "None") {
                    format!("{}: {} = None", p.py_name, p.annotation)
                } else {
                    format!("{}: {} | None = None", p.py_name, p.annotation)
                }
            })
            .collect();
        format!(
            "{}({}) -> {}",
            self.py_name,
            params.join(", "),
            self.returns
        )
    }

    /// The function's source: a stub (`...`) or one that calls the door.
    pub fn source(&self, server: &str, tool: &str, callable: bool) -> String {
        let mut out = format!("def {}:\n", self.signature());
        out.push_str(&format!("    {}\n", docstring(&self.doc)));
        if callable {
            let args: Vec<String> = self
                .params
                .iter()
                .map(|p| format!("{}: {}", py_str(&p.name), p.py_name))
                .collect();
            out.push_str(&format!(
                "    return _call({}, {}, {{{}}})\n",
                py_str(server),
                py_str(tool),
                args.join(", ")
            ));
        } else {
            out.push_str("    ...\n");
        }
        out
    }
}

/// A Python annotation for a JSON Schema, as source text (`Any` where it cannot say).
fn annotation(schema: &Value, root: &Map<String, Value>, depth: usize) -> String {
    if depth > 4 {
        return "Any".into();
    }
    let Some(schema) = schema.as_object() else {
        return "Any".into();
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        // Only local references (`#/$defs/X`, `#/definitions/X`); nothing is fetched.
        let target = reference.strip_prefix("#/").map(|path| {
            path.split('/')
                .try_fold(root, |at, key| at.get(key)?.as_object())
        });
        return match target {
            Some(Some(found)) => annotation(&Value::Object(found.clone()), root, depth + 1),
            _ => "Any".into(),
        };
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.is_empty()
        && values.len() <= 20
        && values
            .iter()
            .all(|v| v.is_string() || v.is_number() || v.is_boolean())
    {
        let items: Vec<String> = values.iter().map(py_literal).collect();
        return format!("Literal[{}]", items.join(", "));
    }
    if let Some(value) = schema.get("const")
        && (value.is_string() || value.is_number() || value.is_boolean())
    {
        return format!("Literal[{}]", py_literal(value));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let mut parts: Vec<String> = Vec::new();
            for option in options {
                let part = annotation(option, root, depth + 1);
                if !parts.contains(&part) {
                    parts.push(part);
                }
            }
            if parts.iter().any(|p| p == "Any") || parts.is_empty() {
                return "Any".into();
            }
            return parts.join(" | ");
        }
    }
    let one = |kind: &str| -> String {
        match kind {
            "string" => "str".into(),
            "integer" => "int".into(),
            "number" => "float".into(),
            "boolean" => "bool".into(),
            "null" => "None".into(),
            "object" => "dict".into(),
            "array" => match schema.get("items") {
                Some(items) if items.is_object() => {
                    let inner = annotation(items, root, depth + 1);
                    if inner == "Any" {
                        "list".into()
                    } else {
                        format!("list[{inner}]")
                    }
                }
                _ => "list".into(),
            },
            _ => "Any".into(),
        }
    };
    match schema.get("type") {
        Some(Value::String(kind)) => one(kind),
        Some(Value::Array(kinds)) => {
            let parts: Vec<String> = kinds.iter().filter_map(Value::as_str).map(one).collect();
            if parts.is_empty() || parts.iter().any(|p| p == "Any") {
                "Any".into()
            } else {
                parts.join(" | ")
            }
        }
        _ if schema.contains_key("properties") => "dict".into(),
        _ => "Any".into(),
    }
}

fn py_literal(value: &Value) -> String {
    match value {
        Value::String(s) => py_str(s),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    }
}

/// A Python string literal (JSON's escapes are valid Python; `\u2028` and friends too).
pub fn py_str(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

/// A docstring literal for `text`: a triple-quoted raw-free string whose content cannot end
/// it early (backslashes and quotes are escaped).
fn docstring(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace("\"\"\"", "\\\"\\\"\\\"")
        .replace(['\r', '\0'], "");
    let mut lines = escaped.lines();
    let first = lines.next().unwrap_or("");
    let mut out = format!("\"\"\"{first}");
    for line in lines {
        out.push('\n');
        if !line.is_empty() {
            out.push_str("    ");
            out.push_str(line);
        }
    }
    if out.ends_with('"') {
        out.push(' ');
    }
    out.push_str("\"\"\"");
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_are_valid_and_distinct() {
        assert_eq!(identifier("get-sum", &[]), "get_sum");
        assert_eq!(identifier("class", &[]), "class_");
        assert_eq!(identifier("9lives", &[]), "_9lives");
        assert_eq!(identifier("", &[]), "unnamed");
        assert_eq!(identifier("_", &[]), "__");
        assert_eq!(identifier("__init__", &[]), "__init___");
        assert_eq!(identifier("a.b", &["a_b".into()]), "a_b_2");
        assert_eq!(identifier("ümlaut", &[]), "_mlaut");
        assert_eq!(identifier("_call", &[]), "_call_");
    }

    #[test]
    fn a_schema_becomes_a_signature_and_a_docstring() {
        let input = json!({
            "type": "object",
            "properties": {
                "limit": {"type": "integer", "description": "at most"},
                "from": {"type": "string"},
                "kind": {"enum": ["a", "b"]},
                "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                "either": {"anyOf": [{"type": "string"}, {"type": "null"}]}
            },
            "required": ["from", "items"],
            "$defs": {"Item": {"type": "object", "properties": {"x": {}}}}
        });
        let f = Function::new(
            "find".into(),
            "find",
            "srv",
            Some("Find things.\n\"\"\" tricky \\ end\""),
            input.as_object().unwrap(),
            None,
        );
        assert_eq!(
            f.signature(),
            "find(from_: str, items: list[dict], limit: int | None = None, \
             kind: Literal[\"a\", \"b\"] | None = None, either: str | None = None) -> Any"
        );
        let source = f.source("srv", "find", true);
        assert!(
            source.contains("return _call(\"srv\", \"find\", {\"from\": from_,"),
            "{source}"
        );
        assert!(
            source.contains("limit (int, optional): at most"),
            "{source}"
        );
        assert!(!source.contains("\"\"\" tricky"), "{source}");
        assert!(f.source("srv", "find", false).ends_with("    ...\n"));
    }
}
