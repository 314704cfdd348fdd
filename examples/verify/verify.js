#!/usr/bin/env node
// An outside auditor's verifier for storeledger's proofs, in
// Node.js with no dependencies and none of storeledger's code: it trusts
// the public key it is given and nothing else. It checks a signed checkpoint
// (C2SP signed note, Ed25519), an inclusion proof against it (RFC 9162
// §2.1.3.2, the leaf hashed here from the proven bytes), a consistency
// proof between two checkpoints (§2.1.4.2), and decodes the proven envelope
// with the published .proto (proto/storeledger/v1/ledger.proto).
//
//   node verify.js --key LOG.pub checkpoint NOTE
//   node verify.js --key LOG.pub inclusion PROOF.json [--checkpoint NOTE]
//   node verify.js --key LOG.pub consistency PROOF.json [--old NOTE] [--new NOTE]
//   node verify.js --key LOG.pub statement STATEMENT.jsonl [--checkpoint NOTE]
//
// Exit 0: verified (a JSON line on stdout); 1: it does not verify (the
// reason on stderr); 2: bad usage.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

class Refused extends Error {}

function sha256(...parts) {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}
const leafHash = (bytes) => sha256(Buffer.from([0]), bytes);
const nodeHash = (l, r) => sha256(Buffer.from([1]), l, r);

// Base64 that is the canonical encoding of what it decodes to, so that no
// changed character goes unnoticed.
function strictBase64(text, what) {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.toString('base64') !== text) throw new Refused(`${what} is not canonical base64`);
  return bytes;
}

// ---- keys and checkpoints (storage/FORMAT.md "The Merkle tree")

function parseVerifierKey(text) {
  // name + id + base64 (whose alphabet holds '+' too: split twice only)
  const parts = text.trim().split('+');
  if (parts.length < 3) throw new Refused('public key is not <name>+<id>+<base64 key>');
  const [name, hexId] = parts;
  const b64 = parts.slice(2).join('+');
  const raw = strictBase64(b64, 'public key');
  if (raw.length !== 33 || raw[0] !== 1) throw new Refused('public key is not an Ed25519 key');
  const pub = raw.subarray(1);
  const id = sha256(Buffer.from(name + '\n'), Buffer.from([1]), pub).subarray(0, 4);
  if (id.toString('hex') !== hexId) throw new Refused('public key id does not match the key');
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), pub]);
  return { name, id, key: crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' }) };
}

function verifyCheckpoint(note, vkey) {
  const blank = note.indexOf('\n\n');
  if (blank < 0) throw new Refused('checkpoint has no blank line before its signatures');
  const body = note.slice(0, blank + 1);
  const prefix = `\u2014 ${vkey.name} `;
  let signed = false;
  for (const line of note.slice(blank + 2).split('\n')) {
    if (!line.startsWith(prefix)) continue;
    let sig;
    try { sig = strictBase64(line.slice(prefix.length), 'signature'); } catch (e) { continue; }
    if (sig.length !== 68 || !sig.subarray(0, 4).equals(vkey.id)) continue;
    if (crypto.verify(null, Buffer.from(body, 'utf8'), vkey.key, sig.subarray(4))) {
      signed = true;
      break;
    }
  }
  if (!signed) throw new Refused(`checkpoint carries no valid signature of ${vkey.name}`);
  const lines = body.split('\n');
  if (lines.length !== 5 || lines[4] !== '' || !/^[0-9]+$/.test(lines[1]) ||
      !/^time -?[0-9]+$/.test(lines[3])) {
    throw new Refused('checkpoint body is not origin / size / root / time');
  }
  if (lines[0] !== vkey.name) throw new Refused(`checkpoint origin ${lines[0]} is not ${vkey.name}`);
  const root = strictBase64(lines[2], 'checkpoint root');
  if (root.length !== 32) throw new Refused('checkpoint root is not 32 bytes');
  return { origin: lines[0], treeSize: BigInt(lines[1]), root, time: Number(lines[3].slice(5)) };
}

// ---- RFC 9162 §2.1.3.2 and §2.1.4.2, read literally (BigInt: sizes may
// pass 2^32, where JavaScript's bit operators stop).

