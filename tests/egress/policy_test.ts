// The proxy with the real policy engine, in a network namespace of its own so the upstreams can
// live on a private address (policies never open loopback): see fixtures/policy_scenario.ts.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { isRoot } from "../helpers/host.ts";
import { systemProgram } from "../../core/self.ts";
import { hasCurl } from "./helpers.ts";

const why = !isRoot
  ? "needs root for a network namespace"
  : !systemProgram("unshare")
  ? "util-linux unshare missing"
  : !systemProgram("ip")
  ? "iproute2 ip missing"
  : !hasCurl
  ? "curl missing"
  : null;
if (why) console.log(`skipping real-policy egress test: ${why}`);

Deno.test({
  name: "real decide() in a network namespace: host, port, method, path and binary rules",
  ignore: why !== null,
  async fn() {
    const script = fileURLToPath(new URL("./fixtures/policy_scenario.ts", import.meta.url));
    const out = await new Deno.Command("unshare", {
      args: [
        "--net",
        "--",
        "sh",
        "-c",
        'ip link set lo up && ip addr add 10.77.0.1/32 dev lo && exec "$0" run --allow-all --no-prompt "$1"',
        Deno.execPath(),
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /policy scenario: all checks passed/);
  },
});
