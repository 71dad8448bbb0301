
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * The running SHA-256 of a sliced upload: the digest of its leading parts
 * (1..hash_part), advanced in the background while the upload goes on, so
 * that a complete hashes only what is left.
 *
 * The state lives in the session's hash in Redis ("hash_part",
 * "hash_state": OpenSSL's SHA256_CTX, serialized), so any worker of any
 * host can advance it or use it.  One advancer at a time holds a lease
 * (a Redis key with a PX expiry); the worker that records a part starts one
 * when the next part to hash is there and nobody holds the lease:
 *
 *     take (Redis: lease, state, next records)
 *         -> hash the parts (thread, from the page cache)
 *         -> put (Redis: only if the lease and every record it hashed are
 *            unchanged) -> again while the next part is there
 *
 * A part replaced inside the hashed prefix resets the state (the part
 * script), a complete stops the advancer (its begin script drops the
 * lease), and a worker that dies with the lease lets it expire.  Without
 * a thread pool nothing advances: the complete hashes everything.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/sha.h>
#include <openssl/rand.h>

#include "ngx_http_upload_session.h"


#define NGX_HTTP_UPLOAD_RUNNING_LEASE   "60000"
#define NGX_HTTP_UPLOAD_RUNNING_PARTS   "64"
#define NGX_HTTP_UPLOAD_RUNNING_BYTES   "268435456"

/* h[8], Nl, Nh as 8 hex digits each, then the pending bytes in hex */
#define NGX_HTTP_UPLOAD_RUNNING_FIXED   (10 * 8)


typedef struct {
    ngx_pool_t                   *pool;
    ngx_http_upload_loc_conf_t   *conf;
    ngx_str_t                     app;
    ngx_str_t                     id;
    ngx_str_t                     keys[NGX_HTTP_UPLOAD_SESSION_KEYS];
    ngx_str_t                     dir;
    u_char                        token[32];
    ngx_int_t                     from;
    off_t                         part_size;
    ngx_str_t                    *records;
    ngx_uint_t                    nrecords;
    ngx_str_t                     state;
    ngx_int_t                     rc;
    SHA256_CTX                    sha;
#if (NGX_THREADS)
    ngx_thread_task_t            *task;
#endif
} ngx_http_upload_running_t;


static ngx_int_t ngx_http_upload_running_new(ngx_http_upload_loc_conf_t *conf,
    ngx_str_t *app, ngx_str_t *id);
static ngx_int_t ngx_http_upload_running_eval(ngx_http_upload_running_t *run,
    const char *script, ngx_uint_t nargs, ngx_str_t *args,
    ngx_http_upload_redis_handler_pt handler);
static void ngx_http_upload_running_taken(ngx_http_request_t *r, void *data,
    redisReply *reply);
#if (NGX_THREADS)
static void ngx_http_upload_running_thread(void *data, ngx_log_t *log);
static void ngx_http_upload_running_hashed(ngx_event_t *ev);
#endif
static void ngx_http_upload_running_put(ngx_http_upload_running_t *run);
static void ngx_http_upload_running_stored(ngx_http_request_t *r, void *data,
    redisReply *reply);


static const char  ngx_http_upload_running_nkeys[] =
    ngx_value(NGX_HTTP_UPLOAD_SESSION_KEYS);

/* the lease, the state and the records of the next parts to hash */
static const char  ngx_http_upload_take_script[] =
    "local s = redis.call('HMGET', KEYS[1], 'state', 'hash_part', "
    "                     'hash_state', 'part_size') "
    "if s[1] ~= 'open' then return false end "
    "if not redis.call('SET', KEYS[6], ARGV[1], 'NX', 'PX', ARGV[2]) then "
    "  return false "
    "end "
    "local m = tonumber(s[2]) or 0 "
    "local out, bytes = {}, 0 "
    "while #out < tonumber(ARGV[3]) and bytes < tonumber(ARGV[4]) do "
    "  local rec = redis.call('HGET', KEYS[2], tostring(m + #out + 1)) "
    "  if not rec then break end "
    "  out[#out + 1] = rec "
    "  bytes = bytes + tonumber(string.match(rec, '^%d+')) "
    "end "
    "if #out == 0 then "
    "  redis.call('DEL', KEYS[6]) "
    "  return false "
    "end "
    "return {m, s[3] or '', tonumber(s[4]) or -1, out}";

/*
 * The new state, if the lease is still ours and the parts hashed are the
 * ones recorded; 1 when the next part is there already.
 */
