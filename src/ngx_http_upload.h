
/*
 * Copyright (C) ngx_http_upload_module developers
 */


#ifndef _NGX_HTTP_UPLOAD_H_INCLUDED_
#define _NGX_HTTP_UPLOAD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

/*
 * A sliced upload's running SHA-256 keeps OpenSSL's SHA256_CTX, which
 * OpenSSL 3 deprecates (EVP contexts cannot be saved); nginx's own SSL
 * code silences the same warnings.
 */
#ifndef OPENSSL_SUPPRESS_DEPRECATED
#define OPENSSL_SUPPRESS_DEPRECATED
#endif

#include <openssl/evp.h>

#include "ngx_http_upload_redis.h"


#define NGX_HTTP_UPLOAD_MD5           0x01
#define NGX_HTTP_UPLOAD_SHA1          0x02
#define NGX_HTTP_UPLOAD_SHA256        0x04

#define NGX_HTTP_UPLOAD_MD5_LEN       16
#define NGX_HTTP_UPLOAD_SHA1_LEN      20
#define NGX_HTTP_UPLOAD_SHA256_LEN    32

#define NGX_HTTP_UPLOAD_KEY_MAX       1024
#define NGX_HTTP_UPLOAD_APP_MAX       64
#define NGX_HTTP_UPLOAD_SEGMENT_MAX   255
#define NGX_HTTP_UPLOAD_DEFAULT_APP   "default"
#define NGX_HTTP_UPLOAD_TEMP_DIR      ".upload-tmp"

#define NGX_HTTP_INSUFFICIENT_STORAGE 507

/* upload_dedup */
#define NGX_HTTP_UPLOAD_DEDUP_OFF     0
#define NGX_HTTP_UPLOAD_DEDUP_APP     1
#define NGX_HTTP_UPLOAD_DEDUP_GLOBAL  2

/* a handler's answer: the request goes on in a callback of the module */
#define NGX_HTTP_UPLOAD_PENDING       -100


typedef struct ngx_http_upload_sweep_s  ngx_http_upload_sweep_t;


typedef struct {
    ngx_array_t                   sweeps;   /* ngx_http_upload_sweep_t * */
} ngx_http_upload_main_conf_t;


typedef struct {
    ngx_flag_t                    enable;
    ngx_str_t                     store;
    ngx_http_upload_redis_t      *redis;
    ngx_msec_t                    redis_timeout;
    off_t                         max_size;
    off_t                         min_part_size;
    off_t                         max_part_size;
    ngx_uint_t                    max_parts;
    time_t                        session_ttl;
    ngx_msec_t                    sweep_interval;
    ngx_msec_t                    complete_lease;
    ngx_flag_t                    fsync;
    ngx_uint_t                    hashes;
    ngx_uint_t                    dedup;
    ngx_flag_t                    register_api;
    ngx_flag_t                    app_required;
    ngx_str_t                     callback_uri;
    ngx_array_t                  *callback_allow;   /* ngx_str_t prefixes */
    ngx_uint_t                    callback_pre_failure_allow;
    ngx_uint_t                    callback_prefer_header;
    ngx_array_t                  *link_secrets;     /* ngx_str_t */
    ngx_flag_t                    link_enable;
    ngx_flag_t                    link_required;
    ngx_str_t                     link_url;
    ngx_str_t                     link_upload_url;
    ngx_str_t                     url_prefix;
#if (NGX_THREADS)
    ngx_thread_pool_t            *thread_pool;
    ngx_str_t                     thread_pool_name;
#endif
} ngx_http_upload_loc_conf_t;


typedef struct {
    ngx_uint_t                    type;
    const char                   *name;
    size_t                        len;
} ngx_http_upload_hash_t;


