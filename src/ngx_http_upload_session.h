
/*
 * Copyright (C) ngx_http_upload_module developers
 */


#ifndef _NGX_HTTP_UPLOAD_SESSION_H_INCLUDED_
#define _NGX_HTTP_UPLOAD_SESSION_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/sha.h>

#include "ngx_http_upload.h"


/* the parts written in place: one file in the session's directory */
#define NGX_HTTP_UPLOAD_DATA_FILE     "data"

/* the buffer of a thread that hashes a file */
#define NGX_HTTP_UPLOAD_HASH_CHUNK    (1024 * 1024)

/* how many Redis keys a session has: ngx_http_upload_session_key_names() */
#define NGX_HTTP_UPLOAD_SESSION_KEYS  8


/* 18 random bytes, base64url: 24 characters, 144 bits */
#define NGX_HTTP_UPLOAD_ID_BYTES      18
#define NGX_HTTP_UPLOAD_ID_LEN        24


/* a sliced upload as kept in Redis */
typedef struct {
    ngx_str_t                     id;
    ngx_str_t                     app;
    ngx_str_t                     key;
    off_t                         size;        /* -1: not declared */
    off_t                         part_size;   /* -1: not declared */
    ngx_str_t                     sha256;      /* hex, or empty */
    ngx_str_t                     name;
    ngx_str_t                     content_type;
    ngx_str_t                     metadata;    /* JSON text, or empty */
    ngx_str_t                     state;
    ngx_int_t                     hash_part;   /* parts in hash_state */
    ngx_str_t                     hash_state;  /* the running SHA-256 */
    time_t                        initiated;
    time_t                        expires;
    unsigned                      resumed:1;   /* found by its sha256 */
} ngx_http_upload_session_t;


typedef struct {
    ngx_uint_t                    number;
    off_t                         size;
    ngx_str_t                     md5;
    ngx_str_t                     sha256;
    ngx_str_t                     file;
} ngx_http_upload_part_t;


/* a part as the client lists it in a complete */
typedef struct {
    ngx_uint_t                    number;
    ngx_str_t                     etag;
} ngx_http_upload_listed_t;


/* the state of one complete request */
typedef struct {
    ngx_array_t                  *listed;
    ngx_array_t                  *parts;
    ngx_str_t                     list_hash;
    ngx_str_t                    *keys;        /* all of the session's */
    ngx_str_t                     result;
    ngx_str_t                     dir;
    ngx_array_t                  *files;
    off_t                         size;
    ngx_uint_t                    writing;     /* parts written in place */
    ngx_uint_t                    hashed;      /* parts in "sha" */
    off_t                         hashed_size;
    SHA256_CTX                    sha;         /* the object's, so far */
    ngx_event_t                   retry;
    ngx_uint_t                    retries;
    ngx_str_t                     lease;       /* the token of its lease */
    ngx_event_t                   renew;       /* of the lease */
    ngx_int_t                     rc;
    ngx_uint_t                    status;      /* of the answer, 0: 200 */
    unsigned                      began:1;
    unsigned                      asking:1;    /* a start awaits its answer */
    unsigned                      closed:1;
    unsigned                      in_place:1;
    unsigned                      bad_digest:1;
    unsigned                      taken_over:1;
    void                        (*handler)(ngx_http_upload_ctx_t *ctx,
                                      ngx_int_t status);
} ngx_http_upload_complete_t;


typedef void (*ngx_http_upload_session_handler_pt)(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, ngx_array_t *parts,
    ngx_int_t status);


ngx_int_t ngx_http_upload_copy(ngx_pool_t *pool, ngx_str_t *dst,
    redisReply *src);
ngx_int_t ngx_http_upload_session_new_id(ngx_pool_t *pool, ngx_str_t *id);
ngx_int_t ngx_http_upload_session_valid_id(ngx_str_t *id);

ngx_int_t ngx_http_upload_session_create(ngx_http_request_t *r,
    ngx_http_upload_session_t *session,
    ngx_http_upload_session_handler_pt handler);
ngx_int_t ngx_http_upload_session_load(ngx_http_request_t *r,
    ngx_http_upload_session_t *session,
    ngx_http_upload_session_handler_pt handler);
ngx_int_t ngx_http_upload_session_abort(ngx_http_request_t *r,
    ngx_http_upload_session_t *session,
    ngx_http_upload_session_handler_pt handler);
ngx_int_t ngx_http_upload_session_find(ngx_http_request_t *r,
    ngx_http_upload_session_t *session,
    ngx_http_upload_session_handler_pt handler);
ngx_int_t ngx_http_upload_session_list(ngx_http_request_t *r,
    ngx_str_t *app, ngx_str_t *prefix,
    ngx_http_upload_session_handler_pt handler);

ngx_int_t ngx_http_upload_session_key_names(ngx_pool_t *pool,
    ngx_str_t *app, ngx_str_t *id, ngx_str_t *keys);
ngx_int_t ngx_http_upload_session_dir(ngx_http_request_t *r,
    ngx_str_t *app, ngx_str_t *id, ngx_str_t *dir);
ngx_int_t ngx_http_upload_session_dir_pool(ngx_pool_t *pool,
    ngx_http_upload_loc_conf_t *ulcf, ngx_str_t *app, ngx_str_t *id,
    ngx_str_t *dir);

ngx_int_t ngx_http_upload_session_check(ngx_http_upload_ctx_t *ctx,
    void (*open)(ngx_http_upload_ctx_t *ctx));
ngx_int_t ngx_http_upload_part_record(ngx_http_upload_ctx_t *ctx,
    void (*done)(ngx_http_upload_ctx_t *ctx));

ngx_int_t ngx_http_upload_session_begin(ngx_http_upload_ctx_t *ctx,
    void (*handler)(ngx_http_upload_ctx_t *ctx, ngx_int_t status));
void ngx_http_upload_session_reopen(ngx_http_upload_ctx_t *ctx);
void ngx_http_upload_session_renew(ngx_event_t *ev);
void ngx_http_upload_session_stored(ngx_http_upload_ctx_t *ctx);
void ngx_http_upload_session_forget(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_session_finish(ngx_http_upload_ctx_t *ctx,
    void (*handler)(ngx_http_upload_ctx_t *ctx, ngx_int_t status));

ngx_int_t ngx_http_upload_complete(ngx_http_request_t *r,
    ngx_http_upload_session_t *session);

void ngx_http_upload_running_start(ngx_http_upload_ctx_t *ctx);
ngx_int_t ngx_http_upload_running_update(SHA256_CTX *sha, ngx_fd_t fd,
    off_t offset, off_t size, u_char *buf);
ngx_int_t ngx_http_upload_running_load(SHA256_CTX *sha, ngx_str_t *state);
ngx_int_t ngx_http_upload_running_save(ngx_pool_t *pool, SHA256_CTX *sha,
    ngx_str_t *state);


#endif /* _NGX_HTTP_UPLOAD_SESSION_H_INCLUDED_ */
