"""`flchain dashboard`: a read-only web view of a federation's ledger, live from the chain."""
