/*
 * check_scram.c - unit tests of the scram module: both roles against the
 * RFC 7677 section 3 vector, against each other (with a password and with
 * pass-through keys), failures that must look alike (wrong password, unknown
 * user), tables of malformed messages for every field, and secret parsing.
 *
 * It tests only scram.c's interface; the PostgreSQL framing around SCRAM is
 * auth.c's and is tested in check_auth.c.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/scram.h"

/* ---- RFC 7677 section 3 ------------------------------------------------- */

#define V_PASSWORD "pencil"
#define V_USER "user"
#define V_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define V_SNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define V_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define V_CLIENT_FIRST "n,,n=user,r=" V_CNONCE
#define V_SERVER_FIRST "r=" V_CNONCE V_SNONCE ",s=" V_SALT ",i=4096"
#define V_CLIENT_FINAL                                                                             \
	"c=biws,r=" V_CNONCE V_SNONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define V_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* The stored secret for the vector, and its ClientKey, computed independently (Python hashlib). */
#define V_SECRET                                                                                   \
	"SCRAM-SHA-256$4096:" V_SALT "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="               \
	":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
/* base64 pg/JI9Z+hkSpLRa5btpe9GVrDHJcSEN0viVTVXaZbos= */
static const uint8_t v_client_key[SCRAM_KEY_LEN] = {
	0xa6, 0x0f, 0xc9, 0x23, 0xd6, 0x7e, 0x86, 0x44, 0xa9, 0x2d, 0x16,
	0xb9, 0x6e, 0xda, 0x5e, 0xf4, 0x65, 0x6b, 0x0c, 0x72, 0x5c, 0x48,
	0x43, 0x74, 0xbe, 0x25, 0x53, 0x55, 0x76, 0x99, 0x6e, 0x8b,
};

static const uint8_t seed[SCRAM_KEY_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };

#define STR(s) (const uint8_t *)(s), strlen(s)

static struct scram_secret vector_secret(void)
{
	struct scram_secret sec;
	ck_assert_int_eq(scram_parse_secret(V_SECRET, &sec), 0);
	return sec;
}

