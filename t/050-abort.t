# A client that goes away in the middle of a body leaves nothing behind:
# no object at the key, no record, no temporary file.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;

upload_suite();

run_tests();

__DATA__

=== TEST 1: the client stops after 200 KB of a 1 MB body and hangs up
--- init
UploadTest::clear_persist();
--- http_config eval: $::PersistHttpConfig
--- config eval
"location /upload/ { upload on; }\n$::PersistFiles"
--- raw_request eval
"PUT /upload/aborted.bin HTTP/1.1\r
Host: localhost\r
Content-Length: 1000000\r
Connection: close\r
\r
" . ("z" x 200000)
--- timeout: 1
--- abort
--- ignore_response
--- wait eval: $ENV{TEST_NGINX_USE_VALGRIND} ? 3 : 0.5
--- error_log
client prematurely closed connection



=== TEST 2: nothing of the aborted upload is left
--- http_config eval: $::PersistHttpConfig
--- config eval
"location /upload/ { upload on; }\n$::PersistFiles"
--- request eval
["GET /upload/aborted.bin?meta", "GET /files/default/aborted.bin", "GET /tmpfiles/"]
--- error_code eval
[404, 404, 200]
--- response_body_like eval
[qr/"code":"NoSuchKey"/, qr/404 Not Found/, qr/^\[\s*\]\s*$/]



=== TEST 3: an aborted re-upload leaves the previous object intact
--- init
UploadTest::clear_persist();
--- http_config eval: $::PersistHttpConfig
--- config eval
"location /upload/ { upload on; }\n$::PersistFiles"
--- request eval
["PUT /upload/kept.txt\nthe first version", "GET /files/default/kept.txt"]
--- error_code eval
[201, 200]
--- response_body_like eval
[qr/"size":17,/, qr/^the first version$/]



=== TEST 4: the re-upload is cut off
--- http_config eval: $::PersistHttpConfig
--- config eval
"location /upload/ { upload on; }\n$::PersistFiles"
--- raw_request eval
"PUT /upload/kept.txt HTTP/1.1\r
Host: localhost\r
Content-Length: 5000000\r
Connection: close\r
\r
" . ("q" x 300000)
--- timeout: 1
--- abort
--- ignore_response
--- wait eval: $ENV{TEST_NGINX_USE_VALGRIND} ? 3 : 0.5
--- error_log
client prematurely closed connection



=== TEST 5: the first version is still there, whole, and no temp file
--- http_config eval: $::PersistHttpConfig
--- config eval
"location /upload/ { upload on; }\n$::PersistFiles"
--- request eval
["GET /files/default/kept.txt", "GET /upload/kept.txt?meta", "GET /tmpfiles/"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/^the first version$/, qr/"size":17,/, qr/^\[\s*\]\s*$/]
