/*
 * ledger.c - the process-wide counts and the pools' shares (see ledger.h).
 */
#include "sluice/ledger.h"

#include <stdlib.h>
#include <string.h>

/* Names a count table keeps at a count of 0 (see ledger_release). */
#define COUNT_KEEP_MAX 1024

void ledger_init(struct ledger *l)
{
	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->mu, NULL);
}

/* A share no pool and no server counts on any more. */
static void share_free(struct pool_share *sh)
{
	param_set_deinit(&sh->welcome);
	buf_out_deinit(&sh->last_error);
	free(sh->key);
	free(sh);
}

static void table_free(struct ledger_count **table)
{
	struct ledger_count *cc, *tmp;
	HASH_ITER(hh, *table, cc, tmp) {
		HASH_DEL(*table, cc);
		free(cc->name);
		free(cc);
	}
}

void ledger_deinit(struct ledger *l)
{
	struct ledger_stmt *st, *st_tmp;
	HASH_ITER(hh, l->stmts, st, st_tmp) {
		HASH_DEL(l->stmts, st);
		free(st);
	}
	table_free(&l->db_servers);
	table_free(&l->user_servers);
	table_free(&l->db_clients);
	table_free(&l->user_clients);
	table_free(&l->db_shares);
	struct pool_share *sh, *tmp;
	HASH_ITER(hh, l->shares, sh, tmp) {
		HASH_DEL(l->shares, sh);
		share_free(sh);
	}
	pthread_mutex_destroy(&l->mu);
}

void ledger_lock(struct ledger *l)
{
	pthread_mutex_lock(&l->mu);
}

void ledger_unlock(struct ledger *l)
{
	pthread_mutex_unlock(&l->mu);
}

uint64_t ledger_stmt_acquire(struct ledger *l, const uint8_t *text, uint32_t len)
{
	pthread_mutex_lock(&l->mu);
	struct ledger_stmt *st;
	HASH_FIND(hh, l->stmts, text, len, st);
	if (!st) {
		st = xmalloc(sizeof(*st) + len);
		st->id = ++l->next_stmt_id;
		st->refs = 0;
		st->len = len;
		memcpy(st->text, text, len);
		HASH_ADD(hh, l->stmts, text, len, st);
	}
	st->refs++;
	uint64_t id = st->id;
	pthread_mutex_unlock(&l->mu);
	return id;
}

void ledger_stmt_release(struct ledger *l, const uint8_t *text, uint32_t len)
{
	pthread_mutex_lock(&l->mu);
	struct ledger_stmt *st;
	HASH_FIND(hh, l->stmts, text, len, st);
	if (st && --st->refs == 0) {
		HASH_DEL(l->stmts, st);
		free(st);
	}
	pthread_mutex_unlock(&l->mu);
}

uint64_t ledger_next_id(struct ledger *l)
{
	return __atomic_add_fetch(&l->next_conn_id, 1, __ATOMIC_RELAXED);
}

