# Integrity: Content-MD5 and X-Upload-Sha256 are checked against the bytes
# received; a mismatch stores nothing, a malformed value is refused early.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use MIME::Base64 ();
use Digest::MD5 ();
use Digest::SHA ();

upload_suite();

run_tests();

__DATA__

=== TEST 1: a wrong Content-MD5 gives 400 BadDigest and stores nothing
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/d1\nthe body", "GET /upload/d1?meta", "GET /files/default/d1", "GET /tmpfiles/"]
--- more_headers eval
["Content-MD5: " . MIME::Base64::encode_base64(Digest::MD5::md5("another body"), ""), "", "", ""]
--- error_code eval
[400, 404, 404, 200]
--- response_body_like eval
[qr/^\{"error":\{"code":"BadDigest","message":"the body does not match the digest sent in Content-MD5 or X-Upload-Sha256"\}\}$/,
 qr/"code":"NoSuchKey"/, qr/404 Not Found/, qr/^\[\s*\]\s*$/]



=== TEST 2: a wrong X-Upload-Sha256 gives 400 BadDigest and stores nothing
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/d2\nthe body", "GET /upload/d2?meta", "GET /tmpfiles/"]
--- more_headers eval
["X-Upload-Sha256: " . Digest::SHA::sha256_hex("not the body"), "", ""]
--- error_code eval
[400, 404, 200]
--- response_body_like eval
[qr/"code":"BadDigest"/, qr/"code":"NoSuchKey"/, qr/^\[\s*\]\s*$/]



=== TEST 3: a matching X-Upload-Sha256 is accepted
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request
PUT /upload/d3
the body
--- more_headers eval
"X-Upload-Sha256: " . uc Digest::SHA::sha256_hex("the body")
--- error_code: 201
--- response_body eval
UploadTest::json_object("d3", "default", "the body")



=== TEST 4: a malformed Content-MD5 is refused before the body
--- config
    location /upload/ { upload on; }
--- request
PUT /upload/d4
the body
--- more_headers
Content-MD5: not-base64-md5
--- error_code: 400
--- response_body eval
UploadTest::json_error("InvalidDigest", "Content-MD5 must be the base64 of a 16-byte MD5")



=== TEST 5: a Content-MD5 of the wrong length is malformed
--- config
    location /upload/ { upload on; }
--- request
PUT /upload/d5
the body
--- more_headers
Content-MD5: AAAAAAAAAAAAAAAAAAAAAAAAAAAA
--- error_code: 400
--- response_body_like: "code":"InvalidDigest"



=== TEST 6: a malformed X-Upload-Sha256 is refused (not hex)
--- config
    location /upload/ { upload on; }
--- request
PUT /upload/d6
the body
--- more_headers eval
"X-Upload-Sha256: " . ("zz" x 32)
--- error_code: 400
--- response_body eval
UploadTest::json_error("InvalidDigest", "X-Upload-Sha256 must be 64 hex digits")



=== TEST 7: a malformed X-Upload-Sha256 is refused (too short)
--- config
    location /upload/ { upload on; }
--- request
PUT /upload/d7
the body
--- more_headers
X-Upload-Sha256: abcdef
--- error_code: 400
--- response_body_like: "code":"InvalidDigest"



=== TEST 8: the operator sees a digest mismatch in the error log
--- config
    location /upload/ { upload on; }
--- request
PUT /upload/d9
the body
--- more_headers
X-Upload-Sha256: 0000000000000000000000000000000000000000000000000000000000000000
--- error_code: 400
--- error_log
upload: 400 BadDigest: the body does not match the digest



=== TEST 9: a failed digest leaves the previous object in place
--- config eval
"location /upload/ { upload on; }\n$::Files"
--- request eval
["PUT /upload/d8\noriginal", "PUT /upload/d8\nreplacement", "GET /files/default/d8"]
--- more_headers eval
["", "X-Upload-Sha256: " . Digest::SHA::sha256_hex("something else"), ""]
--- error_code eval
[201, 400, 200]
--- response_body_like eval
[qr/"size":8,/, qr/"code":"BadDigest"/, qr/^original$/]
