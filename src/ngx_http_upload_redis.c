
/*
 * Copyright (C) ngx_http_upload_module developers
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_http_upload_redis.h"


#define NGX_HTTP_UPLOAD_REDIS_PORT         6379

/* short, so that service resumes quickly once Redis is back */
#define NGX_HTTP_UPLOAD_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_UPLOAD_REDIS_BACKOFF_MAX  2000


struct ngx_http_upload_redis_s {
    /* configuration */
    ngx_str_t                          name;      /* for logs */
    u_char                            *host;      /* numeric, '\0'-ended */
    int                                port;
    u_char                            *path;      /* unix socket */
    ngx_str_t                          password;
    ngx_str_t                          db;

    /* state of the connection, private to each worker process */
    redisAsyncContext                 *ac;
    ngx_connection_t                  *connection;
    ngx_event_t                        connect_timer;
    ngx_uint_t                         pending;   /* replies awaited */
    ngx_uint_t                         setup;     /* AUTH, SELECT awaited */
    ngx_msec_t                         backoff;
    ngx_msec_t                         retry;     /* no connect before */

    unsigned                           connected:1;
    unsigned                           replied:1;
    unsigned                           failed:1;
    unsigned                           exiting:1;
};


/*
 * One queued command.  It lives on the heap, not in the request pool:
 * hiredis owns it until the reply (or the failure) arrives, which may be
 * after the request is gone.
 */
typedef struct {
    ngx_http_upload_redis_t           *redis;
    redisAsyncContext                 *ac;
    ngx_http_request_t                *request;
    ngx_http_upload_redis_handler_pt   handler;
    void                              *data;
    ngx_pool_cleanup_t                *cleanup;
    ngx_event_t                        timer;
} ngx_http_upload_redis_cmd_t;


static ngx_int_t ngx_http_upload_redis_connect(ngx_http_upload_redis_t *redis,
    ngx_msec_t timeout);
static ngx_int_t ngx_http_upload_redis_setup(ngx_http_upload_redis_t *redis,
    const char *command, ngx_str_t *arg, redisCallbackFn *fn);
static void ngx_http_upload_redis_close(ngx_http_upload_redis_t *redis,
    ngx_uint_t failed);
static void ngx_http_upload_redis_detach(ngx_http_upload_redis_t *redis,
    ngx_uint_t failed);
static void ngx_http_upload_redis_lost(ngx_http_upload_redis_t *redis,
    const redisAsyncContext *ac);
static void ngx_http_upload_redis_done(ngx_http_upload_redis_t *redis,
    redisAsyncContext *ac);

static void ngx_http_upload_redis_connect_handler(const redisAsyncContext *ac,
    int status);
static void ngx_http_upload_redis_disconnect_handler(
    const redisAsyncContext *ac, int status);