static const char  ngx_http_upload_put_script[] =
    "if redis.call('GET', KEYS[6]) ~= ARGV[1] then return -1 end "
    "redis.call('DEL', KEYS[6]) "
    "local s = redis.call('HMGET', KEYS[1], 'state', 'hash_part') "
    "local m = tonumber(ARGV[2]) "
    "if s[1] ~= 'open' or (tonumber(s[2]) or 0) ~= m then return -1 end "
    "for i = 4, #ARGV do "
    "  if redis.call('HGET', KEYS[2], tostring(m + i - 3)) ~= ARGV[i] then "
    "    return -1 "
    "  end "
    "end "
    "m = m + #ARGV - 3 "
    "redis.call('HSET', KEYS[1], 'hash_part', m, 'hash_state', ARGV[3]) "
    "return redis.call('HEXISTS', KEYS[2], tostring(m + 1))";


/* called once a part is recorded and the next part to hash is there */

void
ngx_http_upload_running_start(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_upload_session_t  *session;

    session = ctx->session;

#if (NGX_THREADS)
    if (ctx->conf->thread_pool == NULL) {
        return;
    }

    if (ngx_http_upload_running_new(ctx->conf, &session->app, &session->id)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "upload: the running SHA-256 of \"%V\" could not "
                      "start; its complete will hash all of it",
                      &session->id);
    }
#else
    (void) session;
#endif
}


/* a round: its own pool, freed when the round ends */

static ngx_int_t
ngx_http_upload_running_new(ngx_http_upload_loc_conf_t *conf, ngx_str_t *app,
    ngx_str_t *id)
{
    u_char                     rnd[16];
    ngx_str_t                  args[4];
    ngx_pool_t                *pool;
    ngx_http_upload_running_t *run;

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    run = ngx_pcalloc(pool, sizeof(ngx_http_upload_running_t));
    if (run == NULL) {
        goto failed;
    }

    run->pool = pool;
    run->conf = conf;

    run->app.len = app->len;
    run->app.data = ngx_pstrdup(pool, app);
    run->id.len = id->len;
    run->id.data = ngx_pstrdup(pool, id);

    if (run->app.data == NULL || run->id.data == NULL
        || RAND_bytes(rnd, sizeof(rnd)) != 1
        || ngx_http_upload_session_key_names(pool, app, id, run->keys)
           != NGX_OK)
    {
        goto failed;
    }

    ngx_hex_dump(run->token, rnd, sizeof(rnd));

    args[0].data = run->token;
    args[0].len = sizeof(run->token);
    ngx_str_set(&args[1], NGX_HTTP_UPLOAD_RUNNING_LEASE);
    ngx_str_set(&args[2], NGX_HTTP_UPLOAD_RUNNING_PARTS);
    ngx_str_set(&args[3], NGX_HTTP_UPLOAD_RUNNING_BYTES);

    if (ngx_http_upload_running_eval(run, ngx_http_upload_take_script, 4,
                                     args, ngx_http_upload_running_taken)
        != NGX_OK)
    {
        goto failed;
    }

    return NGX_OK;

failed:

    ngx_destroy_pool(pool);

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_upload_running_eval(ngx_http_upload_running_t *run,
    const char *script, ngx_uint_t nargs, ngx_str_t *args,
    ngx_http_upload_redis_handler_pt handler)
{
    size_t       *argvlen;
    ngx_uint_t    i, argc;
    const char  **argv;

    argc = 3 + NGX_HTTP_UPLOAD_SESSION_KEYS + nargs;

    argv = ngx_palloc(run->pool, argc * sizeof(char *));
    argvlen = ngx_palloc(run->pool, argc * sizeof(size_t));

    if (argv == NULL || argvlen == NULL) {
        return NGX_ERROR;
    }

    argv[0] = "EVAL";
    argvlen[0] = sizeof("EVAL") - 1;
    argv[1] = script;
    argvlen[1] = ngx_strlen(script);
    argv[2] = ngx_http_upload_running_nkeys;
    argvlen[2] = sizeof(ngx_http_upload_running_nkeys) - 1;

    for (i = 0; i < NGX_HTTP_UPLOAD_SESSION_KEYS; i++) {
        argv[3 + i] = (char *) run->keys[i].data;
        argvlen[3 + i] = run->keys[i].len;
    }

    for (i = 0; i < nargs; i++) {
        argv[3 + NGX_HTTP_UPLOAD_SESSION_KEYS + i] =
                                 args[i].len ? (char *) args[i].data : "";
        argvlen[3 + NGX_HTTP_UPLOAD_SESSION_KEYS + i] = args[i].len;
    }

    return ngx_http_upload_redis_command(NULL, run->conf->redis,
                                         run->conf->redis_timeout, handler,
                                         run, argc, argv, argvlen);
}


static void
ngx_http_upload_running_taken(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_running_t *run = data;

    size_t       i;
    redisReply  *recs;

    /* false: the session is not open, somebody else hashes, or no part */

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 4
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[2]->type != REDIS_REPLY_INTEGER
        || reply->element[3]->type != REDIS_REPLY_ARRAY)
    {
        goto done;
    }

    run->from = (ngx_int_t) reply->element[0]->integer;
    run->part_size = (off_t) reply->element[2]->integer;
    recs = reply->element[3];

    run->records = ngx_palloc(run->pool, recs->elements * sizeof(ngx_str_t));

    if (run->from < 0 || run->records == NULL
        || ngx_http_upload_copy(run->pool, &run->state,
                                        reply->element[1])
           != NGX_OK
        || ngx_http_upload_running_load(&run->sha, &run->state) != NGX_OK
        || ngx_http_upload_session_dir_pool(run->pool, run->conf, &run->app,
                                            &run->id, &run->dir)
           != NGX_OK)
    {
        goto done;
    }

    for (i = 0; i < recs->elements; i++) {
        if (ngx_http_upload_copy(run->pool, &run->records[i],
                                         recs->element[i])
            != NGX_OK)
        {
            goto done;
        }
    }

    run->nrecords = recs->elements;

#if (NGX_THREADS)
    run->task = ngx_thread_task_alloc(run->pool, 0);
    if (run->task == NULL) {
        goto done;
    }

    run->task->ctx = run;
    run->task->handler = ngx_http_upload_running_thread;
    run->task->event.data = run;
    run->task->event.handler = ngx_http_upload_running_hashed;
    run->task->event.log = ngx_cycle->log;

    if (ngx_thread_task_post(run->conf->thread_pool, run->task) == NGX_OK) {
        return;
    }
#endif

done:

    /* a lease taken but not used expires by itself */

    ngx_destroy_pool(run->pool);
}


