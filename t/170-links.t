# Upload links: tokens signed with upload_link_secret (HMAC-SHA256), the
# page an "upload_link on" location serves for them, and the confinement of
# uploads that carry one (app, prefix, max_size, max_files counted in
# Redis).  Tokens are also made here the way docs/links.md says an app can
# make them: in Perl, with examples/mint_link.py and examples/mint_link.sh.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64url decode_base64url);

upload_suite();
check_accum_error_log();

our $New = "the-new-secret-0123456789";
our $Old = "the-old-secret-9876543210";
our $Wrong = "not-our-secret-5555555555";

# a token made by hand, as the docs describe
sub token {
    my ($secret, %c) = @_;
    my %claims = (app => "linkapp", prefix => "in/", exp => time + 3600,
                  max_size => 0, max_files => 3, nonce => "n" . int(rand(1e9)) . "xyz", %c);
    my $json = '{"app":"' . $claims{app} . '","prefix":"' . $claims{prefix}
               . '","exp":' . $claims{exp} . ',"max_size":' . $claims{max_size}
               . ',"max_files":' . $claims{max_files} . ',"nonce":"'
               . $claims{nonce} . '"}';
    my $part = encode_base64url($json);
    return $part . "." . encode_base64url(hmac_sha256($part, $secret));
}

our $Good = token($Old);
our $Expired = token($New, exp => time - 10);
our $WrongSecret = token($Wrong);
our $Small = token($New, max_size => 10);
our $Two = token($New, max_files => 2);
our $Race = token($New, max_files => 3);

# a tampered payload: the same signature over other claims
our $TamperedPayload = do {
    my ($p, $s) = split /\./, token($New);
    my $json = decode_base64url($p);
    $json =~ s/"max_files":3/"max_files":300/;
    encode_base64url($json) . ".$s";
};

# a tampered signature: one character changed
our $TamperedSig = do {
    my $t = token($New);
    substr($t, -5, 1) = substr($t, -5, 1) eq "A" ? "B" : "A";
    $t;
};

our $Py = `python3 $FindBin::Bin/../examples/mint_link.py $New linkapp py/ 600 0 1`;
chomp $Py;
our $Sh = `sh $FindBin::Bin/../examples/mint_link.sh $New linkapp sh/ 600 0 1`;
chomp $Sh;

our $HttpConfig = $UploadTest::PersistHttpConfig . <<"_EOC_";
    upload_link_secret $New $Old;
_EOC_

our $Config = <<'_EOC_';
    location /apps/ { upload_register on; }
    location /link/ { upload_link on; }
    location /upload/ { upload on; upload_min_part_size 1; }
    location /drop/ { upload on; upload_link_required on; }
    location /files/ { alias $TEST_NGINX_SERVER_ROOT-persist/store/; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $::HttpConfig);
    $block->set_value("config", $::Config) unless defined $block->config;
});

run_tests();

__DATA__

=== TEST 1: a link is minted by the registration API; its page is served with a strict CSP
--- init
UploadTest::clear_persist();
--- request eval
["POST /apps/links\n{\"appid\":\"linkapp\",\"prefix\":\"in/\",\"ttl\":600,\"max_size\":1000,\"max_files\":2}",
 "GET /link/$::Good"]
--- error_code eval
[201, 200]
--- response_headers_like eval
["", "Content-Type: text/html; charset=utf-8\nContent-Security-Policy: default-src 'none'; script-src 'nonce-[A-Za-z0-9_-]{22}'; style-src 'nonce-[A-Za-z0-9_-]{22}'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"]
--- response_body_like eval
[qr/^\{"url":"\/link\/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}","token":"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}","expires":\d+\}$/,
 qr/<script type="application\/json" id="upload-config">\{"token":"\Q$::Good\E","upload_url":"\/upload\/","app":"linkapp","prefix":"in\/","max_size":0,"max_files":3,"expires":\d+,"part_size":8388608\}/]



