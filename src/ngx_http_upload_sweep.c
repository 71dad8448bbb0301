
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * The sweep of abandoned sliced uploads.  A session's records expire in
 * Redis by themselves; its part files would stay on disk.  Every
 * "upload_sweep_interval" each worker tries to take the store's sweep lock
 * in Redis (SET NX with the interval as its lifetime): one worker of one
 * host wins the round.  It lists the session directories of the store (in
 * a pool thread), asks Redis which sessions still exist, and removes the
 * directories of those that do not (in a pool thread again).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <dirent.h>

#include "ngx_http_upload_session.h"


#define NGX_HTTP_UPLOAD_SWEEP_MAX     10000


typedef struct {
    ngx_str_t                     app;
    ngx_str_t                     id;
    ngx_uint_t                    expired;
    ngx_http_upload_sweep_t      *sweep;
} ngx_http_upload_swept_t;


struct ngx_http_upload_sweep_s {
    ngx_str_t                     store;
    ngx_str_t                     lock;
    ngx_http_upload_redis_t      *redis;
    ngx_msec_t                    interval;
    ngx_msec_t                    timeout;

    ngx_event_t                   timer;
    u_char                        args[2 * NGX_INT_T_LEN];
    ngx_pool_t                   *pool;
    ngx_array_t                  *found;
    ngx_uint_t                    pending;
    ngx_uint_t                    removed;
    ngx_uint_t                    temps;      /* stale temp files removed */
    void                        (*work)(ngx_http_upload_sweep_t *sweep);
    void                        (*done)(ngx_http_upload_sweep_t *sweep);
#if (NGX_THREADS)
    ngx_thread_pool_t            *thread_pool;
    ngx_thread_task_t            *task;
#endif
};


static void ngx_http_upload_sweep_timer(ngx_event_t *ev);
static void ngx_http_upload_sweep_locked(ngx_http_request_t *r, void *data,
    redisReply *reply);
static void ngx_http_upload_sweep_run(ngx_http_upload_sweep_t *sweep,
    void (*work)(ngx_http_upload_sweep_t *sweep),
    void (*done)(ngx_http_upload_sweep_t *sweep));
#if (NGX_THREADS)
static void ngx_http_upload_sweep_thread(void *data, ngx_log_t *log);
static void ngx_http_upload_sweep_event(ngx_event_t *ev);
#endif
static void ngx_http_upload_sweep_list(ngx_http_upload_sweep_t *sweep);
static void ngx_http_upload_sweep_listed(ngx_http_upload_sweep_t *sweep);
static void ngx_http_upload_sweep_exists(ngx_http_request_t *r, void *data,
    redisReply *reply);
static void ngx_http_upload_sweep_remove(ngx_http_upload_sweep_t *sweep);
static void ngx_http_upload_sweep_removed(ngx_http_upload_sweep_t *sweep);
static void ngx_http_upload_sweep_temp(ngx_http_upload_sweep_t *sweep);
static void ngx_http_upload_sweep_next(ngx_http_upload_sweep_t *sweep);


/* one sweep per store and Redis, whatever the number of locations */

ngx_int_t
ngx_http_upload_sweep_add(ngx_conf_t *cf, ngx_http_upload_loc_conf_t *ulcf)
{
    ngx_uint_t                    i;
    ngx_http_upload_sweep_t     **sweeps, *sweep;
    ngx_http_upload_main_conf_t  *umcf;

    if (ulcf->sweep_interval == 0) {
        return NGX_OK;
    }

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upload_module);

    sweeps = umcf->sweeps.elts;

    for (i = 0; i < umcf->sweeps.nelts; i++) {

        if (sweeps[i]->store.len != ulcf->store.len
            || ngx_strncmp(sweeps[i]->store.data, ulcf->store.data,
                           ulcf->store.len) != 0)
        {
            continue;
        }

        /*
         * Sessions of one store recorded in two places: a sweeper asking
         * one of them would take the other's sessions for expired.
         */

        if (sweeps[i]->redis != ulcf->redis) {
            if (sweeps[i]->interval) {
                ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                                   "the store \"%V\" is used with more than "
                                   "one \"upload_redis\": its expired "
                                   "sliced uploads are not swept; set "
                                   "\"upload_redis\" once, at the level "
                                   "that covers them all", &ulcf->store);
            }

            sweeps[i]->interval = 0;
            return NGX_OK;
        }

        if (sweeps[i]->interval && ulcf->sweep_interval < sweeps[i]->interval)
        {
            sweeps[i]->interval = ulcf->sweep_interval;
        }

        return NGX_OK;
    }

    sweep = ngx_pcalloc(cf->pool, sizeof(ngx_http_upload_sweep_t));
    if (sweep == NULL) {
        return NGX_ERROR;
    }

    sweep->store = ulcf->store;
    sweep->redis = ulcf->redis;
    sweep->interval = ulcf->sweep_interval;
    sweep->timeout = ulcf->redis_timeout;

    /* the lock is shared by every host that uses this Redis and store */

    sweep->lock.len = sizeof("upload:{sweep}:") - 1 + ulcf->store.len;
    sweep->lock.data = ngx_pnalloc(cf->pool, sweep->lock.len);
    if (sweep->lock.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(sweep->lock.data, "upload:{sweep}:%V", &ulcf->store);

    sweeps = ngx_array_push(&umcf->sweeps);
    if (sweeps == NULL) {
        return NGX_ERROR;
    }

    *sweeps = sweep;

    return NGX_OK;
}


