# nginx -s reload, and a binary upgrade (USR2), with 20 uploads in flight:
# each either completes with the right bytes or fails cleanly (nothing at
# its key) and can be retried; a complete cut short by its worker leaving
# gives its session back.

# Under valgrind a reload takes the old worker seconds to leave and its
# in-flight connections are cut: that measures valgrind, not the module.
BEGIN {
    if ($ENV{TEST_NGINX_USE_VALGRIND}) {
        print "1..0 # SKIP a reload under valgrind proves nothing about "
              . "the module\n";
        exit 0;
    }
}

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use Digest::SHA ();
use Digest::MD5 ();

upload_suite();
master_on();

our $Config = <<'_EOC_';
    location /upload/ { upload on; }
    location /files/ { alias $TEST_NGINX_SERVER_ROOT-persist/store/; }
_EOC_

# 20 uploads of the same 1 MB file, rate-limited to take about 4 s each,
# to keys <dir>/1.bin .. <dir>/20.bin; returns the SHA-256 of the file and
# the curl processes
sub start_uploads {
    my $dir = shift;
    my $root = "$ENV{TEST_NGINX_SERVER_ROOT}-persist";
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
    my $file = "$root/src.bin";
    open my $f, '>', $file or die;
    print $f join("", map { sprintf "%09d\n", $_ } 1 .. 100000);
    close $f;
    my %pid;
    for my $k (1 .. 20) {
        my $pid = fork // die;
        if ($pid == 0) {
            exec "curl", "-s", "-o", "$root/answer$k", "--limit-rate", "250k",
                 "-T", $file, "http://127.0.0.1:$port/upload/$dir/$k.bin";
        }
        $pid{$k} = $pid;
    }
    return (Digest::SHA->new(256)->addfile($file)->hexdigest, values %pid);
}

# waits for the uploads; how many stored their bytes, and how many left
# nothing at their key
sub upload_results {
    my ($dir, $sha, @pids) = @_;
    my $root = "$ENV{TEST_NGINX_SERVER_ROOT}-persist";
    my ($ok, $clean) = (0, 0);
    waitpid $_, 0 for @pids;
    for my $k (1 .. 20) {
        my $answer = do { local (@ARGV, $/) = "$root/answer$k"; <> } // '';
        my $stored = "$root/store/default/$dir/$k.bin";
        if ($answer =~ /"sha256":"$sha"/) {
            $ok++ if -e $stored
                     && Digest::SHA->new(256)->addfile($stored)->hexdigest eq $sha;
        } else {
            $clean++ unless -e $stored;
        }
    }
    return ($ok, $clean);
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $UploadTest::PersistHttpConfig)
        unless defined $block->http_config;
    $block->set_value("config", $::Config);
});

run_tests();

__DATA__

=== TEST 1: a reload while 20 uploads are in flight
--- init
UploadTest::clear_persist();
# about 4 s each: the reload comes in the middle
my ($sha, @pids) = main::start_uploads("r");
sleep 1;
open my $p, '<', "$ENV{TEST_NGINX_SERVER_ROOT}/logs/nginx.pid" or die;
chomp(my $master = <$p>);
kill 'HUP', $master;
my ($ok, $clean) = main::upload_results("r", $sha, @pids);
Test::More::is($ok + $clean, 20, "TEST 1: every upload completed with its bytes or left nothing ($ok completed)");
--- request
PUT /upload/r/retry.bin
retried after the reload
--- error_code: 201
--- error_log
reconfiguring
--- timeout: 30



=== TEST 2: a binary upgrade (USR2, WINCH, QUIT) while 20 uploads are in flight
--- init
UploadTest::clear_persist();
my $logs = "$ENV{TEST_NGINX_SERVER_ROOT}/logs";
# about 4 s each: the upgrade comes in the middle
my ($sha, @pids) = main::start_uploads("u");
sleep 1;
open my $p, '<', "$logs/nginx.pid" or die;
chomp(my $old = <$p>);
close $p;
# the new master starts from the same binary, inherits the listening
# sockets and writes nginx.pid; the old one renames its own to .oldbin
kill 'USR2', $old;
my $new;
for (1 .. 100) {
    select undef, undef, undef, 0.1;
    next unless -e "$logs/nginx.pid.oldbin" && open $p, '<', "$logs/nginx.pid";
    chomp($new = <$p> // '');
    close $p;
    last if $new =~ /^\d+$/ && $new != $old;
}
Test::More::ok($new && $new != $old, "TEST 2: a new master runs beside the old one");
# the old workers finish what they serve and leave; then the old master
kill 'WINCH', $old;
kill 'QUIT', $old;
my ($ok, $clean) = main::upload_results("u", $sha, @pids);
for (1 .. 100) { last unless kill 0, $old; select undef, undef, undef, 0.1 }
Test::More::ok(!kill(0, $old), "TEST 2: the old master has left");
Test::More::is($ok + $clean, 20, "TEST 2: every upload completed with its bytes or left nothing ($ok completed)");
# a graceful upgrade lets the uploads in flight finish
Test::More::is($ok, 20, "TEST 2: all 20 uploads completed across the upgrade");
--- request
PUT /upload/u/retry.bin
sent to the new binary's workers
--- error_code: 201
--- error_log
changing binary
start new binary process
--- timeout: 30



=== TEST 3: a worker that leaves (a reload, then worker_shutdown_timeout) while a complete's start still awaits its answer gives the session back
--- main_config
worker_shutdown_timeout 1s;
--- http_config eval
"upload_redis 127.0.0.1:$ENV{TEST_NGINX_MUTE_PORT};
upload_redis_timeout 5s;
upload_store \$TEST_NGINX_SERVER_ROOT-persist/store;"
--- init
UploadTest::clear_persist();
# Redis runs the start, its answer is lost: the complete waits for it
UploadTest::mute_proxy("'state', 'completing', 'holder'");
my $id = "leavingleavingleaving001";
my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
UploadTest::make_session("default", "leave.bin", $id, 2);
my $body = '{"parts":[' . join(",", map { qq({"part_number":$_,"etag":") . Digest::MD5::md5_hex($_) . '"}' } 1, 2) . ']}';
my $pid = fork // die;
if ($pid == 0) {
    exec "curl", "-s", "-o", "/dev/null", "-X", "POST", "--data-binary", $body,
         "http://127.0.0.1:$port/upload/leave.bin?uploadId=$id";
}
Test::More::ok(UploadTest::wait_session_state($ENV{TEST_NGINX_REDIS_PORT},
                   "default", $id, "completing"),
               "TEST 3: the complete's start ran");
# the old worker ends the request after 1 s: its cleanup gives the
# session back (its start's own timeout, 5 s, can no longer do it)
open my $p, '<', "$ENV{TEST_NGINX_SERVER_ROOT}/logs/nginx.pid" or die;
chomp(my $master = <$p>);
kill 'HUP', $master;
Test::More::ok(UploadTest::wait_session_state($ENV{TEST_NGINX_REDIS_PORT},
                   "default", $id, "open"),
               "TEST 3: the session is open again");
Test::More::is(scalar qx{redis-cli -p $ENV{TEST_NGINX_REDIS_PORT} hexists upload:{default}:mpu:$id holder},
               "0\n", "TEST 3: no holder");
waitpid $pid, 0;
--- request
GET /upload/leave.bin?uploadId=leavingleavingleaving001
--- error_code: 200
--- response_body_like: "parts":\[\{"part_number":1,
--- error_log
reconfiguring
--- timeout: 30
