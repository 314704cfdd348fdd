#!/usr/bin/env bash
# ctest example_verifier: the verifier in examples/verify/ (Node.js,
# no dependencies) and `storeledger verify-proof` against proofs the CLI
# produced, honest ones and tampered ones they must both refuse.
# usage: example_verifier_test.sh STORELEDGER_BIN SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
verify=(node "$src/examples/verify/verify.js")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
db=$work/db
sl() { "$bin" --db "$db" "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_refusal CMD...: the command must exit 1 (refused), not 0 or 2.
expect_refusal() {
  local status=0
  "$@" >/dev/null 2>"$work/refusal" || status=$?
  [ "$status" -eq 1 ] || fail "expected exit 1 (refused) from: $* (got $status: $(cat "$work/refusal"))"
}

sl simulate --stores 4 --seed 7 >/dev/null
sl keygen --name example.com/storeledger --out "$work/log" >/dev/null
sl checkpoint --key "$work/log.key" >"$work/old.note"
old_size=$(sed -n 2p "$work/old.note")
[ "$old_size" -gt 10 ] || fail "checkpoint of $old_size events"

# An inclusion proof against the checkpoint kept, both verifiers.
sl prove --position 5 >"$work/inclusion.json"
"${verify[@]}" --key "$work/log.pub" checkpoint "$work/old.note" >/dev/null
"${verify[@]}" --key "$work/log.pub" inclusion "$work/inclusion.json" \
    --checkpoint "$work/old.note" >"$work/verified.json"
grep -q '"position":"5"' "$work/verified.json" || fail "verified output: $(cat "$work/verified.json")"
grep -q '"stream_id"' "$work/verified.json" || fail "envelope not decoded"
sl verify-proof --key "$work/log.pub" --checkpoint "$work/old.note" \
    "$work/inclusion.json" >/dev/null

# A statement with a proof per posting, checked line by line.
sl statement --store s00001 --from 2024-01-01T00:00:00+08:00 --to 2026-01-01T00:00:00+08:00 --proofs >"$work/statement.jsonl"
[ "$(wc -l <"$work/statement.jsonl")" -gt 0 ] || fail "statement --proofs printed no line"
"${verify[@]}" --key "$work/log.pub" statement "$work/statement.jsonl" \
    --checkpoint "$work/old.note" >/dev/null

# The log grows; a second checkpoint; consistency between the two.
sl simulate --stores 2 --seed 8 --append >/dev/null
sl checkpoint --key "$work/log.key" >"$work/new.note"
sl prove --consistency "$old_size" >"$work/consistency.json"
"${verify[@]}" --key "$work/log.pub" consistency "$work/consistency.json" \
    --old "$work/old.note" --new "$work/new.note" >/dev/null
sl verify-proof --key "$work/log.pub" --old "$work/old.note" "$work/consistency.json" >/dev/null
# An older event proven against the newer checkpoint, from the proof alone.
sl prove --position 3 >"$work/inclusion-new.json"
"${verify[@]}" --key "$work/log.pub" inclusion "$work/inclusion-new.json" >/dev/null

# Tampered: one byte of the proven envelope, one audit-path hash, the
# checkpoint's size, a checkpoint signed by another key.
node -e '
  const fs = require("fs");
  const p = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  const b = Buffer.from(p.envelope, "base64"); b[20] ^= 1; p.envelope = b.toString("base64");
  fs.writeFileSync(process.argv[2], JSON.stringify(p));
' "$work/inclusion.json" "$work/bad-envelope.json"
node -e '
  const fs = require("fs");
  const p = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  const b = Buffer.from(p.auditPath[0], "base64"); b[0] ^= 1; p.auditPath[0] = b.toString("base64");
  fs.writeFileSync(process.argv[2], JSON.stringify(p));
' "$work/inclusion.json" "$work/bad-path.json"
node -e '
  const fs = require("fs");
  const p = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  const i = p.path.length - 1;
  const b = Buffer.from(p.path[i], "base64"); b[31] ^= 1; p.path[i] = b.toString("base64");
  fs.writeFileSync(process.argv[2], JSON.stringify(p));
' "$work/consistency.json" "$work/bad-consistency.json"
sed 's/^\([0-9]*\)$/1\1/' "$work/old.note" >"$work/bad-size.note"
cmp -s "$work/old.note" "$work/bad-size.note" && fail "the size was not changed"

for bad in bad-envelope bad-path; do
  expect_refusal "${verify[@]}" --key "$work/log.pub" inclusion "$work/$bad.json" \
      --checkpoint "$work/old.note"
  expect_refusal sl verify-proof --key "$work/log.pub" --checkpoint "$work/old.note" \
      "$work/$bad.json"
done
expect_refusal "${verify[@]}" --key "$work/log.pub" checkpoint "$work/bad-size.note"
expect_refusal "${verify[@]}" --key "$work/log.pub" inclusion "$work/inclusion.json" \
    --checkpoint "$work/bad-size.note"
expect_refusal "${verify[@]}" --key "$work/log.pub" consistency \
    "$work/bad-consistency.json" --old "$work/old.note" --new "$work/new.note"
expect_refusal sl verify-proof --key "$work/log.pub" --old "$work/old.note" \
    --new "$work/new.note" "$work/bad-consistency.json"
# The proof of a checkpoint at the new size presented against the old one.
expect_refusal "${verify[@]}" --key "$work/log.pub" inclusion "$work/inclusion-new.json" \
    --checkpoint "$work/old.note"
sl keygen --name example.com/storeledger --out "$work/other" >/dev/null
expect_refusal "${verify[@]}" --key "$work/other.pub" checkpoint "$work/old.note"
expect_refusal sl verify-proof --key "$work/other.pub" --checkpoint "$work/old.note" \
    "$work/inclusion.json"
echo "example verifier: all checks passed"