/* an object's record, as kept in Redis and answered to clients */
typedef struct {
    ngx_str_t                     app;
    ngx_str_t                     key;
    off_t                         size;
    ngx_str_t                     md5;
    ngx_str_t                     sha1;
    ngx_str_t                     sha256;
    ngx_str_t                     etag;     /* a sliced upload's "<md5>-<n>" */
    time_t                        time;
    unsigned                      exists:1; /* answered without a body */
    unsigned                      dedup:1;  /* a link to stored content */
    void                         *ctx;      /* the upload it answers */
} ngx_http_upload_object_t;


/* an app's registration, as kept in Redis ("upload:{<appid>}:app") */
typedef struct {
    ngx_str_t                     appid;
    ngx_str_t                     pre;      /* callback URLs, or empty */
    ngx_str_t                     post;
    ngx_str_t                     secret;   /* signs callbacks, or empty */
    time_t                        updated;
    unsigned                      found:1;
} ngx_http_upload_app_t;


/* an upload link's claims, verified */
typedef struct {
    ngx_str_t                     app;
    ngx_str_t                     prefix;
    ngx_str_t                     nonce;
    time_t                        exp;
    off_t                         max_size;   /* 0: any */
    ngx_uint_t                    max_files;
    ngx_str_t                     token;
    ngx_str_t                     key;        /* its count in Redis */
} ngx_http_upload_link_t;


typedef struct ngx_http_upload_region_s  ngx_http_upload_region_t;
typedef struct ngx_http_upload_ctx_s     ngx_http_upload_ctx_t;


/* a piece of the request body, still owned by nginx until released */
struct ngx_http_upload_region_s {
    ngx_buf_t                    *buf;
    u_char                       *pos;
    size_t                        size;
    ngx_uint_t                    pending;
    ngx_http_upload_region_t     *next;
};


/*
 * A lane consumes every region in order: the file writer and one lane per
 * digest.  Lanes run concurrently in the thread pool, so writing and
 * hashing overlap; a region is given back to nginx once all lanes are done.
 */
typedef struct {
    ngx_http_upload_ctx_t        *ctx;
    ngx_http_upload_region_t     *next;
    ngx_http_upload_region_t     *first;
    ngx_uint_t                    count;
    ngx_uint_t                    busy;
    ngx_err_t                     err;
    EVP_MD_CTX                   *md;
    ngx_uint_t                    hash;
    off_t                         offset;
    off_t                         synced;
#if (NGX_THREADS)
    ngx_thread_task_t            *task;
#endif
} ngx_http_upload_lane_t;


#define NGX_HTTP_UPLOAD_LANES_MAX     4
#define NGX_HTTP_UPLOAD_BLOCKS        2


struct ngx_http_upload_ctx_s {
    ngx_http_request_t           *request;
    ngx_http_upload_loc_conf_t   *conf;

    ngx_str_t                     key;
    ngx_str_t                     app;
    ngx_str_t                     path;
    ngx_str_t                     temp;
    ngx_fd_t                      fd;
    off_t                         offset;    /* where the body goes in fd */
    off_t                         size;
    ino_t                         ino;       /* of the stored file */
    void                         *dedup;

    /* the upload's app and its callbacks */
    ngx_http_upload_app_t        *app_reg;
    void                        (*app_next)(ngx_http_upload_ctx_t *ctx);
    void                         *callback;
    ngx_str_t                     callback_post;
    ngx_http_upload_link_t       *link;      /* the upload's, or NULL */

    ngx_uint_t                    hashes;
    ngx_str_t                     etag;
    off_t                         limit;     /* the body's size limit, or 0 */
    ngx_uint_t                    limit_status;
    const char                   *limit_message;
    ngx_str_t                     expect_md5;
    ngx_str_t                     expect_sha256;
    u_char                        md5[NGX_HTTP_UPLOAD_MD5_LEN];
    u_char                        sha1[NGX_HTTP_UPLOAD_SHA1_LEN];
    u_char                        sha256[NGX_HTTP_UPLOAD_SHA256_LEN];

