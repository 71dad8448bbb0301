
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * The store on disk: "<store>/<app>/<key>" for objects and
 * "<store>/.upload-tmp/" for bodies being received.  An object appears at
 * its final path only by rename(2) of a complete, fsynced temporary file,
 * so a reader sees the old object or the new one, never a mix.
 *
 * Committing an upload is a chain of steps; the ones that may block on the
 * disk (fsync, mkdir, rename) run in the thread pool when there is one:
 *
 *     sync (fsync file, create directories) -> record in Redis
 *         -> publish (rename, fsync directory) -> 201 answer
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/rand.h>
#include <dirent.h>

#include "ngx_http_upload_session.h"


/* start the disk's writeback early so that the final fsync is short */
#define NGX_HTTP_UPLOAD_WRITEBACK  (8 * 1024 * 1024)


static void ngx_http_upload_store_cleanup(void *data);
#if (NGX_THREADS)
static void ngx_http_upload_store_step_thread(void *data, ngx_log_t *log);
static void ngx_http_upload_store_step_event(ngx_event_t *ev);
#endif
static void ngx_http_upload_store_synced(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_store_rename(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_store_published(ngx_http_upload_ctx_t *ctx);


ngx_int_t
ngx_http_upload_store_path(ngx_http_request_t *r,
    ngx_http_upload_loc_conf_t *ulcf, ngx_str_t *app, ngx_str_t *key,
    ngx_str_t *path)
{
    u_char  *p;

    path->len = ulcf->store.len + 1 + app->len + 1 + key->len;

    path->data = ngx_pnalloc(r->pool, path->len + 1);
    if (path->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(path->data, ulcf->store.data, ulcf->store.len);
    *p++ = '/';
    p = ngx_cpymem(p, app->data, app->len);
    *p++ = '/';
    p = ngx_cpymem(p, key->data, key->len);
    *p = '\0';

    return NGX_OK;
}


/* a new random name in "<store>/.upload-tmp/" */

ngx_int_t
ngx_http_upload_store_temp_name(ngx_http_upload_ctx_t *ctx)
{
    u_char                      *p, rnd[16];
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ctx->conf;

    ctx->temp.len = ulcf->store.len
                    + sizeof("/" NGX_HTTP_UPLOAD_TEMP_DIR "/") - 1
                    + 2 * sizeof(rnd);

    ctx->temp.data = ngx_pnalloc(ctx->request->pool, ctx->temp.len + 1);
    if (ctx->temp.data == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(ctx->temp.data, ulcf->store.data, ulcf->store.len);
    p = ngx_cpymem(p, "/" NGX_HTTP_UPLOAD_TEMP_DIR "/",
                   sizeof("/" NGX_HTTP_UPLOAD_TEMP_DIR "/") - 1);
    p = ngx_hex_dump(p, rnd, sizeof(rnd));
    *p = '\0';

    return NGX_OK;
}


/* closes ctx->fd and removes ctx->temp unless committed, at request end */

ngx_int_t
ngx_http_upload_store_cleanup_add(ngx_http_upload_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(ctx->request->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_upload_store_cleanup;
    cln->data = ctx;

    return NGX_OK;
}


ngx_int_t
ngx_http_upload_store_open_temp(ngx_http_upload_ctx_t *ctx)
{
    ngx_err_t            err;
    ngx_uint_t           tries;
    ngx_http_request_t  *r;

    r = ctx->request;

    ctx->fd = NGX_INVALID_FILE;

    if (ngx_http_upload_store_cleanup_add(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    /* a part is written at its own, already chosen and unique, name */

    if (ctx->temp.data == NULL
        && ngx_http_upload_store_temp_name(ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (tries = 0; /* void */ ; tries++) {

        /* a part written in place shares the session's data file */

        ctx->fd = ngx_open_file(ctx->temp.data, NGX_FILE_RDWR,
                                NGX_FILE_CREATE_OR_OPEN|O_CLOEXEC
                                | (ctx->shared ? 0 : O_EXCL),
                                NGX_FILE_DEFAULT_ACCESS);

        if (ctx->fd != NGX_INVALID_FILE) {
            return NGX_OK;
        }

        err = ngx_errno;

        if (err != NGX_ENOENT || tries > 0) {
            break;
        }

        /* the first file of a new store or session creates its directory */

        if (ngx_http_upload_store_mkdirs(ctx->temp.data, 0) != NGX_OK) {
            err = ngx_errno;
            break;
        }
    }

    ngx_log_error(NGX_LOG_CRIT, r->connection->log, err,
                  "upload: cannot create temporary file \"%s\"",
                  ctx->temp.data);

    ctx->status = (err == NGX_ENOSPC) ? NGX_HTTP_INSUFFICIENT_STORAGE
                                      : NGX_HTTP_INTERNAL_SERVER_ERROR;

    return NGX_ERROR;
}


/* an upload that did not reach its final path leaves no file behind */

static void
ngx_http_upload_store_cleanup(void *data)
{
    ngx_http_upload_ctx_t *ctx = data;

    if (ctx->fd != NGX_INVALID_FILE) {
        if (ngx_close_file(ctx->fd) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_ALERT, ctx->request->connection->log,
                          ngx_errno, "upload: close() \"%s\" failed",
                          ctx->temp.data);
        }

        ctx->fd = NGX_INVALID_FILE;
    }

    if (!ctx->committed && !ctx->shared && ctx->temp.data) {
        if (ngx_delete_file(ctx->temp.data) == NGX_FILE_ERROR
            && ngx_errno != NGX_ENOENT)
        {
            ngx_log_error(NGX_LOG_CRIT, ctx->request->connection->log,
                          ngx_errno, "upload: cannot remove temporary "
                          "file \"%s\"", ctx->temp.data);
        }
    }
}


/* runs in a pool thread: no logging, the caller reports "err" */

ssize_t
ngx_http_upload_store_write(ngx_fd_t fd, u_char *buf, size_t size,
    off_t offset, ngx_err_t *err)
{
    ssize_t  n;
    size_t   written;

    written = 0;

    while (written < size) {
        n = pwrite(fd, buf + written, size - written, offset + written);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }

            *err = ngx_errno;
            return NGX_ERROR;
        }

        written += n;
    }

    return written;
}


/* called by the writer lane, in its thread, after each write */

void
ngx_http_upload_store_writeback(ngx_http_upload_lane_t *lane)
{
#if (NGX_LINUX) && defined(SYNC_FILE_RANGE_WRITE)
    if (!lane->ctx->conf->fsync
        || lane->offset - lane->synced < NGX_HTTP_UPLOAD_WRITEBACK)
    {
        return;
    }

    (void) sync_file_range(lane->ctx->fd, lane->synced,
                           lane->offset - lane->synced,
                           SYNC_FILE_RANGE_WRITE);

    lane->synced = lane->offset;
#endif
}


ngx_int_t
ngx_http_upload_store_commit(ngx_http_upload_ctx_t *ctx)
{
    return ngx_http_upload_store_step(ctx, ngx_http_upload_store_sync,
                                      ngx_http_upload_store_synced);
}


ngx_int_t
ngx_http_upload_store_remove(ngx_http_request_t *r, ngx_str_t *path)
{
    ngx_err_t  err;

    if (ngx_delete_file(path->data) == NGX_FILE_ERROR) {
        err = ngx_errno;

        if (err == NGX_ENOENT || err == NGX_ENOTDIR || err == NGX_EISDIR
            || err == NGX_EPERM)
        {
            return NGX_DECLINED;
        }

        ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                      "upload: cannot remove \"%s\"", path->data);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Runs "work" in the thread pool (or at once without one), then "done" on
 * the event loop.  The request stays blocked meanwhile: nginx cannot free
 * it under the thread.  "done" finalizes the request.
 */

ngx_int_t
ngx_http_upload_store_step(ngx_http_upload_ctx_t *ctx,
    void (*work)(ngx_http_upload_ctx_t *ctx),
    void (*done)(ngx_http_upload_ctx_t *ctx))
{
#if (NGX_THREADS)
    ngx_thread_task_t   *task;
    ngx_http_request_t  *r;
#endif

    ctx->step_work = work;
    ctx->step_done = done;
    ctx->step_err = 0;

#if (NGX_THREADS)
    if (ctx->conf->thread_pool) {
        r = ctx->request;
        task = ctx->step_task;

        if (task == NULL) {
            task = ngx_thread_task_alloc(r->pool, 0);
            if (task == NULL) {
                return NGX_ERROR;
            }

            task->ctx = ctx;
            task->handler = ngx_http_upload_store_step_thread;
            task->event.data = ctx;
            task->event.handler = ngx_http_upload_store_step_event;
            task->event.log = r->connection->log;

            ctx->step_task = task;
        }

        if (ngx_thread_task_post(ctx->conf->thread_pool, task) != NGX_OK) {
            return ngx_http_upload_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                              "SlowDown",
                                              "the server is too busy, "
                                              "try again later");
        }

        r->main->blocked++;

        return NGX_HTTP_UPLOAD_PENDING;
    }
#endif

    work(ctx);
    done(ctx);

    return NGX_HTTP_UPLOAD_PENDING;
}


#if (NGX_THREADS)

static void
ngx_http_upload_store_step_thread(void *data, ngx_log_t *log)
{
    ngx_http_upload_ctx_t *ctx = data;

    ctx->step_work(ctx);
}


static void
ngx_http_upload_store_step_event(ngx_event_t *ev)
{
    ngx_http_upload_ctx_t *ctx = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    r->main->blocked--;

    if (c->error) {
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);

    } else {
        ctx->step_done(ctx);
    }

    ngx_http_run_posted_requests(c);
}

#endif


void
ngx_http_upload_store_sync(ngx_http_upload_ctx_t *ctx)
{
    ngx_file_info_t  fi;

    if (ctx->conf->fsync && fsync(ctx->fd) == -1) {
        ctx->step_err = ngx_errno;
        ctx->step_op = "fsync()";
        return;
    }

    /* the content index knows a file by its inode */

    if (ngx_fd_info(ctx->fd, &fi) != NGX_FILE_ERROR) {
        ctx->ino = fi.st_ino;
    }

    ngx_http_upload_store_prepare(ctx);
}


/* the final path's directories, and no directory at the final path */

void
ngx_http_upload_store_prepare(ngx_http_upload_ctx_t *ctx)
{
    ngx_file_info_t  fi;

    if (ngx_http_upload_store_mkdirs(ctx->path.data, ctx->conf->store.len)
        != NGX_OK)
    {
        ctx->step_err = ngx_errno;
        ctx->step_op = "mkdir()";
        return;
    }

    /* found now, a conflict costs no record that rename() would belie */

    if (ngx_file_info(ctx->path.data, &fi) != NGX_FILE_ERROR
        && ngx_is_dir(&fi))
    {
        ctx->step_err = NGX_EISDIR;
        ctx->step_op = "rename()";
    }
}


static void
ngx_http_upload_store_rename(ngx_http_upload_ctx_t *ctx)
{
    u_char    *slash;
    ngx_fd_t   dir;

    if (ngx_rename_file(ctx->temp.data, ctx->path.data) == NGX_FILE_ERROR) {
        ctx->step_err = ngx_errno;
        ctx->step_op = "rename()";
        return;
    }

    /*
     * rename(2) of a link onto another link of the same file does nothing
     * and succeeds: a key that held this content already keeps it, and the
     * temporary link must go by hand.
     */

    if (ctx->deduped) {
        (void) unlink((char *) ctx->temp.data);
    }

    ctx->committed = 1;

    if (!ctx->conf->fsync) {
        return;
    }

    /* the rename itself is durable only once its directory is synced */

    for (slash = ctx->path.data + ctx->path.len; *slash != '/'; slash--) {
        /* void */
    }

    *slash = '\0';

    dir = ngx_open_file(ctx->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    *slash = '/';

    if (dir != NGX_INVALID_FILE) {
        (void) fsync(dir);
        (void) ngx_close_file(dir);
    }
}


/*
 * The steps below may finish the request (and free ctx with its pool)
 * inside the call that answers: the request is taken out of ctx first.
 */

static void
ngx_http_upload_store_synced(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ctx->step_err) {
        ngx_http_upload_finalize(r, ngx_http_upload_store_fail(ctx));
        return;
    }

    ngx_http_upload_finalize(r, ctx->record(ctx,
                                    ngx_http_upload_store_publish));
}


/* an object is renamed into place; a part was written at its name */

void
ngx_http_upload_store_publish(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ctx->temp.data == ctx->path.data) {
        ngx_http_upload_store_published(ctx);
        return;
    }

    ngx_http_upload_finalize(r, ngx_http_upload_store_step(ctx,
                                    ngx_http_upload_store_rename,
                                    ngx_http_upload_store_published));
}


static void
ngx_http_upload_store_published(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ctx->step_err) {
        ngx_http_upload_finalize(r, ngx_http_upload_store_fail(ctx));
        return;
    }

    ctx->committed = 1;

    if (ctx->fence.len) {
        /* a complete's: its session is never to be merged again */
        ngx_http_upload_session_stored(ctx);
    }

    if (ctx->index && ctx->conf->dedup && !ctx->exists) {
        /* answers once the content is indexed */
        ngx_http_upload_dedup_published(ctx);
        return;
    }

    ngx_http_upload_finalize(r, ngx_http_upload_callback_post(ctx));
}


ngx_int_t
ngx_http_upload_store_fail(ngx_http_upload_ctx_t *ctx)
{
    ngx_err_t            err;
    ngx_http_request_t  *r;

    r = ctx->request;
    err = ctx->step_err;

    ngx_log_error(NGX_LOG_ERR, r->connection->log, err,
                  "upload: %s \"%s\" failed", ctx->step_op, ctx->path.data);

    if (err == NGX_ENOSPC
#ifdef EDQUOT
        || err == EDQUOT
#endif
       )
    {
        return ngx_http_upload_send_error(r, NGX_HTTP_INSUFFICIENT_STORAGE,
                                          "InsufficientStorage",
                                          "the store is full");
    }

    if (err == NGX_ENOTDIR || err == NGX_EISDIR || err == NGX_EEXIST
        || err == ENOTEMPTY)
    {
        return ngx_http_upload_send_error(r, NGX_HTTP_CONFLICT,
                                          "KeyConflict",
                                          "the key names a directory of "
                                          "other keys, or one of its "
                                          "prefixes is a key");
    }

    return ngx_http_upload_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "InternalError",
                                      "the object could not be stored");
}


/* "from": the length of the leading part of "path" that already exists */

ngx_int_t
ngx_http_upload_store_mkdirs(u_char *path, size_t from)
{
    u_char           *p;
    ngx_err_t         err;
    ngx_file_info_t   fi;

    for (p = path + from + 1; *p; p++) {

        if (*p != '/') {
            continue;
        }

        *p = '\0';

        if (ngx_create_dir(path, 0755) == NGX_FILE_ERROR) {
            err = ngx_errno;

            /* an existing object where a directory is needed: a conflict */

            if (err == NGX_EEXIST
                && ngx_file_info(path, &fi) != NGX_FILE_ERROR
                && !ngx_is_dir(&fi))
            {
                err = NGX_ENOTDIR;
            }

            if (err != NGX_EEXIST) {
                *p = '/';
                ngx_set_errno(err);
                return NGX_ERROR;
            }
        }

        *p = '/';
    }

    return NGX_OK;
}


/* in a pool thread: a session's part files and their directory */

void
ngx_http_upload_store_remove_dir(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_upload_store_remove_tree(ctx->path.data);
}


/* the files of a directory (one level: sessions have no subdirectories) */

void
ngx_http_upload_store_remove_tree(u_char *dir)
{
    u_char          path[NGX_MAX_PATH];
    size_t          len;
    DIR            *d;
    struct dirent  *de;

    d = opendir((char *) dir);
    if (d == NULL) {
        return;
    }

    len = ngx_strlen(dir);

    while ((de = readdir(d)) != NULL) {

        if (de->d_name[0] == '.') {
            continue;
        }

        if (len + 1 + ngx_strlen(de->d_name) + 1 > sizeof(path)) {
            continue;
        }

        ngx_sprintf(path, "%s/%s%Z", dir, de->d_name);
        (void) unlink((char *) path);
    }

    (void) closedir(d);
    (void) rmdir((char *) dir);
}
