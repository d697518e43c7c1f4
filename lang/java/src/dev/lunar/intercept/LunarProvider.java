package dev.lunar.intercept;

import java.security.NoSuchAlgorithmException;
import java.security.Provider;
import java.util.List;

/**
 * The security provider the preload lists before SunJSSE (lang/PROTOCOL.md section 7), loaded
 * by the JDK at the first lookup that reaches it. Active (the preload's arguments, for this
 * process: {@link Hook}), it serves the SSLContext algorithms programs ask for
 * by name ("Default" for {@code SSLContext.getDefault()}, "TLS" (alias "SSL"), "TLSv1.2",
 * "TLSv1.3") with {@link LunarContextSpi}, which wraps the JDK's own SunJSSE context of the
 * same algorithm. A program asking for "SunJSSE" by name gets the JDK's, untouched.
 */
public final class LunarProvider extends Provider {
    private static final long serialVersionUID = 1L;

    /** Called by the JDK (a public class and constructor); inert, it serves nothing. */
    public LunarProvider() {
        super("LunarIntercept", "1", "Lunar interceptor: https to intercepted ports as HTTP for the preload");
        if (!Hook.start()) {
            return;
        }
        putService(new ContextService(this, "Default", null));
        putService(new ContextService(this, "TLS", List.of("SSL")));
        putService(new ContextService(this, "TLSv1.2", null));
        putService(new ContextService(this, "TLSv1.3", null));
    }

    private static final class ContextService extends Provider.Service {
        ContextService(Provider provider, String algorithm, List<String> aliases) {
            // The class name is informative only: newInstance below makes the object (a class
            // literal here would load the class at start).
            super(provider, "SSLContext", algorithm, "dev.lunar.intercept.LunarContextSpi", aliases, null);
        }

        @Override
        public Object newInstance(Object parameter) throws NoSuchAlgorithmException {
            // A failure here (no SunJSSE, its default context failing) makes the JDK try the next
            // provider, SunJSSE itself: the program gets exactly what it would have got.
            return new LunarContextSpi(getAlgorithm());
        }
    }
}
