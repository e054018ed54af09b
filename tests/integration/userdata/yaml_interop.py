#!/usr/bin/env python3
"""Cross-checks the user data builder and reader against PyYAML and, with
--go, against Go's gopkg.in/yaml.v2 (what upstream marshals user data with).

1. Documents from our builder, loaded by PyYAML (C and pure-Python loaders),
   give back exactly the contents that went in.
2. Documents PyYAML writes (every scalar style, narrow widths that force line
   folding, both indents, ASCII-only and Unicode output) read back through
   our parser as PyYAML reads them. Our parser may refuse a plain scalar it
   considers ambiguous (it asks for quotes), and must refuse raw U+0085,
   U+2028 and U+2029, which YAML 1.1 reads as line breaks and 1.2 does not
   (libyaml writes them raw in quoted strings, and PyYAML then loses the
   white space after them); nothing else.

3. With --go: documents yaml.v2 marshals read back through our parser as
   yaml.v2 reads them (same refusals allowed), and yaml.v2's strict reader
   reads our builder's documents exactly.
4. Differential: random mutations of valid documents; whatever our parser
   accepts, PyYAML must read to the same files (our parser may refuse more,
   never read differently or accept what YAML rejects).

Usage: yaml_interop.py UD_TOOL [--go GOYAML] [--seed N].
Exit 77 (skipped) without PyYAML.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("PyYAML not installed; skipping")
    sys.exit(77)

PATHS = [
    "/run/peerpod/apf.json",
    "/run/peerpod/auth.json",
    "/run/peerpod/initdata",
    "/run/peerpod/aa.toml",
    "/run/peerpod/cdh.toml",
    "/run/peerpod/scratch-space.marker",
]

# Characters that stress YAML: indicators, quotes, white space, line breaks,
# controls, and Unicode that YAML 1.1 and 1.2 treat differently.
ALPHABET = (
    list("ab yn:-#'\"\\|>{}[],&*!%@`?01.~=<") +
    ["\n", "\n", "\n", " ", " ", "\t", "\r", "\x00", "\x07", "\x1b", "\x7f", "\x85",
     "\xa0", "\u2028", "\u2029", "\ufeff", "é", "€", "\U0001F600", "\U0010FFFD"]
)

PEM = ("-----BEGIN PRIVATE KEY-----\n" +
       "\n".join("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC" + str(i) for i in range(8)) +
       "\n-----END PRIVATE KEY-----\n")
FIXED = [
    "", "\n", "\n\n", " ", "  lead", "trail  ", "a\n", "a\n\n\n", "\na", "\n\n a\n",
    "   \n", "a\n  \nb", "plain text that is long enough to be folded by a narrow emitter width",
    json.dumps({"pod-network": {"podip": "10.0.0.2/24"}, "tls-server-key": PEM}),
    json.dumps({"k": "v"}, indent=2) + "\n", PEM, "- item\n- item\n", "key: value\n",
    "# comment\n", "'quoted'", '"dq"', "|", ">", "null", "~", "yes", "0x1F", "1.5",
    "2001-12-14", "-----BEGIN", "a: b", "a #b", "\ta", "a\t", "tab\there", "x" * 300,
]


def random_content(rng):
    r = rng.random()
    if r < 0.15:
        return rng.choice(FIXED)
    n = rng.choice([1, 2, 5, 10, 30, 80, 200])
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, n)))


def random_files(rng):
    paths = rng.sample(PATHS, rng.randint(1, len(PATHS)))
    return [{"path": p, "content": random_content(rng)} for p in paths]


def run_tool(tool, mode, data):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(data)
        name = f.name
    try:
        res = subprocess.run([tool, mode, name], capture_output=True, check=False)
    finally:
        os.unlink(name)
    if res.returncode not in (0, 1):
        sys.stderr.write(res.stderr.decode(errors="replace"))
        raise SystemExit(f"{mode} exited {res.returncode}")
    return res


def compare_parsed(label, docs, wants, lines):
    """Our parse-batch output against the reference reading of each doc."""
    refused = ambiguous = 0
    for text, want, line in zip(docs, wants, lines):
        got = json.loads(line)
        raw_break = any(c in text.decode() for c in "\x85\u2028\u2029")
        if raw_break:
            if not isinstance(got, dict) or "must be escaped" not in got["error"]:
                print("parser accepted a raw U+0085/U+2028/U+2029:", got)
                print(text.decode())
                raise SystemExit(1)
            ambiguous += 1
            continue
        if isinstance(got, dict):
            msg = got["error"]
            if "may not read as a string in every YAML reader; quote it" in msg:
                refused += 1
                continue
            print(f"parser refused a {label} document:", msg)
            print(text.decode())
            raise SystemExit(1)
        if got != want:
            print(f"parser read a {label} document differently")
            print(text.decode())
            print("want", want)
            print("got ", got)
            raise SystemExit(1)
    print(f"{label} -> parser: {len(docs)} documents ok ({refused} refused for an ambiguous "
          f"plain scalar, {ambiguous} for a raw U+0085/U+2028/U+2029)")
    if refused + ambiguous > len(docs) // 4:
        raise SystemExit("too many refusals")


def as_files(doc):
    # A missing or null `content` is an empty file, as upstream's yaml.v2
    # reader (into a string field) has it.
    return [{"path": e["path"], "content": e.get("content") or ""} for e in doc["write_files"]]


def check_builder(tool, rng, count):
    """Ours -> PyYAML."""
    cases = [random_files(rng) for _ in range(count)]
    res = run_tool(tool, "build-batch", json.dumps(cases).encode())
    if res.returncode != 0:
        sys.stderr.write(res.stderr.decode(errors="replace"))
        raise SystemExit("builder refused a valid input")
    docs = res.stdout.split(b"\0")
    assert len(docs) == len(cases), (len(docs), len(cases))
    loaders = [yaml.SafeLoader] + ([yaml.CSafeLoader] if hasattr(yaml, "CSafeLoader") else [])
    for files, doc in zip(cases, docs):
        text = doc.decode("utf-8")
        assert text.startswith("#cloud-config\n")
        for loader in loaders:
            got = as_files(yaml.load(text, Loader=loader))
            if got != files:
                print("builder output read differently by", loader.__name__)
                print(text)
                print("want", files)
                print("got ", got)
                raise SystemExit(1)
    print(f"builder -> PyYAML: {len(cases)} documents, {len(loaders)} loaders: ok")


def dumps(files, style, width, indent, unicode, dumper):
    body = yaml.dump({"write_files": files}, Dumper=dumper, default_style=style,
                     default_flow_style=False, width=width, indent=indent,
                     allow_unicode=unicode, sort_keys=rng_sort)
    return "#cloud-config\n" + body


rng_sort = True


def check_parser(tool, rng, count):
    """PyYAML -> ours."""
    global rng_sort
    dumpers = [yaml.SafeDumper] + ([yaml.CSafeDumper] if hasattr(yaml, "CSafeDumper") else [])
    docs, wants = [], []
    for _ in range(count):
        files = random_files(rng)
        style = rng.choice([None, None, "'", '"', "|", ">"])
        width = rng.choice([20, 40, 80, 1000])
        indent = rng.choice([2, 4])
        unicode = rng.random() < 0.5
        rng_sort = rng.random() < 0.5
        text = dumps(files, style, width, indent, unicode, rng.choice(dumpers))
        if style is not None:
            # A style applies to keys too; quoted keys are refused by design,
            # so take the values' style and plain keys.
            text = text.replace("'write_files':", "write_files:")
            text = text.replace('"write_files":', "write_files:")
            for k in ("path", "content"):
                text = text.replace(f"'{k}':", f"{k}:").replace(f'"{k}":', f"{k}:")
            if "write_files: |" in text or "write_files: >" in text or "? " in text:
                continue
        # What PyYAML itself reads is the reference.
        want = as_files(yaml.safe_load(text))
        docs.append(text.encode("utf-8"))
        wants.append(want)
    res = run_tool(tool, "parse-batch", b"\0".join(docs))
    lines = res.stdout.decode().split("\n")[:-1]
    assert len(lines) == len(docs), (len(lines), len(docs))
    compare_parsed("PyYAML", docs, wants, lines)


def check_go(tool, goyaml, rng, count):
    """yaml.v2 -> ours, and ours -> yaml.v2."""
    cases = [random_files(rng) for _ in range(count)]
    res = run_tool(goyaml, "marshal", json.dumps(cases).encode())
    if res.returncode != 0:
        sys.stderr.write(res.stderr.decode(errors="replace"))
        raise SystemExit("goyaml marshal failed")
    docs = res.stdout.split(b"\0")
    assert len(docs) == len(cases)
    ref = run_tool(goyaml, "unmarshal", res.stdout).stdout.decode().split("\n")[:-1]
    wants = []
    for files, line in zip(cases, ref):
        want = json.loads(line)
        if want != files:
            raise SystemExit(f"yaml.v2 does not read back its own output: {files!r} {want!r}")
        wants.append(want)
    lines = run_tool(tool, "parse-batch", res.stdout).stdout.decode().split("\n")[:-1]
    assert len(lines) == len(docs)
    compare_parsed("yaml.v2", docs, wants, lines)

    cases = [random_files(rng) for _ in range(count)]
    built = run_tool(tool, "build-batch", json.dumps(cases).encode())
    if built.returncode != 0:
        raise SystemExit("builder refused a valid input")
    ref = run_tool(goyaml, "unmarshal", built.stdout).stdout.decode().split("\n")[:-1]
    for files, doc, line in zip(cases, built.stdout.split(b"\0"), ref):
        got = json.loads(line)
        if got != files:
            print("yaml.v2 (strict) reads our document differently")
            print(doc.decode())
            print("want", files)
            print("got ", got)
            raise SystemExit(1)
    print(f"builder -> yaml.v2: {len(cases)} documents ok")


MUTATION_CHARS = list(" \n\t-:#'\"\\|>&*!{}[],?%@`~.0123456789yn+") + ["  ", "\n  ", "é"]


def mutate(rng, text):
    for _ in range(rng.randint(1, 4)):
        if not text:
            break
        pos = rng.randrange(len(text))
        op = rng.random()
        if op < 0.35:
            text = text[:pos] + rng.choice(MUTATION_CHARS) + text[pos:]
        elif op < 0.6:
            text = text[:pos] + text[pos + 1:]
        elif op < 0.8:
            text = text[:pos] + rng.choice(MUTATION_CHARS) + text[pos + 1:]
        else:
            lines = text.split("\n")
            k = rng.randrange(len(lines))
            lines[k] = rng.choice(["", " ", "  ", "    "]) + lines[k].lstrip(" ")
            text = "\n".join(lines)
    return text


def check_mutations(tool, rng, count):
    """Differential: what we accept, PyYAML reads the same."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    bases = []
    for _ in range(count // 4):
        files = random_files(rng)
        style = rng.choice([None, "'", '"', "|", ">"])
        text = yaml.dump({"write_files": files}, default_style=style, default_flow_style=False,
                         width=rng.choice([20, 80]), allow_unicode=True)
        for k in ("write_files", "path", "content"):
            text = text.replace(f"'{k}':", f"{k}:").replace(f'"{k}":', f"{k}:")
        bases.append("#cloud-config\n" + text)
    built = run_tool(tool, "build-batch",
                     json.dumps([random_files(rng) for _ in range(count // 4)]).encode())
    bases += [d.decode() for d in built.stdout.split(b"\0")]
    docs = []
    for _ in range(count):
        header, body = rng.choice(bases).split("\n", 1)
        docs.append((header + "\n" + mutate(rng, body)).encode())
    lines = run_tool(tool, "parse-batch", b"\0".join(docs)).stdout.decode().split("\n")[:-1]
    assert len(lines) == len(docs)
    accepted = 0
    for doc, line in zip(docs, lines):
        got = json.loads(line)
        if isinstance(got, dict):
            continue
        accepted += 1
        try:
            ref = yaml.load(doc.decode(), Loader=loader)
            want = as_files(ref) if ref["write_files"] is not None else []
        except Exception as e:  # noqa: BLE001 - any failure to read is a divergence
            print("we accept a document PyYAML rejects:", e)
            print(doc.decode())
            raise SystemExit(1)
        if got != want:
            print("mutated document read differently")
            print(doc.decode())
            print("PyYAML", want)
            print("ours  ", got)
            raise SystemExit(1)
    print(f"mutations: {len(docs)} documents, {accepted} accepted, all read as PyYAML does")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tool")
    ap.add_argument("--go", help="the goyaml helper")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--count", type=int, default=3000)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print("seed", args.seed)
    check_builder(args.tool, rng, args.count)
    check_parser(args.tool, rng, args.count)
    check_mutations(args.tool, rng, 4 * args.count)
    if args.go:
        check_go(args.tool, args.go, rng, args.count)


if __name__ == "__main__":
    main()
