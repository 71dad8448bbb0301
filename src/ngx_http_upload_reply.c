
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * JSON answers: objects, and errors in the form
 * {"error": {"code": "<S3-style code>", "message": "<text>"}}.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>

#include "ngx_http_upload.h"


static cJSON *ngx_http_upload_object_to_json(ngx_http_request_t *r,
    ngx_http_upload_object_t *obj);


/*
 * An answer before the body: a client waiting for "100 Continue" gets the
 * final status instead, as RFC 9110 allows, and the connection closes
 * after it (draining what the client may still send); nginx's discarding
 * would send "100 Continue" and invite the body.
 */

void
ngx_http_upload_refuse_body(ngx_http_request_t *r)
{
    if (r->headers_in.expect
        && !r->expect_tested
        && r->http_version == NGX_HTTP_VERSION_11
        && (r->headers_in.content_length_n > 0 || r->headers_in.chunked))
    {
        r->expect_tested = 1;
        r->keepalive = 0;
        r->lingering_close = 1;
        return;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }
}


void
ngx_http_upload_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    if (rc == NGX_HTTP_UPLOAD_PENDING) {
        /* a callback of the module continues the request later */
        return;
    }

    ngx_http_finalize_request(r, rc);
}


ngx_int_t
ngx_http_upload_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    cJSON       *json, *error;
    ngx_uint_t   level;

    level = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? NGX_LOG_ERR
                                                       : NGX_LOG_INFO;

    ngx_log_error(level, r->connection->log, 0, "upload: %ui %s: %s",
                  status, code, message);

    if (r->request_body == NULL) {
        ngx_http_upload_refuse_body(r);

    } else if (r->request_body->rest) {
        /* the body was not read to its end */
        r->keepalive = 0;
    }

    json = cJSON_CreateObject();
    if (json == NULL) {
        return NGX_ERROR;
    }

    error = cJSON_AddObjectToObject(json, "error");

    if (error == NULL
        || cJSON_AddStringToObject(error, "code", code) == NULL
        || cJSON_AddStringToObject(error, "message", message) == NULL)
    {
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    return ngx_http_upload_send_json(r, status, json);
}


/* sends and frees "json" */

