#!/usr/bin/perl
# A TCP proxy in front of Redis that loses one answer: the suites use it to
# make a command run in Redis while its sender never hears back, as when
# Redis goes away between running a command and answering it.
#
#   mute-proxy.pl <listen-port> <redis-port> <marker>...
#
# Every connection is relayed both ways, until a client sends bytes that
# contain a marker: from then on nothing more comes back to that client
# (Redis still gets and runs what it sends).  Each marker mutes only the
# first connection that sends it; later ones are relayed as usual.

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;

my ($port, $redis_port, @markers) = @ARGV;

my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                   LocalPort => $port, Listen => 16,
                                   ReuseAddr => 1)
    or die "mute-proxy: cannot listen on $port: $!\n";

my $select = IO::Select->new($server);
my (%peer, %muted);

sub drop {
    my $s = shift;
    my $p = delete $peer{$s};

    for my $h ($s, $p) {
        next unless $h;
        delete $peer{$h};
        delete $muted{$h};
        $select->remove($h);
        close $h;
    }
}

while (1) {
    for my $s ($select->can_read) {

        if ($s == $server) {
            my $c = $server->accept or next;
            my $r = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                          PeerPort => $redis_port);
            unless ($r) {
                close $c;
                next;
            }
            $peer{$c} = $r;
            $peer{$r} = $c;
            $muted{$r} = 0;
            $select->add($c, $r);
            next;
        }

        my $n = sysread $s, my $buf, 65536;

        unless ($n) {
            drop($s);
            next;
        }

        my $p = $peer{$s} or next;

        if (exists $muted{$p}) {
            # $s is a client and $p its Redis: mute what comes back
            for my $i (0 .. $#markers) {
                next unless index($buf, $markers[$i]) >= 0;
                $muted{$p} = 1;
                splice @markers, $i, 1;
                last;
            }
        }

        next if $muted{$s};

        syswrite $p, $buf;
    }
}
