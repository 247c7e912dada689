// Escape probe: runs ONE attempt inside the sandbox and reports what the kernel answered.
// Output: one line "CONTAINED <detail>" (exit 0), "ESCAPED <detail>" (exit 10),
// "ALLOWED <detail>" (exit 20, for actions that must work), "ERROR <detail>" (exit 30) or
// "N/A <why>" (exit 40: the host cannot even attempt it, e.g. no 32-bit syscall support).
// Built by the escape suite with the system C compiler; no dependencies beyond libc.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <stddef.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

static int contained(const char *what) { printf("CONTAINED %s\n", what); return 0; }
static int escaped(const char *what) { printf("ESCAPED %s\n", what); return 10; }
static int allowed(const char *what) { printf("ALLOWED %s\n", what); return 20; }
static int err(const char *what) { printf("ERROR %s: %s\n", what, strerror(errno)); return 30; }

/* A failed call is containment; report errno so the table says how it was stopped. */
static int expect_fail(long rc, const char *what) {
  char buf[256];
  if (rc < 0) { snprintf(buf, sizeof buf, "%s: %s", what, strerror(errno)); return contained(buf); }
  snprintf(buf, sizeof buf, "%s succeeded", what);
  return escaped(buf);
}

/* Reading any byte of `path` is an escape; an empty file (masked) or an error is not. */
static int try_read(const char *path) {
  char buf[256], msg[512];
  int fd = open(path, O_RDONLY);
  if (fd < 0) { snprintf(msg, sizeof msg, "open %s: %s", path, strerror(errno)); return contained(msg); }
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  if (n > 0) { snprintf(msg, sizeof msg, "read %zd bytes of %s", n, path); return escaped(msg); }
  snprintf(msg, sizeof msg, "%s reads as empty (masked)", path);
  return contained(msg);
}

static int try_create(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) { close(fd); unlink(path); }
  return expect_fail(fd, path);
}

static int tcp_connect(const char *ip, int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return -1;
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
  inet_pton(AF_INET, ip, &a.sin_addr);
  int rc = connect(s, (struct sockaddr *)&a, sizeof a);
  close(s);
  return rc;
}

