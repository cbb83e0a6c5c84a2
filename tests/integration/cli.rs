//! `omcp-sandbox run`: REPL-like output, exit codes, JSON mode, code from stdin.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::helpers::command;

fn run_cli(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_prints_output_and_value() {
    let (code, stdout, _) = run_cli(&["run", "-c", "print(1+1)\n'a' * 3"], "");
    assert_eq!(code, 0);
    assert_eq!(stdout, "2\n'aaa'\n");
}

#[test]
fn run_shows_displayed_values_in_order() {
    let (code, stdout, _) = run_cli(
        &[
            "run",
            "-c",
            "print('a')\ndisplay((1, 2), 'b')\nprint('c')\n{3}",
        ],
        "",
    );
    assert_eq!(code, 0);
    assert_eq!(stdout, "a\n(1, 2)\n'b'\nc\n{3}\n");
}

#[test]
fn run_reads_code_from_stdin_and_files() {
    let (code, stdout, _) = run_cli(&["run", "-"], "x = 6\nx * 7\n");
    assert_eq!(code, 0);
    assert_eq!(stdout, "42\n");

    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_file.py");
    std::fs::write(
        &path,
        "import sys\nprint(sys.stdin.read().upper(), end='')\n",
    )
    .unwrap();
    let (code, stdout, _) = run_cli(&["run", path.to_str().unwrap(), "--stdin", "shout"], "");
    assert_eq!(code, 0);
    assert_eq!(stdout, "SHOUT");
}

#[test]
fn run_exit_codes() {
    let (code, _, stderr) = run_cli(&["run", "-c", "1/0"], "");
    assert_eq!(code, 1);
    assert!(stderr.contains("ZeroDivisionError"), "{stderr}");

    let (code, _, _) = run_cli(&["run", "-c", "import sys; sys.exit(3)"], "");
    assert_eq!(code, 3);

    let (code, _, stderr) = run_cli(
        &["run", "--timeout-ms", "300", "-c", "while True: pass"],
        "",
    );
    assert_eq!(code, 124, "{stderr}");
    assert!(stderr.contains("timeout"), "{stderr}");

    let (code, _, stderr) = run_cli(&["run", "-c", "import os; os.abort()"], "");
    assert_eq!(code, 125, "{stderr}");
}

#[test]
fn run_json_matches_the_http_contract() {
    let (code, stdout, _) = run_cli(&["run", "--json", "-c", "print(1+1)\n2+2"], "");
    assert_eq!(code, 0);
    let value: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(value["result"], 4);
    assert_eq!(value["output"], "2\n");
    assert_eq!(value["error"], Value::Null);
}

#[test]
fn missing_runtime_names_the_fetch_command() {
    let (code, _, stderr) = run_cli(
        &[
            "run",
            "--python-wasm",
            "/nonexistent/python.wasm",
            "-c",
            "1",
        ],
        "",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("fetch-python.sh"), "{stderr}");

    let bogus = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm not really").unwrap();
    let (code, _, stderr) = run_cli(
        &["run", "--python-wasm", bogus.to_str().unwrap(), "-c", "1"],
        "",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("expected 26267204"), "{stderr}");
}
