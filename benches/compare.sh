#!/usr/bin/env bash
# Side-by-side broker benchmark: stompede and (if running) RabbitMQ Web-STOMP, with
# the same load generator, in one run. Loopback only; every step is bounded in time.
#
#   benches/compare.sh                 # all scenarios
#   SECONDS_PER_RUN=5 benches/compare.sh fanout    # or: wildcard, latency, queue, durable, logins, idle, api, cluster, cluster-history, history, rolling, routes
#   BASELINE=<git rev> benches/compare.sh fanout   # also an earlier stompede, side by side
#   FANOUT_SUBSCRIBERS="100" benches/compare.sh fanout  # only some fan-out widths
#
# With BASELINE, that commit is checked out in a temporary git worktree, built
# there, and run on the next port beside the current build, with the same load
# generator (the current one): "did this change cost anything" in one run.
#
# RabbitMQ (Debian's rabbitmq-server with the rabbitmq_web_stomp plugin) is used
# when ws://127.0.0.1:15674/ws answers:
#   apt-get install rabbitmq-server
#   rabbitmq-plugins enable --offline rabbitmq_web_stomp
#   echo "rabbitmq - nofile 20000" > /etc/security/limits.d/rabbitmq.conf
#   RABBITMQ_NODENAME=rabbit@localhost rabbitmq-server &
# Debian's wrapper starts RabbitMQ through `su`, whose default soft limit of 1024
# open files stops it short of 1000 connections; the limits.d line raises it, as
# any production install would (stompede raises its own limit at start).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
secs=${SECONDS_PER_RUN:-10}
idle_conns=${IDLE_CONNECTIONS:-10000}
port=18080

# Two builds: the broker exactly as `cargo build --release` makes it. Built in one
# invocation with an example, it would get the dev-dependencies' features too
# (tokio's test-util, whose paused-clock checks sit in every Instant::now), and
# a baseline built alone would not: an unfair comparison.
cargo build --release --locked --bin stompede >&2
cargo build --release --locked --example loadgen >&2
loadgen=target/release/examples/loadgen

broker=
base_broker=
base_bin=
base_dir=
store=$(mktemp -d) # the queue store, on the same disk RabbitMQ writes to
base_store=$(mktemp -d)
if [ -n "${BASELINE:-}" ]; then
  base_dir=$(mktemp -d)
  git worktree add --detach "$base_dir/tree" "$BASELINE" >&2
  # Its own target directory under ours, so a second run with the same baseline
  # builds only what changed.
  base_target=$PWD/target/baseline
  (cd "$base_dir/tree" && CARGO_TARGET_DIR="$base_target" cargo build --release --locked --bin stompede) >&2
  base_bin=$base_target/release/stompede
fi
launch() { # binary port store source-tree -> pid. Every load-generator connection
  # comes from 127.0.0.1, so the per-address limit is lifted where the build has one.
  local bin=$1 p=$2 dir=$3 tree=$4 per_ip=()
  if grep -rqs max_connections_per_ip "$tree/src/config.rs" "$tree/src/config"; then
    per_ip=(STOMPEDE__LIMITS__MAX_CONNECTIONS_PER_IP=$((idle_conns + 2000)))
  fi
  env "${per_ip[@]}" STOMPEDE__SERVER__HTTP_ADDR=127.0.0.1:$p STOMPEDE__SERVER__STOMP_ADDR= \
    STOMPEDE__STORE__PATH="$dir" STOMPEDE__LOG__FILTER=warn "$bin" --config "$tree/broker.toml" >&2 &
  echo $!
}
wait_port() { for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && break; sleep 0.1; done; }
stop() { # pid: the brokers are not this shell's children, so poll until gone
  [ -n "$1" ] || return 0
  kill -INT "$1" 2>/dev/null || true # SIGINT stops at once; SIGTERM would drain
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
}
start_broker() { # fresh processes, so one scenario's memory does not colour the next
  stop "$broker"
  stop "$base_broker"
  broker=$(launch target/release/stompede $port "$store" .)
  wait_port $port
  if [ -n "$base_bin" ]; then
    base_broker=$(launch "$base_bin" $((port + 1)) "$base_store" "$base_dir/tree")
    wait_port $((port + 1))
  fi
}
cluster_pid=
cluster_dir=
stop_cluster() {
  [ -n "$cluster_pid" ] || return 0
  kill "$cluster_pid" 2>/dev/null || true
  wait "$cluster_pid" 2>/dev/null || true
  rm -rf "$cluster_dir"
  cluster_pid=
}
cleanup() {
  stop_cluster
  stop "$broker"
  stop "$base_broker"
  rm -rf "$store" "$base_store"
  if [ -n "$base_dir" ]; then git worktree remove --force "$base_dir/tree"; rm -rf "$base_dir"; fi
  true
}
trap cleanup EXIT
start_broker

