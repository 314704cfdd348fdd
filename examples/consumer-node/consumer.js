#!/usr/bin/env node
// A downstream projection of a storeledger partition, exactly once
// (docs/cluster.md "Write your own projection"). It reads the partition's
// JetStream stream (SL_P<n>) through a durable pull consumer with explicit
// acks, checks every message as a follower does (contiguous positions, the
// SHA-256 hash chain, linked to the last hash it applied), counts events per
// stream and event type, and keeps those counts in a JSON file TOGETHER with
// the stream sequence and the chain's head: one atomic write (temp file,
// fsync, rename, fsync of the folder). Only after that write does it
// double-ack (ackAck) the messages. A message delivered again (we died
// between the write and the ack) is at or below the stored sequence and
// changes nothing; a message past it + 1 is preceded by the missing ones,
// read from the stream by sequence (the stream keeps every message).
//
//   node consumer.js --nats nats://127.0.0.1:4222 [--partition 0]
//       --durable NAME --state FILE [--batch 64] [--ack-wait-ms 30000]
//       [--idle-exit-ms MS]
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const protobuf = require('protobufjs');
const { connect, AckPolicy, DeliverPolicy, nanos } = require('nats');

function parseFlags(argv) {
  const flags = { partition: '0', batch: '64', 'ack-wait-ms': '30000' };
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) {
      throw new Error(`bad argument ${argv[i]} (flags take a value)`);
    }
    flags[argv[i].slice(2)] = argv[i + 1];
  }
  for (const required of ['nats', 'durable', 'state']) {
    if (!flags[required]) throw new Error(`--${required} is required`);
  }
  return flags;
}

// The wire format, loaded from this repository's .proto files.
function loadTypes() {
  const protoDir = path.join(__dirname, '..', '..', 'proto');
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) =>
    target.startsWith('google/') ? target : path.join(protoDir, target);
  root.loadSync(['storeledger/v1/ledger.proto', 'storeledger/v1/replication.proto']);
  return {
    LogBatch: root.lookupType('storeledger.v1.LogBatch'),
    Envelope: root.lookupType('storeledger.v1.Envelope'),
  };
}

const ZERO_HASH = Buffer.alloc(32).toString('hex');

function readState(file, partition) {
  if (!fs.existsSync(file)) {
    return { partition, streamSequence: 0, position: 0, hash: ZERO_HASH, counts: {} };
  }
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// The state and the sequence in one atomic, durable write.
function writeState(file, state) {
  const temp = `${file}.tmp`;
  const fd = fs.openSync(temp, 'w');
  fs.writeSync(fd, JSON.stringify(state));
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(temp, file);
  const dir = fs.openSync(path.dirname(path.resolve(file)), 'r');
  fs.fsyncSync(dir);
  fs.closeSync(dir);
}

// Checks one message against the state and folds it in; throws naming the
// position when a check fails (nothing of it is kept: the state is a copy).
function apply(types, state, sequence, data) {
  const batch = types.LogBatch.decode(data);
  const where = (p, what) =>
    new Error(`partition ${state.partition} stream sequence ${sequence}, position ${p}: ${what}`);
  let position = state.position + 1;
  if (batch.partition !== state.partition) throw where(position, `message of partition ${batch.partition}`);
  if (Number(batch.firstPosition) !== position) throw where(position, `message starts at ${batch.firstPosition}`);
  let prev = Buffer.from(batch.prevHash);
  if (prev.toString('hex') !== state.hash) throw where(position, 'prev_hash does not link to the last applied hash');
  const next = { ...state, counts: structuredClone(state.counts) };
  for (const raw of batch.envelopes) {
    const bytes = Buffer.from(raw);
    // storage/FORMAT.md "Envelope": body, then field 12 (0x62 0x20) and the
    // 32-byte SHA-256(prev_hash || body).
    const body = bytes.subarray(0, bytes.length - 34);
    const hash = bytes.subarray(bytes.length - 32);
    if (bytes.length < 34 || bytes[bytes.length - 34] !== 0x62 || bytes[bytes.length - 33] !== 0x20 ||
        !crypto.createHash('sha256').update(prev).update(body).digest().equals(hash)) {
      throw where(position, 'envelope hash does not verify');
    }
    const envelope = types.Envelope.decode(bytes);
    if (Number(envelope.position) !== position) throw where(position, `envelope says ${envelope.position}`);
    if (!Buffer.from(envelope.prevHash).equals(prev)) throw where(position, 'envelope prev_hash does not link');
    const perStream = (next.counts[envelope.streamId] ||= {});
    perStream[envelope.eventType] = (perStream[envelope.eventType] || 0) + 1;
    prev = hash;
    position += 1;
  }
  next.streamSequence = sequence;
  next.position = position - 1;
  next.hash = prev.toString('hex');
  return next;
}

async function main() {
  const flags = parseFlags(process.argv.slice(2));
  const partition = Number(flags.partition);
  const stream = `SL_P${partition}`;
  const types = loadTypes();
  let state = readState(flags.state, partition);
  const nc = await connect({ servers: flags.nats.split(',') });
  const jsm = await nc.jetstreamManager();
  try {
    await jsm.consumers.info(stream, flags.durable);
  } catch {
    await jsm.consumers.add(stream, {
      durable_name: flags.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: nanos(Number(flags['ack-wait-ms'])),
    });
  }
  const consumer = await nc.jetstream().consumers.get(stream, flags.durable);
  const stats = { applied: 0, skipped: 0, read: 0 };
  const idleExitMs = flags['idle-exit-ms'] ? Number(flags['idle-exit-ms']) : Infinity;
  let lastNew = Date.now();
  while (Date.now() - lastNew <= idleExitMs) {
    const messages = [];
    for await (const m of await consumer.fetch({ max_messages: Number(flags.batch), expires: 1000 })) {
      messages.push(m);
    }
    if (messages.length === 0) continue;
    messages.sort((a, b) => a.seq - b.seq);
    let next = state;
    for (const m of messages) {
      if (m.seq <= next.streamSequence) { stats.skipped += 1; continue; }
      lastNew = Date.now();
      while (next.streamSequence + 1 < m.seq) {  // delivered to a consumer that died
        const missing = next.streamSequence + 1;
        const stored = await jsm.streams.getMessage(stream, { seq: missing });
        next = apply(types, next, missing, stored.data);
        stats.read += 1;
      }
      next = apply(types, next, m.seq, m.data);
      stats.applied += 1;
    }
    if (next !== state) writeState(flags.state, next);  // commit
    state = next;
    for (const m of messages) await m.ackAck();            // then the double ack
  }
  await nc.close();
  console.log(JSON.stringify({ partition, streamSequence: state.streamSequence,
                               position: state.position, ...stats }));
}

main().catch((error) => {
  console.error(`consumer: ${error.message}`);
  process.exit(1);
});
