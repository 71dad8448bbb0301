#!/usr/bin/perl
# A tiny HTTP control server for the suites: lets a test block stop and
# start its own redis-server between two requests, through nginx.
#
#   ctl-server.pl <listen-port> <redis-port> <redis-dir>
#
#   GET /redis/stop    SHUTDOWN NOSAVE, waits until the port is closed
#   GET /redis/kill    kill -9, waits until the port is closed
#   GET /redis/start   starts it again, waits until it answers PING, then
#                      sleeps "?settle=<seconds>" (default 0)
#
# Redis keeps its data in an append-only file synced at every write, as a
# production Redis would: what it acknowledged survives a kill -9.

use strict;
use warnings;

use IO::Socket::INET;
use Time::HiRes qw(sleep time);

my ($port, $redis_port, $dir) = @ARGV;

my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                   LocalPort => $port, Listen => 16,
                                   ReuseAddr => 1)
    or die "ctl-server: cannot listen on $port: $!\n";

sub redis_up {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $redis_port, Timeout => 1);
    return 0 unless $s;
    print $s "PING\r\n";
    my $line = <$s> // '';
    return $line =~ /PONG/ ? 1 : 0;
}

sub redis_start {
    mkdir $dir;
    system("redis-server --port $redis_port --bind 127.0.0.1 --save '' "
           . "--appendonly yes --appendfsync always "
           . "--daemonize yes --dir $dir --pidfile $dir/redis.pid "
           . "--logfile $dir/redis.log") == 0 or return 0;
    for (1 .. 100) {
        return 1 if redis_up();
        sleep 0.05;
    }
    return 0;
}

sub redis_stop {
    system("redis-cli -p $redis_port shutdown nosave >/dev/null 2>&1");
    for (1 .. 100) {
        return 1 unless redis_up();
        sleep 0.05;
    }
    return 0;
}

sub redis_kill {
    open my $f, '<', "$dir/redis.pid" or return 0;
    chomp(my $pid = <$f> // '');
    kill 'KILL', $pid if $pid =~ /^\d+$/;
    for (1 .. 100) {
        return 1 unless redis_up();
        sleep 0.05;
    }
    return 0;
}

redis_start() or die "ctl-server: cannot start redis on $redis_port\n";

$SIG{TERM} = sub { redis_stop(); exit 0 };

while (my $c = $server->accept) {
    my $line = <$c> // '';
    while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }

    my ($path, $query) = $line =~ m{^\w+ (/[^? ]*)\??(\S*)};
    my ($settle) = ($query // '') =~ /settle=([\d.]+)/;
    my $ok;

    if (($path // '') eq '/redis/stop') {
        $ok = redis_stop();

    } elsif (($path // '') eq '/redis/kill') {
        $ok = redis_kill();

    } elsif (($path // '') eq '/redis/start') {
        $ok = redis_start();
        sleep $settle if $ok && $settle;

    } else {
        $ok = 0;
    }

    my $body = $ok ? "ok\n" : "failed\n";
    print $c "HTTP/1.1 " . ($ok ? "200 OK" : "500 Error") . "\r\n"
             . "Content-Length: " . length($body) . "\r\n"
             . "Connection: close\r\n\r\n$body";
    close $c;
}
