/*
 * hba.h - PgBouncer's auth_hba_file (auth_type = hba): PostgreSQL's
 * pg_hba.conf format, parsed once per load, and the method of the first rule
 * that matches a connection.
 *
 * Supported as PgBouncer supports them: connection types local, host,
 * hostssl and hostnossl; databases all, sameuser, replication, lists and
 * @file; users all, lists and @file; IPv4 and IPv6 addresses with a /prefix
 * or a separate mask, and all; methods trust, reject, md5, password,
 * scram-sha-256, cert and peer. Options after the method are accepted and
 * ignored, as PgBouncer does. Anything else is an error naming the file and
 * line, and the file is not used.
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
 * Reads and parses the file at path. NULL with the reason (file:line: what)
 * in err on any error.
 */
struct hba *hba_load(const char *path, char *err, size_t errlen) WUR;
/* Parses text as if read from name (for messages; @files are relative to its directory). */
struct hba *hba_parse(const char *text, const char *name, char *err, size_t errlen) WUR;
struct hba *hba_ref(struct hba *h);
void hba_unref(struct hba *h);
/* The method of the first rule matching c; *line is that rule's line number (0: none). */
enum hba_method hba_match(const struct hba *h, const struct hba_conn *c, int *line);
const char *hba_method_name(enum hba_method m);
/* How many rules were read. */
int hba_rule_count(const struct hba *h);
