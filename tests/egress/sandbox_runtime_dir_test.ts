// The supervisor's runtime directory: private, refuses a planted base, holds the CA bundle.

import assert from "node:assert/strict";
import {
  createRuntimeDir,
  RuntimeDirError,
  systemCaBundle,
  writeCaBundle,
} from "../../core/sandbox/runtime_dir.ts";
import { isRoot } from "../helpers/host.ts";

Deno.test("runtime dir: 0700 directories, a bridge dir owned by the agent (root), a CA bundle", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const uid = Deno.uid()!;
    const dir = createRuntimeDir({
      root: isRoot,
      agentUid: 65534,
      agentGid: 65534,
      base: `${tmp}/cc`,
      id: "t1",
    });
    assert.equal(dir.path, `${tmp}/cc/t1`);
    for (const p of [`${tmp}/cc`, dir.path]) {
      const st = Deno.statSync(p);
      assert.equal(st.mode! & 0o777, isRoot ? 0o700 : 0o711, p);
      assert.equal(st.uid, uid);
    }
    if (isRoot) {
      const st = Deno.statSync(dir.socketDir!);
      assert.equal(st.uid, 65534);
      assert.equal(st.mode! & 0o777, 0o700);
    } else assert.equal(dir.socketDir, null);
    const bundle = writeCaBundle(
      dir,
      "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n",
    );
    const text = Deno.readTextFileSync(bundle);
    assert.ok(text.startsWith(systemCaBundle()));
    assert.ok(text.endsWith("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n"));
    assert.equal(Deno.statSync(bundle).mode! & 0o777, 0o644);
    // A second sandbox with the same id is refused rather than sharing the directory.
    assert.throws(() =>
      createRuntimeDir({
        root: isRoot,
        agentUid: 65534,
        agentGid: 65534,
        base: `${tmp}/cc`,
        id: "t1",
      })
    );
    dir.remove();
    assert.throws(() => Deno.statSync(dir.path), Deno.errors.NotFound);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("runtime dir: a base that others can enter, or a symlink, is refused", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    Deno.mkdirSync(`${tmp}/open`, { mode: 0o755 });
    Deno.chmodSync(`${tmp}/open`, 0o755);
    assert.throws(
      () => createRuntimeDir({ root: false, agentUid: 0, agentGid: 0, base: `${tmp}/open` }),
      (e) => e instanceof RuntimeDirError && /mode 0711/.test(e.message),
    );
    Deno.chmodSync(`${tmp}/open`, 0o711);
    assert.throws(
      () => createRuntimeDir({ root: true, agentUid: 0, agentGid: 0, base: `${tmp}/open` }),
      (e) => e instanceof RuntimeDirError && /mode 0700/.test(e.message),
    );
    Deno.mkdirSync(`${tmp}/real`, { mode: 0o700 });
    Deno.symlinkSync(`${tmp}/real`, `${tmp}/link`);
    assert.throws(
      () => createRuntimeDir({ root: false, agentUid: 0, agentGid: 0, base: `${tmp}/link` }),
      (e) => e instanceof RuntimeDirError && /symlink/.test(e.message),
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
