"""``python -m invgc_faiss``: the command line (:mod:`invgc_faiss.lab.cli`)."""
import sys

from .lab.cli import main

sys.exit(main())