static void ngx_http_upload_redis_auth_handler(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_upload_redis_select_handler(redisAsyncContext *ac,
    void *reply, void *privdata);
static void ngx_http_upload_redis_setup_handler(redisAsyncContext *ac,
    redisReply *reply, const char *command);
static void ngx_http_upload_redis_reply_handler(redisAsyncContext *ac,
    void *reply, void *privdata);

static void ngx_http_upload_redis_connect_timeout(ngx_event_t *ev);
static void ngx_http_upload_redis_command_timeout(ngx_event_t *ev);
static void ngx_http_upload_redis_read_handler(ngx_event_t *rev);
static void ngx_http_upload_redis_write_handler(ngx_event_t *wev);

static void ngx_http_upload_redis_add_read(void *privdata);
static void ngx_http_upload_redis_del_read(void *privdata);
static void ngx_http_upload_redis_add_write(void *privdata);
static void ngx_http_upload_redis_del_write(void *privdata);
static void ngx_http_upload_redis_add_event(ngx_event_t *ev, ngx_int_t event);
static void ngx_http_upload_redis_del_event(ngx_event_t *ev, ngx_int_t event);
static void ngx_http_upload_redis_cleanup_events(void *privdata);

static void ngx_http_upload_redis_cleanup_request(void *data);
static void ngx_http_upload_redis_cleanup(void *data);


ngx_http_upload_redis_t *
ngx_http_upload_redis_create(ngx_conf_t *cf, ngx_str_t *value, ngx_uint_t n)
{
    u_char                   *p;
    size_t                    len;
    ngx_str_t                 arg;
    ngx_url_t                 u;
    ngx_uint_t                i;
    ngx_pool_cleanup_t       *cln;
    struct sockaddr_un       *saun;
    ngx_http_upload_redis_t  *redis;
    u_char                    text[NGX_SOCKADDR_STRLEN];

    if (n < 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of arguments in \"%V\"",
                           &value[0]);
        return NULL;
    }

    redis = ngx_pcalloc(cf->pool, sizeof(ngx_http_upload_redis_t));
    if (redis == NULL) {
        return NULL;
    }

    redis->backoff = NGX_HTTP_UPLOAD_REDIS_BACKOFF_MIN;

    if (value[1].len >= 5
        && ngx_strncasecmp(value[1].data, (u_char *) "unix:", 5) == 0)
    {
        len = value[1].len - 5;

        /* hiredis would silently truncate a longer path */

        if (len == 0 || len >= sizeof(saun->sun_path)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid unix socket path \"%V\" in \"%V\"",
                               &value[1], &value[0]);
            return NULL;
        }

        redis->path = ngx_pnalloc(cf->pool, len + 1);
        if (redis->path == NULL) {
            return NULL;
        }

        ngx_cpystrn(redis->path, value[1].data + 5, len + 1);

        redis->name = value[1];

    } else {
        ngx_memzero(&u, sizeof(ngx_url_t));

        u.url = value[1];
        u.default_port = NGX_HTTP_UPLOAD_REDIS_PORT;

        /*
         * names are resolved here, once: hiredis would call the blocking
         * getaddrinfo() in the worker on every connect
         */

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid address \"%V\" in \"%V\"%s%s",
                               &value[1], &value[0],
                               u.err ? ": " : "", u.err ? u.err : "");
            return NULL;
        }

        len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                            text, NGX_SOCKADDR_STRLEN, 0);

        redis->host = ngx_pnalloc(cf->pool, len + 1);
        if (redis->host == NULL) {
            return NULL;
        }

        ngx_cpystrn(redis->host, text, len + 1);

        redis->port = ngx_inet_get_port(u.addrs[0].sockaddr);

        if (u.no_port) {
            p = ngx_pnalloc(cf->pool, value[1].len + sizeof(":65535") - 1);
            if (p == NULL) {
                return NULL;
            }

            redis->name.data = p;
            redis->name.len = ngx_sprintf(p, "%V:%d", &value[1], redis->port)
                              - p;

        } else {
            redis->name = value[1];
        }
    }

    for (i = 2; i < n; i++) {

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            arg.data = value[i].data + 3;
            arg.len = value[i].len - 3;

            if (redis->db.data || ngx_atoi(arg.data, arg.len) == NGX_ERROR) {
                goto invalid;
            }

            redis->db = arg;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            arg.data = value[i].data + 9;
            arg.len = value[i].len - 9;

            if (redis->password.data || arg.len == 0) {
                goto invalid;
            }

            redis->password = arg;
            continue;
        }

        goto invalid;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_upload_redis_cleanup;
    cln->data = redis;

    return redis;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"%V\"",
                       &value[i], &value[0]);
    return NULL;
}


