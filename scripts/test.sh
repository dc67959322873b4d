#!/usr/bin/env bash
# The README's test command: the whole suite, our packages under the race detector and the patched
# mochi copy (upstream's tests, which synchronise with sleeps) without it; with arguments, `go test`
# with them. First it sees to what the suite needs beyond Go and a C compiler: Debian's Chromium,
# which the dashboard's browser test (app) drives, and Debian's HAProxy, which the cluster's
# load-balancer test (cmd/mqkafka) runs. It installs them when they are missing and it can;
# otherwise it says how and fails, since a skipped test would pass without testing anything.
set -euo pipefail
cd "$(dirname "$0")/.."

# need PACKAGE WHAT [OR]: installs Debian's PACKAGE, which WHAT needs, or says how (OR: another way).
need() {
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "scripts/test.sh: installing Debian's $1 for $2" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else
    echo "scripts/test.sh: $2 needs $1. Install it with" >&2
    echo "  sudo sh -c 'apt-get update && apt-get install -y $1'" >&2
    echo "then run scripts/test.sh again${3:+ ($3)}." >&2
    exit 1
  fi
}
if [ -z "${MQKAFKA_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ] && ! command -v chromium >/dev/null; then
  need chromium "the dashboard's browser test" "or set MQKAFKA_CHROMIUM to a Chromium binary"
fi
command -v haproxy >/dev/null || need haproxy "the cluster's load-balancer test"
if [ $# -gt 0 ]; then
  exec go test "$@"
fi
go test -race $(go list ./... | grep -v /third_party/)
go test ./third_party/...
