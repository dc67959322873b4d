#!/usr/bin/env bash
# Shows the whole difference between the patched copy in third_party/mochi and upstream
# github.com/mochi-mqtt/server/v2 v2.7.9 (fetched into the module cache through GOPROXY), with
# the copy's import paths rewritten back to upstream's so that only real changes show.
# Extra arguments go to diff (e.g. --brief, -x '*_test.go').
set -euo pipefail
cd "$(dirname "$0")/.."

mod=github.com/mochi-mqtt/server/v2
ver=v2.7.9
up=$(cd "$(mktemp -d)" && go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r third_party/mochi "$work/mochi"
find "$work/mochi" -name '*.go' -exec sed -i "s#github.com/mqkafka/mqkafka/third_party/mochi#$mod#g" {} +

# Upstream's files mqkafka never took (examples, its command, CI and docs) are left out; diff
# exits 1 when the trees differ, which they do.
{ diff -ru "$@" \
  -x examples -x cmd -x .github -x .gitignore -x .golangci.yml -x Dockerfile -x 'README*' \
  -x config.yaml -x go.mod -x go.sum \
  "$up" "$work/mochi" || test $? -eq 1; } | sed "s#$up#upstream#g; s#$work/mochi#third_party/mochi#g"
