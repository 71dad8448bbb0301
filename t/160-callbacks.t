# Apps and callbacks: the registration API (upload_register), the app an
# upload names (X-Upload-App, upload_app_required), the pre-upload callback
# that approves an upload before its body, the post-upload callback once
# the file is durable, client callback URLs (upload_callback_allow) and
# the signature.  t/util/callback-server.pl plays the app.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use POSIX ();
use IO::Socket::INET;

upload_suite();
check_accum_error_log();

$ENV{TEST_NGINX_CB_PORT} ||= ($ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984) + 14;

our $CbPort = $ENV{TEST_NGINX_CB_PORT};
my $cb_dir = "/tmp/upload-test-callbacks-$$";
my $cb_pid = fork();

if ($cb_pid == 0) {
    exec($^X, "$FindBin::Bin/util/callback-server.pl", $CbPort, $cb_dir)
        or POSIX::_exit(1);
}

END {
    if ($cb_pid) {
        kill 'TERM', $cb_pid;
        waitpid $cb_pid, 0;
        system("rm", "-rf", $cb_dir);
    }
}

for (1 .. 50) {
    last if IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $CbPort);
    select undef, undef, undef, 0.1;
}

# the last callback the app received
sub last_callback {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $CbPort)
        or die "callback-server: $!";
    print $s "GET /last HTTP/1.0\r\n\r\n";
    local $/;
    my $resp = <$s>;
    $resp =~ s/^.*?\r\n\r\n//s;
    return $resp;
}

sub register {
    my ($app, $pre, $post, $secret) = @_;
    UploadTest::redis("del", "upload:{$app}:app");
    UploadTest::redis("hset", "upload:{$app}:app", "appid", $app,
                      "pre", $pre // "", "post", $post // "",
                      "secret", $secret // "", "updated", time);
}

our $App = "http://127.0.0.1:$CbPort";

our $Config = <<'_EOC_';
    location = /_upload_callback {
        internal;
        proxy_pass $upload_callback_url;
        proxy_method POST;
        proxy_set_body $upload_callback_body;
        proxy_connect_timeout 2s;
        proxy_read_timeout 5s;
    }

    location /apps/ { upload_register on; }

    location /upload/ {
        upload on;
        upload_min_part_size 1;
        upload_callback /_upload_callback;
        upload_callback_allow http://127.0.0.1:$TEST_NGINX_CB_PORT/allowed/;
    }

    location /strict/ {
        upload on;
        upload_app_required on;
        upload_callback /_upload_callback;
    }

    location /lenient/ {
        upload on;
        upload_callback /_upload_callback;
        upload_callback_pre_failure allow;
    }

    location /static { return 200 "static ok\n"; }

    location /files/ { alias $TEST_NGINX_SERVER_ROOT-persist/store/; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("config", $::Config) unless defined $block->config;
    $block->set_value("http_config", $UploadTest::PersistHttpConfig);
});

run_tests();

__DATA__

=== TEST 1: registration: create, show (no secret), update, delete
--- init
UploadTest::clear_persist();
--- request eval
["POST /apps/\n{\"appid\":\"reg1\",\"callback_url_pre\":\"$::App/ok\",\"secret\":\"s3cret\"}",
 "GET /apps/reg1",
 "POST /apps/\nappid=reg1&callback_url_post=" . "http%3A%2F%2Fapp.example%2Fdone",
 "GET /apps/reg1",
 "DELETE /apps/reg1",
 "GET /apps/reg1",
 "DELETE /apps/reg1"]
--- more_headers eval
["Content-Type: application/json", "", "Content-Type: application/x-www-form-urlencoded", "", "", "", ""]
--- error_code eval
[201, 200, 201, 200, 204, 404, 404]
--- response_body_like eval
[qr/^\{"appid":"reg1","success":true\}$/,
 qr/^\{"appid":"reg1","callback_url_pre":"http:\/\/127.0.0.1:\d+\/ok","callback_url_post":null,"has_secret":true,"updated":\d+\}$/,
 qr/^\{"appid":"reg1","success":true\}$/,
 qr/^\{"appid":"reg1","callback_url_pre":null,"callback_url_post":"http:\/\/app.example\/done","has_secret":false,"updated":\d+\}$/,
 qr/^$/, qr/"code":"NoSuchApp"/, qr/"code":"NoSuchApp"/]