ngx_int_t
ngx_http_upload_send_json(ngx_http_request_t *r, ngx_uint_t status,
    void *json)
{
    ngx_str_t  text;

    if (ngx_http_upload_json_text(r->pool, json, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_upload_send_text(r, status, &text);
}


/* prints and frees "json", into the pool, with a final newline */

ngx_int_t
ngx_http_upload_json_text(ngx_pool_t *pool, void *json, ngx_str_t *text)
{
    char    *s;
    size_t   len;

    s = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);

    if (s == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(s);

    text->data = ngx_pnalloc(pool, len + 1);
    if (text->data == NULL) {
        cJSON_free(s);
        return NGX_ERROR;
    }

    ngx_memcpy(text->data, s, len);
    text->data[len] = '\n';
    text->len = len + 1;

    cJSON_free(s);

    return NGX_OK;
}


/* a JSON answer already printed (one remembered in Redis, say) */

ngx_int_t
ngx_http_upload_send_text(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *text)
{
    static ngx_str_t  json = ngx_string("application/json");

    return ngx_http_upload_send_typed(r, status, &json, text);
}


ngx_int_t
ngx_http_upload_send_typed(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_str_t *text)
{
    ngx_buf_t    *b;
    ngx_int_t     rc;
    ngx_chain_t   out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->memory = 1;
    b->pos = text->data;
    b->last = text->data + text->len;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = text->len;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_upload_reply_stored(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_upload_object_t  obj;

    ngx_memzero(&obj, sizeof(ngx_http_upload_object_t));

    obj.app = ctx->app;
    obj.key = ctx->key;
    obj.size = ctx->size;
    obj.exists = ctx->exists;
    obj.dedup = ctx->deduped;

    if (ngx_http_upload_digest_hex(ctx->request->pool, ctx, &obj) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the content was there: nothing was created by this request's body */

    obj.ctx = ctx;

    return ngx_http_upload_reply_object(ctx->request,
                                        ctx->exists ? NGX_HTTP_OK
                                                    : NGX_HTTP_CREATED,
                                        &obj);
}


/*
 * The etag: a sliced upload's "<md5 of the part md5s>-<parts>", else the
 * MD5 when it was computed, else the SHA-256
 */

ngx_int_t
ngx_http_upload_reply_object(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_upload_object_t *obj)
{
    u_char     *p;
    cJSON      *json;
    ngx_str_t  *etag, value;

    etag = obj->etag.len ? &obj->etag
                         : (obj->md5.len ? &obj->md5 : &obj->sha256);

    value.len = etag->len + 2;
    value.data = ngx_pnalloc(r->pool, value.len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    p = value.data;
    *p++ = '"';
    p = ngx_cpymem(p, etag->data, etag->len);
    *p = '"';

    if (ngx_http_upload_set_header(r, "ETag", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (obj->time) {
        r->headers_out.last_modified_time = obj->time;

        value.data = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (value.data == NULL) {
            return NGX_ERROR;
        }

        value.len = ngx_sprintf(value.data, "%O", obj->size) - value.data;

        if (ngx_http_upload_set_header(r, "X-Upload-Size", &value) != NGX_OK
            || ngx_http_upload_set_header(r, "X-Upload-Sha256", &obj->sha256)
               != NGX_OK
            || (obj->md5.len
                && ngx_http_upload_set_header(r, "X-Upload-Md5", &obj->md5)
                   != NGX_OK)
            || (obj->sha1.len
                && ngx_http_upload_set_header(r, "X-Upload-Sha1", &obj->sha1)
                   != NGX_OK))
        {
            return NGX_ERROR;
        }
    }

    json = ngx_http_upload_object_to_json(r, obj);
    if (json == NULL) {
        return NGX_ERROR;
    }

    /* an upload's answer carries its post callback's; 203 if it failed */

    if (obj->ctx) {
        switch (ngx_http_upload_callback_result(obj->ctx, json)) {

        case NGX_OK:
            break;

        case NGX_DECLINED:
            status = 203;
            break;

        default:
            cJSON_Delete(json);
            return NGX_ERROR;
        }
    }

    return ngx_http_upload_send_json(r, status, json);
}


/* "<upload_url_prefix><app>/<key>", the key percent-encoded */

ngx_int_t
ngx_http_upload_object_url(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key, ngx_str_t *url)
{
    u_char                      *p, *escaped;
    size_t                       len;
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    escaped = ngx_http_upload_escape_key(r->pool, key, &len);
    if (escaped == NULL) {
        return NGX_ERROR;
    }

    url->len = ulcf->url_prefix.len + app->len + 1 + len;
    url->data = ngx_pnalloc(r->pool, url->len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(url->data, ulcf->url_prefix.data, ulcf->url_prefix.len);
    p = ngx_cpymem(p, app->data, app->len);
    *p++ = '/';
    ngx_memcpy(p, escaped, len);

    return NGX_OK;
}


static cJSON *
ngx_http_upload_object_to_json(ngx_http_request_t *r,
    ngx_http_upload_object_t *obj)
{
    cJSON      *json;
    ngx_str_t   url;

    if (ngx_http_upload_object_url(r, &obj->app, &obj->key, &url) != NGX_OK) {
        return NULL;
    }

    json = cJSON_CreateObject();
    if (json == NULL) {
        return NULL;
    }

    if ((obj->exists && cJSON_AddTrueToObject(json, "exists") == NULL)
        || (obj->dedup && cJSON_AddTrueToObject(json, "dedup") == NULL)
        || ngx_http_upload_add_string(json, "key", &obj->key) != NGX_OK
        || ngx_http_upload_add_string(json, "app", &obj->app) != NGX_OK
        || cJSON_AddNumberToObject(json, "size", (double) obj->size) == NULL
        || ngx_http_upload_add_string(json, "etag",
                                      obj->etag.len ? &obj->etag
                                      : (obj->md5.len ? &obj->md5
                                                      : &obj->sha256))
           != NGX_OK
        || ngx_http_upload_add_string(json, "sha256", &obj->sha256) != NGX_OK
        || (obj->md5.len
            && ngx_http_upload_add_string(json, "md5", &obj->md5) != NGX_OK)
        || (obj->sha1.len
            && ngx_http_upload_add_string(json, "sha1", &obj->sha1)
               != NGX_OK)
        || ngx_http_upload_add_string(json, "url", &url) != NGX_OK
        || (obj->time
            && cJSON_AddNumberToObject(json, "time", (double) obj->time)
               == NULL))
    {
        cJSON_Delete(json);
        return NULL;
    }

    return json;
}


ngx_int_t
ngx_http_upload_add_string(void *json, const char *name, ngx_str_t *value)
{
    char  *s;
    cJSON *item;

    /* cJSON wants C strings; keys are valid UTF-8 with no NUL */

    s = cJSON_malloc(value->len + 1);
    if (s == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s, value->data, value->len);
    s[value->len] = '\0';

    item = cJSON_CreateString(s);
    cJSON_free(s);

    if (item == NULL) {
        return NGX_ERROR;
    }

    cJSON_AddItemToObject(json, name, item);

    return NGX_OK;
}


ngx_int_t
ngx_http_upload_set_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}
