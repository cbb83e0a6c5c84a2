//! Hostile guest code: each snippet with the exact outcome it must get, and after the whole
//! battery the server still answers a normal run. Run against the snapshot path (the
//! default); `snapshot::snapshot_runs_match_cold_runs` holds the cold path to the same.

use serde_json::{Value, json};

use crate::helpers::Server;

/// What a hostile snippet must come to.
enum Expect {
    /// An uncaught Python exception whose last line starts with this.
    Raises(&'static str),
    /// A limit or trap, by `stopped`.
    Stopped(&'static str),
    /// Ran to its end with this value.
    Value(Value),
    /// `sys.exit()` / `os._exit()` with this status (`None`: WASI refused the status).
    Exit(Option<i64>),
}
use Expect::*;

fn corpus() -> Vec<(&'static str, &'static str, Expect)> {
    vec![
        // Host access: nothing of the host is there to read, list, write or stat.
        (
            "read /etc/passwd",
            "open('/etc/passwd').read()",
            Raises("FileNotFoundError"),
        ),
        (
            "list /",
            "import os\nos.listdir('/')",
            Raises("FileNotFoundError"),
        ),
        // The working directory is the run's own, empty /workspace.
        ("list .", "import os\nos.listdir('.')", Value(json!([]))),
        (
            "scandir /",
            "import os\nlist(os.scandir('/'))",
            Raises("FileNotFoundError"),
        ),
        (
            "stat /etc",
            "import os\nos.stat('/etc')",
            Raises("FileNotFoundError"),
        ),
        (
            "os.open",
            "import os\nos.open('/etc/hosts', os.O_RDONLY)",
            Raises("FileNotFoundError"),
        ),
        // /tmp is the run's own (fresh, quota-bounded, emptied after the run): writing
        // there is allowed, and nothing reaches the host's /tmp (`isolation::no_host_files`).
        (
            "write /tmp",
            "open('/tmp/omcp-adversarial', 'w').write('x')",
            Value(json!(1)),
        ),
        // From /workspace, `..` and links to absolute paths are refused by cap-std.
        (
            "dot-dot",
            "open('../../../../etc/passwd').read()",
            Raises("PermissionError"),
        ),
        (
            "symlink",
            "import os\nos.symlink('/etc/passwd', 'l')",
            Raises("PermissionError"),
        ),
        (
            "/proc",
            "open('/proc/self/status').read()",
            Raises("FileNotFoundError"),
        ),
        // fd 3 is a preopened directory (the run's /tmp): not readable as a file.
        (
            "fd 3",
            "import os\nos.read(3, 10)",
            Raises("OSError: [Errno 8] Bad file descriptor"),
        ),
        (
            "fd 100",
            "import os\nos.fstat(100)",
            Raises("OSError: [Errno 8]"),
        ),
        (
            "environment",
            "import os\ndict(os.environ)",
            Value(json!({})),
        ),
        ("argv", "import sys\nsys.argv", Value(json!([""]))),
        (
            "write the stdlib",
            "import json\nopen(json.__file__, 'w').write('boom')",
            Raises("NotADirectoryError"),
        ),
        (
            "patch the stdlib",
            "import json\njson.dumps = None\n'patched'",
            Value(json!("patched")),
        ),
        ("ctypes", "import ctypes", Raises("ModuleNotFoundError")),
        // Network and processes.
        (
            "socket connect",
            "import socket\nsocket.socket().connect(('127.0.0.1', 80))",
            Raises("OSError"),
        ),
        (
            "getaddrinfo",
            "import socket\nsocket.getaddrinfo('example.com', 80)",
            Raises("AttributeError"),
        ),
        (
            "urllib",
            "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:1/')",
            Raises("AttributeError"),
        ),
        (
            "subprocess",
            "import subprocess\nsubprocess.run(['ls'])",
            Raises("OSError: [Errno 58] wasi does not support processes"),
        ),
        (
            "os.system",
            "import os\nos.system('ls')",
            Raises("AttributeError"),
        ),
        ("fork", "import os\nos.fork()", Raises("AttributeError")),
        (
            "thread",
            "import threading\nthreading.Thread(target=print).start()",
            Raises("RuntimeError: can't start new thread"),
        ),
        (
            "kill",
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
            Raises("AttributeError"),
        ),
        (
            "alarm",
            "import signal\nsignal.alarm(1)",
            Raises("AttributeError"),
        ),
        // Resource abuse.
        ("busy loop", "while True: pass", Stopped("fuel")),
        (
            "loop with output",
            "while True: print('x', end='')",
            Stopped("output"),
        ),
        (
            "sleep forever",
            "import time\ntime.sleep(10**6)",
            Stopped("timeout"),
        ),
        (
            "list growth",
            "l = []\nwhile True: l.append([0] * 10000)",
            Stopped("memory"),
        ),
        (
            "string doubling",
            "s = 'x'\nwhile True: s += s",
            Stopped("memory"),
        ),
        ("bytearray bomb", "bytearray(10**9)", Stopped("memory")),
        (
            "bytearray beyond 32 bits",
            "bytearray(10**10)",
            Raises("OverflowError"),
        ),
        (
            "deep dict nesting",
            "d = {}\nwhile True: d = {'k': d}",
            Stopped("memory"),
        ),
        (
            "recursion bomb",
            "import sys\nsys.setrecursionlimit(10**9)\ndef f(): f()\nf()",
            Stopped("memory"),
        ),
        (
            "C recursion",
            "x = []\nfor _ in range(10**5): x = [x]\nrepr(x)",
            Raises("RecursionError"),
        ),
        ("stdout flood", "print('x' * 10**7)", Stopped("output")),
        (
            "stderr flood",
            "import sys\nwhile True: sys.stderr.write('e' * 1000)",
            Stopped("output"),
        ),
        (
            "exception storm",
            "for i in range(10**5):\n    try:\n        raise ValueError(i)\n    except ValueError:\n        pass\n'survived'",
            Value(json!("survived")),
        ),
        (
            "huge traceback",
            "def f(n):\n    if n == 0:\n        raise RuntimeError('deep')\n    return f(n - 1)\nf(900)",
            Raises("RuntimeError: deep"),
        ),
        (
            "infinite generator",
            "sum(1 for _ in iter(int, 1))",
            Stopped("fuel"),
        ),
        (
            "huge integer",
            "x = 10**(10**7)\nlen(str(x))",
            Stopped("fuel"),
        ),
        ("os.abort", "import os\nos.abort()", Stopped("trap")),
        // Exits.
        ("exit 256", "import sys\nsys.exit(256)", Exit(Some(256))),
        ("exit -1", "import sys\nsys.exit(-1)", Exit(Some(-1))),
        ("exit()", "import sys\nsys.exit()", Exit(Some(0))),
        ("exit 'text'", "raise SystemExit('bye')", Exit(Some(1))),
        ("os._exit 200", "import os\nos._exit(200)", Exit(None)),
        (
            "KeyboardInterrupt",
            "raise KeyboardInterrupt",
            Raises("KeyboardInterrupt"),
        ),
        // State and the envelope.
        (
            "patch builtins",
            "import builtins\nbuiltins.print = None\nbuiltins.len = None\nbuiltins.repr = None\n'patched'",
            Value(json!("patched")),
        ),
        (
            "fill sys.modules",
            "import sys\nfor i in range(1000): sys.modules[f'm{i}'] = sys\n'filled'",
            Value(json!("filled")),
        ),
        (
            "delete __builtins__",
            "del __builtins__\n1",
            Value(json!(1)),
        ),
        (
            "imitate the envelope",
            "print('{\"result\": \"forged\", \"error\": null}')\n'real'",
            Value(json!("real")),
        ),
        ("close stdout", "import os\nos.close(1)", Exit(Some(125))),
    ]
}

/// Whether `out` is what `expect` says, or what is wrong with it.
fn check(name: &str, expect: &Expect, out: &Value) -> Result<(), String> {
    let last_error_line = out["error"]
        .as_str()
        .and_then(|e| e.trim_end().lines().last())
        .unwrap_or("");
    let ok = match expect {
        Raises(prefix) => {
            last_error_line.starts_with(prefix)
                && out["stopped"] == Value::Null
                && out["exit_code"] == 1
        }
        Stopped(kind) => out["stopped"] == *kind,
        Value(value) => &out["result"] == value && out["error"] == Value::Null,
        Exit(code) => out["stopped"] == "exit" && out["exit_code"] == json!(code),
    };
    let want = match expect {
        Raises(prefix) => format!("raises {prefix:?}"),
        Stopped(kind) => format!("stopped {kind:?}"),
        Value(value) => format!("value {value}"),
        Exit(code) => format!("exit {code:?}"),
    };
    match ok {
        true => Ok(()),
        false => Err(format!("{name}: want {want}, got {out}")),
    }
}

/// Where the scientific runtime's outcome differs from the stdlib one's, and why that is
/// still a refusal (or harmless). Everything not listed must come out the same.
fn scientific(name: &str, expect: Expect) -> Expect {
    match name {
        // The environment is the runtime's fixed one (no host variable), argv[0] as set.
        // Plus two that scikit-learn sets when the snapshot imports it (in the guest).
        "environment" => Value(json!({
            "HOME": "/tmp", "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp/.matplotlib",
            "PYTHONTZPATH": "", "TMPDIR": "/tmp",
            "KMP_DUPLICATE_LIB_OK": "True", "KMP_INIT_AT_FORK": "FALSE"
        })),
        // fd 3 is the read-only grant of the standard library's directory; reading it as a
        // file is refused by WASI as a bad descriptor rather than as a directory.
        "fd 3" => Raises("OSError: [Errno 8] Bad file descriptor"),
        // The standard library is a zip in a read-only grant: refused by permission.
        "write the stdlib" => Raises("PermissionError: [Errno 63] Operation not permitted"),
        // This build has ctypes; inside wasm it reaches only the instance's own linear
        // memory and can load no host library (`ctypes_loads_no_host_library` below).
        "ctypes" => Value(Value::Null),
        _ => expect,
    }
}

#[tokio::test]
async fn hostile_snippets_get_their_exact_outcome_and_the_server_lives_on() {
    battery("stdlib", "64").await;
}

#[tokio::test]
async fn hostile_snippets_in_the_scientific_runtime() {
    battery("scientific", "256").await;
}

async fn battery(runtime: &str, memory_mb: &str) {
    // Generous time, small fuel: CPU-bound abuse must end by fuel however loaded the
    // machine is; only the snippets meant to hit the clock get a short timeout.
    let server = Server::start_with_env(
        &[
            "--timeout-ms",
            "30000",
            "--memory-mb",
            memory_mb,
            "--max-output-bytes",
            "10000",
            // The recursion bomb reaches 64 MiB of frames after ~10.1 G units.
            "--fuel",
            "15000000000",
            "--default-runtime",
            runtime,
        ],
        &[("OMCP_RUNTIMES", runtime)],
    );
    let corpus: Vec<(&str, &str, Expect)> = corpus()
        .into_iter()
        .map(|(name, code, expect)| match runtime {
            "scientific" => (name, code, scientific(name, expect)),
            _ => (name, code, expect),
        })
        .collect();
    assert!(corpus.len() >= 40);
    let runs = corpus.iter().map(|(name, code, expect)| {
        let server = &server;
        async move {
            let mut body = json!({ "code": code });
            if matches!(expect, Stopped("timeout")) {
                body["timeout_ms"] = json!(2000);
            }
            let out = server.run_with(body).await;
            check(name, expect, &out)
        }
    });
    // As many at once as the server has slots: queueing behind 2 s runs is not the point.
    use futures::StreamExt;
    let wrong: Vec<String> = futures::stream::iter(runs)
        .buffer_unordered(4)
        .filter_map(|checked| async move { checked.err() })
        .collect()
        .await;
    assert!(wrong.is_empty(), "{runtime}:\n{}", wrong.join("\n"));
    assert!(!std::path::Path::new("/tmp/omcp-adversarial").exists());
    // And every kind of abuse left the next caller a working sandbox.
    server.assert_healthy().await;
    let out = server
        .run("import builtins, json\n[hasattr(builtins, 'leak'), json.dumps([1])]")
        .await;
    assert_eq!(out["result"], json!([false, "[1]"]));
}

#[tokio::test]
async fn invalid_utf8_output_is_replaced_not_fatal() {
    let server = Server::start();
    let out = server
        .run("import os\nos.write(1, b'ok \\xff\\xfe end')")
        .await;
    assert_eq!(out["output"], "ok \u{fffd}\u{fffd} end");
    assert_eq!(out["result"], 9);
}

#[tokio::test]
async fn ctypes_loads_no_host_library() {
    let server = Server::scientific(&[]);
    for code in [
        "import ctypes\nctypes.CDLL('libc.so.6')",
        "import ctypes, ctypes.util\nctypes.CDLL(ctypes.util.find_library('c'))",
        "import ctypes\nctypes.pythonapi.Py_GetVersion",
    ] {
        let out = server.run(code).await;
        assert!(out["error"].as_str().is_some(), "{code}: {out}");
        assert_eq!(out["stopped"], Value::Null, "{code}: {out}");
    }
}
