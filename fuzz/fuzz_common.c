
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * The world of a harness: a cycle with a log, a frozen clock, the module
 * structs the parsers look their confs up with, and a request per input.
 */


#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "fuzz.h"


/*
 * The module's own ngx_module_t is in ngx_http_upload_module.c, which the
 * harnesses do not link (it is the directives and the phase handler):
 * ngx_http_get_module_loc_conf() only needs the ctx_index of each.
 */
ngx_module_t  ngx_http_upload_module;
ngx_module_t  ngx_http_core_module;

#define FUZZ_UPLOAD_CTX_INDEX         0
#define FUZZ_CORE_CTX_INDEX           1
#define FUZZ_CTX_SLOTS                2

volatile ngx_cycle_t   *ngx_cycle;
volatile ngx_time_t    *ngx_cached_time;
volatile ngx_msec_t     ngx_current_msec;

fuzz_sent_t             fuzz_sent;


static ngx_log_t        fuzz_log;
static ngx_cycle_t      fuzz_cycle;
static ngx_time_t       fuzz_time;
static ngx_uint_t       fuzz_ready;


static void
fuzz_init(void)
{
    ngx_pagesize = getpagesize();
    ngx_pagesize_shift = 0;
    ngx_cacheline_size = NGX_CPU_CACHE_LINE;

    /* every level, every debug mask: each message is formatted (stubs.c) */
    fuzz_log.log_level = NGX_LOG_DEBUG_ALL|NGX_LOG_DEBUG;

    fuzz_cycle.log = &fuzz_log;
    ngx_cycle = &fuzz_cycle;

    fuzz_time.sec = FUZZ_NOW;
    ngx_cached_time = &fuzz_time;
    ngx_current_msec = (ngx_msec_t) FUZZ_NOW * 1000;

    ngx_http_upload_module.ctx_index = FUZZ_UPLOAD_CTX_INDEX;
    ngx_http_core_module.ctx_index = FUZZ_CORE_CTX_INDEX;

    fuzz_ready = 1;
}


ngx_int_t
fuzz_env_create(fuzz_env_t *env)
{
    ngx_pool_t          *pool;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (!fuzz_ready) {
        fuzz_init();
    }

    ngx_memzero(env, sizeof(fuzz_env_t));
    ngx_memzero(&fuzz_sent, sizeof(fuzz_sent_t));

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, &fuzz_log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    /* nothing from the pool's blocks: each allocation is malloc'ed alone */
    pool->max = 0;

    env->pool = pool;

    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    c = ngx_pcalloc(pool, sizeof(ngx_connection_t));
    env->ulcf = ngx_pcalloc(pool, sizeof(ngx_http_upload_loc_conf_t));
    env->clcf = ngx_pcalloc(pool, sizeof(ngx_http_core_loc_conf_t));

    if (r == NULL || c == NULL || env->ulcf == NULL || env->clcf == NULL) {
        goto failed;
    }

    c->log = &fuzz_log;
    c->pool = pool;
    c->fd = (ngx_socket_t) -1;

    r->connection = c;
    r->main = r;
    r->pool = pool;
    r->method = NGX_HTTP_POST;
    r->http_version = NGX_HTTP_VERSION_11;
    r->headers_in.content_length_n = -1;
    r->headers_out.content_length_n = -1;

    r->loc_conf = ngx_pcalloc(pool, FUZZ_CTX_SLOTS * sizeof(void *));
    r->ctx = ngx_pcalloc(pool, FUZZ_CTX_SLOTS * sizeof(void *));

    if (r->loc_conf == NULL || r->ctx == NULL
        || ngx_list_init(&r->headers_in.headers, pool, 4,
                         sizeof(ngx_table_elt_t))
           != NGX_OK
        || ngx_list_init(&r->headers_out.headers, pool, 4,
                         sizeof(ngx_table_elt_t))
           != NGX_OK)
    {
        goto failed;
    }

    r->loc_conf[FUZZ_UPLOAD_CTX_INDEX] = env->ulcf;
    r->loc_conf[FUZZ_CORE_CTX_INDEX] = env->clcf;

    env->ulcf->enable = 1;
    env->ulcf->max_size = 0;
    env->ulcf->min_part_size = 1;
    env->ulcf->max_part_size = (off_t) 5 * 1024 * 1024 * 1024;
    env->ulcf->max_parts = 10000;
    env->ulcf->session_ttl = 86400;
    env->ulcf->redis_timeout = 1000;
    env->ulcf->hashes = NGX_HTTP_UPLOAD_MD5|NGX_HTTP_UPLOAD_SHA256;

    ngx_str_set(&env->clcf->name, "/upload/");

    env->request = r;

    return NGX_OK;

failed:

    ngx_destroy_pool(pool);
    env->pool = NULL;

    return NGX_ERROR;
}


void
fuzz_env_destroy(fuzz_env_t *env)
{
    if (env->pool) {
        ngx_destroy_pool(env->pool);
        env->pool = NULL;
    }
}


void
fuzz_check_declined(ngx_http_request_t *r, const char *what,
    const char *code, const char *message)
{
    cJSON      *json;
    ngx_int_t   rc;

    if (code == NULL || message == NULL) {
        fuzz_fail("%s: declined without a code and a message", what);
    }

    ngx_memzero(&fuzz_sent, sizeof(fuzz_sent_t));

    rc = ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST, code, message);

    if (rc != NGX_OK || fuzz_sent.status != NGX_HTTP_BAD_REQUEST) {
        fuzz_fail("%s: send_error: no 400 sent", what);
    }

    json = cJSON_ParseWithLength((char *) fuzz_sent.body.data,
                                 fuzz_sent.body.len);

    if (!cJSON_IsObject(json)) {
        fuzz_fail("%s: send_error: not a JSON object", what);
    }

    cJSON_Delete(json);
}


u_char *
fuzz_dup(ngx_pool_t *pool, const u_char *data, size_t size)
{
    u_char  *p;

    /*
     * pool->max is 0: a malloc() of exactly "size" bytes (ngx_pnalloc() of
     * 0 bytes would point into a pool block)
     */

    p = ngx_pnalloc(pool, size ? size : 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, data, size);

    return p;
}


void
fuzz_fail(const char *fmt, ...)
{
    va_list  args;

    fprintf(stderr, "\nfuzz: invariant broken: ");

    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);

    fprintf(stderr, "\n");

    abort();
}


ngx_uint_t
fuzz_byte(fuzz_input_t *in)
{
    if (in->pos == in->last) {
        return 0;
    }

    return *in->pos++;
}


/* a number in [min, max] from up to 8 bytes of the input */

uint64_t
fuzz_uint(fuzz_input_t *in, uint64_t min, uint64_t max)
{
    uint64_t    n, range;
    ngx_uint_t  i;

    range = max - min;
    n = 0;

    for (i = 0; i < 8 && (range >> (8 * i)) != 0; i++) {
        n = (n << 8) | fuzz_byte(in);
    }

    if (range == UINT64_MAX) {
        return n;
    }

    return min + n % (range + 1);
}
