//! One incoming JSON-RPC frame, checked before rmcp sees it, for both transports.
//!
//! JSON-RPC asks that every bad frame be answered so the client learns it was lost, and
//! rmcp does not always do so: over stdio it drops lines that are not JSON and ends the
//! session on bytes that are not UTF-8; over both transports it answers a malformed request
//! without its `id` (so the caller waits forever), and over HTTP with 415 or 500. Frames
//! that fail here are answered with -32700 (parse error), -32600 (invalid request) or
//! -32602 (invalid params), carrying the request's id whenever it has a usable one; every
//! valid message goes to rmcp untouched.

use rmcp::model::ClientJsonRpcMessage;
use serde::de::Error as _;
use serde_json::{Value, json};

/// What to do with one line from the client.
#[derive(Debug)]
pub enum Frame<'a> {
    /// Nothing but whitespace: skipped, as JSON-RPC over stdio allows.
    Blank,
    /// A message rmcp can take.
    Valid(&'a str),
    /// Answered here, with this error.
    Refused(Refusal),
}

/// A JSON-RPC error answer to a frame rmcp will not see.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The caller's id when it had a usable one, else null.
    pub id: Value,
    pub code: i64,
    pub message: String,
}

impl Refusal {
    pub fn new(id: Value, code: i64, message: impl Into<String>) -> Self {
        Refusal {
            id,
            code,
            message: message.into(),
        }
    }

    /// The error response, as one line of JSON.
    pub fn to_json(&self) -> String {
        json!({"jsonrpc": "2.0", "id": self.id, "error": {"code": self.code, "message": self.message}})
            .to_string()
    }
}

pub fn check_frame(line: &[u8]) -> Frame<'_> {
    let Ok(text) = std::str::from_utf8(line) else {
        return Frame::Refused(Refusal::new(Value::Null, -32700, "parse error: not UTF-8"));
    };
    let text = text.trim_end_matches(['\r', '\n']);
    if text.trim().is_empty() {
        return Frame::Blank;
    }
    // The common case, a valid message, is parsed once; only a frame that fails is parsed
    // again, as plain JSON, to say what is wrong with it.
    let err = match text.trim_start().starts_with('{') {
        true => match serde_json::from_str::<ClientJsonRpcMessage>(text) {
            Ok(_) => return Frame::Valid(text),
            Err(err) => err,
        },
        false => serde_json::Error::custom("not an object"),
    };
    let value = match serde_json::from_str::<Value>(text) {
        Ok(value) => value,
        Err(err) => {
            return Frame::Refused(Refusal::new(
                Value::Null,
                -32700,
                format!("parse error: {err}"),
            ));
        }
    };
    let Value::Object(message) = &value else {
        // Batches were removed from MCP in 2025-06-18.
        let why = if value.is_array() {
            "batches are not supported"
        } else {
            "a JSON-RPC message must be an object"
        };
        return Frame::Refused(Refusal::new(Value::Null, -32600, why));
    };
    // Answer with the caller's id when it is one JSON-RPC allows, so it can match the
    // error to its request; with all else well-formed, the parameters are what is wrong.
    let id = match message.get("id") {
        Some(id @ Value::String(_)) => id.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Value::Number(n.clone()),
        _ => Value::Null,
    };
    let method = message.get("method").and_then(Value::as_str);
    match method {
        Some(method) if !id.is_null() && message.get("jsonrpc") == Some(&json!("2.0")) => {
            Frame::Refused(Refusal::new(
                id,
                -32602,
                format!("invalid params for {method}: {err}"),
            ))
        }
        _ => Frame::Refused(Refusal::new(id, -32600, format!("invalid request: {err}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &[u8]) -> Value {
        match check_frame(line) {
            Frame::Refused(refusal) => serde_json::from_str(&refusal.to_json()).unwrap(),
            other => panic!(
                "{:?} was not refused: {other:?}",
                String::from_utf8_lossy(line)
            ),
        }
    }

    #[test]
    fn bad_frames_are_answered_with_the_callers_id_when_usable() {
        let e = refused(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":5}"#);
        assert_eq!(
            (e["id"].clone(), e["error"]["code"].clone()),
            (json!(7), json!(-32602))
        );
        let e = refused(br#"{"jsonrpc":"1.0","id":"a","method":"ping"}"#);
        assert_eq!(
            (e["id"].clone(), e["error"]["code"].clone()),
            (json!("a"), json!(-32600))
        );
        let e = refused(br#"{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}"#);
        assert_eq!(
            (e["id"].clone(), e["error"]["code"].clone()),
            (json!(null), json!(-32600))
        );
        assert_eq!(refused(b"\xff\xfe{}")["error"]["code"], -32700);
        assert_eq!(refused(b"{\"jsonrpc\"")["error"]["code"], -32700);
        assert_eq!(refused(b"[]")["error"]["code"], -32600);
        assert_eq!(refused(b"42")["error"]["code"], -32600);
    }

    #[test]
    fn valid_messages_and_blank_lines_pass() {
        assert!(matches!(
            check_frame(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r"),
            Frame::Valid(_)
        ));
        assert!(matches!(check_frame(b"  \r"), Frame::Blank));
    }
}
