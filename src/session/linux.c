/* linux.c — the Linux session: COMMAND under a small init of its own PID namespace (session.h). */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "base/log.h"
#include "session/session.h"

/* What init and sluice tell each other over their SOCK_SEQPACKET pair, one record a message. */
enum msg_type {
	MSG_SIGNAL = 1,  /* sluice -> init: send `value` to COMMAND */
	MSG_EXITED,      /* init -> sluice: COMMAND ended, `value` is its wait status */
	MSG_EXEC_FAILED, /* init -> sluice: execvp failed with errno `value` */
	MSG_FAILED,      /* init -> sluice: init's `step` failed with errno `value` */
};

enum init_step {
	STEP_JOIN = 1,
	STEP_MOUNTS,
	STEP_PRIVILEGES,
	STEP_FILTER,
	STEP_SIGNALS,
	STEP_PIPE,
	STEP_FORK,
};

struct session_msg {
	int32_t type;
	int32_t value;
	int32_t step;
};

struct session {
	pid_t init_pid;
	int ctl;  /* sluice's end of the pair; -1 once init is gone */
	int sigfd;
	int epfd;
	bool mask_changed;
	char *command_name; /* argv[0], for messages */
	sigset_t forwarded;
	sigset_t old_mask;
	struct session_result result;
};

static const int forwarded_signals[] = {
	SIGTERM, SIGHUP, SIGQUIT, SIGINT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT,
};

static const char *step_name(int step)
{
	switch (step) {
	case STEP_JOIN:
		return "joining the session network";
	case STEP_MOUNTS:
		return "mounting the session's /proc and read-only /proc/sys and /sys";
	case STEP_PRIVILEGES:
		return "dropping capabilities";
	case STEP_FILTER:
		return "installing the system call filter";
	case STEP_SIGNALS:
		return "setting up signals";
	case STEP_PIPE:
		return "creating a pipe";
	case STEP_FORK:
		return "starting COMMAND";
	default:
		return "unknown step";
	}
}

/* ---- confinement: what a session process, root included, keeps of the host ----
 *
 * Applied by init to itself before it forks COMMAND, so every session process inherits it and
 * none can undo it. docs/platforms.md says what a root process inside can and cannot do. */

/* The only capabilities left in any set, the bounding set included: what root build steps
 * use on files and on the session's own processes (Docker's default set, less CAP_NET_RAW and
 * CAP_SETPCAP). Everything else, capabilities of kernels newer than these headers included,
 * is dropped: namespaces, mounts, the session's network and nftables rules, raw sockets,
 * ptrace, kernel modules, raw I/O, BPF, perf, the host's clock and logs. */
static const int kept_capabilities[] = {
	CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID, CAP_SETUID,
	CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_MKNOD, CAP_AUDIT_WRITE, CAP_SETFCAP,
};

/* Capabilities are numbered below 64 (two 32-bit words in the capset interface). */
#define CAPABILITY_BITS 64

static uint64_t kept_capability_mask(void)
{
	uint64_t mask = 0;

	for (size_t i = 0; i < sizeof kept_capabilities / sizeof kept_capabilities[0]; i++)
		mask |= UINT64_C(1) << kept_capabilities[i];
	return mask;
}

/* Makes the session see only its own processes in /proc (the host's, sluice's among them,
 * cannot be named: no /proc/PID/mem, ns or root of theirs), and the kernel's settings read-only:
 * /proc/sys (core_pattern, modprobe and binfmt_misc start programs outside the session),
 * /proc/sysrq-trigger, and /sys with every mount below it (uevent_helper, cgroups). Only the
 * session's new mount namespace changes: mounts are made slaves first, so nothing propagates
 * back to sluice's. */
static int make_private_mounts(void)
{
	static const char *const read_only[] = { "/proc/sys", "/proc/sysrq-trigger", "/sys" };
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };

	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0 ||
	    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return -errno;
	for (size_t i = 0; i < sizeof read_only / sizeof read_only[0]; i++) {
		const char *path = read_only[i];

		if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
			if (errno == ENOENT)
				continue;
			return -errno;
		}
		if (mount_setattr(AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr) == 0)
			continue;
		/* Before Linux 5.12: the top mount only (below /sys, cgroups stay writable). */
		if (errno != ENOSYS ||
		    mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
			return -errno;
	}
	return 0;
}

