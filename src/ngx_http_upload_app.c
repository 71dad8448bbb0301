
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Apps: the registration API of an "upload_register on" location, and the
 * lookup of an upload's app before its body.
 *
 *     POST   <location>           {"appid", "callback_url_pre",
 *                                  "callback_url_post", "secret"}
 *                                 (JSON or a form) -> 201
 *     GET    <location><appid>    the registration, without the secret
 *     DELETE <location><appid>    -> 204
 *
 * A registration is the Redis hash "upload:{<appid>}:app" (pre, post,
 * secret, updated).  The location is the operator's to protect (allow,
 * deny, auth_basic, auth_request): whoever reaches it chooses where the
 * callbacks go.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>

#include "ngx_http_upload.h"


#define NGX_HTTP_UPLOAD_APP_BODY_MAX  (64 * 1024)
#define NGX_HTTP_UPLOAD_URL_MAX       2048
#define NGX_HTTP_UPLOAD_SECRET_MAX    256


static void ngx_http_upload_app_body(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_app_parse(ngx_http_request_t *r,
    u_char *data, size_t len, ngx_http_upload_app_t *app,
    const char **code, const char **message);
static ngx_int_t ngx_http_upload_app_form(ngx_http_request_t *r,
    u_char *data, size_t len, const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_upload_app_key(ngx_pool_t *pool, ngx_str_t *appid,
    ngx_str_t *key);
static ngx_int_t ngx_http_upload_app_command(ngx_http_request_t *r,
    ngx_str_t *appid, const char *command,
    ngx_http_upload_redis_handler_pt handler, void *data);
static void ngx_http_upload_app_saved(ngx_http_request_t *r, void *data,
    redisReply *reply);
static void ngx_http_upload_app_shown(ngx_http_request_t *r, void *data,
    redisReply *reply);
static void ngx_http_upload_app_deleted(ngx_http_request_t *r, void *data,
    redisReply *reply);
static ngx_int_t ngx_http_upload_app_fields(ngx_pool_t *pool,
    redisReply *reply, ngx_http_upload_app_t *app);
static void ngx_http_upload_app_found(ngx_http_request_t *r, void *data,
    redisReply *reply);


/* a registration replaces the previous one whole */
static const char  ngx_http_upload_app_save_script[] =
    "local new = redis.call('EXISTS', KEYS[1]) == 0 "
    "redis.call('DEL', KEYS[1]) "
    "redis.call('HSET', KEYS[1], 'appid', ARGV[1], 'pre', ARGV[2], "
    "           'post', ARGV[3], 'secret', ARGV[4], 'updated', ARGV[5]) "
    "if new then return 1 end "
    "return 0";


/* the content handler of "upload_register on" locations */

ngx_int_t
ngx_http_upload_app_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_str_t                  appid, key;
    const char                *reason;
    ngx_http_upload_ctx_t     *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    /* the app id is what follows the location's prefix */

    appid.data = r->uri.data + clcf->name.len;
    appid.len = r->uri.len - clcf->name.len;

    if (r->uri.len < clcf->name.len) {
        ngx_str_null(&appid);
    }

    if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT))
        && ngx_http_discard_request_body(r) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (appid.len == 0) {
        if (r->method != NGX_HTTP_POST) {
            return ngx_http_upload_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                              "MethodNotAllowed",
                                              "register an app with POST on "
                                              "the location; GET or DELETE "
                                              "<location><appid>");
        }

        ngx_str_null(&key);

        rc = ngx_http_upload_request_ctx(r, &appid, &key, &ctx);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_upload_body_collect(ctx, NGX_HTTP_UPLOAD_APP_BODY_MAX,
                                          ngx_http_upload_app_body);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return ngx_http_upload_body_error(r, rc);
        }

        return NGX_DONE;
    }

    if (appid.len == sizeof("links") - 1
        && ngx_strncmp(appid.data, "links", appid.len) == 0)
    {
        if (r->method != NGX_HTTP_POST) {
            return ngx_http_upload_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                              "MethodNotAllowed",
                                              "make an upload link with "
                                              "POST <location>links");
        }

        return ngx_http_upload_link_mint(r);
    }

    if (ngx_http_upload_validate_app(&appid, &reason) != NGX_OK) {
        return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "InvalidAppId", reason);
    }

    switch (r->method) {

    case NGX_HTTP_GET:
        rc = ngx_http_upload_app_command(r, &appid, "HGETALL",
                                         ngx_http_upload_app_shown, NULL);
        break;

    case NGX_HTTP_DELETE:
        rc = ngx_http_upload_app_command(r, &appid, "DEL",
                                         ngx_http_upload_app_deleted, NULL);
        break;

    default:
        return ngx_http_upload_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "MethodNotAllowed",
                                          "use GET or DELETE on "
                                          "<location><appid>");
    }

    if (rc == NGX_HTTP_UPLOAD_PENDING) {
        r->main->count++;
        return NGX_DONE;
    }

    return rc;
}


