
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Callbacks to an upload's app, as nginx subrequests: the module never
 * opens a connection itself.  The subrequest goes to the location named by
 * "upload_callback", which the operator writes as
 *
 *     location = /_upload_callback {
 *         internal;
 *         proxy_pass $upload_callback_url;
 *         proxy_method POST;
 *         proxy_set_body $upload_callback_body;
 *     }
 *
 * so nginx's own timeouts, resolver, TLS and buffers apply.  The module
 * gives the subrequest only its own headers (Content-Type, X-Upload-App,
 * X-Upload-Timestamp, X-Upload-Signature): nothing of the client's.
 *
 *     pre:  before the body (and before "100 Continue"): 2xx goes on;
 *           another status is 403 CallbackRejected; no answer is 502
 *           CallbackFailed (or goes on: upload_callback_pre_failure allow)
 *     post: once the object is durable, before the answer, which then
 *           carries "callback": {"status", "body"}; a failure is 203
 *
 * The URLs come from the app's registration, or from the client's
 * X-Upload-Callback-Pre / -Post headers when they start with a prefix of
 * "upload_callback_allow" (a client-chosen URL is an SSRF vector).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>
#include <openssl/hmac.h>

#include "ngx_http_upload_session.h"


#define NGX_HTTP_UPLOAD_CALLBACK_BODY_MAX  4096


typedef struct {
    ngx_str_t                     url;
    ngx_str_t                     body;
    ngx_uint_t                    status;     /* the app's, 0: no answer */
    ngx_str_t                     response;   /* up to 4 KiB of it */
    ngx_http_request_t           *sr;
    unsigned                      post:1;
    unsigned                      done:1;
    void                        (*next)(ngx_http_upload_ctx_t *ctx);
    void                        (*then)(ngx_http_upload_ctx_t *ctx);
} ngx_http_upload_callback_t;


static ngx_int_t ngx_http_upload_callback_header_url(
    ngx_http_upload_ctx_t *ctx, const char *name, ngx_str_t *url);
static ngx_int_t ngx_http_upload_callback_allowed(
    ngx_http_upload_loc_conf_t *ulcf, ngx_str_t *url);
