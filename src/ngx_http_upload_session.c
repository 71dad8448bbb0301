
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Sliced-upload sessions in Redis.  All keys of an app share the hash tag
 * "{<app>}", so every script below touches one Redis Cluster slot:
 *
 *     upload:{<app>}:mpu:<id>        hash: key, initiated, expires, size,
 *                                    part_size, sha256, name, content_type,
 *                                    metadata, state; with a TTL
 *     upload:{<app>}:mpu:<id>:parts  hash: "<n>" -> "<size> <md5> <sha256>
 *                                    <file>"; same TTL
 *     upload:{<app>}:mpus            sorted set of the app's ids, by
 *                                    initiation time (for listing)
 *
 * The part files live in "<store>/.upload-parts/<app>/<id>/".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <openssl/rand.h>

#include "ngx_http_upload_session.h"


#define NGX_HTTP_UPLOAD_PARTS_DIR     ".upload-parts"
#define NGX_HTTP_UPLOAD_LIST_MAX      1000


typedef struct {
    ngx_http_upload_session_t            *session;
    ngx_http_upload_session_handler_pt    handler;
} ngx_http_upload_session_req_t;


static ngx_int_t ngx_http_upload_session_keys(ngx_http_request_t *r,
    ngx_str_t *app, ngx_str_t *id, ngx_str_t *keys);
static ngx_int_t ngx_http_upload_session_run(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, const char *script, int nargs,
    ngx_str_t *args, ngx_http_upload_redis_handler_pt reply_handler,
    ngx_http_upload_session_handler_pt handler);
static ngx_int_t ngx_http_upload_session_eval(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, const char *script, int nkeys,
    ngx_str_t *keys, int nargs, ngx_str_t *args,
    ngx_http_upload_redis_handler_pt reply_handler,
    ngx_http_upload_session_handler_pt handler);
