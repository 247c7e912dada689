// Appliance benchmark: (1) time from `install.sh` start (offline, --from FILE) to a running
// sandboxed agent under `clawcage service`, against starting the same agent directly; (2) the
// control plane's memory (service + `clawcage run` supervisors + stages + router, no model),
// RSS and PSS, against one idle Deno process (the floor of any Deno program).
//
// The artifact is a `deno run` wrapper (denort is unavailable on this build machine, so the
// compiled single binary cannot be built or measured here): every clawcage process starts
// Deno from TypeScript sources, which costs more start time and memory than the compiled
// binary would. Binary size: not measured for the same reason.
//
//   deno task bench appliance [--runs N] [--agents N] [--agent-privacy]
//   (root: agents run in namespaces)

import { parseArgs } from "node:util";
import { createHash } from "node:crypto";
import { PERMISSION_FLAGS } from "../../core/self.ts";
import { readStatus } from "../../core/service/status_socket.ts";
import type { ServiceStatus } from "../../core/service/service.ts";
import { machineLine, median } from "./common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    runs: { type: "string", default: "3" },
    agents: { type: "string", default: "1" },
    // The agents' policy gets a privacy section: each `clawcage run` serves inference.local
    // (the router and PII detector in the supervisor), as agents under the service use it.
    "agent-privacy": { type: "boolean", default: false },
  },
});
const runs = Number(values.runs);
const agentCount = Number(values.agents);
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const INSTALL = new URL("../install.sh", import.meta.url).pathname;
const NAME = `clawcage-linux-${Deno.build.arch}`;
const work = await Deno.makeTempDir({ prefix: "clawcage-bench-appliance-" });

const artifact = `#!/bin/sh\nexec ${Deno.execPath()} run ${
  PERMISSION_FLAGS.join(" ")
} --quiet ${MAIN} "$@"\n`;
await Deno.writeTextFile(`${work}/${NAME}`, artifact);
await Deno.writeTextFile(
  `${work}/SHA256SUMS`,
  `${createHash("sha256").update(artifact).digest("hex")}  ${NAME}\n`,
);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** PIDs of `sleep SECONDS` processes (the agents), not of the supervisors that name them. */
function pidsWith(needle: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      if (/^(\/usr)?(\/bin\/)?sleep\0/.test(argv) && argv.includes(needle)) out.push(+e.name);
    } catch { /* gone */ }
  }
  return out;
}

async function until(ok: () => boolean | Promise<boolean>, what: string, ms = 60_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await ok()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Descendants of `pid` (children files of every thread), depth first. */
function tree(pid: number): number[] {
  const out = [pid];
  let tasks: string[] = [];
  try {
    tasks = [...Deno.readDirSync(`/proc/${pid}/task`)].map((t) => t.name);
  } catch { /* gone */ }
  for (const t of tasks) {
    try {
      const kids = Deno.readTextFileSync(`/proc/${pid}/task/${t}/children`).trim();
      for (const k of kids ? kids.split(/\s+/) : []) out.push(...tree(Number(k)));
    } catch { /* gone */ }
  }
  return out;
}

function memory(pid: number): { rss: number; pss: number; comm: string } {
  const rollup = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(rollup)?.[1] ?? 0);
  const comm = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter(Boolean);
  const role = comm[0]?.endsWith("/unshare")
    ? "unshare (util-linux)"
    : comm.includes("__stage")
    ? "stage"
    : comm.includes("__pdp")
    ? "pdp"
    : comm.includes("service")
    ? "service"
    : comm.includes("router")
    ? "router"
    : comm.includes("run")
    ? "run"
    : comm[0]?.split("/").pop() ?? "?";
  return { rss: kb("Rss") * 1024, pss: kb("Pss") * 1024, comm: role };
}

const MB = (b: number) => (b / 1048576).toFixed(1);

