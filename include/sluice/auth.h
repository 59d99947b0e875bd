/*
 * auth.h - client authentication and the user list, I/O-free.
 *
 * The user list is PgBouncer's auth_file format: one `"user" "secret"` per
 * line, where the secret is a plaintext password, "md5" + 32 hex digits, or a
 * SCRAM-SHA-256 secret. An auth session is the server side of one client's
 * authentication exchange: it writes Authentication* requests into a buf_out
 * and consumes the client's password-type ('p') messages, ending with a
 * verdict. It never touches a socket or a timer; the client module does.
 *
 * Nor does it run PBKDF2: where a step needs a key derivation (a SCRAM
 * exchange against a plaintext secret, a cleartext password against a SCRAM
 * secret) it returns AUTH_DERIVE and holds a scram_job, which the caller
 * takes, runs (off the event loop) and hands back to auth_session_resume().
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "sluice/buf.h"
#include "sluice/common.h"
#include "sluice/config.h"
#include "sluice/scram.h"

enum auth_secret_kind {
	AUTH_SECRET_NONE = 0, /* e.g. "" in the file: no password */
	AUTH_SECRET_PLAIN,
	AUTH_SECRET_MD5,
	AUTH_SECRET_SCRAM,
};

struct auth_secret {
	enum auth_secret_kind kind;
	char *text; /* as written in the file */
	struct scram_secret scram; /* valid when kind == AUTH_SECRET_SCRAM */
};

struct auth_user {
	char *name;
	struct auth_secret secret;
	/*
	 * The md5 secret ("md5" + 32 hex digits) md5 authentication checks
	 * against: the file's, or made from a plain password when the user is
	 * loaded (not at every login); "" for other secrets.
	 */
	char md5[36];
	UT_hash_handle hh;
};

/* Immutable once loaded, and shared like a config snapshot: one reference per holder. */
struct auth_userlist {
	atomic_int refs;
	struct auth_user *users;
};

/*
 * Loads an auth_file. 0 and *out (one reference) on success; -1 with err = "file:line: what"
 * on a syntax error or unreadable file. An empty file is a valid empty list.
 */
int auth_userlist_load(const char *path, struct auth_userlist **out, char *err, size_t errlen) WUR;
/*
 * The parser auth_userlist_load reads the file with, I/O-free: text is the
 * file's len bytes (borrowed for the call; a NUL ends its line, as in the
 * file), and name stands for the path in err ("name:line: what"). Same
 * results as loading a file that holds text.
 */
int auth_userlist_parse(const char *text, size_t len, const char *name, struct auth_userlist **out,
			char *err, size_t errlen) WUR;
/* Another reference to list (NULL allowed); returns list. Any thread. */
struct auth_userlist *auth_userlist_ref(struct auth_userlist *list);
/* Drops a reference (NULL is ignored); the last one frees the list. Any thread. */
void auth_userlist_unref(struct auth_userlist *list);
const struct auth_user *auth_userlist_find(const struct auth_userlist *list, const char *name);

/*
 * A user whose secret comes from elsewhere than the auth_file (an auth_query
 * look-up), classified as the file's are; secret NULL (SQL NULL) or "" is a
 * user without a password, whom no password matches. NULL on a malformed
 * SCRAM secret.
 */
struct auth_user *auth_user_new(const char *name, const char *secret);
void auth_user_free(struct auth_user *u);

/* "md5" + md5_hex(password || user): the form PostgreSQL stores. out: 36 bytes. */
void auth_md5_secret(const char *password, const char *user, char out[36]);
/*
 * The md5 response a client sends for salt: "md5" + md5_hex(md5_hex(pw||user)
 * || salt). secret is a plaintext password or an "md5..." secret. out: 36 bytes.
 */
/*
 * Whether s is an md5 secret rather than a password: "md5" and exactly 32
 * lowercase hex digits, PostgreSQL's test (a password may start with "md5").
 */
bool auth_is_md5_secret(const char *s);
void auth_md5_response(const char *secret, const char *user, const uint8_t salt[4], char out[36]);

enum auth_status {
	AUTH_CONTINUE = 0, /* a request was written to out; feed the next 'p' message */
	AUTH_OK = 1, /* authenticated; AuthenticationOk NOT yet written (the client does it) */
	AUTH_FAILED = -1, /* wrong password, unknown user, or malformed message */
	/*
	 * A key derivation must run first: take it with auth_session_take_job(),
	 * run it (scram_job_run, on any thread), then call auth_session_resume().
	 * Until then the session takes no message (auth_session_step fails).
	 */
	AUTH_DERIVE = 2,
};

struct auth_session;

/*
 * Starts the exchange for user (NULL if not in the list: the exchange still
 * runs and fails like a wrong password) with the method that type and the
 * stored secret call for. mock_seed: process-wide random bytes for the SCRAM
 * mock of unknown users. Writes the first request into out, or returns
 * AUTH_OK at once for trust/any.
 */
struct auth_session *auth_session_new(enum auth_type type, const char *user_name,
				      const struct auth_user *user,
				      const uint8_t mock_seed[SCRAM_KEY_LEN]);
int auth_session_start(struct auth_session *s, struct buf_out *out) WUR;
/* Feeds the body (after type and length) of one 'p' message. */
int auth_session_step(struct auth_session *s, const uint8_t *body, size_t len,
		      struct buf_out *out) WUR;
/*
 * After AUTH_DERIVE: the job to run. Ownership passes to the caller, who
 * frees it after auth_session_resume() (or, if the session is abandoned,
 * whenever the job is no longer running). NULL when none is pending.
 */
struct scram_job *auth_session_take_job(struct auth_session *s);
/*
 * Continues the exchange with the job taken after AUTH_DERIVE, now run
 * (borrowed for the call). Returns what auth_session_step() would have:
 * AUTH_CONTINUE with the next request in out, AUTH_OK or AUTH_FAILED.
 */
int auth_session_resume(struct auth_session *s, const struct scram_job *job,
			struct buf_out *out) WUR;
/* Whether the exchange is SCRAM (AuthenticationSASL was, or will be, sent). */
bool auth_session_is_sasl(const struct auth_session *s);
/* Why it failed, for the log (never sent to the client: no user enumeration). */
const char *auth_session_failure(const struct auth_session *s);
/* After AUTH_OK via SCRAM against a SCRAM secret: the keys for server login. */
bool auth_session_scram_keys(const struct auth_session *s, uint8_t client_key[SCRAM_KEY_LEN],
			     uint8_t server_key[SCRAM_KEY_LEN]);
/* After AUTH_OK via cleartext: the password the client sent (borrowed, lives with s). */
const char *auth_session_password(const struct auth_session *s);
void auth_session_free(struct auth_session *s);
