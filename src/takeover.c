/*
 * takeover.c - online restart, both halves (takeover.h): the old process
 * answering TAKEOVER on its console, the new one asking and adopting.
 */
#include "sluice/takeover.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/admin.h"
#include "sluice/client.h"
#include "sluice/handover.h"
#include "sluice/http.h"
#include "sluice/listener.h"
#include "sluice/log.h"
#include "sluice/pkt.h"
#include "sluice/pool.h"
#include "sluice/process.h"
#include "sluice/server.h"
#include "sluice/sqlstate.h"

/* How long one row may take to leave (the new process reads them as they come). */
#define ROW_SEND_TIMEOUT_MS 10000
/* How long the new process waits for each answer while it is not serving yet. */
#define LINK_TIMEOUT_MS 10000

/* TAKEOVER's result columns: kind (text), data (bytea). */
#define TYPE_TEXT 25
#define TYPE_BYTEA 17

static void put_row_description(struct buf_out *out)
{
	static const struct {
		const char *name;
		uint32_t type;
	} cols[] = { { "kind", TYPE_TEXT }, { "data", TYPE_BYTEA } };
	size_t at = pkt_begin(out, PKT_RowDescription);
	buf_out_put_be16(out, ARRAY_SIZE(cols));
	for (size_t i = 0; i < ARRAY_SIZE(cols); i++) {
		buf_out_put_cstr(out, cols[i].name);
		buf_out_put_be32(out, 0); /* table */
		buf_out_put_be16(out, 0); /* column */
		buf_out_put_be32(out, cols[i].type);
		buf_out_put_be16(out, 0xffff); /* size: variable */
		buf_out_put_be32(out, 0xffffffff); /* modifier: none */
		buf_out_put_be16(out, 0); /* text format */
	}
	pkt_end(out, at);
}

/* ---- the old process ------------------------------------------------------------------ */

struct takeover_out {
	struct client *console; /* the new process's console connection */
	bool clients; /* TAKEOVER CLIENTS under way */
	bool done; /* every client that could go went: the sockets are the successor's */
	uint64_t handed; /* clients handed over */
};

/* Sends one DataRow (kind, data) with fd attached; 0 or a libuv error. */
static int send_row(struct client *c, const char *kind, const void *data, size_t len, int fd)
{
	struct buf_out out;
	buf_out_init(&out);
	size_t at = pkt_begin(&out, PKT_DataRow);
	buf_out_put_be16(&out, 2);
	buf_out_put_be32(&out, (uint32_t)strlen(kind));
	buf_out_put(&out, kind, strlen(kind));
	buf_out_put_be32(&out, (uint32_t)len);
	buf_out_put(&out, data, len);
	pkt_end(&out, at);
	int rc = stream_send_fd(&c->stream, out.data, out.len, fd, ROW_SEND_TIMEOUT_MS);
	buf_out_deinit(&out);
	return rc;
}

/*
 * The old side runs on the console's worker with the world stopped (the
 * console's commands and admin_poll stop it, crew.h), so it hands over the
 * clients of every worker and acts on every worker's listeners. Worker 0
 * has the original listening sockets (the others watch copies) and the
 * metrics listener.
 */
static struct worker *worker_zero(struct worker *w)
{
	return process_nth_worker(w, 0) ? process_nth_worker(w, 0) : w;
}

/* Accepting again, with a metrics listener of its own: the takeover did not happen. */
static void serve_again(struct worker *w)
{
	struct takeover_out *t = w->handing_over;
	w->handing_over = NULL;
	free(t);
	struct worker *x;
	PROCESS_EACH_WORKER(w, i, x)
	{
		x->holding_movable = false;
		listener_suspend(&x->listeners, false);
		/* The waiters held for the successor are served here again. */
		for (struct pool *p = pool_next(x, NULL); p; p = pool_next(x, p))
			worker_schedule_kick(x, p);
	}
	struct worker *w0 = worker_zero(w);
	if (!w0->http && http_start(w0, -1) != 0)
		log_warning("takeover: the metrics listener could not be opened again");
}

