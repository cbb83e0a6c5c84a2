//! Fuzz target: decoding a request body (`POST /run`) or tool arguments (`run_python`) from
//! untrusted bytes, and resolving the limits it asks for against the server's.
//!
//! Properties: decoding never panics; whatever decodes resolves to limits within the
//! server's (a request can lower a limit, never raise it) or to a typed error that names
//! a value below its minimum.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use omcp_sandbox::api::{RunPythonArgs, RunRequest};
use omcp_sandbox::limits::{LimitRequest, Limits};

fuzz_target!(|data: &[u8]| {
    let servers = [
        Limits::default(),
        Limits {
            timeout: Duration::from_millis(1),
            fuel: 1,
            meter_all: true,
            memory_mb: 1,
            max_output_bytes: 0,
            ..Limits::default()
        },
    ];
    if let Ok(request) = serde_json::from_slice::<RunRequest>(data) {
        servers.iter().for_each(|s| check(s, &request.limits()));
    }
    if let Ok(args) = serde_json::from_slice::<RunPythonArgs>(data) {
        servers.iter().for_each(|s| check(s, &args.limits()));
        assert!(args.limits().fuel.is_none() && args.limits().memory_mb.is_none());
    }
});

fn check(server: &Limits, asked: &LimitRequest) {
    match server.resolve(asked) {
        Ok(run) => {
            assert!(run.timeout <= server.timeout && run.timeout >= Duration::from_millis(1));
            // Metered exactly when asked or when the server meters every run, and never
            // with more fuel than the server's.
            assert_eq!(
                run.fuel.is_some(),
                asked.fuel.is_some() || server.meter_all
            );
            if let Some(fuel) = run.fuel {
                assert!(fuel <= server.fuel && fuel >= 1);
            }
            assert!(run.memory_mb <= server.memory_mb && run.memory_mb >= 1);
            assert!(run.max_output_bytes <= server.max_output_bytes);
            if asked.timeout_ms.is_none() {
                assert_eq!(run.timeout, server.timeout);
            }
        }
        Err(err) => assert!(err.value < err.min, "{err}"),
    }
}
