#!/usr/bin/env bash
# The whole test suite on a fresh machine: the tools it runs for real, the npm
# dependencies (when not installed yet), then `npm test`. Exits non-zero when
# any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-tools.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
# The tools were just installed: a test that finds one missing fails, never skips.
RL_REQUIRE_TOOLS=1 npm test
