/*
 * check_session_diff.c - a differential, randomized test of session
 * settings in transaction pooling: a SET made by one client is part of its
 * session, applied to whichever server it gets next and never seen by
 * another client, with PostgreSQL's own rules (a SET rolled back with its
 * transaction or savepoint, SET LOCAL ending with its transaction,
 * set_config(..., true) likewise, RESET and RESET ALL, DISCARD ALL, SET
 * ROLE), and so are its SQL-level prepared statements (PREPARE, EXECUTE,
 * DEALLOCATE, pg_prepared_statements).
 *
 * A seeded generator writes a script for three clients: blocks, each of one
 * client, either one statement in autocommit or a transaction (BEGIN, a few
 * statements, maybe a savepoint rolled back to, COMMIT or ROLLBACK). The
 * statements SET, RESET and show settings PostgreSQL reports
 * (application_name, DateStyle) and settings it does not (statement_timeout,
 * work_mem, search_path, extra_float_digits, default_transaction_read_only,
 * a custom "myapp.tenant"), the role, and values whose text the settings
 * change (a float, a date). Every statement runs on the client's own direct
 * session and on its connection through sluice, whose one or two servers the
 * three clients share; the answers (status, SQLSTATE, command tag, row
 * values, transaction status) must be equal, statement by statement. Some
 * statements go by the extended protocol (PQexecParams), as drivers send them.
 *
 * Error texts are not compared. Each client first sets myapp.tenant: a
 * session that never did has no such setting (SHOW fails), but a server
 * keeps a custom setting's placeholder once any client made it, so that one
 * difference is PostgreSQL's, not sluice's.
 *
 * SESSION_DIFF_SEED=<n> runs only that seed; SESSION_DIFF_VERBOSE=1 prints
 * every statement.
 */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CLIENTS 3
#define N_SEEDS 200
#define N_BLOCKS 30

static int pick(uint64_t *rng, int n)
{
	return harness_rng_below(rng, n);
}

/* A setting and values for it: as SET writes them, and as set_config takes them. */
struct setting {
	const char *name;
	const char *set_form[4];
	const char *text_form[4];
	int n;
};

static const struct setting settings[] = {
	{ "statement_timeout", { "0", "'7s'", "'1min'", "2500" }, { "0", "7s", "1min", "2500" }, 4 },
	{ "work_mem", { "'4MB'", "'8MB'", "'64kB'" }, { "4MB", "8MB", "64kB" }, 3 },
	{ "search_path",
		{ "public", "pg_catalog, public", "\"$user\", public", "''" },
		{ "public", "pg_catalog, public", "\"$user\", public", "" }, 4 },
	{ "extra_float_digits", { "0", "1", "-3" }, { "0", "1", "-3" }, 3 },
	{ "default_transaction_read_only", { "on", "off" }, { "on", "off" }, 2 },
	{ "myapp.tenant", { "'a'", "'b b'", "''" }, { "a", "b b", "" }, 3 },
	/* Reported by PostgreSQL (ParameterStatus): sluice's older path, mixed in. */
	{ "DateStyle", { "'ISO, DMY'", "'SQL, MDY'", "'Postgres'" },
		{ "ISO, DMY", "SQL, MDY", "Postgres" }, 3 },
	{ "application_name", { "'app1'", "'app two'" }, { "app1", "app two" }, 2 },
};
#define N_SETTINGS ((int)(sizeof(settings) / sizeof(settings[0])))

/* One statement; extended: sent with PQexecParams (a single statement only). */
struct step {
	int client;
	char sql[256];
	bool extended;
};

struct script {
	struct step *steps;
	int n, cap;
};

static struct step *add(struct script *s, int client, bool extended, const char *fmt, ...)
	PRINTF_LIKE(4, 5);

static struct step *add(struct script *s, int client, bool extended, const char *fmt, ...)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 64;
		s->steps = realloc(s->steps, (size_t)s->cap * sizeof(*s->steps));
	}
	struct step *st = &s->steps[s->n++];
	st->client = client;
	st->extended = extended;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->sql, sizeof(st->sql), fmt, ap);
	va_end(ap);
	return st;
}

