package dev.lunar.intercept;

import java.lang.instrument.Instrumentation;

/**
 * The Java agent the preload adds to a {@code java} launcher's arguments
 * ({@code -javaagent:<dir>/lunar-java-agent.jar=v1 <pid> <token> <ports>}, lang/PROTOCOL.md
 * section 7). Its only work at start: check the arguments and insert {@link LunarProvider}
 * first among the security providers. Everything else is loaded at the first connection
 * it dresses. It never writes to the program's standard streams.
 */
public final class Agent {
    /** This process's token (32 lowercase hex digits); null while inert. */
    static volatile String token;
    /** The intercepted ports. */
    private static int[] ports = new int[0];
    /** Kept for the rare moment the relay must read an HttpsURLConnection's verifier. */
    static volatile Instrumentation instrumentation;

    private Agent() {}

    public static void premain(String args, Instrumentation inst) {
        try {
            if (start(args, inst)) {
                instrumentation = inst;
            }
        } catch (Throwable ignored) {
            // Inert: the program runs as if the agent were not there.
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

    /** Whether the agent is active (the arguments are the preload's, for this process). */
    static boolean start(String args, Instrumentation inst) {
        if (args == null) {
            return false;
        }
        String[] fields = args.split(" ", -1);
        if (fields.length != 4 || !fields[0].equals("v1")) {
            return false;
        }
        long pid = number(fields[1], 19);
        // A child that got the option without the preload (it cannot, as nothing goes into the
        // environment, but a program could pass its own command line on) stays inert.
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
        ProviderFirst.insert(new LunarProvider(), inst);
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
