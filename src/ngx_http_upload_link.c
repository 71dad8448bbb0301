
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Upload links: signed, expiring tokens that let whoever holds one upload
 * a few files for an app, and the page an "upload_link on" location serves
 * for them.
 *
 *     token  = base64url(claims) "." base64url(HMAC-SHA256(secret, part 1))
 *     claims = {"app", "prefix", "exp", "max_size", "max_files", "nonce"}
 *
 * The first "upload_link_secret" signs, every one verifies (rotation).  An
 * upload that carries a token (Authorization: Bearer, or ?token=) is
 * confined to the token's app, to keys under its prefix, to max_size, and
 * to max_files uploads, counted in Redis ("upload:{<app>}:link:<nonce>")
 * by a script that cannot be raced past the limit.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ngx_http_upload_session.h"


#define NGX_HTTP_UPLOAD_LINK_MAX      4096
#define NGX_HTTP_UPLOAD_LINK_NONCE    16


static ngx_int_t ngx_http_upload_link_mac(ngx_str_t *secret, ngx_str_t *data,
    u_char *mac);
static ngx_int_t ngx_http_upload_link_claims(ngx_pool_t *pool, u_char *json,
    size_t len, ngx_http_upload_link_t *link);
static ngx_int_t ngx_http_upload_link_prefix_valid(ngx_str_t *prefix);
static ngx_int_t ngx_http_upload_link_token(ngx_http_request_t *r,
    ngx_str_t *token);
static ngx_int_t ngx_http_upload_link_denied(ngx_http_request_t *r,
    const char *message);
static void ngx_http_upload_link_counted(ngx_http_request_t *r, void *data,
    redisReply *reply);
static void ngx_http_upload_link_uncount(void *data);
static void ngx_http_upload_link_ignore(ngx_http_request_t *r, void *data,
    redisReply *reply);
static void ngx_http_upload_link_page_used(ngx_http_request_t *r, void *data,
    redisReply *reply);
static ngx_int_t ngx_http_upload_link_refuse(ngx_http_request_t *r,
    const char *why);
static ngx_int_t ngx_http_upload_link_page(ngx_http_request_t *r,
    ngx_http_upload_link_t *link);
static void ngx_http_upload_link_mint_body(ngx_http_upload_ctx_t *ctx);


static ngx_str_t  ngx_http_upload_link_html =
    ngx_string("text/html; charset=utf-8");


/* the page, made from src/ngx_http_upload_page.html by "config" */
#include "ngx_http_upload_page.h"


/* one more upload under a link, unless that makes more than max_files */
static const char  ngx_http_upload_link_count_script[] =
    "local n = redis.call('INCR', KEYS[1]) "
    "if n > tonumber(ARGV[1]) then "
    "  redis.call('DECR', KEYS[1]) "
    "  return 0 "
    "end "
    "redis.call('EXPIREAT', KEYS[1], ARGV[2]) "
    "return n";

/* an upload that did not store its file gives its count back */
static const char  ngx_http_upload_link_uncount_script[] =
    "if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then "
    "  redis.call('DECR', KEYS[1]) "
    "end "
    "return 1";


