/* GnuTLS on a blocking socket attached with gnutls_transport_set_int (wget uses
 * the same default transport): SNI, gnutls_handshake, then the peer verified as
 * wget does it, after the handshake: a certificate must be there
 * (gnutls_certificate_get_peers) and gnutls_certificate_verify_peers3 with the
 * host name must find no problem. gnutls_record_send/recv. See tls_common.h. */
#define TLS_GNUTLS
#include "tls_common.h"
#include <gnutls/gnutls.h>

/* A record call failed: a verification error (a library may make the real handshake
 * late, inside a read) exits 3, anything else 2. */
__attribute__((noreturn)) static void io_failed(int err, const char *what)
{
	if (err == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR || err == GNUTLS_E_CERTIFICATE_ERROR)
		verify_failed("%s: %s", what, gnutls_strerror(err));
	die("%s: %s", what, gnutls_strerror(err));
}

static void gt_write_all(void *ctx, const char *buf, size_t len)
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

static ssize_t gt_read(int fd, void *buf, size_t n, void *ctx)
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

int main(int argc, char **argv)
{
	struct args a;
	const char *cafile = tls_init(argc, argv, &a);
	gnutls_certificate_credentials_t cred;
	gnutls_session_t s;
	int ret;
	if (gnutls_certificate_allocate_credentials(&cred) < 0)
		die("gnutls_certificate_allocate_credentials failed");
	if ((ret = gnutls_certificate_set_x509_trust_file(cred, cafile, GNUTLS_X509_FMT_PEM)) <= 0)
		die("cannot load CA file %s: %s", cafile, ret < 0 ? gnutls_strerror(ret) : "no certificate");
	if (gnutls_init(&s, GNUTLS_CLIENT) < 0 || gnutls_set_default_priority(s) < 0 ||
	    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) < 0 ||
	    gnutls_server_name_set(s, GNUTLS_NAME_DNS, a.host, strlen(a.host)) < 0)
		die("gnutls session set-up failed");
	int fd = connect_blocking(&a);
	gnutls_transport_set_int(s, fd);
	gnutls_handshake_set_timeout(s, GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
	do {
		ret = gnutls_handshake(s);
	} while (ret < 0 && !gnutls_error_is_fatal(ret));
	if (ret < 0)
		die("TLS handshake failed: %s", gnutls_strerror(ret));

	unsigned ncerts = 0, status = 0;
	if (!gnutls_certificate_get_peers(s, &ncerts) || ncerts == 0)
		verify_failed("no certificate found");
	if ((ret = gnutls_certificate_verify_peers3(s, a.host, &status)) < 0)
		die("gnutls_certificate_verify_peers3: %s", gnutls_strerror(ret));
	if (status != 0) {
		gnutls_datum_t msg;
		gnutls_certificate_verification_status_print(status, gnutls_certificate_type_get(s), &msg, 0);
		verify_failed("%s", (char *)msg.data);
	}
	char *desc = gnutls_session_get_desc(s);
	note("TLS ok: %s", desc);
	gnutls_free(desc);

	struct tls_io io = {gt_write_all, gt_read, s};
	int rc = tls_requests(&a, &io);
	gnutls_bye(s, GNUTLS_SHUT_WR);
	close(fd);
	gnutls_deinit(s);
	gnutls_certificate_free_credentials(cred);
	return rc;
}
