/**
 * Fuzzy matching on live events: a profile whose event describes a person (names and a date
 * of birth, postcode, phone or email) is filed in the shared blocking index, in the identity
 * graph's store, and scored against its candidates in worker threads. Every node of a
 * cluster files into the same index, so candidates come from the events any node accepted,
 * and the index outlives restarts. Ingestion never waits for it. A pair above the
 * auto-merge threshold merges through the identity graph, like an event that links two
 * profiles, so its result reaches the actors as a merge command in the log. A pair in the
 * review band is filed as a FUZZY_MATCH suggestion beside the quarantined links.
 */
import { Lifecycle } from '../common/lifecycle.js';
import type { Logger } from '../common/logger.js';
import type { CustomerEvent } from '../profiles/event.js';
import type { KvStore } from '../storage/kv-store.js';
import type { IdentityGraph, MergeNotice } from './identity-graph.js';
import type { MatchModel } from './matching/fellegi-sunter.js';
import { PersonMatcher, type ScoredPair } from './matching/person-matcher.js';
import { personOf } from './person-traits.js';
import { SharedBlockingIndex } from './shared-blocking-index.js';

export interface OnlineMatchingOptions {
  /** A matcher that is not started yet; this component starts and closes it. */
  matcher: PersonMatcher;
  graph: IdentityGraph;
  /** The store of the shared blocking index: the identity graph's. */
  kv: KvStore;
  /** Appends the merge commands of merges this component made, and marks them announced. */
  announce: (merges: MergeNotice[]) => Promise<void>;
  logger: Logger;
  /**
   * Profiles waiting to be matched, at most. Beyond it an observed profile is skipped with a
   * warning and matched again on its next event with person traits. Default 10,000.
   */
  maxQueuedProfiles?: number;
}

/** The online matching settings of a node: the model to score with and the matcher's options. */
export interface OnlineMatchingSettings {
  /** Fellegi-Sunter parameters, such as the `model` of a report.json of `rtcdp identity match`. */
  model: MatchModel;
  /** Worker threads. Default: the machine's available parallelism. */
  workers?: number;
  /** Probability at or above which a pair merges. Default 0.95. */
  minMatchProbability?: number;
  /** Probability at or above which a pair is filed for review. Default 0.5. */
  minReviewProbability?: number;
  maxQueuedProfiles?: number;
}

/** Creates the online matching of a node, or undefined without settings. */
export function createOnlineMatching(
  settings: OnlineMatchingSettings | undefined,
  parts: Pick<OnlineMatchingOptions, 'graph' | 'kv' | 'announce' | 'logger'>,
): OnlineMatching | undefined {
  if (settings === undefined) return undefined;
  const { model, workers, minMatchProbability, minReviewProbability, maxQueuedProfiles } = settings;
  const matcher = new PersonMatcher({ model, workers, minMatchProbability, minReviewProbability, logger: parts.logger });
  return new OnlineMatching({ ...parts, matcher, maxQueuedProfiles });
}

export interface OnlineMatchingStats {
  observed: number;
  skipped: number;
  scoredPairs: number;
  merges: number;
  suggestions: number;
  failures: number;
}

export class OnlineMatching {
  readonly #options: OnlineMatchingOptions;
  readonly #lifecycle: Lifecycle;
  readonly #maxQueued: number;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #index: SharedBlockingIndex;
  /** The revision of each profile's person fields that the matcher holds. */
  readonly #loaded = new Map<string, number>();
  readonly #stats: OnlineMatchingStats = { observed: 0, skipped: 0, scoredPairs: 0, merges: 0, suggestions: 0, failures: 0 };

  constructor(options: OnlineMatchingOptions) {
    this.#options = options;
    this.#lifecycle = new Lifecycle('online matching', options.logger);
    this.#maxQueued = options.maxQueuedProfiles ?? 10_000;
    this.#index = new SharedBlockingIndex({ kv: options.kv, maxBlockSize: options.matcher.maxBlockSize, logger: options.logger });
  }

  async start(): Promise<void> {
    this.#lifecycle.set('starting');
    await this.#options.matcher.start();
    this.#lifecycle.set('running');
  }