=== TEST 2: the page uses no external asset, no inline handler, and its nonce is the CSP's
--- request eval
"GET /link/$::Good"
--- error_code: 200
--- response_body_unlike
(?i:src=["']?https?:|href=["']?https?:|\son[a-z]+=|style=")



=== TEST 3: tampered, wrong-secret, expired links get a 403 that says which, never the page
--- request eval
["GET /link/$::TamperedPayload", "GET /link/$::TamperedSig",
 "GET /link/$::WrongSecret", "GET /link/$::Expired", "GET /link/garbage",
 "GET /link/$::Expired"]
--- more_headers eval
["", "", "", "", "", "Accept: application/json"]
--- error_code eval
[403, 403, 403, 403, 403, 403]
--- response_body_like eval
[qr/This upload link is invalid/, qr/This upload link is invalid/,
 qr/This upload link is invalid/, qr/This upload link is expired/,
 qr/This upload link is invalid/,
 qr/^\{"error":\{"code":"AccessDenied","message":"the upload link has expired"\}\}$/]



=== TEST 4: tokens made by examples/mint_link.py and examples/mint_link.sh verify
--- request eval
["GET /link/$::Py", "GET /link/$::Sh", "PUT /upload/py/a.txt\npython", "PUT /upload/sh/a.txt\nshell"]
--- more_headers eval
["", "", "Authorization: Bearer $::Py", "Authorization: Bearer $::Sh"]
--- error_code eval
[200, 200, 201, 201]
--- response_body_like eval
[qr/"prefix":"py\//, qr/"prefix":"sh\//, qr/"key":"py\/a.txt","app":"linkapp"/,
 qr/"key":"sh\/a.txt","app":"linkapp"/]



=== TEST 5: confined: another app, another prefix, a body too big, no token where one is required
--- request eval
["PUT /upload/in/ok.txt\nfine",
 "PUT /upload/in/other-app.txt\nx",
 "PUT /upload/elsewhere.txt\nx",
 "PUT /upload/in/big.txt\n0123456789abc",
 "PUT /drop/in/x.txt\nx",
 "DELETE /upload/in/ok.txt",
 "GET /files/linkapp/in/ok.txt"]
--- more_headers eval
["Authorization: Bearer $::Good",
 "Authorization: Bearer $::Good\nX-Upload-App: other",
 "Authorization: Bearer $::Good",
 "Authorization: Bearer $::Small",
 "",
 "Authorization: Bearer $::Good",
 ""]
--- error_code eval
[201, 403, 403, 403, 403, 403, 200]
--- response_body_like eval
[qr/"key":"in\/ok.txt","app":"linkapp"/,
 qr/"message":"the upload link is for another app"/,
 qr/"message":"the upload link allows keys under its prefix only"/,
 qr/"message":"the file is larger than the upload link allows"/,
 qr/"message":"uploads here need an upload link's token"/,
 qr/"message":"an upload link allows uploads only"/,
 qr/^fine$/]



=== TEST 6: max_files: a failed upload gives its count back; past the limit the link is used up
--- request eval
["PUT /upload/in/1.txt\none",
 "PUT /upload/in/bad.txt\nbad",
 "PUT /upload/in/2.txt?token=$::Two\ntwo",
 "PUT /upload/in/3.txt\nthree",
 "GET /link/$::Two"]
--- more_headers eval
["Authorization: Bearer $::Two",
 "Authorization: Bearer $::Two\nX-Upload-Sha256: " . ("0" x 64),
 "",
 "Authorization: Bearer $::Two",
 ""]
--- error_code eval
[201, 400, 201, 403, 403]
--- response_body_like eval
[qr/"key":"in\/1.txt"/, qr/"code":"BadDigest"/, qr/"key":"in\/2.txt"/,
 qr/"message":"the upload link is used up"/, qr/This upload link is used up/]



=== TEST 7: ten concurrent uploads with a three-file link: exactly three are stored
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my @pids;
for my $k (1 .. 10) {
    my $pid = fork // die;
    if ($pid == 0) {
        exec "curl", "-s", "-o", "/dev/null",
             "-H", "Authorization: Bearer $::Race", "-T", "/etc/hostname",
             "http://127.0.0.1:$port/upload/in/race$k.txt";
    }
    push @pids, $pid;
}
waitpid $_, 0 for @pids;
my $n = () = glob("$ENV{TEST_NGINX_SERVER_ROOT}-persist/store/linkapp/in/race*.txt");
Test::More::is($n, 3, "TEST 7: three files stored of ten tried");
--- request eval
"GET /link/$::Race"
--- error_code: 403
--- response_body_like eval
qr/This upload link is used up/



=== TEST 8: a sliced upload under a link: the size must be declared, within max_size
--- request eval
["POST /upload/in/sliced.bin?uploads\n{}",
 "POST /upload/in/sliced.bin?uploads\n{\"size\":11}",
 "POST /upload/in/sliced.bin?uploads\n{\"size\":5}"]
--- more_headers eval
["Authorization: Bearer $::Small", "Authorization: Bearer $::Small", "Authorization: Bearer $::Small"]
--- error_code eval
[403, 403, 200]
--- response_body_like eval
[qr/"code":"AccessDenied"/, qr/"code":"AccessDenied"/, qr/"upload_id":"[A-Za-z0-9_-]{24}","key":"in\/sliced.bin","app":"linkapp"/]



=== TEST 9: minting refuses prefixes and sizes that would make a dead or odd link; no prefix is ""
--- request eval
["POST /apps/links\n{\"appid\":\"linkapp\"}",
 "POST /apps/links\n{\"appid\":\"linkapp\",\"prefix\":\"a\\u0001b\"}",
 "POST /apps/links\n{\"appid\":\"linkapp\",\"prefix\":\"" . ("p" x 1025) . "\"}",
 "POST /apps/links\n{\"appid\":\"linkapp\",\"max_size\":1e16}",
 "POST /apps/links\n{\"appid\":\"linkapp\",\"max_size\":1.5}"]
--- error_code eval
[201, 400, 400, 400, 400]
--- response_body_like eval
[qr/"url":"\/link\//, qr/"code":"InvalidArgument"/, qr/"code":"InvalidArgument"/,
 qr/"code":"InvalidArgument"/, qr/"code":"InvalidArgument"/]



=== TEST 10: a signature whose last character differs only in its unused bits does not verify
--- request eval
my $t = main::token($::New);
my $abc = CORE::join "", "A" .. "Z", "a" .. "z", "0" .. "9", "-", "_";
my $i = index($abc, substr($t, -1));
substr($t, -1) = substr($abc, $i ^ 1, 1);
["GET /link/$t"]
--- error_code eval
[403]
--- response_body_like eval
[qr/This upload link is invalid/]
