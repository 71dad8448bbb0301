
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * Sliced uploads, S3's multipart protocol with JSON bodies:
 *
 *     POST   <key>?uploads                 initiate
 *     GET    <key>?uploadId=<id>           list parts (resume)
 *     DELETE <key>?uploadId=<id>           abort
 *     GET    <location>?uploads[&prefix=]  list the app's sessions
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>
#include <openssl/rand.h>

#include "ngx_http_upload_session.h"


#define NGX_HTTP_UPLOAD_INITIATE_MAX  (64 * 1024)
#define NGX_HTTP_UPLOAD_META_MAX      (8 * 1024)
#define NGX_HTTP_UPLOAD_TEXT_MAX      1024
#define NGX_HTTP_UPLOAD_PAGE_MAX      1000


static ngx_int_t ngx_http_upload_multipart_id(ngx_http_request_t *r,
    ngx_str_t *app, ngx_str_t *key, ngx_http_upload_session_t **sp);
static void ngx_http_upload_initiate_body(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_initiate_approve(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_initiate_go(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_initiate_new(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_initiate_exists(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_initiate_resume(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_resumed(ngx_http_request_t *r,
    ngx_http_upload_session_t *found, ngx_array_t *parts, ngx_int_t status);
static ngx_int_t ngx_http_upload_initiate_parse(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, u_char *json, size_t len,
    const char **code, const char **message);
static ngx_int_t ngx_http_upload_json_size(cJSON *item, off_t *size);
static ngx_int_t ngx_http_upload_json_string(ngx_pool_t *pool, cJSON *item,
    ngx_str_t *text);
static void ngx_http_upload_initiated(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, ngx_array_t *parts,
    ngx_int_t status);
static void ngx_http_upload_parts_listed(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, ngx_array_t *parts,
    ngx_int_t status);
static void ngx_http_upload_aborted(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, ngx_array_t *parts,
    ngx_int_t status);
static void ngx_http_upload_aborted_done(ngx_http_upload_ctx_t *ctx);
static void ngx_http_upload_sessions_listed(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, ngx_array_t *list,
    ngx_int_t status);
static ngx_int_t ngx_http_upload_session_status(ngx_http_request_t *r,
    ngx_int_t status);
static cJSON *ngx_http_upload_session_json(ngx_http_request_t *r,
    ngx_http_upload_session_t *session);
static ngx_int_t ngx_http_upload_pending_rc(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_int_t ngx_http_upload_part_put(ngx_http_request_t *r,
    ngx_http_upload_session_t *session);
static ngx_int_t ngx_http_upload_part_number(ngx_http_request_t *r,
    ngx_uint_t *number, const char **reason);
static ngx_int_t ngx_http_upload_reply_part(ngx_http_upload_ctx_t *ctx);


ngx_int_t
ngx_http_upload_multipart_handler(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key)
{
    ngx_int_t                   rc;
    ngx_http_upload_ctx_t      *ctx;
    ngx_http_upload_session_t  *session;

    if (ngx_http_upload_arg_present(r, "uploads")) {

        if (r->method != NGX_HTTP_POST) {
            return ngx_http_upload_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                              "MethodNotAllowed",
                                              "initiate a sliced upload "
                                              "with POST <key>?uploads");
        }

        rc = ngx_http_upload_request_ctx(r, app, key, &ctx);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_upload_body_collect(ctx, NGX_HTTP_UPLOAD_INITIATE_MAX,
                                          ngx_http_upload_initiate_body);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return ngx_http_upload_body_error(r, rc);
        }

        /* the body reader holds the request now */
        return NGX_DONE;
    }

    session = NULL;

    rc = ngx_http_upload_multipart_id(r, app, key, &session);
    if (session == NULL) {
        /* an answer: the id was refused */
        return rc;
    }

    switch (r->method) {

    case NGX_HTTP_PUT:
        return ngx_http_upload_part_put(r, session);

    case NGX_HTTP_POST:
        return ngx_http_upload_complete(r, session);

    case NGX_HTTP_GET:
        rc = ngx_http_upload_session_load(r, session,
                                          ngx_http_upload_parts_listed);
        break;

    case NGX_HTTP_DELETE:
        rc = ngx_http_upload_request_ctx(r, app, key, &ctx);
        if (rc != NGX_OK) {
            return rc;
        }

        ctx->session = session;

        rc = ngx_http_upload_session_abort(r, session,
                                           ngx_http_upload_aborted);
        break;

    default:
        return ngx_http_upload_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "MethodNotAllowed",
                                          "use PUT with partNumber to "
                                          "upload a part, GET to list the "
                                          "parts, POST to complete, DELETE "
                                          "to abort");
    }

    return ngx_http_upload_session_status(r, rc);
}


/* GET <location>?uploads: no key, the app's sessions */

ngx_int_t
ngx_http_upload_multipart_list(ngx_http_request_t *r, ngx_str_t *app)
{
    u_char     *dst, *src;
    ngx_int_t   rc;
    ngx_str_t   prefix, raw;

    ngx_str_null(&prefix);

    rc = ngx_http_upload_arg(r, "prefix", &raw);

    if (rc == NGX_BUSY) {
        return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "InvalidArgument",
                                          "\"prefix\" is given twice");
    }

    if (rc == NGX_OK) {
        prefix.data = ngx_pnalloc(r->pool, raw.len);
        if (prefix.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        dst = prefix.data;
        src = raw.data;
        ngx_unescape_uri(&dst, &src, raw.len, 0);
        prefix.len = dst - prefix.data;
    }

    rc = ngx_http_upload_session_list(r, app, &prefix,
                                      ngx_http_upload_sessions_listed);

    return ngx_http_upload_session_status(r, rc);
}


ngx_int_t
ngx_http_upload_request_ctx(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key, ngx_http_upload_ctx_t **ctxp)
{
    ngx_http_upload_ctx_t  *ctx;

    /* made already when the request carries an upload link */

    ctx = ngx_http_get_module_ctx(r, ngx_http_upload_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->request = r;
    ctx->conf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);
    ctx->app = *app;
    ctx->key = *key;
    ctx->fd = NGX_INVALID_FILE;

    ngx_http_set_ctx(r, ctx, ngx_http_upload_module);

    *ctxp = ctx;

    return NGX_OK;
}


/* the session an "uploadId" names; "*sp" stays NULL when refused */

static ngx_int_t
ngx_http_upload_multipart_id(ngx_http_request_t *r, ngx_str_t *app,
    ngx_str_t *key, ngx_http_upload_session_t **sp)
{
    ngx_int_t                   rc;
    ngx_http_upload_session_t  *session;

    session = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_session_t));
    if (session == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_upload_arg(r, "uploadId", &session->id);

    if (rc == NGX_BUSY) {
        return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "InvalidArgument",
                                          "\"uploadId\" is given twice");
    }

    if (rc != NGX_OK || ngx_http_upload_session_valid_id(&session->id)
                        != NGX_OK)
    {
        return ngx_http_upload_send_error(r, NGX_HTTP_NOT_FOUND,
                                          "NoSuchUpload",
                                          "no sliced upload has this id");
    }

    session->app = *app;
    session->key = *key;

    *sp = session;

    return NGX_OK;
}


static void
ngx_http_upload_initiate_body(ngx_http_upload_ctx_t *ctx)
{
    const char                  *code, *message;
    ngx_http_request_t          *r;
    ngx_http_upload_session_t   *session;

    r = ctx->request;

    session = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_session_t));
    if (session == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    session->app = ctx->app;
    session->key = ctx->key;
    session->size = -1;
    session->part_size = -1;

    if (ngx_http_upload_initiate_parse(r, session, ctx->json->pos,
                                       ctx->json->last - ctx->json->pos,
                                       &code, &message)
        != NGX_OK)
    {
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_BAD_REQUEST, code,
                                         message));
        return;
    }

    ctx->session = session;

    if (ctx->link && ctx->link->max_size
        && (session->size < 0 || session->size > ctx->link->max_size))
    {
        ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                         NGX_HTTP_FORBIDDEN, "AccessDenied",
                                         "an upload link needs the file's "
                                         "\"size\", within its max_size"));
        return;
    }

    if (ngx_http_upload_session_new_id(r->pool, &session->id) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* the app, its approval, then the content index or a session */

    ngx_http_upload_finalize(r, ngx_http_upload_pending_rc(r,
                                    ngx_http_upload_app_lookup(ctx,
                                        ngx_http_upload_initiate_approve)));
}