void takeover_send_listeners(struct client *c, const char *version)
{
	struct worker *w = c->w;
	char *end = NULL;
	long v = version ? strtol(version, &end, 10) : -1;
	if (!version || *end || v != HANDOVER_VERSION) {
		char msg[200];
		snprintf(msg, sizeof(msg),
			 "takeover version %s is not this sluice's (%d): the new binary cannot take "
			 "over from this one; restart it instead",
			 version ? version : "(none)", HANDOVER_VERSION);
		log_warning("refused a takeover: %s", msg);
		admin_send_error(c, SQLSTATE_FEATURE_NOT_SUPPORTED, "%s", msg);
		return;
	}
	bool paused = w->paused_all;
	for (struct db_state *ds = w->db_states; ds && !paused; ds = ds->hh.next)
		paused = ds->paused;
	/* Another worker's console may have begun one. */
	struct worker *x;
	PROCESS_EACH_WORKER(w, i, x)
	if (x != w && x->handing_over) {
		admin_send_error(c, SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE,
				 "a takeover is under way already");
		return;
	}
	/* A pause would not survive the move: the successor's clients would run at once. */
	if (w->handing_over || w->suspended || paused || w->shutdown != WORKER_RUNNING) {
		admin_send_error(c, SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE,
				 w->handing_over ? "a takeover is under way already"
				 : w->suspended	 ? "the pooler is suspended: RESUME first"
				 : paused	 ? "the pooler is paused: RESUME first"
						 : "the pooler is shutting down");
		return;
	}
	struct buf_out out;
	buf_out_init(&out);
	put_row_description(&out);
	int rc = stream_send_fd(&c->stream, out.data, out.len, -1, ROW_SEND_TIMEOUT_MS);
	buf_out_deinit(&out);
	int n = 0;
	struct worker *w0 = worker_zero(w);
	for (struct listener *l = w0->listeners.list; l && rc == 0; l = l->next, n++)
		rc = send_row(c, "listener", l->name, strlen(l->name), l->fd);
	int http_fd = http_listen_fd(w0);
	if (rc == 0 && http_fd >= 0)
		rc = send_row(c, "metrics", "", 0, http_fd);
	/* Where connection ids are: the successor's continue past them, so clients keep theirs. */
	char ids[32];
	int ids_len = snprintf(ids, sizeof(ids), "%llu",
			       (unsigned long long)ledger_last_id(w->ledger));
	if (rc == 0)
		rc = send_row(c, "ids", ids, (size_t)ids_len, -1);
	if (rc != 0) {
		if (rc == UV_EBUSY) {
			admin_send_error(c, SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE,
					 "TAKEOVER: the console connection has output in flight");
			return;
		}
		client_fail(c, SQLSTATE_CONNECTION_FAILURE, "TAKEOVER: sending failed: %s",
			    uv_strerror(rc));
		return;
	}
	/* Connections wait in the backlog for the new process from here on. */
	PROCESS_EACH_WORKER(w, i, x)
	listener_suspend(&x->listeners, true);
	http_stop(w0);
	struct takeover_out *t = xcalloc(1, sizeof(*t));
	t->console = c;
	w->handing_over = t;
	log_info("takeover: %d listening socket(s)%s went to the new process (pid %d)", n,
		 http_fd >= 0 ? " and the metrics listener" : "", c->peer_pid);
	admin_send_complete(c, "TAKEOVER");
}

bool takeover_start_clients(struct client *c)
{
	struct takeover_out *t = c->w->handing_over;
	if (!t || t->console != c || t->clients) {
		admin_send_error(c, SQLSTATE_OBJECT_NOT_IN_PREREQUISITE_STATE,
				 "TAKEOVER CLIENTS follows this connection's TAKEOVER <version>");
		return false;
	}
	t->clients = true;
	struct worker *x;
	PROCESS_EACH_WORKER(c->w, i, x)
	x->holding_movable = true;
	log_info("takeover: handing clients over as they reach a transaction boundary");
	struct buf_out out;
	buf_out_init(&out);
	put_row_description(&out);
	stream_write(&c->stream, out.data, out.len);
	buf_out_deinit(&out);
	return true;
}

