// Test client for lang/java/test/hook_test.py (the hook without the preload).
//   HookClient MODE URL [--repeat N] [--data-file F] [--app-trust STORE] [--client-keys STORE]
//                       [--alpn P[,P]] [--http1] [--proxy HOST:PORT] [--layered]
//                       [--verifier accept|reject] [--providers]
//   HookClient providers
//   HookClient nontls
// MODE: httpclient (java.net.http.HttpClient, SSLContext.getDefault() unless --app-trust),
//       urlconn (HttpsURLConnection), socket (SSLSocketFactory.createSocket(host, port), a
//       GET of its own). --app-trust: an app-made SSLContext.getInstance("TLS")
//       with its own TrustManager from STORE (PKCS12, password "changeit"); --client-keys adds
//       a KeyManager with the keys of STORE. Prints each body on its own line, then a line
//       "INFO {json}" with what the program saw of the TLS session; exit 0 when every status
//       was 2xx; on an exception: "EXC <class>: <message>" (and its causes) on stderr, exit 3.
//       --providers: after the requests, a line "PROVIDERS {json}" (as the mode below).
// providers: one line "PROVIDERS {json}": the provider of SSLContext.getDefault(), the names
//       of every provider (all loaded), whether the security property lunar.intercept.hook
//       is set.
// nontls: what a JVM doing no TLS does with the security API (digests, UUID.randomUUID,
//       SecureRandom, signatures), prints "nontls ok".
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.time.Duration;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManagerFactory;

public class HookClient {
    static String info = "";

    public static void main(String[] args) {
        try {
            System.exit(run(args));
        } catch (Throwable t) {
            System.err.println("EXC " + t.getClass().getName() + ": " + t.getMessage());
            for (Throwable c = t.getCause(); c != null; c = c.getCause()) {
                System.err.println("CAUSE " + c.getClass().getName() + ": " + c.getMessage());
            }
            System.exit(3);
        }
    }

