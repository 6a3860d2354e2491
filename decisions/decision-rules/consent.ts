/**
 * Consent from profile traits, named by the workspace's contact policies (`consentTrait`).
 * A trait that is false forbids every channel. A trait that is an object forbids each
 * channel whose entry is false, such as `{ email: false, sms: true }`. Anything else,
 * including a missing trait, forbids nothing.
 */
import type { ProfileSnapshot } from '../../profiles/profile.js';

/** Returns why consent forbids `channel` for the profile, or undefined when nothing forbids it. */
export function consentRefusal(profile: ProfileSnapshot, consentTraits: readonly string[], channel: string): string | undefined {
  for (const name of consentTraits) {
    if (!Object.hasOwn(profile.traits, name)) continue;
    const value = profile.traits[name];
    if (value === false) return `trait ${name} is false, which forbids every channel`;

    const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
    if (channel !== '' && isObject && Object.hasOwn(value, channel) && value[channel] === false) {
      return `trait ${name}.${channel} is false`;
    }
  }
  return undefined;
}
