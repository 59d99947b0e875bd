/*
 * systemd.c - sd_notify and sd_listen_fds, when sluice is built with
 * libsystemd (see systemd.h). Without it the same functions do nothing
 * but say, once, that the environment asked for what is not built in.
 *
 * State: one flag per warning, so that a service manager that went away
 * (the notify socket refuses) is reported once, not every few seconds. The
 * process has one loop thread, the only caller.
 */
#include "sluice/systemd.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/log.h"
#include "sluice_version.h"

#if SLUICE_WITH_SYSTEMD
#include <systemd/sd-daemon.h>

#if SD_LISTEN_FDS_START != SYSTEMD_LISTEN_FDS_START
#error "SYSTEMD_LISTEN_FDS_START differs from libsystemd's SD_LISTEN_FDS_START"
#endif
#endif

/* The longest STATUS= line sent; a longer one is cut. */
#define STATUS_MAX 512

bool systemd_built_in(void)
{
	return SLUICE_WITH_SYSTEMD;
}

static bool env_set(const char *name)
{
	const char *v = getenv(name);
	return v && *v;
}

bool systemd_notify_wanted(void)
{
	return SLUICE_WITH_SYSTEMD && env_set("NOTIFY_SOCKET");
}

#if SLUICE_WITH_SYSTEMD

/* Sends state; a failure is logged the first time only. */
static void notify(const char *state)
{
	static bool failed_before;
	int rc = sd_notify(0, state);
	if (rc > 0) {
		log_debug("told the service manager: %s", state);
	} else if (rc < 0 && !failed_before) {
		failed_before = true;
		log_warning("cannot notify the service manager (NOTIFY_SOCKET %s): %s; "
			    "further failures are not logged",
			    getenv("NOTIFY_SOCKET"), strerror(-rc));
	}
}

#else

static void notify(const char *state)
{
	static bool warned;
	(void)state;
	if (!warned && env_set("NOTIFY_SOCKET")) {
		warned = true;
		log_warning("NOTIFY_SOCKET is set, but sluice was built without systemd support: "
			    "no READY=1 is sent, so a Type=notify unit will time out (use "
			    "Type=simple, or build with libsystemd-dev)");
	}
}

#endif

void systemd_notify_ready(void)
{
	notify("READY=1");
}

void systemd_notify_mainpid(void)
{
	char state[32];
	snprintf(state, sizeof(state), "MAINPID=%d", (int)getpid());
	notify(state);
}

void systemd_notify_reloading(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	char state[64];
	snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)usec);
	notify(state);
}

void systemd_notify_stopping(void)
{
	notify("STOPPING=1");
}

void systemd_notify_status(const char *text)
{
	if (!systemd_notify_wanted())
		return;
	char state[STATUS_MAX];
	int n = snprintf(state, sizeof(state), "STATUS=%s", text);
	/* One line: a newline would start another assignment of the message. */
	for (int i = 0; i < n && i < (int)sizeof(state) - 1; i++)
		if ((unsigned char)state[i] < 0x20)
			state[i] = ' ';
	notify(state);
}

int systemd_listen_fds(void)
{
#if SLUICE_WITH_SYSTEMD
	int n = sd_listen_fds(1);
	if (n < 0)
		log_error("cannot use the sockets passed by the service manager (LISTEN_FDS): %s",
			  strerror(-n));
	return n;
#else
	if (env_set("LISTEN_FDS"))
		log_warning("LISTEN_FDS is set, but sluice was built without systemd support: the "
			    "sockets passed by the service manager are not used; sluice listens "
			    "where listen_addr and unix_socket_dir say");
	return 0;
#endif
}