=== TEST 2: registration: bad appid, bad URLs, bad JSON are refused
--- request eval
["POST /apps/\n{\"appid\":\".hidden\"}",
 "POST /apps/\n{\"callback_url_pre\":\"http://a/\"}",
 "POST /apps/\n{\"appid\":\"x\",\"callback_url_pre\":\"ftp://a/b\"}",
 "POST /apps/\n{\"appid\":\"x\",\"callback_url_post\":\"http:///nohost\"}",
 "POST /apps/\n{\"appid\":\"x\",\"callback_url_post\":\"http://user\@evil/\"}",
 "POST /apps/\n{\"appid\":\"x\",\"secret\":42}",
 "POST /apps/\n{\"appid\":",
 "PUT /apps/x\nhello"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 405]
--- response_body_like eval
[qr/"code":"InvalidAppId"/, qr/"code":"InvalidAppId"/,
 qr/"code":"InvalidCallbackUrl"/, qr/"code":"InvalidCallbackUrl"/,
 qr/"code":"InvalidCallbackUrl"/, qr/"code":"InvalidArgument"/,
 qr/"code":"MalformedJSON"/, qr/"code":"MethodNotAllowed"/]



=== TEST 3: the pre callback approves: the upload goes on; the app saw who, what and from where
--- init
main::register("preok", "$::App/ok");
--- request
PUT /upload/approved.txt
approved content
--- more_headers
X-Upload-App: preok
Content-Type: text/plain
--- error_code: 201
--- response_body eval
UploadTest::json_object("approved.txt", "preok", "approved content")
--- error_log
upload: pre callback to "http://127.0.0.1:



=== TEST 4: (what the app received)
--- init
my $rec = main::last_callback();
Test::More::like($rec, qr/"method":"POST","path":"\/ok"/, "TEST 4: POST to the pre URL");
Test::More::like($rec, qr/"x-upload-app":"preok"/, "TEST 4: X-Upload-App");
Test::More::like($rec, qr/"x-upload-timestamp":"\d+"/, "TEST 4: X-Upload-Timestamp");
Test::More::unlike($rec, qr/x-upload-signature/, "TEST 4: no signature without a secret");
Test::More::like($rec, qr/"content-type":"application\/json"/, "TEST 4: JSON");
Test::More::like($rec, qr/"body":"\{\\"event\\":\\"pre\\",\\"appid\\":\\"preok\\",\\"key\\":\\"approved.txt\\",\\"name\\":null,\\"size\\":16,\\"content_type\\":\\"text\/plain\\",\\"upload_id\\":null,\\"client_ip\\":\\"127.0.0.1\\",\\"metadata\\":null\}\\n"/, "TEST 4: the pre event");
--- request
GET /files/preok/approved.txt
--- response_body chomp
approved content



=== TEST 5: the pre callback refuses: 403 before the body (no 100 Continue), nothing stored
--- init
main::register("prerefuse", "$::App/refuse");
--- raw_request eval
"PUT /upload/refused.txt HTTP/1.1\r
Host: localhost\r
X-Upload-App: prerefuse\r
Content-Length: 1000\r
Expect: 100-continue\r
\r
"
--- error_code: 403
--- response_headers
Connection: close
--- response_body
{"error":{"code":"CallbackRejected","message":"the app refused this upload"},"callback":{"status":403,"body":{"reason":"not this file"}}}



