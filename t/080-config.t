# nginx -t refuses bad configurations with a message naming the directive
# and the bad value.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;

repeat_each(1);
no_shuffle();
log_level('info');

$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", $UploadTest::HttpConfig);
    }

    $block->set_value("request", "GET /t") unless defined $block->request;

    # a block that names the expected error is a config nginx must refuse
    if (defined $block->error_log) {
        $block->set_value("must_die", "");
        $block->set_value("suppress_stderr", "");
    }
});

run_tests();

__DATA__

=== TEST 1: an unknown digest
--- config
    location /upload/ { upload on; upload_hash md5 crc32; }
--- error_log
invalid value "crc32" in "upload_hash", expected md5, sha1 or sha256



=== TEST 2: upload on without a store
--- http_config eval
"upload_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};"
--- config
    location /upload/ { upload on; }
--- error_log
"upload" is on but no "upload_store" is set



=== TEST 3: upload on without Redis
--- http_config
    upload_store /tmp;
--- config
    location /upload/ { upload on; }
--- error_log
"upload" is on but no "upload_redis" is set



=== TEST 4: a bad Redis address
--- http_config
    upload_redis 127.0.0.1:notaport;
    upload_store /tmp;
--- config
    location /upload/ { upload on; }
--- error_log
invalid address "127.0.0.1:notaport" in "upload_redis"



=== TEST 5: a bad Redis parameter
--- http_config
    upload_redis 127.0.0.1:6379 database=2;
    upload_store /tmp;
--- config
    location /upload/ { upload on; }
--- error_log
invalid parameter "database=2" in "upload_redis"



=== TEST 6: a url prefix that is neither a path nor an http(s) URL
--- config
    location /upload/ { upload on; upload_url_prefix files/; }
--- error_log
invalid value "files/" in "upload_url_prefix", expected a path starting with "/" or an http(s) URL



=== TEST 7: a url prefix must end with a slash
--- config
    location /upload/ { upload on; upload_url_prefix /files; }
--- error_log
invalid value "/files" in "upload_url_prefix", the prefix must end with "/"



=== TEST 8: a bad size
--- config
    location /upload/ { upload on; upload_max_size 10q; }
--- error_log
"upload_max_size" directive invalid value



=== TEST 9: upload in a regex location
--- config
    location ~ ^/up/ { upload on; }
--- error_log
"upload" directive cannot be used in a regex location



=== TEST 10: an unknown thread pool
--- config
    location /upload/ { upload on; upload_thread_pool nosuchpool; }
--- error_log
unknown thread pool "nosuchpool"



=== TEST 11: a good configuration starts (the checks above are not too eager)
--- config
    location /upload/ {
        upload on;
        upload_hash md5 sha1 sha256;
        upload_max_size 5g;
        upload_fsync off;
        upload_url_prefix https://files.example.com/;
        upload_redis_timeout 500ms;
        upload_thread_pool off;
    }
    location = /t { return 200 "up\n"; }
--- response_body
up



=== TEST 12: upload_callback_allow needs the host ended by "/", for https too
--- config
    location /upload/ { upload on; upload_callback_allow https://app.example; }
--- error_log
"upload_callback_allow" needs http:// or https:// URL prefixes that end the host with "/", not "https://app.example"
