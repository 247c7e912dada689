// Loads PII detection (router/pii/detect.ts). Until that module is part of the build, the
// router refuses to start: it never serves requests it cannot scan.

import type { Detect } from "./pii/types.ts";

export class DetectorUnavailableError extends Error {}

export async function loadDetector(): Promise<Detect> {
  // A computed specifier, so that the build type-checks while detect.ts is being written on
  // another branch. Replace with a literal import once it is merged (deno compile needs one).
  const specifier = new URL("./pii/detect.ts", import.meta.url).href;
  let mod: { detect?: Detect };
  try {
    mod = await import(specifier);
  } catch (e) {
    throw new DetectorUnavailableError(
      `PII detection is not available in this build (${(e as Error)?.message?.split("\n")[0]})`,
    );
  }
  if (typeof mod.detect !== "function") {
    throw new DetectorUnavailableError("router/pii/detect.ts does not export detect()");
  }
  return mod.detect;
}