static void
ngx_http_upload_initiate_approve(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_upload_callback_pre(ctx, ngx_http_upload_initiate_go);
}


static void
ngx_http_upload_initiate_go(ngx_http_upload_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_http_request_t         *r;
    ngx_http_upload_session_t  *session;

    r = ctx->request;
    session = ctx->session;

    if (ctx->link && !ctx->link_counted) {
        /* one file more under the link, then here again */
        ctx->link_counted = 1;
        ngx_http_upload_finalize(r, ngx_http_upload_pending_rc(r,
                                        ngx_http_upload_link_count(ctx,
                                            ngx_http_upload_initiate_go)));
        return;
    }

    if (ctx->conf->dedup && session->sha256.len) {
        /* the file marker: stored already, or an upload to resume? */

        if (ngx_http_upload_store_path(r, ctx->conf, &ctx->app, &ctx->key,
                                       &ctx->path)
            != NGX_OK)
        {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        rc = ngx_http_upload_dedup_lookup(ctx, &session->sha256,
                                          session->size,
                                          ngx_http_upload_initiate_exists,
                                          ngx_http_upload_initiate_resume);

        ngx_http_upload_finalize(r, ngx_http_upload_pending_rc(r, rc));
        return;
    }

    ngx_http_upload_initiate_new(ctx);
}


static void
ngx_http_upload_initiate_new(ngx_http_upload_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_http_request_t         *r;
    ngx_http_upload_session_t  *session;

    r = ctx->request;
    session = ctx->session;

    rc = ngx_http_upload_session_create(r, session,
                                        ngx_http_upload_initiated);

    ngx_http_upload_finalize(r, ngx_http_upload_pending_rc(r, rc));
}


/* the content is stored: the key gets it, no session is made */

static void
ngx_http_upload_initiate_exists(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_request_t         *r;
    ngx_http_upload_session_t  *session;

    r = ctx->request;
    session = ctx->session;

    if (ngx_http_upload_hex_decode(ctx->sha256, session->sha256.data,
                                   NGX_HTTP_UPLOAD_SHA256_LEN)
        != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->hashes = NGX_HTTP_UPLOAD_SHA256;
    ctx->index = 1;
    ctx->record = ngx_http_upload_object_save;
    ctx->reply = ngx_http_upload_reply_stored;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "upload: \"%V/%V\" exists already (content index), no "
                  "sliced upload needed", &ctx->app, &ctx->key);

    ngx_http_upload_finalize(r, ctx->record(ctx,
                                    ngx_http_upload_store_publish));
}


/* not stored: an unfinished session for the same file and key goes on */

static void
ngx_http_upload_initiate_resume(ngx_http_upload_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_http_request_t         *r;
    ngx_http_upload_session_t  *session, *found;

    r = ctx->request;
    session = ctx->session;

    found = ngx_pcalloc(r->pool, sizeof(ngx_http_upload_session_t));
    if (found == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    found->app = session->app;
    found->key = session->key;
    found->sha256 = session->sha256;

    rc = ngx_http_upload_session_find(r, found, ngx_http_upload_resumed);

    ngx_http_upload_finalize(r, ngx_http_upload_pending_rc(r, rc));
}


static void
ngx_http_upload_resumed(ngx_http_request_t *r,
    ngx_http_upload_session_t *found, ngx_array_t *parts, ngx_int_t status)
{
    ngx_str_t               sha256;
    ngx_http_upload_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_upload_module);

    if (status == NGX_ERROR) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    sha256 = ((ngx_http_upload_session_t *) ctx->session)->sha256;

    if (status != NGX_OK
        || found->state.len != sizeof("open") - 1
        || ngx_strncmp(found->state.data, "open", found->state.len) != 0
        || found->sha256.len != sha256.len
        || ngx_strncmp(found->sha256.data, sha256.data, sha256.len) != 0)
    {
        /* none, or one that is completing or changed: a new one */
        ngx_http_upload_initiate_new(ctx);
        return;
    }

    found->resumed = 1;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "upload: sliced upload %V of \"%V/%V\" resumed, %ui parts "
                  "there", &found->id, &found->app, &found->key,
                  parts->nelts);

    ngx_http_upload_parts_listed(r, found, parts, NGX_OK);
}


