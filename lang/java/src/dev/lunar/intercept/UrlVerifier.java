package dev.lunar.intercept;

import java.lang.instrument.Instrumentation;
import java.lang.reflect.Field;
import java.util.Map;
import java.util.Set;
import javax.net.ssl.HostnameVerifier;
import javax.net.ssl.HttpsURLConnection;

/**
 * The HostnameVerifier of an HttpsURLConnection that set one of its own. Such a connection
 * leaves endpoint identification off and checks the name itself after the handshake
 * ({@code HttpsClient.checkURLSpoofing}: the certificate's names, else its verifier). On a
 * dressed socket that check met the synthetic certificate, so the relay repeats it on the real
 * one. Loaded only then: it reads the verifier from the connection's HttpsClient (a listener of
 * the socket), opening that JDK package to the agent for it; failing that, the default
 * verifier.
 */
final class UrlVerifier {
    static final String HTTPS_CLIENT = "sun.net.www.protocol.https.HttpsClient";

    private UrlVerifier() {}

    static HostnameVerifier of(Object httpsClient) {
        try {
            Class<?> c = httpsClient.getClass();
            Instrumentation inst = Agent.instrumentation;
            Module base = Object.class.getModule();
            Module agent = UrlVerifier.class.getModule();
            if (inst != null && !base.isOpen("sun.net.www.protocol.https", agent)) {
                inst.redefineModule(base, Set.of(), Map.of(), Map.of("sun.net.www.protocol.https", Set.of(agent)),
                        Set.of(), Map.of());
            }
            Field f = c.getDeclaredField("hv");
            f.setAccessible(true);
            Object hv = f.get(httpsClient);
            if (hv instanceof HostnameVerifier) {
                return (HostnameVerifier) hv;
            }
        } catch (Throwable ignored) {
            // a JDK without that field: the default verifier below
        }
        return HttpsURLConnection.getDefaultHostnameVerifier();
    }
}
