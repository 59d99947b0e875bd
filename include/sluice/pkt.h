/*
 * pkt.h - PostgreSQL protocol v3 framing, message readers and builders.
 *
 * No I/O and no libuv: bytes in, verdicts and bytes out, so every parser here
 * is unit-tested without sockets. Framing is incremental: a caller holding
 * any prefix of a stream learns "complete", "need more" or "malformed" and
 * never reads past what it has. Only headers are parsed on the relay path.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "sluice/buf.h"
#include "sluice/common.h"

/*
 * Message type bytes, by the protocol's names. Frontend and backend reuse
 * letters ('D' is Describe from a client and DataRow from a server), so the
 * names, not the letters, say which side a constant is for.
 */
enum pkt_type {
	/* frontend */
	PKT_Bind = 'B',
	PKT_Close = 'C',
	PKT_CopyFail = 'f',
	PKT_Describe = 'D',
	PKT_Execute = 'E',
	PKT_Flush = 'H',
	PKT_FunctionCall = 'F',
	PKT_Parse = 'P',
	PKT_PasswordMessage = 'p', /* also SASLInitialResponse, SASLResponse */
	PKT_Query = 'Q',
	PKT_Sync = 'S',
	PKT_Terminate = 'X',
	/* both */
	PKT_CopyData = 'd',
	PKT_CopyDone = 'c',
	/* backend */
	PKT_Authentication = 'R',
	PKT_BackendKeyData = 'K',
	PKT_BindComplete = '2',
	PKT_CloseComplete = '3',
	PKT_CommandComplete = 'C',
	PKT_CopyInResponse = 'G',
	PKT_CopyOutResponse = 'H',
	PKT_CopyBothResponse = 'W',
	PKT_DataRow = 'D',
	PKT_EmptyQueryResponse = 'I',
	PKT_ErrorResponse = 'E',
	PKT_FunctionCallResponse = 'V',
	PKT_NegotiateProtocolVersion = 'v',
	PKT_NoData = 'n',
	PKT_NoticeResponse = 'N',
	PKT_NotificationResponse = 'A',
	PKT_ParameterDescription = 't',
	PKT_ParameterStatus = 'S',
	PKT_ParseComplete = '1',
	PKT_PortalSuspended = 's',
	PKT_ReadyForQuery = 'Z',
	PKT_RowDescription = 'T',
};

/* Authentication request codes carried in an 'R' message. */
enum pkt_auth {
	PKT_AUTH_OK = 0,
	PKT_AUTH_CLEARTEXT = 3,
	PKT_AUTH_MD5 = 5,
	PKT_AUTH_SASL = 10,
	PKT_AUTH_SASL_CONTINUE = 11,
	PKT_AUTH_SASL_FINAL = 12,
};

/* Startup-packet codes (the Int32 after the length). */
#define PKT_PROTOCOL_3_0 0x00030000u
#define PKT_CANCEL_REQUEST_CODE 80877102u
#define PKT_SSL_REQUEST_CODE 80877103u
#define PKT_GSSENC_REQUEST_CODE 80877104u

#define PKT_HDR_LEN 5
/* PostgreSQL's own limit for startup packets (pqcomm.h MAX_STARTUP_PACKET_LENGTH). */
#define PKT_STARTUP_MAX 10000
#define PKT_STARTUP_MAX_PARAMS 64

enum pkt_result {
	PKT_OK = 0,
	PKT_INCOMPLETE = 1,
	PKT_MALFORMED = -1,
	PKT_TOO_LARGE = -2,
};

struct pkt_hdr {
	uint8_t type;
	uint32_t len; /* whole message: type byte + Int32 length + body */
};

/*
 * Reads the 5-byte header of a typed message from p[0..avail).
 * PKT_INCOMPLETE: fewer than 5 bytes. PKT_MALFORMED: length field < 4.
 * PKT_TOO_LARGE: whole message longer than max_len. PKT_OK: *h is filled;
 * the body may still be incomplete (compare h->len with avail). Inline:
 * every message relayed either way is framed, several per transaction.
 */
