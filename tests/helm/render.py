#!/usr/bin/env python3
"""Render the chart's Deployment (Helm's own library, through helm-python-sdk) for
`podman kube play` in tests/docker-smoke.sh.

Usage: render.py IMAGE_REPOSITORY IMAGE_TAG PORT > deployment.yaml
One replica of the locally built image listening on PORT (podman 4.3 publishes every
containerPort on the host), stdlib and scientific as the image bakes them, metrics on the
main port only (no second host port), everything else as the chart's defaults.
"""

import sys
from pathlib import Path

import helm_python
import yaml

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "omcp-sandbox"

repository, tag, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
values = {
    "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
    "replicaCount": 1,
    "service": {"port": port},
    "metrics": {"enabled": False},
    "drainDelayMs": 1000,
}
chart = helm_python.Chart.load(str(CHART))
try:
    rendered = chart.render(values, name="smoke", namespace="default", is_install=True)
finally:
    chart.close()
for template, text in sorted(rendered.items()):
    for doc in yaml.safe_load_all(text):
        if doc and doc.get("kind") == "Deployment":
            sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