static cJSON *ngx_http_upload_callback_pre_json(ngx_http_upload_ctx_t *ctx);
static cJSON *ngx_http_upload_callback_post_json(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_callback_call(ngx_http_upload_ctx_t *ctx,
    ngx_str_t *url, cJSON *json, void (*next)(ngx_http_upload_ctx_t *ctx),
    void (*then)(ngx_http_upload_ctx_t *ctx));
static ngx_int_t ngx_http_upload_callback_headers(ngx_http_upload_ctx_t *ctx,
    ngx_http_request_t *sr);
static ngx_int_t ngx_http_upload_callback_add_header(ngx_http_request_t *sr,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_upload_callback_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static void ngx_http_upload_callback_resume(ngx_http_request_t *r);
static void ngx_http_upload_callback_pre_done(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_callback_json(ngx_http_upload_ctx_t *ctx,
    void *json, ngx_uint_t post);
static void ngx_http_upload_callback_post_done(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_callback_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_upload_callback_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_upload_callback_vars[] = {

    { ngx_string("upload_callback_url"), NULL,
      ngx_http_upload_callback_variable,
      offsetof(ngx_http_upload_callback_t, url),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("upload_callback_body"), NULL,
      ngx_http_upload_callback_variable,
      offsetof(ngx_http_upload_callback_t, body),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;


ngx_int_t
ngx_http_upload_callback_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_upload_callback_body_filter;

    return NGX_OK;
}


/*
 * The reply of a callback subrequest goes nowhere: its first 4 KiB are
 * kept for the upload's answer, the buffers are marked as sent.
 */

static ngx_int_t
ngx_http_upload_callback_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                       len;
    ngx_chain_t                 *cl;
    ngx_http_upload_ctx_t       *ctx;
    ngx_http_upload_callback_t  *cb;

    if (r == r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_upload_module);

    if (ctx == NULL || ctx->callback == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    cb = ctx->callback;

    if (cb->sr != r) {
        return ngx_http_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {

        if (ngx_buf_in_memory(cl->buf)) {
            len = ngx_min((size_t) (cl->buf->last - cl->buf->pos),
                          NGX_HTTP_UPLOAD_CALLBACK_BODY_MAX
                          - cb->response.len);

            if (len) {
                if (cb->response.data == NULL) {
                    cb->response.data = ngx_pnalloc(r->pool,
                                            NGX_HTTP_UPLOAD_CALLBACK_BODY_MAX);
                    if (cb->response.data == NULL) {
                        return NGX_ERROR;
                    }
                }

                ngx_memcpy(cb->response.data + cb->response.len,
                           cl->buf->pos, len);
                cb->response.len += len;
            }

            cl->buf->pos = cl->buf->last;
        }

        if (cl->buf->in_file) {
            cl->buf->file_pos = cl->buf->file_last;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_upload_callback_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_upload_callback_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* in the subrequest: the main request's callback in progress */

static ngx_int_t
ngx_http_upload_callback_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                   *s;
    ngx_http_upload_ctx_t       *ctx;
    ngx_http_upload_callback_t  *cb;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_upload_module);

    if (ctx == NULL || ctx->callback == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    cb = ctx->callback;
    s = (ngx_str_t *) ((char *) cb + data);

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * Once the app is known (ctx->app_reg): the callback URLs.  The post one
 * is kept in ctx->callback_post; NGX_DECLINED: a client's URL is refused
 * (the answer is sent).
 */

static ngx_int_t
ngx_http_upload_callback_urls(ngx_http_upload_ctx_t *ctx, ngx_str_t *pre)
{
    ngx_str_t                    post;
    ngx_http_request_t          *r;
    ngx_http_upload_app_t       *app;
    ngx_http_upload_loc_conf_t  *ulcf;

    r = ctx->request;
    ulcf = ctx->conf;
    app = ctx->app_reg;

    if (ngx_http_upload_callback_header_url(ctx, "X-Upload-Callback-Pre",
                                            pre)
        != NGX_OK
        || ngx_http_upload_callback_header_url(ctx, "X-Upload-Callback-Post",
                                               &post)
           != NGX_OK)
    {
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_BAD_REQUEST,
                                         "CallbackNotAllowed",
                                         "a callback URL in the request is "
                                         "not under an upload_callback_allow "
                                         "prefix"));
        return NGX_DECLINED;
    }

    /* the app's registration wins, unless the operator prefers headers */

    if (app && app->pre.len && !(pre->len && ulcf->callback_prefer_header)) {
        *pre = app->pre;
    }

    if (app && app->post.len && !(post.len && ulcf->callback_prefer_header))
    {
        post = app->post;
    }

    ctx->callback_post = post;

    return NGX_OK;
}


/* before the body: the pre callback if there is one, then "next" */

void
ngx_http_upload_callback_pre(ngx_http_upload_ctx_t *ctx,
    void (*next)(ngx_http_upload_ctx_t *ctx))
{
    ngx_int_t  rc;
    ngx_str_t  pre;

    if (ngx_http_upload_callback_urls(ctx, &pre) != NGX_OK) {
        return;
    }

    if (pre.len == 0) {
        next(ctx);
        return;
    }

    rc = ngx_http_upload_callback_call(ctx, &pre,
                                       ngx_http_upload_callback_pre_json(ctx),
                                       ngx_http_upload_callback_pre_done,
                                       next);

    ngx_http_upload_finalize(ctx->request, rc);
}


/* a complete: only the post callback's URL, then "next" */

void
ngx_http_upload_callback_post_only(ngx_http_upload_ctx_t *ctx,
    void (*next)(ngx_http_upload_ctx_t *ctx))
{
    ngx_str_t  pre;

    if (ngx_http_upload_callback_urls(ctx, &pre) == NGX_OK) {
        next(ctx);
    }
}


static ngx_int_t
ngx_http_upload_callback_header_url(ngx_http_upload_ctx_t *ctx,
    const char *name, ngx_str_t *url)
{
    ngx_table_elt_t  *h;

    ngx_str_null(url);

    h = ngx_http_upload_find_header(ctx->request, name);
    if (h == NULL) {
        return NGX_OK;
    }

    if (ngx_http_upload_callback_url_valid(&h->value) != NGX_OK
        || ngx_http_upload_callback_allowed(ctx->conf, &h->value) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "upload: %s \"%V\" refused (upload_callback_allow)",
                      name, &h->value);
        return NGX_DECLINED;
    }

    *url = h->value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_callback_allowed(ngx_http_upload_loc_conf_t *ulcf,
    ngx_str_t *url)
{
    ngx_str_t   *prefix;
    ngx_uint_t   i;

    if (ulcf->callback_allow == NULL) {
        return NGX_DECLINED;
    }

    prefix = ulcf->callback_allow->elts;

    for (i = 0; i < ulcf->callback_allow->nelts; i++) {
        if (url->len >= prefix[i].len
            && ngx_strncmp(url->data, prefix[i].data, prefix[i].len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static cJSON *
ngx_http_upload_callback_pre_json(ngx_http_upload_ctx_t *ctx)
{
    cJSON                      *json, *metadata;
    ngx_http_request_t         *r;
    ngx_http_upload_session_t  *session;

    r = ctx->request;
    session = ctx->session;

    json = cJSON_CreateObject();
    if (json == NULL) {
        return NULL;
    }

    metadata = NULL;

    if (session && session->metadata.len) {
        metadata = cJSON_ParseWithLength((char *) session->metadata.data,
                                         session->metadata.len);
    }

    if (cJSON_AddStringToObject(json, "event", "pre") == NULL
        || ngx_http_upload_add_string(json, "appid", &ctx->app) != NGX_OK
        || ngx_http_upload_add_string(json, "key", &ctx->key) != NGX_OK
        || ((session && session->name.len)
            ? ngx_http_upload_add_string(json, "name", &session->name)
              != NGX_OK
            : cJSON_AddNullToObject(json, "name") == NULL)
        || (session
            ? (session->size >= 0
               ? cJSON_AddNumberToObject(json, "size",
                                         (double) session->size) == NULL
               : cJSON_AddNullToObject(json, "size") == NULL)
            : (r->headers_in.content_length_n >= 0
               ? cJSON_AddNumberToObject(json, "size",
                                  (double) r->headers_in.content_length_n)
                 == NULL
               : cJSON_AddNullToObject(json, "size") == NULL))
        || ((session && session->content_type.len)
            ? ngx_http_upload_add_string(json, "content_type",
                                         &session->content_type) != NGX_OK
            : ((!session && r->headers_in.content_type)
               ? ngx_http_upload_add_string(json, "content_type",
                                      &r->headers_in.content_type->value)
                 != NGX_OK
               : cJSON_AddNullToObject(json, "content_type") == NULL))
        || (session
            ? ngx_http_upload_add_string(json, "upload_id", &session->id)
              != NGX_OK
            : cJSON_AddNullToObject(json, "upload_id") == NULL)
        || ngx_http_upload_add_string(json, "client_ip",
                                      &r->connection->addr_text) != NGX_OK)
    {
        cJSON_Delete(metadata);
        cJSON_Delete(json);
        return NULL;
    }

    if (metadata) {
        cJSON_AddItemToObject(json, "metadata", metadata);

    } else if (cJSON_AddNullToObject(json, "metadata") == NULL) {
        cJSON_Delete(json);
        return NULL;
    }

    return json;
}


/*
 * Where an object's answer would go out: the post callback first, if the
 * upload has one, then ctx->reply.
 */

ngx_int_t
ngx_http_upload_callback_post(ngx_http_upload_ctx_t *ctx)
{
    if (ctx->callback_post.len == 0 || !ctx->index) {
        return ctx->reply(ctx);
    }

    return ngx_http_upload_callback_call(ctx, &ctx->callback_post,
                                         ngx_http_upload_callback_post_json(
                                             ctx),
                                         ngx_http_upload_callback_post_done,
                                         NULL);
}


static cJSON *
ngx_http_upload_callback_post_json(ngx_http_upload_ctx_t *ctx)
{
    u_char                      hex[2 * NGX_HTTP_UPLOAD_SHA256_LEN];
    cJSON                      *json, *metadata;
    ngx_str_t                   url, sha256, *etag;
    ngx_http_request_t         *r;
    ngx_http_upload_object_t    obj;
    ngx_http_upload_session_t  *session;

    r = ctx->request;
    session = ctx->session;

    if (ngx_http_upload_object_url(r, &ctx->app, &ctx->key, &url) != NGX_OK
        || ngx_http_upload_digest_hex(r->pool, ctx, &obj) != NGX_OK)
    {
        return NULL;
    }

    sha256.data = hex;
    sha256.len = ngx_hex_dump(hex, ctx->sha256, sizeof(ctx->sha256)) - hex;

    etag = ctx->etag.len ? &ctx->etag : (obj.md5.len ? &obj.md5 : &sha256);

    json = cJSON_CreateObject();
    if (json == NULL) {
        return NULL;
    }

    metadata = NULL;

    if (session && session->metadata.len) {
        metadata = cJSON_ParseWithLength((char *) session->metadata.data,
                                         session->metadata.len);
    }

    if (cJSON_AddStringToObject(json, "event", "post") == NULL
        || ngx_http_upload_add_string(json, "appid", &ctx->app) != NGX_OK
        || ngx_http_upload_add_string(json, "key", &ctx->key) != NGX_OK
        || cJSON_AddNumberToObject(json, "size", (double) ctx->size) == NULL
        || ngx_http_upload_add_string(json, "etag", etag) != NGX_OK
        || ngx_http_upload_add_string(json, "sha256", &sha256) != NGX_OK
        || ngx_http_upload_add_string(json, "url", &url) != NGX_OK
        || (session
            ? ngx_http_upload_add_string(json, "upload_id", &session->id)
              != NGX_OK
            : cJSON_AddNullToObject(json, "upload_id") == NULL)
        || cJSON_AddBoolToObject(json, "dedup", ctx->deduped) == NULL
        || (ctx->link
            && ngx_http_upload_link_json(ctx->link, json) != NGX_OK))
    {
        cJSON_Delete(metadata);
        cJSON_Delete(json);
        return NULL;
    }

    if (metadata) {
        cJSON_AddItemToObject(json, "metadata", metadata);

    } else if (cJSON_AddNullToObject(json, "metadata") == NULL) {
        cJSON_Delete(json);
        return NULL;
    }

    return json;
}


static ngx_int_t
ngx_http_upload_callback_call(ngx_http_upload_ctx_t *ctx, ngx_str_t *url,
    cJSON *json, void (*next)(ngx_http_upload_ctx_t *ctx),
    void (*then)(ngx_http_upload_ctx_t *ctx))
{
    ngx_http_request_t          *r, *sr;
    ngx_http_upload_callback_t  *cb;
    ngx_http_post_subrequest_t  *ps;

    r = ctx->request;

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cb = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_callback_t));
    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));

    if (cb == NULL || ps == NULL) {
        cJSON_Delete(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* frees "json" */

    if (ngx_http_upload_json_text(r->pool, json, &cb->body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cb->url = *url;
    cb->next = next;
    cb->then = then;
    cb->post = (next == ngx_http_upload_callback_post_done);
    ctx->callback = cb;

    if (ctx->conf->callback_uri.len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "upload: the app of \"%V\" has a callback but "
                      "\"upload_callback\" is not set here", &ctx->key);

        /* as a callback that got no answer */
        cb->done = 1;
        next(ctx);
        return NGX_HTTP_UPLOAD_PENDING;
    }

    ps->handler = ngx_http_upload_callback_done;
    ps->data = ctx;

    /*
     * Not NGX_HTTP_SUBREQUEST_IN_MEMORY: a reply larger than its buffer
     * would fail the client's connection.  The module's body filter keeps
     * the first 4 KiB of the reply and drops the rest.
     */

    if (ngx_http_subrequest(r, &ctx->conf->callback_uri, NULL, &sr, ps,
                            NGX_HTTP_SUBREQUEST_WAITED)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cb->sr = sr;

    sr->method = NGX_HTTP_POST;
    ngx_str_set(&sr->method_name, "POST");

    if (ngx_http_upload_callback_headers(ctx, sr) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "upload: %s callback of \"%V/%V\" to \"%V\"",
                  cb->post ? "post" : "pre", &ctx->app, &ctx->key, url);

    /* nginx runs the main request again once the subrequest is done */

    r->write_event_handler = ngx_http_upload_callback_resume;

    return NGX_HTTP_UPLOAD_PENDING;
}


/*
 * The subrequest's headers are the module's only: the client's (cookies,
 * Authorization, Expect, its body's length) must not reach the app.
 */

static ngx_int_t
ngx_http_upload_callback_headers(ngx_http_upload_ctx_t *ctx,
    ngx_http_request_t *sr)
{
    u_char                      *p, mac[EVP_MAX_MD_SIZE];
    ngx_str_t                    value, ts;
    unsigned int                 len;
    HMAC_CTX                    *hmac;
    ngx_http_upload_app_t       *app;
    ngx_http_upload_callback_t  *cb;

    cb = ctx->callback;
    app = ctx->app_reg;

    if (ngx_list_init(&sr->headers_in.headers, sr->pool, 4,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    sr->headers_in.content_length = NULL;
    sr->headers_in.content_length_n = -1;
    sr->headers_in.content_type = NULL;
    sr->headers_in.transfer_encoding = NULL;
    sr->headers_in.chunked = 0;
    sr->headers_in.expect = NULL;

    p = ngx_pnalloc(sr->pool, NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ts.data = p;
    ts.len = ngx_sprintf(p, "%T", ngx_time()) - p;

    ngx_str_set(&value, "application/json");

    if (ngx_http_upload_callback_add_header(sr, "Content-Type", &value)
        != NGX_OK
        || ngx_http_upload_callback_add_header(sr, "X-Upload-App", &ctx->app)
           != NGX_OK
        || ngx_http_upload_callback_add_header(sr, "X-Upload-Timestamp", &ts)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (app == NULL || app->secret.len == 0) {
        return NGX_OK;
    }

    /* sha256=<hex HMAC-SHA256(secret, timestamp "." body)> */

    hmac = HMAC_CTX_new();
    if (hmac == NULL) {
        return NGX_ERROR;
    }

    if (HMAC_Init_ex(hmac, app->secret.data, (int) app->secret.len,
                     EVP_sha256(), NULL) != 1
        || HMAC_Update(hmac, ts.data, ts.len) != 1
        || HMAC_Update(hmac, (u_char *) ".", 1) != 1
        || HMAC_Update(hmac, cb->body.data, cb->body.len) != 1
        || HMAC_Final(hmac, mac, &len) != 1)
    {
        HMAC_CTX_free(hmac);
        return NGX_ERROR;
    }

    HMAC_CTX_free(hmac);

    p = ngx_pnalloc(sr->pool, sizeof("sha256=") - 1 + 2 * len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    p = ngx_cpymem(p, "sha256=", sizeof("sha256=") - 1);
    value.len = ngx_hex_dump(p, mac, len) - value.data;

    return ngx_http_upload_callback_add_header(sr, "X-Upload-Signature",
                                               &value);
}


static ngx_int_t
ngx_http_upload_callback_add_header(ngx_http_request_t *sr,
    const char *name, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&sr->headers_in.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;
    h->lowcase_key = ngx_pnalloc(sr->pool, h->key.len);
    if (h->lowcase_key == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(h->lowcase_key, h->key.data, h->key.len);

    return NGX_OK;
}


/* the subrequest is finalized: what the app said, if it said anything */

static ngx_int_t
ngx_http_upload_callback_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_upload_ctx_t *ctx = data;

    ngx_uint_t                   level;
    ngx_http_upload_callback_t  *cb;

    cb = ctx->callback;
    cb->done = 1;

    if (sr->upstream && sr->upstream->headers_in.status_n) {
        cb->status = sr->upstream->headers_in.status_n;
    }

    if (cb->status == 0) {
        cb->response.len = 0;
    }

    level = (cb->status >= 200 && cb->status < 300) ? NGX_LOG_INFO
                                                     : NGX_LOG_WARN;

    ngx_log_error(level, sr->connection->log, 0,
                  "upload: %s callback to \"%V\" answered %ui%s",
                  cb->post ? "post" : "pre", &cb->url, cb->status,
                  cb->status ? "" : " (no answer: unreachable, timed out or "
                                    "not proxied)");

    /*
     * The subrequest's failure is the callback's, not the upload's: an
     * error passed on would end the main request (a reply larger than
     * subrequest_output_buffer_size, say).  A client that went away is
     * the main request's, and ends it.
     */

    if (rc == NGX_HTTP_CLIENT_CLOSED_REQUEST || sr->connection->error) {
        return rc;
    }

    return NGX_OK;
}


static void
ngx_http_upload_callback_resume(ngx_http_request_t *r)
{
    ngx_http_upload_ctx_t       *ctx;
    ngx_http_upload_callback_t  *cb;

    r->write_event_handler = ngx_http_request_empty_handler;

    ctx = ngx_http_get_module_ctx(r, ngx_http_upload_module);
    cb = ctx->callback;

    if (!cb->done) {
        /* woken early (a write event): the subrequest still runs */
        r->write_event_handler = ngx_http_upload_callback_resume;
        return;
    }

    if (r->connection->error) {
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        return;
    }

    cb->next(ctx);
}


/*
 * The pre callback's verdict: 2xx goes on, another status refuses, no
 * answer fails (or goes on, with upload_callback_pre_failure allow).
 */

static void
ngx_http_upload_callback_pre_done(ngx_http_upload_ctx_t *ctx)
{
    cJSON                       *json, *error;
    ngx_uint_t                   status;
    const char                  *code, *message;
    ngx_http_request_t          *r;
    ngx_http_upload_callback_t  *cb;

    r = ctx->request;
    cb = ctx->callback;

    if (cb->status >= 200 && cb->status < 300) {
        cb->then(ctx);
        return;
    }

    if (cb->status == 0 && ctx->conf->callback_pre_failure_allow) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "upload: pre callback failed, the upload goes on "
                      "(upload_callback_pre_failure allow)");
        cb->then(ctx);
        return;
    }

    if (cb->status) {
        status = NGX_HTTP_FORBIDDEN;
        code = "CallbackRejected";
        message = "the app refused this upload";

    } else {
        status = NGX_HTTP_BAD_GATEWAY;
        code = "CallbackFailed";
        message = "the app's pre-upload callback did not answer";
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "upload: %ui %s: %s", status, code, message);

    /* the body is never read: no "100 Continue" */

    ngx_http_upload_refuse_body(r);

    json = cJSON_CreateObject();
    error = cJSON_AddObjectToObject(json, "error");

    if (json == NULL || error == NULL
        || cJSON_AddStringToObject(error, "code", code) == NULL
        || cJSON_AddStringToObject(error, "message", message) == NULL
        || ngx_http_upload_callback_json(ctx, json, 0) == NGX_ERROR)
    {
        cJSON_Delete(json);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_finalize_request(r, ngx_http_upload_send_json(r, status, json));
}


/*
 * "callback": {"status": N, "body": <the app's JSON, or its text>} in an
 * answer, or {"error": "CallbackFailed", ...}; NGX_DECLINED when the
 * callback failed (the answer is then 203), NGX_OK when there was none or
 * it succeeded.
 */

ngx_int_t
ngx_http_upload_callback_result(ngx_http_upload_ctx_t *ctx, void *json)
{
    return ngx_http_upload_callback_json(ctx, json, 1);
}


static ngx_int_t
ngx_http_upload_callback_json(ngx_http_upload_ctx_t *ctx, void *json,
    ngx_uint_t post)
{
    cJSON                       *cbj, *body;
    ngx_http_upload_callback_t  *cb;

    cb = ctx->callback;

    /* an object's answer shows its post callback only, not the pre one */

    if (cb == NULL || !cb->done || cb->post != post) {
        return NGX_OK;
    }

    cbj = cJSON_AddObjectToObject(json, "callback");
    if (cbj == NULL) {
        return NGX_ERROR;
    }

    if (cb->status == 0) {
        if (cJSON_AddStringToObject(cbj, "error", "CallbackFailed") == NULL
            || cJSON_AddStringToObject(cbj, "message",
                                       "the app did not answer") == NULL)
        {
            return NGX_ERROR;
        }

        return NGX_DECLINED;
    }

    if (cJSON_AddNumberToObject(cbj, "status", (double) cb->status) == NULL) {
        return NGX_ERROR;
    }

    body = cb->response.len
           ? cJSON_ParseWithLength((char *) cb->response.data,
                                   cb->response.len)
           : NULL;

    if (body) {
        cJSON_AddItemToObject(cbj, "body", body);

    } else if (cb->response.len) {
        /* text, not JSON: a string */

        if (ngx_http_upload_add_string(cbj, "body", &cb->response)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (cJSON_AddNullToObject(cbj, "body") == NULL) {
        return NGX_ERROR;
    }

    if (cb->post && (cb->status < 200 || cb->status >= 300)) {
        if (cJSON_AddStringToObject(cbj, "error", "CallbackFailed") == NULL)
        {
            return NGX_ERROR;
        }

        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the post callback is done, whatever it said: the answer goes out */

static void
ngx_http_upload_callback_post_done(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_upload_finalize(ctx->request, ctx->reply(ctx));
}