static void
ngx_http_upload_app_body(ngx_http_upload_ctx_t *ctx)
{
    u_char                *p;
    size_t                 argvlen[9];
    ngx_str_t              key;
    const char            *argv[9], *code, *message;
    ngx_http_request_t    *r;
    ngx_http_upload_app_t  app;

    r = ctx->request;

    switch (ngx_http_upload_app_parse(r, ctx->json->pos,
                                      ctx->json->last - ctx->json->pos, &app,
                                      &code, &message))
    {
    case NGX_OK:
        break;

    case NGX_DECLINED:
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_BAD_REQUEST, code,
                                         message));
        return;

    default:
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);

    if (p == NULL
        || ngx_http_upload_app_key(r->pool, &app.appid, &key) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    argv[0] = "EVAL";
    argvlen[0] = sizeof("EVAL") - 1;
    argv[1] = ngx_http_upload_app_save_script;
    argvlen[1] = sizeof(ngx_http_upload_app_save_script) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (char *) key.data;
    argvlen[3] = key.len;
    argv[4] = (char *) app.appid.data;
    argvlen[4] = app.appid.len;
    argv[5] = app.pre.len ? (char *) app.pre.data : "";
    argvlen[5] = app.pre.len;
    argv[6] = app.post.len ? (char *) app.post.data : "";
    argvlen[6] = app.post.len;
    argv[7] = app.secret.len ? (char *) app.secret.data : "";
    argvlen[7] = app.secret.len;
    argv[8] = (char *) p;
    argvlen[8] = ngx_sprintf(p, "%T", ngx_time()) - p;

    ctx->app = app.appid;

    if (ngx_http_upload_redis_command(r, ctx->conf->redis,
                                      ctx->conf->redis_timeout,
                                      ngx_http_upload_app_saved, ctx,
                                      9, argv, argvlen)
        != NGX_OK)
    {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
    }
}


/*
 * {"appid": "...", "callback_url_pre": "...", "callback_url_post": "...",
 *  "secret": "..."} or the same as form fields
 */

