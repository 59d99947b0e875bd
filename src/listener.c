/*
 * listener.c - binding, listening and accepting (see listener.h).
 */
#include "sluice/listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/client.h"
#include "sluice/log.h"

#define LISTEN_BACKLOG 128

static void on_connection(uv_stream_t *h, int status)
{
	struct listener *l = container_of(h, struct listener, h.base);
	if (status < 0) {
		log_warning("accept on %s failed: %s", l->name, uv_strerror(status));
		return;
	}
	client_accept(l->w, h, l->is_unix);
}

static void on_closed(uv_handle_t *h)
{
	free(container_of(h, struct listener, h.handle));
}

static void add(struct worker *w, struct listener *l)
{
	l->w = w;
	l->next = w->listeners;
	w->listeners = l;
}

static int listen_tcp(struct worker *w, const char *host, int port)
{
	struct sockaddr_storage ss;
	int rc;
	if (strchr(host, ':'))
		rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
	else
		rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
	if (rc < 0) {
		log_error("listen_addr %s is not an IP address: %s", host, uv_strerror(rc));
		return rc;
	}
	struct listener *l = xcalloc(1, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%s:%d", host, port);
	uv_tcp_init(w->loop, &l->h.tcp);
	add(w, l);
	rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, strchr(host, ':') ? UV_TCP_IPV6ONLY : 0);
	if (rc == 0)
		rc = uv_listen(&l->h.base, LISTEN_BACKLOG, on_connection);
	if (rc < 0) {
		log_error("cannot listen on %s: %s", l->name, uv_strerror(rc));
		return rc;
	}
	log_info("listening on %s", l->name);
	return 0;
}

static int listen_unix(struct worker *w, const char *dir, int port, int mode)
{
	struct listener *l = xcalloc(1, sizeof(*l));
	l->is_unix = true;
	snprintf(l->name, sizeof(l->name), "%s/.s.PGSQL.%d", dir, port);
	uv_pipe_init(w->loop, &l->h.pipe, 0);
	add(w, l);
	/* A socket file left by a process that died would make bind fail. */
	unlink(l->name);
	int rc = uv_pipe_bind(&l->h.pipe, l->name);
	if (rc == 0)
		rc = uv_listen(&l->h.base, LISTEN_BACKLOG, on_connection);
	if (rc < 0) {
		log_error("cannot listen on %s: %s", l->name, uv_strerror(rc));
		return rc;
	}
	chmod(l->name, (mode_t)mode);
	log_info("listening on %s", l->name);
	return 0;
}

int listener_start_all(struct worker *w)
{
	const struct config *cfg = w->cfg;
	int rc = 0;
	if (cfg->listen_addr && *cfg->listen_addr) {
		char *list = xstrdup(cfg->listen_addr), *save = NULL;
		for (char *tok = strtok_r(list, ", ", &save); tok && rc == 0;
		     tok = strtok_r(NULL, ", ", &save)) {
			if (strcmp(tok, "*") == 0) {
				rc = listen_tcp(w, "0.0.0.0", cfg->listen_port);
				/* IPv6 is optional: a host without it still serves IPv4. */
				if (rc == 0 && listen_tcp(w, "::", cfg->listen_port) != 0)
					log_warning("IPv6 listener not available");
			} else {
				rc = listen_tcp(w, tok, cfg->listen_port);
			}
		}
		free(list);
	}
	if (rc == 0 && cfg->unix_socket_dir && *cfg->unix_socket_dir)
		rc = listen_unix(w, cfg->unix_socket_dir, cfg->listen_port, cfg->unix_socket_mode);
	return rc;
}

void listener_stop_all(struct worker *w)
{
	struct listener *l = w->listeners;
	w->listeners = NULL;
	while (l) {
		struct listener *next = l->next;
		if (l->is_unix)
			unlink(l->name);
		uv_close(&l->h.handle, on_closed);
		l = next;
	}
}