static void ngx_http_upload_session_created(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_session_loaded(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_session_aborted(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_session_found(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_session_listed(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_session_checked(ngx_http_request_t *r,
    void *data, redisReply *reply);
static ngx_int_t ngx_http_upload_part_in_place(ngx_http_upload_ctx_t *ctx,
    off_t part_size);
static ngx_int_t ngx_http_upload_part_claimed(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_part_release(void *data);
static void ngx_http_upload_part_recorded(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_session_begun(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_session_finished(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_session_lease_args(
    ngx_http_upload_complete_t *cp, const char *script, size_t len,
    const char **argv, size_t *argvlen);
static void ngx_http_upload_session_renewed(ngx_http_request_t *r,
    void *data, redisReply *reply);
static void ngx_http_upload_session_detached(ngx_http_upload_ctx_t *ctx,
    u_char *lost, int argc, const char **argv, const size_t *argvlen);
static ngx_int_t ngx_http_upload_session_redis(ngx_http_request_t *r,
    const char *script, int nkeys, ngx_str_t *keys, int nargs,
    ngx_str_t *args, ngx_http_upload_redis_handler_pt handler, void *data);
static ngx_int_t ngx_http_upload_session_fields(ngx_pool_t *pool,
    ngx_http_upload_session_t *session, redisReply *hash);
static ngx_int_t ngx_http_upload_session_parts(ngx_pool_t *pool,
    ngx_array_t *parts, redisReply *hash);
static int ngx_libc_cdecl ngx_http_upload_part_cmp(const void *one,
    const void *two);


static const char  ngx_http_upload_create_script[] =
    "redis.call('HSET', KEYS[1], 'key', ARGV[1], 'initiated', ARGV[2], "
    "  'expires', ARGV[2] + ARGV[3], 'size', ARGV[4], "
    "  'part_size', ARGV[5], 'sha256', ARGV[6], 'name', ARGV[7], "
    "  'content_type', ARGV[8], 'metadata', ARGV[9], 'state', 'open') "
    "redis.call('EXPIRE', KEYS[1], ARGV[3]) "
    "redis.call('ZADD', KEYS[3], ARGV[2], ARGV[10]) "
    "if ARGV[6] ~= '' then "
    "  redis.call('HSET', KEYS[7], ARGV[6] .. ':' .. ARGV[1], ARGV[10]) "
    "  if redis.call('TTL', KEYS[7]) < tonumber(ARGV[3]) then "
    "    redis.call('EXPIRE', KEYS[7], ARGV[3]) "
    "  end "
    "end "
    "if redis.call('TTL', KEYS[3]) < tonumber(ARGV[3]) then "
    "  redis.call('EXPIRE', KEYS[3], ARGV[3]) "
    "end "
    "return 1";

static const char  ngx_http_upload_load_script[] =
    "local s = redis.call('HGETALL', KEYS[1]) "
    "if #s == 0 then return false end "
    "return {s, redis.call('HGETALL', KEYS[2])}";

/*
 * The scripts take the session's keys in the order of
 * ngx_http_upload_session_key_names().
 */

/* the part files go with the session: their names are returned */
static const char  ngx_http_upload_abort_script[] =
    "local s = redis.call('HMGET', KEYS[1], 'key', 'state', 'holder') "
    "if s[1] ~= ARGV[1] then return false end "
    "if (s[2] == 'completing' or s[2] == 'recorded' or s[2] == 'stored') "
    "   and (not s[3] or redis.call('EXISTS', KEYS[8]) == 1) then "
    "  return 0 "
    "end "
    "local files = redis.call('HVALS', KEYS[2]) "
    "local m = redis.call('HGET', KEYS[1], 'sha256') "
    "if m and m ~= '' "
    "   and redis.call('HGET', KEYS[7], m .. ':' .. ARGV[1]) == ARGV[2] then "
    "  redis.call('HDEL', KEYS[7], m .. ':' .. ARGV[1]) "
    "end "
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[5], KEYS[6], KEYS[8]) "
    "redis.call('ZREM', KEYS[3], ARGV[2]) "
    "return files";

/*
 * A part may come only while the session is open, for its key: {0} if
 * not.  A part that fits the layout declared at initiate (size and
 * part_size both given, the part's Content-Length exactly its share) and
 * whose place is free claims it, {2, part_size}: its body is written in
 * place in the session's one data file.  The place is free unless it
 * holds a recorded part or another request writes it.  Else {1}: the
 * part goes to a file of its own.
 */
static const char  ngx_http_upload_check_script[] =
    "local s = redis.call('HMGET', KEYS[1], 'key', 'state', 'size', "
    "                     'part_size') "
    "if s[1] ~= ARGV[1] or s[2] ~= 'open' then return {0} end "
    "local size, psize = tonumber(s[3]), tonumber(s[4]) "
    "local n, len = tonumber(ARGV[2]), tonumber(ARGV[3]) "
    "if not size or not psize or size < 0 or psize <= 0 then "
    "  return {1} "
    "end "
    "local last = math.floor((size + psize - 1) / psize) "
    "local want = psize "
    "if n == last then want = size - (last - 1) * psize end "
    "if n > last or len ~= want then return {1} end "
    "local old = redis.call('HGET', KEYS[2], ARGV[2]) "
    "if old and string.sub(old, -5) == ' data' then return {1} end "
    "if redis.call('HSETNX', KEYS[5], ARGV[2], ARGV[4]) == 0 then "
    "  return {1} "
    "end "
    "redis.call('EXPIRE', KEYS[5], ARGV[5]) "
    "return {2, psize}";

/*
 * Records a part, with the same check, gives back its place's claim, and
 * refreshes the session's TTL.  The replaced record comes back: its file
 * is then removed.  A reader of the session sees the old part or the new
 * one, each in its own file or place.  The app's set of sessions and its
 * resume pointers live as long as its longest-lived session.  A part
 * replaced inside the prefix that the running SHA-256 covers restarts it.
 * The second member says whether the running SHA-256 can advance and
 * nobody advances it.
 */
static const char  ngx_http_upload_part_script[] =
    "if ARGV[6] ~= '' and redis.call('HGET', KEYS[5], ARGV[2]) == ARGV[6] "
    "then "
    "  redis.call('HDEL', KEYS[5], ARGV[2]) "
    "end "
    "local s = redis.call('HMGET', KEYS[1], 'key', 'state', 'hash_part') "
    "if s[1] ~= ARGV[1] or s[2] ~= 'open' then return false end "
    "local old = redis.call('HGET', KEYS[2], ARGV[2]) "
    "redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) "
    "local h = tonumber(s[3]) or 0 "
    "if old and tonumber(ARGV[2]) <= h then "
    "  h = 0 "
    "  redis.call('HSET', KEYS[1], 'hash_part', 0, 'hash_state', '') "
    "  redis.call('DEL', KEYS[6]) "
    "end "
    "redis.call('HSET', KEYS[1], 'expires', ARGV[5]) "
    "redis.call('EXPIRE', KEYS[1], ARGV[4]) "
    "redis.call('EXPIRE', KEYS[2], ARGV[4]) "
    "redis.call('EXPIRE', KEYS[5], ARGV[4]) "
    "for _, k in ipairs({KEYS[3], KEYS[7]}) do "
    "  if redis.call('TTL', k) < tonumber(ARGV[4]) then "
    "    redis.call('EXPIRE', k, ARGV[4]) "
    "  end "
    "end "
    "local go = 0 "
    "if redis.call('EXISTS', KEYS[6]) == 0 "
    "   and redis.call('HEXISTS', KEYS[2], tostring(h + 1)) == 1 then "
    "  go = 1 "
    "end "
    "return {old or '', go}";

/* a part that was not recorded gives back the place it claimed */
static const char  ngx_http_upload_release_script[] =
    "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
    "  redis.call('HDEL', KEYS[1], ARGV[1]) "
    "end "
    "return 1";

/*
 * The start of a complete.  A complete that already finished with the
 * same list of parts is answered again from its remembered result; one
 * in progress makes the caller wait; else the session is taken out of
 * reach of further parts ("completing") and handed over with its parts
 * and the number of parts still being written in place.  The running
 * SHA-256 stops: the complete goes on from where it got.
 *
 * A complete holds the session: its token is the session's "holder",
 * and its lease (KEYS[8], the token, expiring after upload_complete_lease
 * unless renewed) says that it is alive.  A complete whose worker died,
 * or that could not give the session back because Redis was away, leaves
 * "completing" without a lease, and the next complete takes over (the
 * last member says so).  One without a holder is a complete of a module
 * that had no leases: it runs until the session expires.  A complete
 * that has recorded the object leaves the session "recorded", taken over
 * like "completing"; once the file is in place, "stored": never merged
 * again; if its complete is gone before closing it, the session goes, and
 * the object stays.
 */
static const char  ngx_http_upload_begin_script[] =
    "local d = redis.call('HMGET', KEYS[4], 'list', 'result', 'key') "
    "if d[1] then "
    "  if d[1] == ARGV[2] and d[3] == ARGV[1] then "
    "    return {'done', d[2]} "
    "  end "
    "  return false "
    "end "
    "local s = redis.call('HMGET', KEYS[1], 'key', 'state', 'holder') "
    "if s[1] ~= ARGV[1] then return false end "
    "if s[2] == 'stored' then "
    "  if redis.call('EXISTS', KEYS[8]) == 1 then return {'busy'} end "
    "  redis.call('DEL', KEYS[1], KEYS[2], KEYS[5], KEYS[6], KEYS[8]) "
    "  return false "
    "end "
    "local taken = 0 "
    "if s[2] == 'completing' or s[2] == 'recorded' then "
    "  if not s[3] or redis.call('EXISTS', KEYS[8]) == 1 then "
    "    return {'busy'} "
    "  end "
    "  taken = 1 "
    "end "
    "redis.call('HSET', KEYS[1], 'state', 'completing', 'holder', ARGV[3]) "
    "redis.call('SET', KEYS[8], ARGV[3], 'PX', ARGV[4]) "
    "redis.call('DEL', KEYS[6]) "
    "return {'go', redis.call('HGETALL', KEYS[1]), "
    "        redis.call('HGETALL', KEYS[2]), redis.call('HLEN', KEYS[5]), "
    "        taken}";

/*
 * A complete at work renews its lease while it holds the session (a lease
 * that lapsed while nobody took over is taken again); 0 when another
 * complete took the session over since.
 */
static const char  ngx_http_upload_renew_script[] =
    "local s = redis.call('HMGET', KEYS[1], 'state', 'holder') "
    "if (s[1] ~= 'completing' and s[1] ~= 'recorded' and s[1] ~= 'stored') "
    "   or s[2] ~= ARGV[1] "
    "then "
    "  return 0 "
    "end "
    "redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2]) "
    "return 1";

/* the id of the open session for this sha256 and key, if any */
static const char  ngx_http_upload_find_script[] =
    "return redis.call('HGET', KEYS[7], ARGV[1] .. ':' .. ARGV[2])";

/*
 * A complete that failed gives the session back to its client, unless
 * another complete took it over meanwhile ("recorded": its record is
 * there but the file could not be renamed into place).
 */
static const char  ngx_http_upload_reopen_script[] =
    "local s = redis.call('HMGET', KEYS[1], 'state', 'holder') "
    "if s[2] ~= ARGV[1] then return 0 end "
    "if s[1] == 'completing' or s[1] == 'recorded' then "
    "  redis.call('HSET', KEYS[1], 'state', 'open') "
    "end "
    "redis.call('HDEL', KEYS[1], 'holder') "
    "redis.call('DEL', KEYS[2]) "
    "return 1";

/* the object is in place: the session is never to be merged again */
static const char  ngx_http_upload_stored_script[] =
    "local s = redis.call('HMGET', KEYS[1], 'state', 'holder') "
    "if s[1] == 'recorded' and s[2] == ARGV[1] then "
    "  redis.call('HSET', KEYS[1], 'state', 'stored') "
    "end "
    "return 1";

/*
 * The object is stored but the complete ended before the session was
 * closed: the session goes, unless another complete holds it now.
 */
static const char  ngx_http_upload_forget_script[] =
    "if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end "
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]) "
    "return 1";

/* what a lost request-less command leaves behind, for the log */
static u_char  ngx_http_upload_reopen_lost[] =
    "a sliced upload could not be reopened after a failed complete; the "
    "next complete takes it over once its lease lapses";
static u_char  ngx_http_upload_release_lost[] =
    "the place of a part that failed could not be given back; the "
    "complete of its upload will copy";

static u_char  ngx_http_upload_stored_lost[] =
    "a sliced upload's object is in place, but its session could not be "
    "marked stored; if its complete ends before closing it, the next "
    "complete merges it again";

static u_char  ngx_http_upload_forget_lost[] =
    "the session of a stored sliced upload could not be deleted; it "
    "expires with its TTL";

/*
 * The object is stored: the session goes, its result stays a while; 0 when
 * another complete took the session over meanwhile (it is left to it).
 */
static const char  ngx_http_upload_finish_script[] =
    "if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[5] then return 0 end "
    "local m = redis.call('HGET', KEYS[1], 'sha256') "
    "if m and m ~= '' "
    "   and redis.call('HGET', KEYS[7], m .. ':' .. ARGV[4]) == ARGV[3] then "
    "  redis.call('HDEL', KEYS[7], m .. ':' .. ARGV[4]) "
    "end "
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[5], KEYS[6], KEYS[8]) "
    "redis.call('ZREM', KEYS[3], ARGV[3]) "
    "redis.call('HSET', KEYS[4], 'list', ARGV[1], 'result', ARGV[2], "
    "           'key', ARGV[4]) "
    "redis.call('EXPIRE', KEYS[4], 3600) "
    "return 1";

/*
 * Expired sessions leave the sorted set as they are met; past ARGV[3]
 * sessions, an empty entry says that the answer is truncated.
 */
static const char  ngx_http_upload_list_script[] =
    "local ids = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES') "
    "local out = {} "
    "for i = 1, #ids, 2 do "
    "  local k = redis.call('HGET', ARGV[1] .. ids[i], 'key') "
    "  if not k then "
    "    redis.call('ZREM', KEYS[1], ids[i]) "
    "  elseif string.sub(k, 1, #ARGV[2]) == ARGV[2] then "
    "    if #out == 3 * tonumber(ARGV[3]) then "
    "      out[#out + 1] = '' "
    "      out[#out + 1] = '' "
    "      out[#out + 1] = '0' "
    "      break "
    "    end "
    "    out[#out + 1] = k "
    "    out[#out + 1] = ids[i] "
    "    out[#out + 1] = ids[i + 1] "
    "  end "
    "end "
    "return out";


ngx_int_t
ngx_http_upload_session_new_id(ngx_pool_t *pool, ngx_str_t *id)
{
    u_char     rnd[NGX_HTTP_UPLOAD_ID_BYTES];
    ngx_str_t  src;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    id->data = ngx_pnalloc(pool, ngx_base64_encoded_length(sizeof(rnd)));
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    src.len = sizeof(rnd);
    src.data = rnd;

    ngx_encode_base64url(id, &src);

    return NGX_OK;
}


/* an id from a client is used in Redis keys and in a directory name */

ngx_int_t
ngx_http_upload_session_valid_id(ngx_str_t *id)
{
    ngx_uint_t  i;
    u_char      c;

    if (id->len != NGX_HTTP_UPLOAD_ID_LEN) {
        return NGX_DECLINED;
    }

    for (i = 0; i < id->len; i++) {
        c = id->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_upload_session_dir(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *id, ngx_str_t *dir)
{
    return ngx_http_upload_session_dir_pool(r->pool,
               ngx_http_get_module_loc_conf(r, ngx_http_upload_module),
               app, id, dir);
}


ngx_int_t
ngx_http_upload_session_dir_pool(ngx_pool_t *pool,
    ngx_http_upload_loc_conf_t *ulcf, ngx_str_t *app, ngx_str_t *id,
    ngx_str_t *dir)
{
    dir->len = ulcf->store.len + sizeof("/" NGX_HTTP_UPLOAD_PARTS_DIR "//")
               - 1 + app->len + id->len;

    dir->data = ngx_pnalloc(pool, dir->len + 1);
    if (dir->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(dir->data, "%V/" NGX_HTTP_UPLOAD_PARTS_DIR "/%V/%V%Z",
                &ulcf->store, app, id);

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_session_keys(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *id, ngx_str_t *keys)
{
    return ngx_http_upload_session_key_names(r->pool, app, id, keys);
}


/*
 * keys[0]: the session, keys[1]: its parts, keys[2]: the app's set,
 * keys[3]: the remembered result of its complete, keys[4]: its parts being
 * written in place, keys[5]: the lease of its running SHA-256, keys[6]:
 * the app's unfinished sessions by "<sha256>:<key>" (to resume them),
 * keys[7]: the lease of its complete
 */

ngx_int_t
ngx_http_upload_session_key_names(ngx_pool_t *pool, ngx_str_t *app,
    ngx_str_t *id, ngx_str_t *keys)
{
    u_char  *p;

    p = ngx_pnalloc(pool, NGX_HTTP_UPLOAD_SESSION_KEYS
                          * (sizeof("upload:{}:mpu::hashing") - 1
                             + app->len + id->len));
    if (p == NULL) {
        return NGX_ERROR;
    }

    keys[0].data = p;
    p = ngx_sprintf(p, "upload:{%V}:mpu:%V", app, id);
    keys[0].len = p - keys[0].data;

    keys[1].data = p;
    p = ngx_sprintf(p, "upload:{%V}:mpu:%V:parts", app, id);
    keys[1].len = p - keys[1].data;

    keys[2].data = p;
    p = ngx_sprintf(p, "upload:{%V}:mpus", app);
    keys[2].len = p - keys[2].data;

    keys[3].data = p;
    p = ngx_sprintf(p, "upload:{%V}:mpu:%V:done", app, id);
    keys[3].len = p - keys[3].data;

    keys[4].data = p;
    p = ngx_sprintf(p, "upload:{%V}:mpu:%V:slots", app, id);
    keys[4].len = p - keys[4].data;

    keys[5].data = p;
    p = ngx_sprintf(p, "upload:{%V}:mpu:%V:hashing", app, id);
    keys[5].len = p - keys[5].data;

    keys[6].data = p;
    p = ngx_sprintf(p, "upload:{%V}:resume", app);
    keys[6].len = p - keys[6].data;

    keys[7].data = p;
    p = ngx_sprintf(p, "upload:{%V}:mpu:%V:lease", app, id);
    keys[7].len = p - keys[7].data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_session_eval(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, const char *script, int nkeys,
    ngx_str_t *keys, int nargs, ngx_str_t *args,
    ngx_http_upload_redis_handler_pt reply_handler,
    ngx_http_upload_session_handler_pt handler)
{
    ngx_http_upload_session_req_t  *req;

    req = ngx_palloc(r->pool, sizeof(ngx_http_upload_session_req_t));
    if (req == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    req->session = session;
    req->handler = handler;

    return ngx_http_upload_session_redis(r, script, nkeys, keys, nargs, args,
                                         reply_handler, req);
}


/* a script on all of the session's keys, for a session handler */

static ngx_int_t
ngx_http_upload_session_run(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, const char *script, int nargs,
    ngx_str_t *args, ngx_http_upload_redis_handler_pt reply_handler,
    ngx_http_upload_session_handler_pt handler)
{
    ngx_str_t  keys[NGX_HTTP_UPLOAD_SESSION_KEYS];

    if (ngx_http_upload_session_keys(r, &session->app, &session->id, keys)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_upload_session_eval(r, session, script,
                                        NGX_HTTP_UPLOAD_SESSION_KEYS, keys,
                                        nargs, args, reply_handler, handler);
}


/* EVAL script nkeys keys... args...: NGX_HTTP_UPLOAD_PENDING or a status */

static ngx_int_t
ngx_http_upload_session_redis(ngx_http_request_t *r, const char *script,
    int nkeys, ngx_str_t *keys, int nargs, ngx_str_t *args,
    ngx_http_upload_redis_handler_pt handler, void *data)
{
    int                           i, argc;
    u_char                       *p;
    size_t                       *argvlen;
    ngx_int_t                     rc;
    const char                  **argv;
    ngx_http_upload_loc_conf_t   *ulcf;

    argc = 3 + nkeys + nargs;

    argv = ngx_palloc(r->pool, argc * sizeof(char *));
    argvlen = ngx_palloc(r->pool, argc * sizeof(size_t));
    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);

    if (argv == NULL || argvlen == NULL || p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0] = "EVAL";
    argvlen[0] = sizeof("EVAL") - 1;
    argv[1] = script;
    argvlen[1] = ngx_strlen(script);
    argv[2] = (char *) p;
    argvlen[2] = ngx_sprintf(p, "%d", nkeys) - p;

    for (i = 0; i < nkeys; i++) {
        argv[3 + i] = (char *) keys[i].data;
        argvlen[3 + i] = keys[i].len;
    }

    for (i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = args[i].len ? (char *) args[i].data : "";
        argvlen[3 + nkeys + i] = args[i].len;
    }

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    rc = ngx_http_upload_redis_command(r, ulcf->redis, ulcf->redis_timeout,
                                       handler, data, argc, argv, argvlen);

    if (rc == NGX_OK) {
        return NGX_HTTP_UPLOAD_PENDING;
    }

    if (rc == NGX_DECLINED) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


ngx_int_t
ngx_http_upload_session_create(ngx_http_request_t *r,
    ngx_http_upload_session_t *session,
    ngx_http_upload_session_handler_pt handler)
{
    u_char                      *p;
    ngx_str_t                    args[10];
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    p = ngx_pnalloc(r->pool, 4 * NGX_OFF_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    session->initiated = ngx_time();
    session->expires = session->initiated + ulcf->session_ttl;
    ngx_str_set(&session->state, "open");

    args[0] = session->key;

    args[1].data = p;
    p = ngx_sprintf(p, "%T", session->initiated);
    args[1].len = p - args[1].data;

    args[2].data = p;
    p = ngx_sprintf(p, "%T", ulcf->session_ttl);
    args[2].len = p - args[2].data;

    args[3].data = p;
    p = ngx_sprintf(p, "%O", session->size);
    args[3].len = p - args[3].data;

    args[4].data = p;
    p = ngx_sprintf(p, "%O", session->part_size);
    args[4].len = p - args[4].data;

    args[5] = session->sha256;
    args[6] = session->name;
    args[7] = session->content_type;
    args[8] = session->metadata;
    args[9] = session->id;

    return ngx_http_upload_session_run(r, session,
                                       ngx_http_upload_create_script,
                                       10, args,
                                       ngx_http_upload_session_created,
                                       handler);
}


static void
ngx_http_upload_session_created(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_session_req_t *req = data;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        req->handler(r, req->session, NULL, NGX_ERROR);
        return;
    }

    req->handler(r, req->session, NULL, NGX_OK);
}


/* the session with its parts, sorted by number; NGX_DECLINED: no such */

ngx_int_t
ngx_http_upload_session_load(ngx_http_request_t *r,
    ngx_http_upload_session_t *session,
    ngx_http_upload_session_handler_pt handler)
{
    ngx_str_t  keys[NGX_HTTP_UPLOAD_SESSION_KEYS];

    if (ngx_http_upload_session_keys(r, &session->app, &session->id, keys)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_upload_session_eval(r, session,
                                        ngx_http_upload_load_script,
                                        2, keys, 0, NULL,
                                        ngx_http_upload_session_loaded,
                                        handler);
}


static void
ngx_http_upload_session_loaded(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_session_req_t *req = data;

    ngx_str_t                   key;
    ngx_array_t                *parts;
    ngx_http_upload_session_t  *session;

    session = req->session;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        req->handler(r, session, NULL, NGX_ERROR);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        req->handler(r, session, NULL, NGX_DECLINED);
        return;
    }

    /* an id is bound to one key: another key does not find it */

    key = session->key;

    parts = ngx_array_create(r->pool, 16, sizeof(ngx_http_upload_part_t));

    if (parts == NULL
        || ngx_http_upload_session_fields(r->pool, session,
                                          reply->element[0]) != NGX_OK
        || ngx_http_upload_session_parts(r->pool, parts, reply->element[1])
           != NGX_OK)
    {
        req->handler(r, session, NULL, NGX_ERROR);
        return;
    }

    if (session->key.len != key.len
        || ngx_strncmp(session->key.data, key.data, key.len) != 0)
    {
        session->key = key;
        req->handler(r, session, NULL, NGX_DECLINED);
        return;
    }

    req->handler(r, session, parts, NGX_OK);
}


ngx_int_t
ngx_http_upload_session_abort(ngx_http_request_t *r,
    ngx_http_upload_session_t *session,
    ngx_http_upload_session_handler_pt handler)
{
    ngx_str_t  args[2];

    args[0] = session->key;
    args[1] = session->id;

    return ngx_http_upload_session_run(r, session, ngx_http_upload_abort_script,
                                       2, args, ngx_http_upload_session_aborted,
                                       handler);
}


static void
ngx_http_upload_session_aborted(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_session_req_t *req = data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        req->handler(r, req->session, NULL, NGX_ERROR);
        return;
    }

    if (reply->type == REDIS_REPLY_INTEGER) {
        /* a complete runs: it decides */
        req->handler(r, req->session, NULL, NGX_BUSY);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY) {
        req->handler(r, req->session, NULL, NGX_DECLINED);
        return;
    }

    req->handler(r, req->session, NULL, NGX_OK);
}


/*
 * The unfinished session of this app for the same key and declared
 * sha256, if there is one: "session" gets its id, and is loaded
 * (NGX_DECLINED: none, or it went meanwhile).
 */

ngx_int_t
ngx_http_upload_session_find(ngx_http_request_t *r,
    ngx_http_upload_session_t *session,
    ngx_http_upload_session_handler_pt handler)
{
    ngx_str_t  args[2];

    args[0] = session->sha256;
    args[1] = session->key;

    return ngx_http_upload_session_run(r, session, ngx_http_upload_find_script,
                                       2, args, ngx_http_upload_session_found,
                                       handler);
}


static void
ngx_http_upload_session_found(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_session_req_t *req = data;

    ngx_str_t                   id;
    ngx_int_t                   rc;
    ngx_http_upload_session_t  *session;

    session = req->session;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        req->handler(r, session, NULL, NGX_ERROR);
        return;
    }

    if (reply->type != REDIS_REPLY_STRING
        || ngx_http_upload_copy(r->pool, &id, reply) != NGX_OK
        || ngx_http_upload_session_valid_id(&id) != NGX_OK)
    {
        req->handler(r, session, NULL, NGX_DECLINED);
        return;
    }

    session->id = id;

    rc = ngx_http_upload_session_load(r, session, req->handler);

    if (rc != NGX_HTTP_UPLOAD_PENDING) {
        req->handler(r, session, NULL, NGX_ERROR);
    }
}


/* the app's unfinished sessions whose key starts with "prefix" */

ngx_int_t
ngx_http_upload_session_list(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *prefix, ngx_http_upload_session_handler_pt handler)
{
    u_char                     *p;
    ngx_str_t                   id, keys[NGX_HTTP_UPLOAD_SESSION_KEYS], args[3];
    ngx_http_upload_session_t  *session;

    session = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_session_t));
    if (session == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    session->app = *app;

    ngx_str_null(&id);

    if (ngx_http_upload_session_keys(r, app, &id, keys) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* keys[0] is "upload:{<app>}:mpu:", the prefix of every session */

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    args[0] = keys[0];
    args[1] = *prefix;
    args[2].data = p;
    args[2].len = ngx_sprintf(p, "%d", NGX_HTTP_UPLOAD_LIST_MAX) - p;

    return ngx_http_upload_session_eval(r, session,
                                        ngx_http_upload_list_script,
                                        1, &keys[2], 3, args,
                                        ngx_http_upload_session_listed,
                                        handler);
}


static void
ngx_http_upload_session_listed(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_session_req_t *req = data;

    size_t                      i;
    ngx_array_t                *list;
    ngx_http_upload_session_t  *s;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        req->handler(r, req->session, NULL, NGX_ERROR);
        return;
    }

    list = ngx_array_create(r->pool, reply->elements / 3 + 1,
                            sizeof(ngx_http_upload_session_t));
    if (list == NULL) {
        req->handler(r, req->session, NULL, NGX_ERROR);
        return;
    }

    for (i = 0; i + 2 < reply->elements; i += 3) {
        s = ngx_array_push(list);
        if (s == NULL) {
            req->handler(r, req->session, NULL, NGX_ERROR);
            return;
        }

        ngx_memzero(s, sizeof(ngx_http_upload_session_t));
        s->app = req->session->app;

        if (ngx_http_upload_copy(r->pool, &s->key, reply->element[i])
            != NGX_OK
            || ngx_http_upload_copy(r->pool, &s->id, reply->element[i + 1])
               != NGX_OK)
        {
            req->handler(r, req->session, NULL, NGX_ERROR);
            return;
        }

        if (reply->element[i + 2]->type == REDIS_REPLY_STRING) {
            s->initiated = ngx_atotm((u_char *) reply->element[i + 2]->str,
                                     reply->element[i + 2]->len);
        }
    }

    req->handler(r, req->session, list, NGX_OK);
}


static ngx_int_t
ngx_http_upload_session_fields(ngx_pool_t *pool,
    ngx_http_upload_session_t *session, redisReply *hash)
{
    size_t       i;
    ngx_str_t    value, *field;
    redisReply  *f;

    if (hash->type != REDIS_REPLY_ARRAY) {
        return NGX_ERROR;
    }

    session->size = -1;
    session->part_size = -1;

    for (i = 0; i + 1 < hash->elements; i += 2) {
        f = hash->element[i];

        if (f->type != REDIS_REPLY_STRING
            || ngx_http_upload_copy(pool, &value, hash->element[i + 1])
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        field = NULL;

#define ngx_http_upload_field_is(name)                                        \
        (f->len == sizeof(name) - 1 && ngx_strncmp(f->str, name, f->len) == 0)

        if (ngx_http_upload_field_is("key")) {
            field = &session->key;

        } else if (ngx_http_upload_field_is("sha256")) {
            field = &session->sha256;

        } else if (ngx_http_upload_field_is("name")) {
            field = &session->name;

        } else if (ngx_http_upload_field_is("content_type")) {
            field = &session->content_type;

        } else if (ngx_http_upload_field_is("metadata")) {
            field = &session->metadata;

        } else if (ngx_http_upload_field_is("state")) {
            field = &session->state;

        } else if (ngx_http_upload_field_is("hash_state")) {
            field = &session->hash_state;

        } else if (ngx_http_upload_field_is("hash_part")) {
            session->hash_part = ngx_atoi(value.data, value.len);

        } else if (ngx_http_upload_field_is("initiated")) {
            session->initiated = ngx_atotm(value.data, value.len);

        } else if (ngx_http_upload_field_is("expires")) {
            session->expires = ngx_atotm(value.data, value.len);

        } else if (ngx_http_upload_field_is("size") && value.len
                   && value.data[0] != '-')
        {
            session->size = ngx_atoof(value.data, value.len);

        } else if (ngx_http_upload_field_is("part_size") && value.len
                   && value.data[0] != '-')
        {
            session->part_size = ngx_atoof(value.data, value.len);
        }

#undef ngx_http_upload_field_is

        if (field) {
            *field = value;
        }
    }

    return NGX_OK;
}


/* "<size> <md5> <sha256> <file>" by part number */

static ngx_int_t
ngx_http_upload_session_parts(ngx_pool_t *pool, ngx_array_t *parts,
    redisReply *hash)
{
    u_char                  *p, *last, *field[4];
    size_t                   i;
    ngx_str_t                value;
    ngx_uint_t               n;
    ngx_http_upload_part_t  *part;

    if (hash->type != REDIS_REPLY_ARRAY) {
        return NGX_ERROR;
    }

    for (i = 0; i + 1 < hash->elements; i += 2) {

        if (ngx_http_upload_copy(pool, &value, hash->element[i + 1])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        p = value.data;
        last = p + value.len;

        for (n = 0; n < 4; n++) {
            field[n] = p;

            while (p < last && *p != ' ') {
                p++;
            }

            if (n < 3 && p == last) {
                return NGX_ERROR;
            }

            p++;
        }

        part = ngx_array_push(parts);
        if (part == NULL) {
            return NGX_ERROR;
        }

        part->number = ngx_atoi((u_char *) hash->element[i]->str,
                                hash->element[i]->len);
        part->size = ngx_atoof(field[0], field[1] - field[0] - 1);
        part->md5.data = field[1];
        part->md5.len = field[2] - field[1] - 1;
        part->sha256.data = field[2];
        part->sha256.len = field[3] - field[2] - 1;
        part->file.data = field[3];
        part->file.len = last - field[3];

        if (part->number == (ngx_uint_t) NGX_ERROR || part->size < 0) {
            return NGX_ERROR;
        }
    }

    ngx_qsort(parts->elts, parts->nelts, sizeof(ngx_http_upload_part_t),
              ngx_http_upload_part_cmp);

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_http_upload_part_cmp(const void *one, const void *two)
{
    const ngx_http_upload_part_t  *a = one, *b = two;

    return (a->number > b->number) - (a->number < b->number);
}


/* a Redis string reply into the pool, NUL-terminated */

ngx_int_t
ngx_http_upload_copy(ngx_pool_t *pool, ngx_str_t *dst, redisReply *src)
{
    if (src->type != REDIS_REPLY_STRING) {
        return NGX_ERROR;
    }

    dst->len = src->len;
    dst->data = ngx_pnalloc(pool, src->len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->str, src->len);
    dst->data[src->len] = '\0';

    return NGX_OK;
}


/*
 * Before a part's body: is the session there and open for this key, and
 * may the part be written in place?  ctx->slot is the claim's token.
 */

ngx_int_t
ngx_http_upload_session_check(ngx_http_upload_ctx_t *ctx,
    void (*open)(ngx_http_upload_ctx_t *ctx))
{
    u_char                     *p;
    ngx_str_t                   keys[NGX_HTTP_UPLOAD_SESSION_KEYS], args[5];
    ngx_http_request_t         *r;
    ngx_http_upload_session_t  *session;

    r = ctx->request;
    session = ctx->session;

    if (ngx_http_upload_session_keys(r, &session->app, &session->id, keys)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN + 2 * NGX_OFF_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    args[0] = session->key;

    args[1].data = p;
    p = ngx_sprintf(p, "%ui", ctx->part_number);
    args[1].len = p - args[1].data;

    /* -1 for a body of unknown length: never in place */

    args[2].data = p;
    p = ngx_sprintf(p, "%O", r->headers_in.content_length_n);
    args[2].len = p - args[2].data;

    args[3] = ctx->slot;

    /* the claims' key, for the cleanup that may give a claim back */
    ctx->slot_key = keys[4];

    args[4].data = p;
    p = ngx_sprintf(p, "%T", ctx->conf->session_ttl);
    args[4].len = p - args[4].data;

    ctx->redis_done = open;

    return ngx_http_upload_session_redis(r, ngx_http_upload_check_script,
                                         NGX_HTTP_UPLOAD_SESSION_KEYS, keys,
                                         5, args,
                                         ngx_http_upload_session_checked,
                                         ctx);
}


static void
ngx_http_upload_session_checked(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    redisReply  *how;

    if (reply == NULL) {
        /* no answer: the check may have claimed the place all the same */

        (void) ngx_http_upload_part_claimed(ctx);

        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements == 0
        || reply->element[0]->type != REDIS_REPLY_INTEGER)
    {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    how = reply->element[0];

    if (how->integer == 0) {
        ngx_http_finalize_request(r, ngx_http_upload_no_such_upload(r));
        return;
    }

    if (how->integer == 2) {
        if (reply->elements != 2
            || reply->element[1]->type != REDIS_REPLY_INTEGER
            || ngx_http_upload_part_in_place(ctx, reply->element[1]->integer)
               != NGX_OK)
        {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    ctx->redis_done(ctx);
}


/*
 * The part's place is claimed: its body goes at its offset in the
 * session's data file, and the claim is given back if the part ends
 * unrecorded.
 */

static ngx_int_t
ngx_http_upload_part_in_place(ngx_http_upload_ctx_t *ctx, off_t part_size)
{
    u_char              *p;
    size_t               dir;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (ngx_http_upload_part_claimed(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    for (dir = ctx->path.len; ctx->path.data[dir - 1] != '/'; dir--) {
        /* void */
    }

    p = ngx_pnalloc(r->pool, dir + sizeof(NGX_HTTP_UPLOAD_DATA_FILE));
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, ctx->path.data, dir);
    ngx_memcpy(p + dir, NGX_HTTP_UPLOAD_DATA_FILE,
               sizeof(NGX_HTTP_UPLOAD_DATA_FILE));

    ctx->path.data = p;
    ctx->path.len = dir + sizeof(NGX_HTTP_UPLOAD_DATA_FILE) - 1;
    ctx->temp = ctx->path;
    ctx->offset = (off_t) (ctx->part_number - 1) * part_size;
    ctx->shared = 1;

    return NGX_OK;
}


/*
 * A claim on the part's place, or maybe one (its check got no answer):
 * given back when the request ends with the part unrecorded; the release
 * is fenced by the claim's token, ctx->slot, and goes to ctx->slot_key
 * (both set before the check).
 */

static ngx_int_t
ngx_http_upload_part_claimed(ngx_http_upload_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(ctx->request->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_upload_part_release;
    cln->data = ctx;

    return NGX_OK;
}


static void
ngx_http_upload_part_release(void *data)
{
    ngx_http_upload_ctx_t *ctx = data;

    size_t       argvlen[6];
    const char  *argv[6];
    u_char       number[NGX_INT_T_LEN];

    /* a pool cleanup: nothing may come from r->pool, which is gone */

    if (ctx->committed) {
        /* the part's record gave the claim back */
        return;
    }

    argv[0] = "EVAL";
    argvlen[0] = sizeof("EVAL") - 1;
    argv[1] = ngx_http_upload_release_script;
    argvlen[1] = sizeof(ngx_http_upload_release_script) - 1;
    argv[2] = "1";
    argvlen[2] = 1;
    argv[3] = (char *) ctx->slot_key.data;
    argvlen[3] = ctx->slot_key.len;
    argv[4] = (char *) number;
    argvlen[4] = ngx_sprintf(number, "%ui", ctx->part_number) - number;
    argv[5] = (char *) ctx->slot.data;
    argvlen[5] = ctx->slot.len;

    /*
     * Not tied to the request, which is on its way out; a lost one leaves
     * the place claimed until the session ends, and the complete then
     * copies instead of renaming.
     */

    ngx_http_upload_session_detached(ctx, ngx_http_upload_release_lost,
                                     6, argv, argvlen);
}


/* after a part's body: "<size> <md5> <sha256> <file>" under its number */

ngx_int_t
ngx_http_upload_part_record(ngx_http_upload_ctx_t *ctx,
    void (*done)(ngx_http_upload_ctx_t *ctx))
{
    u_char                      *p, *file;
    ngx_str_t                    keys[NGX_HTTP_UPLOAD_SESSION_KEYS], args[6];
    ngx_http_request_t          *r;
    ngx_http_upload_object_t     obj;
    ngx_http_upload_session_t   *session;

    r = ctx->request;
    session = ctx->session;

    if (ngx_http_upload_session_keys(r, &session->app, &session->id, keys)
        != NGX_OK
        || ngx_http_upload_digest_hex(r->pool, ctx, &obj) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the file name, without its directory */

    for (file = ctx->path.data + ctx->path.len; file[-1] != '/'; file--) {
        /* void */
    }

    p = ngx_pnalloc(r->pool, 3 * NGX_OFF_T_LEN + obj.md5.len
                             + obj.sha256.len + ctx->path.len + 4);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    args[0] = session->key;

    args[1].data = p;
    p = ngx_sprintf(p, "%ui", ctx->part_number);
    args[1].len = p - args[1].data;

    args[2].data = p;
    p = ngx_sprintf(p, "%O %V %V %s", ctx->size, &obj.md5, &obj.sha256,
                    file);
    args[2].len = p - args[2].data;

    args[3].data = p;
    p = ngx_sprintf(p, "%T", ctx->conf->session_ttl);
    args[3].len = p - args[3].data;

    args[4].data = p;
    p = ngx_sprintf(p, "%T", ngx_time() + ctx->conf->session_ttl);
    args[4].len = p - args[4].data;

    if (ctx->shared) {
        args[5] = ctx->slot;

    } else {
        ngx_str_null(&args[5]);
    }

    ctx->redis_done = done;

    return ngx_http_upload_session_redis(r, ngx_http_upload_part_script,
                                         NGX_HTTP_UPLOAD_SESSION_KEYS, keys,
                                         6, args,
                                         ngx_http_upload_part_recorded, ctx);
}


static void
ngx_http_upload_part_recorded(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    u_char      *p, *last;
    ngx_str_t    dir, old;
    redisReply  *rec, *go;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY) {
        /* completed or aborted meanwhile: the part's file goes */
        ngx_http_finalize_request(r, ngx_http_upload_no_such_upload(r));
        return;
    }

    if (reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_INTEGER)
    {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    rec = reply->element[0];
    go = reply->element[1];

    if (go->integer == 1) {
        ngx_http_upload_running_start(ctx);
    }

    /* the part it replaces: "<size> <md5> <sha256> <file>" */

    last = (u_char *) rec->str + rec->len;
    p = last;

    while (p > (u_char *) rec->str && p[-1] != ' ') {
        p--;
    }

    if (p > (u_char *) rec->str && p < last) {
        old.len = last - p;
        old.data = p;

        dir = ctx->path;

        while (dir.data[dir.len - 1] != '/') {
            dir.len--;
        }

        /* the data file holds other parts: it goes with the session */

        if ((old.len != ctx->path.len - dir.len
             || ngx_strncmp(old.data, ctx->path.data + dir.len, old.len)
                != 0)
            && (old.len != sizeof(NGX_HTTP_UPLOAD_DATA_FILE) - 1
                || ngx_strncmp(old.data, NGX_HTTP_UPLOAD_DATA_FILE, old.len)
                   != 0))
        {
            p = ngx_pnalloc(r->pool, dir.len + old.len + 1);

            if (p != NULL) {
                ngx_sprintf(p, "%V%V%Z", &dir, &old);
                old.data = p;
                old.len = dir.len + old.len;

                (void) ngx_http_upload_store_remove(r, &old);
            }
        }
    }

    ctx->redis_done(ctx);
}


ngx_int_t
ngx_http_upload_session_begin(ngx_http_upload_ctx_t *ctx,
    void (*handler)(ngx_http_upload_ctx_t *ctx, ngx_int_t status))
{
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_str_t                    keys[NGX_HTTP_UPLOAD_SESSION_KEYS], args[4];
    ngx_http_request_t          *r;
    ngx_http_upload_session_t   *session;
    ngx_http_upload_complete_t  *cp;

    r = ctx->request;
    session = ctx->session;
    cp = ctx->complete;

    if (ngx_http_upload_session_keys(r, &session->app, &session->id, keys)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the lease's token: as unguessable as an upload id */

    if (cp->lease.len == 0
        && ngx_http_upload_session_new_id(r->pool, &cp->lease) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    args[0] = session->key;
    args[1] = cp->list_hash;
    args[2] = cp->lease;
    args[3].data = p;
    args[3].len = ngx_sprintf(p, "%M", ctx->conf->complete_lease) - p;

    cp->handler = handler;

    /* for the request's cleanup, which may not allocate */

    cp->keys = ngx_palloc(r->pool, sizeof(keys));
    if (cp->keys == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(cp->keys, keys, sizeof(keys));

    rc = ngx_http_upload_session_redis(r, ngx_http_upload_begin_script,
                                       NGX_HTTP_UPLOAD_SESSION_KEYS, keys,
                                       4, args,
                                       ngx_http_upload_session_begun, ctx);

    /* until the answer comes, the start may have taken the session */

    cp->asking = (rc == NGX_HTTP_UPLOAD_PENDING);

    return rc;
}


/*
 * NGX_OK: go, the session and its parts are loaded; NGX_DONE: the result
 * is remembered; NGX_BUSY: another complete runs; NGX_DECLINED: no such
 * upload; NGX_ERROR: Redis failed
 */

static void
ngx_http_upload_session_begun(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    ngx_str_t                    key;
    redisReply                  *tag;
    ngx_http_upload_session_t   *session;
    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;
    session = ctx->session;

    cp->asking = 0;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        cp->handler(ctx, NGX_ERROR);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        cp->handler(ctx, NGX_DECLINED);
        return;
    }

    tag = reply->element[0];

    if (tag->len == 4 && ngx_strncmp(tag->str, "busy", 4) == 0) {
        cp->handler(ctx, NGX_BUSY);
        return;
    }

    if (tag->len == 4 && ngx_strncmp(tag->str, "done", 4) == 0
        && reply->elements == 2)
    {
        if (ngx_http_upload_copy(r->pool, &cp->result, reply->element[1])
            != NGX_OK)
        {
            cp->handler(ctx, NGX_ERROR);
            return;
        }

        cp->handler(ctx, NGX_DONE);
        return;
    }

    if (reply->elements != 5
        || reply->element[3]->type != REDIS_REPLY_INTEGER
        || reply->element[4]->type != REDIS_REPLY_INTEGER)
    {
        cp->handler(ctx, NGX_ERROR);
        return;
    }

    cp->writing = (ngx_uint_t) reply->element[3]->integer;
    cp->taken_over = reply->element[4]->integer ? 1 : 0;

    key = session->key;

    cp->parts = ngx_array_create(r->pool, 16, sizeof(ngx_http_upload_part_t));

    if (cp->parts == NULL
        || ngx_http_upload_session_fields(r->pool, session,
                                          reply->element[1]) != NGX_OK
        || ngx_http_upload_session_parts(r->pool, cp->parts,
                                         reply->element[2]) != NGX_OK)
    {
        session->key = key;
        cp->handler(ctx, NGX_ERROR);
        return;
    }

    session->key = key;

    cp->handler(ctx, NGX_OK);
}


void
ngx_http_upload_session_reopen(ngx_http_upload_ctx_t *ctx)
{
    size_t                       argvlen[6];
    const char                  *argv[6];
    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;

    /*
     * The session's keys were made when the session was taken: this also
     * runs from the request's pool cleanup, when r->pool is gone already.
     */

    if (cp->closed || cp->keys == NULL) {
        return;
    }

    cp->closed = 1;

    ngx_http_upload_session_lease_args(cp, ngx_http_upload_reopen_script,
                                       sizeof(ngx_http_upload_reopen_script)
                                       - 1, argv, argvlen);

    /*
     * Not tied to the request, which may be on its way out (this also
     * runs from its cleanup); the answer does not wait for it, and a lost
     * one leaves the session taken until the lease lapses.
     */

    ngx_http_upload_session_detached(ctx, ngx_http_upload_reopen_lost,
                                     6, argv, argvlen);
}


/* EVAL <script> 2 <session> <lease> <token>: argv[0] to argv[5] */

static void
ngx_http_upload_session_lease_args(ngx_http_upload_complete_t *cp,
    const char *script, size_t len, const char **argv, size_t *argvlen)
{
    argv[0] = "EVAL";
    argvlen[0] = sizeof("EVAL") - 1;
    argv[1] = script;
    argvlen[1] = len;
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = (char *) cp->keys[0].data;
    argvlen[3] = cp->keys[0].len;
    argv[4] = (char *) cp->keys[7].data;
    argvlen[4] = cp->keys[7].len;
    argv[5] = (char *) cp->lease.data;
    argvlen[5] = cp->lease.len;
}


/*
 * Called once the object's file is in place (ngx_http_upload_store_published)
 * for a complete: not waited for, since the commands of one connection run
 * in order, and the session's close comes after.
 */

void
ngx_http_upload_session_stored(ngx_http_upload_ctx_t *ctx)
{
    size_t       argvlen[6];
    const char  *argv[6];

    ngx_http_upload_session_lease_args(ctx->complete,
                                       ngx_http_upload_stored_script,
                                       sizeof(ngx_http_upload_stored_script)
                                       - 1, argv, argvlen);

    ngx_http_upload_session_detached(ctx, ngx_http_upload_stored_lost,
                                     6, argv, argvlen);
}


/*
 * Every third of upload_complete_lease while a complete holds a session,
 * whatever the last answer was: Redis may be away for a while.
 */

void
ngx_http_upload_session_renew(ngx_event_t *ev)
{
    ngx_http_upload_ctx_t *ctx = ev->data;

    size_t                       argvlen[7];
    const char                  *argv[7];
    u_char                       ms[NGX_INT_T_LEN];
    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;

    if (cp->closed) {
        return;
    }

    ngx_http_upload_session_lease_args(cp, ngx_http_upload_renew_script,
                                       sizeof(ngx_http_upload_renew_script)
                                       - 1, argv, argvlen);
    argv[6] = (char *) ms;
    argvlen[6] = ngx_sprintf(ms, "%M", ctx->conf->complete_lease) - ms;

    /* hiredis has formatted the command when this returns */

    (void) ngx_http_upload_redis_command(ctx->request, ctx->conf->redis,
                                         ctx->conf->redis_timeout,
                                         ngx_http_upload_session_renewed,
                                         ctx, 7, argv, argvlen);

    ngx_add_timer(&cp->renew, ctx->conf->complete_lease / 3);
}


static void
ngx_http_upload_session_renewed(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER
        || reply->integer != 0)
    {
        return;
    }

    /* its record will be refused (ngx_http_upload_object_save) */

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "upload: the complete of upload \"%V\" lost its lease: "
                  "another complete took the session over",
                  &((ngx_http_upload_session_t *) ctx->session)->id);

    if (cp->renew.timer_set) {
        ngx_del_timer(&cp->renew);
    }
}


/*
 * The object is stored but the complete ended before the session was
 * closed (its client left during the post callback): the session goes,
 * without a remembered answer; a retried complete gets NoSuchUpload.  It
 * must not be reopened: its parts are the object now.
 */

void
ngx_http_upload_session_forget(ngx_http_upload_ctx_t *ctx)
{
    size_t                       argvlen[9];
    ngx_uint_t                   i;
    const char                  *argv[9];
    ngx_http_upload_complete_t  *cp;

    /*
     * the session, its parts, its claims, the running SHA-256's lease and
     * the complete's (not the app's set)
     */
    static const ngx_uint_t      gone[] = { 0, 1, 4, 5, 7 };

    cp = ctx->complete;

    if (cp->closed || cp->keys == NULL) {
        return;
    }

    cp->closed = 1;

    argv[0] = "EVAL";
    argvlen[0] = sizeof("EVAL") - 1;
    argv[1] = ngx_http_upload_forget_script;
    argvlen[1] = sizeof(ngx_http_upload_forget_script) - 1;
    argv[2] = "5";
    argvlen[2] = 1;

    for (i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        argv[3 + i] = (char *) cp->keys[gone[i]].data;
        argvlen[3 + i] = cp->keys[gone[i]].len;
    }

    argv[8] = (char *) cp->lease.data;
    argvlen[8] = cp->lease.len;

    ngx_http_upload_session_detached(ctx, ngx_http_upload_forget_lost,
                                     9, argv, argvlen);
}


/*
 * A command of no request (the request may be on its way out): sent again
 * while Redis is away; what is given up on is logged.
 */

static void
ngx_http_upload_session_detached(ngx_http_upload_ctx_t *ctx, u_char *lost,
    int argc, const char **argv, const size_t *argvlen)
{
    ngx_http_upload_redis_detached(ctx->conf->redis, ctx->conf->redis_timeout,
                                   lost, argc, argv, argvlen);
}


ngx_int_t
ngx_http_upload_session_finish(ngx_http_upload_ctx_t *ctx,
    void (*handler)(ngx_http_upload_ctx_t *ctx, ngx_int_t status))
{
    ngx_str_t                    keys[NGX_HTTP_UPLOAD_SESSION_KEYS], args[5];
    ngx_http_request_t          *r;
    ngx_http_upload_session_t   *session;
    ngx_http_upload_complete_t  *cp;

    r = ctx->request;
    session = ctx->session;
    cp = ctx->complete;

    if (ngx_http_upload_session_keys(r, &session->app, &session->id, keys)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    args[0] = cp->list_hash;
    args[1] = cp->result;
    args[2] = session->id;
    args[3] = session->key;
    args[4] = cp->lease;

    cp->handler = handler;

    return ngx_http_upload_session_redis(r, ngx_http_upload_finish_script,
                                         NGX_HTTP_UPLOAD_SESSION_KEYS, keys,
                                         5, args,
                                         ngx_http_upload_session_finished,
                                         ctx);
}


static void
ngx_http_upload_session_finished(ngx_http_request_t *r, void *data,
    redisReply *reply)
{
    ngx_http_upload_ctx_t *ctx = data;

    ngx_http_upload_complete_t  *cp;

    cp = ctx->complete;

    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        /* closed, or another complete's now: not this one's to touch */
        cp->closed = 1;
        cp->handler(ctx, reply->integer ? NGX_OK : NGX_DECLINED);
        return;
    }

    cp->handler(ctx, NGX_ERROR);
}
