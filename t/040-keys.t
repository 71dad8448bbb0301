# Keys and app names are hostile input: anything that could leave the
# store, or that is not a clean UTF-8 path, is refused with 400 InvalidKey.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;

upload_suite();

run_tests();

__DATA__

=== TEST 1: every class of bad key gets 400 InvalidKey, before any body
--- config
    location /upload/ { upload on; }
--- request eval
["PUT /upload/\nx", "PUT /upload/a//b\nx", "PUT /upload/a/\nx", "PUT /upload/a/./b\nx", "PUT /upload/a/%2E%2E/b\nx", "PUT /upload/a%01b\nx", "PUT /upload/a%7Fb\nx", "PUT /upload/a%5Cb\nx", "PUT /upload/%FF\nx", "PUT /upload/%C0%AF\nx", "PUT /upload/%ED%A0%80\nx", "PUT /upload/%E2%82\nx", "PUT /upload/kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\nx", "PUT /upload/ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss\nx"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 400]
--- response_body eval
[UploadTest::json_error('InvalidKey', 'the key is empty'),
 UploadTest::json_error('InvalidKey', 'the key has an empty path segment'),
 UploadTest::json_error('InvalidKey', 'the key has an empty path segment'),
 UploadTest::json_error('InvalidKey', 'the key has a \".\" or \"..\" path segment'),
 UploadTest::json_error('InvalidKey', 'the key has a \".\" or \"..\" path segment'),
 UploadTest::json_error('InvalidKey', 'the key contains a control character'),
 UploadTest::json_error('InvalidKey', 'the key contains a control character'),
 UploadTest::json_error('InvalidKey', 'the key contains a backslash'),
 UploadTest::json_error('InvalidKey', 'the key is not valid UTF-8'),
 UploadTest::json_error('InvalidKey', 'the key is not valid UTF-8'),
 UploadTest::json_error('InvalidKey', 'the key is not valid UTF-8'),
 UploadTest::json_error('InvalidKey', 'the key is not valid UTF-8'),
 UploadTest::json_error('InvalidKey', 'the key is longer than 1024 bytes'),
 UploadTest::json_error('InvalidKey', 'a path segment of the key is longer than 255 bytes')]



=== TEST 2: a bad app name gets 400 InvalidApp (../etc)
--- config
    location /upload/ { upload on; }
--- request
PUT /upload/key
x
--- more_headers
X-Upload-App: ../etc
--- error_code: 400
--- response_body eval
UploadTest::json_error('InvalidApp', 'the app name must not start with \".\"')



=== TEST 3: a bad app name gets 400 InvalidApp (.hidden)
--- config
    location /upload/ { upload on; }
--- request
PUT /upload/key
x
--- more_headers
X-Upload-App: .hidden
--- error_code: 400
--- response_body eval
UploadTest::json_error('InvalidApp', 'the app name must not start with \".\"')



=== TEST 4: a bad app name gets 400 InvalidApp (a b)
--- config
    location /upload/ { upload on; }
--- request
PUT /upload/key
x
--- more_headers
X-Upload-App: a b
--- error_code: 400
--- response_body eval
UploadTest::json_error('InvalidApp', 'the app name may only contain letters, digits, \"-\", \"_\" and \".\"')



=== TEST 5: a bad app name gets 400 InvalidApp (65 characters)
--- config
    location /upload/ { upload on; }
--- request
PUT /upload/key
x
--- more_headers
X-Upload-App: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
--- error_code: 400
--- response_body eval
UploadTest::json_error('InvalidApp', 'the app name must be 1 to 64 characters long')



=== TEST 6: nginx resolves dot segments and bad escapes before the module: those never reach the store either
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/safe/%2e%2e/%2e%2e/escape\nx", "PUT /upload/..%2Fetc%2Fpasswd\nx", "PUT /upload/a%00b\nx", "PUT /upload/bad%zzescape\nx", "PUT /upload/a/..x\nok", "GET /files/default/a/..x"]
--- error_code eval
[405, 405, 400, 400, 201, 200]
--- response_body_like eval
[qr/405 Not Allowed/, qr/405 Not Allowed/, qr/400 Bad Request/, qr/400 Bad Request/, qr/"key":"a\/\.\.x"/, qr/^ok$/]
--- no_error_log
[alert]
[crit]



=== TEST 7: the location prefix without a trailing slash still separates the key
--- config
    location /up { upload on; }
--- request eval
["PUT /up/file.txt\nabc", "PUT /upload/x\nabc"]
--- error_code eval
[201, 400]
--- response_body_like eval
[qr/"key":"file.txt"/, qr/"code":"InvalidKey","message":"the key must follow the location and a \\"\/\\""/]
