// Sandbox benchmark: end-to-end time of `run -- /bin/true` and throughput of a 200 MB file
// copy inside the sandbox, for clawcage and peers on equivalent policies, in one run.
// Peers: bubblewrap (bwrap), firejail, Anthropic's sandbox-runtime (srt, npm
// @anthropic-ai/sandbox-runtime). A peer that is not installed is reported as such.
//
//   deno task bench sandbox [--runs N] [--mb M] [--baseline DIR]
// --baseline DIR: also time another clawcage checkout (e.g. main) in the same run, for before/after.
// Start times are measured round-robin (run i of every sandbox, then run i+1), so a change in
// the machine's load during the run affects every row alike; the load average is printed.
// clawcage writes its audit trail to a fresh directory of the run (not the shared default).
// Install peers: apt-get install bubblewrap firejail socat ripgrep; npm i -g @anthropic-ai/sandbox-runtime

import { parseArgs } from "node:util";
import { selfCommand, systemProgram } from "../../core/self.ts";
import { machineLine, median, percentile, which } from "./common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    runs: { type: "string", default: "21" },
    mb: { type: "string", default: "200" },
    baseline: { type: "string" },
  },
});
const runs = Number(values.runs);
const mb = Number(values.mb);

const work = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "clawcage-bench-" });
await Deno.chmod(work, 0o777);
const policy = `${work}/policy.yaml`;
await Deno.writeTextFile(
  policy,
  `version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /bin, /lib, /lib64, /etc, /proc, /dev/urandom]
  read_write: [/tmp, /dev/null]
process:
  run_as_user: nobody
`,
);
const srtSettings = `${work}/srt.json`;
await Deno.writeTextFile(
  srtSettings,
  JSON.stringify({
    network: { allowedDomains: [], deniedDomains: [] },
    filesystem: { denyRead: ["/root", "/home"], allowWrite: [work, "/tmp"], denyWrite: [] },
  }),
);

const auditDir = `${work}/audit`;
const baseline = values.baseline;
/** `deno run` of another checkout's main.ts, as selfCommand() runs this one. */
const baselineCommand = (args: string[]) => {
  const [deno, run, ...flags] = selfCommand([]);
  return [
    deno,
    run,
    ...flags.filter((f) => !f.endsWith("/main.ts")),
    `${baseline}/main.ts`,
    ...args,
  ];
};
const clawcageArgs = (extra: string[], cmd: string[]) => [
  "run",
  "-q",
  ...extra,
  "--policy",
  policy,
  "-w",
  work,
  "--",
  ...cmd,
];

type Peer = { name: string; wrap: (cmd: string[]) => string[] | null; note?: string };
const bwrap = systemProgram("bwrap");
const firejail = systemProgram("firejail");
const srt = which("srt");
const peers: Peer[] = [
  { name: "direct (no sandbox)", wrap: (cmd) => cmd },
  {
    name: "clawcage (deno run from source)",
    wrap: (cmd) => selfCommand(clawcageArgs(["--audit-dir", auditDir], cmd)),
    note: "supervisor, PDP and stage start Deno from TypeScript sources; audit trail on",
  },
  {
    name: "clawcage --no-audit",
    wrap: (cmd) => selfCommand(clawcageArgs(["--no-audit"], cmd)),
    note: "the same without the audit trail (its cost at start: open, fsync, kernel readers)",
  },
  ...(baseline
    ? [
      {
        name: `clawcage baseline (${baseline})`,
        wrap: (cmd: string[]) =>
          baselineCommand(clawcageArgs(["--audit-dir", `${auditDir}-baseline`], cmd)),
        note: "another checkout, same flags, timed in the same rounds",
      },
    ]
    : []),
  {
    name: "bubblewrap",
    wrap: (cmd) =>
      bwrap
        ? [
          bwrap,
          ...[
            "--ro-bind",
            "/usr",
            "/usr",
            "--ro-bind",
            "/etc",
            "/etc",
            "--symlink",
            "usr/bin",
            "/bin",
          ],
          ...[
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--proc",
            "/proc",
          ],
          ...["--dev", "/dev", "--tmpfs", "/tmp", "--bind", work, work, "--chdir", work],
          ...["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"],
          ...["--uid", "65534", "--gid", "65534", "--", ...cmd],
        ]
        : null,
  },
  {
    name: "firejail",
    wrap: (cmd) =>
      firejail
        ? [
          firejail,
          ...[
            "--quiet",
            "--noprofile",
            "--net=none",
            "--private-tmp",
            "--seccomp",
            "--caps.drop=all",
          ],
          ...["--nonewprivs", "--noroot", `--whitelist=${work}`, ...cmd],
        ]
        : null,
  },
  {
    name: "srt (sandbox-runtime)",
    wrap: (cmd) => (srt ? [srt, "--settings", srtSettings, ...cmd] : null),
  },
];

