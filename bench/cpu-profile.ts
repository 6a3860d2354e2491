/**
 * Summarizes a V8 CPU profile (.cpuprofile, the format of `node --cpu-prof` and of the
 * inspector's Profiler.stop): self time per function and per package or project folder.
 * It covers the JavaScript thread only. RocksDB work on libuv's thread pool is not in
 * it, so `(idle)` includes the time the main thread waited for RocksDB.
 *
 * V8 gives calls into native addons (rocksdb-native, msgpackr-extract) one shared
 * misleading name without a URL, so such a frame is labelled by its JavaScript caller.
 */
import path from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  selfMs: number;
  /** Share of the profile's busy time (everything except `(idle)`), in percent. */
  percentOfBusy: number;
}

export interface CpuProfileSummary {
  totalMs: number;
  idleMs: number;
  topFunctions: SelfTime[];
  topModules: SelfTime[];
  /**
   * Self time of every frame, charged to the two nearest rtcdp functions on its stack, so
   * a library's time shows up under the project code that called it.
   */
  topProjectCallers: SelfTime[];
}

/** Summarizes `profile`; function and file names are shown relative to `projectRoot`. */
export function summarizeCpuProfile(profile: CpuProfile, projectRoot: string, topCount = 15): CpuProfileSummary {
  const selfUs = selfTimeByNode(profile);
  const callerOf = callers(profile);
  const byFunction = new Map<string, number>();
  const byModule = new Map<string, number>();
  const byProjectCaller = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;

  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (us === 0) continue;

    totalUs += us;
    if (node.callFrame.functionName === '(idle)') idleUs += us;
    const caller = isNativeCall(node.callFrame) ? callerOf.get(node.id) : undefined;
    if (caller === undefined) {
      add(byFunction, functionLabel(node.callFrame, projectRoot), us);
      add(byModule, moduleLabel(node.callFrame, projectRoot), us);
    } else {
      add(byFunction, `native code called by ${functionLabel(caller.callFrame, projectRoot)}`, us);
      add(byModule, moduleLabel(caller.callFrame, projectRoot), us);
    }
    add(byProjectCaller, projectCallerLabel(node, callerOf, projectRoot), us);
  }

  const busyUs = totalUs - idleUs;
  const rank = (totals: Map<string, number>): SelfTime[] =>
    [...totals]
      .filter(([name]) => name !== '(idle)')
      .sort((a, b) => b[1] - a[1])
      .slice(0, topCount)
      .map(([name, us]) => ({ name, selfMs: us / 1_000, percentOfBusy: busyUs === 0 ? 0 : (100 * us) / busyUs }));

  return {
    totalMs: totalUs / 1_000,
    idleMs: idleUs / 1_000,
    topFunctions: rank(byFunction),
    topModules: rank(byModule),
    topProjectCallers: rank(byProjectCaller),
  };
}

/** Attributes each sample's following time delta to the sampled node, as Chrome DevTools does. */
function selfTimeByNode(profile: CpuProfile): Map<number, number> {
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length - 1; i++) {
    add(selfUs, profile.samples[i], profile.timeDeltas[i + 1]);
  }
  return selfUs;
}

function callers(profile: CpuProfile): Map<number, ProfileNode> {
  const callerOf = new Map<number, ProfileNode>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) callerOf.set(child, node);
  }
  return callerOf;
}

/**
 * Labels the two nearest frames from the project's own files on the stack, callee first,
 * because the nearest alone is often a thin wrapper such as codec.ts's encode.
 */
function projectCallerLabel(node: ProfileNode, callerOf: Map<number, ProfileNode>, projectRoot: string): string {
  const labels: string[] = [];
  for (let frame: ProfileNode | undefined = node; frame !== undefined && labels.length < 2; frame = callerOf.get(frame.id)) {
    if (isProjectFile(frame.callFrame.url, projectRoot)) labels.push(functionLabel(frame.callFrame, projectRoot));
  }

  if (labels.length > 0) return labels.join(' < ');
  return isNativeCall(node.callFrame) ? 'native code' : functionLabel(node.callFrame, projectRoot);
}

function isProjectFile(url: string, projectRoot: string): boolean {
  if (!url.startsWith('file://')) return false;
  const file = shortPath(url, projectRoot);
  return !file.startsWith('/') && !file.includes('node_modules/');
}

/** Returns whether the frame is a native call: no URL, and not one of V8's pseudo-frames such as (garbage collector). */
function isNativeCall(frame: CallFrame): boolean {
  return frame.url === '' && !frame.functionName.startsWith('(');
}

function add<K>(totals: Map<K, number>, key: K, value: number): void {
  totals.set(key, (totals.get(key) ?? 0) + value);
}

function functionLabel(frame: CallFrame, projectRoot: string): string {
  const name = frame.functionName === '' ? '(anonymous)' : frame.functionName;
  if (frame.url === '') return name;
  // tsx compiles a TypeScript file to code whose functions all report line 0, so only JavaScript files get a line.
  const line = frame.lineNumber > 0 ? `:${frame.lineNumber + 1}` : '';
  return `${name} (${shortPath(frame.url, projectRoot)}${line})`;
}

/** Returns the npm package, the project folder (api/, storage/, ...) or "node: internals" that a frame belongs to. */
function moduleLabel(frame: CallFrame, projectRoot: string): string {
  if (frame.url === '') return frame.functionName;
  if (frame.url.startsWith('node:')) return 'node: internals';

  const file = shortPath(frame.url, projectRoot);
  const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
  if (packageMatch) return packageMatch[1];
  return file.includes('/') ? `${file.split('/')[0]}/` : file;
}

function shortPath(url: string, projectRoot: string): string {
  const file = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  const relative = path.relative(projectRoot, file);
  return relative.startsWith('..') ? file : relative;
}
