/**
 * Keys of the cluster's webhook bucket (`rtcdp-webhooks`). NATS KV keys may contain only
 * `-/_=.a-zA-Z0-9`, with dots between non-empty tokens, so every workspace id and
 * destination name becomes one token through encodeKeyToken:
 *
 * - `lease.<workspace>.<destination>`: the delivery lease (a KvLeaseRecord)
 * - `cursor.<workspace>.<destination>`: the cursor (a KvCursorRecord)
 * - `dead-letter.<workspace>.<destination>.<first sequence, 15 digits>`: a dead letter
 * - `replay-request.<workspace>.<destination>`: rewritten after each replay request, so the
 *   delivering node lists the dead letters again only when its revision changed
 * - `attempts.<workspace>.<destination>`: how many attempts of the next batch failed (a
 *   FailedAttemptsRecord), so the node that delivers next counts on
 */
import { padSequence } from '../../storage/keys.js';

/** Characters that a token keeps as they are. `=` is not among them, because it starts an escape. */
const PLAIN_CHARACTER = /[A-Za-z0-9_-]/;
const TOKEN_PATTERN = /^(?:[A-Za-z0-9_-]|=[0-9A-F]{2})+$/;

/**
 * Encodes a non-empty text as one KV key token. Letters, digits, `_` and `-` stay as they
 * are, and every other UTF-8 byte becomes `=` and two upper-case hex digits, so the
 * encoding is reversible. Workspace ids (`[a-z0-9][a-z0-9_-]{0,63}`) and destination names
 * (`[A-Za-z0-9_-]{1,64}`) need no escape and keep their own spelling.
 */
export function encodeKeyToken(text: string): string {
  if (text === '') throw new RangeError('a KV key token cannot be empty');

  let token = '';
  for (const character of text) {
    if (PLAIN_CHARACTER.test(character)) {
      token += character;
      continue;
    }
    for (const byte of Buffer.from(character, 'utf8')) token += `=${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return token;
}

/** Decodes a token that encodeKeyToken wrote. Throws RangeError for any other text. */
export function decodeKeyToken(token: string): string {
  if (!TOKEN_PATTERN.test(token)) throw new RangeError(`invalid KV key token ${JSON.stringify(token)}`);

  const bytes: number[] = [];
  let plain = '';
  const flush = () => {
    plain += Buffer.from(bytes).toString('utf8');
    bytes.length = 0;
  };
  for (let i = 0; i < token.length; i++) {
    if (token[i] === '=') {
      bytes.push(Number.parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      flush();
      plain += token[i];
    }
  }
  flush();
  return plain;
}

function scope(workspace: string, destination: string): string {
  return `${encodeKeyToken(workspace)}.${encodeKeyToken(destination)}`;
}

export const webhookKeys = {
  lease: (workspace: string, destination: string) => `lease.${scope(workspace, destination)}`,
  cursor: (workspace: string, destination: string) => `cursor.${scope(workspace, destination)}`,
  deadLetter: (workspace: string, destination: string, firstSequence: number) => `dead-letter.${scope(workspace, destination)}.${padSequence(firstSequence)}`,
  deadLetterPrefix: (workspace: string, destination: string) => `dead-letter.${scope(workspace, destination)}.`,
  replayRequest: (workspace: string, destination: string) => `replay-request.${scope(workspace, destination)}`,
  attempts: (workspace: string, destination: string) => `attempts.${scope(workspace, destination)}`,
};
