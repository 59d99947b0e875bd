/*
 * param.c - session parameter sets (see param.h).
 */
#include "sluice/param.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uthash.h>

#include "sluice/buf.h"
#include "sluice/config.h"

/*
 * The interned keys: one entry per case-folded name, never freed. Only
 * param_set_put and look-ups by name take the lock; the hot comparisons use
 * the pointers stored in the items.
 */
struct key_entry {
	UT_hash_handle hh;
	char folded[];
};

static struct key_entry *keys;
static unsigned nkeys;
static pthread_mutex_t keys_lock = PTHREAD_MUTEX_INITIALIZER;

/* GUC names are identifiers (NAMEDATALEN 64); anything longer is not interned. */
#define KEY_LEN_MAX 255

/* Folds name into out (KEY_LEN_MAX + 1 bytes). false: too long. */
static bool fold(const char *name, char *out, size_t *len)
{
	size_t n = strlen(name);
	if (n > KEY_LEN_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)name[i]);
	out[n] = '\0';
	*len = n;
	return true;
}

/*
 * Keys this thread found lately, by their first letter: a login interns the
 * same few names as the one before it, and the table's way (fold, lock,
 * hash) costs several times a comparison. Keys are never freed, so a
 * remembered one stays valid; a miss only takes the table's way.
 */
static _Thread_local const char *recent_keys[32];

static const char **recent_slot(const char *name)
{
	return &recent_keys[tolower((unsigned char)name[0]) & 31];
}

/* The key of name if it was interned already (insert: intern it now), or NULL. */
static const char *key_of(const char *name, bool insert)
{
	/* The key is name folded: equal ignoring case means it is name's. */
	const char **slot = recent_slot(name);
	if (*slot && strcasecmp(*slot, name) == 0)
		return *slot;
	char folded[KEY_LEN_MAX + 1];
	size_t len;
	if (!fold(name, folded, &len))
		return NULL;
	pthread_mutex_lock(&keys_lock);
	struct key_entry *e;
	HASH_FIND(hh, keys, folded, len, e);
	if (!e && insert && nkeys < PARAM_KEYS_MAX) {
		e = xmalloc(sizeof(*e) + len + 1);
		memcpy(e->folded, folded, len + 1);
		HASH_ADD(hh, keys, folded[0], len, e);
		nkeys++;
	}
	pthread_mutex_unlock(&keys_lock);
	if (!e)
		return NULL;
	*slot = e->folded;
	return e->folded;
}

const char *param_key(const char *name)
{
	return key_of(name, true);
}

void param_set_deinit(struct param_set *ps)
{
	for (int i = 0; i < ps->n; i++)
		free(ps->items[i].name); /* and the value with it (item_strings) */
	free(ps->items);
	param_set_init(ps);
}

/* The item named name (whose key is key), or NULL. */
static struct param *find(const struct param_set *ps, const char *key, const char *name)
{
	for (int i = 0; i < ps->n; i++) {
		struct param *it = &ps->items[i];
		if (key ? it->key == key : !it->key && strcasecmp(it->name, name) == 0)
			return it;
	}
	return NULL;
}

/*
 * Gives it copies of name and value in one allocation ("name\0value\0"),
 * owned through it->name: a login's parameters cost one malloc each, not two.
 */
static void item_strings(struct param *it, const char *name, const char *value)
{
	size_t n = strlen(name) + 1, v = strlen(value) + 1;
	char *block = xmalloc(n + v);
	memcpy(block, name, n);
	memcpy(block + n, value, v);
	it->name = block;
	it->value = block + n;
}

bool param_set_put(struct param_set *ps, const char *name, const char *value)
{
	const char *key = param_key(name);
	struct param *it = find(ps, key, name);
	if (it) {
		if (strcmp(it->value, value) == 0)
			return false;
		char *old = it->name;
		item_strings(it, old, value);
		free(old);
		return true;
	}
	if (ps->n == ps->cap) {
		ps->cap = ps->cap ? ps->cap * 2 : 2;
		ps->items = xrealloc(ps->items, (size_t)ps->cap * sizeof(*ps->items));
	}
	it = &ps->items[ps->n++];
	it->key = key;
	item_strings(it, name, value);
	return true;
}

const char *param_set_get(const struct param_set *ps, const char *name)
{
	/* A name that is not interned is only in items whose key is NULL too. */
	struct param *it = find(ps, key_of(name, false), name);
	return it ? it->value : NULL;
}

bool param_set_remove(struct param_set *ps, const char *name)
{
	struct param *it = find(ps, key_of(name, false), name);
	if (!it)
		return false;
	free(it->name);
	*it = ps->items[--ps->n]; /* order means nothing in a set */
	return true;
}

void param_set_copy(struct param_set *dst, const struct param_set *src)
{
	for (int i = 0; i < src->n; i++)
		param_set_put(dst, src->items[i].name, src->items[i].value);
}

/* ---- profiles ------------------------------------------------------------- */

