/*
 * hba.h - PgBouncer's auth_hba_file (auth_type = hba): PostgreSQL's
 * pg_hba.conf format, parsed once per load, and the method of the first rule
 * that matches a connection.
 *
 * Supported as PgBouncer supports them: connection types local, host,
 * hostssl and hostnossl; databases all, sameuser, replication, lists and
 * @file; users all, lists and @file; IPv4 and IPv6 addresses with a /prefix
 * or a separate mask, and all; methods trust, reject, md5, password,
 * scram-sha-256, cert and peer. Of the options after the method, map= (cert
 * and peer) names an ident map of auth_ident_file; the others are accepted
 * and ignored, as PgBouncer does. Anything else is an error naming the file
 * and line, and the file is not used.
 *
 * The ident maps (auth_ident_file) are PgBouncer's subset of pg_ident.conf:
 * "map system-user user" lines with exact names, and the keyword all for
 * any user. They live in the same object as the rules that name them.
 *
 * No I/O but reading the file and its @files: the caller matches with what
 * it knows of the connection.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "sluice/common.h"

enum hba_method {
	HBA_NO_MATCH = 0, /* no rule matched: the connection is refused */
	HBA_TRUST,
	HBA_REJECT,
	HBA_MD5,
	HBA_PASSWORD,
	HBA_SCRAM_SHA_256,
	HBA_CERT,
	HBA_PEER,
};

struct hba;

/* What a rule is matched against. */
struct hba_conn {
	bool unix_socket;
	bool tls;
	bool replication; /* a replication connection (matched by the database "replication") */
	const struct sockaddr *addr; /* the peer's address for TCP; NULL for a unix socket */
	const char *database;
	const char *user;
};

/*
 * Reads and parses the file at path, and the ident maps of ident_path (NULL
 * or "": none). NULL with the reason (file:line: what) in err on any error.
 */
struct hba *hba_load(const char *path, const char *ident_path, char *err, size_t errlen) WUR;
/* Parses text as if read from name (for messages; @files are relative to its directory). */
struct hba *hba_parse(const char *text, const char *name, char *err, size_t errlen) WUR;
/* Adds the ident map lines of text (read from name) to h. 0, or -1 with err. */
int hba_parse_ident(struct hba *h, const char *text, const char *name, char *err,
		    size_t errlen) WUR;
struct hba *hba_ref(struct hba *h);
void hba_unref(struct hba *h);
/*
 * The method of the first rule matching c; *line is that rule's line number
 * (0: none) and *map (if map is not NULL) its map= option, or NULL,
 * borrowed from h.
 */
enum hba_method hba_match(const struct hba *h, const struct hba_conn *c, int *line,
			  const char **map);
/*
 * Whether ident map map has a line for system_user (a certificate's common
 * name, a peer's OS user name) as user.
 */
bool hba_ident_allows(const struct hba *h, const char *map, const char *system_user,
		      const char *user);
/* A map= that no ident map line defines (its logins will all fail), or NULL. */
const char *hba_unknown_map(const struct hba *h);
const char *hba_method_name(enum hba_method m);
/* How many rules were read. */
int hba_rule_count(const struct hba *h);
