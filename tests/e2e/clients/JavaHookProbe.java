// What a JVM sees of the Java hook's injection (tests/e2e/test_java_hook.py):
//   JavaHookProbe state [NAME]...
//     one line "STATE {json}": the security property lunar.intercept.hook, the security
//     properties NAME... (the program's own), the system property java.security.properties
//     and the text of the file it names (null when unset or unreadable), the JVM's input
//     arguments, its pid, java.home, LD_LIBRARY_PATH, and its open descriptors whose target contains
//     "memfd:lunar-java-security" (each with whether it is close-on-exec).
//   JavaHookProbe nontls
//     what a JVM doing no TLS does with the security API (digests, UUID.randomUUID,
//     SecureRandom, EC signatures); then the STATE line.
//   JavaHookProbe child [--unset VAR]... [--copy-properties | --pass-jvm-arguments AT] CMD...
//     the STATE line, then runs CMD (ProcessBuilder, the program's environment without the
//     --unset variables); its stdout follows on stdout, its stderr on stderr; exits with its
//     status. --copy-properties: CMD[0] (a java) gets, right after its name, this JVM's
//     -Xbootclasspath/a option and -Djava.security.properties naming a copy of this JVM's
//     properties file (what a program passing its own command line on would do).
//     --pass-jvm-arguments AT: CMD gets this JVM's input arguments (RuntimeMXBean) inserted
//     before CMD[AT], as a program relaunching itself (or forking a JVM like itself) does.
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.Security;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

public class JavaHookProbe {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "state": {
                List<String> names = new ArrayList<>();
                for (int i = 1; i < args.length; i++) names.add(args[i]);
                System.out.println("STATE " + state(names));
                break;
            }
            case "nontls":
                nonTls();
                break;
            case "child":
                System.exit(child(args));
                break;
            default:
                throw new IllegalArgumentException(args[0]);
        }
    }

    static String state(List<String> names) throws Exception {
        StringBuilder own = new StringBuilder();
        for (String n : names) {
            own.append(own.length() == 0 ? "" : ", ").append(q(n)).append(": ").append(q(Security.getProperty(n)));
        }
        String file = System.getProperty("java.security.properties");
        String text = null;
        if (file != null) {
            try {
                text = new String(Files.readAllBytes(Paths.get(file)), StandardCharsets.ISO_8859_1);
            } catch (Exception e) {
                text = null;
            }
        }
        StringBuilder in = new StringBuilder();
        for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            in.append(in.length() == 0 ? "" : ", ").append(q(a));
        }
        StringBuilder fds = new StringBuilder();
        try (DirectoryStream<Path> d = Files.newDirectoryStream(Paths.get("/proc/self/fd"))) {
            for (Path p : d) {
                String target;
                try {
                    target = Files.readSymbolicLink(p).toString();
                } catch (Exception e) {
                    continue;
                }
                if (!target.contains("memfd:lunar-java-security")) continue;
                String fd = p.getFileName().toString();
                boolean cloexec = false;
                for (String ln : Files.readAllLines(Paths.get("/proc/self/fdinfo/" + fd))) {
                    if (ln.startsWith("flags:")) {
                        cloexec = (Long.parseLong(ln.substring(6).trim(), 8) & 02000000L) != 0;
                    }
                }
                fds.append(fds.length() == 0 ? "" : ", ").append("{\"fd\": ").append(fd).append(", \"target\": ")
                        .append(q(target)).append(", \"cloexec\": ").append(cloexec).append("}");
            }
        }
        return "{\"hook\": " + q(Security.getProperty("lunar.intercept.hook")) + ", \"own\": {" + own
                + "}, \"security_properties\": " + q(file) + ", \"file\": " + q(text) + ", \"input_args\": [" + in
                + "], \"pid\": " + ProcessHandle.current().pid() + ", \"java_home\": "
                + q(System.getProperty("java.home")) + ", \"ld_library_path\": "
                + q(System.getenv("LD_LIBRARY_PATH")) + ", \"memfds\": [" + fds + "]}";
    }

    static void nonTls() throws Exception {
        java.security.MessageDigest.getInstance("SHA-256").digest(new byte[] {1, 2, 3});
        java.util.UUID.randomUUID();
        new java.security.SecureRandom().nextInt();
        java.security.KeyPair kp = java.security.KeyPairGenerator.getInstance("EC").generateKeyPair();
        java.security.Signature sig = java.security.Signature.getInstance("SHA256withECDSA");
        sig.initSign(kp.getPrivate());
        sig.update(new byte[] {4, 5, 6});
        sig.sign();
        System.out.println("STATE " + state(List.of()));
    }

    static int child(String[] args) throws Exception {
        System.out.println("STATE " + state(List.of()));
        System.out.flush();
        List<String> unset = new ArrayList<>();
        boolean copy = false;
        int passAt = -1;
        int i = 1;
        for (; i < args.length; i++) {
            if (args[i].equals("--unset")) {
                unset.add(args[++i]);
            } else if (args[i].equals("--copy-properties")) {
                copy = true;
            } else if (args[i].equals("--pass-jvm-arguments")) {
                passAt = Integer.parseInt(args[++i]);
            } else {
                break;
            }
        }
        List<String> cmd = new ArrayList<>();
        for (; i < args.length; i++) cmd.add(args[i]);
        if (copy) {
            Path copied = Files.createTempFile("lunar-probe-", ".security");
            copied.toFile().deleteOnExit();
            Files.write(copied, Files.readAllBytes(Paths.get(System.getProperty("java.security.properties"))));
            List<String> extra = new ArrayList<>();
            for (String a : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
                if (a.startsWith("-Xbootclasspath/a:")) extra.add(a);
            }
            extra.add("-Djava.security.properties=" + copied);
            cmd.addAll(1, extra);
        }
        if (passAt > 0) {
            cmd.addAll(passAt, ManagementFactory.getRuntimeMXBean().getInputArguments());
        }
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectInput(ProcessBuilder.Redirect.INHERIT)
                .redirectError(ProcessBuilder.Redirect.INHERIT);
        Map<String, String> env = pb.environment();
        for (String v : unset) env.remove(v);
        Process p = pb.start();
        try (InputStream out = p.getInputStream()) {
            ByteArrayOutputStream buf = new ByteArrayOutputStream();
            out.transferTo(buf);
            System.out.write(buf.toByteArray());
            System.out.flush();
        }
        return p.waitFor();
    }

    static String q(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
            else b.append(c);
        }
        return b.append('"').toString();
    }
}
