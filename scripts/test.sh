#!/usr/bin/env bash
# The README's test command: the whole suite, our packages under the race detector and the patched
# mochi copy (upstream's tests, which synchronise with sleeps) without it; with arguments, `go test`
# with them. First it sees to the one thing the suite needs beyond Go and a C compiler: Debian's
# Chromium, which the dashboard's browser test (app) drives. It installs it when it is missing and it can; otherwise it says how and
# fails, since a skipped browser test would pass without testing the dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${MQKAFKA_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ] && ! command -v chromium >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "scripts/test.sh: installing Debian's chromium for the dashboard's browser test" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "scripts/test.sh: the dashboard's browser test needs Chromium. Install it with" >&2
    echo "  sudo sh -c 'apt-get update && apt-get install -y chromium'" >&2
    echo "then run scripts/test.sh again (or set MQKAFKA_CHROMIUM to a Chromium binary)." >&2
    exit 1
  fi
fi
if [ $# -gt 0 ]; then
  exec go test "$@"
fi
go test -race $(go list ./... | grep -v /third_party/)
go test ./third_party/...
