#!/usr/bin/env python3
"""Check the Helm chart deploy/helm/omcp-sandbox without a cluster, with real tools.

For the default values and every file in deploy/helm/examples/:
  1. `helm lint --strict` against each Kubernetes version below (Helm's own library, through
     helm-python-sdk);
  2. `helm template` (the same library) into one manifest per file;
  3. `kubernetes-validate --strict` of every rendered object against each version's schemas
     (unknown fields and wrong types fail; the Prometheus Operator's ServiceMonitor, a CRD,
     is checked for shape here instead);
  4. the promises the chart makes, read from the rendered Deployment: non-root, read-only
     root filesystem, every capability dropped, seccomp RuntimeDefault, no service-account
     token, resources set, probes on /livez and /readyz, no host path; OTEL_* variables only
     as the `otel` values set them.

Usage: check_chart.py OUT_DIR     (rendered manifests are written there)
Prints one line per check and exits 0 only if all passed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "omcp-sandbox"
EXAMPLES = ROOT / "deploy" / "helm" / "examples"
KUBE_VERSIONS = ["1.29.0", "1.33.0", "1.37.0"]

failures: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}")
    if not ok:
        failures.append(name)


def deployment_promises(tag: str, objects: list[dict], values: dict) -> None:
    kinds = {o["kind"] for o in objects}
    for kind in ("Deployment", "Service"):
        check(f"{tag}: renders a {kind}", kind in kinds, str(sorted(kinds)))
    dep = next(o for o in objects if o["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    check(f"{tag}: no service-account token", pod.get("automountServiceAccountToken") is False)
    psc = pod.get("securityContext", {})
    check(f"{tag}: pod runs as non-root", psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0)
    check(f"{tag}: seccomp RuntimeDefault", psc.get("seccompProfile", {}).get("type") == "RuntimeDefault")
    for volume in pod.get("volumes", []):
        check(f"{tag}: volume {volume['name']} is not a host path", "hostPath" not in volume)
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        check(f"{tag}: {c['name']}: read-only root filesystem", sc.get("readOnlyRootFilesystem") is True)
        check(f"{tag}: {c['name']}: no privilege escalation", sc.get("allowPrivilegeEscalation") is False)
        check(f"{tag}: {c['name']}: every capability dropped", sc.get("capabilities", {}).get("drop") == ["ALL"])
        res = c.get("resources", {})
        check(f"{tag}: {c['name']}: resources set", bool(res.get("requests")) and bool(res.get("limits", {}).get("memory")))
        check(f"{tag}: {c['name']}: liveness on /livez", c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/livez")
        check(f"{tag}: {c['name']}: readiness on /readyz", c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        check(f"{tag}: {c['name']}: drains before closing", int(env.get("OMCP_DRAIN_DELAY_MS") or 0) > 0)
        check(f"{tag}: {c['name']}: /tmp and the session dir are writable volumes",
              {"/tmp", "/var/lib/omcp-sandbox/sessions"} <= {m["mountPath"] for m in c.get("volumeMounts", [])})
    # Code mode: a tools config becomes a Secret holding mcpServers JSON, mounted read-only
    # and named by OMCP_TOOLS_CONFIG; without one there is neither.
    tools = [o for o in objects if o["kind"] == "Secret" and "tools.json" in o.get("data", {})]
    env = {e["name"]: e.get("value") for c in pod["containers"] for e in c.get("env", [])}
    if tools:
        import base64
        import json
        config = json.loads(base64.b64decode(tools[0]["data"]["tools.json"]))
        check(f"{tag}: tools.json is an mcpServers file", isinstance(config.get("mcpServers"), dict) and bool(config["mcpServers"]), str(config)[:500])
        check(f"{tag}: OMCP_TOOLS_CONFIG names the mounted file", env.get("OMCP_TOOLS_CONFIG") == "/etc/omcp-sandbox/tools/tools.json")
        mounts = {m["mountPath"]: m for c in pod["containers"] for m in c.get("volumeMounts", [])}
        check(f"{tag}: the tools Secret is mounted read-only", mounts.get("/etc/omcp-sandbox/tools", {}).get("readOnly") is True)
    else:
        check(f"{tag}: no tools config unless asked for", "OMCP_TOOLS_CONFIG" not in env)
    # Shared sessions: every replica on one ReadWriteMany claim, rolling updates allowed;
    # otherwise a ReadWriteOnce claim (if any) and a Recreate strategy.
    claims = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    if env.get("OMCP_SHARED_SESSIONS") == "true":
        check(f"{tag}: shared sessions live on a ReadWriteMany claim",
              bool(claims) and claims[0]["spec"]["accessModes"] == ["ReadWriteMany"], str(claims)[:500])
        check(f"{tag}: shared sessions allow rolling updates",
              dep["spec"].get("strategy", {}).get("type") != "Recreate")
    elif claims:
        check(f"{tag}: a one-replica session claim is ReadWriteOnce", claims[0]["spec"]["accessModes"] == ["ReadWriteOnce"])
        check(f"{tag}: a ReadWriteOnce claim recreates its pod", dep["spec"].get("strategy", {}).get("type") == "Recreate")
    # Traces: the OTLP endpoint and service name come from `otel`, and no OTEL_* variable at
    # all unless it is set (the server then exports nothing).
    otel = values.get("otel", {})
    expected = {name: value for name, value in (("OTEL_EXPORTER_OTLP_ENDPOINT", otel.get("endpoint")),
                                                ("OTEL_SERVICE_NAME", otel.get("serviceName"))) if value}
    got = {name: value for name, value in env.items() if name.startswith("OTEL_")}
    check(f"{tag}: OTEL_* variables only as `otel` sets them", got == expected, f"{got} != {expected}")
    netpol = [o for o in objects if o["kind"] == "NetworkPolicy"]
    if netpol:
        spec = netpol[0]["spec"]
        check(f"{tag}: the NetworkPolicy governs egress", "Egress" in spec.get("policyTypes", []))


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    cases = [("default", {})] + [(p.stem, yaml.safe_load(p.read_text())) for p in sorted(EXAMPLES.glob("*.yaml"))]
    for tag, values in cases:
        for kube in KUBE_VERSIONS:
            try:
                report = helm_python.lint(str(CHART), values, strict=True, kube_version=kube, namespace="sandbox")
                messages = [m for m in (report.get("messages") or []) if str(m.get("severity", "")).upper() not in ("INFO", "1")]
                check(f"{tag}: helm lint --strict (kube {kube})", not messages and not report.get("errors"), str(report)[:2000])
            except helm_python.HelmError as exc:
                check(f"{tag}: helm lint --strict (kube {kube})", False, str(exc)[:2000])
        chart = helm_python.Chart.load(str(CHART))
        try:
            rendered = chart.render(values, name="sandbox", namespace="sandbox", is_install=True)
        finally:
            chart.close()
        objects = []
        manifest = out / f"{tag}.yaml"
        documents = []
        for template, text in sorted(rendered.items()):
            if not text.strip() or template.endswith("NOTES.txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    objects.append(doc)
                    documents.append(yaml.safe_dump(doc, sort_keys=False))
        manifest.write_text("---\n".join(documents))
        check(f"{tag}: renders ({len(objects)} objects)", bool(objects))
        core = out / f"{tag}.core.yaml"
        core.write_text("---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects if o["kind"] != "ServiceMonitor"))
        for kube in KUBE_VERSIONS:
            p = subprocess.run(["kubernetes-validate", "--strict", "--quiet", "-k", kube, str(core)],
                               capture_output=True, text=True)
            check(f"{tag}: kubernetes-validate --strict (kube {kube})", p.returncode == 0, (p.stdout + p.stderr)[-2000:])
        for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
            ok = monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["spec"]["endpoints"][0]["port"] == "metrics"
            check(f"{tag}: ServiceMonitor scrapes the metrics port", ok)
        deployment_promises(tag, objects, values)
    print(f"chart: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