    static int run(String[] args) throws Exception {
        String mode = args[0];
        if (mode.equals("providers")) {
            System.out.println("PROVIDERS " + providers());
            return 0;
        }
        if (mode.equals("nontls")) {
            return nonTls();
        }
        String url = args[1];
        int repeat = 1;
        byte[] body = null;
        String appTrust = null, clientKeys = null, alpn = null, proxy = null, verifier = null;
        boolean layered = false;
        boolean http1 = false;
        boolean listProviders = false;
        for (int i = 2; i < args.length; i++) {
            switch (args[i]) {
                case "--repeat": repeat = Integer.parseInt(args[++i]); break;
                case "--data-file": body = Files.readAllBytes(Path.of(args[++i])); break;
                case "--app-trust": appTrust = args[++i]; break;
                case "--client-keys": clientKeys = args[++i]; break;
                case "--alpn": alpn = args[++i]; break;
                case "--http1": http1 = true; break;
                case "--proxy": proxy = args[++i]; break;
                case "--layered": layered = true; break;
                case "--verifier": verifier = args[++i]; break;
                case "--providers": listProviders = true; break;
                default: throw new IllegalArgumentException(args[i]);
            }
        }
        SSLContext ctx = appTrust != null ? appContext(appTrust, clientKeys) : SSLContext.getDefault();
        int rc = 0;
        switch (mode) {
            case "httpclient": {
                HttpClient.Builder b = HttpClient.newBuilder().sslContext(ctx).connectTimeout(Duration.ofSeconds(10));
                if (proxy == null) {
                    b.proxy(HttpClient.Builder.NO_PROXY);
                } else {
                    String[] hp = proxy.split(":");
                    b.proxy(java.net.ProxySelector.of(new java.net.InetSocketAddress(hp[0], Integer.parseInt(hp[1]))));
                }
                if (http1) b.version(HttpClient.Version.HTTP_1_1);
                HttpClient client = b.build();
                for (int n = 0; n < repeat; n++) {
                    HttpRequest.Builder rb = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(20));
                    rb = body == null ? rb.GET() : rb.POST(HttpRequest.BodyPublishers.ofByteArray(body));
                    HttpResponse<byte[]> r = client.send(rb.build(), HttpResponse.BodyHandlers.ofByteArray());
                    out(r.body());
                    if (r.statusCode() / 100 != 2) rc = 1;
                    SSLSession s = r.sslSession().orElse(null);
                    info = "{\"version\": \"" + r.version() + "\", " + describe(s) + "}";
                }
                break;
            }
            case "urlconn": {
                for (int n = 0; n < repeat; n++) {
                    HttpsURLConnection c = (HttpsURLConnection) URI.create(url).toURL().openConnection(java.net.Proxy.NO_PROXY);
                    if (appTrust != null) c.setSSLSocketFactory(ctx.getSocketFactory());
                    if (verifier != null) {
                        final boolean accept = verifier.equals("accept");
                        c.setHostnameVerifier((h, sess) -> accept);
                    }
                    c.setConnectTimeout(10000);
                    c.setReadTimeout(20000);
                    if (body != null) {
                        c.setDoOutput(true);
                        c.setRequestMethod("POST");
                        c.setFixedLengthStreamingMode(body.length);
                        try (OutputStream os = c.getOutputStream()) { os.write(body); }
                    }
                    int status = c.getResponseCode();
                    // The session while the connection is open (after the body it is back in the
                    // keep-alive cache and these throw).
                    String certs;
                    try {
                        Certificate[] cs = c.getServerCertificates();
                        certs = ((X509Certificate) cs[0]).getSubjectX500Principal().getName();
                    } catch (Exception e) {
                        certs = e.getClass().getSimpleName();
                    }
                    info = "{\"cipher\": \"" + c.getCipherSuite() + "\", \"peer_cert\": \"" + certs + "\"}";
                    InputStream in = status >= 400 ? c.getErrorStream() : c.getInputStream();
                    ByteArrayOutputStream buf = new ByteArrayOutputStream();
                    if (in != null) { in.transferTo(buf); in.close(); }
                    out(buf.toByteArray());
                    if (status / 100 != 2) rc = 1;
                }
                break;
            }
            case "socket": {
                URI u = URI.create(url);
                SSLSocketFactory f = ctx.getSocketFactory();
                for (int n = 0; n < repeat; n++) {
                    java.net.Socket own = null;
                    if (layered) {
                        own = new java.net.Socket(u.getHost(), u.getPort());
                    }
                    try (SSLSocket s = (SSLSocket) (own != null ? f.createSocket(own, u.getHost(), u.getPort(), true)
                            : f.createSocket(u.getHost(), u.getPort()))) {
                        s.setSoTimeout(20000);
                        SSLParameters p = s.getSSLParameters();
                        p.setEndpointIdentificationAlgorithm("HTTPS");
                        if (alpn != null) p.setApplicationProtocols(alpn.split(","));
                        s.setSSLParameters(p);
                        final boolean[] fired = {false};
                        s.addHandshakeCompletedListener(e -> fired[0] = true);
                        s.startHandshake();
                        OutputStream os = s.getOutputStream();
                        os.write(("GET " + u.getRawPath() + " HTTP/1.1\r\nHost: " + u.getHost() + ":" + u.getPort()
                                + "\r\nConnection: close\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
                        os.flush();
                        byte[] resp = s.getInputStream().readAllBytes();
                        String text = new String(resp, StandardCharsets.ISO_8859_1);
                        int at = text.indexOf("\r\n\r\n");
                        if (!text.startsWith("HTTP/1.1 2")) rc = 1;
                        out(text.substring(at + 4).getBytes(StandardCharsets.ISO_8859_1));
                        info = "{\"listener_fired\": " + fired[0] + ", \"alpn\": \"" + s.getApplicationProtocol() + "\", "
                                + describe(s.getSession()) + "}";
                    }
                }
                break;
            }
            default:
                throw new IllegalArgumentException(mode);
        }
        System.out.println("INFO " + info);
        if (listProviders) {
            System.out.println("PROVIDERS " + providers());
        }
        return rc;
    }

    static String providers() throws Exception {
        String context = SSLContext.getDefault().getProvider().getName();
        StringBuilder names = new StringBuilder();
        for (java.security.Provider p : java.security.Security.getProviders()) {
            names.append(names.length() == 0 ? "" : ", ").append('"').append(p.getName()).append('"');
        }
        return "{\"context_provider\": \"" + context + "\", \"providers\": [" + names + "], \"hook_property\": "
                + (java.security.Security.getProperty("lunar.intercept.hook") != null) + "}";
    }

    static int nonTls() throws Exception {
        java.security.MessageDigest.getInstance("SHA-256").digest(new byte[] {1, 2, 3});
        java.security.MessageDigest.getInstance("MD5").digest(new byte[] {1, 2, 3});
        java.util.UUID.randomUUID();
        new java.security.SecureRandom().nextInt();
        java.security.KeyPairGenerator g = java.security.KeyPairGenerator.getInstance("EC");
        java.security.KeyPair kp = g.generateKeyPair();
        java.security.Signature sig = java.security.Signature.getInstance("SHA256withECDSA");
        sig.initSign(kp.getPrivate());
        sig.update(new byte[] {4, 5, 6});
        sig.sign();
        System.out.println("nontls ok");
        return 0;
    }

    static String describe(SSLSession s) {
        if (s == null) return "\"session\": null";
        String peer;
        try {
            peer = ((X509Certificate) s.getPeerCertificates()[0]).getSubjectX500Principal().getName();
        } catch (Exception e) {
            peer = e.getClass().getSimpleName();
        }
        return "\"protocol\": \"" + s.getProtocol() + "\", \"cipher\": \"" + s.getCipherSuite() + "\", \"peer_host\": \""
                + s.getPeerHost() + "\", \"peer_cert\": \"" + peer + "\"";
    }

    static void out(byte[] b) throws Exception {
        System.out.write(b);
        System.out.write('\n');
        System.out.flush();
    }

    static SSLContext appContext(String trustStore, String keyStore) throws Exception {
        KeyStore ts = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(trustStore)) { ts.load(in, "changeit".toCharArray()); }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ts);
        KeyManagerFactory kmf = null;
        if (keyStore != null) {
            KeyStore ks = KeyStore.getInstance("PKCS12");
            try (FileInputStream in = new FileInputStream(keyStore)) { ks.load(in, "changeit".toCharArray()); }
            kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, "changeit".toCharArray());
        }
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf == null ? null : kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        return ctx;
    }
}
