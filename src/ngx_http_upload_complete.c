
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Completing a sliced upload: POST <key>?uploadId=<id> with
 * {"parts": [{"part_number": n, "etag": "..."}, ...]}.
 *
 *     check the list -> take the session ("completing", Redis)
 *         -> check the parts against their records
 *         -> merge (thread: copy_file_range, SHA-256, fsync, mkdir)
 *         -> record the object -> rename into place
 *         -> forget the session, remember the answer (Redis)
 *         -> remove the part files (thread) -> 200
 *
 * When every listed part was written in place (the session's data file
 * holds them all, at their offsets) the data file itself is renamed into
 * place: nothing is copied.  Either way only the bytes after the running
 * SHA-256's prefix (ngx_http_upload_running.c) are hashed here.
 *
 * A failed check or merge gives the session back ("open"), so that the
 * client can fix its list or its parts.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>
#include <dirent.h>

#include "ngx_http_upload_session.h"


#define NGX_HTTP_UPLOAD_COMPLETE_MAX  (2 * 1024 * 1024)
#define NGX_HTTP_UPLOAD_RETRY         100
#define NGX_HTTP_UPLOAD_RETRIES       600


typedef struct {
    u_char                       *path;
    off_t                         start;    /* in the data file, in place */
    off_t                         size;
} ngx_http_upload_merge_file_t;


