# Redis down or slow: uploads answer 503 ServiceUnavailable (JSON) before
# any body is stored, other locations keep being served, and the service
# comes back by itself when Redis does, without touching nginx.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use POSIX ();
use IO::Socket::INET;

repeat_each(1);
no_shuffle();
log_level('info');

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
