//! Integration tests, compiled as one binary. They drive the real `omcp-sandbox` executable
//! with the real python.wasm over real sockets on 127.0.0.1.

mod adversarial;
mod cancellation;
mod cli;
mod code_mode;
mod connections;
mod helm;
mod helpers;
mod http_api;
mod isolation;
mod limits;
mod mcp_clients;
mod mcp_protocol;
mod metrics;
mod notebook;
mod openapi;
mod replicas;
mod scientific;
mod sessions;
mod snapshot;
mod traces;
mod values;
