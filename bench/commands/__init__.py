"""The `chipbench` subcommands, one module per family. Each module's `add(sub)` declares its
commands, their options and the function each runs; bench/cli.py builds the parser from them."""
