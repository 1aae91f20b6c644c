"""The test command's closing summary, computed from the runners' JUnit reports.

usage: python3 summary.py REPORT_DIR [EXPECTED_NAME ...]

Reads every REPORT_DIR/*.xml (nextest, newman, schemathesis, and the reports our scripts write
with scripts/lib/report.py), prints one line per report (tests, passed, failed, skipped) and a
total, and exits 1 when any test failed, an expected report (REPORT_DIR/NAME.xml) is missing,
or a report is unreadable or holds no test at all. Nothing is taken from the runners' text
output. Standard library only.

A test case counts as failed when it holds a <failure> or <error>, skipped when it holds
<skipped>, passed otherwise. The runners also write counts on their <testsuite> elements; a
suite that declares more failures and errors than its cases show (a runner that could not
run a case at all may say so only there) counts the difference as failed too.
"""
import os
import sys
import xml.etree.ElementTree as ET


def count(path):
    """(tests, passed, failed, skipped) of one JUnit report; raises ValueError if unusable."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise ValueError(f"unreadable: {e}") from e
    if root.tag not in ("testsuites", "testsuite"):
        raise ValueError(f"not a JUnit report (root element <{root.tag}>)")
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = failed = skipped = 0
    for suite in suites:
        cases = suite.findall("testcase")
        bad = sum(c.find("failure") is not None or c.find("error") is not None for c in cases)
        # a <failure>/<error> directly in the suite: something failed outside any case
        bad += len(suite.findall("failure")) + len(suite.findall("error"))
        declared = sum(int(suite.get(a) or 0) for a in ("failures", "errors"))
        extra = max(0, declared - bad)
        tests += len(cases) + extra
        failed += bad + extra
        skipped += sum(c.find("skipped") is not None and c.find("failure") is None
                       and c.find("error") is None for c in cases)
    if tests == 0:
        raise ValueError("holds no test case")
    return tests, tests - failed - skipped, failed, skipped


def main(report_dir, expected):
    names = sorted(f[: -len(".xml")] for f in os.listdir(report_dir) if f.endswith(".xml")) \
        if os.path.isdir(report_dir) else []
    # the run's order first (the order the caller expects them in), then any others
    order = [n for n in expected if n in names] + [n for n in names if n not in expected]
    problems = [f"{n}: report missing ({report_dir}/{n}.xml)" for n in expected if n not in names]
    width = max([len(n) for n in order + ["total"]])
    print(f"{'report':<{width}}  {'tests':>6} {'passed':>6} {'failed':>6} {'skipped':>7}")
    totals = [0, 0, 0, 0]
    for name in order:
        try:
            figures = count(os.path.join(report_dir, f"{name}.xml"))
        except ValueError as e:
            problems.append(f"{name}: {e}")
            print(f"{name:<{width}}  {str(e)}")
            continue
        totals = [t + f for t, f in zip(totals, figures)]
        print(f"{name:<{width}}  {figures[0]:>6} {figures[1]:>6} {figures[2]:>6} {figures[3]:>7}")
        if figures[2]:
            problems.append(f"{name}: {figures[2]} failed")
    print(f"{'total':<{width}}  {totals[0]:>6} {totals[1]:>6} {totals[2]:>6} {totals[3]:>7}")
    print(f"total: {totals[1]} passed, {totals[2]} failed, {totals[3]} skipped "
          f"in {len(order)} reports ({report_dir}/)")
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