static inline WUR int pkt_frame(const uint8_t *p, size_t avail, uint32_t max_len, struct pkt_hdr *h)
{
	if (avail < PKT_HDR_LEN)
		return PKT_INCOMPLETE;
	uint32_t n = get_be32(p + 1);
	if (n < 4)
		return PKT_MALFORMED;
	/* n counts itself but not the type byte; compare without overflow. */
	if (n > max_len - 1 || max_len == 0)
		return PKT_TOO_LARGE;
	h->type = p[0];
	h->len = n + 1;
	return PKT_OK;
}

/*
 * Reads the length of an untyped startup-phase packet (StartupMessage,
 * SSLRequest, CancelRequest...). PKT_INCOMPLETE under 4 bytes;
 * PKT_MALFORMED below 8 or above PKT_STARTUP_MAX; else *len is the length.
 */
int pkt_frame_startup(const uint8_t *p, size_t avail, uint32_t *len) WUR;

struct pkt_startup {
	uint32_t code; /* protocol version or one of the request codes */
	/* CancelRequest */
	uint32_t cancel_pid;
	uint32_t cancel_key;
	/* StartupMessage: borrowed pointers into the packet, NUL-terminated; the first nparams are set */
	int nparams;
	const char *keys[PKT_STARTUP_MAX_PARAMS];
	const char *vals[PKT_STARTUP_MAX_PARAMS];
};

/*
 * Parses a whole startup-phase packet (including its length word).
 * PKT_MALFORMED on any inconsistency: unterminated strings, missing final
 * NUL, too many parameters, a CancelRequest of the wrong size.
 */
int pkt_parse_startup(const uint8_t *p, uint32_t len, struct pkt_startup *st) WUR;
/* The value of key, or NULL. A key named twice has its last value, as in PostgreSQL. */
const char *pkt_startup_get(const struct pkt_startup *st, const char *key);

/*
 * The settings in a startup packet's "options" value, read the way
 * PostgreSQL reads them: pg_split_opts() splits on white space and a
 * backslash takes the next character literally; each word is "-c", which
 * takes the next word, "-cname=value" or "--name=value", and dashes in a
 * name become underscores. Other command-line switches are refused.
 */
struct pkt_options {
	int n;
	char **names; /* heap; released by pkt_options_free */
	char **values;
};

/*
 * Parses opts into *o. PKT_OK, or PKT_MALFORMED with *o empty; either way err
 * holds a NUL-terminated description of the first problem ("" on success),
 * fit to quote to the client. Release o with pkt_options_free in both cases.
 */
int pkt_parse_options(const char *opts, struct pkt_options *o, char *err, size_t errlen) WUR;
void pkt_options_free(struct pkt_options *o);

/*
 * What a StartupMessage's "replication" parameter asks for: a walsender
 * for logical replication ("database") or for physical replication (true),
 * or an ordinary session (false, or no parameter).
 */
enum pkt_replication {
	PKT_REPLICATION_NONE = 0,
	PKT_REPLICATION_LOGICAL,
	PKT_REPLICATION_PHYSICAL,
};

/*
 * Reads a "replication" value as PostgreSQL does: exactly "database" is
 * logical; otherwise a boolean in parse_bool()'s spellings (true/false,
 * yes/no, on/off, 1/0, a unique prefix of the words, any case). PKT_OK with
 * *out set, or PKT_MALFORMED for anything else (PostgreSQL refuses it).
 */
int pkt_parse_replication(const char *value, enum pkt_replication *out) WUR;
/* The word SHOW CLIENTS and SHOW SERVERS print: none, logical, physical. */
const char *pkt_replication_name(enum pkt_replication r);
/* The value a server's StartupMessage carries for r: "database", "true" (NULL for none). */
const char *pkt_replication_startup_value(enum pkt_replication r);