static ngx_int_t
ngx_http_upload_app_parse(ngx_http_request_t *r, u_char *data, size_t len,
    ngx_http_upload_app_t *app, const char **code, const char **message)
{
    cJSON       *root, *item;
    ngx_str_t   *field[4];
    ngx_uint_t   i;
    const char  *reason;

    static const char  *names[] = {
        "appid", "callback_url_pre", "callback_url_post", "secret"
    };

    ngx_memzero(app, sizeof(ngx_http_upload_app_t));

    field[0] = &app->appid;
    field[1] = &app->pre;
    field[2] = &app->post;
    field[3] = &app->secret;

    *code = "InvalidArgument";

    while (len && (*data == ' ' || *data == '\t' || *data == '\r'
                   || *data == '\n'))
    {
        data++;
        len--;
    }

    if (len && *data == '{') {
        root = cJSON_ParseWithLength((char *) data, len);

        if (root == NULL || !cJSON_IsObject(root)) {
            cJSON_Delete(root);
            *code = "MalformedJSON";
            *message = "the body must be a JSON object";
            return NGX_DECLINED;
        }

        for (i = 0; i < 4; i++) {
            item = cJSON_GetObjectItemCaseSensitive(root, names[i]);

            if (item == NULL || cJSON_IsNull(item)) {
                continue;
            }

            if (!cJSON_IsString(item)) {
                cJSON_Delete(root);
                *message = "\"appid\", \"callback_url_pre\", "
                           "\"callback_url_post\" and \"secret\" must be "
                           "strings";
                return NGX_DECLINED;
            }

            field[i]->len = ngx_strlen(item->valuestring);
            field[i]->data = ngx_pnalloc(r->pool, field[i]->len + 1);
            if (field[i]->data == NULL) {
                cJSON_Delete(root);
                return NGX_ERROR;
            }

            ngx_memcpy(field[i]->data, item->valuestring, field[i]->len + 1);
        }

        cJSON_Delete(root);

    } else {
        for (i = 0; i < 4; i++) {
            if (ngx_http_upload_app_form(r, data, len, names[i], field[i])
                == NGX_ERROR)
            {
                *message = "a form field is given twice or is malformed";
                return NGX_DECLINED;
            }
        }
    }

    if (ngx_http_upload_validate_app(&app->appid, &reason) != NGX_OK) {
        *code = "InvalidAppId";
        *message = app->appid.len ? reason : "\"appid\" is required";
        return NGX_DECLINED;
    }

    if (app->appid.len == sizeof("links") - 1
        && ngx_strncmp(app->appid.data, "links", app->appid.len) == 0)
    {
        *code = "InvalidAppId";
        *message = "\"links\" names the upload link API, not an app";
        return NGX_DECLINED;
    }

    for (i = 1; i < 3; i++) {
        if (field[i]->len
            && ngx_http_upload_callback_url_valid(field[i]) != NGX_OK)
        {
            *code = "InvalidCallbackUrl";
            *message = "a callback URL must be http:// or https:// with a "
                       "host, at most 2048 bytes, no spaces or control "
                       "characters";
            return NGX_DECLINED;
        }
    }

    if (app->secret.len > NGX_HTTP_UPLOAD_SECRET_MAX) {
        *message = "\"secret\" must be at most 256 bytes";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* one field of "a=1&b=2", URL-decoded; NGX_DECLINED: absent */

static ngx_int_t
ngx_http_upload_app_form(ngx_http_request_t *r, u_char *data, size_t len,
    const char *name, ngx_str_t *value)
{
    u_char  *p, *last, *end, *dst, *src, *q;
    size_t   nlen;

    nlen = ngx_strlen(name);
    last = data + len;
    ngx_str_null(value);

    for (p = data; p < last; p = end + 1) {

        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        if ((size_t) (end - p) <= nlen || p[nlen] != '='
            || ngx_strncmp(p, name, nlen) != 0)
        {
            continue;
        }

        if (value->data) {
            return NGX_ERROR;
        }

        value->data = ngx_pnalloc(r->pool, end - (p + nlen + 1) + 1);
        if (value->data == NULL) {
            return NGX_ERROR;
        }

        /* "+" is a space in a form, then %XX */

        dst = value->data;

        for (q = p + nlen + 1; q < end; q++) {
            *dst++ = (*q == '+') ? ' ' : *q;
        }

        src = value->data;
        q = dst;
        dst = value->data;

        ngx_unescape_uri(&dst, &src, q - src, 0);

        value->len = dst - value->data;
        value->data[value->len] = '\0';

        if (ngx_strlen(value->data) != value->len) {
            /* a NUL inside */
            return NGX_ERROR;
        }
    }

    return value->data ? NGX_OK : NGX_DECLINED;
}


/* http:// or https://, a host, no spaces, controls or fragments */

ngx_int_t
ngx_http_upload_callback_url_valid(ngx_str_t *url)
{
    u_char  *p, *host, *last;

    if (url->len > NGX_HTTP_UPLOAD_URL_MAX) {
        return NGX_DECLINED;
    }

    last = url->data + url->len;

    for (p = url->data; p < last; p++) {
        if (*p <= ' ' || *p == 0x7f || *p == '#' || *p == '\\') {
            return NGX_DECLINED;
        }
    }

    if (url->len > sizeof("http://") - 1
        && ngx_strncasecmp(url->data, (u_char *) "http://", 7) == 0)
    {
        host = url->data + 7;

    } else if (url->len > sizeof("https://") - 1
               && ngx_strncasecmp(url->data, (u_char *) "https://", 8) == 0)
    {
        host = url->data + 8;

    } else {
        return NGX_DECLINED;
    }

    /* userinfo would hide the real host from a reader of the URL */

    for (p = host; p < last && *p != '/' && *p != '?'; p++) {
        if (*p == '@') {
            return NGX_DECLINED;
        }
    }

    if (p == host || *host == ':') {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_app_key(ngx_pool_t *pool, ngx_str_t *appid, ngx_str_t *key)
{
    key->len = sizeof("upload:{}:app") - 1 + appid->len;
    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(key->data, "upload:{%V}:app", appid);

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_app_command(ngx_http_request_t *r, ngx_str_t *appid,
    const char *command, ngx_http_upload_redis_handler_pt handler,
    void *data)
{
    size_t                       argvlen[2];
    ngx_int_t                    rc;
    ngx_str_t                    key;
    const char                  *argv[2];
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    if (ngx_http_upload_app_key(r->pool, appid, &key) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0] = command;
    argvlen[0] = ngx_strlen(command);
    argv[1] = (char *) key.data;
    argvlen[1] = key.len;

    if (data == NULL) {
        /* the handler's: it outlives the caller's ngx_str_t */

        data = ngx_palloc(r->pool, sizeof(ngx_str_t));
        if (data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *(ngx_str_t *) data = *appid;
    }

    rc = ngx_http_upload_redis_command(r, ulcf->redis, ulcf->redis_timeout,
                                       handler, data, 2, argv, argvlen);
    if (rc == NGX_OK) {
        return NGX_HTTP_UPLOAD_PENDING;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_upload_redis_unavailable(r);
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


static void
ngx_http_upload_app_saved(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    cJSON  *json;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    json = cJSON_CreateObject();

    if (json == NULL
        || ngx_http_upload_add_string(json, "appid", &ctx->app) != NGX_OK
        || cJSON_AddTrueToObject(json, "success") == NULL)
    {
        cJSON_Delete(json);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "upload: app \"%V\" %s", &ctx->app,
                  reply->integer ? "registered" : "registered again");

    ngx_http_finalize_request(r, ngx_http_upload_send_json(r,
                                     NGX_HTTP_CREATED, json));
}


static void
ngx_http_upload_app_shown(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_str_t *appid = data;

    cJSON                  *json;
    ngx_http_upload_app_t   app;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    if (reply->elements == 0) {
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_NOT_FOUND, "NoSuchApp",
                                         "no app is registered with this "
                                         "appid"));
        return;
    }

    if (ngx_http_upload_app_fields(r->pool, reply, &app) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    json = cJSON_CreateObject();

    /* the secret never leaves the server: only whether there is one */

    if (json == NULL
        || ngx_http_upload_add_string(json, "appid", appid) != NGX_OK
        || (app.pre.len
            ? ngx_http_upload_add_string(json, "callback_url_pre", &app.pre)
              != NGX_OK
            : cJSON_AddNullToObject(json, "callback_url_pre") == NULL)
        || (app.post.len
            ? ngx_http_upload_add_string(json, "callback_url_post",
                                         &app.post)
              != NGX_OK
            : cJSON_AddNullToObject(json, "callback_url_post") == NULL)
        || cJSON_AddBoolToObject(json, "has_secret", app.secret.len > 0)
           == NULL
        || cJSON_AddNumberToObject(json, "updated", (double) app.updated)
           == NULL)
    {
        cJSON_Delete(json);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_finalize_request(r, ngx_http_upload_send_json(r, NGX_HTTP_OK,
                                                           json));
}


static void
ngx_http_upload_app_deleted(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    if (reply->integer == 0) {
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_NOT_FOUND, "NoSuchApp",
                                         "no app is registered with this "
                                         "appid"));
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "upload: app registration deleted");

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->header_only = 1;
    r->headers_out.content_length_n = 0;

    ngx_http_finalize_request(r, ngx_http_send_header(r));
}


static ngx_int_t
ngx_http_upload_app_fields(ngx_pool_t *pool, redisReply *reply,
    ngx_http_upload_app_t *app)
{
    size_t       i;
    ngx_str_t   *field;
    redisReply  *f, *v;

    ngx_memzero(app, sizeof(ngx_http_upload_app_t));

    for (i = 0; i + 1 < reply->elements; i += 2) {
        f = reply->element[i];
        v = reply->element[i + 1];

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            return NGX_ERROR;
        }

        field = NULL;

        if (f->len == 3 && ngx_strncmp(f->str, "pre", 3) == 0) {
            field = &app->pre;

        } else if (f->len == 4 && ngx_strncmp(f->str, "post", 4) == 0) {
            field = &app->post;

        } else if (f->len == 6 && ngx_strncmp(f->str, "secret", 6) == 0) {
            field = &app->secret;

        } else if (f->len == 7 && ngx_strncmp(f->str, "updated", 7) == 0) {
            app->updated = ngx_atotm((u_char *) v->str, v->len);
        }

        if (field && v->len) {
            field->len = v->len;
            field->data = ngx_pnalloc(pool, v->len + 1);
            if (field->data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(field->data, v->str, v->len);
            field->data[v->len] = '\0';
        }
    }

    app->found = 1;

    return NGX_OK;
}


/*
 * Before an upload's body: the app's registration (ctx->app_reg), then
 * "next".  An unknown app goes on unless upload_app_required is on.
 */

ngx_int_t
ngx_http_upload_app_lookup(ngx_http_upload_ctx_t *ctx,
    void (*next)(ngx_http_upload_ctx_t *ctx))
{
    ctx->app_next = next;

    return ngx_http_upload_app_command(ctx->request, &ctx->app, "HGETALL",
                                       ngx_http_upload_app_found, ctx);
}


static void
ngx_http_upload_app_found(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    ngx_http_upload_app_t  *app;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    app = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_app_t));
    if (app == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (reply->elements
        && ngx_http_upload_app_fields(r->pool, reply, app) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    app->appid = ctx->app;
    ctx->app_reg = app;

    if (!app->found && ctx->conf->app_required) {
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_FORBIDDEN, "UnknownApp",
                                         "uploads here need a registered "
                                         "app (X-Upload-App)"));
        return;
    }

    ctx->app_next(ctx);
}
