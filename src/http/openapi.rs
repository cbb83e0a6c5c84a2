//! `GET /openapi.json`: an OpenAPI 3.1 description of the HTTP API, generated at run time.
//!
//! The schemas come from the Rust types themselves (schemars), so the document cannot drift
//! from what the server decodes and encodes; the limits quoted in it are the running
//! server's own. `/mcp` is left out on purpose: it speaks JSON-RPC under the MCP
//! specification, which has its own schema and its own conformance suite.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use super::{ErrorBody, Health};
use crate::api::{
    CreateSessionRequest, RunRequest, RunResponse, SessionInfo, SessionList, SessionRunResponse,
};
use crate::limits::Limits;
use crate::workspace::FileEntry;

const COMPONENTS: &str = "/components/schemas";

/// A workspace path as `check_path` accepts it: relative, `/`-separated components of 1 to
/// 255 characters, none of them `.`, `..` or an encoded dot (`%2e`, `%2e%2e`, `.%2e`,
/// `%2e.`), no backslash, NUL or other control character. (The server counts the 1024 and
/// 255 in bytes; a pattern counts characters.)
const PATH_PATTERN: &str = concat!(
    r"^(?!(?:\.|%2[eE])(?:\.|%2[eE])?(?:/|$))[^/\\\u0000-\u001f\u007f]{1,255}",
    r"(?:/(?!(?:\.|%2[eE])(?:\.|%2[eE])?(?:/|$))[^/\\\u0000-\u001f\u007f]{1,255})*$",
);

/// Standard base64 with its padding, as the server decodes it (the unused bits of the last
/// character are zero).
const BASE64_PATTERN: &str = concat!(
    r"^(?:[A-Za-z0-9+/]{4})*",
    r"(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$",
);

