
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * The content index and instant uploads.  Redis maps the SHA-256 of stored
 * content to one object that holds it:
 *
 *     upload:{<app>}:sha:<hex>     (upload_dedup app: the default)
 *     upload:{.global}:sha:<hex>   (upload_dedup global; no app name
 *                                   starts with a dot)
 *
 * a hash of path (the object's file), size and ino (its inode).  Entries
 * are written only after an object is stored, with the SHA-256 the module
 * computed over the bytes it received (ngx_http_upload_dedup_published).
 *
 * A hit is checked on disk before it is used: the file at "path" must
 * still be that inode with that size.  Then the content is hard-linked to
 * a temporary name and renamed to the new key like any upload: no byte is
 * copied, and deleting one key leaves the others' links.  A stale entry is
 * dropped and counts as a miss.
 *
 * Two uploads of the same new content both store a copy; the second to
 * index it finds the first's entry and replaces its own file by a link to
 * the first's, so one copy stays.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upload.h"


typedef struct {
    ngx_str_t                     key;      /* the index entry's */
    ngx_str_t                     path;
    off_t                         size;
    ino_t                         ino;
    ngx_int_t                     found;    /* NGX_OK, NGX_DECLINED */
    unsigned                      stale:1;
    unsigned                      check:1;  /* no link: HEAD ?sha256 */
    void                        (*hit)(ngx_http_upload_ctx_t *ctx);
    void                        (*miss)(ngx_http_upload_ctx_t *ctx);
} ngx_http_upload_dedup_t;


static ngx_http_upload_dedup_t *ngx_http_upload_dedup_get(
    ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_dedup_key(ngx_http_upload_ctx_t *ctx,
    u_char *sha256);
static void ngx_http_upload_dedup_found(ngx_http_request_t *r, void *data,
    redisReply *reply);
static ngx_int_t ngx_http_upload_dedup_entry(ngx_pool_t *pool,
    ngx_http_upload_dedup_t *dd, redisReply *reply);
static ngx_int_t ngx_http_upload_dedup_valid(ngx_http_upload_dedup_t *dd);
static void ngx_http_upload_dedup_attach(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_dedup_attached(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_dedup_indexed(ngx_http_request_t *r, void *data,
    redisReply *reply);
static void ngx_http_upload_dedup_relink(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_dedup_relinked(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_dedup_drop(ngx_http_upload_ctx_t *ctx,
    const char *script);
static void ngx_http_upload_dedup_ignore(ngx_http_request_t *r, void *data,
    redisReply *reply);


/* the entry, unless one is there already: then that one comes back */
static const char  ngx_http_upload_index_script[] =
    "local e = redis.call('HMGET', KEYS[1], 'path', 'size', 'ino') "
    "if not e[1] then "
    "  redis.call('HSET', KEYS[1], 'path', ARGV[1], 'size', ARGV[2], "
    "             'ino', ARGV[3]) "
    "  return false "
    "end "
    "if e[1] == ARGV[1] and e[3] == ARGV[3] then return false end "
    "return e";

/* a stale entry goes, unless somebody replaced it meanwhile */
static const char  ngx_http_upload_drop_script[] =
    "if redis.call('HGET', KEYS[1], 'path') == ARGV[4] "
    "   and redis.call('HGET', KEYS[1], 'ino') == ARGV[5] then "
    "  redis.call('DEL', KEYS[1]) "
    "end "
    "return 1";

/* the same, then this object's entry in its place */
static const char  ngx_http_upload_replace_script[] =
    "if redis.call('HGET', KEYS[1], 'path') == ARGV[4] "
    "   and redis.call('HGET', KEYS[1], 'ino') == ARGV[5] then "
    "  redis.call('HSET', KEYS[1], 'path', ARGV[1], 'size', ARGV[2], "
    "             'ino', ARGV[3]) "
    "end "
    "return 1";


static ngx_int_t
ngx_http_upload_dedup_key(ngx_http_upload_ctx_t *ctx, u_char *sha256)
{
    u_char                   *p;
    ngx_http_upload_dedup_t  *dd;

    dd = ctx->dedup;

    p = ngx_pnalloc(ctx->request->pool, sizeof("upload:{.global}:sha:") - 1
                    + ctx->app.len + 2 * NGX_HTTP_UPLOAD_SHA256_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    dd->key.data = p;

    if (ctx->conf->dedup == NGX_HTTP_UPLOAD_DEDUP_GLOBAL) {
        p = ngx_cpymem(p, "upload:{.global}:sha:",
                       sizeof("upload:{.global}:sha:") - 1);

    } else {
        p = ngx_sprintf(p, "upload:{%V}:sha:", &ctx->app);
    }

    p = ngx_cpymem(p, sha256, 2 * NGX_HTTP_UPLOAD_SHA256_LEN);

    dd->key.len = p - dd->key.data;

    return NGX_OK;
}


static ngx_http_upload_dedup_t *
ngx_http_upload_dedup_get(ngx_http_upload_ctx_t *ctx)
{
    if (ctx->dedup == NULL) {
        ctx->dedup = ngx_pcalloc(ctx->request->pool,
                                 sizeof(ngx_http_upload_dedup_t));
    }

    return ctx->dedup;
}


/*
 * Is content with this SHA-256 (hex) and size (-1: any) stored in the
 * scope?  A hit is linked to ctx->temp, ready for the commit chain
 * (record, publish), and "hit" is called; else "miss".  After
 * ngx_http_upload_dedup_check_only() a hit is only checked (HEAD ?sha256).
 */

ngx_int_t
ngx_http_upload_dedup_check_only(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_upload_dedup_t  *dd;

    dd = ngx_http_upload_dedup_get(ctx);
    if (dd == NULL) {
        return NGX_ERROR;
    }

    dd->check = 1;

    return NGX_OK;
}



ngx_int_t
ngx_http_upload_dedup_lookup(ngx_http_upload_ctx_t *ctx, ngx_str_t *sha256,
    off_t size, void (*hit)(ngx_http_upload_ctx_t *ctx),
    void (*miss)(ngx_http_upload_ctx_t *ctx))
{
    size_t                    argvlen[2];
    ngx_int_t                 rc;
    const char               *argv[2];
    ngx_http_upload_dedup_t  *dd;

    dd = ngx_http_upload_dedup_get(ctx);

    if (dd == NULL || ngx_http_upload_dedup_key(ctx, sha256->data) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    dd->size = size;
    dd->hit = hit;
    dd->miss = miss;

    argv[0] = "HGETALL";
    argvlen[0] = sizeof("HGETALL") - 1;
    argv[1] = (char *) dd->key.data;
    argvlen[1] = dd->key.len;

    rc = ngx_http_upload_redis_command(ctx->request, ctx->conf->redis,
                                       ctx->conf->redis_timeout,
                                       ngx_http_upload_dedup_found, ctx,
                                       2, argv, argvlen);
    if (rc == NGX_OK) {
        return NGX_HTTP_UPLOAD_PENDING;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_upload_redis_unavailable(ctx->request);
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


static void
ngx_http_upload_dedup_found(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    off_t                     wanted;
    ngx_http_upload_dedup_t  *dd;

    dd = ctx->dedup;
    wanted = dd->size;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    if (reply->elements == 0) {
        dd->miss(ctx);
        return;
    }

    if (ngx_http_upload_dedup_entry(r->pool, dd, reply) != NGX_OK) {
        /* not an entry of ours: as if stale */
        ngx_http_upload_dedup_drop(ctx, ngx_http_upload_drop_script);
        dd->miss(ctx);
        return;
    }

    if ((wanted >= 0 && wanted != dd->size)
        || (ctx->conf->max_size && dd->size > ctx->conf->max_size)
        || (ctx->link && ctx->link->max_size
            && dd->size > ctx->link->max_size))
    {
        /* other bytes will come, checked then; or too big here */
        dd->miss(ctx);
        return;
    }

    if (!dd->check && ctx->temp.data == NULL
        && (ngx_http_upload_store_temp_name(ctx) != NGX_OK
            || ngx_http_upload_store_cleanup_add(ctx) != NGX_OK))
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_upload_finalize(r, ngx_http_upload_store_step(ctx,
                                    ngx_http_upload_dedup_attach,
                                    ngx_http_upload_dedup_attached));
}


/* path, size, ino from HGETALL */

static ngx_int_t
ngx_http_upload_dedup_entry(ngx_pool_t *pool, ngx_http_upload_dedup_t *dd,
    redisReply *reply)
{
    size_t       i;
    ngx_int_t    fields;
    redisReply  *f, *v;

    fields = 0;

    for (i = 0; i + 1 < reply->elements; i += 2) {
        f = reply->element[i];
        v = reply->element[i + 1];

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING
            || v->len == 0)
        {
            return NGX_ERROR;
        }

        if (f->len == 4 && ngx_strncmp(f->str, "path", 4) == 0) {
            dd->path.len = v->len;
            dd->path.data = ngx_pnalloc(pool, v->len + 1);
            if (dd->path.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(dd->path.data, v->str, v->len);
            dd->path.data[v->len] = '\0';
            fields |= 1;

        } else if (f->len == 4 && ngx_strncmp(f->str, "size", 4) == 0) {
            dd->size = ngx_atoof((u_char *) v->str, v->len);
            fields |= 2;

        } else if (f->len == 3 && ngx_strncmp(f->str, "ino", 3) == 0) {
            dd->ino = (ino_t) ngx_atoof((u_char *) v->str, v->len);
            fields |= 4;
        }
    }

    if (fields != 7 || dd->size < 0 || dd->path.data[0] != '/') {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* in a pool thread: is the entry's file still that content? */

static ngx_int_t
ngx_http_upload_dedup_valid(ngx_http_upload_dedup_t *dd)
{
    ngx_file_info_t  fi;

    if (ngx_file_info(dd->path.data, &fi) == NGX_FILE_ERROR
        || !ngx_is_file(&fi)
        || ngx_file_size(&fi) != dd->size
        || fi.st_ino != dd->ino)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* in a pool thread: the content gets a second name, the temporary one */

static void
ngx_http_upload_dedup_attach(ngx_http_upload_ctx_t *ctx)
{
    ngx_err_t                 err;
    ngx_http_upload_dedup_t  *dd;

    dd = ctx->dedup;
    dd->found = NGX_DECLINED;

    if (ngx_http_upload_dedup_valid(dd) != NGX_OK) {
        dd->stale = 1;
        return;
    }

    if (dd->check) {
        dd->found = NGX_OK;
        return;
    }

    if (link((char *) dd->path.data, (char *) ctx->temp.data) == -1) {
        err = ngx_errno;

        if (err != NGX_ENOENT
            || ngx_http_upload_store_mkdirs(ctx->temp.data,
                                            ctx->conf->store.len)
               != NGX_OK
            || link((char *) dd->path.data, (char *) ctx->temp.data) == -1)
        {
            /* another file system, too many links: stored as usual */
            return;
        }
    }

    /* between the link and here, the entry's file may have been replaced */

    if (ngx_http_upload_dedup_valid(dd) != NGX_OK) {
        (void) unlink((char *) ctx->temp.data);
        dd->stale = 1;
        return;
    }

    dd->found = NGX_OK;

    if (ctx->path.data) {
        ngx_http_upload_store_prepare(ctx);
    }
}


static void
ngx_http_upload_dedup_attached(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_request_t       *r;
    ngx_http_upload_dedup_t  *dd;

    r = ctx->request;
    dd = ctx->dedup;

    if (dd->found != NGX_OK) {
        if (dd->stale) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "upload: content index entry \"%V\" is stale "
                          "(\"%V\" changed or went), dropped",
                          &dd->key, &dd->path);

            ngx_http_upload_dedup_drop(ctx, ngx_http_upload_drop_script);
        }

        dd->miss(ctx);
        return;
    }

    if (ctx->step_err) {
        ngx_http_upload_finalize(r, ngx_http_upload_store_fail(ctx));
        return;
    }

    ctx->size = dd->size;
    ctx->ino = dd->ino;
    ctx->exists = 1;
    ctx->deduped = 1;

    dd->hit(ctx);
}


/*
 * After an object is published: its entry in the index, or, when the
 * content is indexed already, the object becomes a link to that content.
 * The answer goes out after that (ctx->reply).
 */

void
ngx_http_upload_dedup_published(ngx_http_upload_ctx_t *ctx)
{
    u_char                    hex[2 * NGX_HTTP_UPLOAD_SHA256_LEN], *p;
    size_t                    argvlen[7];
    const char               *argv[7];
    ngx_http_request_t       *r;
    ngx_http_upload_dedup_t  *dd;

    r = ctx->request;

    ngx_hex_dump(hex, ctx->sha256, sizeof(ctx->sha256));

    dd = ngx_http_upload_dedup_get(ctx);
    p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN + NGX_OFF_T_LEN);

    if (dd == NULL || p == NULL
        || ngx_http_upload_dedup_key(ctx, hex) != NGX_OK)
    {
        goto answer;
    }

    argv[0] = "EVAL";
    argvlen[0] = sizeof("EVAL") - 1;
    argv[1] = ngx_http_upload_index_script;
    argvlen[1] = sizeof(ngx_http_upload_index_script) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (char *) dd->key.data;
    argvlen[3] = dd->key.len;
    argv[4] = (char *) ctx->path.data;
    argvlen[4] = ctx->path.len;
    argv[5] = (char *) p;
    argvlen[5] = ngx_sprintf(p, "%O", ctx->size) - p;
    p += argvlen[5];
    argv[6] = (char *) p;
    argvlen[6] = ngx_sprintf(p, "%O", (off_t) ctx->ino) - p;

    if (ngx_http_upload_redis_command(r, ctx->conf->redis,
                                      ctx->conf->redis_timeout,
                                      ngx_http_upload_dedup_indexed, ctx,
                                      7, argv, argvlen)
        == NGX_OK)
    {
        return;
    }

answer:

    /* the object is stored: an index entry less is no error */

    ngx_http_upload_finalize(r, ngx_http_upload_callback_post(ctx));
}


static void
ngx_http_upload_dedup_indexed(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    ngx_http_upload_dedup_t  *dd;

    dd = ctx->dedup;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3)
    {
        /* indexed now, or not at all (Redis failed): answer */
        ngx_http_upload_finalize(r, ngx_http_upload_callback_post(ctx));
        return;
    }

    /* HMGET: path, size, ino of the content indexed already */

    if (reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        ngx_http_upload_finalize(r, ngx_http_upload_callback_post(ctx));
        return;
    }

    dd->path.len = reply->element[0]->len;
    dd->path.data = ngx_pnalloc(r->pool, dd->path.len + 1);
    if (dd->path.data == NULL) {
        ngx_http_upload_finalize(r, ngx_http_upload_callback_post(ctx));
        return;
    }

    ngx_memcpy(dd->path.data, reply->element[0]->str, dd->path.len);
    dd->path.data[dd->path.len] = '\0';

    dd->size = ngx_atoof((u_char *) reply->element[1]->str,
                         reply->element[1]->len);
    dd->ino = (ino_t) ngx_atoof((u_char *) reply->element[2]->str,
                                reply->element[2]->len);

    ngx_http_upload_finalize(r, ngx_http_upload_store_step(ctx,
                                    ngx_http_upload_dedup_relink,
                                    ngx_http_upload_dedup_relinked));
}


/*
 * In a pool thread: the object's file is replaced by a link to the
 * indexed content, the same bytes; its temporary name is free again.
 */

static void
ngx_http_upload_dedup_relink(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_upload_dedup_t  *dd;

    dd = ctx->dedup;
    dd->found = NGX_DECLINED;

    if (dd->size != ctx->size || dd->path.data[0] != '/') {
        dd->stale = 1;
        return;
    }

    if (ngx_http_upload_dedup_valid(dd) != NGX_OK) {
        dd->stale = 1;
        return;
    }

    if (link((char *) dd->path.data, (char *) ctx->temp.data) == -1) {
        return;
    }

    if (ngx_http_upload_dedup_valid(dd) != NGX_OK
        || ngx_rename_file(ctx->temp.data, ctx->path.data) == NGX_FILE_ERROR)
    {
        (void) unlink((char *) ctx->temp.data);
        return;
    }

    /* left by a rename between two links of one file (nothing to do) */
    (void) unlink((char *) ctx->temp.data);

    dd->found = NGX_OK;
}


static void
ngx_http_upload_dedup_relinked(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_upload_dedup_t  *dd;

    dd = ctx->dedup;

    if (dd->found == NGX_OK) {
        ctx->deduped = 1;

    } else if (dd->stale) {
        /* this object's entry replaces the stale one */
        ngx_http_upload_dedup_drop(ctx, ngx_http_upload_replace_script);
    }

    ngx_http_upload_finalize(ctx->request, ngx_http_upload_callback_post(ctx));
}


/* not tied to the request; a lost one leaves the entry to the next miss */

static void
ngx_http_upload_dedup_drop(ngx_http_upload_ctx_t *ctx, const char *script)
{
    u_char                   *p;
    size_t                    argvlen[9];
    const char               *argv[9];
    ngx_http_upload_dedup_t  *dd;

    dd = ctx->dedup;

    p = ngx_pnalloc(ctx->request->pool, 3 * NGX_OFF_T_LEN);
    if (p == NULL || dd->path.data == NULL) {
        return;
    }

    argv[0] = "EVAL";
    argvlen[0] = sizeof("EVAL") - 1;
    argv[1] = script;
    argvlen[1] = ngx_strlen(script);
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (char *) dd->key.data;
    argvlen[3] = dd->key.len;

    /* ARGV: this object (for a replace), then the stale entry */

    argv[4] = ctx->path.data ? (char *) ctx->path.data : "";
    argvlen[4] = ctx->path.data ? ctx->path.len : 0;
    argv[5] = (char *) p;
    argvlen[5] = ngx_sprintf(p, "%O", ctx->size) - p;
    p += argvlen[5];
    argv[6] = (char *) p;
    argvlen[6] = ngx_sprintf(p, "%O", (off_t) ctx->ino) - p;
    p += argvlen[6];
    argv[7] = (char *) dd->path.data;
    argvlen[7] = dd->path.len;
    argv[8] = (char *) p;
    argvlen[8] = ngx_sprintf(p, "%O", (off_t) dd->ino) - p;

    (void) ngx_http_upload_redis_command(NULL, ctx->conf->redis,
                                         ctx->conf->redis_timeout,
                                         ngx_http_upload_dedup_ignore, NULL,
                                         9, argv, argvlen);
}


static void
ngx_http_upload_dedup_ignore(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    /* the next lookup meets a stale entry again and drops it then */
}