ngx_int_t
ngx_http_upload_redis_command(ngx_http_request_t *r,
    ngx_http_upload_redis_t *redis, ngx_msec_t timeout,
    ngx_http_upload_redis_handler_pt handler, void *data,
    int argc, const char **argv, const size_t *argvlen)
{
    ngx_int_t                     rc;
    ngx_log_t                    *log;
    ngx_pool_cleanup_t           *cln;
    ngx_http_upload_redis_cmd_t  *cmd;

    /* without a request: a command of the worker itself (the sweep) */

    log = r ? r->connection->log : ngx_cycle->log;

    if (redis->ac == NULL) {

        if (redis->failed
            && (ngx_msec_int_t) (redis->retry - ngx_current_msec) > 0)
        {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                           "upload: redis %V is down, next attempt in %M ms",
                           &redis->name, redis->retry - ngx_current_msec);
            return NGX_DECLINED;
        }

        rc = ngx_http_upload_redis_connect(redis, timeout);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    cmd = ngx_calloc(sizeof(ngx_http_upload_redis_cmd_t), log);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    /* the cleanup does nothing until the command is queued */

    cln = NULL;

    if (r) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            ngx_free(cmd);
            return NGX_ERROR;
        }
    }

    cmd->redis = redis;
    cmd->ac = redis->ac;
    cmd->request = r;
    cmd->handler = handler;
    cmd->data = data;
    cmd->cleanup = cln;

    /*
     * the timer outlives the request if need be, so it must not log to
     * the request's connection; it is not cancelable: a graceful shutdown
     * waits for the reply (or the timeout) instead of cutting the request
     */

    cmd->timer.handler = ngx_http_upload_redis_command_timeout;
    cmd->timer.data = cmd;
    cmd->timer.log = ngx_cycle->log;

    if (redisAsyncCommandArgv(redis->ac, ngx_http_upload_redis_reply_handler,
                              cmd, argc, argv, argvlen)
        != REDIS_OK)
    {
        /* hiredis refuses a command only when out of memory here */
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "upload: redis %V command not queued", &redis->name);
        ngx_free(cmd);
        return NGX_ERROR;
    }

    if (cln) {
        cln->handler = ngx_http_upload_redis_cleanup_request;
        cln->data = cmd;
    }

    ngx_add_timer(&cmd->timer, timeout);

    redis->pending++;
    redis->connection->idle = 0;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, log, 0,
                   "upload: redis %V command %p queued, argc:%d pending:%ui",
                   &redis->name, cmd, argc, redis->pending);

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_redis_connect(ngx_http_upload_redis_t *redis,
    ngx_msec_t timeout)
{
    ngx_log_t          *log;
    ngx_event_t        *rev, *wev;
    ngx_connection_t   *c;
    redisAsyncContext  *ac;

    log = ngx_cycle->log;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "upload: redis %V connecting", &redis->name);

    /* both calls are non-blocking: the address is numeric */

    if (redis->path) {
        ac = redisAsyncConnectUnix((const char *) redis->path);

    } else {
        ac = redisAsyncConnect((const char *) redis->host, redis->port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "upload: redis %V connect failed: no memory",
                      &redis->name);
        return NGX_ERROR;
    }

    if (ac->err) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "upload: redis %V connect failed: %s",
                      &redis->name, ac->errstr);
        redisAsyncFree(ac);
        ngx_http_upload_redis_detach(redis, 1);
        return NGX_DECLINED;
    }

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_upload_redis_detach(redis, 1);
        return NGX_DECLINED;
    }

    c->data = ac;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    rev = c->read;
    wev = c->write;

    rev->log = log;
    wev->log = log;

    rev->handler = ngx_http_upload_redis_read_handler;
    wev->handler = ngx_http_upload_redis_write_handler;

    ac->data = redis;

    ac->ev.data = c;
    ac->ev.addRead = ngx_http_upload_redis_add_read;
    ac->ev.delRead = ngx_http_upload_redis_del_read;
    ac->ev.addWrite = ngx_http_upload_redis_add_write;
    ac->ev.delWrite = ngx_http_upload_redis_del_write;
    ac->ev.cleanup = ngx_http_upload_redis_cleanup_events;

    /* the hooks must be in place: this one asks for a write event */

    redisAsyncSetConnectCallback(ac, ngx_http_upload_redis_connect_handler);
    redisAsyncSetDisconnectCallback(ac,
                                    ngx_http_upload_redis_disconnect_handler);

    redis->ac = ac;
    redis->connection = c;
    redis->pending = 0;
    redis->setup = 0;
    redis->connected = 0;
    redis->replied = 0;
    redis->failed = 0;

    /* hiredis sends these first, ahead of any command queued later */

    if (redis->password.len
        && ngx_http_upload_redis_setup(redis, "AUTH", &redis->password,
                                       ngx_http_upload_redis_auth_handler)
           != NGX_OK)
    {
        ngx_http_upload_redis_close(redis, 1);
        return NGX_ERROR;
    }

    if (redis->db.len
        && ngx_http_upload_redis_setup(redis, "SELECT", &redis->db,
                                       ngx_http_upload_redis_select_handler)
           != NGX_OK)
    {
        ngx_http_upload_redis_close(redis, 1);
        return NGX_ERROR;
    }

    redis->connect_timer.handler = ngx_http_upload_redis_connect_timeout;
    redis->connect_timer.data = redis;
    redis->connect_timer.log = log;
    redis->connect_timer.cancelable = 1;

    ngx_add_timer(&redis->connect_timer, timeout);

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_redis_setup(ngx_http_upload_redis_t *redis,
    const char *command, ngx_str_t *arg, redisCallbackFn *fn)
{
    size_t       argvlen[2];
    const char  *argv[2];

    argv[0] = command;
    argvlen[0] = ngx_strlen(command);
    argv[1] = (const char *) arg->data;
    argvlen[1] = arg->len;

    if (redisAsyncCommandArgv(redis->ac, fn, NULL, 2, argv, argvlen)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    redis->setup++;
    redis->pending++;

    return NGX_OK;
}


/*
 * Drops the current connection.  hiredis calls every pending command's
 * callback with a NULL reply, each exactly once; from inside a hiredis
 * callback it does so as soon as that callback returns.
 */

static void
ngx_http_upload_redis_close(ngx_http_upload_redis_t *redis, ngx_uint_t failed)
{
    redisAsyncContext  *ac;

    ac = redis->ac;

    if (ac == NULL) {
        return;
    }

    ngx_http_upload_redis_detach(redis, failed);

    redisAsyncFree(ac);
}


/*
 * Forgets the connection, so that commands issued meanwhile (even from the
 * handlers of failing commands) do not reach a dying context.  A failure
 * starts the backoff: commands get NGX_DECLINED until it expires.
 */

static void
ngx_http_upload_redis_detach(ngx_http_upload_redis_t *redis,
    ngx_uint_t failed)
{
    redis->ac = NULL;
    redis->connection = NULL;
    redis->pending = 0;
    redis->setup = 0;
    redis->connected = 0;

    if (redis->connect_timer.timer_set) {
        ngx_del_timer(&redis->connect_timer);
    }

    if (!failed) {
        return;
    }

    redis->failed = 1;
    redis->retry = ngx_current_msec + redis->backoff;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "upload: redis %V down for %M ms",
                   &redis->name, redis->backoff);

    redis->backoff = ngx_min(redis->backoff * 2,
                             NGX_HTTP_UPLOAD_REDIS_BACKOFF_MAX);
}