/*
 * {"size": N, "name": "...", "content_type": "...", "sha256": "<hex>",
 *  "part_size": N, "metadata": {...}}, every member optional; an empty
 * body is an empty object
 */

static ngx_int_t
ngx_http_upload_initiate_parse(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, u_char *json, size_t len,
    const char **code, const char **message)
{
    char                        *text;
    cJSON                       *root, *item;
    ngx_str_t                    sha256, raw;
    ngx_int_t                    rc;
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    *code = "InvalidArgument";

    while (len && (json[len - 1] == ' ' || json[len - 1] == '\n'
                   || json[len - 1] == '\r' || json[len - 1] == '\t'))
    {
        len--;
    }

    if (len == 0) {
        return NGX_OK;
    }

    root = cJSON_ParseWithLength((char *) json, len);

    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        *code = "MalformedJSON";
        *message = "the body is not a JSON object";
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    item = cJSON_GetObjectItemCaseSensitive(root, "size");
    if (item && ngx_http_upload_json_size(item, &session->size) != NGX_OK) {
        *message = "\"size\" must be a whole number of bytes";
        goto done;
    }

    if ((ulcf->max_size && session->size > ulcf->max_size)
        || (session->size > 0
            && (session->size - 1) / ulcf->max_part_size
               >= (off_t) ulcf->max_parts))
    {
        *code = "EntityTooLarge";
        *message = "the declared size is larger than upload_max_size, or "
                   "than upload_max_parts parts of upload_max_part_size";
        goto done;
    }

    item = cJSON_GetObjectItemCaseSensitive(root, "part_size");
    if (item) {
        if (ngx_http_upload_json_size(item, &session->part_size) != NGX_OK
            || session->part_size < ulcf->min_part_size
            || session->part_size > ulcf->max_part_size)
        {
            *message = "\"part_size\" must be a number of bytes between "
                       "upload_min_part_size and upload_max_part_size";
            goto done;
        }
    }

    item = cJSON_GetObjectItemCaseSensitive(root, "sha256");
    if (item) {
        if (!cJSON_IsString(item)) {
            *code = "InvalidDigest";
            *message = "\"sha256\" must be 64 hex digits";
            goto done;
        }

        raw.data = (u_char *) item->valuestring;
        raw.len = ngx_strlen(item->valuestring);

        if (ngx_http_upload_parse_sha256(r->pool, &raw, &sha256) != NGX_OK) {
            *code = "InvalidDigest";
            *message = "\"sha256\" must be 64 hex digits";
            goto done;
        }

        session->sha256.data = ngx_pnalloc(r->pool, 64);
        if (session->sha256.data == NULL) {
            goto failed;
        }

        session->sha256.len = 64;
        ngx_hex_dump(session->sha256.data, sha256.data, 32);
    }

    item = cJSON_GetObjectItemCaseSensitive(root, "name");
    if (item && ngx_http_upload_json_string(r->pool, item, &session->name)
                != NGX_OK)
    {
        *message = "\"name\" must be a string of at most 1024 bytes";
        goto done;
    }

    item = cJSON_GetObjectItemCaseSensitive(root, "content_type");
    if (item
        && ngx_http_upload_json_string(r->pool, item, &session->content_type)
           != NGX_OK)
    {
        *message = "\"content_type\" must be a string of at most 1024 bytes";
        goto done;
    }

    item = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if (item) {
        if (!cJSON_IsObject(item)) {
            *message = "\"metadata\" must be a JSON object";
            goto done;
        }

        text = cJSON_PrintUnformatted(item);
        if (text == NULL) {
            goto failed;
        }

        session->metadata.len = ngx_strlen(text);

        if (session->metadata.len > NGX_HTTP_UPLOAD_META_MAX) {
            cJSON_free(text);
            *message = "\"metadata\" is larger than 8 KiB";
            goto done;
        }

        session->metadata.data = ngx_pnalloc(r->pool, session->metadata.len);
        if (session->metadata.data == NULL) {
            cJSON_free(text);
            goto failed;
        }

        ngx_memcpy(session->metadata.data, text, session->metadata.len);
        cJSON_free(text);
    }

    rc = NGX_OK;
    goto done;

failed:

    *code = "InternalError";
    *message = "the request could not be processed";

done:

    cJSON_Delete(root);

    return rc;
}


