"""A shard's process: `python -m retrieval_heads.cli.shard_main SUBCOMMAND ... --shard i/n --out D` is `rheads`
with the tests' kill hook (`cluster.launch.kill_hook_for_tests`, inert unless its variable is set). The launchers
run it (`cluster.launch.SHARD_ENTRY`); it lives in `cli/` so that the cluster modules never import the CLI.

Left out on purpose: anything else; it is the CLI's entry point.
"""

import sys

from ..cluster.launch import kill_hook_for_tests
from .main import main

if __name__ == "__main__":
    kill_hook_for_tests()
    sys.exit(main(sys.argv[1:]))
