// `clawcage service [--config FILE] [--runtime-dir DIR]`: the mode systemd runs.

import { parseArgs } from "node:util";
import {
  ConfigError,
  DEFAULT_CONFIG_PATH,
  loadServiceConfig,
  type ServiceConfig,
  STATUS_SOCKET,
} from "../service/config.ts";
import { Service } from "../service/service.ts";
import { serveStatus, StatusSocketError } from "../service/status_socket.ts";
import { systemProgram } from "../self.ts";
import { UsageError } from "./common.ts";

export const SERVICE_HELP = `Usage: clawcage service [options]

Runs the agents listed in the service configuration, each in its own sandbox (clawcage run),
and the privacy router when configured. Agents that fail are started again with exponential
backoff. Status: clawcage status.

Options:
  -c, --config FILE       service configuration (default ${DEFAULT_CONFIG_PATH})
      --runtime-dir DIR   where the status socket lives (default: the configuration's
                          runtime_dir, /run/clawcage)
      --check             check the configuration and the policies it names, then exit
                          (not whether the agents' keys are set: that needs the service's
                          environment and credentials)
  -h, --help              show this help

Signals: SIGHUP re-reads the configuration (starts new agents, stops removed ones, restarts
changed ones; an invalid configuration is refused and the running one kept) and makes the
router re-read its privacy section. SIGTERM or SIGINT stop every agent (SIGTERM, then SIGKILL
after restart.stop_timeout_ms) and exit.`;

const log = (line: string) => console.error(`clawcage service: ${line}`);

export async function serviceCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c", default: DEFAULT_CONFIG_PATH },
        "runtime-dir": { type: "string" },
        check: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    throw new UsageError(`${(e as Error).message} (see clawcage service --help)`);
  }
  if (values.help) {
    console.log(SERVICE_HELP);
    return 0;
  }
  const configPath = values.config!;
  const load = async (): Promise<ServiceConfig> => {
    // --check runs outside systemd (the installer, an admin's shell): without the service's
    // environment and credentials, so it cannot check that the agents' keys have values.
    const c = await loadServiceConfig(configPath, { secrets: !values.check });
    if (values["runtime-dir"]) c.runtime_dir = values["runtime-dir"];
    return c;
  };
  let config: ServiceConfig;
  try {
    config = await load();
  } catch (e) {
    if (e instanceof ConfigError) throw new UsageError(e.message);
    throw e;
  }

  if (values.check) {
    const agents = Object.keys(config.agents).length;
    console.log(
      `${configPath}: ok (${agents} agent(s)${config.router ? ", router" : ""})`,
    );
    return 0;
  }

  if (!systemProgram("setpriv")) {
    throw new UsageError("setpriv(1) from util-linux not found; install util-linux", 1);
  }
  const service = new Service(config, configPath, log);
  let server;
  try {
    server = await serveStatus(config.runtime_dir, STATUS_SOCKET, () => service.status());
  } catch (e) {
    if (e instanceof StatusSocketError) throw new UsageError(e.message, 1);
    throw e;
  }
  const stopped = Promise.withResolvers<void>();
  // A SIGHUP that arrives while the agents start waits for them.
  const started = Promise.withResolvers<void>();
  let reloading: Promise<void> = started.promise;
  const onHup = () => {
    reloading = reloading.then(async () => {
      let next: ServiceConfig;
      try {
        next = await load();
      } catch (e) {
        const message = e instanceof ConfigError ? e.message : (e as Error).message;
        service.reloadFailed(message);
        log(`reload refused, keeping the running configuration: ${message}`);
        return;
      }
      if (next.runtime_dir !== config.runtime_dir) {
        log(
          `runtime_dir changes only on restart; the status socket stays in ${config.runtime_dir}`,
        );
        next.runtime_dir = config.runtime_dir;
      }
      try {
        const report = await service.reload(next);
        log(
          `reloaded ${configPath}: ${
            report.changes.length ? report.changes.join("; ") : "no changes"
          }`,
        );
      } catch (e) {
        service.reloadFailed((e as Error).message);
        log(`reload failed: ${(e as Error).message}`);
      }
    });
  };
  const onStop = () => stopped.resolve();
  Deno.addSignalListener("SIGHUP", onHup);
  Deno.addSignalListener("SIGTERM", onStop);
  Deno.addSignalListener("SIGINT", onStop);

  try {
    await service.start();
  } catch (e) {
    // A child that cannot even be described (e.g. a missing credential): stop what started.
    await service.stop();
    await server.close();
    throw new UsageError((e as Error).message, 1);
  }
  started.resolve();
  const names = Object.keys(config.agents);
  log(
    `running ${names.length} agent(s)${names.length ? ` (${names.join(", ")})` : ""}${
      config.router ? `, router on ${config.router.listen}` : ""
    }; status socket ${server.path}`,
  );

  await stopped.promise;
  log("stopping");
  Deno.removeSignalListener("SIGHUP", onHup);
  await reloading;
  await service.stop();
  await server.close();
  Deno.removeSignalListener("SIGTERM", onStop);
  Deno.removeSignalListener("SIGINT", onStop);
  log("stopped");
  return 0;
}
