#!/usr/bin/env bash
# ctest consumer_node_example: examples/consumer-node/consumer.js
# against a real nats-server (loopback, a random port) and a partition stream
# that `storeledger publish` filled: it counts every event exactly once, a
# second run over the same stream changes nothing, and a message delivered
# again is skipped. Installs the example's packages from its lockfile (npm
# ci) when missing; exits 77 (ctest: skipped) saying why only when npm ci
# cannot run (no npm, or offline with an empty cache).
# usage: consumer_node_example_test.sh STORELEDGER_BIN SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
example=$src/examples/consumer-node
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v nats-server >/dev/null || fail "nats-server not found: apt-get install nats-server (scripts/install-deps)"
if [ ! -d "$example/node_modules/nats" ]; then
  if ! (cd "$example" && npm ci --no-audit --no-fund --silent); then
    echo "SKIPPED: npm ci in examples/consumer-node failed (no npm, or offline without a cache)" >&2
    exit 77
  fi
fi
work=$(mktemp -d)
nats_pid=
cleanup() { [ -n "$nats_pid" ] && kill "$nats_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
nats-server -a 127.0.0.1 -p -1 -js -sd "$work/nats" -l "$work/nats.log" &
nats_pid=$!
for _ in $(seq 100); do
  port=$(sed -n 's/.*Listening for client connections on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/nats.log" 2>/dev/null || true)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || fail "nats-server did not start: $(cat "$work/nats.log")"
url=nats://127.0.0.1:$port

"$bin" --db "$work/db" simulate --stores 5 --seed 3 >/dev/null
published=$("$bin" --db "$work/db" publish --nats "$url" --partition 0)
messages=$(node -e 'console.log(JSON.parse(process.argv[1]).messages)' "$published")
head=$(node -e 'console.log(JSON.parse(process.argv[1]).position)' "$published")
[ "$messages" -gt 0 ] || fail "nothing published: $published"

run() { node "$example/consumer.js" --nats "$url" --durable counts --state "$work/counts.json" --idle-exit-ms 1500 "$@"; }
first=$(run --batch 7)
echo "first run: $first"
got=$(node -e '
  const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  let events = 0;
  for (const types of Object.values(s.counts)) for (const n of Object.values(types)) events += n;
  console.log(s.streamSequence, s.position, events);' "$work/counts.json")
[ "$got" = "$messages $head $head" ] || fail "state says (sequence position events) $got, expected $messages $head $head"
cp "$work/counts.json" "$work/after-first.json"

# Again: the durable consumer delivers nothing new; nothing changes.
second=$(run)
echo "second run: $second"
cmp -s "$work/counts.json" "$work/after-first.json" || fail "a second run changed the counts"

# A new durable over the same state file: every message is delivered again,
# each is at or below the stored sequence, and nothing is counted twice.
third=$(node "$example/consumer.js" --nats "$url" --durable replay --state "$work/counts.json" --idle-exit-ms 1500)
echo "redelivered run: $third"
skipped=$(node -e 'console.log(JSON.parse(process.argv[1]).skipped)' "$third")
[ "$skipped" = "$messages" ] || fail "expected $messages messages skipped, got $third"
cmp -s "$work/counts.json" "$work/after-first.json" || fail "redelivered messages changed the counts"
echo "consumer_node_example: $messages messages, $head events counted once"
