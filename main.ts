// clawcage CLI entry: parses the first argument and dispatches to a command or internal mode.

import { UsageError } from "./core/cli/common.ts";

export const VERSION = "0.1.0";

const HELP = `clawcage ${VERSION}: a security layer for autonomous AI agents

Usage: clawcage COMMAND [options]

Commands:
  run [options] -- COMMAND [ARGS...]   run an agent in the sandbox (see run --help)
  demo                                 run a sandboxed demo on the default policy
  doctor [--json] [--policy FILE]      what this host supports, layer by layer, and the audit trail
  audit verify|tail|query [PATH]       check, follow and search the audit trail (audit --help)
  pii scan [--json|--jsonl] [FILE]     find PII/PHI in text (stdin when no FILE)
  pii redact [FILE]                    print text with PII replaced by <TYPE_N> placeholders
  router --policy FILE [--listen ADDR] the privacy router (OpenAI/Anthropic API) on loopback
  service [--config FILE] / status     run the configured agents as a service; ask it how they are
  policy check|explain|diff|presets    validate, explain, compare policies; presets (policy --help)
  models list|add|remove               local GGUF models for the router (models --help)
  version [--json]                     print the version

Set CLAWCAGE_DEBUG=1 to see stack traces of internal errors.`;

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  run: async () => (await import("./core/cli/run.ts")).runCommand,
  demo: async () => (await import("./core/cli/demo.ts")).demoCommand,
  doctor: async () => (await import("./core/cli/doctor.ts")).doctorCommand,
  audit: async () => (await import("./core/cli/audit.ts")).auditCommand,
  pii: async () => (await import("./core/cli/pii.ts")).piiCommand,
  router: async () => (await import("./core/cli/router.ts")).routerCommand,
  service: async () => (await import("./core/cli/service.ts")).serviceCommand,
  status: async () => (await import("./core/cli/status.ts")).statusCommand,
  policy: async () => (await import("./core/cli/policy.ts")).policyCommand,
  models: async () => (await import("./core/cli/models.ts")).modelsCommand,
  __stage: async () => (await import("./core/sandbox/stage.ts")).stageMain,
  __print: async () => (await import("./core/cli/assets.ts")).printAssetCommand,
  __pdp: async () => (await import("./core/pdp/main.ts")).pdpMain,
  version: () =>
    Promise.resolve((args: string[]) => {
      if (args.includes("--json")) {
        const { arch, os } = Deno.build;
        console.log(JSON.stringify({ name: "clawcage", version: VERSION, os, arch }));
      } else console.log(`clawcage ${VERSION}`);
      return Promise.resolve(0);
    }),
};

export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    console.log(HELP);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") return main(["version"]);
  const load = COMMANDS[name];
  if (!load) {
    console.error(`clawcage: unknown command ${JSON.stringify(name)} (see clawcage --help)`);
    return 2;
  }
  try {
    return await (await load())(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`clawcage: ${e.message}`);
      return e.exitCode;
    }
    if (Deno.env.get("CLAWCAGE_DEBUG")) console.error(e);
    else console.error(`clawcage: internal error: ${(e as Error)?.message ?? e}`);
    return 70;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
