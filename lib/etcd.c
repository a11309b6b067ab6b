/*
 * etcd.c - a small client of etcd's v3 JSON gateway.
 *
 * Every call is one POST of a JSON body to /v3/... on one endpoint, in the
 * form of etcd's gRPC messages: bytes as base64, 64-bit integers as
 * decimal strings, fields at their zero value left out of answers (a
 * transaction whose comparison failed has no "succeeded"; a lease that
 * expired answers a renewal without "TTL"). Requests are small and rare
 * (start-up, a lease renewal every few seconds), so they go over the
 * transport's synchronous path.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcd.h"
#include "kvshard/common.h"
#include "transport.h"
#include "util.h"

/* Largest answer read: a topology and the registrations fit easily. */
#define MAX_ANSWER ((size_t)16 << 20)
#define LIST_LIMIT 10000
/* Tries more of an endpoint that answers 503 (100, 200, 400 ms apart). */
#define UNAVAILABLE_RETRIES 3u

struct kvs__etcd {
	kvs__transport *t;
	char **urls; /* "http://host:port" */
	size_t n;
	pthread_mutex_t mu;
	size_t good; /* the endpoint that answered last */
};

int kvs__etcd_new(kvs__etcd **out, const char *const *endpoints, size_t n,
                  unsigned timeout_ms)
{
	kvs__transport_options to = {0};
	kvs__etcd *e;
	int rc;

	if (out == NULL || endpoints == NULL || n == 0)
		return KVS_EINVAL;
	*out = NULL;
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return KVS_ENOMEM;
	pthread_mutex_init(&e->mu, NULL);
	e->urls = calloc(n, sizeof(*e->urls));
	if (e->urls == NULL) {
		kvs__etcd_free(e);
		return KVS_ENOMEM;
	}
	e->n = n;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(endpoints[i]) + sizeof("http://");

		e->urls[i] = malloc(len);
		if (e->urls[i] == NULL) {
			kvs__etcd_free(e);
			return KVS_ENOMEM;
		}
		snprintf(e->urls[i], len, "http://%s", endpoints[i]);
	}
	to.connect_timeout_ms = timeout_ms;
	to.request_timeout_ms = timeout_ms;
	to.sync_only = 1; /* rare, small requests: no thread of its own */
	rc = kvs__transport_new(&e->t, &to);
	if (rc != KVS_OK) {
		kvs__etcd_free(e);
		return rc;
	}
	*out = e;
	return KVS_OK;
}

void kvs__etcd_free(kvs__etcd *e)
{
	if (e == NULL)
		return;
	kvs__transport_free(e->t);
	for (size_t i = 0; e->urls != NULL && i < e->n; i++)
		free(e->urls[i]);
	free(e->urls);
	pthread_mutex_destroy(&e->mu);
	free(e);
}

/* POST text to path on endpoint i: *answer is etcd's JSON (cJSON_Delete
 * it), *status its HTTP status. */
static int post(kvs__etcd *e, size_t i, const char *path, const char *text,
                cJSON **answer, long *status)
{
	char url[512];
	kvs__http_request req = {0};
	kvs__http_response resp;
	int rc;

	*answer = NULL;
	snprintf(url, sizeof(url), "%s%s", e->urls[i], path);
	req.method = "POST";
	req.url = url;
	req.headers[0] = "Content-Type: application/json";
	req.n_headers = 1;
	req.body = text;
	req.body_len = strlen(text);
	req.max_body = MAX_ANSWER;
	kvs__transport_request(e->t, &req, &resp);
	rc = resp.rc;
	*status = resp.status;
	if (rc == KVS_OK) {
		*answer = cJSON_ParseWithLength(resp.body, resp.body_len);
		if (*answer == NULL)
			rc = KVS_EPROTO;
		else if (resp.status != 200)
			rc = KVS_EHTTP; /* the answer says why */
	}
	kvs__http_response_clear(&resp);
	return rc;
}

/* POST body to path on the endpoints, in turn from the last good one,
 * until one answers: *answer is its JSON (cJSON_Delete it). */
static int call(kvs__etcd *e, const char *path, cJSON *body, cJSON **answer)
{
	char *text = cJSON_PrintUnformatted(body);
	size_t first;
	int rc = KVS_ECONNECT;

	*answer = NULL;
	if (text == NULL)
		return KVS_ENOMEM;
	pthread_mutex_lock(&e->mu);
	first = e->good;
	pthread_mutex_unlock(&e->mu);
	for (size_t k = 0; k < e->n; k++) {
		size_t i = (first + k) % e->n;
		long status = 0;

		/* 503: the gateway lost its connection to etcd for a moment
		 * ("transport is closing", seen right after etcd starts):
		 * the same endpoint again, a little later, a few times. */
		for (unsigned again = 0;; again++) {
			cJSON_Delete(*answer);
			rc = post(e, i, path, text, answer, &status);
			if (status != 503 || again == UNAVAILABLE_RETRIES)
				break;
			usleep((useconds_t)(100000u << again));
		}
		if (rc == KVS_OK || rc == KVS_EHTTP || rc == KVS_EPROTO) {
			pthread_mutex_lock(&e->mu);
			e->good = i;
			pthread_mutex_unlock(&e->mu);
		}
		if (rc != KVS_ECONNECT && rc != KVS_ETIMEDOUT && status != 503)
			break;
	}
	free(text);
	return rc;
}