    ngx_http_upload_lane_t        lanes[NGX_HTTP_UPLOAD_LANES_MAX];
    ngx_uint_t                    nlanes;
    ngx_http_upload_region_t     *queue;
    ngx_http_upload_region_t     *tail;
    ngx_http_upload_region_t     *free;

    /* nginx's body buffer and its spare, swapped when full (double buffer) */
    u_char                       *blocks[NGX_HTTP_UPLOAD_BLOCKS];
    ngx_uint_t                    nblocks;
    size_t                        block_size;

    ngx_uint_t                    status;
    const char                   *error_code;
    const char                   *error_message;
    ngx_err_t                     error_errno;

    /* a small JSON body is collected in memory instead of stored */
    ngx_buf_t                    *json;
    void                        (*body_done)(ngx_http_upload_ctx_t *ctx);

    unsigned                      streaming:1;
    unsigned                      collect:1;
    unsigned                      last_seen:1;
    unsigned                      last_passed:1;
    unsigned                      failed:1;
    unsigned                      committed:1;
    unsigned                      shared:1;  /* the file is not ours */
    unsigned                      index:1;   /* an object: index it */
    unsigned                      exists:1;  /* the content was there */
    unsigned                      deduped:1; /* linked to stored content */
    unsigned                      link_kept:1; /* the link's count stays */
    unsigned                      link_counted:1;

    void                        (*redis_done)(ngx_http_upload_ctx_t *ctx);

    /* what a commit records (Redis) and answers: an object or a part */
    ngx_int_t                   (*record)(ngx_http_upload_ctx_t *ctx,
                                    void (*done)(ngx_http_upload_ctx_t *ctx));
    ngx_int_t                   (*reply)(ngx_http_upload_ctx_t *ctx);
    void                         *session;
    void                         *complete;
    ngx_uint_t                    part_number;
    ngx_str_t                     slot;      /* a part's claim token */
    ngx_str_t                     slot_key;  /* the claims' Redis key */
    /* a complete's record needs its token to hold the session */
    ngx_str_t                     fence;     /* the token */
    ngx_str_t                     fence_key; /* the lease */
    ngx_str_t                     fence_session;

    /* the commit steps after the body: fsync, record, rename */
    void                        (*step_work)(ngx_http_upload_ctx_t *ctx);
    void                        (*step_done)(ngx_http_upload_ctx_t *ctx);
    ngx_err_t                     step_err;
    const char                   *step_op;
#if (NGX_THREADS)
    ngx_thread_task_t            *step_task;
#endif
};


extern ngx_module_t  ngx_http_upload_module;


/* ngx_http_upload_handler.c */
ngx_int_t ngx_http_upload_handler(ngx_http_request_t *r);

/* ngx_http_upload_key.c */
ngx_int_t ngx_http_upload_parse_key(ngx_http_request_t *r, ngx_str_t *key,
    const char **reason);
ngx_int_t ngx_http_upload_parse_app(ngx_http_request_t *r, ngx_str_t *app,
    const char **reason);
ngx_table_elt_t *ngx_http_upload_find_header(ngx_http_request_t *r,
    const char *name);
ngx_int_t ngx_http_upload_arg_present(ngx_http_request_t *r,
    const char *name);
ngx_int_t ngx_http_upload_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_http_upload_validate_key(ngx_str_t *key, const char **reason);
ngx_int_t ngx_http_upload_validate_app(ngx_str_t *app, const char **reason);
u_char *ngx_http_upload_escape_key(ngx_pool_t *pool, ngx_str_t *key,
    size_t *len);

/* ngx_http_upload_digest.c */
extern ngx_http_upload_hash_t  ngx_http_upload_hashes[];
const EVP_MD *ngx_http_upload_digest_md(ngx_uint_t hash);
u_char *ngx_http_upload_digest_out(ngx_http_upload_ctx_t *ctx,
    ngx_uint_t hash);