static ngx_int_t
ngx_http_upload_link_mac(ngx_str_t *secret, ngx_str_t *data, u_char *mac)
{
    unsigned int  len;

    if (HMAC(EVP_sha256(), secret->data, (int) secret->len, data->data,
             data->len, mac, &len) == NULL
        || len != NGX_HTTP_UPLOAD_SHA256_LEN)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * NGX_OK: a valid link in "link"; NGX_DECLINED: "why" says what is wrong
 * ("invalid": malformed, tampered or signed with no secret of ours;
 * "expired")
 */

ngx_int_t
ngx_http_upload_link_verify(ngx_pool_t *pool, ngx_array_t *secrets,
    ngx_str_t *token, ngx_http_upload_link_t *link, const char **why)
{
    u_char      *dot, mac[NGX_HTTP_UPLOAD_SHA256_LEN];
    ngx_str_t    claims, sig, json, raw, *secret;
    ngx_uint_t   i, good;
    u_char       given[64];

    *why = "invalid";

    if (secrets == NULL || token->len == 0
        || token->len > NGX_HTTP_UPLOAD_LINK_MAX)
    {
        return NGX_DECLINED;
    }

    dot = ngx_strlchr(token->data, token->data + token->len, '.');
    if (dot == NULL || dot == token->data) {
        return NGX_DECLINED;
    }

    claims.data = token->data;
    claims.len = dot - token->data;
    sig.data = dot + 1;
    sig.len = token->data + token->len - sig.data;

    /* 32 bytes are 43 base64url characters */

    if (sig.len != 43) {
        return NGX_DECLINED;
    }

    /*
     * The signature is compared as text: its last character carries two
     * unused bits, and a token that differs there only must not verify.
     */

    secret = secrets->elts;
    good = 0;

    for (i = 0; i < secrets->nelts; i++) {
        if (ngx_http_upload_link_mac(&secret[i], &claims, mac) != NGX_OK) {
            return NGX_ERROR;
        }

        raw.data = mac;
        raw.len = sizeof(mac);
        json.data = given;
        ngx_encode_base64url(&json, &raw);

        good |= (json.len == sig.len
                 && CRYPTO_memcmp(json.data, sig.data, sig.len) == 0);
    }

    if (!good) {
        return NGX_DECLINED;
    }

    /* signed by us: the claims are ours, but still checked */

    json.data = ngx_pnalloc(pool, ngx_base64_decoded_length(claims.len));
    if (json.data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(&json, &claims) != NGX_OK
        || ngx_http_upload_link_claims(pool, json.data, json.len, link)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (link->exp <= ngx_time()) {
        *why = "expired";
        return NGX_DECLINED;
    }

    link->token = *token;

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_link_claims(ngx_pool_t *pool, u_char *json, size_t len,
    ngx_http_upload_link_t *link)
{
    u_char      *p;
    cJSON       *root, *app, *prefix, *exp, *size, *files, *nonce;
    ngx_int_t    rc;
    const char  *reason;

    root = cJSON_ParseWithLength((char *) json, len);

    app = cJSON_GetObjectItemCaseSensitive(root, "app");
    prefix = cJSON_GetObjectItemCaseSensitive(root, "prefix");
    exp = cJSON_GetObjectItemCaseSensitive(root, "exp");
    size = cJSON_GetObjectItemCaseSensitive(root, "max_size");
    files = cJSON_GetObjectItemCaseSensitive(root, "max_files");
    nonce = cJSON_GetObjectItemCaseSensitive(root, "nonce");

    rc = NGX_DECLINED;

    if (!cJSON_IsObject(root) || !cJSON_IsString(app)
        || !cJSON_IsString(prefix) || !cJSON_IsNumber(exp)
        || !cJSON_IsNumber(size) || !cJSON_IsNumber(files)
        || !cJSON_IsString(nonce)
        || size->valuedouble < 0 || size->valuedouble > 1e15
        || files->valuedouble < 1 || files->valuedouble > 1e6
        || exp->valuedouble < 0 || exp->valuedouble > 1e11)
    {
        goto done;
    }

    link->app.len = ngx_strlen(app->valuestring);
    link->prefix.len = ngx_strlen(prefix->valuestring);
    link->nonce.len = ngx_strlen(nonce->valuestring);

    if (link->prefix.len > NGX_HTTP_UPLOAD_KEY_MAX
        || link->nonce.len < 8 || link->nonce.len > 64)
    {
        goto done;
    }

    for (p = (u_char *) nonce->valuestring; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
              || (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_'))
        {
            goto done;
        }
    }

    link->app.data = ngx_pstrdup(pool, &(ngx_str_t) {
                                     link->app.len,
                                     (u_char *) app->valuestring });
    link->prefix.data = ngx_pnalloc(pool, link->prefix.len + 1);
    link->nonce.data = ngx_pstrdup(pool, &(ngx_str_t) {
                                   link->nonce.len,
                                   (u_char *) nonce->valuestring });

    if (link->app.data == NULL || link->prefix.data == NULL
        || link->nonce.data == NULL)
    {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(link->prefix.data, prefix->valuestring, link->prefix.len + 1);

    if (ngx_http_upload_validate_app(&link->app, &reason) != NGX_OK) {
        goto done;
    }

    link->exp = (time_t) exp->valuedouble;
    link->max_size = (off_t) size->valuedouble;
    link->max_files = (ngx_uint_t) files->valuedouble;

    rc = NGX_OK;

done:

    cJSON_Delete(root);

    return rc;
}


/*
 * A key prefix is valid when some key can start with it: the prefix and
 * one more character make a valid key (no leading "/", no empty, "." or
 * ".." segment, UTF-8, a key's lengths).
 */

static ngx_int_t
ngx_http_upload_link_prefix_valid(ngx_str_t *prefix)
{
    u_char       buf[NGX_HTTP_UPLOAD_KEY_MAX + 1];
    ngx_str_t    key;
    const char  *reason;

    if (prefix->len == 0) {
        return NGX_OK;
    }

    if (prefix->len >= NGX_HTTP_UPLOAD_KEY_MAX) {
        return NGX_DECLINED;
    }

    ngx_memcpy(buf, prefix->data, prefix->len);
    buf[prefix->len] = 'x';

    key.data = buf;
    key.len = prefix->len + 1;

    return ngx_http_upload_validate_key(&key, &reason);
}


/* base64url(claims) "." base64url(HMAC-SHA256(secret, the first part)) */

ngx_int_t
ngx_http_upload_link_sign(ngx_pool_t *pool, ngx_str_t *secret,
    ngx_http_upload_link_t *link)
{
    u_char     *p, mac[NGX_HTTP_UPLOAD_SHA256_LEN];
    cJSON      *json;
    ngx_str_t   text, claims, sig, raw;

    json = cJSON_CreateObject();

    if (json == NULL
        || ngx_http_upload_add_string(json, "app", &link->app) != NGX_OK
        || ngx_http_upload_add_string(json, "prefix", &link->prefix)
           != NGX_OK
        || cJSON_AddNumberToObject(json, "exp", (double) link->exp) == NULL
        || cJSON_AddNumberToObject(json, "max_size",
                                   (double) link->max_size) == NULL
        || cJSON_AddNumberToObject(json, "max_files",
                                   (double) link->max_files) == NULL
        || ngx_http_upload_add_string(json, "nonce", &link->nonce) != NGX_OK)
    {
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    /* frees "json"; the text ends with a newline, not signed */

    if (ngx_http_upload_json_text(pool, json, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    text.len--;

    p = ngx_pnalloc(pool, ngx_base64_encoded_length(text.len) + 1
                          + ngx_base64_encoded_length(sizeof(mac)));
    if (p == NULL) {
        return NGX_ERROR;
    }

    claims.data = p;
    ngx_encode_base64url(&claims, &text);

    if (ngx_http_upload_link_mac(secret, &claims, mac) != NGX_OK) {
        return NGX_ERROR;
    }

    p[claims.len] = '.';

    raw.data = mac;
    raw.len = sizeof(mac);
    sig.data = p + claims.len + 1;
    ngx_encode_base64url(&sig, &raw);

    link->token.data = p;
    link->token.len = claims.len + 1 + sig.len;

    return NGX_OK;
}


/* Authorization: Bearer <token>, or ?token=<token>; NGX_DECLINED: none */

static ngx_int_t
ngx_http_upload_link_token(ngx_http_request_t *r, ngx_str_t *token)
{
    ngx_table_elt_t  *h;

    h = r->headers_in.authorization;

    if (h && h->value.len > sizeof("Bearer ") - 1
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) == 0)
    {
        token->data = h->value.data + sizeof("Bearer ") - 1;
        token->len = h->value.len - (sizeof("Bearer ") - 1);
        return NGX_OK;
    }

    switch (ngx_http_upload_arg(r, "token", token)) {

    case NGX_OK:
        return NGX_OK;

    case NGX_BUSY:
        /* given twice: which one would count? neither */
        ngx_str_set(token, "?");
        return NGX_OK;

    default:
        return NGX_DECLINED;
    }
}


ngx_int_t
ngx_http_upload_link_token_given(ngx_http_request_t *r)
{
    ngx_str_t  token;

    return ngx_http_upload_link_token(r, &token) == NGX_OK;
}


/*
 * Before anything else of an upload request: a token confines it.  "app"
 * becomes the token's when X-Upload-App is not given.  NGX_OK: go on
 * (*linkp is NULL without a token); else the status of the answer sent.
 */

ngx_int_t
ngx_http_upload_link_confine(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key, ngx_http_upload_link_t **linkp, const char **message)
{
    ngx_int_t                    rc;
    ngx_str_t                    token;
    const char                  *why;
    ngx_http_upload_link_t      *link;
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    *linkp = NULL;

    if (ngx_http_upload_link_token(r, &token) != NGX_OK) {
        if (ulcf->link_required) {
            *message = "uploads here need an upload link's token";
            return NGX_DECLINED;
        }

        return NGX_OK;
    }

    link = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_link_t));
    if (link == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_upload_link_verify(r->pool, ulcf->link_secrets, &token,
                                     link, &why);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        *message = (why[0] == 'e') ? "the upload link has expired"
                                   : "the upload link is invalid";
        return NGX_DECLINED;
    }

    if (ngx_http_upload_find_header(r, "X-Upload-App") == NULL) {
        *app = link->app;

    } else if (app->len != link->app.len
               || ngx_strncmp(app->data, link->app.data, app->len) != 0)
    {
        *message = "the upload link is for another app";
        return NGX_DECLINED;
    }

    if (key && (key->len < link->prefix.len
                || ngx_strncmp(key->data, link->prefix.data,
                               link->prefix.len) != 0))
    {
        *message = "the upload link allows keys under its prefix only";
        return NGX_DECLINED;
    }

    if (link->max_size
        && r->headers_in.content_length_n > link->max_size
        && !ngx_http_upload_arg_present(r, "uploadId"))
    {
        *message = "the file is larger than the upload link allows";
        return NGX_DECLINED;
    }

    *linkp = link;

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_link_denied(ngx_http_request_t *r, const char *message)
{
    return ngx_http_upload_send_error(r, NGX_HTTP_FORBIDDEN, "AccessDenied",
                                      message);
}


/*
 * One more file under the link (a whole upload, or an initiate), then
 * "next"; a file that is not stored gives its count back.
 */

ngx_int_t
ngx_http_upload_link_count(ngx_http_upload_ctx_t *ctx,
    void (*next)(ngx_http_upload_ctx_t *ctx))
{
    u_char                  *p;
    size_t                   argvlen[6];
    ngx_str_t                key;
    const char              *argv[6];
    ngx_http_request_t      *r;
    ngx_http_upload_link_t  *link;

    r = ctx->request;
    link = ctx->link;

    key.len = sizeof("upload:{}:link:") - 1 + link->app.len + link->nonce.len;
    key.data = ngx_pnalloc(r->pool, key.len);
    p = ngx_pnalloc(r->pool, 2 * NGX_INT_T_LEN);

    if (key.data == NULL || p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(key.data, "upload:{%V}:link:%V", &link->app, &link->nonce);

    link->key = key;
    ctx->app_next = next;

    argv[0] = "EVAL";
    argvlen[0] = sizeof("EVAL") - 1;
    argv[1] = ngx_http_upload_link_count_script;
    argvlen[1] = sizeof(ngx_http_upload_link_count_script) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (char *) key.data;
    argvlen[3] = key.len;
    argv[4] = (char *) p;
    argvlen[4] = ngx_sprintf(p, "%ui", link->max_files) - p;
    p += argvlen[4];

    /* the count outlives the link a day: a late upload is still refused */

    argv[5] = (char *) p;
    argvlen[5] = ngx_sprintf(p, "%T", link->exp + 86400) - p;

    switch (ngx_http_upload_redis_command(r, ctx->conf->redis,
                                          ctx->conf->redis_timeout,
                                          ngx_http_upload_link_counted, ctx,
                                          6, argv, argvlen))
    {
    case NGX_OK:
        return NGX_HTTP_UPLOAD_PENDING;

    case NGX_DECLINED:
        return ngx_http_upload_redis_unavailable(r);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static void
ngx_http_upload_link_counted(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    ngx_pool_cleanup_t  *cln;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    if (reply->integer == 0) {
        ngx_http_finalize_request(r, ngx_http_upload_link_denied(r,
                                         "the upload link is used up"));
        return;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    cln->handler = ngx_http_upload_link_uncount;
    cln->data = ctx;

    ctx->app_next(ctx);
}


static void
ngx_http_upload_link_uncount(void *data)
{
    ngx_http_upload_ctx_t *ctx = data;

    size_t                   argvlen[4];
    const char              *argv[4];
    ngx_http_upload_link_t  *link;

    /* stored, or a session made: the file counts */

    if (ctx->committed || ctx->link_kept) {
        return;
    }

    link = ctx->link;

    argv[0] = "EVAL";
    argvlen[0] = sizeof("EVAL") - 1;
    argv[1] = ngx_http_upload_link_uncount_script;
    argvlen[1] = sizeof(ngx_http_upload_link_uncount_script) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (char *) link->key.data;
    argvlen[3] = link->key.len;

    /*
     * Sent once: a count given back twice would let the link take one
     * file more than it allows (ngx_http_upload_redis_detached would
     * send it again after a timeout, when it may have run).
     */

    if (ngx_http_upload_redis_command(NULL, ctx->conf->redis,
                                      ctx->conf->redis_timeout,
                                      ngx_http_upload_link_ignore, NULL,
                                      4, argv, argvlen)
        != NGX_OK)
    {
        ngx_http_upload_link_ignore(NULL, NULL, NULL);
    }
}


static void
ngx_http_upload_link_ignore(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "upload: an upload link's count could not be given "
                      "back after a failed upload");
    }
}


/* the link's claims, for the post callback */

ngx_int_t
ngx_http_upload_link_json(ngx_http_upload_link_t *link, void *json)
{
    cJSON  *claims;

    claims = cJSON_AddObjectToObject(json, "link");

    if (claims == NULL
        || ngx_http_upload_add_string(claims, "app", &link->app) != NGX_OK
        || ngx_http_upload_add_string(claims, "prefix", &link->prefix)
           != NGX_OK
        || cJSON_AddNumberToObject(claims, "exp", (double) link->exp) == NULL
        || cJSON_AddNumberToObject(claims, "max_size",
                                   (double) link->max_size) == NULL
        || cJSON_AddNumberToObject(claims, "max_files",
                                   (double) link->max_files) == NULL
        || ngx_http_upload_add_string(claims, "nonce", &link->nonce)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the content handler of "upload_link on": GET <location><token> */

ngx_int_t
ngx_http_upload_link_handler(ngx_http_request_t *r)
{
    size_t                       argvlen[2];
    ngx_int_t                    rc;
    ngx_str_t                    token;
    const char                  *argv[2], *why;
    ngx_http_upload_link_t      *link;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_upload_loc_conf_t  *ulcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_upload_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "MethodNotAllowed",
                                          "an upload link is opened with "
                                          "GET");
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    token.data = r->uri.data + clcf->name.len;
    token.len = r->uri.len > clcf->name.len ? r->uri.len - clcf->name.len : 0;

    link = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_link_t));
    if (link == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_upload_link_verify(r->pool, ulcf->link_secrets, &token,
                                     link, &why);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        return ngx_http_upload_link_refuse(r, why);
    }

    /* used up? */

    link->key.len = sizeof("upload:{}:link:") - 1 + link->app.len
                    + link->nonce.len;
    link->key.data = ngx_pnalloc(r->pool, link->key.len);
    if (link->key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(link->key.data, "upload:{%V}:link:%V", &link->app,
                &link->nonce);

    argv[0] = "GET";
    argvlen[0] = 3;
    argv[1] = (char *) link->key.data;
    argvlen[1] = link->key.len;

    rc = ngx_http_upload_redis_command(r, ulcf->redis, ulcf->redis_timeout,
                                       ngx_http_upload_link_page_used, link,
                                       2, argv, argvlen);
    if (rc == NGX_DECLINED) {
        return ngx_http_upload_redis_unavailable(r);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_upload_link_page_used(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_link_t *link = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    if (reply->type == REDIS_REPLY_STRING
        && (ngx_uint_t) ngx_atoi((u_char *) reply->str, reply->len)
           >= link->max_files)
    {
        ngx_http_finalize_request(r, ngx_http_upload_link_refuse(r,
                                                                 "used up"));
        return;
    }

    ngx_http_finalize_request(r, ngx_http_upload_link_page(r, link));
}


/*
 * A link that cannot be used: a page that says why, or JSON for a client
 * that asks for it; never the upload page.
 */

static ngx_int_t
ngx_http_upload_link_refuse(ngx_http_request_t *r, const char *why)
{
    u_char           *p;
    ngx_str_t         text;
    ngx_table_elt_t  *accept;

    accept = r->headers_in.accept;

    if (accept && ngx_strlcasestrn(accept->value.data,
                                   accept->value.data + accept->value.len,
                                   (u_char *) "application/json", 16 - 1)
       && !ngx_strlcasestrn(accept->value.data,
                            accept->value.data + accept->value.len,
                            (u_char *) "text/html", 9 - 1))
    {
        return ngx_http_upload_send_error(r, NGX_HTTP_FORBIDDEN,
                                          "AccessDenied",
                                          why[0] == 'e'
                                          ? "the upload link has expired"
                                          : why[0] == 'u'
                                            ? "the upload link is used up"
                                            : "the upload link is invalid");
    }

    p = ngx_pnalloc(r->pool, 512);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.data = p;
    text.len = ngx_sprintf(p,
                   "<!DOCTYPE html>\n<html lang=\"en\"><head>"
                   "<meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" "
                   "content=\"width=device-width, initial-scale=1\">"
                   "<title>Upload link %s</title></head>\n"
                   "<body><h1>This upload link is %s</h1>\n"
                   "<p>%s</p></body></html>\n",
                   why, why,
                   why[0] == 'e' ? "Ask for a new link."
                   : why[0] == 'u' ? "Every upload it allowed has been made."
                   : "It was changed or was never valid.") - p;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "upload: 403 upload link %s", why);

    if (ngx_http_upload_link_csp(r, NULL) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_upload_send_typed(r, NGX_HTTP_FORBIDDEN,
                                      &ngx_http_upload_link_html, &text);
}


/* Content-Security-Policy: nothing but the page's own nonce'd code */

ngx_int_t
ngx_http_upload_link_csp(ngx_http_request_t *r, ngx_str_t *nonce)
{
    u_char     *p;
    ngx_str_t   value;

    p = ngx_pnalloc(r->pool, 512);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;

    if (nonce) {
        p = ngx_sprintf(p, "default-src 'none'; script-src 'nonce-%V'; "
                        "style-src 'nonce-%V'; connect-src 'self'; "
                        "img-src data:; ", nonce, nonce);

    } else {
        p = ngx_cpymem(p, "default-src 'none'; ",
                       sizeof("default-src 'none'; ") - 1);
    }

    p = ngx_cpymem(p, "base-uri 'none'; form-action 'none'; "
                   "frame-ancestors 'none'",
                   sizeof("base-uri 'none'; form-action 'none'; "
                          "frame-ancestors 'none'") - 1);

    value.len = p - value.data;

    if (ngx_http_upload_set_header(r, "Content-Security-Policy", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "no-referrer");

    if (ngx_http_upload_set_header(r, "Referrer-Policy", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "nosniff");

    return ngx_http_upload_set_header(r, "X-Content-Type-Options", &value);
}


/* the page with its nonce and its configuration */

static ngx_int_t
ngx_http_upload_link_page(ngx_http_request_t *r,
    ngx_http_upload_link_t *link)
{
    u_char                      *p, *q, *last, rnd[16];
    cJSON                       *cfg;
    size_t                       len;
    ngx_str_t                    nonce, config, page, raw;
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    nonce.data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(sizeof(rnd)));
    if (nonce.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    raw.data = rnd;
    raw.len = sizeof(rnd);
    ngx_encode_base64url(&nonce, &raw);

    cfg = cJSON_CreateObject();

    if (cfg == NULL
        || ngx_http_upload_add_string(cfg, "token", &link->token) != NGX_OK
        || ngx_http_upload_add_string(cfg, "upload_url",
                                      &ulcf->link_upload_url) != NGX_OK
        || ngx_http_upload_add_string(cfg, "app", &link->app) != NGX_OK
        || ngx_http_upload_add_string(cfg, "prefix", &link->prefix)
           != NGX_OK
        || cJSON_AddNumberToObject(cfg, "max_size", (double) link->max_size)
           == NULL
        || cJSON_AddNumberToObject(cfg, "max_files",
                                   (double) link->max_files) == NULL
        || cJSON_AddNumberToObject(cfg, "expires", (double) link->exp)
           == NULL
        || cJSON_AddNumberToObject(cfg, "part_size", 8388608) == NULL)
    {
        cJSON_Delete(cfg);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_upload_json_text(r->pool, cfg, &config) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* inside <script>: "</" and "<!--" must not appear as such */

    len = 0;

    for (p = config.data; p < config.data + config.len; p++) {
        len += (*p == '<' || *p == '>' || *p == '&') ? 6 : 1;
    }

    page.data = ngx_pnalloc(r->pool, sizeof(ngx_http_upload_page) + len
                                     + 4 * nonce.len);
    if (page.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q = page.data;
    last = (u_char *) ngx_http_upload_page + sizeof(ngx_http_upload_page) - 1;

    for (p = (u_char *) ngx_http_upload_page; p < last; /* void */) {

        if (last - p >= 9 && ngx_strncmp(p, "{{NONCE}}", 9) == 0) {
            q = ngx_cpymem(q, nonce.data, nonce.len);
            p += 9;
            continue;
        }

        if (last - p >= 10 && ngx_strncmp(p, "{{CONFIG}}", 10) == 0) {
            for (len = 0; len < config.len; len++) {
                switch (config.data[len]) {
                case '<':
                    q = ngx_cpymem(q, "\\u003c", 6);
                    break;
                case '>':
                    q = ngx_cpymem(q, "\\u003e", 6);
                    break;
                case '&':
                    q = ngx_cpymem(q, "\\u0026", 6);
                    break;
                default:
                    *q++ = config.data[len];
                }
            }

            p += 10;
            continue;
        }

        *q++ = *p++;
    }

    page.len = q - page.data;

    if (ngx_http_upload_link_csp(r, &nonce) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_upload_send_typed(r, NGX_HTTP_OK,
                                      &ngx_http_upload_link_html, &page);
}


/*
 * POST <registration location>links {"appid", "prefix", "ttl",
 * "max_size", "max_files"} -> 201 {"url", "token", "expires"}
 */

ngx_int_t
ngx_http_upload_link_mint(ngx_http_request_t *r)
{
    ngx_int_t               rc;
    ngx_str_t               none;
    ngx_http_upload_ctx_t  *ctx;

    ngx_str_null(&none);

    rc = ngx_http_upload_request_ctx(r, &none, &none, &ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->conf->link_secrets == NULL) {
        return ngx_http_upload_send_error(r, NGX_HTTP_NOT_FOUND,
                                          "NoLinkSecret",
                                          "no upload_link_secret is set "
                                          "here: links cannot be made");
    }

    rc = ngx_http_upload_body_collect(ctx, NGX_HTTP_UPLOAD_LINK_MAX,
                                      ngx_http_upload_link_mint_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return ngx_http_upload_body_error(r, rc);
    }

    return NGX_DONE;
}


static void
ngx_http_upload_link_mint_body(ngx_http_upload_ctx_t *ctx)
{
    u_char                  rnd[NGX_HTTP_UPLOAD_LINK_NONCE], *p;
    cJSON                  *root, *appid, *prefix, *ttl, *size, *files, *out;
    ngx_str_t               url, *secret, raw;
    const char             *reason, *message;
    ngx_http_request_t     *r;
    ngx_http_upload_link_t  link;

    r = ctx->request;

    root = cJSON_ParseWithLength((char *) ctx->json->pos,
                                 ctx->json->last - ctx->json->pos);

    appid = cJSON_GetObjectItemCaseSensitive(root, "appid");
    prefix = cJSON_GetObjectItemCaseSensitive(root, "prefix");
    ttl = cJSON_GetObjectItemCaseSensitive(root, "ttl");
    size = cJSON_GetObjectItemCaseSensitive(root, "max_size");
    files = cJSON_GetObjectItemCaseSensitive(root, "max_files");

    ngx_memzero(&link, sizeof(ngx_http_upload_link_t));

    message = NULL;

    if (!cJSON_IsObject(root) || !cJSON_IsString(appid)) {
        message = "the body must be a JSON object with an \"appid\"";

    } else if ((prefix && !cJSON_IsString(prefix))
               || (ttl && (!cJSON_IsNumber(ttl) || ttl->valuedouble < 1
                           || ttl->valuedouble > 31536000))
               || (size && (!cJSON_IsNumber(size) || size->valuedouble < 0
                            || size->valuedouble > 1e15
                            || size->valuedouble
                               != (double) (off_t) size->valuedouble))
               || (files && (!cJSON_IsNumber(files)
                             || files->valuedouble < 1
                             || files->valuedouble > 1e6)))
    {
        message = "\"prefix\" is a string; \"ttl\" 1 to 31536000 seconds, "
                  "\"max_size\" whole bytes up to 10^15 (0: any), "
                  "\"max_files\" 1 to 1000000";
    }

    if (message == NULL) {
        link.app.len = ngx_strlen(appid->valuestring);
        link.app.data = (u_char *) appid->valuestring;

        if (ngx_http_upload_validate_app(&link.app, &reason) != NGX_OK) {
            message = reason;
        }
    }

    /* a prefix no key could have would make a dead link */

    if (message == NULL && prefix) {
        link.prefix.len = ngx_strlen(prefix->valuestring);
        link.prefix.data = (u_char *) prefix->valuestring;

        if (ngx_http_upload_link_prefix_valid(&link.prefix) != NGX_OK) {
            message = "\"prefix\" must be the start of a valid key";
        }
    }

    if (message) {
        cJSON_Delete(root);
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_BAD_REQUEST,
                                         "InvalidArgument", message));
        return;
    }

    link.app.data = ngx_pstrdup(r->pool, &link.app);

    if (prefix && link.prefix.len) {
        link.prefix.data = ngx_pstrdup(r->pool, &link.prefix);

    } else {
        ngx_str_set(&link.prefix, "");
    }

    link.exp = ngx_time() + (ttl ? (time_t) ttl->valuedouble : 86400);
    link.max_size = size ? (off_t) size->valuedouble : 0;
    link.max_files = files ? (ngx_uint_t) files->valuedouble : 1;

    cJSON_Delete(root);

    link.nonce.data = ngx_pnalloc(r->pool, 2 * sizeof(rnd));

    if (link.app.data == NULL || link.prefix.data == NULL
        || link.nonce.data == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    raw.data = rnd;
    raw.len = sizeof(rnd);
    ngx_encode_base64url(&link.nonce, &raw);

    secret = ctx->conf->link_secrets->elts;

    if (ngx_http_upload_link_sign(r->pool, &secret[0], &link) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (link.token.len > NGX_HTTP_UPLOAD_LINK_MAX) {
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_BAD_REQUEST,
                                         "InvalidArgument",
                                         "the link would be too long"));
        return;
    }

    url.len = ctx->conf->link_url.len + link.token.len;
    url.data = ngx_pnalloc(r->pool, url.len);
    if (url.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(url.data, ctx->conf->link_url.data,
                   ctx->conf->link_url.len);
    ngx_memcpy(p, link.token.data, link.token.len);

    out = cJSON_CreateObject();

    if (out == NULL
        || ngx_http_upload_add_string(out, "url", &url) != NGX_OK
        || ngx_http_upload_add_string(out, "token", &link.token) != NGX_OK
        || cJSON_AddNumberToObject(out, "expires", (double) link.exp) == NULL)
    {
        cJSON_Delete(out);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "upload: upload link for app \"%V\", prefix \"%V\", "
                  "%ui files, until %T", &link.app, &link.prefix,
                  link.max_files, link.exp);

    ngx_http_finalize_request(r, ngx_http_upload_send_json(r,
                                     NGX_HTTP_CREATED, out));
}
