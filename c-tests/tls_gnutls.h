/* GnuTLS helpers shared by the GnuTLS tls_* programs (see tls_common.h): plaintext I/O
 * over a session, for `struct tls_io`. */
#ifndef CTEST_TLS_GNUTLS_H
#define CTEST_TLS_GNUTLS_H

#ifndef TLS_GNUTLS
#define TLS_GNUTLS
#endif
#include "tls_common.h"
#include <gnutls/gnutls.h>

/* A record call failed: a verification error (a library may make the real handshake
 * late, inside a read) exits 3, anything else 2. */
__attribute__((noreturn)) CT_FN void io_failed(int err, const char *what)
{
	if (err == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || err == GNUTLS_E_CERTIFICATE_ERROR)
		verify_failed("%s: %s", what, gnutls_strerror(err));
	die("%s: %s", what, gnutls_strerror(err));
}

CT_FN void gt_write_all(void *ctx, const char *buf, size_t len)
{
	gnutls_session_t s = ctx;
	while (len > 0) {
		ssize_t n = gnutls_record_send(s, buf, len);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n < 0)
			io_failed((int)n, "gnutls_record_send");
		buf += n;
		len -= (size_t)n;
	}
}

CT_FN ssize_t gt_read(int fd, void *buf, size_t n, void *ctx)
{
	(void)fd;
	for (;;) {
		ssize_t r = gnutls_record_recv(ctx, buf, n);
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
			continue;
		if (r < 0)
			io_failed((int)r, "gnutls_record_recv");
		return r;
	}
}

#endif
