
/*
 * Copyright (C) ngx_http_upload_module developers
 *
 * The module's front door: directives, configuration and the hooks that
 * plug the upload handler and the request body filter into nginx.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_upload.h"


static void *ngx_http_upload_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_upload_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_upload_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_upload_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_upload_postconfiguration(ngx_conf_t *cf);

static char *ngx_http_upload(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_upload_register(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_upload_callback_allow(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_upload_link_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_upload_link(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_upload_set_handler(ngx_conf_t *cf,
    ngx_http_handler_pt handler);
static char *ngx_http_upload_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_upload_hash(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_upload_url_prefix(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_upload_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


/* the scope of the content index: whose uploads a hit may come from */
static ngx_conf_enum_t  ngx_http_upload_dedup_scopes[] = {
    { ngx_string("off"), NGX_HTTP_UPLOAD_DEDUP_OFF },
    { ngx_string("app"), NGX_HTTP_UPLOAD_DEDUP_APP },
    { ngx_string("global"), NGX_HTTP_UPLOAD_DEDUP_GLOBAL },
    { ngx_null_string, 0 }
};


/* what a pre-upload callback that got no answer does to the upload */
static ngx_conf_enum_t  ngx_http_upload_pre_failure[] = {
    { ngx_string("deny"), 0 },
    { ngx_string("allow"), 1 },
    { ngx_null_string, 0 }
};


