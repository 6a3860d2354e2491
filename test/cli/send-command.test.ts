/**
 * `rtcdp send` and `rtcdp profile get` as their own processes, against an embedded node in
 * this process: resends of events without messageIds, files with nothing to send, and
 * lookups by an external id type that the identity settings do not list.
 */
import { join } from 'node:path';
import t from 'tap';
import { startEmbedded } from '../../api/embedded.js';
import { silentLogger } from '../../common/logger.js';
import { runCli } from '../helpers/node-process.js';

t.test('send command - resends, empty sends and unlinked types', async (t) => {
  const dir = t.testdir({
    'no-ids.ndjson': [
      '{"type":"track","userId":"u1","event":"Viewed"}',
      '{"type":"track","userId":"u1","event":"Viewed"}',
      '{"type":"identify","userId":"u1","context":{"externalIds":[{"type":"crm_id","id":"CRM-1","collection":"users","encoding":"none"}]}}',
    ].join('\n'),
    'broken.ndjson': '{"type":"track",\nnot json\n',
  });
  const embedded = await startEmbedded({ dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', logger: silentLogger(), devMode: true });
  t.teardown(() => embedded.stop());
  const server = ['--server', embedded.address];

  const first = await runCli(['send', ...server, join(dir, 'no-ids.ndjson')]);
  t.equal(first.code, 0, `the first send exits 0; stderr: ${first.stderr}`);
  t.match(first.stdout, /accepted\s+3/);
  const again = await runCli(['send', ...server, join(dir, 'no-ids.ndjson')]);
  t.match(again.stdout, /accepted\s+0/, 'a resend of events without messageIds stores nothing');
  t.match(again.stdout, /duplicate\s+3/, 'every event is a duplicate');

  const broken = await runCli(['send', ...server, join(dir, 'broken.ndjson')]);
  t.equal(broken.code, 1, 'a file with nothing to send exits 1');
  t.match(broken.stdout, /client errors\s+2/, 'after the summary');
  t.match(broken.stderr, 'rtcdp: no event of the files could be sent: every one failed the checks above');

  const external = await runCli(['profile', 'get', ...server, '--external', 'crm_id:CRM-1']);
  t.equal(external.code, 1);
  t.match(external.stderr, "no profile found for external id crm_id:CRM-1 in this workspace: identifier type external:crm_id is not in the workspace's identity settings", 'says why the external id finds nothing');
});