  stats(): OnlineMatchingStats {
    return { ...this.#stats };
  }

  /** Matches the profile of an acknowledged event in the background when the event describes a person. */
  observe(workspace: string, profileId: string, event: CustomerEvent): void {
    if (this.#lifecycle.state !== 'running') return;
    const person = personOf(event);
    if (person === undefined) return;

    this.#stats.observed += 1;
    if (this.#inFlight.size >= this.#maxQueued) {
      this.#stats.skipped += 1;
      this.#options.logger.warn({ workspace, profileId, queued: this.#inFlight.size }, 'online matching is behind; profile skipped until its next event with person traits');
      return;
    }

    const run = this.#match(workspace, profileId, person).catch((error: unknown) => {
      this.#stats.failures += 1;
      this.#options.logger.error({ err: error, workspace, profileId }, 'online matching failed for a profile');
    });
    this.#inFlight.add(run);
    void run.finally(() => this.#inFlight.delete(run));
  }

  /** Resolves once every profile observed so far has been matched and its outcome written. */
  async settled(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight]);
  }

  /** Stops at once: pending scores are rejected and the workers terminated. */
  async abort(): Promise<void> {
    if (this.#lifecycle.state !== 'running') return;
    this.#lifecycle.set('draining', { forced: true });
    await this.#options.matcher.close({ force: true });
    this.#lifecycle.set('stopped', { forced: true, ...this.#stats });
  }

  /** Waits for the matches in progress, then closes the matcher's workers. */
  async stop(): Promise<void> {
    if (this.#lifecycle.state !== 'running') return;
    this.#lifecycle.set('draining');
    await this.settled();
    await this.#options.matcher.close();
    this.#lifecycle.set('stopped', { ...this.#stats });
  }

  async #match(workspace: string, profileId: string, person: NonNullable<ReturnType<typeof personOf>>): Promise<void> {
    const matcher = this.#options.matcher;
    const others = await this.#index.add(workspace, profileId, person, matcher.blockingKeys(person));
    if (others.length === 0) return;

    const id = matcherId(workspace, profileId);
    matcher.add(id, person);
    // Candidates filed by other nodes, or before a restart, are loaded into the matcher's workers once per change.
    for (const other of others) {
      const otherId = matcherId(workspace, other.profileId);
      if (this.#loaded.get(otherId) === other.revision) continue;
      matcher.add(otherId, other.person);
      this.#loaded.set(otherId, other.revision);
    }
    this.#loaded.delete(id);

    const scored = await matcher.score(others.map((other) => [id, matcherId(workspace, other.profileId)] as const));
    this.#stats.scoredPairs += scored.length;
    for (const pair of scored) await this.#decide(workspace, pair);
  }

  async #decide(workspace: string, pair: ScoredPair): Promise<void> {
    if (pair.decision === 'non-match') return;
    const [a, b] = [profileOf(pair.a), profileOf(pair.b)];
    const [rootA, rootB] = await Promise.all([this.#options.graph.survivorOf(workspace, a), this.#options.graph.survivorOf(workspace, b)]);
    if (rootA === rootB) return;

    const conflict = pair.decision === 'match' ? await this.#options.graph.mergeConflictOf(workspace, rootA, rootB) : undefined;
    if (pair.decision === 'review' || conflict !== undefined) {
      const detail = conflict === undefined ? 'in the review band' : `above the merge threshold, but ${conflict}`;
      if ((await this.#options.graph.suggestMatch(workspace, rootA, rootB, pair.probability, detail)) !== undefined) this.#stats.suggestions += 1;
      return;
    }

    const cause = { messageId: `fuzzy-match:${[rootA, rootB].sort().join('|')}`, rule: 'fuzzy-match' as const, atMs: Date.now() };
    const merges = await this.#options.graph.mergeProfiles(workspace, rootA, rootB, cause);
    await this.#options.announce(merges);
    this.#stats.merges += 1;
    this.#options.logger.info({ workspace, profiles: [rootA, rootB], probability: pair.probability, weight: pair.weight }, 'profiles merged by fuzzy match');
  }
}

/** Returns the matcher's id of a profile: blocking keys do not include the workspace, so the id does. */
function matcherId(workspace: string, profileId: string): string {
  return `${workspace}\u0000${profileId}`;
}

function profileOf(id: string): string {
  return id.slice(id.indexOf('\u0000') + 1);
}
