// `clawcage __print default-policy|router-policy|systemd-unit`: prints a file embedded in the binary, so that
// scripts/install.sh installs the policy and unit that match the binary it installs.

import { UsageError } from "./common.ts";

const ASSETS: Record<string, URL> = {
  "default-policy": new URL("../../policies/default.yaml", import.meta.url),
  "router-policy": new URL("../../policies/router.yaml", import.meta.url),
  "systemd-unit": new URL("../../scripts/clawcage.service", import.meta.url),
};

export async function printAssetCommand(args: string[]): Promise<number> {
  const url = args.length === 1 ? ASSETS[args[0]] : undefined;
  if (!url) {
    throw new UsageError(`usage: clawcage __print ${Object.keys(ASSETS).join("|")}`);
  }
  await Deno.stdout.write(await Deno.readFile(url));
  return 0;
}
