/*
 * notify.h - LISTEN/NOTIFY in transaction and statement pooling.
 *
 * A client's server is its own only for a transaction, so a LISTEN made on
 * it would hear nothing once the transaction ends (or, left there, would
 * hear for the next client). Instead each pool that has listening clients
 * keeps one server connection of its own, the *listener*, which LISTENs to
 * the union of their channels; every NotificationResponse it gets goes to
 * the clients of that channel, in the order PostgreSQL sent them.
 *
 * The client's own statements still run on its transaction's server, so
 * PostgreSQL decides what they do (a LISTEN rolled back with its
 * transaction, an UNLISTEN inside a function, a LISTEN that fails). The
 * steps, for a text that sqlscan says LISTENs or UNLISTENs:
 *
 *   1. notify_before, before the text goes to the server: the listener
 *      must already LISTEN to the channels named (the text waits until it
 *      does), so it hears everything from before the client's LISTEN
 *      commits. The client is subscribed *tentatively*: what the listener
 *      hears for it meanwhile is held. A new subscription also waits for
 *      the listener to answer a query sent after it (its fence; an empty
 *      query when there is nothing to LISTEN): what the listener sends
 *      before that answer was committed before the LISTEN and is not the
 *      client's. For an UNLISTEN, the server is made
 *      to LISTEN to the client's channels first (when nothing of the
 *      client's is under way), so that what the UNLISTEN does shows.
 *   2. After the transaction, the server's probe (session.c) lists the
 *      channels its session listens to and then UNLISTENs those the
 *      listener hears (notify_probe_unlisten): the session is clean again.
 *   3. notify_settle, with that list: the client's channels are now the
 *      ones listed (tentative ones confirmed, the rest dropped); a channel
 *      the listener could not take stays on the server and pins it.
 *
 * What the listener hears for a client is written to it at once while it
 * is between transactions, else held until it is (notify_at_rest). A
 * client that leaves more than notify_queue_size bytes of them unread is
 * disconnected (SQLSTATE 53400, logged with the count): memory stays
 * bounded and nothing is lost silently. If the listener connection is lost,
 * its clients are disconnected (08006) for the same reason.
 *
 * The listener is not counted in pool_size or the connection limits (one
 * per pool and worker while any of its clients listens). Everything here
 * runs on the pool's worker.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/buf.h"
#include "sluice/param.h"

struct pool;
struct client;
struct server;
struct sql_scan_result;

/*
 * Step 1, for client c, linked to s, whose next request has the channels
 * of r. mirror: whether sluice may send a query of its own on s before the
 * request (nothing of c's is under way on it). Returns true when the
 * request must wait: the caller stops reading c, and client_prepared_resume
 * is called once the listener LISTENs.
 */
bool notify_before(struct client *c, struct server *s, const struct sql_scan_result *r,
		   bool mirror);
/* Step 2: appends "; UNLISTEN x" to the probe's text for each channel of c the listener hears. */
void notify_probe_unlisten(struct client *c, struct buf_out *sql);
/*
 * Step 3: channels (names as keys) is what the probe found s listening to.
 * Returns true when s keeps a channel of its own (the listener could not
 * take it): s is then pinned to c, as a LISTEN was before fan-out.
 */
bool notify_settle(struct client *c, struct server *s, const struct param_set *channels);

/* c is between transactions: what is held for it goes out. */
void notify_at_rest(struct client *c);
/* c is leaving: its channels go. */
void notify_client_gone(struct client *c);
/*
 * Whether a NotificationResponse (msg, whole) that c's transaction server
 * sends is to be dropped: the channel is c's and the listener hears it.
 */
bool notify_fans_out(const struct client *c, const uint8_t *msg, uint32_t len);

/* The listener server s of pool p logged in, answered its queries, or heard a notification. */
void notify_listener_up(struct server *s);
void notify_listener_answered(struct server *s);
void notify_listener_message(struct server *s, const uint8_t *msg, uint32_t len);
/* ...and has nothing more to read for now: its clients' backlogs are checked. */
void notify_listener_read_done(struct server *s);
/* The listener server s is closing. */
void notify_listener_down(struct server *s, const char *reason);
/* The pool is being freed. */
void notify_pool_free(struct pool *p);