rabbit=0
if (echo >/dev/tcp/127.0.0.1/15674) 2>/dev/null; then rabbit=1; fi
echo "machine: $(nproc) cores; $(uname -sr); rabbitmq: $([ $rabbit = 1 ] && dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo 'not running')"

run() { # label url extra-args... ; loadgen args follow "--"
  local label=$1 url=$2; shift 2
  timeout 600 "$loadgen" "$@" --url "$url" --label "$label"
}

# stompede's shipped broker.toml: publishers use the demo service account, readers
# connect anonymously (read-only topic access needs no login).
stompede_login=(--login market-feed --passcode feed-demo --anonymous-readers)

both() {
  run stompede ws://127.0.0.1:$port/ws "$@" "${stompede_login[@]}"
  if [ -n "$base_bin" ]; then
    run "stompede@$BASELINE" ws://127.0.0.1:$((port + 1))/ws "$@" "${stompede_login[@]}"
  fi
  if [ $rabbit = 1 ]; then
    run rabbitmq ws://127.0.0.1:15674/ws "$@" --login guest --passcode guest
  fi
}

if [ "$what" = all ] || [ "$what" = fanout ]; then
  for subs in ${FANOUT_SUBSCRIBERS:-1 100 1000}; do
    both fanout --subscribers $subs --seconds "$secs"
  done
fi
if [ "$what" = all ] || [ "$what" = wildcard ]; then
  # The same fan-out, every subscriber on a pattern: the cost of wildcard matching.
  both fanout --subscribers 100 --seconds "$secs" --destination /topic/loadgen.x --subscribe-to '/topic/loadgen.*'
fi
if [ "$what" = all ] || [ "$what" = latency ]; then
  both fanout --subscribers 1000 --rate 100 --seconds "$((secs * 2))"
fi
if [ "$what" = all ] || [ "$what" = queue ]; then
  both queue --producers 4 --consumers 4 --seconds "$secs"
fi
if [ "$what" = all ] || [ "$what" = durable ]; then
  # persistent: true and a receipt on every SEND (RabbitMQ answers it after its
  # publisher confirm, i.e. once the message is on disk): producers that keep 100
  # receipts in flight, then 16 and 64 producers that each wait for every receipt.
  both queue --producers 4 --consumers 4 --persistent --receipts 100 --seconds "$secs" --destination /queue/durable-bench
  for producers in 16 64; do
    both queue --producers $producers --consumers 4 --persistent --receipts 1 --seconds "$secs" --destination /queue/durable-sync-$producers
  done
fi
if [ "$what" = all ] || [ "$what" = api ]; then
  # Publishing over HTTP (wrk, 16 keep-alive connections, POST /api/publish with
  # Basic auth) beside publishing over STOMP (one connection, SENDs as fast as one
  # subscriber takes them), 128-byte bodies to a topic, on the current build.
  if command -v wrk >/dev/null; then
    timeout 120 wrk -t 2 -c 16 -d "${secs}s" -s benches/publish.lua "http://127.0.0.1:$port/api/publish" | grep http-publish
  else
    echo "wrk not installed (apt-get install wrk): HTTP publishing not measured"
  fi
  run stompede ws://127.0.0.1:$port/ws fanout --subscribers 1 --seconds "$secs" "${stompede_login[@]}"
