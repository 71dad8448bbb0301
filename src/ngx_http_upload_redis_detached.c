
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Commands that belong to no request and must not be lost to a short
 * outage: a complete that failed gives its session back, a part that
 * failed gives back its place, a stored object closes its session.  Each
 * is fenced by a token and idempotent, so it is simply sent again, a few
 * times over about NGX_HTTP_UPLOAD_DETACHED_SPAN ms, when Redis refused
 * it, was away, or did not answer in time (it may have run then).  What
 * is given up on is logged with the caller's words.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upload_redis.h"


#define NGX_HTTP_UPLOAD_DETACHED_FIRST  250
#define NGX_HTTP_UPLOAD_DETACHED_TRIES  6       /* 250 ms ... 8 s: 15.75 s */


typedef struct {
    ngx_event_t                   timer;
    ngx_http_upload_redis_t      *redis;
    ngx_msec_t                    timeout;
    ngx_msec_t                    delay;
    ngx_uint_t                    tries;
    const u_char                 *lost;
    int                           argc;
    const char                  **argv;
    size_t                       *argvlen;
} ngx_http_upload_detached_t;


static void ngx_http_upload_detached_send(ngx_http_upload_detached_t *d);
static void ngx_http_upload_detached_reply(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_detached_later(ngx_http_upload_detached_t *d);
static void ngx_http_upload_detached_timer(ngx_event_t *ev);


/*
 * The command is copied into one heap block: the caller's arguments may
 * live in a request pool that is on its way out (a cleanup handler).
 */

void
ngx_http_upload_redis_detached(ngx_http_upload_redis_t *redis,
    ngx_msec_t timeout, const u_char *lost, int argc, const char **argv,
    const size_t *argvlen)
{
    u_char                      *p;
    size_t                       size;
    ngx_int_t                    i;
    ngx_http_upload_detached_t  *d;

    size = sizeof(ngx_http_upload_detached_t)
           + argc * (sizeof(char *) + sizeof(size_t));

    for (i = 0; i < argc; i++) {
        size += argvlen[i];
    }

    d = ngx_alloc(size, ngx_cycle->log);
    if (d == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "upload: %s", lost);
        return;
    }

    ngx_memzero(d, sizeof(ngx_http_upload_detached_t));

    d->redis = redis;
    d->timeout = timeout;
    d->delay = NGX_HTTP_UPLOAD_DETACHED_FIRST;
    d->lost = lost;
    d->argc = argc;
    d->argv = (const char **) (d + 1);
    d->argvlen = (size_t *) (d->argv + argc);

    p = (u_char *) (d->argvlen + argc);

    for (i = 0; i < argc; i++) {
        d->argv[i] = (const char *) p;
        d->argvlen[i] = argvlen[i];
        p = ngx_cpymem(p, argv[i], argvlen[i]);
    }

    /* a worker that exits does not wait for a retry */

    d->timer.handler = ngx_http_upload_detached_timer;
    d->timer.data = d;
    d->timer.log = ngx_cycle->log;
    d->timer.cancelable = 1;

    ngx_http_upload_detached_send(d);
}


static void
ngx_http_upload_detached_send(ngx_http_upload_detached_t *d)
{
    if (ngx_http_upload_redis_command(NULL, d->redis, d->timeout,
                                      ngx_http_upload_detached_reply, d,
                                      d->argc, d->argv, d->argvlen)
        != NGX_OK)
    {
        ngx_http_upload_detached_later(d);
    }
}


static void
ngx_http_upload_detached_reply(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_detached_t *d = data;

    if (reply == NULL) {
        ngx_http_upload_detached_later(d);
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        /* the script itself failed: sending it again would not help */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "upload: %s (redis: %*s)", d->lost,
                      (size_t) reply->len, reply->str);
    }

    ngx_free(d);
}


static void
ngx_http_upload_detached_later(ngx_http_upload_detached_t *d)
{
    if (d->tries++ == NGX_HTTP_UPLOAD_DETACHED_TRIES
        || ngx_exiting || ngx_terminate || ngx_quit)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "upload: %s", d->lost);
        ngx_free(d);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "upload: redis command %p again in %M ms", d, d->delay);

    ngx_add_timer(&d->timer, d->delay);
    d->delay *= 2;
}


static void
ngx_http_upload_detached_timer(ngx_event_t *ev)
{
    ngx_http_upload_detached_send(ev->data);
}
