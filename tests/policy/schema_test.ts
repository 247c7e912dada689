import assert from "node:assert/strict";
import { parsePolicy } from "../../core/policy/load.ts";
import { hostsOverlap } from "../../core/policy/network.ts";
import { compilePolicy, decide } from "../../core/policy/decide.ts";
import { policyWarnings } from "../../core/policy/warnings.ts";
import { loadFixture, problems, withEndpoint } from "./helpers.ts";

const FIXTURES = ["openshell_full.yaml", "rules.yaml", "websocket_tcp.yaml", "audit_mode.yaml"];

for (const name of FIXTURES) {
  Deno.test(`schema: fixture ${name} loads`, () => {
    const p = loadFixture(name);
    assert.ok(Object.keys(p.network_policies).length > 0);
  });
}

Deno.test("schema: the full example keeps every field", () => {
  const p = loadFixture("openshell_full.yaml");
  const ep = p.network_policies.npm_registry.endpoints[0];
  assert.equal(ep.host, "registry.npmjs.org");
  assert.equal(ep.port, 443);
  assert.equal(ep.protocol, "rest");
  assert.equal(ep.enforcement, "enforce");
  assert.equal(ep.access, "read-only");
  assert.equal(ep.allow_encoded_slash, true);
  assert.deepEqual(p.network_policies.npm_registry.binaries, [{ path: "/usr/bin/node" }]);
});

Deno.test("schema: network_policies defaults to empty and binaries to none", () => {
  assert.deepEqual(parsePolicy("version: 1\n", "p.yaml").network_policies, {});
  const p = parsePolicy(
    "version: 1\nnetwork_policies:\n  a:\n    endpoints: [{host: a.example.com, port: 443}]\n",
    "p.yaml",
  );
  assert.deepEqual(p.network_policies.a.binaries, []);
});

