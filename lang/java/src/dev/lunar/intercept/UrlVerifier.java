package dev.lunar.intercept;

import java.lang.reflect.Field;
import java.lang.reflect.Method;
import javax.net.ssl.HostnameVerifier;
import javax.net.ssl.HttpsURLConnection;

/**
 * The HostnameVerifier of an HttpsURLConnection that set one of its own. Such a connection
 * leaves endpoint identification off and checks the name itself after the handshake
 * ({@code HttpsClient.checkURLSpoofing}: the certificate's names, else its verifier). On a
 * dressed socket that check met the synthetic certificate, so the relay repeats it on the real
 * one. Loaded only then: it reads the verifier from the connection's HttpsClient (a listener of
 * the socket), a private field of a package the JDK does not open. Opening it
 * ({@code --add-opens}) would cost every JVM ~20 ms at start, so the field is read the way
 * the JDK allows without it: reflection where the program opened the package itself, else
 * {@code sun.misc.Unsafe} up to JDK 23 (JDK 24 warns on stderr at its first use). Failing
 * that, the default verifier: a real certificate that does not name the host then fails, as
 * with a strict verifier.
 */
final class UrlVerifier {
    static final String HTTPS_CLIENT = "sun.net.www.protocol.https.HttpsClient";
    /** The last JDK whose sun.misc.Unsafe reads a field without a warning. */
    private static final int LAST_SILENT_UNSAFE = 23;

    private UrlVerifier() {}

    static HostnameVerifier of(Object httpsClient) {
        try {
            Field f = httpsClient.getClass().getDeclaredField("hv");
            Object hv = read(f, httpsClient);
            if (hv instanceof HostnameVerifier) {
                return (HostnameVerifier) hv;
            }
        } catch (Throwable ignored) {
            // a JDK without that field, or none of the ways allowed: the default verifier below
        }
        return HttpsURLConnection.getDefaultHostnameVerifier();
    }

    private static Object read(Field f, Object owner) throws ReflectiveOperationException {
        if (f.trySetAccessible()) {
            return f.get(owner);
        }
        if (Runtime.version().feature() > LAST_SILENT_UNSAFE) {
            return null;
        }
        Class<?> unsafeClass = Class.forName("sun.misc.Unsafe");
        Field theUnsafe = unsafeClass.getDeclaredField("theUnsafe");
        theUnsafe.setAccessible(true);
        Object unsafe = theUnsafe.get(null);
        Method offsetOf = unsafeClass.getMethod("objectFieldOffset", Field.class);
        Method getObject = unsafeClass.getMethod("getObject", Object.class, long.class);
        return getObject.invoke(unsafe, owner, offsetOf.invoke(unsafe, f));
    }
}
