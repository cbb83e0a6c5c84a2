//! `GET /openapi.json`: an OpenAPI 3.1 description of the HTTP API, generated at run time.
//!
//! The schemas come from the Rust types themselves (schemars), so the document cannot drift
//! from what the server decodes and encodes; the limits quoted in it are the running
//! server's own. `/mcp` is left out on purpose: it speaks JSON-RPC under the MCP
//! specification, which has its own schema and its own conformance suite.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use super::{ErrorBody, Health};
use crate::api::{RunRequest, RunResponse};
use crate::limits::Limits;

const COMPONENTS: &str = "/components/schemas";

/// The whole document. `runtimes`: the names this server accepts in a request's
/// `runtime`, the default first.
pub fn document(limits: &Limits, runtimes: &[&str]) -> Value {
    let mut schemas = Map::new();
    // Requests are described as the server decodes them, answers as it encodes them (an
    // `Option` field may be left out of a request but is always present in an answer).
    let mut requests = generator(SchemaSettings::draft2020_12().for_deserialize());
    let run_request = requests.subschema_for::<RunRequest>();
    schemas.append(&mut requests.take_definitions(true));
    // The type says "a string"; this server accepts only the runtimes it loaded.
    if let Some(runtime) = schemas
        .get_mut("RunRequest")
        .and_then(|schema| schema.pointer_mut("/properties/runtime"))
    {
        let mut names: Vec<Value> = runtimes.iter().map(|name| json!(name)).collect();
        names.push(Value::Null);
        runtime["enum"] = Value::Array(names);
    }
    let mut answers = generator(SchemaSettings::draft2020_12().for_serialize());
    let run_response = answers.subschema_for::<RunResponse>();
    let error = answers.subschema_for::<ErrorBody>();
    let health = answers.subschema_for::<Health>();
    schemas.append(&mut answers.take_definitions(true));

    let refusal = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": error } },
        })
    };
    let description = format!(
        "Run untrusted Python in a fresh WebAssembly sandbox per request; this server's \
         runtimes (`runtime`): {}, the first the default.\n\n\
         A Python exception or a limit reached is a normal 200 answer (`error`, `stopped`); \
         4xx/5xx mean the code did not run. Limits of this server (the default for each run \
         and the most a request may ask for): {} ms, {} MiB of memory, {} bytes of output, \
         {} bytes of code, {} bytes of stdin; {}. MCP is served at `/mcp` (streamable HTTP) \
         and is not described here.",
        runtimes.join(", "),
        limits.timeout.as_millis(),
        limits.memory_mb,
        limits.max_output_bytes,
        limits.max_code_bytes,
        limits.max_stdin_bytes,
        limits.fuel_policy(),
    );

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "omcp-sandbox",
            "version": env!("CARGO_PKG_VERSION"),
            "description": description,
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
        },
        "paths": {
            "/run": {
                "post": {
                    "operationId": "run",
                    "summary": "Run Python code in a pristine interpreter",
                    "requestBody": {
                        "required": true,
                        "content": { "application/json": { "schema": run_request } },
                    },
                    "responses": {
                        "200": {
                            "description": "The code ran; `error` and `stopped` say how it ended.",
                            "content": { "application/json": { "schema": run_response } },
                        },
                        "400": refusal("The body is not JSON."),
                        "401": refusal("A bearer token is required (the server runs with --auth-token-file)."),
                        "403": refusal("The Host or Origin header names a host this server does not answer for."),
                        "408": refusal("The body did not arrive within the body timeout."),
                        "413": refusal("The body, the code or stdin is larger than the server allows."),
                        "422": refusal("JSON of the wrong shape, or a limit below its minimum."),
                        "503": {
                            "description": "Every run slot and queue place is taken; retry later.",
                            "headers": {
                                "Retry-After": {
                                    "description": "Seconds to wait before retrying.",
                                    "schema": { "type": "integer", "minimum": 0 },
                                },
                            },
                            "content": { "application/json": { "schema": error } },
                        },
                    },
                },
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness, the loaded runtime, limits and current load",
                    "responses": {
                        "200": {
                            "description": "The server is up and its runtime passed its self-test.",
                            "content": { "application/json": { "schema": health } },
                        },
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "The OpenAPI 3.1 description of this API.",
                            "content": { "application/json": { "schema": { "type": "object" } } },
                        },
                    },
                },
            },
        },
        "components": { "schemas": schemas },
    })
}

fn generator(settings: SchemaSettings) -> SchemaGenerator {
    settings
        .with(|s| {
            s.definitions_path = COMPONENTS.into();
            s.meta_schema = None;
        })
        .into_generator()
}

/// The schemas must resolve inside the document: every `$ref` points into `components`.
#[cfg(test)]
mod tests {
    use super::*;

    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document(&Limits::default(), &["stdlib"]);
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() >= 4, "{found:?}");
        for r in found {
            let pointer = r.strip_prefix('#').expect("local reference");
            assert!(doc.pointer(pointer).is_some(), "dangling {r}");
        }
    }

    #[test]
    fn run_request_keeps_its_constraints() {
        let doc = document(&Limits::default(), &["stdlib"]);
        let request = &doc["components"]["schemas"]["RunRequest"];
        assert_eq!(request["additionalProperties"], false, "{request}");
        assert_eq!(request["required"], json!(["code"]));
        assert_eq!(request["properties"]["timeout_ms"]["minimum"], 1);
        assert_eq!(request["properties"]["memory_mb"]["minimum"], 1);
        assert_eq!(request["properties"]["fuel"]["minimum"], 1);
    }
}
