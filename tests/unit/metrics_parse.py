"""Reads a Prometheus text exposition with the Prometheus project's own
parser (python3-prometheus-client) and prints one line per sample:
name{label=value,...} value, labels sorted, so the C test can compare."""
import sys

from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1], encoding="utf-8").read()
for fam in text_string_to_metric_families(text):
    print("# %s %s %s" % (fam.name, fam.type, fam.documentation.replace("\n", "\\n")))
    for s in fam.samples:
        labels = ",".join("%s=%s" % (k, v.replace("\n", "\\n")) for k, v in sorted(s.labels.items()))
        print("%s{%s} %r" % (s.name, labels, s.value))
