import assert from "node:assert/strict";
import { canonicalPath, compilePolicy, decide } from "../../core/policy/decide.ts";
import type { DecisionRequest } from "../../core/policy/decision.ts";
import { parsePolicy } from "../../core/policy/load.ts";
import { loadFixture } from "./helpers.ts";

const rules = compilePolicy(loadFixture("rules.yaml"));
const ws = compilePolicy(loadFixture("websocket_tcp.yaml"));
const audit = compilePolicy(loadFixture("audit_mode.yaml"));
const full = compilePolicy(loadFixture("openshell_full.yaml"));

const CURL = "/usr/bin/curl";

function req(host: string, port: number, more: Partial<DecisionRequest> = {}): DecisionRequest {
  return { binary: CURL, host, port, ...more };
}

Deno.test("decide: an empty policy denies everything", () => {
  const d = decide(compilePolicy(parsePolicy("version: 1\n", "p.yaml")), req("a.example.com", 443));
  assert.equal(d.verdict, "deny");
  assert.match(d.reason, /no network_policies entry allows a\.example\.com:443/);
  assert.equal(d.inspect, false);
});

Deno.test("decide: connection level allows a listed binary, host and port", () => {
  const d = decide(rules, req("api.example.com", 443));
  assert.equal(d.verdict, "allow");
  assert.equal(d.entry, "example_api");
  assert.equal(d.rule, "endpoints[0]");
  assert.equal(d.inspect, true);
  assert.equal(d.tlsSkip, false);
});

Deno.test("decide: host is case-insensitive and a trailing dot is ignored", () => {
  assert.equal(decide(rules, req("API.Example.COM.", 443)).verdict, "allow");
});

Deno.test("decide: an endpoint without protocol needs no inspection", () => {
  const d = decide(rules, req("uploads.example.com", 443));
  assert.equal(d.verdict, "allow");
  assert.equal(d.inspect, false);
  const r = decide(rules, req("uploads.example.com", 443, { method: "DELETE", path: "/x" }));
  assert.equal(r.verdict, "allow");
});

Deno.test("decide: wrong port, wrong binary, unknown binary are denied with what is missing", () => {
  const port = decide(rules, req("api.example.com", 80));
  assert.equal(port.verdict, "deny");
  assert.match(port.reason, /port 80 is not allowed for api\.example\.com .*443/);
  const bin = decide(rules, req("api.example.com", 443, { binary: "/usr/bin/wget" }));
  assert.equal(bin.verdict, "deny");
  assert.equal(bin.rule, "binaries");
  assert.match(
    bin.reason,
    /\/usr\/bin\/wget may not connect to api\.example\.com:443.*\/usr\/bin\/curl/,
  );
  const unknown = decide(rules, req("api.example.com", 443, { binary: "" }));
  assert.equal(unknown.verdict, "deny");
  assert.match(unknown.reason, /unidentified program/);
});

Deno.test("decide: binary globs", () => {
  const java = "/usr/lib/jvm/java-21/bin/java";
  assert.equal(decide(rules, req("api.example.com", 443, { binary: java })).verdict, "allow");
  const nested = "/usr/lib/jvm/a/b/bin/java";
  assert.equal(decide(rules, req("api.example.com", 443, { binary: nested })).verdict, "deny");
});

Deno.test("decide: wildcard hosts: * is one label, ** several", () => {
  assert.equal(decide(rules, req("eu.cdn.example.com", 443)).verdict, "allow");
  assert.equal(decide(rules, req("eu.cdn.example.com", 80)).verdict, "allow");
  assert.equal(decide(rules, req("a.eu.cdn.example.com", 443)).verdict, "deny");
  assert.equal(decide(rules, req("cdn.example.com", 443)).verdict, "deny");
  const wget = { binary: "/usr/bin/wget" };
  assert.equal(decide(rules, req("a.b.static.example.org", 443, wget)).verdict, "allow");
  assert.equal(decide(rules, req("static.example.org", 443, wget)).verdict, "deny");
});

Deno.test("decide: tls: skip is reported at connection level", () => {
  const d = decide(rules, req("x.static.example.org", 443, { binary: "/usr/bin/wget" }));
  assert.equal(d.tlsSkip, true);
  assert.equal(d.inspect, false);
});