function verifyInclusion(index, size, leaf, proof, root) {
  if (index >= size) throw new Refused('leaf index is not in the tree');
  let fn = index, sn = size - 1n, r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new Refused('inclusion proof is too long');
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      while (fn !== 0n && (fn & 1n) === 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Refused('inclusion proof is too short');
  if (!r.equals(root)) throw new Refused('inclusion proof does not lead to the checkpoint root');
}

function verifyConsistency(first, second, root1, root2, proof) {
  if (first === 0n || first > second) throw new Refused('need 0 < first size <= second size');
  if (first === second) {
    if (proof.length !== 0 || !root1.equals(root2)) throw new Refused('equal sizes, different trees');
    return;
  }
  if (proof.length === 0) throw new Refused('consistency proof is empty');
  const isPowerOf2 = (first & (first - 1n)) === 0n;
  const path = isPowerOf2 ? [root1, ...proof] : proof;
  let fn = first - 1n, sn = second - 1n;
  while ((fn & 1n) === 1n) { fn >>= 1n; sn >>= 1n; }
  let fr = path[0], sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) throw new Refused('consistency proof is too long');
    if ((fn & 1n) === 1n || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (fn !== 0n && (fn & 1n) === 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Refused('consistency proof is too short');
  if (!fr.equals(root1)) throw new Refused('the old checkpoint is not a prefix of the new tree');
  if (!sr.equals(root2)) throw new Refused('the proof does not lead to the new checkpoint root');
}

// ---- the envelope, decoded with the published .proto

function loadSchema(protoPath) {
  const text = fs.readFileSync(protoPath, 'utf8').replace(/\/\/.*$/gm, '');
  const messages = {}, enums = {};
  const blockRe = /\b(message|enum)\s+(\w+)\s*\{/g;
  let m;
  while ((m = blockRe.exec(text)) !== null) {
    let depth = 1, i = blockRe.lastIndex;
    while (depth > 0 && i < text.length) {
      if (text[i] === '{') depth++;
      if (text[i] === '}') depth--;
      i++;
    }
    const block = text.slice(blockRe.lastIndex, i - 1);
    if (m[1] === 'enum') {
      const values = {};
      for (const v of block.matchAll(/(\w+)\s*=\s*(\d+)\s*;/g)) values[v[2]] = v[1];
      enums[m[2]] = values;
    } else {
      const fields = {};
      for (const f of block.matchAll(/^\s*(repeated\s+|optional\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;/gm)) {
        fields[f[4]] = { type: f[2].split('.').pop(), name: f[3], repeated: !!f[1] && f[1].startsWith('repeated') };
      }
      messages[m[2]] = fields;
    }
  }
  return { messages, enums };
}

function readVarint(buf, pos) {
  let value = 0n, shift = 0n;
  for (;;) {
    if (pos >= buf.length) throw new Refused('envelope: truncated varint');
    const b = buf[pos++];
    value |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [value, pos];
    shift += 7n;
    if (shift > 63n) throw new Refused('envelope: varint too long');
  }
}

const kScalars = new Set(['uint64', 'int64', 'uint32', 'int32', 'bool', 'sint64', 'sint32']);

function decode(buf, typeName, schema) {
  if (typeName === 'Timestamp') {
    const t = decode(buf, '', schema);
    const ms = Number(t['1'] || 0n) * 1000 + Math.floor(Number(t['2'] || 0n) / 1e6);
    return new Date(ms).toISOString();
  }
  const fields = schema.messages[typeName] || {};
  const out = {};
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const number = String(key >> 3n), wire = Number(key & 7n);
    const field = fields[number] || { type: '', name: number };
    let value;
    if (wire === 0) {
      [value, pos] = readVarint(buf, pos);
      if (schema.enums[field.type]) value = schema.enums[field.type][String(value)] || Number(value);
      else if (field.type === 'bool') value = value !== 0n;
      else if (field.type === 'int64') value = String(BigInt.asIntN(64, value));
      else value = String(value);
    } else if (wire === 2) {
      let len;
      [len, pos] = readVarint(buf, pos);
      const end = pos + Number(len);
      if (end > buf.length) throw new Refused('envelope: truncated field');
      const bytes = buf.subarray(pos, end);
      pos = end;
      if (field.type === 'string') value = bytes.toString('utf8');
      else if (field.type === 'bytes') value = bytes.toString('hex');
      else if (schema.messages[field.type] || field.type === 'Timestamp') value = decode(bytes, field.type, schema);
      else if (kScalars.has(field.type)) value = bytes.toString('hex');  // packed
      else value = bytes.toString('hex');
    } else if (wire === 1) { value = buf.subarray(pos, pos + 8).toString('hex'); pos += 8; }
    else if (wire === 5) { value = buf.subarray(pos, pos + 4).toString('hex'); pos += 4; }
    else throw new Refused(`envelope: wire type ${wire}`);
    if (field.repeated) (out[field.name] = out[field.name] || []).push(value);
    else out[field.name] = value;
  }
  return out;
}

// ---- the command line

function main(argv) {
  const flags = {}, args = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i].startsWith('--')) flags[argv[i].slice(2)] = argv[++i];
    else args.push(argv[i]);
  }
  const usage = 'usage: verify.js --key LOG.pub checkpoint NOTE | inclusion PROOF [--checkpoint NOTE]' +
                ' | consistency PROOF [--old NOTE] [--new NOTE] | statement FILE [--checkpoint NOTE]  [--proto ledger.proto]';
  if (!flags.key || args.length !== 2) { console.error(usage); return 2; }
  const vkey = parseVerifierKey(fs.readFileSync(flags.key, 'utf8'));
  const read = (file) => fs.readFileSync(file, 'utf8');
  // The checkpoint to trust: the file the auditor kept, else the one the
  // proof carries (its signature is checked either way).
  const trusted = (flag, carried, size) => {
    const note = flags[flag] ? read(flags[flag]) : (carried && carried.note) || '';
    if (!note) throw new Refused(`no signed checkpoint of tree size ${size}; give --${flag} NOTE`);
    const cp = verifyCheckpoint(note, vkey);
    if (cp.treeSize !== BigInt(size)) throw new Refused(`checkpoint is of size ${cp.treeSize}, the proof of ${size}`);
    return cp;
  };
  const [what, file] = args;
  if (what === 'checkpoint') {
    const cp = verifyCheckpoint(read(file), vkey);
    console.log(JSON.stringify({ ok: true, origin: cp.origin, treeSize: String(cp.treeSize),
                                 root: cp.root.toString('hex'), time: cp.time }));
    return 0;
  }
  const proof = what === 'statement' ? null : JSON.parse(read(file));
  const hashes = (list, what) => (list || []).map((h, i) => {
    const b = strictBase64(h, `${what} ${i}`);
    if (b.length !== 32) throw new Refused(`${what} ${i} is not 32 bytes`);
    return b;
  });
  const protoPath = flags.proto || path.join(__dirname, '..', '..', 'proto', 'storeledger', 'v1', 'ledger.proto');
  const schema = loadSchema(protoPath);
  // One inclusion proof: the leaf hashed here from the proven bytes, the
  // root from the signed checkpoint; returns the decoded envelope.
  const inclusion = (proof) => {
    const size = BigInt(proof.treeSize || 0), position = BigInt(proof.position || 0);
    const cp = trusted('checkpoint', proof.checkpoint, size);
    if (position === 0n || BigInt(proof.leafIndex || 0) !== position - 1n) {
      throw new Refused('leaf index is not position - 1');
    }
    const envelope = strictBase64(proof.envelope || '', 'envelope');
    verifyInclusion(position - 1n, size, leafHash(envelope), hashes(proof.auditPath, 'audit path hash'), cp.root);
    const decoded = decode(envelope, 'Envelope', schema);
    if (decoded.position !== String(position)) throw new Refused('the proven envelope is not at the proof position');
    return { cp, decoded };
  };
  if (what === 'inclusion') {
    const { cp, decoded } = inclusion(proof);
    console.log(JSON.stringify({ ok: true, origin: cp.origin, treeSize: String(proof.treeSize),
                                 position: String(proof.position), envelope: decoded }));
    return 0;
  }
  if (what === 'statement') {
    // `storeledger statement --proofs`: every posting's event proven, and the
    // posting's position and event id the proven envelope's.
    let lines = 0;
    for (const text of fs.readFileSync(file, 'utf8').split('\n')) {
      if (text.trim() === '') continue;
      const { line, proof: p } = JSON.parse(text);
      const { decoded } = inclusion(p);
      const posting = line.posting || {};
      if (String(posting.position) !== decoded.position || posting.eventId !== decoded.event_id) {
        throw new Refused(`statement line ${lines + 1}: the posting is not the proven event`);
      }
      lines++;
    }
    if (lines === 0) throw new Refused('the statement holds no proven lines');
    console.log(JSON.stringify({ ok: true, lines }));
    return 0;
  }
  if (what === 'consistency') {
    const first = trusted('old', proof.firstCheckpoint, BigInt(proof.firstSize || 0));
    const second = trusted('new', proof.secondCheckpoint, BigInt(proof.secondSize || 0));
    verifyConsistency(first.treeSize, second.treeSize, first.root, second.root, hashes(proof.path, 'path hash'));
    console.log(JSON.stringify({ ok: true, origin: first.origin, firstSize: String(first.treeSize),
                                 secondSize: String(second.treeSize) }));
    return 0;
  }
  console.error(usage);
  return 2;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  if (e instanceof Refused) {
    console.error(`verify.js: REFUSED: ${e.message}`);
    process.exitCode = 1;
  } else {
    console.error(`verify.js: ${e.message}`);
    process.exitCode = 2;
  }
}
