/*
 * internal.c - POST /internal/ops: a frame of the peer protocol
 * (lib/protocol.h, docs/protocol.md), served by the node.
 */
#include <stdlib.h>

#include "server.h"

struct internal {
	kvs__peer_reply reply;
};

static void internal_free(void *ctx)
{
	struct internal *c = ctx;

	kvs__peer_reply_clear(&c->reply);
	free(c);
}

static void render(struct req *r)
{
	struct internal *c = r->ctx;
	size_t len;
	char *frame;

	if (c->reply.rc == KVS_EPROTO) {
		/* The sender's fault, not an upstream's: 400. */
		reply_static(r, 400,
		             "{\"error\":\"protocol_error\",\"message\":\"not a "
		             "valid peer frame\"}\n",
		             KVS_TYPE_JSON);
		return;
	}
	if (c->reply.rc != KVS_OK) {
		reply_fail(r, c->reply.rc, "serving a peer");
		return;
	}
	frame = kvs__peer_reply_encode(&c->reply, &len);
	if (frame == NULL) {
		reply_fail(r, KVS_ENOMEM, "answering a peer");
		return;
	}
	reply_bytes(r, 200, frame, len, KVS_TYPE_PEER);
}

void handle_internal(struct req *r)
{
	struct internal *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		reply_fail(r, KVS_ENOMEM, "serving a peer");
		return;
	}
	r->ctx = c;
	r->ctx_free = internal_free;
	req_start(r);
	kvs__node_serve_peer(r->srv->node, r->body ? r->body : "", r->body_len,
	                     &c->reply, req_node_done, r);
	req_wait(r, render);
}
