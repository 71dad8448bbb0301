
/*
 * Copyright (C) ngx_http_upload_module developers
 */


#ifndef _NGX_HTTP_UPLOAD_REDIS_H_INCLUDED_
#define _NGX_HTTP_UPLOAD_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <hiredis/hiredis.h>


/*
 * One Redis server as named by an "upload_redis" directive.  The structure
 * lives in the configuration pool; the connection state it holds belongs to
 * the worker that uses it, so a reload simply builds new structures.
 */
typedef struct ngx_http_upload_redis_s  ngx_http_upload_redis_t;


/*
 * Called once per command from the event loop: with the reply, or with
 * reply == NULL when the command failed (connection refused or lost,
 * timeout).  The reply is freed by hiredis after the handler returns.
 * The handler is never called after the request that issued the command
 * has been freed.
 */
typedef void (*ngx_http_upload_redis_handler_pt)(ngx_http_request_t *r,
    void *data, redisReply *reply);


/* "upload_redis" arguments: value[0] is the directive name */
ngx_http_upload_redis_t *ngx_http_upload_redis_create(ngx_conf_t *cf,
    ngx_str_t *value, ngx_uint_t n);

/*
 * Queues a command (binary-safe argv form).  NGX_OK: the handler will be
 * called exactly once, later.  NGX_DECLINED: Redis is known to be down
 * (inside the reconnect backoff); the handler will not be called and the
 * caller answers 503 at once.  NGX_ERROR: no memory.  With r == NULL the
 * command belongs to the worker (no request to outlive), and the handler
 * gets r == NULL.
 */
ngx_int_t ngx_http_upload_redis_command(ngx_http_request_t *r,
    ngx_http_upload_redis_t *redis, ngx_msec_t timeout,
    ngx_http_upload_redis_handler_pt handler, void *data,
    int argc, const char **argv, const size_t *argvlen);

/*
 * Sends a command of no request's, fenced and idempotent, again a few
 * times if Redis is away or does not answer (ngx_http_upload_redis_detached.c);
 * "lost" is logged if it is given up on.
 */
void ngx_http_upload_redis_detached(ngx_http_upload_redis_t *redis,
    ngx_msec_t timeout, const u_char *lost, int argc, const char **argv,
    const size_t *argvlen);

#endif /* _NGX_HTTP_UPLOAD_REDIS_H_INCLUDED_ */