/* hiredis is tearing the context down after an error */

static void
ngx_http_upload_redis_lost(ngx_http_upload_redis_t *redis,
    const redisAsyncContext *ac)
{
    if (redis->ac != ac) {
        /* already detached and logged */
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "upload: redis %V %s: %s", &redis->name,
                  redis->connected ? "connection lost" : "connect failed",
                  ac->c.err ? ac->c.errstr : "connection closed");

    ngx_http_upload_redis_detach(redis, 1);
}


/* a reply arrived on the connection */

static void
ngx_http_upload_redis_done(ngx_http_upload_redis_t *redis,
    redisAsyncContext *ac)
{
    if (redis->ac != ac) {
        return;
    }

    /*
     * a reply, unlike an accepted TCP connection, proves Redis alive:
     * a server stuck in a long command still accepts connections
     */

    if (!redis->replied) {
        redis->replied = 1;
        redis->backoff = NGX_HTTP_UPLOAD_REDIS_BACKOFF_MIN;
    }

    if (--redis->pending) {
        return;
    }

    if (ngx_exiting || ngx_terminate) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "upload: redis %V closing on exit", &redis->name);
        ngx_http_upload_redis_close(redis, 0);
        return;
    }

    /* lets a graceful shutdown close the connection at once */

    redis->connection->idle = 1;
}