Deno.test("decide: request level: allow rules, deny rules, query matchers", () => {
  const get = (path: string, query = "", method = "GET") =>
    decide(rules, req("api.example.com", 443, { method, path, query }));
  assert.equal(get("/repos/a/b").verdict, "allow");
  assert.equal(get("/repos/a/b").rule, "endpoints[0].rules[0]");
  assert.equal(get("/repos/a/b", "", "HEAD").verdict, "allow", "HEAD matches a GET rule");
  assert.equal(get("/repos/a/issues", "", "POST").verdict, "allow");
  assert.equal(get("/repos/a/b/issues", "", "POST").verdict, "deny");
  assert.equal(get("/repos/a", "", "DELETE").verdict, "deny");
  const denied = get("/repos/private/x");
  assert.equal(denied.verdict, "deny");
  assert.equal(denied.rule, "endpoints[0].deny_rules[0]");
  assert.equal(get("/repos/o/r/rulesets", "", "POST").rule, "endpoints[0].deny_rules[1]");
  assert.equal(get("/repos/a/b", "token=x").verdict, "deny", "deny rule with query");
  assert.equal(get("/repos/a/b", "other=x").verdict, "allow");
  assert.equal(get("/api/v1/download", "platform=linux-x64").verdict, "allow");
  assert.equal(get("/api/v1/download", "platform=linux-x64&platform=darwin-arm").verdict, "allow");
  assert.equal(get("/api/v1/download", "platform=linux-x64&platform=win").verdict, "deny");
  assert.equal(get("/api/v1/download").verdict, "deny", "a configured query key is required");
  assert.equal(get("/api/v1/download", "platform=linux-1.2").verdict, "deny", "* stops at .");
});

Deno.test("decide: request paths are canonicalised before matching (no bypass)", () => {
  const get = (path: string) =>
    decide(rules, req("api.example.com", 443, { method: "GET", path })).verdict;
  assert.equal(get("/repos/a/../private/x"), "deny");
  assert.equal(get("/repos/private"), "deny", "the bare path has its own deny rule");
  assert.equal(get("/repos/private/"), "deny");
  assert.equal(get("/repos/%70rivate/x"), "deny");
  assert.equal(get("/repos//private/x"), "deny");
  assert.equal(get("/repos/./private/x"), "deny");
  assert.equal(get("/repos/private;x=1/x"), "deny");
  assert.equal(get("/repos/%2e%2e/repos/private/x"), "deny");
  assert.equal(get("/repos/private%2Fx"), "deny", "encoded slash refused");
  assert.equal(get("/../etc/passwd"), "deny");
  assert.equal(get("/repos/%zz"), "deny");
  assert.equal(get("relative"), "deny");
});

Deno.test("decide: canonicalPath", () => {
  assert.deepEqual(canonicalPath("/a/./b/../c/", false), { path: "/a/c/" });
  assert.deepEqual(canonicalPath("/a//b", false), { path: "/a/b" });
  assert.deepEqual(canonicalPath("/", false), { path: "/" });
  assert.deepEqual(canonicalPath("/%40scope%2fpkg", true), { path: "/@scope%2Fpkg" });
  assert.ok("error" in canonicalPath("/%40scope%2fpkg", false));
  assert.ok("error" in canonicalPath("/a%00b", false));
  assert.ok("error" in canonicalPath("/" + "a".repeat(9000), false));
});

Deno.test("decide: allow_encoded_slash lets npm scoped packages through", () => {
  const d = decide(full, {
    binary: "/usr/bin/node",
    host: "registry.npmjs.org",
    port: 443,
    method: "GET",
    path: "/@types%2fnode",
  });
  assert.equal(d.verdict, "allow");
  assert.equal(d.rule, "endpoints[0].access: read-only");
});

Deno.test("decide: access presets", () => {
  const gh = (method: string) =>
    decide(full, {
      binary: "/usr/bin/gh",
      host: "api.github.com",
      port: 443,
      method,
      path: "/repos/a/b",
    }).verdict;
  assert.equal(gh("GET"), "allow");
  assert.equal(gh("OPTIONS"), "allow");
  assert.equal(gh("POST"), "deny");
  assert.equal(gh("DELETE"), "deny");
});

Deno.test("decide: websocket rules", () => {
  const node = { binary: "/usr/bin/node" };
  const r = (method: string, path: string) =>
    decide(ws, req("realtime.example.com", 443, { ...node, method, path })).verdict;
  assert.equal(r("GET", "/v1/realtime"), "allow");
  assert.equal(r("WEBSOCKET_TEXT", "/v1/realtime"), "allow");
  assert.equal(r("WEBSOCKET_TEXT", "/v1/admin/x"), "deny");
  assert.equal(r("POST", "/v1/realtime"), "deny");
});