/* One statement that sets, resets or shows something, in sql (256 bytes); false: not single. */
static bool gen_statement(uint64_t *rng, char *sql, bool in_txn)
{
	const struct setting *g = &settings[pick(rng, N_SETTINGS)];
	int v = pick(rng, g->n);
	switch (pick(rng, 19)) {
	case 0:
	case 1:
	case 2:
		snprintf(sql, 256, "SET %s = %s", g->name, g->set_form[v]);
		return true;
	case 3:
		snprintf(sql, 256, "SET SESSION %s TO %s", g->name, g->set_form[v]);
		return true;
	case 4:
		snprintf(sql, 256, "SET LOCAL %s = %s", g->name, g->set_form[v]);
		return true;
	case 5:
		snprintf(sql, 256, "RESET %s", g->name);
		return true;
	case 6:
	case 7:
	case 8:
		snprintf(sql, 256, "SHOW %s", g->name);
		return true;
	case 9:
		snprintf(sql, 256, "SELECT pg_catalog.set_config('%s', '%s', %s)", g->name,
			 g->text_form[v], pick(rng, 3) == 0 ? "true" : "false");
		return true;
	case 10: {
		static const char *const roles[] = { "SET ROLE sess_r1", "SET ROLE sess_r2",
						     "RESET ROLE", "SET ROLE NONE" };
		snprintf(sql, 256, "%s", roles[pick(rng, 4)]);
		return true;
	}
	case 11:
		snprintf(sql, 256, "SELECT current_user, 0.1::float8, DATE '2024-03-05', "
				   "pg_catalog.current_setting('search_path')");
		return true;
	case 12:
		snprintf(sql, 256, "SET %s = %s; SHOW %s", g->name, g->set_form[v],
			 settings[pick(rng, N_SETTINGS)].name);
		return false;
	case 13:
		/* Fails inside a transaction block (DISCARD ALL cannot run there), as it should. */
		snprintf(sql, 256, "%s", pick(rng, 2) ? "RESET ALL" : "DISCARD ALL");
		return true;
	case 14:
		snprintf(sql, 256, "%s", in_txn ? "SELECT 1/0" : "SHOW transaction_read_only");
		return true;
	case 16: {
		/* SQL-level prepared statements: made again on whatever server the client gets. */
		static const char *const prepares[] = {
			"PREPARE p1 AS SELECT pg_catalog.current_setting('work_mem')",
			"PREPARE p2 (int) AS SELECT $1 + 1",
			"PREPARE \"P 3\" AS SELECT 3",
		};
		snprintf(sql, 256, "%s", prepares[pick(rng, 3)]);
		return true;
	}
	case 17: {
		static const char *const executes[] = { "EXECUTE p1", "EXECUTE p2(41)",
							"EXECUTE \"P 3\"",
							"SELECT name FROM pg_prepared_statements "
							"WHERE from_sql ORDER BY name" };
		snprintf(sql, 256, "%s", executes[pick(rng, 4)]);
		return true;
	}
	case 18: {
		static const char *const deallocates[] = { "DEALLOCATE p1", "DEALLOCATE p2",
							   "DEALLOCATE ALL" };
		snprintf(sql, 256, "%s", deallocates[pick(rng, 3)]);
		return true;
	}
	default:
		snprintf(sql, 256, "SELECT pg_catalog.current_setting('%s')", g->name);
		return true;
	}
}

static void gen_script(uint64_t seed, struct script *s)
{
	uint64_t rng = seed;
	memset(s, 0, sizeof(*s));
	for (int c = 0; c < N_CLIENTS; c++)
		add(s, c, false, "SET myapp.tenant = 'c%d'", c);
	char sql[256];
	for (int b = 0; b < N_BLOCKS; b++) {
		int c = pick(&rng, N_CLIENTS);
		if (pick(&rng, 3) != 0) {
			bool single = gen_statement(&rng, sql, false);
			add(s, c, single && pick(&rng, 4) == 0, "%s", sql);
			continue;
		}
		add(s, c, false, "BEGIN");
		int n = 1 + pick(&rng, 4);
		bool savepoint = pick(&rng, 3) == 0;
		for (int i = 0; i < n; i++) {
			if (savepoint && i == n / 2)
				add(s, c, false, "SAVEPOINT sp");
			bool single = gen_statement(&rng, sql, true);
			add(s, c, single && pick(&rng, 4) == 0, "%s", sql);
		}
		if (savepoint && pick(&rng, 2))
			add(s, c, false, "ROLLBACK TO SAVEPOINT sp");
		add(s, c, false, "%s", pick(&rng, 2) ? "COMMIT" : "ROLLBACK");
	}
}

/* The answer to one statement as a token: status, SQLSTATE or tag and rows, then the transaction status. */
static char *answer(PGconn *conn, const struct step *st)
{
	PGresult *res = st->extended ? PQexecParams(conn, st->sql, 0, NULL, NULL, NULL, NULL, 0)
				     : PQexec(conn, st->sql);
	char buf[1024];
	size_t off = 0;
	switch (PQresultStatus(res)) {
	case PGRES_COMMAND_OK:
		off += (size_t)snprintf(buf, sizeof(buf), "ok %s", PQcmdStatus(res));
		break;
	case PGRES_TUPLES_OK:
		off += (size_t)snprintf(buf, sizeof(buf), "rows");
		for (int r = 0; r < PQntuples(res); r++)
			for (int f = 0; f < PQnfields(res) && off < sizeof(buf) - 64; f++)
				off += (size_t)snprintf(buf + off, sizeof(buf) - off, " [%s]",
							PQgetisnull(res, r, f) ? "NULL"
									       : PQgetvalue(res, r, f));
		break;
	default: {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		off += (size_t)snprintf(buf, sizeof(buf), "error %s", state ? state : "?");
		break;
	}
	}
	PQclear(res);
	snprintf(buf + off, sizeof(buf) - off, " | %c",
		 "IATEU"[MIN((int)PQtransactionStatus(conn), 4)]);
	return xstrdup(buf);
}

