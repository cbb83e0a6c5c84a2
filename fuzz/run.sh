#!/usr/bin/env bash
# fuzz/run.sh [SECONDS] - build the fuzz targets and run each for SECONDS (default 30),
# starting from the committed seeds in fuzz/seeds/<target>/.
#
# What is fuzzed: the code that parses bytes a caller or a hostile guest controls, i.e.
# request decoding + limit resolution (decode_request) and the guest's stdout/stderr
# splitting, envelope decoding and answer encoding (guest_output). These live in the
# crate's wire layer, built without the `runtime` feature, so the instrumented build does
# not compile wasmtime.
#
# Needs no nightly toolchain: cargo-fuzz passes -Z flags (sanitizer, coverage) that stable
# rustc accepts under RUSTC_BOOTSTRAP=1. cargo-fuzz itself is installed into .cache/tools.
# New inputs found go to .cache/fuzz/corpus/<target> (not the repo); a crash writes its
# input to fuzz/artifacts/<target>/ and makes this script fail, printing how to replay it.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH="${1:-30}"
CARGO_FUZZ_VERSION=0.13.2
TOOLS="$PWD/.cache/tools"
if ! "$TOOLS/bin/cargo-fuzz" --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$TOOLS" --quiet
fi
export RUSTC_BOOTSTRAP=1

for target in decode_request guest_output; do
    corpus=".cache/fuzz/corpus/$target"
    log=".cache/fuzz/$target.log"
    mkdir -p "$corpus"
    echo "== fuzz $target for ${SECONDS_EACH} s (seeds: fuzz/seeds/$target, log: $log)"
    # -seed fixes libFuzzer's own randomness; a time-bounded run still varies with speed.
    if ! "$TOOLS/bin/cargo-fuzz" run "$target" "$corpus" "fuzz/seeds/$target" -- \
        -max_total_time="$SECONDS_EACH" -seed=1 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz target $target FAILED; replay a crash with:" >&2
        echo "  RUSTC_BOOTSTRAP=1 $TOOLS/bin/cargo-fuzz run $target fuzz/artifacts/$target/<file>" >&2
        exit 1
    fi
    grep -E '^(Done [0-9]+ runs|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$log" \
        | sed 's/^/   /'
done
echo "== fuzz: all targets ran clean"
