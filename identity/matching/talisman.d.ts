// talisman 1.1 ships CommonJS without type declarations. Each module's `module.exports` is
// the function itself, which an ESM default import receives.
declare module 'talisman/metrics/jaro-winkler.js' {
  /** Jaro-Winkler similarity in [0, 1], with a prefix scale of 0.1 over at most 4 characters and a boost threshold of 0.7. */
  const jaroWinkler: (a: string, b: string) => number;
  export default jaroWinkler;
}
