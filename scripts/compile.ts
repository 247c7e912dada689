// `deno task compile [--target x86_64|aarch64 ...]`: builds dist/clawcage-linux-<arch> with
// `deno compile`, embedding policies/ and the systemd unit, and writes dist/SHA256SUMS.
//
// `deno compile` needs `denort` (Deno's runtime without the toolchain) for the target; it
// downloads it unless DENORT_BIN points at one. Build machines without internet set
// DENORT_BIN (per architecture: DENORT_BIN_X86_64 / DENORT_BIN_AARCH64 take precedence).

import { parseArgs } from "node:util";
import { PERMISSION_FLAGS } from "../core/self.ts";

const TARGETS: Record<string, string> = {
  x86_64: "x86_64-unknown-linux-gnu",
  aarch64: "aarch64-unknown-linux-gnu",
};

const { values } = parseArgs({
  args: Deno.args,
  options: { target: { type: "string", multiple: true } },
});
const arches = values.target ?? [Deno.build.arch];
for (const a of arches) {
  if (!TARGETS[a]) {
    console.error(`compile: unknown target ${a} (use x86_64 or aarch64)`);
    Deno.exit(2);
  }
}

const root = new URL("..", import.meta.url).pathname;
await Deno.mkdir(`${root}dist`, { recursive: true });
const sums: string[] = [];
let failed = false;
for (const arch of arches) {
  const output = `dist/clawcage-linux-${arch}`;
  const denort = Deno.env.get(`DENORT_BIN_${arch.toUpperCase()}`) ?? Deno.env.get("DENORT_BIN");
  console.error(
    `compile: ${output}${denort ? ` (denort: ${denort})` : " (denort: downloaded by deno)"}`,
  );
  const env: Record<string, string> = {};
  if (denort) env.DENORT_BIN = denort;
  const result = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      ...PERMISSION_FLAGS,
      "--include",
      "policies",
      "--include",
      "scripts/clawcage.service",
      "--target",
      TARGETS[arch],
      "--output",
      output,
      "main.ts",
    ],
    cwd: root,
    env,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!result.success) {
    console.error(`compile: ${output} failed (exit ${result.code})`);
    failed = true;
    continue;
  }
  const bytes = await Deno.readFile(`${root}${output}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  sums.push(`${hex}  clawcage-linux-${arch}`);
  console.error(`compile: ${output} ${(bytes.length / 1e6).toFixed(1)} MB sha256 ${hex}`);
}
if (sums.length) await Deno.writeTextFile(`${root}dist/SHA256SUMS`, sums.join("\n") + "\n");
Deno.exit(failed ? 1 : 0);
