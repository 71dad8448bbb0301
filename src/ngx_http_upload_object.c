
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Object records in Redis: "upload:{<app>}:obj:<key>" is a hash with the
 * fields size, md5, sha256 and time.  The hash tag "{<app>}" keeps every
 * key of an app in one Redis Cluster slot, so later multi-key scripts work
 * unchanged on a cluster.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upload.h"


typedef struct {
    ngx_str_t                   app;
    ngx_str_t                   key;
} ngx_http_upload_object_req_t;


static ngx_int_t ngx_http_upload_object_redis_key(ngx_pool_t *pool,
    ngx_str_t *app, ngx_str_t *key, ngx_str_t *out);
static ngx_int_t ngx_http_upload_object_command(ngx_http_request_t *r,
    ngx_http_upload_redis_handler_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen);
static ngx_int_t ngx_http_upload_object_on_key(ngx_http_request_t *r,
    ngx_str_t *app, ngx_str_t *key, const char *command,
    ngx_http_upload_redis_handler_pt handler);
static void ngx_http_upload_object_checked(ngx_http_request_t *r, void *data,
    redisReply *reply);
static void ngx_http_upload_object_saved(ngx_http_request_t *r, void *data,
    redisReply *reply);
static void ngx_http_upload_object_meta_reply(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_object_deleted(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_object_remove_dirs(ngx_http_request_t *r,
    ngx_str_t *path, size_t keep);


/*
 * Replace the whole record: a field the new upload lacks must not linger.
 * A complete's record is fenced: only while its token (ARGV[7]) holds the
 * session (KEYS[3]), whose lease (KEYS[2]) it renews (ARGV[8] ms); 0 when
 * another complete took the session over.  The session is then
 * "recorded" (ngx_http_upload_session_stored makes it "stored" once the
 * file is in place).
 */
static const char  ngx_http_upload_save_script[] =
    "if KEYS[2] then "
    "  local s = redis.call('HMGET', KEYS[3], 'state', 'holder') "
    "  if s[1] ~= 'completing' or s[2] ~= ARGV[7] then return 0 end "
    "  redis.call('HSET', KEYS[3], 'state', 'recorded') "
    "  redis.call('SET', KEYS[2], ARGV[7], 'PX', ARGV[8]) "
    "end "
    "redis.call('DEL', KEYS[1]) "
    "redis.call('HSET', KEYS[1], 'size', ARGV[1], 'md5', ARGV[2], "
               "'sha1', ARGV[3], 'sha256', ARGV[4], 'etag', ARGV[5], "
               "'time', ARGV[6]) "
    "return 1";


static ngx_int_t
ngx_http_upload_object_redis_key(ngx_pool_t *pool, ngx_str_t *app,
    ngx_str_t *key, ngx_str_t *out)
{
    out->len = sizeof("upload:{}:obj:") - 1 + app->len + key->len;

    out->data = ngx_pnalloc(pool, out->len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(out->data, "upload:{%V}:obj:%V", app, key);

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_object_command(ngx_http_request_t *r,
    ngx_http_upload_redis_handler_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_int_t                    rc;
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    rc = ngx_http_upload_redis_command(r, ulcf->redis, ulcf->redis_timeout,
                                       handler, data, argc, argv, argvlen);

    if (rc == NGX_OK) {
        return NGX_HTTP_UPLOAD_PENDING;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_upload_redis_unavailable(r);
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


ngx_int_t
ngx_http_upload_redis_unavailable(ngx_http_request_t *r)
{
    return ngx_http_upload_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "ServiceUnavailable",
                                      "the metadata store (Redis) is not "
                                      "available, try again later");
}


/*
 * Before a body is read: if Redis cannot record the object, the client
 * learns it now, not after sending the whole body.
 */

ngx_int_t
ngx_http_upload_object_check_redis(ngx_http_upload_ctx_t *ctx,
    void (*ready)(ngx_http_upload_ctx_t *ctx))
{
    static const char  *argv[] = { "PING" };
    static size_t       argvlen[] = { sizeof("PING") - 1 };

    ctx->redis_done = ready;

    return ngx_http_upload_object_command(ctx->request,
                                          ngx_http_upload_object_checked,
                                          ctx, 1, argv, argvlen);
}


static void
ngx_http_upload_object_checked(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    ctx->redis_done(ctx);
}


ngx_int_t
ngx_http_upload_object_save(ngx_http_upload_ctx_t *ctx,
    void (*saved)(ngx_http_upload_ctx_t *ctx))
{
    u_char                    *p;
    size_t                     argvlen[14];
    ngx_str_t                  rkey;
    ngx_uint_t                 n;
    const char                *argv[14];
    ngx_http_request_t        *r;
    ngx_http_upload_object_t   obj;

    r = ctx->request;

    if (ngx_http_upload_object_redis_key(r->pool, &ctx->app, &ctx->key, &rkey)
        != NGX_OK
        || ngx_http_upload_digest_hex(r->pool, ctx, &obj) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN + NGX_TIME_T_LEN + NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0] = "EVAL";
    argvlen[0] = sizeof("EVAL") - 1;
    argv[1] = ngx_http_upload_save_script;
    argvlen[1] = sizeof(ngx_http_upload_save_script) - 1;
    argv[2] = ctx->fence.len ? "3" : "1";
    argvlen[2] = 1;
    argv[3] = (char *) rkey.data;
    argvlen[3] = rkey.len;

    n = 4;

    if (ctx->fence.len) {
        argv[n] = (char *) ctx->fence_key.data;
        argvlen[n++] = ctx->fence_key.len;
        argv[n] = (char *) ctx->fence_session.data;
        argvlen[n++] = ctx->fence_session.len;
    }

    argv[n] = (char *) p;
    p = ngx_sprintf(p, "%O", ctx->size);
    argvlen[n] = p - (u_char *) argv[n];
    n++;

    /* not computed: an empty field */
    argv[n] = obj.md5.len ? (char *) obj.md5.data : "";
    argvlen[n++] = obj.md5.len;
    argv[n] = obj.sha1.len ? (char *) obj.sha1.data : "";
    argvlen[n++] = obj.sha1.len;
    argv[n] = (char *) obj.sha256.data;
    argvlen[n++] = obj.sha256.len;

    argv[n] = obj.etag.len ? (char *) obj.etag.data : "";
    argvlen[n++] = obj.etag.len;

    argv[n] = (char *) p;
    p = ngx_sprintf(p, "%T", ngx_time());
    argvlen[n] = p - (u_char *) argv[n];
    n++;

    if (ctx->fence.len) {
        argv[n] = (char *) ctx->fence.data;
        argvlen[n++] = ctx->fence.len;

        argv[n] = (char *) p;
        p = ngx_sprintf(p, "%M", ctx->conf->complete_lease);
        argvlen[n] = p - (u_char *) argv[n];
        n++;
    }

    ctx->redis_done = saved;

    return ngx_http_upload_object_command(r, ngx_http_upload_object_saved,
                                          ctx, n, argv, argvlen);
}


static void
ngx_http_upload_object_saved(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "upload: redis refused the object record: %s",
                          reply->str);
        }

        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "upload: \"%V/%V\" not recorded: its complete lost "
                      "its lease to another one", &ctx->app, &ctx->key);

        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_CONFLICT,
                                         "OperationAborted",
                                         "another complete of this upload "
                                         "took it over"));
        return;
    }

    ctx->redis_done(ctx);
}