/* a whole, non-negative number that an off_t holds exactly */

static ngx_int_t
ngx_http_upload_json_size(cJSON *item, off_t *size)
{
    double  d;

    if (!cJSON_IsNumber(item)) {
        return NGX_ERROR;
    }

    d = item->valuedouble;

    if (d < 0 || d > 9007199254740992.0 || d != (double) (off_t) d) {
        return NGX_ERROR;
    }

    *size = (off_t) d;

    return NGX_OK;
}


static ngx_int_t
ngx_http_upload_json_string(ngx_pool_t *pool, cJSON *item, ngx_str_t *text)
{
    size_t  len;

    if (!cJSON_IsString(item)) {
        return NGX_ERROR;
    }

    len = ngx_strlen(item->valuestring);

    if (len > NGX_HTTP_UPLOAD_TEXT_MAX) {
        return NGX_ERROR;
    }

    text->data = ngx_pnalloc(pool, len);
    if (text->data == NULL && len) {
        return NGX_ERROR;
    }

    ngx_memcpy(text->data, item->valuestring, len);
    text->len = len;

    return NGX_OK;
}


static void
ngx_http_upload_initiated(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, ngx_array_t *parts,
    ngx_int_t status)
{
    cJSON                  *json;
    ngx_http_upload_ctx_t  *ctx;

    if (status != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    json = ngx_http_upload_session_json(r, session);

    if (json == NULL
        || cJSON_AddArrayToObject(json, "parts") == NULL)
    {
        cJSON_Delete(json);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "upload: sliced upload %V of \"%V/%V\" initiated",
                  &session->id, &session->app, &session->key);

    ctx = ngx_http_get_module_ctx(r, ngx_http_upload_module);

    if (ctx) {
        /* a new file under an upload link: it counts */
        ctx->link_kept = 1;
    }

    ngx_http_finalize_request(r, ngx_http_upload_send_json(r, NGX_HTTP_OK,
                                                           json));
}


/* S3's paging: "max-parts" (at most 1000) after "part-number-marker" */

static void
ngx_http_upload_parts_listed(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, ngx_array_t *parts,
    ngx_int_t status)
{
    cJSON                   *json, *list, *item;
    ngx_str_t                value;
    ngx_int_t                rc, max, marker;
    ngx_uint_t               i, n;
    ngx_http_upload_part_t  *part;

    if (status != NGX_OK) {
        ngx_http_finalize_request(r,
                                  ngx_http_upload_session_status(r, status));
        return;
    }

    max = NGX_HTTP_UPLOAD_PAGE_MAX;
    marker = 0;

    rc = ngx_http_upload_arg(r, "max-parts", &value);

    if (rc != NGX_DECLINED) {
        max = (rc == NGX_OK) ? ngx_atoi(value.data, value.len) : NGX_ERROR;

        if (max < 1 || max > NGX_HTTP_UPLOAD_PAGE_MAX) {
            ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                             NGX_HTTP_BAD_REQUEST,
                                             "InvalidArgument",
                                             "\"max-parts\" must be a "
                                             "number from 1 to 1000, given "
                                             "once"));
            return;
        }
    }

    rc = ngx_http_upload_arg(r, "part-number-marker", &value);

    if (rc != NGX_DECLINED) {
        marker = (rc == NGX_OK) ? ngx_atoi(value.data, value.len) : NGX_ERROR;

        if (marker == NGX_ERROR) {
            ngx_http_finalize_request(r, ngx_http_upload_send_error(r,
                                             NGX_HTTP_BAD_REQUEST,
                                             "InvalidArgument",
                                             "\"part-number-marker\" must "
                                             "be a part number, given "
                                             "once"));
            return;
        }
    }

    json = ngx_http_upload_session_json(r, session);
    if (json == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    list = cJSON_AddArrayToObject(json, "parts");
    if (list == NULL) {
        goto failed;
    }

    part = parts->elts;
    n = 0;

    for (i = 0; i < parts->nelts; i++) {

        if (part[i].number <= (ngx_uint_t) marker) {
            continue;
        }

        if (n == (ngx_uint_t) max) {
            break;
        }

        item = cJSON_CreateObject();
        if (item == NULL) {
            goto failed;
        }

        cJSON_AddItemToArray(list, item);

        if (cJSON_AddNumberToObject(item, "part_number",
                                    (double) part[i].number) == NULL
            || cJSON_AddNumberToObject(item, "size",
                                       (double) part[i].size) == NULL
            || ngx_http_upload_add_string(item, "etag", &part[i].md5) != NGX_OK
            || ngx_http_upload_add_string(item, "sha256", &part[i].sha256)
               != NGX_OK)
        {
            goto failed;
        }

        n++;
    }

    if (cJSON_AddBoolToObject(json, "is_truncated", i < parts->nelts)
        == NULL)
    {
        goto failed;
    }

    if (i < parts->nelts && n) {
        if (cJSON_AddNumberToObject(json, "next_part_number_marker",
                                    (double) part[i - 1].number)
            == NULL)
        {
            goto failed;
        }
    }

    ngx_http_finalize_request(r, ngx_http_upload_send_json(r, NGX_HTTP_OK,
                                                           json));
    return;

failed:

    cJSON_Delete(json);
    ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
}


