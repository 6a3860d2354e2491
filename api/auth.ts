import type { Metadata } from '@grpc/grpc-js';
import { UnauthenticatedError } from '../cluster/errors.js';

export const DEFAULT_WORKSPACE = 'default';

export interface AuthOptions {
  /** Write key to workspace. */
  writeKeys: Map<string, string>;
  /** Calls without a key go to the "default" workspace. Never on in production. */
  devMode: boolean;
}

/**
 * Resolves the workspace of a call from its write key: metadata "authorization: Bearer KEY"
 * or "x-rtcdp-write-key: KEY". The workspace never comes from the request body.
 */
export function workspaceOf(metadata: Metadata, options: AuthOptions): string {
  const key = writeKeyOf(metadata);
  if (key === undefined) {
    if (options.devMode) return DEFAULT_WORKSPACE;
    throw new UnauthenticatedError('missing write key: send metadata "authorization: Bearer <write key>"');
  }

  const workspace = options.writeKeys.get(key);
  if (workspace !== undefined) return workspace;
  if (options.writeKeys.size === 0 && options.devMode) {
    throw new UnauthenticatedError(`unknown write key${keyHint(key)}: this node has no write keys, and in dev mode it takes calls without one`);
  }
  throw new UnauthenticatedError(`unknown write key${keyHint(key)}`);
}

/** Returns ` ending in "LAST4"` for a key of 12 or more characters and '' for a shorter one, so a short key is never echoed whole. */
function keyHint(key: string): string {
  return key.length >= 12 ? ` ending in "${key.slice(-4)}"` : '';
}

function writeKeyOf(metadata: Metadata): string | undefined {
  const authorization = metadata.get('authorization')[0];
  if (typeof authorization === 'string' && /^bearer\s+/i.test(authorization)) return authorization.replace(/^bearer\s+/i, '').trim();

  const header = metadata.get('x-rtcdp-write-key')[0];
  if (typeof header === 'string' && header !== '') return header;
  return undefined;
}
