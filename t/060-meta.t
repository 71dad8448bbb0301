# An object's record: GET ?meta (JSON), HEAD (headers), DELETE, and the
# rules that keep keys and their directories apart.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use Digest::SHA ();
use Digest::MD5 ();

upload_suite();

run_tests();

__DATA__

=== TEST 1: ?meta answers the record, HEAD its headers, DELETE removes both
--- config eval
"location /upload/ { upload on; upload_hash md5; }\n$::Files"
--- request eval
["PUT /upload/m/one.txt\nmeta body", "GET /upload/m/one.txt?meta", "HEAD /upload/m/one.txt", "DELETE /upload/m/one.txt", "GET /upload/m/one.txt?meta", "GET /files/default/m/one.txt", "DELETE /upload/m/one.txt"]
--- error_code eval
[201, 200, 200, 204, 404, 404, 404]
--- response_headers eval
["", "Content-Type: application/json",
 "ETag: \"" . Digest::MD5::md5_hex("meta body") . "\"\nX-Upload-Size: 9\nX-Upload-Sha256: " . Digest::SHA::sha256_hex("meta body") . "\nX-Upload-Md5: " . Digest::MD5::md5_hex("meta body"),
 "", "", "", ""]
--- response_body_like eval
[qr/"size":9,/,
 qr/^\{"key":"m\/one.txt","app":"default","size":9,"etag":"[0-9a-f]{32}","sha256":"[0-9a-f]{64}","md5":"[0-9a-f]{32}","url":"\/files\/default\/m\/one.txt","time":\d{10}\}$/,
 qr/^$/, qr/^$/, qr/"code":"NoSuchKey"/, qr/404 Not Found/, qr/"code":"NoSuchKey"/]



=== TEST 2: HEAD of a missing key is 404
--- config
    location /upload/ { upload on; }
--- request
HEAD /upload/never-there
--- error_code: 404
--- response_body



=== TEST 3: records are per app
--- config
    location /upload/ { upload on; }
--- request eval
["PUT /upload/shared-name\nfrom default", "GET /upload/shared-name?meta"]
--- more_headers eval
["", "X-Upload-App: other"]
--- error_code eval
[201, 404]



=== TEST 4: GET on a key redirects to its download url
--- config
    location /upload/ { upload on; upload_url_prefix https://cdn.example.com/u/; }
--- request
GET /upload/some/file%20name.txt
--- error_code: 302
--- response_headers
Location: https://cdn.example.com/u/default/some/file%20name.txt



=== TEST 5: other methods get 405 with a JSON error
--- config
    location /upload/ { upload on; }
--- request
PATCH /upload/x
--- error_code: 405
--- response_body eval
UploadTest::json_error("MethodNotAllowed", "use PUT or POST to upload, GET, HEAD or DELETE on an object")



=== TEST 6: a key cannot be both an object and a prefix of other keys
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/dir/leaf\nleaf", "PUT /upload/dir\nx", "GET /upload/dir?meta", "DELETE /upload/dir", "PUT /upload/dir/leaf/deeper\nx", "GET /upload/dir/leaf/deeper?meta", "DELETE /upload/dir/leaf", "PUT /upload/dir\nnow a file", "GET /files/default/dir"]
--- error_code eval
[201, 409, 404, 404, 409, 404, 204, 201, 200]
--- response_body_like eval
[qr/"key":"dir\/leaf"/, qr/"code":"KeyConflict"/, qr/"code":"NoSuchKey"/, qr/"code":"NoSuchKey"/, qr/"code":"KeyConflict"/, qr/"code":"NoSuchKey"/, qr/^$/, qr/"key":"dir"/, qr/^now a file$/]



=== TEST 7: a body sent with GET ?meta is read and dropped, never run as a request
--- config
    location /upload/ { upload on; }
    keepalive_timeout 1s;
--- request eval
["PUT /upload/victim\nstill here", "GET /upload/victim?meta"]
--- error_code eval
[201, 200]



=== TEST 8: the smuggling attempt: a DELETE hidden in the body of a GET
--- config
    location /upload/ { upload on; }
    keepalive_timeout 1s;
--- raw_request eval
"GET /upload/victim?meta HTTP/1.1\r
Host: localhost\r
Content-Length: 70\r
\r
DELETE /upload/victim HTTP/1.1\r
Host: localhost\r
Connection: close\r
\r
"
--- error_code: 200
--- response_body_like: "key":"victim"
--- timeout: 4



=== TEST 9: the victim is still there
--- config
    location /upload/ { upload on; }
--- request
GET /upload/victim?meta
--- error_code: 200
--- response_body_like: "key":"victim"