static void
ngx_http_upload_aborted(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, ngx_array_t *parts,
    ngx_int_t status)
{
    ngx_http_upload_ctx_t  *ctx;

    if (status != NGX_OK) {
        ngx_http_finalize_request(r,
                                  ngx_http_upload_session_status(r, status));
        return;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "upload: sliced upload %V of \"%V/%V\" aborted",
                  &session->id, &session->app, &session->key);

    /* the records are gone: the part files go too, off the event loop */

    ctx = ngx_http_get_module_ctx(r, ngx_http_upload_module);

    if (ngx_http_upload_session_dir(r, &session->app, &session->id,
                                    &ctx->path)
        != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_upload_finalize(r, ngx_http_upload_store_step(ctx,
                                    ngx_http_upload_store_remove_dir,
                                    ngx_http_upload_aborted_done));
}


static void
ngx_http_upload_aborted_done(ngx_http_upload_ctx_t *ctx)
{
    ngx_http_request_t  *r;

    r = ctx->request;

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    ngx_http_finalize_request(r, ngx_http_send_header(r));
}


static void
ngx_http_upload_sessions_listed(ngx_http_request_t *r,
    ngx_http_upload_session_t *session, ngx_array_t *list,
    ngx_int_t status)
{
    cJSON                      *json, *uploads, *item;
    ngx_uint_t                  i;
    ngx_http_upload_session_t  *s;

    if (status != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_upload_redis_unavailable(r));
        return;
    }

    json = cJSON_CreateObject();
    if (json == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_http_upload_add_string(json, "app", &session->app) != NGX_OK) {
        goto failed;
    }

    uploads = cJSON_AddArrayToObject(json, "uploads");
    if (uploads == NULL) {
        goto failed;
    }

    s = list->elts;

    for (i = 0; i < list->nelts; i++) {

        if (s[i].id.len == 0) {
            /* the script's mark: more sessions than one answer holds */
            continue;
        }

        item = cJSON_CreateObject();
        if (item == NULL) {
            goto failed;
        }

        cJSON_AddItemToArray(uploads, item);

        if (ngx_http_upload_add_string(item, "key", &s[i].key) != NGX_OK
            || ngx_http_upload_add_string(item, "upload_id", &s[i].id) != NGX_OK
            || cJSON_AddNumberToObject(item, "initiated",
                                       (double) s[i].initiated) == NULL)
        {
            goto failed;
        }
    }

    if (cJSON_AddBoolToObject(json, "is_truncated",
                              list->nelts && s[list->nelts - 1].id.len == 0)
        == NULL)
    {
        goto failed;
    }

    ngx_http_finalize_request(r, ngx_http_upload_send_json(r, NGX_HTTP_OK,
                                                           json));
    return;

failed:

    cJSON_Delete(json);
    ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
}


