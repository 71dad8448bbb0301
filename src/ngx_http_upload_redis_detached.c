
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Commands that belong to no request and must not be lost to a short
 * outage: a complete that failed gives its session back, a part that
 * failed gives back its place, a stored object closes its session.  Each
 * is fenced by a token and idempotent, so it is simply sent again, a few
 * times over about 16 s, when Redis refused it, was away, was not ready
 * (loading its data, busy with a script, a read-only replica), or did not
 * answer in time (it may have run then).  What is given up on is logged
 * with the caller's words.
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
    ngx_uint_t                    tries;
    const u_char                 *lost;
    unsigned                      last:1;
    int                           argc;
    const char                  **argv;
    size_t                       *argvlen;
} ngx_http_upload_detached_t;


static void ngx_http_upload_detached_send(ngx_http_upload_detached_t *d);
static void ngx_http_upload_detached_reply(ngx_http_request_t *r,
    void *data, redisReply *reply);
static ngx_uint_t ngx_http_upload_detached_final(redisReply *reply);
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

    /*
     * Not cancelable: an exiting worker makes the attempt that is due
     * (8 s at the most, or at once if it leaves meanwhile) and logs the
     * loss if it fails, rather than dropping the command unsaid.
     */

    d->timer.handler = ngx_http_upload_detached_timer;
    d->timer.data = d;
    d->timer.log = ngx_cycle->log;

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

        if (!ngx_http_upload_detached_final(reply)) {
            ngx_http_upload_detached_later(d);
            return;
        }

        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "upload: %s (redis: %*s)", d->lost,
                      (size_t) reply->len, reply->str);
    }

    ngx_free(d);
}


/*
 * "ERR ..." (the script failed) and "WRONGTYPE ..." would come again;
 * the others ("LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN",
 * "NOAUTH" ...) say that Redis did not run it and may later.
 */

static ngx_uint_t
ngx_http_upload_detached_final(redisReply *reply)
{
    return (reply->len >= 3 && ngx_strncmp(reply->str, "ERR", 3) == 0)
           || (reply->len >= 9
               && ngx_strncmp(reply->str, "WRONGTYPE", 9) == 0);
}


/*
 * A worker that leaves (a reload) makes one last attempt at once, on a
 * new connection if need be: its connection to Redis may have just been
 * closed with the request that gave the command (worker_shutdown_timeout).
 */

static void
ngx_http_upload_detached_later(ngx_http_upload_detached_t *d)
{
    ngx_msec_t  delay;

    if (ngx_exiting || ngx_quit || ngx_terminate) {

        if (d->last || ngx_terminate) {
            goto lost;
        }

        d->last = 1;
        delay = 1;

    } else {

        if (d->tries == NGX_HTTP_UPLOAD_DETACHED_TRIES) {
            goto lost;
        }

        /* 250 ms, then twice as long each time */
        delay = NGX_HTTP_UPLOAD_DETACHED_FIRST << d->tries++;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "upload: redis command %p again in %M ms", d, delay);

    ngx_add_timer(&d->timer, delay);

    return;

lost:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0, "upload: %s", d->lost);
    ngx_free(d);
}


static void
ngx_http_upload_detached_timer(ngx_event_t *ev)
{
    ngx_http_upload_detached_send(ev->data);
}