/* The clients stay: say why, once, for the operator waiting for the old process to go. */
static void log_staying(struct worker *w, struct client *console)
{
	int n = 0;
	for (struct client *c = process_client_next(w, NULL); c; c = process_client_next(w, c))
		if (c != console && c->state != CLIENT_CLOSED)
			n++;
	if (n)
		log_info("takeover: %d client(s) stay with this process until they leave (TLS or "
			 "replication, or listening in transaction pooling)",
			 n);
}

bool takeover_hand_over(struct worker *w)
{
	struct takeover_out *t = w->handing_over;
	if (!t || !t->clients)
		return true;
	struct client *console = t->console;
	struct buf_out rec;
	buf_out_init(&rec);
	struct client *c = process_client_next(w, NULL), *next;
	int rc = 0;
	uint64_t before = t->handed;
	for (; c && rc == 0; c = next) {
		next = process_client_next(w, c);
		if (c == console || !client_may_move(c))
			continue;
		/* What this round queued to it (its last ReadyForQuery) may leave right now. */
		if (stream_unsent(&c->stream))
			stream_flush(&c->stream);
		if (c->server && stream_unsent(&c->server->stream))
			stream_flush(&c->server->stream);
		if (!client_can_hand_over(c))
			continue;
		buf_out_reset(&rec);
		client_hand_over_record(c, &rec);
		/* A session's server first: the client's row that follows says it is linked. */
		if (c->server)
			rc = send_row(console, "server", "", 0, stream_fd(&c->server->stream));
		if (rc == 0)
			rc = send_row(console, "client", rec.data, rec.len, stream_fd(&c->stream));
		if (rc == 0) {
			client_handed_over(c);
			t->handed++;
		}
	}
	buf_out_deinit(&rec);
	if (rc != 0) {
		/* The successor is not reading: it keeps what it got, this process the rest. */
		int left = 0;
		for (c = process_client_next(w, NULL); c; c = process_client_next(w, c))
			left += c != console && c->state != CLIENT_CLOSED;
		log_warning("takeover: sending a client to the new process failed (%s): serving "
			    "the %d left here",
			    uv_strerror(rc), left);
		client_fail(console, SQLSTATE_CONNECTION_FAILURE, "TAKEOVER: sending failed: %s",
			    uv_strerror(rc));
		return false;
	}
	if (t->handed != before)
		log_debug("takeover: %llu client(s) handed over so far",
			  (unsigned long long)t->handed);
	bool staying = false;
	for (c = process_client_next(w, NULL); c; c = process_client_next(w, c))
		if (c != console && c->state != CLIENT_CLOSED)
			staying = true;
	if (staying && !t->done) {
		/* Only clients that cannot move left? Then the successor need not wait for them. */
		bool movable = false;
		for (c = process_client_next(w, NULL); c && !movable; c = process_client_next(w, c))
			movable = c != console && client_may_move(c);
		if (movable)
			return false;
	}
	if (!t->done) {
		t->done = true;
		log_info("takeover: %llu client(s) handed over; the listening sockets are the new "
			 "process's",
			 (unsigned long long)t->handed);
		log_staying(w, console);
		struct worker *x;
		PROCESS_EACH_WORKER(w, i, x)
		{
			x->holding_movable = false;
			listener_hand_over(&x->listeners);
			/* Exits once the successor's console, and any client that stays, has gone. */
			worker_begin_shutdown(x, WORKER_WAIT_CLIENTS);
		}
	}
	return true;
}

void takeover_console_gone(struct worker *w, struct client *c)
{
	struct takeover_out *t = w->handing_over;
	if (!t || t->console != c)
		return;
	t->console = NULL;
	if (t->done)
		return;
	log_warning("takeover: the new process went away before it had every client (%llu "
		    "handed over): serving again",
		    (unsigned long long)t->handed);
	/* From the console client's close, not a console command: the world runs. */
	crew_stop_world(w->crew.of);
	serve_again(w);
	crew_resume_world(w->crew.of);
}