/* Add name: base64 of data to o. */
static int add_b64(cJSON *o, const char *name, const void *data, size_t len)
{
	kvs__buf b;
	int ok;

	kvs__buf_init(&b, 0);
	kvs__buf_reserve(&b, 0);
	kvs__buf_add_b64(&b, data, len);
	ok = b.rc == KVS_OK &&
	     cJSON_AddStringToObject(o, name, b.data != NULL ? b.data : "") !=
	             NULL;
	kvs__buf_free(&b);
	return ok ? KVS_OK : KVS_ENOMEM;
}

static int add_int(cJSON *o, const char *name, int64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%" PRId64, v);
	return cJSON_AddStringToObject(o, name, s) != NULL ? KVS_OK
	                                                   : KVS_ENOMEM;
}

/* An int64 field of etcd's JSON (a string, or a number): 0 if absent. */
static int64_t get_int(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	if (cJSON_IsString(v))
		return strtoll(v->valuestring, NULL, 10);
	if (cJSON_IsNumber(v))
		return (int64_t)v->valuedouble;
	return 0;
}

/* Decode the base64 field name of o (absent: empty), NUL-terminated. */
static int get_b64(const cJSON *o, const char *name, char **out,
                   size_t *len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	unsigned char *bytes = NULL;
	size_t n = 0;
	int rc;

	if (v != NULL && !cJSON_IsString(v))
		return KVS_EPROTO;
	rc = kvs__b64_decode_alloc(v != NULL ? v->valuestring : "",
	                           v != NULL ? strlen(v->valuestring) : 0,
	                           &bytes, &n);
	if (rc != KVS_OK)
		return rc == KVS_EINVAL ? KVS_EPROTO : rc;
	*out = realloc(bytes, n + 1); /* room for a NUL after the bytes */
	if (*out == NULL) {
		free(bytes);
		return KVS_ENOMEM;
	}
	(*out)[n] = '\0';
	*len = n;
	return KVS_OK;
}

/* The end of the range of keys that start with prefix. */
static char *prefix_end(const char *prefix, size_t *len)
{
	size_t n = strlen(prefix);
	char *end = malloc(n + 1);

	if (end == NULL)
		return NULL;
	memcpy(end, prefix, n + 1);
	while (n > 0 && (unsigned char)end[n - 1] == 0xff)
		n--;
	if (n == 0) { /* every key: etcd's "\0" */
		end[0] = '\0';
		*len = 1;
		return end;
	}
	end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
	*len = n;
	return end;
}

static int range(kvs__etcd *e, const char *key, int prefix, cJSON **answer)
{
	cJSON *body = cJSON_CreateObject();
	int rc = body != NULL ? add_b64(body, "key", key, strlen(key))
	                      : KVS_ENOMEM;

	if (rc == KVS_OK && prefix) {
		size_t len = 0;
		char *end = prefix_end(key, &len);

		rc = end != NULL ? add_b64(body, "range_end", end, len)
		                 : KVS_ENOMEM;
		free(end);
		if (rc == KVS_OK)
			rc = add_int(body, "limit", LIST_LIMIT);
	}
	if (rc == KVS_OK)
		rc = call(e, "/v3/kv/range", body, answer);
	cJSON_Delete(body);
	return rc;
}

int kvs__etcd_get(kvs__etcd *e, const char *key, char **value, size_t *len,
                  int64_t *mod_rev)
{
	cJSON *a = NULL;
	const cJSON *kvs, *kv;
	int rc = range(e, key, 0, &a);

	if (rc == KVS_OK) {
		kvs = cJSON_GetObjectItemCaseSensitive(a, "kvs");
		kv = cJSON_IsArray(kvs) ? cJSON_GetArrayItem(kvs, 0) : NULL;
		if (kv == NULL) {
			rc = KVS_NOTFOUND;
		} else {
			rc = get_b64(kv, "value", value, len);
			if (mod_rev != NULL)
				*mod_rev = get_int(kv, "mod_revision");
		}
	}
	cJSON_Delete(a);
	return rc;
}

/* {"key": key, "value": value[, "lease": lease]} */
static cJSON *put_request(const char *key, const void *value, size_t len,
                          int64_t lease)
{
	cJSON *p = cJSON_CreateObject();

	if (p == NULL || add_b64(p, "key", key, strlen(key)) != KVS_OK ||
	    add_b64(p, "value", value, len) != KVS_OK ||
	    (lease != 0 && add_int(p, "lease", lease) != KVS_OK)) {
		cJSON_Delete(p);
		return NULL;
	}
	return p;
}

