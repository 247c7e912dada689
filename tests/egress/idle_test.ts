// 10k idle connections: the proxy (in its own process, so its memory can be read) keeps
// serving others, its memory stays bounded, and the idle timeout closes them all.

import assert from "node:assert/strict";
import * as net from "node:net";
import { fileURLToPath } from "node:url";
import { httpUpstream, rawExchange } from "./helpers.ts";

const N = 10_000;

function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+) kB/)![1]);
}

const fdLimit = (() => {
  try {
    const out = new Deno.Command("sh", { args: ["-c", "ulimit -n"], stdout: "piped" }).outputSync();
    return Number(new TextDecoder().decode(out.stdout).trim());
  } catch {
    return 0;
  }
})();
const why = fdLimit < N + 1000 ? `needs ulimit -n of at least ${N + 1000} (have ${fdLimit})` : null;
if (why) console.log(`skipping 10k idle connections test: ${why}`);

Deno.test({
  name: "10k idle connections: bounded memory, others still served, all closed when idle",
  ignore: why !== null,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const up = await httpUpstream();
    const script = fileURLToPath(new URL("./fixtures/proxy_server.ts", import.meta.url));
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--no-prompt", script, "8000"],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    let conns = -1;
    const nextPort = async () => {
      while (!/PORT (\d+)/.test(buf)) buf += (await lines.read()).value ?? "";
      return Number(buf.match(/PORT (\d+)/)![1]);
    };
    const port = await nextPort();
    const pump = (async () => {
      for (;;) {
        const r = await lines.read();
        if (r.done) return;
        const m = [...r.value.matchAll(/CONNS (\d+)/g)].pop();
        if (m) conns = Number(m[1]);
      }
    })();
    const socks: net.Socket[] = [];
    try {
      // Warm up, then measure.
      const req = `GET http://a.test:${up.port}/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`;
      assert.match(await rawExchange(port, req), /^HTTP\/1.1 200/);
      const before = rssKiB(child.pid);
      const open = () =>
        new Promise<boolean>((resolve) => {
          const s = net.connect(port, "127.0.0.1", () => resolve(true));
          s.on("error", () => resolve(false));
          s.resume();
          socks.push(s);
        });
      let connected = 0;
      for (let i = 0; i < N; i += 200) {
        const got = await Promise.all(Array.from({ length: 200 }, open));
        connected += got.filter((x) => x).length;
      }
      while (connected < N) if (await open()) connected++;
      const until = Date.now() + 30_000;
      while (conns < N && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      assert.ok(conns >= N, `proxy reports ${conns} connections, expected ${N}`);
      const t0 = performance.now();
      assert.match(await rawExchange(port, req), /^HTTP\/1.1 200/);
      const servedMs = performance.now() - t0;
      const grown = rssKiB(child.pid) - before;
      console.log(
        `10k idle: proxy RSS +${(grown / 1024).toFixed(1)} MiB (${
          (grown * 1024 / N).toFixed(0)
        } bytes/conn), ` +
          `another request served in ${servedMs.toFixed(1)} ms`,
      );
      assert.ok(servedMs < 2000, `request with 10k idle took ${servedMs} ms`);
      assert.ok(grown < 200 * 1024, `RSS grew by ${grown} KiB`);
      // The idle timeout (8 s here) closes them all.
      const deadline = Date.now() + 20_000;
      while (conns > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      assert.equal(conns, 0);
    } finally {
      for (const s of socks) s.destroy();
      child.kill("SIGTERM");
      await child.status;
      await pump.catch(() => {});
      await up.close();
    }
  },
});