bool takeover_handed_over(struct worker *w)
{
	bool done = false;
	crew_stop_world(w->crew.of);
	struct worker *x;
	PROCESS_EACH_WORKER(w, i, x)
	done = done || (x->handing_over && x->handing_over->done);
	crew_resume_world(w->crew.of);
	return done;
}

/* ---- the new process ------------------------------------------------------------------ */

struct takeover_link {
	int fd;
	struct worker *w; /* once started */
	uv_poll_t poll;
	bool polling;
	/* the message being read */
	uint8_t hdr[5];
	uint32_t hdr_got;
	uint8_t *body;
	uint32_t body_len, body_got;
	int msg_fd; /* a descriptor that came with it, or -1 */
	int server_fd; /* a "server" row's socket, for the client row that follows */
	/* TAKEOVER's sockets, until the worker has them */
	int listen_fds[64];
	int n_listen;
	int http_fd;
	/*
	 * The old process's connection ids end below this: the successor's own
	 * start here, and a client keeps its id (SHOW CLIENTS, KILL_CLIENT, the
	 * logs' C-<id>) when it is below.
	 */
	uint64_t id_floor;
	uint64_t adopted;
	bool complete; /* CommandComplete of TAKEOVER CLIENTS */
};

/* Ids left to the old process for what it opens while it hands over (servers, mostly). */
#define ID_MARGIN (1ull << 20)

/* A whole message read, or none. */
enum link_rc { LINK_MESSAGE, LINK_AGAIN, LINK_EOF, LINK_ERROR };

/* Reads toward the next message: its bytes only, so a descriptor is never read past. */
static enum link_rc link_read(struct takeover_link *l)
{
	for (;;) {
		uint8_t *at;
		size_t want;
		if (l->hdr_got < sizeof(l->hdr)) {
			at = l->hdr + l->hdr_got;
			want = sizeof(l->hdr) - l->hdr_got;
		} else if (l->body_got < l->body_len) {
			at = l->body + l->body_got;
			want = l->body_len - l->body_got;
		} else {
			return LINK_MESSAGE;
		}
		ssize_t n = stream_recv_fd(l->fd, at, want, &l->msg_fd);
		if (n == UV_EAGAIN)
			return LINK_AGAIN;
		if (n < 0) {
			log_error("takeover: reading from the old process: %s",
				  uv_strerror((int)n));
			return LINK_ERROR;
		}
		if (n == 0)
			return LINK_EOF;
		if (l->hdr_got < sizeof(l->hdr)) {
			l->hdr_got += (uint32_t)n;
			if (l->hdr_got < sizeof(l->hdr))
				continue;
			uint32_t len = get_be32(l->hdr + 1);
			/* A record holds a client's prepared statements: allow them room, not more. */
			if (len < 4 || len > (1u << 30)) {
				log_error("takeover: the old process sent a message of %u bytes",
					  len);
				return LINK_ERROR;
			}
			l->body_len = len - 4;
			l->body_got = 0;
			l->body = xmalloc(l->body_len ? l->body_len : 1);
		} else {
			l->body_got += (uint32_t)n;
		}
	}
}

/* Forgets the message just handled; a descriptor nobody took is closed. */
static void link_next(struct takeover_link *l)
{
	free(l->body);
	l->body = NULL;
	l->body_len = l->body_got = l->hdr_got = 0;
	if (l->msg_fd >= 0)
		close(l->msg_fd);
	l->msg_fd = -1;
}

