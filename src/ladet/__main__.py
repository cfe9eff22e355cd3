"""``python -m ladet ...`` and ``torchrun -m ladet train ...`` run the command line."""

from ladet.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