/* no_new_privs (setuid bits give nothing on exec), then every capability not kept leaves the
 * bounding, ambient, inheritable, permitted and effective sets: no file capability can give
 * one back either (a binary that asks for one is not executed). Securebits are not locked:
 * changing them needs CAP_SETPCAP, which is gone for good. */
static int drop_privileges(void)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	uint64_t keep = kept_capability_mask();

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	for (int cap = 0; cap < CAPABILITY_BITS; cap++) {
		int bounded = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);

		if (bounded < 0)
			break; /* beyond the kernel's last capability */
		if (bounded && !(keep >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			return -errno;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -errno;
	if (syscall(SYS_capget, &header, data) < 0)
		return -errno;
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
		uint32_t word = (uint32_t)(keep >> (32 * i));

		data[i].effective &= word;
		data[i].permitted &= word;
		data[i].inheritable &= word;
	}
	if (syscall(SYS_capset, &header, data) < 0)
		return -errno;
	return 0;
}

/* A system call ABI a session process may use, with the numbers the filter looks at. */
struct syscall_abi {
	uint32_t arch;           /* AUDIT_ARCH_* */
	uint32_t nr_min, nr_max; /* its system call numbers (x32 shares x86-64's arch) */
	uint32_t setns, unshare, clone, clone3, ioctl;
};

#define X32_BIT 0x40000000u

static const struct syscall_abi filter_abis[] = {
#if defined(__x86_64__)
	{ AUDIT_ARCH_X86_64, 0, X32_BIT - 1, 308, 272, 56, 435, 16 },
	{ AUDIT_ARCH_X86_64, X32_BIT, UINT32_MAX, X32_BIT + 308, X32_BIT + 272, X32_BIT + 56,
	  X32_BIT + 435, X32_BIT + 514 },
	{ AUDIT_ARCH_I386, 0, UINT32_MAX, 346, 310, 120, 435, 54 },
#elif defined(__aarch64__)
	{ AUDIT_ARCH_AARCH64, 0, UINT32_MAX, 268, 97, 220, 435, 29 },
	{ AUDIT_ARCH_ARM, 0, UINT32_MAX, 375, 337, 120, 435, 54 },
#elif defined(__i386__)
	{ AUDIT_ARCH_I386, 0, UINT32_MAX, 346, 310, 120, 435, 54 },
#else
#error "sluice: give the session's system call filter this architecture's ABIs (filter_abis)"
#endif
};

/* One block of the filter per ABI; an instruction's jump reaches a later one of its block, or
 * the next block (the end: the ABI is not this one). */
enum filter_slot {
	F_LOAD_ARCH, F_IS_ARCH, F_LOAD_NR, F_NR_MIN, F_NR_MAX,
	F_SETNS, F_UNSHARE, F_CLONE, F_CLONE3, F_IOCTL, F_ALLOW,
	F_LOAD_FLAGS, F_NEWUSER,
	F_LOAD_CMD, F_TIOCSTI, F_TIOCLINUX, F_ALLOW_ARG,
	F_EPERM, F_ENOSYS,
	F_BLOCK,
};

#define FILTER_JUMP(from, to) ((uint8_t)((to) - (from) - 1))
#define FILTER_LEN (F_BLOCK * (sizeof filter_abis / sizeof filter_abis[0]) + 1)

/* The low 32 bits of argument n (the kernel reads clone's and unshare's flags and ioctl's
 * request as 32-bit values where these bits live). */
static uint32_t filter_arg_low(int n)
{
	uint32_t off = (uint32_t)(offsetof(struct seccomp_data, args) + 8 * (unsigned)n);

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	off += 4;
#endif
	return off;
}