/* Blocking: the next whole message within LINK_TIMEOUT_MS; false (logged) otherwise. */
static bool link_wait(struct takeover_link *l)
{
	uint64_t deadline = uv_hrtime() / 1000000 + LINK_TIMEOUT_MS;
	for (;;) {
		enum link_rc rc = link_read(l);
		if (rc == LINK_MESSAGE)
			return true;
		if (rc == LINK_EOF)
			log_error("takeover: the old process closed the connection");
		if (rc != LINK_AGAIN)
			return false;
		uint64_t now = uv_hrtime() / 1000000;
		struct pollfd p = { .fd = l->fd, .events = POLLIN };
		if (now >= deadline || poll(&p, 1, (int)(deadline - now)) == 0) {
			log_error("takeover: the old process did not answer within %d s",
				  LINK_TIMEOUT_MS / 1000);
			return false;
		}
	}
}

static bool link_send(struct takeover_link *l, const struct buf_out *out)
{
	const uint8_t *p = out->data;
	size_t left = out->len;
	while (left > 0) {
		ssize_t n = send(l->fd, p, left, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = l->fd, .events = POLLOUT };
			if (poll(&pfd, 1, LINK_TIMEOUT_MS) <= 0)
				return false;
			continue;
		}
		if (n <= 0) {
			log_error("takeover: writing to the old process: %s", strerror(errno));
			return false;
		}
		p += n;
		left -= (size_t)n;
	}
	return true;
}

static bool link_query(struct takeover_link *l, const char *sql)
{
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_Query(&out, sql);
	bool ok = link_send(l, &out);
	buf_out_deinit(&out);
	return ok;
}

/* The old process's ErrorResponse, logged as the reason. */
static void log_refusal(const struct takeover_link *l, const char *when)
{
	struct pkt_error e = { 0 };
	if (pkt_parse_error(l->body, l->body_len, &e) != 0 || !e.message)
		e.message = "(unreadable error)";
	log_error("takeover: the running sluice refused %s: %s", when, e.message);
}

/* A DataRow's two columns; false when it is not one. */
static bool row_columns(const struct takeover_link *l, const char **kind, size_t *kind_len,
			const uint8_t **data, size_t *data_len)
{
	struct pkt_reader r;
	pkt_reader_init(&r, l->body, l->body_len);
	if (pkt_get_be16(&r) != 2)
		return false;
	uint32_t n = pkt_get_be32(&r);
	*kind = (const char *)pkt_get_bytes(&r, n);
	*kind_len = n;
	n = pkt_get_be32(&r);
	*data = pkt_get_bytes(&r, n);
	*data_len = n;
	return !r.bad && pkt_remaining(&r) == 0;
}

static bool kind_is(const char *kind, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(kind, want, len) == 0;
}

void takeover_link_free(struct takeover_link *l)
{
	if (!l)
		return;
	link_next(l);
	if (l->server_fd >= 0)
		close(l->server_fd);
	for (int i = 0; i < l->n_listen; i++)
		close(l->listen_fds[i]);
	if (l->http_fd >= 0)
		close(l->http_fd);
	if (l->fd >= 0)
		close(l->fd);
	free(l);
}

/* Logs in as the console user "pgbouncer", which the old process lets its own OS user do. */
static bool link_login(struct takeover_link *l)
{
	static const char *const keys[] = { "user", "database", "application_name" };
	static const char *const vals[] = { "pgbouncer", "pgbouncer", "sluice takeover" };
	struct buf_out out;
	buf_out_init(&out);
	pkt_put_StartupMessage(&out, keys, vals, ARRAY_SIZE(keys));
	bool ok = link_send(l, &out);
	buf_out_deinit(&out);
	while (ok && link_wait(l)) {
		uint8_t type = l->hdr[0];
		if (type == PKT_ErrorResponse) {
			log_refusal(l, "the console login");
			return false;
		}
		if (type == PKT_Authentication && (l->body_len < 4 || get_be32(l->body) != 0)) {
			log_error(
				"takeover: the running sluice asks for a password: -R must run as "
				"the OS user the running process runs as");
			return false;
		}
		link_next(l);
		if (type == PKT_ReadyForQuery)
			return true;
	}
	return false;
}

