/*
 * param.c - session parameter sets (see param.h).
 */
#include "sluice/param.h"

#include <stdlib.h>
#include <strings.h>

#include "sluice/config.h"

void param_set_deinit(struct param_set *ps)
{
	for (int i = 0; i < ps->n; i++) {
		free(ps->items[i].name);
		free(ps->items[i].value);
	}
	free(ps->items);
	param_set_init(ps);
}

void param_set_put(struct param_set *ps, const char *name, const char *value)
{
	for (int i = 0; i < ps->n; i++) {
		if (strcasecmp(ps->items[i].name, name) == 0) {
			char *v = xstrdup(value);
			free(ps->items[i].value);
			ps->items[i].value = v;
			return;
		}
	}
	if (ps->n == ps->cap) {
		ps->cap = ps->cap ? ps->cap * 2 : 2;
		ps->items = xrealloc(ps->items, (size_t)ps->cap * sizeof(*ps->items));
	}
	ps->items[ps->n].name = xstrdup(name);
	ps->items[ps->n].value = xstrdup(value);
	ps->n++;
}

const char *param_set_get(const struct param_set *ps, const char *name)
{
	for (int i = 0; i < ps->n; i++)
		if (strcasecmp(ps->items[i].name, name) == 0)
			return ps->items[i].value;
	return NULL;
}

void param_set_copy(struct param_set *dst, const struct param_set *src)
{
	for (int i = 0; i < src->n; i++)
		param_set_put(dst, src->items[i].name, src->items[i].value);
}

bool param_is_tracked(const char *name, const char *track_extra_parameters)
{
	static const char *const fixed[] = {
		"client_encoding",  "DateStyle", "TimeZone", "standard_conforming_strings",
		"application_name",
	};
	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
		if (strcasecmp(fixed[i], name) == 0)
			return true;
	return track_extra_parameters && config_list_contains(track_extra_parameters, name);
}
