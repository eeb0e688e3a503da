"""``python -m livseg`` (also what ``torchrun -m livseg`` runs)."""

from livseg.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