ngx_int_t
ngx_http_upload_object_meta(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key)
{
    return ngx_http_upload_object_on_key(r, app, key, "HGETALL",
                                         ngx_http_upload_object_meta_reply);
}


/* "<command> <record key>" for the object app/key */

static ngx_int_t
ngx_http_upload_object_on_key(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key, const char *command,
    ngx_http_upload_redis_handler_pt handler)
{
    size_t                         argvlen[2];
    const char                    *argv[2];
    ngx_str_t                      rkey;
    ngx_http_upload_object_req_t  *req;

    req = ngx_palloc(r->pool, sizeof(ngx_http_upload_object_req_t));
    if (req == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    req->app = *app;
    req->key = *key;

    if (ngx_http_upload_object_redis_key(r->pool, app, key, &rkey) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0] = command;
    argvlen[0] = ngx_strlen(command);
    argv[1] = (char *) rkey.data;
    argvlen[1] = rkey.len;

    return ngx_http_upload_object_command(r, handler, req, 2, argv, argvlen);
}


static void
ngx_http_upload_object_meta_reply(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_object_req_t *req = data;

    size_t                     i;
    ngx_str_t                 *field, value;
    redisReply                *f, *v;
    ngx_http_upload_object_t   obj;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    if (reply->elements == 0) {
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_NOT_FOUND, "NoSuchKey",
                                         "no object has this key"));
        return;
    }

    ngx_memzero(&obj, sizeof(ngx_http_upload_object_t));
    obj.app = req->app;
    obj.key = req->key;

    for (i = 0; i + 1 < reply->elements; i += 2) {
        f = reply->element[i];
        v = reply->element[i + 1];

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            continue;
        }

        /* the reply is freed after this handler: copy what is kept */

        value.len = v->len;
        value.data = ngx_pstrdup(r->pool, &(ngx_str_t) { v->len,
                                                         (u_char *) v->str });
        if (value.data == NULL && value.len) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        field = NULL;

        if (f->len == 4 && ngx_strncmp(f->str, "size", 4) == 0) {
            obj.size = ngx_atoof(value.data, value.len);

        } else if (f->len == 4 && ngx_strncmp(f->str, "time", 4) == 0) {
            obj.time = ngx_atotm(value.data, value.len);

        } else if (f->len == 3 && ngx_strncmp(f->str, "md5", 3) == 0) {
            field = &obj.md5;

        } else if (f->len == 4 && ngx_strncmp(f->str, "sha1", 4) == 0) {
            field = &obj.sha1;

        } else if (f->len == 4 && ngx_strncmp(f->str, "etag", 4) == 0) {
            field = &obj.etag;

        } else if (f->len == 6 && ngx_strncmp(f->str, "sha256", 6) == 0) {
            field = &obj.sha256;
        }

        if (field) {
            *field = value;
        }
    }

    if (obj.size < 0 || obj.sha256.len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "upload: the redis record of \"%V/%V\" is damaged",
                      &req->app, &req->key);
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "InternalError",
                                         "the object record is damaged"));
        return;
    }

    if (obj.time <= 0) {
        obj.time = 1;
    }

    ngx_http_finalize_request(r,
                              ngx_http_upload_reply_object(r, NGX_HTTP_OK,
                                                           &obj));
}


