// Signal numbers (identical on x86_64 and aarch64 Linux for every signal listed here).

const NUMBERS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGWINCH: 28,
  SIGSYS: 31,
};

export function signalNumber(name: string): number {
  const n = NUMBERS[name];
  if (n === undefined) throw new Error(`unknown signal ${name}`);
  return n;
}

export function signalName(n: number): string {
  return Object.entries(NUMBERS).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;
}
