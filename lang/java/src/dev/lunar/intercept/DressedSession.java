package dev.lunar.intercept;

import java.security.Principal;
import java.security.SecureRandom;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import javax.net.ssl.ExtendedSSLSession;
import javax.net.ssl.SNIServerName;
import javax.net.ssl.SSLPeerUnverifiedException;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSessionBindingEvent;
import javax.net.ssl.SSLSessionBindingListener;
import javax.net.ssl.SSLSessionContext;

/**
 * The session of a dressed socket or engine: TLSv1.3, the peer's host and port, buffer sizes
 * of real TLS, and a synthetic peer certificate naming the host (what HttpsURLConnection's
 * hostname check and most callers of getPeerCertificates need; its signature verifies nothing,
 * so pinning fails closed). Once the relay has made real TLS for the connection, certificate
 * and cipher queries answer with the real session's values.
 */
final class DressedSession extends ExtendedSSLSession {
    /** The packet and application sizes of the JDK's TLS sessions. */
    static final int PACKET_SIZE = 16709;
    static final int APPLICATION_SIZE = 16384;

    private static final SecureRandom RANDOM = new SecureRandom();

    private final String host;
    private final int port;
    private final List<SNIServerName> serverNames;
    private final byte[] id;
    private final long created = System.currentTimeMillis();
    private final boolean valid;
    private volatile boolean invalidated;
    private volatile SSLSession real;
    private volatile Certificate[] synthetic;
    private final Map<String, Object> values = new ConcurrentHashMap<>();

    DressedSession(String host, int port, List<SNIServerName> serverNames) {
        this(host, port, serverNames, true);
    }

    private DressedSession(String host, int port, List<SNIServerName> serverNames, boolean valid) {
        this.host = host;
        this.port = port;
        this.serverNames = serverNames == null ? Collections.<SNIServerName>emptyList() : serverNames;
        this.valid = valid;
        this.id = new byte[valid ? 32 : 0];
        if (valid) {
            RANDOM.nextBytes(id);
        }
    }

    /** What getSession() returns when the handshake failed. */
    static DressedSession invalid(String host, int port) {
        return new DressedSession(host, port, null, false);
    }

    void relayed(SSLSession session) {
        real = session;
    }

    @Override
    public byte[] getId() {
        return id.clone();
    }

    @Override
    public SSLSessionContext getSessionContext() {
        return null;
    }

    @Override
    public long getCreationTime() {
        return created;
    }

    @Override
    public long getLastAccessedTime() {
        return created;
    }

    @Override
    public void invalidate() {
        invalidated = true;
    }

    @Override
    public boolean isValid() {
        return valid && !invalidated;
    }

    @Override
    public void putValue(String name, Object value) {
        if (name == null || value == null) {
            throw new IllegalArgumentException("arguments can not be null");
        }
        Object old = values.put(name, value);
        if (old instanceof SSLSessionBindingListener) {
            ((SSLSessionBindingListener) old).valueUnbound(new SSLSessionBindingEvent(this, name));
        }
        if (value instanceof SSLSessionBindingListener) {
            ((SSLSessionBindingListener) value).valueBound(new SSLSessionBindingEvent(this, name));
        }
    }

    @Override
    public Object getValue(String name) {
        if (name == null) {
            throw new IllegalArgumentException("argument can not be null");
        }
        return values.get(name);
    }

    @Override
    public void removeValue(String name) {
        if (name == null) {
            throw new IllegalArgumentException("argument can not be null");
        }
        Object old = values.remove(name);
        if (old instanceof SSLSessionBindingListener) {
            ((SSLSessionBindingListener) old).valueUnbound(new SSLSessionBindingEvent(this, name));
        }
    }

    @Override
    public String[] getValueNames() {
        return values.keySet().toArray(new String[0]);
    }

    @Override
    public Certificate[] getPeerCertificates() throws SSLPeerUnverifiedException {
        SSLSession r = real;
        if (r != null) {
            return r.getPeerCertificates();
        }
        if (!valid || host == null) {
            throw new SSLPeerUnverifiedException("peer not authenticated");
        }
        Certificate[] c = synthetic;
        if (c == null) {
            synthetic = c = new Certificate[] {new SyntheticCertificate(host)};
        }
        return c.clone();
    }

    @Override
    public Certificate[] getLocalCertificates() {
        return null;
    }

    @Override
    @SuppressWarnings({"deprecation", "removal"})
    public javax.security.cert.X509Certificate[] getPeerCertificateChain() throws SSLPeerUnverifiedException {
        throw new UnsupportedOperationException("This method is deprecated and marked for removal.");
    }

    @Override
    public Principal getPeerPrincipal() throws SSLPeerUnverifiedException {
        SSLSession r = real;
        if (r != null) {
            return r.getPeerPrincipal();
        }
        return ((X509Certificate) getPeerCertificates()[0]).getSubjectX500Principal();
    }

    @Override
    public Principal getLocalPrincipal() {
        return null;
    }

    @Override
    public String getCipherSuite() {
        SSLSession r = real;
        if (r != null) {
            return r.getCipherSuite();
        }
        return valid ? "TLS_AES_128_GCM_SHA256" : "SSL_NULL_WITH_NULL_NULL";
    }

    @Override
    public String getProtocol() {
        SSLSession r = real;
        if (r != null) {
            return r.getProtocol();
        }
        return valid ? "TLSv1.3" : "NONE";
    }

    @Override
    public String getPeerHost() {
        return host;
    }

    @Override
    public int getPeerPort() {
        return port;
    }

    @Override
    public int getPacketBufferSize() {
        return PACKET_SIZE;
    }

    @Override
    public int getApplicationBufferSize() {
        return APPLICATION_SIZE;
    }

    @Override
    public String[] getLocalSupportedSignatureAlgorithms() {
        return new String[0];
    }

    @Override
    public String[] getPeerSupportedSignatureAlgorithms() {
        return new String[0];
    }

    @Override
    public List<SNIServerName> getRequestedServerNames() {
        return serverNames;
    }

    @Override
    public List<byte[]> getStatusResponses() {
        return Collections.emptyList();
    }

    @Override
    public String toString() {
        return "Session(" + created + "|" + getCipherSuite() + ")";
    }
}
