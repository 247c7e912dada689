// scripts/install.sh end to end, into a temporary --root, downloading from a loopback HTTP
// server. The artifact is a `deno run` wrapper (a shell script that runs main.ts from this
// checkout), NOT a `deno compile` binary: denort cannot be downloaded on the build machines,
// so the real single binary cannot be built here. The installer treats both the same way.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { PERMISSION_FLAGS, systemProgram } from "../../core/self.ts";

const INSTALL = new URL("../../scripts/install.sh", import.meta.url).pathname;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const ARCH = Deno.build.arch;
const NAME = `clawcage-linux-${ARCH}`;
const shellcheck = systemProgram("shellcheck");
if (!shellcheck) console.log("shellcheck test skipped: shellcheck not installed");
const openssl = systemProgram("openssl");
if (!openssl) console.log("signature tests skipped: openssl not installed");

/** The stand-in artifact: runs clawcage from source (denort is unavailable here). */
function wrapper(build: string, extra = ""): string {
  return `#!/bin/sh
# clawcage test artifact ${build}: a deno run wrapper, not a compiled binary (no denort here)
${extra}exec ${Deno.execPath()} run ${PERMISSION_FLAGS.join(" ")} --quiet ${MAIN} "$@"
`;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

class Release {
  files = new Map<string, string>();
  server: Deno.HttpServer<Deno.NetAddr>;
  requests: string[] = [];

  constructor() {
    this.server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (r) => {
      const path = new URL(r.url).pathname.slice(1);
      this.requests.push(path);
      const body = this.files.get(path);
      return body === undefined ? new Response("not found", { status: 404 }) : new Response(body);
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.server.addr.port}`;
  }

  /** Publishes `binary` with a matching SHA256SUMS (or `sums` when given). */
  publish(binary: string, sums?: string): void {
    this.files.set(NAME, binary);
    this.files.set("SHA256SUMS", sums ?? `${sha256(binary)}  ${NAME}\n`);
  }

  async close(): Promise<void> {
    await this.server.shutdown();
  }
}

async function install(args: string[]): Promise<{ code: number; err: string }> {
  const out = await new Deno.Command("sh", {
    args: [INSTALL, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, err: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function binDirLeftovers(root: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(`${root}/usr/local/bin`)) {
    if (e.name !== "clawcage") names.push(e.name);
  }
  return names;
}

Deno.test("installer (deno run wrapper artifact, denort unavailable): fresh install, re-install, tampered checksum, uninstall", async (t) => {
  const release = new Release();
  const root = await Deno.makeTempDir({ prefix: "clawcage-root-" });
  const bin = `${root}/usr/local/bin/clawcage`;
  const v1 = wrapper("1");
  const v2 = wrapper("2");
  try {
    await t.step("fresh install", async () => {
      release.publish(v1);
      const r = await install(["--base-url", release.url, "--root", root]);
      assert.equal(r.code, 0, r.err);
      assert.equal(await Deno.readTextFile(bin), v1);
      assert.equal(await mode(bin), 0o755);
      assert.deepEqual(release.requests, [NAME, "SHA256SUMS"]);
      const version = await new Deno.Command(bin, { args: ["version"], stdout: "piped" }).output();
      assert.match(new TextDecoder().decode(version.stdout), /^clawcage \d+\.\d+\.\d+/);
      assert.equal(
        await Deno.readTextFile(`${root}/etc/clawcage/policy.yaml`),
        await Deno.readTextFile(new URL("../../policies/default.yaml", import.meta.url)),
      );
      assert.match(await Deno.readTextFile(`${root}/etc/clawcage/clawcage.yaml`), /^version: 1$/m);
      // The host router's policy (issue 8: "router config"), commented, valid, no key in it.
      const routerPolicy = await Deno.readTextFile(`${root}/etc/clawcage/router.yaml`);
      assert.equal(
        routerPolicy,
        await Deno.readTextFile(new URL("../../policies/router.yaml", import.meta.url)),
      );
      assert.equal(await mode(`${root}/etc/clawcage/router.yaml`), 0o644);
      assert.match(routerPolicy, /^privacy:$/m);
      // Enabling the commented router block of clawcage.yaml gives a configuration that checks.
      const withRouter = (await Deno.readTextFile(`${root}/etc/clawcage/clawcage.yaml`))
        .replace(/^# router:/m, "router:")
        .replace(/^# {3}(policy|listen):/gm, "  $1:")
        .replaceAll("/etc/clawcage/", `${root}/etc/clawcage/`);
      assert.match(withRouter, /^router:.*\n {2}policy: \S+router\.yaml/m);
      await Deno.writeTextFile(`${root}/etc/clawcage/with-router.yaml`, withRouter);
      const checked = await new Deno.Command(bin, {
        args: ["service", "--check", "--config", `${root}/etc/clawcage/with-router.yaml`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(checked.code, 0, new TextDecoder().decode(checked.stderr));
      assert.match(new TextDecoder().decode(checked.stdout), /ok \(0 agent\(s\), router\)/);
      await Deno.remove(`${root}/etc/clawcage/with-router.yaml`);
      const unit = await Deno.readTextFile(`${root}/etc/systemd/system/clawcage.service`);
      assert.match(unit, /^ExecStart=\/usr\/local\/bin\/clawcage service /m);
      assert.equal(await mode(`${root}/etc/clawcage/credentials`), 0o700);
      assert.equal(await mode(`${root}/var/lib/clawcage`), 0o700);
      assert.equal(await mode(`${root}/var/log/clawcage`), 0o750);
      assert.match(r.err, /warning: .* plain http and no public key/);
      assert.match(r.err, /sha256 [0-9a-f]{64} verified/);
      assert.match(r.err, /clawcage doctor:/);
      assert.match(r.err, /Next steps:/);
      assert.deepEqual(await binDirLeftovers(root), []);
    });

    await t.step("re-install upgrades in place and keeps the configuration", async () => {
      await Deno.writeTextFile(`${root}/etc/clawcage/policy.yaml`, "# edited by the admin\n", {
        append: true,
      });
      const edited = await Deno.readTextFile(`${root}/etc/clawcage/policy.yaml`);
      await Deno.writeTextFile(`${root}/etc/clawcage/router.yaml`, "# edited\n", { append: true });
      const editedRouter = await Deno.readTextFile(`${root}/etc/clawcage/router.yaml`);
      release.publish(v2);
      const r = await install(["--base-url", release.url, "--root", root, "--no-doctor"]);
      assert.equal(r.code, 0, r.err);
      assert.match(r.err, /upgrading .*clawcage \(clawcage [\d.]+\) to [\d.]+/);
      assert.equal(await Deno.readTextFile(bin), v2);
      assert.equal(await Deno.readTextFile(`${root}/etc/clawcage/policy.yaml`), edited);
      assert.equal(await Deno.readTextFile(`${root}/etc/clawcage/router.yaml`), editedRouter);
      assert.deepEqual(await binDirLeftovers(root), []);
      // The same version again: still fine (idempotent).
      const again = await install(["--base-url", release.url, "--root", root, "--no-doctor"]);
      assert.equal(again.code, 0, again.err);
      assert.equal(await Deno.readTextFile(bin), v2);
    });

    await t.step("a tampered binary is refused and the installed one kept", async () => {
      release.publish(v1 + "# tampered\n", `${sha256(v1)}  ${NAME}\n`);
      const r = await install(["--base-url", release.url, "--root", root, "--no-doctor"]);
      assert.equal(r.code, 1);
      assert.match(
        r.err,
        /checksum mismatch for clawcage-linux-\w+: expected [0-9a-f]{64}, got [0-9a-f]{64}: refusing to install/,
      );
      assert.equal(await Deno.readTextFile(bin), v2);
      assert.deepEqual(await binDirLeftovers(root), []);
    });

    await t.step("a binary that does not run is refused before it replaces anything", async () => {
      const broken = wrapper("3", "echo 'exec format error' >&2; exit 126\n");
      release.publish(broken);
      const r = await install(["--base-url", release.url, "--root", root, "--no-doctor"]);
      assert.equal(r.code, 1);
      assert.match(r.err, /the new binary does not run on this machine: exec format error/);
      assert.equal(await Deno.readTextFile(bin), v2);
      assert.deepEqual(await binDirLeftovers(root), []);
    });

    await t.step(
      "a configuration the new binary rejects rolls back to the previous binary",
      async () => {
        const config = await Deno.readTextFile(`${root}/etc/clawcage/clawcage.yaml`);
        await Deno.writeTextFile(`${root}/etc/clawcage/clawcage.yaml`, "version: 1\nagnets: {}\n");
        release.publish(v1);
        const r = await install(["--base-url", release.url, "--root", root, "--no-doctor"]);
        assert.equal(r.code, 1);
        assert.match(r.err, /rejects .*clawcage\.yaml: .*clawcage\.yaml:2:1: unknown key "agnets"/);
        assert.match(r.err, /restored the previous/);
        assert.equal(await Deno.readTextFile(bin), v2);
        assert.deepEqual(await binDirLeftovers(root), []);
        await Deno.writeTextFile(`${root}/etc/clawcage/clawcage.yaml`, config);
      },
    );

    await t.step("a missing release is a clear error", async () => {
      const r = await install(["--base-url", `${release.url}/nothing`, "--root", root]);
      assert.equal(r.code, 1);
      assert.match(r.err, /download of .*\/nothing\/clawcage-linux-\w+ failed/);
      assert.equal(await Deno.readTextFile(bin), v2);
    });

    await t.step("curl URL/install.sh | sh -s -- ... (the one-command install)", async () => {
      release.files.set("install.sh", await Deno.readTextFile(INSTALL));
      release.publish(v1);
      const curl = systemProgram("curl");
      const fetcher = curl ? `${curl} -fsSL` : "wget -qO-";
      const out = await new Deno.Command("sh", {
        args: [
          "-c",
          `${fetcher} ${release.url}/install.sh | sh -s -- --base-url ${release.url} --root ${root} --no-doctor`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, err);
      assert.match(err, /upgrading/);
      assert.equal(await Deno.readTextFile(bin), v1);
    });

    await t.step("uninstall keeps the logs; --purge removes them", async () => {
      await Deno.writeTextFile(`${root}/var/log/clawcage/evidence.log`, "keep me\n");
      const r = await install(["--uninstall", "--root", root]);
      assert.equal(r.code, 0, r.err);
      for (
        const p of [
          "usr/local/bin/clawcage",
          "etc/clawcage",
          "var/lib/clawcage",
          "etc/systemd/system/clawcage.service",
        ]
      ) {
        assert.equal(await exists(`${root}/${p}`), false, p);
      }
      assert.equal(await Deno.readTextFile(`${root}/var/log/clawcage/evidence.log`), "keep me\n");
      assert.match(r.err, /kept the logs in .*--purge removes them/);
      const purge = await install(["--uninstall", "--purge", "--root", root]);
      assert.equal(purge.code, 0, purge.err);
      assert.equal(await exists(`${root}/var/log/clawcage`), false);
    });
  } finally {
    await release.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("installer: offline --from FILE with SHA256SUMS next to it (no network)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "clawcage-offline-" });
  const root = `${dir}/root`;
  try {
    const v1 = wrapper("offline");
    await Deno.writeTextFile(`${dir}/${NAME}`, v1);
    await Deno.writeTextFile(`${dir}/SHA256SUMS`, `${sha256(v1)}  ${NAME}\n`);
    // No proxy, no server: any download attempt would fail.
    const r = await install(["--from", `${dir}/${NAME}`, "--root", root, "--no-doctor"]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /\(offline\)/);
    assert.equal(await Deno.readTextFile(`${root}/usr/local/bin/clawcage`), v1);
    // --prefix: the unit points at the binary where it was put.
    const p = await install([
      "--from",
      `${dir}/${NAME}`,
      "--root",
      root,
      "--prefix",
      "/opt/cc/bin",
      "--no-doctor",
    ]);
    assert.equal(p.code, 0, p.err);
    assert.match(
      await Deno.readTextFile(`${root}/etc/systemd/system/clawcage.service`),
      /^ExecStart=\/opt\/cc\/bin\/clawcage service /m,
    );
    await Deno.remove(`${dir}/SHA256SUMS`);
    const missing = await install(["--from", `${dir}/${NAME}`, "--root", `${dir}/root2`]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /SHA256SUMS not found: copy SHA256SUMS next to the binary/);
    assert.equal(await exists(`${dir}/root2/usr/local/bin/clawcage`), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function ssl(args: string[]): Promise<void> {
  const out = await new Deno.Command(openssl!, { args, stdout: "piped", stderr: "piped" }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

Deno.test({
  name:
    "installer: detached signature (Ed25519 and RSA) verified; bad or missing signature refused; key pinned",
  ignore: openssl === null,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "clawcage-sig-" });
    const release = new Release();
    try {
      const keys: Record<string, string[]> = {
        ed25519: ["genpkey", "-algorithm", "ed25519"],
        rsa: ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
      };
      for (const [kind, gen] of Object.entries(keys)) {
        await ssl([...gen, "-out", `${dir}/${kind}.key`]);
        await ssl(["pkey", "-in", `${dir}/${kind}.key`, "-pubout", "-out", `${dir}/${kind}.pub`]);
      }
      const sign = async (kind: string, sums: string) => {
        await Deno.writeTextFile(`${dir}/sums`, sums);
        await ssl(
          kind === "ed25519"
            ? [
              "pkeyutl",
              "-sign",
              "-inkey",
              `${dir}/${kind}.key`,
              "-rawin",
              "-in",
              `${dir}/sums`,
              "-out",
              `${dir}/sig`,
            ]
            : [
              "dgst",
              "-sha256",
              "-sign",
              `${dir}/${kind}.key`,
              "-out",
              `${dir}/sig`,
              `${dir}/sums`,
            ],
        );
        return await Deno.readFile(`${dir}/sig`);
      };
      for (const kind of ["ed25519", "rsa"]) {
        const root = `${dir}/root-${kind}`;
        const v1 = wrapper(`signed-${kind}`);
        release.publish(v1);
        const sums = release.files.get("SHA256SUMS")!;
        // The signature is served as raw bytes.
        let sig = await sign(kind, sums);
        const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (r) => {
          const path = new URL(r.url).pathname.slice(1);
          if (path === "SHA256SUMS.sig") return new Response(sig);
          const body = release.files.get(path);
          return body === undefined ? new Response("", { status: 404 }) : new Response(body);
        });
        const url = `http://127.0.0.1:${server.addr.port}`;
        try {
          const ok = await install([
            "--base-url",
            url,
            "--root",
            root,
            "--pubkey",
            `${dir}/${kind}.pub`,
            "--no-doctor",
          ]);
          assert.equal(ok.code, 0, ok.err);
          assert.match(ok.err, /signature of SHA256SUMS verified/);
          assert.equal(
            await Deno.readTextFile(`${root}/etc/clawcage/release.pub`),
            await Deno.readTextFile(`${dir}/${kind}.pub`),
          );

          // The pinned key is used without --pubkey: a release signed by another key is refused.
          const other = kind === "ed25519" ? "rsa" : "ed25519";
          const v2 = wrapper(`evil-${kind}`);
          release.publish(v2);
          sig = await sign(other, release.files.get("SHA256SUMS")!);
          const refused = await install(["--base-url", url, "--root", root, "--no-doctor"]);
          assert.equal(refused.code, 1, refused.err);
          assert.match(
            refused.err,
            /signature of SHA256SUMS does not verify with .*release\.pub: refusing to install/,
          );
          assert.equal(await Deno.readTextFile(`${root}/usr/local/bin/clawcage`), v1);
        } finally {
          await server.shutdown();
        }
        // Offline with a key but no .sig next to SHA256SUMS: refused.
        await Deno.writeTextFile(`${dir}/${NAME}`, v1);
        await Deno.writeTextFile(`${dir}/SHA256SUMS`, `${sha256(v1)}  ${NAME}\n`);
        const nosig = await install([
          "--from",
          `${dir}/${NAME}`,
          "--root",
          `${dir}/nosig`,
          "--pubkey",
          `${dir}/${kind}.pub`,
        ]);
        assert.equal(nosig.code, 1);
        assert.match(nosig.err, /SHA256SUMS\.sig not found, and a public key is configured/);
      }
    } finally {
      await release.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "installer: shellcheck finds nothing (POSIX sh)",
  ignore: shellcheck === null,
  async fn() {
    const out = await new Deno.Command(shellcheck!, {
      args: ["--shell=sh", INSTALL],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stdout));
  },
});