/* in each worker: the first round at a random point of the interval */

ngx_int_t
ngx_http_upload_sweep_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i;
    ngx_http_upload_sweep_t      **sweeps, *sweep;
    ngx_http_upload_main_conf_t   *umcf;
#if (NGX_THREADS)
    ngx_str_t                      name = ngx_string("default");
#endif

    umcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_upload_module);
    if (umcf == NULL) {
        return NGX_OK;
    }

    sweeps = umcf->sweeps.elts;

    for (i = 0; i < umcf->sweeps.nelts; i++) {
        sweep = sweeps[i];

        if (sweep->interval == 0) {
            continue;
        }

        sweep->timer.handler = ngx_http_upload_sweep_timer;
        sweep->timer.data = sweep;
        sweep->timer.log = cycle->log;
        sweep->timer.cancelable = 1;

#if (NGX_THREADS)
        sweep->thread_pool = ngx_thread_pool_get(cycle, &name);

        if (sweep->thread_pool) {
            sweep->task = ngx_thread_task_alloc(cycle->pool, 0);
            if (sweep->task == NULL) {
                return NGX_ERROR;
            }

            sweep->task->ctx = sweep;
            sweep->task->handler = ngx_http_upload_sweep_thread;
            sweep->task->event.data = sweep;
            sweep->task->event.handler = ngx_http_upload_sweep_event;
            sweep->task->event.log = cycle->log;
        }
#endif

        ngx_add_timer(&sweep->timer,
                      sweep->interval / 2 + ngx_random() % sweep->interval);
    }

    return NGX_OK;
}


static void
ngx_http_upload_sweep_timer(ngx_event_t *ev)
{
    ngx_http_upload_sweep_t *sweep = ev->data;

    u_char       *p;
    size_t        argvlen[6];
    const char   *argv[6];

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    p = sweep->args;

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = (char *) sweep->lock.data;
    argvlen[1] = sweep->lock.len;
    argv[2] = (char *) p;
    argvlen[2] = ngx_sprintf(p, "%P", ngx_pid) - p;
    argv[3] = "NX";
    argvlen[3] = 2;
    argv[4] = "PX";
    argvlen[4] = 2;
    argv[5] = (char *) p + argvlen[2];
    argvlen[5] = ngx_sprintf(p + argvlen[2], "%M", sweep->interval)
                 - (p + argvlen[2]);

    if (ngx_http_upload_redis_command(NULL, sweep->redis, sweep->timeout,
                                      ngx_http_upload_sweep_locked, sweep,
                                      6, argv, argvlen)
        != NGX_OK)
    {
        ngx_http_upload_sweep_next(sweep);
    }
}


static void
ngx_http_upload_sweep_locked(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_sweep_t *sweep = data;

    if (reply == NULL || reply->type != REDIS_REPLY_STATUS) {
        /* another worker or host sweeps this round, or Redis is down */
        ngx_http_upload_sweep_next(sweep);
        return;
    }

    sweep->pool = ngx_create_pool(4096, ngx_cycle->log);
    if (sweep->pool == NULL) {
        ngx_http_upload_sweep_next(sweep);
        return;
    }

    sweep->found = ngx_array_create(sweep->pool, 64,
                                    sizeof(ngx_http_upload_swept_t));
    if (sweep->found == NULL) {
        ngx_http_upload_sweep_next(sweep);
        return;
    }

    ngx_http_upload_sweep_run(sweep, ngx_http_upload_sweep_list,
                              ngx_http_upload_sweep_listed);
}


