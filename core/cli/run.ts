// `clawcage run [options] -- COMMAND [ARGS...]`

import { parseArgs } from "node:util";
import { loadPolicyFile, PolicyError } from "../policy/load.ts";
import { buildPlan, PlanError } from "../sandbox/plan.ts";
import {
  describeLayers,
  HostError,
  hostView,
  preflight,
  runSandbox,
} from "../sandbox/supervisor.ts";
import { UnknownPrincipalError } from "../sandbox/users.ts";
import { startRunPdp } from "../pdp/supervise.ts";
import { embeddedPolicyPath, UsageError } from "./common.ts";

export const RUN_HELP = `Usage: clawcage run [options] -- COMMAND [ARGS...]

Runs COMMAND deny-by-default in Landlock + seccomp + fresh namespaces, as the policy allows.

Options:
  -p, --policy FILE   policy YAML (default: the embedded default policy)
  -w, --workdir DIR   working directory of the agent (default: the current directory)
  -e, --env K[=V]     set a variable for the agent, or pass K through from this environment
                      (the agent otherwise gets only PATH, HOME, USER, TERM, LANG, TZ)
      --rootless      run without namespaces (Landlock + seccomp only); implied when not root
                      only if given: without root and without this flag, run refuses
  -q, --quiet         do not print the sandbox line on stderr
  -h, --help          show this help

Policy decisions come from a locked-down process (clawcage __pdp); SIGHUP to clawcage re-reads
the policy file and reloads network_policies and privacy (other sections need a restart).

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
    if (!values.quiet) console.error(describeLayers(plan));
    // The PDP starts first and loads while the sandbox is built (decisions deny until it is
    // up); if it cannot start, the sandbox is torn down and run fails.
    const stopStart = new AbortController();
    const pdp = startRunPdp({ policyFile: policyPath, signal: stopStart.signal });
    let failure: string | null = null;
    const pdpFailure = pdp.then(
      () => null,
      (e: Error) => failure = `policy-decision process: ${e.message}`,
    );
    try {
      const code = await runSandbox(plan, {
        onHangup: () => void pdp.then((p) => p.reloadFromFile(), () => {}),
        abort: pdpFailure,
      });
      if (failure !== null) throw new UsageError(failure, SETUP_FAILED);
      return code;
    } finally {
      stopStart.abort(); // the agent is done: a PDP still starting is not needed any more
      await pdp.then((p) => p.close(), () => {});
    }
  } catch (e) {
    if (e instanceof PolicyError) {
      console.error(e.message);
      return SETUP_FAILED;
    }
    if (e instanceof PlanError || e instanceof HostError || e instanceof UnknownPrincipalError) {
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
