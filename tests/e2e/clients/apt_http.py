#!/usr/bin/python3
"""APT's http method (/usr/lib/apt/methods/http, and https: the same program, on GnuTLS), driven by its own protocol on stdin as
apt-get drives it: one 600 URI Acquire per URL (--repeat N: N of them, pipelined on one
connection as APT does), each file written to a temporary folder and then to stdout in
order. Exit 0 when every URI is done, 1 on a 400 URI Failure, 2 on anything else."""
import os
import pwd
import subprocess
import sys
import tempfile

METHOD = "/usr/lib/apt/methods/http"


def messages(stream):
    """The method's messages: (first line, {field: value})."""
    block = []
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if line:
            block.append(line)
            continue
        if block:
            fields = dict(l.split(": ", 1) for l in block[1:] if ": " in l)
            yield block[0], fields
            block = []


def main():
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "GET":
        print("usage: apt_http.py GET URL [--repeat N] [--ca-file PEM]", file=sys.stderr)
        return 2
    url, repeat, ca_file = args[1], 1, None
    rest = args[2:]
    while rest:
        a = rest.pop(0)
        if a == "--repeat":
            repeat = int(rest.pop(0))
        elif a == "--ca-file":
            ca_file = rest.pop(0)
        elif a == "--verbose":
            pass
        else:
            print("apt_http.py: unknown option " + a, file=sys.stderr)
            return 2
    folder = tempfile.mkdtemp(prefix="apt-http-")
    # As apt-get's partial/ folder: the method drops its privileges to _apt.
    try:
        os.chown(folder, pwd.getpwnam("_apt").pw_uid, -1)
    except KeyError:
        pass
    files = [os.path.join(folder, "file%d" % i) for i in range(repeat)]
    uris = [url if repeat == 1 else "%s%s%d" % (url, "&" if "?" in url else "?", i)
            for i in range(repeat)]
    method = METHOD if url.startswith("http:") else METHOD + "s"
    p = subprocess.Popen([method], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    # Timeouts short enough for the tests, no proxy from the environment.
    config = ["Acquire::http::Timeout=20", "Acquire::http::Proxy=DIRECT",
              "Acquire::https::Timeout=20", "Acquire::https::Proxy=DIRECT",
              "Acquire::Retries=0"]
    if ca_file:
        config.append("Acquire::https::CAInfo=" + ca_file)
    request = "601 Configuration\n" + "".join("Config-Item: %s\n" % c for c in config) + "\n"
    for uri, path in zip(uris, files):
        request += "600 URI Acquire\nURI: %s\nFilename: %s\n\n" % (uri, path)
    p.stdin.write(request.encode())
    p.stdin.flush()
    done, rc = set(), 0
    for first, fields in messages(p.stdout):
        code = first.split(" ", 1)[0]
        if code == "201":
            done.add(fields.get("URI"))
        elif code == "400":
            print("apt http: %s: %s" % (fields.get("URI"), fields.get("Message")), file=sys.stderr)
            done.add(fields.get("URI"))
            rc = 1
        elif code not in ("100", "102", "200", "104"):
            print("apt http: %s %s" % (first, fields), file=sys.stderr)
        if len(done) == len(uris):
            break
    p.stdin.close()
    p.wait()
    if len(done) != len(uris):
        print("apt http: ended with %d of %d done" % (len(done), len(uris)), file=sys.stderr)
        return 2
    if rc == 0:
        out = sys.stdout.buffer
        for path in files:
            with open(path, "rb") as f:
                out.write(f.read())
            if repeat > 1:
                out.write(b"\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