#if (NGX_THREADS)

/* in a pool thread: the records' bytes, in part order */

static void
ngx_http_upload_running_thread(void *data, ngx_log_t *log)
{
    ngx_http_upload_running_t *run = data;

    u_char      *buf, *p, *file;
    off_t        size, offset;
    ngx_fd_t     fd;
    ngx_str_t   *rec;
    ngx_uint_t   i;
    u_char       path[NGX_MAX_PATH];

    run->rc = NGX_ERROR;

    buf = ngx_alloc(NGX_HTTP_UPLOAD_HASH_CHUNK, log);
    if (buf == NULL) {
        return;
    }

    for (i = 0; i < run->nrecords; i++) {
        rec = &run->records[i];

        /* "<size> <md5> <sha256> <file>" */

        for (p = rec->data; p < rec->data + rec->len && *p != ' '; p++) {
            /* void */
        }

        size = ngx_atoof(rec->data, p - rec->data);

        for (file = rec->data + rec->len; file > p && file[-1] != ' '; file--)
        {
            /* void */
        }

        if (size < 0 || file == p
            || run->dir.len + 1 + (rec->data + rec->len - file) + 1
               > sizeof(path))
        {
            goto failed;
        }

        offset = 0;

        if ((size_t) (rec->data + rec->len - file)
               == sizeof(NGX_HTTP_UPLOAD_DATA_FILE) - 1
            && ngx_strncmp(file, NGX_HTTP_UPLOAD_DATA_FILE,
                           sizeof(NGX_HTTP_UPLOAD_DATA_FILE) - 1) == 0)
        {
            if (run->part_size <= 0) {
                goto failed;
            }

            offset = (off_t) (run->from + i) * run->part_size;
        }

        ngx_sprintf(path, "%V/%*s%Z", &run->dir,
                    (size_t) (rec->data + rec->len - file), file);

        fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
        if (fd == NGX_INVALID_FILE) {
            goto failed;
        }

        if (ngx_http_upload_running_update(&run->sha, fd, offset, size, buf)
            != NGX_OK)
        {
            (void) ngx_close_file(fd);
            goto failed;
        }

        (void) ngx_close_file(fd);
    }

    run->rc = NGX_OK;

failed:

    ngx_free(buf);
}


static void
ngx_http_upload_running_hashed(ngx_event_t *ev)
{
    ngx_http_upload_running_t *run = ev->data;

    if (run->rc != NGX_OK
        || ngx_http_upload_running_save(run->pool, &run->sha, &run->state)
           != NGX_OK)
    {
        /* a part changed under it; the lease expires */
        ngx_destroy_pool(run->pool);
        return;
    }

    ngx_http_upload_running_put(run);
}

#endif


