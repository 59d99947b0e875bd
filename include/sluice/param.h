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

#include "sluice/common.h"

struct param {
	char *name;
	char *value;
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
/* Sets (adds or replaces) name = value; both are copied. */
void param_set_put(struct param_set *ps, const char *name, const char *value);
/* The value, or NULL. Borrowed until the next put on that name. */
const char *param_set_get(const struct param_set *ps, const char *name);
void param_set_copy(struct param_set *dst, const struct param_set *src);

/*
 * The parameters sluice keeps per client and re-applies to whatever server
 * the client is linked to: the fixed PgBouncer set plus track_extra_parameters.
 */
bool param_is_tracked(const char *name, const char *track_extra_parameters);