/* Bounds-checked reader over one message body. Any overrun sets bad. */
struct pkt_reader {
	const uint8_t *p;
	size_t len;
	size_t pos;
	bool bad;
};

static inline void pkt_reader_init(struct pkt_reader *r, const uint8_t *body, size_t len)
{
	r->p = body;
	r->len = len;
	r->pos = 0;
	r->bad = false;
}
uint8_t pkt_get_u8(struct pkt_reader *r);
uint16_t pkt_get_be16(struct pkt_reader *r);
uint32_t pkt_get_be32(struct pkt_reader *r);
/* A NUL-terminated string inside the body, or NULL (and bad) if none. */
const char *pkt_get_cstr(struct pkt_reader *r);
/* n bytes, or NULL (and bad) if fewer remain. */
const uint8_t *pkt_get_bytes(struct pkt_reader *r, size_t n);
static inline size_t pkt_remaining(const struct pkt_reader *r)
{
	return r->len - r->pos;
}

/* Fields of an ErrorResponse or NoticeResponse; borrowed, NULL if absent. */
struct pkt_error {
	const char *severity; /* 'V' (non-localized) if present, else 'S' */
	const char *sqlstate;
	const char *message;
	const char *detail;
};
int pkt_parse_error(const uint8_t *body, size_t len, struct pkt_error *e) WUR;

/*
 * A NotificationResponse body: the sender's pid, then the channel and the
 * payload, each NUL-terminated, and nothing after them. PKT_OK, or
 * PKT_MALFORMED; the strings point into body.
 */
struct pkt_notification {
	uint32_t pid;
	const char *channel;
	const char *payload;
};
int pkt_parse_notification(const uint8_t *body, size_t len, struct pkt_notification *n) WUR;

/*
 * Builders append one whole message to out. pkt_begin/pkt_end bracket a
 * message of any type: begin writes the type byte and a placeholder length
 * and returns the offset to patch; end patches it.
 */
size_t pkt_begin(struct buf_out *out, uint8_t type);
void pkt_end(struct buf_out *out, size_t start);

void pkt_put_ErrorResponse(struct buf_out *out, const char *severity, const char *sqlstate,
			   const char *message);
void pkt_put_NoticeResponse(struct buf_out *out, const char *sqlstate, const char *message);
void pkt_put_ReadyForQuery(struct buf_out *out, char status);
void pkt_put_AuthenticationOk(struct buf_out *out);
void pkt_put_AuthenticationCleartextPassword(struct buf_out *out);
void pkt_put_AuthenticationMD5Password(struct buf_out *out, const uint8_t salt[4]);
void pkt_put_AuthenticationSASL(struct buf_out *out, const char *mechanism);
void pkt_put_AuthenticationSASLContinue(struct buf_out *out, const void *data, size_t len);
void pkt_put_AuthenticationSASLFinal(struct buf_out *out, const void *data, size_t len);
void pkt_put_ParameterStatus(struct buf_out *out, const char *name, const char *value);
void pkt_put_BackendKeyData(struct buf_out *out, uint32_t pid, uint32_t key);
void pkt_put_CommandComplete(struct buf_out *out, const char *tag);
void pkt_put_Query(struct buf_out *out, const char *sql);
void pkt_put_Terminate(struct buf_out *out);
void pkt_put_PasswordMessage(struct buf_out *out, const char *password);
void pkt_put_SASLInitialResponse(struct buf_out *out, const char *mechanism, const void *data,
				 size_t len);
void pkt_put_SASLResponse(struct buf_out *out, const void *data, size_t len);
/* keys/vals: n pairs, protocol 3.0. */
void pkt_put_StartupMessage(struct buf_out *out, const char *const *keys, const char *const *vals,
			    int n);
void pkt_put_CancelRequest(struct buf_out *out, uint32_t pid, uint32_t key);
void pkt_put_SSLRequest(struct buf_out *out);
