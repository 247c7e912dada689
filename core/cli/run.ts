// `clawcage run [options] -- COMMAND [ARGS...]`

import { parseArgs } from "node:util";
import { policyWarnings } from "../policy/warnings.ts";
import { parsePolicy, PolicyError, readPolicyFile } from "../policy/load.ts";
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
import type { SandboxHooks } from "../sandbox/watch.ts";
import { AuditSetupError, protectAuditDirs, RunAudit } from "../audit/run_audit.ts";
import { auditSettings } from "../audit/settings.ts";
import { startRunPdp } from "../pdp/supervise.ts";
import { failClosed } from "../pdp/client.ts";
import type { InferenceLocal } from "../sandbox/inference_local.ts";
import type { AuditEvent } from "../audit/events.ts";
import { embeddedPolicyPath, UsageError } from "./common.ts";
import { trace } from "../start_trace.ts";

export const RUN_HELP = `Usage: clawcage run [options] -- COMMAND [ARGS...]

Runs COMMAND deny-by-default in Landlock + seccomp + fresh namespaces, as the policy allows.
Network: only through the egress proxy (HTTP_PROXY etc. point at it), which applies the
policy's network_policies to every connection.

Options:
  -p, --policy FILE   policy YAML (default: the embedded default policy)
  -w, --workdir DIR   working directory of the agent (default: the current directory)
  -u, --user USER     run the agent as USER (name or uid; overrides process.run_as_user)
  -e, --env K[=V]     set a variable for the agent, or pass K through from this environment
                      (the agent otherwise gets only PATH, HOME, USER, TERM, LANG, TZ)
      --rootless      run without namespaces (Landlock + seccomp only); needed when not root
                      (without root and without this flag, run refuses)
      --audit-dir DIR write the audit trail to DIR (default: the policy's audit.log_dir, else
                      /var/log/clawcage/audit as root, ~/.local/state/clawcage/audit otherwise)
      --no-audit      write no audit trail (otherwise the agent does not start without one)
  -q, --quiet         do not print the sandbox line on stderr
  -h, --help          show this help

Policy decisions come from a locked-down process (clawcage __pdp); SIGHUP to clawcage re-reads
the policy file and reloads network_policies and privacy (other sections need a restart).

Exit status: the agent's (128+N when killed by signal N); 125 for bad usage, when the sandbox
could not be built or the audit trail could not be written (the agent is then stopped at once), 126 when
the command cannot be executed, 127 when it is not found.`;

