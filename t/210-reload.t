# nginx -s reload with 20 uploads in flight: each either completes with
# the right bytes or fails cleanly (nothing at its key) and can be retried.

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

upload_suite();
master_on();

our $Config = <<'_EOC_';
    location /upload/ { upload on; }
    location /files/ { alias $TEST_NGINX_SERVER_ROOT-persist/store/; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config", $UploadTest::PersistHttpConfig);
    $block->set_value("config", $::Config);
});

run_tests();

__DATA__

=== TEST 1: a reload while 20 uploads are in flight
--- init
UploadTest::clear_persist();
my $root = "$ENV{TEST_NGINX_SERVER_ROOT}-persist";
my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my $file = "$root/src.bin";
open my $f, '>', $file or die; print $f join("", map { sprintf "%09d\n", $_ } 1 .. 100000); close $f;
my $sha = Digest::SHA->new(256)->addfile($file)->hexdigest;
my %pid;
for my $k (1 .. 20) {
    my $pid = fork // die;
    if ($pid == 0) {
        # about 4 s each: the reload comes in the middle
        exec "curl", "-s", "-o", "$root/answer$k",
             "--limit-rate", "250k", "-T", $file,
             "http://127.0.0.1:$port/upload/r/$k.bin";
    }
    $pid{$k} = $pid;
}
sleep 1;
open my $p, '<', "$ENV{TEST_NGINX_SERVER_ROOT}/logs/nginx.pid" or die;
chomp(my $master = <$p>);
kill 'HUP', $master;
waitpid $pid{$_}, 0 for keys %pid;
my ($ok, $clean) = (0, 0);
for my $k (1 .. 20) {
    my $answer = do { local (@ARGV, $/) = "$root/answer$k"; <> } // '';
    my $stored = "$root/store/default/r/$k.bin";
    if ($answer =~ /"sha256":"$sha"/) {
        $ok++ if -e $stored && Digest::SHA->new(256)->addfile($stored)->hexdigest eq $sha;
    } else {
        $clean++ unless -e $stored;
    }
}
Test::More::is($ok + $clean, 20, "TEST 1: every upload completed with its bytes or left nothing ($ok completed)");
--- request
PUT /upload/r/retry.bin
retried after the reload
--- error_code: 201
--- error_log
reconfiguring
--- timeout: 30
