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

/// Values that are not JSON have a documented JSON form (README, "Values") with their type
/// and the text a REPL prints; only what has none is its repr(), as before.
#[tokio::test]
async fn values_without_a_json_type_have_typed_forms() {
    let server = Server::start();
    let cases: &[(&str, Value, &str, &str)] = &[
        (
            "(1, 2)",
            json!({"type": "tuple", "data": [1, 2]}),
            "tuple",
            "(1, 2)",
        ),
        (
            "{2, 1}",
            json!({"type": "set", "data": [1, 2]}),
            "set",
            "{1, 2}",
        ),
        (
            "frozenset({3, 1})",
            json!({"type": "frozenset", "data": [1, 3]}),
            "frozenset",
            "frozenset({1, 3})",
        ),
        // Sorted, whatever the order of iteration.
        (
            "{'b', 'a', 'c'}",
            json!({"type": "set", "data": ["a", "b", "c"]}),
            "set",
            "",
        ),
        (
            "{1: 'a'}",
            json!({"type": "dict", "data": [[1, "a"]]}),
            "dict",
            "{1: 'a'}",
        ),
        (
            "b'\\x00ab'",
            json!({"type": "bytes", "data": "AGFi"}),
            "bytes",
            "b'\\x00ab'",
        ),
        (
            "bytearray(b'hi')",
            json!({"type": "bytearray", "data": "aGk="}),
            "bytearray",
            "bytearray(b'hi')",
        ),
        (
            "2**100",
            json!({"type": "int", "data": "1267650600228229401496703205376"}),
            "int",
            "1267650600228229401496703205376",
        ),
        (
            "-2**63",
            json!(-9223372036854775808i64),
            "int",
            "-9223372036854775808",
        ),
        ("float('nan')", json!("nan"), "float", "nan"),
        (
            "[float('inf'), -float('inf')]",
            json!(["inf", "-inf"]),
            "list",
            "[inf, -inf]",
        ),
        (
            "complex(1, -2.5)",
            json!({"type": "complex", "real": 1.0, "imag": -2.5}),
            "complex",
            "(1-2.5j)",
        ),
        (
            "import decimal\ndecimal.Decimal('1.10')",
            json!({"type": "decimal", "data": "1.10"}),
            "decimal.Decimal",
            "Decimal('1.10')",
        ),
        (
            "import fractions\nfractions.Fraction(2, 6)",
            json!({"type": "fraction", "numerator": 1, "denominator": 3}),
            "fractions.Fraction",
            "Fraction(1, 3)",
        ),
        (
            "import datetime as d\nd.datetime(2024, 2, 29, 13, 5, 7, 250, tzinfo=d.timezone(d.timedelta(hours=-5)))",
            json!({"type": "datetime", "data": "2024-02-29T13:05:07.000250-05:00"}),
            "datetime.datetime",
            "datetime.datetime(2024, 2, 29, 13, 5, 7, 250, tzinfo=datetime.timezone(datetime.timedelta(days=-1, seconds=68400)))",
        ),
        (
            "import datetime as d\nd.date(2024, 1, 2)",
            json!({"type": "date", "data": "2024-01-02"}),
            "datetime.date",
            "datetime.date(2024, 1, 2)",
        ),
        (
            "import datetime as d\nd.time(23, 59, 1)",
            json!({"type": "time", "data": "23:59:01"}),
            "datetime.time",
            "datetime.time(23, 59, 1)",
        ),
        (
            "import datetime as d\nd.timedelta(days=1, microseconds=5)",
            json!({"type": "timedelta", "seconds": 86400.000005}),
            "datetime.timedelta",
            "datetime.timedelta(days=1, microseconds=5)",
        ),
        (
            "{'k': (1, {2}), 'n': None}",
            json!({"k": {"type": "tuple", "data": [1, {"type": "set", "data": [2]}]}, "n": null}),
            "dict",
            "{'k': (1, {2}), 'n': None}",
        ),
        // No JSON form: the repr, as a string (at the top) or named (inside a container).
        ("'\\ud800'", json!("'\\ud800'"), "str", "'\\ud800'"),
        (
            "class P:\n    def __repr__(self): return 'P!'\nP()",
            json!("P!"),
            "__main__.P",
            "P!",
        ),
        (
            "class P:\n    def __repr__(self): return 'P!'\n[P()]",
            json!([{"type": "repr", "value_type": "__main__.P", "data": "P!"}]),
            "list",
            "[P!]",
        ),
        (
            "class Bad:\n    def __repr__(self): raise ValueError\nBad()",
            json!("<unrepresentable Bad: ValueError>"),
            "__main__.Bad",
            "<unrepresentable Bad: ValueError>",
        ),
        // An int subclass is not silently an int: its repr.
        (
            "import enum\nclass C(enum.IntEnum):\n    A = 1\nC.A",
            json!("<C.A: 1>"),
            "__main__.C",
            "<C.A: 1>",
        ),
        // Nested deeper than the JSON reader's depth: the repr.
        (
            "x = 1\nfor _ in range(70): x = (x,)\nx",
            json!(format!("{}1{}", "(".repeat(70), ",)".repeat(70))),
            "tuple",
            "",
        ),
    ];
    for (code, expected, python_type, text) in cases {
        let out = server.run(code).await;
        assert_eq!(&out["result"], expected, "code {code:?}: {out}");
        assert_eq!(
            out["result_type"],
            json!(python_type),
            "code {code:?}: {out}"
        );
        if !text.is_empty() {
            assert_eq!(out["result_text"], json!(text), "code {code:?}: {out}");
        }
        assert_eq!(out["error"], Value::Null, "code {code:?}");
    }
    // Plain JSON values say so too; no value, no text or type.
    let out = server.run("[1, 'a']").await;
    assert_eq!(out["result_text"], "[1, 'a']");
    assert_eq!(out["result_type"], "list");
    let out = server.run("x = 1").await;
    assert_eq!(out["result_text"], Value::Null);
    assert_eq!(out["result_type"], Value::Null);
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
    assert_eq!(
        out["result"],
        json!({"type": "tuple", "data": ["hi Ada", "line 2\nline 3\n"]})
    );
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
