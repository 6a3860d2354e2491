import t from 'tap';
import { execFile } from 'node:child_process';
import { type AddressInfo, createServer } from 'node:net';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runCli(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const env = { ...process.env, RTCDP_DEBUG: '' };
    execFile(process.execPath, ['bin/rtcdp.js', ...args], { cwd: ROOT, env }, (error, stdout, stderr) => {
      let code = 0;
      if (error !== null) {
        code = typeof error.code === 'number' ? error.code : -1;
      }
      resolve({ code, stdout, stderr });
    });
  });
}

const USAGE_ERRORS: Array<[string[], string]> = [
  [['send', '--server', 'x:99999', 'f'], 'invalid --server "x:99999": the port must be an integer from 1 to 65535'],
  [['send', '--server', 'localhost', 'f'], 'invalid --server "localhost": expected HOST:PORT, for example 127.0.0.1:50051'],
  [['send', 'f'], 'cannot read f: no such file or directory'],
  [['send', '--server', '127.0.0.1:1'], "missing required argument 'file'; the command's --help lists its arguments"],
  [['send', '--server', '127.0.0.1:1', '--batch-size', '0', 'f'], 'invalid --batch-size "0": expected an integer from 1 to 10000'],
  [['send', '--server', '127.0.0.1:1', '--concurrency', 'many', 'f'], 'invalid --concurrency "many": expected an integer from 1 to 256'],
  [['send', '--server', '127.0.0.1:1', 'no-such-file.ndjson'], 'cannot read no-such-file.ndjson: no such file or directory'],
  [['dev', '--port', '70000'], 'invalid --port "70000": expected an integer from 0 to 65535'],
  [['dev', '--port', '80.5'], 'invalid --port "80.5": expected an integer from 0 to 65535'],
  [['dev', '--port', '-1'], 'invalid --port "-1": expected an integer from 0 to 65535'],
  [['dev', '--log-level', 'loud'], 'invalid --log-level "loud": expected one of trace, debug, info, warn, error, fatal, silent'],
  [['dev', '--limit', 'maxDepth=0'], 'invalid --limit "maxDepth=0": event limit maxDepth must be a positive integer, received 0'],
  [['profile', 'explain', 'emial=a@example.com', 'user_id=u1'], 'invalid first identifier "emial=a@example.com": TYPE must be one of user_id, anonymous_id, email, phone, device_id, or external:NAME for an external id, as in external:crm_id=42'],
  [['dev', '--limit', 'maxEventBytes=abc'], 'invalid --limit "maxEventBytes=abc": expected NAME=N with N a positive integer, such as maxEventBytes=65536'],
  [['dev', '--limit', 'maxDeph=3'], 'invalid --limit "maxDeph=3": unknown event limit "maxDeph", expected one of maxEventBytes, maxBatchBytes, maxMessageIdLength, maxKeysPerObject, maxTotalKeys, maxDepth, maxStringLength, maxIdentifierLength, maxFutureSkewMs'],
  [['dev', '--write-key', 'secret'], 'invalid --write-key: expected KEY=WORKSPACE with a non-empty key and workspace'],
  [['dev', '--write-key', 'k1=a', '--write-key', 'k1=b'], 'invalid --write-key: the same key is given for workspaces "a" and "b"'],
  [['dev', '--load', 'no-such-file.csv'], 'cannot read no-such-file.csv: no such file or directory'],
  [
    ['profile', 'get', '--server', '127.0.0.1:1'],
    'missing identifier: give exactly one of --user-id, --anonymous-id, --email, --phone, --device-id, --external',
  ],
  [
    ['profile', 'get', '--server', '127.0.0.1:1', '--user-id', 'u1', '--email', 'a@example.com'],
    '2 identifiers given: give exactly one of --user-id, --anonymous-id, --email, --phone, --device-id, --external',
  ],
  [['profile', 'get', '--server', '127.0.0.1:1', '--external', 'crm'], 'invalid --external "crm": expected TYPE:ID, for example crm_id:12345'],
  [['profile', 'get', '--server', '127.0.0.1:1', '--user-id', 'u1', '--output', 'xml'], 'invalid --output "xml": expected one of table, json'],
  [['profile', 'events', '--server', '127.0.0.1:1', '--user-id', 'u1', '--page-size', '1001'], 'invalid --page-size "1001": expected an integer from 1 to 1000'],
  [['node', '--nats', 'nats://127.0.0.1:1', '--webhook-lease-ttl-ms', '50'], 'invalid --webhook-lease-ttl-ms "50": expected an integer from 100 to 3600000'],
  [['node', '--nats', 'nats://127.0.0.1:1', '--webhook-lease-renew-interval-ms', 'soon'], 'invalid --webhook-lease-renew-interval-ms "soon": expected an integer from 10 to 3600000'],
  [['node', '--nats', 'nats://127.0.0.1:1', '--limit', 'maxEventBytes=x'], 'invalid --limit "maxEventBytes=x": expected NAME=N with N a positive integer, such as maxEventBytes=65536'],
  [['node', '--nats', 'nats://127.0.0.1:1', '--node-id', 'bad id'], 'invalid --node-id "bad id": expected 1-64 characters of A-Z, a-z, 0-9, "_" and "-"'],
  [['node', '--nats', 'nats://127.0.0.1:1', '--node-id', 'n'.repeat(65)], `invalid --node-id "${'n'.repeat(65)}": expected 1-64 characters of A-Z, a-z, 0-9, "_" and "-"`],
  [['node', '--nats', 'nats://127.0.0.1:1', '--replicas', '2'], 'invalid --replicas "2": expected one of 1, 3, 5'],
  [['node', '--nats', 'nats://127.0.0.1:1', '--advertise', 'foo'], 'invalid --advertise "foo": expected HOST:PORT, for example 127.0.0.1:50051'],
  [['node', '--nats', 'nats://127.0.0.1:1', '--advertise', ':50051'], 'invalid --advertise ":50051": expected HOST:PORT, for example 127.0.0.1:50051'],
  [['node', '--nats', 'nats://127.0.0.1:1', '--advertise', '10.0.1.5:99999'], 'invalid --advertise "10.0.1.5:99999": the port must be an integer from 1 to 65535'],
  [['frobnicate'], "unknown command 'frobnicate'"],
];

