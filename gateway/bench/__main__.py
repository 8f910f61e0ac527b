"""`python -m gateway.bench` runs the benchmark without the main CLI (same flags as `bench`)."""

import argparse

from gateway.bench import add_arguments, run

_parser = argparse.ArgumentParser(prog="python -m gateway.bench", description=__doc__)
add_arguments(_parser)
raise SystemExit(run(_parser.parse_args()))