/* TAKEOVER <version>: the listening sockets. */
static bool link_take_listeners(struct takeover_link *l)
{
	char sql[64];
	snprintf(sql, sizeof(sql), "TAKEOVER %d", HANDOVER_VERSION);
	if (!link_query(l, sql))
		return false;
	bool failed = false;
	while (link_wait(l)) {
		uint8_t type = l->hdr[0];
		const char *kind;
		const uint8_t *data;
		size_t kind_len, data_len;
		if (type == PKT_ErrorResponse) {
			log_refusal(l, "TAKEOVER");
			failed = true;
		} else if (type == PKT_DataRow) {
			if (!row_columns(l, &kind, &kind_len, &data, &data_len)) {
				log_error("takeover: a malformed row");
				return false;
			}
			if (kind_is(kind, kind_len, "ids")) {
				char num[32];
				snprintf(num, sizeof(num), "%.*s", (int)MIN(data_len, 31),
					 (const char *)data);
				/* Room for the connections the old process still makes. */
				l->id_floor = strtoull(num, NULL, 10) + ID_MARGIN;
			} else if (l->msg_fd < 0) {
				log_error("takeover: a row without its socket");
				return false;
			} else if (kind_is(kind, kind_len, "metrics") && l->http_fd < 0) {
				l->http_fd = l->msg_fd;
				l->msg_fd = -1;
			} else if (kind_is(kind, kind_len, "listener") &&
				   l->n_listen < (int)ARRAY_SIZE(l->listen_fds)) {
				l->listen_fds[l->n_listen++] = l->msg_fd;
				l->msg_fd = -1;
			} else {
				log_error("takeover: an unexpected row (%.*s)",
					  (int)MIN(kind_len, 32), kind);
				return false;
			}
		}
		link_next(l);
		if (type == PKT_ReadyForQuery)
			return !failed && l->n_listen > 0;
	}
	return false;
}

int takeover_link_open(const struct config *cfg, struct takeover_link **out)
{
	*out = NULL;
	if (!cfg->unix_socket_dir || !*cfg->unix_socket_dir) {
		log_error("takeover (-R): unix_socket_dir is not set, so there is no console to "
			  "take over through");
		return -1;
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/.s.PGSQL.%d", cfg->unix_socket_dir,
			 cfg->listen_port);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		log_error("takeover (-R): the unix socket path is too long");
		return -1;
	}
	struct takeover_link *l = xcalloc(1, sizeof(*l));
	l->msg_fd = l->http_fd = l->server_fd = -1;
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0 || connect(l->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		log_error("takeover (-R): no sluice answers on %s: %s", sa.sun_path,
			  strerror(errno));
		takeover_link_free(l);
		return -1;
	}
	log_info("takeover: connected to the running sluice on %s", sa.sun_path);
	if (!link_login(l) || !link_take_listeners(l)) {
		takeover_link_free(l);
		return -1;
	}
	log_info("takeover: got %d listening socket(s)%s", l->n_listen,
		 l->http_fd >= 0 ? " and the metrics listener" : "");
	*out = l;
	return 0;
}

void takeover_link_sockets(struct takeover_link *l, struct worker_sockets *ws)
{
	*ws = (struct worker_sockets){
		.fds = l->listen_fds,
		.n = l->n_listen,
		.from_predecessor = true,
		.http_fd = l->http_fd,
	};
	/* The worker's now, also when its start fails. */
	l->n_listen = 0;
	l->http_fd = -1;
}

static void on_link_closed(uv_handle_t *h)
{
	struct takeover_link *l = h->data;
	takeover_link_free(l);
}

static void link_end(struct takeover_link *l)
{
	struct worker *w = l->w;
	if (w && w->taking_over == l)
		w->taking_over = NULL;
	if (l->polling) {
		l->polling = false;
		uv_poll_stop(&l->poll);
		uv_close((uv_handle_t *)&l->poll, on_link_closed);
		return;
	}
	takeover_link_free(l);
}