for (const [args, message] of USAGE_ERRORS) {
  t.test(`usage error: ${args.join(' ')}`, async (t) => {
    const result = await runCli(args);

    t.equal(result.code, 2, 'exit code');
    t.equal(result.stderr, `rtcdp: ${message}\n`, 'one line on stderr');
    t.equal(result.stdout, '', 'nothing on stdout');
  });
}

t.test('webhook lease timings reach the node', async (t) => {
  const result = await runCli(['node', '--nats', 'nats://127.0.0.1:1', '--data', t.testdir(), '--webhook-lease-ttl-ms', '1000', '--webhook-lease-renew-interval-ms', '900']);

  t.equal(result.code, 1);
  t.match(result.stderr, 'webhookLeaseRenewIntervalMs must be at most (webhookLeaseTtlMs - 333 ms stall margin) / 2 (333 ms)');
});

t.test('write key never echoed', async (t) => {
  const result = await runCli(['dev', '--write-key', 'sk_live_secret']);

  t.equal(result.code, 2);
  t.notMatch(result.stderr, /sk_live_secret/);
});

t.test('help lists options with defaults', async (t) => {
  const send = await runCli(['send', '--help']);
  t.equal(send.code, 0);
  t.match(send.stdout, /--batch-size <events>\s+maximum events per batch[\s\S]*\(default: 500\)/);
  t.match(send.stdout, /--concurrency <batches>[\s\S]*\(default: 8\)/);
  t.match(send.stdout, /Exit codes: 0 when every batch was acknowledged/);

  const dev = await runCli(['dev', '--help']);
  t.equal(dev.code, 0);
  t.match(dev.stdout, /--port <port>\s+TCP port to listen on, 0 for any free port\s+\(default: 50051\)/);
  t.match(dev.stdout, /--data <dir>[\s\S]*\(default: ".rtcdp-data"\)/);

  const events = await runCli(['profile', 'events', '--help']);
  t.equal(events.code, 0);
  t.match(events.stdout, /--page-size <events>/);
  t.match(events.stdout, /--output <format>[\s\S]*\(default: "table"\)/);
});

/** Returns a local port that nothing listens on, by binding a free port and closing it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

t.test('profile get reports unreachable server', async (t) => {
  const port = await closedPort();
  const result = await runCli(['profile', 'get', '--server', `127.0.0.1:${port}`, '--user-id', 'u1']);

  t.equal(result.code, 1);
  t.match(result.stderr, `rtcdp: cannot reach rtcdp at 127.0.0.1:${port}: `);
  t.match(result.stderr, 'Check --server, or start a node there (npm start, or rtcdp dev)', 'says what to check');
  t.equal(result.stderr.trim().split('\n').length, 1, 'one line, no stack trace');
});

t.test('profile get takes an external id as TYPE:ID or TYPE=ID', async (t) => {
  const port = await closedPort();
  for (const external of ['crm_id:CRM=42', 'crm_id=CRM:42']) {
    const result = await runCli(['profile', 'get', '--server', `127.0.0.1:${port}`, '--external', external]);
    t.equal(result.code, 1, `${external} parses, and the call fails only for the closed port`);
    t.match(result.stderr, 'cannot reach rtcdp');
  }
});

t.test('dev on a busy port fails before it creates its data directory', async (t) => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => busy.close());
  const { port } = busy.address() as AddressInfo;
  const dataDir = path.join(t.testdir(), 'data');

  const result = await runCli(['dev', '--data', dataDir, '--port', String(port)]);
  t.equal(result.code, 2, 'a usage error');
  t.equal(result.stderr, `rtcdp: cannot listen on 127.0.0.1:${port}: the port is in use. Pick another --port, or --port 0 for any free port\n`, 'one line and no log of gRPC');
  t.notOk(existsSync(dataDir), 'the data directory is not created');
});