fi
# A three-node cluster on this same machine (scripts/cluster: three nats-server
# with JetStream and routes, three nodes), with the environment given; waits until
# every node is ready.
start_cluster() {
  cluster_dir=$(mktemp -d)
  env "$@" HTTP_PORT=18181 NATS_PORT=14222 STOMP_PORT=18191 CLUSTER_DIR=$cluster_dir STOMPEDE_BIN=target/release/stompede LOG_FILTER=warn \
    STOMPEDE__LIMITS__MAX_CONNECTIONS_PER_IP=$((idle_conns + 2000)) scripts/cluster >&2 &
  cluster_pid=$!
  for p in 18181 18182 18183; do
    for _ in $(seq 600); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$p" && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 && head -1 <&3 | grep -q ' 200 ') 2>/dev/null; then break; fi
      sleep 0.1
    done
  done
}
nodes=ws://127.0.0.1:18181/ws,ws://127.0.0.1:18182/ws,ws://127.0.0.1:18183/ws

if [ "$what" = all ] || [ "$what" = cluster ]; then
  # One node against a three-node cluster, the same load generator: the
  # publisher on node a, subscribers spread over a, b and c. On a small machine
  # the cluster's six processes share the cores with the load generator: read
  # the ratio, and the loss and order counts.
  start_cluster
  for rate in max 100; do
    rate_arg=()
    [ $rate = max ] || rate_arg=(--rate $rate)
    run stompede-1-node ws://127.0.0.1:$port/ws fanout --subscribers 100 --seconds "$secs" "${rate_arg[@]}" "${stompede_login[@]}"
    run stompede-3-nodes ws://127.0.0.1:18181/ws fanout --subscribers 100 --seconds "$secs" "${rate_arg[@]}" \
      --subscriber-urls "$nodes" "${stompede_login[@]}"
  done
  stop_cluster
fi
if [ "$what" = all ] || [ "$what" = cluster-history ]; then
  # One kept destination (topics.history) in the three-node cluster against the
  # same destination not kept: a kept message is numbered by a conditional
  # JetStream publish, one at a time per destination and node.
  start_cluster STOMPEDE__TOPICS__HISTORY=/topic/loadgen.kept
  run stompede-3-nodes-kept ws://127.0.0.1:18181/ws fanout --subscribers 100 --seconds "$secs" \
    --destination /topic/loadgen.kept --subscriber-urls "$nodes" "${stompede_login[@]}"
  run stompede-3-nodes-not-kept ws://127.0.0.1:18181/ws fanout --subscribers 100 --seconds "$secs" \
    --subscriber-urls "$nodes" "${stompede_login[@]}"
  stop_cluster
fi
if [ "$what" = all ] || [ "$what" = history ]; then
  # The cost of topic history: the same fan-out, one broker keeping the topic's
  # history (numbering, keeping, writing to the store), one not, side by side; then
  # a replay of 100,000 kept messages to one subscriber (x-stream-offset: first),
  # paced by the reader through the default outbox limit.
  stop "$broker"
  broker=$(STOMPEDE__TOPICS__HISTORY=/topic/loadgen.# STOMPEDE__TOPICS__HISTORY_MAX_MESSAGES=100000 \
    launch target/release/stompede $port "$store" .)
  wait_port $port
  plain_store=$(mktemp -d)
  plain=$(launch target/release/stompede $((port + 2)) "$plain_store" .)
  wait_port $((port + 2))
  run stompede-history ws://127.0.0.1:$port/ws fanout --subscribers 100 --seconds "$secs" "${stompede_login[@]}"
  run stompede-no-history ws://127.0.0.1:$((port + 2))/ws fanout --subscribers 100 --seconds "$secs" "${stompede_login[@]}"
  run stompede-history ws://127.0.0.1:$port/ws replay --messages 100000 "${stompede_login[@]}"
  stop "$plain"
  rm -rf "$plain_store"
  start_broker