int kvs__etcd_put_if(kvs__etcd *e, const char *key, const void *value,
                     size_t len, int64_t rev, int64_t *new_rev)
{
	cJSON *body = cJSON_CreateObject(), *cmp = cJSON_CreateObject();
	cJSON *cmps = cJSON_CreateArray(), *ok = cJSON_CreateArray();
	cJSON *op = cJSON_CreateObject(), *put = put_request(key, value, len, 0);
	cJSON *a = NULL;
	int rc = KVS_ENOMEM;

	if (body == NULL || cmp == NULL || cmps == NULL || ok == NULL ||
	    op == NULL || put == NULL)
		goto out;
	/* The key's creation revision is 0 while it does not exist. */
	if (add_b64(cmp, "key", key, strlen(key)) != KVS_OK ||
	    cJSON_AddStringToObject(cmp, "target", rev == 0 ? "CREATE" : "MOD") ==
	            NULL ||
	    cJSON_AddStringToObject(cmp, "result", "EQUAL") == NULL ||
	    add_int(cmp, rev == 0 ? "create_revision" : "mod_revision", rev) !=
	            KVS_OK)
		goto out;
	cJSON_AddItemToArray(cmps, cmp);
	cmp = NULL;
	cJSON_AddItemToObject(op, "request_put", put);
	put = NULL;
	cJSON_AddItemToArray(ok, op);
	op = NULL;
	cJSON_AddItemToObject(body, "compare", cmps);
	cmps = NULL;
	cJSON_AddItemToObject(body, "success", ok);
	ok = NULL;
	rc = call(e, "/v3/kv/txn", body, &a);
	if (rc == KVS_OK) {
		if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "succeeded")))
			rc = KVS_ECONFLICT;
		else if (new_rev != NULL)
			*new_rev = get_int(cJSON_GetObjectItemCaseSensitive(
			                           a, "header"),
			                   "revision");
	}
out:
	cJSON_Delete(a);
	cJSON_Delete(body);
	cJSON_Delete(cmp);
	cJSON_Delete(cmps);
	cJSON_Delete(ok);
	cJSON_Delete(op);
	cJSON_Delete(put);
	return rc;
}

int kvs__etcd_put(kvs__etcd *e, const char *key, const void *value,
                  size_t len, int64_t lease)
{
	cJSON *body = put_request(key, value, len, lease), *a = NULL;
	int rc = body != NULL ? call(e, "/v3/kv/put", body, &a) : KVS_ENOMEM;

	cJSON_Delete(a);
	cJSON_Delete(body);
	return rc;
}

/* call() with the body {name: v}. */
static int call_int(kvs__etcd *e, const char *path, const char *name,
                    int64_t v, cJSON **answer)
{
	cJSON *body = cJSON_CreateObject();
	int rc = KVS_ENOMEM;

	*answer = NULL;
	if (body != NULL && add_int(body, name, v) == KVS_OK)
		rc = call(e, path, body, answer);
	cJSON_Delete(body);
	return rc;
}

int kvs__etcd_lease_grant(kvs__etcd *e, unsigned ttl_s, int64_t *id)
{
	cJSON *a = NULL;
	int rc = call_int(e, "/v3/lease/grant", "TTL", ttl_s, &a);

	if (rc == KVS_OK) {
		*id = get_int(a, "ID");
		if (*id == 0)
			rc = KVS_EPROTO;
	}
	cJSON_Delete(a);
	return rc;
}

int kvs__etcd_lease_keepalive(kvs__etcd *e, int64_t id)
{
	cJSON *a = NULL;
	int rc = call_int(e, "/v3/lease/keepalive", "ID", id, &a);

	if (rc == KVS_OK) {
		/* A stream of one message: {"result": {..., "TTL": "10"}}; an
		 * expired lease renews to no TTL. */
		const cJSON *r = cJSON_GetObjectItemCaseSensitive(a, "result");

		if (r == NULL)
			rc = KVS_EPROTO;
		else if (get_int(r, "TTL") <= 0)
			rc = KVS_NOTFOUND;
	}
	cJSON_Delete(a);
	return rc;
}

int kvs__etcd_lease_revoke(kvs__etcd *e, int64_t id)
{
	cJSON *a = NULL;
	int rc = call_int(e, "/v3/lease/revoke", "ID", id, &a);

	cJSON_Delete(a);
	return rc;
}

int kvs__etcd_list(kvs__etcd *e, const char *prefix, kvs__etcd_kv_cb cb,
                   void *ud)
{
	cJSON *a = NULL;
	const cJSON *kv;
	int rc = range(e, prefix, 1, &a);

	if (rc == KVS_OK) {
		const cJSON *kvs = cJSON_GetObjectItemCaseSensitive(a, "kvs");

		cJSON_ArrayForEach(kv, kvs)
		{
			char *k = NULL, *v = NULL;
			size_t kl = 0, vl = 0;
			int stop;

			rc = get_b64(kv, "key", &k, &kl);
			if (rc == KVS_OK)
				rc = get_b64(kv, "value", &v, &vl);
			stop = rc != KVS_OK || cb(ud, k, kl, v, vl) != 0;
			free(k);
			free(v);
			if (stop)
				break;
		}
	}
	cJSON_Delete(a);
	return rc;
}