=== TEST 6: an unreachable pre callback: 502 CallbackFailed; or the upload goes on (upload_callback_pre_failure allow)
--- init
main::register("predown", "http://127.0.0.1:1/nobody");
--- request eval
["PUT /upload/down.txt\nbody", "PUT /lenient/down.txt\nbody", "GET /files/predown/down.txt"]
--- more_headers eval
["X-Upload-App: predown", "X-Upload-App: predown", ""]
--- error_code eval
[502, 201, 200]
--- response_body_like eval
[qr/^\{"error":\{"code":"CallbackFailed",.*"callback":\{"error":"CallbackFailed"/,
 qr/"key":"down.txt"/, qr/^body$/]
--- error_log
(no answer: unreachable
--- no_error_log
[alert]
[crit]



=== TEST 7: the post callback: signed, the answer carries the app's reply
--- init
main::register("postok", undef, "$::App/ok", "the secret");
--- request
PUT /upload/posted.txt
posted content
--- more_headers
X-Upload-App: postok
--- error_code: 201
--- response_body_like
^\{"key":"posted.txt","app":"postok","size":14,"etag":"[0-9a-f]{64}","sha256":"[0-9a-f]{64}","url":"/files/postok/posted.txt","callback":\{"status":200,"body":\{"ok":true,"seen":\d+\}\}\}$



=== TEST 8: (what the app received, and its signature checked with the secret)
--- init
my $rec = main::last_callback();
my ($ts) = $rec =~ /"x-upload-timestamp":"(\d+)"/;
my ($sig) = $rec =~ /"x-upload-signature":"sha256=([0-9a-f]{64})"/;
my ($body) = $rec =~ /"body":"(.*)"\}\n?$/s;
$body =~ s/\\n/\n/g; $body =~ s/\\"/"/g; $body =~ s/\\\\/\\/g;
Test::More::is($sig, Digest::SHA::hmac_sha256_hex("$ts.$body", "the secret"), "TEST 8: the signature is HMAC-SHA256(secret, timestamp.body)");
Test::More::is($body, '{"event":"post","appid":"postok","key":"posted.txt","size":14,"etag":"' . Digest::SHA::sha256_hex("posted content") . '","sha256":"' . Digest::SHA::sha256_hex("posted content") . "\",\"url\":\"/files/postok/posted.txt\",\"upload_id\":null,\"dedup\":false,\"metadata\":null}\n", "TEST 8: the post event");
--- request
GET /files/postok/posted.txt
--- response_body chomp
posted content



=== TEST 9: a post callback that fails: 203, the file is kept
--- init
main::register("postfail", undef, "$::App/fail");
--- request eval
["PUT /upload/kept.txt\nkept", "GET /files/postfail/kept.txt"]
--- more_headers eval
["X-Upload-App: postfail", ""]
--- error_code eval
[203, 200]
--- response_body_like eval
[qr/"url":"\/files\/postfail\/kept.txt","callback":\{"status":500,"body":"broken","error":"CallbackFailed"\}\}$/,
 qr/^kept$/]
--- error_log
post callback to



=== TEST 10: callback URLs from the client: refused unless under upload_callback_allow
--- request eval
["PUT /upload/hdr-no.txt\nheader url",
 "PUT /upload/hdr-no2.txt\nheader url",
 "PUT /upload/hdr-ok.txt\nheader url",
 "GET /files/default/hdr-no.txt"]
--- more_headers eval
["X-Upload-Callback-Post: $::App/ok",
 "X-Upload-Callback-Pre: http://169.254.169.254/latest/meta-data/",
 "X-Upload-Callback-Post: $::App/allowed/text",
 ""]
--- error_code eval
[400, 400, 201, 404]
--- response_body_like eval
[qr/"code":"CallbackNotAllowed"/, qr/"code":"CallbackNotAllowed"/,
 qr/"callback":\{"status":200,"body":"thanks"\}\}$/, qr/404/]
--- error_log
refused (upload_callback_allow)



=== TEST 11: upload_app_required: an unknown app is refused before the body
--- init
main::register("known");
--- request eval
["PUT /strict/a.txt\nx", "PUT /strict/b.txt\nx"]
--- more_headers eval
["X-Upload-App: stranger", "X-Upload-App: known"]
--- error_code eval
[403, 201]
--- response_body_like eval
[qr/"code":"UnknownApp"/, qr/"key":"b.txt","app":"known"/]



=== TEST 12: sliced: the pre callback at initiate (with the upload id), the post one at complete
--- init
main::register("sliced", "$::App/ok", "$::App/ok");
UploadTest::make_session("sliced", "s.txt", "slicedslicedslicedsliced");
--- request eval
["POST /upload/s2.txt?uploads\n{\"name\":\"report.pdf\",\"size\":5,\"metadata\":{\"owner\":7}}",
 "PUT /upload/s.txt?uploadId=slicedslicedslicedsliced&partNumber=1\nhello",
 "POST /upload/s.txt?uploadId=slicedslicedslicedsliced\n{\"parts\":[{\"part_number\":1,\"etag\":\"${\ Digest::MD5::md5_hex('hello')}\"}]}"]
--- more_headers eval
["X-Upload-App: sliced", "X-Upload-App: sliced", "X-Upload-App: sliced"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
[qr/^\{"upload_id":"[A-Za-z0-9_-]{24}","key":"s2.txt","app":"sliced"/,
 qr/"part_number":1/,
 qr/"parts":1,"callback":\{"status":200,"body":\{"ok":true,"seen":\d+\}\}\}$/]



=== TEST 13: (the post event of the complete)
--- init
my $rec = main::last_callback();
Test::More::like($rec, qr/\\"event\\":\\"post\\",\\"appid\\":\\"sliced\\",\\"key\\":\\"s.txt\\",\\"size\\":5,\\"etag\\":\\"[0-9a-f]{32}-1\\",/, "TEST 13: post event of a complete");
Test::More::like($rec, qr/\\"upload_id\\":\\"slicedslicedslicedsliced\\"/, "TEST 13: with its upload id");
--- request
GET /static
--- response_body
static ok



=== TEST 14: a slow pre callback (2 s) delays only its own upload: another request is answered meanwhile
--- init
main::register("slow", "$::App/slow?ms=2000");
my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $out = "$ENV{TEST_NGINX_SERVER_ROOT}-persist/slow.out";
unlink $out;
my $pid = fork // die;
if ($pid == 0) {
    exec "curl", "-s", "-o", $out, "-H", "X-Upload-App: slow", "-T", "/etc/hostname",
         "http://127.0.0.1:$port/upload/slow.txt";
}
select undef, undef, undef, 0.3;
my $static = `curl -s http://127.0.0.1:$port/static`;
my $pending = !-e $out;
Test::More::is($static, "static ok\n", "TEST 14: /static answered");
Test::More::ok($pending, "TEST 14: while the slow upload still waited for its app");
waitpid $pid, 0;
my $answer = do { local (@ARGV, $/) = $out; <> } // '';
Test::More::like($answer, qr/^\{"key":"slow.txt","app":"slow",/, "TEST 14: then the slow upload completed");
--- request
GET /static
--- response_body
static ok



=== TEST 15: over HTTP/2, both callbacks
--- http2
--- init
main::register("h2app", "$::App/ok", "$::App/ok");
--- request
PUT /upload/h2.txt
over h2
--- more_headers
X-Upload-App: h2app
--- error_code: 201
--- response_body_like
^\{"key":"h2.txt","app":"h2app",.*"callback":\{"status":200,"body":\{"ok":true,"seen":\d+\}\}\}$



=== TEST 16: a chunked body, approved by the pre callback
--- raw_request eval
"PUT /upload/chunked.txt HTTP/1.1\r
Host: localhost\r
X-Upload-App: h2app\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
5\r
hello\r
0\r
\r
"
--- error_code: 201
--- response_body_like
^\{"key":"chunked.txt","app":"h2app","size":5,.*"callback":\{"status":200,"body":\{"ok":true,"seen":\d+\}\}\}$



=== TEST 17: a client that goes away while its pre callback is pending leaves nothing behind
--- init
main::register("leaver", "$::App/slow?ms=1500");
--- raw_request eval
"PUT /upload/left.txt HTTP/1.1\r
Host: localhost\r
X-Upload-App: leaver\r
Content-Length: 5\r
Expect: 100-continue\r
\r
"
--- timeout: 0.5
--- abort
--- ignore_response
--- wait: 2



=== TEST 18: (nothing was stored, the worker serves on)
--- request eval
["GET /files/leaver/left.txt", "GET /static"]
--- error_code eval
[404, 200]



=== TEST 19: a client gone while its complete waits on a slow post callback: the worker lives on
--- init
main::register("slowpost", undef, "$::App/slow?ms=1500");
UploadTest::make_session("slowpost", "sp.txt", "slowpostslowpostslowpost", 0, { size => 5, part_size => 5 });
my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
system("curl", "-s", "-o", "/dev/null", "-X", "PUT", "-H", "X-Upload-App: slowpost",
       "--data-binary", "hello",
       "http://127.0.0.1:$port/upload/sp.txt?uploadId=slowpostslowpostslowpost&partNumber=1");
--- raw_request eval
"POST /upload/sp.txt?uploadId=slowpostslowpostslowpost HTTP/1.1\r
Host: localhost\r
X-Upload-App: slowpost\r
Content-Length: 71\r
\r
{\"parts\":[{\"part_number\":1,\"etag\":\"5d41402abc4b2a76b9719d911017c592\"}]}"
--- timeout: 0.5
--- abort
--- ignore_response
--- wait: 2



=== TEST 20: (the worker serves on, the object is stored whole; the spent session is gone, a retry cannot redo it)
--- request eval
["GET /static", "GET /files/slowpost/sp.txt",
 "POST /upload/sp.txt?uploadId=slowpostslowpostslowpost\n{\"parts\":[{\"part_number\":1,\"etag\":\"5d41402abc4b2a76b9719d911017c592\"}]}",
 "GET /files/slowpost/sp.txt", "GET /upload/sp.txt?meta"]
--- more_headers eval
["", "", "X-Upload-App: slowpost", "", "X-Upload-App: slowpost"]
--- error_code eval
[200, 200, 404, 200, 200]
--- response_body_like eval
[qr/static ok/, qr/^hello$/, qr/"code":"NoSuchUpload"/, qr/^hello$/,
 qr/"size":5,/]
--- no_error_log
[alert]
exited on signal



=== TEST 21: an app whose reply is larger than a subrequest's buffer: the upload is not hurt, 4 KiB of the reply are kept
--- init
main::register("bigreply", "$::App/big", "$::App/big");
--- request
PUT /upload/bigreply.txt
big reply
--- more_headers
X-Upload-App: bigreply
--- error_code: 201
--- response_body_like eval
qr/"callback":\{"status":200,"body":"b{4096}"\}\}$/



=== TEST 22: the app's process killed in the middle of the pre callback: 502 CallbackFailed, nothing stored, the worker serves on
--- init
main::register("predies", "$::App/die?ms=300");
--- request eval
["PUT /upload/died.txt\nbody", "GET /files/predies/died.txt", "GET /static"]
--- more_headers eval
["X-Upload-App: predies", "", ""]
--- error_code eval
[502, 404, 200]
--- response_body_like eval
[qr/^\{"error":\{"code":"CallbackFailed",/, qr/404/, qr/^static ok$/]
--- error_log
upstream prematurely closed connection
--- no_error_log
[alert]
[crit]



=== TEST 23: the app's process killed in the middle of the post callback: 203 with CallbackFailed, the file is kept whole
--- init
main::register("postdies", undef, "$::App/die?ms=300");
--- request eval
["PUT /upload/survived.txt\nsurvived", "GET /files/postdies/survived.txt", "GET /upload/survived.txt?meta"]
--- more_headers eval
["X-Upload-App: postdies", "", "X-Upload-App: postdies"]
--- error_code eval
[203, 200, 200]
--- response_body_like eval
[qr/"url":"\/files\/postdies\/survived.txt","callback":\{"error":"CallbackFailed","message":"the app did not answer"\}\}$/,
 qr/^survived$/, qr/"size":8,/]
--- error_log
upstream prematurely closed connection
--- no_error_log
[alert]
[crit]



=== TEST 24: (the app had the whole post callback when it died)
--- init
Test::More::like(main::last_callback(), qr/\\"event\\":\\"post\\",\\"appid\\":\\"postdies\\",\\"key\\":\\"survived.txt\\"/,
                 "TEST 24: the app received the post callback before it died");
--- request
GET /static
--- response_body
static ok

