
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * The content handler of "upload on" locations: checks what the client
 * sent before any byte of the body is read, then dispatches on the method.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upload.h"


static ngx_int_t ngx_http_upload_put(ngx_http_request_t *r,
    ngx_str_t *app, ngx_str_t *key);
static ngx_int_t ngx_http_upload_is_form(ngx_http_request_t *r);
static ngx_int_t ngx_http_upload_redirect(ngx_http_request_t *r,
    ngx_str_t *app, ngx_str_t *key);
static ngx_int_t ngx_http_upload_pending(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_upload_put_approve(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_put_go(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_put_lookup(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_put_exists(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_sha256_head(ngx_http_request_t *r,
    ngx_str_t *app);
static void ngx_http_upload_sha256_found(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_sha256_missing(ngx_http_upload_ctx_t *ctx);


ngx_int_t
ngx_http_upload_handler(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_str_t                app, key;
    const char              *reason;
    ngx_http_upload_ctx_t       *ctx;
    ngx_http_upload_link_t      *link;
    ngx_http_upload_loc_conf_t  *ulcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    switch (ngx_http_upload_parse_app(r, &app, &reason)) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "InvalidApp", reason);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!(r->method & (NGX_HTTP_PUT|NGX_HTTP_POST))) {

        /*
         * A body on any other method is read and dropped: left unread it
         * would be taken for the next request on the connection.
         */

        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* a link's token is for uploads to keys, not for the location */

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    if ((ulcf->link_required || ngx_http_upload_link_token_given(r))
        && ((r->method == NGX_HTTP_HEAD
             && ngx_http_upload_arg_present(r, "sha256"))
            || (r->method == NGX_HTTP_GET
                && ngx_http_upload_arg_present(r, "uploads"))))
    {
        return ngx_http_upload_send_error(r, NGX_HTTP_FORBIDDEN,
                                          "AccessDenied",
                                          "an upload link allows uploads "
                                          "only");
    }

    /* is this content stored? on the location itself, no key */

    if (r->method == NGX_HTTP_HEAD && ngx_http_upload_arg_present(r, "sha256"))
    {
        return ngx_http_upload_pending(r,
                   ngx_http_upload_sha256_head(r, &app));
    }

    /* the app's sliced uploads: on the location itself, no key */

    if (r->method == NGX_HTTP_GET && ngx_http_upload_arg_present(r, "uploads"))
    {
        return ngx_http_upload_pending(r,
                   ngx_http_upload_multipart_list(r, &app));
    }

    switch (ngx_http_upload_parse_key(r, &key, &reason)) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "InvalidKey", reason);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* an upload link's token confines the request to its app and prefix */

    rc = ngx_http_upload_link_confine(r, &app, &key, &link, &reason);

    if (rc == NGX_DECLINED) {
        return ngx_http_upload_send_error(r, NGX_HTTP_FORBIDDEN,
                                          "AccessDenied", reason);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (link) {
        if (!(r->method & (NGX_HTTP_PUT|NGX_HTTP_POST))
            && !ngx_http_upload_arg_present(r, "uploadId"))
        {
            return ngx_http_upload_send_error(r, NGX_HTTP_FORBIDDEN,
                                              "AccessDenied",
                                              "an upload link allows "
                                              "uploads only");
        }

        /* the request's ctx starts with its link */

        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->link = link;
        ngx_http_set_ctx(r, ctx, ngx_http_upload_module);
    }

    if (ngx_http_upload_arg_present(r, "uploads")
        || ngx_http_upload_arg_present(r, "uploadId"))
    {
        return ngx_http_upload_pending(r,
                   ngx_http_upload_multipart_handler(r, &app, &key));
    }

    switch (r->method) {

    case NGX_HTTP_PUT:
        return ngx_http_upload_put(r, &app, &key);

    case NGX_HTTP_POST:
        if (ngx_http_upload_is_form(r)) {
            return ngx_http_upload_send_error(r,
                                       NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                       "UnsupportedMediaType",
                                       "form uploads are not supported: "
                                       "send the file as the raw body");
        }

        return ngx_http_upload_put(r, &app, &key);

    case NGX_HTTP_GET:
        if (ngx_http_upload_arg_present(r, "meta")) {
            return ngx_http_upload_pending(r,
                       ngx_http_upload_object_meta(r, &app, &key));
        }

        return ngx_http_upload_redirect(r, &app, &key);

    case NGX_HTTP_HEAD:
        return ngx_http_upload_pending(r,
                   ngx_http_upload_object_meta(r, &app, &key));

    case NGX_HTTP_DELETE:
        return ngx_http_upload_pending(r,
                   ngx_http_upload_object_delete(r, &app, &key));

    default:
        return ngx_http_upload_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "MethodNotAllowed",
                                          "use PUT or POST to upload, GET, "
                                          "HEAD or DELETE on an object");
    }
}


/*
 * The request waits for a callback: keep it alive past the content
 * phase, which finalizes with NGX_DONE and so drops one reference.
 */

static ngx_int_t
ngx_http_upload_pending(ngx_http_request_t *r, ngx_int_t rc)
{
    if (rc != NGX_HTTP_UPLOAD_PENDING) {
        return rc;
    }

    r->main->count++;

    return NGX_DONE;
}


static ngx_int_t
ngx_http_upload_put(ngx_http_request_t *r, ngx_str_t *app, ngx_str_t *key)
{
    ngx_int_t                    rc;
    const char                  *reason;
    ngx_http_upload_ctx_t       *ctx;
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    if (ulcf->max_size
        && r->headers_in.content_length_n > ulcf->max_size)
    {
        return ngx_http_upload_send_error(r,
                                          NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                          "EntityTooLarge",
                                          "the declared Content-Length is "
                                          "larger than upload_max_size");
    }

    /* made already when the request carries an upload link */

    ctx = ngx_http_get_module_ctx(r, ngx_http_upload_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->request = r;
    ctx->conf = ulcf;
    ctx->app = *app;
    ctx->key = *key;
    ctx->hashes = ulcf->hashes;
    ctx->fd = NGX_INVALID_FILE;
    ctx->record = ngx_http_upload_object_save;
    ctx->reply = ngx_http_upload_reply_stored;
    ctx->limit = ulcf->max_size;
    ctx->limit_status = NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    ctx->limit_message = "the body is larger than upload_max_size";

    if (ctx->link && ctx->link->max_size
        && (ctx->limit == 0 || ctx->link->max_size < ctx->limit))
    {
        ctx->limit = ctx->link->max_size;
        ctx->limit_message = "the body is larger than the upload link "
                             "allows";
    }

    rc = ngx_http_upload_put_digests(ctx, &reason);

    if (rc == NGX_DECLINED) {
        return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "InvalidDigest", reason);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_upload_store_path(r, ulcf, app, key, &ctx->path) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->index = 1;

    ngx_http_set_ctx(r, ctx, ngx_http_upload_module);

    /* the app, its approval, then the content index or the body */

    return ngx_http_upload_pending(r,
               ngx_http_upload_app_lookup(ctx, ngx_http_upload_put_approve));
}


static void
ngx_http_upload_put_approve(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_upload_callback_pre(ctx, ngx_http_upload_put_go);
}


static void
ngx_http_upload_put_go(ngx_http_upload_ctx_t *ctx)
{
    if (ctx->link && !ctx->link_counted) {
        /* one file more under the link, then here again */
        ctx->link_counted = 1;
        ngx_http_upload_finalize(ctx->request,
                                 ngx_http_upload_link_count(ctx,
                                                    ngx_http_upload_put_go));
        return;
    }

    if (ctx->conf->dedup && ctx->expect_sha256.len) {
        ngx_http_upload_finalize(ctx->request,
                                 ngx_http_upload_put_lookup(ctx));
        return;
    }

    ngx_http_upload_put_ready(ctx);
}


/*
 * The client announced the content's SHA-256 (the file marker): if the
 * store has that content, the key gets it at once and no byte of the
 * body is needed; else the body comes as usual and is checked against
 * the announced SHA-256.
 */

static ngx_int_t
ngx_http_upload_put_lookup(ngx_http_upload_ctx_t *ctx)
{
    u_char               hex[2 * NGX_HTTP_UPLOAD_SHA256_LEN];
    off_t                size;
    ngx_str_t            sha256;
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r;

    r = ctx->request;

    size = r->headers_in.content_length_n;

    h = ngx_http_upload_find_header(r, "X-Upload-Size");

    if (h) {
        size = (h->value.len && h->value.len < NGX_OFF_T_LEN)
               ? ngx_atoof(h->value.data, h->value.len) : NGX_ERROR;

        if (size < 0
            || (r->headers_in.content_length_n >= 0
                && size != r->headers_in.content_length_n))
        {
            return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                              "InvalidArgument",
                                              "X-Upload-Size must be the "
                                              "body's size in bytes");
        }
    }

    sha256.data = hex;
    sha256.len = ngx_hex_dump(hex, ctx->expect_sha256.data,
                              NGX_HTTP_UPLOAD_SHA256_LEN) - hex;

    return ngx_http_upload_dedup_lookup(ctx, &sha256, size,
                                        ngx_http_upload_put_exists,
                                        ngx_http_upload_put_ready);
}


/* a hit: the body is not read (no "100 Continue"), the key is linked */

static void
ngx_http_upload_put_exists(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    ngx_http_upload_refuse_body(r);

    ctx->hashes = NGX_HTTP_UPLOAD_SHA256;
    ngx_memcpy(ctx->sha256, ctx->expect_sha256.data,
               NGX_HTTP_UPLOAD_SHA256_LEN);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "upload: \"%V/%V\" exists already (content index), "
                  "no body read", &ctx->app, &ctx->key);

    ngx_http_upload_finalize(r, ctx->record(ctx,
                                    ngx_http_upload_store_publish));
}


/* the digests the client announces: checked once the body is in */

ngx_int_t
ngx_http_upload_put_digests(ngx_http_upload_ctx_t *ctx, const char **reason)
{
    ngx_int_t            rc;
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r;

    r = ctx->request;

    h = ngx_http_upload_find_header(r, "Content-MD5");

    if (h) {
        rc = ngx_http_upload_parse_content_md5(r->pool, &h->value,
                                               &ctx->expect_md5);
        if (rc != NGX_OK) {
            *reason = "Content-MD5 must be the base64 of a 16-byte MD5";
            return rc;
        }

        ctx->hashes |= NGX_HTTP_UPLOAD_MD5;
    }

    h = ngx_http_upload_find_header(r, "X-Upload-Sha256");

    if (h) {
        rc = ngx_http_upload_parse_sha256(r->pool, &h->value,
                                          &ctx->expect_sha256);
        if (rc != NGX_OK) {
            *reason = "X-Upload-Sha256 must be 64 hex digits";
            return rc;
        }
    }

    return NGX_OK;
}


/* Redis answered: read the body (this is when "100 Continue" goes out) */

void
ngx_http_upload_put_ready(ngx_http_upload_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    rc = ngx_http_upload_body_start(ctx);

    if (rc < NGX_HTTP_SPECIAL_RESPONSE) {
        /* the body reader holds its own reference now */
        ngx_http_finalize_request(r, NGX_DONE);
        return;
    }

    ctx->streaming = 0;

    ngx_http_finalize_request(r, ngx_http_upload_body_error(r, rc));
}


/* reading a body could not start: what nginx said, as a JSON error */

ngx_int_t
ngx_http_upload_body_error(ngx_http_request_t *r, ngx_int_t rc)
{
    switch (rc) {

    case NGX_HTTP_BAD_REQUEST:
        return ngx_http_upload_send_error(r, rc, "IncompleteBody",
                                          "the request body is malformed or "
                                          "incomplete");

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        return ngx_http_upload_send_error(r, rc, "EntityTooLarge",
                                          "the body is larger than "
                                          "upload_max_size");

    case NGX_HTTP_INSUFFICIENT_STORAGE:
        return ngx_http_upload_send_error(r, rc, "InsufficientStorage",
                                          "the store is full");

    case NGX_HTTP_REQUEST_TIME_OUT:
    case NGX_HTTP_CLIENT_CLOSED_REQUEST:
        return rc;

    default:
        return ngx_http_upload_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                          "InternalError",
                                          "the upload could not be started");
    }
}


static ngx_int_t
ngx_http_upload_is_form(ngx_http_request_t *r)
{
    ngx_str_t  *type;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    type = &r->headers_in.content_type->value;

    return (type->len >= sizeof("multipart/form-data") - 1
            && ngx_strncasecmp(type->data, (u_char *) "multipart/form-data",
                               sizeof("multipart/form-data") - 1) == 0)
           || (type->len >= sizeof("application/x-www-form-urlencoded") - 1
               && ngx_strncasecmp(type->data,
                               (u_char *) "application/x-www-form-urlencoded",
                               sizeof("application/x-www-form-urlencoded") - 1)
                  == 0);
}


/* GET on an object key sends the client to where the object is served */

static ngx_int_t
ngx_http_upload_redirect(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key)
{
    ngx_str_t         url;
    ngx_table_elt_t  *location;

    if (ngx_http_upload_object_url(r, app, key, &url) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    location = ngx_list_push(&r->headers_out.headers);
    if (location == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    location->hash = 1;
    ngx_str_set(&location->key, "Location");
    location->value = url;

    r->headers_out.location = location;

    return NGX_HTTP_MOVED_TEMPORARILY;
}


/* HEAD ?sha256=<hex>: 200 with X-Upload-Size, or 404, in the dedup scope */

static ngx_int_t
ngx_http_upload_sha256_head(ngx_http_request_t *r, ngx_str_t *app)
{
    u_char                  *p;
    ngx_str_t                value, key;
    ngx_http_upload_ctx_t   *ctx;

    if (ngx_http_upload_arg(r, "sha256", &value) != NGX_OK
        || value.len != 2 * NGX_HTTP_UPLOAD_SHA256_LEN)
    {
        return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "InvalidDigest",
                                          "\"sha256\" must be 64 hex "
                                          "digits, given once");
    }

    for (p = value.data; p < value.data + value.len; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                              "InvalidDigest",
                                              "\"sha256\" must be 64 "
                                              "lowercase hex digits");
        }
    }

    ngx_str_null(&key);

    if (ngx_http_upload_request_ctx(r, app, &key, &ctx) != NGX_OK
        || ngx_http_upload_dedup_check_only(ctx) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!ctx->conf->dedup) {
        return ngx_http_upload_send_error(r, NGX_HTTP_NOT_FOUND,
                                          "NoSuchContent",
                                          "the content index is off here "
                                          "(upload_dedup off)");
    }

    return ngx_http_upload_dedup_lookup(ctx, &value, -1,
                                        ngx_http_upload_sha256_found,
                                        ngx_http_upload_sha256_missing);
}


static void
ngx_http_upload_sha256_found(ngx_http_upload_ctx_t *ctx)
{
    u_char              *p;
    ngx_str_t            size;
    ngx_http_request_t  *r;

    r = ctx->request;

    p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    size.data = p;
    size.len = ngx_sprintf(p, "%O", ctx->size) - p;

    if (ngx_http_upload_set_header(r, "X-Upload-Size", &size) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    ngx_http_finalize_request(r, ngx_http_send_header(r));
}


static void
ngx_http_upload_sha256_missing(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                     NGX_HTTP_NOT_FOUND, "NoSuchContent",
                                     "no stored content has this SHA-256"));
}