const VALUE_OPTIONS = new Set([
  "-p",
  "--policy",
  "-w",
  "--workdir",
  "-e",
  "--env",
  "-u",
  "--user",
  "--audit-dir",
]);

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
  trace("modules loaded");
  // SIGHUP means "reload the policy"; until the sandbox's handler takes over, a SIGHUP must not
  // kill us (the policy-decision process reads the file as it is when it starts anyway).
  Deno.addSignalListener("SIGHUP", () => {});
  const split = commandStart(args);
  const { values, positionals } = parseRunArgs(args.slice(0, split));
  if (values.help) {
    console.log(RUN_HELP);
    return 0;
  }
  if (positionals.length > 0) {
    throw new UsageError(`run: unexpected argument: ${positionals[0]}`, SETUP_FAILED);
  }
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
    // Read once: the plan, the audit record's hash and the PDP all get this version.
    const policyBytes = await readPolicyFile(policyPath);
    const policyText = new TextDecoder().decode(policyBytes);
    const policy = parsePolicy(policyText, policyPath);
    trace("policy loaded");
    // Settings that load (as in OpenShell) but restrict less than they read are said every time.
    for (const w of policyWarnings(policy)) {
      if (w.ignored) {
        console.error(`clawcage: warning: ${policyPath}: ${w.path.join(".")}: ${w.message}`);
      }
    }
    const plan = buildPlan(policy, {
      argv,
      workdir: values.workdir ?? Deno.cwd(),
      env: values.env ?? [],
      user: values.user,
      rootless: values.rootless ?? false,
    }, host);
    preflight(plan);
    trace("plan built, preflight done");
    // Secrets the proxy substitutes for placeholders (read before anything starts: a missing
    // one is a one-line error).
    const credentials = new CredentialStore(loadCredentials(policy.credentials));
    const settings = auditSettings(policy.audit, {
      dir: values["audit-dir"],
      disabled: values["no-audit"],
    });
    if (settings.enabled) protectAuditDirs(plan, settings);
    const audit = await RunAudit.open(settings, {
      policyPath,
      policySha256: await sha256Hex(policyBytes),
      plan,
      // Every run routes the agent's traffic through the egress proxy (started below).
      layers: (describeLayers(plan).replace(/ user \S+/, "").match(/[a-z-]+\([^)]*\)/g) ?? [])
        .map((l) => l.startsWith("network(") ? "network(egress proxy)" : l),
      verbose: !values.quiet,
    });
    trace("audit trail open");
    const recorder = audit.recorder;
    const auditSink = {
      record(event: AuditEvent) {
        if (!recorder.record(event)) throw new Error("the audit trail cannot record");
      },
    };
    // The PDP starts first and loads while the sandbox is built; until it answers, and whenever
    // it is down, every decision is deny. If it cannot start at all, the sandbox is torn down.
    const stopStart = new AbortController();
    const pdp = startRunPdp({
      policyFile: policyPath,
      policy: { text: policyText, parsed: policy },
      sandbox: recorder.sandbox,
      audit: auditSink,
      signal: stopStart.signal,
    });
    let failure: string | null = null;
    const pdpFailure = pdp.then(
      () => null,
      (e: Error) => failure = `policy-decision process: ${e.message}`,
    );
    const never = new Promise<never>(() => {});
    const hooks: SandboxHooks = {
      ...audit.hooks,
      // SIGHUP reloads network_policies and privacy from the policy file (the agent keeps running).
      // The privacy router (inference.local) follows when the PDP accepted the new policy.
      onHangup: () =>
        void pdp.then((p) => p.reloadFromFile()).then((r) => {
          if (!r.ok || !r.policy || !inference || !r.changed.includes("privacy")) return;
          if (r.policy.privacy) inference.reload(r.policy.privacy);
        }).catch(() => {}),
      stop: Promise.race([
        audit.hooks.stop ?? never,
        pdpFailure.then((reason) => reason ?? never),
      ]),
    };
    // Egress: every connection the agent makes goes through the proxy, which asks the PDP and
    // records each connection and request in the audit trail (a refused record stops it).
    let code = SETUP_FAILED;
    let pdpFailed: string | null = null;
    let inference: InferenceLocal | null = null;
    try {
      if (policy.privacy) {
        // http://inference.local: the privacy router, in this process, reached through the proxy.
        // Loaded only here: the router pulls in the PII detector and the model runtime.
        const local = await import("../sandbox/inference_local.ts");
        try {
          inference = local.startInferenceLocal(policy.privacy, {
            sandbox: recorder.sandbox,
            record: (event) => void recorder.record(event),
          });
        } catch (e) {
          if (!(e instanceof local.RouterConfigError)) throw e;
          throw new UsageError(`${policyPath}: privacy: ${e.message}`, SETUP_FAILED);
        }
        plan.env.OPENAI_BASE_URL ??= "http://inference.local/v1";
        plan.env.ANTHROPIC_BASE_URL ??= "http://inference.local";
      }
      code = await runSandboxWithEgress(
        plan,
        {
          decide: async (req) => {
            try {
              return await (await pdp).client.decide(req);
            } catch (e) {
              return failClosed(
                `the policy-decision process did not start: ${(e as Error).message}`,
              );
            }
          },
          credentials,
          audit: auditSink,
          // One id for the whole run: the proxy's records carry the same sandbox as the rest.
          sandboxId: recorder.sandbox,
          ...(inference ? { inferenceLocal: { port: inference.port } } : {}),
        },
        (routed) => {
          if (!values.quiet) console.error(describeLayers(routed));
          const problem = callerIdentityProblem(routed);
          if (problem && Object.keys(policy.network_policies).length > 0) {
            console.error(`clawcage: warning: ${problem}`);
          }
        },
        hooks,
      );
      trace("sandbox ended");
      pdpFailed = failure; // read before the abort below (which fails a start still running)
    } finally {
      stopStart.abort(); // the agent is done: a PDP still starting is not needed any more
      await inference?.close();
      // The PDP is stopped while the audit trail records the end and seals it: a closing
      // PdpClient reports no more events, so nothing of it is recorded after this point.
      const pdpClosed = pdp.then((p) => p.close(), () => {}).then(() => trace("pdp closed"));
      try {
        code = await audit.finish(code);
        trace("audit trail closed");
      } finally {
        await pdpClosed;
      }
    }
    if (pdpFailed !== null) throw new UsageError(pdpFailed, SETUP_FAILED);
    return code;
  } catch (e) {
    if (e instanceof PolicyError) {
      console.error(e.message);
      return SETUP_FAILED;
    }
    if (
      e instanceof PlanError || e instanceof HostError || e instanceof UnknownPrincipalError ||
      e instanceof AuditSetupError ||
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
          user: { type: "string", short: "u" },
          env: { type: "string", short: "e", multiple: true },
          rootless: { type: "boolean" },
          "audit-dir": { type: "string" },
          "no-audit": { type: "boolean" },
          quiet: { type: "boolean", short: "q" },
          help: { type: "boolean", short: "h" },
        },
      });
    } catch (e) {
      // node's wording ("Unknown option '--x'. To specify a positional argument ...") in one line.
      const msg = (e as Error).message;
      const unknown = /^Unknown option '([^']+)'/.exec(msg);
      const why = unknown
        ? `unknown option ${unknown[1]} (options go before the command or --)`
        : msg;
      throw new UsageError(`run: ${why}; see clawcage run --help`, SETUP_FAILED);
    }
  }
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Buffer.from(digest).toString("hex");
}
