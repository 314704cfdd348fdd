#!/usr/bin/env node
// A storeledgerd client in Node.js (@grpc/grpc-js + @grpc/proto-loader):
// subscribes to the log from position 0 (catch-up, then live), executes a
// few commands as a writer, and stops once the subscription has delivered
// the last event those commands wrote.
//
//   node client.js --server 127.0.0.1:7450 --token WRITER_TOKEN \
//       [--subscribe-token AUDITOR_TOKEN] [--store node-s1] [--tls-ca ca.pem]
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function parseArgs(argv) {
  const args = { server: '127.0.0.1:7450', store: 'node-s1' };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i];
    if (!name.startsWith('--') || i + 1 >= argv.length) {
      throw new Error(`bad argument ${name}; see the usage at the top of client.js`);
    }
    args[name.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = argv[i + 1];
  }
  if (!args.token) throw new Error('--token (a writer token) is required');
  args.subscribeToken = args.subscribeToken || args.token;
  return args;
}

const PROTO_DIR = path.join(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync(
  path.join(PROTO_DIR, 'storeledger', 'v1', 'service.proto'),
  {
    includeDirs: [PROTO_DIR],
    keepCase: false, // lowerCamel field names, as DESIGN.md's JSON
    longs: String, // uint64 positions as strings: no precision loss
    enums: String, // 'ACCEPTED', 'MINI_STORE', ...
    defaults: true,
    oneofs: true,
  });
const v1 = grpc.loadPackageDefinition(definition).storeledger.v1;

function bearer(token) {
  const metadata = new grpc.Metadata();
  metadata.add('authorization', `Bearer ${token}`);
  return metadata;
}

function timestamp(iso) {
  return { seconds: String(Math.floor(Date.parse(iso) / 1000)), nanos: 0 };
}

function execute(client, token, command) {
  return new Promise((resolve, reject) => {
    client.Execute(command, bearer(token), (error, result) => {
      if (error) reject(error); else resolve(result);
    });
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const credentials = args.tlsCa
    ? grpc.credentials.createSsl(fs.readFileSync(args.tlsCa))
    : grpc.credentials.createInsecure();
  const client = new v1.Ledger(args.server, credentials);
  const store = args.store;

  // Subscribe first: everything already in the log, then the live appends.
  let lastWanted = null; // the last position our commands wrote
  let lastSeen = 0;
  const subscription = client.Subscribe({ fromPosition: '0' }, bearer(args.subscribeToken));
  const done = new Promise((resolve, reject) => {
    subscription.on('data', (envelope) => {
      lastSeen = Number(envelope.position);
      console.log(`subscribed: position ${envelope.position} ${envelope.eventType} ${envelope.streamId}`);
      if (lastWanted !== null && lastSeen >= lastWanted) {
        subscription.cancel();
        resolve();
      }
    });
    subscription.on('error', (error) => {
      if (error.code === grpc.status.CANCELLED) resolve(); else reject(error);
    });
    subscription.on('end', resolve);
  });

  const commands = [
    {
      commandId: `${store}-open`, occurredAt: timestamp('2024-06-01T10:00:00+08:00'),
      openStore: { storeId: store, merchantId: 'node-m1', kind: 'MINI_STORE', subject: 'ENTERPRISE' },
    },
    {
      commandId: `${store}-p1`, occurredAt: timestamp('2024-06-02T10:00:00+08:00'),
      addProduct: { storeId: store, productId: 'p1', kind: 'PHYSICAL', origin: 'OWN', categoryId: 'c', priceFen: '1990' },
    },
    {
      commandId: `${store}-p2`, occurredAt: timestamp('2024-06-02T10:05:00+08:00'),
      addProduct: { storeId: store, productId: 'p2', kind: 'PHYSICAL', origin: 'OWN', categoryId: 'c', priceFen: '2990' },
    },
  ];
  let last = 0;
  for (const command of commands) {
    const result = await execute(client, args.token, command);
    console.log(`execute ${result.commandId}: ${result.status}` +
      (result.status === 'ACCEPTED' ? ` positions ${result.firstPosition}..${result.lastPosition}` : ` ${result.rule} ${result.message}`) +
      (result.replayed ? ' (replayed)' : ''));
    last = Math.max(last, Number(result.lastPosition));
  }
  lastWanted = last;
  if (lastSeen >= lastWanted) subscription.cancel();
  await done;
  client.close();
}

main().catch((error) => {
  console.error(`storeledger node client: ${error.code !== undefined ? grpc.status[error.code] + ': ' : ''}${error.details || error.message}`);
  process.exit(1);
});
