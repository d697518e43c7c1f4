/* GnuTLS on a blocking socket attached with gnutls_transport_set_int (wget uses
 * the same default transport): SNI, gnutls_handshake, then the peer verified as
 * wget does it, after the handshake: a certificate must be there
 * (gnutls_certificate_get_peers) and gnutls_certificate_verify_peers3 with the
 * host name must find no problem. gnutls_record_send/recv. See tls_common.h. */
#include "tls_gnutls.h"

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
