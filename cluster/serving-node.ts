/**
 * The operations the gRPC services need from a node. The embedded RtcdpNode and the cluster node
 * both provide it, so the API layer is the same in both modes.
 */
import type { DefinitionStore } from '../decisions/definitions/definition-store.js';
import type { SourceFile } from '../decisions/definitions/document.js';
import type { DefinitionTestReport } from '../decisions/evaluation/definition-test.js';
import type { CustomerEvent, RawEvent } from '../profiles/event.js';
import type { Identifier } from '../profiles/identifiers.js';
import type { ActivationPage, ListActivationsOptions } from '../profiles/activation-log.js';
import type { DecisionReceipt } from '../profiles/decision-state.js';
import type { JsonValue } from '../profiles/event.js';
import type { ProfileView } from '../profiles/profile.js';
import type { IdentityOperations } from './identity-admin.js';
import type { IngestResult } from './ingest-batch.js';

export interface ProfileEventsPage {
  /** Newest first, each with `profileId` set to the profile whose history contains it: the listed profile or one merged into it. */
  events: CustomerEvent[];
  /** Empty on the last page. */
  nextPageToken: string;
  /**
   * Cluster mode: members that did not return their stored history of the profile, so the
   * page misses the events that only they stored. Always empty in embedded mode.
   */
  unavailableNodes: string[];
  /**
   * Cluster mode: nodes that owned the profile's shard and have left the cluster, so the page
   * misses the events that only they stored. Always empty in embedded mode.
   */
  departedNodes: string[];
}

/** Reads a workspace's activation log; ActivationLog implements it. */
export interface ActivationFeed {
  list(workspace: string, options: ListActivationsOptions): Promise<ActivationPage>;
  /** Resolves once an activation after `afterSequence` is visible, or when `signal` aborts. */
  waitBeyond(workspace: string, afterSequence: number, signal: AbortSignal): Promise<void>;
}

/** The options of a definition test: its sample of profiles and how they are replayed. */
export interface DefinitionTestRequest {
  /** Test the first N profiles of the workspace in the order of their snapshot keys; 1 to 10,000, default 100. */
  profiles?: number;
  /** Test the profiles of these identifiers instead, at most 10,000. Exclusive with `profiles`. */
  identifiers?: Identifier[];
  /** Count the stored definitions that the files do not contain as deleted, as an apply with prune would. */
  prune?: boolean;
  /** Evaluation time of both replays, ms since the epoch. Default: the time of the call. */
  nowMs?: number;
  /** Events of one profile's history replayed at most. Default 100,000. */
  maxHistoryEvents?: number;
  signal?: AbortSignal;
}

/** A Decide call's input besides the profile. */
export interface DecideInput {
  /** '' for none: then every rule is a candidate. */
  channel: string;
  context: Record<string, JsonValue>;
}

/** A Decide call as the shard's owner applies it: with its request id and decision time fixed by the receiving node. */
export interface DecisionInput extends DecideInput {
  requestId: string;
  nowMs: number;
}

export interface ServingNode {
  /** Validates and appends a batch; resolves with one result per event once the accepted ones are durable. */
  ingest(workspace: string, raws: RawEvent[]): Promise<IngestResult[]>;
  /** Returns the profile holding `identifier`, reflecting every event acknowledged before the call. */
  getProfile(workspace: string, identifier: Identifier): Promise<ProfileView>;
  /** Decides the next best action for the profile, in its actor; optional for nodes without decisions. */
  decide?(workspace: string, identifier: Identifier, request: DecideInput): Promise<DecisionReceipt>;
  /** Returns the receipts of the profile's most recent decisions, newest first. */
  listReceipts?(workspace: string, identifier: Identifier): Promise<DecisionReceipt[]>;
  /** Returns a page of the profile's events, newest first. */
  listProfileEvents(workspace: string, identifier: Identifier, page?: { pageSize?: number; pageToken?: string }): Promise<ProfileEventsPage>;
  /** The node's definition store. The API serves DefinitionService only when the node has one. */
  readonly definitionStore?: DefinitionStore;
  /**
   * Dry-runs proposed definitions on stored profiles. Only a node that keeps every profile's
   * full history (the embedded node) has it. Without it, DefinitionService fails the call with FAILED_PRECONDITION.
   */
  testDefinitions?(workspace: string, files: readonly SourceFile[], request?: DefinitionTestRequest): Promise<DefinitionTestReport>;
  /** The node's activation log. The API serves ActivationService only when the node has one. */
  readonly activations?: ActivationFeed;
  /** Quarantine decisions and explanations of the identity graph. The API serves IdentityService only when the node has them. */
  readonly identityAdmin?: IdentityOperations;
}
