/*
 * handover.h - what one sluice process tells its successor about a client it
 * hands over in an online restart (takeover.h): the bytes that travel with
 * the client's socket, and their reading.
 *
 * A record is binary, big-endian, self-delimiting and versioned: the first
 * field is HANDOVER_VERSION, and a reader refuses any other. It carries the
 * client's identity (names, peer address, cancel key, connect time), its
 * session (tracked parameters, prepared statement names with their Parse
 * texts), what its pool needs to log in to PostgreSQL for it (a password or
 * SCRAM keys, when the old process had them), the bytes it had sent that
 * were read but not yet acted on, and, for a client in session pooling, the
 * server it is linked to.
 *
 * I/O-free: bytes in, a record out. A decoded record points into the bytes
 * it was read from (and into arrays handover_client_decode allocates, freed
 * by handover_client_free); strings are always NUL-terminated within them.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/buf.h"
#include "sluice/common.h"

/*
 * What a successor must speak to take over: the console's TAKEOVER command
 * carries it, and a record starts with it. Any change to a record's layout
 * or to the command's rows makes a new number.
 */
#define HANDOVER_VERSION 2

/* Bounds a reader holds a record to: a hostile or broken sender cannot make it allocate more. */
#define HANDOVER_MAX_PARAMS 256
#define HANDOVER_MAX_PREPARED 100000

struct handover_param {
	const char *name;
	const char *value;
};

struct handover_prepared {
	const char *name; /* the client's name */
	const uint8_t *text; /* Parse's body after the name: query, parameter count and types */
	uint32_t text_len;
};

/*
 * The server a session-pooled client is linked to, which goes with it (its
 * socket in the row before the client's): what the new process needs to
 * take it as logged in and idle in its session.
 */
struct handover_server {
	uint64_t id;
	uint64_t connect_time_ms; /* wall clock */
	uint32_t be_pid, be_key; /* PostgreSQL's cancel key */
	int32_t host_index; /* which of the database's hosts */
	int32_t port;
	const char *addr; /* as logged: host:port, or the socket's path */
	const char *host; /* the name connected to ("" for a unix socket) */
	struct handover_param *params; /* as PostgreSQL reported them */
	uint32_t n_params;
};

struct handover_client {
	uint64_t id; /* the old process's, for the log line that links the two */
	uint64_t connect_time_ms; /* wall clock, milliseconds since the epoch */
	bool is_unix;
	uint8_t admin_role; /* enum admin_role; 0 for an ordinary client */
	uint8_t addr_family; /* struct stream_addr, field by field */
	uint16_t addr_port;
	uint8_t addr_ip[16];
	int32_t peer_pid;
	uint32_t cancel_pid, cancel_key;
	const char *db;
	const char *user;
	/* The pool's credentials for PostgreSQL (pool.h), when it had them. */
	bool have_scram_keys;
	uint8_t scram_client_key[32];
	uint8_t scram_server_key[32];
	const char *password; /* NULL: none */
	struct handover_param *params;
	uint32_t n_params;
	struct handover_prepared *prepared;
	uint32_t n_prepared;
	const uint8_t *input; /* read, not yet acted on */
	uint32_t input_len;
	bool linked; /* server holds the server it stays linked to */
	struct handover_server server;
};

/* Appends h's record to out. */
void handover_client_encode(struct buf_out *out, const struct handover_client *h);
/*
 * Reads the record in p[0..len) into *h: 0, or -1 when it is not exactly
 * one well-formed record of this version within the bounds above (*h then
 * holds nothing to free). On 0, free with handover_client_free.
 */
int handover_client_decode(const uint8_t *p, size_t len, struct handover_client *h) WUR;
void handover_client_free(struct handover_client *h);
