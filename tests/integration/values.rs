//! What a run reports: last-expression values, output, tracebacks, exits, stdin.

use serde_json::{Value, json};

use crate::helpers::Server;

#[tokio::test]
async fn seed_example_round_trip() {
    let server = Server::start();
    // The original project's documented example, byte for byte on its three fields.
    let (status, _, body) = server
        .raw(
            "POST",
            "/run",
            Some("application/json"),
            br#"{"code": "print(1+1)\n2+2"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200);
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["result"], json!(4));
    assert_eq!(value["output"], json!("2\n"));
    assert_eq!(value["error"], Value::Null);
    assert_eq!(value["stopped"], Value::Null);
    assert_eq!(value["exit_code"], json!(0));
    assert_eq!(value["truncated"], json!(false));
    // Not metered unless asked (metering slows CPU-bound code): no instruction count.
    assert_eq!(value["fuel_used"], Value::Null);
    assert!(value["duration_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn a_metered_run_reports_its_instructions_and_the_same_answer() {
    let server = Server::start();
    let code = "import random\nprint(1+1)\n[2+2, random.random() < 1]";
    let plain = server.run(code).await;
    let (status, metered) = server
        .run_json(json!({"code": code, "fuel": 1_000_000_000u64}))
        .await;
    assert_eq!(status, 200);
    for field in ["result", "output", "error", "stopped", "exit_code"] {
        assert_eq!(
            metered[field], plain[field],
            "{field}: {metered} vs {plain}"
        );
    }
    assert_eq!(plain["fuel_used"], Value::Null, "{plain}");
    let used = metered["fuel_used"].as_u64().unwrap();
    assert!(used > 0 && used < 1_000_000_000, "{metered}");
}

#[tokio::test]
async fn last_expression_values_of_each_json_type() {
    let server = Server::start();
    let cases: &[(&str, Value)] = &[
        ("42", json!(42)),
        ("-7 * 3", json!(-21)),
        ("2**63 - 1", json!(9223372036854775807i64)),
        ("1.5", json!(1.5)),
        ("'héllo'", json!("héllo")),
        ("True", json!(true)),
        ("None", Value::Null),
        ("[1, 'a', None, [2.5]]", json!([1, "a", null, [2.5]])),
        (
            "{'a': 1, 'b': {'c': [True]}}",
            json!({"a": 1, "b": {"c": [true]}}),
        ),
    ];
    for (code, expected) in cases {
        let out = server.run(code).await;
        assert_eq!(&out["result"], expected, "code {code:?}: {out}");
        assert_eq!(out["error"], Value::Null, "code {code:?}");
    }
}

#[tokio::test]
async fn non_json_values_come_back_as_repr() {
    let server = Server::start();
    let cases: &[(&str, &str)] = &[
        ("(1, 2)", "(1, 2)"),
        ("{1, 2}", "{1, 2}"),
        ("{1: 'a'}", "{1: 'a'}"),
        ("b'\\x00ab'", "b'\\x00ab'"),
        ("2**100", "1267650600228229401496703205376"),
        ("float('nan')", "nan"),
        ("'\\ud800'", "'\\ud800'"),
        ("import decimal\ndecimal.Decimal('1.10')", "Decimal('1.10')"),
        ("class P:\n    def __repr__(self): return 'P!'\nP()", "P!"),
        (
            "class Bad:\n    def __repr__(self): raise ValueError\nBad()",
            "<unrepresentable Bad: ValueError>",
        ),
    ];
    for (code, expected) in cases {
        let out = server.run(code).await;
        assert_eq!(out["result"], json!(expected), "code {code:?}: {out}");
    }
}

#[tokio::test]
async fn no_value_when_last_statement_is_not_an_expression() {
    let server = Server::start();
    for code in [
        "x = 5",
        "def f():\n    return 1",
        "for i in range(3):\n    i",
        "import math",
        "",
    ] {
        let out = server.run(code).await;
        assert_eq!(out["result"], Value::Null, "code {code:?}");
        assert_eq!(out["error"], Value::Null, "code {code:?}");
        assert_eq!(out["exit_code"], json!(0));
    }
}

#[tokio::test]
async fn exceptions_report_the_users_traceback_only() {
    let server = Server::start();
    let out = server
        .run("print('before')\ndef f():\n    return 1 / 0\nf()")
        .await;
    assert_eq!(out["output"], "before\n");
    assert_eq!(out["result"], Value::Null);
    assert_eq!(out["exit_code"], json!(1));
    assert_eq!(out["stopped"], Value::Null);
    let error = out["error"].as_str().unwrap();
    assert_eq!(
        error,
        "Traceback (most recent call last):\n  File \"<cell>\", line 4, in <module>\n    f()\n  \
         File \"<cell>\", line 3, in f\n    return 1 / 0\n           ~~^~~\nZeroDivisionError: division by zero\n"
    );
    assert!(!error.contains("_omcp"), "driver frames leaked: {error}");
}

#[tokio::test]
async fn syntax_errors_are_reported_like_other_errors() {
    let server = Server::start();
    let out = server.run("print('never')\nx = (1 +").await;
    assert_eq!(out["output"], "");
    assert_eq!(out["exit_code"], json!(1));
    let error = out["error"].as_str().unwrap();
    assert!(error.contains("File \"<cell>\", line 2"), "{error}");
    assert!(error.contains("SyntaxError"), "{error}");
}

#[tokio::test]
async fn sys_exit_reports_its_code() {
    let server = Server::start();
    let out = server.run("import sys\nprint('bye')\nsys.exit(3)").await;
    assert_eq!(out["stopped"], json!("exit"));
    assert_eq!(out["exit_code"], json!(3));
    assert_eq!(out["output"], "bye\n");
    assert_eq!(out["error"], Value::Null);

    let out = server.run("import sys\nsys.exit('fatal: bad input')").await;
    assert_eq!(out["exit_code"], json!(1));
    assert_eq!(out["stderr"], "fatal: bad input\n");

    let out = server
        .run("import os\nprint('x', flush=True)\nos._exit(7)")
        .await;
    assert_eq!(out["stopped"], json!("exit"));
    assert_eq!(out["exit_code"], json!(7));
    assert_eq!(out["output"], "x\n");
}

#[tokio::test]
async fn stdin_reaches_the_program() {
    let server = Server::start();
    let out = server
        .run_with(json!({"code": "name = input()\nrest = __import__('sys').stdin.read()\nf'hi {name}', rest", "stdin": "Ada\nline 2\nline 3\n"}))
        .await;
    assert_eq!(out["result"], json!("('hi Ada', 'line 2\\nline 3\\n')"));
    // No stdin: reading gets EOF, not a hang.
    let out = server.run("input()").await;
    assert!(out["error"].as_str().unwrap().contains("EOFError"), "{out}");
}

#[tokio::test]
async fn stderr_is_separate_from_output() {
    let server = Server::start();
    let out = server.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\nimport warnings\nwarnings.warn('careful')").await;
    assert_eq!(out["output"], "out\n");
    let stderr = out["stderr"].as_str().unwrap();
    assert!(stderr.starts_with("err\n"), "{stderr}");
    assert!(stderr.contains("UserWarning: careful"), "{stderr}");
}

#[tokio::test]
async fn printed_text_cannot_forge_the_envelope() {
    let server = Server::start();
    let fake = r#"{"result": "forged", "has_result": true, "repr": "'forged'", "error": null, "exit": false, "exit_code": 0, "truncated": false}"#;
    let code = format!(
        "import os, sys\nprint({fake:?})\nos.write(1, {fake:?}.encode())\nsys.stdout.write({fake:?})\n'real'"
    );
    let out = server.run(&code).await;
    assert_eq!(out["result"], json!("real"));
    assert!(out["output"].as_str().unwrap().contains("forged"));
}
