/**
 * `rtcdp decide` and `rtcdp decisions receipts` as their own processes, against an embedded
 * node in this process.
 */
import t from 'tap';
import { startEmbedded } from '../../api/embedded.js';
import { silentLogger } from '../../common/logger.js';
import { DefinitionRegistry } from '../../decisions/definitions/definition-registry.js';
import { runCli } from '../helpers/node-process.js';

const RULE = `apiVersion: rtcdp/v1
kind: DecisionRule
metadata: { name: welcome }
spec:
  action: show_welcome
  channels: [web]
  priority: '1.0'
`;

t.test('decision commands - decide and receipts', async (t) => {
  const embedded = await startEmbedded({ dataDir: t.testdir(), port: 0, host: '127.0.0.1', logger: silentLogger(), devMode: true });
  t.teardown(() => embedded.stop());
  await new DefinitionRegistry(embedded.node.definitionStore).apply('default', [{ name: 'rules.yaml', content: RULE }]);
  await embedded.node.ingest('default', [{ type: 'track', event: 'Viewed', userId: 'u1', messageId: 'm1' }]);
  const target = ['--server', embedded.address, '--user-id', 'u1'];

  const web = await runCli(['decide', ...target, '--channel', 'web']);
  t.equal(web.code, 0, `decide exits 0; stderr: ${web.stderr}`);
  t.match(web.stdout, /on channel web, from a Decide call: welcome v1 -> show_welcome/);
  t.match(web.stdout, /RULE\s+VERSION\s+OUTCOME\s+PRIORITY\s+DETAIL/, 'the candidates as a table');

  const sms = await runCli(['decide', ...target, '--channel', 'sms']);
  t.equal(sms.code, 0);
  t.match(sms.stdout, /on channel sms, from a Decide call: no rule chosen/);
  t.match(sms.stdout, '(no candidates: no decision rule of the workspace answers channel sms;', 'says why no rule was considered');
  t.notMatch(sms.stdout, /RULE\s+VERSION/, 'no empty table');

  const receipts = await runCli(['decisions', 'receipts', ...target]);
  t.equal(receipts.code, 0);
  const blocks = receipts.stdout.trimEnd().split('\n\n');
  t.equal(blocks.length, 2, 'one receipt per decision');
  t.match(blocks[0], 'on channel sms', 'newest first');
  t.match(blocks[1], 'welcome v1 -> show_welcome');
});