static void filter_block(struct sock_filter *f, const struct syscall_abi *abi)
{
	const uint16_t ld = BPF_LD | BPF_W | BPF_ABS, ret = BPF_RET | BPF_K;
	const uint16_t jeq = BPF_JMP | BPF_JEQ | BPF_K;

	f[F_LOAD_ARCH] = (struct sock_filter)BPF_STMT(ld, offsetof(struct seccomp_data, arch));
	f[F_IS_ARCH] = (struct sock_filter)BPF_JUMP(jeq, abi->arch, 0,
						    FILTER_JUMP(F_IS_ARCH, F_BLOCK));
	f[F_LOAD_NR] = (struct sock_filter)BPF_STMT(ld, offsetof(struct seccomp_data, nr));
	f[F_NR_MIN] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, abi->nr_min, 0,
						   FILTER_JUMP(F_NR_MIN, F_BLOCK));
	f[F_NR_MAX] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, abi->nr_max,
						   FILTER_JUMP(F_NR_MAX, F_BLOCK), 0);
	f[F_SETNS] = (struct sock_filter)BPF_JUMP(jeq, abi->setns,
						  FILTER_JUMP(F_SETNS, F_EPERM), 0);
	f[F_UNSHARE] = (struct sock_filter)BPF_JUMP(jeq, abi->unshare,
						    FILTER_JUMP(F_UNSHARE, F_LOAD_FLAGS), 0);
	f[F_CLONE] = (struct sock_filter)BPF_JUMP(jeq, abi->clone,
						  FILTER_JUMP(F_CLONE, F_LOAD_FLAGS), 0);
	f[F_CLONE3] = (struct sock_filter)BPF_JUMP(jeq, abi->clone3,
						   FILTER_JUMP(F_CLONE3, F_ENOSYS), 0);
	f[F_IOCTL] = (struct sock_filter)BPF_JUMP(jeq, abi->ioctl,
						  FILTER_JUMP(F_IOCTL, F_LOAD_CMD), 0);
	f[F_ALLOW] = (struct sock_filter)BPF_STMT(ret, SECCOMP_RET_ALLOW);
	f[F_LOAD_FLAGS] = (struct sock_filter)BPF_STMT(ld, filter_arg_low(0));
	f[F_NEWUSER] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER,
						    FILTER_JUMP(F_NEWUSER, F_EPERM),
						    FILTER_JUMP(F_NEWUSER, F_ALLOW_ARG));
	f[F_LOAD_CMD] = (struct sock_filter)BPF_STMT(ld, filter_arg_low(1));
	f[F_TIOCSTI] = (struct sock_filter)BPF_JUMP(jeq, TIOCSTI,
						    FILTER_JUMP(F_TIOCSTI, F_EPERM), 0);
	f[F_TIOCLINUX] = (struct sock_filter)BPF_JUMP(jeq, TIOCLINUX,
						      FILTER_JUMP(F_TIOCLINUX, F_EPERM), 0);
	f[F_ALLOW_ARG] = (struct sock_filter)BPF_STMT(ret, SECCOMP_RET_ALLOW);
	f[F_EPERM] = (struct sock_filter)BPF_STMT(ret, SECCOMP_RET_ERRNO | EPERM);
	f[F_ENOSYS] = (struct sock_filter)BPF_STMT(ret, SECCOMP_RET_ERRNO | ENOSYS);
}

/* What capabilities cannot take away. A process whose euid owns a user namespace has every
 * capability in it, so even a capability-less root (or any uid) could join the user and
 * network namespaces of a container its uid created: setns is refused (without capabilities
 * it serves nothing else), and so are new user namespaces (unshare, clone; clone3 answers
 * ENOSYS, and libc falls back to clone). TIOCSTI and TIOCLINUX would push input into the
 * terminal the session shares with the user's shell. Unknown ABIs are killed. */
static int install_filter(void)
{
	struct sock_filter filter[FILTER_LEN];
	struct sock_fprog prog = { .len = (unsigned short)FILTER_LEN, .filter = filter };
	size_t n = sizeof filter_abis / sizeof filter_abis[0];

	for (size_t i = 0; i < n; i++)
		filter_block(filter + i * F_BLOCK, &filter_abis[i]);
	filter[n * F_BLOCK] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
							   SECCOMP_RET_KILL_PROCESS);
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
		return -errno;
	return 0;
}

/* ---- the session's init (pid 1 of the new PID namespace) ---- */

