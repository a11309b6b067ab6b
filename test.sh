#!/usr/bin/env bash
# test.sh - install what is missing, build, and run the whole test suite.
#
# The last line is "N passed, N failed", counting Check test cases (a
# crashed or timed-out test program counts as one more failure).
# Environment: BUILD_DIR (default build), MESON_ARGS (extra meson options),
# TEST_ARGS (extra meson test options, e.g. --suite unit).
set -u
cd "$(dirname "$0")" || exit 1
. .ci/common.sh

BUILD_DIR=${BUILD_DIR:-build}
# shellcheck disable=SC2086
kvs_install $KVS_BUILD_PACKAGES || { echo "0 passed, 1 failed"; exit 1; }
# shellcheck disable=SC2086
kvs_install_no_start $KVS_TEST_PACKAGES || { echo "0 passed, 1 failed"; exit 1; }
# shellcheck disable=SC2086
kvs_build "$BUILD_DIR" -Dtests=enabled -Dserver=enabled ${MESON_ARGS:-} ||
	{ echo "0 passed, 1 failed"; exit 1; }

kvs_log "running the tests"
# shellcheck disable=SC2086
meson test -C "$BUILD_DIR" --no-rebuild --print-errorlogs ${TEST_ARGS:-}
status=$?

# Count test cases from meson's JSON log.
python3 - "$BUILD_DIR/meson-logs/testlog.json" "$status" <<'PY'
import json, re, sys

passed = failed = skipped = 0
bad = []
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
for line in lines:
    t = json.loads(line)
    out = t.get("stdout") or ""
    ok = t["result"] in ("OK", "EXPECTEDFAIL")
    if t["result"] == "SKIP":
        skipped += 1
        bad.append(t["name"] + " (skipped)")
        continue
    m = re.findall(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)", out)
    if m:
        n, f, e = (int(x) for x in m[-1])
        passed += n - f - e
        failed += f + e
        if not ok and f + e == 0:
            failed += 1  # crashed after its checks, sanitizer, timeout
    elif ok:
        passed += 1
    else:
        failed += 1
    if not ok:
        bad.append(t["name"] + " (" + t["result"].lower() + ")")
if not lines:
    failed += 1
    bad.append("no test results")
if bad:
    print("not passed: " + ", ".join(bad))
if skipped:
    print("%d test programs skipped" % skipped)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed or skipped or int(sys.argv[2]) != 0 else 0)
PY
