/*
 * request.c - what handlers read of a request, and the wait for a node
 * operation.
 *
 * Paths and query strings reach us undecoded (http.c's unescape callback
 * does nothing), so that keys may hold any byte, NUL included, and a
 * malformed escape is refused instead of passed through.
 *
 * Waiting. A node operation may finish before the call that starts it
 * returns (served from this node's store), or later on another thread.
 * The request's state goes CALLING (req_start) -> WAITING (req_wait is
 * about to suspend the connection) -> SUSPENDED, and the completion
 * (req_node_done) swaps in DONE: whoever sees the other side's step
 * already taken knows what is left to do. Finished inline: the answer is
 * built at once and the connection is never suspended. Finished while
 * suspended: the completion resumes the connection, and http.c builds the
 * answer when libmicrohttpd calls back. Finished in between: req_wait
 * resumes it itself.
 */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "query.h"
#include "server.h"

enum { ST_IDLE, ST_CALLING, ST_WAITING, ST_SUSPENDED, ST_DONE };

int req_arg(struct req *r, const char *name, char **out, size_t *out_len)
{
	const char *raw = NULL;
	size_t raw_len = 0;
	int rc;

	*out = NULL;
	*out_len = 0;
	if (MHD_lookup_connection_value_n(r->conn, MHD_GET_ARGUMENT_KIND, name,
	                                  strlen(name), &raw,
	                                  &raw_len) != MHD_YES)
		return 0;
	if (raw == NULL) { /* "?key" without "=" */
		raw = "";
		raw_len = 0;
	}
	rc = query_decode(raw, raw_len, out, out_len);
	if (rc == KVS_ENOMEM) {
		reply_fail(r, KVS_ENOMEM, "reading the query");
		return -1;
	}
	if (rc != KVS_OK) {
		reply_error(r, KVS_EBADENCODING,
		            "query argument '%s' has a malformed %%-escape", name);
		return -1;
	}
	return 1;
}

struct arg_check {
	struct query_names names;
	const char *unknown;
	const char *twice;
};

static enum MHD_Result check_arg(void *cls, enum MHD_ValueKind kind,
                                 const char *key, const char *value)
{
	struct arg_check *c = cls;

	(void)kind;
	(void)value;
	switch (query_name(&c->names, key)) {
	case QUERY_NAME_UNKNOWN:
		c->unknown = key;
		return MHD_NO;
	case QUERY_NAME_TWICE:
		c->twice = key;
		return MHD_NO;
	default:
		return MHD_YES;
	}
}

int req_check_args(struct req *r, const char *const *allowed)
{
	struct arg_check c;

	memset(&c, 0, sizeof(c));
	query_names_init(&c.names, allowed);
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, check_arg, &c);
	if (c.unknown != NULL) {
		reply_error(r, KVS_EUNKNOWNARG,
		            "unknown query argument '%.100s' (docs/api.md lists "
		            "each endpoint's arguments)",
		            c.unknown);
		return 0;
	}
	if (c.twice != NULL) {
		reply_error(r, KVS_EBADARG, "query argument '%.100s' is given twice",
		            c.twice);
		return 0;
	}
	return 1;
}

int req_quorum(struct req *r, const char *name, unsigned *out)
{
	unsigned n = kvs_config_cluster(r->view->cfg)->replication;
	char *text;
	size_t len;
	int rc = req_arg(r, name, &text, &len);

	*out = 0;
	if (rc <= 0)
		return rc == 0;
	*out = query_quorum(text, len, n);
	free(text);
	if (*out == 0) {
		reply_error(r, KVS_EBADARG,
		            "'%s' must be 1 to %u (the replication), '%s' or '%s'",
		            name, n, KVS_QUORUM_MAJORITY, KVS_QUORUM_ALL);
		return 0;
	}
	return 1;
}

const char *req_header(struct req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

struct joined {
	const char *name;
	kvs__buf b;
	int found;
};

static enum MHD_Result join_header(void *cls, enum MHD_ValueKind kind,
                                   const char *key, const char *value)
{
	struct joined *j = cls;

	(void)kind;
	if (strcasecmp(key, j->name) != 0 || value == NULL)
		return MHD_YES;
	if (j->found)
		kvs__buf_adds(&j->b, ", ");
	kvs__buf_adds(&j->b, value);
	j->found = 1;
	return MHD_YES;
}

int req_header_all(struct req *r, const char *name, char **out)
{
	struct joined j;

	*out = NULL;
	j.name = name;
	j.found = 0;
	kvs__buf_init(&j.b, 0);
	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, join_header, &j);
	if (j.b.rc != KVS_OK || !j.found) {
		int rc = j.b.rc;

		kvs__buf_free(&j.b);
		return rc;
	}
	*out = kvs__buf_take(&j.b, NULL);
	if (*out == NULL)
		*out = strdup(""); /* present, but empty */
	return *out != NULL ? KVS_OK : KVS_ENOMEM;
}

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value)
{
	kvs__buf *b = cls;

	(void)kind;
	if (b->len > 0)
		kvs__buf_add(b, "&", 1);
	/* The values are raw, except that libmicrohttpd turned '+' into
	 * spaces: give them back their escape. */
	for (const char *p = key; *p; p++)
		kvs__buf_add(b, *p == ' ' ? "%20" : p, *p == ' ' ? 3 : 1);
	if (value != NULL) {
		kvs__buf_add(b, "=", 1);
		for (const char *p = value; *p; p++)
			kvs__buf_add(b, *p == ' ' ? "%20" : p, *p == ' ' ? 3 : 1);
	}
	return MHD_YES;
}

char *req_raw_query(struct req *r)
{
	kvs__buf b;
	char *q;

	kvs__buf_init(&b, 0);
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_arg, &b);
	if (b.rc != KVS_OK) {
		kvs__buf_free(&b);
		return NULL;
	}
	q = kvs__buf_take(&b, NULL);
	return q != NULL ? q : strdup("");
}

/* ------------------------------------------------------------------ */
/* Waiting for a node operation                                         */

void req_start(struct req *r)
{
	atomic_store(&r->state, ST_CALLING);
}

void req_node_done(void *ud)
{
	struct req *r = ud;

	if (atomic_exchange(&r->state, ST_DONE) == ST_SUSPENDED)
		MHD_resume_connection(r->conn);
}

void req_wait(struct req *r, void (*render)(struct req *r))
{
	int expect = ST_CALLING;

	r->render = render;
	if (!atomic_compare_exchange_strong(&r->state, &expect, ST_WAITING)) {
		render(r); /* finished inline */
		return;
	}
	r->suspended = 1;
	MHD_suspend_connection(r->conn);
	expect = ST_WAITING;
	if (!atomic_compare_exchange_strong(&r->state, &expect, ST_SUSPENDED))
		MHD_resume_connection(r->conn); /* finished meanwhile */
}