/* A client row: its socket and record become a client of this worker. */
static void adopt_row(struct takeover_link *l)
{
	const char *kind;
	const uint8_t *data;
	size_t kind_len, data_len;
	bool columns = row_columns(l, &kind, &kind_len, &data, &data_len);
	if (columns && kind_is(kind, kind_len, "server") && l->msg_fd >= 0 && l->server_fd < 0) {
		l->server_fd = l->msg_fd;
		l->msg_fd = -1;
		return;
	}
	int server_fd = l->server_fd;
	l->server_fd = -1;
	struct handover_client h;
	bool ok = columns && kind_is(kind, kind_len, "client") && l->msg_fd >= 0 &&
		  handover_client_decode(data, data_len, &h) == 0;
	if (ok && h.linked != (server_fd >= 0)) {
		handover_client_free(&h);
		ok = false;
	}
	if (!ok) {
		log_error("takeover: a malformed client row: that client is lost");
		if (server_fd >= 0)
			close(server_fd);
		return;
	}
	int fd = l->msg_fd;
	l->msg_fd = -1;
	/* Ids that could be ours get new ones. */
	if (h.id >= l->id_floor)
		h.id = 0;
	if (h.server.id >= l->id_floor)
		h.server.id = 0;
	/* Spread over the workers, whose world is stopped (on_link_readable). */
	struct worker *to = process_nth_worker(l->w, (int)(l->adopted %
							   (uint64_t)process_n_workers(l->w)));
	client_adopt(to ? to : l->w, fd, &h, server_fd);
	handover_client_free(&h);
	l->adopted++;
}

static void link_rows(struct takeover_link *l);

static void on_link_readable(uv_poll_t *h, int status, int events)
{
	struct takeover_link *l = h->data;
	(void)events;
	if (status < 0) {
		log_error("takeover: the connection to the old process failed: %s",
			  uv_strerror(status));
		link_end(l);
		return;
	}
	/* Clients are adopted by every worker: the others are parked meanwhile (crew.h). */
	struct crew *cr = l->w->crew.of; /* l may be gone when link_rows returns */
	crew_stop_world(cr);
	link_rows(l);
	crew_resume_world(cr);
}

/* The rows that have come, until none is waiting or the link ends. */
static void link_rows(struct takeover_link *l)
{
	for (;;) {
		enum link_rc rc = link_read(l);
		if (rc == LINK_AGAIN)
			return;
		if (rc != LINK_MESSAGE) {
			if (!l->complete)
				log_warning("takeover: the old process went away after handing over "
					    "%llu client(s)",
					    (unsigned long long)l->adopted);
			link_end(l);
			return;
		}
		uint8_t type = l->hdr[0];
		if (type == PKT_DataRow) {
			adopt_row(l);
		} else if (type == PKT_ErrorResponse) {
			log_refusal(l, "TAKEOVER CLIENTS");
		} else if (type == PKT_CommandComplete) {
			l->complete = true;
			log_info("takeover: complete: %llu client(s) taken over",
				 (unsigned long long)l->adopted);
		}
		link_next(l);
		if (type == PKT_ReadyForQuery) {
			/* The old process exits once this console, and its last client, are gone. */
			link_end(l);
			return;
		}
	}
}

void takeover_link_start(struct takeover_link *l, struct worker *w)
{
	l->w = w;
	w->taking_over = l;
	ledger_raise_ids(w->ledger, l->id_floor);
	if (!link_query(l, "TAKEOVER CLIENTS")) {
		link_end(l);
		return;
	}
	int flags = fcntl(l->fd, F_GETFL);
	if (flags < 0 || fcntl(l->fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
	    uv_poll_init(w->loop, &l->poll, l->fd) != 0) {
		log_error("takeover: cannot watch the connection to the old process");
		link_end(l);
		return;
	}
	l->poll.data = l;
	l->polling = true;
	uv_poll_start(&l->poll, UV_READABLE, on_link_readable);
}

void takeover_link_stop(struct worker *w)
{
	if (w->taking_over)
		link_end(w->taking_over);
}