fi
if [ "$what" = all ] || [ "$what" = routes ]; then
  # An /app route to a queue ([[app.routes]]): 100,000 SENDs to /app/bench.x with
  # receipts, against the same to /queue/bench directly; then the queue drained
  # by one Rust consumer (the load generator, WebSocket) and by one Python
  # consumer (stomp.py over TCP), each acking every message. Three rounds.
  routes_dir=$(mktemp -d)
  cp broker.toml "$routes_dir/broker.toml"
  printf '\n[[app.routes]]\nmatch = "/app/bench.#"\nqueue = "bench"\n' >> "$routes_dir/broker.toml"
  routes_port=$((port + 3))
  routes_stomp=$((port + 4))
  STOMPEDE__SERVER__HTTP_ADDR=127.0.0.1:$routes_port STOMPEDE__SERVER__STOMP_ADDR=127.0.0.1:$routes_stomp \
    STOMPEDE__STORE__PATH="$routes_dir/data" STOMPEDE__LOG__FILTER=warn \
    target/release/stompede --config "$routes_dir/broker.toml" >&2 &
  routes_pid=$!
  wait_port $routes_port
  pythonpath=$(scripts/python-deps)
  for round in 1 2 3; do
    for via in /queue/bench /app/bench.x; do
      run "round $round" ws://127.0.0.1:$routes_port/ws drain --messages 100000 --fill-via $via \
        --from /queue/bench "${stompede_login[@]}"
    done
    run "round $round" ws://127.0.0.1:$routes_port/ws drain --messages 100000 --fill-via /app/bench.x \
      --from /queue/bench --consumers 0 "${stompede_login[@]}"
    PYTHONPATH=$pythonpath timeout 300 python3 benches/route_consumer.py 127.0.0.1 $routes_stomp \
      market-feed feed-demo /queue/bench 100000 100
  done
  stop $routes_pid
  rm -rf "$routes_dir"
fi
if [ "$what" = all ] || [ "$what" = rolling ]; then
  # A rolling restart of a three-node cluster behind HAProxy, under load
  # (benches/rolling.mjs: stompjs clients, receipts, acks, resumed offsets),
  # once with the connections closed spread out and once all at once.
  [ -d tests/e2e/node_modules ] || (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error) >&2
  STOMPEDE_BIN=$PWD/target/release/stompede STOMPEDE_NATS_SERVER=$(scripts/nats-server) \
    timeout 600 node benches/rolling.mjs
fi
if [ "$what" = all ] || [ "$what" = logins ]; then
  # A reconnect storm: 200 password logins at once (the demo account, real argon2id
  # cost), from fresh processes; RSS before, when all are in, and after idling.
  start_broker
  run stompede ws://127.0.0.1:$port/ws logins --connections 200 --pid $broker --login alice --passcode alice-demo
  if [ -n "$base_bin" ]; then
    run "stompede@$BASELINE" ws://127.0.0.1:$((port + 1))/ws logins --connections 200 --pid "$base_broker" --login alice --passcode alice-demo
  fi
fi
if [ "$what" = all ] || [ "$what" = idle ]; then
  start_broker
  run stompede ws://127.0.0.1:$port/ws idle --connections "$idle_conns" --pid $broker "${stompede_login[@]}"
  if [ -n "$base_bin" ]; then
    run "stompede@$BASELINE" ws://127.0.0.1:$((port + 1))/ws idle --connections "$idle_conns" --pid "$base_broker" "${stompede_login[@]}"
  fi
  if [ $rabbit = 1 ]; then
    beam=$(pgrep -f beam.smp | head -1)
    run rabbitmq ws://127.0.0.1:15674/ws idle --connections "$idle_conns" --pid "$beam" --login guest --passcode guest
  fi
fi
