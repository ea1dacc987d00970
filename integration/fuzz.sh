#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the code that reads
# untrusted bytes: the targets in fuzz/fuzz_targets/. Each target runs for a
# bounded time from a temporary copy of its seed corpus (fuzz/corpus/TARGET),
# so a run never changes the committed corpus. One summary line per target;
# the exit status is non-zero when any target crashed, and the input that
# crashed it is kept under fuzz/artifacts/TARGET/ and named in the output.
#
#   integration/fuzz.sh [--build-only] [TARGET...]
#
#   TARGET        packet handshake response classifier config proxy_header
#                 (default: all of them)
#   --build-only  build the targets and stop
#   RWSPLIT_FUZZ_SECONDS    time per target in seconds (default 15)
#   RWSPLIT_FUZZ_TOOLCHAIN  nightly or stable (default: nightly when rustup
#                           has it, else stable)
#
# cargo-fuzz passes -Z flags, so on stable it runs with RUSTC_BOOTSTRAP=1.
# AddressSanitizer is used when the toolchain ships its runtime, else none.
# cargo-fuzz is installed when missing. The first build takes minutes (the
# whole lib, instrumented, in fuzz/target); later ones only what changed.
# To replay a crash, run the command
# printed with it (cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...).
set -euo pipefail
cd "$(dirname "$0")/.."
RWSPLIT_LOG_PREFIX=fuzz
# shellcheck source=integration/lib.sh
. integration/lib.sh

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(packet handshake response classifier config proxy_header)
seconds="${RWSPLIT_FUZZ_SECONDS:-15}"

# Longest input per target: room for a few packets, a long statement, the
# shipped config (8 KiB) grown, the longest PROXY header with some TLVs.
max_len() {
    case "$1" in
        packet | response | classifier) echo 4096 ;;
        handshake) echo 1024 ;;
        config) echo 16384 ;;
        proxy_header) echo 512 ;;
    esac
}

# A value from libFuzzer's final statistics (-print_final_stats=1) in log $1.
final_stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -n 1; }

build_only=0
targets=()
for arg in "$@"; do
    case "$arg" in
        --build-only) build_only=1 ;;
        -*) die "unknown option $arg (usage: integration/fuzz.sh [--build-only] [TARGET...])" ;;
        *)
            [ -n "$(max_len "$arg")" ] || die "unknown target $arg (targets: ${ALL_TARGETS[*]})"
            targets+=("$arg")
            ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    die "RWSPLIT_FUZZ_SECONDS must be a whole number of seconds, not '$seconds'"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION (a minute, once)"
    cargo install --quiet --locked "cargo-fuzz@$CARGO_FUZZ_VERSION" || die "cannot install cargo-fuzz"
fi

toolchain="${RWSPLIT_FUZZ_TOOLCHAIN:-}"
if [ -z "$toolchain" ]; then
    if rustup run nightly rustc --version >/dev/null 2>&1; then toolchain=nightly; else toolchain=stable; fi
fi
case "$toolchain" in
    nightly) with=(rustup run nightly) ;;
    stable)
        # Without rustup, the cargo on PATH.
        with=()
        if rustup run stable rustc --version >/dev/null 2>&1; then with=(rustup run stable); fi
        export RUSTC_BOOTSTRAP=1
        ;;
    *) die "RWSPLIT_FUZZ_TOOLCHAIN must be nightly or stable, not '$toolchain'" ;;
esac
sysroot=$("${with[@]}" rustc --print sysroot)
host=$("${with[@]}" rustc -vV | sed -n 's/^host: //p')
if compgen -G "$sysroot/lib/rustlib/$host/lib/librustc-*_rt.asan.a" >/dev/null; then
    sanitizer=address
else
    sanitizer=none
fi
# The same flags for build and run, so that running builds nothing.
fuzz=("${with[@]}" cargo fuzz)
fuzz_flags=(--fuzz-dir fuzz --sanitizer "$sanitizer")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "building ${targets[*]} with $toolchain, sanitizer $sanitizer"
build_start=$SECONDS
for target in "${targets[@]}"; do
    if ! "${fuzz[@]}" build "${fuzz_flags[@]}" "$target" >"$work/build.log" 2>&1; then
        tail -n 40 "$work/build.log" >&2
        die "building fuzz target $target failed"
    fi
done
log "built in $((SECONDS - build_start)) s"
[ "$build_only" -eq 0 ] || exit 0

crashed=0
for target in "${targets[@]}"; do
    corpus="$work/corpus-$target"
    mkdir "$corpus"
    cp -R "fuzz/corpus/$target/." "$corpus/"
    out="$work/$target.log"
    rc=0
    start=$SECONDS
    "${fuzz[@]}" run "${fuzz_flags[@]}" "$target" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len="$(max_len "$target")" \
        -timeout=10 -print_final_stats=1 >"$out" 2>&1 || rc=$?
    runs=$(final_stat "$out" number_of_executed_units)
    summary="${runs:-?} runs in $seconds s, $(final_stat "$out" new_units_added) new inputs,"
    summary+=" peak RSS $(final_stat "$out" peak_rss_mb) MB, $((SECONDS - start)) s wall"
    if [ "$rc" -eq 0 ]; then
        printf 'fuzz: %s: ok, %s\n' "$target" "$summary"
        continue
    fi
    crashed=$((crashed + 1))
    if grep -q '^Error: failed to build fuzz script' "$out"; then
        # The sources changed since the build step and no longer compile.
        grep -E -A 6 '^error' "$out" | head -n 30 >&2 || true
        printf 'fuzz: %s: FAILED, it no longer builds\n' "$target"
        continue
    fi
    printf 'fuzz: %s: FAILED (exit %s), %s\n' "$target" "$rc" "$summary"
    mkdir -p "fuzz/artifacts/$target"
    cp "$out" "fuzz/artifacts/$target/failed-run.log"
    grep -E -A 4 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$out" | head -n 30 >&2 || true
    log "whole output: fuzz/artifacts/$target/failed-run.log"
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -n 1)
    if [ -n "$artifact" ]; then
        log "crash input: $artifact ($(od -An -tx1 -v "$artifact" | tr -d ' \n' | head -c 512))"
        log "replay: ${fuzz[*]} run ${fuzz_flags[*]} $target $artifact"
    fi
done
echo "fuzz: ${#targets[@]} targets run, $crashed failed"
[ "$crashed" -eq 0 ]
