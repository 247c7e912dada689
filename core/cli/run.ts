// `clawcage run [options] -- COMMAND [ARGS...]`

import { parseArgs } from "node:util";
import { loadPolicyFile, PolicyError } from "../policy/load.ts";
import { compilePolicy, decide } from "../policy/decide.ts";
import { CredentialError, loadCredentials } from "../policy/credentials.ts";
import { CredentialStore } from "../egress/placeholders.ts";
import { buildPlan, callerIdentityProblem, PlanError } from "../sandbox/plan.ts";
import { RuntimeDirError } from "../sandbox/runtime_dir.ts";
import {
  describeLayers,
  HostError,
  hostView,
  preflight,
  runSandboxWithEgress,
} from "../sandbox/supervisor.ts";
import { UnknownPrincipalError } from "../sandbox/users.ts";
import { embeddedPolicyPath, UsageError } from "./common.ts";

export const RUN_HELP = `Usage: clawcage run [options] -- COMMAND [ARGS...]

Runs COMMAND deny-by-default in Landlock + seccomp + fresh namespaces, as the policy allows.
Network: only through the egress proxy (HTTP_PROXY etc. point at it), which applies the
policy's network_policies to every connection.

Options:
  -p, --policy FILE   policy YAML (default: the embedded default policy)
  -w, --workdir DIR   working directory of the agent (default: the current directory)
  -e, --env K[=V]     set a variable for the agent, or pass K through from this environment
                      (the agent otherwise gets only PATH, HOME, USER, TERM, LANG, TZ)
      --rootless      run without namespaces (Landlock + seccomp only); implied when not root
                      only if given: without root and without this flag, run refuses
  -q, --quiet         do not print the sandbox line on stderr
  -h, --help          show this help

Exit status: the agent's (128+N when killed by signal N); 125 when the sandbox could not be
built, 126 when the command cannot be executed, 127 when it is not found.`;

const VALUE_OPTIONS = new Set(["-p", "--policy", "-w", "--workdir", "-e", "--env"]);

/** Index of `--` or of the first word that is not an option: the agent's command starts there. */
function commandStart(args: string[]): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--" || !a.startsWith("-")) return i;
    if (VALUE_OPTIONS.has(a)) i++;
  }
  return args.length;
}

/** Exit code for errors before anything started. */
const SETUP_FAILED = 125;

export async function runCommand(args: string[]): Promise<number> {
  const split = commandStart(args);
  const { values, positionals } = parseRunArgs(args.slice(0, split));
  if (values.help) {
    console.log(RUN_HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
  const argv = args[split] === "--" ? args.slice(split + 1) : args.slice(split);
  const host = hostView();
  if (!host.isRoot && !values.rootless) {
    throw new UsageError(
      "namespaces need root (CAP_SYS_ADMIN); run as root, or pass --rootless to run with Landlock + seccomp only",
      SETUP_FAILED,
    );
  }
  const policyPath = values.policy ?? embeddedPolicyPath("default.yaml");
  try {
    const policy = await loadPolicyFile(policyPath);
    const plan = buildPlan(policy, {
      argv,
      workdir: values.workdir ?? Deno.cwd(),
      env: values.env ?? [],
      rootless: values.rootless ?? false,
    }, host);
    preflight(plan);
    // Egress: every connection the agent makes goes through the proxy, which asks the policy.
    // The decision function is one parameter (in-process decide() here; the PDP client later).
    const compiled = compilePolicy(policy);
    const credentials = new CredentialStore(loadCredentials(policy.credentials));
    return await runSandboxWithEgress(
      plan,
      { decide: (req) => Promise.resolve(decide(compiled, req)), credentials },
      (routed) => {
        if (!values.quiet) console.error(describeLayers(routed));
        const problem = callerIdentityProblem(routed);
        if (problem && Object.keys(policy.network_policies).length > 0) {
          console.error(`clawcage: warning: ${problem}`);
        }
      },
    );
  } catch (e) {
    if (e instanceof PolicyError) {
      console.error(e.message);
      return SETUP_FAILED;
    }
    if (
      e instanceof PlanError || e instanceof HostError || e instanceof UnknownPrincipalError ||
      e instanceof CredentialError || e instanceof RuntimeDirError
    ) {
      throw new UsageError(e.message, SETUP_FAILED);
    }
    throw e;
  }

  function parseRunArgs(a: string[]) {
    try {
      return parseArgs({
        args: a,
        allowPositionals: true,
        options: {
          policy: { type: "string", short: "p" },
          workdir: { type: "string", short: "w" },
          env: { type: "string", short: "e", multiple: true },
          rootless: { type: "boolean" },
          quiet: { type: "boolean", short: "q" },
          help: { type: "boolean", short: "h" },
        },
      });
    } catch (e) {
      throw new UsageError(`${(e as Error).message} (see clawcage run --help)`);
    }
  }
}
