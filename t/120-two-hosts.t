# Two nginx instances sharing one store directory and one Redis act as
# one service: the parts of an upload go to both, and either completes it.
#
# Test::Nginx runs instance A; this file starts instance B itself, on
# TEST_NGINX_SERVER_PORT + 2, and A reaches it through /hostb/.

use FindBin;
use lib "$FindBin::Bin/util";
use Test::Nginx::Socket 'no_plan';
use UploadTest;
use Digest::MD5 qw(md5_hex);
use File::Path qw(make_path remove_tree);
use Cwd qw(abs_path);
use Digest::SHA ();

upload_suite();
check_accum_error_log();

our $PortB = ($ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984) + 2;
our $Shared = abs_path("$FindBin::Bin") . "/servroot-shared";
my $dir_b = "$Shared/b";

$ENV{TEST_NGINX_SHARED_DIR} = $Shared;
$ENV{TEST_NGINX_PORT_B} = $PortB;

sub start_b {
    remove_tree($Shared);
    make_path("$dir_b/logs", "$dir_b/conf", "$Shared/store");

    my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');
    my $load = join '', map { "load_module $_;\n" } @modules;

    open my $conf, '>', "$dir_b/conf/nginx.conf" or die $!;
    print $conf <<"_EOC_";
${load}user root;
daemon on;
master_process on;
worker_processes 1;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 64; }
http {
    client_body_temp_path $dir_b/body;
    proxy_temp_path $dir_b/proxy;
    fastcgi_temp_path $dir_b/fastcgi;
    uwsgi_temp_path $dir_b/uwsgi;
    scgi_temp_path $dir_b/scgi;
    access_log logs/access.log;
    upload_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};
    upload_store $Shared/store;
    upload_complete_lease 2s;
    server {
        listen 127.0.0.1:$PortB;
        location /upload/ { upload on; upload_min_part_size 1; }
    }
}
_EOC_
    close $conf;

    my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    system($bin, "-p", "$dir_b/", "-c", "conf/nginx.conf") == 0
        or die "cannot start nginx B";
    select(undef, undef, undef, 0.3);
}

sub stop_b {
    if (open my $fh, '<', "$dir_b/logs/nginx.pid") {
        my $pid = <$fh>;
        chomp $pid;
        kill 'QUIT', $pid if $pid;
        select(undef, undef, undef, 0.3);
    }
}

# the worker processes of instance B
sub b_workers {
    UploadTest::worker_pids_of("$dir_b/logs/nginx.pid");
}

END {
    stop_b();
    remove_tree($Shared);
}

our $A1 = "from-host-a|";
our $B2 = "from-host-b|";
our $A3 = "again-host-a";
our $List = '{"parts":[{"part_number":1,"etag":"' . md5_hex($A1)
    . '"},{"part_number":2,"etag":"' . md5_hex($B2)
    . '"},{"part_number":3,"etag":"' . md5_hex($A3) . '"}]}';

run_tests();

__DATA__

=== TEST 1: parts to A and to B, complete on B, the object read on A
--- init
main::start_b();
UploadTest::make_session("default", "shared/obj.txt", "sharedsharedsharedshared");
--- http_config
    upload_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    upload_store $TEST_NGINX_SHARED_DIR/store;