ngx_int_t
ngx_http_upload_object_delete(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key)
{
    return ngx_http_upload_object_on_key(r, app, key, "DEL",
                                         ngx_http_upload_object_deleted);
}


/* the record goes first: with Redis down nothing is touched */

static void
ngx_http_upload_object_deleted(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_object_req_t *req = data;

    ngx_int_t                    rc;
    ngx_str_t                    path;
    ngx_http_upload_loc_conf_t  *ulcf;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    if (ngx_http_upload_store_path(r, ulcf, &req->app, &req->key, &path)
        != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_upload_store_remove(r, &path);

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_INTERNAL_SERVER_ERROR,
                                         "InternalError",
                                         "the object could not be removed"));
        return;
    }

    /* a "key" that is a directory of other keys is no object either */

    if (rc == NGX_DECLINED && reply->integer == 0) {
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_NOT_FOUND, "NoSuchKey",
                                         "no object has this key"));
        return;
    }

    ngx_http_upload_object_remove_dirs(r, &path,
                                       ulcf->store.len + 1 + req->app.len);

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    ngx_http_finalize_request(r, ngx_http_send_header(r));
}


/*
 * Keys have no directories of their own: the ones a deleted key needed go
 * with it when empty, so that a later key may take their name.
 */

static void
ngx_http_upload_object_remove_dirs(ngx_http_request_t *r, ngx_str_t *path,
    size_t keep)
{
    u_char  *p;

    for (p = path->data + path->len; p > path->data + keep; p--) {

        if (*p != '/') {
            continue;
        }

        *p = '\0';

        if (ngx_delete_dir(path->data) == NGX_FILE_ERROR) {
            *p = '/';
            return;
        }

        *p = '/';
    }
}
