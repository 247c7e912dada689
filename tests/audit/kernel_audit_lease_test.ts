// Kernel auditing turned on by clawcage is turned off by the last run that relies on it, also
// after a supervisor was killed with -9, and never when it was on before clawcage came. Real
// kernel audit state, real processes (root and an audit netlink socket needed).

import assert from "node:assert/strict";
import {
  KERNEL_AUDIT_STATE_DIR,
  kernelAuditLeftover,
  kernelAuditOn,
  setKernelAudit,
} from "../../core/audit/kernel_audit_lease.ts";
import { cli } from "../helpers/cli.ts";
import { kernelAuditProblem } from "./helpers.ts";

const skip = await kernelAuditProblem();
if (skip) console.log(`kernel audit lease tests skipped: ${skip}`);

/** Runs fn with kernel auditing off at the start and puts the host's setting back after. */
async function fromAuditOff(fn: (dir: string) => Promise<void>): Promise<void> {
  const was = await kernelAuditOn();
  const dir = Deno.makeTempDirSync({ prefix: "clawcage-kaudit-" });
  try {
    if (was) await setKernelAudit(false);
    await fn(`${dir}/state`);
  } finally {
    await setKernelAudit(was);
    Deno.removeSync(dir, { recursive: true });
  }
}

class Holder {
  readonly child: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;

  constructor(dir: string, mode: "enable" | "if_enabled") {
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--quiet",
        new URL("./fixtures/audit_lease_child.ts", import.meta.url).pathname,
        dir,
        mode,
      ],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    this.#lines = this.child.stdout
      .pipeThrough(new TextDecoderStream())
      .pipeThrough(
        new TransformStream<string, string>({
          transform(chunk, c) {
            for (const l of chunk.split("\n")) if (l) c.enqueue(l);
          },
        }),
      )
      .getReader();
  }

  async line(): Promise<string> {
    const r = await this.#lines.read();
    return r.done ? "(eof)" : r.value;
  }

  /** Lets it release; resolves with its last line. */
  async release(): Promise<string> {
    await this.child.stdin.close();
    const l = await this.line();
    await this.child.status;
    return l;
  }

  async kill(): Promise<void> {
    this.child.kill("SIGKILL");
    await this.child.status;
    await this.child.stdin.close().catch(() => {});
    await this.#lines.cancel().catch(() => {});
  }
}

Deno.test({
  name: "kernel audit: two runs turn it on once; it stays on until the last one ends",
  ignore: skip !== null,
  sanitizeResources: false,
  fn: () =>
    fromAuditOff(async (dir) => {
      const a = new Holder(dir, "enable");
      assert.equal(await a.line(), "held");
      assert.equal(await kernelAuditOn(), true, "the first run turns auditing on");
      const b = new Holder(dir, "if_enabled");
      assert.equal(await b.line(), "held", "a run that only reads it relies on it too");
      assert.equal(await a.release(), "released");
      assert.equal(await kernelAuditOn(), true, "still on while the second run reads denials");
      assert.equal(await b.release(), "released");
      assert.equal(await kernelAuditOn(), false, "the last run turns it off");
    }),
});

Deno.test({
  name: "kernel audit: after kill -9 of the run that turned it on, the next run turns it off",
  ignore: skip !== null,
  sanitizeResources: false,
  fn: () =>
    fromAuditOff(async (dir) => {
      const a = new Holder(dir, "enable");
      assert.equal(await a.line(), "held");
      await a.kill();
      assert.equal(await kernelAuditOn(), true, "nobody could turn it off");
      assert.equal(kernelAuditLeftover(dir), true, "doctor sees the leftover");

      // A run that may not turn auditing on does not read the leftover: it turns it off.
      const b = new Holder(dir, "if_enabled");
      assert.equal(await b.line(), "off");
      assert.equal(await kernelAuditOn(), false);
      assert.equal(kernelAuditLeftover(dir), false);
      await b.release();

      // A run with `enable` adopts a leftover and its end turns auditing off.
      const c = new Holder(dir, "enable");
      assert.equal(await c.line(), "held");
      await c.kill();
      const d = new Holder(dir, "enable");
      assert.equal(await d.line(), "held");
      assert.equal(await d.release(), "released");
      assert.equal(await kernelAuditOn(), false);
    }),
});

Deno.test({
  name: "kernel audit: auditing that was on before clawcage stays on",
  ignore: skip !== null,
  sanitizeResources: false,
  fn: () =>
    fromAuditOff(async (dir) => {
      await setKernelAudit(true); // the administrator's `auditctl -e 1`
      const a = new Holder(dir, "enable");
      assert.equal(await a.line(), "held");
      assert.equal(await a.release(), "released");
      assert.equal(await kernelAuditOn(), true);
      assert.equal(kernelAuditLeftover(dir), false);
      const st = Deno.statSync(dir);
      assert.equal((st.mode ?? 0) & 0o777, 0o700, "the state directory is root-only");
    }),
});

Deno.test({
  name: "kernel audit: doctor warns when a killed run left it on",
  ignore: skip !== null,
  sanitizeResources: false,
  fn: () =>
    fromAuditOff(async () => {
      // doctor reads the real state directory; a test holder takes the place of a real run.
      if (kernelAuditLeftover(KERNEL_AUDIT_STATE_DIR)) {
        throw new Error(`${KERNEL_AUDIT_STATE_DIR} already holds a leftover; clear it first`);
      }
      const policy = Deno.makeTempFileSync({ suffix: ".yaml" });
      Deno.writeTextFileSync(policy, "version: 1\naudit:\n  kernel_denials: if_enabled\n");
      try {
        const a = new Holder(KERNEL_AUDIT_STATE_DIR, "enable");
        assert.equal(await a.line(), "held");
        await a.kill();
        const r = await cli(["doctor", "--json", "--policy", policy]);
        const check =
          (JSON.parse(r.stdout).checks as { name: string; status: string; detail: string }[])
            .find((c) => c.name === "landlock denials");
        assert.equal(check?.status, "warn", JSON.stringify(check));
        assert.match(check?.detail ?? "", /was killed/);
        const b = new Holder(KERNEL_AUDIT_STATE_DIR, "if_enabled");
        assert.equal(await b.line(), "off");
        await b.release();
        assert.equal(kernelAuditLeftover(KERNEL_AUDIT_STATE_DIR), false);
      } finally {
        Deno.removeSync(policy);
      }
    }),
});
