"""Everything Ethereum: compiler, local node launcher, deployment, contract wrappers, identity."""
