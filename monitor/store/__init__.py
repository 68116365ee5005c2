"""Storage of ProbeResults in SQLite or PostgreSQL (DESIGN §1, §2).

Probes never touch the database: they hand results to a ResultWriter, which writes them
in batches. Readers use the repository functions inside a Session they own.
"""

from monitor.store.engine import make_engine
from monitor.store.migrate import upgrade
from monitor.store.repository import latest_per_check_vantage, prune_older_than, recent_results, results_between, save_results
from monitor.store.sumdb import StoredTree, all_sumdb_trees, get_sumdb_tree, save_sumdb_tree
from monitor.store.writer import ResultWriter

__all__ = [
    "ResultWriter",
    "StoredTree",
    "all_sumdb_trees",
    "get_sumdb_tree",
    "latest_per_check_vantage",
    "make_engine",
    "prune_older_than",
    "recent_results",
    "results_between",
    "save_results",
    "save_sumdb_tree",
    "upgrade",
]