static void init_report(int ctl, enum msg_type type, int value, int step)
{
	struct session_msg msg = { .type = type, .value = value, .step = step };
	ssize_t n;

	do
		n = send(ctl, &msg, sizeof msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
}

_Noreturn static void init_fail(int ctl, int step, int err)
{
	init_report(ctl, MSG_FAILED, err, step);
	_exit(SESSION_STATUS_FAILED);
}

/* Closes the descriptors first..last; close_range where the kernel has it (5.9). */
static void close_fds(unsigned first, unsigned last)
{
	long max;

	if (first > last || close_range(first, last, 0) == 0)
		return;
	max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (unsigned fd = first; fd <= last && fd < (unsigned)max; fd++)
		close((int)fd);
}

/* Closes every descriptor above stderr except keep. */
static void close_all_but(int keep)
{
	if (keep > 3)
		close_fds(3, (unsigned)keep - 1);
	close_fds(keep >= 3 ? (unsigned)keep + 1 : 3, UINT_MAX);
}

/* In COMMAND's process: default dispositions, empty mask, exec. Reports execvp's errno on
 * errpipe (close-on-exec, so an exec that succeeds closes it silently). */
_Noreturn static void exec_command(char *const argv[], int errpipe)
{
	struct sigaction dfl;
	sigset_t empty;
	int err;

	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL); /* fails harmlessly for SIGKILL, SIGSTOP, libc's own */
	sigemptyset(&empty);
	sigprocmask(SIG_SETMASK, &empty, NULL);
	execvp(argv[0], argv);
	err = errno;
	while (write(errpipe, &err, sizeof err) < 0 && errno == EINTR)
		;
	_exit(SESSION_STATUS_NOT_FOUND);
}

/* Reaps every exited process; true (and *status) once COMMAND is among them. */
static bool init_reap(pid_t command, int *status)
{
	bool done = false;
	pid_t pid;
	int st;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (pid == command) {
			*status = st;
			done = true;
		}
	}
	return done;
}

/* Reads sluice's requests; false when sluice is gone. */
static bool init_serve(int ctl, pid_t command)
{
	struct session_msg msg;
	ssize_t n;

	for (;;) {
		n = recv(ctl, &msg, sizeof msg, MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		if (n == 0)
			return false;
		if (n == sizeof msg && msg.type == MSG_SIGNAL && msg.value > 0 && msg.value < NSIG)
			kill(command, msg.value);
	}
}

_Noreturn static void init_main(int ctl, int sluice_end, struct capture *capture,
				char *const argv[])
{
	struct pollfd fds[2];
	sigset_t chld;
	int errpipe[2];
	pid_t command;
	int chfd, err, status = 0;
	ssize_t n;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	close(sluice_end);
	/* sluice may have died before PDEATHSIG was armed: then its end is closed. */
	fds[0] = (struct pollfd){ .fd = ctl, .events = POLLIN };
	if (poll(fds, 1, 0) == 1 && (fds[0].revents & (POLLHUP | POLLERR)))
		_exit(SESSION_STATUS_FAILED);
	prctl(PR_SET_NAME, "sluice-init");

	err = capture->ops->join(capture);
	if (err)
		init_fail(ctl, STEP_JOIN, -err);
	close_all_but(ctl);
	if ((err = make_private_mounts()))
		init_fail(ctl, STEP_MOUNTS, -err);
	if ((err = drop_privileges()))
		init_fail(ctl, STEP_PRIVILEGES, -err);
	if ((err = install_filter()))
		init_fail(ctl, STEP_FILTER, -err);

	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0)
		init_fail(ctl, STEP_SIGNALS, errno);
	chfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	if (chfd < 0)
		init_fail(ctl, STEP_SIGNALS, errno);
	if (pipe2(errpipe, O_CLOEXEC) < 0)
		init_fail(ctl, STEP_PIPE, errno);

	command = fork();
	if (command < 0)
		init_fail(ctl, STEP_FORK, errno);
	if (command == 0)
		exec_command(argv, errpipe[1]);
	close(errpipe[1]);
	do
		n = read(errpipe[0], &err, sizeof err);
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof err) {
		init_report(ctl, MSG_EXEC_FAILED, err, 0);
		_exit(0);
	}
	close(errpipe[0]);

	fds[0] = (struct pollfd){ .fd = chfd, .events = POLLIN };
	fds[1] = (struct pollfd){ .fd = ctl, .events = POLLIN };
	for (;;) {
		if (poll(fds, 2, -1) < 0)
			continue;
		if (fds[0].revents) {
			struct signalfd_siginfo si;

			while (read(chfd, &si, sizeof si) > 0)
				;
			if (init_reap(command, &status)) {
				init_report(ctl, MSG_EXITED, status, 0);
				/* Exiting makes the kernel kill the rest of the PID namespace. */
				_exit(0);
			}
		}
		if (fds[1].revents && !init_serve(ctl, command))
			_exit(SESSION_STATUS_FAILED);
	}
}

