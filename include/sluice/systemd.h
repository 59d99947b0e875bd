/*
 * systemd.h - what sluice tells a service manager, and the listening sockets
 * it is given by one: sd_notify(3) and sd_listen_fds(3) of libsystemd, which
 * is optional (meson -Dsystemd=auto|enabled|disabled).
 *
 * This module only talks to the environment: NOTIFY_SOCKET for the
 * notifications, LISTEN_PID and LISTEN_FDS for socket activation. It knows
 * no loop and no configuration; the process (process.c, main.c) decides
 * when to notify and what the status line says, and hands passed sockets to
 * the listeners (listener_adopt_all), which check and watch them.
 *
 * Built without libsystemd, every call does nothing, except that a
 * NOTIFY_SOCKET or LISTEN_FDS in the environment is reported once as a
 * warning: a Type=notify unit would wait for a READY=1 that never comes, and
 * passed sockets would be left unused.
 *
 * The notifications are the ones systemd.service(5) defines for Type=notify
 * and Type=notify-reload: READY=1 once the listeners are open; RELOADING=1
 * with MONOTONIC_USEC (CLOCK_MONOTONIC in microseconds, which notify-reload
 * requires) when a reload begins and READY=1 when it is over, whatever its
 * outcome; STOPPING=1 when a shutdown begins; STATUS=<one line> for
 * `systemctl status`. A failed send is logged once and never stops sluice.
 */
#pragma once

#include <stdbool.h>

/* Whether sluice was built with libsystemd: notifications and socket activation work. */
bool systemd_built_in(void);

/*
 * Whether notifications go anywhere: built in, and NOTIFY_SOCKET is set. The
 * process asks once, at start, whether to keep a status line up to date.
 */
bool systemd_notify_wanted(void);

/* READY=1: start-up is complete (listeners open), or a reload is over. */
void systemd_notify_ready(void);
/* MAINPID=<this process>: after an online restart, the unit's main process is the successor. */
void systemd_notify_mainpid(void);
/* RELOADING=1 and MONOTONIC_USEC=<now>: a reload begins. READY=1 must follow. */
void systemd_notify_reloading(void);
/* STOPPING=1: a shutdown begins. */
void systemd_notify_stopping(void);
/*
 * STATUS=text: one line for `systemctl status` (text is copied; characters
 * below 0x20 are sent as spaces, so it stays one line).
 */
void systemd_notify_status(const char *text);

/* The first descriptor of passed sockets (SD_LISTEN_FDS_START). */
#define SYSTEMD_LISTEN_FDS_START 3

/*
 * How many sockets the service manager passed to this process
 * (LISTEN_FDS, when LISTEN_PID is this process): they are the descriptors
 * SYSTEMD_LISTEN_FDS_START onwards, close-on-exec, and the caller's. The
 * variables are removed from the environment, so that a second call returns
 * 0. 0 when none were passed (or without libsystemd), or -errno when the
 * variables are malformed (logged).
 */
int systemd_listen_fds(void);