/// The whole document. `runtimes`: the names this server accepts in a request's
/// `runtime`, the default first.
pub fn document(limits: &Limits, runtimes: &[&str]) -> Value {
    let mut schemas = Map::new();
    // Requests are described as the server decodes them, answers as it encodes them (an
    // `Option` field may be left out of a request but is always present in an answer).
    let mut requests = generator(SchemaSettings::draft2020_12().for_deserialize());
    let run_request = requests.subschema_for::<RunRequest>();
    let create_session = requests.subschema_for::<CreateSessionRequest>();
    schemas.append(&mut requests.take_definitions(true));
    // The type says "a string"; this server accepts only the runtimes it loaded.
    let mut names: Vec<Value> = runtimes.iter().map(|name| json!(name)).collect();
    names.push(Value::Null);
    for request in ["RunRequest", "CreateSessionRequest"] {
        if let Some(runtime) = schemas
            .get_mut(request)
            .and_then(|schema| schema.pointer_mut("/properties/runtime"))
        {
            runtime["enum"] = Value::Array(names.clone());
        }
    }
    // A turn takes the /run fields but its seed: the session was seeded at creation.
    let mut turn = schemas.get("RunRequest").cloned().unwrap_or_default();
    if let Some(properties) = turn["properties"].as_object_mut() {
        properties.remove("seed");
    }
    turn["description"] = json!(
        "`POST /sessions/{id}/run` body: the `/run` fields but `seed` (set when the session \
         is created). `runtime`, if given, must be the session's."
    );
    schemas.insert("SessionRunRequest".into(), turn);
    let turn_request = json!({ "$ref": format!("#{COMPONENTS}/SessionRunRequest") });
    // What `check_path` and the base64 decoder accept, so that a schema-valid file is one
    // the server takes.
    if let Some(file) = schemas.get_mut("FileIn") {
        file["properties"]["path"]["pattern"] = json!(PATH_PATTERN);
        file["properties"]["path"]["maxLength"] = json!(1024);
        file["anyOf"] = json!([
            { "properties": { "encoding": { "const": "utf-8" } } },
            {
                "required": ["encoding"],
                "properties": {
                    "encoding": { "const": "base64" },
                    "content": { "pattern": BASE64_PATTERN },
                },
            },
        ]);
    }

    let mut answers = generator(SchemaSettings::draft2020_12().for_serialize());
    let run_response = Value::from(answers.subschema_for::<RunResponse>());
    let error = answers.subschema_for::<ErrorBody>();
    let health = answers.subschema_for::<Health>();
    let tools = answers.subschema_for::<super::health::ToolsListing>();
    let probe = answers.subschema_for::<super::probes::Probe>();
    let session_info = Value::from(answers.subschema_for::<SessionInfo>());
    let session_list = Value::from(answers.subschema_for::<SessionList>());
    let turn_response = Value::from(answers.subschema_for::<SessionRunResponse>());
    let file_entry = Value::from(answers.subschema_for::<FileEntry>());
    schemas.append(&mut answers.take_definitions(true));

    let refusal = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": error } },
        })
    };
    let retry_later = |description: &str| {
        json!({
            "description": description,
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": { "type": "integer", "minimum": 0 },
                },
            },
            "content": { "application/json": { "schema": error } },
        })
    };
    let json_answer = |description: &str, schema: &Value| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": schema } },
        })
    };
    let nothing = |description: &str| json!({ "description": description });
    // The answers of a guarded route (`/run`, `/sessions...`): its own plus the guard's.
    let guarded = |mut responses: Map<String, Value>| {
        responses.insert(
            "401".into(),
            refusal("A bearer token is required (the server runs with --auth-token-file)."),
        );
        responses.insert(
            "403".into(),
            refusal("The Host or Origin header names a host this server does not answer for."),
        );
        Value::Object(responses)
    };
    let responses = |pairs: Vec<(&str, Value)>| -> Map<String, Value> {
        pairs
            .into_iter()
            .map(|(status, response)| (status.to_string(), response))
            .collect()
    };
    let id_parameter = json!({
        "name": "id",
        "in": "path",
        "required": true,
        "description": "The session's `session_id` (as `POST /sessions` returned it).",
        "schema": { "type": "string", "pattern": "^[0-9a-f]{32,}$" },
    });
    let path_parameter = json!({
        "name": "path",
        "in": "path",
        "required": true,
        "description": "A file's path relative to the session's /workspace, `/`-separated \
                        (`data/in.csv`; percent-encode as usual).",
        "schema": { "type": "string", "pattern": PATH_PATTERN, "maxLength": 1024 },
    });
    let not_found = || {
        refusal(
            "`session_not_found`: no such session (closed, expired or never created); create a new one with POST /sessions.",
        )
    };
    let session_busy = || refusal("`session_busy`: the session is running another turn.");
    let body_timeout = || refusal("The body did not arrive within the body timeout.");
    let workspace = limits.workspace();

    let description = format!(
        "Run untrusted Python in a fresh WebAssembly sandbox per request; this server's \
         runtimes (`runtime`): {}, the first the default.\n\n\
         A Python exception or a limit reached is a normal 200 answer (`error`, `stopped`); \
         4xx/5xx mean the code did not run. Limits of this server (the default for each run \
         and the most a request may ask for): {} ms, {} MiB of memory, {} bytes of output, \
         {} bytes of code, {} bytes of stdin; {}. A workspace (/workspace and /tmp) holds \
         at most {} bytes in {} files; an upload at most {} bytes.\n\n\
         Sessions (`/sessions`) keep an interpreter's state (variables, imports, functions \
         and the files of its /workspace) across turns. MCP is served at `/mcp` \
         (streamable HTTP) and is not described here.",
        runtimes.join(", "),
        limits.timeout.as_millis(),
        limits.memory_mb,
        limits.max_output_bytes,
        limits.max_code_bytes,
        limits.max_stdin_bytes,
        limits.fuel_policy(),
        workspace.max_bytes,
        workspace.max_files,
        workspace.max_upload_bytes,
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
                    "responses": guarded(responses(vec![
                        ("200", json_answer(
                            "The code ran; `error` and `stopped` say how it ended.",
                            &run_response,
                        )),
                        ("400", refusal("The body is not JSON, or a file in `files` has an \
                            invalid path (`invalid_path`) or content (`invalid_content`).")),
                        ("408", body_timeout()),
                        ("413", refusal("The body, the code, stdin or a file is larger than \
                            the server allows.")),
                        ("422", refusal("JSON of the wrong shape, or a limit below its minimum.")),
                        ("503", retry_later("Every run slot and queue place is taken; retry later.")),
                        ("507", refusal("`workspace_full`: the files sent in pass the \
                            workspace's byte or file-count bound.")),
                    ])),
                },
            },
            "/sessions": {
                "post": {
                    "operationId": "createSession",
                    "summary": "Open a session: an interpreter whose state lasts across turns",
                    "requestBody": {
                        "required": false,
                        "description": "Every field is optional; no body means the defaults.",
                        "content": { "application/json": { "schema": create_session } },
                    },
                    "responses": guarded(responses(vec![
                        ("201", json_answer("The session is open.", &session_info)),
                        ("400", refusal("The body is not JSON, or a file in `files` has an \
                            invalid path (`invalid_path`) or content (`invalid_content`).")),
                        ("408", body_timeout()),
                        ("413", refusal("`too_large`: the body or a file is larger than the \
                            server allows.")),
                        ("422", refusal("JSON of the wrong shape, an unknown runtime, or a \
                            limit below its minimum.")),
                        ("501", refusal("`sessions_unavailable`: the runtime has no sessions \
                            on this server.")),
                        ("503", retry_later("`too_many_sessions`: the server holds its maximum \
                            of sessions (--max-sessions); close one or retry later.")),
                        ("507", refusal("`workspace_full`: the files sent in pass the \
                            workspace's byte or file-count bound.")),
                    ])),
                },
                "get": {
                    "operationId": "listSessions",
                    "summary": "Every open session",
                    "responses": guarded(responses(vec![
                        ("200", json_answer("The open sessions, oldest first.", &session_list)),
                    ])),
                },
            },
            "/sessions/{id}": {
                "parameters": [id_parameter],
                "get": {
                    "operationId": "getSession",
                    "summary": "A session's state, age, expiry and size",
                    "responses": guarded(responses(vec![
                        ("200", json_answer("The session.", &session_info)),
                        ("404", not_found()),
                    ])),
                },
                "delete": {
                    "operationId": "closeSession",
                    "summary": "Close a session and remove its files",
                    "responses": guarded(responses(vec![
                        ("204", nothing("The session is closed and its files removed.")),
                        ("404", not_found()),
                        ("409", session_busy()),
                    ])),
                },
            },
            "/sessions/{id}/run": {
                "parameters": [id_parameter],
                "post": {
                    "operationId": "runInSession",
                    "summary": "Run a turn: Python code in the session's interpreter",
                    "requestBody": {
                        "required": true,
                        "content": { "application/json": { "schema": turn_request } },
                    },
                    "responses": guarded(responses(vec![
                        ("200", json_answer(
                            "The turn ran; `error` and `stopped` say how it ended, \
                             `rolled_back` whether the session is back at its state before it.",
                            &turn_response,
                        )),
                        ("400", refusal("The body is not JSON, or a file in `files` has an \
                            invalid path (`invalid_path`) or content (`invalid_content`).")),
                        ("404", not_found()),
                        ("408", body_timeout()),
                        ("409", refusal("`session_busy`: the session is running another turn; \
                            `session_incompatible`: it was suspended by another server \
                            version or runtime build; or `not_a_file`: a file of `files` \
                            lands on (or goes through) a directory or symlink of the \
                            workspace.")),
                        ("410", refusal("`session_lost`: the session's state could not be kept \
                            or restored; its files remain readable.")),
                        ("413", refusal("The body, the code, stdin or a file is larger than \
                            the server allows.")),
                        ("422", refusal("JSON of the wrong shape, `seed`, another runtime than \
                            the session's, or a limit below its minimum.")),
                        ("501", refusal("`sessions_unavailable`: the runtime has no sessions \
                            on this server.")),
                        ("503", retry_later("Every run slot and queue place is taken; or, with \
                            `--shared-sessions`, `session_unsaved`: the turn ran but could not \
                            be checkpointed, so it is not kept. Retry later.")),
                        ("507", refusal("`workspace_full`: the files sent in pass the \
                            workspace's byte or file-count bound.")),
                    ])),
                },
            },
            "/sessions/{id}/fork": {
                "parameters": [id_parameter],
                "post": {
                    "operationId": "forkSession",
                    "summary": "Open a new session with a copy of this one's state and files",
                    "responses": guarded(responses(vec![
                        ("201", json_answer("The new session.", &session_info)),
                        ("404", not_found()),
                        ("409", refusal("`session_busy`: the session is running a turn; or \
                            `session_incompatible`: it was suspended by another server version \
                            or runtime build.")),
                        ("410", refusal("`session_lost`: the session's state could not be kept \
                            or restored.")),
                        ("503", retry_later("`too_many_sessions`: the server holds its maximum \
                            of sessions (--max-sessions); close one or retry later.")),
                        ("507", refusal("`workspace_full`: no room for the copy of the files.")),
                    ])),
                },
            },
            "/sessions/{id}/files": {
                "parameters": [id_parameter],
                "get": {
                    "operationId": "listSessionFiles",
                    "summary": "The files in the session's /workspace",
                    "responses": guarded(responses(vec![
                        ("200", json_answer("Every regular file, with its size and time.", &json!({
                            "type": "object",
                            "required": ["files"],
                            "properties": {
                                "files": { "type": "array", "items": file_entry },
                            },
                        }))),
                        ("404", not_found()),
                    ])),
                },
            },
            "/sessions/{id}/files/{path}": {
                "parameters": [id_parameter, path_parameter],
                "put": {
                    "operationId": "putSessionFile",
                    "summary": "Write a file into the session's /workspace (the body as is)",
                    "requestBody": {
                        "required": true,
                        "content": {
                            "application/octet-stream": {
                                "schema": { "type": "string", "format": "binary" },
                            },
                        },
                    },
                    "responses": guarded(responses(vec![
                        ("201", json_answer("The file is written.", &json!({
                            "type": "object",
                            "required": ["path", "size"],
                            "properties": {
                                "path": { "type": "string" },
                                "size": { "type": "integer", "minimum": 0 },
                            },
                        }))),
                        ("400", refusal("`invalid_path`: the path breaks a rule (`..`, \
                            absolute, NUL, too long...).")),
                        ("404", not_found()),
                        ("408", body_timeout()),
                        ("409", refusal("`session_busy`: a turn is running; or `not_a_file`: \
                            the path is or goes through a directory or a symlink.")),
                        ("413", refusal("`too_large`: the file is larger than the upload \
                            limit (--max-upload-mb).")),
                        ("507", refusal("`workspace_full`: the file would pass the \
                            workspace's byte or file-count bound.")),
                    ])),
                },
                "get": {
                    "operationId": "getSessionFile",
                    "summary": "Read a file of the session's /workspace",
                    "responses": guarded(responses(vec![
                        ("200", json!({
                            "description": "The file's bytes.",
                            "content": {
                                "application/octet-stream": {
                                    "schema": { "type": "string", "format": "binary" },
                                },
                            },
                        })),
                        ("400", refusal("`invalid_path`: the path breaks a rule.")),
                        ("404", refusal("`session_not_found`: no such session (create a new \
                            one with POST /sessions); or `file_not_found`: no such file.")),
                        ("409", refusal("`not_a_file`: it is a directory or a symlink.")),
                    ])),
                },
                "delete": {
                    "operationId": "deleteSessionFile",
                    "summary": "Remove a file from the session's /workspace",
                    "responses": guarded(responses(vec![
                        ("204", nothing("The file is removed.")),
                        ("400", refusal("`invalid_path`: the path breaks a rule.")),
                        ("404", refusal("`session_not_found`: no such session (create a new \
                            one with POST /sessions); or `file_not_found`: no such file.")),
                        ("409", refusal("`session_busy`: a turn is running; or `not_a_file`: \
                            it is a directory or a symlink.")),
                    ])),
                },
            },
            "/tools": {
                "get": {
                    "operationId": "listTools",
                    "summary": "Code mode: the upstream tool servers and the `tools` module's API",
                    "description": "Each upstream MCP server of the operator's --tools-config \
                        with its state, and the Python functions `import tools` gives runs and \
                        sessions, as a stub file (signatures and docstrings).",
                    "responses": guarded(responses(vec![
                        ("200", json!({
                            "description": "The servers and the stubs.",
                            "content": { "application/json": { "schema": tools } },
                        })),
                    ])),
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
            "/livez": {
                "get": {
                    "operationId": "livez",
                    "summary": "Liveness: the process serves",
                    "responses": {
                        "200": {
                            "description": "Alive.",
                            "content": { "application/json": { "schema": probe } },
                        },
                    },
                },
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness: whether to send this server work",
                    "responses": {
                        "200": {
                            "description": "Ready.",
                            "content": { "application/json": { "schema": probe } },
                        },
                        "503": {
                            "description": "Not ready: draining after SIGTERM, or every slot and \
                                            queue place taken.",
                            "content": { "application/json": { "schema": probe } },
                        },
                    },
                },
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text format 0.0.4)",
                    "responses": {
                        "200": {
                            "description": "Runs by runtime, face and outcome; durations and \
                                            queue waits; refusals; HTTP requests; sessions; \
                                            slots, queue, connections, resident memory.",
                            "content": { "text/plain": { "schema": { "type": "string" } } },
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
    fn every_session_route_is_described() {
        let doc = document(&Limits::default(), &["stdlib"]);
        let paths = &doc["paths"];
        for (path, method, success) in [
            ("/sessions", "post", "201"),
            ("/sessions", "get", "200"),
            ("/sessions/{id}", "get", "200"),
            ("/sessions/{id}", "delete", "204"),
            ("/sessions/{id}/run", "post", "200"),
            ("/sessions/{id}/fork", "post", "201"),
            ("/sessions/{id}/files", "get", "200"),
            ("/sessions/{id}/files/{path}", "put", "201"),
            ("/sessions/{id}/files/{path}", "get", "200"),
            ("/sessions/{id}/files/{path}", "delete", "204"),
        ] {
            let operation = &paths[path][method];
            assert!(operation.is_object(), "no {method} {path}");
            assert!(
                operation["responses"][success].is_object(),
                "{method} {path}"
            );
            for (status, response) in operation["responses"].as_object().unwrap() {
                if !status.starts_with('2') {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path}");
                }
            }
            // Every `{parameter}` of the path is declared.
            let declared: Vec<&str> = paths[path]["parameters"]
                .as_array()
                .map(|p| p.iter().filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            for name in ["id", "path"] {
                assert_eq!(
                    path.contains(&format!("{{{name}}}")),
                    declared.contains(&name),
                    "{path}: {declared:?}"
                );
            }
        }
        let run = &paths["/sessions/{id}/run"]["post"]["responses"];
        for status in ["404", "409", "410", "503"] {
            assert!(run[status].is_object(), "no {status} for a turn");
        }
        assert!(
            paths["/sessions"]["post"]["responses"]["503"]["headers"]["Retry-After"].is_object()
        );
        assert_eq!(paths["/sessions"]["post"]["requestBody"]["required"], false);
        let put = &paths["/sessions/{id}/files/{path}"]["put"];
        assert!(put["requestBody"]["content"]["application/octet-stream"].is_object());
        for status in ["400", "404", "409", "413", "507"] {
            assert!(put["responses"][status].is_object(), "no {status} for PUT");
        }
        let get = &paths["/sessions/{id}/files/{path}"]["get"]["responses"]["200"];
        assert!(get["content"]["application/octet-stream"].is_object());
        // A turn takes no seed (the session has one from its creation).
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["SessionRunRequest"]["properties"]["code"].is_object());
        assert!(schemas["SessionRunRequest"]["properties"]["seed"].is_null());
        assert!(schemas["RunRequest"]["properties"]["seed"].is_object());
        for name in [
            "SessionInfo",
            "SessionList",
            "SessionRunResponse",
            "FileEntry",
        ] {
            assert!(schemas[name].is_object(), "no schema {name}");
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