Deno.test("decide: tcp and hostless endpoints give allowed_ips to the SSRF guard", () => {
  const pg = decide(ws, req("db.internal.example.com", 5432, { binary: "/usr/bin/psql" }));
  assert.equal(pg.verdict, "allow");
  assert.deepEqual(pg.allowedIps, ["10.0.0.0/8"]);
  assert.equal(pg.inspect, false);
  const anyHost = decide(ws, req("svc.corp", 8080));
  assert.equal(anyHost.verdict, "allow");
  assert.deepEqual(anyHost.allowedIps, ["10.20.0.0/16", "fd00::/8"]);
  const wrongPort = decide(ws, req("svc.corp", 8081));
  assert.equal(wrongPort.verdict, "deny");
  assert.match(wrongPort.reason, /no network_policies entry allows svc\.corp:8081/);
});

Deno.test("decide: audit mode lets rule violations through as audit-allow", () => {
  const r = (method: string, path: string) =>
    decide(audit, req("api.observed.example.com", 443, { method, path }));
  assert.equal(r("GET", "/x").verdict, "allow");
  const post = r("POST", "/x");
  assert.equal(post.verdict, "audit-allow");
  assert.match(post.reason, /audit mode/);
  const admin = r("GET", "/admin/users");
  assert.equal(admin.verdict, "audit-allow");
  assert.equal(admin.rule, "endpoints[0].deny_rules[0]");
  assert.equal(r("GET", "/../x").verdict, "audit-allow");
  // Audit mode never opens hosts, ports or binaries that are not listed.
  assert.equal(decide(audit, req("api.observed.example.com", 80)).verdict, "deny");
  assert.equal(
    decide(audit, req("api.observed.example.com", 443, { binary: "/bin/sh" })).verdict,
    "deny",
  );
});

Deno.test("decide: an enforce deny rule beats an allow in another entry", () => {
  const p = compilePolicy(parsePolicy(
    `version: 1
network_policies:
  open:
    endpoints:
      - {host: api.example.com, port: 443, protocol: rest, enforcement: enforce, access: full}
    binaries: [{path: /usr/bin/curl}]
  guard:
    endpoints:
      - host: api.example.com
        port: 443
        protocol: rest
        enforcement: enforce
        access: full
        deny_rules: [{method: DELETE, path: "**"}]
    binaries: [{path: /usr/bin/curl}]
`,
    "p.yaml",
  ));
  const del = decide(p, req("api.example.com", 443, { method: "DELETE", path: "/x" }));
  assert.equal(del.verdict, "deny");
  assert.equal(del.entry, "guard");
  assert.equal(
    decide(p, req("api.example.com", 443, { method: "GET", path: "/x" })).verdict,
    "allow",
  );
});

Deno.test("decide: bad ports and hosts are denied", () => {
  assert.equal(decide(rules, req("api.example.com", 0)).verdict, "deny");
  assert.equal(decide(rules, req("api.example.com", 70000)).verdict, "deny");
  assert.equal(decide(rules, req("", 443)).verdict, "deny");
});

Deno.test("decide: hosts that are not host names are denied, even under wildcards", () => {
  for (
    const host of [
      "evil/x.cdn.example.com",
      "a b.cdn.example.com",
      "x.cdn.example.com\0",
      "@.cdn.example.com",
    ]
  ) {
    const d = decide(rules, req(host, 443));
    assert.equal(d.verdict, "deny", host);
    assert.match(d.reason, /is not a host name or IP address/);
  }
  assert.equal(decide(ws, req("a/b", 8080)).verdict, "deny", "hostless endpoints too");
});

Deno.test("decide: binary paths must be canonical to match (no ../ through a glob)", () => {
  const java = (binary: string) => decide(rules, req("api.example.com", 443, { binary })).verdict;
  assert.equal(java("/usr/lib/jvm/j21/bin/java"), "allow");
  assert.equal(java("/usr/lib/jvm/../../../tmp/bin/java"), "deny");
  assert.equal(java("/usr/lib/jvm//bin/java"), "deny");
  assert.equal(java("/usr/lib/jvm/./bin/java"), "deny");
  assert.equal(java("usr/bin/curl"), "deny");
  assert.equal(java("/usr/bin/curl/"), "deny");
});

Deno.test("decide: a binary is also allowed through a listed parent process (OpenShell)", () => {
  const viaNode = { binary: "/usr/bin/curl", ancestors: ["/usr/bin/bash", "/usr/bin/node"] };
  const conn = decide(ws, req("realtime.example.com", 443, viaNode));
  assert.equal(conn.verdict, "allow");
  const noParent = decide(ws, req("realtime.example.com", 443, { ancestors: ["/usr/bin/bash"] }));
  assert.equal(noParent.verdict, "deny");
  assert.match(noParent.reason, /\/usr\/bin\/curl \(nor its parents \/usr\/bin\/bash\) may not/);
  const bad = { binary: "/usr/bin/curl", ancestors: ["/usr/bin/../bin/node"] };
  assert.equal(decide(ws, req("realtime.example.com", 443, bad)).verdict, "deny");
});
