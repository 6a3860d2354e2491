/**
 * Resolves each accepted event to its profile before it enters the log: normalises its
 * identifiers under the workspace's identity settings, and looks up in the identity graph
 * which profile they belong to. In one process, an event that shares an identifier with an
 * earlier one is resolved after it, so related events resolve in the order they arrived
 * (the order of a batch, then of calls), while unrelated events resolve in parallel.
 */
import { KeyedOrder } from '../common/keyed-order.js';
import type { CustomerEvent } from '../profiles/event.js';
import type { Identifier } from '../profiles/identifiers.js';
import { eventIdentifiers } from './event-identifiers.js';
import type { IdentityGraph, MergeNotice } from './identity-graph.js';
import type { QuarantineRecord } from './identity-records.js';
import type { IdentitySettings } from './identity-settings.js';
import { normalizeIdentifier, type IdentifierIssue } from './normalize.js';

export type EventResolution =
  | {
      ok: true;
      profileId: string;
      /** The event's identifiers as resolution used them: normalised, an alias's previousId included, highest priority first. */
      identifiers: Identifier[];
      merges: MergeNotice[];
      quarantined: QuarantineRecord[];
      unlinked: IdentifierIssue[];
    }
  | ({ ok: false } & IdentifierIssue);

export interface EventResolverOptions {
  graph: IdentityGraph;
  settingsFor: (workspace: string) => IdentitySettings;
}

export class EventResolver {
  readonly graph: IdentityGraph;
  readonly #settingsFor: (workspace: string) => IdentitySettings;
  /** Resolutions that share an identifier, keyed by workspace and identifier, run in the order they started. */
  readonly #order = new KeyedOrder();

  constructor(options: EventResolverOptions) {
    this.graph = options.graph;
    this.#settingsFor = options.settingsFor;
  }

  /**
   * Returns an event's linkable identifiers, normalised, highest priority first: those its
   * resolution recorded on it, or, for an event logged without them, those its fields give
   * under the current settings (none when one is invalid).
   */
  identifiersOf(workspace: string, event: CustomerEvent): Identifier[] {
    if (event.identifiers !== undefined) return event.identifiers;
    const found = eventIdentifiers(this.#settingsFor(workspace), event);
    return found.ok ? found.linkable : [];
  }

  /** Returns the profile of an accepted event, or the identifier issue that rejects it. */
  async resolve(workspace: string, event: CustomerEvent): Promise<EventResolution> {
    const settings = this.#settingsFor(workspace);
    const found = eventIdentifiers(settings, event);
    if (!found.ok) return found;
    const previous = checkPreviousId(settings, event);
    if (previous !== undefined) {
      if (settings.invalidIdentifiers === 'reject') return { ok: false, ...previous };
      found.unlinked.push(previous);
    }

    // Registered before any await, so the order of calls is the order of resolution.
    const candidates = previousIdCandidates(event);
    const keys = [...found.linkable, ...candidates].map((identifier) => `${workspace}\u0000${identifier.type}\u0000${identifier.value}`);
    if (candidates.length === 0 && found.linkable.length > 0 && !keys.some((key) => this.#order.busy(key))) {
      const cached = this.graph.resolveCached(workspace, found.linkable);
      if (cached !== undefined) return { ok: true, ...cached, identifiers: found.linkable, unlinked: found.unlinked };
    }

    return this.#order.run(keys, async (): Promise<EventResolution> => {
      const linkable = await this.#withPreviousId(workspace, settings, event, found.linkable);
      if (linkable.length === 0) return noUsableIdentifier(found.unlinked);

      const resolution = await this.graph.resolve(workspace, event.messageId, linkable);
      return { ok: true, ...resolution, identifiers: linkable, unlinked: found.unlinked };
    });
  }

  /**
   * Adds an alias event's previousId to its identifiers: the user_id it names when a
   * profile has that user_id, else the anonymous_id, as Segment's alias links a previous
   * id of either kind to the new userId.
   */
  async #withPreviousId(workspace: string, settings: IdentitySettings, event: CustomerEvent, linkable: Identifier[]): Promise<Identifier[]> {
    if (event.type !== 'alias' || event.previousId === undefined) return linkable;

    const asUser = normalizeIdentifier(settings, { type: 'user_id', value: event.previousId, field: 'previousId' });
    if (asUser.ok && asUser.linkable && (await this.graph.profileOf(workspace, asUser.identifier)) !== undefined) return withIdentifier(settings, linkable, asUser.identifier);

    const asAnonymous = normalizeIdentifier(settings, { type: 'anonymous_id', value: event.previousId, field: 'previousId' });
    return asAnonymous.ok && asAnonymous.linkable ? withIdentifier(settings, linkable, asAnonymous.identifier) : linkable;
  }


}

/**
 * Returns the rejection of an event whose every identifier is invalid or blocked, under
 * keep-unlinked. Such an event names no one: applying it to a profile named after a
 * placeholder such as userId "null" would pile up the events of many people.
 */
function noUsableIdentifier(unlinked: IdentifierIssue[]): EventResolution {
  const reasons = unlinked.map((issue) => issue.message).join('; ');
  return {
    ok: false,
    code: 'NO_USABLE_IDENTIFIER',
    field: unlinked[0]?.field ?? 'userId',
    message: `the event has no identifier that can choose its profile: ${reasons}. Send a valid userId or anonymousId`,
  };
}

/**
 * Returns why an alias event's previousId cannot link profiles (blocked, such as "null", or
 * only whitespace), or undefined when it can or the event has none. It is checked as an
 * anonymous id; a user id has the same rules unless the settings block other values.
 */
function checkPreviousId(settings: IdentitySettings, event: CustomerEvent): IdentifierIssue | undefined {
  if (event.type !== 'alias' || event.previousId === undefined) return undefined;
  const checked = normalizeIdentifier(settings, { type: 'anonymous_id', value: event.previousId, field: 'previousId' });
  if (!checked.ok) return { code: checked.code, field: checked.field, message: checked.message };
  return checked.linkable ? undefined : checked.issue;
}

/** Returns the identifiers an alias event's previousId may name, as sent: its resolution waits for earlier events of either. */
function previousIdCandidates(event: CustomerEvent): Identifier[] {
  if (event.type !== 'alias' || event.previousId === undefined) return [];
  return [
    { type: 'user_id', value: event.previousId },
    { type: 'anonymous_id', value: event.previousId },
  ];
}

function withIdentifier(settings: IdentitySettings, identifiers: Identifier[], identifier: Identifier): Identifier[] {
  if (identifiers.some((known) => known.type === identifier.type && known.value === identifier.value)) return identifiers;
  const rank = (type: string) => settings.types.get(type)?.rank ?? Infinity;
  return [...identifiers, identifier].sort((a, b) => rank(a.type) - rank(b.type));
}
