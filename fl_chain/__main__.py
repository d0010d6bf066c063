"""`python -m fl_chain` runs the CLI."""

from fl_chain.cli import main

main()
