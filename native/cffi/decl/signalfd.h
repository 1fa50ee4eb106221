/* SPDX-License-Identifier: MIT */
/* signalfd(2): SIGUSR1 as a readable fd that says who sent it. */

typedef struct { ...; } sigset_t;

int sigemptyset(sigset_t *set);
int sigaddset(sigset_t *set, int signum);
int signalfd(int fd, const sigset_t *mask, int flags);

#define SFD_NONBLOCK ...
#define SFD_CLOEXEC ...

struct signalfd_siginfo {
	uint32_t ssi_signo;
	uint32_t ssi_pid;
	uint32_t ssi_uid;
	...;
};