// Each case: endpoint YAML, expected line:column and message fragment.
const BAD_ENDPOINTS: [string, string, RegExp][] = [
  [
    "host: a.example.com\nport: 443\nprotocol: grpc",
    "7:19",
    /protocol "grpc" is not supported yet/,
  ],
  [
    "host: a.example.com\nport: 443\nprotocol: graphql\naccess: full",
    "7:19",
    /"graphql" is not supported yet/,
  ],
  ["host: a.example.com\nport: 443\nprotocol: mcp", "7:19", /"mcp" is not supported yet/],
  [
    "host: a.example.com\nport: 443\nprotocol: rest\naccess: full\nrules:\n  - allow: {method: GET, path: /x}",
    "10:11",
    /access and rules cannot be combined/,
  ],
  ["host: a.example.com\nport: 443\nprotocol: rest\nrules: []", "8:16", /rules must not be empty/],
  ["host: a.example.com\nport: 443\nprotocol: rest", "7:19", /protocol rest needs access or rules/],
  [
    "host: a.example.com\nport: 443\nprotocol: tcp\naccess: full",
    "8:17",
    /protocol tcp accepts no request-level field \(access\)/,
  ],
  [
    "host: a.example.com\nport: 443\nprotocol: rest\ntls: skip\naccess: full",
    "8:14",
    /tls: skip cannot be combined/,
  ],
  ['host: "*.com"\nport: 443', "5:15", /at least three labels/],
  ['host: "*"\nport: 443', "5:15", /at least three labels/],
  ['host: "a.**.example.com"\nport: 443', "5:15", /\*\* is allowed only as the whole first label/],
  ['host: "api.x*.example.com"\nport: 443', "5:15", /must be a whole label/],
  ['host: "a?.example.com"\nport: 443', "5:15", /only \* and \*\* are wildcards/],
  ["host: 127.0.0.1\nport: 80", "5:15", /loopback/],
  ["host: localhost\nport: 80", "5:15", /loopback/],
  ["host: 169.254.169.254\nport: 80", "5:15", /link-local/],
  ["host: a.example.com\nport: 443\nallowed_ips: [127.0.0.0/8]", "7:23", /overlaps loopback/],
  ["host: a.example.com\nport: 443\nallowed_ips: [169.254.0.0/16]", "7:23", /overlaps link-local/],
  ["host: a.example.com\nport: 443\nallowed_ips: [0.0.0.0/0]", "7:23", /overlaps unspecified/],
  ['host: a.example.com\nport: 443\nallowed_ips: ["fe80::/10"]', "7:23", /link-local/],
  ['host: a.example.com\nport: 443\nallowed_ips: ["::ffff:127.0.0.1"]', "7:23", /loopback/],
  [
    "host: a.example.com\nport: 443\nallowed_ips: [10.0.0.0/33]",
    "7:23",
    /not an IP address or CIDR/,
  ],
  ["host: a.example.com", "5:9", /needs port/],
  ["host: a.example.com\nport: 443\nports: [80]", "7:16", /port or ports, not both/],
  ["host: a.example.com\nport: 70000", "6:15", /port must be 1-65535/],
  ["port: 443", "5:9", /needs host/],
  [
    'host: a.example.com\nport: 443\nprotocol: rest\nrules:\n  - allow: {method: GET, path: "/x/[a"}',
    "9:40",
    /unclosed \[/,
  ],
  [
    "host: a.example.com\nport: 443\nprotocol: rest\nrules:\n  - allow: {method: GET, path: relative}",
    "9:40",
    /must start with \//,
  ],
  [
    "host: a.example.com\nport: 443\nprotocol: rest\nrules:\n  - allow: {method: WEBSOCKET_TEXT, path: /x}",
    "9:29",
    /not valid for protocol rest/,
  ],
  [
    "host: a.example.com\nport: 443\nprotocol: websocket\nrules:\n  - allow: {method: POST, path: /x}",
    "9:29",
    /not valid for protocol websocket/,
  ],
  [
    "host: a.example.com\nport: 443\nprotocol: rest\nrules:\n  - allow: {method: GET, path: /x, query: {a: 5}}",
    "9:55",
    /query matcher/,
  ],
  [
    "host: a.example.com\nport: 443\nprotocol: rest\nenforcement: block\naccess: full",
    "8:22",
    /"enforce", "audit"/,
  ],
  [
    "host: a.example.com\nport: 443\nprotocol: rest\naccess: read_only",
    "8:17",
    /"read-only", "read-write", "full"/,
  ],
  [
    "host: a.example.com\nport: 443\ncredential_binding: {provider: x}",
    "7:29",
    /credential_binding \(OpenShell provider credential binding\) is not supported yet/,
  ],
  [
    "host: a.example.com\nport: 443\npath: /v1/**",
    "7:15",
    /path \(OpenShell endpoint path selectors\) is not supported yet/,
  ],
];

for (const [yaml, where, message] of BAD_ENDPOINTS) {
  Deno.test(`schema: refuses ${yaml.split("\n").at(-1)!.trim()} at ${where}`, () => {
    const out = problems(withEndpoint(yaml));
    assert.ok(
      out.some((line) => line.startsWith(`p.yaml:${where}: `) && message.test(line)),
      `expected p.yaml:${where} ${message}, got:\n${out.join("\n")}`,
    );
  });
}

const BAD_BINARIES: [string, RegExp][] = [
  ['      - path: "**"', /must be absolute/],
  ["      - path: usr/bin/curl", /must be absolute/],
  ["      - path: /usr/../bin/sh", /must not contain "\.\."/],
  ["      - path: /usr/bin/[z-a]", /bad range/],
  ["      - exe: /usr/bin/curl", /unknown key "exe"/],
];

for (const [binaries, message] of BAD_BINARIES) {
  Deno.test(`schema: refuses binaries ${binaries.trim()}`, () => {
    const out = problems(withEndpoint("host: a.example.com\nport: 443", binaries));
    assert.ok(
      out.some((line) => /^p\.yaml:8:\d+: /.test(line) && message.test(line)),
      out.join("\n"),
    );
  });
}

Deno.test("schema: binary globs that are narrow are accepted", () => {
  parsePolicy(
    withEndpoint(
      "host: a.example.com\nport: 443",
      "      - path: /usr/lib/jvm/*/bin/java\n      - path: /usr/**",
    ),
    "p.yaml",
  );
});

// OpenShell accepts these and ignores them (its policy-schema reference and l7_validate.rs);
// NemoClaw's own policies use them. They load with OpenShell's meaning and are warned about.
const IGNORED: [string, string, RegExp][] = [
  ["access: full\ntls: skip", "access", /access is ignored: without protocol/],
  ["access: read-only", "access", /access is ignored/],
  ["rules:\n  - allow: {method: POST, path: /v1/**}", "rules", /rules is ignored/],
  ["deny_rules:\n  - {method: GET, path: /x}", "deny_rules", /deny_rules is ignored/],
  ["protocol: rest\naccess: read-only\ntls: terminate", "tls", /tls: terminate is deprecated/],
  ["tls: passthrough", "tls", /tls: passthrough is deprecated/],
];
for (const [extra, key, message] of IGNORED) {
  Deno.test(`schema: OpenShell-accepted ${key} (${extra.split("\n").at(-1)}) loads, warned, decided as OpenShell does`, () => {
    const p = parsePolicy(withEndpoint(`host: a.example.com\nport: 443\n${extra}`), "p.yaml");
    const w = policyWarnings(p).find((x) => x.path.at(-1) === key);
    assert.ok(w?.ignored, JSON.stringify(policyWarnings(p)));
    assert.match(w.message, message);
    const d = decide(compilePolicy(p), {
      binary: "/usr/bin/curl",
      host: "a.example.com",
      port: 443,
    });
    assert.equal(d.verdict, "allow");
    // Without a protocol nothing is inspected (L4); tls: terminate changes nothing for rest.
    assert.equal(d.inspect, extra.includes("protocol: rest"));
    assert.equal(d.tlsSkip, extra.includes("tls: skip"));
  });
}

Deno.test("schema: binaries that match every program and a binary's harness load, warned", () => {
  const p = parsePolicy(
    withEndpoint("host: a.example.com\nport: 443", "      - path: /**\n        harness: true"),
    "p.yaml",
  );
  const w = policyWarnings(p);
  assert.ok(w.some((x) => x.ignored && /matches every program/.test(x.message)), JSON.stringify(w));
  assert.ok(w.some((x) => x.ignored && /harness is deprecated/.test(x.message)));
  const d = decide(compilePolicy(p), { binary: "/tmp/x", host: "a.example.com", port: 443 });
  assert.equal(d.verdict, "allow");
});

Deno.test("schema: protocols: not yet (graphql) vs unknown (https)", () => {
  const [notYet] = problems(withEndpoint("host: a.example.com\nport: 443\nprotocol: graphql"));
  assert.match(notYet, /"graphql" is not supported yet/);
  const [unknown] = problems(withEndpoint("host: a.example.com\nport: 443\nprotocol: https"));
  assert.match(
    unknown,
    /unknown protocol "https" \(expected rest, websocket, tcp; HTTP and HTTPS are rest\)/,
  );
});

Deno.test("schema: a typo in an endpoint key suggests the right one", () => {
  const [line] = problems(withEndpoint("host: a.example.com\nport: 443\nprotocl: rest"));
  assert.match(line, /^p\.yaml:7:9: unknown key "protocl" .*did you mean "protocol"/);
});

Deno.test("schema: read_onyl suggests read_only", () => {
  const [line] = problems("version: 1\nfilesystem_policy:\n  read_onyl: [/usr]\n");
  assert.match(line, /^p\.yaml:3:3: .*did you mean "read_only"/);
});

Deno.test("schema: a key in the wrong place is named with its section", () => {
  const [line] = problems(
    withEndpoint("host: a.example.com\nport: 443\nbinaries: [{path: /usr/bin/curl}]"),
  );
  assert.match(line, /^p\.yaml:7:9: unknown key "binaries" in network_policies\.e\.endpoints\.0/);
});

Deno.test("schema: entry names reserved by OpenShell are refused", () => {
  const [line] = problems(
    "version: 1\nnetwork_policies:\n  _provider_x:\n    endpoints: []\n",
  );
  assert.match(line, /^p\.yaml:4:5: .*reserved/);
});

Deno.test("schema: network_middlewares is refused as not supported yet", () => {
  const [line] = problems("version: 1\nnetwork_middlewares:\n  r: {middleware: x}\n");
  assert.match(line, /^p\.yaml:3:3: .*network_middlewares is not supported yet/);
});

Deno.test("schema: invalid YAML and duplicate keys point at their position", () => {
  assert.match(problems("version: 1\nnetwork_policies: [\n")[0], /^p\.yaml:\d+:\d+: invalid YAML/);
  const dup = problems(withEndpoint("host: a.example.com\nport: 443\nport: 80"));
  assert.match(dup[0], /^p\.yaml:7:9: invalid YAML: Map keys must be unique/);
});

Deno.test("schema: a 10 MB document is refused quickly", () => {
  const t0 = performance.now();
  const [line] = problems("version: 1\n# " + "x".repeat(10 * 1024 * 1024));
  assert.match(line, /larger than/);
  assert.ok(performance.now() - t0 < 2000);
});

Deno.test("schema: deeply nested documents are refused before parsing, flow and block", () => {
  const t0 = performance.now();
  const flow = problems("version: 1\nx: " + "[".repeat(100_000) + "]".repeat(100_000));
  assert.match(flow[0], /^p\.yaml:2:\d+: nesting deeper than 32 levels/);
  let block = "version: 1\nx:\n";
  for (let i = 1; i < 200; i++) block += " ".repeat(i) + "k:\n";
  assert.match(problems(block)[0], /^p\.yaml:\d+:\d+: nesting deeper than 32 levels/);
  const seq = problems("version: 1\nx:\n" + "- ".repeat(200) + "1\n");
  assert.match(seq[0], /nesting deeper than 32 levels/);
  assert.ok(performance.now() - t0 < 2000);
});

Deno.test("schema: a block scalar with deep indentation is text, not nesting", () => {
  let text = "version: 1\nnetwork_policies:\n  a:\n    name: |\n";
  for (let i = 0; i < 60; i++) text += " ".repeat(6 + i) + "line\n";
  text += "    endpoints: []\n";
  parsePolicy(text, "p.yaml");
});

Deno.test("schema: hostsOverlap", () => {
  const yes: [string, string][] = [
    ["api.example.com", "api.example.com"],
    ["*.example.com", "api.example.com"],
    ["**.example.com", "a.b.example.com"],
    ["**.example.com", "*.example.com"],
    ["**.example.com", "**.b.example.com"],
    ["*-api.example.com", "eu-*.example.com"],
    ["api.*.example.com", "api.eu.example.com"],
  ];
  const no: [string, string][] = [
    ["api.example.com", "www.example.com"],
    ["*.example.com", "a.b.example.com"],
    ["**.example.com", "example.com"],
    ["*.example.com", "*.example.org"],
    ["a*.example.com", "b*.example.com"],
    ["*-api.example.com", "*-web.example.com"],
  ];
  for (const [a, b] of yes) assert.ok(hostsOverlap(a, b) && hostsOverlap(b, a), `${a} ~ ${b}`);
  for (const [a, b] of no) assert.ok(!hostsOverlap(a, b) && !hostsOverlap(b, a), `${a} !~ ${b}`);
});

Deno.test("schema: endpoints that can match the same host and port must agree", () => {
  const policy = (a: string, b: string) =>
    `version: 1
network_policies:
  one:
    endpoints:
      - ${a}
    binaries: [{path: /usr/bin/curl}]
  two:
    endpoints:
      - ${b}
    binaries: [{path: /usr/bin/node}]
`;
  const tls = problems(policy(
    "{host: a.example.com, port: 443}",
    "{host: '*.example.com', port: 443, tls: skip}",
  ));
  assert.match(tls[0], /^p\.yaml:9:49: .*tls skip differs from \(none\) in one\.endpoints\[0\]/);
  const ips = problems(policy(
    "{host: a.example.com, ports: [80, 443], allowed_ips: [10.0.0.0/8]}",
    "{host: a.example.com, port: 443}",
  ));
  assert.match(ips[0], /allowed_ips \(none\) differs from 10\.0\.0\.0\/8/);
  const enforcement = problems(policy(
    "{host: a.example.com, port: 443, protocol: rest, access: full, enforcement: enforce}",
    "{host: '**.example.com', port: 443, protocol: rest, access: read-only}",
  ));
  assert.match(enforcement[0], /enforcement audit differs from enforce/);
  // Different ports, or hosts that cannot overlap, are independent.
  parsePolicy(
    policy("{host: a.example.com, port: 443}", "{host: a.example.com, port: 80, tls: skip}"),
    "p.yaml",
  );
  parsePolicy(
    policy("{host: a.example.com, port: 443}", "{host: '*.example.org', port: 443, tls: skip}"),
    "p.yaml",
  );
});

Deno.test("schema: include_workdir defaults as in OpenShell (true only without the section)", () => {
  assert.equal(parsePolicy("version: 1\n", "p.yaml").filesystem_policy.include_workdir, true);
  const present = parsePolicy("version: 1\nfilesystem_policy:\n  read_only: [/usr]\n", "p.yaml");
  assert.equal(present.filesystem_policy.include_workdir, false);
});

Deno.test("schema: OpenShell's filesystem limits: 4096-character paths, 256 paths", () => {
  const long = problems(`version: 1\nfilesystem_policy:\n  read_only: [/${"a".repeat(4100)}]\n`);
  assert.match(long[0], /^p\.yaml:3:15: .*longer than 4096/);
  const many = Array.from({ length: 257 }, (_, i) => `/p${i}`).join(", ");
  const tooMany = problems(`version: 1\nfilesystem_policy:\n  read_only: [${many}]\n`);
  assert.match(tooMany[0], /^p\.yaml:3:3: filesystem_policy: .*more than 256 paths/);
});

Deno.test("schema: overlapping endpoints: tls: terminate and passthrough count as no tls", () => {
  const p = parsePolicy(
    `version: 1
network_policies:
  a:
    endpoints:
      - {host: api.github.com, port: 443, protocol: rest, access: read-only, tls: terminate}
    binaries: [{path: /usr/bin/git}]
  b:
    endpoints:
      - {host: "*.github.com", port: 443}
    binaries: [{path: /usr/bin/curl}]
`,
    "p.yaml",
  );
  assert.equal(Object.keys(p.network_policies).length, 2);
  assert.equal(
    problems(`version: 1
network_policies:
  a:
    endpoints:
      - {host: api.github.com, port: 443, tls: skip}
    binaries: [{path: /usr/bin/git}]
  b:
    endpoints:
      - {host: "*.github.com", port: 443, tls: passthrough}
    binaries: [{path: /usr/bin/curl}]
`).length,
    1,
    "skip and passthrough (= none) still disagree",
  );
});

Deno.test("schema: a binary's harness must be a scalar (it is ignored)", () => {
  const [line] = problems(
    withEndpoint(
      "host: a.example.com\nport: 443",
      "      - path: /usr/bin/curl\n        harness: {a: 1}",
    ),
  );
  assert.match(line, /harness must be a string, number or boolean/);
});
