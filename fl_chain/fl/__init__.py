"""Everything Flower: ServerApp, ClientApp, ChainStrategy, authentication, reply checks, scoring."""
