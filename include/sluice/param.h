/*
 * param.h - a small set of session parameters (name -> value).
 *
 * Clients carry the values they asked for (startup packet, their own SETs);
 * servers carry what PostgreSQL reported in ParameterStatus; a pool keeps the
 * welcome set it shows new clients. Names compare case-insensitively, as
 * PostgreSQL's GUC names do. Sets are tiny (a dozen entries), so a flat
 * array beats a hash.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/common.h"

/*
 * key is the name's interned, case-folded form (param_key): equal names have
 * the same pointer, so the sets that server_link() reconciles on every link
 * compare names with one pointer comparison. NULL only for a name that came
 * after the table of keys was full; such names compare with strcasecmp.
 */
struct param {
	const char *key;
	char *name; /* one allocation, "name\0value\0", freed through name */
	char *value; /* points into name's allocation */
};

struct param_set {
	struct param *items;
	int n;
	int cap;
};

static inline void param_set_init(struct param_set *ps)
{
	ps->items = NULL;
	ps->n = ps->cap = 0;
}
void param_set_deinit(struct param_set *ps);
/* Sets (adds or replaces) name = value; both are copied. true: the set changed. */
bool param_set_put(struct param_set *ps, const char *name, const char *value);
/* The value, or NULL. Borrowed until the next put on that name. */
const char *param_set_get(const struct param_set *ps, const char *name);
/* The value of the parameter named as p is (an item of another set), or NULL. */
static inline const char *param_set_get_as(const struct param_set *ps, const struct param *p)
{
	if (p->key) {
		for (int i = 0; i < ps->n; i++)
			if (ps->items[i].key == p->key)
				return ps->items[i].value;
		return NULL;
	}
	return param_set_get(ps, p->name);
}
/*
 * The interned key of name: the same pointer for every spelling that differs
 * only in case. Thread-safe; keys live as long as the process. NULL when the
 * name is too long or PARAM_KEYS_MAX names were interned already (a server
 * could report any number of names).
 */
const char *param_key(const char *name);
#define PARAM_KEYS_MAX 1024
void param_set_copy(struct param_set *dst, const struct param_set *src);
/* Removes name; true if it was there. */
bool param_set_remove(struct param_set *ps, const char *name);

/*
 * The parameters sluice keeps per client and re-applies to whatever server
 * the client is linked to: the fixed PgBouncer set plus track_extra_parameters.
 */
bool param_is_tracked(const char *name, const char *track_extra_parameters);
/*
 * The index (0..PARAM_FIXED_COUNT-1) of name in the fixed PgBouncer set
 * (client_encoding, DateStyle, TimeZone, standard_conforming_strings,
 * application_name), or -1.
 */
#define PARAM_FIXED_COUNT 5
int param_fixed_index(const char *name);

/*
 * A profile is what a client wants its server's session to look like (its
 * own parameters over its pool's defaults), interned per pool: clients with
 * the same values share one. A server remembers the id of the profile it
 * was last found to match, so linking it to a client of that profile needs
 * no comparison at all (server_link).
 */
struct param_profile;
struct param_profiles {
	struct param_profile *table;
	struct param_profile *last; /* the last one got: tried first */
	uint64_t last_id;
};

static inline void param_profiles_init(struct param_profiles *t)
{
	t->table = NULL;
	t->last = NULL;
	t->last_id = 0;
}
/* Frees the table; every profile must have been released. */
void param_profiles_deinit(struct param_profiles *t);
/* The profile of own over defaults, with a reference for the caller. */
struct param_profile *param_profile_get(struct param_profiles *t, const struct param_set *own,
					const struct param_set *defaults);
/*
 * Drops a reference got from param_profile_get (NULL is allowed). The last
 * profile handed out stays without references, with its id, until another
 * one is handed out.
 */
void param_profile_release(struct param_profiles *t, struct param_profile *pr);
/* The profile's id: never 0, never reused within its table. */
uint64_t param_profile_id(const struct param_profile *pr);
