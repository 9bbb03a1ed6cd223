#!/bin/bash
# The alternating comparison of the sixth round (docs/bench/sixth-round):
#   ab.sh OPERATION RUNS BIN...
# runs `BIN bench` on OPERATION alone (get or upsert) for each BIN in turn,
# RUNS times, against the Redis at $REDIS_URL (default a redis-server
# started with `--port 26399 --save '' --appendonly no`), and prints per
# run the store/baseline ratio and the two sides' ops/s, p50 and p99 (µs).
# Each BIN is a release build of charon-sessions-cli, with or without one
# of the patches in patches/ applied. AB_DURATION (default 8) and
# AB_ROUNDS (default 16) set --duration and --rounds; scripts/bench's
# repeated runs use 10 and 10.
set -euo pipefail
op=$1; runs=$2; shift 2
url=${REDIS_URL:-redis://127.0.0.1:26399}
duration=${AB_DURATION:-8}
rounds=${AB_ROUNDS:-16}
for _ in $(seq "$runs"); do
  for bin in "$@"; do
    out=$("$bin" bench --redis "$url" --concurrency 64 --duration "$duration" --warmup 1 --rounds "$rounds" \
      --mix "$op=100" --baseline --base-secret x 2>&1)
    ratio=$(echo "$out" | grep -oE "all operations: [0-9.]+ %" | grep -oE "[0-9.]+")
    rows=$(echo "$out" | grep -E "^│ $op " |
      awk -F'┆' '{gsub(/ /,""); printf "%s:%s/s,p50=%s,p99=%s ", $2,$4,$5,$6}')
    echo "$(basename "$bin") $op ratio=$ratio $rows"
  done
done
