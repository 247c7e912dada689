// Audit event types. Field names and classes are shaped after OCSF 1.x so a SIEM can map them
// without guessing: `class` names the OCSF class (its class_uid is in OCSF_CLASS_UID), and
// `activity` the OCSF activity. Times live on the record (`time`), not on the event.

/** What the policy decided for the action the event describes. */
export type Decision = "allow" | "deny" | "audit";

/** Fields every event may carry. */
interface EventBase {
  /** Which sandbox (or router) the event belongs to; absent for the audit log's own records. */
  sandbox?: string;
  /** The policy's decision, where the event is the result of one. */
  decision?: Decision;
  /** Name of the policy entry that matched (network policy name, rule), if any. */
  rule?: string;
  /** Why, in a few words (the denial reason, the error). */
  reason?: string;
}

export interface Endpoint {
  host?: string;
  ip?: string;
  port?: number;
}

/** The program behind an action, as the supervisor saw it. */
export interface Actor {
  /** Host pid. */
  pid?: number;
  /** Pid inside the sandbox's PID namespace (when the host pid is not known). */
  ns_pid?: number;
  exe?: string;
  /** Hex sha256 of the executable, when the caller's identity includes it. */
  sha256?: string;
  uid?: number;
}

/** OCSF Network Activity (4001): a TCP connection the proxy opened, refused or closed. */
export interface NetworkActivity extends EventBase {
  class: "network";
  activity: "open" | "close" | "refuse" | "fail";
  dst: Endpoint;
  src?: Endpoint;
  actor?: Actor;
  protocol?: string;
  bytes_in?: number;
  bytes_out?: number;
  /** How long the connection was open (close events). */
  duration_ms?: number;
}

/** OCSF HTTP Activity (4002): one HTTP request seen by the egress proxy. */
export interface HttpActivity extends EventBase {
  class: "http";
  activity: "request" | "connect";
  dst: Endpoint;
  http: { method: string; url: string; status?: number };
  actor?: Actor;
  /** Request bytes sent upstream / response bytes received, heads and bodies (egress proxy). */
  bytes_out?: number;
  bytes_in?: number;
  duration_ms?: number;
}

/** OCSF Process Activity (1007): agent start and exit, and execs where they are observed. */
export interface ProcessActivity extends EventBase {
  class: "process";
  activity: "launch" | "terminate" | "exec";
  process: {
    /** Which process: the sandbox (the stage), the agent in it, or the supervisor itself. */
    role?: "sandbox" | "agent" | "supervisor";
    pid?: number;
    /** The pid inside the sandbox's PID namespace, where it differs. */
    ns_pid?: number;
    argv?: string[];
    exe?: string;
    uid?: number;
    exit_code?: number;
    signal?: string;
  };
  /** On the sandbox's launch: the layers in force, the agent's user and working directory. */
  sandbox_info?: { layers: string[]; user: string; workdir: string };
}

/** OCSF File System Activity (1001): a file access the kernel denied (Landlock) or a write. */
export interface FileActivity extends EventBase {
  class: "file";
  activity: "read" | "write" | "create" | "delete" | "execute" | "other";
  file: { path: string; access?: string[] };
  actor?: Actor;
}

/** OCSF API Activity (6003): one inference call through the privacy router. */
export interface ApiActivity extends EventBase {
  class: "api";
  activity: "inference";
  api: {
    operation: string;
    model?: string;
    backend?: string;
    route?: "local" | "cloud";
    pii_types?: string[];
    status?: number;
    duration_ms?: number;
  };
}

/** OCSF Device Config State Change (5019): a policy loaded, reloaded or rejected. */
export interface ConfigChange extends EventBase {
  class: "config";
  activity: "load" | "reload" | "reject";
  config: { name: string; sha256?: string; error?: string };
}

/** The audit log's own records: segment headers, seals, retention, export trouble. */
export interface AuditSegment {
  class: "audit";
  activity: "segment";
  log_id: string;
  segment: string;
  previous_segment?: string;
  opened_because: "open" | "rotate";
  key_id: string;
  /** The Ed25519 key that signs this segment's seals. */
  sig_key_id?: string;
  /** Set when the writer found a torn last line (a crash mid-write) where it resumed. */
  recovered?: TornTail;
}

export interface TornTail {
  file: string;
  /** Byte offset of the first byte after the last complete line; bytes after it are torn. */
  good_bytes: number;
  torn_bytes: number;
}

export interface AuditSeal {
  class: "audit";
  activity: "seal";
  alg: "HMAC-SHA256";
  key_id: string;
  /** The chain head sealed: the `prev` of this record, i.e. SHA-256 of the previous line. */
  head: string;
  mac: string;
  /** Ed25519 signature (base64) over what the MAC covers: verifiable with the public key. */
  sig_alg?: "Ed25519";
  sig_key_id?: string;
  sig?: string;
}

export interface AuditRetention {
  class: "audit";
  activity: "retention";
  removed: string[];
  /** The first record kept: verify accepts a log that starts here. */
  kept_from: { segment: string; seq: number; prev: string };
}

/**
 * Facts about the trail itself that callers record: an export target dropped records from its
 * queue or could not be reached, or a kind of record is not available on this host.
 */
export interface AuditNotice {
  class: "audit";
  activity: "export" | "notice";
  /** The export target (`syslog udp://...`, `otlp http://...`), for export notices. */
  target?: string;
  /** Records dropped from the export queue since the previous notice. */
  dropped?: number;
  message: string;
}

export type AuditEvent =
  | NetworkActivity
  | HttpActivity
  | ProcessActivity
  | FileActivity
  | ApiActivity
  | ConfigChange
  | AuditNotice;

export type AnyEvent = AuditEvent | AuditSegment | AuditSeal | AuditRetention;

/** One line of the log. `prev` is the SHA-256 (hex) of the previous line's bytes. */
export interface AuditRecord {
  seq: number;
  time: string;
  prev: string;
  event: AnyEvent;
}

export const OCSF_CLASS_UID: Record<AnyEvent["class"], number> = {
  network: 4001,
  http: 4002,
  process: 1007,
  file: 1001,
  api: 6003,
  config: 5019,
  audit: 0,
};

/** `class.activity`, e.g. `http.request`, the type that `audit query --type` matches. */
export function eventType(e: AnyEvent): string {
  return `${e.class}.${e.activity}`;
}

/** Every class's activities; the type makes the table list each one, and nothing else. */
const ACTIVITIES: {
  [C in AnyEvent["class"]]: { [A in Extract<AnyEvent, { class: C }>["activity"]]: true };
} = {
  network: { open: true, close: true, refuse: true, fail: true },
  http: { request: true, connect: true },
  process: { launch: true, terminate: true, exec: true },
  file: { read: true, write: true, create: true, delete: true, execute: true, other: true },
  api: { inference: true },
  config: { load: true, reload: true, reject: true },
  audit: { segment: true, seal: true, retention: true, export: true, notice: true },
};

/** The event classes (`http`), what `audit query --type` accepts besides event types. */
export const EVENT_CLASSES = Object.keys(ACTIVITIES) as AnyEvent["class"][];

/** Every `class.activity` (`http.request`) that an event can have. */
export const EVENT_TYPES: string[] = EVENT_CLASSES.flatMap((c) =>
  Object.keys(ACTIVITIES[c]).map((a) => `${c}.${a}`)
);
