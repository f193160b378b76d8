#!/usr/bin/env bash
# Runs every cargo-fuzz target of this crate for a bounded time (or a fixed
# number of executions), one at a time, and prints one line per target.
#
#   fuzz/run-ci.sh                    # each target 20 s (FUZZ_SECONDS)
#   FUZZ_SECONDS=60 fuzz/run-ci.sh    # longer
#   FUZZ_RUNS=10000000 fuzz/run-ci.sh # a fixed number of executions per target
#   fuzz/run-ci.sh sse version        # only these targets
#
# Without a nightly toolchain or cargo-fuzz it prints "skipped" and exits 0.
# Exits 1 when a target crashes, hangs (-timeout=10) or exceeds 2 GiB
# (-rss_limit_mb=2048); the input is then in fuzz/artifacts/<target>/:
# minimize it (cargo +nightly fuzz tmin <target> <file>), fix the bug, and
# commit the input under fuzz/regressions/<target>/ so that cargo test
# (tests/fuzz_corpus.rs) replays it on stable.
#
# Environment: FUZZ_TARGET_DIR (build dir, default fuzz/target),
# FUZZ_CORPUS_DIR (working corpus, default fuzz/corpus; not committed),
# FUZZ_MAX_LEN (largest input libFuzzer generates; default: its own choice,
# from the seeds, up to 4096 bytes).
set -u
cd "$(dirname "$0")"

if ! rustup run nightly rustc --version >/dev/null 2>&1 || ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: skipped: no nightly/cargo-fuzz (rustup toolchain install nightly; cargo install cargo-fuzz)"
    exit 0
fi

target_dir=${FUZZ_TARGET_DIR:-$PWD/target}
corpus_dir=${FUZZ_CORPUS_DIR:-$PWD/corpus}
seconds=${FUZZ_SECONDS:-20}
runs=${FUZZ_RUNS:-}
max_len=${FUZZ_MAX_LEN:-}

# No sanitizer (the crate forbids unsafe code; coverage-guided search and
# panics are what we are after), with debug assertions (overflow checks).
if ! cargo +nightly fuzz build -s none -a --target-dir "$target_dir" >/tmp/fuzz-build.$$.log 2>&1; then
    cat /tmp/fuzz-build.$$.log
    rm -f /tmp/fuzz-build.$$.log
    echo "fuzz: FAILED: build"
    exit 1
fi
rm -f /tmp/fuzz-build.$$.log
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir=$target_dir/$host/release

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

if [ -n "$runs" ]; then
    limit=(-runs="$runs")
else
    limit=(-max_total_time="$seconds")
fi
[ -n "$max_len" ] && limit+=(-max_len="$max_len")

failed=0
for t in "${targets[@]}"; do
    mkdir -p "$corpus_dir/$t" "artifacts/$t"
    dirs=("$corpus_dir/$t" "seeds/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    log=$(mktemp)
    start=$(date +%s)
    "$bin_dir/$t" "${limit[@]}" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" "${dirs[@]}" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        echo "fuzz: $t: ok, ${execs:-?} executions in ${secs} s, peak RSS ${rss:-?} MB"
    else
        failed=1
        echo "fuzz: $t: FAILED (exit $rc) after ${execs:-?} executions in ${secs} s"
        grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -5 | sed 's/^/fuzz:   /'
    fi
    rm -f "$log"
done
exit $failed
