#!/usr/bin/env bash
# Build the c-tests programs into c-tests/bin/ and check that the fortified ones
# really import glibc's _chk entry points. Usage: c-tests/build.sh [CC]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cc="${1:-${CC:-gcc}}"
bin="$here/bin"
mkdir -p "$bin"
cflags=(-O2 -D_FORTIFY_SOURCE=2 -Wall -Wextra -Werror -std=gnu11)

fresher_than_headers() { # binary
	local h
	for h in "$here"/*.h; do
		[[ "$1" -nt "$h" ]] || return 1
	done
}

build() { # name source [extra flags...] [-- libraries...]
	local name="$1" src="$2"
	shift 2
	local out="$bin/$name" flags=() libs=()
	while [[ $# -gt 0 && "$1" != "--" ]]; do flags+=("$1"); shift; done
	[[ $# -gt 0 ]] && shift && libs=("$@")
	# rebuild when the source, a header or this script is newer than the binary
	if [[ -x "$out" && "$out" -nt "$here/$src" && "$out" -nt "$here/build.sh" ]] &&
		fresher_than_headers "$out"; then
		return
	fi
	# libraries after the source, so that --as-needed linkers keep them
	"$cc" "${cflags[@]}" "${flags[@]}" -o "$out.tmp" "$here/$src" "${libs[@]}"
	mv -f "$out.tmp" "$out"
}

for src in send_bytewise writev_split sendmsg_iov pipeline nonblock_epoll dup2_move \
	fcntl_dupfd fork_connect getpeername recvmsg_iov readv_iov sendto_null msg_peek \
	shutdown_wr keepalive_seq keepalive_loop v4mapped wrong_family socket_reuse connect_again \
	connect_pending; do
	build "$src" "$src.c"
done
build threads threads.c -pthread
build program_shutdown program_shutdown.c -pthread
build thread_cancel thread_cancel.c -pthread
build move_race move_race.c -pthread
build move_reset_race move_reset_race.c -pthread
build move_reset_race_epoll move_reset_race.c -pthread -DWAIT_EPOLL
build first_answer_race first_answer_race.c -pthread
build reader_first reader_first.c -pthread
build reader_first_poll reader_first.c -pthread -DWAIT_POLL
build reader_first_select reader_first.c -pthread -DWAIT_SELECT
build reader_first_epoll reader_first.c -pthread -DWAIT_EPOLL
build banner_read banner_read.c
build banner_epoll banner_read.c -DWAIT_EPOLL
build fork_during_setup fork_during_setup.c -pthread
build rcvtimeo_wait rcvtimeo_wait.c -pthread
build retry_close_reuse retry_close_reuse.c
build recovery_close_race recovery_close_race.c
build recovery_without_thread recovery_without_thread.c
build recovery_helper_panics recovery_without_thread.c -DHELPER_PANICS
build keepalive_loop_epoll keepalive_loop.c -DWAIT_EPOLL
build nonblock_epoll_et nonblock_epoll.c -DWAIT_EPOLLET
build nonblock_poll nonblock_epoll.c -DWAIT_POLL
build nonblock_select nonblock_epoll.c -DWAIT_SELECT
build nonblock_select_reconnect nonblock_epoll.c -DWAIT_SELECT -DCHECK_BY_CONNECT
build nonblock_poll_write nonblock_epoll.c -DWAIT_POLL -DCHECK_BY_WRITE
build nonblock_epoll_post nonblock_epoll.c -DPOST_BYTES=2000000
build nonblock_epoll_et_post nonblock_epoll.c -DWAIT_EPOLLET -DPOST_BYTES=2000000
build nonblock_epoll_et_short nonblock_epoll.c -DWAIT_EPOLLET -DSHORT_READ_WAITS
build nonblock_epoll_et_short_readv nonblock_epoll.c -DWAIT_EPOLLET -DSHORT_READ_WAITS -DREAD_BY_READV
build nonblock_epoll_et_fionread nonblock_epoll.c -DWAIT_EPOLLET -DSHORT_READ_WAITS -DREAD_BY_READV \
	-DCOUNT_BY_FIONREAD
build nonblock_epoll_et_sendfile nonblock_epoll.c -DWAIT_EPOLLET -DPOST_BYTES=2000000 \
	-DBODY_BY_SENDFILE=1
build nonblock_poll_sendfile nonblock_epoll.c -DWAIT_POLL -DPOST_BYTES=2000000 -DBODY_BY_SENDFILE=2
build nonblock_epoll_splice nonblock_epoll.c -DPOST_BYTES=2000000 -DBODY_BY_SPLICE -DANSWER_BY_SPLICE
build nonblock_epoll_et_splice nonblock_epoll.c -DWAIT_EPOLLET -DPOST_BYTES=2000000 -DBODY_BY_SPLICE \
	-DANSWER_BY_SPLICE
build small_reads_poll small_reads.c
build small_reads_select small_reads.c -DWAIT_SELECT
build small_reads_epoll small_reads.c -DWAIT_EPOLL
build dup2_close_first dup2_move.c -DCLOSE_FIRST
build dup3_move dup2_move.c -DUSE_DUP3
build dup_move dup2_move.c -DUSE_DUP
build fd_reuse_close fd_reuse.c
build fd_reuse_syscall fd_reuse.c -DCLOSE_SYSCALL
build fd_reuse_close_range fd_reuse.c -DCLOSE_RANGE
build fd_reuse_dup2 fd_reuse.c -DCLOSE_NONE
build high_fd high_fd.c
build fclose_reuse fclose_reuse.c
build fclose_reuse_freopen fclose_reuse.c -DCLOSE_FREOPEN
build fclose_reuse_syscall fclose_reuse.c -DCLOSE_SYSCALL
build fclose_reuse_closefrom fclose_reuse.c -DCLOSE_FROM
build fclose_reuse_raw fclose_reuse.c -DCLOSE_RAW
build fclose_reuse_raw_head fclose_reuse.c -DCLOSE_RAW -DHTTP_LINES
build fclose_reuse_raw_head_split fclose_reuse.c -DCLOSE_RAW -DHTTP_LINES -DSPLIT_WRITE
build fclose_reuse_raw_first fclose_reuse.c -DCLOSE_RAW -DHTTP_LINES -DNO_FIRST_REQUEST
build fclose_reuse_raw_first_split fclose_reuse.c -DCLOSE_RAW -DHTTP_LINES -DSPLIT_WRITE -DNO_FIRST_REQUEST
build stdio_socket stdio_socket.c
build stdio_socket_two stdio_socket.c -DTWO_STREAMS
build errno_success errno_success.c -- -ldl
build io_uring_send io_uring_send.c
build io_uring_after_connect io_uring_send.c -DSETUP_AFTER_CONNECT
# liburing's shared library (no headers needed); the program is skipped without it.
# (awk reads everything: an early exit would SIGPIPE ldconfig and fail the pipeline)
liburing="$( (ldconfig -p 2>/dev/null || true) | awk '$1 == "liburing.so.2" && !n++ {print $NF}')"
if [[ -n "$liburing" ]]; then
	build io_uring_liburing io_uring_send.c -DUSE_LIBURING -- "$liburing"
fi
build fort_read fortified.c -DFORT_READ
build fort_recv fortified.c -DFORT_RECV
build fort_recvfrom fortified.c -DFORT_RECVFROM

# TLS clients (tls_common.h): OpenSSL (libssl-dev) and GnuTLS (libgnutls28-dev),
# libraries after the source so that --as-needed linkers keep them.
build_tls() { # name library-flags...
	local name="$1" out="$bin/$1"
	shift
	if [[ -x "$out" && "$out" -nt "$here/$name.c" && "$out" -nt "$here/build.sh" ]] &&
		fresher_than_headers "$out"; then
		return
	fi
	"$cc" "${cflags[@]}" -o "$out.tmp" "$here/$name.c" "$@"
	mv -f "$out.tmp" "$out"
}
for src in tls_socket_bio tls_custom_bio tls_nonblock_epoll errno_tls tls_reuse tls_thread_cancel; do
	build_tls "$src" -lssl -lcrypto
done
build_tls tls_gnutls -lgnutls
build_tls gnutls_sessions -lgnutls
build tls_thread_cancel_gnutls tls_thread_cancel.c -DTLS_GNUTLS -pthread -- -lgnutls
build_tls tls_deepbind -ldl
build_tls tls_deepbind_gnutls -ldl

# The fortified programs must call the _chk symbols (else they test nothing new).
check_import() { # binary symbol
	if ! nm -D --undefined-only "$bin/$1" | grep -qw "$2"; then
		echo "build.sh: $1 does not import $2" >&2
		nm -D --undefined-only "$bin/$1" >&2
		exit 1
	fi
}
check_import fort_read __read_chk
check_import fort_recv __recv_chk
check_import fort_recvfrom __recvfrom_chk
echo "c-tests built in $bin"
