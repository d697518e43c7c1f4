package dev.lunar.intercept;

import java.math.BigInteger;
import java.security.Principal;
import java.security.PublicKey;
import java.security.SignatureException;
import java.security.cert.CertificateEncodingException;
import java.security.cert.X509Certificate;
import java.util.Collection;
import java.util.Collections;
import java.util.Date;
import java.util.List;
import java.util.Set;
import javax.security.auth.x500.X500Principal;

/**
 * The peer certificate of a dressed session: it names the host (subject CN and a DNS or IP
 * subject alternative name), is valid now, and is signed by nobody (verify() fails, and there is
 * no encoding), so nothing can mistake it for a verified certificate: pinning fails closed. The
 * proxy, not the program, verified the origin (lang/PROTOCOL.md, as for the preload's virtual
 * TLS sessions).
 */
final class SyntheticCertificate extends X509Certificate {
    private static final long serialVersionUID = 1L;

    private final String host;
    private final X500Principal subject;
    private final Date notBefore;
    private final Date notAfter;

    SyntheticCertificate(String host) {
        this.host = host;
        this.subject = new X500Principal("CN=" + escape(host));
        long now = System.currentTimeMillis();
        this.notBefore = new Date(now - 86_400_000L);
        this.notAfter = new Date(now + 86_400_000L);
    }

    private static String escape(String s) {
        StringBuilder b = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (",+\"\\<>;=#".indexOf(c) >= 0) {
                b.append('\\');
            }
            b.append(c);
        }
        return b.toString();
    }

    private boolean isIpLiteral() {
        return host.indexOf(':') >= 0 || host.matches("[0-9.]+");
    }

    @Override
    public Collection<List<?>> getSubjectAlternativeNames() {
        List<?> name = List.of(isIpLiteral() ? 7 : 2, host);
        return Collections.<List<?>>singletonList(name);
    }

    @Override
    public X500Principal getSubjectX500Principal() {
        return subject;
    }

    @Override
    public X500Principal getIssuerX500Principal() {
        return subject;
    }

    @Override
    public void checkValidity() {
    }

    @Override
    public void checkValidity(Date date) {
    }

    @Override
    public int getVersion() {
        return 3;
    }

    @Override
    public BigInteger getSerialNumber() {
        return BigInteger.ONE;
    }

    @Override
    @SuppressWarnings("deprecation")
    public Principal getIssuerDN() {
        return subject;
    }

    @Override
    @SuppressWarnings("deprecation")
    public Principal getSubjectDN() {
        return subject;
    }

    @Override
    public Date getNotBefore() {
        return (Date) notBefore.clone();
    }

    @Override
    public Date getNotAfter() {
        return (Date) notAfter.clone();
    }

    @Override
    public byte[] getTBSCertificate() throws java.security.cert.CertificateEncodingException {
        throw new CertificateEncodingException("a synthetic certificate has no encoding");
    }

    @Override
    public byte[] getSignature() {
        return new byte[0];
    }

    @Override
    public String getSigAlgName() {
        return "NONE";
    }

    @Override
    public String getSigAlgOID() {
        return "0.0";
    }

    @Override
    public byte[] getSigAlgParams() {
        return null;
    }

    @Override
    public boolean[] getIssuerUniqueID() {
        return null;
    }

    @Override
    public boolean[] getSubjectUniqueID() {
        return null;
    }

    @Override
    public boolean[] getKeyUsage() {
        return null;
    }

    @Override
    public int getBasicConstraints() {
        return -1;
    }

    @Override
    public byte[] getEncoded() throws CertificateEncodingException {
        throw new CertificateEncodingException("a synthetic certificate has no encoding");
    }

    @Override
    public void verify(PublicKey key) throws SignatureException {
        throw new SignatureException("a synthetic certificate is not signed");
    }

    @Override
    public void verify(PublicKey key, String sigProvider) throws SignatureException {
        throw new SignatureException("a synthetic certificate is not signed");
    }

    @Override
    public String toString() {
        return "Synthetic certificate [subject: " + subject + ", connection carried as plain HTTP by Lunar Proxy]";
    }

    @Override
    public PublicKey getPublicKey() {
        return NoKey.INSTANCE;
    }

    @Override
    public boolean hasUnsupportedCriticalExtension() {
        return false;
    }

    @Override
    public Set<String> getCriticalExtensionOIDs() {
        return null;
    }

    @Override
    public Set<String> getNonCriticalExtensionOIDs() {
        return null;
    }

    @Override
    public byte[] getExtensionValue(String oid) {
        return null;
    }

    @Override
    public boolean equals(Object other) {
        return other == this;
    }

    @Override
    public int hashCode() {
        return System.identityHashCode(this);
    }

    /** A public key matching nothing (its encoding is empty). */
    private static final class NoKey implements PublicKey {
        private static final long serialVersionUID = 1L;
        static final NoKey INSTANCE = new NoKey();

        @Override
        public String getAlgorithm() {
            return "NONE";
        }

        @Override
        public String getFormat() {
            return "X.509";
        }

        @Override
        public byte[] getEncoded() {
            return new byte[0];
        }
    }
}