static void
ngx_http_upload_sweep_run(ngx_http_upload_sweep_t *sweep,
    void (*work)(ngx_http_upload_sweep_t *sweep),
    void (*done)(ngx_http_upload_sweep_t *sweep))
{
    sweep->work = work;
    sweep->done = done;

#if (NGX_THREADS)
    if (sweep->task) {
        if (ngx_thread_task_post(sweep->thread_pool, sweep->task) == NGX_OK)
        {
            return;
        }

        ngx_http_upload_sweep_next(sweep);
        return;
    }
#endif

    work(sweep);
    done(sweep);
}


#if (NGX_THREADS)

static void
ngx_http_upload_sweep_thread(void *data, ngx_log_t *log)
{
    ngx_http_upload_sweep_t *sweep = data;

    sweep->work(sweep);
}


static void
ngx_http_upload_sweep_event(ngx_event_t *ev)
{
    ngx_http_upload_sweep_t *sweep = ev->data;

    sweep->done(sweep);
}

#endif


/* in a pool thread: "<store>/.upload-parts/<app>/<id>" */

static void
ngx_http_upload_sweep_list(ngx_http_upload_sweep_t *sweep)
{
    u_char                    path[NGX_MAX_PATH];
    DIR                      *apps, *ids;
    ngx_str_t                 app, id;
    struct dirent            *a, *s;
    ngx_http_upload_swept_t  *swept;

    ngx_http_upload_sweep_temp(sweep);

    ngx_sprintf(path, "%V/.upload-parts%Z", &sweep->store);

    apps = opendir((char *) path);
    if (apps == NULL) {
        return;
    }

    while ((a = readdir(apps)) != NULL) {

        app.data = (u_char *) a->d_name;
        app.len = ngx_strlen(a->d_name);

        if (app.data[0] == '.'
            || sweep->store.len + app.len + 16 > sizeof(path))
        {
            continue;
        }

        ngx_sprintf(path, "%V/.upload-parts/%V%Z", &sweep->store, &app);

        ids = opendir((char *) path);
        if (ids == NULL) {
            continue;
        }

        while ((s = readdir(ids)) != NULL
               && sweep->found->nelts < NGX_HTTP_UPLOAD_SWEEP_MAX)
        {
            id.data = (u_char *) s->d_name;
            id.len = ngx_strlen(s->d_name);

            if (ngx_http_upload_session_valid_id(&id) != NGX_OK) {
                continue;
            }

            swept = ngx_array_push(sweep->found);
            if (swept == NULL) {
                break;
            }

            swept->app.len = app.len;
            swept->app.data = ngx_pstrdup(sweep->pool, &app);
            swept->id.len = id.len;
            swept->id.data = ngx_pstrdup(sweep->pool, &id);
            swept->expired = 0;
            swept->sweep = sweep;

            if (swept->app.data == NULL || swept->id.data == NULL) {
                sweep->found->nelts--;
                break;
            }
        }

        (void) closedir(ids);
    }

    (void) closedir(apps);
}


/*
 * In a pool thread too: temporary files nobody touched for a whole sweep
 * interval, left by a worker that died (kill -9, a crash) in the middle
 * of an upload.  An upload in progress changes its file (and so its
 * ctime, which a hard link changes too) far more often: a stalled one
 * ends at client_body_timeout.
 */

static void
ngx_http_upload_sweep_temp(ngx_http_upload_sweep_t *sweep)
{
    u_char           path[NGX_MAX_PATH];
    DIR             *dir;
    time_t           old;
    size_t           len;
    struct stat      st;
    struct dirent   *de;

    sweep->temps = 0;

    if (sweep->store.len + sizeof("/" NGX_HTTP_UPLOAD_TEMP_DIR "/") + 64
        > sizeof(path))
    {
        return;
    }

    ngx_sprintf(path, "%V/" NGX_HTTP_UPLOAD_TEMP_DIR "%Z", &sweep->store);

    dir = opendir((char *) path);
    if (dir == NULL) {
        return;
    }

    old = time(NULL) - (time_t) (sweep->interval / 1000);
    len = sweep->store.len + sizeof("/" NGX_HTTP_UPLOAD_TEMP_DIR "/") - 1;

    while ((de = readdir(dir)) != NULL) {

        if (de->d_name[0] == '.' || ngx_strlen(de->d_name) > 64) {
            continue;
        }

        ngx_sprintf(path + len, "%s%Z", de->d_name);
        path[len - 1] = '/';

        if (lstat((char *) path, &st) == 0 && S_ISREG(st.st_mode)
            && st.st_ctime < old && st.st_mtime < old
            && unlink((char *) path) == 0)
        {
            sweep->temps++;
        }
    }

    (void) closedir(dir);
}