async function timeOnce(argv: string[], cwd = work): Promise<{ ms: number; ok: boolean }> {
  const t0 = performance.now();
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd,
    stdout: "null",
    stderr: "piped",
    stdin: "null",
  })
    .output();
  const ms = performance.now() - t0;
  if (!out.success && Deno.env.get("BENCH_DEBUG")) {
    console.error(new TextDecoder().decode(out.stderr));
  }
  return { ms, ok: out.success };
}

console.error(`bench: start time, ${runs} runs each; copy of ${mb} MB`);
const src = `${work}/src.bin`;
{
  const f = await Deno.open(src, { write: true, create: true });
  const chunk = crypto.getRandomValues(new Uint8Array(1 << 16));
  for (let i = 0; i < (mb << 20) / chunk.length; i++) await f.write(chunk);
  f.close();
  await Deno.chmod(src, 0o644);
}

interface Row {
  name: string;
  startMs: number | null;
  copyMBs: number | null;
  status: string;
}
const rows: Row[] = [];
const loadBefore = loadAverage();
const running: { peer: Peer; argv: string[]; times: number[]; row: Row }[] = [];
for (const peer of peers) {
  const argv = peer.wrap(["/bin/true"]);
  const row: Row = { name: peer.name, startMs: null, copyMBs: null, status: "not installed" };
  rows.push(row);
  if (!argv) continue;
  const first = await timeOnce(argv);
  row.status = first.ok ? peer.note ?? "" : "failed to run on this host";
  if (first.ok) running.push({ peer, argv, times: [], row });
}
// Round-robin: run i of every sandbox, then run i+1.
for (let i = 0; i < runs; i++) {
  for (const r of running) r.times.push((await timeOnce(r.argv)).ms);
  if ((i + 1) % 5 === 0) console.error(`bench: start times, round ${i + 1} of ${runs}`);
}
for (const { peer, times, row } of running) {
  row.startMs = median(times);
  // A copy that takes less than the spread of the start times is not measurable here.
  const noise = 2 * (percentile(times, 75) - percentile(times, 25));
  const copies: number[] = [];
  for (let i = 0; i < 3; i++) {
    const copy = peer.wrap(["/bin/cp", src, `${work}/dst-${i}.bin`])!;
    const t = await timeOnce(copy);
    await Deno.remove(`${work}/dst-${i}.bin`).catch(() => {});
    // Throughput of the copy itself: the sandbox's start time is subtracted.
    const copyMs = t.ms - row.startMs;
    if (t.ok && copyMs > noise) copies.push(mb / (copyMs / 1000));
  }
  row.copyMBs = copies.length ? median(copies) : null;
  if (copies.length === 0) {
    row.status = [row.status, "copy: not measurable (within the start-time noise, or failed)"]
      .filter(Boolean).join("; ");
  }
  console.error(`bench: ${peer.name} done`);
}
const loadAfter = loadAverage();
await Deno.remove(work, { recursive: true });

const direct = rows[0];

function loadAverage(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "unknown";
  }
}
const srtRow = rows.find((r) => r.name.startsWith("srt"));
const fmt = (n: number | null, d = 1) => (n === null ? "-" : n.toFixed(d));
console.log(`\n${machineLine()}; load average ${loadBefore} before, ${loadAfter} after\n`);
console.log(
  `| sandbox | start, median ms | overhead vs direct, ms | start vs srt | ${mb} MB copy MB/s | copy vs direct | note |`,
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
for (const r of rows) {
  const overhead = r.startMs !== null && direct.startMs !== null
    ? r.startMs - direct.startMs
    : null;
  const vsSrt = r.startMs !== null && srtRow?.startMs
    ? `${(r.startMs / srtRow.startMs).toFixed(2)}x`
    : "-";
  const copyRatio = r.copyMBs !== null && direct.copyMBs
    ? `${((r.copyMBs / direct.copyMBs) * 100).toFixed(0)}%`
    : "-";
  console.log(
    `| ${r.name} | ${fmt(r.startMs)} | ${fmt(overhead)} | ${vsSrt} | ${
      fmt(r.copyMBs, 0)
    } | ${copyRatio} | ${r.status} |`,
  );
}