/* the answer for a session command: NGX_DECLINED is "no such upload" */

static ngx_int_t
ngx_http_upload_session_status(ngx_http_request_t *r, ngx_int_t status)
{
    switch (status) {

    case NGX_HTTP_UPLOAD_PENDING:
        return ngx_http_upload_pending_rc(r, status);

    case NGX_DECLINED:
        return ngx_http_upload_no_such_upload(r);

    case NGX_BUSY:
        return ngx_http_upload_send_error(r, NGX_HTTP_CONFLICT,
                                          "OperationAborted",
                                          "a complete of this upload is "
                                          "running");

    case NGX_ERROR:
    case NGX_HTTP_SERVICE_UNAVAILABLE:
        return ngx_http_upload_redis_unavailable(r);

    default:
        return status;
    }
}


ngx_int_t
ngx_http_upload_no_such_upload(ngx_http_request_t *r)
{
    return ngx_http_upload_send_error(r, NGX_HTTP_NOT_FOUND, "NoSuchUpload",
                                      "no sliced upload has this id for "
                                      "this key (it may have expired, "
                                      "completed or been aborted)");
}


/* the fields every answer about a session has */

static cJSON *
ngx_http_upload_session_json(ngx_http_request_t *r,
    ngx_http_upload_session_t *session)
{
    off_t                        part_size;
    cJSON                       *json, *metadata;
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    /* the declared part size, or one that fits the size in max_parts */

    part_size = session->part_size;

    if (part_size <= 0) {
        part_size = ulcf->min_part_size;

        if (session->size > 0
            && (session->size + part_size - 1) / part_size
               > (off_t) ulcf->max_parts)
        {
            part_size = (session->size + ulcf->max_parts - 1)
                        / ulcf->max_parts;
        }

        if (part_size > ulcf->max_part_size) {
            part_size = ulcf->max_part_size;
        }
    }

    json = cJSON_CreateObject();
    if (json == NULL) {
        return NULL;
    }

    if (ngx_http_upload_add_string(json, "upload_id", &session->id) != NGX_OK
        || ngx_http_upload_add_string(json, "key", &session->key) != NGX_OK
        || ngx_http_upload_add_string(json, "app", &session->app) != NGX_OK
        || (session->size >= 0
            ? cJSON_AddNumberToObject(json, "size", (double) session->size)
            : cJSON_AddNullToObject(json, "size")) == NULL
        || cJSON_AddNumberToObject(json, "part_size", (double) part_size)
           == NULL
        || cJSON_AddNumberToObject(json, "max_parts",
                                   (double) ulcf->max_parts) == NULL
        || cJSON_AddNumberToObject(json, "expires",
                                   (double) session->expires) == NULL
        || (session->resumed
            && cJSON_AddTrueToObject(json, "resumed") == NULL)
        || (session->name.len
            && ngx_http_upload_add_string(json, "name", &session->name)
               != NGX_OK)
        || (session->content_type.len
            && ngx_http_upload_add_string(json, "content_type",
                                          &session->content_type)
               != NGX_OK))
    {
        cJSON_Delete(json);
        return NULL;
    }

    /* kept as the client's JSON, checked at initiate */

    if (session->metadata.len) {
        metadata = cJSON_ParseWithLength((char *) session->metadata.data,
                                         session->metadata.len);
        if (metadata == NULL) {
            cJSON_Delete(json);
            return NULL;
        }

        cJSON_AddItemToObject(json, "metadata", metadata);
    }

    return json;
}