struct param_profile {
	UT_hash_handle hh;
	uint64_t id;
	unsigned refs;
	size_t len;
	char text[]; /* name\0value\0 per parameter: the identity */
};

/* Appends name\0value\0 to out, with p's key for its name where it has one. */
static void put_pair(struct buf_out *out, const struct param *p, const char *value)
{
	const char *name = p->key ? p->key : p->name;
	buf_out_put(out, name, strlen(name) + 1);
	buf_out_put(out, value, strlen(value) + 1);
}

/* Whether *pos (within end) starts with name\0value\0 as put_pair writes it; moves past it. */
static bool match_pair(const char **pos, const char *end, const struct param *p, const char *value)
{
	const char *name = p->key ? p->key : p->name;
	size_t n = strlen(name) + 1, v = strlen(value) + 1;
	if ((size_t)(end - *pos) < n + v || memcmp(*pos, name, n) != 0 ||
	    memcmp(*pos + n, value, v) != 0)
		return false;
	*pos += n + v;
	return true;
}

/* Whether pr is the profile of own over defaults: its text, without writing it. */
static bool profile_is(const struct param_profile *pr, const struct param_set *own,
		       const struct param_set *defaults)
{
	const char *pos = pr->text, *end = pr->text + pr->len;
	for (int i = 0; i < defaults->n; i++) {
		const struct param *d = &defaults->items[i];
		const char *v = param_set_get_as(own, d);
		if (!match_pair(&pos, end, d, v ? v : d->value))
			return false;
	}
	for (int i = 0; i < own->n; i++)
		if (!param_set_get_as(defaults, &own->items[i]) &&
		    !match_pair(&pos, end, &own->items[i], own->items[i].value))
			return false;
	return pos == end;
}

static void profile_free(struct param_profiles *t, struct param_profile *pr)
{
	HASH_DEL(t->table, pr);
	free(pr);
}

struct param_profile *param_profile_get(struct param_profiles *t, const struct param_set *own,
					const struct param_set *defaults)
{
	/* Most clients of a pool want what the one before wanted: no text, no hash. */
	if (t->last && profile_is(t->last, own, defaults)) {
		t->last->refs++;
		return t->last;
	}
	/*
	 * The defaults' order first, then own's other names in own's order: two
	 * clients that chose the same extra names in another order get two
	 * profiles, which only costs a comparison.
	 */
	struct buf_out text;
	buf_out_init(&text);
	/* Never NULL, even for the empty profile of a server that reports nothing. */
	buf_out_reserve(&text, 256);
	for (int i = 0; i < defaults->n; i++) {
		const struct param *d = &defaults->items[i];
		const char *v = param_set_get_as(own, d);
		put_pair(&text, d, v ? v : d->value);
	}
	for (int i = 0; i < own->n; i++)
		if (!param_set_get_as(defaults, &own->items[i]))
			put_pair(&text, &own->items[i], own->items[i].value);
	struct param_profile *pr;
	HASH_FIND(hh, t->table, text.data, text.len, pr);
	if (!pr) {
		pr = xmalloc(sizeof(*pr) + text.len);
		pr->id = ++t->last_id;
		pr->refs = 0;
		pr->len = text.len;
		memcpy(pr->text, text.data, text.len);
		HASH_ADD(hh, t->table, text[0], pr->len, pr);
	}
	buf_out_deinit(&text);
	pr->refs++;
	struct param_profile *old = t->last;
	t->last = pr;
	if (old && old->refs == 0)
		profile_free(t, old);
	return pr;
}

void param_profile_release(struct param_profiles *t, struct param_profile *pr)
{
	/*
	 * The last profile handed out stays when its clients are gone: with a
	 * connection per transaction, each client would otherwise make it again.
	 */
	if (pr && --pr->refs == 0 && pr != t->last)
		profile_free(t, pr);
}

uint64_t param_profile_id(const struct param_profile *pr)
{
	return pr->id;
}

void param_profiles_deinit(struct param_profiles *t)
{
	struct param_profile *pr, *tmp;
	HASH_ITER(hh, t->table, pr, tmp) {
		HASH_DEL(t->table, pr);
		free(pr);
	}
	param_profiles_init(t);
}

static const char *const fixed[PARAM_FIXED_COUNT] = {
	"client_encoding",  "DateStyle", "TimeZone", "standard_conforming_strings",
	"application_name",
};

int param_fixed_index(const char *name)
{
	for (int i = 0; i < PARAM_FIXED_COUNT; i++)
		if (strcasecmp(fixed[i], name) == 0)
			return i;
	return -1;
}

bool param_is_tracked(const char *name, const char *track_extra_parameters)
{
	/* The first letter first: most names a login brings are not tracked. */
	int first = tolower((unsigned char)name[0]);
	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
		if (tolower((unsigned char)fixed[i][0]) == first && strcasecmp(fixed[i], name) == 0)
			return true;
	return track_extra_parameters && config_list_contains(track_extra_parameters, name);
}
