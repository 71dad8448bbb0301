#!/usr/bin/perl
# Reads `perf script` of raw_syscalls:sys_enter/sys_exit recorded on an nginx
# worker during one upload (bench/profile.sh, PROFILE=trace) and cuts it into
# cycles: one cycle per large recvfrom() of the event loop thread, that is one
# per body buffer nginx fills.  For each cycle it measures:
#
#   recv                  the recvfrom() itself (copy out of the socket)
#   event loop -> lane    from the end of that recv to the first pool thread
#                         coming out of its futex wait (a lane task starts)
#   lane: hash            a lane task without pwrite: its start (the thread
#                         leaves its futex wait, or ends its previous task)
#                         to its eventfd write (ngx_notify: "task done")
#   lane: write           the same for the lane task that calls pwrite
#   pwrite                one pwrite() call
#   lane -> event loop    the last lane's eventfd write to the event loop
#                         thread coming out of epoll_wait
#   event loop            from there to the next recvfrom()
#   cycle                 recv start to the next recv start
#
# usage: perf script -i trace.data | bench/cycles.pl WORKER_PID
use strict;
use warnings;

my $main = shift or die "usage: perf script ... | $0 WORKER_PID\n";

# x86-64 system call numbers
my %nr = (recvfrom => 45, pwrite64 => 18, write => 1, futex => 202,
          epoll_wait => 232);

my @ev;
while (<STDIN>) {
    next unless /^\s*\S+\s+(\d+)\s+\[\d+\]\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+)(?: = (-?\d+))?/;
    push @ev, [$2, $1, $3, $4, $5];
}

sub is { my ($e, $tid, $dir, $n) = @_;
         return ($tid ? $e->[1] == $tid : $e->[1] != $main)
                && $e->[2] eq $dir && $e->[3] == $nr{$n}; }

my @cyc = grep { my $e = $ev[$_];
                 is($e, $main, 'exit', 'recvfrom') && ($e->[4] // 0) >= 32768 }
          0 .. $#ev;

my %s;
my @order = ('recv', 'event loop -> lane', 'lane: hash', 'lane: write',
             'pwrite', 'lane -> event loop', 'event loop', 'cycle');

my ($cycles, $shared) = (0, 0);

for my $i (0 .. $#cyc - 1) {
    my ($ca, $cb) = ($cyc[$i], $cyc[$i + 1]);
    my $j = $ca - 1;
    $j-- while $j >= 0 && !is($ev[$j], $main, 'enter', 'recvfrom');
    next if $j < 0;
    my $k = $cb - 1;
    $k-- while !is($ev[$k], $main, 'enter', 'recvfrom');

    my ($r0, $r1, $next) = ($ev[$j][0], $ev[$ca][0], $ev[$k][0]);
    push @{$s{recv}}, $r1 - $r0;
    push @{$s{bytes}}, $ev[$ca][4];
    push @{$s{cycle}}, $next - $r0;

    # the tasks of the pool threads: a task ends with the eventfd write of
    # ngx_notify(); the next one of the same thread starts right after it
    my (%start, %pwin, %pw, %tasks, @ends, $first);
    for my $e (@ev[$ca .. $k]) {
        my $t = $e->[1];
        next if $t == $main;
        if (is($e, 0, 'exit', 'futex') && !defined $start{$t}) {
            $start{$t} = $e->[0];
            $first = $e->[0] if !defined $first || $e->[0] < $first;
        }
        next unless defined $start{$t};
        $pwin{$t} = $e->[0] if is($e, 0, 'enter', 'pwrite64');
        if (is($e, 0, 'exit', 'pwrite64') && defined $pwin{$t}) {
            $pw{$t} += $e->[0] - $pwin{$t};
            push @{$s{pwrite}}, $e->[0] - $pwin{$t};
            undef $pwin{$t};
        }
        if (is($e, 0, 'enter', 'write')) {
            push @{$s{exists $pw{$t} ? 'lane: write' : 'lane: hash'}},
                $e->[0] - $start{$t};
            push @ends, $e->[0];
            $tasks{$t}++;
            delete $pw{$t};
        }
        $start{$t} = $e->[0] if is($e, 0, 'exit', 'write');
    }
    next unless defined $first && @ends;

    $cycles++;
    $shared++ if grep { $_ > 1 } values %tasks;
    push @{$s{'event loop -> lane'}}, $first - $r1;

    my ($last) = sort { $b <=> $a } @ends;
    my ($wake) = map { $_->[0] }
                 grep { is($_, $main, 'exit', 'epoll_wait') && $_->[0] >= $last }
                 @ev[$ca .. $k];
    next unless defined $wake;
    push @{$s{'lane -> event loop'}}, $wake - $last;
    push @{$s{'event loop'}}, $next - $wake;
}

sub median { my @v = sort { $a <=> $b } @_; my $n = @v;
             return $n % 2 ? $v[($n - 1) / 2] : ($v[$n / 2 - 1] + $v[$n / 2]) / 2; }
sub mean { my $t = 0; $t += $_ for @_; return $t / @_; }

die "no cycles found: is $main the worker, with the trace of an upload?\n"
    unless $s{bytes};

printf "  %d cycles, recv of %.0f KiB (median)\n",
    scalar @{$s{bytes}}, median(@{$s{bytes}}) / 1024;
printf "  %d of %d cycles had both lanes run one after the other by one pool thread\n",
    $shared, $cycles;
printf "  %-22s %8s %8s %8s\n", '', 'median', 'mean', 'p90';
for my $k (@order) {
    next unless $s{$k};
    my @v = sort { $a <=> $b } @{$s{$k}};
    printf "  %-22s %6.0f us %5.0f us %5.0f us  (n=%d)\n", $k,
        median(@v) * 1e6, mean(@v) * 1e6, $v[int(@v * 0.9)] * 1e6, scalar @v;
}