static void ngx_http_upload_complete_body(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_complete_parse(ngx_http_upload_ctx_t *ctx,
    const char **code, const char **message);
static ngx_int_t ngx_http_upload_complete_hash(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_complete_app(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_complete_begin(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_complete_begun(ngx_http_upload_ctx_t *ctx,
    ngx_int_t status);
static void ngx_http_upload_complete_retry(ngx_event_t *ev);
static void ngx_http_upload_complete_lease(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_complete_cleanup(void *data);
static ngx_int_t ngx_http_upload_complete_check(ngx_http_upload_ctx_t *ctx,
    const char **code, const char **message);
static void ngx_http_upload_complete_plan(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_complete_merge(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_complete_in_place(
    ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_merge_work(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_in_place_work(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_merge_copy(ngx_fd_t in, off_t start,
    ngx_fd_t out, off_t *offset, off_t size);
static ngx_int_t ngx_http_upload_merge_hash(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_merge_done(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_complete_etag(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_complete_reply(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_complete_finished(ngx_http_upload_ctx_t *ctx,
    ngx_int_t status);
static void ngx_http_upload_complete_cleaned(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_complete_send(ngx_http_upload_ctx_t *ctx);
static ngx_int_t ngx_http_upload_complete_fail(ngx_http_upload_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *message);


ngx_int_t
ngx_http_upload_complete(ngx_http_request_t *r,
    ngx_http_upload_session_t *session)
{
    ngx_int_t                    rc;
    ngx_pool_cleanup_t          *cln;
    ngx_http_upload_ctx_t       *ctx;
    ngx_http_upload_complete_t  *cp;

    rc = ngx_http_upload_request_ctx(r, &session->app, &session->key, &ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    cp = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_complete_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (cp == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cp->retry.handler = ngx_http_upload_complete_retry;
    cp->retry.data = ctx;
    cp->retry.log = r->connection->log;

    cln->handler = ngx_http_upload_complete_cleanup;
    cln->data = ctx;

    ctx->session = session;
    ctx->complete = cp;

    rc = ngx_http_upload_body_collect(ctx, NGX_HTTP_UPLOAD_COMPLETE_MAX,
                                      ngx_http_upload_complete_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return ngx_http_upload_body_error(r, rc);
    }

    /* the body reader holds the request now */
    return NGX_DONE;
}


/*
 * Whatever ends the request (an error on any step, a client gone, a
 * timeout), a session it took ("completing") is given back; so is one
 * its start may have taken, the answer still to come.
 */

static void
ngx_http_upload_complete_cleanup(void *data)
{
    ngx_http_upload_ctx_t *ctx = data;

    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;

    if (cp->retry.timer_set) {
        ngx_del_timer(&cp->retry);
    }

    if (cp->renew.timer_set) {
        ngx_del_timer(&cp->renew);
    }

    if ((cp->began || cp->asking) && !cp->closed) {
        if (ctx->committed) {
            /* stored: the session is spent, never given back */
            ngx_http_upload_session_forget(ctx);

        } else {
            ngx_http_upload_session_reopen(ctx);
        }
    }
}


static void
ngx_http_upload_complete_body(ngx_http_upload_ctx_t *ctx)
{
    const char          *code, *message;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ngx_http_upload_complete_parse(ctx, &code, &message) != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_BAD_REQUEST, code,
                                         message));
        return;
    }

    if (ngx_http_upload_complete_hash(ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* the app: where the post callback goes */

    ngx_http_upload_finalize(r, ngx_http_upload_app_lookup(ctx,
                                    ngx_http_upload_complete_app));
}


static void
ngx_http_upload_complete_app(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_upload_callback_post_only(ctx, ngx_http_upload_complete_begin);
}


static void
ngx_http_upload_complete_begin(ngx_http_upload_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    rc = ngx_http_upload_session_begin(ctx, ngx_http_upload_complete_begun);

    if (rc == NGX_HTTP_SERVICE_UNAVAILABLE) {
        rc = ngx_http_upload_redis_unavailable(r);
    }

    ngx_http_upload_finalize(r, rc);
}


/* {"parts": [{"part_number": n, "etag": "<md5>"}, ...]}, n ascending */

static ngx_int_t
ngx_http_upload_complete_parse(ngx_http_upload_ctx_t *ctx, const char **code,
    const char **message)
{
    u_char                      *p;
    cJSON                       *root, *list, *item, *n, *etag;
    size_t                       len;
    ngx_int_t                    rc;
    ngx_uint_t                   last;
    ngx_http_request_t          *r;
    ngx_http_upload_listed_t    *listed;
    ngx_http_upload_complete_t  *cp;

    r = ctx->request;
    cp = ctx->complete;

    *code = "MalformedJSON";

    root = cJSON_ParseWithLength((char *) ctx->json->pos,
                                 ctx->json->last - ctx->json->pos);

    list = cJSON_GetObjectItemCaseSensitive(root, "parts");

    if (root == NULL || !cJSON_IsObject(root) || !cJSON_IsArray(list)) {
        cJSON_Delete(root);
        *message = "the body must be a JSON object with a \"parts\" array";
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    cp->listed = ngx_array_create(r->pool, cJSON_GetArraySize(list) + 1,
                                  sizeof(ngx_http_upload_listed_t));
    if (cp->listed == NULL) {
        *message = "no memory";
        goto done;
    }

    last = 0;

    cJSON_ArrayForEach(item, list) {

        n = cJSON_GetObjectItemCaseSensitive(item, "part_number");
        etag = cJSON_GetObjectItemCaseSensitive(item, "etag");

        if (!cJSON_IsNumber(n) || !cJSON_IsString(etag)
            || n->valuedouble < 1
            || n->valuedouble > (double) ctx->conf->max_parts
            || n->valuedouble != (double) (ngx_uint_t) n->valuedouble)
        {
            *message = "every part needs a \"part_number\" from 1 to "
                       "upload_max_parts and an \"etag\" string";
            goto done;
        }

        if ((ngx_uint_t) n->valuedouble <= last) {
            *code = "InvalidPartOrder";
            *message = "the parts must be listed in ascending order of "
                       "part_number, each once";
            goto done;
        }

        last = (ngx_uint_t) n->valuedouble;

        listed = ngx_array_push(cp->listed);
        if (listed == NULL) {
            *message = "no memory";
            goto done;
        }

        /* S3 clients quote the etag; case does not matter in hex */

        p = (u_char *) etag->valuestring;
        len = ngx_strlen(etag->valuestring);

        if (len >= 2 && p[0] == '"' && p[len - 1] == '"') {
            p++;
            len -= 2;
        }

        listed->number = last;
        listed->etag.len = len;
        listed->etag.data = ngx_pnalloc(r->pool, len + 1);
        if (listed->etag.data == NULL) {
            *message = "no memory";
            goto done;
        }

        ngx_strlow(listed->etag.data, p, len);
    }

    if (cp->listed->nelts == 0) {
        *message = "at least one part must be listed";
        goto done;
    }

    rc = NGX_OK;

done:

    cJSON_Delete(root);

    return rc;
}


/* a retried complete is known by the same list: its SHA-256 */

static ngx_int_t
ngx_http_upload_complete_hash(ngx_http_upload_ctx_t *ctx)
{
    u_char                       line[NGX_INT_T_LEN + 2];
    u_char                       md[NGX_HTTP_UPLOAD_SHA256_LEN];
    ngx_uint_t                   i;
    EVP_MD_CTX                  *sha;
    ngx_http_upload_listed_t    *listed;
    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;

    cp->list_hash.data = ngx_pnalloc(ctx->request->pool,
                                     2 * NGX_HTTP_UPLOAD_SHA256_LEN);
    sha = EVP_MD_CTX_new();

    if (cp->list_hash.data == NULL || sha == NULL
        || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1)
    {
        EVP_MD_CTX_free(sha);
        return NGX_ERROR;
    }

    listed = cp->listed->elts;

    for (i = 0; i < cp->listed->nelts; i++) {
        if (EVP_DigestUpdate(sha, line,
                             ngx_sprintf(line, "%ui ", listed[i].number)
                             - line) != 1
            || EVP_DigestUpdate(sha, listed[i].etag.data, listed[i].etag.len)
               != 1
            || EVP_DigestUpdate(sha, "\n", 1) != 1)
        {
            EVP_MD_CTX_free(sha);
            return NGX_ERROR;
        }
    }

    if (EVP_DigestFinal_ex(sha, md, NULL) != 1) {
        EVP_MD_CTX_free(sha);
        return NGX_ERROR;
    }

    EVP_MD_CTX_free(sha);

    cp->list_hash.len = ngx_hex_dump(cp->list_hash.data, md, sizeof(md))
                        - cp->list_hash.data;

    return NGX_OK;
}


static void
ngx_http_upload_complete_begun(ngx_http_upload_ctx_t *ctx, ngx_int_t status)
{
    const char                  *code, *message;
    ngx_http_request_t          *r;
    ngx_http_upload_complete_t  *cp;

    r = ctx->request;
    cp = ctx->complete;

    switch (status) {

    case NGX_OK:
        cp->began = 1;
        ngx_http_upload_complete_lease(ctx);
        break;

    case NGX_DONE:
        /* completed before, with the same list: the same answer */
        ngx_http_finalize_request(r, ngx_http_upload_complete_send(ctx));
        return;

    case NGX_BUSY:
        /* another complete runs: wait for its remembered answer */

        if (cp->retries++ < NGX_HTTP_UPLOAD_RETRIES) {
            ngx_add_timer(&cp->retry, NGX_HTTP_UPLOAD_RETRY);
            return;
        }

        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_CONFLICT,
                                         "OperationAborted",
                                         "another complete of this upload "
                                         "is still running"));
        return;

    case NGX_DECLINED:
        ngx_http_finalize_request(r, ngx_http_upload_no_such_upload(r));
        return;

    default:
        /*
         * No answer: the begin may have run all the same (Redis went away
         * before its reply came), so the session is given back.  The
         * reopen is fenced by the lease's token: it does nothing if the
         * begin did not run, and if it overtakes a begin still on its way,
         * the session is taken over once the lease lapses, as before.
         */

        ngx_http_upload_session_reopen(ctx);
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    if (ngx_http_upload_complete_check(ctx, &code, &message) != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_upload_complete_fail(ctx,
                                         NGX_HTTP_BAD_REQUEST, code,
                                         message));
        return;
    }

    ngx_http_upload_complete_plan(ctx);

    ngx_http_upload_finalize(r, cp->in_place
                                ? ngx_http_upload_complete_in_place(ctx)
                                : ngx_http_upload_complete_merge(ctx));
}


static void
ngx_http_upload_complete_retry(ngx_event_t *ev)
{
    ngx_http_upload_ctx_t *ctx = ev->data;

    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    rc = ngx_http_upload_session_begin(ctx, ngx_http_upload_complete_begun);

    if (rc == NGX_HTTP_SERVICE_UNAVAILABLE) {
        rc = ngx_http_upload_redis_unavailable(r);
    }

    ngx_http_upload_finalize(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * The session is ours while the lease is: renewed on a timer, and the
 * object is recorded only if the lease is still ours (the fence), so that
 * a complete taken over while it was cut off from Redis stores nothing.
 */

static void
ngx_http_upload_complete_lease(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_request_t          *r;
    ngx_http_upload_complete_t  *cp;

    r = ctx->request;
    cp = ctx->complete;

    if (cp->taken_over) {
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "upload: the complete of upload \"%V\" takes over "
                      "from an earlier one whose lease lapsed",
                      &((ngx_http_upload_session_t *) ctx->session)->id);
    }

    ctx->fence = cp->lease;
    ctx->fence_key = cp->keys[7];
    ctx->fence_session = cp->keys[0];

    cp->renew.handler = ngx_http_upload_session_renew;
    cp->renew.data = ctx;
    cp->renew.log = r->connection->log;

    ngx_add_timer(&cp->renew, ctx->conf->complete_lease / 3);
}


/* S3's rules: every listed part exists with that etag, sizes fit */

static ngx_int_t
ngx_http_upload_complete_check(ngx_http_upload_ctx_t *ctx, const char **code,
    const char **message)
{
    off_t                        total;
    ngx_uint_t                   i, j;
    ngx_http_upload_part_t      *part;
    ngx_http_upload_listed_t    *listed;
    ngx_http_upload_session_t   *session;
    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;
    session = ctx->session;

    listed = cp->listed->elts;
    part = cp->parts->elts;

    total = 0;
    j = 0;

    for (i = 0; i < cp->listed->nelts; i++) {

        /* both lists are sorted by part number */

        while (j < cp->parts->nelts && part[j].number < listed[i].number) {
            j++;
        }

        if (j == cp->parts->nelts || part[j].number != listed[i].number
            || part[j].md5.len != listed[i].etag.len
            || ngx_strncmp(part[j].md5.data, listed[i].etag.data,
                           part[j].md5.len) != 0)
        {
            *code = "InvalidPart";
            *message = "a listed part was not uploaded, or its etag is not "
                       "the one listed";
            return NGX_DECLINED;
        }

        if (i + 1 < cp->listed->nelts
            && part[j].size < ctx->conf->min_part_size)
        {
            *code = "EntityTooSmall";
            *message = "every part but the last must be at least "
                       "upload_min_part_size";
            return NGX_DECLINED;
        }

        total += part[j].size;
    }

    if (ctx->conf->max_size && total > ctx->conf->max_size) {
        *code = "EntityTooLarge";
        *message = "the parts add up to more than upload_max_size";
        return NGX_DECLINED;
    }

    if (session->size >= 0 && total != session->size) {
        *code = "BadDigest";
        *message = "the parts do not add up to the size declared at "
                   "initiate";
        return NGX_DECLINED;
    }

    cp->size = total;

    return NGX_OK;
}


/*
 * In place when the listed parts are all the parts the declared size
 * has, each written in place, and no part is being written in place
 * (its writer would still write into the data file once renamed).  The
 * running SHA-256 is used when it covers a prefix of the listed parts.
 */

static void
ngx_http_upload_complete_plan(ngx_http_upload_ctx_t *ctx)
{
    off_t                        size;
    ngx_int_t                    m;
    ngx_uint_t                   i, j, all;
    ngx_http_upload_part_t      *part;
    ngx_http_upload_listed_t    *listed;
    ngx_http_upload_session_t   *session;
    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;
    session = ctx->session;
    listed = cp->listed->elts;
    part = cp->parts->elts;

    all = (session->size > 0 && session->part_size > 0 && cp->writing == 0
           && cp->listed->nelts
              == (ngx_uint_t) ((session->size + session->part_size - 1)
                               / session->part_size)
           && listed[cp->listed->nelts - 1].number == cp->listed->nelts);

    m = session->hash_part;

    if (m < 0 || (ngx_uint_t) m > cp->listed->nelts
        || (m > 0 && (listed[m - 1].number != (ngx_uint_t) m
                      || session->hash_state.len == 0))
        || ngx_http_upload_running_load(&cp->sha, &session->hash_state)
           != NGX_OK)
    {
        m = 0;
        (void) ngx_http_upload_running_load(&cp->sha, NULL);
    }

    size = 0;
    j = 0;

    for (i = 0; i < cp->listed->nelts; i++) {

        while (part[j].number != listed[i].number) {
            j++;
        }

        if (part[j].file.len != sizeof(NGX_HTTP_UPLOAD_DATA_FILE) - 1
            || ngx_strncmp(part[j].file.data, NGX_HTTP_UPLOAD_DATA_FILE,
                           part[j].file.len) != 0)
        {
            all = 0;
        }

        if (i < (ngx_uint_t) m) {
            size += part[j].size;
        }
    }

    cp->in_place = all;
    cp->hashed = m;
    cp->hashed_size = size;
}


/* the listed parts' files, in order, then the thread */

static ngx_int_t
ngx_http_upload_complete_merge(ngx_http_upload_ctx_t *ctx)
{
    ngx_uint_t                     i, j;
    ngx_http_request_t            *r;
    ngx_http_upload_part_t        *part;
    ngx_http_upload_listed_t      *listed;
    ngx_http_upload_session_t     *session;
    ngx_http_upload_complete_t    *cp;
    ngx_http_upload_merge_file_t  *file;

    r = ctx->request;
    cp = ctx->complete;
    session = ctx->session;

    if (ngx_http_upload_session_dir(r, &session->app, &session->id, &cp->dir)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cp->files = ngx_array_create(r->pool, cp->listed->nelts,
                                 sizeof(ngx_http_upload_merge_file_t));
    if (cp->files == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    listed = cp->listed->elts;
    part = cp->parts->elts;
    j = 0;

    for (i = 0; i < cp->listed->nelts; i++) {

        while (part[j].number != listed[i].number) {
            j++;
        }

        file = ngx_array_push(cp->files);
        if (file == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        file->size = part[j].size;
        file->start = 0;

        if (part[j].file.len == sizeof(NGX_HTTP_UPLOAD_DATA_FILE) - 1
            && ngx_strncmp(part[j].file.data, NGX_HTTP_UPLOAD_DATA_FILE,
                           part[j].file.len) == 0)
        {
            file->start = (off_t) (part[j].number - 1) * session->part_size;
        }
        file->path = ngx_pnalloc(r->pool, cp->dir.len + part[j].file.len + 2);
        if (file->path == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(file->path, "%V/%V%Z", &cp->dir, &part[j].file);
    }

    if (ngx_http_upload_store_path(r, ctx->conf, &session->app,
                                   &session->key, &ctx->path)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->hashes = NGX_HTTP_UPLOAD_SHA256;

    if (ngx_http_upload_store_open_temp(ctx) != NGX_OK) {
        return ngx_http_upload_complete_fail(ctx,
                   ctx->status ? ctx->status : NGX_HTTP_INTERNAL_SERVER_ERROR,
                   ctx->status == NGX_HTTP_INSUFFICIENT_STORAGE
                   ? "InsufficientStorage" : "InternalError",
                   "the merged file could not be created");
    }

    return ngx_http_upload_store_step(ctx, ngx_http_upload_merge_work,
                                      ngx_http_upload_merge_done);
}


/*
 * In a pool thread: the parts are copied by the kernel when it can
 * (copy_file_range), then the merged file is hashed, synced, and its
 * directories are made.
 */

static void
ngx_http_upload_merge_work(ngx_http_upload_ctx_t *ctx)
{
    off_t                          offset;
    ngx_fd_t                       fd;
    ngx_uint_t                     i;
    ngx_http_upload_complete_t    *cp;
    ngx_http_upload_merge_file_t  *file;

    cp = ctx->complete;
    file = cp->files->elts;
    offset = 0;

    for (i = 0; i < cp->files->nelts; i++) {

        fd = ngx_open_file(file[i].path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
        if (fd == NGX_INVALID_FILE) {
            ctx->step_err = ngx_errno;
            ctx->step_op = "open() of a part of";
            return;
        }

        if (ngx_http_upload_merge_copy(fd, file[i].start, ctx->fd, &offset,
                                       file[i].size)
            != NGX_OK)
        {
            ctx->step_err = ngx_errno ? ngx_errno : EIO;
            ctx->step_op = "copying a part of";
            (void) ngx_close_file(fd);
            return;
        }

        (void) ngx_close_file(fd);

#if (NGX_LINUX) && defined(SYNC_FILE_RANGE_WRITE)
        /* the disk starts on each part now: the final fsync has less left */

        if (ctx->conf->fsync) {
            (void) sync_file_range(ctx->fd, offset - file[i].size,
                                   file[i].size, SYNC_FILE_RANGE_WRITE);
        }
#endif
    }

    if (ngx_http_upload_merge_hash(ctx) != NGX_OK) {
        ctx->step_err = ngx_errno ? ngx_errno : EIO;
        ctx->step_op = "hashing the merged file of";
        return;
    }

    ngx_http_upload_store_sync(ctx);
}


/*
 * The data file holds the object already: the complete opens it, the
 * thread hashes what the running SHA-256 has not and syncs it, and the
 * rename of a whole upload moves it into place.  A declared SHA-256 is
 * checked before anything else happens to it.
 */

static ngx_int_t
ngx_http_upload_complete_in_place(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_request_t          *r;
    ngx_http_upload_session_t   *session;
    ngx_http_upload_complete_t  *cp;

    r = ctx->request;
    cp = ctx->complete;
    session = ctx->session;

    if (ngx_http_upload_session_dir(r, &session->app, &session->id, &cp->dir)
        != NGX_OK
        || ngx_http_upload_store_path(r, ctx->conf, &session->app,
                                      &session->key, &ctx->path)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->temp.len = cp->dir.len + sizeof("/" NGX_HTTP_UPLOAD_DATA_FILE) - 1;
    ctx->temp.data = ngx_pnalloc(r->pool, ctx->temp.len + 1);
    if (ctx->temp.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(ctx->temp.data, "%V/" NGX_HTTP_UPLOAD_DATA_FILE "%Z",
                &cp->dir);

    /* until it is renamed, the data file stays the session's */

    ctx->shared = 1;
    ctx->hashes = NGX_HTTP_UPLOAD_SHA256;

    if (ngx_http_upload_store_open_temp(ctx) != NGX_OK) {
        return ngx_http_upload_complete_fail(ctx,
                   ctx->status ? ctx->status : NGX_HTTP_INTERNAL_SERVER_ERROR,
                   ctx->status == NGX_HTTP_INSUFFICIENT_STORAGE
                   ? "InsufficientStorage" : "InternalError",
                   "the parts' data file could not be opened");
    }

    return ngx_http_upload_store_step(ctx, ngx_http_upload_in_place_work,
                                      ngx_http_upload_merge_done);
}


static void
ngx_http_upload_in_place_work(ngx_http_upload_ctx_t *ctx)
{
    u_char                       hex[2 * NGX_HTTP_UPLOAD_SHA256_LEN];
    ngx_file_info_t              fi;
    ngx_http_upload_session_t   *session;

    session = ctx->session;

    /* the parts' bytes must all be there: never rename a short file */

    if (ngx_fd_info(ctx->fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) < ((ngx_http_upload_complete_t *)
                                 ctx->complete)->size)
    {
        ctx->step_err = EIO;
        ctx->step_op = "checking the parts' data file (shorter than its "
                       "parts)";
        return;
    }

    if (ngx_http_upload_merge_hash(ctx) != NGX_OK) {
        ctx->step_err = ngx_errno ? ngx_errno : EIO;
        ctx->step_op = "hashing the parts' data file";
        return;
    }

    ngx_hex_dump(hex, ctx->sha256, NGX_HTTP_UPLOAD_SHA256_LEN);

    if (session->sha256.len
        && ngx_strncmp(session->sha256.data, hex, sizeof(hex)) != 0)
    {
        /* merge_done answers BadDigest; the session keeps its data */
        return;
    }

    ngx_http_upload_store_sync(ctx);
}


static ngx_int_t
ngx_http_upload_merge_copy(ngx_fd_t in, off_t start, ngx_fd_t out,
    off_t *offset, off_t size)
{
    u_char     buf[65536];
    off_t      done, in_offset;
    ssize_t    n;
    ngx_err_t  err;

    done = 0;
    in_offset = start;

#if (NGX_LINUX)
    while (done < size) {
        n = copy_file_range(in, &in_offset, out, offset,
                            (size_t) (size - done), 0);

        if (n > 0) {
            done += n;
            continue;
        }

        if (n == 0) {
            /* the part is shorter than its record says */
            ngx_set_errno(EIO);
            return NGX_ERROR;
        }

        if (ngx_errno == NGX_EINTR) {
            continue;
        }

        if (ngx_errno != EXDEV && ngx_errno != ENOSYS && ngx_errno != EINVAL
            && ngx_errno != EOPNOTSUPP)
        {
            return NGX_ERROR;
        }

        /* another file system, or no support: copy by hand */
        break;
    }
#endif

    while (done < size) {
        n = pread(in, buf, ngx_min((off_t) sizeof(buf), size - done),
                  start + done);

        if (n == -1 && ngx_errno == NGX_EINTR) {
            continue;
        }

        if (n <= 0) {
            if (n == 0) {
                ngx_set_errno(EIO);
            }

            return NGX_ERROR;
        }

        if (ngx_http_upload_store_write(out, buf, n, *offset, &err)
            == NGX_ERROR)
        {
            ngx_set_errno(err);
            return NGX_ERROR;
        }

        done += n;
        *offset += n;
    }

    return NGX_OK;
}


/* from the end of the running SHA-256's prefix to the end of the object */

static ngx_int_t
ngx_http_upload_merge_hash(ngx_http_upload_ctx_t *ctx)
{
    u_char                      *buf;
    ngx_int_t                    rc;
    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;

    buf = ngx_alloc(NGX_HTTP_UPLOAD_HASH_CHUNK, ngx_cycle->log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_upload_running_update(&cp->sha, ctx->fd, cp->hashed_size,
                                        cp->size - cp->hashed_size, buf);

    ngx_free(buf);

    if (rc != NGX_OK || SHA256_Final(ctx->sha256, &cp->sha) != 1) {
        return NGX_ERROR;
    }

    ctx->size = cp->size;

    return NGX_OK;
}


static void
ngx_http_upload_merge_done(ngx_http_upload_ctx_t *ctx)
{
    u_char                      hex[2 * NGX_HTTP_UPLOAD_SHA256_LEN];
    ngx_http_request_t         *r;
    ngx_http_upload_session_t  *session;

    r = ctx->request;
    session = ctx->session;

    if (ctx->step_err) {
        ngx_http_upload_session_reopen(ctx);
        ngx_http_upload_finalize(r, ngx_http_upload_store_fail(ctx));
        return;
    }

    ngx_hex_dump(hex, ctx->sha256, NGX_HTTP_UPLOAD_SHA256_LEN);

    if (session->sha256.len
        && ngx_strncmp(session->sha256.data, hex, sizeof(hex)) != 0)
    {
        ngx_http_finalize_request(r, ngx_http_upload_complete_fail(ctx,
                                         NGX_HTTP_BAD_REQUEST, "BadDigest",
                                         "the merged file does not match "
                                         "the sha256 declared at "
                                         "initiate"));
        return;
    }

    if (ngx_http_upload_complete_etag(ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* from here on, as a whole upload: record, rename, index, answer */

    ctx->index = 1;
    ctx->record = ngx_http_upload_object_save;
    ctx->reply = ngx_http_upload_complete_reply;

    ngx_http_upload_finalize(r, ctx->record(ctx,
                                    ngx_http_upload_store_publish));
}


/* S3's multipart etag: the MD5 of the parts' binary MD5s, "-", count */

static ngx_int_t
ngx_http_upload_complete_etag(ngx_http_upload_ctx_t *ctx)
{
    u_char                       md5[NGX_HTTP_UPLOAD_MD5_LEN], *p;
    ngx_uint_t                   i;
    EVP_MD_CTX                  *md;
    ngx_http_upload_listed_t    *listed;
    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;
    listed = cp->listed->elts;

    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestInit_ex(md, EVP_md5(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return NGX_ERROR;
    }

    for (i = 0; i < cp->listed->nelts; i++) {

        if (listed[i].etag.len != 2 * NGX_HTTP_UPLOAD_MD5_LEN) {
            EVP_MD_CTX_free(md);
            return NGX_ERROR;
        }

        if (ngx_http_upload_hex_decode(md5, listed[i].etag.data,
                                       NGX_HTTP_UPLOAD_MD5_LEN)
            != NGX_OK)
        {
            EVP_MD_CTX_free(md);
            return NGX_ERROR;
        }

        if (EVP_DigestUpdate(md, md5, sizeof(md5)) != 1) {
            EVP_MD_CTX_free(md);
            return NGX_ERROR;
        }
    }

    if (EVP_DigestFinal_ex(md, md5, NULL) != 1) {
        EVP_MD_CTX_free(md);
        return NGX_ERROR;
    }

    EVP_MD_CTX_free(md);

    ctx->etag.data = ngx_pnalloc(ctx->request->pool,
                                 2 * NGX_HTTP_UPLOAD_MD5_LEN + 1
                                 + NGX_INT_T_LEN);
    if (ctx->etag.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_hex_dump(ctx->etag.data, md5, sizeof(md5));
    p = ngx_sprintf(p, "-%ui", cp->listed->nelts);
    ctx->etag.len = p - ctx->etag.data;

    return NGX_OK;
}


/* the object is in place: forget the session, remember the answer */

static ngx_int_t
ngx_http_upload_complete_reply(ngx_http_upload_ctx_t *ctx)
{
    cJSON                       *json;
    ngx_str_t                    url, sha256;
    ngx_http_request_t          *r;
    ngx_http_upload_complete_t  *cp;

    r = ctx->request;
    cp = ctx->complete;

    /*
     * The object is in place: the session cannot be given back any more
     * (in place, its data file is the object now).
     */

    cp->closed = 1;

    sha256.data = ngx_pnalloc(r->pool, 2 * NGX_HTTP_UPLOAD_SHA256_LEN);
    if (sha256.data == NULL
        || ngx_http_upload_object_url(r, &ctx->app, &ctx->key, &url)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    sha256.len = ngx_hex_dump(sha256.data, ctx->sha256,
                              NGX_HTTP_UPLOAD_SHA256_LEN) - sha256.data;

    json = cJSON_CreateObject();
    if (json == NULL) {
        return NGX_ERROR;
    }

    if ((ctx->deduped && cJSON_AddTrueToObject(json, "dedup") == NULL)
        || ngx_http_upload_add_string(json, "key", &ctx->key) != NGX_OK
        || ngx_http_upload_add_string(json, "app", &ctx->app) != NGX_OK
        || cJSON_AddNumberToObject(json, "size", (double) ctx->size) == NULL
        || ngx_http_upload_add_string(json, "etag", &ctx->etag) != NGX_OK
        || ngx_http_upload_add_string(json, "sha256", &sha256) != NGX_OK
        || ngx_http_upload_add_string(json, "url", &url) != NGX_OK
        || cJSON_AddNumberToObject(json, "parts",
                                   (double) cp->listed->nelts) == NULL)
    {
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    switch (ngx_http_upload_callback_result(ctx, json)) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        cp->status = 203;
        break;

    default:
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    if (ngx_http_upload_json_text(r->pool, json, &cp->result) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_upload_session_finish(ctx,
                                          ngx_http_upload_complete_finished);
}


static void
ngx_http_upload_complete_finished(ngx_http_upload_ctx_t *ctx,
    ngx_int_t status)
{
    ngx_http_request_t          *r;
    ngx_http_upload_complete_t  *cp;

    r = ctx->request;
    cp = ctx->complete;

    if (status == NGX_DECLINED) {
        /* its part files are the other complete's now */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "upload: the sliced upload of \"%V/%V\" is stored, "
                      "but another complete took its session over "
                      "meanwhile", &ctx->app, &ctx->key);

    } else if (status != NGX_OK) {
        /* the object is stored; the session expires with its TTL */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "upload: the sliced upload of \"%V/%V\" is stored, "
                      "but its session could not be closed in Redis",
                      &ctx->app, &ctx->key);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "upload: sliced upload of \"%V/%V\" completed, %ui parts, "
                  "%O bytes, %s, %O bytes hashed at complete",
                  &ctx->app, &ctx->key, cp->listed->nelts, ctx->size,
                  cp->in_place ? "in place" : "copied",
                  ctx->size - cp->hashed_size);

    /*
     * The answer goes out now; the request ends once the part files are
     * removed (the answer is remembered: removing them changes nothing).
     */

    cp->rc = ngx_http_upload_complete_send(ctx);

    if (cp->rc == NGX_ERROR || status == NGX_DECLINED) {
        ngx_http_finalize_request(r, cp->rc);
        return;
    }

    ctx->path = cp->dir;

    ngx_http_upload_finalize(r, ngx_http_upload_store_step(ctx,
                                    ngx_http_upload_store_remove_dir,
                                    ngx_http_upload_complete_cleaned));
}


static void
ngx_http_upload_complete_cleaned(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;

    ngx_http_finalize_request(ctx->request, cp->rc);
}


/* the answer, first or remembered, with its etag as the ETag header */

static ngx_int_t
ngx_http_upload_complete_send(ngx_http_upload_ctx_t *ctx)
{
    u_char                      *p;
    cJSON                       *json, *etag;
    ngx_str_t                    value;
    ngx_http_request_t          *r;
    ngx_http_upload_complete_t  *cp;

    r = ctx->request;
    cp = ctx->complete;

    json = cJSON_ParseWithLength((char *) cp->result.data, cp->result.len);
    etag = cJSON_GetObjectItemCaseSensitive(json, "etag");

    if (cJSON_IsString(etag)) {
        value.len = ngx_strlen(etag->valuestring) + 2;
        value.data = ngx_pnalloc(r->pool, value.len);

        if (value.data) {
            p = value.data;
            *p++ = '"';
            p = ngx_cpymem(p, etag->valuestring, value.len - 2);
            *p = '"';

            (void) ngx_http_upload_set_header(r, "ETag", &value);
        }
    }

    cJSON_Delete(json);

    /* 203: stored, but the app's post callback failed */

    return ngx_http_upload_send_text(r, cp->status ? cp->status
                                                   : NGX_HTTP_OK,
                                     &cp->result);
}


static ngx_int_t
ngx_http_upload_complete_fail(ngx_http_upload_ctx_t *ctx, ngx_uint_t status,
    const char *code, const char *message)
{
    ngx_http_upload_session_reopen(ctx);

    return ngx_http_upload_send_error(ctx->request, status, code, message);
}
