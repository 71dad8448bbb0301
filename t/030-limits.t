# upload_max_size: a declared length over the limit is refused before the
# body; a chunked body that grows over it is cut off, leaving nothing.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;

upload_suite();

run_tests();

__DATA__

=== TEST 1: a body of exactly upload_max_size is stored
--- config eval
"location /upload/ { upload on; upload_max_size 10; }\n$::Files"
--- request
PUT /upload/ten
0123456789
--- error_code: 201
--- response_body eval
UploadTest::json_object("ten", "default", "0123456789")



=== TEST 2: a declared Content-Length over the limit gets 413 before the body
--- config eval
"location /upload/ { upload on; upload_max_size 10; }\n$::Files"
--- raw_request eval
"PUT /upload/eleven HTTP/1.1\r
Host: localhost\r
Content-Length: 11\r
Expect: 100-continue\r
Connection: close\r
\r
"
--- error_code: 413
--- response_body eval
UploadTest::json_error("EntityTooLarge", "the declared Content-Length is larger than upload_max_size")
--- error_log
upload: 413 EntityTooLarge



=== TEST 3: a chunked body that grows over the limit is cut off with 413
--- init
UploadTest::clear_persist();
--- http_config eval: $::PersistHttpConfig
--- config eval
"location /upload/ { upload on; upload_max_size 10; }\n$::PersistFiles"
--- raw_request eval
"PUT /upload/chunky HTTP/1.1\r
Host: localhost\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
6\r
012345\r
6\r
6789ab\r
0\r
\r
"
--- error_code: 413
--- response_body eval
UploadTest::json_error("EntityTooLarge", "the body is larger than upload_max_size")



=== TEST 4: after the cut-off nothing is stored and no temp file is left
--- http_config eval: $::PersistHttpConfig
--- config eval
"location /upload/ { upload on; upload_max_size 10; }\n$::PersistFiles"
--- request eval
["GET /upload/chunky?meta", "GET /files/default/chunky", "GET /tmpfiles/"]
--- error_code eval
[404, 404, 200]
--- response_body_like eval
[qr/"code":"NoSuchKey"/, qr/404 Not Found/, qr/^\[\s*\]\s*$/]



=== TEST 5: upload_max_size 0 means no limit
--- config
    location /upload/ { upload on; upload_max_size 0; }
--- request eval
"PUT /upload/nolimit\n" . ("x" x 3000000)
--- error_code: 201
--- response_body_like: "size":3000000,



=== TEST 6: client_max_body_size does not apply in an upload location
--- config
    location /upload/ { upload on; client_max_body_size 1k; }
--- request eval
"PUT /upload/core-limit\n" . ("y" x 5000)
--- error_code: 201
--- response_body_like: "size":5000,



=== TEST 7: a location nested in an upload location keeps client_max_body_size
--- config
    location /upload/ {
        upload on;

        location /upload/dav/ {
            alias $TEST_NGINX_HTML_DIR/;
            dav_methods PUT;
            client_max_body_size 1k;
        }
    }
--- request eval
"PUT /upload/dav/x\n" . ("y" x 5000)
--- error_code: 413



=== TEST 8: a full thread pool queue fails the upload with 503, not the worker
--- main_config
    thread_pool tiny threads=1 max_queue=1;
--- config
    location /upload/ {
        upload on;
        upload_thread_pool tiny;
        upload_hash md5 sha1;
    }
--- request eval
"PUT /upload/busy\n" . ("b" x 200000)
--- error_code: 503
--- response_body
{"error":{"code":"SlowDown","message":"the server is too busy, try again later"}}
--- error_log
upload: the thread pool queue is full
--- no_error_log
[alert]
[crit]