// --- 1. install to running agent ---
const installTimes: number[] = [];
const serviceTimes: number[] = [];
const totals: number[] = [];
let lastRoot = "";
for (let i = 0; i < runs; i++) {
  const root = `${work}/root${i}`;
  const marker = `${7400 + i}`;
  const t0 = performance.now();
  const inst = await new Deno.Command("sh", {
    args: [INSTALL, "--from", `${work}/${NAME}`, "--root", root, "--no-doctor"],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!inst.success) throw new Error(new TextDecoder().decode(inst.stderr));
  const t1 = performance.now();
  await Deno.mkdir(`${root}/var/lib/clawcage/agent`, { recursive: true });
  await Deno.writeTextFile(
    `${root}/etc/clawcage/clawcage.yaml`,
    `version: 1\nruntime_dir: ${root}/run\nstate_dir: ${root}/var/lib/clawcage\nagents:\n` +
      `  agent:\n    command: ["sleep", "${marker}"]\n    policy: policy.yaml\n` +
      `    workdir: ${root}/var/lib/clawcage/agent\n`,
  );
  const svc = new Deno.Command(`${root}/usr/local/bin/clawcage`, {
    args: ["service", "--config", `${root}/etc/clawcage/clawcage.yaml`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await until(() => pidsWith(`sleep\0${marker}`).length > 0, "the sandboxed agent");
  const t2 = performance.now();
  installTimes.push(t1 - t0);
  serviceTimes.push(t2 - t1);
  totals.push(t2 - t0);
  svc.kill("SIGTERM");
  await svc.status;
  lastRoot = root;
}

// The peer: the same agent started directly (no install, no sandbox).
const directTimes: number[] = [];
for (let i = 0; i < runs; i++) {
  const marker = `${7500 + i}`;
  const t0 = performance.now();
  const p = new Deno.Command("sleep", { args: [marker] }).spawn();
  await until(() => pidsWith(`sleep\0${marker}`).length > 0, "the direct agent");
  directTimes.push(performance.now() - t0);
  p.kill("SIGKILL");
  await p.status;
}

// --- 2. control plane memory: service + N agents + router, no model ---
const root = lastRoot;
await Deno.writeTextFile(
  `${root}/etc/clawcage/router.yaml`,
  `version: 1\nprivacy:\n  backends:\n    local: { type: openai, base_url: "http://127.0.0.1:9/v1", model: m }\n  local: local\n`,
);
if (values["agent-privacy"]) {
  await Deno.writeTextFile(
    `${root}/etc/clawcage/policy.yaml`,
    `\nprivacy:\n  backends:\n    local: { type: openai, base_url: "http://127.0.0.1:9/v1", model: m }\n  local: local\n`,
    { append: true },
  );
}
const agentsYaml = Array.from(
  { length: agentCount },
  (_, i) =>
    `  agent${i}:\n    command: ["sleep", "${7600 + i}"]\n    policy: policy.yaml\n` +
    `    workdir: ${root}/var/lib/clawcage/agent\n`,
).join("");
await Deno.writeTextFile(
  `${root}/etc/clawcage/clawcage.yaml`,
  `version: 1\nruntime_dir: ${root}/run\nstate_dir: ${root}/var/lib/clawcage\nagents:\n${agentsYaml}` +
    `router:\n  policy: router.yaml\n  listen: 127.0.0.1:0\n`,
);
const svc = new Deno.Command(`${root}/usr/local/bin/clawcage`, {
  args: ["service", "--config", `${root}/etc/clawcage/clawcage.yaml`],
  stdout: "null",
  stderr: "null",
}).spawn();
await until(async () => {
  try {
    const s = await readStatus(`${root}/run/status.sock`) as ServiceStatus;
    return s.router?.state === "running" &&
      Array.from({ length: agentCount }, (_, i) => pidsWith(`sleep\0${7600 + i}`).length)
        .every((n) => n > 0);
  } catch {
    return false;
  }
}, "service, agents and router");
await sleep(1500); // let start-up garbage settle
const agentPids = new Set(
  Array.from({ length: agentCount }, (_, i) => pidsWith(`sleep\0${7600 + i}`)).flat(),
);
const plane = tree(svc.pid).filter((p) => !agentPids.has(p)).map((p) => ({ pid: p, ...memory(p) }));
if (Deno.env.get("BENCH_DEBUG")) {
  for (const p of plane) {
    console.error(
      p.pid,
      p.comm,
      Deno.readTextFileSync(`/proc/${p.pid}/cmdline`).replaceAll("\0", " ").slice(0, 200),
    );
  }
}
svc.kill("SIGTERM");
await svc.status;

// The peer: one idle Deno process.
const idle = new Deno.Command(Deno.execPath(), {
  args: ["eval", "setTimeout(() => {}, 60000)"],
  stdout: "null",
}).spawn();
await sleep(1500);
const floor = memory(idle.pid);
idle.kill("SIGKILL");
await idle.status;
await Deno.remove(work, { recursive: true });

const rss = plane.reduce((a, p) => a + p.rss, 0);
const pss = plane.reduce((a, p) => a + p.pss, 0);
const byRole = new Map<string, { n: number; rss: number; pss: number }>();
for (const p of plane) {
  const r = byRole.get(p.comm) ?? { n: 0, rss: 0, pss: 0 };
  byRole.set(p.comm, { n: r.n + 1, rss: r.rss + p.rss, pss: r.pss + p.pss });
}

console.log(`\n${machineLine()}`);
console.log(
  `artifact: deno run wrapper (denort unavailable: compiled binary not built or measured)\n`,
);
console.log("| install to running agent (offline) | median ms | runs |");
console.log("| --- | ---: | ---: |");
console.log(
  `| install.sh --from FILE (no doctor) | ${median(installTimes).toFixed(0)} | ${runs} |`,
);
console.log(
  `| clawcage service start to agent running | ${median(serviceTimes).toFixed(0)} | ${runs} |`,
);
console.log(`| total | ${median(totals).toFixed(0)} | ${runs} |`);
console.log(
  `| peer: the same agent started directly | ${median(directTimes).toFixed(1)} | ${runs} |`,
);
console.log(
  `\ntotal vs goal 10 s: ${(median(totals) / 10_000).toFixed(2)}x of the budget; ` +
    `vs starting the agent directly: ${(median(totals) / median(directTimes)).toFixed(0)}x`,
);
console.log(
  `\n| control plane (${agentCount} agents${
    values["agent-privacy"] ? " with inference.local" : ""
  } + router) | processes | RSS MB | PSS MB |`,
);
console.log("| --- | ---: | ---: | ---: |");
for (const [role, r] of byRole) {
  console.log(`| ${role} | ${r.n} | ${MB(r.rss)} | ${MB(r.pss)} |`);
}
console.log(`| **total** | ${plane.length} | ${MB(rss)} | ${MB(pss)} |`);
console.log(`| peer: one idle deno process | 1 | ${MB(floor.rss)} | ${MB(floor.pss)} |`);
console.log(
  `\ncontrol plane PSS vs goal 150 MB: ${(pss / (150 * 1048576)).toFixed(2)}x; ` +
    `RSS sum ${(rss / floor.rss).toFixed(1)}x one idle Deno process ` +
    `(RSS counts shared pages once per process; PSS splits them)`,
);
