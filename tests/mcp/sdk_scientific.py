#!/usr/bin/env python3
"""The scientific runtime over MCP, with the official Python SDK (mcp 2.3.x).

Usage:
    sdk_scientific.py stdio -- CMD [ARGS...]     spawn the server, speak MCP over its stdio
    sdk_scientific.py http URL                   streamable HTTP at URL

Checks that the tool tells the model which runtimes and packages it has, that a plot comes
back as an `image` content block (a real PNG, never base64 inside text), that a DataFrame
comes back as data and as pandas' text table, that printed text, displayed tables and
figures come as text and image blocks in the order they happened, that `runtime` and
`seed` work, and that an unknown runtime is a JSON-RPC -32602 error listing the valid names.
Prints {"passed": [...], "failed": [{"name", "detail"}]} and exits 0 only if all passed.
"""

from __future__ import annotations

import base64
import struct
import sys
from typing import Any

from mcp import ClientSession, MCPError
from sdk_harness import CheckFailed, blocks, expect, run_named, serve_checks

TOOL = "run_python"
INVALID_PARAMS = -32602


async def run_checks(s: ClientSession) -> dict[str, Any]:
    await s.initialize()

    async def description() -> None:
        tools = (await s.list_tools()).tools
        tool = next(t for t in tools if t.name == TOOL)
        text = tool.description or ""
        for needle in ("scientific", "numpy 2.5.2", "pandas 3.0.6", "matplotlib 3.11.2", "stdlib", "images"):
            expect(needle in text, f"the description does not mention {needle!r}: {text[:400]}")
        props = tool.input_schema.get("properties", {})
        expect("runtime" in props and "seed" in props, f"input schema: {props}")

    async def plot_as_image() -> None:
        code = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title('squares')\n'plotted'"
        result = await s.call_tool(TOOL, {"code": code})
        expect(not result.is_error, f"isError: {result}")
        images = blocks(result, "image")
        expect(len(images) == 1, f"want one image block, got {result.content}")
        image = images[0]
        expect(image.mime_type == "image/png", image.mime_type)
        png = base64.b64decode(image.data)
        expect(png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", "not a PNG")
        width, height = struct.unpack(">II", png[16:24])
        expect((width, height) == (640, 480), f"size {width}x{height}")
        texts = [b.text for b in blocks(result, "text")]
        expect(texts and texts[0].startswith("Result: 'plotted'"), f"text block first: {texts}")
        expect(all(image.data not in t for t in texts), "base64 inside text")

    async def numpy_value() -> None:
        result = await s.call_tool(TOOL, {"code": "import numpy as np\nint(np.arange(10).sum())"})
        expect(not result.is_error and result.structured_content["result"] == 45, f"{result}")
        expect(result.structured_content["runtime"] == "scientific", f"{result.structured_content}")

    async def stdlib_runtime() -> None:
        result = await s.call_tool(TOOL, {"code": "import sys\nlist(sys.version_info[:2])", "runtime": "stdlib"})
        expect(result.structured_content["result"] == [3, 12], f"{result.structured_content}")

    async def values_as_data() -> None:
        code = "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})"
        result = await s.call_tool(TOOL, {"code": code})
        expect(not result.is_error, f"isError: {result}")
        table = result.structured_content["result"]
        expect(table["type"] == "dataframe" and table["data"] == [[1, "x"], [2, "y"]], f"{table}")
        expect(result.structured_content["result_type"] == "pandas.DataFrame", f"{result.structured_content}")
        # The model reads pandas' aligned table, not JSON.
        text = blocks(result, "text")[0].text
        expect(text == "Result:\n   a  b\n0  1  x\n1  2  y", f"{text!r}")

    async def displays_in_order() -> None:
        code = (
            "import matplotlib.pyplot as plt, pandas as pd\n"
            "print('first')\n"
            "display(pd.DataFrame({'a': [1, 2]}))\n"
            "plt.plot([1, 2]); plt.show()\n"
            "print('second')\n"
            "fig = plt.figure(figsize=(3, 2)); fig.add_subplot().plot([2, 1])\n"
            "display(fig)\n"
            "print('third')\n"
            "'value'"
        )
        result = await s.call_tool(TOOL, {"code": code})
        expect(not result.is_error, f"isError: {result}")
        kinds = [b.type for b in result.content]
        expect(kinds == ["text", "text", "image", "text", "image", "text"], f"{kinds}")
        c = result.content
        expect(c[0].text == "first\n", repr(c[0].text))
        expect(c[1].text == "   a\n0  1\n1  2", repr(c[1].text))
        expect(c[3].text == "second\n", repr(c[3].text))
        expect(c[5].text.startswith("third\nResult: 'value'"), repr(c[5].text))
        sizes = [struct.unpack(">II", base64.b64decode(b.data)[16:24]) for b in (c[2], c[4])]
        expect(sizes == [(640, 480), (300, 200)], f"{sizes}")
        # The structured copy has the items in order, without repeating the base64.
        items = result.structured_content["displays"]
        expect([i["kind"] for i in items] == ["value", "image", "image"], f"{items}")
        expect(all(i.get("data", "") == "" for i in items if i["kind"] == "image"), "base64 repeated")
        expect(items[0]["value"]["data"] == [[1], [2]], f"{items[0]}")

    async def seeded() -> None:
        code = "import numpy as np, random\n[float(np.random.default_rng().random()), random.random()]"
        first = await s.call_tool(TOOL, {"code": code, "seed": 11})
        second = await s.call_tool(TOOL, {"code": code, "seed": 11})
        other = await s.call_tool(TOOL, {"code": code, "seed": 12})
        a, b, c = (r.structured_content["result"] for r in (first, second, other))
        expect(a == b and a != c, f"{a} {b} {c}")

    async def unknown_runtime() -> None:
        try:
            await s.call_tool(TOOL, {"code": "1", "runtime": "jython"})
        except MCPError as exc:
            expect(exc.code == INVALID_PARAMS, f"code {exc.code}")
            message = exc.message
            expect("jython" in message and "scientific" in message and "stdlib" in message, message)
            return
        raise CheckFailed("an unknown runtime was accepted")

    return await run_named([
        ("description", description),
        ("plot_as_image", plot_as_image),
        ("numpy_value", numpy_value),
        ("stdlib_runtime", stdlib_runtime),
        ("values_as_data", values_as_data),
        ("displays_in_order", displays_in_order),
        ("seeded", seeded),
        ("unknown_runtime", unknown_runtime),
    ])


if __name__ == "__main__":
    sys.exit(serve_checks(sys.argv[1:], __doc__, run_checks))
