// `deno task bench [NAME] [ARGS...]`: runs one benchmark (or lists them).

const BENCHES: Record<string, string> = {
  sandbox: "./sandbox.ts",
  audit: "./audit_throughput.ts",
  appliance: "./appliance.ts",
  pdp: "./pdp_socket.ts",
  policy: "./policy_decide.ts",
  "audit-export": "./audit_export.ts",
  llama: "./llama.ts",
  bridge: "./bridge.ts",
  egress: "./egress.ts",
  pii: "./pii_accuracy.ts",
  "pii-nlp": "./pii_nlp.ts",
  "egress-hops": "./egress_hops.ts",
};

const [name, ...rest] = Deno.args;
if (!name || !BENCHES[name]) {
  console.log(
    `usage: deno task bench NAME [ARGS]\n\nbenchmarks: ${Object.keys(BENCHES).join(", ")}`,
  );
  Deno.exit(name ? 2 : 0);
}
const script = new URL(BENCHES[name], import.meta.url).pathname;
const out = await new Deno.Command(Deno.execPath(), {
  args: ["run", "--allow-all", "--no-prompt", script, ...rest],
  stdout: "inherit",
  stderr: "inherit",
}).output();
Deno.exit(out.code);
