/*
 * reply.c - answers. Every answer names the shard that served it
 * (X-Kvshard-Shard) and the topology epoch; errors are JSON with the
 * stable code of their result (KVS_ERROR_LIST) and a sentence.
 */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

/* Longest message of an error answer. */
#define MESSAGE_MAX 512

/* Take resp as r's answer. */
void reply_response(struct req *r, unsigned status, struct MHD_Response *resp,
                    const char *ctype)
{
	if (r->answered) {
		log_msg(LL_ERROR, "internal error: request answered twice");
		if (resp != NULL)
			MHD_destroy_response(resp);
		return;
	}
	/* An answer before dispatch (refused early) names the epoch too. */
	if (r->view == NULL)
		r->view = view_get(r->srv);
	if (resp != NULL) {
		MHD_add_response_header(resp, KVS_HDR_SHARD, r->srv->me->name);
		MHD_add_response_header(resp, KVS_HDR_EPOCH, r->view->epoch_text);
		if (ctype != NULL)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
			                        ctype);
	}
	r->status = status;
	r->resp = resp; /* NULL: out of memory, the connection is dropped */
	r->answered = 1;
}

void reply_bytes(struct req *r, unsigned status, char *data, size_t len,
                 const char *ctype)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	        len, data ? data : (void *)"",
	        data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);

	if (resp == NULL)
		free(data);
	reply_response(r, status, resp, ctype);
}

void reply_static(struct req *r, unsigned status, const char *text,
                  const char *ctype)
{
	reply_response(r, status,
	       MHD_create_response_from_buffer(strlen(text), (void *)text,
	                                       MHD_RESPMEM_PERSISTENT),
	       ctype);
}

void reply_json(struct req *r, unsigned status, kvs__buf *b)
{
	size_t len;
	char *data;

	kvs__buf_add(b, "\n", 1);
	data = kvs__buf_take(b, &len);
	if (data == NULL) {
		reply_static(r, 500,
		             "{\"error\":\"out_of_memory\",\"message\":\"out of "
		             "memory building the answer\"}\n",
		             KVS_TYPE_JSON);
		return;
	}
	reply_bytes(r, status, data, len, KVS_TYPE_JSON);
}

static void verror(struct req *r, int rc, const char *fmt, va_list ap)
{
	char msg[MESSAGE_MAX];
	kvs__buf b;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	kvs__buf_init(&b, 0);
	kvs__buf_addf(&b, "{\"%s\":\"%s\",\"%s\":\"", KVS_F_ERROR,
	              kvs_error_code(rc), KVS_F_MESSAGE);
	kvs__json_escape(&b, msg, strlen(msg));
	kvs__buf_adds(&b, "\"}");
	reply_json(r, kvs__http_status(rc), &b);
	if (rc == KVS_EAUTH)
		reply_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		             "Bearer realm=\"kvshard\"");
}

void reply_error(struct req *r, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	verror(r, rc, fmt, ap);
	va_end(ap);
}

void reply_fail(struct req *r, int rc, const char *what)
{
	reply_error(r, rc, "%s: %s", what, kvs_strerror(rc));
}

void reply_value(struct req *r, const void *value, size_t len,
                 void (*release)(void *), void *hold, const char *ctype)
{
	/* The value is sent from where it is; libmicrohttpd calls
	 * release(hold) once it is sent (a release of NULL is never
	 * called). */
	struct MHD_Response *resp =
	        MHD_create_response_from_buffer_with_free_callback_cls(
	                len, (void *)(value != NULL ? value : ""), release,
	                hold);

	if (resp == NULL && release != NULL)
		release(hold);
	reply_response(r, 200, resp, ctype);
}

void reply_header(struct req *r, const char *name, const char *value)
{
	if (r->resp != NULL)
		MHD_add_response_header(r->resp, name, value);
}

void reply_served_by(struct req *r, size_t i, int forwarded)
{
	const kvs_shard_config *s = kvs_config_shard(r->view->cfg, i);

	if (r->resp == NULL || s == NULL)
		return;
	if (s != r->srv->me) {
		MHD_del_response_header(r->resp, KVS_HDR_SHARD, r->srv->me->name);
		MHD_add_response_header(r->resp, KVS_HDR_SHARD, s->name);
	}
	if (forwarded)
		MHD_add_response_header(r->resp, KVS_HDR_FORWARDED_BY,
		                        r->srv->me->name);
}

void reply_etag(const kvs_stamp *s, char *buf)
{
	char text[KVS_STAMP_STRLEN];

	kvs_stamp_format(s, text);
	snprintf(buf, REPLY_ETAG_MAX, "\"%s\"", text);
}