static void
ngx_http_upload_redis_connect_handler(const redisAsyncContext *ac,
    int status)
{
    ngx_http_upload_redis_t  *redis;

    redis = ac->data;

    if (redis->ac != ac) {
        return;
    }

    if (status != REDIS_OK) {
        /* hiredis then fails the queued commands */
        ngx_http_upload_redis_lost(redis, ac);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "upload: redis %V connected", &redis->name);

    redis->connected = 1;

    if (redis->setup == 0 && redis->connect_timer.timer_set) {
        ngx_del_timer(&redis->connect_timer);
    }
}


static void
ngx_http_upload_redis_disconnect_handler(const redisAsyncContext *ac,
    int status)
{
    ngx_http_upload_redis_t  *redis;

    redis = ac->data;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "upload: redis %V disconnected, status:%d",
                   &redis->name, status);

    /* an idle connection closed by the server ends up only here */

    ngx_http_upload_redis_lost(redis, ac);
}


static void
ngx_http_upload_redis_auth_handler(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_upload_redis_setup_handler(ac, reply, "AUTH");
}


static void
ngx_http_upload_redis_select_handler(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_upload_redis_setup_handler(ac, reply, "SELECT");
}


static void
ngx_http_upload_redis_setup_handler(redisAsyncContext *ac,
    redisReply *reply, const char *command)
{
    ngx_http_upload_redis_t  *redis;

    redis = ac->data;

    if (reply == NULL) {
        ngx_http_upload_redis_lost(redis, ac);
        return;
    }

    if (redis->ac != ac) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "upload: redis %V %s failed: %*s",
                      &redis->name, command, (size_t) reply->len, reply->str);

        /* the commands queued behind it would run unauthenticated */

        ngx_http_upload_redis_close(redis, 1);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "upload: redis %V %s done", &redis->name, command);

    if (--redis->setup == 0 && redis->connect_timer.timer_set) {
        ngx_del_timer(&redis->connect_timer);
    }

    ngx_http_upload_redis_done(redis, ac);
}


static void
ngx_http_upload_redis_reply_handler(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    void                              *data;
    ngx_connection_t                  *c;
    ngx_http_request_t                *r;
    ngx_http_upload_redis_t           *redis;
    ngx_http_upload_redis_cmd_t       *cmd;
    ngx_http_upload_redis_handler_pt   handler;

    cmd = privdata;
    redis = cmd->redis;
    r = cmd->request;
    handler = cmd->handler;
    data = cmd->data;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "upload: redis %V command %p reply:%p",
                   &redis->name, cmd, reply);

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    /* the request pool may outlive the command: disarm its cleanup */

    if (cmd->cleanup) {
        cmd->cleanup->handler = NULL;
        cmd->cleanup->data = NULL;
    }

    ngx_free(cmd);

    if (reply == NULL) {
        ngx_http_upload_redis_lost(redis, ac);

    } else {
        ngx_http_upload_redis_done(redis, ac);
    }

    if (handler == NULL || redis->exiting) {
        /* the request is gone, or the process is */
        return;
    }

    if (r == NULL) {
        handler(NULL, data, reply);
        return;
    }

    /* the handler may finalize the request and free it */

    c = r->connection;

    handler(r, data, reply);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_upload_redis_connect_timeout(ngx_event_t *ev)
{
    ngx_http_upload_redis_t  *redis;

    redis = ev->data;

    ngx_log_error(NGX_LOG_ERR, ev->log, NGX_ETIMEDOUT,
                  "upload: redis %V connect timed out", &redis->name);

    ngx_http_upload_redis_close(redis, 1);
}


/*
 * A stuck Redis leaves every queued reply stuck behind this one: the
 * connection is dropped, which fails all of them.
 */

