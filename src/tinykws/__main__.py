"""`python -m tinykws` (also what `torchrun -m tinykws train ...` launches)."""

from tinykws.cli import main

raise SystemExit(main())
