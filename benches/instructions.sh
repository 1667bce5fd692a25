#!/usr/bin/env bash
# Instructions per delivered message, counted by valgrind's callgrind: repeatable
# for the same binary and load whatever else the machine is doing, where timings on
# a shared 2-core machine spread by 5% or more. For the current build and, with
# BASELINE, an earlier commit built in a temporary worktree.
#
#   BASELINE=<git rev> benches/instructions.sh            # fan-out 1 -> 100 paced, then queue 1 -> 1
#   BASELINE=<git rev> benches/instructions.sh fanout     # or: queue
#
# Each broker runs under callgrind twice with the same load, once twice as long; the difference in instructions divided by the difference in messages is
# the cost of one more message, with start-up, logins and shutdown cancelled out.
# Loopback only; every run is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
rate=${RATE:-50}
port=18090

cargo build --release --locked --bin stompede >&2
cargo build --release --locked --example loadgen >&2
loadgen=target/release/examples/loadgen
bins=("current:target/release/stompede:.")
if [ -n "${BASELINE:-}" ]; then
  base_dir=$(mktemp -d)
  trap 'git worktree remove --force "$base_dir/tree" >/dev/null 2>&1; rm -rf "$base_dir"' EXIT
  git worktree add --detach "$base_dir/tree" "$BASELINE" >&2
  base_target=$PWD/target/baseline
  (cd "$base_dir/tree" && CARGO_TARGET_DIR="$base_target" cargo build --release --locked --bin stompede) >&2
  bins+=("$BASELINE:$base_target/release/stompede:$base_dir/tree")
fi

# broker tree seconds loadgen-args... -> "instructions messages"
measure() {
  local bin=$1 tree=$2 seconds=$3; shift 3
  local store out log
  store=$(mktemp -d); out=$(mktemp); log=$(mktemp)
  STOMPEDE__SERVER__HTTP_ADDR=127.0.0.1:$port STOMPEDE__SERVER__STOMP_ADDR= \
    STOMPEDE__STORE__PATH="$store" STOMPEDE__LOG__FILTER=warn \
    timeout 600 valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --config "$tree/broker.toml" 2>/dev/null &
  local pid=$!
  for _ in $(seq 600); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  timeout 300 "$loadgen" "$@" --seconds "$seconds" --url ws://127.0.0.1:$port/ws --label m >"$log"
  kill -INT "$pid"; wait "$pid" || true
  local ir messages
  ir=$(grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}')
  messages=$(grep -oE '(lost|extra) [0-9]+ of [0-9]+' "$log" | head -1 | awk '{print $4}')
  rm -rf "$store" "$out" "$log"
  echo "$ir $messages"
}

per_message() { # label args... : prints instructions per message
  local label=$1; shift
  for entry in "${bins[@]}"; do
    IFS=: read -r name bin tree <<<"$entry"
    read -r ir1 n1 < <(measure "$bin" "$tree" 5 "$@")
    read -r ir2 n2 < <(measure "$bin" "$tree" 10 "$@")
    echo "$label $name: $(( (ir2 - ir1) / (n2 - n1) )) instructions per message ($n1 and $n2 messages)"
  done
}

login=(--login market-feed --passcode feed-demo)
if [ "$what" = all ] || [ "$what" = fanout ]; then
  per_message "fanout 1->100 at $rate/s (per delivery)" fanout --subscribers 100 --rate "$rate" "${login[@]}" --anonymous-readers
fi
if [ "$what" = all ] || [ "$what" = queue ]; then
  per_message "queue 1->1, client-individual acks, as fast as consumed" queue --producers 1 --consumers 1 "${login[@]}"
fi
