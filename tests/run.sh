#!/usr/bin/env bash
# tests/run.sh - install what is missing, build, run every test.
#
#   unit         cmocka tests of every module (tests/unit)
#   integration  real daemons on loopback (tests/integration)
#   natlab       real NATs in network namespaces with coturn (root only;
#                reported as skipped otherwise, never as passed)
#   sanitizers   the unit and integration tests again on an ASan+UBSan build
#   fuzz         each libFuzzer target (frame, HELLO, STUN, ICE descriptions,
#                control requests) for FUZZ_SECONDS, briefly (when clang is here)
#
# Exits non-zero if anything failed; the last line reads "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. deploy/deps.sh
canopy_deps || exit 1

BUILD=${BUILD:-$ROOT/build}
ASAN_BUILD=${ASAN_BUILD:-$ROOT/build-asan}
FUZZ_BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-20} # per target
passed=0; failed=0; skipped=0; failures=()

result() { # result NAME RC (77: the test could not run here)
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "PASS $1"
  elif [ "$2" -eq 77 ]; then skipped=$((skipped + 1)); echo "SKIP $1"
  else failed=$((failed + 1)); failures+=("$1"); echo "FAIL $1"; fi
}

build() { # build DIR [cmake args] [-- make targets]
  local dir=$1; shift
  local args=() targets=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
  [ $# -gt 0 ] && { shift; targets=("$@"); }
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${args[@]}" >"$dir.cmake.log" 2>&1 &&
    make -C "$dir" -j"$(nproc)" "${targets[@]}" >"$dir.make.log" 2>&1
}

unit_tests() { # unit_tests DIR LABEL
  local dir=$1 label=$2 t
  for t in $(cd "$dir" && ctest -N | sed -n 's/^ *Test *#[0-9]*: //p'); do
    (cd "$dir" && timeout 300 ctest -R "^$t\$" --output-on-failure >"$dir/$t.log" 2>&1)
    local rc=$?
    [ $rc -eq 0 ] || cat "$dir/$t.log"
    result "$label/$t" $rc
  done
}

integration_tests() { # integration_tests BINDIR LABEL
  local t
  for t in tests/integration/*.sh; do
    [ "$(basename "$t")" = lib.sh ] && continue
    echo "--- $2/$(basename "$t" .sh)"
    CANOPY_BIN=$1 timeout 300 bash "$t"
    result "$2/$(basename "$t" .sh)" $?
  done
}

echo "=== build"
mkdir -p "$BUILD"
if ! build "$BUILD"; then
  tail -n 40 "$BUILD.make.log" "$BUILD.cmake.log"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "=== format"
if command -v clang-format >/dev/null && git rev-parse --git-dir >/dev/null 2>&1; then
  # .clang-format is the layout STYLE.md asks for; new code keeps to it.
  git ls-files '*.c' '*.h' | xargs clang-format --dry-run -Werror >"$BUILD/format.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || head -n 20 "$BUILD/format.log"
  result format $rc
else
  echo "SKIP format: needs clang-format and a git checkout"
fi

echo "=== unit"
unit_tests "$BUILD" unit
echo "=== integration"
integration_tests "$BUILD" integration

echo "=== natlab"
for t in tests/natlab/*.sh; do
  [ "$(basename "$t")" = lib.sh ] && continue
  echo "--- natlab/$(basename "$t" .sh)"
  CANOPY_BIN=$BUILD timeout 900 bash "$t"
  rc=$?
  if [ $rc -eq 77 ]; then
    skipped=$((skipped + 1)); echo "SKIP natlab/$(basename "$t" .sh)"
  else
    result "natlab/$(basename "$t" .sh)" $rc
  fi
done

echo "=== sanitizers (ASan + UBSan)"
mkdir -p "$ASAN_BUILD"
if build "$ASAN_BUILD" -DCANOPY_SANITIZE=ON; then
  # glib keeps process-lifetime caches that LeakSanitizer would report from
  # the daemons; the unit tests run with leak detection on.
  ASAN_OPTIONS=abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    unit_tests "$ASAN_BUILD" asan-unit
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    integration_tests "$ASAN_BUILD" asan-integration
else
  tail -n 40 "$ASAN_BUILD.make.log"
  result asan-build 1
fi

echo "=== fuzz"
FUZZ_TARGETS="fuzz_frame fuzz_hello fuzz_session fuzz_stun fuzz_ice fuzz_control"
if command -v clang >/dev/null; then
  mkdir -p "$FUZZ_BUILD"
  # shellcheck disable=SC2086
  if build "$FUZZ_BUILD" -DCMAKE_C_COMPILER=clang -DCANOPY_FUZZ=ON -- $FUZZ_TARGETS; then
    for t in $FUZZ_TARGETS; do
      # New inputs go to the build's corpus; the committed seeds (valid
      # messages, tests/fuzz/corpus/TARGET) are read too.
      mkdir -p "$FUZZ_BUILD/corpus/$t"
      seeds=()
      [ -d "tests/fuzz/corpus/$t" ] && seeds=("tests/fuzz/corpus/$t")
      # libFuzzer's own exit code for a finding is 77, which result() reads
      # as "skipped": any finding is a failure here. Crash inputs go to the
      # build.
      timeout $((FUZZ_SECONDS + 120)) "$FUZZ_BUILD/tests/$t" -max_total_time="$FUZZ_SECONDS" \
        -print_final_stats=1 -error_exitcode=1 -artifact_prefix="$FUZZ_BUILD/$t-" \
        "$FUZZ_BUILD/corpus/$t" ${seeds[@]+"${seeds[@]}"} >"$FUZZ_BUILD/$t.log" 2>&1
      rc=$?
      [ $rc -eq 77 ] && rc=1
      grep -E "stat::number_of_executed_units|ERROR" "$FUZZ_BUILD/$t.log" || true
      [ $rc -eq 0 ] || tail -n 40 "$FUZZ_BUILD/$t.log"
      result "fuzz/$t" $rc
    done
  else
    tail -n 20 "$FUZZ_BUILD.make.log"
    result fuzz-build 1
  fi
else
  echo "SKIP fuzz: clang is not installed"
fi

echo
[ $failed -eq 0 ] || printf 'failed: %s\n' "${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