/* Runs one seed's script both ways; NULL when every answer agrees, else what differed. */
static char *diff_seed(const struct harness_sluice *sl, uint64_t seed, bool verbose)
{
	struct script s;
	gen_script(seed, &s);
	PGconn *direct[N_CLIENTS], *pooled[N_CLIENTS];
	for (int c = 0; c < N_CLIENTS; c++) {
		direct[c] = harness_connect(NULL, "dbname=app user=trustuser");
		pooled[c] = harness_connect(sl, "dbname=app user=trustuser");
	}
	char *bad = NULL;
	for (int i = 0; i < s.n && !bad; i++) {
		const struct step *st = &s.steps[i];
		char *want = answer(direct[st->client], st);
		char *got = answer(pooled[st->client], st);
		if (verbose)
			fprintf(stderr, "seed %llu step %d client %d%s: %s -> %s\n",
				(unsigned long long)seed, i, st->client, st->extended ? " (ext)" : "",
				st->sql, want);
		if (strcmp(want, got) != 0) {
			size_t cap = 64 * 1024, off = 0;
			bad = xmalloc(cap);
			off += (size_t)snprintf(bad, cap,
						"seed %llu, step %d, client %d%s: %s\n"
						"  direct: %s\n  sluice: %s\nthe script up to there:\n",
						(unsigned long long)seed, i, st->client,
						st->extended ? " (extended)" : "", st->sql, want, got);
			for (int j = 0; j <= i && off < cap - 300; j++)
				off += (size_t)snprintf(bad + off, cap - off, "  %d: client %d: %s\n", j,
							s.steps[j].client, s.steps[j].sql);
		}
		free(want);
		free(got);
	}
	for (int c = 0; c < N_CLIENTS; c++) {
		PQfinish(direct[c]);
		PQfinish(pooled[c]);
	}
	free(s.steps);
	return bad;
}

static void run_seeds(int pool_size)
{
	free(harness_pg_exec("DO $$ BEGIN "
			     "IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sess_r1') THEN "
			     "CREATE ROLE sess_r1; CREATE ROLE sess_r2; "
			     "GRANT sess_r1, sess_r2 TO trustuser; END IF; END $$"));
	char dbs[128];
	snprintf(dbs, sizeof(dbs), "app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=%d\n",
		 pool_size);
	struct harness_sluice *sl = harness_sluice_start(
		"auth_type = trust\npool_mode = transaction\nquery_wait_timeout = 10\n", dbs,
		"\"trustuser\" \"trustuserpw\"\n");
	const char *only = getenv("SESSION_DIFF_SEED");
	bool verbose = getenv("SESSION_DIFF_VERBOSE") != NULL;
	uint64_t first = only ? strtoull(only, NULL, 10) : (uint64_t)pool_size * 1000;
	uint64_t n = only ? 1 : N_SEEDS / 2;
	for (uint64_t seed = first; seed < first + n; seed++) {
		char *bad = diff_seed(sl, seed, verbose);
		if (bad) {
			char *log = harness_sluice_log(sl);
			size_t len = strlen(log);
			fprintf(stderr, "%s\nsluice's log ends with:\n%s\n", bad,
				len > 4000 ? log + len - 4000 : log);
			free(log);
			ck_abort_msg("answers differ from a direct session: %s", bad);
		}
	}
	/* Nothing was refused or closed on the way: every server ended clean. */
	ck_assert_int_eq(harness_sluice_log_count(sl, "session settings probe failed"), 0);
	ck_assert_int_eq(harness_sluice_stop(sl), 0);
	harness_sluice_free(sl);
}

START_TEST(test_settings_follow_each_client_on_one_server)
{
	run_seeds(1);
}
END_TEST

START_TEST(test_settings_follow_each_client_across_two_servers)
{
	run_seeds(2);
}
END_TEST

/* Two clients through a pool of one server, as user (a superuser for SET SESSION AUTHORIZATION). */
static struct harness_sluice *start_one_server(void)
{
	return harness_sluice_start("auth_type = trust\npool_mode = transaction\n",
				    "app = host=@PGHOST@ port=@PGPORT@ dbname=app pool_size=1\n",
				    "\"trustuser\" \"\"\n\"" HARNESS_SUPERUSER "\" \"\"\n");
}

