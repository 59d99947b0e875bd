/*
 * cancel.h - the cancel keys sluice hands to clients, and forwarding of a
 * client's CancelRequest to the server it is linked to right now.
 *
 * A client gets its own (pid, key) pair in BackendKeyData; PostgreSQL's pair
 * for the server never leaves sluice. A CancelRequest with a known pair is
 * sent, on a new connection, to the server the client is linked to at that
 * moment (never to a server that has moved on to another client); an
 * unknown pair does nothing, as PostgreSQL does.
 */
#pragma once

#include <stdint.h>

#include "sluice/worker.h"

struct client;

/* Gives c a fresh random cancel key and indexes it. */
void cancel_register(struct worker *w, struct client *c);
void cancel_unregister(struct worker *w, struct client *c);
/* Handles a CancelRequest that arrived with (pid, key). */
void cancel_request(struct worker *w, uint32_t pid, uint32_t key);
