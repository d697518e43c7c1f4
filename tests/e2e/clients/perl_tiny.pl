#!/usr/bin/perl
# Common client interface, Perl HTTP::Tiny: keep_alive for all --repeat requests;
# --chunked passes the body as a code ref, which HTTP::Tiny sends chunked; --timeout S
# (default 30) is HTTP::Tiny's own (a select before each read of its blocking socket).
use strict;
use warnings;
use HTTP::Tiny;
delete @ENV{qw(http_proxy HTTP_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY)};

my ($method, $url, @rest) = @ARGV;
my (%headers, $body, $chunked);
my $repeat = 1;
my $timeout = 30;
while (@rest) {
    my $a = shift @rest;
    if ($a eq '--data-file') {
        my $f = shift @rest;
        open(my $fh, '<:raw', $f) or die "open $f: $!";
        local $/; $body = <$fh>; close $fh;
    } elsif ($a eq '--header') {
        my ($k, $v) = split(/:/, shift @rest, 2);
        $k =~ s/^\s+|\s+$//g; $v =~ s/^\s+|\s+$//g;
        $headers{$k} = $v;
    } elsif ($a eq '--repeat') { $repeat = shift @rest; }
    elsif ($a eq '--chunked') { $chunked = 1; }
    elsif ($a eq '--timeout') { $timeout = shift @rest; }
    elsif ($a eq '--verbose') { }
    else { print STDERR "perl_tiny.pl: unknown option $a\n"; exit 2; }
}
my $http = HTTP::Tiny->new(keep_alive => 1, timeout => $timeout, proxy => undef, http_proxy => undef);
binmode STDOUT;
my $rc = 0;
for (1 .. $repeat) {
    my %opt = (headers => {%headers});
    if (defined $body) {
        if ($chunked) {
            my $off = 0;
            $opt{content} = sub {
                return undef if $off >= length $body;
                my $c = substr($body, $off, 65536); $off += length $c; return $c;
            };
        } else {
            $opt{content} = $body;
        }
    }
    my $res = $http->request($method, $url, \%opt);
    print $res->{content} if defined $res->{content} && $res->{status} != 599;
    if (!$res->{success}) {
        print STDERR "status $res->{status}: $res->{reason}\n";
        print STDERR $res->{content} if $res->{status} == 599;
        $rc = 1;
    }
}
exit $rc;
