"""TF1 coverage: how many of the tf.* names in ``tf1_names.txt`` graphc has, and that the count
never goes down.

Each name is *present* (``graphc.<name>`` resolves), *accepted and ignored* (resolves, and the
list marks it as one graphc takes on purpose without effect, such as ``device``), *refused
with advice* (an AttributeError saying "graphc does not have tf.X; use Y") or *missing*.
``python -m tests.api.test_tf1_coverage`` prints the table the README shows.
"""
from pathlib import Path

import graphc

NAMES_FILE = Path(__file__).with_name("tf1_names.txt")
IGNORED_TAG = "accepted-and-ignored"
KINDS = ("present", "accepted and ignored", "refused with advice", "missing")

# before issue 15's day-one names: 247 present, 1 accepted and ignored, 8 refused with advice
# (of 309); after: 267, 6 and 17 (19 missing); with issue 15's missing names (and
# nn.atrous_conv2d, summary.audio, summary.text added to the list, 312): 285, 6 and 20;
# with train.import_meta_graph, 286, 6 and 20 (none missing).
# Raise the floors as names are added
WORKING_FLOOR = 292   # present + accepted and ignored
COVERED_FLOOR = 312   # ... + refused with advice


def read_names(path=NAMES_FILE):
    """[(name, tagged accepted-and-ignored)] from the list, comments and blanks skipped."""
    rows = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, tag = line.partition(" ")
            rows.append((name, tag.strip() == IGNORED_TAG))
    return rows


def classify(module, name, ignored):
    """The kind of ``name`` (dotted, below ``module``): one of ``KINDS``."""
    value = module
    try:
        for part in name.split("."):
            value = getattr(value, part)
    except AttributeError as exc:
        return KINDS[2] if "graphc does not have" in str(exc) else KINDS[3]
    return KINDS[1] if ignored else KINDS[0]


def coverage(module=graphc, rows=None):
    """{kind: [names]} for every name of the list."""
    table = {kind: [] for kind in KINDS}
    for name, ignored in rows or read_names():
        table[classify(module, name, ignored)].append(name)
    return table


def test_the_list_is_well_formed():
    rows = read_names()
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a name is listed twice"
    assert len(names) >= 300
    assert all(name.replace(".", "").replace("_", "").isalnum() for name in names)


def test_coverage_does_not_regress():
    table = coverage()
    working = len(table[KINDS[0]]) + len(table[KINDS[1]])
    covered = working + len(table[KINDS[2]])
    assert working >= WORKING_FLOOR, f"names that work fell to {working}: {table[KINDS[3]]}"
    assert covered >= COVERED_FLOOR, f"names graphc covers fell to {covered}"


def test_names_marked_ignored_resolve():
    table = coverage()
    marked = [name for name, ignored in read_names() if ignored]
    assert sorted(table[KINDS[1]]) == sorted(marked)


if __name__ == "__main__":
    table = coverage()
    total = sum(len(v) for v in table.values())
    print(f"| of {total} TF1 names | count |\n| --- | ---: |")
    for kind in KINDS:
        print(f"| {kind} | {len(table[kind])} |")
    print("\nmissing:", " ".join(table[KINDS[3]]))