static int unix_connect(const char *path, int abstract) {
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  if (s < 0) return -1;
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  socklen_t len;
  if (abstract) {
    a.sun_path[0] = 0;
    strncpy(a.sun_path + 1, path, sizeof a.sun_path - 2);
    len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path);
  } else {
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    len = sizeof a;
  }
  int rc = connect(s, (struct sockaddr *)&a, len);
  int e = errno;
  close(s);
  errno = e;
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: probe CASE [ARGS]\n"); return 2; }
  const char *c = argv[1];
  const char *a1 = argc > 2 ? argv[2] : "";
  const char *a2 = argc > 3 ? argv[3] : "";

  // ---- files ----
  if (!strcmp(c, "read")) return try_read(a1);
  if (!strcmp(c, "create")) return try_create(a1);
  if (!strcmp(c, "create-ok")) {
    int fd = open(a1, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return err(a1);
    close(fd); unlink(a1);
    return allowed(a1);
  }
  if (!strcmp(c, "read-ok")) {
    char buf[16];
    int fd = open(a1, O_RDONLY);
    if (fd < 0 || read(fd, buf, sizeof buf) < 0) return err(a1);
    return allowed(a1);
  }
  if (!strcmp(c, "symlink-out")) { // a1: secret outside the grants, a2: link to create in workdir
    unlink(a2);
    if (symlink(a1, a2) < 0) return expect_fail(-1, "symlink");
    return try_read(a2);
  }
  if (!strcmp(c, "hardlink-out")) {
    unlink(a2);
    if (link(a1, a2) < 0) return expect_fail(-1, "link into workdir");
    return try_read(a2);
  }
  if (!strcmp(c, "rename-out")) return expect_fail(rename(a1, a2), "rename out of the workdir");
  if (!strcmp(c, "proc-root")) { // /proc/self/root/<path>
    char p[512];
    snprintf(p, sizeof p, "/proc/self/root%s", a1);
    return try_read(p);
  }
  if (!strcmp(c, "write-proc-sys")) {
    int fd = open("/proc/sys/kernel/hostname", O_WRONLY);
    if (fd >= 0) {
      ssize_t n = write(fd, "pwned", 5);
      close(fd);
      if (n == 5) return escaped("wrote /proc/sys/kernel/hostname");
    }
    return expect_fail(-1, "write /proc/sys/kernel/hostname");
  }
  if (!strcmp(c, "inherited-fd")) { // a1: fd number the caller opened on a secret
    char buf[64];
    ssize_t n = read(atoi(a1), buf, sizeof buf);
    if (n > 0) return escaped("read a secret through an inherited descriptor");
    return expect_fail(-1, "read inherited fd");
  }
  if (!strcmp(c, "mknod")) {
    char p[512];
    snprintf(p, sizeof p, "%s/blockdev", a1);
    int rc = mknod(p, S_IFBLK | 0600, makedev(8, 0));
    if (rc == 0) unlink(p);
    return expect_fail(rc, "mknod block device");
  }
  if (!strcmp(c, "open-dev")) return try_read(a1);
  if (!strcmp(c, "setuid-root")) { // run by a setuid-root copy of this probe
    if (geteuid() == 0) return escaped("setuid binary ran with euid 0");
    return contained("setuid bit ignored (no_new_privs): euid stays unprivileged");
  }

  // ---- processes ----
  if (!strcmp(c, "proc1-environ")) return try_read("/proc/1/environ");
  if (!strcmp(c, "host-pid")) { // a1: a host pid that must be invisible
    int pid = atoi(a1);
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/cmdline", pid);
    if (kill(pid, 0) == 0 && access(p, F_OK) == 0) return escaped("host process is visible");
    return contained("host process is not visible (own PID namespace)");
  }
  if (!strcmp(c, "signal-host")) return expect_fail(kill(atoi(a1), SIGTERM), "kill(host supervisor, SIGTERM)");
  if (!strcmp(c, "ptrace")) {
    pid_t child = fork();
    if (child == 0) { pause(); _exit(0); }
    long rc = ptrace(PTRACE_ATTACH, child, 0, 0);
    int e = errno;
    kill(child, SIGKILL);
    waitpid(child, 0, 0);
    errno = e;
    return expect_fail(rc, "ptrace(PTRACE_ATTACH)");
  }
  if (!strcmp(c, "process-vm-readv")) {
    char buf[8];
    struct iovec l = { buf, sizeof buf }, r = { (void *)0x400000, sizeof buf };
    return expect_fail(process_vm_readv(1, &l, 1, &r, 1, 0), "process_vm_readv(pid 1)");
  }
  if (!strcmp(c, "kill-init")) { // SIGKILL to PID 1 of the sandbox must not tear it down early
    kill(1, SIGKILL);
    usleep(200000);
    return contained("still running after kill(1, SIGKILL)");
  }

  // ---- namespaces and mounts ----
  if (!strcmp(c, "mount")) return expect_fail(mount("none", a1, "tmpfs", 0, 0), "mount tmpfs");
  if (!strcmp(c, "chroot")) return expect_fail(chroot("/"), "chroot");
  if (!strcmp(c, "unshare-user")) return expect_fail(unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)");
  if (!strcmp(c, "unshare-net")) return expect_fail(unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)");
  if (!strcmp(c, "clone-newuser")) {
    long rc = syscall(SYS_clone, (long)(CLONE_NEWUSER | SIGCHLD), 0, 0, 0, 0);
    if (rc == 0) _exit(0);
    if (rc > 0) waitpid(rc, 0, 0);
    return expect_fail(rc, "clone(CLONE_NEWUSER)");
  }
  if (!strcmp(c, "clone3")) {
    long rc = syscall(SYS_clone3, 0, 0);
    return expect_fail(rc, "clone3");
  }
  if (!strcmp(c, "setns")) return expect_fail(setns(0, 0), "setns");
  if (!strcmp(c, "sethostname")) return expect_fail(sethostname("pwned", 5), "sethostname");

  // ---- kernel attack surface ----
  if (!strcmp(c, "init-module")) return expect_fail(syscall(SYS_init_module, 0, 0, ""), "init_module");
  if (!strcmp(c, "finit-module")) return expect_fail(syscall(SYS_finit_module, 0, "", 0), "finit_module");
  if (!strcmp(c, "io-uring")) {
    char params[120] = {0};
    return expect_fail(syscall(SYS_io_uring_setup, 1, params), "io_uring_setup");
  }
  if (!strcmp(c, "keyctl")) return expect_fail(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0), "keyctl");
  if (!strcmp(c, "add-key")) return expect_fail(syscall(SYS_add_key, "user", "x", "y", 1, -3), "add_key");
  if (!strcmp(c, "bpf")) return expect_fail(syscall(SYS_bpf, 0, 0, 0), "bpf");
  if (!strcmp(c, "perf-event-open")) return expect_fail(syscall(SYS_perf_event_open, 0, 0, -1, -1, 0), "perf_event_open");
  if (!strcmp(c, "userfaultfd")) return expect_fail(syscall(SYS_userfaultfd, 0), "userfaultfd");
  if (!strcmp(c, "reboot")) return expect_fail(syscall(SYS_reboot, 0, 0, 0, 0), "reboot");
  if (!strcmp(c, "clock-settime")) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return expect_fail(clock_settime(CLOCK_REALTIME, &ts), "clock_settime");
  }
  if (!strcmp(c, "settimeofday")) {
    struct timeval tv;
    gettimeofday(&tv, 0);
    return expect_fail(settimeofday(&tv, 0), "settimeofday");
  }
  if (!strcmp(c, "tiocsti")) {
    char ch = 'x';
    return expect_fail(ioctl(0, TIOCSTI, &ch), "ioctl(TIOCSTI)");
  }
  if (!strcmp(c, "int80")) { // a 32-bit system call from a 64-bit process (x86_64 only)
#if defined(__x86_64__)
    pid_t child = fork();
    if (child == 0) {
      long ret;
      __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20) /* getpid on i386 */ : "memory");
      _exit(0);
    }
    int st = 0;
    waitpid(child, &st, 0);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS) return contained("32-bit syscall killed the process (SIGSYS)");
    if (WIFEXITED(st)) return escaped("32-bit syscall ran");
    printf("N/A this kernel does not run 32-bit syscalls (signal %d)\n", WTERMSIG(st));
    return 40;
