#!/bin/sh
# Runs every test binary in BUILD/tests, the Python binding's tests and the CLI tests (not with EENN_NO_CLI=1),
# then prints one closing line "total: N passed, M failed". Exit status: non-zero if anything failed. EENN_RUNNER
# runs each test binary (an emulator for a cross build: qemu-aarch64); EENN_SKIP names test binaries to leave out.
B=${1:-build}
cd "$(dirname "$0")/.." || exit 1
pass=0; fail=0
log=$(mktemp)
# tally RC NAME [HINT]: adds the "NAME: N passed, M failed" line of $log to the totals; a missing line or a
# non-zero exit with no failure counted is one failure
tally() {
    cat "$log"
    line=$(grep -E "^$2: [0-9]+ passed, [0-9]+ failed" "$log" | tail -n 1)
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    [ -n "$line" ] || { p=0; f=1; echo "$2: ${3:-crashed or printed no summary (exit $1)}"; }
    [ "$1" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    pass=$((pass + p)); fail=$((fail + f))
}
for t in "$B"/tests/test_*; do
    [ -x "$t" ] || continue
    case " ${EENN_SKIP:-} " in *" $(basename "$t") "*) echo "$(basename "$t"): left out (EENN_SKIP)"; continue;; esac
    $EENN_RUNNER "$t" >"$log" 2>&1
    tally $? "$(basename "$t")"
done
# the Python binding (python/eenn) against the CLI, with Debian's python3 and python3-numpy
if [ -z "${EENN_NO_CLI:-}" ] && [ -z "${EENN_ASAN:-}" ]; then
    PY=/usr/bin/python3
    [ -x "$PY" ] || PY=python3
    "$PY" tests/python/test_binding.py "$B" >"$log" 2>&1
    tally $? test_python "did not run (python3-numpy installed? scripts/setup-debian.sh)"
    "$PY" tests/python/test_torch_import.py "$B" >"$log" 2>&1
    tally $? test_torch_import "did not run (python3-torch installed? scripts/setup-debian.sh)"
    "$PY" tests/python/test_onnx_export.py "$B" >"$log" 2>&1
    tally $? test_onnx_export "did not run (node and peers/node_modules? scripts/setup-debian.sh)"
fi
if [ -z "${EENN_NO_CLI:-}" ]; then
    sh tests/cli_tests.sh "$B" >"$log" 2>&1
    tally $? cli_tests
fi
rm -f "$log"
echo "total: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
