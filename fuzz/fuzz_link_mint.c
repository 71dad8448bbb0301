
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Minting upload links: the JSON body of POST <registration location>links
 * (ngx_http_upload_link_mint_body(), static in src/ngx_http_upload_link.c,
 * reached by including that file).  The whole input is the body, at most
 * the 4096 bytes the module collects.
 *
 * A refusal is a 400 with a JSON error; a link made is a 201 whose token
 * ngx_http_upload_link_verify() takes, with the claims the body asked for,
 * and whose prefix some valid key can start with (no dead links).
 */


#include "../src/ngx_http_upload_link.c"

#include "fuzz.h"


static ngx_str_t  fuzz_secret = ngx_string("fuzz-secret-one");


static void fuzz_minted(fuzz_env_t *env, ngx_http_upload_ctx_t *ctx,
    u_char *body, size_t len);
static ngx_int_t fuzz_prefix_usable(ngx_pool_t *pool, ngx_str_t *prefix);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                 *p;
    cJSON                  *json;
    ngx_buf_t              *b;
    fuzz_env_t              env;
    ngx_str_t              *secret;
    ngx_http_upload_ctx_t  *ctx;

    if (size > NGX_HTTP_UPLOAD_LINK_MAX) {
        return -1;
    }

    if (fuzz_env_create(&env) != NGX_OK) {
        return 0;
    }

    env.ulcf->link_secrets = ngx_array_create(env.pool, 1,
                                              sizeof(ngx_str_t));
    if (env.ulcf->link_secrets == NULL) {
        goto done;
    }

    secret = ngx_array_push(env.ulcf->link_secrets);
    if (secret == NULL) {
        goto done;
    }

    *secret = fuzz_secret;

    ngx_str_set(&env.ulcf->link_url, "https://files.example.com/l/");

    ctx = ngx_pcalloc(env.pool, sizeof(ngx_http_upload_ctx_t));
    b = ngx_calloc_buf(env.pool);
    p = fuzz_dup(env.pool, data, size);

    if (ctx == NULL || b == NULL || p == NULL) {
        goto done;
    }

    ctx->request = env.request;
    ctx->conf = env.ulcf;
    ctx->fd = NGX_INVALID_FILE;

    b->start = p;
    b->pos = p;
    b->last = p + size;
    b->end = p + size;
    b->temporary = 1;

    ctx->json = b;

    ngx_http_upload_link_mint_body(ctx);

    fuzz_check(fuzz_sent.finalized == 1,
               "link_mint_body: not finalized once");

    fuzz_check(fuzz_sent.status == NGX_HTTP_CREATED
               || fuzz_sent.status == NGX_HTTP_BAD_REQUEST,
               "link_mint_body: neither 201 nor 400");

    json = cJSON_ParseWithLength((char *) fuzz_sent.body.data,
                                 fuzz_sent.body.len);

    fuzz_check(cJSON_IsObject(json), "link_mint_body: not a JSON answer");

    if (fuzz_sent.status == NGX_HTTP_BAD_REQUEST) {
        fuzz_check(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(json,
                                                                   "error")),
                   "link_mint_body: a 400 without an \"error\"");
        cJSON_Delete(json);
        goto done;
    }

    cJSON_Delete(json);

    fuzz_minted(&env, ctx, p, size);

done:

    fuzz_env_destroy(&env);

    return 0;
}


/* the token answered opens, with the claims asked for */

static void
fuzz_minted(fuzz_env_t *env, ngx_http_upload_ctx_t *ctx, u_char *body,
    size_t len)
{
    cJSON                   *answer, *asked, *token, *url, *expires, *item;
    size_t                   n;
    ngx_int_t                rc;
    ngx_str_t                t;
    const char              *why;
    ngx_http_upload_link_t   link;

    answer = cJSON_ParseWithLength((char *) fuzz_sent.body.data,
                                   fuzz_sent.body.len);
    asked = cJSON_ParseWithLength((char *) body, len);

    token = cJSON_GetObjectItemCaseSensitive(answer, "token");
    url = cJSON_GetObjectItemCaseSensitive(answer, "url");
    expires = cJSON_GetObjectItemCaseSensitive(answer, "expires");

    fuzz_check(cJSON_IsString(token) && cJSON_IsString(url)
               && cJSON_IsNumber(expires),
               "link_mint_body: a 201 without token, url and expires");

    n = ngx_strlen(url->valuestring);

    fuzz_check(n == ctx->conf->link_url.len + ngx_strlen(token->valuestring)
               && ngx_strncmp(url->valuestring, ctx->conf->link_url.data,
                              ctx->conf->link_url.len) == 0
               && ngx_strcmp(url->valuestring + ctx->conf->link_url.len,
                             token->valuestring) == 0,
               "link_mint_body: the url is not upload_link_url + token");

    t.data = (u_char *) token->valuestring;
    t.len = ngx_strlen(token->valuestring);

    ngx_memzero(&link, sizeof(ngx_http_upload_link_t));

    rc = ngx_http_upload_link_verify(env->pool, ctx->conf->link_secrets, &t,
                                     &link, &why);

    fuzz_check(rc == NGX_OK, "link_mint_body: the link made does not open");

    fuzz_check(link.exp == (time_t) expires->valuedouble,
               "link_mint_body: the token's exp is not \"expires\"");

    item = cJSON_GetObjectItemCaseSensitive(asked, "appid");

    fuzz_check(link.app.len == ngx_strlen(item->valuestring)
               && ngx_strncmp(link.app.data, item->valuestring,
                              link.app.len) == 0,
               "link_mint_body: the token is for another app");

    item = cJSON_GetObjectItemCaseSensitive(asked, "prefix");

    fuzz_check(item == NULL
               ? link.prefix.len == 0
               : link.prefix.len == ngx_strlen(item->valuestring)
                 && ngx_strncmp(link.prefix.data, item->valuestring,
                                link.prefix.len) == 0,
               "link_mint_body: the token has another prefix");

    item = cJSON_GetObjectItemCaseSensitive(asked, "ttl");

    fuzz_check(link.exp == FUZZ_NOW + (item ? (time_t) item->valuedouble
                                            : 86400),
               "link_mint_body: the token's exp is not now + ttl");

    item = cJSON_GetObjectItemCaseSensitive(asked, "max_size");

    fuzz_check(link.max_size == (item ? (off_t) item->valuedouble : 0),
               "link_mint_body: the token has another max_size");

    item = cJSON_GetObjectItemCaseSensitive(asked, "max_files");

    fuzz_check(link.max_files == (item ? (ngx_uint_t) item->valuedouble : 1),
               "link_mint_body: the token has another max_files");

    rc = fuzz_prefix_usable(env->pool, &link.prefix);

    fuzz_check(rc == NGX_OK,
               "link_mint_body: a link for a prefix no key can start with");

    cJSON_Delete(answer);
    cJSON_Delete(asked);
}


/*
 * Some valid key starts with the prefix: the prefix itself, or it and one
 * more byte (a prefix may end inside a segment, or after its "/").
 */

static ngx_int_t
fuzz_prefix_usable(ngx_pool_t *pool, ngx_str_t *prefix)
{
    u_char      *p;
    ngx_str_t    key;
    const char  *reason;

    if (prefix->len == 0
        || ngx_http_upload_validate_key(prefix, &reason) == NGX_OK)
    {
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, prefix->len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, prefix->data, prefix->len);
    p[prefix->len] = 'x';

    key.data = p;
    key.len = prefix->len + 1;

    return ngx_http_upload_validate_key(&key, &reason);
}

