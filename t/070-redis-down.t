# Redis down or slow: uploads answer 503 ServiceUnavailable (JSON) before
# any body is stored, other locations keep being served, and the service
# comes back by itself when Redis does, without touching nginx.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use POSIX ();
use IO::Socket::INET;
use Digest::SHA ();

repeat_each(1);
no_shuffle();
log_level('info');
check_accum_error_log();

$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

# this file's own Redis, which the blocks stop and start through ctl-server
$ENV{TEST_NGINX_OWN_REDIS_PORT} ||= ($ENV{TEST_NGINX_REDIS_PORT} || 6379) + 100;
$ENV{TEST_NGINX_CTL_PORT} ||= 1999;

my $ctl_dir = "/tmp/upload-test-redis-$$";
my $ctl_pid = fork();

if ($ctl_pid == 0) {
    exec($^X, "$FindBin::Bin/util/ctl-server.pl", $ENV{TEST_NGINX_CTL_PORT},
         $ENV{TEST_NGINX_OWN_REDIS_PORT}, $ctl_dir) or POSIX::_exit(1);
}

END {
    if ($ctl_pid) {
        kill 'TERM', $ctl_pid;
        waitpid $ctl_pid, 0;
        system("rm", "-rf", $ctl_dir);
    }
}

sleep 1;

sub ctl {
    my $what = shift;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_CTL_PORT})
        or die "ctl-server: $!";
    print $s "GET /redis/$what HTTP/1.0\r\n\r\n";
    local $/;
    my $resp = <$s>;
    die "ctl-server: $what failed" unless $resp =~ /^HTTP\/1.1 200/;
}

our $RedisDownConfig = <<"_EOC_";
    upload_redis 127.0.0.1:$ENV{TEST_NGINX_OWN_REDIS_PORT};
    upload_redis_timeout 1s;
    upload_store \$TEST_NGINX_HTML_DIR/store;
_EOC_

our $Locations = <<'_EOC_';
    location /upload/ { upload on; }
    location /static { return 200 "static ok\n"; }
    location /ctl/ { proxy_pass http://127.0.0.1:$TEST_NGINX_CTL_PORT/; }
    location /tmpfiles/ {
        alias $TEST_NGINX_HTML_DIR/store/.upload-tmp/;
        autoindex on;
        autoindex_format json;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $RedisDownConfig)
        unless defined $block->http_config;
    $block->set_value("config", $Locations) unless defined $block->config;
});

run_tests();

__DATA__

=== TEST 1: Redis stops, uploads get 503 and nothing is stored, Redis returns, uploads work again
--- request eval
["PUT /upload/before\nbefore",
 "GET /ctl/redis/stop",
 "PUT /upload/during\nduring",
 "GET /upload/before?meta",
 "DELETE /upload/before",
 "GET /static",
 "GET /tmpfiles/",
 "GET /ctl/redis/start?settle=2.5",
 "PUT /upload/after\nafter",
 "GET /upload/after?meta"]
--- error_code eval
[201, 200, 503, 503, 503, 200, 200, 200, 201, 200]
--- response_body_like eval
[qr/"key":"before"/,
 qr/^ok$/,
 qr/^\{"error":\{"code":"ServiceUnavailable","message":"the metadata store \(Redis\) is not available, try again later"\}\}$/,
 qr/"code":"ServiceUnavailable"/,
 qr/"code":"ServiceUnavailable"/,
 qr/^static ok$/,
 qr/^\[\s*\]\s*$/,
 qr/^ok$/,
 qr/"key":"after"/,
 qr/"key":"after"/]
--- timeout: 15
--- no_error_log
[alert]
[crit]



=== TEST 2: the operator is told why in the error log
--- init
main::ctl("stop");
--- request
PUT /upload/x
x
--- error_code: 503
--- error_log eval
qr/\[error\] .*upload: redis 127\.0\.0\.1:\d+ connect failed: Connection refused/
--- no_error_log
[alert]
[crit]



=== TEST 3: with Redis back, a fresh nginx connects at once
--- init
main::ctl("start");
--- request
PUT /upload/back
back
--- error_code: 201
--- response_body_like: "key":"back"



=== TEST 4: Redis killed in the middle of a complete: 503 and nothing at the key; with Redis back, the retried complete takes the session over and stores the object once
--- http_config eval
"upload_redis 127.0.0.1:$ENV{TEST_NGINX_OWN_REDIS_PORT};
upload_redis_timeout 1s;
upload_store \$TEST_NGINX_HTML_DIR/store;
upload_complete_lease 2s;"
--- init
main::ctl("start");
my $html = $ENV{TEST_NGINX_HTML_DIR};
my $url = "http://127.0.0.1:" . ($ENV{TEST_NGINX_SERVER_PORT} || 1984) . "/upload/mid.bin";
# two parts of 16 MiB: long enough a merge to be caught in the middle
my ($id, $sha) = UploadTest::sliced_two_big_parts($html, "mid.bin", "A", "B");
my $pid = UploadTest::complete_in_background($url, $id, $html, "$html/answer1");
# the complete has taken the session: freeze nginx, kill Redis, go on
Test::More::ok(UploadTest::wait_session_state($ENV{TEST_NGINX_OWN_REDIS_PORT},
                   "default", $id, "completing"),
               "TEST 4: the complete took the session");
open my $p, '<', "$ENV{TEST_NGINX_SERVER_ROOT}/logs/nginx.pid" or die;
chomp(my $nginx = <$p>);
kill 'STOP', $nginx;
main::ctl("kill");
kill 'CONT', $nginx;
waitpid $pid, 0;
my $answer = do { local (@ARGV, $/) = "$html/answer1"; <> } // '';
Test::More::like($answer, qr/"code":"ServiceUnavailable"/, "TEST 4: the complete answered 503");
Test::More::ok(!-e "$html/store/default/mid.bin", "TEST 4: nothing at the key");
main::ctl("start?settle=2.5");
# the failed complete could not give the session back: Redis was away
Test::More::is(scalar qx{redis-cli -p $ENV{TEST_NGINX_OWN_REDIS_PORT} hget upload:{default}:mpu:$id state},
               "completing\n", "TEST 4: the session is still taken after the restart");
$answer = qx{curl -s -X POST --data-binary '\@$html/complete.json' '$url?uploadId=$id'};
Test::More::like($answer, qr/"key":"mid.bin".*"sha256":"$sha"/, "TEST 4: the retried complete stored the object");
Test::More::is(Digest::SHA->new(256)->addfile("$html/store/default/mid.bin")->hexdigest,
               $sha, "TEST 4: the object has the parts' bytes");
$answer = qx{curl -s -X POST --data-binary '\@$html/complete.json' '$url?uploadId=$id'};
Test::More::like($answer, qr/"key":"mid.bin".*"sha256":"$sha"/, "TEST 4: a third complete gets the same answer");
my @left;
for (1 .. 50) {
    @left = grep { !m{/p[12]$} } glob("$html/store/.upload-tmp/*");
    last unless @left;
    select undef, undef, undef, 0.1;
}
Test::More::is("@left", "", "TEST 4: no temporary file left");
--- request
GET /upload/mid.bin?meta
--- error_code: 200
--- response_body_like: "size":33554432,
--- error_log
could not be reopened after a failed complete
takes over from an earlier one whose lease lapsed
--- timeout: 20