--- config
    location /upload/ { upload on; upload_min_part_size 1; }
    location /hostb/ { proxy_pass http://127.0.0.1:$TEST_NGINX_PORT_B/; }
    location /files/ { alias $TEST_NGINX_SHARED_DIR/store/; }
--- request eval
["PUT /upload/shared/obj.txt?uploadId=sharedsharedsharedshared&partNumber=1\n$::A1",
 "PUT /hostb/upload/shared/obj.txt?uploadId=sharedsharedsharedshared&partNumber=2\n$::B2",
 "PUT /upload/shared/obj.txt?uploadId=sharedsharedsharedshared&partNumber=3\n$::A3",
 "GET /hostb/upload/shared/obj.txt?uploadId=sharedsharedsharedshared",
 "POST /hostb/upload/shared/obj.txt?uploadId=sharedsharedsharedshared\n$::List",
 "POST /upload/shared/obj.txt?uploadId=sharedsharedsharedshared\n$::List",
 "GET /files/default/shared/obj.txt",
 "GET /upload/shared/obj.txt?meta",
 "GET /hostb/upload/shared/obj.txt?meta"]
--- error_code eval
[200, 200, 200, 200, 200, 200, 200, 200, 200]
--- response_body_like eval
[qr/"part_number":1,/, qr/"part_number":2,/, qr/"part_number":3,/,
 qr/"parts":\[\{"part_number":1,[^\]]*"part_number":2,[^\]]*"part_number":3,/,
 qr/^\{"key":"shared\/obj.txt","app":"default","size":36,"etag":"[0-9a-f]{32}-3",/,
 qr/^\{"key":"shared\/obj.txt","app":"default","size":36,"etag":"[0-9a-f]{32}-3",/,
 qr/^\Q$::A1$::B2$::A3\E$/,
 qr/"etag":"[0-9a-f]{32}-3"/,
 qr/"etag":"[0-9a-f]{32}-3"/]
--- no_error_log
[alert]
[crit]



=== TEST 4: a complete cut off longer than its lease (here: frozen mid-merge) is taken over on the other host; woken while the other one runs, its record is refused (409); the object is the other complete's
--- init
main::start_b() unless -e "$::Shared/b/logs/nginx.pid";
my $dir = "$::Shared/store";
my $url = "http://127.0.0.1:" . ($ENV{TEST_NGINX_SERVER_PORT} || 1984) . "/upload/frozen.bin";
my $url_b = "http://127.0.0.1:$::PortB/upload/frozen.bin";
my ($id, $sha) = UploadTest::sliced_two_big_parts($dir, "frozen.bin", "x", "y");
my $pid_a = UploadTest::complete_in_background($url, $id, $dir, "$dir/answer-a");
Test::More::ok(UploadTest::wait_session_state($ENV{TEST_NGINX_REDIS_PORT},
                   "default", $id, "completing"),
               "TEST 4: A's complete took the session");
open my $p, '<', "$ENV{TEST_NGINX_SERVER_ROOT}/logs/nginx.pid" or die;
chomp(my $a = <$p>);
kill 'STOP', $a;
# A's 2 s lease lapses; B's complete takes over, and is frozen in turn
sleep 3;
my @b = main::b_workers();
my $pid_b = UploadTest::complete_in_background($url_b, $id, $dir, "$dir/answer-b");
my $took;
for (1 .. 5000) {
    $took = do { local (@ARGV, $/) = "$::Shared/b/logs/error.log"; <> } =~ /takes over/;
    last if $took;
    select undef, undef, undef, 0.001;
}
kill 'STOP', @b;
Test::More::ok($took, "TEST 4: B's complete took the session over");
kill 'CONT', $a;
waitpid $pid_a, 0;
kill 'CONT', @b;
waitpid $pid_b, 0;
my $answer = do { local (@ARGV, $/) = "$dir/answer-a"; <> } // '';
Test::More::like($answer, qr/"code":"OperationAborted","message":"another complete of this upload took it over"/,
                 "TEST 4: A's complete, awake again, stored nothing");
$answer = do { local (@ARGV, $/) = "$dir/answer-b"; <> } // '';
Test::More::like($answer, qr/"key":"frozen.bin".*"sha256":"$sha"/, "TEST 4: B's complete stored the object");
Test::More::is(Digest::SHA->new(256)->addfile("$dir/default/frozen.bin")->hexdigest, $sha,
               "TEST 4: the object is whole");
unlink "$dir/p1", "$dir/p2", "$dir/complete.json", "$dir/answer-a", "$dir/answer-b";
--- http_config
    upload_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    upload_store $TEST_NGINX_SHARED_DIR/store;
    upload_complete_lease 2s;
--- config
    location /upload/ { upload on; upload_min_part_size 1; }
    location /files/ { alias $TEST_NGINX_SHARED_DIR/store/; }
--- request
GET /upload/frozen.bin?meta
--- error_code: 200
--- response_body_like: "size":33554432,
--- error_log
not recorded: its complete lost its lease to another one
--- no_error_log
[alert]
[crit]