/* whose callback URLs win: the app's registration or the request's */
static ngx_conf_enum_t  ngx_http_upload_prefer[] = {
    { ngx_string("app"), 0 },
    { ngx_string("header"), 1 },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_upload_commands[] = {

    { ngx_string("upload"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_upload,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, enable),
      NULL },

    { ngx_string("upload_store"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, store),
      NULL },

    { ngx_string("upload_redis"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_upload_redis,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("upload_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, redis_timeout),
      NULL },

    { ngx_string("upload_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, max_size),
      NULL },

    { ngx_string("upload_min_part_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, min_part_size),
      NULL },

    { ngx_string("upload_max_part_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, max_part_size),
      NULL },

    { ngx_string("upload_max_parts"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, max_parts),
      NULL },

    { ngx_string("upload_session_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, session_ttl),
      NULL },

    { ngx_string("upload_complete_lease"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, complete_lease),
      NULL },

    { ngx_string("upload_sweep_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, sweep_interval),
      NULL },

    { ngx_string("upload_fsync"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, fsync),
      NULL },

    { ngx_string("upload_hash"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_upload_hash,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, hashes),
      NULL },

    { ngx_string("upload_dedup"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, dedup),
      &ngx_http_upload_dedup_scopes },

    { ngx_string("upload_register"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_upload_register,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, register_api),
      NULL },

    { ngx_string("upload_app_required"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, app_required),
      NULL },

    { ngx_string("upload_callback"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, callback_uri),
      NULL },

    { ngx_string("upload_callback_allow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_upload_callback_allow,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, callback_allow),
      NULL },

    { ngx_string("upload_callback_pre_failure"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, callback_pre_failure_allow),
      &ngx_http_upload_pre_failure },

    { ngx_string("upload_callback_prefer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, callback_prefer_header),
      &ngx_http_upload_prefer },

    { ngx_string("upload_link_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_upload_link_secret,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, link_secrets),
      NULL },

    { ngx_string("upload_link"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_upload_link,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, link_enable),
      NULL },

    { ngx_string("upload_link_required"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, link_required),
      NULL },

    { ngx_string("upload_link_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, link_url),
      NULL },

    { ngx_string("upload_link_upload_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, link_upload_url),
      NULL },

    { ngx_string("upload_url_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_upload_url_prefix,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_upload_loc_conf_t, url_prefix),
      NULL },

    { ngx_string("upload_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_upload_thread_pool,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_upload_module_ctx = {
    ngx_http_upload_preconfiguration,      /* preconfiguration */
    ngx_http_upload_postconfiguration,     /* postconfiguration */

    ngx_http_upload_create_main_conf,      /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_upload_create_loc_conf,       /* create location configuration */
    ngx_http_upload_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_http_upload_module = {
    NGX_MODULE_V1,
    &ngx_http_upload_module_ctx,           /* module context */
    ngx_http_upload_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_upload_sweep_init_process,    /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_upload_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_upload_main_conf_t  *umcf;

    umcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_upload_main_conf_t));
    if (umcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&umcf->sweeps, cf->pool, 1,
                       sizeof(ngx_http_upload_sweep_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return umcf;
}


static void *
ngx_http_upload_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_upload_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_upload_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->store = { 0, NULL };
     *     conf->url_prefix = { 0, NULL };
     *     conf->thread_pool_name = { 0, NULL };
     */

    conf->enable = NGX_CONF_UNSET;
    conf->redis = NGX_CONF_UNSET_PTR;
    conf->redis_timeout = NGX_CONF_UNSET_MSEC;
    conf->max_size = NGX_CONF_UNSET;
    conf->min_part_size = NGX_CONF_UNSET;
    conf->max_part_size = NGX_CONF_UNSET;
    conf->max_parts = NGX_CONF_UNSET_UINT;
    conf->session_ttl = NGX_CONF_UNSET;
    conf->sweep_interval = NGX_CONF_UNSET_MSEC;
    conf->complete_lease = NGX_CONF_UNSET_MSEC;
    conf->fsync = NGX_CONF_UNSET;
    conf->hashes = NGX_CONF_UNSET_UINT;
    conf->dedup = NGX_CONF_UNSET_UINT;
    conf->register_api = NGX_CONF_UNSET;
    conf->app_required = NGX_CONF_UNSET;
    conf->callback_allow = NGX_CONF_UNSET_PTR;
    conf->callback_pre_failure_allow = NGX_CONF_UNSET_UINT;
    conf->callback_prefer_header = NGX_CONF_UNSET_UINT;
    conf->link_secrets = NGX_CONF_UNSET_PTR;
    conf->link_enable = NGX_CONF_UNSET;
    conf->link_required = NGX_CONF_UNSET;
#if (NGX_THREADS)
    conf->thread_pool = NGX_CONF_UNSET_PTR;
#endif

    return conf;
}


static char *
ngx_http_upload_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_upload_loc_conf_t *prev = parent;
    ngx_http_upload_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t  *clcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_str_value(conf->store, prev->store, "");
    ngx_conf_merge_ptr_value(conf->redis, prev->redis, NULL);
    ngx_conf_merge_msec_value(conf->redis_timeout, prev->redis_timeout,
                              3000);
    ngx_conf_merge_off_value(conf->max_size, prev->max_size, 0);
    ngx_conf_merge_off_value(conf->min_part_size, prev->min_part_size,
                             5 * 1024 * 1024);
    ngx_conf_merge_off_value(conf->max_part_size, prev->max_part_size,
                             (off_t) 5 * 1024 * 1024 * 1024);
    ngx_conf_merge_uint_value(conf->max_parts, prev->max_parts, 10000);
    ngx_conf_merge_sec_value(conf->session_ttl, prev->session_ttl, 86400);
    ngx_conf_merge_msec_value(conf->sweep_interval, prev->sweep_interval,
                              600000);
    ngx_conf_merge_msec_value(conf->complete_lease, prev->complete_lease,
                              20000);

    if (conf->complete_lease < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"upload_complete_lease\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    if (conf->max_parts == 0 || conf->max_parts > 100000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"upload_max_parts\" must be from 1 to 100000");
        return NGX_CONF_ERROR;
    }

    if (conf->min_part_size < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"upload_min_part_size\" must be at least 1");
        return NGX_CONF_ERROR;
    }

    if (conf->min_part_size > conf->max_part_size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"upload_min_part_size\" is larger than "
                           "\"upload_max_part_size\"");
        return NGX_CONF_ERROR;
    }

    if (conf->session_ttl <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"upload_session_ttl\" must be positive");
        return NGX_CONF_ERROR;
    }
    ngx_conf_merge_value(conf->fsync, prev->fsync, 1);
    ngx_conf_merge_uint_value(conf->hashes, prev->hashes,
                              NGX_HTTP_UPLOAD_SHA256);
    ngx_conf_merge_uint_value(conf->dedup, prev->dedup,
                              NGX_HTTP_UPLOAD_DEDUP_APP);
    ngx_conf_merge_value(conf->register_api, prev->register_api, 0);
    ngx_conf_merge_value(conf->app_required, prev->app_required, 0);
    ngx_conf_merge_str_value(conf->callback_uri, prev->callback_uri, "");
    ngx_conf_merge_ptr_value(conf->callback_allow, prev->callback_allow,
                             NULL);
    ngx_conf_merge_uint_value(conf->callback_pre_failure_allow,
                              prev->callback_pre_failure_allow, 0);
    ngx_conf_merge_uint_value(conf->callback_prefer_header,
                              prev->callback_prefer_header, 0);

    ngx_conf_merge_ptr_value(conf->link_secrets, prev->link_secrets, NULL);
    ngx_conf_merge_value(conf->link_enable, prev->link_enable, 0);
    ngx_conf_merge_value(conf->link_required, prev->link_required, 0);
    ngx_conf_merge_str_value(conf->link_url, prev->link_url, "/link/");
    ngx_conf_merge_str_value(conf->link_upload_url, prev->link_upload_url,
                             "/upload/");

    if (conf->link_enable && (conf->redis == NULL
                              || conf->link_secrets == NULL))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"upload_link\" is on but \"upload_redis\" or "
                           "\"upload_link_secret\" is not set");
        return NGX_CONF_ERROR;
    }

    if (conf->register_api && conf->redis == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"upload_register\" is on but no "
                           "\"upload_redis\" is set");
        return NGX_CONF_ERROR;
    }
    ngx_conf_merge_str_value(conf->url_prefix, prev->url_prefix, "/files/");

#if (NGX_THREADS)
    if (conf->thread_pool == NGX_CONF_UNSET_PTR) {
        conf->thread_pool = prev->thread_pool;
        conf->thread_pool_name = prev->thread_pool_name;
    }
#endif

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    if (conf->store.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"upload\" is on but no \"upload_store\" is set");
        return NGX_CONF_ERROR;
    }

    if (conf->redis == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"upload\" is on but no \"upload_redis\" is set");
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &conf->store, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    while (conf->store.len > 1
           && conf->store.data[conf->store.len - 1] == '/')
    {
        conf->store.len--;
    }

#if (NGX_THREADS)
    if (conf->thread_pool == NGX_CONF_UNSET_PTR) {
        conf->thread_pool = ngx_thread_pool_add(cf, NULL);
        if (conf->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
    }
#endif

    if (ngx_http_upload_sweep_add(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /*
     * The module enforces "upload_max_size" itself, with a JSON error;
     * the core's client_max_body_size check would answer an HTML 413
     * before the module sees the request.
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_upload_handler) {
        clcf->client_max_body_size = 0;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_upload_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_upload_callback_add_variables(cf);
}


static ngx_int_t
ngx_http_upload_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_upload_callback_filter_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_upload_body_init(cf);
}


static char *
ngx_http_upload(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_upload_loc_conf_t *ulcf = conf;

    char  *rv;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (!ulcf->enable) {
        return NGX_CONF_OK;
    }

    return ngx_http_upload_set_handler(cf, ngx_http_upload_handler);
}


/*
 * upload, upload_register, upload_link: the location's content handler.
 * What follows the location's prefix in the URI is the key, app id or
 * token, so the location must be a prefix one.
 */

static char *
ngx_http_upload_set_handler(ngx_conf_t *cf, ngx_http_handler_pt handler)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

#if (NGX_PCRE)
    if (clcf->regex) {
        return "cannot be used in a regex location";
    }
#endif

    if (clcf->named) {
        return "cannot be used in a named location";
    }

    clcf->handler = handler;

    return NGX_CONF_OK;
}


/* "upload_register on": this location serves the app registration API */

static char *
ngx_http_upload_register(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_upload_loc_conf_t *ulcf = conf;

    char  *rv;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (!ulcf->register_api) {
        return NGX_CONF_OK;
    }

    return ngx_http_upload_set_handler(cf, ngx_http_upload_app_handler);
}


/* "upload_callback_allow <url prefix> ...": client URLs that may be used */

static char *
ngx_http_upload_callback_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_upload_loc_conf_t *ulcf = conf;

    u_char      *p;
    ngx_str_t   *value, *prefix;
    ngx_uint_t   i;

    if (ulcf->callback_allow != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    ulcf->callback_allow = ngx_array_create(cf->pool, cf->args->nelts,
                                            sizeof(ngx_str_t));
    if (ulcf->callback_allow == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        /* a prefix must fix the host: "http://a" would allow "a.evil" */

        p = NULL;

        if (ngx_http_upload_callback_url_valid(&value[i]) == NGX_OK) {
            /* the "/" that ends the host, after "http://" or "https://" */
            p = value[i].data + (value[i].data[4] == ':' ? 7 : 8);
            p = ngx_strlchr(p, value[i].data + value[i].len, '/');
        }

        if (p == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"upload_callback_allow\" needs http:// or "
                               "https:// URL prefixes that end the host "
                               "with \"/\", not \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        prefix = ngx_array_push(ulcf->callback_allow);
        if (prefix == NULL) {
            return NGX_CONF_ERROR;
        }

        *prefix = value[i];
    }

    return NGX_CONF_OK;
}


/* "upload_link_secret <secret> ...": the first signs, all verify */

static char *
ngx_http_upload_link_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_upload_loc_conf_t *ulcf = conf;

    ngx_str_t   *value, *secret;
    ngx_uint_t   i;

    if (ulcf->link_secrets != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    ulcf->link_secrets = ngx_array_create(cf->pool, cf->args->nelts,
                                          sizeof(ngx_str_t));
    if (ulcf->link_secrets == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len < 16) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "an \"upload_link_secret\" must be at least "
                               "16 characters long");
            return NGX_CONF_ERROR;
        }

        secret = ngx_array_push(ulcf->link_secrets);
        if (secret == NULL) {
            return NGX_CONF_ERROR;
        }

        *secret = value[i];
    }

    return NGX_CONF_OK;
}


/* "upload_link on": this location serves the page of upload links */

static char *
ngx_http_upload_link(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_upload_loc_conf_t *ulcf = conf;

    char  *rv;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (!ulcf->link_enable) {
        return NGX_CONF_OK;
    }

    return ngx_http_upload_set_handler(cf, ngx_http_upload_link_handler);
}


static char *
ngx_http_upload_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_upload_loc_conf_t *ulcf = conf;

    if (ulcf->redis != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    ulcf->redis = ngx_http_upload_redis_create(cf, cf->args->elts,
                                               cf->args->nelts);
    if (ulcf->redis == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_upload_hash(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_upload_loc_conf_t *ulcf = conf;

    ngx_str_t               *value;
    ngx_uint_t               i;
    ngx_http_upload_hash_t  *h;

    if (ulcf->hashes != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    /* SHA-256 keys content everywhere (dedup, integrity): always on */
    ulcf->hashes = NGX_HTTP_UPLOAD_SHA256;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        for (h = ngx_http_upload_hashes; h->name; h++) {
            if (value[i].len == h->len
                && ngx_strncmp(value[i].data, h->name, h->len) == 0)
            {
                break;
            }
        }

        if (h->name == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"%V\", "
                               "expected md5, sha1 or sha256",
                               &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }

        ulcf->hashes |= h->type;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_upload_url_prefix(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_upload_loc_conf_t *ulcf = conf;

    ngx_str_t  *value;

    if (ulcf->url_prefix.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0
        || (value[1].data[0] != '/'
            && ngx_strncmp(value[1].data, "http://", 7) != 0
            && ngx_strncmp(value[1].data, "https://", 8) != 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\", expected a path "
                           "starting with \"/\" or an http(s) URL",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    /* the app name follows the prefix directly */

    if (value[1].data[value[1].len - 1] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\", "
                           "the prefix must end with \"/\"",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    ulcf->url_prefix = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_upload_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
#if (NGX_THREADS)
    ngx_http_upload_loc_conf_t *ulcf = conf;

    ngx_str_t  *value;

    if (ulcf->thread_pool != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ulcf->thread_pool = NULL;
        return NGX_CONF_OK;
    }

    ulcf->thread_pool_name = value[1];
    ulcf->thread_pool = ngx_thread_pool_add(cf, &value[1]);
    if (ulcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

#else
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    return "requires nginx built with threads (--with-threads)";
#endif
}