void ledger_raise_ids(struct ledger *l, uint64_t floor)
{
	uint64_t cur = __atomic_load_n(&l->next_conn_id, __ATOMIC_RELAXED);
	while (cur < floor && !__atomic_compare_exchange_n(&l->next_conn_id, &cur, floor, false,
							   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

uint64_t ledger_last_id(struct ledger *l)
{
	return __atomic_load_n(&l->next_conn_id, __ATOMIC_RELAXED);
}

/* With the lock held. */
static struct ledger_count *find(struct ledger_count **table, const char *name, bool create)
{
	struct ledger_count *cc;
	HASH_FIND_STR(*table, name, cc);
	if (!cc && create) {
		cc = xcalloc(1, sizeof(*cc));
		cc->name = xstrdup(name);
		HASH_ADD_KEYPTR(hh, *table, cc->name, strlen(cc->name), cc);
	}
	return cc;
}

/*
 * With the lock held: one fewer. An entry may stay at 0: a name that comes
 * and goes with each connection would otherwise cost a malloc, a strdup
 * and two frees per login. Not beyond COUNT_KEEP_MAX entries, since with a
 * "*" database any name a client sends is counted.
 */
static void drop(struct ledger_count **table, struct ledger_count *cc)
{
	if (--cc->n == 0 && HASH_COUNT(*table) > COUNT_KEEP_MAX) {
		HASH_DEL(*table, cc);
		free(cc->name);
		free(cc);
	}
}

/* With the lock held: sh is out of the table; its database counts one share fewer. */
static void forget_share(struct ledger *l, struct pool_share *sh)
{
	struct ledger_count *d = find(&l->db_shares, sh->key, false);
	if (d && d->n > 0)
		drop(&l->db_shares, d);
	share_free(sh);
}

int ledger_count_of(struct ledger *l, struct ledger_count **table, const char *name)
{
	pthread_mutex_lock(&l->mu);
	struct ledger_count *cc = find(table, name, false);
	int n = cc ? cc->n : 0;
	pthread_mutex_unlock(&l->mu);
	return n;
}

struct ledger_count *ledger_acquire(struct ledger *l, struct ledger_count **table, const char *name,
				    int *n)
{
	pthread_mutex_lock(&l->mu);
	struct ledger_count *cc = find(table, name, true);
	*n = ++cc->n;
	pthread_mutex_unlock(&l->mu);
	return cc;
}

void ledger_release(struct ledger *l, struct ledger_count **table, struct ledger_count *cc)
{
	pthread_mutex_lock(&l->mu);
	drop(table, cc);
	pthread_mutex_unlock(&l->mu);
}

void ledger_each(struct ledger *l, struct ledger_count **table,
		 void (*fn)(void *arg, const char *name, int n), void *arg)
{
	pthread_mutex_lock(&l->mu);
	for (struct ledger_count *cc = *table; cc; cc = cc->hh.next)
		if (cc->n > 0)
			fn(arg, cc->name, cc->n);
	pthread_mutex_unlock(&l->mu);
}

struct pool_share *ledger_share_get(struct ledger *l, const char *db, const char *user,
				    bool *first_of_db)
{
	size_t dl = strlen(db), ul = strlen(user);
	char *key = xmalloc(dl + ul + 2);
	memcpy(key, db, dl + 1);
	memcpy(key + dl + 1, user, ul + 1);
	size_t key_len = dl + ul + 1;
	pthread_mutex_lock(&l->mu);
	struct pool_share *sh;
	HASH_FIND(hh, l->shares, key, key_len, sh);
	*first_of_db = false;
	if (sh) {
		free(key);
	} else {
		*first_of_db = ++find(&l->db_shares, db, true)->n == 1;
		sh = xcalloc(1, sizeof(*sh));
		sh->key = key;
		sh->key_len = key_len;
		param_set_init(&sh->welcome);
		buf_out_init(&sh->last_error);
		sh->last_login_ok = true;
		HASH_ADD_KEYPTR(hh, l->shares, sh->key, sh->key_len, sh);
	}
	sh->refs++;
	pthread_mutex_unlock(&l->mu);
	return sh;
}

void ledger_share_put(struct ledger *l, struct pool_share *sh)
{
	pthread_mutex_lock(&l->mu);
	/* Servers still counted (closing elsewhere) keep it: their removal needs it. */
	if (--sh->refs == 0 && sh->servers == 0) {
		HASH_DEL(l->shares, sh);
		forget_share(l, sh);
	}
	pthread_mutex_unlock(&l->mu);
}

void ledger_each_share(struct ledger *l, void (*fn)(void *arg, const struct pool_share *sh),
		       void *arg)
{
	pthread_mutex_lock(&l->mu);
	for (struct pool_share *sh = l->shares; sh; sh = sh->hh.next)
		fn(arg, sh);
	pthread_mutex_unlock(&l->mu);
}

bool ledger_server_add(struct ledger *l, struct pool_share *sh, const char *db, const char *user,
		       const struct ledger_server_limits *lim)
{
	/*
	 * A full pool says no without the lock or the two look-ups by name: a
	 * pool with waiters asks at every kick. Read a moment early, the count
	 * only answers as the lock taken a moment earlier would have.
	 */
	if (lim->pool > 0 && ledger_share_servers(sh) >= lim->pool)
		return false;
	pthread_mutex_lock(&l->mu);
	struct ledger_count *d = find(&l->db_servers, db, true);
	struct ledger_count *u = find(&l->user_servers, user, true);
	bool ok = (lim->pool <= 0 || sh->servers < lim->pool) && (lim->db <= 0 || d->n < lim->db) &&
		  (lim->user <= 0 || u->n < lim->user);
	if (ok) {
		__atomic_store_n(&sh->servers, sh->servers + 1, __ATOMIC_RELAXED);
		d->n++;
		u->n++;
	}
	pthread_mutex_unlock(&l->mu);
	return ok;
}

void ledger_server_remove(struct ledger *l, struct pool_share *sh, const char *db, const char *user)
{
	pthread_mutex_lock(&l->mu);
	struct ledger_count *d = find(&l->db_servers, db, false);
	struct ledger_count *u = find(&l->user_servers, user, false);
	if (d && d->n > 0)
		drop(&l->db_servers, d);
	if (u && u->n > 0)
		drop(&l->user_servers, u);
	__atomic_store_n(&sh->servers, sh->servers - 1, __ATOMIC_RELAXED);
	bool gone = sh->servers == 0 && sh->refs == 0;
	if (gone) {
		HASH_DEL(l->shares, sh);
		forget_share(l, sh);
	}
	pthread_mutex_unlock(&l->mu);
}

bool ledger_share_welcome(struct ledger *l, struct pool_share *sh, struct param_set *out)
{
	pthread_mutex_lock(&l->mu);
	bool have = sh->have_welcome;
	if (have)
		param_set_copy(out, &sh->welcome);
	pthread_mutex_unlock(&l->mu);
	return have;
}

void ledger_share_learn_welcome(struct ledger *l, struct pool_share *sh,
				const struct param_set *params)
{
	pthread_mutex_lock(&l->mu);
	if (!sh->have_welcome) {
		param_set_copy(&sh->welcome, params);
		sh->have_welcome = true;
	}
	pthread_mutex_unlock(&l->mu);
}
