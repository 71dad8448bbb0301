
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Streams a request body straight into the store.  The module's request
 * body filter takes every buffer nginx reads and queues it as a region;
 * lanes (the file writer and one per digest) consume the regions in order,
 * concurrently in a thread pool, and a region goes back to nginx once all
 * lanes have seen it.  Until then nginx keeps the buffer busy and stops
 * reading when it has no room left ("filter_need_buffering"): this is the
 * back-pressure that keeps the memory of an upload constant.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upload.h"


static ngx_int_t ngx_http_upload_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_upload_region_add(ngx_http_upload_ctx_t *ctx,
    ngx_buf_t *b);
static ngx_int_t ngx_http_upload_lanes_run(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_lanes_kick(ngx_http_upload_ctx_t *ctx);
static ngx_uint_t ngx_http_upload_lanes_busy(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_lane_post(ngx_http_upload_lane_t *lane);
static void ngx_http_upload_lane_work(void *data, ngx_log_t *log);
static ngx_int_t ngx_http_upload_lane_write(ngx_http_upload_lane_t *lane,
    u_char *buf, size_t size);
static ngx_uint_t ngx_http_upload_lane_done(ngx_http_upload_lane_t *lane);
static ngx_uint_t ngx_http_upload_regions_release(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_buffer_swap(ngx_http_upload_ctx_t *ctx);
static ngx_uint_t ngx_http_upload_block_free(ngx_http_upload_ctx_t *ctx,
    u_char *block);
#if (NGX_THREADS)
static void ngx_http_upload_lane_event_handler(ngx_event_t *ev);
#endif
static ngx_int_t ngx_http_upload_body_pass_last(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_body_keep(ngx_http_upload_ctx_t *ctx,
    ngx_buf_t *b);
static void ngx_http_upload_body_done(ngx_http_request_t *r);
static void ngx_http_upload_body_stored(ngx_http_upload_ctx_t *ctx);


static ngx_http_request_body_filter_pt  ngx_http_next_request_body_filter;


ngx_int_t
ngx_http_upload_body_init(ngx_conf_t *cf)
{
    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_upload_body_filter;

    return NGX_OK;
}


/*
 * Called once the object's key, app and limits are settled: opens the
 * temporary file, prepares the lanes and starts reading the body (which
 * sends "100 Continue" when the client asked for it).
 */

ngx_int_t
ngx_http_upload_body_start(ngx_http_upload_ctx_t *ctx)
{
    ngx_uint_t               i;
    ngx_http_request_t      *r;
#if (NGX_THREADS)
    ngx_http_upload_lane_t  *lane;
#endif

    r = ctx->request;

    /* lane 0 writes the file, the others hash */

    ctx->lanes[0].ctx = ctx;
    ctx->lanes[0].offset = ctx->offset;
    ctx->lanes[0].synced = ctx->offset;
    ctx->nlanes = 1;

    if (ngx_http_upload_digest_init(ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_upload_store_open_temp(ctx) != NGX_OK) {
        return ctx->status ? ctx->status : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

#if (NGX_THREADS)
    if (ctx->conf->thread_pool) {
        for (i = 0; i < ctx->nlanes; i++) {
            lane = &ctx->lanes[i];

            lane->task = ngx_thread_task_alloc(r->pool, 0);
            if (lane->task == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            lane->task->ctx = lane;
            lane->task->handler = ngx_http_upload_lane_work;
            lane->task->event.data = lane;
            lane->task->event.handler = ngx_http_upload_lane_event_handler;
            lane->task->event.log = r->connection->log;
        }
    }
#else
    (void) i;
#endif

    ctx->streaming = 1;
    ctx->body_done = ngx_http_upload_body_stored;

    return ngx_http_read_client_request_body(r, ngx_http_upload_body_done);
}


/*
 * The JSON bodies of the protocol (initiate, complete) go through the same
 * filter, into one buffer of at most "max" bytes: no temp file, and a body
 * too large is refused as soon as it crosses the limit.
 */

ngx_int_t
ngx_http_upload_body_collect(ngx_http_upload_ctx_t *ctx, size_t max,
    void (*done)(ngx_http_upload_ctx_t *ctx))
{
    size_t               size;
    ngx_http_request_t  *r;

    r = ctx->request;

    size = max;

    if (r->headers_in.content_length_n >= 0
        && r->headers_in.content_length_n < (off_t) max)
    {
        size = (size_t) r->headers_in.content_length_n;
    }

    ctx->json = ngx_create_temp_buf(r->pool, size + 1);
    if (ctx->json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->json->end = ctx->json->start + size;

    ctx->collect = 1;
    ctx->streaming = 1;
    ctx->body_done = done;

    return ngx_http_read_client_request_body(r, ngx_http_upload_body_done);
}


static ngx_int_t
ngx_http_upload_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    off_t                     size;
    ngx_chain_t              *cl;
    ngx_http_upload_ctx_t    *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_upload_module);

    if (ctx == NULL || !ctx->streaming) {
        return ngx_http_next_request_body_filter(r, in);
    }

    /* buffers stay busy until the lanes are done with them */
    r->request_body->filter_need_buffering = 1;

    for (cl = in; cl; cl = cl->next) {

        if (cl->buf->last_buf) {
            ctx->last_seen = 1;
        }

        size = cl->buf->last - cl->buf->pos;

        if (size == 0) {
            continue;
        }

        if (ctx->failed) {
            cl->buf->pos = cl->buf->last;
            continue;
        }

        if (ctx->collect) {
            if (ngx_http_upload_body_keep(ctx, cl->buf) != NGX_OK) {
                ngx_http_upload_body_fail(ctx, NGX_HTTP_BAD_REQUEST,
                                          "MalformedJSON",
                                          "the JSON body is too large", 0);
            }

            cl->buf->pos = cl->buf->last;
            continue;
        }

        if (ctx->limit && ctx->size + size > ctx->limit) {
            ngx_http_upload_body_fail(ctx, ctx->limit_status,
                                      "EntityTooLarge", ctx->limit_message,
                                      0);
            cl->buf->pos = cl->buf->last;
            continue;
        }

        if (ngx_http_upload_region_add(ctx, cl->buf) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->size += size;
    }

    ngx_http_upload_lanes_kick(ctx);
    ngx_http_upload_buffer_swap(ctx);

    return ngx_http_upload_body_pass_last(ctx);
}


/*
 * nginx reads into its body buffer until it is full, then waits for the
 * regions in it to be released.  Giving it a second block of the same size
 * instead lets reading the socket overlap the lanes.  The busy regions keep
 * pointing into the old block, which becomes the spare once they are
 * released; nginx only looks at its busy list when the buffer is full.
 *
 * When no region is busy at all, nginx's buffer starts over instead: the
 * next read goes to its start.  A slow upload then keeps reusing the first
 * pages of its buffer rather than touching all of it (and a spare) over
 * time, so the memory it really holds stays at what one read brings.
 */

static void
ngx_http_upload_buffer_swap(ngx_http_upload_ctx_t *ctx)
{
    u_char                   *block;
    size_t                    size;
    ngx_buf_t                *b;
    ngx_uint_t                i;
    ngx_http_request_t       *r;
    ngx_http_request_body_t  *rb;

    r = ctx->request;
    rb = r->request_body;

    if (ctx->failed || rb == NULL || rb->rest == 0) {
        return;
    }

#if (NGX_HTTP_V2)
    /*
     * HTTP/2 grants the client a window of one buffer and opens it again
     * only once no region is busy: a second block would never be filled.
     */

    if (r->stream) {
        return;
    }
#endif

    b = rb->buf;

    /* the preread part in the header buffer is not nginx's body buffer */

    if (b == NULL || b == r->header_in) {
        return;
    }

    if (ctx->queue == NULL) {
        if (b->pos == b->last) {
            b->pos = b->start;
            b->last = b->start;
        }

        return;
    }

    if (b->last != b->end) {
        return;
    }

    size = b->end - b->start;

    if (ctx->nblocks == 0) {
        ctx->blocks[0] = b->start;
        ctx->block_size = size;
        ctx->nblocks = 1;
    }

    if (size != ctx->block_size) {
        return;
    }

    block = NULL;

    for (i = 0; i < ctx->nblocks; i++) {
        if (ctx->blocks[i] != b->start
            && ngx_http_upload_block_free(ctx, ctx->blocks[i]))
        {
            block = ctx->blocks[i];
            break;
        }
    }

    if (block == NULL) {
        if (ctx->nblocks == NGX_HTTP_UPLOAD_BLOCKS) {
            return;
        }

        block = ngx_palloc(r->pool, size);
        if (block == NULL) {
            return;
        }

        ctx->blocks[ctx->nblocks++] = block;
    }

    b->start = block;
    b->pos = block;
    b->last = block;
    b->end = block + size;
}


static ngx_uint_t
ngx_http_upload_block_free(ngx_http_upload_ctx_t *ctx, u_char *block)
{
    ngx_http_upload_region_t  *rg;

    for (rg = ctx->queue; rg; rg = rg->next) {
        if (rg->pos >= block && rg->pos < block + ctx->block_size) {
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_http_upload_body_keep(ngx_http_upload_ctx_t *ctx, ngx_buf_t *b)
{
    size_t      size;
    ngx_buf_t  *json;

    json = ctx->json;
    size = b->last - b->pos;

    if (size > (size_t) (json->end - json->last)) {
        return NGX_ERROR;
    }

    json->last = ngx_cpymem(json->last, b->pos, size);

    return NGX_OK;
}


/*
 * Records an error and makes the rest of the body irrelevant: the client
 * gets the JSON error as soon as no lane is busy, and nginx's lingering
 * close drains what it still sends.
 */

void
ngx_http_upload_body_fail(ngx_http_upload_ctx_t *ctx, ngx_uint_t status,
    const char *code, const char *message, ngx_err_t err)
{
    if (ctx->failed) {
        return;
    }

    ctx->failed = 1;
    ctx->status = status;
    ctx->error_code = code;
    ctx->error_message = message;
    ctx->error_errno = err;
}


static ngx_int_t
ngx_http_upload_region_add(ngx_http_upload_ctx_t *ctx, ngx_buf_t *b)
{
    ngx_uint_t                 i;
    ngx_http_upload_region_t  *rg;

    rg = ctx->free;

    if (rg) {
        ctx->free = rg->next;

    } else {
        rg = ngx_palloc(ctx->request->pool, sizeof(ngx_http_upload_region_t));
        if (rg == NULL) {
            return NGX_ERROR;
        }
    }

    rg->buf = b;
    rg->pos = b->pos;
    rg->size = b->last - b->pos;
    rg->pending = ctx->nlanes;
    rg->next = NULL;

    if (ctx->tail) {
        ctx->tail->next = rg;

    } else {
        ctx->queue = rg;
    }

    ctx->tail = rg;

    for (i = 0; i < ctx->nlanes; i++) {
        if (ctx->lanes[i].next == NULL) {
            ctx->lanes[i].next = rg;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_lanes_run(ngx_http_upload_ctx_t *ctx)
{
    ngx_uint_t               i;
    ngx_http_upload_lane_t  *lane;

    /*
     * The digests first: they are the longest tasks, and posted before the
     * writer they start on threads of their own rather than after it.
     */

    for (i = ctx->nlanes; i-- > 0 && !ctx->failed; /* void */) {
        lane = &ctx->lanes[i];

        if (lane->busy || lane->next == NULL) {
            continue;
        }

        if (ngx_http_upload_lane_post(lane) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* a full thread pool queue fails the upload, never the request */

static void
ngx_http_upload_lanes_kick(ngx_http_upload_ctx_t *ctx)
{
    if (ctx->failed || ngx_http_upload_lanes_run(ctx) == NGX_OK) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                  "upload: the thread pool queue is full");

    ngx_http_upload_body_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE, "SlowDown",
                              "the server is too busy, try again later", 0);
}


static ngx_uint_t
ngx_http_upload_lanes_busy(ngx_http_upload_ctx_t *ctx)
{
    ngx_uint_t  i;

    for (i = 0; i < ctx->nlanes; i++) {
        if (ctx->lanes[i].busy) {
            return 1;
        }
    }

    return 0;
}


/* hands a lane every region queued for it so far, as one task */

static ngx_int_t
ngx_http_upload_lane_post(ngx_http_upload_lane_t *lane)
{
    ngx_uint_t                 n;
    ngx_http_upload_ctx_t     *ctx;
    ngx_http_upload_region_t  *rg;

    ctx = lane->ctx;

    n = 1;
    for (rg = lane->next; rg->next; rg = rg->next) {
        n++;
    }

    lane->first = lane->next;
    lane->count = n;

#if (NGX_THREADS)
    if (lane->task) {
        if (ngx_thread_task_post(ctx->conf->thread_pool, lane->task)
            != NGX_OK)
        {
            /* the regions stay queued for this lane */
            lane->first = NULL;
            lane->count = 0;
            return NGX_ERROR;
        }

        lane->next = NULL;
        lane->busy = 1;
        ctx->request->main->blocked++;

        return NGX_OK;
    }
#endif

    lane->next = NULL;

    ngx_http_upload_lane_work(lane, ctx->request->connection->log);
    (void) ngx_http_upload_lane_done(lane);

    return NGX_OK;
}


/*
 * Runs in a pool thread: it reads only the regions handed over, whose
 * memory nginx does not touch until they are released.
 */

static void
ngx_http_upload_lane_work(void *data, ngx_log_t *log)
{
    ngx_http_upload_lane_t *lane = data;

    u_char                    *start;
    size_t                     len;
    ngx_uint_t                 i;
    ngx_http_upload_region_t  *rg;

    rg = lane->first;
    start = rg->pos;
    len = 0;

    for (i = 0; i < lane->count; i++) {

        if (lane->md) {
            if (EVP_DigestUpdate(lane->md, rg->pos, rg->size) != 1) {
                lane->err = NGX_EINVAL;
                return;
            }

        } else {
            /* regions read one after another into nginx's buffer are
             * contiguous: one write for all of them */

            if (start + len != rg->pos) {
                if (ngx_http_upload_lane_write(lane, start, len) != NGX_OK) {
                    return;
                }

                start = rg->pos;
                len = 0;
            }

            len += rg->size;
        }

        if (i + 1 < lane->count) {
            rg = rg->next;
        }
    }

    if (lane->md == NULL) {
        (void) ngx_http_upload_lane_write(lane, start, len);
    }
}


static ngx_int_t
ngx_http_upload_lane_write(ngx_http_upload_lane_t *lane, u_char *buf,
    size_t size)
{
    ssize_t  n;

    if (size == 0 || lane->err) {
        return lane->err ? NGX_ERROR : NGX_OK;
    }

    n = ngx_http_upload_store_write(lane->ctx->fd, buf, size, lane->offset,
                                    &lane->err);
    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    lane->offset += n;
    ngx_http_upload_store_writeback(lane);

    return NGX_OK;
}


/* back on the event loop: returns 1 when regions went back to nginx */

static ngx_uint_t
ngx_http_upload_lane_done(ngx_http_upload_lane_t *lane)
{
    ngx_uint_t                 i;
    ngx_http_upload_ctx_t     *ctx;
    ngx_http_upload_region_t  *rg, *next;

    ctx = lane->ctx;
    rg = lane->first;

    for (i = 0; i < lane->count; i++) {
        next = rg->next;
        rg->pending--;
        rg = next;
    }

    lane->first = NULL;
    lane->count = 0;

    if (lane->err) {
        if (lane->md) {
            ngx_http_upload_body_fail(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "InternalError",
                                      "computing a digest failed", 0);

        } else if (lane->err == NGX_ENOSPC
#ifdef EDQUOT
                   || lane->err == EDQUOT
#endif
                  )
        {
            ngx_http_upload_body_fail(ctx, NGX_HTTP_INSUFFICIENT_STORAGE,
                                      "InsufficientStorage",
                                      "the store is full", lane->err);

        } else {
            ngx_http_upload_body_fail(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "InternalError",
                                      "writing to the store failed",
                                      lane->err);
        }
    }

    return ngx_http_upload_regions_release(ctx);
}


/*
 * Gives nginx back the regions every lane is done with; after a failure,
 * once no lane is busy, all of them.  Returns 1 when any went back.
 */

static ngx_uint_t
ngx_http_upload_regions_release(ngx_http_upload_ctx_t *ctx)
{
    ngx_uint_t                 i, all, released;
    ngx_http_upload_region_t  *rg;

    all = ctx->failed && !ngx_http_upload_lanes_busy(ctx);
    released = 0;

    while (ctx->queue && (ctx->queue->pending == 0 || all)) {
        rg = ctx->queue;
        rg->buf->pos = rg->buf->last;

        ctx->queue = rg->next;
        if (ctx->queue == NULL) {
            ctx->tail = NULL;
        }

        rg->next = ctx->free;
        ctx->free = rg;
        released = 1;
    }

    if (ctx->queue == NULL) {
        for (i = 0; i < ctx->nlanes; i++) {
            ctx->lanes[i].next = NULL;
        }
    }

    return released;
}


#if (NGX_THREADS)

static void
ngx_http_upload_lane_event_handler(ngx_event_t *ev)
{
    ngx_http_upload_lane_t *lane = ev->data;

    ngx_uint_t              released;
    ngx_connection_t       *c;
    ngx_http_request_t     *r;
    ngx_http_upload_ctx_t  *ctx;

    ctx = lane->ctx;
    r = ctx->request;
    c = r->connection;

    r->main->blocked--;
    lane->busy = 0;

    released = ngx_http_upload_lane_done(lane);

    if (c->error) {
        /* the request was terminated while a lane still used its memory */
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        ngx_http_run_posted_requests(c);
        return;
    }

    ngx_http_upload_lanes_kick(ctx);

    if (!ctx->streaming) {
        return;
    }

    if (released) {
        ngx_http_upload_buffer_swap(ctx);
    }

    /*
     * nginx stops reading while its buffer is full of busy regions, and
     * waits for the last buffer to be passed on: let it look again.
     */

    if (released
        || (ctx->failed && !ngx_http_upload_lanes_busy(ctx))
        || (ctx->last_seen && ctx->queue == NULL
            && !ngx_http_upload_lanes_busy(ctx)))
    {
        r->read_event_handler(r);
    }

    ngx_http_run_posted_requests(c);
}

#endif


/*
 * The body is over for the module when the last buffer has been seen and
 * every lane is idle, or when the upload failed and no lane is busy; only
 * then is the last buffer passed on, which makes nginx call
 * ngx_http_upload_body_done().
 */

static ngx_int_t
ngx_http_upload_body_pass_last(ngx_http_upload_ctx_t *ctx)
{
    ngx_buf_t                *b;
    ngx_chain_t               out;
    ngx_http_request_t       *r;
    ngx_http_request_body_t  *rb;

    if (ctx->last_passed || ngx_http_upload_lanes_busy(ctx)) {
        return NGX_OK;
    }

    if (!ctx->failed && !(ctx->last_seen && ctx->queue == NULL)) {
        return NGX_OK;
    }

    r = ctx->request;
    rb = r->request_body;

    if (ctx->failed) {
        /* stop reading: what is left of the body is drained on close */
        (void) ngx_http_upload_regions_release(ctx);
        rb->rest = 0;
        r->lingering_close = 1;
        r->keepalive = 0;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    ctx->last_passed = 1;

    return ngx_http_next_request_body_filter(r, &out);
}


static void
ngx_http_upload_body_done(ngx_http_request_t *r)
{
    ngx_http_upload_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_upload_module);

    ctx->streaming = 0;

    if (!ctx->last_passed) {
        /* no body at all: neither Content-Length nor chunked */
        ctx->last_passed = 1;
    }

    if (ctx->failed) {
        ngx_http_upload_finalize(r, ngx_http_upload_send_error(r,
                                     ctx->status, ctx->error_code,
                                     ctx->error_message));
        return;
    }

    ctx->body_done(ctx);
}


/* a whole upload's body is in its temporary file: check it, then commit */

static void
ngx_http_upload_body_stored(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ngx_http_upload_digest_final(ctx) != NGX_OK) {
        ngx_http_upload_finalize(r, ngx_http_upload_send_error(r,
                                     NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "InternalError",
                                     "computing a digest failed"));
        return;
    }

    if (ngx_http_upload_digest_verify(ctx) != NGX_OK) {
        ngx_http_upload_finalize(r, ngx_http_upload_send_error(r,
                                     NGX_HTTP_BAD_REQUEST, "BadDigest",
                                     "the body does not match the digest "
                                     "sent in Content-MD5 or "
                                     "X-Upload-Sha256"));
        return;
    }

    ngx_http_upload_finalize(r, ngx_http_upload_store_commit(ctx));
}