/*
 * PUT <key>?uploadId=<id>&partNumber=<n>: the body streams into the part's
 * own file, named "<n>.<random>" in the session's directory, so that a
 * part replaced while a reader looks at the session is never torn.  A
 * part that fits the layout declared at initiate and whose place is free
 * goes in place instead, into the session's data file at its offset (the
 * check decides, ngx_http_upload_session_check()); "<random>" is then the
 * token of its claim.
 */

static ngx_int_t
ngx_http_upload_part_put(ngx_http_request_t *r,
    ngx_http_upload_session_t *session)
{
    u_char                      *p, rnd[8];
    ngx_int_t                    rc;
    ngx_str_t                    dir;
    ngx_uint_t                   number;
    const char                  *reason;
    ngx_http_upload_ctx_t       *ctx;
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    if (ngx_http_upload_part_number(r, &number, &reason) != NGX_OK) {
        return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "InvalidArgument", reason);
    }

    if (r->headers_in.content_length_n > ulcf->max_part_size) {
        return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "EntityTooLarge",
                                          "the part is larger than "
                                          "upload_max_part_size");
    }

    rc = ngx_http_upload_request_ctx(r, &session->app, &session->key, &ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx->session = session;
    ctx->part_number = number;

    /* a part's etag is its MD5, as in S3; SHA-256 is always computed */
    ctx->hashes = ulcf->hashes | NGX_HTTP_UPLOAD_MD5;

    ctx->record = ngx_http_upload_part_record;
    ctx->reply = ngx_http_upload_reply_part;

    /* a chunked part is cut off where a declared one is refused */
    ctx->limit = ulcf->max_part_size;
    ctx->limit_status = NGX_HTTP_BAD_REQUEST;
    ctx->limit_message = "the part is larger than upload_max_part_size";

    rc = ngx_http_upload_put_digests(ctx, &reason);

    if (rc == NGX_DECLINED) {
        return ngx_http_upload_send_error(r, NGX_HTTP_BAD_REQUEST,
                                          "InvalidDigest", reason);
    }

    if (rc != NGX_OK
        || ngx_http_upload_session_dir(r, &session->app, &session->id, &dir)
           != NGX_OK
        || RAND_bytes(rnd, sizeof(rnd)) != 1)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->path.len = dir.len + 1 + NGX_INT_T_LEN + 1 + 2 * sizeof(rnd);
    ctx->path.data = ngx_pnalloc(r->pool, ctx->path.len + 1);
    if (ctx->path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(ctx->path.data, "%V/%ui.", &dir, number);
    ctx->slot.data = p;
    p = ngx_hex_dump(p, rnd, sizeof(rnd));
    ctx->slot.len = p - ctx->slot.data;
    *p = '\0';

    ctx->path.len = p - ctx->path.data;
    ctx->temp = ctx->path;

    /* the body is read only if the session is open */

    return ngx_http_upload_session_status(r,
               ngx_http_upload_session_check(ctx, ngx_http_upload_put_ready));
}


static ngx_int_t
ngx_http_upload_part_number(ngx_http_request_t *r, ngx_uint_t *number,
    const char **reason)
{
    ngx_int_t                    n;
    ngx_str_t                    value;
    ngx_http_upload_loc_conf_t  *ulcf;

    ulcf = ngx_http_get_module_loc_conf(r, ngx_http_upload_module);

    switch (ngx_http_upload_arg(r, "partNumber", &value)) {

    case NGX_OK:
        break;

    case NGX_BUSY:
        *reason = "\"partNumber\" is given twice";
        return NGX_DECLINED;

    default:
        *reason = "a part needs \"partNumber\"";
        return NGX_DECLINED;
    }

    /* digits only, no sign, no leading zero */

    n = (value.len && value.len <= 6 && value.data[0] != '0')
        ? ngx_atoi(value.data, value.len) : NGX_ERROR;

    if (n == NGX_ERROR || n < 1 || (ngx_uint_t) n > ulcf->max_parts) {
        *reason = "\"partNumber\" must be a number from 1 to "
                  "upload_max_parts";
        return NGX_DECLINED;
    }

    *number = n;

    return NGX_OK;
}


/* {"part_number", "size", "etag", "sha256"} and the ETag header */

static ngx_int_t
ngx_http_upload_reply_part(ngx_http_upload_ctx_t *ctx)
{
    u_char                    *p;
    cJSON                     *json;
    ngx_str_t                  etag;
    ngx_http_request_t        *r;
    ngx_http_upload_object_t   obj;

    r = ctx->request;

    if (ngx_http_upload_digest_hex(r->pool, ctx, &obj) != NGX_OK) {
        return NGX_ERROR;
    }

    etag.len = obj.md5.len + 2;
    etag.data = ngx_pnalloc(r->pool, etag.len);
    if (etag.data == NULL) {
        return NGX_ERROR;
    }

    p = etag.data;
    *p++ = '"';
    p = ngx_cpymem(p, obj.md5.data, obj.md5.len);
    *p = '"';

    if (ngx_http_upload_set_header(r, "ETag", &etag) != NGX_OK) {
        return NGX_ERROR;
    }

    json = cJSON_CreateObject();
    if (json == NULL) {
        return NGX_ERROR;
    }

    if (cJSON_AddNumberToObject(json, "part_number",
                                (double) ctx->part_number) == NULL
        || cJSON_AddNumberToObject(json, "size", (double) ctx->size) == NULL
        || ngx_http_upload_add_string(json, "etag", &obj.md5) != NGX_OK
        || ngx_http_upload_add_string(json, "sha256", &obj.sha256) != NGX_OK)
    {
        cJSON_Delete(json);
        return NGX_ERROR;
    }

    return ngx_http_upload_send_json(r, NGX_HTTP_OK, json);
}


/* a Redis known to be down is answered at once */

static ngx_int_t
ngx_http_upload_pending_rc(ngx_http_request_t *r, ngx_int_t rc)
{
    if (rc == NGX_HTTP_SERVICE_UNAVAILABLE) {
        return ngx_http_upload_redis_unavailable(r);
    }

    return rc;
}
