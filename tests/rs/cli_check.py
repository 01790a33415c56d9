"""What the example checks (tests/rs/check_*_cli.py) share: skipping (exit 77, ctest's skip code)
and running an example that must succeed and print one JSON object."""
import json
import subprocess
import sys


def skip(why):
    print("skipped: " + why)
    sys.exit(77)


def run(exe, args, env):
    p = subprocess.run([exe] + args, capture_output=True, text=True, env=env, timeout=600)
    if p.returncode != 0:
        print("FAILED: %s %s\nexit %d\nstderr: %s" % (exe, " ".join(args), p.returncode, p.stderr))
        sys.exit(1)
    return json.loads(p.stdout)
