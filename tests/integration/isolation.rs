//! The guest sees no host files, no environment, no network, no processes, and nothing
//! from an earlier run.

use serde_json::json;

use crate::helpers::Server;

#[tokio::test]
async fn no_host_files() {
    let server = Server::start();
    for code in [
        "open('/etc/passwd').read()",
        "open('/etc/hostname').read()",
        "import os\nos.listdir('/')",
        "import os\nos.stat('/etc')",
        "open('/workspace/../../tmp/omcp-escape', 'w').write('x')",
        "open('../../etc/passwd').read()",
        "open('/proc/self/environ').read()",
    ] {
        let out = server.run(code).await;
        let error = out["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{code:?} succeeded: {out}"));
        assert!(
            [
                "FileNotFoundError",
                "PermissionError",
                "OSError",
                "NotCapable"
            ]
            .iter()
            .any(|e| error.contains(e)),
            "{code:?}: {error}"
        );
    }
    // The guest's /tmp is its own, not the host's.
    let out = server.run("open('/tmp/omcp-escape', 'w').write('x')").await;
    assert_eq!(out["result"], json!(1), "{out}");
    assert!(!std::path::Path::new("/tmp/omcp-escape").exists());
}

#[tokio::test]
async fn empty_environment_and_fixed_argv() {
    let server = Server::start();
    let out = server
        .run("import os, sys\n[dict(os.environ), sys.argv]")
        .await;
    assert_eq!(out["result"], json!([{}, [""]]));
}

#[tokio::test]
async fn no_network() {
    let server = Server::start();
    for code in [
        "import socket\nsocket.getaddrinfo('localhost', 80)",
        "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 80))",
        "import urllib.request\nurllib.request.urlopen('http://127.0.0.1/')",
    ] {
        let out = server.run(code).await;
        assert!(out["error"].is_string(), "{code:?} succeeded: {out}");
    }
}

#[tokio::test]
async fn no_processes_or_threads() {
    let server = Server::start();
    for code in [
        "import subprocess\nsubprocess.run(['ls'])",
        "import os\nos.system('ls')",
        "import os\nos.fork()",
        "import threading\nt = threading.Thread(target=print)\nt.start()",
    ] {
        let out = server.run(code).await;
        assert!(out["error"].is_string(), "{code:?} succeeded: {out}");
    }
}

#[tokio::test]
async fn nothing_survives_between_runs() {
    let server = Server::start();
    let out = server
        .run("import sys, builtins, random\nsecret = 'left behind'\nbuiltins.leak = 1\nsys.modules['planted'] = sys\nrandom.random()")
        .await;
    let first_random = out["result"].clone();
    let out = server
        .run("import sys, builtins, random\n['secret' in globals(), hasattr(builtins, 'leak'), 'planted' in sys.modules, random.random()]")
        .await;
    let values = out["result"].as_array().unwrap();
    assert_eq!(&values[..3], &[json!(false), json!(false), json!(false)]);
    assert_ne!(values[3], first_random, "random state repeated across runs");
}
