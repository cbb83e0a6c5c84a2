//! Notebook-grade values: numpy and pandas results as data and tables, `display()` items in
//! the order they happened (values, tables, figures, among what was printed), and the bounds
//! that keep hostile objects and floods of items from hurting the run or the server.

use serde_json::{Value, json};

use crate::helpers::Server;

/// The text printed before a display item: `output[:output_offset]`, in characters.
fn printed_before(out: &Value, item: &Value) -> String {
    let offset = item["output_offset"].as_u64().unwrap() as usize;
    out["output"]
        .as_str()
        .unwrap()
        .chars()
        .take(offset)
        .collect()
}

fn assert_clean(out: &Value) {
    assert_eq!(out["error"], Value::Null, "{out}");
    assert_eq!(out["stopped"], Value::Null, "{out}");
}

/// Run `code` in the scientific runtime and check its value: data, type, and that the text
/// contains `text`.
async fn value_of(server: &Server, code: &str) -> Value {
    let out = server.run(code).await;
    assert_clean(&out);
    out
}

#[tokio::test]
async fn display_items_come_in_order_among_the_output() {
    let server = Server::start();
    let out = server
        .run(
            "print('one')\ndisplay(1, (2, 3))\nprint('twö')\ndisplay({'k': [1.5, None]})\n\
             print('three', end='')\n'done'",
        )
        .await;
    assert_clean(&out);
    assert_eq!(out["output"], "one\ntwö\nthree");
    assert_eq!(out["result"], "done");
    let items = out["displays"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{out}");
    assert_eq!(
        items[0],
        json!({"kind": "value", "value": 1, "text": "1", "value_type": "int",
               "truncated": false, "output_offset": 4})
    );
    assert_eq!(items[1]["value"], json!({"type": "tuple", "data": [2, 3]}));
    assert_eq!(items[1]["text"], "(2, 3)");
    assert_eq!(printed_before(&out, &items[1]), "one\n");
    // Offsets count characters, not bytes: "twö\n" is 4 of them.
    assert_eq!(items[2]["output_offset"], 8);
    assert_eq!(printed_before(&out, &items[2]), "one\ntwö\n");
    assert_eq!(items[2]["value"], json!({"k": [1.5, null]}));

    // A run without display() has an empty list; display() with nothing shows nothing.
    let out = server.run("display()\nprint('x')").await;
    assert_eq!(out["displays"], json!([]));
    assert_eq!(out["output"], "x\n");
}

#[tokio::test]
async fn notebook_imports_and_a_replaced_stdout_keep_the_order() {
    let server = Server::start();
    let out = server
        .run(
            "from IPython.display import display as shown\nimport IPython\n\
             print(IPython.get_ipython(), shown is display)\n\
             import io, sys\nsys.stdout = io.TextIOWrapper(io.FileIO(1, 'w', closefd=False))\n\
             print('buffered')\nshown('after')\n",
        )
        .await;
    assert_clean(&out);
    assert_eq!(out["output"], "None True\nbuffered\n");
    let items = out["displays"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{out}");
    assert_eq!(printed_before(&out, &items[0]), "None True\nbuffered\n");
}

#[tokio::test]
async fn hostile_objects_fall_back_and_the_server_keeps_serving() {
    let server = Server::start();
    // A __repr__ that raises, one that returns 100 MB, a __len__ that raises on a list
    // subclass, and a conversion that recurses forever: each is shown as well as it can be.
    let out = server
        .run(
            "class Raises:\n    def __repr__(self): raise ValueError('no')\n\
             class Huge:\n    def __repr__(self): return 'x' * 100_000_000\n\
             class BadLen(list):\n    def __len__(self): raise RuntimeError\n\
             class NotStr:\n    def __repr__(self): return 42\n\
             display(Raises(), Huge(), BadLen([1]), NotStr(), [Raises()])\n'after'",
        )
        .await;
    assert_clean(&out);
    assert_eq!(out["result"], "after");
    let items = out["displays"].as_array().unwrap();
    assert_eq!(items.len(), 5, "{out:.2000}");
    assert_eq!(items[0]["value"], "<unrepresentable Raises: ValueError>");
    assert_eq!(items[0]["value_type"], "__main__.Raises");
    // The 100 MB text is cut (and says so) to a quarter of the output limit.
    let huge = items[1]["text"].as_str().unwrap();
    assert!(
        huge.len() < 300_000 && huge.ends_with("[... truncated]"),
        "{}",
        huge.len()
    );
    assert_eq!(items[1]["truncated"], true);
    assert_eq!(items[2]["value"], "[1]");
    assert_eq!(items[3]["value"], "<unrepresentable NotStr: TypeError>");
    assert_eq!(
        items[4]["value"],
        json!([{"type": "repr", "value_type": "__main__.Raises",
                "data": "<unrepresentable Raises: ValueError>"}])
    );

    // A __repr__ that sleeps past the run's time limit: the run stops at its limit with
    // what it printed, and the next run is served normally.
    let out = server
        .run_with(json!({
            "code": "import time\nclass Slow:\n    def __repr__(self):\n        time.sleep(30)\n\
                     print('before', flush=True)\nSlow()",
            "timeout_ms": 1000,
        }))
        .await;
    assert_eq!(out["stopped"], "timeout", "{out}");
    assert_eq!(out["output"], "before\n");
    let out = server.run("display('still here')\n1 + 1").await;
    assert_eq!(out["result"], 2);
    assert_eq!(out["displays"][0]["value"], "still here");
    server.assert_healthy().await;
}

#[tokio::test]
async fn display_items_count_against_the_output_limit() {
    let server = Server::start();
    // Each item is charged to the output budget; past it, an item is left out (and says
    // so), the run goes on and its value still comes back.
    let out = server
        .run_with(json!({
            "code": "print('printed')\nfor i in range(50):\n    display('x' * 100)\n'value'",
            "max_output_bytes": 2000,
        }))
        .await;
    assert_clean(&out);
    assert_eq!(out["result"], "value");
    assert_eq!(out["output"], "printed\n");
    assert_eq!(out["truncated"], true);
    let items = out["displays"].as_array().unwrap();
    assert_eq!(items.len(), 50);
    let kept = items.iter().filter(|i| i["kind"] == "value").count();
    assert!((3..50).contains(&kept), "{kept} kept");
    assert!(items[..kept].iter().all(|i| i["kind"] == "value"));
    let left_out = &items[kept];
    assert_eq!(left_out["kind"], "omitted");
    assert!(
        left_out["reason"]
            .as_str()
            .unwrap()
            .contains("past the run's output limit"),
        "{left_out}"
    );

    // Printing after the items is printing past the same budget: the run stops there.
    let out = server
        .run_with(json!({
            "code": "for i in range(50):\n    display('x' * 100)\nprint('y' * 1000)",
            "max_output_bytes": 2000,
        }))
        .await;
    assert_eq!(out["stopped"], "output", "{out}");

    // More than 1000 items: the rest are counted in one note.
    let out = server.run("for i in range(1200):\n    display(i)").await;
    assert_clean(&out);
    let items = out["displays"].as_array().unwrap();
    assert_eq!(items.len(), 1001);
    assert_eq!(items[999]["value"], 999);
    assert!(
        items[1000]["reason"]
            .as_str()
            .unwrap()
            .contains("200 more item(s) left out"),
        "{}",
        items[1000]
    );

    // Text imitating a display frame is only text.
    let out = server
        .run("import os\nos.write(1, b'D0000000002{}')\nprint('x' * 3)")
        .await;
    assert_eq!(out["displays"], json!([]));
    assert_eq!(out["output"], "D0000000002{}xxx\n");
}

#[tokio::test]
async fn numpy_values_are_numbers_and_arrays() {
    let server = Server::scientific(&[]);
    let cases: &[(&str, Value, &str)] = &[
        (
            "import numpy as np\nnp.arange(10).sum()",
            json!(45),
            "numpy.int32",
        ),
        (
            "import numpy as np\nnp.int64(2**62)",
            json!(4611686018427387904i64),
            "numpy.int64",
        ),
        (
            "import numpy as np\nnp.uint64(2**64 - 1)",
            json!(u64::MAX),
            "numpy.uint64",
        ),
        (
            "import numpy as np\nnp.float32(1.5)",
            json!(1.5),
            "numpy.float32",
        ),
        (
            "import numpy as np\nnp.float64('nan')",
            json!("nan"),
            "numpy.float64",
        ),
        (
            "import numpy as np\n-np.float64('inf')",
            json!("-inf"),
            "numpy.float64",
        ),
        (
            "import numpy as np\nnp.bool_(True)",
            json!(true),
            "numpy.bool",
        ),
        (
            "import numpy as np\nnp.complex128(1 + 2j)",
            json!({"type": "complex", "real": 1.0, "imag": 2.0}),
            "numpy.complex128",
        ),
        (
            "import numpy as np\nnp.array(2.5)",
            json!(2.5),
            "numpy.ndarray",
        ),
        (
            "import numpy as np\nnp.datetime64('2024-03-01T12:00')",
            json!({"type": "datetime", "data": "2024-03-01T12:00"}),
            "numpy.datetime64",
        ),
        (
            "import numpy as np\nnp.timedelta64(90, 'm')",
            json!({"type": "timedelta", "seconds": 5400.0}),
            "numpy.timedelta64",
        ),
        (
            "import numpy as np\nnp.str_('hi')",
            json!("hi"),
            "numpy.str_",
        ),
        (
            "import numpy as np\nnp.array([[1, 2], [3, 4]], dtype=np.int64)",
            json!({"type": "ndarray", "dtype": "int64", "shape": [2, 2],
                   "data": [[1, 2], [3, 4]], "truncated": false}),
            "numpy.ndarray",
        ),
        (
            "import numpy as np\nnp.array([1.0, np.nan, np.inf])",
            json!({"type": "ndarray", "dtype": "float64", "shape": [3],
                   "data": [1.0, "nan", "inf"], "truncated": false}),
            "numpy.ndarray",
        ),
        (
            "import numpy as np\nnp.array(['2024-01-01', 'NaT'], dtype='datetime64[D]')",
            json!({"type": "ndarray", "dtype": "datetime64[D]", "shape": [2],
                   "data": ["2024-01-01", null], "truncated": false}),
            "numpy.ndarray",
        ),
        (
            "import numpy as np\nnp.array([(1, 'a')], dtype=[('n', 'i4'), ('s', 'U1')])",
            json!({"type": "ndarray", "dtype": "[('n', '<i4'), ('s', '<U1')]", "shape": [1],
                   "data": [{"type": "tuple", "data": [1, "a"]}], "truncated": false}),
            "numpy.ndarray",
        ),
        (
            "import numpy as np\nnp.zeros((0, 3))",
            json!({"type": "ndarray", "dtype": "float64", "shape": [0, 3], "data": [],
                   "truncated": false}),
            "numpy.ndarray",
        ),
        (
            "import numpy as np\n{'mean': np.float64(2.5), 'n': np.int64(3)}",
            json!({"mean": 2.5, "n": 3}),
            "dict",
        ),
    ];
    for (code, expected, python_type) in cases {
        let out = value_of(&server, code).await;
        assert_eq!(&out["result"], expected, "{code:?}: {out}");
        assert_eq!(out["result_type"], json!(python_type), "{code:?}");
    }

    // A huge array: a flagged preview of the first elements, with the whole shape, and
    // numpy's own summary as its text.
    let out = value_of(
        &server,
        "import numpy as np\nnp.arange(10_000_000, dtype=np.int64)",
    )
    .await;
    let result = &out["result"];
    assert_eq!(result["shape"], json!([10_000_000]));
    assert_eq!(result["truncated"], true);
    assert_eq!(result["preview_shape"], json!([1000]));
    let data = result["data"].as_array().unwrap();
    assert_eq!(data.len(), 1000);
    assert_eq!(data[999], 999);
    assert!(
        out["result_text"].as_str().unwrap().contains("..."),
        "{}",
        out["result_text"]
    );

    // Two dimensions: the preview keeps at most 1000 elements, the longest axis cut first.
    let out = value_of(&server, "import numpy as np\nnp.ones((2000, 3))").await;
    assert_eq!(out["result"]["preview_shape"], json!([250, 3]));

    // A small output limit: the preview shrinks to fit rather than becoming a string.
    let out = server
        .run_with(
            json!({"code": "import numpy as np\nnp.arange(100000)", "max_output_bytes": 2000}),
        )
        .await;
    assert_clean(&out);
    assert_eq!(out["result"]["type"], "ndarray", "{out}");
    assert!(out["result"]["data"].as_array().unwrap().len() <= 100);
}

#[tokio::test]
async fn dataframes_are_tables_with_their_text() {
    let server = Server::scientific(&[]);
    // Mixed dtypes, missing values, timezone-aware timestamps, a split orientation table.
    let out = value_of(
        &server,
        "import pandas as pd, numpy as np\n\
         pd.DataFrame({'n': [1, 2, 3], 's': ['a', None, 'c'], 'f': [0.5, np.nan, np.inf],\n\
                       'b': [True, False, True],\n\
                       't': pd.date_range('2024-01-01 09:00', periods=3, freq='h', tz='Europe/Paris'),\n\
                       'd': pd.to_timedelta([1, 2, None], unit='s')})",
    )
    .await;
    let table = &out["result"];
    assert_eq!(out["result_type"], "pandas.DataFrame");
    assert_eq!(table["type"], "dataframe");
    assert_eq!(table["columns"], json!(["n", "s", "f", "b", "t", "d"]));
    assert_eq!(table["index"], json!([0, 1, 2]));
    assert_eq!(table["shape"], json!([3, 6]));
    assert_eq!(table["truncated"], false);
    assert_eq!(
        table["dtypes"],
        json!([
            "int64",
            "str",
            "float64",
            "bool",
            "datetime64[us, Europe/Paris]",
            "timedelta64[s]"
        ])
    );
    assert_eq!(
        table["data"],
        json!([
            [1, "a", 0.5, true, "2024-01-01T09:00:00+01:00", "P0DT0H0M1S"],
            [
                2,
                null,
                null,
                false,
                "2024-01-01T10:00:00+01:00",
                "P0DT0H0M2S"
            ],
            [3, "c", "inf", true, "2024-01-01T11:00:00+01:00", null]
        ])
    );
    // The text is pandas' own aligned table, as a notebook prints it.
    let text = out["result_text"].as_str().unwrap();
    assert!(text.starts_with("   n    s    f      b"), "{text}");
    assert!(text.contains("2024-01-01 09:00:00+01:00"), "{text}");

    // A MultiIndex on both axes: labels as lists, level names kept.
    let out = value_of(
        &server,
        "import pandas as pd\n\
         df = pd.DataFrame({'k': ['a', 'a', 'b'], 'y': [2023, 2024, 2024], 'v': [1, 2, 3], 'w': [4, 5, 6]})\n\
         df.set_index(['k', 'y']).unstack('y')",
    )
    .await;
    let table = &out["result"];
    assert_eq!(table["index_names"], json!(["k"]));
    assert_eq!(
        table["columns"],
        json!([["v", 2023], ["v", 2024], ["w", 2023], ["w", 2024]])
    );
    assert_eq!(
        table["data"],
        json!([[1.0, 2.0, 4.0, 5.0], [null, 3.0, null, 6.0]])
    );
    let out = value_of(
        &server,
        "import pandas as pd\ns = pd.Series([1, 2], index=pd.MultiIndex.from_tuples([('x', 1), ('y', 2)], names=['a', 'b']), name='v')\ns",
    )
    .await;
    assert_eq!(out["result_type"], "pandas.Series");
    assert_eq!(
        out["result"],
        json!({"type": "dataframe", "columns": ["v"], "index": [["x", 1], ["y", 2]],
               "data": [[1], [2]], "dtypes": ["int64"], "index_names": ["a", "b"],
               "shape": [2, 1], "truncated": false, "series": true})
    );

    // A million rows, and sixty columns: the first 100 rows and 50 columns, with the totals
    // kept, and pandas' summarised text.
    let out = value_of(
        &server,
        "import pandas as pd, numpy as np\n\
         pd.DataFrame({'i': np.arange(1_000_000), 'x': np.arange(1_000_000) * 0.5, 's': 'k'})",
    )
    .await;
    let table = &out["result"];
    assert_eq!(table["shape"], json!([1_000_000, 3]));
    assert_eq!(table["truncated"], true);
    assert_eq!(table["index"].as_array().unwrap().len(), 100);
    assert_eq!(table["data"][99], json!([99, 49.5, "k"]));
    let text = out["result_text"].as_str().unwrap();
    assert!(text.contains("[1000000 rows x 3 columns]"), "{text}");
    let out = value_of(
        &server,
        "import pandas as pd\npd.DataFrame([[c * r for c in range(60)] for r in range(3)])",
    )
    .await;
    let table = &out["result"];
    assert_eq!(table["shape"], json!([3, 60]));
    assert_eq!(table["truncated"], true);
    assert_eq!(table["columns"].as_array().unwrap().len(), 50);
    assert_eq!(table["data"][2][49], 98);

    // An index is its labels.
    let out = value_of(&server, "import pandas as pd\npd.Index([3, 1], name='n')").await;
    assert_eq!(
        out["result"],
        json!({"type": "index", "dtype": "int64", "names": ["n"], "length": 2, "data": [3, 1],
               "truncated": false})
    );
    // Scalars of pandas: a Timestamp keeps its nanoseconds, NaT is null.
    let out = value_of(
        &server,
        "import pandas as pd\npd.Timestamp('2024-05-06T07:08:09.123456789Z')",
    )
    .await;
    assert_eq!(
        out["result"],
        json!({"type": "datetime", "data": "2024-05-06T07:08:09.123456789+00:00"})
    );
    let out = value_of(&server, "import pandas as pd\n[pd.NaT, pd.NA]").await;
    assert_eq!(out["result"], json!([null, null]));
}

#[tokio::test]
async fn hostile_arrays_and_frames_fall_back_to_repr() {
    let server = Server::scientific(&[]);
    // An __array__ that raises inside a container, an ndarray subclass whose tolist
    // raises, a DataFrame subclass whose iloc loops forever... each falls back, or stops the
    // run at its own limit.
    let out = value_of(
        &server,
        "import numpy as np\n\
         class A:\n    def __array__(self, *a, **k): raise RuntimeError('no')\n    def __repr__(self): return 'A()'\n\
         class Sub(np.ndarray):\n    def tolist(self): raise RuntimeError('no')\n\
         display(A(), np.arange(3).view(Sub))\n[A()]",
    )
    .await;
    assert_eq!(out["displays"][0]["value"], "A()");
    assert_eq!(out["displays"][1]["value"]["data"], json!([0, 1, 2]));
    assert_eq!(
        out["result"],
        json!([{"type": "repr", "value_type": "__main__.A", "data": "A()"}])
    );
    let out = server
        .run_with(json!({
            "code": "import pandas as pd\nclass Loop(pd.DataFrame):\n    @property\n    def iloc(self):\n        while True: pass\n\
                     print('before')\nLoop({'a': [1]})",
            "timeout_ms": 3000,
        }))
        .await;
    assert_eq!(out["stopped"], "timeout", "{out}");
    assert_eq!(out["output"], "before\n");
    let out = value_of(&server, "import numpy as np\nnp.int8(3)").await;
    assert_eq!(out["result"], 3);
}

#[tokio::test]
async fn display_interleaves_text_tables_and_figures() {
    let server = Server::scientific(&[]);
    let out = server
        .run(
            "import matplotlib.pyplot as plt, pandas as pd\n\
             print('first')\n\
             display(pd.DataFrame({'a': [1, 2]}))\n\
             plt.plot([1, 2, 3])\nplt.show()\n\
             print('second')\n\
             fig = plt.figure(figsize=(3, 2))\nfig.add_subplot().bar([1, 2], [3, 4])\n\
             display(fig)\n\
             print('third')\n\
             later = plt.figure(figsize=(2, 2))\nlater.add_subplot().plot([0, 1])\n\
             'value'",
        )
        .await;
    assert_clean(&out);
    assert_eq!(out["output"], "first\nsecond\nthird\n");
    let items = out["displays"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    // The table, the shown plot, the displayed figure (not again at the end: unchanged
    // since), and the figure left open at the end.
    assert_eq!(kinds, ["value", "image", "image", "image"], "{out:.3000}");
    assert_eq!(printed_before(&out, &items[0]), "first\n");
    assert_eq!(items[0]["value"]["type"], "dataframe");
    assert_eq!(items[0]["value"]["data"], json!([[1], [2]]));
    assert!(
        items[0]["text"]
            .as_str()
            .unwrap()
            .contains("   a\n0  1\n1  2")
    );
    assert_eq!(printed_before(&out, &items[1]), "first\n");
    assert_eq!(
        (items[1]["width"].as_u64(), items[1]["height"].as_u64()),
        (Some(640), Some(480))
    );
    assert_eq!(items[1]["at_end"], false);
    assert_eq!(printed_before(&out, &items[2]), "first\nsecond\n");
    assert_eq!(
        (items[2]["width"].as_u64(), items[2]["height"].as_u64()),
        (Some(300), Some(200))
    );
    assert_eq!(printed_before(&out, &items[3]), "first\nsecond\nthird\n");
    assert_eq!(items[3]["at_end"], true);
    // The same PNGs as `images`, in order.
    let images = out["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    for (image, item) in images.iter().zip(&items[1..]) {
        assert_eq!(image["data"], item["data"]);
    }

    // A figure displayed, then drawn on, is shown again at the end as it is then.
    let out = server
        .run(
            "import matplotlib.pyplot as plt\nfig = plt.figure()\nax = fig.add_subplot()\n\
             display(fig)\nax.plot([3, 1])",
        )
        .await;
    assert_clean(&out);
    assert_eq!(out["displays"].as_array().unwrap().len(), 2, "{out:.2000}");
    assert_ne!(out["displays"][0]["data"], out["displays"][1]["data"]);
}

#[tokio::test]
async fn sessions_show_displays_and_keep_display_working() {
    let server = Server::scientific(&[]);
    let (status, created) = server.post("/sessions", json!({})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["session_id"].as_str().unwrap();
    let turn = |code: &'static str| {
        let server = &server;
        let path = format!("/sessions/{id}/run");
        async move {
            let (status, out) = server.post(&path, json!({"code": code})).await;
            assert_eq!(status, 200, "{out}");
            out
        }
    };
    let out = turn("import numpy as np\nx = np.arange(4)\ndisplay(x)\nx.sum()").await;
    assert_eq!(out["result"], 6, "{out}");
    assert_eq!(out["displays"][0]["value"]["data"], json!([0, 1, 2, 3]));
    let out = turn("print('n')\ndisplay(x * 2)\n").await;
    assert_eq!(
        out["displays"][0]["value"]["data"],
        json!([0, 2, 4, 6]),
        "{out}"
    );
    assert_eq!(out["displays"][0]["output_offset"], 2);
}
