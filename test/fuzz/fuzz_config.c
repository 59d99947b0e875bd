/*
 * fuzz_config.c - fuzz target for the configuration parser (config.c): the
 * input is a sluice.ini's text, read with config_load_text, which runs the
 * file reader, inih and every value parser on a memory stream and opens
 * no file (%include is refused there).
 *
 * A text that fails must say where, as a string: "fuzz.ini:<line>: why"
 * with a line of the text, or "fuzz.ini: why" for what validation finds.
 * A text that loads gives a snapshot whose databases have hosts and ports
 * in range, and which config_copy copies exactly (every setting rendered
 * the same, every entry the same), config_keep_restart_settings accepts,
 * and config_ref/config_unref free without a leak.
 *
 * config.c reads SLUICE_* environment variables after the file, so the
 * target removes every one of them at its first call: the input alone
 * decides. Warnings (keys sluice does not implement) are logged; the
 * target raises the log level to errors so that the run stays quiet.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/config.h"
#include "sluice/log.h"

extern char **environ;

/* inih reads lines of up to 1 MB; a few KB cover every construct. */
#define FUZZ_MAX_INPUT (64u * 1024u)
#define NAME "fuzz.ini"

static bool ready;

static void setup(void)
{
	/* Unsetting changes environ: start over after each removal. */
	for (bool again = true; again;) {
		again = false;
		for (char **e = environ; *e; e++) {
			if (strncmp(*e, "SLUICE_", 7) == 0) {
				char name[256];
				size_t n = strcspn(*e, "=");
				FUZZ_CHECK(n < sizeof(name));
				memcpy(name, *e, n);
				name[n] = '\0';
				FUZZ_CHECK(unsetenv(name) == 0);
				again = true;
				break;
			}
		}
	}
	log_level_current = LOG_LEVEL_ERROR;
	ready = true;
}

static bool same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_database(const struct config_database *db)
{
	FUZZ_CHECK(db->name && db->name[0] != '\0');
	FUZZ_CHECK(db->n_hosts >= 1 && db->hosts != NULL);
	for (int i = 0; i < db->n_hosts; i++)
		FUZZ_CHECK(db->hosts[i].port >= 1 && db->hosts[i].port <= 65535);
	FUZZ_CHECK(db->port == db->hosts[0].port);
}

static void same_database(const struct config_database *a, const struct config_database *b)
{
	FUZZ_CHECK(a != b && same_str(a->name, b->name) && same_str(a->host, b->host));
	FUZZ_CHECK(a->port == b->port && a->n_hosts == b->n_hosts);
	for (int i = 0; i < a->n_hosts; i++)
		FUZZ_CHECK(same_str(a->hosts[i].host, b->hosts[i].host) &&
			   a->hosts[i].port == b->hosts[i].port);
	FUZZ_CHECK(same_str(a->dbname, b->dbname) && same_str(a->user, b->user) &&
		   same_str(a->password, b->password));
	FUZZ_CHECK(same_str(a->connect_query, b->connect_query) &&
		   same_str(a->application_name, b->application_name));
	FUZZ_CHECK(same_str(a->auth_user, b->auth_user) && same_str(a->auth_query, b->auth_query) &&
		   same_str(a->auth_dbname, b->auth_dbname));
	FUZZ_CHECK(a->pool_size == b->pool_size && a->pool_mode == b->pool_mode &&
		   a->max_db_connections == b->max_db_connections && a->line == b->line);
}

static void check_copy(const struct config *cfg, const struct config *copy)
{
	char va[1024], vb[1024];
	for (size_t i = 0; i < config_setting_count(); i++) {
		config_setting_value(cfg, i, va, sizeof(va));
		config_setting_value(copy, i, vb, sizeof(vb));
		FUZZ_CHECK(memchr(va, '\0', sizeof(va)) != NULL && strcmp(va, vb) == 0);
	}
	FUZZ_CHECK(same_str(cfg->path, copy->path) && strcmp(cfg->path, NAME) == 0);
	FUZZ_CHECK(HASH_COUNT(cfg->databases) == HASH_COUNT(copy->databases));
	for (const struct config_database *d = cfg->databases; d; d = d->hh.next) {
		check_database(d);
		const struct config_database *c = config_find_database(copy, d->name);
		FUZZ_CHECK(c != NULL);
		same_database(d, c);
	}
	FUZZ_CHECK(!cfg->fallback == !copy->fallback);
	if (cfg->fallback) {
		check_database(cfg->fallback);
		same_database(cfg->fallback, copy->fallback);
	}
	FUZZ_CHECK(HASH_COUNT(cfg->users) == HASH_COUNT(copy->users));
	for (const struct config_user *u = cfg->users; u; u = u->hh.next) {
		const struct config_user *c = config_find_user(copy, u->name);
		FUZZ_CHECK(c && c != u && c->pool_mode == u->pool_mode &&
			   c->pool_size == u->pool_size && c->query_timeout == u->query_timeout);
	}
	FUZZ_CHECK(HASH_COUNT(cfg->peers) == HASH_COUNT(copy->peers));
	for (const struct config_peer *p = cfg->peers; p; p = p->hh.next) {
		FUZZ_CHECK(p->peer_id >= 1 && p->peer_id <= 65535 && p->host && p->host[0]);
		const struct config_peer *c = config_find_peer(copy, p->peer_id);
		FUZZ_CHECK(c && c != p && same_str(c->host, p->host) && c->port == p->port);
	}
}

static int count_lines(const uint8_t *text, size_t len)
{
	int n = 1;
	for (size_t i = 0; i + 1 < len; i++)
		n += text[i] == '\n';
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready)
		setup();
	if (size > FUZZ_MAX_INPUT)
		size = FUZZ_MAX_INPUT;
	char *text = malloc(size ? size : 1);
	FUZZ_CHECK(text != NULL);
	memcpy(text, data, size);
	struct config_error err;
	memset(&err, 0xAA, sizeof(err));
	struct config *cfg = config_load_text(text, size, NAME, &err);
	if (!cfg) {
		/* Where, then why: "fuzz.ini:<line>: why" or "fuzz.ini: why". */
		FUZZ_CHECK(memchr(err.text, '\0', sizeof(err.text)) != NULL);
		FUZZ_CHECK(strncmp(err.text, NAME ":", strlen(NAME ":")) == 0);
		const char *p = err.text + strlen(NAME ":");
		if (*p != ' ') {
			char *end = NULL;
			long line = strtol(p, &end, 10);
			FUZZ_CHECK(end != p && *end == ':');
			FUZZ_CHECK(line >= 1 && line <= count_lines(data, size));
			p = end + 1;
		}
		FUZZ_CHECK(p[0] == ' ' && p[1] != '\0');
		free(text);
		return 0;
	}
	struct config *copy = config_copy(cfg);
	check_copy(cfg, copy);
	config_keep_restart_settings(copy, cfg);
	check_copy(cfg, copy);
	struct config *again = config_ref(cfg);
	FUZZ_CHECK(again == cfg);
	config_unref(again);
	config_unref(copy);
	config_unref(cfg);
	free(text);
	return 0;
}
