/*
 * systemd.h - what sluice tells a service manager: sd_notify(3) of
 * libsystemd, which is optional (meson -Dsystemd=auto|enabled|disabled).
 *
 * This module only talks to the environment: NOTIFY_SOCKET for the
 * notifications. It knows no loop and no configuration; the process
 * (process.c, main.c) decides when to notify and what the status line
 * says.
 *
 * Built without libsystemd, every call does nothing, except that a
 * NOTIFY_SOCKET in the environment is reported once as a warning: a
 * Type=notify unit would wait for a READY=1 that never comes.
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

/* Whether sluice was built with libsystemd: notifications work. */
bool systemd_built_in(void);

/*
 * Whether notifications go anywhere: built in, and NOTIFY_SOCKET is set. The
 * process asks once, at start, whether to keep a status line up to date.
 */
bool systemd_notify_wanted(void);

/* READY=1: start-up is complete (listeners open), or a reload is over. */
void systemd_notify_ready(void);
/* RELOADING=1 and MONOTONIC_USEC=<now>: a reload begins. READY=1 must follow. */
void systemd_notify_reloading(void);
/* STOPPING=1: a shutdown begins. */
void systemd_notify_stopping(void);
/*
 * STATUS=text: one line for `systemctl status` (text is copied; characters
 * below 0x20 are sent as spaces, so it stays one line).
 */
void systemd_notify_status(const char *text);