static void
ngx_http_upload_running_put(ngx_http_upload_running_t *run)
{
    u_char      *p;
    ngx_str_t   *args;
    ngx_uint_t   i;

    args = ngx_palloc(run->pool, (3 + run->nrecords) * sizeof(ngx_str_t));
    p = ngx_pnalloc(run->pool, NGX_INT_T_LEN);

    if (args == NULL || p == NULL) {
        ngx_destroy_pool(run->pool);
        return;
    }

    args[0].data = run->token;
    args[0].len = sizeof(run->token);
    args[1].data = p;
    args[1].len = ngx_sprintf(p, "%i", run->from) - p;
    args[2] = run->state;

    for (i = 0; i < run->nrecords; i++) {
        args[3 + i] = run->records[i];
    }

    if (ngx_http_upload_running_eval(run, ngx_http_upload_put_script,
                                     3 + run->nrecords, args,
                                     ngx_http_upload_running_stored)
        != NGX_OK)
    {
        ngx_destroy_pool(run->pool);
    }
}


static void
ngx_http_upload_running_stored(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_running_t *run = data;

    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
        /* more parts came meanwhile: another round */
        (void) ngx_http_upload_running_new(run->conf, &run->app, &run->id);
    }

    ngx_destroy_pool(run->pool);
}


/* in a pool thread too: "size" bytes of "fd" from "offset" */

ngx_int_t
ngx_http_upload_running_update(SHA256_CTX *sha, ngx_fd_t fd, off_t offset,
    off_t size, u_char *buf)
{
    ssize_t  n;

    while (size > 0) {
        n = pread(fd, buf,
                  (size_t) ngx_min(size, NGX_HTTP_UPLOAD_HASH_CHUNK),
                  offset);

        if (n == -1 && ngx_errno == NGX_EINTR) {
            continue;
        }

        if (n <= 0) {
            if (n == 0) {
                /* shorter than its record says */
                ngx_set_errno(EIO);
            }

            return NGX_ERROR;
        }

        if (SHA256_Update(sha, buf, n) != 1) {
            return NGX_ERROR;
        }

        offset += n;
        size -= n;
    }

    return NGX_OK;
}


/*
 * The state as text, the same on every host: the chaining values and the
 * bit count as numbers, the bytes not yet hashed as bytes.  An empty
 * state is the start.
 */

ngx_int_t
ngx_http_upload_running_load(SHA256_CTX *sha, ngx_str_t *state)
{
    u_char      *p, pending[SHA256_CBLOCK];
    size_t       num;
    uint32_t     v[10];
    ngx_int_t    n, m;
    ngx_uint_t   i;

    if (SHA256_Init(sha) != 1) {
        return NGX_ERROR;
    }

    if (state == NULL || state->len == 0) {
        return NGX_OK;
    }

    if (state->len < NGX_HTTP_UPLOAD_RUNNING_FIXED
        || (state->len - NGX_HTTP_UPLOAD_RUNNING_FIXED) % 2)
    {
        return NGX_ERROR;
    }

    num = (state->len - NGX_HTTP_UPLOAD_RUNNING_FIXED) / 2;

    if (num >= SHA256_CBLOCK) {
        return NGX_ERROR;
    }

    p = state->data;

    /* in halves: a 32-bit ngx_int_t holds no 32-bit word */

    for (i = 0; i < 10; i++, p += 8) {
        n = ngx_hextoi(p, 4);
        m = ngx_hextoi(p + 4, 4);

        if (n == NGX_ERROR || m == NGX_ERROR) {
            return NGX_ERROR;
        }

        v[i] = ((uint32_t) n << 16) | (uint32_t) m;
    }

    if (num && ngx_http_upload_hex_decode(pending, p, num) != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = 0; i < 8; i++) {
        sha->h[i] = v[i];
    }

    sha->Nl = v[8];
    sha->Nh = v[9];
    sha->num = num;

    ngx_memcpy(sha->data, pending, num);

    return NGX_OK;
}


ngx_int_t
ngx_http_upload_running_save(ngx_pool_t *pool, SHA256_CTX *sha,
    ngx_str_t *state)
{
    u_char      *p;
    ngx_uint_t   i;

    if (sha->num >= SHA256_CBLOCK) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(pool, NGX_HTTP_UPLOAD_RUNNING_FIXED + 2 * sha->num);
    if (p == NULL) {
        return NGX_ERROR;
    }

    state->data = p;

    for (i = 0; i < 8; i++) {
        p = ngx_sprintf(p, "%08xD", (uint32_t) sha->h[i]);
    }

    p = ngx_sprintf(p, "%08xD%08xD", (uint32_t) sha->Nl, (uint32_t) sha->Nh);
    p = ngx_hex_dump(p, (u_char *) sha->data, sha->num);

    state->len = p - state->data;

    return NGX_OK;
}
