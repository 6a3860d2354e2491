/**
 * The operations the gRPC services need from a node. The embedded RtcdpNode and the cluster node
 * both provide it, so the API layer is the same in both modes.
 */
import type { DefinitionStore } from '../decisions/definitions/definition-store.js';
import type { CustomerEvent, RawEvent } from '../profiles/event.js';
import type { Identifier } from '../profiles/identifiers.js';
import type { ActivationPage, ListActivationsOptions } from '../profiles/activation-log.js';
import type { ProfileView } from '../profiles/profile.js';
import type { IngestResult } from './ingest-batch.js';

export interface ProfileEventsPage {
  events: CustomerEvent[];
  /** Empty on the last page. */
  nextPageToken: string;
}

/** Reads a workspace's activation log; ActivationLog implements it. */
export interface ActivationFeed {
  list(workspace: string, options: ListActivationsOptions): Promise<ActivationPage>;
  /** Resolves once an activation after `afterSequence` is visible, or when `signal` aborts. */
  waitBeyond(workspace: string, afterSequence: number, signal: AbortSignal): Promise<void>;
}

export interface ServingNode {
  /** Validates and appends a batch; resolves with one result per event once the accepted ones are durable. */
  ingest(workspace: string, raws: RawEvent[]): Promise<IngestResult[]>;
  /** Returns the profile holding `identifier`, reflecting every event acknowledged before the call. */
  getProfile(workspace: string, identifier: Identifier): Promise<ProfileView>;
  /** Returns a page of the profile's events, newest first. */
  listProfileEvents(workspace: string, identifier: Identifier, page?: { pageSize?: number; pageToken?: string }): Promise<ProfileEventsPage>;
  /** The node's definition store. The API serves DefinitionService only when the node has one. */
  readonly definitionStore?: DefinitionStore;
  /** The node's activation log. The API serves ActivationService only when the node has one. */
  readonly activations?: ActivationFeed;
}