ngx_int_t ngx_http_upload_digest_init(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_digest_final(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_parse_content_md5(ngx_pool_t *pool,
    ngx_str_t *value, ngx_str_t *md5);
ngx_int_t ngx_http_upload_parse_sha256(ngx_pool_t *pool, ngx_str_t *value,
    ngx_str_t *sha256);
ngx_int_t ngx_http_upload_digest_verify(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_hex_decode(u_char *dst, u_char *src, size_t len);
ngx_int_t ngx_http_upload_digest_hex(ngx_pool_t *pool,
    ngx_http_upload_ctx_t *ctx, ngx_http_upload_object_t *obj);

/* ngx_http_upload_body.c */
ngx_int_t ngx_http_upload_body_init(ngx_conf_t *cf);
ngx_int_t ngx_http_upload_body_start(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_body_collect(ngx_http_upload_ctx_t *ctx,
    size_t max, void (*done)(ngx_http_upload_ctx_t *ctx));
void ngx_http_upload_body_fail(ngx_http_upload_ctx_t *ctx, ngx_uint_t status,
    const char *code, const char *message, ngx_err_t err);

/* ngx_http_upload_store.c */
ngx_int_t ngx_http_upload_store_temp_name(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_store_cleanup_add(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_store_open_temp(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_store_mkdirs(u_char *path, size_t from);
void ngx_http_upload_store_prepare(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_store_commit(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_store_remove(ngx_http_request_t *r,
    ngx_str_t *path);
ngx_int_t ngx_http_upload_store_path(ngx_http_request_t *r,
    ngx_http_upload_loc_conf_t *ulcf, ngx_str_t *app, ngx_str_t *key,
    ngx_str_t *path);
ssize_t ngx_http_upload_store_write(ngx_fd_t fd, u_char *buf, size_t size,
    off_t offset, ngx_err_t *err);
void ngx_http_upload_store_writeback(ngx_http_upload_lane_t *lane);
ngx_int_t ngx_http_upload_store_step(ngx_http_upload_ctx_t *ctx,
    void (*work)(ngx_http_upload_ctx_t *ctx),
    void (*done)(ngx_http_upload_ctx_t *ctx));
void ngx_http_upload_store_sync(ngx_http_upload_ctx_t *ctx);
void ngx_http_upload_store_publish(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_store_fail(ngx_http_upload_ctx_t *ctx);
void ngx_http_upload_store_remove_dir(ngx_http_upload_ctx_t *ctx);
void ngx_http_upload_store_remove_tree(u_char *dir);

/* ngx_http_upload_reply.c */
void ngx_http_upload_refuse_body(ngx_http_request_t *r);
ngx_int_t ngx_http_upload_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);
ngx_int_t ngx_http_upload_send_json(ngx_http_request_t *r,
    ngx_uint_t status, void *json);
ngx_int_t ngx_http_upload_json_text(ngx_pool_t *pool, void *json,
    ngx_str_t *text);
ngx_int_t ngx_http_upload_send_text(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *text);
ngx_int_t ngx_http_upload_send_typed(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, ngx_str_t *text);
ngx_int_t ngx_http_upload_reply_stored(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_object_url(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key, ngx_str_t *url);
ngx_int_t ngx_http_upload_add_string(void *json, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_http_upload_set_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
ngx_int_t ngx_http_upload_reply_object(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_upload_object_t *obj);
void ngx_http_upload_finalize(ngx_http_request_t *r, ngx_int_t rc);

/* ngx_http_upload_object.c */
ngx_int_t ngx_http_upload_object_save(ngx_http_upload_ctx_t *ctx,
    void (*saved)(ngx_http_upload_ctx_t *ctx));
ngx_int_t ngx_http_upload_object_meta(ngx_http_request_t *r,
    ngx_str_t *app, ngx_str_t *key);
ngx_int_t ngx_http_upload_object_delete(ngx_http_request_t *r,
    ngx_str_t *app, ngx_str_t *key);
ngx_int_t ngx_http_upload_object_check_redis(ngx_http_upload_ctx_t *ctx,
    void (*ready)(ngx_http_upload_ctx_t *ctx));
ngx_int_t ngx_http_upload_redis_unavailable(ngx_http_request_t *r);

/* ngx_http_upload_multipart.c */
ngx_int_t ngx_http_upload_multipart_handler(ngx_http_request_t *r,
    ngx_str_t *app, ngx_str_t *key);
ngx_int_t ngx_http_upload_multipart_list(ngx_http_request_t *r,
    ngx_str_t *app);
ngx_int_t ngx_http_upload_no_such_upload(ngx_http_request_t *r);
ngx_int_t ngx_http_upload_request_ctx(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key, ngx_http_upload_ctx_t **ctxp);

/* ngx_http_upload_dedup.c */
ngx_int_t ngx_http_upload_dedup_check_only(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_dedup_lookup(ngx_http_upload_ctx_t *ctx,
    ngx_str_t *sha256, off_t size, void (*hit)(ngx_http_upload_ctx_t *ctx),
    void (*miss)(ngx_http_upload_ctx_t *ctx));
void ngx_http_upload_dedup_published(ngx_http_upload_ctx_t *ctx);

/* ngx_http_upload_app.c */
ngx_int_t ngx_http_upload_app_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_upload_app_lookup(ngx_http_upload_ctx_t *ctx,
    void (*next)(ngx_http_upload_ctx_t *ctx));
ngx_int_t ngx_http_upload_callback_url_valid(ngx_str_t *url);

/* ngx_http_upload_callback.c */
ngx_int_t ngx_http_upload_callback_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_upload_callback_filter_init(ngx_conf_t *cf);
void ngx_http_upload_callback_pre(ngx_http_upload_ctx_t *ctx,
    void (*next)(ngx_http_upload_ctx_t *ctx));
void ngx_http_upload_callback_post_only(ngx_http_upload_ctx_t *ctx,
    void (*next)(ngx_http_upload_ctx_t *ctx));
ngx_int_t ngx_http_upload_callback_post(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_callback_result(ngx_http_upload_ctx_t *ctx,
    void *json);

/* ngx_http_upload_link.c */
ngx_int_t ngx_http_upload_link_verify(ngx_pool_t *pool, ngx_array_t *secrets,
    ngx_str_t *token, ngx_http_upload_link_t *link, const char **why);
ngx_int_t ngx_http_upload_link_sign(ngx_pool_t *pool, ngx_str_t *secret,
    ngx_http_upload_link_t *link);
ngx_int_t ngx_http_upload_link_token_given(ngx_http_request_t *r);
ngx_int_t ngx_http_upload_link_confine(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key, ngx_http_upload_link_t **linkp, const char **message);
ngx_int_t ngx_http_upload_link_count(ngx_http_upload_ctx_t *ctx,
    void (*next)(ngx_http_upload_ctx_t *ctx));
ngx_int_t ngx_http_upload_link_json(ngx_http_upload_link_t *link,
    void *json);
ngx_int_t ngx_http_upload_link_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_upload_link_csp(ngx_http_request_t *r, ngx_str_t *nonce);
ngx_int_t ngx_http_upload_link_mint(ngx_http_request_t *r);

/* ngx_http_upload_sweep.c */
ngx_int_t ngx_http_upload_sweep_add(ngx_conf_t *cf,
    ngx_http_upload_loc_conf_t *ulcf);
ngx_int_t ngx_http_upload_sweep_init_process(ngx_cycle_t *cycle);

/* ngx_http_upload_handler.c */
ngx_int_t ngx_http_upload_body_error(ngx_http_request_t *r, ngx_int_t rc);
ngx_int_t ngx_http_upload_put_digests(ngx_http_upload_ctx_t *ctx,
    const char **reason);
void ngx_http_upload_put_ready(ngx_http_upload_ctx_t *ctx);


#endif /* _NGX_HTTP_UPLOAD_H_INCLUDED_ */
