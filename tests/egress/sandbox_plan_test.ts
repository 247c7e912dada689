// withEgress: what the stage plan gets for egress, with namespaces and rootless (pure).

import assert from "node:assert/strict";
import { parsePolicy } from "../../core/policy/load.ts";
import {
  BRIDGE_PORT,
  buildPlan,
  CA_ENV_NAMES,
  callerIdentityProblem,
  type EgressEndpoint,
  type HostView,
  PlanError,
  PROXY_ENV_NAMES,
  SANDBOX_CA_BUNDLE,
  withEgress,
} from "../../core/sandbox/plan.ts";

const host = (isRoot: boolean): HostView => ({
  isRoot,
  uid: isRoot ? 0 : 1000,
  gid: isRoot ? 0 : 1000,
  userName: isRoot ? "root" : "me",
  passwd:
    "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\nme:x:1000:1000::/:/bin/sh\n",
  group: "",
  env: {},
  kind: (p) => (p === "/work" || p === "/run" ? "dir" : null),
  stdinIsTerminal: false,
  which: (p) => `/usr/bin/${p}`,
});
const policy = parsePolicy("version: 1\nprocess:\n  run_as_user: nobody\n", "t.yaml");
const endpoint = (over: Partial<EgressEndpoint> = {}): EgressEndpoint => ({
  runtimeDir: "/run/clawcage/abc",
  socketDir: "/run/clawcage/abc/bridge",
  socketName: "proxy.sock",
  proxyPort: null,
  caBundle: "/run/clawcage/abc/ca-bundle.pem",
  agentEnv: { GITHUB_TOKEN: "clawcage-placeholder-github-00" },
  ...over,
});

Deno.test("withEgress: namespaces route through the bridge; proxy and CA variables override --env", () => {
  const base = buildPlan(policy, {
    argv: ["agent"],
    workdir: "/work",
    env: ["HTTP_PROXY=http://evil.example:8080", "SSL_CERT_FILE=/tmp/mine.pem"],
    rootless: false,
  }, host(true));
  const plan = withEgress(base, endpoint());
  assert.deepEqual(plan.bridge, {
    socketDir: "/run/clawcage/abc/bridge",
    socketName: "proxy.sock",
    runtimeDir: "/run/clawcage/abc",
    port: BRIDGE_PORT,
  });
  for (const name of PROXY_ENV_NAMES) {
    assert.equal(plan.env[name], "http://127.0.0.1:3128");
    assert.equal(plan.env[name.toLowerCase()], "http://127.0.0.1:3128");
  }
  assert.equal(plan.env.NO_PROXY, "localhost,127.0.0.1,::1");
  for (const name of CA_ENV_NAMES) assert.equal(plan.env[name], SANDBOX_CA_BUNDLE);
  assert.deepEqual(plan.caBundle, {
    source: "/run/clawcage/abc/ca-bundle.pem",
    target: SANDBOX_CA_BUNDLE,
  });
  assert.equal(plan.env.GITHUB_TOKEN, "clawcage-placeholder-github-00");
  assert.deepEqual(plan.connectPorts, []);
  // The runtime directory is never granted to the agent.
  assert.ok(![...plan.readOnly, ...plan.readWrite].some((p) => p.startsWith("/run/clawcage")));
});

Deno.test("withEgress: rootless connects straight to the proxy port, the only TCP port allowed", () => {
  const base = buildPlan(
    policy,
    { argv: ["agent"], workdir: "/work", env: [], rootless: true },
    host(false),
  );
  const plan = withEgress(
    base,
    endpoint({
      socketDir: null,
      proxyPort: 41234,
      caBundle: "/tmp/clawcage-egress-1000/x/ca-bundle.pem",
    }),
  );
  assert.equal(plan.bridge, null);
  assert.deepEqual(plan.connectPorts, [41234]);
  assert.equal(plan.env.HTTPS_PROXY, "http://127.0.0.1:41234");
  assert.equal(plan.env.SSL_CERT_FILE, "/tmp/clawcage-egress-1000/x/ca-bundle.pem");
  assert.equal(plan.caBundle?.target, plan.caBundle?.source);
  assert.throws(() => withEgress(base, endpoint({ socketDir: null, proxyPort: null })), PlanError);
  const ns = buildPlan(
    policy,
    { argv: ["agent"], workdir: "/work", env: [], rootless: false },
    host(true),
  );
  assert.throws(() => withEgress(ns, endpoint({ socketDir: null })), PlanError);
});

Deno.test("callerIdentityProblem: the bridge needs /proc granted to name callers", () => {
  const withProc = {
    ...host(true),
    kind: (p: string) => (["/work", "/run", "/proc"].includes(p) ? "dir" as const : null),
  };
  const granted = parsePolicy(
    "version: 1\nfilesystem_policy:\n  read_only: [/proc]\nprocess:\n  run_as_user: nobody\n",
    "t.yaml",
  );
  const opts = { argv: ["agent"], workdir: "/work", env: [], rootless: false };
  assert.equal(
    callerIdentityProblem(withEgress(buildPlan(granted, opts, withProc), endpoint())),
    null,
  );
  assert.match(
    callerIdentityProblem(withEgress(buildPlan(policy, opts, withProc), endpoint()))!,
    /does not grant \/proc/,
  );
});