/* ---- sluice's side ---- */

static void set_result(struct session *s, enum session_end end, int code, int wait_status)
{
	s->result.end = end;
	s->result.code = code;
	s->result.wait_status = wait_status;
	switch (end) {
	case SESSION_EXITED:
		s->result.exit_status = code;
		break;
	case SESSION_KILLED:
		s->result.exit_status = 128 + code;
		break;
	case SESSION_EXEC_FAILED:
		s->result.exit_status = code == ENOENT ? SESSION_STATUS_NOT_FOUND
						       : SESSION_STATUS_CANNOT_EXECUTE;
		break;
	default:
		s->result.exit_status = SESSION_STATUS_FAILED;
		break;
	}
}

static void set_result_from_wait(struct session *s, int st)
{
	if (WIFEXITED(st))
		set_result(s, SESSION_EXITED, WEXITSTATUS(st), st);
	else if (WIFSIGNALED(st))
		set_result(s, SESSION_KILLED, WTERMSIG(st), st);
	else
		set_result(s, SESSION_FAILED, EPROTO, 0);
}

/* Waits for init (whose exit means the whole PID namespace is gone) and records the end; msg
 * is init's report, or NULL when it ended without one. */
static void finish(struct session *s, const struct session_msg *msg)
{
	int st = 0;
	pid_t pid;

	do
		pid = waitpid(s->init_pid, &st, 0);
	while (pid < 0 && errno == EINTR);
	if (s->ctl >= 0) {
		close(s->ctl);
		s->ctl = -1;
	}
	if (msg && msg->type == MSG_EXITED) {
		set_result_from_wait(s, msg->value);
	} else if (msg && msg->type == MSG_EXEC_FAILED) {
		log_errno(msg->value, "cannot run '%s'", s->command_name);
		set_result(s, SESSION_EXEC_FAILED, msg->value, 0);
	} else if (msg && msg->type == MSG_FAILED) {
		log_errno(msg->value, "session init: %s", step_name(msg->step));
		set_result(s, SESSION_FAILED, msg->value, 0);
	} else if (pid > 0 && WIFSIGNALED(st)) {
		log_error("session init was killed by signal %d", WTERMSIG(st));
		set_result(s, SESSION_FAILED, WTERMSIG(st), 0);
		s->result.exit_status = 128 + WTERMSIG(st);
	} else {
		log_error("session init ended without reporting COMMAND's status");
		set_result(s, SESSION_FAILED, EPROTO, 0);
	}
}

static bool sent_by_a_process(const struct signalfd_siginfo *si)
{
	int code = si->ssi_code;

	return code == SI_USER || code == SI_QUEUE || code == SI_TKILL;
}

static void forward_signals(struct session *s)
{
	struct signalfd_siginfo si;

	while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (s->result.end != SESSION_RUNNING || !sent_by_a_process(&si))
			continue;
		if (session_signal(s, (int)si.ssi_signo) < 0)
			log_warn("could not forward signal %u to COMMAND", si.ssi_signo);
	}
}

static int read_reports(struct session *s)
{
	struct session_msg msg;
	ssize_t n;

	for (;;) {
		n = recv(s->ctl, &msg, sizeof msg, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n == (ssize_t)sizeof msg && msg.type != MSG_SIGNAL) {
			finish(s, &msg);
			return 1;
		}
		if (n <= 0) {
			finish(s, NULL);
			return 1;
		}
	}
}

int session_handle_readable(struct session *s)
{
	forward_signals(s);
	if (s->result.end != SESSION_RUNNING)
		return 1;
	return read_reports(s);
}

int session_wait(struct session *s)
{
	struct pollfd pfd = { .fd = s->epfd, .events = POLLIN };
	int rc;

	while ((rc = session_handle_readable(s)) == 0) {
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			return -errno;
	}
	return rc < 0 ? rc : 0;
}

