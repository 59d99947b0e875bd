/*
 * cancel.h - the cancel keys sluice hands to clients, and forwarding of a
 * client's CancelRequest to the server it is linked to right now, or to the
 * peer process that handed out its key (peer_id, [peers]).
 *
 * A client gets its own (pid, key) pair in BackendKeyData; PostgreSQL's pair
 * for the server never leaves sluice. A CancelRequest with a known pair is
 * sent, on a new connection, to the server the client is linked to at that
 * moment (never to a server that has moved on to another client); an
 * unknown pair does nothing, as PostgreSQL does. The server is not handed to
 * another client until every cancel sent for it has finished (PostgreSQL
 * closed the cancel connection), so a late cancel cannot hit the next
 * client's query.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct client;
struct server;
struct worker;

/*
 * A worker's clients by cancel key: open addressing over an array of client
 * pointers, linear probing, backward-shift deletion (no tombstones), doubled
 * before it is half full. A slot holds only the pointer and the key is read
 * from the client (client_cancel_key), so a client costs two to four slots
 * of 8 bytes instead of a 56-byte uthash handle in every struct client.
 * Lookups compare the whole 64-bit key. Keys are random, but peering fixes
 * some of their bits (see cancel.c), so the slot comes from a multiplicative
 * hash of the whole key, not from its low bits.
 */
struct cancel_table {
	struct client **slots; /* NULL until the first add */
	uint32_t mask; /* capacity - 1 (a power of two); 0 while slots is NULL */
	uint32_t n; /* clients in it */
};

void cancel_table_init(struct cancel_table *t);
/* Frees the slots; the clients are not the table's. */
void cancel_table_deinit(struct cancel_table *t);
/* Adds c under client_cancel_key(c), which no client in t may have. */
void cancel_table_add(struct cancel_table *t, struct client *c);
/* The client with this key, or NULL. */
struct client *cancel_table_find(const struct cancel_table *t, uint64_t key);
/* Removes c, found by its key and compared by pointer; nothing when c is not in t. */
void cancel_table_remove(struct cancel_table *t, struct client *c);

/* Gives c a fresh random cancel key and indexes it. */
void cancel_register(struct worker *w, struct client *c);
/*
 * Registers the key c has (a client handed over by the process before,
 * takeover.h); when another client has it here already, c gets a new one
 * as cancel_register gives and false is returned.
 */
bool cancel_register_key(struct worker *w, struct client *c);
void cancel_unregister(struct worker *w, struct client *c);
/*
 * Handles a CancelRequest that arrived with (pid, key): forwards it to the
 * server the client is linked to and records it there (server->cancels)
 * until PostgreSQL closes the cancel connection; then server_cancels_done().
 */
void cancel_request(struct worker *w, uint32_t pid, uint32_t key);
/*
 * A CancelRequest a client sent with (pid, key). With peer_id set, a key
 * another process handed out (its id is in the key) is forwarded to that
 * [peers] entry; anything else goes to cancel_request(). reason (len bytes)
 * gets what happened, for the log line that closes the request's connection.
 */
void cancel_accept(struct worker *w, uint32_t pid, uint32_t key, char *reason, size_t len);
/* Periodic: a forward to a peer unanswered after server_connect_timeout is given up. */
void cancel_tick(struct worker *w, uint64_t now);
/* Shutdown: forwards to peers are dropped (waiting) or closed (in flight). */
void cancel_stop(struct worker *w);

/* SHOW PEER_POOLS: one peer's forwards. */
struct cancel_peer_counts {
	int active; /* in flight */
	int waiting; /* for a slot under the peer's pool_size */
	int connecting; /* in flight and not sent yet */
	int sent; /* in flight, sent, waiting for the peer to close */
};
void cancel_peer_counts(struct worker *w, int peer_id, struct cancel_peer_counts *out);

/*
 * s is closing: its cancels are forgotten, without server_cancels_done();
 * one still connecting is sent, then closed without waiting for an answer.
 */
void cancel_server_closed(struct server *s);