static void
ngx_http_upload_redis_command_timeout(ngx_event_t *ev)
{
    ngx_log_t                    *log;
    ngx_http_upload_redis_t      *redis;
    ngx_http_upload_redis_cmd_t  *cmd;

    cmd = ev->data;
    redis = cmd->redis;

    if (redis->ac != cmd->ac) {
        /* cannot happen: a detached context is freed at once */
        return;
    }

    log = cmd->request ? cmd->request->connection->log : ev->log;

    ngx_log_error(NGX_LOG_ERR, log, NGX_ETIMEDOUT,
                  "upload: redis %V command timed out, closing connection",
                  &redis->name);

    /* frees cmd */

    ngx_http_upload_redis_close(redis, 1);
}


static void
ngx_http_upload_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t         *c;
    redisAsyncContext        *ac;
    ngx_http_upload_redis_t  *redis;

    c = rev->data;
    ac = c->data;
    redis = ac->data;

    if (c->close) {
        /* graceful shutdown of an idle connection, or shutdown timeout */

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rev->log, 0,
                       "upload: redis %V closing", &redis->name);

        ngx_http_upload_redis_close(redis, 0);
        return;
    }

    /* this may free both c and ac: they are not touched afterwards */

    redisAsyncHandleRead(ac);
}


static void
ngx_http_upload_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t  *c;

    c = wev->data;

    redisAsyncHandleWrite(c->data);
}


static void
ngx_http_upload_redis_add_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_http_upload_redis_add_event(c->read, NGX_READ_EVENT);
}


static void
ngx_http_upload_redis_del_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_http_upload_redis_del_event(c->read, NGX_READ_EVENT);
}


static void
ngx_http_upload_redis_add_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_http_upload_redis_add_event(c->write, NGX_WRITE_EVENT);
}


static void
ngx_http_upload_redis_del_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_http_upload_redis_del_event(c->write, NGX_WRITE_EVENT);
}


static void
ngx_http_upload_redis_add_event(ngx_event_t *ev, ngx_int_t event)
{
    if (ev->active) {
        return;
    }

    /*
     * level-triggered: hiredis reads one buffer per call, so an edge-
     * triggered epoll would never report the rest of a long reply;
     * on failure the command timers drop the connection
     */

    (void) ngx_add_event(ev, event, NGX_LEVEL_EVENT);
}


static void
ngx_http_upload_redis_del_event(ngx_event_t *ev, ngx_int_t event)
{
    if (!ev->active) {
        return;
    }

    (void) ngx_del_event(ev, event, 0);
}


/*
 * Called by hiredis while freeing the context, right before it closes
 * the socket itself: release the nginx connection but not the socket.
 */

static void
ngx_http_upload_redis_cleanup_events(void *privdata)
{
    ngx_connection_t         *c;
    redisAsyncContext        *ac;
    ngx_http_upload_redis_t  *redis;

    c = privdata;
    ac = c->data;
    redis = ac->data;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "upload: redis %V free connection, fd:%d",
                   &redis->name, c->fd);

    if (redis->connection == c) {
        redis->connection = NULL;
    }

    /* the socket is closed next, which removes it from epoll */

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ac->ev.data = NULL;

    ngx_free_connection(c);

    /* marks events of this socket still queued in this cycle as stale */

    c->fd = (ngx_socket_t) -1;
}


/* the request is freed before its command completed */

static void
ngx_http_upload_redis_cleanup_request(void *data)
{
    ngx_http_upload_redis_cmd_t  *cmd = data;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "upload: redis %V command %p detached from request",
                   &cmd->redis->name, cmd);

    /* the reply, when it comes, only frees cmd */

    cmd->request = NULL;
    cmd->handler = NULL;
    cmd->cleanup = NULL;
}


/*
 * The configuration pool is destroyed: on process exit, or in the master
 * process on reload, where no connection exists.
 */

static void
ngx_http_upload_redis_cleanup(void *data)
{
    ngx_http_upload_redis_t  *redis = data;

    if (redis->ac == NULL) {
        return;
    }

    /* requests are not resumed from a process that is exiting */

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        redis->exiting = 1;
    }

    ngx_http_upload_redis_close(redis, 0);
}
