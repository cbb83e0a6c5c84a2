//! The Helm chart (deploy/helm/omcp-sandbox), checked without a cluster by real tools:
//! Helm's own library lints it strictly and renders it for the default values and each
//! example values file, and every rendered object validates strictly against three
//! Kubernetes versions' schemas; the security promises are read from the rendered
//! Deployment (see tests/helm/check_chart.py).

use std::process::Command;

use crate::helpers::repo;

#[test]
fn the_chart_lints_renders_and_validates() {
    let venv = repo().join(".cache/clients/k8s/bin");
    let python = venv.join("python");
    assert!(
        python.is_file(),
        "{python:?} missing: run tests/prepare.sh (installs helm-python-sdk and kubernetes-validate)"
    );
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("helm");
    let path = format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new(&python)
        .arg(repo().join("tests/helm/check_chart.py"))
        .arg(&out)
        .env("PATH", path)
        .output()
        .expect("failed to run tests/helm/check_chart.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let passed = stdout.lines().filter(|l| l.starts_with("PASS")).count();
    assert!(
        output.status.success() && passed > 50,
        "chart checks failed ({passed} passed):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
