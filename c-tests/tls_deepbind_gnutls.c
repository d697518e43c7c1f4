/* GnuTLS loaded with dlopen(RTLD_DEEPBIND) before the connect, used through dlsym: its
 * default transport then binds send/recv straight to libc, past any preload, so the
 * library must not divert this https. The program connects itself, then does TLS on the
 * fd, verifying the certificate against CAFILE for HOST; prints the answer's body.
 * Usage: tls_deepbind_gnutls HOST PORT PATH CAFILE */
#include "deepbind_common.h"

int main(int argc, char **argv)
{
	struct deepbind_args a;
	int fd = deepbind_start(argc, argv, "libgnutls.so.30", &a);
	void *cred, *session;
	((int (*)(void **))sym("gnutls_certificate_allocate_credentials"))(&cred);
	if (((int (*)(void *, const char *, int))sym("gnutls_certificate_set_x509_trust_file"))(cred, a.cafile, 1 /* PEM */) <= 0)
		return 2;
	((int (*)(void **, unsigned))sym("gnutls_init"))(&session, 1u << 1 /* GNUTLS_CLIENT */);
	((int (*)(void *))sym("gnutls_set_default_priority"))(session);
	((int (*)(void *, int, void *))sym("gnutls_credentials_set"))(session, 1 /* CERTIFICATE */, cred);
	((int (*)(void *, int, const void *, size_t))sym("gnutls_server_name_set"))(session, 1 /* DNS */, a.host, strlen(a.host));
	((void (*)(void *, const char *, unsigned))sym("gnutls_session_set_verify_cert"))(session, a.host, 0);
	((void (*)(void *, int, int))sym("gnutls_transport_set_int2"))(session, fd, fd);
	int (*is_fatal)(int) = (int (*)(int))sym("gnutls_error_is_fatal");
	int rc;
	do
		rc = ((int (*)(void *))sym("gnutls_handshake"))(session);
	while (rc < 0 && !is_fatal(rc));
	if (rc < 0) {
		fprintf(stderr, "tls_deepbind_gnutls: handshake failed: %d\n", rc);
		return 3;
	}
	char req[512];
	int n = write_get_request(req, sizeof req, &a);
	if (((long (*)(void *, const void *, size_t))sym("gnutls_record_send"))(session, req, (size_t)n) != n)
		return 1;
	static char all[1 << 20];
	size_t total = 0;
	long (*recv_fn)(void *, void *, size_t) = (long (*)(void *, void *, size_t))sym("gnutls_record_recv");
	while (total < sizeof all) {
		long got = recv_fn(session, all + total, sizeof all - total);
		if (got > 0)
			total += (size_t)got;
		else if (got == 0 || is_fatal((int)got))
			break; /* the server closed (Connection: close), or an error */
	}
	return print_body(all, total);
}
