package dev.lunar.intercept;

import java.security.Security;

/**
 * The hook's arguments, read by {@link LunarProvider} when the JDK first loads it. The preload
 * gives the JVM security properties (lang/PROTOCOL.md section 7) listing that provider before
 * SunJSSE and the property {@code lunar.intercept.hook=v1 <pid> <token> <ports>}; anything
 * else (another process's arguments, none at all) leaves the hook inert. Nothing of the hook
 * runs before that first lookup, and it never writes to the program's standard streams.
 */
final class Hook {
    static final String PROPERTY = "lunar.intercept.hook";
    /** This process's token (32 lowercase hex digits); null while inert. */
    static volatile String token;
    /** The intercepted ports. */
    private static volatile int[] ports = new int[0];

    private Hook() {}

    /** Whether the hook is active: the preload's arguments, for this process. */
    static synchronized boolean start() {
        if (token != null) {
            return true;
        }
        try {
            return start(Security.getProperty(PROPERTY));
        } catch (Throwable ignored) {
            // Inert: the program runs as if the hook were not there.
            return false;
        }
    }

    /** A port connections to which may be dressed. */
    static boolean listed(int port) {
        for (int p : ports) {
            if (p == port) {
                return true;
            }
        }
        return false;
    }

    static boolean start(String args) {
        if (args == null) {
            return false;
        }
        String[] fields = args.split(" ", -1);
        if (fields.length != 4 || !fields[0].equals("v1")) {
            return false;
        }
        long pid = number(fields[1], 19);
        // A child given these properties without the preload (the descriptor is close-on-exec,
        // but a program could pass a copy of the file on) stays inert.
        if (pid < 0 || pid != currentPid(pid)) {
            return false;
        }
        if (!isToken(fields[2])) {
            return false;
        }
        int[] parsed = parsePorts(fields[3]);
        if (parsed == null) {
            return false;
        }
        ports = parsed;
        token = fields[2];
        return true;
    }

    /**
     * This process's pid: /proc/self costs 50 us where ProcessHandle costs 5-10 ms at start;
     * ProcessHandle (getpid) settles any disagreement (a /proc of another pid namespace).
     */
    static long currentPid(long expected) {
        try {
            long proc = number(new java.io.File("/proc/self").getCanonicalFile().getName(), 19);
            if (proc == expected) {
                return proc;
            }
        } catch (Exception ignored) {
            // no /proc: ask the JDK
        }
        return ProcessHandle.current().pid();
    }

    static boolean isToken(String s) {
        if (s.length() != 32) {
            return false;
        }
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
                return false;
            }
        }
        return true;
    }

    static int[] parsePorts(String s) {
        String[] parts = s.split(",", -1);
        int[] out = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            long p = number(parts[i], 5);
            if (p < 1 || p > 65535) {
                return null;
            }
            out[i] = (int) p;
        }
        return out;
    }

    /** A decimal number of at most maxDigits digits, or -1. */
    static long number(String s, int maxDigits) {
        if (s.isEmpty() || s.length() > maxDigits) {
            return -1;
        }
        long n = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c < '0' || c > '9') {
                return -1;
            }
            n = n * 10 + (c - '0');
        }
        return n;
    }
}