/* back on the event loop: which of these sessions are still alive? */

static void
ngx_http_upload_sweep_listed(ngx_http_upload_sweep_t *sweep)
{
    u_char                   *p;
    size_t                    argvlen[2];
    ngx_uint_t                i;
    const char               *argv[2];
    ngx_http_upload_swept_t  *swept;

    swept = sweep->found->elts;
    sweep->pending = 0;

    if (sweep->temps) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "upload: sweep of \"%V\" removed %ui stale temporary "
                      "file(s)", &sweep->store, sweep->temps);
    }

    for (i = 0; i < sweep->found->nelts; i++) {

        p = ngx_pnalloc(sweep->pool, sizeof("upload:{}:mpu:") - 1
                                     + swept[i].app.len + swept[i].id.len);
        if (p == NULL) {
            break;
        }

        argv[0] = "EXISTS";
        argvlen[0] = sizeof("EXISTS") - 1;
        argv[1] = (char *) p;
        argvlen[1] = ngx_sprintf(p, "upload:{%V}:mpu:%V", &swept[i].app,
                                 &swept[i].id) - p;

        if (ngx_http_upload_redis_command(NULL, sweep->redis, sweep->timeout,
                                          ngx_http_upload_sweep_exists,
                                          &swept[i], 2, argv, argvlen)
            != NGX_OK)
        {
            break;
        }

        sweep->pending++;
    }

    if (sweep->pending == 0) {
        ngx_http_upload_sweep_next(sweep);
    }
}


static void
ngx_http_upload_sweep_exists(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_swept_t *swept = data;

    ngx_http_upload_sweep_t  *sweep;

    /* only a clear "no such key" condemns a directory */

    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        swept->expired = 1;
    }

    sweep = swept->sweep;

    if (--sweep->pending == 0) {
        ngx_http_upload_sweep_run(sweep, ngx_http_upload_sweep_remove,
                                  ngx_http_upload_sweep_removed);
    }
}


/* in a pool thread */

static void
ngx_http_upload_sweep_remove(ngx_http_upload_sweep_t *sweep)
{
    u_char                   *path;
    size_t                    len;
    ngx_uint_t                i;
    ngx_http_upload_swept_t  *swept;

    swept = sweep->found->elts;
    sweep->removed = 0;

    for (i = 0; i < sweep->found->nelts; i++) {

        if (!swept[i].expired) {
            continue;
        }

        len = sweep->store.len + sizeof("/.upload-parts//") + swept[i].app.len
              + swept[i].id.len;

        path = ngx_pnalloc(sweep->pool, len);
        if (path == NULL) {
            return;
        }

        ngx_sprintf(path, "%V/.upload-parts/%V/%V%Z", &sweep->store,
                    &swept[i].app, &swept[i].id);

        ngx_http_upload_store_remove_tree(path);
        sweep->removed++;

        /* the app's directory goes when it was the last session */

        ngx_sprintf(path, "%V/.upload-parts/%V%Z", &sweep->store,
                    &swept[i].app);
        (void) rmdir((char *) path);
    }
}


static void
ngx_http_upload_sweep_removed(ngx_http_upload_sweep_t *sweep)
{
    if (sweep->removed) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "upload: sweep of \"%V\" removed the part files of %ui "
                      "expired sliced upload(s)", &sweep->store,
                      sweep->removed);
    }

    ngx_http_upload_sweep_next(sweep);
}


static void
ngx_http_upload_sweep_next(ngx_http_upload_sweep_t *sweep)
{
    if (sweep->pool) {
        ngx_destroy_pool(sweep->pool);
        sweep->pool = NULL;
        sweep->found = NULL;
    }

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(&sweep->timer, sweep->interval);
}