#else
    printf("N/A not applicable on this architecture\n");
    return 40;
#endif
  }

  // ---- network ----
  if (!strcmp(c, "raw-socket")) return expect_fail(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), "socket(AF_INET, SOCK_RAW)");
  if (!strcmp(c, "packet-socket")) return expect_fail(socket(AF_PACKET, SOCK_RAW, 0), "socket(AF_PACKET)");
  if (!strcmp(c, "udp-socket")) return expect_fail(socket(AF_INET, SOCK_DGRAM, 0), "socket(AF_INET, SOCK_DGRAM)");
  if (!strcmp(c, "udp6-socket")) return expect_fail(socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket(AF_INET6, SOCK_DGRAM)");
  if (!strcmp(c, "mptcp-socket")) return expect_fail(socket(AF_INET, SOCK_STREAM, 262), "socket(IPPROTO_MPTCP)");
  if (!strcmp(c, "vsock-socket")) return expect_fail(socket(40, SOCK_STREAM, 0), "socket(AF_VSOCK)");
  if (!strcmp(c, "netlink-audit")) return expect_fail(socket(AF_NETLINK, SOCK_DGRAM, 9), "socket(AF_NETLINK, NETLINK_AUDIT)");
  if (!strcmp(c, "netlink-route")) {
    int s = socket(AF_NETLINK, SOCK_RAW, 0);
    if (s < 0) return err("socket(AF_NETLINK, NETLINK_ROUTE)");
    return allowed("netlink route socket (interface queries)");
  }
  if (!strcmp(c, "connect-host-tcp")) return expect_fail(tcp_connect("127.0.0.1", atoi(a1)), "connect to the host's 127.0.0.1 listener");
  if (!strcmp(c, "connect-ext-tcp")) return expect_fail(tcp_connect(a1, atoi(a2)), "connect to an outside address");
  if (!strcmp(c, "abstract-unix")) return expect_fail(unix_connect(a1, 1), "connect to the host's abstract unix socket");
  if (!strcmp(c, "unix-path")) return expect_fail(unix_connect(a1, 0), "connect to a host unix socket");
  if (!strcmp(c, "loopback-tcp")) { // listen and connect inside the sandbox's own loopback
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0) return expect_fail(-1, "listen on loopback");
    getsockname(l, (struct sockaddr *)&a, &len);
    if (tcp_connect("127.0.0.1", ntohs(a.sin_port)) < 0) return err("connect to own listener");
    return allowed("own loopback TCP");
  }
  if (!strcmp(c, "exec-ok")) {
    pid_t p = fork();
    if (p == 0) { execl(a1, a1, (char *)0); _exit(127); }
    int st;
    waitpid(p, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return allowed(a1);
    errno = 0;
    return err(a1);
  }
  if (!strcmp(c, "serve-unix")) { // host side: listen on a path or "@abstract" name until killed
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    socklen_t len;
    if (a1[0] == '@') {
      strncpy(a.sun_path + 1, a1 + 1, sizeof a.sun_path - 2);
      len = offsetof(struct sockaddr_un, sun_path) + strlen(a1);
    } else {
      strncpy(a.sun_path, a1, sizeof a.sun_path - 1);
      unlink(a1);
      len = sizeof a;
    }
    if (bind(s, (struct sockaddr *)&a, len) < 0 || listen(s, 16) < 0) return err("serve-unix");
    if (a1[0] != '@') chmod(a1, 0777);
    printf("READY\n");
    fflush(stdout);
    for (;;) { int c2 = accept(s, 0, 0); if (c2 >= 0) close(c2); }
  }
  fprintf(stderr, "unknown case %s\n", c);
  return 2;
}
