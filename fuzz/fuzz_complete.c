
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Completing a sliced upload: the JSON body of POST <key>?uploadId=<id>,
 * {"parts": [{"part_number": n, "etag": "..."}, ...]}
 * (ngx_http_upload_complete_parse() and ngx_http_upload_complete_hash(),
 * static in src/ngx_http_upload_complete.c, reached by including that
 * file).  The whole input is the body; it is parsed with max_parts 10000,
 * then 3.
 *
 * NGX_OK: a list of parts in ascending order within max_parts, each etag
 * unquoted and in lowercase, and the list's hash; NGX_DECLINED: a code, a
 * message, and a 400 that is JSON.
 */


#include "../src/ngx_http_upload_complete.c"

#include "fuzz.h"


static void fuzz_complete(fuzz_env_t *env, u_char *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *p;
    fuzz_env_t   env;

    if (size > NGX_HTTP_UPLOAD_COMPLETE_MAX) {
        return -1;
    }

    if (fuzz_env_create(&env) != NGX_OK) {
        return 0;
    }

    p = fuzz_dup(env.pool, data, size);

    if (p) {
        fuzz_complete(&env, p, size);

        env.ulcf->max_parts = 3;

        fuzz_complete(&env, p, size);
    }

    fuzz_env_destroy(&env);

    return 0;
}


static void
fuzz_complete(fuzz_env_t *env, u_char *data, size_t size)
{
    size_t                       j;
    ngx_int_t                    rc;
    ngx_buf_t                   *b;
    ngx_uint_t                   i, last;
    const char                  *code, *message;
    ngx_http_upload_ctx_t       *ctx;
    ngx_http_upload_listed_t    *listed;
    ngx_http_upload_complete_t  *cp;

    /* as ngx_http_upload_complete() and the body collector leave them */

    ctx = ngx_pcalloc(env->pool, sizeof(ngx_http_upload_ctx_t));
    cp = ngx_pcalloc(env->pool, sizeof(ngx_http_upload_complete_t));
    b = ngx_calloc_buf(env->pool);

    if (ctx == NULL || cp == NULL || b == NULL) {
        return;
    }

    ctx->request = env->request;
    ctx->conf = env->ulcf;
    ctx->fd = NGX_INVALID_FILE;
    ctx->complete = cp;

    b->start = data;
    b->pos = data;
    b->last = data + size;
    b->end = data + size;
    b->temporary = 1;

    ctx->json = b;

    code = NULL;
    message = NULL;

    rc = ngx_http_upload_complete_parse(ctx, &code, &message);

    fuzz_check(rc == NGX_OK || rc == NGX_DECLINED,
               "complete_parse: NGX_OK or NGX_DECLINED");

    if (rc != NGX_OK) {
        fuzz_check_declined(env->request, "complete_parse", code, message);
        return;
    }

    fuzz_check(cp->listed && cp->listed->nelts > 0
               && cp->listed->nelts <= env->ulcf->max_parts,
               "complete_parse: no part, or more than max_parts");

    listed = cp->listed->elts;
    last = 0;

    for (i = 0; i < cp->listed->nelts; i++) {
        fuzz_check(listed[i].number > last
                   && listed[i].number <= env->ulcf->max_parts,
                   "complete_parse: parts not ascending within max_parts");

        last = listed[i].number;

        for (j = 0; j < listed[i].etag.len; j++) {
            fuzz_check(listed[i].etag.data[j] != '\0'
                       && !(listed[i].etag.data[j] >= 'A'
                            && listed[i].etag.data[j] <= 'Z'),
                       "complete_parse: an etag with a NUL or uppercase");
        }
    }

    rc = ngx_http_upload_complete_hash(ctx);

    fuzz_check(rc == NGX_OK && cp->list_hash.len == 64,
               "complete_hash: no SHA-256 of the list");
}
