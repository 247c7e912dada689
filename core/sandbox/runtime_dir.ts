// The supervisor's per-sandbox runtime directory: the egress proxy's socket and the CA bundle
// the agent trusts. Root: /run/clawcage/<id>/ (0700 root), which the stage hides behind the
// sandbox's private /run; the proxy socket sits in bridge/ (0700, owned by the agent's uid so
// the stage can still connect after dropping to that uid, through a descriptor it opened
// before). Rootless: $XDG_RUNTIME_DIR/clawcage-egress/<id>/ (or /tmp/clawcage-egress-<uid>/<id>/), mode
// 0711 so an agent running as another uid can open the CA bundle by name; it holds nothing
// secret (no socket, no key) and Landlock grants the agent that one file only.

export interface RuntimeDir {
  id: string;
  path: string;
  /** Root only: the directory for the proxy's unix socket, owned by the agent's uid. */
  socketDir: string | null;
  socketName: string;
  /** Removes the directory and everything in it. */
  remove(): void;
}

export class RuntimeDirError extends Error {}

/** A short unique sandbox id: time and randomness, safe in paths and audit records. */
export function newSandboxId(): string {
  const rand = crypto.getRandomValues(new Uint8Array(4));
  return `${Date.now().toString(36)}-${
    Array.from(rand, (b) => b.toString(16).padStart(2, "0")).join("")
  }`;
}

/**
 * Creates `dir` with `mode` if missing; refuses a symlink, another owner, or a mode that lets
 * others do more than `mode` does.
 */
function ensurePrivateDir(dir: string, uid: number, mode: number): void {
  try {
    Deno.mkdirSync(dir, { mode });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
  }
  const st = Deno.lstatSync(dir);
  if (!st.isDirectory || st.uid !== uid || ((st.mode ?? 0) & 0o077 & ~mode) !== 0) {
    throw new RuntimeDirError(
      `${dir} must be a directory owned by uid ${uid} with mode ${
        mode.toString(8).padStart(4, "0")
      } (found ${
        st.isSymlink ? "a symlink" : `uid ${st.uid}, mode ${((st.mode ?? 0) & 0o7777).toString(8)}`
      }); remove it and try again`,
    );
  }
}

export function createRuntimeDir(
  opts: { root: boolean; agentUid: number; agentGid: number; id?: string; base?: string },
): RuntimeDir {
  const id = opts.id ?? newSandboxId();
  const uid = Deno.uid() ?? 0;
  let base = opts.base;
  if (base === undefined) {
    if (opts.root) base = "/run/clawcage";
    else {
      const xdg = Deno.env.get("XDG_RUNTIME_DIR");
      // Not the PDP's 0700 directory: this one is 0711 so an agent of another uid (root
      // running --rootless) can open the CA bundle by name.
      base = xdg && xdg.startsWith("/") ? `${xdg}/clawcage-egress` : `/tmp/clawcage-egress-${uid}`;
    }
  }
  const mode = opts.root ? 0o700 : 0o711;
  const path = `${base}/${id}`;
  let socketDir: string | null = null;
  try {
    if (opts.root) {
      Deno.mkdirSync(base.slice(0, base.lastIndexOf("/")) || "/", { recursive: true });
    }
    ensurePrivateDir(base, uid, mode);
    Deno.mkdirSync(path, { mode });
    Deno.chmodSync(path, mode);
    if (opts.root) {
      socketDir = `${path}/bridge`;
      Deno.mkdirSync(socketDir, { mode: 0o700 });
      Deno.chownSync(socketDir, opts.agentUid, opts.agentGid);
    }
  } catch (e) {
    if (e instanceof RuntimeDirError) throw e;
    throw new RuntimeDirError(
      `egress proxy: cannot create its runtime directory in ${base}: ${(e as Error).message}`,
    );
  }
  return {
    id,
    path,
    socketDir,
    socketName: "proxy.sock",
    remove() {
      try {
        Deno.removeSync(path, { recursive: true });
      } catch { /* already gone */ }
    },
  };
}

/** The system's CA bundle (Debian/Ubuntu, RHEL/Fedora, SUSE, Alpine paths), or "" if none. */
export function systemCaBundle(): string {
  for (
    const p of [
      "/etc/ssl/certs/ca-certificates.crt",
      "/etc/pki/tls/certs/ca-bundle.crt",
      "/etc/ssl/ca-bundle.pem",
      "/etc/ssl/cert.pem",
    ]
  ) {
    try {
      return Deno.readTextFileSync(p);
    } catch { /* try the next */ }
  }
  return "";
}

/** Writes system roots + the sandbox's CA certificate to ca-bundle.pem (0644); returns its path. */
export function writeCaBundle(dir: RuntimeDir, caCertPem: string): string {
  const path = `${dir.path}/ca-bundle.pem`;
  const system = systemCaBundle();
  const sep = system === "" || system.endsWith("\n") ? "" : "\n";
  Deno.writeTextFileSync(path, system + sep + caCertPem, { mode: 0o644, createNew: true });
  return path;
}
