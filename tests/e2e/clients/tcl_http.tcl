# Common client interface, Tcl 8.6's http package: -keepalive for all --repeat requests
# (one connection). Tcl's notifier runs select() in a thread of its own, on behalf of the
# thread that reads: a wait in one thread, the read in another. No chunked upload (the
# http package sends a body with its length only).
package require http

proc usage {} { puts stderr "usage: tcl_http.tcl METHOD URL \[options\]"; exit 2 }
if {[llength $argv] < 2} usage
lassign $argv method url
set body ""
set hasBody 0
set headers {}
set repeat 1
set contentType ""
set rest [lrange $argv 2 end]
while {[llength $rest]} {
    set rest [lassign $rest opt]
    switch -- $opt {
        --data-file {
            set rest [lassign $rest path]
            set f [open $path rb]; set body [read $f]; close $f; set hasBody 1
        }
        --header {
            set rest [lassign $rest value]
            set i [string first : $value]
            set name [string trim [string range $value 0 [expr {$i - 1}]]]
            set val [string trim [string range $value [expr {$i + 1}] end]]
            if {[string tolower $name] eq "content-type"} { set contentType $val } else {
                lappend headers $name $val
            }
        }
        --repeat { set rest [lassign $rest repeat] }
        --verbose { }
        --chunked { puts stderr "tcl_http.tcl: --chunked is not supported"; exit 2 }
        default { puts stderr "tcl_http.tcl: unknown option $opt"; exit 2 }
    }
}
fconfigure stdout -translation binary
set rc 0
for {set n 0} {$n < $repeat} {incr n} {
    set opts [list -keepalive 1 -timeout 30000 -binary 1 -headers $headers]
    # A HEAD is -validate: with -method HEAD the package waits for a body.
    if {$method eq "HEAD"} { lappend opts -validate 1 } else { lappend opts -method $method }
    if {$hasBody} {
        if {$contentType eq ""} { set contentType application/octet-stream }
        lappend opts -query $body -type $contentType
    }
    if {[catch {set tok [http::geturl $url {*}$opts]} err]} {
        puts stderr "tcl_http.tcl: $err"
        exit 1
    }
    set status [http::status $tok]
    if {$status ne "ok"} {
        puts stderr "tcl_http.tcl: $status [http::error $tok]"
        set rc 1
    } else {
        puts -nonewline [http::data $tok]
        flush stdout
        set code [http::ncode $tok]
        if {$code < 200 || $code > 299} { puts stderr "status $code"; set rc 1 }
    }
    http::cleanup $tok
}
exit $rc