START_TEST(test_scram_rfc7677_vector_client_role)
{
	struct scram_client *c = scram_client_new(V_PASSWORD, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	scram_client_set_user(c, V_USER);
	scram_client_set_nonce(c, V_CNONCE);
	char *first = scram_client_first(c);
	ck_assert_str_eq(first, V_CLIENT_FIRST);
	char *final = NULL;
	ck_assert_int_eq(scram_client_final(c, STR(V_SERVER_FIRST), &final), 0);
	ck_assert_str_eq(final, V_CLIENT_FINAL);
	ck_assert_int_eq(scram_client_verify(c, STR(V_SERVER_FINAL)), 0);
	free(first);
	free(final);
	scram_client_free(c);
}
END_TEST

/*
 * The client role in two steps, as the event loop runs it: the
 * server-first-message yields a job carrying the server's salt and count,
 * which runs apart from the exchange (here, after the client was asked for
 * nothing else); the final message built from it is the vector's.
 */
START_TEST(test_scram_client_role_derives_in_a_separate_job)
{
	struct scram_client *c = scram_client_new(V_PASSWORD, NULL, NULL);
	scram_client_set_user(c, V_USER);
	scram_client_set_nonce(c, V_CNONCE);
	free(scram_client_first(c));
	struct scram_job *job = NULL;
	ck_assert_int_eq(scram_client_receive_first(c, STR(V_SERVER_FIRST), &job), 0);
	ck_assert_ptr_nonnull(job);
	ck_assert_int_eq(job->iterations, 4096);
	ck_assert_uint_eq(job->salt_len, 16);
	ck_assert_str_eq(job->password, V_PASSWORD);
	char *final = NULL;
	/* Without the run job there is no proof to build. */
	struct scram_client *c2 = scram_client_new(V_PASSWORD, NULL, NULL);
	scram_client_set_nonce(c2, V_CNONCE);
	free(scram_client_first(c2));
	struct scram_job *job2 = NULL;
	ck_assert_int_eq(scram_client_receive_first(c2, STR(V_SERVER_FIRST), &job2), 0);
	ck_assert_int_eq(scram_client_final_build(c2, NULL, &final), -1);
	ck_assert_ptr_null(final);
	scram_client_free(c2);
	ck_assert_int_eq(job2->rc, -1); /* never run */
	/* The job outlives the exchange that asked for it. */
	scram_job_run(job2);
	ck_assert_int_eq(job2->rc, 0);
	ck_assert_mem_eq(job2->client_key, v_client_key, SCRAM_KEY_LEN);
	scram_job_free(job2);

	scram_job_run(job);
	ck_assert_int_eq(scram_client_final_build(c, job, &final), 0);
	scram_job_free(job);
	ck_assert_str_eq(final, V_CLIENT_FINAL);
	ck_assert_int_eq(scram_client_verify(c, STR(V_SERVER_FINAL)), 0);
	free(final);
	scram_client_free(c);

	/* Pass-through keys need no derivation: no job, and the proof at once. */
	struct scram_secret sec = vector_secret();
	c = scram_client_new(NULL, v_client_key, sec.server_key);
	scram_client_set_user(c, V_USER);
	scram_client_set_nonce(c, V_CNONCE);
	free(scram_client_first(c));
	job = (struct scram_job *)1;
	ck_assert_int_eq(scram_client_receive_first(c, STR(V_SERVER_FIRST), &job), 0);
	ck_assert_ptr_null(job);
	ck_assert_int_eq(scram_client_final_build(c, NULL, &final), 0);
	ck_assert_str_eq(final, V_CLIENT_FINAL);
	ck_assert_int_eq(scram_client_verify(c, STR(V_SERVER_FINAL)), 0);
	free(final);
	scram_client_free(c);
}
END_TEST

START_TEST(test_scram_rfc7677_vector_server_role)
{
	struct scram_secret sec = vector_secret();
	struct scram_server *s = scram_server_new(&sec, V_USER, seed);
	scram_server_set_nonce(s, V_SNONCE);
	char *first = NULL, *final = NULL;
	bool ok = false;
	uint8_t ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
	ck_assert(!scram_server_keys(s, ck, sk));
	ck_assert_int_eq(scram_server_first(s, STR(V_CLIENT_FIRST), &first), 0);
	ck_assert_str_eq(first, V_SERVER_FIRST);
	ck_assert_int_eq(scram_server_final(s, STR(V_CLIENT_FINAL), &final, &ok), 0);
	ck_assert(ok);
	ck_assert_str_eq(final, V_SERVER_FINAL);
	ck_assert(scram_server_keys(s, ck, sk));
	ck_assert_mem_eq(ck, v_client_key, SCRAM_KEY_LEN);
	ck_assert_mem_eq(sk, sec.server_key, SCRAM_KEY_LEN);
	free(first);
	free(final);
	scram_server_free(s);
}
END_TEST

START_TEST(test_scram_secret_build_matches_vector)
{
	struct scram_secret parsed = vector_secret(), built;
	ck_assert_int_eq(scram_secret_build(V_PASSWORD, parsed.salt, parsed.salt_len, 4096, &built),
			 0);
	char *text = scram_secret_format(&built);
	ck_assert_str_eq(text, V_SECRET);
	free(text);
	ck_assert_mem_eq(built.stored_key, parsed.stored_key, SCRAM_KEY_LEN);
}
END_TEST

START_TEST(test_scram_secret_from_password_uses_fresh_salt)
{
	struct scram_secret a, b;
	ck_assert_int_eq(scram_secret_from_password("pw", 16, &a), 0);
	ck_assert_int_eq(scram_secret_from_password("pw", 16, &b), 0);
	ck_assert_int_eq(a.iterations, 16);
	ck_assert_uint_eq(a.salt_len, 16);
	ck_assert(memcmp(a.salt, b.salt, 16) != 0);
	/* A formatted secret parses back to itself. */
	char *text = scram_secret_format(&a);
	struct scram_secret c;
	ck_assert_int_eq(scram_parse_secret(text, &c), 0);
	ck_assert_int_eq(c.iterations, a.iterations);
	ck_assert_uint_eq(c.salt_len, a.salt_len);
	ck_assert_mem_eq(c.salt, a.salt, a.salt_len);
	ck_assert_mem_eq(c.stored_key, a.stored_key, SCRAM_KEY_LEN);
	ck_assert_mem_eq(c.server_key, a.server_key, SCRAM_KEY_LEN);
	free(text);
}
END_TEST

/* ---- the two roles against each other ----------------------------------- */

/*
 * Runs a whole exchange between c and s. Returns the server's verdict (ok),
 * and 0/-1 from the client's verification in *client_rc (-1 when the server
 * refused and sent nothing).
 */
static bool converse(struct scram_client *c, struct scram_server *s, int *client_rc)
{
	char *cf = scram_client_first(c), *sf = NULL, *cfin = NULL, *sfin = NULL;
	bool ok = false;
	ck_assert_int_eq(scram_server_first(s, STR(cf), &sf), 0);
	ck_assert_int_eq(scram_client_final(c, STR(sf), &cfin), 0);
	ck_assert_int_eq(scram_server_final(s, STR(cfin), &sfin, &ok), 0);
	*client_rc = sfin ? scram_client_verify(c, STR(sfin)) : -1;
	ck_assert(ok == (sfin != NULL));
	free(cf);
	free(sf);
	free(cfin);
	free(sfin);
	return ok;
}

START_TEST(test_scram_client_logs_in_to_server_with_password)
{
	struct scram_secret sec;
	ck_assert_int_eq(scram_secret_from_password("s3cret", 64, &sec), 0);
	struct scram_server *s = scram_server_new(&sec, "bob", seed);
	struct scram_client *c = scram_client_new("s3cret", NULL, NULL);
	int crc;
	ck_assert(converse(c, s, &crc));
	ck_assert_int_eq(crc, 0);
	scram_client_free(c);
	scram_server_free(s);
}
END_TEST

START_TEST(test_scram_passthrough_keys_log_in_to_server_with_same_secret)
{
	struct scram_secret sec;
	ck_assert_int_eq(scram_secret_from_password("s3cret", 64, &sec), 0);
	/* A client proves itself to sluice, which keeps the ClientKey... */
	struct scram_server *s1 = scram_server_new(&sec, "bob", seed);
	struct scram_client *c1 = scram_client_new("s3cret", NULL, NULL);
	int crc;
	ck_assert(converse(c1, s1, &crc));
	uint8_t ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
	ck_assert(scram_server_keys(s1, ck, sk));
	/* ...and logs in to a server holding the same secret without the password. */
	struct scram_server *s2 = scram_server_new(&sec, "bob", seed);
	struct scram_client *c2 = scram_client_new(NULL, ck, sk);
	ck_assert_ptr_nonnull(c2);
	ck_assert(converse(c2, s2, &crc));
	ck_assert_int_eq(crc, 0);
	scram_client_free(c1);
	scram_client_free(c2);
	scram_server_free(s1);
	scram_server_free(s2);
}
END_TEST

START_TEST(test_scram_passthrough_with_wrong_server_key_rejects_server)
{
	struct scram_secret sec;
	ck_assert_int_eq(scram_secret_from_password("s3cret", 64, &sec), 0);
	uint8_t ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
	struct scram_server *s1 = scram_server_new(&sec, "bob", seed);
	struct scram_client *c1 = scram_client_new("s3cret", NULL, NULL);
	int crc;
	ck_assert(converse(c1, s1, &crc));
	ck_assert(scram_server_keys(s1, ck, sk));
	sk[0] ^= 1; /* the server we talk to does not prove knowledge of ServerKey */
	struct scram_server *s2 = scram_server_new(&sec, "bob", seed);
	struct scram_client *c2 = scram_client_new(NULL, ck, sk);
	ck_assert(converse(c2, s2, &crc));
	ck_assert_int_eq(crc, -1);
	scram_client_free(c1);
	scram_client_free(c2);
	scram_server_free(s1);
	scram_server_free(s2);
}
END_TEST

START_TEST(test_scram_client_new_needs_password_or_both_keys)
{
	uint8_t k[SCRAM_KEY_LEN] = { 0 };
	ck_assert_ptr_null(scram_client_new(NULL, NULL, NULL));
	ck_assert_ptr_null(scram_client_new(NULL, k, NULL));
	ck_assert_ptr_null(scram_client_new(NULL, NULL, k));
}
END_TEST

START_TEST(test_scram_wrong_password_fails_at_final_step)
{
	struct scram_secret sec;
	ck_assert_int_eq(scram_secret_from_password("right", 64, &sec), 0);
	struct scram_server *s = scram_server_new(&sec, "bob", seed);
	struct scram_client *c = scram_client_new("wrong", NULL, NULL);
	int crc;
	ck_assert(!converse(c, s, &crc));
	ck_assert_int_eq(crc, -1);
	uint8_t ck[SCRAM_KEY_LEN], sk[SCRAM_KEY_LEN];
	ck_assert(!scram_server_keys(s, ck, sk));
	scram_client_free(c);
	scram_server_free(s);
}
END_TEST

/* The salt= attribute of a server-first-message, as a fresh string. */
static char *salt_of(const char *server_first)
{
	const char *s = strstr(server_first, ",s=");
	ck_assert_ptr_nonnull(s);
	s += 3;
	return strndup(s, strcspn(s, ","));
}

static char *mock_server_first(const char *user, const uint8_t *mock_seed)
{
	struct scram_server *s = scram_server_new(NULL, user, mock_seed);
	char *sf = NULL;
	ck_assert_int_eq(scram_server_first(s, STR("n,,n=,r=abc"), &sf), 0);
	scram_server_free(s);
	return sf;
}

START_TEST(test_scram_unknown_user_fails_like_wrong_password)
{
	/* Every password fails, at the final step, with a well-formed exchange. */
	const char *passwords[] = { "", "right", "pencil" };
	for (size_t i = 0; i < 3; i++) {
		struct scram_server *s = scram_server_new(NULL, "ghost", seed);
		struct scram_client *c = scram_client_new(passwords[i], NULL, NULL);
		int crc;
		ck_assert(!converse(c, s, &crc));
		ck_assert_int_eq(crc, -1);
		scram_client_free(c);
		scram_server_free(s);
	}
	/* The mock salt is stable per user and differs between users and seeds. */
	char *a = mock_server_first("ghost", seed), *b = mock_server_first("ghost", seed);
	char *other = mock_server_first("phantom", seed);
	uint8_t seed2[SCRAM_KEY_LEN] = { 9 };
	char *reseeded = mock_server_first("ghost", seed2);
	char *sa = salt_of(a), *sb = salt_of(b), *so = salt_of(other), *sr = salt_of(reseeded);
	ck_assert_str_eq(sa, sb);
	ck_assert_str_ne(sa, so);
	ck_assert_str_ne(sa, sr);
	ck_assert_uint_eq(strlen(sa), 24); /* 16 bytes */
	ck_assert_ptr_nonnull(strstr(a, ",i=4096"));
	free(a);
	free(b);
	free(other);
	free(reseeded);
	free(sa);
	free(sb);
	free(so);
	free(sr);
}
END_TEST

/* ---- malformed messages, server role ------------------------------------ */

struct msg_case {
	const char *msg;
	size_t len; /* 0: strlen(msg) */
	int rc;
};

static const struct msg_case client_first_cases[] = {
	{ "n,,n=,r=abc", 0, 0 },
	{ "n,,n=user,r=abc", 0, 0 },
	{ "y,,n=,r=abc", 0, 0 }, /* client could bind, we do not offer -PLUS: fine */
	{ "n,,n=a=2Cb=3D,r=abc", 0, 0 },
	{ "n,,n=,r=abc,x=extension", 0, 0 },
	{ "", 0, -1 },
	{ "n", 0, -1 },
	{ "n,", 0, -1 },
	{ "n,,", 0, -1 },
	{ "x,,n=,r=abc", 0, -1 },
	{ "p=tls-server-end-point,,n=,r=abc", 0, -1 },
	{ "n,a=admin,n=,r=abc", 0, -1 },
	{ "n,,m=ext,n=,r=abc", 0, -1 },
	{ "n,,r=abc", 0, -1 },
	{ "n,,n=", 0, -1 },
	{ "n,,n=,", 0, -1 },
	{ "n,,n=,r=", 0, -1 },
	{ "n,,n=,r=ab c", 0, -1 },
	{ "n,,n=,r=ab\x01", 0, -1 },
	{ "n,,n=,r=ab\x7f", 0, -1 },
	{ "n,,n=,r=abc,", 0, -1 },
	{ "n,,n=,r=abc,x", 0, -1 },
	{ "n,,n=,r=abc,,", 0, -1 },
	{ "n,,n=a=b,r=abc", 0, -1 },
	{ "n,,n=a=2,r=abc", 0, -1 },
	{ "n,,n=,x=1,r=abc", 0, -1 },
	{ "n,,n=,r=abc\0def", 15, -1 },
	{ "n,,N=,r=abc", 0, -1 },
};

START_TEST(test_scram_server_rejects_malformed_client_first)
{
	const struct msg_case *tc = &client_first_cases[_i];
	size_t len = tc->len ? tc->len : strlen(tc->msg);
	struct scram_server *s = scram_server_new(NULL, "u", seed);
	char *sf = (char *)"unchanged";
	int rc = scram_server_first(s, (const uint8_t *)tc->msg, len, &sf);
	ck_assert_msg(rc == tc->rc, "case %d \"%s\": rc %d, want %d", _i, tc->msg, rc, tc->rc);
	if (rc < 0) {
		ck_assert_ptr_null(sf);
		/* A failed exchange stays failed. */
		char *again = NULL;
		ck_assert_int_eq(scram_server_first(s, STR("n,,n=,r=abc"), &again), -1);
	}
	free(rc == 0 ? sf : NULL);
	scram_server_free(s);
}
END_TEST

#define ZERO_PROOF "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

struct final_case {
	const char *first; /* client-first; the server nonce is "SN" */
	const char *final;
	int rc; /* 0: well-formed (with this proof, a wrong password) */
};

static const struct final_case client_final_cases[] = {
	{ "n,,n=,r=abc", "c=biws,r=abcSN,p=" ZERO_PROOF, 0 },
	{ "n,,n=,r=abc", "c=biws,r=abcSN,x=ext,p=" ZERO_PROOF, 0 },
	{ "y,,n=,r=abc", "c=eSws,r=abcSN,p=" ZERO_PROOF, 0 },
	{ "n,,n=,r=abc", "", -1 },
	{ "n,,n=,r=abc", "c=biws", -1 },
	{ "n,,n=,r=abc", "c=biws,", -1 },
	{ "n,,n=,r=abc", "c=biws,r=abcSN", -1 },
	{ "n,,n=,r=abc", "c=biws,r=abcSN,", -1 },
	{ "n,,n=,r=abc", "c=biws,r=abcSN,p=", -1 },
	{ "n,,n=,r=abc", "c=biws,r=abcSN,p=AAAA", -1 },
	{ "n,,n=,r=abc", "c=biws,r=abcSN,p=" ZERO_PROOF "AAAA", -1 },
	{ "n,,n=,r=abc", "c=biws,r=abcSN,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*=", -1 },
	{ "n,,n=,r=abc", "c=biws,r=abcSN,p=" ZERO_PROOF ",x=after", -1 },
	{ "n,,n=,r=abc", "c=biws,r=abcSN,p=" ZERO_PROOF ",", -1 },
	{ "n,,n=,r=abc", "c=biws,r=abc,p=" ZERO_PROOF, -1 },
	{ "n,,n=,r=abc", "c=biws,r=abcSNx,p=" ZERO_PROOF, -1 },
	{ "n,,n=,r=abc", "c=biws,r=,p=" ZERO_PROOF, -1 },
	{ "n,,n=,r=abc", "r=abcSN,c=biws,p=" ZERO_PROOF, -1 },
	{ "n,,n=,r=abc", "c=eSws,r=abcSN,p=" ZERO_PROOF, -1 }, /* claims y,, after n,, */
	{ "y,,n=,r=abc", "c=biws,r=abcSN,p=" ZERO_PROOF, -1 }, /* claims n,, after y,, */
	{ "n,,n=,r=abc", "c=cD10bHMtdW5pcXVlLCw=,r=abcSN,p=" ZERO_PROOF, -1 },
	{ "n,,n=,r=abc", "c=biws=,r=abcSN,p=" ZERO_PROOF, -1 },
	{ "n,,n=,r=abc", "c=,r=abcSN,p=" ZERO_PROOF, -1 },
	{ "n,,n=,r=abc", "c=biws,p=" ZERO_PROOF, -1 },
};

START_TEST(test_scram_server_rejects_malformed_client_final)
{
	const struct final_case *tc = &client_final_cases[_i];
	struct scram_server *s = scram_server_new(NULL, "u", seed);
	scram_server_set_nonce(s, "SN");
	char *sf = NULL, *sfin = (char *)"unchanged";
	bool ok = true;
	ck_assert_int_eq(scram_server_first(s, STR(tc->first), &sf), 0);
	int rc = scram_server_final(s, STR(tc->final), &sfin, &ok);
	ck_assert_msg(rc == tc->rc, "case %d \"%s\": rc %d, want %d", _i, tc->final, rc, tc->rc);
	ck_assert(!ok);
	ck_assert_ptr_null(sfin);
	free(sf);
	scram_server_free(s);
}
END_TEST

START_TEST(test_scram_server_refuses_final_before_first)
{
	struct scram_secret sec = vector_secret();
	struct scram_server *s = scram_server_new(&sec, V_USER, seed);
	char *sfin = NULL;
	bool ok = true;
	ck_assert_int_eq(scram_server_final(s, STR(V_CLIENT_FINAL), &sfin, &ok), -1);
	ck_assert(!ok);
	scram_server_free(s);
}
END_TEST

/* ---- malformed messages, client role ------------------------------------ */

static const struct msg_case server_first_cases[] = {
	{ "r=cnonceSN,s=QUJD,i=1", 0, 0 },
	{ "r=cnonceSN,s=QUJD,i=1,x=ext", 0, 0 },
	{ "r=cnonceSN,s=QUI=,i=1", 0, 0 },
	{ "", 0, -1 },
	{ "r=cnonce,s=QUJD,i=1", 0, -1 }, /* no server part */
	{ "r=cnoncX,s=QUJD,i=1", 0, -1 },
	{ "r=other123,s=QUJD,i=1", 0, -1 },
	{ "r=cnonceS N,s=QUJD,i=1", 0, -1 },
	{ "m=ext,r=cnonceSN,s=QUJD,i=1", 0, -1 },
	{ "r=cnonceSN,s=,i=1", 0, -1 },
	{ "r=cnonceSN,s=QUJ,i=1", 0, -1 },
	{ "r=cnonceSN,s=Q*JD,i=1", 0, -1 },
	{ "r=cnonceSN,s=Q===,i=1", 0, -1 },
	{ "r=cnonceSN,s=QUJD,i=0", 0, -1 },
	{ "r=cnonceSN,s=QUJD,i=-1", 0, -1 },
	{ "r=cnonceSN,s=QUJD,i=+1", 0, -1 },
	{ "r=cnonceSN,s=QUJD,i=abc", 0, -1 },
	{ "r=cnonceSN,s=QUJD,i=", 0, -1 },
	{ "r=cnonceSN,s=QUJD,i=99999999999", 0, -1 },
	{ "r=cnonceSN,s=QUJD,i=2000000000", 0, -1 }, /* above the sanity bound */
	{ "r=cnonceSN,s=QUJD,i=10000000", 0, -1 }, /* once stalled every client for 19.5 s */
	{ "r=cnonceSN,s=QUJD,i=100001", 0, -1 },
	{ "r=cnonceSN,s=QUJD", 0, -1 },
	{ "r=cnonceSN,s=QUJD,", 0, -1 },
	{ "r=cnonceSN,i=1,s=QUJD", 0, -1 },
	{ "e=other-error", 0, -1 },
	{ "r=cnonceSN,s=QUJD,i=1\0", 22, -1 },
};

START_TEST(test_scram_client_rejects_malformed_server_first)
{
	const struct msg_case *tc = &server_first_cases[_i];
	size_t len = tc->len ? tc->len : strlen(tc->msg);
	struct scram_client *c = scram_client_new("pw", NULL, NULL);
	scram_client_set_nonce(c, "cnonce");
	char *cf = scram_client_first(c), *cfin = (char *)"unchanged";
	int rc = scram_client_final(c, (const uint8_t *)tc->msg, len, &cfin);
	ck_assert_msg(rc == tc->rc, "case %d \"%s\": rc %d, want %d", _i, tc->msg, rc, tc->rc);
	if (rc < 0)
		ck_assert_ptr_null(cfin);
	else
		free(cfin);
	free(cf);
	scram_client_free(c);
}
END_TEST

START_TEST(test_scram_client_rejects_bad_server_final)
{
	static const char *bad[] = {
		"",
		"e=invalid-proof",
		"e=other-error",
		"v=",
		"v=AAAA",
		"v=" ZERO_PROOF, /* well-formed, wrong signature */
		V_SERVER_FINAL ",", /* trailing comma */
		"V=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
		"x=1," V_SERVER_FINAL,
	};
	for (size_t i = 0; i <= ARRAY_SIZE(bad); i++) {
		struct scram_client *c = scram_client_new(V_PASSWORD, NULL, NULL);
		scram_client_set_user(c, V_USER);
		scram_client_set_nonce(c, V_CNONCE);
		char *cf = scram_client_first(c), *cfin = NULL;
		ck_assert_int_eq(scram_client_final(c, STR(V_SERVER_FIRST), &cfin), 0);
		/* The last round is the control: the right signature passes. */
		const char *msg = i < ARRAY_SIZE(bad) ? bad[i] : V_SERVER_FINAL;
		int rc = scram_client_verify(c, STR(msg));
		ck_assert_msg(rc == (i < ARRAY_SIZE(bad) ? -1 : 0), "\"%s\": rc %d", msg, rc);
		free(cf);
		free(cfin);
		scram_client_free(c);
	}
}
END_TEST

START_TEST(test_scram_client_refuses_out_of_order_messages)
{
	struct scram_client *c = scram_client_new(V_PASSWORD, NULL, NULL);
	char *cfin = NULL;
	ck_assert_int_eq(scram_client_final(c, STR(V_SERVER_FIRST), &cfin), -1);
	ck_assert_int_eq(scram_client_verify(c, STR(V_SERVER_FINAL)), -1);
	scram_client_free(c);
}
END_TEST

/* ---- secrets ------------------------------------------------------------ */

#define K32 "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="

static const struct {
	const char *text;
	int rc;
} secret_cases[] = {
	{ V_SECRET, 0 },
	{ "SCRAM-SHA-256$1:QQ==$" K32 ":" K32, 0 },
	{ "SCRAM-SHA-256$2147483647:QUJD$" K32 ":" K32, 0 },
	{ "", -1 },
	{ "md5c0af6c4a6d6b5f1ec5c5f6e9a8d7e6f5", -1 },
	{ "pencil", -1 },
	{ "SCRAM-SHA-1$4096:QUJD$" K32 ":" K32, -1 },
	{ "scram-sha-256$4096:QUJD$" K32 ":" K32, -1 },
	{ "SCRAM-SHA-256$", -1 },
	{ "SCRAM-SHA-256$4096:QUJD$" K32, -1 },
	{ "SCRAM-SHA-256$4096:QUJD" K32 ":" K32, -1 },
	{ "SCRAM-SHA-256$4096$" K32 ":" K32, -1 },
	{ "SCRAM-SHA-256$:QUJD$" K32 ":" K32, -1 },
	{ "SCRAM-SHA-256$0:QUJD$" K32 ":" K32, -1 },
	{ "SCRAM-SHA-256$-1:QUJD$" K32 ":" K32, -1 },
	{ "SCRAM-SHA-256$40x6:QUJD$" K32 ":" K32, -1 },
	{ "SCRAM-SHA-256$2147483648:QUJD$" K32 ":" K32, -1 },
	{ "SCRAM-SHA-256$4096:$" K32 ":" K32, -1 },
	{ "SCRAM-SHA-256$4096:QUJ$" K32 ":" K32, -1 },
	{ "SCRAM-SHA-256$4096:QU D$" K32 ":" K32, -1 },
	{ "SCRAM-SHA-256$4096:QUJD$QUJD:" K32, -1 },
	{ "SCRAM-SHA-256$4096:QUJD$" K32 ":QUJD", -1 },
	{ "SCRAM-SHA-256$4096:QUJD$" K32 ":" K32 "$", -1 },
	{ "SCRAM-SHA-256$4096:QUJD$" K32 ":" K32 " ", -1 },
	{ "SCRAM-SHA-256$4096:QUJD$" K32 ":" K32 ":" K32, -1 },
	{ " SCRAM-SHA-256$4096:QUJD$" K32 ":" K32, -1 },
	/* 65-byte salt: longer than struct scram_secret holds. */
	{ "SCRAM-SHA-256$4096:"
	  "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
	  "$" K32 ":" K32,
	  -1 },
};

START_TEST(test_scram_parse_secret_table)
{
	struct scram_secret sec;
	memset(&sec, 0x5a, sizeof(sec));
	int rc = scram_parse_secret(secret_cases[_i].text, &sec);
	ck_assert_msg(rc == secret_cases[_i].rc, "case %d \"%s\": rc %d", _i,
		      secret_cases[_i].text, rc);
	if (rc == 0) {
		char *again = scram_secret_format(&sec);
		ck_assert_str_eq(again, secret_cases[_i].text);
		free(again);
	}
}
END_TEST

static Suite *scram_suite(void)
{
	Suite *s = suite_create("scram");
	TCase *tc = tcase_create("vector");
	tcase_add_test(tc, test_scram_rfc7677_vector_client_role);
	tcase_add_test(tc, test_scram_client_role_derives_in_a_separate_job);
	tcase_add_test(tc, test_scram_rfc7677_vector_server_role);
	tcase_add_test(tc, test_scram_secret_build_matches_vector);
	tcase_add_test(tc, test_scram_secret_from_password_uses_fresh_salt);
	suite_add_tcase(s, tc);

	tc = tcase_create("exchange");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_scram_client_logs_in_to_server_with_password);
	tcase_add_test(tc, test_scram_passthrough_keys_log_in_to_server_with_same_secret);
	tcase_add_test(tc, test_scram_passthrough_with_wrong_server_key_rejects_server);
	tcase_add_test(tc, test_scram_client_new_needs_password_or_both_keys);
	tcase_add_test(tc, test_scram_wrong_password_fails_at_final_step);
	tcase_add_test(tc, test_scram_unknown_user_fails_like_wrong_password);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	tcase_add_loop_test(tc, test_scram_server_rejects_malformed_client_first, 0,
			    (int)ARRAY_SIZE(client_first_cases));
	tcase_add_loop_test(tc, test_scram_server_rejects_malformed_client_final, 0,
			    (int)ARRAY_SIZE(client_final_cases));
	tcase_add_test(tc, test_scram_server_refuses_final_before_first);
	tcase_add_loop_test(tc, test_scram_client_rejects_malformed_server_first, 0,
			    (int)ARRAY_SIZE(server_first_cases));
	tcase_add_test(tc, test_scram_client_rejects_bad_server_final);
	tcase_add_test(tc, test_scram_client_refuses_out_of_order_messages);
	suite_add_tcase(s, tc);

	tc = tcase_create("secret");
	tcase_add_loop_test(tc, test_scram_parse_secret_table, 0, (int)ARRAY_SIZE(secret_cases));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(scram_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
