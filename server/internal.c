/*
 * internal.c - POST /internal/ops: a frame of the peer protocol
 * (lib/protocol.h, docs/protocol.md), served by the node; and GET
 * /internal/link, which turns a peer's connection into a link of frames
 * (lib/link.h) served by the node's link server.
 */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
	kvs__node_serve_peer(r->view->node, r->body ? r->body : "", r->body_len,
	                     &c->reply, req_node_done, r);
	req_wait(r, render);
}

/* ------------------------------------------------------------------ */

static void link_closed(void *ud)
{
	MHD_upgrade_action(ud, MHD_UPGRADE_ACTION_CLOSE);
}

/* The 101 is sent: the connection is the link server's. */
static void upgraded(void *cls, struct MHD_Connection *conn, void *con_cls,
                     const char *extra, size_t extra_len, MHD_socket sock,
                     struct MHD_UpgradeResponseHandle *urh)
{
	struct server *s = cls;
	struct req *r = con_cls; /* completed only once the link closes */

	(void)conn;
	(void)extra;
	/* A peer sends nothing before it has the 101: bytes that came with
	 * the request are a peer that does not speak the protocol. */
	if (extra_len > 0 || r == NULL || r->view == NULL ||
	    kvs__node_serve_link(r->view->node, sock, link_closed, urh) !=
	            KVS_OK)
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
	/* Handed over: no longer a request in flight, so a stop does not
	 * wait for it, nor does the close of its epoch's view (which ends
	 * the link); until here it was, so the node was not closed under
	 * it. */
	if (r != NULL && !r->upgraded) {
		r->upgraded = 1;
		view_put(r->view);
		r->view = NULL;
		atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
	}
}

void handle_link(struct req *r)
{
	const char *up = MHD_lookup_connection_value(
	        r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE);
	const char *conn = MHD_lookup_connection_value(
	        r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);
	struct MHD_Response *resp;

	if (!kvs__node_serves_links(r->view->node)) {
		reply_error(r, KVS_ENOTSUP,
		            "this node serves no peer links (peer_links is "
		            "false, or the cluster runs TLS): peers use %s",
		            KVS_PATH_PEER);
		return;
	}
	if (up == NULL || strcasecmp(up, KVS__LINK_PROTOCOL) != 0 ||
	    conn == NULL || strcasestr(conn, "upgrade") == NULL) {
		reply_error(r, KVS_EBADREQUEST,
		            "a link starts with Connection: Upgrade and "
		            "Upgrade: %s",
		            KVS__LINK_PROTOCOL);
		return;
	}
	/* No deadline cuts the link: the request's body is in (its clock
	 * is stopped), and the next request's starts only at completion,
	 * which for a link is its close (guard.c). */
	resp = MHD_create_response_for_upgrade(upgraded, r->srv);
	if (resp != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE,
		                        KVS__LINK_PROTOCOL);
	reply_response(r, MHD_HTTP_SWITCHING_PROTOCOLS, resp, NULL);
}
