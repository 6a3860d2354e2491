/**
 * Maps a profile to one of a fixed number of virtual shards. The hash is FNV-1a over the
 * UTF-16 code units of the profile id: stable across processes and versions, because a
 * change would move every profile to another shard.
 */
export function shardOf(profileId: string, shardCount: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < profileId.length; i++) {
    hash ^= profileId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shardCount;
}