/*
 * A RESET of a parameter the client gave when it connected goes back to
 * that value, as on PostgreSQL, though the server's own reset value is its
 * login's; and the client is told so (ParameterStatus), also when another
 * client used the server in between.
 */
START_TEST(test_reset_goes_back_to_the_clients_startup_value)
{
	struct harness_sluice *sl = start_one_server();
	PGconn *a = harness_connect(sl, "dbname=app user=trustuser options='-c DateStyle=SQL,DMY'");
	PGconn *b = harness_connect(sl, "dbname=app user=trustuser");
	harness_expect_answer(a, "SHOW DateStyle", "SQL, DMY");
	harness_command_ok(a, "SET DateStyle TO ISO", "SET");
	harness_expect_answer(a, "SHOW DateStyle", "ISO, DMY");
	harness_expect_answer(b, "SHOW DateStyle", "ISO, MDY");
	harness_command_ok(a, "RESET DateStyle", "RESET");
	harness_expect_answer(a, "SHOW DateStyle", "SQL, DMY");
	ck_assert_str_eq(PQparameterStatus(a, "DateStyle"), "SQL, DMY");
	harness_expect_answer(b, "SHOW DateStyle", "ISO, MDY");
	harness_command_ok(a, "SET DateStyle TO Postgres", "SET");
	harness_command_ok(a, "RESET ALL", "RESET");
	harness_expect_answer(b, "SELECT 1", "1");
	harness_expect_answer(a, "SHOW DateStyle", "SQL, DMY");
	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(sl), 0);
	harness_sluice_free(sl);
}
END_TEST

/* SET SESSION AUTHORIZATION is the client's, on every server it gets, and no one else's. */
START_TEST(test_session_authorization_follows_its_client_only)
{
	struct harness_sluice *sl = start_one_server();
	PGconn *a = harness_connect(sl, "dbname=app user=" HARNESS_SUPERUSER);
	PGconn *b = harness_connect(sl, "dbname=app user=" HARNESS_SUPERUSER);
	harness_command_ok(a, "SET SESSION AUTHORIZATION trustuser", "SET");
	harness_command_ok(a, "SET ROLE NONE", "SET");
	for (int i = 0; i < 3; i++) {
		harness_expect_answer(b, "SELECT session_user", HARNESS_SUPERUSER);
		harness_expect_answer(a, "SELECT session_user", "trustuser");
	}
	harness_command_ok(a, "RESET SESSION AUTHORIZATION", "RESET");
	harness_expect_answer(b, "SELECT session_user", HARNESS_SUPERUSER);
	harness_expect_answer(a, "SELECT session_user", HARNESS_SUPERUSER);
	PQfinish(a);
	PQfinish(b);
	ck_assert_int_eq(harness_sluice_stop(sl), 0);
	harness_sluice_free(sl);
}
END_TEST

/* The generator draws every kind of statement, both protocols and both ends of a transaction. */
START_TEST(test_generator_covers_every_kind_of_statement)
{
	static const char *const needles[] = { "SET LOCAL", "SET SESSION", "RESET ALL", "DISCARD",
					       "set_config", "SET ROLE", "RESET ROLE", "SAVEPOINT",
					       "ROLLBACK TO", "COMMIT", "ROLLBACK", "SHOW",
					       "; SHOW", "1/0", "PREPARE", "EXECUTE", "DEALLOCATE",
					       "pg_prepared_statements" };
	bool seen[sizeof(needles) / sizeof(needles[0])] = { 0 };
	int extended = 0;
	for (uint64_t seed = 1000; seed < 1000 + N_SEEDS / 2; seed++) {
		struct script s;
		gen_script(seed, &s);
		for (int i = 0; i < s.n; i++) {
			extended += s.steps[i].extended;
			for (size_t k = 0; k < sizeof(needles) / sizeof(needles[0]); k++)
				seen[k] |= strstr(s.steps[i].sql, needles[k]) != NULL;
		}
		free(s.steps);
	}
	for (size_t k = 0; k < sizeof(needles) / sizeof(needles[0]); k++)
		ck_assert_msg(seen[k], "no script has %s", needles[k]);
	ck_assert_int_gt(extended, 100);
}
END_TEST

static Suite *session_diff_suite(void)
{
	Suite *s = suite_create("session_diff");
	TCase *tc = harness_tcase("settings");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_generator_covers_every_kind_of_statement);
	tcase_add_test(tc, test_settings_follow_each_client_on_one_server);
	tcase_add_test(tc, test_settings_follow_each_client_across_two_servers);
	tcase_add_test(tc, test_reset_goes_back_to_the_clients_startup_value);
	tcase_add_test(tc, test_session_authorization_follows_its_client_only);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return harness_run_suite(session_diff_suite());
}
