// `clawcage demo`: one real sandbox on the embedded default policy, started exactly as
// `clawcage run` starts one (policy-decision process, egress proxy, bridge), running a shell
// script of allowed and denied actions, each printed with what the kernel or the proxy answered.

import { geteuid } from "../../ffi/libc.ts";
import { loadPolicyFile } from "../policy/load.ts";
import { buildPlan } from "../sandbox/plan.ts";
import { hostView, preflight } from "../sandbox/supervisor.ts";
import { selfCommand } from "../self.ts";
import { embeddedPolicyPath } from "./common.ts";

type Result = "allowed" | "denied";

/** A plain-HTTP GET through $HTTP_PROXY with bash's /dev/tcp; succeeds only on a 200. */
const FETCH_VIA_PROXY = "bash -c 'p=${HTTP_PROXY#http://}; exec 3<>/dev/tcp/${p%:*}/${p##*:} && " +
  'printf "GET http://example.com/ HTTP/1.1\\r\\nHost: example.com\\r\\nConnection: close\\r\\n\\r\\n" >&3 && ' +
  'head -n 1 <&3 | grep -q " 200 "\'';
/** [description, expected, shell command, expected when rootless]. Each runs in the sandbox. */
export const DEMO_ACTIONS: [string, Result, string, Result?][] = [
  ["list the system's programs (/usr/bin)", "allowed", "ls /usr/bin"],
  [
    "write a file in the working directory",
    "allowed",
    "echo hello > ./notes.txt && cat ./notes.txt",
  ],
  ["write a file in /tmp", "allowed", "echo scratch > /tmp/scratch"],
  ["read /etc/hostname", "allowed", "cat /etc/hostname"],
  [
    "read the host's password hashes (/etc/shadow)",
    "denied",
    "test -s /etc/shadow && cat /etc/shadow",
  ],
  ["list /root", "denied", "ls /root"],
  ["read files in /home", "denied", "ls /home"],
  ["create /etc/cron.d/backdoor", "denied", "touch /etc/cron.d/backdoor"],
  ["replace /usr/bin/env", "denied", "cp /bin/true /usr/bin/env"],
  // Rootless mode has no PID namespace: host processes stay visible (but not ptrace-able).
  ["see the host's processes", "denied", 'test -e "/proc/${DEMO_HOST_PID}"', "allowed"],
  ["reach a TCP port on the host", "denied", "bash -c 'exec 3<>/dev/tcp/127.0.0.1/${DEMO_PORT}'"],
  // Through the egress proxy (HTTP_PROXY): no network_policies entry allows it, so the PDP says
  // deny and the proxy answers 403 without resolving or contacting the host.
  ["fetch http://example.com/ through the egress proxy", "denied", FETCH_VIA_PROXY],
  ["mount a filesystem", "denied", "mount -t tmpfs none /tmp"],
  ["create a user namespace (unshare -U)", "denied", "unshare -U true"],
];

function script(rootless: boolean): string {
  const lines = [
    "check() {",
    '  if sh -c "$3" >/dev/null 2>&1; then got=allowed; else got=denied; fi',
    '  if [ "$got" = "$2" ]; then verdict=as-expected; else verdict=UNEXPECTED; fi',
    '  printf "  %-8s %-52s %s\\n" "$got" "$1" "$verdict"',
    '  [ "$verdict" = as-expected ] || failures=$((failures+1))',
    "}",
    "failures=0",
    'printf "  %-8s %-52s %s\\n" RESULT ACTION VERDICT',
  ];
  for (const [what, expected, cmd, rootlessExpected] of DEMO_ACTIONS) {
    const q = (s: string) => `'${s.replaceAll("'", `'"'"'`)}'`;
    lines.push(`check ${q(what)} ${rootless ? rootlessExpected ?? expected : expected} ${q(cmd)}`);
  }
  lines.push('[ "$failures" = 0 ]');
  return lines.join("\n");
}

export async function demoCommand(_args: string[]): Promise<number> {
  const root = geteuid() === 0;
  const workdir = await Deno.makeTempDir({ prefix: "clawcage-demo-" });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) conn.close();
  })();
  try {
    // Checked here first so that a host problem is one line before anything starts.
    const policy = await loadPolicyFile(embeddedPolicyPath("default.yaml"));
    const plan = buildPlan(policy, {
      argv: ["/bin/sh", "-c", "true"],
      workdir,
      env: [],
      rootless: !root,
    }, hostView());
    if (root) await Deno.chown(workdir, plan.user.uid, plan.user.gid);
    preflight(plan);
    console.log(`clawcage demo: the embedded default policy, working directory ${workdir}`);
    if (!root) console.log("(not root: rootless mode, Landlock + seccomp without namespaces)");
    const argv = selfCommand([
      "run",
      ...(root ? [] : ["--rootless"]),
      "--no-audit",
      "-w",
      workdir,
      "-e",
      `DEMO_PORT=${(listener.addr as Deno.NetAddr).port}`,
      "-e",
      `DEMO_HOST_PID=${Deno.pid}`,
      "--",
      "/bin/sh",
      "-c",
      script(!root),
    ]);
    const { code } = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    console.log(
      code === 0
        ? "\nEvery action behaved as the policy says. Try: clawcage run -- /bin/sh"
        : `\nSome actions did not behave as expected (exit ${code}).`,
    );
    return code === 0 ? 0 : 1;
  } finally {
    listener.close();
    await accepting.catch(() => {});
    await Deno.remove(workdir, { recursive: true }).catch(() => {});
  }
}
