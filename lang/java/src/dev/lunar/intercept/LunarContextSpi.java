package dev.lunar.intercept;

import java.security.KeyManagementException;
import java.security.NoSuchAlgorithmException;
import java.security.NoSuchProviderException;
import java.security.SecureRandom;
import javax.net.ssl.KeyManager;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLContextSpi;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLServerSocketFactory;
import javax.net.ssl.SSLSessionContext;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509KeyManager;

/**
 * An SSLContext of the program's: the JDK's own SunJSSE context of the same algorithm does all
 * the work (initialisation, trust, sessions, server side); this wrapper only hands out socket
 * factories and engines that dress client connections to intercepted ports.
 */
final class LunarContextSpi extends SSLContextSpi {
    /** Key types a client certificate may have. */
    private static final String[] KEY_TYPES = {"RSA", "EC", "RSASSA-PSS", "DSA", "EdDSA", "Ed25519", "Ed448"};

    private final SSLContext real;
    /** The context may present a client certificate: its connections keep real TLS. */
    private volatile boolean clientKeys;

    LunarContextSpi(String algorithm) throws NoSuchAlgorithmException {
        try {
            // "Default" comes initialised, exactly as the JDK's SSLContext.getDefault() would be.
            real = SSLContext.getInstance(algorithm, "SunJSSE");
        } catch (NoSuchProviderException e) {
            throw new NoSuchAlgorithmException(e);
        }
        if (algorithm.equals("Default")) {
            clientKeys = defaultHasKeys();
        }
    }

    /** The JDK's own context behind this one: the relay's real TLS uses it. */
    SSLContext real() {
        return real;
    }

    /** Whether a client connection to this port is dressed. */
    boolean dresses(int port) {
        return !clientKeys && Hook.listed(port);
    }

    boolean mayDress() {
        return !clientKeys;
    }

    @Override
    protected void engineInit(KeyManager[] km, TrustManager[] tm, SecureRandom random) throws KeyManagementException {
        real.init(km, tm, random);
        clientKeys = hasKeys(km);
    }

    @Override
    protected SSLSocketFactory engineGetSocketFactory() {
        return new LunarSocketFactory(this, real.getSocketFactory());
    }

    @Override
    protected SSLServerSocketFactory engineGetServerSocketFactory() {
        return real.getServerSocketFactory();
    }

    @Override
    protected SSLEngine engineCreateSSLEngine() {
        return real.createSSLEngine();
    }

    @Override
    protected SSLEngine engineCreateSSLEngine(String host, int port) {
        SSLEngine engine = real.createSSLEngine(host, port);
        if (host != null && dresses(port)) {
            return Dressing.engine(this, engine, host, port);
        }
        return engine;
    }

    @Override
    protected SSLSessionContext engineGetServerSessionContext() {
        return real.getServerSessionContext();
    }

    @Override
    protected SSLSessionContext engineGetClientSessionContext() {
        return real.getClientSessionContext();
    }

    @Override
    protected SSLParameters engineGetDefaultSSLParameters() {
        return real.getDefaultSSLParameters();
    }

    @Override
    protected SSLParameters engineGetSupportedSSLParameters() {
        return real.getSupportedSSLParameters();
    }

    /**
     * The default context's key managers come from the javax.net.ssl.keyStore properties; we
     * cannot see them without loading the store again, so a key store named there (or a PKCS11
     * one, which needs no file) counts as a client certificate.
     */
    private static boolean defaultHasKeys() {
        String store = System.getProperty("javax.net.ssl.keyStore", "");
        String type = System.getProperty("javax.net.ssl.keyStoreType", "");
        return (!store.isEmpty() && !store.equals("NONE")) || type.equalsIgnoreCase("PKCS11");
    }

    /**
     * Whether any key manager may present a client certificate: the JDK's own key managers are
     * asked for their client aliases; any other key manager is assumed to have keys (it may
     * choose one at handshake time).
     */
    static boolean hasKeys(KeyManager[] managers) {
        if (managers == null) {
            return false;
        }
        for (KeyManager m : managers) {
            if (m == null) {
                continue;
            }
            if (!(m instanceof X509KeyManager) || !m.getClass().getName().startsWith("sun.security.ssl.")) {
                return true;
            }
            X509KeyManager x = (X509KeyManager) m;
            for (String type : KEY_TYPES) {
                String[] aliases = x.getClientAliases(type, null);
                if (aliases != null && aliases.length > 0) {
                    return true;
                }
            }
        }
        return false;
    }
}
