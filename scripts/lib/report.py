"""JUnit XML reports for the checks our own scripts make: one <testcase> per check, with a
<failure> in it when the check failed. scripts/lib/summary.py reads them next to the reports
nextest, newman and schemathesis write, all in target/reports/.

The report file is rewritten after every check, so it always holds what has been checked so
far, also when the script stops half-way (a failed check, set -e).

As a module (faults.py):
    report = Report("target/reports/faults.xml", "faults")
    report.case("no order charged twice", seconds=0.2, failure=None, classname="billing_killed")
As a command (the bash scripts, through scripts/lib/report.sh):
    report.py start REPORT.xml SUITE                           an empty report
    report.py case REPORT.xml NAME SECONDS [FAILURE_MESSAGE]   one more check
Standard library only: the scripts run it with the system python3.
"""
import os
import sys
import xml.etree.ElementTree as ET


def _read(path):
    """The <testsuite> element of a report this module wrote."""
    return ET.parse(path).getroot()


def _write(path, suite):
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    suite.set("time", f"{sum(float(c.get('time', '0')) for c in cases):.3f}")
    ET.indent(suite)
    # written aside, then renamed: a reader never sees half a file
    tmp = f"{path}.tmp"
    ET.ElementTree(suite).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)


class Report:
    """A JUnit report being written, one check at a time."""

    def __init__(self, path, suite):
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.suite = ET.Element("testsuite", name=suite)
        _write(self.path, self.suite)

    def case(self, name, seconds=0.0, failure=None, classname=None):
        """Records one check; `failure` (a message) makes it a failed one."""
        add_case(self.suite, name, seconds, failure, classname)
        _write(self.path, self.suite)


def add_case(suite, name, seconds, failure, classname=None):
    case = ET.SubElement(suite, "testcase", name=name, classname=classname or suite.get("name"),
                         time=f"{float(seconds):.3f}")
    if failure is not None:
        # the first line is the message; all of it is the element's text
        element = ET.SubElement(case, "failure", message=failure.splitlines()[0] if failure else "failed")
        element.text = failure


def main(argv):
    if len(argv) == 3 and argv[0] == "start":
        Report(argv[1], argv[2])
    elif len(argv) in (4, 5) and argv[0] == "case":
        suite = _read(argv[1])
        add_case(suite, argv[2], argv[3], argv[4] if len(argv) == 5 else None)
        _write(argv[1], suite)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
