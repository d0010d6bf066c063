"""cancertab: a Flower App (tabular classifier) with flchain's on-chain accounting."""