const struct session_result *session_result(const struct session *s)
{
	return s->result.end == SESSION_RUNNING ? NULL : &s->result;
}

int session_signal(struct session *s, int signo)
{
	struct session_msg msg = { .type = MSG_SIGNAL, .value = signo };

	if (signo <= 0 || signo >= NSIG)
		return -EINVAL;
	if (s->result.end != SESSION_RUNNING || s->ctl < 0)
		return -ESRCH;
	if (send(s->ctl, &msg, sizeof msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		return errno == EPIPE || errno == ECONNRESET ? -ESRCH : -errno;
	return 0;
}

loop_sock session_fd(const struct session *s)
{
	return s->epfd;
}

int session_pid(const struct session *s)
{
	return (int)s->init_pid;
}

void session_free(struct session *s)
{
	struct signalfd_siginfo si;

	if (!s)
		return;
	if (s->init_pid > 0 && s->result.end == SESSION_RUNNING) {
		kill(s->init_pid, SIGKILL);
		while (waitpid(s->init_pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (s->ctl >= 0)
		close(s->ctl);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->sigfd >= 0) {
		while (read(s->sigfd, &si, sizeof si) > 0)
			;
		close(s->sigfd);
	}
	if (s->mask_changed)
		sigprocmask(SIG_SETMASK, &s->old_mask, NULL);
	free(s->command_name);
	free(s);
}

static int watch(int epfd, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* Forks init into a new PID namespace; the caller's later children stay in its own. */
static pid_t fork_into_new_pidns(int *err)
{
	int own = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	pid_t pid;

	if (own < 0) {
		*err = -errno;
		log_errno(*err, "session: cannot open sluice's PID namespace");
		return -1;
	}
	if (unshare(CLONE_NEWPID) < 0) {
		*err = -errno;
		log_errno(*err, "session: cannot create a PID namespace%s",
			  *err == -EPERM ? " (needs root or CAP_SYS_ADMIN)" : "");
		close(own);
		return -1;
	}
	pid = fork();
	if (pid < 0)
		*err = -errno;
	if (pid != 0 && setns(own, CLONE_NEWPID) < 0)
		log_warn_errno(errno, "session: cannot restore the PID namespace for children");
	if (pid != 0)
		close(own);
	if (pid < 0)
		log_errno(*err, "session: fork");
	return pid;
}

int session_spawn(struct session **out, char *const argv[], struct capture *capture)
{
	struct session *s;
	int pair[2] = { -1, -1 };
	int err;

	if (!argv || !argv[0] || !capture)
		return -EINVAL;
	s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->ctl = s->sigfd = s->epfd = -1;
	s->command_name = strdup(argv[0]);
	if (!s->command_name) {
		free(s);
		return -ENOMEM;
	}
	sigemptyset(&s->forwarded);
	for (size_t i = 0; i < sizeof forwarded_signals / sizeof forwarded_signals[0]; i++)
		sigaddset(&s->forwarded, forwarded_signals[i]);
	if (sigprocmask(SIG_BLOCK, &s->forwarded, &s->old_mask) < 0) {
		err = -errno;
		goto fail;
	}
	s->mask_changed = true;
	s->sigfd = signalfd(-1, &s->forwarded, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s->sigfd < 0) {
		err = -errno;
		goto fail;
	}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
		err = -errno;
		goto fail;
	}
	s->ctl = pair[0];
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0) {
		err = -errno;
		goto fail;
	}
	if ((err = watch(s->epfd, s->sigfd)) || (err = watch(s->epfd, s->ctl)))
		goto fail;
	/* Nothing of sluice's may be ptraced, nor its /proc/PID/mem, fd or ns opened, by a process
	 * without CAP_SYS_PTRACE, whatever its uid; init inherits it (it never execs). */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		err = -errno;
		goto fail;
	}

	s->init_pid = fork_into_new_pidns(&err);
	if (s->init_pid == 0)
		init_main(pair[1], pair[0], capture, argv);
	if (s->init_pid < 0) {
		s->init_pid = 0;
		goto fail_logged;
	}
	close(pair[1]);
	*out = s;
	return 0;
fail:
	log_errno(err, "session: setting up");
fail_logged:
	if (pair[1] >= 0)
		close(pair[1]);
	session_free(s);
	return err;
}
